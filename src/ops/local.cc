// The operations on the data directory: the daemon's (through its
// scheduler, bus and maintenance thread) and the CLI's without a daemon.
#include "ops/local.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <set>

#include "archive/archive.h"
#include "base/file_lock.h"
#include "base/thread.h"
#include "base/unique_fd.h"
#include "base/units.h"
#include "cron/cron.h"
#include "events/events.h"
#include "layout/layout.h"
#include "ops/remote.h"
#include "scheduler/scheduler.h"

namespace cronkeep::ops {
namespace {

namespace fs = std::filesystem;
using store::RunStatus;

constexpr auto kLogDirSizeTtl = std::chrono::seconds(30);
constexpr int64_t kFollowPage = 1000;

Error no_daemon(const config::Config& config, const std::string& what) {
  return Error{ErrorCode::conflict, "no daemon is running on " + config.daemon.data_dir + ": " + what +
                                        " needs one (start it with `cronkeep daemon`)"};
}

Error read_only(const std::string& what) {
  return Error{ErrorCode::busy, what + " needs write access to the data directory"};
}

std::optional<TimePoint> next_fire_of(const std::optional<cron::Schedule>& schedule,
                                      const std::optional<cron::Zone>& zone, TimePoint now) {
  if (!schedule || !zone) return std::nullopt;
  return schedule->next_fire(now, *zone);
}

}  // namespace

// ---- the maintenance thread ---------------------------------------------------

MaintenanceThread::MaintenanceThread()
    : thread_([this] {
        thread::set_name("ck-maintenance");
        loop();
      }) {}

MaintenanceThread::~MaintenanceThread() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MaintenanceThread::run(const std::function<void()>& job) {
  std::promise<void> done;
  std::function<void()> wrapped = [&] {
    job();
    done.set_value();
  };
  {
    std::lock_guard lock(mu_);
    queue_.push_back(&wrapped);
  }
  cv_.notify_all();
  done.get_future().wait();
}

void MaintenanceThread::loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    std::function<void()>* job = queue_.front();
    queue_.pop_front();
    lock.unlock();
    (*job)();
    lock.lock();
  }
}

// ---- Local ----------------------------------------------------------------------

struct Local::Impl {
  LocalDeps d;
  layout::DataDir dir;
  std::atomic<bool> stopping{false};

  std::mutex size_mu;
  int64_t log_dir_bytes = 0;
  std::optional<std::chrono::steady_clock::time_point> measured;

  std::mutex config_mu;
  std::shared_ptr<const config::Config> current;  // guarded by config_mu; replaced by set_config

  explicit Impl(LocalDeps deps)
      : d(deps), dir(deps.config->daemon.data_dir), current(std::make_shared<const config::Config>(*deps.config)) {}

  std::shared_ptr<const config::Config> config() {
    std::lock_guard lock(config_mu);
    return current;
  }

  // Runs a blocking job on the maintenance thread (or here, without one).
  template <class T>
  T maintain(const std::function<T()>& job) {
    if (!d.maintenance) return job();
    std::optional<T> out;
    d.maintenance->run([&] { out.emplace(job()); });
    return std::move(*out);
  }

  int64_t cached_log_dir_bytes() {
    std::lock_guard lock(size_mu);
    const auto now = std::chrono::steady_clock::now();
    if (!d.daemon || !measured || now - *measured > kLogDirSizeTtl) {
      log_dir_bytes = logs::directory_bytes(dir.logs());
      measured = now;
    }
    return log_dir_bytes;
  }

  bool known_task(std::string_view task) {
    if (config()->find_task(task)) return true;
    if (task == retention::kRetentionTask || task == retention::kCompactorTask) return true;
    if (!d.store) return false;
    auto runs = d.store->list_runs(store::RunQuery{std::string(task), 1, std::nullopt, std::nullopt});
    return runs && !runs->empty();
  }

  Error unknown_task(std::string_view task) {
    std::vector<std::string> names;
    const auto cfg = config();
    for (const config::Task& t : cfg->tasks) names.push_back(t.name);
    if (d.store)
      if (auto list = d.store->task_summaries())
        for (const auto& s : *list)
          if (!cfg->find_task(s.task) && !layout::is_system_task_name(s.task)) names.push_back(s.task);
    std::string known;
    for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
    return Error{ErrorCode::not_found, "task " + std::string(task) + " not found (known tasks: " +
                                           (known.empty() ? std::string("none") : known) + ")"};
  }

  Result<store::Run> find_run(std::string_view task, int64_t id) {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    if (!known_task(task)) return tl::unexpected(unknown_task(task));
    if (!d.store) return fail(ErrorCode::not_found, "run " + std::to_string(id) + " not found");
    auto run = d.store->get_run(id);
    if (!run) return run;
    if (run->task != task)
      return fail(ErrorCode::not_found, "run " + std::to_string(id) + " is not a run of " + std::string(task));
    return run;
  }

  Result<std::string> log_file(const store::Run& run) {
    if (run.log_path.empty())
      return fail(ErrorCode::not_found,
                  "run " + std::to_string(run.id) + " has no log (status " + store::to_string(run.status) + ")");
    if (!layout::DataDir::valid_log_path(run.log_path))
      return fail(ErrorCode::corruption, "run " + std::to_string(run.id) + " has an invalid log path");
    return dir.absolute(run.log_path);
  }

  // The API of the node holding a run's log when that is another node
  // (several nodes, one database: logs stay where they were written), or
  // nullptr when the log is read here: the run is this node's, or its file
  // is here anyway. The bearer token is this node's: nodes share one token
  // (docs/storage.md). Errors: not_found when the node is unknown or
  // advertises no API address; invalid_argument for a bad address.
  Result<std::unique_ptr<Ops>> holder_of(const store::Run& run) {
    if (run.node.empty() || !d.store || run.node == d.store->node()) return nullptr;
    if (!run.log_path.empty() && layout::DataDir::valid_log_path(run.log_path) &&
        fs::exists(dir.absolute(run.log_path)))
      return nullptr;
    auto nodes = d.store->list_nodes();
    if (!nodes) return tl::unexpected(nodes.error());
    for (const store::NodeInfo& n : *nodes) {
      if (n.name != run.node) continue;
      if (n.api_address.empty()) break;
      auto endpoint = parse_listen(n.api_address);
      if (!endpoint) return tl::unexpected(endpoint.error());
      auto token = read_token(*d.config);
      if (!token) return tl::unexpected(token.error());
      return make_remote(*endpoint, *token);
    }
    return fail(ErrorCode::not_found, "the log of run " + std::to_string(run.id) + " is on node " + run.node +
                                          ", which does not advertise an API address");
  }
};

