// ops/ops.h: every use case cronkeep offers, as one interface.
//
// Owns: what a user can ask of cronkeep (list tasks, list runs, read and
// follow a log, run now, cancel, delete a run, purge, compact, status,
// check/repair, validate, read the archive of purged runs) with the rules that go with each: which runs a
// caller may see, which parameters are valid, what each answer contains.
// Answers are plain structs. Must not know argv, HTTP routing or text
// formatting: the CLI turns argv into these calls and prints the answers,
// the HTTP API turns requests into these calls and answers JSON (ops/wire.h
// is the one JSON shape of every struct, shared by both).
//
// Two implementations:
//   - local (ops/local.h): on the data directory. Inside the daemon it acts
//     through the scheduler and runs blocking maintenance on the maintenance
//     thread; in the CLI without a daemon it opens the database itself
//     (read-only, or holding the data directory's lock for writes).
//   - remote (ops/remote.h): over a running daemon's HTTP API.
// The CLI uses remote when a daemon holds the data directory, local
// otherwise; a test requires both to print the same JSON.
//
// Errors (every method): not_found for an unknown task or run;
// invalid_argument naming the field for bad parameters (the same text on
// both implementations); conflict when the state forbids it (run not in
// flight, no daemon to run a task); busy when the data directory is locked;
// io/corruption/internal from below.
//
// Thread-safety: every implementation is safe to call from several threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time.h"
#include "config/config.h"
#include "logs/logs.h"
#include "retention/retention.h"
#include "store/store.h"

namespace cronkeep::ops {

using namespace std::chrono_literals;

// ---- tasks --------------------------------------------------------------------

// running wins over queued, queued over paused, paused over disabled,
// disabled over manual (no cron: runs only on demand), and those over idle.
enum class TaskState { idle, running, queued, paused, disabled, manual };
const char* to_string(TaskState s);

struct TaskInfo {
  std::string name;
  bool configured = false;                 // in the configuration (system tasks too)
  bool system = false;                     // cronkeep:retention, cronkeep:compactor
  std::string cron;                        // empty for a removed task
  std::string timezone;                    // IANA name; empty for a removed task
  std::optional<TimePoint> next_fire;      // nominal (before jitter)
  TaskState state = TaskState::idle;
  bool enabled = true;                     // config `enabled` (true for removed and system tasks)
  bool paused = false;                     // cronkeep pause
  int running = 0;
  int queued = 0;
  int64_t runs = 0;                        // rows in the history
  std::optional<store::Run> last_run;
  std::optional<TimePoint> last_success;   // finished_at of the newest succeeded run
  std::optional<TimePoint> last_failure;   // of the newest failed/timeout/crashed/log_overflow run
};

// ---- runs and logs ------------------------------------------------------------

struct RunsQuery {
  std::string task;
  int limit = 50;                          // 1..1000
  std::optional<int64_t> before;           // keyset paging: runs with id < before
  std::optional<store::RunStatus> status;
};

struct RunsPage {
  std::vector<store::Run> runs;            // newest first
  std::optional<int64_t> next_before;      // pass as `before` for the next page; none at the end
};

struct LogQuery {
  std::string task;
  int64_t run_id = 0;
  logs::ReadRequest read;                  // checked by check_read()
  bool from_line_given = false;            // read.from_line was asked for (not the default)
};

struct LogSlice {
  logs::LogPage page;
  store::RunStatus run_status = store::RunStatus::succeeded;
};

// One thing a follower receives. `id` is the last line number delivered
// (what a client sends back as Last-Event-ID to resume).
struct FollowEvent {
  enum class Kind { line, rotated, dropped, done, error };
  Kind kind = Kind::line;
  int64_t id = 0;
  logs::Line line;                         // kind line
  std::string text;                        // rotated/dropped: a note; done: the run's final status
                                           // (or "idle_timeout", "shutdown"); error: the message
  int64_t count = 0;                       // dropped: events lost, or bytes dropped by the log's cap

