// The runner: posix_spawn into a new process group, one pipe for stdout and
// one for stderr, a pidfd to learn of the exit without polling; one epoll
// loop (detail::Loop) drives any number of children, with an eventfd so
// stop() and new children wake it.
#include "runner/runner.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
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
#include <map>
#include <set>
#include <thread>
#include <vector>

#include <pthread.h>
#include <spdlog/spdlog.h>

#include "base/thread.h"
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
  exec->started_ = std::chrono::steady_clock::now();
  if (!exec->pidfd_.valid()) {
    const int err = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    exec->reaped_ = true;
    return fail(ErrorCode::io, "pidfd: " + errno_text(err));
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
  stop_pending_.store(true);
  std::shared_ptr<UniqueFd> waker;
  {
    std::lock_guard lock(waker_mu_);
    waker = waker_;
  }
  // The copy keeps the eventfd open while it is written, whatever its loop does.
  if (waker) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(waker->get(), &one, sizeof one);
  }
}

void Execution::attach(std::shared_ptr<UniqueFd> waker) {
  std::lock_guard lock(waker_mu_);
  waker_ = std::move(waker);
  if (command_.timeout.count() > 0 && !term_sent_) deadline_ = started_ + command_.timeout;
}

bool Execution::take_stop_request() { return stop_pending_.exchange(false); }

void Execution::begin_stop(StopReason reason, SteadyTime now) {
  int expected = static_cast<int>(StopReason::none);
  stop_reason_.compare_exchange_strong(expected, static_cast<int>(reason));
  if (term_sent_ || reaped_) return;
  term_sent_ = true;
  signal_group(SIGTERM);
  deadline_ = now + command_.graceful_stop;
}

void Execution::on_deadline(SteadyTime now) {
  if (!term_sent_) {
    begin_stop(StopReason::timeout, now);
  } else {
    signal_group(SIGKILL);
    deadline_ = SteadyTime::max();
  }
}

bool Execution::read_available(int which, size_t budget, const OutputSink& sink) {
  static thread_local std::vector<char> buffer(64 * 1024);
  const Stream stream = which == 0 ? Stream::out : Stream::err;
  const int fd = which == 0 ? out_.get() : err_.get();
  while (budget > 0 && open_[which]) {
    const ssize_t n = ::read(fd, buffer.data(), std::min(buffer.size(), budget));
    if (n > 0) {
      sink(std::string_view(buffer.data(), static_cast<size_t>(n)), stream);
      budget -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) open_[which] = false;
    else if (errno == EINTR) continue;
    else if (errno != EAGAIN) open_[which] = false;
    break;
  }
  return open_[which];
}

Outcome Execution::reap(const OutputSink& sink) {
  Outcome out;
  int status = 0;
  rusage usage{};
  pid_t r;
  // The pidfd is readable: the shell is a zombie and wait4 returns at once.
  do r = ::wait4(pid_, &status, 0, &usage);
  while (r < 0 && errno == EINTR);
  // Whatever the shell wrote before it exited is in the pipe now.
  for (int which : {0, 1})
    if (open_[which]) read_available(which, kDrainAfterExit, sink);
  // A stopped run leaves no stragglers in its group, nor outside it (setsid,
  // double fork); a run that ended by itself keeps cron's behaviour
  // (background children live on) and says so. Looking for detached ones
  // reads every process's environ, so after a normal end it is done only
  // while something still holds the output pipe.
  if (term_sent_) {
    ::kill(-pid_, SIGKILL);
    out.killed = find_marked(spawn_id_);
    // Members of the run's group were just killed with it (one may not be
    // gone yet); only a process that left the group (setsid) is detached.
    std::erase_if(out.killed, [this](const Leftover& l) { return ::getpgid(l.pid) == pid_; });
    for (const Leftover& l : out.killed) ::kill(l.pid, SIGKILL);
  } else if (open_[0] || open_[1]) {
    out.left_running = find_marked(spawn_id_);
  }
  reaped_ = true;
  deadline_ = SteadyTime::max();
  {
    std::lock_guard lock(waker_mu_);
    waker_.reset();
  }
  out.duration = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started_);
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

