#include "base/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.h"

namespace cronkeep {

Result<std::string> read_file(const std::string& path) {
  auto failed = [](int err) {
    return fail(err == ENOENT ? ErrorCode::not_found : ErrorCode::io, std::strerror(err));
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return failed(errno);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t got = ::read(fd.get(), buf, sizeof buf);
    if (got == 0) return text;
    if (got < 0) {
      if (errno == EINTR) continue;
      return failed(errno);
    }
    text.append(buf, static_cast<size_t>(got));
  }
}

}  // namespace cronkeep