  static FollowEvent of(Kind k) {
    FollowEvent e;
    e.kind = k;
    return e;
  }
};
const char* to_string(FollowEvent::Kind k);

struct FollowRequest {
  std::string task;
  int64_t run_id = 0;
  int64_t from = 1;                        // first line; negative: the last -from lines first
  Millis queued_wait = 30s;                // how long to wait for a queued run to start
  Millis idle_timeout = 10min;             // end with done "idle_timeout" after this long without an event
};

// Receives events in order; returns false to stop following. flush() is
// called when a burst of events has been handed over (write it out now).
class FollowSink {
 public:
  virtual ~FollowSink() = default;
  virtual bool on_event(const FollowEvent& event) = 0;
  virtual bool flush() { return true; }
};

// ---- actions ------------------------------------------------------------------

struct RunNowRequest {
  std::string task;
  bool wait = false;                       // wait for the end of the retry chain's final attempt
  Millis wait_timeout = 24h;               // give up waiting after this (the run goes on)
  std::map<std::string, std::string> env;  // added to the task's environment for this run (check_env)
};

struct PauseResult {
  std::string task;
  bool paused = false;                     // the state now
  bool changed = false;                    // false: it already was in that state
};

// What a configuration reload did (ops reload, SIGHUP, POST /api/reload).
struct ReloadResult {
  std::vector<std::string> added;          // task names
  std::vector<std::string> removed;
  std::vector<std::string> changed;
  std::vector<std::string> sections;       // other sections that changed: retention, compactor, storage, defaults, daemon
  std::string message;                     // one line, also the message of the recording run
  int64_t run_id = 0;                      // the cronkeep:reload run that recorded it; 0 when not recorded
};

struct CancelResult {
  int64_t id = 0;
  bool cancelling = true;                  // a running run gets SIGTERM; a queued one ends at once
};

struct DeleteResult {
  int64_t id = 0;
  std::string task;
  int64_t log_bytes = 0;
  int64_t files_deleted = 0;
  std::string message;
  bool archived = false;                   // written to the archive first ([retention] archive)
};

struct SystemTaskStatus {
  std::string task;
  std::string schedule;
  std::optional<TimePoint> next_run;
  std::optional<store::Run> last_run;
  std::optional<store::MaintenanceFigures> last_figures;
  std::optional<store::MaintenanceFigures> total_figures;
};

// The file system of the data directory (the logs; the database too on
// SQLite) against [storage] min_free_space: below it, runs refuse to start
// and running ones stop accepting output (docs/configuration.md).
struct DiskStatus {
  int64_t free_bytes = 0;                  // available to unprivileged users
  int64_t total_bytes = 0;                 // the file system's size
  int64_t min_free_space = 0;              // [storage] min_free_space; 0 = no check
  bool below_min() const { return min_free_space > 0 && free_bytes < min_free_space; }
};

struct MaintenanceStatus {
  std::vector<SystemTaskStatus> system_tasks;
  store::DbStats database;
  int64_t log_dir_bytes = 0;
  std::optional<DiskStatus> disk;          // none when the file system could not be read
};

// The figures of the system runs, newest first (the maintenance page's chart).
struct MaintenanceHistoryQuery {
  int64_t limit = 100;                     // 1..1000
  std::optional<int64_t> before;           // keyset paging: figures of runs with id < before
};

struct MaintenanceHistory {
  std::vector<store::MaintenanceFigures> runs;  // both system tasks, newest first by run id
  std::optional<int64_t> next_before;      // pass as `before` for the next page; none at the end
};

struct CheckProblem {
  std::string kind;                        // integrity, task_counts, missing_log, bad_sidecar, unfinalized_log, tombstones,
                                           // orphan_log, orphan_sidecar, empty_dir
  std::string detail;
  bool repaired = false;
};

struct CheckReport {
  bool ok = true;                          // no problem left (after repair, when repairing)
  std::vector<CheckProblem> problems;
  int64_t repaired = 0;
};

// ---- for the web UI: run states live, retention in effect, raw log bytes ------

// The watch is subscribed (ready: first, once; every later change is
// delivered), a run changed state (state), a system run reports its work so
// far (progress: the compactor's steps), events were lost for a slow reader
// (dropped: the client should reload what it shows), or the watch ended
// (done: text "idle_timeout" or "shutdown").
struct WatchEvent {
  enum class Kind { ready, state, progress, dropped, done };
  Kind kind = Kind::state;
  uint64_t seq = 0;                        // increasing; the SSE id (0 for ready)
  std::string task;                        // state, progress
  int64_t run_id = 0;                      // state, progress
  std::string status;                      // state: the run's new status (store::to_string);
                                           // progress: the phase (retention::CompactStep::Phase)
  std::optional<TimePoint> time;           // state, progress: when it happened (UTC)
  int64_t count = 0;                       // dropped: events lost; progress: units done
  int64_t total = 0;                       // progress: units to do (0: unknown)
  bool include_system = false;             // ready: system tasks' events are included
  std::string text;                        // done: why
};
const char* to_string(WatchEvent::Kind k);

struct WatchRequest {
  bool include_system = false;             // system tasks' runs too (authenticated callers)
  Millis idle_timeout = 10min;             // end with done "idle_timeout" after this long without an event
};

class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual bool on_event(const WatchEvent& event) = 0;
  virtual bool flush() { return true; }
};

