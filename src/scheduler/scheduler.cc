#include "scheduler/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/thread.h"
#include "base/units.h"
#include "events/events.h"
#include "layout/layout.h"
#include "logs/logs.h"
#include "runner/runner.h"

namespace cronkeep::scheduler {
namespace {

using store::RunStatus;
using store::Trigger;

constexpr Millis kMaxRetryWait = std::chrono::minutes(5);
// The wall clock moving this much more (or less) than the steady clock
// between two ticks is a step, not drift: NTP slews at most 0.5 ms/s.
constexpr Millis kClockStep{1000};
// run_loop's longest sleep: how soon a step of the wall clock is noticed.
constexpr Millis kClockCheckInterval{1000};
// Enumerating lost fires stops here; beyond it only the last day is examined.
constexpr size_t kMaxLostFireScan = 100'000;

// The log a run created before its row named it: logs/{task}/*_{id}.log.
std::optional<std::string> find_log_of(const layout::DataDir& dir, const std::string& task, int64_t id) {
  if (!layout::valid_task_name(task)) return std::nullopt;  // not a path-safe name
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir.task_logs(task), ec)) {
    const std::string name = entry.path().filename().string();
    if (layout::DataDir::run_id_of(name) == id) return "logs/" + task + "/" + name;
  }
  return std::nullopt;
}

Millis retry_wait(const config::TaskPolicy& p, int failed_attempt) {
  int64_t ms = p.retry_delay.count();
  switch (p.retry_backoff) {
    case config::Backoff::constant: break;
    case config::Backoff::linear: ms *= failed_attempt; break;
    case config::Backoff::exponential:
      for (int i = 1; i < failed_attempt && ms < kMaxRetryWait.count(); ++i) ms *= 2;
      break;
  }
  return std::min(Millis(ms), kMaxRetryWait);
}

logs::OnFull on_full(config::LogOnFull v) {
  switch (v) {
    case config::LogOnFull::drop_old: return logs::OnFull::drop_old;
    case config::LogOnFull::drop_new: return logs::OnFull::drop_new;
    case config::LogOnFull::kill_task: return logs::OnFull::kill_task;
  }
  return logs::OnFull::drop_old;
}

RunStatus status_of(const runner::Outcome& o) {
  switch (o.stopped) {
    case runner::StopReason::timeout: return RunStatus::timeout;
    case runner::StopReason::cancelled: return RunStatus::cancelled;
    case runner::StopReason::log_overflow: return RunStatus::log_overflow;
    case runner::StopReason::none: break;
  }
  return o.exit_code && *o.exit_code == 0 ? RunStatus::succeeded : RunStatus::failed;
}

}  // namespace

// A run launched and not yet finished(). `exec` is set while the process
// lives; a stop requested before it exists is remembered in `stop_requested`.
struct Scheduler::Active {
  Launch run;
  std::shared_ptr<runner::Execution> exec;
  runner::StopReason stop_requested = runner::StopReason::none;
  std::string stop_message;
};

// A process run from its start (bookkeeper) through its output (children's
// loop) to its end (bookkeeper). Handed between the two threads through the
// supervisor's and the bookkeeper's queues, never used by both at once.
struct Scheduler::RunCtx {
  Launch run;
  std::shared_ptr<const config::Task> task;  // the settings the run started with
  std::unique_ptr<logs::LogWriter> log;
  std::shared_ptr<runner::Execution> exec;
  std::string stop_message;  // set on the loop's thread (disk pressure)
  std::string start_error;   // set by a spawner when the spawn failed
  runner::Command command;   // what the spawner starts
};

// A run's end, ready to be recorded.
struct Scheduler::Ended {
  Launch run;
  std::string task;
  store::RunEnd end;
  std::unique_ptr<logs::LogWriter> unfinished;  // its log, when finalize failed
};

// A run whose log exists, waiting to be marked running.
struct Scheduler::Started {
  std::shared_ptr<RunCtx> ctx;
  std::string rel;  // its log, relative to the data directory
  TimePoint at;     // started_at (also the log name's stamp)
  int slots = 0;    // > 0: marked only while fewer runs of the task run on any node (mark_running_in_slot)
  Status marked;
};

void Scheduler::add_task(const config::Task& task, int order, const std::vector<store::TaskPause>& pauses) {
  // Requires a prepared config (config::prepare); a task that slipped
  // through unparsed is never fired.
  if ((!task.cron.empty() && !task.schedule) || !task.zone) {
    spdlog::error("task {}: schedule or zone not parsed (config::prepare); it will not fire", task.name);
    return;
  }
  TaskState ts;
  ts.task = std::make_shared<const config::Task>(task);
  ts.schedule = task.schedule;
  ts.zone = *task.zone;
  ts.order = order;
  for (const store::TaskPause& p : pauses)
    if (p.task == task.name) {
      ts.paused = p.paused;
      if (!p.paused) ts.resumed_at = p.changed_at;
    }
  tasks_.push_back(std::move(ts));
}

bool Scheduler::fires_on_its_own(const TaskState& ts) const {
  const auto& pinned = ts.task->nodes;
  return ts.schedule && !ts.removed && !ts.paused && ts.task->enabled &&
         (pinned.empty() || std::find(pinned.begin(), pinned.end(), options_.node) != pinned.end());
}

namespace {

// Rendezvous weight of `node` for one fire of `task`: FNV-1a over the three,
// then a 64-bit finalizer so that near keys spread. Stable across processes
// and builds: every node computes the same winner.
uint64_t rendezvous_weight(std::string_view task, TimePoint fire, std::string_view node) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&](std::string_view bytes) {
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // separator
  };
  mix(task);
  mix(std::to_string(to_unix_ms(fire)));
  mix(node);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

Millis Scheduler::claim_delay(const TaskState& ts, TimePoint fire) const {
  const auto& pinned = ts.task->nodes;
  const std::string* first = nullptr;
  uint64_t best = 0;
  for (const std::string& node : peers_) {
    if (!pinned.empty() && std::find(pinned.begin(), pinned.end(), node) == pinned.end()) continue;
    const uint64_t w = rendezvous_weight(ts.task->name, fire, node);
    if (!first || w > best || (w == best && node < *first)) {
      first = &node;
      best = w;
    }
  }
  return first && *first != options_.node ? kClaimGrace : Millis(0);
}

void Scheduler::refresh_elsewhere(size_t t) {
  TaskState& ts = tasks_[t];
  if (peers_.size() <= 1) {
    ts.elsewhere = 0;
    return;
  }
  if (refused_) return;  // the database is away: the last count stands
  auto n = store_.count_running_elsewhere(ts.task->name);
  if (!n) {
    spdlog::warn("task {}: counting its runs on other nodes: {}", ts.task->name, n.error().message);
    return;  // keep the last count
  }
  ts.elsewhere = static_cast<int>(*n);
}

void Scheduler::set_peers(std::vector<std::string> live) {
  std::sort(live.begin(), live.end());
  live.erase(std::unique(live.begin(), live.end()), live.end());
  if (!live.empty() && !std::binary_search(live.begin(), live.end(), options_.node)) {
    live.push_back(options_.node);  // this node is alive, whatever the table said
    std::sort(live.begin(), live.end());
  }
  std::lock_guard lock(mu_);
  if (live == peers_) return;
  peers_ = std::move(live);
  for (TaskState& ts : tasks_)
    if (ts.next_fire) ts.next_due = *ts.next_fire + ts.jitter + claim_delay(ts, *ts.next_fire);
  wake_.notify_all();
}

namespace {
// How many spare log files may be kept: a burst of this many starts finds
// its logs ready. Each holds a descriptor; an eighth of the limit at most.
size_t spare_cap() {
  rlimit files{};
  size_t cap = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
    cap = std::min<size_t>(cap, files.rlim_cur / 8);
  return cap;
}
}  // namespace

