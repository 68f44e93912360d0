// scheduler/scheduler.h: the clock of cronkeep.
//
// Owns: deciding when each task fires (cron + jitter), the overlap policy
// (max_concurrent, on_overlap, queue_max), catch-up after downtime, retries,
// run-now and cancel, crash reconciliation at start-up and the shutdown
// sequence. It drives the runner and the log writer for each run and records
// every step through store::Store. Must not contain SQL text or know HTTP.
//
// Time: every instant it records or compares comes from the injected Clock,
// so tests move a FakeClock and call tick() instead of sleeping. Process
// timeouts (runner) use the monotonic clock.
//
// Threads: the scheduler owns a fixed set of threads, whatever the number
// of runs. The children's loop (runner::Supervisor) owns every running
// process: it reads the pipes, hands each chunk to the run's log writer (on
// that thread), enforces timeouts and stops, reaps, and passes each Outcome
// to the bookkeeper. The bookkeeper thread does a run's blocking work at
// both ends, in rounds: finalizing the logs of the ends waiting at that
// moment and giving their slots to queued runs, creating the logs of the
// starts waiting then, and recording those ends and marking those starts
// running in one commit. kSpawners spawner threads start the processes
// (posix_spawn waits for the child's exec, which on a busy machine waits
// for the scheduler of the kernel; a few overlap those waits) and hand them
// to the loop; they also help make a large batch's logs, and make spare
// log files (logs::SpareFiles) while idle. A system task's body still runs on a
// thread of its own. The caller's thread (run_loop, or a test calling
// tick()) decides and records fires. All state is behind one mutex (mu_),
// never held across a database commit: tick(), run_now(), set_paused(),
// cancel() and shutdown() record with it released (their decisions are
// serialised by a second mutex, taken first). Every public method is
// thread-safe.
//
// Policies (docs/scheduling.md has the full rules):
//   - a fire that finds max_concurrent runs going — counted over every node
//     when several are live (runs running on other nodes, from the store at
//     the fire and each tick while some wait) —: queue (a pending row,
//     up to queue_max, beyond that a `skipped` row), skip (a `skipped` row) or
//     terminate (the oldest running run on this node is cancelled, the new
//     one starts when its slot frees; runs on other nodes are not stopped
//     from here: the new one waits for them as a queued one would);
//   - fires lost while the daemon was down: catch_up latest runs the newest
//     one, all runs up to max_catch_up_runs newest ones, skip runs none;
//     every lost fire not run is a `missed` row (the newest
//     max_catch_up_runs individually, older ones summarised in one row);
//   - when the loop itself was late (suspend, overload) and several fires of
//     a task are due at once, the newest fires normally and the older ones
//     are `missed`;
//   - retries: a run ending failed, timeout or log_overflow is retried retry_attempts
//     times, each a run of its own (trigger retry, attempt n, retry_of the
//     first run), after retry_delay scaled by retry_backoff, capped at 5 min;
//   - run-now, retries and catch-up runs never skip: they start or queue;
//   - every fire of the schedule (to run, catch up, skip or miss) is claimed
//     through store::Store::claim_fire; a fire another node claimed is left
//     to it: nothing is recorded or run here (several nodes, one database);
//   - several live nodes (set_peers): each fire is offered first to one of
//     them, chosen by rendezvous hashing of (task, fire, node), so fires
//     spread evenly; the others claim it kClaimGrace later, which claims
//     nothing unless that node is dead or late. A task with `nodes` fires
//     only on the nodes it names, and only they are candidates;
//   - a task that does not fire on its own: `enabled = false`, no `cron`
//     (on demand only), or paused (set_paused, kept in the store across
//     restarts). Run-now works for all three. A paused or disabled task
//     gets no catch-up; a resumed one catches up only fires after its resume;
//   - reload() replaces the task set under the lock: running and queued runs
//     go on with the settings they started with, next fires are recomputed
//     from now, a removed task stops firing (its retries are dropped);
//   - a step of the wall clock (it moved by a second or more than the
//     steady clock between two ticks; run_loop ticks at least once a second):
//     after a step back, every task's next fire is recomputed from the new
//     now; fires a step forward passed over are lost fires of a late loop
//     (above). Retry waits run on the steady clock and keep their real length.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <set>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "cron/cron.h"
#include "layout/layout.h"
#include "store/store.h"