// One retention setting as it applies to a task, and where its value comes
// from: "task" (the task's own key), "[defaults]", "[retention]", "[storage]".
struct RetentionRule {
  std::string key;                         // keep_runs, keep_for, keep_failed_for, max_age, max_runs, max_size
  std::string value;                       // as a user writes it: "100", "30d", "0" (none)
  std::string source;
};

// What the next retention sweep would do to one task, were it to run now.
struct RetentionPreview {
  std::string task;
  std::vector<RetentionRule> rules;
  int64_t terminal_runs = 0;               // the task's ended runs
  int64_t expired_runs = 0;                // of them, what the sweep would delete
  int64_t expired_log_bytes = 0;
  std::vector<std::pair<std::string, int64_t>> by_reason;  // retention::Reason name → runs
  std::optional<int64_t> oldest_expired_id;
  std::optional<int64_t> newest_expired_id;
  std::string held_back;                   // non-empty: the age rules would be held back (clock guard), why
};

// The newest runs of every task the caller may see, in one answer: the
// overview's strips (one request instead of one per task).
struct RecentRunsQuery {
  int per_task = 30;                       // 1..kMaxRecentPerTask
  bool include_system = false;             // system tasks' runs too (authenticated callers)
};

struct RecentRuns {
  int per_task = 30;
  std::vector<store::TaskRuns> tasks;      // every visible task with history, by name; runs newest first
};

// Raw bytes of a run's log file (exactly what the process wrote), for a
// download. A rotated-out `.prev` is not included.
struct RawLogChunk {
  std::string bytes;
  int64_t offset = 0;                      // of the first byte returned
  int64_t total = 0;                       // the file's size now
};

// ---- the archive of purged runs ([retention] archive, docs/retention.md) ----------

// One day's archive file.
struct ArchiveFile {
  std::string date;                        // YYYY-MM-DD (UTC): the day the runs were deleted
  int64_t entries = 0;                     // runs archived (a run archived twice counts once)
  int64_t bytes = 0;                       // the file's size, compressed
};

struct ArchiveQuery {
  std::string date;                        // YYYY-MM-DD, a real day (check_archive_query)
  std::optional<std::string> task;         // only this task's runs
  std::optional<int64_t> run_id;           // only this run (>= 1)
  int64_t after = 0;                       // >= 0: the `next` of the previous page
  int limit = 100;                         // 1..1000 entries per page
  bool include_system = true;              // runs of system tasks too (the API: authenticated callers)
};

struct ArchivePage {
  std::string date;
  std::vector<std::string> entries;        // each an archived run, a JSON object (docs/archive-format.md)
  std::optional<int64_t> next;             // pass as `after` for the rest; none at the end
};

// ---- the interface ------------------------------------------------------------

class Ops {
 public:
  virtual ~Ops() = default;