Scheduler::Scheduler(const config::Config& config, store::Store& store, Clock& clock, Options options)
    : storage_(config.storage),
      store_(store),
      clock_(clock),
      options_(std::move(options)),
      dir_(options_.data_dir),
      spares_(std::make_unique<logs::SpareFiles>(dir_.logs(), spare_cap())) {
  rng_.seed(options_.seed ? options_.seed : std::random_device{}());
  auto pauses = store_.task_pauses();
  if (!pauses) spdlog::error("reading paused tasks: {}; every task fires", pauses.error().message);
  int order = 0;
  for (const config::Task& task : config.tasks)
    add_task(task, order++, pauses ? *pauses : std::vector<store::TaskPause>{});
  for (const SystemTask& sys : options_.system_tasks) {
    auto schedule = sys.schedule ? Result<cron::Schedule>(*sys.schedule) : cron::Schedule::parse(sys.cron);
    if (!schedule) {
      spdlog::error("system task {}: invalid schedule \"{}\"; it will not fire", sys.name, sys.cron);
      continue;
    }
    config::Task task;
    task.name = sys.name;
    task.cron = sys.cron;
    task.policy.max_concurrent = 1;
    task.policy.on_overlap = config::Overlap::skip;
    task.policy.queue_max = 1;
    TaskState ts;
    ts.task = std::make_shared<const config::Task>(std::move(task));
    ts.schedule = *schedule;
    ts.zone = cron::Zone::utc();
    ts.order = order++;
    ts.body = sys.body;
    tasks_.push_back(std::move(ts));
  }
  children_ = std::make_unique<runner::Supervisor>();
  books_thread_ = std::thread([this] { bookkeeper(); });
  for (int i = 0; i < kSpawners; ++i) spawners_.emplace_back([this] { spawner(); });
}

Scheduler::~Scheduler() {
  {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return workers_ == 0; });
  }
  {
    std::lock_guard lock(books_mu_);
    books_stop_ = true;
  }
  books_cv_.notify_all();
  books_thread_.join();
  {
    std::lock_guard lock(spawn_mu_);
    spawn_stop_ = true;
  }
  spawn_cv_.notify_all();
  for (std::thread& t : spawners_) t.join();
  children_.reset();
}

Millis Scheduler::steady_now() const {
  if (options_.steady) return options_.steady();
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return Millis(int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000);
}

void Scheduler::notice_clock_step(TimePoint now, Millis steady) {
  const std::optional<std::pair<TimePoint, Millis>> ref = clock_ref_;
  clock_ref_ = std::make_pair(now, steady);
  if (!ref) return;
  const Millis step = (now - ref->first) - (steady - ref->second);
  if (step > -kClockStep && step < kClockStep) return;
  spdlog::warn("the wall clock stepped {} by {} (now {}){}", step.count() < 0 ? "back" : "forward",
               format_duration(step.count() < 0 ? -step : step), format_rfc3339(now),
               step.count() < 0 ? "; next fires recomputed from now" : "");
  // After a step back, next fires computed before it lie as far ahead as the
  // step: recompute them, or every task would stall that long. After a step
  // forward the fires passed over are due now and fire_due treats them as
  // the lost fires of a late loop (the newest runs, the rest are missed).
  if (step.count() < 0)
    for (size_t t = 0; t < tasks_.size(); ++t) schedule_next(t, now);
}

Status Scheduler::start() {
  const TimePoint now = clock_.now();
  // logs/ is made here, once; later a missing logs/ means the data
  // directory moved, and the log writer does not make it again.
  if (::mkdir(dir_.logs().c_str(), 0755) != 0 && errno != EEXIST)
    return fail(ErrorCode::io, "cannot create " + dir_.logs() + ": " + std::strerror(errno));
  auto left = store_.in_flight_runs();
  if (!left) return tl::unexpected(left.error());
  // Their partial logs stay; their .meta says they ended with the daemon. A
  // run that died between creating its log and recording it gets its log
  // adopted, so no file is left without a row naming it. The logs are
  // recovered before the rows are marked crashed: a kill during this loop
  // (which writes a .meta per log, through a .meta.tmp) leaves the rows in
  // flight, so the next start recovers them again and no half-made sidecar
  // outlives them.
  for (store::Run& r : *left) {
    if (r.log_path.empty()) {
      auto found = find_log_of(dir_, r.task, r.id);
      if (!found) continue;
      if (auto st = store_.adopt_log(r.id, *found); !st) {
        spdlog::warn("run {}: {}", r.id, st.error().message);
        continue;
      }
      r.log_path = *found;
    }
    const std::string path = dir_.absolute(r.log_path);
    if (auto st = logs::recover_crashed(path); !st) spdlog::warn("run {}: {}", r.id, st.error().message);
  }
  auto crashed = store_.reconcile_in_flight(now, "daemon stopped while the run was in flight");
  if (!crashed) return tl::unexpected(crashed.error());
  if (*crashed > 0) spdlog::warn("{} run(s) left in flight by a previous daemon marked crashed", *crashed);

  // Last success and failure per task are read once here and kept up to
  // date as runs end, so listings and /metrics never scan the history.
  auto outcomes = store_.last_outcomes();
  if (!outcomes) return tl::unexpected(outcomes.error());
  std::lock_guard decide(decide_mu_);
  std::unique_lock lock(mu_);
  for (TaskState& ts : tasks_)
    for (const store::LastOutcome& o : *outcomes)
      if (o.task == ts.task->name) {
        ts.last_success = o.last_success;
        ts.last_failure = o.last_failure;
      }
  clock_ref_ = std::make_pair(now, steady_now());
  for (size_t t = 0; t < tasks_.size(); ++t) {
    TaskState& ts = tasks_[t];
    const std::string name = ts.task->name;
    lock.unlock();
    auto last = store_.last_fire(name);
    lock.lock();
    if (!last) return tl::unexpected(last.error());
    // A paused, disabled or on-demand task catches nothing up; a resumed
    // one only the fires after its resume.
    std::optional<TimePoint> since = *last;
    if (since && ts.resumed_at && *ts.resumed_at > *since) since = ts.resumed_at;
    if (since && !ts.body && fires_on_its_own(ts)) {
      const cron::Schedule& schedule = *ts.schedule;
      std::vector<TimePoint> lost;
      std::optional<TimePoint> f = schedule.next_fire(*since, ts.zone);
      while (f && *f <= now && lost.size() < kMaxLostFireScan) {
        lost.push_back(*f);
        f = schedule.next_fire(*f, ts.zone);
      }
      size_t total = lost.size();
      if (f && *f <= now) {
        // Too many to enumerate: keep the newest day exactly, count the rest roughly.
        const TimePoint from = std::max(lost.back(), now - std::chrono::hours(24));
        std::vector<TimePoint> recent;
        for (f = schedule.next_fire(from, ts.zone); f && *f <= now; f = schedule.next_fire(*f, ts.zone))
          recent.push_back(*f);
        total += recent.size();
        lost = std::move(recent);
      }
      if (!lost.empty()) {
        // mu_ is held while the rows are written, not across the commit.
        lock.unlock();
        Status st = store_.write_batch([&] {
          std::lock_guard inner(mu_);
          handle_lost_fires(t, lost, total, CatchUpRuns::by_policy);
        });
        lock.lock();
        if (!st) return st;
      }
    }
    schedule_next(t, now);
  }
  // The first burst's logs come from spares too: as many as the most
  // commands due at one instant (a thousand tasks @every 1s fire together),
  // made by the spawners before that instant.
  std::map<TimePoint, size_t> due_together;
  size_t burst = 0;
  for (const TaskState& ts : tasks_)
    if (ts.next_fire && !ts.body) burst = std::max(burst, ++due_together[*ts.next_fire]);
  lock.unlock();
  want_spares(burst);
  return {};
}

void Scheduler::schedule_next(size_t t, TimePoint after) {
  TaskState& ts = tasks_[t];
  ts.next_fire = fires_on_its_own(ts) ? ts.schedule->next_fire(after, ts.zone) : std::nullopt;
  if (!ts.next_fire) return;
  ts.jitter = Millis(0);
  if (ts.task->policy.jitter.count() > 0) {
    std::uniform_int_distribution<int64_t> dist(0, ts.task->policy.jitter.count());
    ts.jitter = Millis(dist(rng_));
  }
  ts.next_due = *ts.next_fire + ts.jitter + claim_delay(ts, *ts.next_fire);
}

