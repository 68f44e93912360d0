#include "daemon/daemon.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "base/file_lock.h"
#include "base/units.h"
#include "events/events.h"
#include "http/http.h"
#include "layout/layout.h"
#include "logs/logs.h"
#include "ops/local.h"
#include "ops/remote.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace cronkeep::daemon {
namespace {

// Checkpoints run here, off the scheduler's path, so no fire waits for the
// WAL's fsync (DESIGN.md "Writing to SQLite without stalling the clock"):
// every 5 s, and at once when the WAL passes 16 MB (checked each second),
// so a busy scheduler cannot grow it without bound between compactor runs.
constexpr auto kCheckpointEvery = std::chrono::seconds(5);
constexpr auto kWalCheckEvery = std::chrono::seconds(1);
constexpr int64_t kWalCheckpointBytes = 16 << 20;

retention::CompactMode compact_mode(config::Vacuum v) {
  switch (v) {
    case config::Vacuum::incremental: return retention::CompactMode::incremental;
    case config::Vacuum::full: return retention::CompactMode::full;
    case config::Vacuum::off: return retention::CompactMode::checkpoint_only;
  }
  return retention::CompactMode::incremental;
}

// A system task's body runs on its run's own worker thread: deleting is
// bulk work, so that thread yields the CPU to the scheduler's.
void lower_own_priority() {
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  if (::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)) < 10) ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 10);
}

}  // namespace

std::vector<scheduler::SystemTask> system_tasks(const config::Config& config, store::Store& store,
                                                retention::Executor& executor, Clock& clock) {
  const retention::Policy policy = retention::policy_from(config);
  const retention::CompactMode mode = compact_mode(config.compactor.vacuum);
  return {
      {retention::kRetentionTask, config.retention.schedule,
       [&store, &executor, &clock, policy](int64_t run_id) -> Result<std::string> {
         lower_own_priority();
         // One node at a time (several nodes, one database); the run, and
         // so the node that did the work, is recorded either way.
         Result<std::string> out = fail(ErrorCode::busy, "not run");
         auto ran = store.exclusively(retention::kRetentionTask, [&] {
           const TimePoint now = clock.now();
           auto report = retention::sweep(store, executor, policy, now);
           if (!report) return void(out = tl::unexpected(report.error()));
           if (auto st = store.record_maintenance(store::MaintenanceFigures{run_id, retention::kRetentionTask,
                                                                            report->rows, report->files_deleted,
                                                                            report->file_errors, report->log_bytes, 0});
               !st)
             return void(out = tl::unexpected(st.error()));
           std::string message = retention::describe(*report, policy, now) + " (node " + store.node() + ")";
           if (report->file_errors > 0) out = fail(ErrorCode::io, message);
           else out = message;
         });
         if (!ran) return tl::unexpected(ran.error());
         if (!*ran) return "not run: node " + store.node() + " found another node sweeping";
         return out;
       }, config.retention.parsed},
      {retention::kCompactorTask, config.compactor.schedule, [&store, mode](int64_t run_id) -> Result<std::string> {
         lower_own_priority();
         Result<std::string> out = fail(ErrorCode::busy, "not run");
         auto ran = store.exclusively(retention::kCompactorTask, [&] {
           auto report = retention::compact(store, mode);
           if (!report) return void(out = tl::unexpected(report.error()));
           if (auto st = store.record_maintenance(
                   store::MaintenanceFigures{run_id, retention::kCompactorTask, 0, 0, 0, 0,
                                             std::max<int64_t>(0, report->bytes_before - report->bytes_after)});
               !st)
             return void(out = tl::unexpected(st.error()));
           out = retention::describe(*report) + " (node " + store.node() + ")";
         });
         if (!ran) return tl::unexpected(ran.error());
         if (!*ran) return "not run: node " + store.node() + " found another node compacting";
         return out;
       }, config.compactor.parsed},
  };
}

