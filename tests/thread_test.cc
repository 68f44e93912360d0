#include "base/thread.h"

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

extern char** environ;

namespace cronkeep {
namespace {

// The fair scheduler's slice of a thread or process, as the kernel shows it
// (`se.slice` in /proc/PID/sched); 0 where it shows none (before Linux
// 6.6, or without scheduler debugging). Read independently of base/thread.cc.
uint64_t slice_of(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/sched");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("se.slice", 0) == 0) return std::stoull(line.substr(line.find(':') + 1));
  return 0;
}

// Custom slices (sched_attr.sched_runtime for fair threads) came with Linux 6.12.
bool kernel_has_custom_slices() {
  utsname u{};
  int major = 0, minor = 0;
  return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
         (major > 6 || (major == 6 && minor >= 12));
}

TEST(ThreadPriority, AFirePathThreadGetsAShortSliceAndWhatItStartsDoesNot) {
  if (!kernel_has_custom_slices()) GTEST_SKIP() << "custom slices need Linux 6.12 or later";
  uint64_t before = 0, after = 0, child = 0;
  std::thread([&] {
    before = slice_of(::gettid());
    thread::prefer_short_latency();
    after = slice_of(::gettid());
    // A task's command, started from such a thread, runs with the default.
    pid_t pid = 0;
    char sh[] = "/bin/sh", c[] = "-c", cmd[] = "sleep 5";
    char* argv[] = {sh, c, cmd, nullptr};
    ASSERT_EQ(::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ), 0);
    child = slice_of(pid);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }).join();
  if (before == 0) GTEST_SKIP() << "this kernel shows no slices (/proc/PID/sched, Linux 6.6 and later)";
  EXPECT_EQ(after, 100'000u);
  EXPECT_EQ(child, before);
  EXPECT_NE(child, after);
  EXPECT_EQ(slice_of(::gettid()), before) << "only the calling thread changes";
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