void Scheduler::handle_lost_fires(size_t t, const std::vector<TimePoint>& lost, size_t total_lost, CatchUpRuns runs) {
  // `lost` is in time order and holds the newest fires; total_lost counts all.
  TaskState& ts = tasks_[t];
  const auto& p = ts.task->policy;
  const size_t keep = static_cast<size_t>(p.max_catch_up_runs);
  size_t to_run = 0;
  if (runs == CatchUpRuns::by_policy) {
    switch (p.catch_up) {
      case config::CatchUp::latest: to_run = 1; break;
      case config::CatchUp::all: to_run = std::min(keep, lost.size()); break;
      case config::CatchUp::skip: to_run = 0; break;
    }
  }
  const size_t first_run = lost.size() - to_run;
  // The newest `keep` lost fires not run get a row each; older ones one summary row.
  const size_t first_individual = first_run > keep ? first_run - keep : 0;
  const size_t summarised = (total_lost - lost.size()) + first_individual;
  const std::string reason = runs == CatchUpRuns::none
                                 ? std::string("the scheduler was late and fired only the newest")
                                 : std::string("daemon was not running (catch_up = ") + config::to_string(p.catch_up) + ")";
  if (summarised > 0) {
    const TimePoint last_summarised = first_individual > 0 ? lost[first_individual - 1] : lost.front();
    record_terminal(t, Trigger::schedule, last_summarised, RunStatus::missed,
           std::to_string(summarised) + " fire(s) up to " + format_rfc3339(last_summarised) + " missed: " + reason);
  }
  for (size_t i = first_individual; i < first_run; ++i)
    record_terminal(t, Trigger::schedule, lost[i], RunStatus::missed, "fire missed: " + reason);
  for (size_t i = first_run; i < lost.size(); ++i) fire(t, lost[i], Trigger::catch_up);
}

std::optional<TimePoint> Scheduler::tick() {
  std::lock_guard decide(decide_mu_);
  std::unique_lock lock(mu_);
  if (stopping_) return std::nullopt;
  const TimePoint now = clock_.now();
  const Millis steady = steady_now();
  notice_clock_step(now, steady);
  // Everything due now is recorded in one commit; the runs launched
  // meanwhile are started by the bookkeeper as soon as it lands. The loop wakes
  // every second: no transaction when nothing is due.
  const bool due = std::any_of(tasks_.begin(), tasks_.end(),
                               [&](const TaskState& ts) { return ts.next_fire && ts.next_due <= now; }) ||
                   std::any_of(retries_.begin(), retries_.end(), [&](const RetryTimer& r) { return r.due <= steady; });
  if (!pending_ends_.empty() || !unrecorded_fires_.empty()) {
    lock.unlock();
    flush_unrecorded(now);
    lock.lock();
  }
  if (due) {
    // Runs start only once their rows are committed: a failed commit (a full
    // disk) rolls the rows back, and a run must never start without its row.
    // mu_ is held while fire_due writes the rows (in the transaction), and
    // released across the commit, so run ends, listings and cancels never
    // wait for the disk; decide_mu_ keeps other decisions out meanwhile.
    TickBatch batch;
    bool ran = false;
    lock.unlock();
    Status st = store_.write_batch([&] {
      std::lock_guard inner(mu_);
      ran = true;
      batch_ = &batch;
      fire_due(now, steady);
      batch_ = nullptr;
    });
    lock.lock();
    if (!st && !ran) {
      // The transaction could not even begin (the database server is away):
      // take the due fires without writing, so that they are recorded as
      // missed later and the loop does not spin on them.
      refused_ = &st.error();
      batch_ = &batch;
      fire_due(now, steady);
      batch_ = nullptr;
      refused_ = nullptr;
    }
    if (st) {
      std::vector<Launch> starts;
      books_batch_ = &starts;
      for (const Launch& l : batch.launches) start_or_queue(l);
      books_batch_ = nullptr;
      hand_to_books(starts);
    } else {
      spdlog::error("recording {} fire(s): {}; they are recorded as missed once the database accepts writes",
                    batch.fired.size(), st.error().message);
      write_problem_ = "cannot record runs: " + st.error().message;
      for (const auto& [t, nominal] : batch.fired) unrecorded_fires_.push_back(UnrecordedFire{t, nominal, st.error().message});
      for (RetryTimer r : batch.retries) {
        r.due = steady + Millis(1000);  // try the retry again shortly
        retries_.push_back(r);
      }
    }
  }

  // A slot freed on another node is seen here, within a tick.
  if (peers_.size() > 1)
    for (size_t t = 0; t < tasks_.size(); ++t)
      if (!tasks_[t].queue.empty() || tasks_[t].elsewhere > 0) {
        refresh_elsewhere(t);
        dispatch_queue(t);
      }

  std::optional<TimePoint> next;
  for (const TaskState& ts : tasks_)
    if (ts.next_fire && (!next || ts.next_due < *next)) next = ts.next_due;
  for (const RetryTimer& r : retries_)
    if (const TimePoint at = now + (r.due - steady); !next || at < *next) next = at;
  next_due_ms_.store(next && !stopping_ ? to_unix_ms(*next) : 0);
  return next;
}

Millis Scheduler::bulk_io_wait() const {
  if (starts_in_flight_.load() > 0) return Millis(2);
  const int64_t due = next_due_ms_.load();
  if (due == 0) return Millis(0);
  const int64_t left = due - to_unix_ms(clock_.now());
  if (left > kBulkIoLead.count()) return Millis(0);
  // Due and not yet ticked (or ticking): a short wait, then look again.
  return Millis(std::clamp<int64_t>(left, 2, kBulkIoLead.count()));
}

void Scheduler::fire_due(TimePoint now, Millis steady) {
  for (size_t t = 0; t < tasks_.size(); ++t) {
    TaskState& ts = tasks_[t];
    if (!ts.next_fire || ts.next_due > now) continue;
    // Fires whose time passed while the loop was late (suspend, overload)
    // are lost fires like those of downtime: the newest runs, older are missed.
    std::vector<TimePoint> due{*ts.next_fire};
    for (auto f = ts.schedule->next_fire(*ts.next_fire, ts.zone); f && *f <= now && due.size() < kMaxLostFireScan;
         f = ts.schedule->next_fire(*f, ts.zone))
      due.push_back(*f);
    if (due.size() == 1) {
      fire(t, due.front(), Trigger::schedule);
    } else {
      std::vector<TimePoint> lost(due.begin(), due.end() - 1);
      handle_lost_fires(t, lost, lost.size(), CatchUpRuns::none);
      fire(t, due.back(), Trigger::schedule);
    }
    schedule_next(t, std::max(due.back(), now - Millis(1)));
  }
  // Retries whose wait is over.
  std::vector<RetryTimer> due_retries;
  std::erase_if(retries_, [&](const RetryTimer& r) {
    if (r.due > steady) return false;
    due_retries.push_back(r);
    return true;
  });
  for (const RetryTimer& r : due_retries) {
    if (batch_) batch_->retries.push_back(r);
    auto id = insert(r.task, Trigger::retry, std::nullopt, r.attempt, r.retry_of, RunStatus::pending, "");
    if (id) start_or_queue(Launch{*id, r.task, r.attempt, r.retry_of});
  }
}

void Scheduler::fire(size_t t, TimePoint nominal, Trigger trigger) {
  TaskState& ts = tasks_[t];
  const auto& p = ts.task->policy;
  if (ts.body) trigger = Trigger::system;
  if (batch_) batch_->fired.emplace_back(t, nominal);
  if (blocked_) {
    record_terminal(t, trigger, nominal, RunStatus::missed, "fire missed: " + *blocked_);
    return;
  }
  const std::optional<TimePoint> scheduled =
      trigger == Trigger::schedule ? std::optional<TimePoint>(nominal) : std::nullopt;
  refresh_elsewhere(t);
  if (trigger == Trigger::catch_up || ts.running + ts.elsewhere < p.max_concurrent) {
    auto id = insert(t, trigger, nominal, 1, std::nullopt, RunStatus::pending, "");
    if (id) start_or_queue(Launch{*id, t, 1, std::nullopt, scheduled, nullptr, trigger == Trigger::catch_up});
    return;
  }
  const std::string limit = "max_concurrent = " + std::to_string(p.max_concurrent) +
                            (ts.elsewhere > 0 ? ", " + std::to_string(ts.elsewhere) + " running on other nodes" : "");
  switch (p.on_overlap) {
    case config::Overlap::skip:
      record_terminal(t, trigger, nominal, RunStatus::skipped,
                      "skipped: previous run still running (" + limit + ", on_overlap = skip)");
      return;
    case config::Overlap::queue:
      if (static_cast<int>(ts.queue.size()) >= p.queue_max) {
        record_terminal(t, trigger, nominal, RunStatus::skipped,
                        "skipped: queue full (queue_max = " + std::to_string(p.queue_max) + ")");
        return;
      }
      break;
    case config::Overlap::terminate: {
      // Stop the oldest running run of this task that is not already stopping.
      for (auto& [id, active] : active_) {
        if (active->run.task != t || active->stop_requested != runner::StopReason::none) continue;
        active->stop_requested = runner::StopReason::cancelled;
        active->stop_message = "terminated by a newer fire (on_overlap = terminate)";
        if (active->exec) active->exec->stop(runner::StopReason::cancelled);
        break;
      }
      break;
    }
  }
  auto id = insert(t, trigger, nominal, 1, std::nullopt, RunStatus::pending, "");
  if (id) start_or_queue(Launch{*id, t, 1, std::nullopt, scheduled});
}

