// The runner: posix_spawn into a new process group, one pipe for stdout and
// stderr, a pidfd to learn of the exit without polling, an eventfd so stop()
// can wake the pump.
#include "runner/runner.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/units.h"

extern char** environ;

namespace cronkeep::runner {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;

// After the shell exits, what it wrote is at most a pipe buffer (64 KiB by
// default, up to 1 MiB when raised); read no more than this from stragglers.
constexpr size_t kDrainAfterExit = 1 << 20;

std::string errno_text(int err) { return std::strerror(err); }

constexpr std::string_view kSpawnIdName = "CRONKEEP_SPAWN_ID";

// What a service manager gives the daemon alone: a task that inherited
// them could speak for the daemon (sd_notify) or be taken for it.
constexpr std::string_view kDaemonOnly[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};

// The daemon's environment, with `extra` added or replacing, and the
// runner's own entry (kSpawnIdName) and the service manager's (kDaemonOnly)
// left out: the caller adds the run's.
std::vector<std::string> build_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    std::string_view entry(*e);
    const auto eq = entry.find('=');
    const std::string_view name = eq == std::string_view::npos ? entry : entry.substr(0, eq);
    if (eq != std::string_view::npos && (extra.count(std::string(name)) || name == kSpawnIdName ||
                                      std::find(std::begin(kDaemonOnly), std::end(kDaemonOnly), name) !=
                                          std::end(kDaemonOnly)))
      continue;
    out.emplace_back(entry);
  }
  for (const auto& [k, v] : extra)
    if (k != kSpawnIdName) out.push_back(k + "=" + v);
  return out;
}

// Adds to `actions` the closing of every descriptor from 3 up. glibc 2.34+
// does it in the child with close_range(3, ~0U, 0), falling back to a walk
// of /proc/self/fd on kernels without close_range. Elsewhere, the
// descriptors open now are closed one by one (one opened by another thread
// between this walk and the spawn could still slip through). Returns 0 or
// an errno value.
int close_all_but_stdio(posix_spawn_file_actions_t* actions) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  return posix_spawn_file_actions_addclosefrom_np(actions, 3);
#else
  std::vector<int> open_fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return errno;
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0' && fd > 2 && fd != own) open_fds.push_back(static_cast<int>(fd));
  }
  ::closedir(dir);
  for (int fd : open_fds)
    if (const int err = posix_spawn_file_actions_addclose(actions, fd); err != 0) return err;
  return 0;
#endif
}

// Who a task with `user` runs as, looked up in the parent: the child of a
// multithreaded daemon may only make async-signal-safe calls, and
// initgroups (NSS) is not one, so the supplementary groups are computed
// here (getgrouplist) and only set in the child (setgroups).
struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string name;
  std::string home;
};

Result<Identity> resolve_identity(const std::string& user, const std::string& group) {
  Identity id;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int err;
  while ((err = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20))
    buf.resize(buf.size() * 2);
  if (err != 0) return fail(ErrorCode::io, "looking up user " + user + ": " + errno_text(err));
  if (!found) return fail(ErrorCode::invalid_argument, "unknown user " + user);
  id.uid = pw.pw_uid;
  id.gid = pw.pw_gid;
  id.name = pw.pw_name;
  id.home = pw.pw_dir ? pw.pw_dir : "/";
  if (!group.empty()) {
    std::vector<char> gbuf(65536);
    struct group gr{};
    struct group* gfound = nullptr;
    while ((err = ::getgrnam_r(group.c_str(), &gr, gbuf.data(), gbuf.size(), &gfound)) == ERANGE &&
           gbuf.size() < (1u << 24))
      gbuf.resize(gbuf.size() * 2);
    if (err != 0) return fail(ErrorCode::io, "looking up group " + group + ": " + errno_text(err));
    if (!gfound) return fail(ErrorCode::invalid_argument, "unknown group " + group);
    id.gid = gr.gr_gid;
  }
  int n = 32;
  id.groups.resize(static_cast<size_t>(n));
  for (int tries = 0; tries < 8; ++tries) {
    int got = n;
    if (::getgrouplist(id.name.c_str(), id.gid, id.groups.data(), &got) >= 0) {
      id.groups.resize(static_cast<size_t>(got));
      return id;
    }
    n = std::max(got, n * 2);
    id.groups.resize(static_cast<size_t>(n));
  }
  return fail(ErrorCode::io, "too many groups for user " + user);
}

