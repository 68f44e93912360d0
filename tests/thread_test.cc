#include "base/thread.h"

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <thread>

extern char** environ;

namespace cronkeep {
namespace {

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

// The fair scheduler's slice of a thread or process (0 where the kernel does
// not report one: before Linux 6.12).
uint64_t slice_of(pid_t tid) {
  SchedAttr attr{};
  if (::syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) != 0) return 0;
  return attr.sched_runtime;
}

TEST(ThreadPriority, AFirePathThreadGetsAShortSliceAndWhatItStartsDoesNot) {
  uint64_t before = 0, after = 0, child = 0;
  std::thread([&] {
    before = slice_of(0);
    thread::prefer_short_latency();
    after = slice_of(0);
    // A task's command, started from such a thread, runs with the default.
    pid_t pid = 0;
    char sh[] = "/bin/sh", c[] = "-c", cmd[] = "sleep 5";
    char* argv[] = {sh, c, cmd, nullptr};
    ASSERT_EQ(::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ), 0);
    child = slice_of(pid);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }).join();
  if (before == 0) GTEST_SKIP() << "this kernel has no custom slices (Linux 6.12 and later)";
  EXPECT_EQ(after, 100'000u);
  EXPECT_EQ(child, before);
  EXPECT_NE(child, after);
  EXPECT_EQ(slice_of(0), before) << "only the calling thread changes";
}

TEST(ThreadPriority, AReaderThreadGivesWayAndOnlyItself) {
  errno = 0;
  const int mine = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  int reader = 0;
  std::thread([&] {
    thread::yield_to_latency_sensitive();
    reader = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  }).join();
  EXPECT_EQ(reader, 10);
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())), mine);
}

}  // namespace
}  // namespace cronkeep