  // Configured tasks in file order, then the system tasks (when
  // `include_system`), then removed tasks that still have history, by name.
  virtual Result<std::vector<TaskInfo>> tasks(bool include_system) = 0;
  // A task's runs, newest first. Errors: not_found when the task is neither
  // configured nor has history.
  virtual Result<RunsPage> runs(const RunsQuery& query) = 0;
  // One run of `task`. Errors: not_found (also when the run belongs to another task).
  virtual Result<store::Run> run(std::string_view task, int64_t id) = 0;
  // Lines of a run's log. Errors: not_found when the run has no log.
  virtual Result<LogSlice> log(const LogQuery& query) = 0;
  // Replays the log from `from`, then follows it live until the run ends
  // (done), the sink stops, or the idle timeout. A run still queued is
  // waited for (up to queued_wait). Returns after the last event.
  virtual Status follow(const FollowRequest& request, FollowSink& sink) = 0;
  // Starts (or queues) a manual run; with `wait`, returns the final
  // attempt's run once it has ended (retries followed), or the latest
  // attempt when wait_timeout passes. Errors: conflict without a daemon.
  virtual Result<store::Run> run_now(const RunNowRequest& request) = 0;
  // Pauses (`paused` true) or resumes a configured task's scheduled fires;
  // kept in the database, so it survives a restart. Works without a daemon
  // (needs write access). Errors: not_found for a task not in the
  // configuration; invalid_argument for a system task.
  virtual Result<PauseResult> pause(std::string_view task, bool paused) = 0;
  // Reads the configuration file again and applies it all or nothing:
  // running and queued runs go on, next fires are recomputed from now, a
  // removed task stops firing. Recorded as a run of the system task
  // cronkeep:reload (failed when refused). Errors: conflict without a
  // daemon, or when listen, data_dir, token_file or backend changed (a
  // restart is needed); invalid_argument with every problem, one per line,
  // as `validate` prints them (the running configuration is kept).
  virtual Result<ReloadResult> reload() = 0;
  // The newest notification delivery attempts, newest first (`limit`
  // 1..1000). Works without a daemon. Errors: invalid_argument for limit.
  virtual Result<std::vector<store::Delivery>> notifications(int limit) = 0;
  // Errors: conflict when the run already ended, or without a daemon.
  virtual Result<CancelResult> cancel(std::string_view task, int64_t id) = 0;
  // Deletes one terminal run: row and files, crash-safely (tombstone first,
  // through the retention executor). Errors: conflict for a run in flight.
  virtual Result<DeleteResult> delete_run(std::string_view task, int64_t id) = 0;
  // A manual purge (retention::manual_purge); a dry run deletes nothing.
  // Errors: not_found for an unknown task (the message lists the known ones).
  virtual Result<retention::PurgeOutcome> purge(const retention::PurgeRequest& request,
                                                const retention::Progress& progress = {}) = 0;
  virtual Result<retention::CompactOutcome> compact(retention::CompactMode mode) = 0;
  virtual Result<MaintenanceStatus> status() = 0;
  // What each retention and compactor run did, with its end time and the
  // database's size then, newest first; the figures outlive the runs
  // themselves. Works without a daemon. Errors: invalid_argument for limit.
  virtual Result<MaintenanceHistory> maintenance_history(const MaintenanceHistoryQuery& query) = 0;
  // Verifies the data directory; `repair` fixes what it can. Errors: busy
  // (repair) when a daemon runs: repair needs it stopped.
  virtual Result<CheckReport> check(bool repair) = 0;

  // ---- for the web UI (docs/api.md, "For the web UI") ----
  // Follows run state changes of every task (system tasks only with
  // include_system) until the sink stops, the idle timeout, or shutdown.
  // Returns after the last event. Errors: conflict without a daemon.
  virtual Status watch(const WatchRequest& request, WatchSink& sink) = 0;
  // The retention rules in effect for `task` with their sources, and what
  // a sweep now would delete of it (nothing is deleted): the sweep's plan,
  // evaluated in the database (Store::expiry_marks, Store::task_expiry), so
  // memory does not grow with the history. Errors: not_found for an unknown
  // task.
  virtual Result<RetentionPreview> retention_preview(std::string_view task) = 0;
  // Every visible task's `per_task` newest runs (tasks with history only,
  // by name; system tasks with include_system), read in one snapshot with
  // an index seek per task, never a scan of the history. Errors:
  // invalid_argument for per_task outside 1..kMaxRecentPerTask.
  virtual Result<RecentRuns> recent_runs(const RecentRunsQuery& query) = 0;
  // Up to `max_bytes` (1..kMaxRawChunk) of a run's log from byte `offset`.
  // Errors: not_found when the run has no log; invalid_argument for a
  // negative offset or a bad max_bytes.
  virtual Result<RawLogChunk> raw_log(std::string_view task, int64_t id, int64_t offset, int64_t max_bytes) = 0;