namespace cronkeep::runner {
class Execution;
class Supervisor;
struct Outcome;
}
namespace cronkeep::logs {
class LogWriter;
class SpareFiles;
}
namespace cronkeep::events {
class Bus;
}

namespace cronkeep::scheduler {

// A task of cronkeep's own (retention, compaction): scheduled like any task,
// recorded as runs with trigger `system` and no log file; `body` does the
// work on a thread of the run's own and returns the run's message, or an
// Error that makes the run `failed` with the error as its message. At most
// one run at a time (a fire that finds one going is recorded `skipped`); no
// catch-up after downtime.
struct SystemTask {
  std::string name;  // contains ':' so no configured task can take it
  std::string cron;  // as configured, for listings
  std::function<Result<std::string>(int64_t run_id)> body;
  std::optional<cron::Schedule> schedule;  // `cron` parsed by config; parsed here when unset (tests, tools)
};

struct Options {
  std::string data_dir;             // absolute; logs go under {data_dir}/logs
  Millis shutdown_timeout{10'000};  // running runs get this long on shutdown
  uint64_t seed = 0;                // jitter randomness; 0 = from std::random_device
  std::vector<SystemTask> system_tasks;
  events::Bus* bus = nullptr;       // run state changes and log lines go here when set
  // A clock that steps of the wall clock do not move, in ms from any origin.
  // Default (empty): CLOCK_BOOTTIME, which counts suspend as the wall clock
  // does, so a resume is not taken for a step. Tests pass one that follows
  // their FakeClock and step the FakeClock alone.
  std::function<Millis()> steady = {};
  // This node's name (config `[daemon] node`): a task pinned with `nodes`
  // fires on its own only on the nodes it names.
  std::string node = {};
};

// What the CLI and the API show about a task.
struct TaskView {
  std::string name;
  std::string cron;
  std::string timezone;
  std::optional<TimePoint> next_fire;  // nominal, before jitter
  int running = 0;
  int queued = 0;
  bool system = false;  // a system task (shown to authenticated callers only)
  std::optional<TimePoint> last_success;  // finished_at of the newest recorded success
  std::optional<TimePoint> last_failure;  // of the newest failed/timeout/crashed/log_overflow run
  bool enabled = true;   // config `enabled`
  bool paused = false;   // cronkeep pause
};

// What a reload changed, by task name (configured tasks only).
struct ReloadSummary {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;
};

// Extra environment variables for one manual run (names checked by ops).
using Env = std::map<std::string, std::string>;

// Runs recorded as ended since the daemon started, by (task, status):
// counted once each, after the end is in the database.
struct Counters {
  std::map<std::pair<std::string, std::string>, uint64_t> finished;
  uint64_t disk_pressure_runs = 0;  // runs whose log hit min_free_space (log.disk_pressure)
};

// How late scheduled runs started (started_at - scheduled_at, jitter
// included), as a Prometheus-style histogram since the daemon started.
struct Lateness {
  static constexpr double kBoundsMs[] = {1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000};
  static constexpr size_t kBuckets = std::size(kBoundsMs);
  uint64_t counts[kBuckets + 1] = {};  // per bucket (not cumulative); the last is +Inf
  uint64_t count = 0;
  double sum_ms = 0;
};

class Scheduler {
 public:
  // Requires: `config` passed validation (config::parse_config), `store`
  // and `clock` outlive the scheduler.
  Scheduler(const config::Config& config, store::Store& store, Clock& clock, Options options);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  // Waits for every run in flight to end and be recorded (call shutdown()
  // first to bound the wait), then stops its threads.
  ~Scheduler();