Local::Local(LocalDeps deps) : impl_(std::make_unique<Impl>(deps)) {}
Local::~Local() = default;

void Local::stop() { impl_->stopping = true; }

void Local::set_config(std::shared_ptr<const config::Config> config) {
  std::lock_guard lock(impl_->config_mu);
  impl_->current = std::move(config);
}

Result<std::vector<store::Delivery>> Local::notifications(int limit) {
  Impl& s = *impl_;
  if (limit < 1 || limit > 1000)
    return fail(ErrorCode::invalid_argument, "limit: expected an integer from 1 to 1000, got " + std::to_string(limit));
  if (!s.d.store) return std::vector<store::Delivery>{};
  return s.d.store->list_deliveries(limit);
}

Result<ReloadResult> Local::reload() {
  Impl& s = *impl_;
  if (!s.d.reload) return tl::unexpected(no_daemon(*s.config(), "reloading the configuration"));
  return s.d.reload();
}

Result<std::vector<TaskInfo>> Local::tasks(bool include_system) {
  Impl& s = *impl_;
  const std::shared_ptr<const config::Config> cfg_now = s.config();
  const config::Config& cfg = *cfg_now;
  const TimePoint now = s.d.clock->now();
  std::map<std::string, store::TaskSummary> summaries;
  std::map<std::string, store::LastOutcome> outcomes;
  std::set<std::string> paused;
  if (s.d.store && !s.d.scheduler) {  // the daemon's scheduler knows
    auto pauses = s.d.store->task_pauses();
    if (!pauses) return tl::unexpected(pauses.error());
    for (const auto& p : *pauses)
      if (p.paused) paused.insert(p.task);
  }
  if (s.d.store) {
    auto list = s.d.store->task_summaries();
    if (!list) return tl::unexpected(list.error());
    for (auto& t : *list) summaries[t.task] = std::move(t);
    if (!s.d.scheduler) {  // the daemon keeps these in memory
      auto last = s.d.store->last_outcomes();
      if (!last) return tl::unexpected(last.error());
      for (auto& o : *last) outcomes[o.task] = std::move(o);
    }
  }
  std::vector<TaskInfo> out;
  std::set<std::string> listed;
  auto fill_history = [&](TaskInfo& t) {
    auto it = summaries.find(t.name);
    if (it != summaries.end()) {
      t.runs = it->second.runs;
      t.last_run = it->second.last_run;
    }
    if (auto o = outcomes.find(t.name); o != outcomes.end()) {
      t.last_success = o->second.last_success;
      t.last_failure = o->second.last_failure;
    }
    t.state = t.running > 0                  ? TaskState::running
              : t.queued > 0                 ? TaskState::queued
              : t.paused                     ? TaskState::paused
              : !t.enabled                   ? TaskState::disabled
              : t.configured && t.cron.empty() ? TaskState::manual
                                             : TaskState::idle;
    listed.insert(t.name);
  };
  if (s.d.scheduler) {
    for (const scheduler::TaskView& v : s.d.scheduler->tasks()) {
      if (v.system && !include_system) continue;
      TaskInfo t;
      t.name = v.name;
      t.configured = true;
      t.system = v.system;
      t.cron = v.cron;
      t.timezone = v.timezone;
      t.next_fire = v.next_fire;
      t.running = v.running;
      t.queued = v.queued;
      t.last_success = v.last_success;
      t.last_failure = v.last_failure;
      t.enabled = v.enabled;
      t.paused = v.paused;
      fill_history(t);
      out.push_back(std::move(t));
    }
  } else {
    auto add = [&](const std::string& name, const std::string& cron, const std::optional<cron::Schedule>& schedule,
                   const std::optional<cron::Zone>& zone, bool system, bool enabled) {
      TaskInfo t;
      t.name = name;
      t.configured = true;
      t.system = system;
      t.cron = cron;
      t.timezone = zone ? zone->name() : "";
      t.enabled = enabled;
      t.paused = paused.count(name) > 0;
      if (enabled && !t.paused) t.next_fire = next_fire_of(schedule, zone, now);
      fill_history(t);
      out.push_back(std::move(t));
    };
    for (const config::Task& task : cfg.tasks)
      add(task.name, task.cron, task.schedule, task.zone, false, task.enabled);
    if (include_system) {
      add(retention::kRetentionTask, cfg.retention.schedule, cfg.retention.parsed, cron::Zone::utc(), true, true);
      add(retention::kCompactorTask, cfg.compactor.schedule, cfg.compactor.parsed, cron::Zone::utc(), true, true);
    }
  }
  for (const auto& [name, summary] : summaries) {
    if (listed.count(name)) continue;
    const bool system = layout::is_system_task_name(name);
    if (system && !include_system) continue;
    TaskInfo t;
    t.name = name;
    t.system = system;
    fill_history(t);
    out.push_back(std::move(t));
  }
  return out;
}

Result<RunsPage> Local::runs(const RunsQuery& q) {
  Impl& s = *impl_;
  if (auto st = check_task_name(q.task); !st) return tl::unexpected(st.error());
  if (q.limit < 1 || q.limit > 1000)
    return fail(ErrorCode::invalid_argument, "limit: expected an integer from 1 to 1000, got " + std::to_string(q.limit));
  if (!s.known_task(q.task)) return tl::unexpected(s.unknown_task(q.task));
  RunsPage page;
  if (!s.d.store) return page;
  auto runs = s.d.store->list_runs(store::RunQuery{q.task, q.limit, q.before, q.status});
  if (!runs) return tl::unexpected(runs.error());
  page.runs = std::move(*runs);
  if (static_cast<int>(page.runs.size()) == q.limit) page.next_before = page.runs.back().id;
  return page;
}

Result<store::Run> Local::run(std::string_view task, int64_t id) { return impl_->find_run(task, id); }

Result<LogSlice> Local::log(const LogQuery& q) {
  Impl& s = *impl_;
  if (auto st = check_read(q.read, q.from_line_given); !st) return tl::unexpected(st.error());
  auto run = s.find_run(q.task, q.run_id);
  if (!run) return tl::unexpected(run.error());
  auto holder = s.holder_of(*run);
  if (!holder) return tl::unexpected(holder.error());
  if (*holder) return (*holder)->log(q);
  auto path = s.log_file(*run);
  if (!path) return tl::unexpected(path.error());
  auto page = logs::read_log(*path, q.read);
  if (!page) return tl::unexpected(page.error());
  return LogSlice{std::move(*page), run->status};
}