  // ---- the archive of purged runs ----
  // This node's archive files, oldest day first (none when nothing was
  // archived). Reads every file to count its entries. Errors: io;
  // corruption for a file in archive/ that is not a cronkeep archive.
  virtual Result<std::vector<ArchiveFile>> archive_list() = 0;
  // One page of a day's entries, in the order they were archived, the first
  // entry of each run only; at most query.limit entries and about
  // kMaxArchivePage bytes. Errors: invalid_argument (check_archive_query);
  // not_found when nothing was archived that day; io; corruption.
  virtual Result<ArchivePage> archive_show(const ArchiveQuery& query) = 0;

  // The nodes sharing the database, by name, with their last heartbeat and
  // runs in flight (SQLite: this one node, once its daemon has run).
  virtual Result<std::vector<store::NodeInfo>> nodes() = 0;
  // Drops a node that is gone for good and its tombstones (its log files went
  // with its disk). Errors: not_found; conflict for the node itself.
  virtual Status forget_node(std::string_view name) = 0;
};

// The system task whose runs record configuration reloads.
inline constexpr const char* kReloadTask = "cronkeep:reload";

// Lines per page of a log read (the API's cap on `lines` and `tail`).
inline constexpr int64_t kMaxLogPage = 10'000;
// Runs per task of a recent_runs() answer (GET /api/runs/recent?per_task=).
inline constexpr int kMaxRecentPerTask = 100;
// Bytes per raw_log() call.
inline constexpr int64_t kMaxRawChunk = 4 << 20;
// Bytes of entries per archive_show() page (at least one entry, whatever its size).
inline constexpr int64_t kMaxArchivePage = 8 << 20;

// ---- choosing an implementation ------------------------------------------------

enum class Access { read, write };

// What the CLI uses: the running daemon's API (remote) when a daemon holds
// the data directory's lock, the data directory itself (local) otherwise.
// Errors: io when a daemon runs but its token cannot be read; those of
// open_local().
Result<std::unique_ptr<Ops>> open(const config::Config& config, Access access);

// ---- parameters, checked in one place ----------------------------------------

// "status: unknown status \"x\" (expected …)".
Result<store::RunStatus> parse_status(std::string_view text, std::string_view field = "status");
// A log read's parameters. Errors: invalid_argument when tail is combined
// with from_line or since, or when a count is out of range.
Status check_read(const logs::ReadRequest& read, bool from_line_given);
// A task name as a user writes it: a valid task name or a system task.
// Errors: invalid_argument naming the rule.
Status check_task_name(std::string_view task);

// An archive read's parameters: date exactly YYYY-MM-DD and a real day (it
// names a file: nothing else is ever built into a path), task a task name,
// run_id >= 1, after >= 0, limit 1..1000. Errors: invalid_argument naming
// the parameter.
Status check_archive_query(const ArchiveQuery& query);

// Extra environment variables of a run now: names [A-Za-z_][A-Za-z0-9_]*
// not starting with CRONKEEP_, values without NUL, at most 64 of them and
// 64 KiB in all. Errors: invalid_argument naming the variable.
Status check_env(const std::map<std::string, std::string>& env);

// ---- validate (needs no data directory) --------------------------------------

struct ValidatedTask {
  std::string task;
  std::string cron;
  std::string timezone;
  std::vector<TimePoint> next_fires;
};

struct ValidateReport {
  std::string file;
  bool ok = false;
  std::vector<std::string> problems;       // "file:line:column: key: message"
  std::vector<ValidatedTask> tasks;        // when ok: each task's next three fires after `now`
};

ValidateReport validate(const std::string& config_path, TimePoint now);

}  // namespace cronkeep::ops