// Which step of the child's set-up failed (fork_exec's report).
enum class ChildStep : int { setup, groups, gid, uid, workdir, exec };

std::string describe_step(ChildStep step, const Identity& id, const std::string& workdir) {
  switch (step) {
    case ChildStep::setup: return "setting up the child's descriptors and signals";
    case ChildStep::groups: return "setting the supplementary groups of user " + id.name;
    case ChildStep::gid: return "switching to group id " + std::to_string(id.gid);
    case ChildStep::uid: return "switching to user " + id.name + " (the daemon must run as root)";
    case ChildStep::workdir: return "entering workdir " + workdir + " as user " + id.name;
    case ChildStep::exec: return "starting /bin/sh as user " + id.name;
  }
  return "starting the child";
}

// fork + exec for a task that runs as another user (posix_spawn cannot
// change the user): the same child as posix_spawn's in Execution::start
// (own process group, stdin /dev/null, stdout/stderr to the pipes, default
// signals and an empty mask, every other descriptor closed), plus the
// groups, the user, and workdir entered as that user. Between fork and
// exec only async-signal-safe calls are made, on values prepared before.
// A failure before exec is written to a close-on-exec pipe (step, errno),
// so the parent reports it as start()'s error. Returns the pid or an error.
Result<pid_t> fork_exec(const Identity& id, const std::string& workdir, int out_fd, int err_fd, char* const argv[],
                        char* const envp[]) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return fail(ErrorCode::io, "pipe: " + errno_text(errno));
  UniqueFd report_read(report[0]), report_write(report[1]);
  const int report_fd = report_write.get();
  rlimit files{};
  int max_fd = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
    max_fd = static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20));
  const char* dir = workdir.c_str();
  const gid_t* groups = id.groups.data();
  const size_t ngroups = id.groups.size();

  // Every signal blocked across fork, so no handler of the daemon's runs in
  // the child before the child resets them.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto die = [report_fd](ChildStep step) {
      const int what[2] = {static_cast<int>(step), errno};
      [[maybe_unused]] ssize_t n = ::write(report_fd, what, sizeof what);
      ::_exit(127);
    };
    if (::setpgid(0, 0) != 0) die(ChildStep::setup);
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // SIGKILL/SIGSTOP refuse: fine
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) die(ChildStep::setup);
    // Descriptors from 3 up go, but the report pipe (close-on-exec).
#ifdef SYS_close_range
    const bool ranged = ::syscall(SYS_close_range, 3u, static_cast<unsigned>(report_fd - 1), 0u) == 0 &&
                        ::syscall(SYS_close_range, static_cast<unsigned>(report_fd + 1), ~0u, 0u) == 0;
#else
    const bool ranged = false;
#endif
    if (!ranged)
      for (int fd = 3; fd < max_fd; ++fd)
        if (fd != report_fd) ::close(fd);
    if (::setgroups(ngroups, groups) != 0) die(ChildStep::groups);
    if (::setgid(id.gid) != 0) die(ChildStep::gid);
    if (::setuid(id.uid) != 0) die(ChildStep::uid);
    if (::chdir(dir) != 0) die(ChildStep::workdir);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve("/bin/sh", argv, envp);
    die(ChildStep::exec);
  }
  const int fork_err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fail(ErrorCode::io, "fork: " + errno_text(fork_err));
  report_write.reset();
  int what[2] = {0, 0};
  ssize_t n;
  do n = ::read(report_read.get(), what, sizeof what);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof what)) {
    ::waitpid(pid, nullptr, 0);
    return fail(ErrorCode::io, describe_step(static_cast<ChildStep>(what[0]), id, workdir) + ": " + errno_text(what[1]));
  }
  return pid;
}