Status Local::follow(const FollowRequest& req, FollowSink& sink) {
  Impl& s = *impl_;
  auto run = s.find_run(req.task, req.run_id);
  if (!run) return tl::unexpected(run.error());
  auto holder = s.holder_of(*run);
  if (!holder) return tl::unexpected(holder.error());
  if (*holder) return (*holder)->follow(req, sink);
  std::unique_ptr<events::Subscription> sub;
  if (s.d.bus) sub = s.d.bus->subscribe(events::Filter{run->id, std::nullopt});
  // A queued run has no log yet: wait for its start (an event), not by polling.
  if (run->log_path.empty() && !store::is_terminal(run->status) && sub) {
    const auto deadline = std::chrono::steady_clock::now() + req.queued_wait;
    while (run->log_path.empty() && !store::is_terminal(run->status) && !s.stopping &&
           std::chrono::steady_clock::now() < deadline) {
      sub->take(std::chrono::milliseconds(500));  // a state event or the deadline's slice
      auto again = s.d.store->get_run(run->id);
      if (!again) return tl::unexpected(again.error());
      run = std::move(again);
    }
  }
  auto path = s.log_file(*run);
  if (!path) return tl::unexpected(path.error());

  int64_t next = req.from;
  int64_t last_id = req.from > 0 ? req.from - 1 : 0;
  auto emit = [&](FollowEvent e) {
    e.id = last_id;
    return sink.on_event(e);
  };
  // Sends the complete lines from the file from `next` on; false when the sink stops.
  auto replay = [&]() -> bool {
    while (true) {
      logs::ReadRequest r;
      if (next < 0) r.tail = -next;
      else r.from_line = next;
      r.lines = kFollowPage;
      auto page = logs::read_log(*path, r);
      if (!page) {
        FollowEvent e = FollowEvent::of(FollowEvent::Kind::error);
        e.text = page.error().message;
        emit(e);
        sink.flush();
        return false;
      }
      for (const logs::Line& l : page->lines) {
        if (l.number == page->next_line) break;  // a partial last line: wait until it is complete
        last_id = l.number;
        FollowEvent e = FollowEvent::of(FollowEvent::Kind::line);
        e.line = l;
        if (!emit(e)) return false;
      }
      const int64_t before = next;
      next = page->next_line;
      if (!sink.flush()) return false;
      if (page->lines.empty() || page->at_end || next == before) return true;
    }
  };
  auto done = [&](const std::string& status) -> Status {
    if (!replay()) return {};
    FollowEvent e = FollowEvent::of(FollowEvent::Kind::done);
    e.text = status;
    emit(e);
    sink.flush();
    return {};
  };
  if (!replay()) return {};
  if (store::is_terminal(run->status) || !sub) return done(store::to_string(run->status));
  auto current = s.d.store->get_run(run->id);
  if (current && store::is_terminal(current->status)) return done(store::to_string(current->status));

  auto idle_since = std::chrono::steady_clock::now();
  auto last_check = idle_since;
  while (!s.stopping) {
    events::Batch batch = sub->take(std::chrono::milliseconds(500));
    const auto now = std::chrono::steady_clock::now();
    if (batch.dropped > 0) {
      FollowEvent e = FollowEvent::of(FollowEvent::Kind::dropped);
      e.count = static_cast<int64_t>(batch.dropped);
      e.text = std::to_string(batch.dropped) + " event(s) dropped for a slow reader; refilled from the file";
      if (!emit(e) || !replay()) return {};
    }
    for (const events::Event& ev : batch.events) {
      idle_since = now;
      switch (ev.kind) {
        case events::Kind::log_line: {
          if (ev.line < next) break;
          if (ev.line > next && !replay()) return {};  // fill a gap from the file
          if (ev.line != next) break;
          FollowEvent e = FollowEvent::of(FollowEvent::Kind::line);
          e.line.number = ev.line;
          e.line.stream = ev.stream;
          e.line.time = from_unix_ms(ev.time_ms);
          e.line.text = ev.text;
          last_id = ev.line;
          next = ev.line + 1;
          if (!emit(e)) return {};
          break;
        }
        case events::Kind::log_rotated: {
          FollowEvent e = FollowEvent::of(FollowEvent::Kind::rotated);
          e.text = ev.text;
          if (!emit(e)) return {};
          break;
        }
        case events::Kind::log_truncated:
        case events::Kind::disk_pressure: {
          FollowEvent e = FollowEvent::of(FollowEvent::Kind::dropped);
          e.text = ev.text;
          e.count = ev.count;
          if (!emit(e)) return {};
          break;
        }
        case events::Kind::run_state: {
          auto st = store::parse_status(ev.text);
          if (st && store::is_terminal(*st)) return done(ev.text);
          break;
        }
        case events::Kind::progress: break;  // system runs have no log to follow
      }
    }
    if (!sink.flush()) return {};
    if (now - idle_since > req.idle_timeout) return done("idle_timeout");
    if (now - last_check > std::chrono::seconds(15)) {
      // The run may have ended while its last event was dropped.
      last_check = now;
      auto r = s.d.store->get_run(run->id);
      if (r && store::is_terminal(r->status)) return done(store::to_string(r->status));
    }
  }
  return done("shutdown");
}

Result<store::Run> Local::run_now(const RunNowRequest& req) {
  Impl& s = *impl_;
  if (auto st = check_task_name(req.task); !st) return tl::unexpected(st.error());
  if (auto st = check_env(req.env); !st) return tl::unexpected(st.error());
  if (!s.d.scheduler) return tl::unexpected(no_daemon(*s.config(), "running a task"));
  std::unique_ptr<events::Subscription> sub;
  if (req.wait && s.d.bus) sub = s.d.bus->subscribe(events::Filter{std::nullopt, req.task, true});
  auto id = s.d.scheduler->run_now(req.task, req.env);
  if (!id) return tl::unexpected(id.error());
  auto run = s.d.store->get_run(*id);
  if (!req.wait || !sub || !run) return run;
  // Follow the retry chain to its final attempt: each end is published
  // after its retry is planned, so retry_pending() is exact at that moment.
  const int64_t first = *id;
  std::set<int64_t> chain{first};
  const auto deadline = std::chrono::steady_clock::now() + req.wait_timeout;
  while (!s.stopping) {
    if (store::is_terminal(run->status) && !s.d.scheduler->retry_pending(first)) return run;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return run;
    const auto slice = std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::seconds(1));
    events::Batch batch = sub->take(std::chrono::duration_cast<std::chrono::milliseconds>(slice));
    int64_t newest = run->id;
    for (const events::Event& e : batch.events) {
      if (!chain.count(e.run_id)) {
        auto r = s.d.store->get_run(e.run_id);
        if (!r || r->retry_of != first) continue;
        chain.insert(e.run_id);
      }
      newest = std::max(newest, e.run_id);
    }
    // Re-read also on a quiet slice: a queued run cancelled ends without an event.
    auto again = s.d.store->get_run(newest);
    if (!again) return again;
    run = std::move(again);
  }
  return fail(ErrorCode::busy, "the daemon is shutting down; run " + std::to_string(run->id) + " was started");
}