namespace detail {

// The event loop that Supervisor runs on its thread and Execution::wait on
// the caller's: one epoll set holding each child's pidfd and open pipes and
// an eventfd that wakes it (a new child, a stop request, the end); timers
// in an ordered set (deadline, child). Level-triggered: a pipe read up to
// its budget and not empty yet is reported again, so one chatty child
// cannot starve the others.
class Loop {
 public:
  Loop()
      : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        wake_(std::make_shared<UniqueFd>(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))) {
    if (!valid()) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeKey;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_->get(), &ev) != 0) epoll_.reset();
  }

  // Kills and reaps what is still watched (no handler is called).
  ~Loop() {
    std::lock_guard lock(mu_);
    for (auto& [key, child] : children_) kill_and_reap(*child.exec);
    for (Child& child : incoming_) kill_and_reap(*child.exec);
  }

  bool valid() const { return epoll_.valid() && wake_->valid(); }

  Status add(std::shared_ptr<Execution> exec, OutputSink sink, EndHandler on_end) {
    if (!valid()) return fail(ErrorCode::io, "the children's loop could not be set up (epoll/eventfd)");
    {
      std::lock_guard lock(mu_);
      incoming_.push_back(Child{std::move(exec), std::move(sink), std::move(on_end)});
      ++count_;
    }
    wake();
    return {};
  }

  void request_stop() {
    stop_.store(true);
    wake();
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return count_;
  }

  // Runs until request_stop(), or, with `until_empty`, until no child is left.
  void run(bool until_empty) {
    std::vector<epoll_event> events(128);
    adopt_incoming();
    while (!stop_.load() && !(until_empty && children_.empty())) {
      const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms());
      if (n < 0 && errno != EINTR) {
        spdlog::error("children's loop: epoll_wait: {}", errno_text(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // never spin
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t data = events[static_cast<size_t>(i)].data.u64;
        if (data == kWakeKey) {
          uint64_t v;
          [[maybe_unused]] ssize_t r = ::read(wake_->get(), &v, sizeof v);
          adopt_incoming();
          const SteadyTime now = std::chrono::steady_clock::now();
          for (auto& [key, child] : children_)
            if (child.exec->take_stop_request()) stop_child(key, child, now);
          continue;
        }
        const uint64_t key = data >> 2;
        auto it = children_.find(key);
        if (it == children_.end()) continue;  // ended earlier in this batch
        Child& child = it->second;
        const int kind = static_cast<int>(data & 3);
        if (kind == kPid) {
          end_child(it);
        } else {
          const int which = kind == kOut ? 0 : 1;
          if (!child.exec->read_available(which, 4 * 64 * 1024, child.sink)) unregister(which == 0 ? child.exec->out_.get() : child.exec->err_.get());
        }
      }
      fire_timers();
    }
  }

 private:
  static constexpr uint64_t kWakeKey = 0;
  static constexpr int kPid = 1, kOut = 2, kErr = 3;
  struct Child {
    std::shared_ptr<Execution> exec;
    OutputSink sink;
    EndHandler on_end;
    SteadyTime armed = SteadyTime::max();  // the deadline in timers_
  };

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_->get(), &one, sizeof one);
  }

  static void kill_and_reap(Execution& exec) {
    if (exec.reaped_ || exec.pid_ <= 0) return;
    ::kill(-exec.pid_, SIGKILL);
    ::waitpid(exec.pid_, nullptr, 0);
    exec.reaped_ = true;
  }

  void register_fd(int fd, uint64_t data) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      spdlog::error("children's loop: epoll_ctl: {}", errno_text(errno));
  }

  void unregister(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

  void adopt_incoming() {
    std::vector<Child> taken;
    {
      std::lock_guard lock(mu_);
      taken.swap(incoming_);
    }
    const SteadyTime now = std::chrono::steady_clock::now();
    for (Child& c : taken) {
      const uint64_t key = next_key_++;
      Execution& exec = *c.exec;
      exec.attach(wake_);
      register_fd(exec.pidfd_.get(), key << 2 | kPid);
      register_fd(exec.out_.get(), key << 2 | kOut);
      register_fd(exec.err_.get(), key << 2 | kErr);
      auto [it, inserted] = children_.emplace(key, std::move(c));
      // A stop asked for before the loop had the child.
      if (exec.take_stop_request()) stop_child(key, it->second, now);
      else rearm(key, it->second);
    }
  }

  void rearm(uint64_t key, Child& child) {
    if (child.armed != SteadyTime::max()) timers_.erase({child.armed, key});
    child.armed = child.exec->deadline_;
    if (child.armed != SteadyTime::max()) timers_.insert({child.armed, key});
  }

  void stop_child(uint64_t key, Child& child, SteadyTime now) {
    child.exec->begin_stop(static_cast<StopReason>(child.exec->stop_reason_.load()), now);
    rearm(key, child);
  }

  void fire_timers() {
    const SteadyTime now = std::chrono::steady_clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      const uint64_t key = timers_.begin()->second;
      timers_.erase(timers_.begin());
      auto it = children_.find(key);
      if (it == children_.end()) continue;
      it->second.armed = SteadyTime::max();
      it->second.exec->on_deadline(now);
      rearm(key, it->second);
    }
  }

  int timeout_ms() const {
    if (timers_.empty()) return -1;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
  }

  void end_child(std::map<uint64_t, Child>::iterator it) {
    Child child = std::move(it->second);
    const uint64_t key = it->first;
    children_.erase(it);
    if (child.armed != SteadyTime::max()) timers_.erase({child.armed, key});
    Execution& exec = *child.exec;
    unregister(exec.pidfd_.get());
    Outcome outcome = exec.reap(child.sink);
    unregister(exec.out_.get());
    unregister(exec.err_.get());
    {
      std::lock_guard lock(mu_);
      --count_;
    }
    if (child.on_end) child.on_end(std::move(outcome));
  }

  UniqueFd epoll_;
  std::shared_ptr<UniqueFd> wake_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;        // guards incoming_ and count_
  std::vector<Child> incoming_;  // handed over, not yet in the epoll set
  size_t count_ = 0;             // incoming_ + children_
  // Loop-thread state.
  std::map<uint64_t, Child> children_;
  std::set<std::pair<SteadyTime, uint64_t>> timers_;
  uint64_t next_key_ = 1;
};

}  // namespace detail