Result<int64_t> Scheduler::insert(size_t t, Trigger trigger, std::optional<TimePoint> scheduled, int attempt,
                                  std::optional<int64_t> retry_of, RunStatus status, std::string message) {
  store::NewRun row;
  row.task = tasks_[t].task->name;
  row.trigger = trigger;
  row.attempt = attempt;
  row.retry_of = retry_of;
  row.status = status;
  row.scheduled_at = scheduled;
  row.created_at = clock_.now();
  if (store::is_terminal(status)) row.finished_at = row.created_at;
  row.message = std::move(message);
  if (refused_) return tl::unexpected(*refused_);
  // A fire of the schedule (run, caught up, skipped or missed alike) is
  // claimed, so among nodes sharing a database exactly one records and runs
  // it; the others record nothing. Manual runs and retries are not fires.
  const bool claimed = scheduled && (trigger == Trigger::schedule || trigger == Trigger::catch_up ||
                                     trigger == Trigger::system);
  if (claimed) {
    auto claim = store_.claim_fire(row);
    if (!claim) {
      spdlog::error("task {}: cannot record run: {}", row.task, claim.error().message);
      return tl::unexpected(claim.error());
    }
    if (!*claim)
      return fail(ErrorCode::conflict, "the fire at " + format_rfc3339(*scheduled) + " was claimed by another node");
    return **claim;
  }
  auto id = store_.insert_run(row);
  if (!id) spdlog::error("task {}: cannot record run: {}", row.task, id.error().message);
  return id;
}

void Scheduler::record_terminal(size_t t, Trigger trigger, std::optional<TimePoint> scheduled, RunStatus status,
                                std::string message) {
  // insert() has logged a failure; a skipped or missed record has nothing
  // else to undo.
  auto id = insert(t, trigger, scheduled, 1, std::nullopt, status, std::move(message));
  if (id && options_.bus) {  // skipped and missed rows are run ends too (notifications)
    events::Event e;
    e.kind = events::Kind::run_state;
    e.task = tasks_[t].task->name;
    e.run_id = *id;
    e.text = store::to_string(status);
    options_.bus->publish(std::move(e));
  }
}

void Scheduler::start_or_queue(const Launch& run) {
  if (batch_) {
    batch_->launches.push_back(run);  // after the commit (tick())
    return;
  }
  TaskState& ts = tasks_[run.task];
  if (ts.running + ts.elsewhere < ts.task->policy.max_concurrent && ts.queue.empty()) launch(run);
  else ts.queue.push_back(run);
}

void Scheduler::dispatch_queue(size_t t) {
  TaskState& ts = tasks_[t];
  while (!stopping_ && !ts.queue.empty() && ts.running + ts.elsewhere < ts.task->policy.max_concurrent) {
    Launch next = ts.queue.front();
    ts.queue.pop_front();
    launch(next);
  }
}

void Scheduler::launch(const Launch& run) {
  TaskState& ts = tasks_[run.task];
  ++ts.running;
  ++workers_;
  auto active = std::make_shared<Active>();
  active->run = run;
  active_[run.id] = std::move(active);
  if (ts.body) {
    // In-process work (retention, compaction): a thread of its own, as it
    // may run for minutes.
    std::thread([this, run] {
      thread::set_name("ck-system");
      work_system(run);
    }).detach();
    return;
  }
  if (books_batch_) books_batch_->push_back(run);
  else hand_to_books({run});
}

void Scheduler::hand_to_books(const std::vector<Launch>& runs) {
  if (runs.empty()) return;
  {
    std::lock_guard books(books_mu_);
    books_starts_.insert(books_starts_.end(), runs.begin(), runs.end());
    starts_in_flight_.fetch_add(static_cast<int>(runs.size()));
  }
  books_cv_.notify_one();
}

void Scheduler::end_queued(int64_t id, std::string message) {
  store::RunEnd end;
  end.status = RunStatus::cancelled;
  end.finished_at = clock_.now();
  end.message = std::move(message);
  if (auto st = store_.finish_run(id, end); !st) spdlog::error("run {}: {}", id, st.error().message);
}

void Scheduler::work_system(const Launch& run) {
  std::shared_ptr<const config::Task> task;
  std::function<Result<std::string>(int64_t)> body;
  {
    std::lock_guard lock(mu_);
    task = tasks_[run.task].task;
    body = tasks_[run.task].body;
  }
  const TimePoint started = clock_.now();
  store::RunEnd end;
  if (auto st = store_.mark_running(run.id, "", started); !st) {
    spdlog::warn("run {}: not started: {}", run.id, st.error().message);
    finished(run, RunStatus::cancelled);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto result = body(run.id);
  end.finished_at = clock_.now();
  end.duration_ms = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0).count();
  end.status = result ? RunStatus::succeeded : RunStatus::failed;
  end.message = result ? *result : result.error().message;
  if (!record_end(run, end)) return;
  if (result) spdlog::info("{} run {}: {}", task->name, run.id, end.message);
  else spdlog::error("{} run {} failed: {}", task->name, run.id, end.message);
  finished(run, end.status);
}

void Scheduler::bookkeeper() {
  thread::set_name("ck-books");
  thread::prefer_short_latency();
  std::unique_lock lock(books_mu_);
  for (;;) {
    books_cv_.wait(lock, [&] { return books_stop_ || !books_starts_.empty() || !books_ends_.empty(); });
    if (books_starts_.empty() && books_ends_.empty()) return;  // books_stop_
    auto ends = std::move(books_ends_);
    books_ends_.clear();
    lock.unlock();
    std::vector<Ended> ended;
    ended.reserve(ends.size());
    for (auto& [ctx, outcome] : ends) ended.push_back(end_of(std::move(ctx), outcome.get()));
    ends.clear();
    // The ends free their slots first, so the runs they dispatch (queued
    // ones) start in this same round: the ends and the starts they free are
    // recorded in one commit. A slot is only counted, not the run: workers_
    // and the end's publication wait for the commit (record_round).
    if (!ended.empty()) {
      std::lock_guard state(mu_);
      for (const Ended& e : ended) release_slot_locked(e.run);
    }
    std::vector<Launch> starts;
    lock.lock();
    starts.swap(books_starts_);
    lock.unlock();
    std::vector<Ended> not_started;
    const int starting = static_cast<int>(starts.size());
    std::vector<Started> started = prepare_starts(std::move(starts), not_started);
    record_round(std::move(ended), std::move(started), Slot::released);
    record_round(std::move(not_started), {}, Slot::held);
    starts_in_flight_.fetch_sub(starting);
    lock.lock();
  }
}

void Scheduler::release_slot_locked(const Launch& run) {
  --tasks_[run.task].running;
  dispatch_queue(run.task);
}