  // Start-up: every run left pending or running becomes crashed (exit code
  // -2, log kept), then each task's fires lost since its last recorded fire
  // are caught up or recorded as missed. Call once, before tick().
  // Errors: whatever the store returns.
  Status start();

  // Notices a step of the wall clock since the last tick (see the policies
  // above), fires everything due at clock.now() and returns the instant the
  // next thing is due (nullopt: nothing ever will be). Never blocks on a
  // process.
  std::optional<TimePoint> tick();

  // The daemon's loop: tick, then sleep until the next due instant, for at
  // most a second (so a step of the wall clock is noticed within a second
  // whichever way it goes), or until woken (run finished, run-now,
  // shutdown). Returns after shutdown() began. Uses real waiting.
  void run_loop();

  // Starts (or queues) a manual run of `task` now, with `env` added to the
  // task's environment; returns its run id. Paused, disabled and on-demand
  // tasks run too. Errors: not_found for an unknown task; conflict when
  // shutting down or the task's queue is full.
  Result<int64_t> run_now(std::string_view task, const Env& env = {});

  // Pauses (true) or resumes (false) a configured task's scheduled fires,
  // recorded in the store first so it survives a restart. Returns whether
  // the state changed. A resumed task's next fire is computed from now.
  // Errors: not_found for an unknown task; invalid_argument for a system
  // task (they are never disabled); the store's.
  Result<bool> set_paused(std::string_view task, bool paused);

  // Replaces the configured tasks with `config`'s and the system tasks'
  // schedules and bodies with `system` (matched by name), atomically under
  // the lock. Requires: `config` prepared (config::prepare), same data_dir.
  // Runs in flight and queued keep their settings; every next fire is
  // recomputed from now.
  ReloadSummary reload(const config::Config& config, std::vector<SystemTask> system);

  // Cancels a queued or running run: a queued one ends `cancelled` at once;
  // a running one gets SIGTERM, then SIGKILL after graceful_stop, and ends
  // `cancelled`. Errors: not_found when the run is not in flight here.
  Status cancel(int64_t run_id);

  // Stops firing; gives running runs shutdown_timeout to end by themselves,
  // then cancels them (graceful_stop applies) and ends queued runs as
  // `cancelled`. Returns when every run has been recorded as ended.
  void shutdown();

  // How long bulk disk work (retention's removal of run files,
  // retention::Executor::set_pace) should wait before its next step so as
  // not to compete with starts for the disk: a few milliseconds while a fire
  // is due within kBulkIoLead or starts are being prepared and recorded,
  // Millis(0) otherwise. On a file system mounted with `discard`, each
  // unlink of a purge issues its discard synchronously, and a start's log
  // creation and commit queued behind them (fires late by up to 300 ms
  // during a purge of 100,000 runs; docs/benchmarks.md). Lock-free;
  // thread-safe.
  static constexpr Millis kBulkIoLead{100};
  Millis bulk_io_wait() const;

  // Blocks until no run is in flight (queued or running), or `timeout`
  // (real time) passes; returns whether it became idle. For tests and tools.
  bool wait_idle(Millis timeout);

  std::vector<TaskView> tasks() const;
  Lateness lateness() const;
  Counters counters() const;
  // "" when healthy; otherwise why not: writes failing (a full disk: run
  // ends and fires are kept and recorded once writes work again), or the
  // reason given to set_blocked(). For /healthz.
  std::string health() const;
  // While set, no run starts: fires are recorded as missed with `reason`,
  // run_now fails with busy. nullopt lifts it. For the daemon, which sees
  // its data directory moved or deleted.
  void set_blocked(std::optional<std::string> reason);

