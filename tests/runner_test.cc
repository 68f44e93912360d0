#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>

#include <cstdlib>
#include <thread>
#include <vector>

#include "runner/runner.h"
#include "test_util.h"

namespace cronkeep::runner {
namespace {

using namespace std::chrono_literals;

struct Ran {
  Outcome outcome;
  std::string output;  // both streams in arrival order
  std::string tagged;  // each chunk as "o:" / "e:" + bytes
};

Command shell(std::string cmd) {
  Command c;
  c.shell_command = std::move(cmd);
  c.workdir = "/tmp";
  return c;
}

Ran run(const Command& cmd) {
  auto exec = Execution::start(cmd);
  EXPECT_TRUE(exec) << exec.error().message;
  Ran r;
  r.outcome = (*exec)->wait([&](std::string_view chunk, Stream stream) {
    r.output.append(chunk);
    r.tagged += (stream == Stream::out ? "o:" : "e:") + std::string(chunk);
  });
  return r;
}

TEST(Runner, CapturesStdoutAndStderrTaggedInArrivalOrder) {
  // Pauses let each write arrive on its own; the two pipes are read as they
  // become readable (docs/scheduling.md explains the ordering).
  Ran r = run(shell("echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three; sleep 0.05; echo four >&2"));
  EXPECT_EQ(r.output, "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(r.tagged, "o:one\ne:two\no:three\ne:four\n");
  EXPECT_EQ(r.outcome.exit_code, 0);
  EXPECT_FALSE(r.outcome.signal);
  EXPECT_EQ(r.outcome.stopped, StopReason::none);
}

TEST(Runner, RecordsTheExitCode) {
  Ran r = run(shell("exit 3"));
  EXPECT_EQ(r.outcome.exit_code, 3);
  EXPECT_EQ(describe(r.outcome), "exit code 3");
}

TEST(Runner, RecordsTheSignalThatKilledTheShell) {
  Ran r = run(shell("kill -SEGV $$"));
  EXPECT_FALSE(r.outcome.exit_code);
  EXPECT_EQ(r.outcome.signal, SIGSEGV);
  EXPECT_EQ(describe(r.outcome), "killed by SIGSEGV");
}

TEST(Runner, AppliesEnvironmentAndWorkdir) {
  cronkeep::testing::TempDir dir;
  Command c = shell("echo \"$GREETING from $(pwd)\"; echo \"path set: ${PATH:+yes}\"");
  c.env["GREETING"] = "hello";
  c.workdir = dir.path();
  Ran r = run(c);
  EXPECT_EQ(r.output, "hello from " + dir.path() + "\npath set: yes\n");
}

TEST(Runner, StdinIsEmpty) {
  Ran r = run(shell("cat; echo done"));
  EXPECT_EQ(r.output, "done\n");
}

TEST(Runner, RefusesAMissingWorkdirBeforeSpawning) {
  Command c = shell("true");
  c.workdir = "/nonexistent/cronkeep";
  auto exec = Execution::start(c);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(exec.error().message.find("/nonexistent/cronkeep"), std::string::npos);
  EXPECT_NE(exec.error().message.find("No such file"), std::string::npos);
}

TEST(Runner, AMissingBinaryEndsWithExitCode127AndSaysSo) {
  Ran r = run(shell("/no/such/binary --flag"));
  EXPECT_EQ(r.outcome.exit_code, 127);
  EXPECT_EQ(describe(r.outcome), "command not found (exit code 127)");
  EXPECT_NE(r.output.find("/no/such/binary"), std::string::npos);
}

TEST(Runner, CapturesBinaryOutputLongLinesAndNoTrailingNewlineAsWritten) {
  Ran r = run(shell("printf 'a\\000b\\377'; head -c 300000 /dev/zero | tr '\\0' x; printf 'end'"));
  std::string expected("a\0b\377", 4);
  expected += std::string(300000, 'x') + "end";
  EXPECT_EQ(r.output, expected);
}

TEST(Runner, TimeoutSendsSigtermToTheWholeGroup) {
  Command c = shell("sleep 30 & sleep 30; echo unreachable");
  c.timeout = 200ms;
  const auto t0 = std::chrono::steady_clock::now();
  Ran r = run(c);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(r.outcome.stopped, StopReason::timeout);
  EXPECT_EQ(r.outcome.signal, SIGTERM);
  EXPECT_EQ(r.output, "");
  EXPECT_EQ(describe(r.outcome), "timed out; killed by SIGTERM");
}

TEST(Runner, EscalatesToSigkillAfterGracefulStop) {
  Command c = shell("trap '' TERM; echo ready; sleep 30; sleep 30");
  c.timeout = 100ms;
  c.graceful_stop = 300ms;
  const auto t0 = std::chrono::steady_clock::now();
  Ran r = run(c);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(r.outcome.signal, SIGKILL);
  EXPECT_EQ(r.outcome.stopped, StopReason::timeout);
  EXPECT_EQ(r.output, "ready\n");
}

TEST(Runner, StopFromAnotherThreadCancels) {
  auto exec = Execution::start(shell("echo started; sleep 30"));
  ASSERT_TRUE(exec);
  std::string out;
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    (*exec)->stop(StopReason::cancelled);
    (*exec)->stop(StopReason::timeout);  // only the first reason counts
  });
  Outcome o = (*exec)->wait([&](std::string_view c, Stream) { out.append(c); });
  stopper.join();
  EXPECT_EQ(o.stopped, StopReason::cancelled);
  EXPECT_EQ(o.signal, SIGTERM);
  EXPECT_EQ(out, "started\n");
}

// One Supervisor, many children at once: each one's output reaches its own
// sink in order, each end its own handler exactly once, timeouts and stops
// (before and after the hand-over) are the loop's timers.
TEST(Runner, ASupervisorDrivesManyChildrenInOneLoop) {
  struct Seen {
    std::string out;
    std::optional<Outcome> outcome;
    int ends = 0;
  };
  constexpr int kChildren = 40;
  std::vector<Seen> seen(kChildren);
  std::vector<std::shared_ptr<Execution>> execs;
  std::mutex mu;
  std::condition_variable cv;
  int ended = 0;
  {
    Supervisor sup;
    for (int i = 0; i < kChildren; ++i) {
      Command c = shell("i=0; while [ $i -lt " + std::to_string(i * 10) + " ]; do echo " + std::to_string(i) +
                        ".$i; i=$((i+1)); done; " + (i % 4 == 3 ? "sleep 30" : "exit " + std::to_string(i % 3)));
      if (i == 3) c.timeout = 300ms;
      c.graceful_stop = 200ms;
      auto exec = Execution::start(c);
      ASSERT_TRUE(exec) << exec.error().message;
      std::shared_ptr<Execution> e(std::move(*exec));
      if (i % 8 == 7) e->stop(StopReason::cancelled);  // before the loop has it
      execs.push_back(e);
      ASSERT_TRUE(sup.watch(
          e, [&seen, i](std::string_view chunk, Stream) { seen[static_cast<size_t>(i)].out.append(chunk); },
          [&, i](Outcome o) {
            std::lock_guard lock(mu);
            seen[static_cast<size_t>(i)].outcome = std::move(o);
            ++seen[static_cast<size_t>(i)].ends;
            ++ended;
            cv.notify_all();
          }));
    }
    std::this_thread::sleep_for(100ms);
    for (int i = 11; i < kChildren; i += 8) execs[static_cast<size_t>(i)]->stop(StopReason::cancelled);  // while it runs
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return ended == kChildren; }));
    EXPECT_EQ(sup.size(), 0u);
  }
  for (int i = 0; i < kChildren; ++i) {
    const Seen& s = seen[static_cast<size_t>(i)];
    EXPECT_EQ(s.ends, 1) << i;
    ASSERT_TRUE(s.outcome) << i;
    std::string expected;
    for (int k = 0; k < i * 10; ++k) expected += std::to_string(i) + "." + std::to_string(k) + "\n";
    if (i % 4 != 3) {
      EXPECT_EQ(s.out, expected) << i;
      EXPECT_EQ(s.outcome->exit_code, i % 3) << i;
      EXPECT_EQ(s.outcome->stopped, StopReason::none) << i;
    } else {  // sleeps: stopped (while printing, perhaps)
      EXPECT_EQ(s.outcome->signal, SIGTERM) << i;
      EXPECT_EQ(s.outcome->stopped, i == 3 ? StopReason::timeout : StopReason::cancelled) << i;
    }
  }
}