Outcome Execution::wait(const OutputSink& sink) {
  // One child, the caller's thread: the Supervisor's loop, run here. The
  // shared_ptr does not own this Execution.
  detail::Loop loop;
  Outcome outcome;
  const std::shared_ptr<Execution> self(this, [](Execution*) {});
  if (auto st = loop.add(self, sink, [&](Outcome o) { outcome = std::move(o); }); !st) {
    spdlog::error("{}", st.error().message);
    ::kill(-pid_, SIGKILL);
    pid_t r;
    int status = 0;
    do r = ::waitpid(pid_, &status, 0);
    while (r < 0 && errno == EINTR);
    reaped_ = true;
    if (r == pid_ && WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
    return outcome;
  }
  loop.run(/*until_empty=*/true);
  return outcome;
}

Supervisor::Supervisor() : loop_(std::make_unique<detail::Loop>()) {
  if (!loop_->valid()) {
    spdlog::error("children's loop: cannot set up epoll/eventfd: {}", errno_text(errno));
    return;
  }
  thread_ = std::thread([this] {
    thread::set_name("ck-children");
    thread::prefer_short_latency();
    loop_->run(/*until_empty=*/false);
  });
}

Supervisor::~Supervisor() {
  loop_->request_stop();
  if (thread_.joinable()) thread_.join();
}

Status Supervisor::watch(std::shared_ptr<Execution> exec, OutputSink sink, EndHandler on_end) {
  return loop_->add(std::move(exec), std::move(sink), std::move(on_end));
}

size_t Supervisor::size() const { return loop_->size(); }

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
