// runner/runner.h: starting a command and seeing it to its end.
//
// Owns: `/bin/sh -c COMMAND` in a process group of its own, its environment
// and working directory, the pipes that carry stdout and stderr (read as they
// become readable, so the chunks keep their arrival order as the daemon sees
// it; the child inherits no descriptor but 0-2), timeouts and the stop sequence
// (SIGTERM to the group, SIGKILL after graceful_stop), the exit status and
// the child's resource usage (wait4). Must not know about SQL, HTTP, or where
// the output goes: it hands every chunk it reads to a sink.
//
// Timeouts use the monotonic clock: they bound real process lifetimes, which
// a fake clock cannot speed up.
//
// Threads: a Supervisor is one thread with one epoll loop that owns every
// child handed to it (its pidfd, its non-blocking pipes, its timeout and
// stop timers); sinks and end handlers run on that thread. Execution::wait
// runs the same loop on the calling thread for one child (tests, notify's
// sink commands). stop() may be called from any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/time.h"
#include "base/unique_fd.h"

namespace cronkeep::runner {

struct Command {
  std::string shell_command;                // passed to /bin/sh -c
  std::map<std::string, std::string> env;   // added to (or replacing in) the daemon's environment
  std::string workdir;                      // absolute; must exist
  Millis timeout{0};                        // 0 = none
  Millis graceful_stop{5000};               // SIGTERM → SIGKILL delay
  // Run as this user (requires a root daemon): the child sets the group
  // (`group`, or the user's primary one), the user's supplementary groups
  // and the user before exec, and gets HOME, USER and LOGNAME for it (unless
  // `env` sets them); the working directory is entered as that user. Empty =
  // as the daemon. The output pipes are the daemon's: the log files stay its.
  std::string user;
  std::string group;  // needs `user`
};

// Why the runner stopped a process before it ended by itself.
enum class StopReason { none, timeout, cancelled, log_overflow };

// A process of the run still alive after the shell was reaped.
struct Leftover {
  pid_t pid = -1;
  std::string name;  // /proc/PID/comm
};

struct Outcome {
  std::optional<int> exit_code;   // set when the shell exited
  std::optional<int> signal;      // set when it was killed by a signal
  StopReason stopped = StopReason::none;  // the first stop requested, if any
  Millis duration{0};             // spawn → reaped, monotonic
  int64_t cpu_ms = 0;             // user + system time of the child and its reaped descendants
  // The task's peak resident set size (kB, the largest of the shell and
  // its reaped descendants), or nullopt when the kernel's figure cannot be
  // told apart from the daemon's own memory: the spawned child shares the
  // daemon's memory until exec, so its ru_maxrss is at least the daemon's
  // peak at that moment. Only a figure above that is the task's own.
  std::optional<int64_t> max_rss_kb;
  // Processes of the run that left its process group (setsid, a double
  // fork) and were still alive after the shell was reaped. Found by the
  // environment entry CRONKEEP_SPAWN_ID every process of the run inherits.
  // A stopped run (timeout, cancel, overflow) has them killed (SIGKILL) and
  // listed in `killed`; a run that ended by itself leaves them running, as
  // cron does, and lists them in `left_running` (looked for only while one
  // of them still holds the output pipe; see docs/scheduling.md).
  std::vector<Leftover> killed;
  std::vector<Leftover> left_running;
};

enum class Stream { out, err };

// Receives the output as it arrives, in chunks of up to 64 KiB, with the
// stream it came from, in the order each stream delivered them. Called on
// the thread that runs the child's loop (Execution::wait's caller, or the
// Supervisor's thread); it must not block for long: every other child of
// that loop waits meanwhile.
using OutputSink = std::function<void(std::string_view chunk, Stream stream)>;

// Receives a child's Outcome once it has been reaped, on the loop's thread.
using EndHandler = std::function<void(Outcome)>;

namespace detail {
class Loop;
}

// One running command. Thread-safety: it is driven by one loop (wait(), or
// the Supervisor it was handed to); stop() may be called from any thread,
// any number of times, before, during or after that.
class Execution {
 public:
  // Spawns the command. Errors: invalid_argument when workdir is missing or
  // not a directory, or the user or group is unknown; io when the pipe or
  // the spawn fails, or the child cannot take the user's identity (the
  // daemon is not root) or enter workdir as that user (message says why).
  static Result<std::unique_ptr<Execution>> start(const Command& command);