  // The nodes alive now (this one included; any order), from the daemon's
  // heartbeat thread. Fires due after the call are offered as the policy
  // above says; an empty list or this node alone: every fire at once.
  void set_peers(std::vector<std::string> live);
  // How much later than the first candidate the other live nodes claim a fire.
  static constexpr Millis kClaimGrace{500};

  // True while a retry of the chain that `first_run_id` began is waiting
  // (its timer, or queued for a slot). For run-now callers that wait for a
  // chain's final attempt.
  bool retry_pending(int64_t first_run_id) const;

 private:
  struct Active;
  // A run that has a row and waits for (or has) a slot.
  struct Launch {
    int64_t id;
    size_t task;
    int attempt;
    std::optional<int64_t> retry_of;
    std::optional<TimePoint> scheduled = std::nullopt;  // for lateness: scheduled fires only
    std::shared_ptr<const Env> env = nullptr;           // extra variables of a manual run
    bool regardless = false;                            // a catch-up run: starts whatever the slots
  };
  struct TaskState {
    // Replaced whole by reload(); a starting run copies the pointer under mu_ and
    // keeps the settings its run started with.
    std::shared_ptr<const config::Task> task;
    std::optional<cron::Schedule> schedule;  // none: on demand only
    cron::Zone zone = cron::Zone::utc();
    int order = 0;         // position in the configuration (system tasks after)
    bool paused = false;
    bool removed = false;  // gone from the configuration by a reload; runs in flight finish
    std::optional<TimePoint> resumed_at;  // catch-up after a restart starts here
    std::optional<TimePoint> next_fire;  // nominal
    Millis jitter{0};                    // drawn for next_fire
    TimePoint next_due{};                // nominal + jitter (+ kClaimGrace when another node goes first)
    int running = 0;
    int elsewhere = 0;  // its runs running on other nodes, as last counted (refresh_elsewhere)
    std::list<Launch> queue;  // a list: an empty deque already holds 600 bytes, per task
    std::function<Result<std::string>(int64_t)> body;  // set for system tasks
    std::optional<TimePoint> last_success;
    std::optional<TimePoint> last_failure;
  };
  struct RetryTimer {
    Millis due;       // on the steady clock (steady_now()), so steps of the wall clock do not move it
    size_t task;
    int attempt;      // the attempt number the retry will have
    int64_t retry_of;  // the first run's id
  };
  // Private methods require mu_ held unless they say otherwise.
  Millis steady_now() const;
  void notice_clock_step(TimePoint now, Millis steady);
  void schedule_next(size_t t, TimePoint after);
  bool fires_on_its_own(const TaskState& ts) const;
  // Counts the task's runs running on other nodes (several live nodes only).
  void refresh_elsewhere(size_t t);
  // kClaimGrace when another live candidate node is offered `fire` first.
  Millis claim_delay(const TaskState& ts, TimePoint fire) const;
  void add_task(const config::Task& task, int order, const std::vector<store::TaskPause>& pauses);
  void fire_due(TimePoint now, Millis steady);
  void fire(size_t t, TimePoint nominal, store::Trigger trigger);
  enum class CatchUpRuns { by_policy, none };
  void handle_lost_fires(size_t t, const std::vector<TimePoint>& lost, size_t total_lost, CatchUpRuns runs);
  void start_or_queue(const Launch& run);
  void launch(const Launch& run);
  void hand_to_books(const std::vector<Launch>& runs);
  // Keep spare log files for a burst of `burst` starts; the spawners make
  // them while they have nothing to spawn.
  void want_spares(size_t burst);
  void dispatch_queue(size_t t);
  Result<int64_t> insert(size_t t, store::Trigger trigger, std::optional<TimePoint> scheduled, int attempt,
                         std::optional<int64_t> retry_of, store::RunStatus status, std::string message);
  // A row born terminal (skipped, missed); a failure is logged by insert().
  void record_terminal(size_t t, store::Trigger trigger, std::optional<TimePoint> scheduled, store::RunStatus status,
                       std::string message);
  void end_queued(int64_t id, std::string message);