Result<PauseResult> Local::pause(std::string_view task, bool paused) {
  Impl& s = *impl_;
  if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
  if (layout::is_system_task_name(task))
    return fail(ErrorCode::invalid_argument,
                "system task " + std::string(task) + " cannot be paused (edit its schedule instead)");
  if (!s.config()->find_task(task)) return tl::unexpected(s.unknown_task(task));
  PauseResult out{std::string(task), paused, false};
  if (s.d.scheduler) {
    auto changed = s.d.scheduler->set_paused(task, paused);
    if (!changed) return tl::unexpected(changed.error());
    out.changed = *changed;
    return out;
  }
  if (!s.d.executor || !s.d.store) return tl::unexpected(read_only(paused ? "pausing a task" : "resuming a task"));
  auto pauses = s.d.store->task_pauses();
  if (!pauses) return tl::unexpected(pauses.error());
  bool now_paused = false;
  for (const auto& p : *pauses)
    if (p.task == task) now_paused = p.paused;
  if (now_paused == paused) return out;
  if (auto st = s.d.store->set_paused(task, paused, s.d.clock->now()); !st) return tl::unexpected(st.error());
  out.changed = true;
  return out;
}

Result<CancelResult> Local::cancel(std::string_view task, int64_t id) {
  Impl& s = *impl_;
  auto run = s.find_run(task, id);
  if (!run) return tl::unexpected(run.error());
  if (store::is_terminal(run->status))
    return fail(ErrorCode::conflict,
                "run " + std::to_string(id) + " already ended (" + store::to_string(run->status) + ")");
  if (!s.d.scheduler) return tl::unexpected(no_daemon(*s.config(), "cancelling a run"));
  if (auto st = s.d.scheduler->cancel(id); !st) return tl::unexpected(st.error());
  return CancelResult{id, true};
}

Result<DeleteResult> Local::delete_run(std::string_view task, int64_t id) {
  Impl& s = *impl_;
  auto run = s.find_run(task, id);
  if (!run) return tl::unexpected(run.error());
  if (!store::is_terminal(run->status))
    return fail(ErrorCode::conflict, "run " + std::to_string(id) + " is " + store::to_string(run->status) +
                                         ": cancel it first, only ended runs can be deleted");
  if (!s.d.executor) return tl::unexpected(read_only("deleting a run"));
  return s.maintain<Result<DeleteResult>>([&]() -> Result<DeleteResult> {
    auto report = s.d.executor->purge({retention::Expired{id, retention::Reason::manual}});
    if (!report) return tl::unexpected(report.error());
    if (report->rows == 0) return fail(ErrorCode::conflict, "run " + std::to_string(id) + " could not be deleted");
    DeleteResult out{id, run->task, report->log_bytes, report->files_deleted, "", report->archived > 0};
    out.message = "Deleted run " + std::to_string(id) + " of " + run->task + " and " +
                  std::to_string(report->files_deleted) + " file(s) (" +
                  format_size(static_cast<uint64_t>(report->log_bytes)) + " of logs)";
    if (out.archived) out.message += "; archived to " + report->archive_file;
    if (report->file_errors > 0)
      out.message += "; " + std::to_string(report->file_errors) + " file(s) could not be removed and will be retried (" +
                     report->first_error + ")";
    return out;
  });
}

Result<retention::PurgeOutcome> Local::purge(const retention::PurgeRequest& req, const retention::Progress& progress) {
  Impl& s = *impl_;
  if (req.task) {
    if (auto st = check_task_name(*req.task); !st) return tl::unexpected(st.error());
    if (!s.known_task(*req.task)) return tl::unexpected(s.unknown_task(*req.task));
  }
  if (!s.d.store) return fail(ErrorCode::not_found, "no history yet: " + s.dir.database() + " does not exist");
  if (!req.dry_run && !s.d.executor) return tl::unexpected(read_only("purging"));
  return s.maintain<Result<retention::PurgeOutcome>>([&] {
    if (req.dry_run) {
      // A dry run only reads: this executor is never asked to delete.
      retention::Executor idle(*s.d.store, s.dir, 1);
      return retention::manual_purge(*s.d.store, idle, req, *s.d.clock);
    }
    // Never beside a sweep or another purge on another node.
    Result<retention::PurgeOutcome> out = fail(ErrorCode::busy, "not run");
    auto ran = s.d.store->exclusively(retention::kRetentionTask, [&] {
      out = retention::manual_purge(*s.d.store, *s.d.executor, req, *s.d.clock, progress);
    });
    if (!ran) return Result<retention::PurgeOutcome>(tl::unexpected(ran.error()));
    if (!*ran) return Result<retention::PurgeOutcome>(fail(ErrorCode::busy, "another node is purging; try again later"));
    return out;
  });
}

Result<retention::CompactOutcome> Local::compact(retention::CompactMode mode) {
  Impl& s = *impl_;
  if (!s.d.store) return fail(ErrorCode::not_found, "no history yet: " + s.dir.database() + " does not exist");
  if (!s.d.executor) return tl::unexpected(read_only("compacting"));
  return s.maintain<Result<retention::CompactOutcome>>([&] {
    // The run's state changes and the compaction's steps go on the bus, so
    // a live view (the web UI, GET /api/events) shows how far it is.
    retention::CompactHooks hooks;
    if (s.d.bus) {
      auto publish = [&s](events::Kind kind, int64_t run_id, std::string text, int64_t done, int64_t total) {
        events::Event e;
        e.kind = kind;
        e.task = retention::kCompactorTask;
        e.run_id = run_id;
        e.text = std::move(text);
        e.count = done;
        e.total = total;
        s.d.bus->publish(std::move(e));
      };
      hooks.state = [publish](int64_t run_id, store::RunStatus status) {
        publish(events::Kind::run_state, run_id, store::to_string(status), 0, 0);
      };
      hooks.step = [publish](int64_t run_id, const retention::CompactStep& step) {
        publish(events::Kind::progress, run_id, retention::to_string(step.phase), step.pages_done, step.pages_total);
      };
    }
    Result<retention::CompactOutcome> out = fail(ErrorCode::busy, "not run");
    auto ran = s.d.store->exclusively(retention::kCompactorTask,
                                      [&] { out = retention::manual_compact(*s.d.store, mode, *s.d.clock, hooks); });
    if (!ran) return Result<retention::CompactOutcome>(tl::unexpected(ran.error()));
    if (!*ran) return Result<retention::CompactOutcome>(fail(ErrorCode::busy, "another node is compacting; try again later"));
    return out;
  });
}