// The entry that marks every process of one execution. Unique in the
// daemon (its pid and a counter) and across daemons (the pid).
std::string next_spawn_id() {
  static std::atomic<uint64_t> counter{0};
  return std::string(kSpawnIdName) + "=" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// Live processes whose environment holds `entry` (a whole NAME=VALUE entry).
// Best effort: a process that replaced its environment is not found; one
// of another user is unreadable unless the daemon runs as root. Zombies
// have an empty environ and are skipped.
std::vector<Leftover> find_marked(const std::string& entry) {
  std::vector<Leftover> out;
  DIR* proc = ::opendir("/proc");
  if (!proc) return out;
  std::string environ_text;
  std::vector<char> buffer(64 * 1024);
  while (const dirent* d = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    UniqueFd fd(::open(("/proc/" + std::string(d->d_name) + "/environ").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    environ_text.clear();
    ssize_t n;
    while (environ_text.size() < (1u << 20) && (n = ::read(fd.get(), buffer.data(), buffer.size())) > 0)
      environ_text.append(buffer.data(), static_cast<size_t>(n));
    bool found = false;
    for (size_t at = 0; at < environ_text.size() && !found;) {
      const size_t nul = environ_text.find('\0', at);
      const size_t len = (nul == std::string::npos ? environ_text.size() : nul) - at;
      found = std::string_view(environ_text).substr(at, len) == entry;
      at += len + 1;
    }
    if (!found) continue;
    Leftover l;
    l.pid = static_cast<pid_t>(pid);
    UniqueFd comm(::open(("/proc/" + std::string(d->d_name) + "/comm").c_str(), O_RDONLY | O_CLOEXEC));
    if (comm.valid() && (n = ::read(comm.get(), buffer.data(), 64)) > 0)
      l.name.assign(buffer.data(), static_cast<size_t>(n) - (buffer[static_cast<size_t>(n) - 1] == '\n' ? 1 : 0));
    out.push_back(std::move(l));
  }
  ::closedir(proc);
  return out;
}

std::string list_leftovers(const std::vector<Leftover>& list) {
  std::string text;
  for (size_t i = 0; i < list.size() && i < 5; ++i)
    text += (i ? ", " : "") + std::to_string(list[i].pid) + (list[i].name.empty() ? "" : " (" + list[i].name + ")");
  if (list.size() > 5) text += ", …";
  return text;
}

constexpr SteadyTime kNever = SteadyTime::max();

int poll_timeout_ms(SteadyTime deadline) {
  if (deadline == kNever) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGKILL: return "SIGKILL";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGPIPE: return "SIGPIPE";
    case SIGQUIT: return "SIGQUIT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGALRM: return "SIGALRM";
    default: return nullptr;
  }
}

}  // namespace

Result<std::unique_ptr<Execution>> Execution::start(const Command& command) {
  struct stat st{};
  if (command.workdir.empty() || ::stat(command.workdir.c_str(), &st) != 0)
    return fail(ErrorCode::invalid_argument,
                "workdir " + command.workdir + ": " + (command.workdir.empty() ? "not set" : errno_text(errno)));
  if (!S_ISDIR(st.st_mode)) return fail(ErrorCode::invalid_argument, "workdir " + command.workdir + ": not a directory");
  if (command.user.empty() && !command.group.empty())
    return fail(ErrorCode::invalid_argument, "group " + command.group + " needs a user");
  std::optional<Identity> identity;
  if (!command.user.empty()) {
    auto id = resolve_identity(command.user, command.group);
    if (!id) return tl::unexpected(id.error());
    identity = std::move(*id);
  }

  int fds[2], efds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(ErrorCode::io, "pipe: " + errno_text(errno));
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  if (::pipe2(efds, O_CLOEXEC) != 0) return fail(ErrorCode::io, "pipe: " + errno_text(errno));
  UniqueFd err_read(efds[0]), err_write(efds[1]);

  std::map<std::string, std::string> extra = command.env;
  if (identity) {
    // What login(1) and cron give a user's job, unless the task sets them.
    extra.try_emplace("HOME", identity->home);
    extra.try_emplace("USER", identity->name);
    extra.try_emplace("LOGNAME", identity->name);
  }
  std::vector<std::string> env = build_environment(extra);
  const std::string spawn_id = next_spawn_id();
  env.push_back(spawn_id);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command.shell_command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};

  pid_t pid = -1;
  rusage self{};
  if (identity) {
    auto forked = fork_exec(*identity, command.workdir, write_end.get(), err_write.get(), argv, envp.data());
    if (!forked) return tl::unexpected(forked.error());
    pid = *forked;
    // The child has exec'd (its report pipe closed): as below.
    ::getrusage(RUSAGE_SELF, &self);
  } else {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
    posix_spawn_file_actions_addchdir_np(&actions, command.workdir.c_str());
    // Nothing but 0-2 reaches the task, whatever the daemon or a library left
    // without O_CLOEXEC (an accepted socket, a database file): the last action
    // closes every other descriptor in the child.
    if (const int err = close_all_but_stdio(&actions); err != 0) {
      posix_spawn_file_actions_destroy(&actions);
      return fail(ErrorCode::io, "posix_spawn_file_actions: " + errno_text(err));
    }

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t no_signals, default_signals;
    sigemptyset(&no_signals);
    sigfillset(&default_signals);
    posix_spawnattr_setsigmask(&attr, &no_signals);  // the daemon blocks signals; the child must not inherit that
    posix_spawnattr_setsigdefault(&attr, &default_signals);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp.data());
    // glibc's posix_spawn returns once the child has exec'd (CLONE_VM |
    // CLONE_VFORK), and the exec recorded the peak of the memory it shared
    // with the daemon as the child's ru_maxrss. The daemon's peak now is at
    // least that (peaks only grow).
    ::getrusage(RUSAGE_SELF, &self);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return fail(ErrorCode::io, "cannot start /bin/sh in " + command.workdir + ": " + errno_text(rc));
  }
  write_end.reset();
  err_write.reset();

  auto exec = std::unique_ptr<Execution>(new Execution());
  exec->pid_ = pid;
  exec->command_ = command;
  exec->daemon_peak_kb_ = self.ru_maxrss;
  exec->spawn_id_ = spawn_id;
  exec->out_ = std::move(read_end);
  exec->err_ = std::move(err_read);
  // glibc 2.36's <sys/pidfd.h> lacks extern "C"; the syscall is stable.
  exec->pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  exec->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!exec->pidfd_.valid() || !exec->wake_.valid()) {
    const int err = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    exec->reaped_ = true;
    return fail(ErrorCode::io, "pidfd/eventfd: " + errno_text(err));
  }
  ::fcntl(exec->out_.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(exec->err_.get(), F_SETFL, O_NONBLOCK);
  return exec;
}