  // The bookkeeper thread (takes mu_ itself when needed, never across a
  // store call): starts and ends of process runs, batched.
  struct RunCtx;
  struct Ended;
  struct Started;
  // Whether a run's slot was already given back (release_slot_locked) when
  // finished() is called.
  enum class Slot { held, released };
  void bookkeeper();
  // Gives the run's slot back and dispatches the task's queue into it.
  void release_slot_locked(const Launch& run);
  // A start refused because other nodes' runs took the task's slots since it
  // was dispatched: a skip fire is recorded skipped, any other run waits at
  // the head of the queue again.
  void slot_taken(const Launch& run, const std::string& why);
  // Creates the logs of `runs`; returns those ready to be marked running and
  // puts those that cannot start (their log could not be made) in `ended`.
  std::vector<Started> prepare_starts(std::vector<Launch> runs, std::vector<Ended>& ended);
  // Records `ended` and marks `started` running in one commit, then hands
  // the starts to the spawners and finishes the ends (finished()).
  void record_round(std::vector<Ended> ended, std::vector<Started> started, Slot slots);
  // `outcome` null: the spawn failed (ctx->start_error says why).
  Ended end_of(std::shared_ptr<RunCtx> ctx, const runner::Outcome* outcome);
  // A spawner thread: spawns a started run and hands it to the children's loop.
  void spawner();
  void spawn(std::shared_ptr<RunCtx> ctx);
  void hand_end(std::shared_ptr<RunCtx> ctx, std::shared_ptr<runner::Outcome> outcome);
  void publish_state(const Launch& run, const std::string& task, store::RunStatus status);
  void record_lateness(Millis late);
  // A system task's body, on a thread of its own.
  void work_system(const Launch& launch);
  // Releases the run's slot (unless `slot` says it was released already),
  // plans a retry; publishes the end unless `publish` is false (an end not
  // recorded yet). Takes mu_.
  void finished(const Launch& launch, store::RunStatus status, bool publish = true, Slot slot = Slot::held);
  // Records a run's end; when the store refuses (a full disk), keeps it in
  // pending_ends_ and releases the slot. Returns whether it was recorded.
  // Takes mu_.
  // `unfinished`: the run's log writer when its finalize failed (kept to
  // finalize again later).
  bool record_end(const Launch& launch, const store::RunEnd& end,
                  std::unique_ptr<logs::LogWriter> unfinished = nullptr);
  // Counts a run whose end was recorded.
  void recorded_locked(const Launch& launch, const store::RunEnd& end);
  // Records what could not be recorded before: run ends, then fires (as
  // missed). Requires decide_mu_ held and mu_ not held (takes it itself).
  void flush_unrecorded(TimePoint now);

  config::Storage storage_;  // guarded by mu_ (reload replaces it)
  store::Store& store_;
  Clock& clock_;
  const Options options_;
  const layout::DataDir dir_;
  // Log files made ahead (logs::SpareFiles): the spawners make them while
  // idle, a start names one instead of making its file.
  std::unique_ptr<logs::SpareFiles> spares_;
  static constexpr size_t kMinSpares = 8;

