#include "base/thread.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace cronkeep::thread {
namespace {

// struct sched_attr (linux/sched/types.h): glibc 2.36 has no wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
constexpr uint64_t kResetOnFork = 0x01;  // SCHED_FLAG_RESET_ON_FORK
constexpr uint64_t kShortSliceNs = 100'000;  // the kernel's smallest custom slice
constexpr int kReaderNice = 10;

}  // namespace

void set_name(const char* name) { ::pthread_setname_np(::pthread_self(), name); }

void prefer_short_latency() {
  SchedAttr attr{};
  if (::syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0) return;
  attr.size = sizeof attr;
  attr.sched_flags = kResetOnFork;
  attr.sched_runtime = kShortSliceNs;
  (void)::syscall(SYS_sched_setattr, 0, &attr, 0);
}

void yield_to_latency_sensitive() { (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kReaderNice); }

}  // namespace cronkeep::thread