Execution::~Execution() {
  if (!reaped_ && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Execution::signal_group(int sig) {
  // The group id equals the shell's pid. After the shell is reaped the id may
  // be reused, so signals go out only while it is known to be alive.
  if (!reaped_) ::kill(-pid_, sig);
}

void Execution::stop(StopReason reason) {
  int expected = static_cast<int>(StopReason::none);
  stop_reason_.compare_exchange_strong(expected, static_cast<int>(reason));
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

Outcome Execution::wait(const OutputSink& sink) {
  const SteadyTime started = std::chrono::steady_clock::now();
  SteadyTime deadline = kNever;
  if (command_.timeout.count() > 0) deadline = started + command_.timeout;
  bool term_sent = false;
  bool exited = false;
  bool open[2] = {true, true};
  const int pipe_fd[2] = {out_.get(), err_.get()};
  static thread_local std::vector<char> buffer(64 * 1024);

  // Reads until the pipe is empty, or `budget` bytes when a leftover
  // background process keeps writing after the shell has gone.
  auto read_available = [&](int which, size_t budget) {
    const Stream stream = which == 0 ? Stream::out : Stream::err;
    while (budget > 0) {
      const ssize_t n = ::read(pipe_fd[which], buffer.data(), std::min(buffer.size(), budget));
      if (n > 0) {
        sink(std::string_view(buffer.data(), static_cast<size_t>(n)), stream);
        budget -= static_cast<size_t>(n);
        continue;
      }
      if (n == 0) open[which] = false;
      else if (errno == EINTR) continue;
      else if (errno != EAGAIN) open[which] = false;
      return;
    }
  };

  auto begin_stop = [&](StopReason reason) {
    int expected = static_cast<int>(StopReason::none);
    stop_reason_.compare_exchange_strong(expected, static_cast<int>(reason));
    if (term_sent) return;
    term_sent = true;
    signal_group(SIGTERM);
    deadline = std::chrono::steady_clock::now() + command_.graceful_stop;
  };

  while (!exited) {
    pollfd fds[4] = {{pidfd_.get(), POLLIN, 0},
                     {wake_.get(), POLLIN, 0},
                     {open[0] ? pipe_fd[0] : -1, POLLIN, 0},
                     {open[1] ? pipe_fd[1] : -1, POLLIN, 0}};
    const int rc = ::poll(fds, 4, poll_timeout_ms(deadline));
    if (rc < 0 && errno != EINTR) break;
    if (fds[2].revents) read_available(0, 4 * buffer.size());
    if (fds[3].revents) read_available(1, 4 * buffer.size());
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(wake_.get(), &v, sizeof v);
      begin_stop(static_cast<StopReason>(stop_reason_.load()));
    }
    if (fds[0].revents & POLLIN) exited = true;
    if (!exited && deadline != kNever && std::chrono::steady_clock::now() >= deadline) {
      if (!term_sent) {
        begin_stop(StopReason::timeout);
      } else {
        signal_group(SIGKILL);
        deadline = kNever;
      }
    }
  }

  Outcome out;
  int status = 0;
  rusage usage{};
  pid_t r;
  do r = ::wait4(pid_, &status, 0, &usage);
  while (r < 0 && errno == EINTR);
  // Whatever the shell wrote before it exited is in the pipe now.
  for (int which : {0, 1})
    if (open[which]) read_available(which, kDrainAfterExit);
  // A stopped run leaves no stragglers in its group, nor outside it (setsid,
  // double fork); a run that ended by itself keeps cron's behaviour
  // (background children live on) and says so. Looking for detached ones
  // reads every process's environ, so after a normal end it is done only
  // while something still holds the output pipe.
  if (term_sent) {
    ::kill(-pid_, SIGKILL);
    out.killed = find_marked(spawn_id_);
    // Members of the run's group were just killed with it (one may not be
    // gone yet); only a process that left the group (setsid) is detached.
    std::erase_if(out.killed, [this](const Leftover& l) { return ::getpgid(l.pid) == pid_; });
    for (const Leftover& l : out.killed) ::kill(l.pid, SIGKILL);
  } else if (open[0] || open[1]) {
    out.left_running = find_marked(spawn_id_);
  }
  reaped_ = true;
  out.duration = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  if (r == pid_) {
    if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) out.signal = WTERMSIG(status);
    out.cpu_ms = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000 +
                 (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000;
    // Above the daemon's peak at spawn, the figure can only be the task's.
    if (usage.ru_maxrss > daemon_peak_kb_) out.max_rss_kb = usage.ru_maxrss;
  }
  out.stopped = static_cast<StopReason>(stop_reason_.load());
  return out;
}

std::string describe(const Outcome& o) {
  std::string text;
  if (o.exit_code) {
    text = "exit code " + std::to_string(*o.exit_code);
    if (*o.exit_code == 127) text = "command not found (exit code 127)";
    if (*o.exit_code == 126) text = "command not executable (exit code 126)";
  } else if (o.signal) {
    const char* name = signal_name(*o.signal);
    text = std::string("killed by ") + (name ? name : "signal " + std::to_string(*o.signal));
  } else {
    text = "ended with unknown status";
  }
  switch (o.stopped) {
    case StopReason::none: break;
    case StopReason::timeout: text = "timed out; " + text; break;
    case StopReason::cancelled: text = "cancelled; " + text; break;
    case StopReason::log_overflow: text = "log overflow; " + text; break;
  }
  if (!o.killed.empty())
    text += "; killed " + std::to_string(o.killed.size()) + " detached process(es): " + list_leftovers(o.killed);
  if (!o.left_running.empty())
    text += "; " + std::to_string(o.left_running.size()) +
            " detached process(es) left running: " + list_leftovers(o.left_running);
  return text;
}

}  // namespace cronkeep::runner
