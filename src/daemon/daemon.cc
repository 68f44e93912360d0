#include "daemon/daemon.h"

#include <signal.h>
#include <sys/resource.h>
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
#include "notify/notify.h"
#include "ops/local.h"
#include "ops/remote.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace cronkeep::daemon {
namespace {

// Checkpoints run here, off the scheduler's path, so no fire waits for the
// WAL's fsync (DESIGN.md "Writing to SQLite without stalling the clock").
constexpr auto kCheckpointEvery = std::chrono::seconds(5);

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

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The sections besides [tasks] that differ, for the reload's record.
std::vector<std::string> changed_sections(const config::Config& a, const config::Config& b) {
  std::vector<std::string> out;
  const auto& ra = a.retention;
  const auto& rb = b.retention;
  if (std::tie(ra.schedule, ra.max_age, ra.max_runs, ra.batch_size, ra.max_fraction_per_sweep) !=
      std::tie(rb.schedule, rb.max_age, rb.max_runs, rb.batch_size, rb.max_fraction_per_sweep))
    out.push_back("retention");
  if (std::tie(a.compactor.schedule, a.compactor.vacuum) != std::tie(b.compactor.schedule, b.compactor.vacuum))
    out.push_back("compactor");
  if (std::tie(a.storage.min_free_space, a.storage.max_size) != std::tie(b.storage.min_free_space, b.storage.max_size))
    out.push_back("storage");
  if (!(a.defaults == b.defaults)) out.push_back("defaults");
  if (std::tie(a.daemon.timezone, a.daemon.shutdown_timeout, a.daemon.max_log_streams,
               a.daemon.max_log_streams_per_client) != std::tie(b.daemon.timezone, b.daemon.shutdown_timeout,
                                                                b.daemon.max_log_streams,
                                                                b.daemon.max_log_streams_per_client))
    out.push_back("daemon");
  return out;
}

// What only a restart can change: refused by a reload.
std::vector<std::string> needs_restart(const config::Config& a, const config::Config& b) {
  std::vector<std::string> out;
  if (a.daemon.listen != b.daemon.listen) out.push_back("[daemon] listen");
  if (a.daemon.data_dir != b.daemon.data_dir) out.push_back("[daemon] data_dir");
  if (a.daemon.token_file != b.daemon.token_file) out.push_back("[daemon] token_file");
  if (a.storage.backend != b.storage.backend || a.storage.postgres_url != b.storage.postgres_url)
    out.push_back("[storage] backend");
  return out;
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
         const TimePoint now = clock.now();
         auto report = retention::sweep(store, executor, policy, now);
         if (!report) return tl::unexpected(report.error());
         // The delivery record is bounded like the history: max_age, and at most 100,000 attempts.
         if (auto trimmed = store.trim_deliveries(now - policy.max_age, 100'000); !trimmed)
           spdlog::warn("trimming notifications: {}", trimmed.error().message);
         if (auto st = store.record_maintenance(store::MaintenanceFigures{run_id, retention::kRetentionTask, report->rows,
                                                                          report->files_deleted, report->file_errors,
                                                                          report->log_bytes, 0});
             !st)
           return tl::unexpected(st.error());
         std::string message = retention::describe(*report, policy, now);
         if (report->file_errors > 0) return fail(ErrorCode::io, message);
         return message;
       }, config.retention.parsed},
      {retention::kCompactorTask, config.compactor.schedule, [&store, mode](int64_t run_id) -> Result<std::string> {
         lower_own_priority();
         auto report = retention::compact(store, mode);
         if (!report) return tl::unexpected(report.error());
         if (auto st = store.record_maintenance(
                 store::MaintenanceFigures{run_id, retention::kCompactorTask, 0, 0, 0, 0,
                                           std::max<int64_t>(0, report->bytes_before - report->bytes_after)});
             !st)
           return tl::unexpected(st.error());
         return retention::describe(*report);
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

  auto store = store::open_sqlite(dir.database());
  if (!store) {
    spdlog::error("{}", store.error().message);
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

  auto token = ops::load_or_create_token(config);
  if (!token) {
    spdlog::error("{}", token.error().message);
    return 1;
  }
  SystemClock clock;
  events::Bus bus;
  scheduler::Options options{data_dir, config.daemon.shutdown_timeout, 0,
                             system_tasks(config, **store, executor, clock), &bus};
  scheduler::Scheduler scheduler(config, **store, clock, std::move(options));
  if (auto st = scheduler.start(); !st) {
    spdlog::error("cannot start the scheduler: {}", st.error().message);
    return 1;
  }
  ops::MaintenanceThread maintenance;

  // Notifications: a bus subscriber turns run ends and disk pressure into
  // notices; the notifier's own thread delivers them. Neither blocks the
  // scheduler (the bus drops the oldest for a slow reader).
  notify::Notifier notifier(config, **store, clock);
  auto notices = bus.subscribe(events::Filter{std::nullopt, std::nullopt, true, true});
  std::thread notice_feeder([&] {
    while (!notices->closed()) {
      events::Batch batch = notices->take(std::chrono::seconds(1));
      for (const events::Event& e : batch.events) {
        if (e.kind == events::Kind::disk_pressure) {
          notifier.submit(notify::Notice{"disk_pressure", e.task, e.run_id, "", e.text, from_unix_ms(e.time_ms)});
          continue;
        }
        auto status = store::parse_status(e.text);
        if (!status || !store::is_terminal(*status)) continue;
        auto run = (*store)->get_run(e.run_id);
        notifier.run_ended(e.task, e.run_id, e.text, run ? run->message : "", from_unix_ms(e.time_ms));
      }
    }
  });

  // Configuration reload (SIGHUP, POST /api/reload, cronkeep reload): all
  // or nothing, one at a time, recorded as a run of cronkeep:reload.
  std::mutex reload_mu;
  std::shared_ptr<const config::Config> current = std::make_shared<const config::Config>(config);
  ops::Local* local_ptr = nullptr;
  auto reload = [&]() -> Result<ops::ReloadResult> {
    std::lock_guard guard(reload_mu);
    auto record = [&](store::RunStatus status, const std::string& message) -> int64_t {
      store::NewRun row;
      row.task = ops::kReloadTask;
      row.trigger = store::Trigger::system;
      row.status = status;
      row.created_at = clock.now();
      row.finished_at = row.created_at;
      row.message = message;
      auto id = (*store)->insert_run(row);
      if (!id) spdlog::error("recording the reload: {}", id.error().message);
      return id ? *id : 0;
    };
    auto next = config::load_config(current->path);
    if (!next) {
      const config::Problems& problems = next.error();
      std::string text = current->path + ": " + std::to_string(problems.size()) +
                         " problem(s); the running configuration is kept";
      (void)record(store::RunStatus::failed, text + " (first: " + problems.front().to_string() + ")");
      for (const config::Problem& p : problems) text += "\n" + p.to_string();
      return fail(ErrorCode::invalid_argument, text);
    }
    if (auto restart = needs_restart(*current, *next); !restart.empty()) {
      const std::string text = current->path + ": " + join(restart) +
                               " changed: a restart is needed to apply that (the running configuration is kept)";
      (void)record(store::RunStatus::failed, text);
      return fail(ErrorCode::conflict, text);
    }
    auto fresh = std::make_shared<const config::Config>(std::move(*next));
    const scheduler::ReloadSummary summary = scheduler.reload(*fresh, system_tasks(*fresh, **store, executor, clock));
    executor.set_max_batch(fresh->retention.batch_size);
    notifier.set_config(*fresh);
    local_ptr->set_config(fresh);
    ops::ReloadResult out;
    out.added = summary.added;
    out.removed = summary.removed;
    out.changed = summary.changed;
    out.sections = changed_sections(*current, *fresh);
    current = fresh;
    std::string what;
    if (!out.added.empty()) what += "; added " + join(out.added);
    if (!out.removed.empty()) what += "; removed " + join(out.removed);
    if (!out.changed.empty()) what += "; changed " + join(out.changed);
    if (!out.sections.empty()) what += "; sections changed: " + join(out.sections);
    out.message = "Reloaded " + current->path + ": " + std::to_string(current->tasks.size()) + " task(s)" +
                  (what.empty() ? std::string("; nothing changed") : what);
    out.run_id = record(store::RunStatus::succeeded, out.message);
    spdlog::info("{}", out.message);
    return out;
  };

  ops::Local local(ops::LocalDeps{&config, store->get(), &executor, &scheduler, &bus, &clock, &maintenance, true, reload});
  local_ptr = &local;
  http::Limits limits;
  limits.max_streams = config.daemon.max_log_streams;
  limits.max_streams_per_client = config.daemon.max_log_streams_per_client;
  http::Server api(http::Deps{&local, [&local] { return local.metrics(); }, {}, *token}, limits);
  if (auto st = api.start(config.daemon.listen); !st) {
    spdlog::error("{}", st.error().message);
    scheduler.shutdown();
    notices->close();
    notice_feeder.join();
    return 1;
  }
  spdlog::info("cronkeep started: {} task(s), data in {}, API on http://{} (token in {})", config.tasks.size(),
               data_dir, config.daemon.listen,
               config.daemon.token_file.empty() ? dir.generated_token() : config.daemon.token_file);

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread checkpointer([&] {
    std::unique_lock guard(mu);
    while (!cv.wait_for(guard, kCheckpointEvery, [&] { return stopping; })) {
      guard.unlock();
      if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
      guard.lock();
    }
  });
  std::thread loop([&] { scheduler.run_loop(); });

  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (auto r = reload(); !r) spdlog::error("SIGHUP: reload refused: {}", r.error().message);
  }
  spdlog::info("{} received: stopping (running runs get {})", strsignal(sig),
               format_duration(config.daemon.shutdown_timeout));
  local.stop();
  scheduler.shutdown();
  loop.join();
  notices->close();
  notice_feeder.join();
  notifier.stop();
  api.stop();
  {
    std::lock_guard guard(mu);
    stopping = true;
  }
  cv.notify_all();
  checkpointer.join();
  if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
  spdlog::info("cronkeep stopped");
  return 0;
}

}  // namespace cronkeep::daemon