std::vector<Scheduler::Started> Scheduler::prepare_starts(std::vector<Launch> runs, std::vector<Ended>& ended) {
  std::vector<Started> started;
  if (runs.empty()) return started;
  std::vector<std::shared_ptr<RunCtx>> ctxs;
  std::vector<int> slots;
  uint64_t min_free = 0;
  {
    // reload() may replace a task's settings meanwhile; the run keeps these.
    std::lock_guard lock(mu_);
    min_free = storage_.min_free_space;
    for (const Launch& run : runs) {
      auto ctx = std::make_shared<RunCtx>();
      ctx->run = run;
      ctx->task = tasks_[run.task].task;
      // Among nodes, the slot counted when the run was dispatched may have
      // been taken since by another node's start: the mark counts again,
      // under the task's slot lock.
      slots.push_back(peers_.size() > 1 && !run.regardless ? ctx->task->policy.max_concurrent : 0);
      ctxs.push_back(std::move(ctx));
    }
  }
  auto fail_run = [&](const std::shared_ptr<RunCtx>& ctx, std::string message) {
    Ended e;
    e.run = ctx->run;
    e.task = ctx->task->name;
    e.end.status = RunStatus::failed;
    e.end.finished_at = clock_.now();
    e.end.message = std::move(message);
    ended.push_back(std::move(e));
  };

  // The logs first (a row never names a log that does not exist). A large
  // batch (a thousand tasks firing in the same second) has its logs made on
  // the spawners too, in chunks, while this thread makes its own share:
  // file creation is most of a start's cost here, and one thread making a
  // thousand logs one after the other made the last run of the second start
  // that much later. The spawners take these before any spawn.
  std::optional<uint64_t> free_bytes;
  if (min_free > 0)
    if (auto f = logs::free_space(options_.data_dir)) free_bytes = *f;
  std::vector<Started> made(ctxs.size());
  std::vector<std::string> errors(ctxs.size());
  auto make = [&](size_t i) {
    const std::shared_ptr<RunCtx>& ctx = ctxs[i];
    const config::Task& task = *ctx->task;
    const TimePoint at = clock_.now();
    auto rel = layout::DataDir::relative_log_path(task.name, at, ctx->run.id);
    if (!rel) {
      errors[i] = rel.error().message;
    } else if (free_bytes && *free_bytes < min_free) {
      errors[i] = "insufficient disk space: " + format_size(*free_bytes) + " free on " + options_.data_dir +
                  ", min_free_space = " + format_size(min_free);
    } else if (auto writer = logs::LogWriter::create(
                   dir_.absolute(*rel),
                   logs::WriterOptions{task.policy.log_max_size, on_full(task.policy.log_on_full), min_free,
                                       options_.data_dir, options_.bus, task.name, ctx->run.id},
                   spares_->take());
               !writer) {
      errors[i] = writer.error().message;
    } else {
      ctx->log = std::move(*writer);
      fault::crash_point("scheduler.after_log_created");
      made[i] = Started{ctx, *rel, at, slots[i], {}};
    }
  };
  if (ctxs.size() < kParallelLogs) {
    for (size_t i = 0; i < ctxs.size(); ++i) make(i);
  } else {
    auto job = std::make_shared<LogJob>();
    job->total = ctxs.size();
    job->make = make;
    const size_t chunks = (ctxs.size() + LogJob::kChunk - 1) / LogJob::kChunk;
    {
      std::lock_guard spawn(spawn_mu_);
      for (size_t h = 0; h + 1 < chunks && h < static_cast<size_t>(kSpawners); ++h) log_jobs_.push_back(job);
    }
    spawn_cv_.notify_all();
    job->work();
    // `make` refers to this frame: wait until no helper is inside it.
    std::unique_lock lock(job->mu);
    job->cv.wait(lock, [&] { return job->done == job->total; });
    job->make = nullptr;
  }
  // The spares used are made again by the spawners while they have nothing
  // to spawn; a batch this large is ready next time.
  want_spares(ctxs.size());
  for (size_t i = 0; i < ctxs.size(); ++i) {
    if (made[i].ctx) {
      started.push_back(std::move(made[i]));
      continue;
    }
    const std::shared_ptr<RunCtx>& ctx = ctxs[i];
    fail_run(ctx, std::move(errors[i]));
  }
  return started;
}

void Scheduler::want_spares(size_t burst) {
  spares_->want(std::max(kMinSpares, burst));
  if (!spares_->low()) return;
  {
    std::lock_guard spawn(spawn_mu_);
    fill_spares_ = true;
  }
  spawn_cv_.notify_all();
}

void Scheduler::LogJob::work() {
  for (;;) {
    const size_t from = next.fetch_add(kChunk);
    if (from >= total) return;
    const size_t to = std::min(total, from + kChunk);
    for (size_t i = from; i < to; ++i) make(i);
    std::lock_guard lock(mu);
    done += to - from;
    if (done == total) cv.notify_all();
  }
}

void Scheduler::record_round(std::vector<Ended> ended, std::vector<Started> started, Slot slots) {
  if (ended.empty() && started.empty()) return;
  if (!ended.empty()) fault::crash_point("scheduler.before_finish_run");
  // Every end and every start waiting now in one commit. A batch whose
  // commit failed is tried again a call at a time, so that each gets its
  // own answer (an end the database refuses is kept, as record_end keeps
  // it; a start it refuses is not started).
  std::vector<Status> results(ended.size());
  // The slot locks (PostgreSQL) are taken in task order, so two nodes'
  // rounds never wait for each other in a cycle.
  if (std::any_of(started.begin(), started.end(), [](const Started& s) { return s.slots > 0; }))
    std::stable_sort(started.begin(), started.end(),
                     [](const Started& a, const Started& b) { return a.ctx->task->name < b.ctx->task->name; });
  auto mark = [&](Started& s) {
    s.marked = s.slots > 0 ? store_.mark_running_in_slot(s.ctx->run.id, s.rel, s.at, s.slots)
                           : store_.mark_running(s.ctx->run.id, s.rel, s.at);
  };
  Status batch = store_.write_batch([&] {
    for (size_t i = 0; i < ended.size(); ++i) results[i] = store_.finish_run(ended[i].run.id, ended[i].end);
    for (Started& s : started) mark(s);
  });
  if (!batch) {
    for (size_t i = 0; i < ended.size(); ++i) results[i] = store_.finish_run(ended[i].run.id, ended[i].end);
    for (Started& s : started) mark(s);
  }

  // The starts first: the spawners get to work while the ends are counted.
  for (Started& s : started) {
    RunCtx& ctx = *s.ctx;
    const Launch& run = ctx.run;
    const config::Task& task = *ctx.task;
    if (!s.marked) {
      // The log file exists before the row names it; a run cancelled while
      // queued no longer accepts the start.
      ctx.log.reset();
      layout::Removal removal;
      (void)layout::remove_run_files(dir_, {s.rel}, removal);
      if (s.marked.error().code == ErrorCode::busy) {
        slot_taken(run, s.marked.error().message);
        continue;
      }
      spdlog::warn("run {}: not started: {}", run.id, s.marked.error().message);
      finished(run, RunStatus::cancelled);
      continue;
    }
    fault::crash_point("scheduler.after_mark_running");
    runner::Command cmd;
    cmd.shell_command = task.run;
    cmd.env = task.env;
    if (run.env)
      for (const auto& [k, v] : *run.env) cmd.env[k] = v;
    cmd.env["CRONKEEP_TASK"] = task.name;
    cmd.env["CRONKEEP_RUN_ID"] = std::to_string(run.id);
    cmd.env["CRONKEEP_ATTEMPT"] = std::to_string(run.attempt);
    cmd.workdir = task.workdir.empty() ? options_.data_dir : task.workdir;
    cmd.timeout = task.policy.timeout;
    cmd.graceful_stop = task.policy.graceful_stop;
    cmd.user = task.user;
    cmd.group = task.group;
    // Spawned by the spawners: posix_spawn blocks its caller until the child
    // has exec'd, which on a busy machine waits for the child to be
    // scheduled; a few spawners overlap those waits while this thread goes on.
    ctx.command = std::move(cmd);
    {
      std::lock_guard spawn(spawn_mu_);
      spawn_jobs_.push_back(s.ctx);
    }
    spawn_cv_.notify_one();
  }

  for (size_t i = 0; i < ended.size(); ++i) {
    Ended& e = ended[i];
    if (!results[i]) {
      spdlog::error("run {}: cannot record its end ({}); kept in memory, recorded when the database accepts writes "
                    "again",
                    e.run.id, results[i].error().message);
      {
        std::lock_guard lock(mu_);
        write_problem_ = "cannot record runs: " + results[i].error().message;
        pending_ends_.push_back(PendingEnd{e.run, e.end, false, std::move(e.unfinished)});
      }
      finished(e.run, e.end.status, false, slots);
      continue;
    }
    {
      std::lock_guard lock(mu_);
      recorded_locked(e.run, e.end);
      // Recorded, but its log's .meta could not be written: finalized later.
      if (e.unfinished) pending_ends_.push_back(PendingEnd{e.run, e.end, true, std::move(e.unfinished)});
    }
    if (e.end.status != RunStatus::succeeded)
      spdlog::warn("{} run {} {}: {}", e.task, e.run.id, store::to_string(e.end.status), e.end.message);
    finished(e.run, e.end.status, true, slots);
  }

  for (Started& s : started) {
    if (!s.marked) continue;
    publish_state(s.ctx->run, s.ctx->task->name, RunStatus::running);
    if (s.ctx->run.scheduled) record_lateness(s.at - *s.ctx->run.scheduled);
  }
}

