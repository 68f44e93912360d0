#include "daemon/daemon.h"

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "base/file_lock.h"
#include "base/thread.h"
#include "base/units.h"
#include "daemon/service_manager.h"
#include "events/events.h"
#include "http/http.h"
#include "layout/layout.h"
#include "logs/logs.h"
#include "notify/notify.h"
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
// A node clock further than this from the database server's is warned about.
constexpr Millis kClockSkewWarning{1000};

retention::CompactMode compact_mode(config::Vacuum v) {
  switch (v) {
    case config::Vacuum::incremental: return retention::CompactMode::incremental;
    case config::Vacuum::full: return retention::CompactMode::full;
    case config::Vacuum::off: return retention::CompactMode::checkpoint_only;
  }
  return retention::CompactMode::incremental;
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
  if (std::tie(ra.schedule, ra.max_age, ra.max_runs, ra.batch_size, ra.max_fraction_per_sweep, ra.archive,
               ra.archive_logs, ra.archive_keep_for) != std::tie(rb.schedule, rb.max_age, rb.max_runs, rb.batch_size,
                                                                 rb.max_fraction_per_sweep, rb.archive, rb.archive_logs,
                                                                 rb.archive_keep_for))
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

// Tasks that set `user` when the daemon cannot switch users (not root):
// refused at start and at reload, rather than failing at every fire.
std::string users_need_root(const config::Config& c) {
  if (::geteuid() == 0) return "";
  std::vector<std::string> names;
  for (const config::Task& t : c.tasks)
    if (!t.user.empty()) names.push_back(t.name + " (user " + t.user + ")");
  if (names.empty()) return "";
  return "task(s) " + join(names) + " run as another user, which needs the daemon to run as root (it runs as uid " +
         std::to_string(::geteuid()) + "); remove `user` or start the daemon as root";
}

// The API holds up to 4,096 connections and 256 streams, every running
// child three descriptors (two pipes and a pidfd) and every open log one:
// the soft limit systemd and most shells give (1,024) would refuse
// connections long before the caps do. Raised to the hard limit (at most
// 65,536), as systemd.exec(5) advises a program that needs more to do.
// Children inherit the raised soft limit.
void raise_descriptor_limit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return;
  const rlim_t want = std::min<rlim_t>(files.rlim_max, 65536);
  if (files.rlim_cur >= want) return;
  const rlim_t was = files.rlim_cur;
  files.rlim_cur = want;
  if (::setrlimit(RLIMIT_NOFILE, &files) != 0) return;
  if (want < 8192)
    spdlog::warn("open files limited to {} (hard limit; soft was {}): connections and runs beyond it are refused", want, was);
}

}  // namespace