Result<std::vector<store::NodeInfo>> Local::nodes() {
  Impl& s = *impl_;
  if (!s.d.store) return std::vector<store::NodeInfo>{};
  return s.d.store->list_nodes();
}

Status Local::forget_node(std::string_view name) {
  Impl& s = *impl_;
  if (!s.d.store) return fail(ErrorCode::not_found, "node " + std::string(name) + " not found");
  if (!s.d.executor) return fail(ErrorCode::busy, "read-only: forgetting a node needs the data directory's lock");
  return s.d.store->forget_node(name);
}

Result<MaintenanceStatus> Local::status() {
  Impl& s = *impl_;
  const std::shared_ptr<const config::Config> cfg_now = s.config();
  const config::Config& cfg = *cfg_now;
  if (!s.d.store) return fail(ErrorCode::not_found, "no history yet: " + s.dir.database() + " does not exist");
  auto stats = s.d.store->db_stats();
  if (!stats) return tl::unexpected(stats.error());
  auto summaries = s.d.store->maintenance_summaries();
  if (!summaries) return tl::unexpected(summaries.error());
  MaintenanceStatus out;
  out.database = *stats;
  out.log_dir_bytes = s.cached_log_dir_bytes();
  if (auto space = logs::disk_space(cfg.daemon.data_dir))
    out.disk = DiskStatus{static_cast<int64_t>(space->free), static_cast<int64_t>(space->total),
                          static_cast<int64_t>(cfg.storage.min_free_space)};
  const TimePoint now = s.d.clock->now();
  for (auto [name, schedule, parsed] :
       {std::tuple{retention::kRetentionTask, cfg.retention.schedule, cfg.retention.parsed},
        std::tuple{retention::kCompactorTask, cfg.compactor.schedule, cfg.compactor.parsed}}) {
    SystemTaskStatus t;
    t.task = name;
    t.schedule = schedule;
    t.next_run = next_fire_of(parsed, cron::Zone::utc(), now);
    auto last = s.d.store->list_runs(store::RunQuery{name, 1, std::nullopt, std::nullopt});
    if (!last) return tl::unexpected(last.error());
    if (!last->empty()) t.last_run = last->front();
    for (const auto& m : *summaries)
      if (m.last.task == name) {
        t.last_figures = m.last;
        t.total_figures = m.total;
      }
    out.system_tasks.push_back(std::move(t));
  }
  return out;
}

Result<MaintenanceHistory> Local::maintenance_history(const MaintenanceHistoryQuery& q) {
  Impl& s = *impl_;
  // The same words as the API's check of its query parameters.
  if (q.limit < 1 || q.limit > 1000)
    return fail(ErrorCode::invalid_argument,
                "limit: expected an integer from 1 to 1000, got \"" + std::to_string(q.limit) + "\"");
  if (q.before && *q.before < 1)
    return fail(ErrorCode::invalid_argument, "before: expected an integer from 1 to " + std::to_string(INT64_MAX) +
                                                 ", got \"" + std::to_string(*q.before) + "\"");
  MaintenanceHistory out;
  if (!s.d.store) return out;
  // One more than asked says whether there is a next page.
  auto figures = s.d.store->list_maintenance(store::MaintenanceQuery{static_cast<int>(q.limit) + 1, q.before});
  if (!figures) return tl::unexpected(figures.error());
  out.runs = std::move(*figures);
  if (static_cast<int64_t>(out.runs.size()) > q.limit) {
    out.runs.resize(static_cast<size_t>(q.limit));
    out.next_before = out.runs.back().run_id;
  }
  return out;
}