void Scheduler::slot_taken(const Launch& run, const std::string& why) {
  std::unique_lock lock(mu_);
  TaskState& ts = tasks_[run.task];
  if (ts.task->policy.on_overlap == config::Overlap::skip && run.scheduled) {
    lock.unlock();
    store::RunEnd end;
    end.status = RunStatus::skipped;
    end.finished_at = clock_.now();
    end.message = "skipped: another node started a run first (" + why + ", on_overlap = skip)";
    if (auto st = store_.finish_run(run.id, end); !st) spdlog::error("run {}: {}", run.id, st.error().message);
    finished(run, RunStatus::skipped);
    return;
  }
  // Waits in the queue again, first, until a tick sees a slot free.
  spdlog::debug("{} run {}: not started yet: {}", ts.task->name, run.id, why);
  --ts.running;
  // Another node holds the slot: count it until the next tick recounts
  // (refresh_elsewhere), so that an end on this node does not dispatch the
  // run again at once, only to be refused again.
  ++ts.elsewhere;
  active_.erase(run.id);
  ts.queue.push_front(run);
  --workers_;
  idle_cv_.notify_all();
}

void Scheduler::spawner() {
  thread::set_name("ck-spawn");
  thread::prefer_short_latency();
  std::unique_lock lock(spawn_mu_);
  for (;;) {
    spawn_cv_.wait(lock, [&] {
      return spawn_stop_ || !log_jobs_.empty() || !spawn_jobs_.empty() || (fill_spares_ && !filling_);
    });
    if (!log_jobs_.empty()) {
      std::shared_ptr<LogJob> job = std::move(log_jobs_.front());
      log_jobs_.pop_front();
      lock.unlock();
      job->work();
      lock.lock();
      continue;
    }
    if (!spawn_jobs_.empty()) {
      std::shared_ptr<RunCtx> ctx = std::move(spawn_jobs_.front());
      spawn_jobs_.pop_front();
      lock.unlock();
      spawn(std::move(ctx));
      lock.lock();
      continue;
    }
    if (spawn_stop_) return;
    // Nothing to spawn: one spare log file, then look at the queues again
    // (a spawn arriving meanwhile waits for one file at most). One spawner
    // at a time: the file system finds free inodes one after the other
    // anyway, and racing for the same ones makes each search longer.
    filling_ = true;
    lock.unlock();
    const bool more = spares_->make_one() && spares_->low();
    lock.lock();
    filling_ = false;
    if (!more) fill_spares_ = false;
  }
}

void Scheduler::hand_end(std::shared_ptr<RunCtx> ctx, std::shared_ptr<runner::Outcome> outcome) {
  {
    std::lock_guard books(books_mu_);
    books_ends_.emplace_back(std::move(ctx), std::move(outcome));
  }
  books_cv_.notify_one();
}

void Scheduler::spawn(std::shared_ptr<RunCtx> ctx) {
  auto spawned = runner::Execution::start(ctx->command);
  if (!spawned) {
    ctx->start_error = "cannot start: " + spawned.error().message;
    hand_end(std::move(ctx), nullptr);
    return;
  }
  ctx->exec = std::shared_ptr<runner::Execution>(std::move(*spawned));
  {
    std::lock_guard lock(mu_);
    auto it = active_.find(ctx->run.id);
    if (it != active_.end()) {
      it->second->exec = ctx->exec;
      if (it->second->stop_requested != runner::StopReason::none) ctx->exec->stop(it->second->stop_requested);
    }
  }
  // The sink runs on the children's loop: the log writer is that thread's
  // until the end is handed to the bookkeeper.
  auto sink = [this, keep = ctx](std::string_view chunk, runner::Stream stream) {
    RunCtx& c = *keep;
    const logs::Verdict v =
        c.log->append(chunk, stream == runner::Stream::out ? logs::Stream::out : logs::Stream::err, clock_.now());
    if (v == logs::Verdict::stop_overflow) {
      c.exec->stop(runner::StopReason::log_overflow);
    } else if (v == logs::Verdict::stop_disk_pressure) {
      if (c.stop_message.empty()) c.stop_message = "cancelled: insufficient disk space (log_on_full = kill_task)";
      c.exec->stop(runner::StopReason::cancelled);
    }
  };
  auto on_end = [this, keep = ctx](runner::Outcome outcome) {
    hand_end(keep, std::make_shared<runner::Outcome>(std::move(outcome)));
  };
  if (auto st = children_->watch(ctx->exec, std::move(sink), std::move(on_end)); !st) {
    {
      std::lock_guard lock(mu_);
      if (auto it = active_.find(ctx->run.id); it != active_.end()) it->second->exec.reset();
    }
    ctx->exec.reset();  // killed and reaped by its destructor
    ctx->start_error = "cannot start: " + st.error().message;
    hand_end(std::move(ctx), nullptr);
  }
}

Scheduler::Ended Scheduler::end_of(std::shared_ptr<RunCtx> ctx, const runner::Outcome* ended) {
  const Launch& run = ctx->run;
  const config::Task& task = *ctx->task;
  if (!ended) {
    // The spawn failed: the row is running and names the log; both are ended.
    Ended out;
    out.run = run;
    out.task = task.name;
    out.end.status = RunStatus::failed;
    out.end.finished_at = clock_.now();
    out.end.message = ctx->start_error;
    if (ctx->log) {
      if (auto st = ctx->log->finalize(out.end.finished_at); !st) out.unfinished = std::move(ctx->log);
      else out.end.log_bytes = static_cast<int64_t>(ctx->log->stats().bytes_on_disk);
    }
    return out;
  }
  const runner::Outcome& outcome = *ended;
  std::string stop_message = ctx->stop_message;
  {
    std::lock_guard lock(mu_);
    if (auto it = active_.find(run.id); it != active_.end()) {
      it->second->exec.reset();
      if (stop_message.empty()) stop_message = it->second->stop_message;
    }
  }
  ctx->exec.reset();
  Ended out;
  out.run = run;
  out.task = task.name;
  store::RunEnd& end = out.end;
  end.status = status_of(outcome);
  end.finished_at = clock_.now();
  end.exit_code = outcome.exit_code;
  end.signal = outcome.signal;
  end.duration_ms = outcome.duration.count();
  end.cpu_ms = outcome.cpu_ms;
  end.max_rss_kb = outcome.max_rss_kb;
  end.message = runner::describe(outcome);
  if (outcome.stopped == runner::StopReason::timeout)
    end.message = "timed out after " + format_duration(task.policy.timeout) + "; " +
                  end.message.substr(end.message.find("; ") + 2);
  if (outcome.stopped == runner::StopReason::log_overflow)
    end.message = "log reached log_max_size = " + format_size(task.policy.log_max_size) + " (log_on_full = kill_task); " +
                  end.message.substr(end.message.find("; ") + 2);
  if (!stop_message.empty()) {
    // Say why once: "cancelled by request; killed by SIGTERM", not the
    // runner's own "cancelled; " after it.
    if (outcome.stopped == runner::StopReason::cancelled && end.message.find("; ") != std::string::npos)
      end.message = end.message.substr(end.message.find("; ") + 2);
    end.message = stop_message + "; " + end.message;
  }
  std::unique_ptr<logs::LogWriter>& log = ctx->log;
  if (log) {
    bool log_finalized = true;
    if (auto st = log->finalize(clock_.now()); !st) {
      spdlog::error("run {}: log: {}; finalized again when the disk has room", run.id, st.error().message);
      log_finalized = false;
    }
    const logs::WriterStats& ls = log->stats();
    end.log_bytes = static_cast<int64_t>(ls.bytes_on_disk);
    if (ls.bytes_dropped > 0)
      end.message += "; log: " + format_size(ls.bytes_dropped) + " dropped" +
                     (ls.rotations > 0 ? " (" + std::to_string(ls.rotations) + " rotation(s))" : "") +
                     (ls.disk_pressure ? " (disk pressure)" : "");
    if (!ls.error.empty()) end.message += "; log error: " + ls.error;
    if (ls.disk_pressure) {
      std::lock_guard lock(mu_);
      ++counters_.disk_pressure_runs;
    }
    if (!log_finalized) out.unfinished = std::move(log);
  }
  return out;
}

bool Scheduler::record_end(const Launch& run, const store::RunEnd& end, std::unique_ptr<logs::LogWriter> unfinished) {
  if (auto st = store_.finish_run(run.id, end); !st) {
    // The process has ended; its result must not be lost (a full disk):
    // kept here and recorded by tick() once the database takes writes.
    spdlog::error("run {}: cannot record its end ({}); kept in memory, recorded when the database accepts writes "
                  "again",
                  run.id, st.error().message);
    {
      std::lock_guard lock(mu_);
      write_problem_ = "cannot record runs: " + st.error().message;
      pending_ends_.push_back(PendingEnd{run, end, false, std::move(unfinished)});
    }
    finished(run, end.status, false);
    return false;
  }
  std::lock_guard lock(mu_);
  recorded_locked(run, end);
  // Recorded, but its log's .meta could not be written: finalized later.
  if (unfinished) pending_ends_.push_back(PendingEnd{run, end, true, std::move(unfinished)});
  return true;
}