std::vector<scheduler::SystemTask> system_tasks(const config::Config& config, store::Store& store,
                                                retention::Executor& executor, Clock& clock, events::Bus* bus) {
  const retention::Policy policy = retention::policy_from(config);
  const retention::CompactMode mode = compact_mode(config.compactor.vacuum);
  return {
      {retention::kRetentionTask, config.retention.schedule,
       [&store, &executor, &clock, policy](int64_t run_id) -> Result<std::string> {
         // One node at a time (several nodes, one database); the run, and
         // so the node that did the work, is recorded either way.
         Result<std::string> out = fail(ErrorCode::busy, "not run");
         auto ran = store.exclusively(retention::kRetentionTask, [&] {
           const TimePoint now = clock.now();
           auto report = retention::sweep(store, executor, policy, now);
           if (!report) return void(out = tl::unexpected(report.error()));
           // The delivery record is bounded like the history: max_age, and at most 100,000 attempts.
           if (auto trimmed = store.trim_deliveries(now - policy.max_age, 100'000); !trimmed)
             spdlog::warn("trimming notifications: {}", trimmed.error().message);
           if (auto st = retention::record_figures(store,
                                                   store::MaintenanceFigures{run_id, retention::kRetentionTask,
                                                                             report->rows, report->files_deleted,
                                                                             report->file_errors, report->log_bytes, 0},
                                                   clock.now());
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
      {retention::kCompactorTask, config.compactor.schedule, [&store, &clock, mode, bus](int64_t run_id) -> Result<std::string> {
         Result<std::string> out = fail(ErrorCode::busy, "not run");
         auto ran = store.exclusively(retention::kCompactorTask, [&] {
           auto report = retention::compact(store, mode, 512, [&](const retention::CompactStep& step) {
             if (!bus) return;
             events::Event e;
             e.kind = events::Kind::progress;
             e.task = retention::kCompactorTask;
             e.run_id = run_id;
             e.text = retention::to_string(step.phase);
             e.count = step.pages_done;
             e.total = step.pages_total;
             bus->publish(std::move(e));
           });
           if (!report) return void(out = tl::unexpected(report.error()));
           const int64_t reclaimed = std::max<int64_t>(0, report->bytes_before - report->bytes_after);
           if (auto st = retention::record_figures(store,
                                                   store::MaintenanceFigures{run_id, retention::kCompactorTask, 0, 0, 0,
                                                                             0, reclaimed, std::nullopt,
                                                                             report->bytes_after},
                                                   clock.now());
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

namespace {

// One JSON object per log line: {"time":"…Z","level":"info","message":"…"}.
class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const nlohmann::json line = {
        {"time", format_rfc3339(std::chrono::time_point_cast<Millis>(msg.time), true)},
        {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                              spdlog::level::to_string_view(msg.level).size())},
        {"message", std::string(msg.payload.data(), msg.payload.size())}};
    // Replace, not throw, on bytes that are not UTF-8 (a command's name, a path).
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLineFormatter>(); }
};

}  // namespace

int run(const config::Config& config, LogFormat log_format) {
  // At most two malloc arenas, set before any thread starts: glibc gives
  // each thread that mallocs an arena of its own (up to 8 per core), and the
  // daemon's 30-odd threads (HTTP workers and waiters above all) keep what
  // they freed in theirs. Idle it changes nothing; after a burst of API
  // reads it leaves about 1 MB less anonymous memory, at no measurable cost
  // in requests per second (docs/benchmarks.md, "Footprint").
  ::mallopt(M_ARENA_MAX, 2);
  if (log_format == LogFormat::json) spdlog::set_formatter(std::make_unique<JsonLineFormatter>());
  raise_descriptor_limit();
  if (const std::string why = users_need_root(config); !why.empty()) {
    spdlog::error("{}: {}", config.path, why);
    return 1;
  }
  const std::string& data_dir = config.daemon.data_dir;
  const layout::DataDir dir(data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir.logs(), ec);
  if (ec) {
    spdlog::error("cannot create data directory {}: {}", data_dir, ec.message());
    return 1;
  }
  // A CLI command looking for a daemon takes the lock for a few
  // microseconds (ops::open); a start that meets one waits it out instead of
  // failing. A real holder (a daemon, a purge without one) still refuses the
  // start, 100 ms later.
  auto lock = FileLock::acquire(dir.lock());
  for (int i = 0; !lock && lock.error().code == ErrorCode::busy && i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    lock = FileLock::acquire(dir.lock());
  }
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
  retention::Executor executor(**store, dir, config.retention.batch_size, &clock);
  executor.set_archive(retention::archive_policy_from(config));
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
                             system_tasks(config, **store, executor, clock, &bus), &bus};
  options.node = ops::node_name(config);
  const std::string this_node = options.node;
  scheduler::Scheduler scheduler(config, **store, clock, std::move(options));
  // A purge's file removal keeps out of the way of the starts (the
  // executor's users, retention's system task and the maintenance thread,
  // end before the scheduler: shutdown() waits for the one, the other is
  // declared after it).
  executor.set_pace([&scheduler] { return scheduler.bulk_io_wait(); });
  // Fires are spread over the live nodes from the first one on. A clock off
  // the server's by more than a second is reported once (and its return).
  bool clock_off = false;
  auto share_peers = [&](TimePoint now) {
    auto nodes = (*store)->list_nodes();
    if (!nodes) {
      spdlog::warn("listing nodes: {}", nodes.error().message);
      return;
    }
    std::vector<std::string> live;
    for (const store::NodeInfo& n : *nodes) {
      if (!n.dead_at && n.heartbeat_at >= now - lease) live.push_back(n.name);
      if (n.name != this_node || !n.clock_offset_ms) continue;
      const bool off = std::abs(*n.clock_offset_ms) > kClockSkewWarning.count();
      if (off && !clock_off)
        spdlog::warn("this node's clock is {:+} ms off the database server's: fires and leases follow each node's "
                     "clock, keep the nodes' clocks in sync (NTP)", *n.clock_offset_ms);
      else if (!off && clock_off)
        spdlog::info("this node's clock is back within {} of the database server's", format_duration(kClockSkewWarning));
      clock_off = off;
    }
    scheduler.set_peers(std::move(live));
  };
  share_peers(started_at);
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
    thread::set_name("ck-notices");
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
  // Set once systemd has been told READY=1; a reload before that (an early
  // POST /api/reload) is not reported to it.
  std::atomic<ServiceManager*> service_ptr{nullptr};
  // Called with reload_mu held.
  auto reload_config = [&]() -> Result<ops::ReloadResult> {
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
    if (const std::string why = users_need_root(*next); !why.empty()) {
      const std::string text = current->path + ": " + why + " (the running configuration is kept)";
      (void)record(store::RunStatus::failed, text);
      return fail(ErrorCode::invalid_argument, text);
    }
    if (auto restart = needs_restart(*current, *next); !restart.empty()) {
      const std::string text = current->path + ": " + join(restart) +
                               " changed: a restart is needed to apply that (the running configuration is kept)";
      (void)record(store::RunStatus::failed, text);
      return fail(ErrorCode::conflict, text);
    }
    auto fresh = std::make_shared<const config::Config>(std::move(*next));
    const scheduler::ReloadSummary summary = scheduler.reload(*fresh, system_tasks(*fresh, **store, executor, clock, &bus));
    executor.set_max_batch(fresh->retention.batch_size);
    executor.set_archive(retention::archive_policy_from(*fresh));
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

  auto reload = [&]() -> Result<ops::ReloadResult> {
    std::lock_guard guard(reload_mu);
    ServiceManager* service = service_ptr.load();
    if (service) service->reloading();
    auto result = reload_config();
    if (service)
      service->reloaded(result ? result->message
                               : "reload refused (the running configuration is kept): " + result.error().message);
    return result;
  };

  ops::Local local(ops::LocalDeps{&config, store->get(), &executor, &scheduler, &bus, &clock, &maintenance, true, reload});
  local_ptr = &local;
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
    notices->close();
    notice_feeder.join();
    return 1;
  }
  spdlog::info("cronkeep started as node {} ({}): {} task(s), data in {}, API on http://{} (token in {})",
               (*store)->node(), config::to_string(config.storage.backend), config.tasks.size(), data_dir,
               config.daemon.listen,
               config.daemon.token_file.empty() ? dir.generated_token() : config.daemon.token_file);

  // systemd (Type=notify): READY=1 now that the API listens; STATUS= with
  // the runs in flight and the last retention result, refreshed on the
  // service manager's thread; no-ops without NOTIFY_SOCKET.
  ServiceManager service([&] {
    int running = 0, queued = 0;
    for (const scheduler::TaskView& t : scheduler.tasks()) {
      running += t.running;
      queued += t.queued;
    }
    std::string text = std::to_string(running) + " run(s) running, " + std::to_string(queued) + " queued";
    store::RunQuery query;
    query.task = std::string(retention::kRetentionTask);
    query.limit = 1;
    if (auto last = (*store)->list_runs(query); last && !last->empty()) {
      const store::Run& r = last->front();
      text += "; last retention: " + std::string(store::to_string(r.status)) +
              (r.message.empty() ? std::string() : ": " + r.message);
    } else {
      text += "; retention has not run yet";
    }
    const std::string problem = health();
    return problem.empty() ? text : text + "; unhealthy: " + problem;
  });
  service.ready();
  service_ptr = &service;

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
    thread::set_name("ck-checkpoint");
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
        // A checkpoint writes the WAL's pages into the database file: disk
        // work that the scheduler's starts would queue behind, as behind a
        // purge's unlinks. Not while a fire is due or starts are being
        // recorded, up to 250 ms.
        for (int i = 0; i < 125 && scheduler.bulk_io_wait().count() > 0; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
      }
      guard.lock();
    }
  });
  // Heartbeats, take-over of dead nodes and this node's tombstones (another
  // node's retention may have deleted runs whose logs are here).
  std::thread nodes([&] {
    thread::set_name("ck-nodes");
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
        share_peers(now);
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
    if (auto r = reload(); !r) spdlog::error("SIGHUP: reload refused: {}", r.error().message);
  }
  {
    // No reload may report READY=1 after STOPPING=1.
    std::lock_guard guard(reload_mu);
    service_ptr = nullptr;
  }
  service.stopping(std::string(strsignal(sig)) + " received: stopping");
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
  nodes.join();
  if (auto st = (*store)->leave(clock.now()); !st) spdlog::warn("{}", st.error().message);
  if (auto st = (*store)->checkpoint(); !st) spdlog::warn("{}", st.error().message);
  spdlog::info("cronkeep stopped");
  return 0;
}

}  // namespace cronkeep::daemon