Result<CheckReport> Local::check(bool repair) {
  Impl& s = *impl_;
  if (!s.d.store) return fail(ErrorCode::not_found, "no history yet: " + s.dir.database() + " does not exist");
  if (repair && !s.d.executor) return tl::unexpected(read_only("check --repair"));
  return s.maintain<Result<CheckReport>>([&]() -> Result<CheckReport> {
    store::Store& st = *s.d.store;
    CheckReport out;
    auto problem = [&](std::string kind, std::string detail, bool fixed) {
      out.problems.push_back(CheckProblem{std::move(kind), std::move(detail), fixed});
      if (fixed) ++out.repaired;
    };

    auto integrity = st.integrity_check();
    if (!integrity) return tl::unexpected(integrity.error());
    if (*integrity != "ok") problem("integrity", *integrity, false);

    // The run counts the store keeps per task, against a real count.
    auto counts = repair ? st.repair_task_counts() : st.check_task_counts();
    if (!counts) return tl::unexpected(counts.error());
    for (const store::TaskCountMismatch& m : *counts)
      problem("task_counts",
              m.task + ": " + std::to_string(m.recorded) + " run(s) counted, " + std::to_string(m.actual) +
                  " in the history",
              repair);

    // Runs in flight (the daemon's) are left alone: their logs are being written.
    std::set<int64_t> in_flight;
    if (s.d.daemon) {
      auto live = st.in_flight_runs();
      if (!live) return tl::unexpected(live.error());
      for (const auto& r : *live) in_flight.insert(r.id);
    }

    auto paths = st.log_paths();
    if (!paths) return tl::unexpected(paths.error());
    std::set<std::string> known;
    for (const store::LogRef& ref : *paths) {
      known.insert(ref.log_path);
      if (in_flight.count(ref.id)) continue;
      const std::string id = "run " + std::to_string(ref.id);
      if (!layout::DataDir::valid_log_path(ref.log_path)) {
        problem("bad_log_path", id + ": " + ref.log_path + " is not a log path", false);
        continue;
      }
      const std::string full = s.dir.absolute(ref.log_path);
      std::error_code ec;
      if (!fs::exists(full, ec)) {
        // The log is gone: its sidecars go too, and the row stops naming it.
        bool fixed = false;
        if (repair) {
          layout::Removal removal;
          const bool gone = layout::remove_run_files(s.dir, {ref.log_path}, removal).front();
          fixed = gone && st.forget_log(ref.id, "log file was missing (cronkeep check --repair)").has_value();
        }
        problem("missing_log", id + ": " + ref.log_path, fixed);
        continue;
      }
      const logs::SidecarCheck sc = logs::check_sidecars(full);
      if (!sc.index_ok) {
        // Every byte of the log stays; the sidecars are made readable again.
        const bool fixed = repair && store::is_terminal(ref.status) && logs::repair_sidecars(full, sc.kind).has_value();
        problem(sc.kind == logs::SidecarProblem::truncated     ? "truncated_log"
                : sc.kind == logs::SidecarProblem::missing_prev ? "missing_prev"
                                                                 : "bad_sidecar",
                id + ": " + ref.log_path + ": " + sc.problem, fixed);
      } else if (!sc.finalized && store::is_terminal(ref.status)) {
        const bool fixed = repair && logs::finalize_crashed(full).has_value();
        problem("unfinalized_log", id + " (" + store::to_string(ref.status) + "): " + ref.log_path +
                                       " was not finalized (its writer stopped or could not finish)",
                fixed);
      }
    }

    auto tombs = st.list_tombstones(1'000'000);
    if (!tombs) return tl::unexpected(tombs.error());
    std::set<std::string> tombstoned;
    for (const auto& t : *tombs) tombstoned.insert(t.log_path);
    if (!tombs->empty()) {
      bool fixed = false;
      if (repair) {
        auto r = s.d.executor->replay_tombstones();
        fixed = r && r->file_errors == 0;
      }
      problem("tombstones", std::to_string(tombs->size()) + " leftover tombstone(s) of an interrupted purge", fixed);
    }

    // Files and directories under logs/ that no run names.
    std::error_code ec;
    std::vector<fs::path> task_dirs;
    for (const auto& entry : fs::directory_iterator(s.dir.logs(), ec)) {
      const std::string name = entry.path().filename().string();
      const std::string rel_dir = "logs/" + name;
      if (!entry.is_directory() || !layout::valid_task_name(name)) {
        // cronkeep writes only task directories here; a stray regular file
        // (named by the listing, not by anyone's input) may go.
        const bool fixed = repair && entry.is_regular_file() && ::unlink(entry.path().c_str()) == 0;
        problem("stray_file", rel_dir + " does not belong in logs/", fixed);
        continue;
      }
      bool empty = true;
      std::vector<std::string> orphans;                      // by the log they belong to
      std::map<std::string, std::vector<fs::path>> orphan_files;  // the files found for each
      std::error_code ec2;
      for (const auto& file : fs::directory_iterator(entry.path(), ec2)) {
        empty = false;
        std::string fname = file.path().filename().string();
        // The log a sidecar belongs to: strip the longest suffix (".prev.idx"
        // before ".idx"), so walk the list from its end.
        std::string base = fname;
        if (base.size() > 4 && base.compare(base.size() - 4, 4, ".tmp") == 0) base.resize(base.size() - 4);
        for (auto it = std::rbegin(layout::kLogFileSuffixes); it != std::rend(layout::kLogFileSuffixes); ++it) {
          const std::string_view sv(*it);
          if (!sv.empty() && base.size() > sv.size() && base.compare(base.size() - sv.size(), sv.size(), sv) == 0) {
            base.resize(base.size() - sv.size());
            break;
          }
        }
        const std::string rel = rel_dir + "/" + base;
        if (known.count(rel) || tombstoned.count(rel)) continue;
        if (in_flight.count(layout::DataDir::run_id_of(base))) continue;
        if (std::find(orphans.begin(), orphans.end(), rel) == orphans.end()) orphans.push_back(rel);
        orphan_files[rel].push_back(file.path());
      }
      bool emptied = !orphans.empty();
      for (const std::string& rel : orphans) {
        const bool has_log = fs::exists(s.dir.absolute(rel), ec2);
        bool fixed = false;
        if (repair) {
          // Exactly the files found (named by the listing, inside this
          // task's directory), whatever state an interrupted removal left.
          fixed = true;
          for (const fs::path& f : orphan_files[rel]) fixed = ::unlink(f.c_str()) == 0 && fixed;
        }
        problem(has_log ? "orphan_log" : "orphan_sidecar", rel + " has no run", fixed);
      }
      // A directory the repair emptied goes too (rmdir refuses one that is not empty).
      if (repair && emptied && !empty) ::rmdir(entry.path().c_str());
      if (empty) {
        const bool fixed = repair && ::rmdir(entry.path().c_str()) == 0;
        problem("empty_dir", rel_dir + " is empty", fixed);
      }
    }
    out.ok = std::all_of(out.problems.begin(), out.problems.end(), [](const CheckProblem& p) { return p.repaired; });
    return out;
  });
}

Result<Metrics> Local::metrics() {
  Impl& s = *impl_;
  if (!s.d.scheduler || !s.d.store) return fail(ErrorCode::conflict, "metrics are served by the daemon");
  Metrics m;
  const scheduler::Counters counters = s.d.scheduler->counters();
  m.finished = counters.finished;
  m.disk_pressure_runs = counters.disk_pressure_runs;
  for (const scheduler::TaskView& v : s.d.scheduler->tasks())
    m.tasks.push_back(Metrics::TaskGauges{v.name, v.running, v.queued, v.last_success, v.last_failure});
  const scheduler::Lateness late = s.d.scheduler->lateness();
  m.lateness_bounds_ms.assign(std::begin(scheduler::Lateness::kBoundsMs), std::end(scheduler::Lateness::kBoundsMs));
  m.lateness_counts.assign(std::begin(late.counts), std::end(late.counts));
  m.lateness_count = late.count;
  m.lateness_sum_ms = late.sum_ms;
  auto summaries = s.d.store->maintenance_summaries();
  if (!summaries) return tl::unexpected(summaries.error());
  for (const auto& sum : *summaries) {
    store::MaintenanceFigures& total =
        sum.last.task == retention::kCompactorTask ? m.compactor_total : m.retention_total;
    total.rows_deleted += sum.total.rows_deleted;
    total.files_deleted += sum.total.files_deleted;
    total.file_errors += sum.total.file_errors;
    total.log_bytes_freed += sum.total.log_bytes_freed;
    total.db_bytes_reclaimed += sum.total.db_bytes_reclaimed;
  }
  auto stats = s.d.store->db_stats();
  if (!stats) return tl::unexpected(stats.error());
  m.database = *stats;
  m.log_dir_bytes = s.cached_log_dir_bytes();
  if (s.d.bus) m.log_events_dropped = s.d.bus->total_dropped();
  return m;
}

// ---- for the web UI ---------------------------------------------------------------