void Scheduler::recorded_locked(const Launch& run, const store::RunEnd& end) {
  TaskState& ts = tasks_[run.task];
  ++counters_.finished[{ts.task->name, store::to_string(end.status)}];
  if (end.status == RunStatus::succeeded) ts.last_success = end.finished_at;
  if (store::is_failure(end.status)) ts.last_failure = end.finished_at;
}

void Scheduler::flush_unrecorded(TimePoint now) {
  // Taken out of the lists under mu_, written without it, and what could not
  // be written put back in front of what arrived meanwhile.
  std::vector<PendingEnd> ends;
  std::vector<UnrecordedFire> fires;
  std::vector<std::string> fire_tasks;
  {
    std::lock_guard lock(mu_);
    ends.swap(pending_ends_);
    fires.swap(unrecorded_fires_);
    for (const UnrecordedFire& f : fires) fire_tasks.push_back(tasks_[f.task].task->name);
  }
  std::string problem;
  size_t e = 0;
  for (; e < ends.size(); ++e) {
    PendingEnd& p = ends[e];
    if (!p.recorded) {
      auto st = store_.finish_run(p.run.id, p.end);
      if (!st && st.error().code != ErrorCode::conflict && st.error().code != ErrorCode::not_found) {
        problem = "cannot record runs: " + st.error().message;
        break;
      }
      p.recorded = true;
      if (st) {
        spdlog::info("run {}: its end ({}) is recorded now", p.run.id, store::to_string(p.end.status));
        std::lock_guard lock(mu_);
        recorded_locked(p.run, p.end);
        publish_state(p.run, tasks_[p.run.task].task->name, p.end.status);
      }
    }
    if (p.log) {
      if (auto st = p.log->finalize(now); !st) {
        problem = "cannot finalize logs: " + st.error().message;
        break;
      }
    }
  }
  size_t f = 0;
  for (; problem.empty() && f < fires.size(); ++f) {
    store::NewRun row;
    row.task = fire_tasks[f];
    row.trigger = Trigger::schedule;
    row.status = RunStatus::missed;
    row.scheduled_at = fires[f].nominal;
    row.created_at = now;
    row.finished_at = now;
    row.message = "fire missed: it could not be recorded when due (" + fires[f].why + ")";
    // Claimed like any fire: a node that could write meanwhile may have run it.
    if (auto claim = store_.claim_fire(row); !claim) {
      problem = "cannot record runs: " + claim.error().message;
      break;
    }
  }
  std::lock_guard lock(mu_);
  pending_ends_.insert(pending_ends_.begin(), std::make_move_iterator(ends.begin() + static_cast<ptrdiff_t>(e)),
                       std::make_move_iterator(ends.end()));
  unrecorded_fires_.insert(unrecorded_fires_.begin(), fires.begin() + static_cast<ptrdiff_t>(f), fires.end());
  if (!problem.empty()) write_problem_ = problem;
  else if (pending_ends_.empty() && unrecorded_fires_.empty()) write_problem_.clear();
}

std::string Scheduler::health() const {
  std::lock_guard lock(mu_);
  if (blocked_) return *blocked_;
  if (!write_problem_.empty())
    return write_problem_ + " (" + std::to_string(pending_ends_.size()) + " run end(s) and " +
           std::to_string(unrecorded_fires_.size()) + " fire(s) waiting to be recorded)";
  return "";
}

void Scheduler::set_blocked(std::optional<std::string> reason) {
  std::lock_guard lock(mu_);
  blocked_ = std::move(reason);
  wake_.notify_all();
}

void Scheduler::publish_state(const Launch& run, const std::string& task, RunStatus status) {
  if (!options_.bus) return;
  events::Event e;
  e.kind = events::Kind::run_state;
  e.task = task;
  e.run_id = run.id;
  e.text = store::to_string(status);
  options_.bus->publish(std::move(e));
}

void Scheduler::finished(const Launch& run, RunStatus status, bool publish, Slot slot) {
  std::lock_guard lock(mu_);
  TaskState& ts = tasks_[run.task];
  if (slot == Slot::held) --ts.running;
  active_.erase(run.id);
  const auto& p = ts.task->policy;
  // log_overflow (kill_task) ended a run that did not finish its work, as a
  // timeout does; cancelled and crashed runs were ended on purpose or by the
  // daemon's own end.
  const bool failure =
      status == RunStatus::failed || status == RunStatus::timeout || status == RunStatus::log_overflow;
  bool retry_planned = false;
  if (!stopping_ && failure && run.attempt <= p.retry_attempts) {
    retries_.push_back(RetryTimer{steady_now() + retry_wait(p, run.attempt), run.task, run.attempt + 1,
                                  run.retry_of.value_or(run.id)});
    retry_planned = true;
  }
  // Published after the retry is planned, so whoever sees this end and asks
  // retry_pending() gets the right answer. An end not yet recorded is
  // published once it is (flush_unrecorded).
  if (publish) publish_state(run, ts.task->name, status);
  dispatch_queue(run.task);
  --workers_;
  // The loop sleeps until the next due instant; only a retry (which may be
  // due sooner) or an end kept in memory (a tick records it) needs it
  // earlier. Waking it for every end made 1,000 tasks firing each second
  // cost a tick per end (each a pass over every task, under mu_).
  if (retry_planned || !pending_ends_.empty()) wake_.notify_all();
  idle_cv_.notify_all();
}

void Scheduler::run_loop() {
  thread::set_name("ck-sched");
  thread::prefer_short_latency();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    const std::optional<TimePoint> next = tick();
    lock.lock();
    if (stopping_) break;
    // Sleep on the steady clock, a second at most: a wall-clock deadline
    // would not see a step back, nor wake early for a step forward.
    // To the microsecond: now() has milliseconds, and a wait rounded up to
    // them woke half a millisecond after the due instant on average.
    std::chrono::microseconds wait = kClockCheckInterval;
    if (next) wait = std::clamp(clock_.until(*next), std::chrono::microseconds(0), wait);
    wake_.wait_for(lock, wait);
  }
}

Result<int64_t> Scheduler::run_now(std::string_view name, const Env& env) {
  // Decided under mu_, recorded without it (decide_mu_ keeps shutdown and
  // the other decisions out meanwhile), then started or queued.
  std::lock_guard decide(decide_mu_);
  store::NewRun row;
  size_t t = 0;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail(ErrorCode::conflict, "the daemon is shutting down");
    if (blocked_) return fail(ErrorCode::busy, "no run starts now: " + *blocked_);
    while (t < tasks_.size() && (tasks_[t].removed || tasks_[t].task->name != name)) ++t;
    if (t == tasks_.size()) return fail(ErrorCode::not_found, "task " + std::string(name) + " not found");
    TaskState& ts = tasks_[t];
    const auto& p = ts.task->policy;
    if (ts.running >= p.max_concurrent && static_cast<int>(ts.queue.size()) >= p.queue_max)
      return fail(ErrorCode::conflict, "task " + ts.task->name + " has a full queue (queue_max = " +
                                           std::to_string(p.queue_max) + ")");
    row.task = ts.task->name;
    row.trigger = ts.body ? Trigger::system : Trigger::manual;
    row.attempt = 1;
    row.status = RunStatus::pending;
    row.created_at = clock_.now();
  }
  auto id = store_.insert_run(row);
  if (!id) {
    spdlog::error("task {}: cannot record run: {}", row.task, id.error().message);
    return id;
  }
  std::lock_guard lock(mu_);
  Launch run{*id, t, 1, std::nullopt};
  if (!env.empty() && !tasks_[t].body) run.env = std::make_shared<const Env>(env);
  start_or_queue(run);
  wake_.notify_all();
  return *id;
}