TEST(Runner, DoesNotWaitForBackgroundChildrenThatKeepThePipe) {
  const auto t0 = std::chrono::steady_clock::now();
  Ran r = run(shell("sleep 3 & echo parent done"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(r.outcome.exit_code, 0);
  EXPECT_EQ(r.output, "parent done\n");
}

TEST(Runner, TheTaskInheritsNoDescriptorButStdinStdoutAndStderr) {
  // A descriptor the daemon opened without O_CLOEXEC (a socket accepted by a
  // library, a file opened by a dependency) must not reach the task.
  const int opened = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(opened, 0);
  const int leaked = ::fcntl(opened, F_DUPFD, 100);  // F_DUPFD leaves FD_CLOEXEC clear
  ::close(opened);
  ASSERT_GE(leaked, 100);
  ASSERT_EQ(::fcntl(leaked, F_GETFD) & FD_CLOEXEC, 0);
  // ls inherits exactly what the shell has, plus the directory it reads
  // /proc/self/fd with (the lowest free number, 3).
  Ran r = run(shell("ls /proc/self/fd"));
  ::close(leaked);
  EXPECT_EQ(r.outcome.exit_code, 0);
  EXPECT_EQ(r.output, "0\n1\n2\n3\n") << "the task inherited descriptors beyond 0-2";
}

// Whether `pid` is gone (or a zombie nobody reaped yet: it runs no more).
bool gone(pid_t pid) {
  const std::string stat = cronkeep::testing::read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && stat.size() > paren + 2 && stat[paren + 2] == 'Z';
}

// A task that starts a process in a session of its own (out of the run's
// process group) and writes its pid to `pid_file` before going on.
std::string detach(const std::string& pid_file, const std::string& then) {
  return "setsid sh -c 'echo $$ > " + pid_file + "; exec sleep 300' & "
         "while [ ! -s " + pid_file + " ]; do sleep 0.01; done; " + then;
}

pid_t read_pid(const std::string& file) { return static_cast<pid_t>(std::atoi(cronkeep::testing::read_file(file).c_str())); }

TEST(Runner, ATimeoutAlsoKillsProcessesThatLeftTheGroup) {
  cronkeep::testing::TempDir dir;
  Command c = shell(detach(dir / "pid", "sleep 30"));
  c.timeout = 300ms;
  Ran r = run(c);
  const pid_t detached = read_pid(dir / "pid");
  ASSERT_GT(detached, 0);
  bool dead = false;
  for (int i = 0; i < 200 && !dead; ++i) {  // SIGKILL is sent before wait() returns; allow the kernel 2 s
    dead = gone(detached);
    if (!dead) std::this_thread::sleep_for(10ms);
  }
  if (!dead) ::kill(detached, SIGKILL);  // ours: clean up before failing
  EXPECT_TRUE(dead) << "the detached sleep " << detached << " outlived the run's timeout";
  EXPECT_EQ(r.outcome.stopped, StopReason::timeout);
  // The sleep, and under load sometimes the shell that started it too,
  // caught before it exec'd or exited.
  ASSERT_GE(r.outcome.killed.size(), 1u);
  const auto sleeper = std::find_if(r.outcome.killed.begin(), r.outcome.killed.end(),
                                    [&](const auto& k) { return k.pid == detached; });
  ASSERT_NE(sleeper, r.outcome.killed.end());
  EXPECT_EQ(sleeper->name, "sleep");
  EXPECT_NE(describe(r.outcome).find("detached process(es): "), std::string::npos) << describe(r.outcome);
  EXPECT_NE(describe(r.outcome).find(std::to_string(detached) + " (sleep)"), std::string::npos) << describe(r.outcome);
}

TEST(Runner, ARunThatEndsByItselfReportsDetachedProcessesLeftRunning) {
  cronkeep::testing::TempDir dir;
  Ran r = run(shell(detach(dir / "pid", "echo done")));
  const pid_t detached = read_pid(dir / "pid");
  ASSERT_GT(detached, 0);
  const bool alive = !gone(detached);
  ::kill(detached, SIGKILL);  // cron's behaviour leaves it running; the test cleans up
  EXPECT_TRUE(alive);
  EXPECT_EQ(r.outcome.exit_code, 0);
  EXPECT_TRUE(r.outcome.killed.empty());
  ASSERT_EQ(r.outcome.left_running.size(), 1u);
  EXPECT_EQ(r.outcome.left_running[0].pid, detached);
  EXPECT_EQ(describe(r.outcome), "exit code 0; 1 detached process(es) left running: " + std::to_string(detached) +
                                     " (sleep)");
}

TEST(Runner, EachRunCarriesItsOwnSpawnIdOnly) {
  // A daemon started by a task of another daemon, or a task's env, must not
  // hand an old mark on: it would make leftovers of someone else's processes.
  ::setenv("CRONKEEP_SPAWN_ID", "inherited", 1);
  Command c = shell("env | grep -c '^CRONKEEP_SPAWN_ID='; echo \"$CRONKEEP_SPAWN_ID\"");
  c.env["CRONKEEP_SPAWN_ID"] = "configured";
  Ran a = run(c);
  Ran b = run(c);
  ::unsetenv("CRONKEEP_SPAWN_ID");
  const std::string prefix = "1\n" + std::to_string(::getpid()) + "-";
  EXPECT_EQ(a.output.rfind(prefix, 0), 0u) << a.output;
  EXPECT_EQ(b.output.rfind(prefix, 0), 0u) << b.output;
  EXPECT_NE(a.output, b.output);
}

TEST(Runner, AnOrdinaryRunReportsNoLeftovers) {
  Ran r = run(shell("echo hi; (sleep 0.01) ; true"));
  EXPECT_TRUE(r.outcome.killed.empty());
  EXPECT_TRUE(r.outcome.left_running.empty());
  EXPECT_EQ(describe(r.outcome), "exit code 0");
}

int64_t own_peak_kb() {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  return self.ru_maxrss;
}

TEST(Runner, MeasuresCpuTimeAndPeakMemoryOfTheChild) {
  // A buffer larger than this process's own peak, so the figure is the task's.
  const int64_t mib = own_peak_kb() / 1024 + 64;
  Ran r = run(shell("dd if=/dev/zero of=/dev/null bs=" + std::to_string(mib) + "M count=4 2>/dev/null; "
                    "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"));
  EXPECT_EQ(r.outcome.exit_code, 0);
  ASSERT_TRUE(r.outcome.max_rss_kb);
  EXPECT_GT(*r.outcome.max_rss_kb, (mib - 4) * 1024);  // dd's buffer
  EXPECT_LT(*r.outcome.max_rss_kb, (mib + 64) * 1024);
  EXPECT_GT(r.outcome.cpu_ms, 20);
  EXPECT_GE(r.outcome.duration.count(), r.outcome.cpu_ms / 2);
}

TEST(Runner, ReportsNoPeakMemoryRatherThanTheDaemons) {
  // The child shares the daemon's memory until exec, and the kernel counts
  // that in the child's peak: `true` used to report the daemon's peak. Make
  // the daemon's peak large, then a tiny task must report nothing, not it.
  {
    std::vector<char> ballast(static_cast<size_t>(own_peak_kb() + 64 * 1024) * 1024);
    for (size_t i = 0; i < ballast.size(); i += 4096) ballast[i] = 1;
    volatile char sink = ballast[ballast.size() / 2];
    (void)sink;
  }
  Ran r = run(shell("true"));
  EXPECT_EQ(r.outcome.exit_code, 0);
  EXPECT_FALSE(r.outcome.max_rss_kb) << "reported " << *r.outcome.max_rss_kb << " kB for `true`; own peak "
                                     << own_peak_kb() << " kB";
}

// user and group (issue 13 item 4): these need root, as in CI.

#define REQUIRE_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root"

TEST(RunnerUser, ATaskWithAUserRunsAsThatUserWithItsLoginVariables) {
  REQUIRE_ROOT();
  Command c = shell("id -un; id -gn; echo \"$HOME $USER $LOGNAME\"; pwd");
  c.user = "nobody";
  Ran r = run(c);
  EXPECT_EQ(r.outcome.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "nobody\nnogroup\n/nonexistent nobody nobody\n/tmp\n");
}

TEST(RunnerUser, GroupReplacesThePrimaryGroup) {
  REQUIRE_ROOT();
  Command c = shell("id -un; id -gn");
  c.user = "nobody";
  c.group = "daemon";
  Ran r = run(c);
  EXPECT_EQ(r.output, "nobody\ndaemon\n");
}

TEST(RunnerUser, TheTasksOwnEnvironmentWinsOverTheLoginVariables) {
  REQUIRE_ROOT();
  Command c = shell("echo $HOME");
  c.user = "nobody";
  c.env["HOME"] = "/tmp";
  EXPECT_EQ(run(c).output, "/tmp\n");
}

TEST(RunnerUser, ATaskWithAUserInheritsNoDescriptorButStdinStdoutAndStderr) {
  REQUIRE_ROOT();
  const int leaked = ::fcntl(::open("/dev/null", O_RDONLY), F_DUPFD, 100);
  ASSERT_GE(leaked, 100);
  Command c = shell("ls /proc/self/fd");
  c.user = "nobody";
  Ran r = run(c);
  ::close(leaked);
  EXPECT_EQ(r.output, "0\n1\n2\n3\n") << "the task inherited descriptors beyond 0-2";
}

TEST(RunnerUser, ATaskWithAUserIsInItsOwnGroupAndStopsOnTimeout) {
  REQUIRE_ROOT();
  Command c = shell("sleep 30 & sleep 30");
  c.user = "nobody";
  c.timeout = 200ms;
  c.graceful_stop = 1s;
  const auto t0 = std::chrono::steady_clock::now();
  Ran r = run(c);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(r.outcome.stopped, StopReason::timeout);
  EXPECT_EQ(r.outcome.signal, SIGTERM);
}

TEST(RunnerUser, AWorkdirTheUserCannotEnterIsAStartError) {
  REQUIRE_ROOT();
  cronkeep::testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0700);
  Command c = shell("true");
  c.user = "nobody";
  c.workdir = dir.path();
  auto exec = Execution::start(c);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().code, ErrorCode::io);
  EXPECT_NE(exec.error().message.find("entering workdir " + dir.path() + " as user nobody"), std::string::npos)
      << exec.error().message;
}

TEST(RunnerUser, AnUnknownUserIsRefusedBeforeSpawning) {
  Command c = shell("true");
  c.user = "no-such-user-ck";
  auto exec = Execution::start(c);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(exec.error().message, "unknown user no-such-user-ck");
}

}  // namespace
}  // namespace cronkeep::runner