Status Local::watch(const WatchRequest& req, WatchSink& sink) {
  Impl& s = *impl_;
  if (!s.d.bus || !s.d.scheduler) return tl::unexpected(no_daemon(*s.d.config, "watching run states"));
  auto sub = s.d.bus->subscribe(events::Filter{std::nullopt, std::nullopt, true, false, true});
  WatchEvent ready;
  ready.kind = WatchEvent::Kind::ready;
  ready.include_system = req.include_system;
  if (!sink.on_event(ready) || !sink.flush()) return {};
  auto end = [&](const char* why) {
    WatchEvent e;
    e.kind = WatchEvent::Kind::done;
    e.text = why;
    sink.on_event(e);
    sink.flush();
    return Status{};
  };
  auto idle_since = std::chrono::steady_clock::now();
  while (!s.stopping) {
    events::Batch batch = sub->take(std::chrono::milliseconds(500));
    const auto now = std::chrono::steady_clock::now();
    if (batch.dropped > 0) {
      WatchEvent e;
      e.kind = WatchEvent::Kind::dropped;
      e.count = static_cast<int64_t>(batch.dropped);
      if (!sink.on_event(e)) return {};
    }
    for (const events::Event& ev : batch.events) {
      if (ev.kind != events::Kind::run_state && ev.kind != events::Kind::progress) continue;
      if (!req.include_system && layout::is_system_task_name(ev.task)) continue;
      idle_since = now;
      WatchEvent e;
      e.kind = ev.kind == events::Kind::progress ? WatchEvent::Kind::progress : WatchEvent::Kind::state;
      e.seq = ev.seq;
      e.task = ev.task;
      e.run_id = ev.run_id;
      e.status = ev.text;
      e.time = from_unix_ms(ev.time_ms);
      e.count = ev.count;
      e.total = ev.total;
      if (!sink.on_event(e)) return {};
    }
    if (!sink.flush()) return {};
    if (now - idle_since > req.idle_timeout) return end("idle_timeout");
  }
  return end("shutdown");
}

Result<RetentionPreview> Local::retention_preview(std::string_view task) {
  Impl& s = *impl_;
  if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
  if (!s.known_task(task)) return tl::unexpected(s.unknown_task(task));
  const config::Config& cfg = *s.d.config;
  RetentionPreview out;
  out.task = std::string(task);
  const config::Task* configured = cfg.find_task(task);
  const bool system = layout::is_system_task_name(task);
  // A task's own key is told from the inherited one by its value: a task
  // that repeats the [defaults] value shows "[defaults]".
  auto per_task = [&](const char* key, std::string value, bool differs) {
    out.rules.push_back(RetentionRule{key, std::move(value), configured && differs ? "task" : "[defaults]"});
  };
  const config::TaskPolicy& d = cfg.defaults;
  const config::TaskPolicy& p = configured ? configured->policy : d;
  if (!system) {
    per_task("keep_runs", std::to_string(p.keep_runs), p.keep_runs != d.keep_runs);
    per_task("keep_for", format_duration(p.keep_for), p.keep_for != d.keep_for);
    per_task("keep_failed_for", format_duration(p.keep_failed_for), p.keep_failed_for != d.keep_failed_for);
  }
  out.rules.push_back(RetentionRule{"max_age", cfg.retention.max_age.count() ? format_duration(cfg.retention.max_age) : "0",
                                    "[retention]"});
  out.rules.push_back(RetentionRule{"max_runs", std::to_string(cfg.retention.max_runs), "[retention]"});
  out.rules.push_back(
      RetentionRule{"max_size", cfg.storage.max_size ? format_size(cfg.storage.max_size) : "0", "[storage]"});
  if (!s.d.store) return out;
  // The sweep's own plan (retention::sweep): the marks of the whole history
  // and the clock guard on their figures, then this task's share of the
  // plan summed in the database. Memory: one entry per task name.
  const retention::Policy policy = retention::policy_from(cfg);
  const TimePoint now = s.d.clock->now();
  store::ExpiryRules rules = retention::expiry_rules(policy, now);
  auto marks = s.d.store->expiry_marks(rules);
  if (!marks) return tl::unexpected(marks.error());
  if (auto held = retention::age_rules_held_back(policy, retention::guard_facts(*marks), now)) {
    out.held_back = *held;
    rules = retention::expiry_rules(retention::without_age_rules(policy), now);
    marks = s.d.store->expiry_marks(rules);
    if (!marks) return tl::unexpected(marks.error());
  }
  auto mine = s.d.store->task_expiry(rules, *marks, task);
  if (!mine) return tl::unexpected(mine.error());
  out.terminal_runs = mine->terminal;
  out.expired_runs = mine->expired;
  out.expired_log_bytes = mine->expired_log_bytes;
  out.oldest_expired_id = mine->oldest_expired;
  out.newest_expired_id = mine->newest_expired;
  // By reason name, as the answer always listed them.
  std::map<std::string, int64_t> reasons;
  for (const auto& [reason, n] : mine->by_reason) reasons[retention::to_string(retention::reason_of(reason))] += n;
  for (auto& [reason, n] : reasons) out.by_reason.emplace_back(reason, n);
  return out;
}

Result<RecentRuns> Local::recent_runs(const RecentRunsQuery& q) {
  Impl& s = *impl_;
  // The same words as the API's check of its query parameter.
  if (q.per_task < 1 || q.per_task > kMaxRecentPerTask)
    return fail(ErrorCode::invalid_argument, "per_task: expected an integer from 1 to " +
                                                 std::to_string(kMaxRecentPerTask) + ", got \"" +
                                                 std::to_string(q.per_task) + "\"");
  RecentRuns out;
  out.per_task = q.per_task;
  if (!s.d.store) return out;
  auto tasks = s.d.store->recent_runs(q.per_task);
  if (!tasks) return tl::unexpected(tasks.error());
  for (store::TaskRuns& t : *tasks)
    if (q.include_system || !layout::is_system_task_name(t.task)) out.tasks.push_back(std::move(t));
  return out;
}