  // Serialises the decisions that record (tick, run_now, set_paused,
  // shutdown's first step, start) so that each can release mu_ across its
  // commit. Lock order: decide_mu_, then the store's write lock, then mu_;
  // nothing holding mu_ calls a store write.
  std::mutex decide_mu_;
  mutable std::mutex mu_;
  std::condition_variable wake_;     // the loop: something changed
  std::condition_variable idle_cv_;  // a run ended
  // A deque: reload() appends, and references to elements stay valid.
  // Elements are never erased (a removed task is marked `removed`).
  std::deque<TaskState> tasks_;
  std::map<int64_t, std::shared_ptr<Active>> active_;  // running runs by id
  std::vector<RetryTimer> retries_;
  std::mt19937_64 rng_;
  std::vector<std::string> peers_;  // set_peers(), sorted
  int workers_ = 0;  // runs launched and not yet finished()
  // The bookkeeper's queue: runs to start, ends to record. Its own mutex
  // (taken after mu_ when both are held), so the children's loop never
  // waits for mu_.
  std::mutex books_mu_;
  std::condition_variable books_cv_;
  std::vector<Launch> books_starts_;
  // For bulk_io_wait(): starts handed to the bookkeeper and not yet
  // recorded, and the earliest due instant as of the last tick (Unix ms, 0:
  // none or stopping).
  std::atomic<int> starts_in_flight_{0};
  std::atomic<int64_t> next_due_ms_{0};
  std::vector<std::pair<std::shared_ptr<RunCtx>, std::shared_ptr<runner::Outcome>>> books_ends_;
  bool books_stop_ = false;
  // The spawners' queue: runs marked running, waiting for posix_spawn.
  static constexpr int kSpawners = 4;
  std::mutex spawn_mu_;
  std::condition_variable spawn_cv_;
  std::deque<std::shared_ptr<RunCtx>> spawn_jobs_;
  // Logs of a large batch of starts, made in chunks by the bookkeeper and
  // the spawners together (prepare_starts); taken before any spawn job.
  struct LogJob {
    static constexpr size_t kChunk = 16;
    size_t total = 0;
    std::function<void(size_t)> make;  // makes the log of start i; set until done == total
    std::atomic<size_t> next{0};       // the next chunk's first index
    std::mutex mu;
    std::condition_variable cv;
    size_t done = 0;  // starts whose log was made (or refused); guarded by mu
    // Makes chunks until none is left.
    void work();
  };
  static constexpr size_t kParallelLogs = 64;  // a batch this large has its logs made in parallel
  std::deque<std::shared_ptr<LogJob>> log_jobs_;
  bool fill_spares_ = false;  // spares_ is low: an idle spawner makes one
  bool filling_ = false;      // a spawner is making one
  bool spawn_stop_ = false;
  std::vector<std::thread> spawners_;
  Lateness lateness_;
  Counters counters_;
  // What the database refused (a full disk), kept until it takes writes.
  struct PendingEnd {
    Launch run;
    store::RunEnd end;
    bool recorded = false;                 // the row has its end; only the log waits
    std::unique_ptr<logs::LogWriter> log;  // set when the log's finalize failed
  };
  struct UnrecordedFire {
    size_t task;
    TimePoint nominal;
    std::string why;
  };
  std::vector<PendingEnd> pending_ends_;
  std::vector<UnrecordedFire> unrecorded_fires_;
  std::string write_problem_;               // the last write failure while something waits; "" = healthy
  std::optional<std::string> blocked_;      // set_blocked(): why no run starts
  // During tick()'s batch: launches wait for the commit.
  struct TickBatch {
    std::vector<Launch> launches;
    std::vector<std::pair<size_t, TimePoint>> fired;
    std::vector<RetryTimer> retries;
  };
  TickBatch* batch_ = nullptr;
  // While tick() starts a batch's launches: the bookkeeper's starts are
  // collected here and handed over at once, so that one round of the
  // bookkeeper makes them all (not the first alone, then the rest).
  std::vector<Launch>* books_batch_ = nullptr;
  // During a tick whose transaction could not begin: insert() returns it.
  const Error* refused_ = nullptr;
  bool stopping_ = false;
  // The wall and steady clocks at the last tick, to notice steps.
  std::optional<std::pair<TimePoint, Millis>> clock_ref_;
  // Declared last: destroyed first, so their threads stop before the state
  // they use goes.
  std::unique_ptr<runner::Supervisor> children_;
  std::thread books_thread_;
};

}  // namespace cronkeep::scheduler
