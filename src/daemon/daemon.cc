#include "daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "base/unique_fd.h"
#include "base/units.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace cronkeep::daemon {
namespace {

// Checkpoints run here, off the scheduler's path, so no fire waits for the
// WAL's fsync (DESIGN.md "Writing to SQLite without stalling the clock").
constexpr auto kCheckpointEvery = std::chrono::seconds(5);

}  // namespace

int run(const config::Config& config) {
  const std::string& data_dir = config.daemon.data_dir;
  std::error_code ec;
  std::filesystem::create_directories(data_dir + "/logs", ec);
  if (ec) {
    spdlog::error("cannot create data directory {}: {}", data_dir, ec.message());
    return 1;
  }
  UniqueFd lock_fd(::open((data_dir + "/cronkeep.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock_fd.valid() || ::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    spdlog::error("data directory {} is in use by another cronkeep daemon ({})", data_dir,
                  lock_fd.valid() ? std::strerror(errno) : "cannot open lock file");
    return 1;
  }
  if (::ftruncate(lock_fd.get(), 0) == 0) {
    const std::string pid = std::to_string(::getpid()) + "\n";
    [[maybe_unused]] ssize_t n = ::write(lock_fd.get(), pid.data(), pid.size());
  }

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto store = store::open_sqlite(data_dir + "/cronkeep.db");
  if (!store) {
    spdlog::error("{}", store.error().message);
    return 1;
  }
  SystemClock clock;
  scheduler::Scheduler scheduler(config, **store, clock,
                                 scheduler::Options{data_dir, config.daemon.shutdown_timeout, 0});
  if (auto st = scheduler.start(); !st) {
    spdlog::error("cannot start the scheduler: {}", st.error().message);
    return 1;
  }
  spdlog::info("cronkeep started: {} task(s), data in {}", config.tasks.size(), data_dir);

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread checkpointer([&] {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, kCheckpointEvery, [&] { return stopping; })) {
      lock.unlock();
      if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
      lock.lock();
    }
  });
  std::thread loop([&] { scheduler.run_loop(); });

  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    spdlog::info("SIGHUP: configuration reload is not supported yet; restart the daemon to apply changes");
  }
  spdlog::info("{} received: stopping (running runs get {})", strsignal(sig),
               format_duration(config.daemon.shutdown_timeout));
  scheduler.shutdown();
  loop.join();
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  checkpointer.join();
  if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
  spdlog::info("cronkeep stopped");
  return 0;
}

}  // namespace cronkeep::daemon