  Execution(const Execution&) = delete;
  Execution& operator=(const Execution&) = delete;
  ~Execution();

  pid_t pid() const { return pid_; }

  // Feeds output to `sink` until the shell exits (and its pipe has been
  // drained of what is already written), enforcing the timeout, then reaps
  // it. Output still written by leftover background processes after the
  // shell's exit is not waited for. Call exactly once.
  Outcome wait(const OutputSink& sink);

  // Asks the process group to stop: SIGTERM now (as soon as its loop sees
  // the request; before the loop has it, when it takes it), SIGKILL after
  // graceful_stop. Only the first reason is recorded. Non-blocking; does
  // nothing once the child has been reaped.
  void stop(StopReason reason);

 private:
  friend class detail::Loop;
  using SteadyTime = std::chrono::steady_clock::time_point;
  Execution() = default;
  void signal_group(int sig);
  // The loop's side; called on the loop's thread only.
  void attach(std::shared_ptr<UniqueFd> waker);    // stop() now wakes that eventfd
  bool take_stop_request();                        // a stop() since the last call
  void begin_stop(StopReason reason, SteadyTime now);
  void on_deadline(SteadyTime now);                // the timeout, or graceful_stop after SIGTERM, is over
  bool read_available(int which, size_t budget, const OutputSink& sink);  // false at EOF or error
  Outcome reap(const OutputSink& sink);            // after the pidfd became readable

  pid_t pid_ = -1;
  UniqueFd out_;        // read end of the stdout pipe
  UniqueFd err_;        // read end of the stderr pipe
  UniqueFd pidfd_;      // readable when the child exits
  Command command_;
  std::string spawn_id_;        // "CRONKEEP_SPAWN_ID=…" in the run's environment
  int64_t daemon_peak_kb_ = 0;  // the daemon's own peak RSS once the child had exec'd
  std::atomic<int> stop_reason_{static_cast<int>(StopReason::none)};
  std::atomic<bool> stop_pending_{false};  // stop() called, not yet seen by the loop
  std::mutex waker_mu_;                    // guards waker_
  std::shared_ptr<UniqueFd> waker_;        // the loop's eventfd, once a loop drives this child
  // Loop-thread state.
  SteadyTime started_{};
  SteadyTime deadline_ = SteadyTime::max();  // timeout, or SIGKILL after graceful_stop; max = none
  bool term_sent_ = false;
  bool open_[2] = {true, true};
  bool reaped_ = false;
};

// One thread and one epoll loop that supervise every child handed to them:
// output goes to each child's sink as it arrives, timeouts and stop requests
// (SIGTERM, SIGKILL after graceful_stop) are timers of the loop, and an
// exited child is reaped (wait4, resource usage) and its Outcome handed to
// its EndHandler, all on the loop's thread. Thread-safe: watch() may be
// called from any thread.
class Supervisor {
 public:
  // Starts the loop's thread. When the loop cannot be set up (no epoll or
  // eventfd), watch() fails.
  Supervisor();
  // Stops the loop. Children still watched are killed (SIGKILL to their
  // groups) and reaped; their handlers are not called. Joins the thread.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Hands a started child to the loop; `sink` and `on_end` are called on
  // the loop's thread, `on_end` exactly once, after the last chunk. The
  // loop keeps `exec` until then; the caller may keep it too (to stop()
  // it). Requires: `exec` not waited for, nor watched, before. Errors: io
  // when the loop could not be set up (the child is then left unwatched).
  Status watch(std::shared_ptr<Execution> exec, OutputSink sink, EndHandler on_end);

  // Children watched now.
  size_t size() const;

 private:
  std::unique_ptr<detail::Loop> loop_;
  std::thread thread_;
};

// A short human reading of an outcome: "exit code 0", "killed by SIGKILL",
// "timed out after 5s", "command not found (exit code 127)"; leftovers are
// appended ("; 1 detached process(es) left running: 4242 (sleep)").
std::string describe(const Outcome& outcome);

}  // namespace cronkeep::runner