int run(const config::Config& config) {
  const std::string& data_dir = config.daemon.data_dir;
  const layout::DataDir dir(data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir.logs(), ec);
  if (ec) {
    spdlog::error("cannot create data directory {}: {}", data_dir, ec.message());
    return 1;
  }
  auto lock = FileLock::acquire(dir.lock());
  if (!lock) {
    spdlog::error("{}", lock.error().message);
    return 1;
  }

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto store = ops::open_store(config);
  if (!store) {
    spdlog::error("{}", store.error().message);
    return 1;
  }
  // Register before anything is recorded: a second process under the same
  // node name is refused here.
  SystemClock clock;
  const TimePoint started_at = clock.now();
  const Millis lease = config.daemon.node_lease;
  if (auto st = (*store)->heartbeat(config.daemon.listen, started_at, started_at, lease); !st) {
    spdlog::error("{}", st.error().message);
    return 1;
  }
  retention::Executor executor(**store, dir, config.retention.batch_size);
  if (auto replayed = executor.replay_tombstones(); !replayed) {
    spdlog::error("replaying tombstones: {}", replayed.error().message);
    return 1;
  } else if (replayed->files_deleted > 0 || replayed->file_errors > 0) {
    spdlog::info("removed {} file(s) left by an interrupted purge ({} could not be removed)", replayed->files_deleted,
                 replayed->file_errors);
  }

  if (auto st = layout::make_reserve(dir); !st) spdlog::warn("{} (deletes may fail on a full disk)", st.error().message);
  auto token = ops::load_or_create_token(config);
  if (!token) {
    spdlog::error("{}", token.error().message);
    return 1;
  }
  events::Bus bus;
  scheduler::Options options{data_dir, config.daemon.shutdown_timeout, 0,
                             system_tasks(config, **store, executor, clock), &bus};
  scheduler::Scheduler scheduler(config, **store, clock, std::move(options));
  if (auto st = scheduler.start(); !st) {
    spdlog::error("cannot start the scheduler: {}", st.error().message);
    return 1;
  }
  ops::MaintenanceThread maintenance;
  ops::Local local(ops::LocalDeps{&config, store->get(), &executor, &scheduler, &bus, &clock, &maintenance, true});
  http::Limits limits;
  limits.max_streams = config.daemon.max_log_streams;
  limits.max_streams_per_client = config.daemon.max_log_streams_per_client;
  // Set by the nodes thread while the database does not take heartbeats;
  // the scheduler says when writes fail (a full disk) or the data
  // directory moved.
  std::mutex health_mu;
  std::string db_problem;
  auto health = [&] {
    {
      std::lock_guard guard(health_mu);
      if (!db_problem.empty()) return db_problem;
    }
    return scheduler.health();
  };
  http::Server api(http::Deps{&local, [&local] { return local.metrics(); }, health, *token}, limits);
  if (auto st = api.start(config.daemon.listen); !st) {
    spdlog::error("{}", st.error().message);
    scheduler.shutdown();
    return 1;
  }
  spdlog::info("cronkeep started as node {} ({}): {} task(s), data in {}, API on http://{} (token in {})",
               (*store)->node(), config::to_string(config.storage.backend), config.tasks.size(), data_dir,
               config.daemon.listen,
               config.daemon.token_file.empty() ? dir.generated_token() : config.daemon.token_file);

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  // The data directory as it was at start: moved or deleted under a
  // running daemon, rows would go to the moved database and logs to a
  // recreated directory. Checked each second; no run starts meanwhile.
  struct stat home{};
  ::stat(data_dir.c_str(), &home);
  bool moved = false;
  std::thread checkpointer([&] {
    std::unique_lock guard(mu);
    auto last = std::chrono::steady_clock::now();
    while (!cv.wait_for(guard, kWalCheckEvery, [&] { return stopping; })) {
      guard.unlock();
      struct stat now_st{};
      const bool same = ::stat(data_dir.c_str(), &now_st) == 0 && now_st.st_dev == home.st_dev &&
                        now_st.st_ino == home.st_ino;
      if (!same && !moved) {
        moved = true;
        const std::string why = "the data directory " + data_dir + " was moved or deleted while the daemon ran; "
                                "restart the daemon on the right directory";
        spdlog::error("{}; no run starts until it is back", why);
        scheduler.set_blocked(why);
      } else if (same && moved) {
        moved = false;
        spdlog::info("the data directory {} is back; runs start again", data_dir);
        scheduler.set_blocked(std::nullopt);
      }
      std::error_code size_ec;
      const auto wal = std::filesystem::file_size(dir.wal(), size_ec);
      // The space reserve (layout.h), made again once there is room.
      if (::access(dir.reserve().c_str(), F_OK) != 0)
        if (auto free_bytes = logs::free_space(data_dir); free_bytes && *free_bytes > 4 * layout::kReserveBytes)
          if (auto st = layout::make_reserve(dir); !st) spdlog::warn("{}", st.error().message);
      const auto now = std::chrono::steady_clock::now();
      if (now - last >= kCheckpointEvery || (!size_ec && static_cast<int64_t>(wal) > kWalCheckpointBytes)) {
        last = now;
        if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
      }
      guard.lock();
    }
  });
  // Heartbeats, take-over of dead nodes and this node's tombstones (another
  // node's retention may have deleted runs whose logs are here).
  std::thread nodes([&] {
    const Millis every = std::max(Millis(200), lease / 3);
    auto next_replay = std::chrono::steady_clock::now();
    std::unique_lock guard(mu);
    while (!cv.wait_for(guard, every, [&] { return stopping; })) {
      guard.unlock();
      const TimePoint now = clock.now();
      auto beat = (*store)->heartbeat(config.daemon.listen, started_at, now, lease);
      {
        std::lock_guard health_guard(health_mu);
        db_problem = beat ? "" : "database: " + beat.error().message;
      }
      if (auto st = beat; !st) {
        spdlog::error("{}", st.error().message);
        if (st.error().code == ErrorCode::conflict) {
          spdlog::error("stopping: this node lost its runs to another node; restart it to rejoin");
          ::kill(::getpid(), SIGTERM);
          return;
        }
      } else if (auto dead = (*store)->expire_nodes(now, lease); !dead) {
        spdlog::warn("{}", dead.error().message);
      } else {
        for (const std::string& name : *dead)
          spdlog::warn("node {} stopped heartbeating (lease {}): declared dead, its in-flight runs marked crashed",
                       name, format_duration(lease));
      }
      if (std::chrono::steady_clock::now() >= next_replay) {
        next_replay = std::chrono::steady_clock::now() + std::chrono::minutes(1);
        if (auto r = executor.replay_tombstones(); !r) spdlog::warn("replaying tombstones: {}", r.error().message);
      }
      guard.lock();
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
  local.stop();
  scheduler.shutdown();
  loop.join();
  api.stop();
  {
    std::lock_guard guard(mu);
    stopping = true;
  }
  cv.notify_all();
  checkpointer.join();
  nodes.join();
  if (auto st = (*store)->leave(clock.now()); !st) spdlog::warn("{}", st.error().message);
  if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
  spdlog::info("cronkeep stopped");
  return 0;
}

}  // namespace cronkeep::daemon