Result<RawLogChunk> Local::raw_log(std::string_view task, int64_t id, int64_t offset, int64_t max_bytes) {
  Impl& s = *impl_;
  if (offset < 0) return fail(ErrorCode::invalid_argument, "offset: expected a byte offset from 0");
  if (max_bytes < 1 || max_bytes > kMaxRawChunk)
    return fail(ErrorCode::invalid_argument, "length: expected 1 to " + std::to_string(kMaxRawChunk) + " bytes");
  auto run = s.find_run(task, id);
  if (!run) return tl::unexpected(run.error());
  auto path = s.log_file(*run);
  if (!path) return tl::unexpected(path.error());
  UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return fail(ErrorCode::not_found, "run " + std::to_string(id) + " has no log file");
    return fail(ErrorCode::io, "cannot open the log of run " + std::to_string(id) + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(ErrorCode::io, std::string("fstat: ") + std::strerror(errno));
  RawLogChunk out;
  out.offset = offset;
  out.total = st.st_size;
  if (offset >= out.total) return out;
  out.bytes.resize(static_cast<size_t>(std::min<int64_t>(max_bytes, out.total - offset)));
  size_t got = 0;
  while (got < out.bytes.size()) {
    const ssize_t n = ::pread(fd.get(), out.bytes.data() + got, out.bytes.size() - got, offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(ErrorCode::io, std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.bytes.resize(got);
  return out;
}

// ---- the archive of purged runs ----------------------------------------------------

Result<std::vector<ArchiveFile>> Local::archive_list() {
  auto files = archive::list_files(impl_->dir);
  if (!files) return tl::unexpected(files.error());
  std::vector<ArchiveFile> out;
  for (const archive::FileInfo& f : *files) out.push_back(ArchiveFile{f.date, f.entries, f.bytes});
  return out;
}

Result<ArchivePage> Local::archive_show(const ArchiveQuery& q) {
  if (auto st = check_archive_query(q); !st) return tl::unexpected(st.error());
  archive::ReadQuery read{q.date, q.task, q.run_id, q.include_system, q.after, q.limit, kMaxArchivePage};
  auto page = archive::read(impl_->dir, read);
  if (!page) return tl::unexpected(page.error());
  return ArchivePage{q.date, std::move(page->entries), page->next};
}

// ---- the CLI's data directory ---------------------------------------------------

namespace {

// Owns what open_local() opened; the Local it wraps points into it.
class OwnedLocal : public Ops {
 public:
  OwnedLocal(const config::Config& config, std::optional<FileLock> lock, std::unique_ptr<store::Store> store)
      : lock_(std::move(lock)), store_(std::move(store)) {
    if (store_ && lock_) {
      executor_.emplace(*store_, layout::DataDir(config.daemon.data_dir), config.retention.batch_size, &clock_);
      executor_->set_archive(retention::archive_policy_from(config));
    }
    local_ = std::make_unique<Local>(
        LocalDeps{&config, store_.get(), executor_ ? &*executor_ : nullptr, nullptr, nullptr, &clock_, nullptr, false, {}});
  }
  Result<std::vector<TaskInfo>> tasks(bool s) override { return local_->tasks(s); }
  Result<RunsPage> runs(const RunsQuery& q) override { return local_->runs(q); }
  Result<store::Run> run(std::string_view t, int64_t id) override { return local_->run(t, id); }
  Result<LogSlice> log(const LogQuery& q) override { return local_->log(q); }
  Status follow(const FollowRequest& r, FollowSink& s) override { return local_->follow(r, s); }
  Result<store::Run> run_now(const RunNowRequest& r) override { return local_->run_now(r); }
  Result<PauseResult> pause(std::string_view t, bool p) override { return local_->pause(t, p); }
  Result<ReloadResult> reload() override { return local_->reload(); }
  Result<std::vector<store::Delivery>> notifications(int limit) override { return local_->notifications(limit); }
  Result<CancelResult> cancel(std::string_view t, int64_t id) override { return local_->cancel(t, id); }
  Result<DeleteResult> delete_run(std::string_view t, int64_t id) override { return local_->delete_run(t, id); }
  Result<retention::PurgeOutcome> purge(const retention::PurgeRequest& r, const retention::Progress& p) override {
    return local_->purge(r, p);
  }
  Result<retention::CompactOutcome> compact(retention::CompactMode m) override { return local_->compact(m); }
  Result<MaintenanceStatus> status() override { return local_->status(); }
  Result<MaintenanceHistory> maintenance_history(const MaintenanceHistoryQuery& q) override {
    return local_->maintenance_history(q);
  }
  Result<std::vector<store::NodeInfo>> nodes() override { return local_->nodes(); }
  Status forget_node(std::string_view name) override { return local_->forget_node(name); }
  Result<CheckReport> check(bool repair) override { return local_->check(repair); }
  Status watch(const WatchRequest& r, WatchSink& s) override { return local_->watch(r, s); }
  Result<RetentionPreview> retention_preview(std::string_view t) override { return local_->retention_preview(t); }
  Result<RecentRuns> recent_runs(const RecentRunsQuery& q) override { return local_->recent_runs(q); }
  Result<RawLogChunk> raw_log(std::string_view t, int64_t id, int64_t offset, int64_t max_bytes) override {
    return local_->raw_log(t, id, offset, max_bytes);
  }
  Result<std::vector<ArchiveFile>> archive_list() override { return local_->archive_list(); }
  Result<ArchivePage> archive_show(const ArchiveQuery& q) override { return local_->archive_show(q); }

 private:
  SystemClock clock_;
  std::optional<FileLock> lock_;
  std::unique_ptr<store::Store> store_;
  std::optional<retention::Executor> executor_;
  std::unique_ptr<Local> local_;
};

}  // namespace

std::string node_name(const config::Config& config) {
  if (!config.daemon.node.empty()) return config.daemon.node;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) return "local";
  return host;
}

Result<std::unique_ptr<store::Store>> open_store(const config::Config& config, store::OpenOptions options) {
  options.node = node_name(config);
  if (config.storage.backend == config::Backend::postgres)
    return store::open_postgres(config.storage.postgres_url, options);
  return store::open_sqlite(layout::DataDir(config.daemon.data_dir).database(), options);
}

Result<std::unique_ptr<Ops>> open_local(const config::Config& config, Access access) {
  const layout::DataDir dir(config.daemon.data_dir);
  const bool postgres = config.storage.backend == config::Backend::postgres;
  const bool exists = postgres || fs::exists(dir.database());
  std::optional<FileLock> lock;
  std::unique_ptr<store::Store> store;
  if (access == Access::write) {
    if (!exists)
      return fail(ErrorCode::not_found, "no history yet: " + dir.database() + " does not exist (has the daemon run?)");
    auto l = FileLock::acquire(dir.lock());
    if (!l)
      return fail(ErrorCode::busy, l.error().message + ": a daemon is running on this data directory; stop it first");
    lock.emplace(std::move(*l));
    auto s = open_store(config);
    if (!s) return tl::unexpected(s.error());
    store = std::move(*s);
  } else if (exists) {
    auto s = open_store(config, store::OpenOptions{.read_only = true});
    if (!s) return tl::unexpected(s.error());
    store = std::move(*s);
  }
  return std::unique_ptr<Ops>(std::make_unique<OwnedLocal>(config, std::move(lock), std::move(store)));
}

}  // namespace cronkeep::ops
