#include "base/fault.h"

#ifdef CRONKEEP_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace cronkeep::fault {

void crash_point(const char* name) {
  static const char* target = std::getenv("CRONKEEP_CRASH_AT");
  if (target && std::strcmp(target, name) == 0) {
    const char msg[] = "cronkeep: crash point reached\n";
    [[maybe_unused]] ssize_t n = ::write(2, msg, sizeof msg - 1);
    ::kill(::getpid(), SIGKILL);
  }
}

bool disk_full() {
  static const char* flag = std::getenv("CRONKEEP_ENOSPC_FILE");
  return flag && ::access(flag, F_OK) == 0;
}

}  // namespace cronkeep::fault
#endif