Result<bool> Scheduler::set_paused(std::string_view name, bool paused) {
  std::lock_guard decide(decide_mu_);
  size_t t = 0;
  {
    std::lock_guard lock(mu_);
    while (t < tasks_.size() && (tasks_[t].removed || tasks_[t].task->name != name)) ++t;
    if (t == tasks_.size()) return fail(ErrorCode::not_found, "task " + std::string(name) + " not found");
    TaskState& ts = tasks_[t];
    if (ts.body)
      return fail(ErrorCode::invalid_argument, "system task " + ts.task->name + " cannot be paused (edit its schedule instead)");
    if (ts.paused == paused) return false;
  }
  const TimePoint now = clock_.now();
  if (auto st = store_.set_paused(name, paused, now); !st) return tl::unexpected(st.error());
  std::lock_guard lock(mu_);
  TaskState& ts = tasks_[t];
  ts.paused = paused;
  ts.resumed_at = paused ? std::nullopt : std::optional<TimePoint>(now);
  schedule_next(t, now);
  wake_.notify_all();
  return true;
}

ReloadSummary Scheduler::reload(const config::Config& config, std::vector<SystemTask> system) {
  auto pauses = store_.task_pauses();
  if (!pauses) spdlog::error("reading paused tasks: {}", pauses.error().message);
  const std::vector<store::TaskPause> no_pauses;
  std::lock_guard lock(mu_);
  const TimePoint now = clock_.now();
  ReloadSummary out;
  storage_ = config.storage;
  std::set<size_t> kept;
  int order = 0;
  for (const config::Task& task : config.tasks) {
    const int position = order++;
    size_t t = 0;
    while (t < tasks_.size() && (tasks_[t].body || tasks_[t].task->name != task.name)) ++t;
    if (t == tasks_.size()) {
      const size_t before = tasks_.size();
      add_task(task, position, pauses ? *pauses : no_pauses);
      if (tasks_.size() > before) {
        out.added.push_back(task.name);
        kept.insert(before);
      }
      continue;
    }
    TaskState& ts = tasks_[t];
    if ((!task.cron.empty() && !task.schedule) || !task.zone) continue;  // not prepared: keep the old settings
    if (ts.removed) out.added.push_back(task.name);
    else if (!config::same_settings(*ts.task, task)) out.changed.push_back(task.name);
    ts.task = std::make_shared<const config::Task>(task);
    ts.schedule = task.schedule;
    ts.zone = *task.zone;
    ts.order = position;
    ts.removed = false;
    kept.insert(t);
  }
  for (size_t t = 0; t < tasks_.size(); ++t) {
    TaskState& ts = tasks_[t];
    if (ts.body) {
      for (SystemTask& sys : system)
        if (sys.name == ts.task->name) {
          auto schedule = sys.schedule ? Result<cron::Schedule>(*sys.schedule) : cron::Schedule::parse(sys.cron);
          if (schedule) {
            auto settings = std::make_shared<config::Task>(*ts.task);
            settings->cron = sys.cron;
            ts.task = std::move(settings);
            ts.schedule = *schedule;
          }
          ts.body = std::move(sys.body);
          ts.order = order + static_cast<int>(t);
        }
    } else if (!kept.count(t) && !ts.removed) {
      ts.removed = true;
      out.removed.push_back(ts.task->name);
      std::erase_if(retries_, [&](const RetryTimer& r) { return r.task == t; });
    }
  }
  for (size_t t = 0; t < tasks_.size(); ++t) schedule_next(t, now);
  wake_.notify_all();
  return out;
}

Status Scheduler::cancel(int64_t run_id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = active_.find(run_id); it != active_.end()) {
      Active& a = *it->second;
      if (a.stop_requested == runner::StopReason::none) {
        a.stop_requested = runner::StopReason::cancelled;
        a.stop_message = "cancelled by request";
      }
      if (a.exec) a.exec->stop(runner::StopReason::cancelled);
      return {};
    }
    bool found = false;
    for (TaskState& ts : tasks_) {
      auto it = std::find_if(ts.queue.begin(), ts.queue.end(), [&](const Launch& l) { return l.id == run_id; });
      if (it == ts.queue.end()) continue;
      ts.queue.erase(it);
      found = true;
      break;
    }
    if (!found) return fail(ErrorCode::not_found, "run " + std::to_string(run_id) + " is not in flight");
  }
  end_queued(run_id, "cancelled by request before it started");  // without mu_: a commit
  std::lock_guard lock(mu_);
  idle_cv_.notify_all();
  return {};
}

void Scheduler::shutdown() {
  {
    std::lock_guard decide(decide_mu_);
    std::vector<int64_t> queued;
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        stopping_ = true;
        next_due_ms_.store(0);
        retries_.clear();
        for (TaskState& ts : tasks_) {
          for (const Launch& l : ts.queue) queued.push_back(l.id);
          ts.queue.clear();
        }
        wake_.notify_all();
      }
    }
    for (int64_t id : queued) end_queued(id, "cancelled: the daemon shut down before the run started");
  }
  std::unique_lock lock(mu_);
  const auto grace = std::chrono::steady_clock::now() + options_.shutdown_timeout;
  idle_cv_.wait_until(lock, grace, [&] { return active_.empty(); });
  for (auto& [id, active] : active_) {
    if (active->stop_requested == runner::StopReason::none) {
      active->stop_requested = runner::StopReason::cancelled;
      active->stop_message = "cancelled: the daemon shut down (shutdown_timeout = " +
                             format_duration(options_.shutdown_timeout) + ")";
    }
    if (active->exec) active->exec->stop(runner::StopReason::cancelled);
  }
  idle_cv_.wait(lock, [&] { return workers_ == 0; });
  // A last try for what the database refused; what still fails is lost
  // to this process (the next start marks those runs crashed).
  if (!pending_ends_.empty() || !unrecorded_fires_.empty()) {
    lock.unlock();
    {
      std::lock_guard decide(decide_mu_);
      flush_unrecorded(clock_.now());
    }
    lock.lock();
    if (!pending_ends_.empty())
      spdlog::error("{} run end(s) could not be recorded before shutdown: {}", pending_ends_.size(), write_problem_);
  }
}

bool Scheduler::wait_idle(Millis timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] {
    if (workers_ > 0) return false;
    return std::all_of(tasks_.begin(), tasks_.end(), [](const TaskState& ts) { return ts.queue.empty(); });
  });
}

void Scheduler::record_lateness(Millis late) {
  std::lock_guard lock(mu_);
  const double ms = static_cast<double>(std::max<int64_t>(0, late.count()));
  size_t b = 0;
  while (b < Lateness::kBuckets && ms > Lateness::kBoundsMs[b]) ++b;
  ++lateness_.counts[b];
  ++lateness_.count;
  lateness_.sum_ms += ms;
}

Lateness Scheduler::lateness() const {
  std::lock_guard lock(mu_);
  return lateness_;
}

std::vector<TaskView> Scheduler::tasks() const {
  // Only the live state is copied under mu_: the API's GET workers, which
  // call this for every task listing, run at a lower priority than the fire
  // path, and a tick waits for mu_. Names and schedules are read from the
  // task's settings (immutable, shared) after the lock is released.
  struct Live {
    std::shared_ptr<const config::Task> task;
    std::string zone;
    std::optional<TimePoint> next_fire;
    int running;
    int queued;
    bool system;
    std::optional<TimePoint> last_success;
    std::optional<TimePoint> last_failure;
    bool paused;
    int order;
  };
  std::vector<Live> live;
  {
    std::lock_guard lock(mu_);
    live.reserve(tasks_.size());
    for (const TaskState& ts : tasks_)
      if (!ts.removed)
        live.push_back(Live{ts.task, ts.zone.name(), ts.next_fire, ts.running, static_cast<int>(ts.queue.size()),
                            static_cast<bool>(ts.body), ts.last_success, ts.last_failure, ts.paused, ts.order});
  }
  std::stable_sort(live.begin(), live.end(),
                   [](const Live& a, const Live& b) { return std::tie(a.system, a.order) < std::tie(b.system, b.order); });
  std::vector<TaskView> out;
  out.reserve(live.size());
  for (Live& l : live)
    out.push_back(TaskView{l.task->name, l.task->cron, std::move(l.zone), l.next_fire, l.running, l.queued, l.system,
                           l.last_success, l.last_failure, l.task->enabled, l.paused});
  return out;
}

Counters Scheduler::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

bool Scheduler::retry_pending(int64_t first_run_id) const {
  std::lock_guard lock(mu_);
  for (const RetryTimer& r : retries_)
    if (r.retry_of == first_run_id) return true;
  for (const TaskState& ts : tasks_)
    for (const Launch& l : ts.queue)
      if (l.retry_of == first_run_id) return true;
  return false;
}

}  // namespace cronkeep::scheduler
