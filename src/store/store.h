// store/store.h: the run history, behind an interface every backend satisfies.
//
// Owns: the schema, its migrations and every SQL statement. Must not know
// about processes or HTTP. Callers above this header see only Run values and
// Result<>s; a PostgreSQL backend can implement Store without changes above.
//
// Times are UTC (TimePoint, ms precision). A run's id is an increasing
// integer that is never reused, so a log path that contains it stays unique.
#pragma once

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

namespace cronkeep::store {

enum class RunStatus { pending, running, succeeded, failed, timeout, cancelled, crashed, log_overflow, skipped, missed };
enum class Trigger { schedule, manual, retry, catch_up, system };

const char* to_string(RunStatus s);
const char* to_string(Trigger t);
std::optional<RunStatus> parse_status(std::string_view text);
std::optional<Trigger> parse_trigger(std::string_view text);

// pending and running are in flight; every other status is terminal.
inline bool is_terminal(RunStatus s) { return s != RunStatus::pending && s != RunStatus::running; }
// The statuses keep_failed_for applies to.
inline bool is_failure(RunStatus s) {
  return s == RunStatus::failed || s == RunStatus::timeout || s == RunStatus::crashed || s == RunStatus::log_overflow;
}

struct Run {
  int64_t id = 0;
  std::string task;
  Trigger trigger = Trigger::schedule;
  int attempt = 1;
  std::optional<int64_t> retry_of;
  RunStatus status = RunStatus::pending;
  std::optional<TimePoint> scheduled_at;  // the nominal fire time; none for manual runs
  TimePoint created_at{};
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::optional<int64_t> duration_ms;
  std::optional<int64_t> cpu_ms;
  std::optional<int64_t> max_rss_kb;
  std::string log_path;  // relative to {data_dir}; empty when the run has no log
  int64_t log_bytes = 0;
  std::string message;
  std::string node;      // the node that recorded (and runs) it; the store's own node for new rows
};

// What a new row holds; the store assigns id.
struct NewRun {
  std::string task;
  Trigger trigger = Trigger::schedule;
  int attempt = 1;
  std::optional<int64_t> retry_of;
  RunStatus status = RunStatus::pending;
  std::optional<TimePoint> scheduled_at;
  TimePoint created_at{};
  std::optional<TimePoint> finished_at;  // for rows born terminal (skipped, missed)
  std::string message;
};

// How a run ended.
struct RunEnd {
  RunStatus status = RunStatus::succeeded;  // Requires: terminal
  TimePoint finished_at{};
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::optional<int64_t> duration_ms;
  std::optional<int64_t> cpu_ms;
  std::optional<int64_t> max_rss_kb;
  int64_t log_bytes = 0;
  std::string message;
};

struct RunQuery {
  std::string task;
  int limit = 50;                        // 1..1000
  std::optional<int64_t> before_id;      // keyset paging: runs with id < before_id
  std::optional<RunStatus> status;       // only this status
};

// The few columns retention decides on.
struct RunBrief {
  int64_t id = 0;
  std::string task;
  RunStatus status = RunStatus::succeeded;
  TimePoint finished_at{};  // created_at when not finished
  int64_t log_bytes = 0;
};

struct LastOutcome {
  std::string task;
  std::optional<TimePoint> last_success;
  std::optional<TimePoint> last_failure;
};

struct LogRef {
  int64_t id = 0;
  RunStatus status = RunStatus::succeeded;
  std::string log_path;
};

struct PurgeQuery {
  TimePoint finished_before{};           // terminal runs that finished before this
  std::optional<std::string> task;
  std::optional<RunStatus> status;
  std::optional<int64_t> limit;          // oldest first
  int64_t after_id = 0;                  // keyset paging: runs with id > after_id
};

struct Tombstone {
  int64_t id = 0;
  int64_t run_id = 0;
  std::string log_path;  // relative to data_dir
};

struct Deleted {
  int64_t rows = 0;
  int64_t log_bytes = 0;           // sum of the deleted runs' log_bytes
  std::vector<Tombstone> tombstones;
};

// ---- retention's plan, computed in the database ----------------------------
//
// The rules are retention's (retention/planner.h states them and
// plan_purge() is their reference); the store only evaluates them in SQL, with
// every parameter passed in. docs/retention.md ("Planning in the database").

// One task's rules. 0 ms turns an age rule off.
struct ExpiryRule {
  int64_t keep_runs = 100;    // < 1: no run of a kind is among the newest
  Millis keep_for{0};         // succeeded, cancelled, skipped, missed
  Millis keep_failed_for{0};  // failed, timeout, crashed, log_overflow
};

struct ExpiryRules {
  std::map<std::string, ExpiryRule, std::less<>> tasks;  // configured tasks
  ExpiryRule defaults;                                   // every other task (removed ones, system tasks)
  Millis max_age{0};                                     // 0 = none
  int64_t max_runs = 0;                                  // 0 = none
  uint64_t max_log_bytes = 0;                            // 0 = none
  TimePoint now{};
};

enum class ExpiryReason { keep_runs, keep_for, keep_failed_for, max_age, max_runs, max_size };

struct ExpiredRun {
  int64_t id = 0;
  ExpiryReason reason = ExpiryReason::keep_runs;
};

// What the plan that an ExpiryMarks describes expires of one task
// (Store::task_expiry): the retention preview of the web UI's task page.
struct TaskExpiry {
  int64_t terminal = 0;                        // the task's terminal runs
  int64_t expired = 0;                         // of them, the plan's
  int64_t expired_log_bytes = 0;               // their log_bytes, summed as stored
  std::map<ExpiryReason, int64_t> by_reason;   // runs per first rule that expires them
  std::optional<int64_t> oldest_expired;       // the smallest id expired
  std::optional<int64_t> newest_expired;       // the largest
};

// What Store::expiry_marks() read from the whole history, once per sweep: the
// thresholds that make every run's verdict a test on its own row (so the
// plan can be read in id order, a page at a time), and the figures of the
// whole plan (the age guard's input). Memory: one entry per task name in the
// history, whatever its length.
struct ExpiryMarks {
  // Per task, ids (0 = none). The keep_runs floors: a terminal run of the
  // kind with a smaller id is not among the task's keep_runs newest of its
  // kind. The newest terminal run, success and failure among the task's
  // 1,000 newest runs when the marks were read: a run older than one of
  // them is not exempt by it; one as new or newer (it may have finished
  // since), or of a kind none was found for, is checked on the rows when its
  // page is read.
  struct TaskMarks {
    std::string task;
    int64_t executed_floor = 0;  // the keep_runs-th newest run that executed
    int64_t records_floor = 0;   // the keep_runs-th newest skipped/missed record
    int64_t newest = 0;
    int64_t newest_success = 0;
    int64_t newest_failure = 0;
  };
  std::vector<TaskMarks> tasks;  // every task name with runs

  // The database-wide ceilings: a terminal run that the per-task rules and
  // max_age leave, with an id below max_runs_below, goes for max_runs; else,
  // below max_size_below, for max_size. 0 = none.
  int64_t max_runs_below = 0;
  int64_t max_size_below = 0;
  int64_t last_expired = 0;  // no expired run has a larger id; 0 = none expires

  // Figures of the whole plan.
  int64_t terminal = 0;        // terminal runs
  int64_t expired = 0;         // runs the plan expires
  int64_t expired_by_age = 0;  // of which by keep_for, keep_failed_for or max_age
  // The latest finished_at (created_at when unset) of a terminal run that
  // executed (not skipped, not missed).
  std::optional<TimePoint> newest_executed_finish;
};

// The database's size. On PostgreSQL: page_size is the block size,
// page_count the blocks of cronkeep's tables and indexes, freelist_count and
// wal_bytes 0, auto_vacuum 2 (space is reclaimed in place by VACUUM).
struct DbStats {
  std::string backend = "sqlite";  // sqlite | postgres
  int64_t page_size = 0;
  int64_t page_count = 0;
  int64_t freelist_count = 0;
  int64_t wal_bytes = 0;
  int64_t auto_vacuum = 0;  // 0 none, 1 full, 2 incremental
  int64_t runs_table_bytes = 0;  // PostgreSQL: the runs table's heap (and TOAST); 0 on SQLite
  int64_t runs_index_bytes = 0;  // PostgreSQL: the runs table's indexes; 0 on SQLite
  int64_t db_bytes() const { return page_size * page_count; }
};

// A node sharing the database (PostgreSQL); SQLite has its one node.
struct NodeInfo {
  std::string name;
  std::string api_address;           // host:port of its API, as configured
  TimePoint started_at{};
  TimePoint heartbeat_at{};          // the node's own clock at its last heartbeat
  std::optional<TimePoint> dead_at;  // set when another node declared it dead
  std::string declared_dead_by;
  int64_t in_flight = 0;             // its pending and running runs
  // PostgreSQL: the node's clock minus the server's at its last heartbeat
  // (a round trip's precision). Unknown (nullopt) on SQLite.
  std::optional<int64_t> clock_offset_ms;
};

// What one system run did.
struct MaintenanceFigures {
  int64_t run_id = 0;
  std::string task;              // cronkeep:retention | cronkeep:compactor
  int64_t rows_deleted = 0;
  int64_t files_deleted = 0;
  int64_t file_errors = 0;
  int64_t log_bytes_freed = 0;
  int64_t db_bytes_reclaimed = 0;
  // When the run ended (its figures measured), and the database's size
  // (DbStats::db_bytes()) at that moment: the points of the maintenance
  // page's chart. None for figures recorded before schema version 6 (SQLite)
  // or 3 (PostgreSQL); finished_at was then copied from the run, when it
  // still existed.
  std::optional<TimePoint> finished_at{};
  std::optional<int64_t> db_bytes{};
};

// Keyset paging over the recorded figures, newest first.
struct MaintenanceQuery {
  int limit = 100;                       // 1..1000
  std::optional<int64_t> before_run_id;  // only figures of runs with id < this
};

struct MaintenanceSummary {
  MaintenanceFigures last;       // the latest run's figures
  MaintenanceFigures total;      // summed over every recorded run (run_id unset)
};

// A task's newest runs (Store::recent_runs): the overview's strips.
struct TaskRuns {
  std::string task;
  std::vector<Run> runs;  // newest first
};

// Per-task facts for listings.
struct TaskSummary {
  std::string task;
  int64_t runs = 0;
  std::optional<Run> last_run;
};

// A task whose kept run count (Store::task_summaries' `runs`) differs from
// the number of its rows in the history (Store::check_task_counts).
struct TaskCountMismatch {
  std::string task;
  int64_t recorded = 0;  // the kept count; 0 when none is kept
  int64_t actual = 0;    // its runs, counted
};

// A task's pause state (cronkeep pause / resume), kept across restarts.
struct TaskPause {
  std::string task;
  bool paused = false;
  TimePoint changed_at{};  // when it was last paused or resumed
};

// One notification delivery attempt (notify part).
struct Delivery {
  int64_t id = 0;               // assigned by the store
  TimePoint created_at{};       // when the attempt ended
  std::string sink;             // [notify.NAME]
  std::string event;            // failed, timeout, … (config::kNotifyEvents)
  std::string task;
  std::optional<int64_t> run_id;
  int64_t count = 1;            // events the message stands for (coalesced)
  int attempt = 1;              // 1-based
  std::string status;           // delivered | failed (will retry) | gave_up | dropped
  std::optional<int> response_code;  // HTTP status, or the command's exit code
  std::string error;            // empty when delivered
};

// The interface every backend implements. Thread-safety (SQLite): every
// method may be called from any thread. Writes (insert/mark/finish, delete,
// tombstones, compaction) are serialised on one writer connection; reads are
// serialised on one reader connection; the long reads (list_briefs,
// expiry_marks, plan_expired, task_expiry, find_purgeable, integrity_check, log_paths:
// retention's and check's) on a third connection of their own, so a sweep never makes the API's reads
// wait. So a short read, a long read and a write proceed at the same time;
// two short reads wait for each other. checkpoint() uses a connection of its
// own. A read-only store (the CLI's) refuses writes with conflict.
class Store {
 public:
  virtual ~Store() = default;

  // Runs `body` with every insert_run/mark_running(_in_slot)/finish_run it makes in
  // ONE transaction (one commit instead of one per call), holding the write
  // lock throughout; other threads' writes wait for it. Requires: `body` makes
  // only those calls. A failed commit is returned (the calls' own
  // results said success).
  virtual Status write_batch(const std::function<void()>& body) = 0;

  // Inserts a run and counts it in its task's kept count (task_stats), in
  // one transaction (write_batch's when inside one); returns its id.
  virtual Result<int64_t> insert_run(const NewRun& run) = 0;
  // Claims the fire (run.task, *run.scheduled_at) for this node and inserts
  // its run: returns the id, or nullopt when another node claimed that fire
  // first (its run is theirs; this node records nothing). On PostgreSQL the
  // claim is an INSERT into fires under its primary key (ON CONFLICT DO
  // NOTHING) in the run's transaction; on SQLite (one node) it is insert_run.
  // Requires: run.scheduled_at set.
  virtual Result<std::optional<int64_t>> claim_fire(const NewRun& run) = 0;
  // pending → running: records the log path (relative to data_dir) and start.
  // Errors: not_found; conflict when the run is not pending.
  virtual Status mark_running(int64_t id, const std::string& log_path, TimePoint started_at) = 0;
  // mark_running, only while fewer than `max_concurrent` runs of the run's
  // task are running on any node: max_concurrent across nodes. On
  // PostgreSQL the count and the mark are made under the task's advisory
  // slot lock (held to the commit, write_batch's when inside one), so two
  // nodes starting runs of one task at the same instant count one after the
  // other. Errors: busy when the slots are taken (the run stays pending);
  // as mark_running otherwise.
  virtual Status mark_running_in_slot(int64_t id, const std::string& log_path, TimePoint started_at,
                                      int max_concurrent) = 0;
  // Ends a pending or running run of this node. Errors: not_found; conflict
  // when already terminal, or (PostgreSQL) when the run is no longer this
  // node's (another node declared this one dead and took the run over).
  virtual Status finish_run(int64_t id, const RunEnd& end) = 0;
  // Turns every pending or running run of this node into `crashed` (exit
  // code -2) with finished_at = now; returns how many. Called once at start-up.
  virtual Result<int64_t> reconcile_in_flight(TimePoint now, std::string_view message) = 0;

  virtual Result<Run> get_run(int64_t id) = 0;
  // Newest first.
  virtual Result<std::vector<Run>> list_runs(const RunQuery& query) = 0;
  // The latest scheduled_at among the task's schedule/catch_up/missed/skipped
  // runs: the last fire the scheduler handled. nullopt for a task never fired.
  // Looked for among the task's 1,000 newest such runs (a bounded read at
  // start-up, whatever the history's length; fires are recorded in order).
  virtual Result<std::optional<TimePoint>> last_fire(std::string_view task) = 0;
  // One entry per task that has runs, by name, with its number of runs and
  // its newest run. The numbers are the counts the store keeps (the table
  // task_stats, changed in the transaction of every insert and delete of
  // runs; docs/storage.md), read in the same snapshot as the newest runs:
  // one seek of the task index per task, never a pass over the history.
  // A task whose runs were all deleted is not listed.
  virtual Result<std::vector<TaskSummary>> task_summaries() = 0;
  // Every task that has runs, by name, with its `per_task` newest runs,
  // newest first: one seek of the task index (runs_by_task_status) per task
  // name and `per_task` rows each, in one read snapshot; the history is
  // never scanned. Memory: tasks x per_task runs. Errors: invalid_argument
  // for per_task outside 1..1000.
  virtual Result<std::vector<TaskRuns>> recent_runs(int per_task) = 0;
  // Per task: when it last succeeded and last failed (failure statuses),
  // looked for among its 1,000 newest successes and failures: a walk of the
  // task index, not a scan of the history.
  virtual Result<std::vector<LastOutcome>> last_outcomes() = 0;
  // Runs currently pending or running on this node, oldest first.
  virtual Result<std::vector<Run>> in_flight_runs() = 0;
  // How many runs of `task` are running on other nodes (max_concurrent
  // across nodes); 0 on SQLite, which has one node.
  virtual Result<int64_t> count_running_elsewhere(std::string_view task) = 0;

  // ---- pauses -----------------------------------------------------------

  // Records that `task` is paused (or resumed) as of `at`; replaces any
  // earlier record of it.
  virtual Status set_paused(std::string_view task, bool paused, TimePoint at) = 0;
  // Every recorded pause state, by task name (resumed tasks included).
  virtual Result<std::vector<TaskPause>> task_pauses() = 0;

  // ---- notifications ----------------------------------------------------

  virtual Status record_delivery(const Delivery& delivery) = 0;
  // The newest `limit` attempts, newest first.
  virtual Result<std::vector<Delivery>> list_deliveries(int limit) = 0;
  // Deletes attempts older than `older_than` and all but the newest `keep`;
  // returns how many went.
  virtual Result<int64_t> trim_deliveries(TimePoint older_than, int64_t keep) = 0;

  // ---- retention ------------------------------------------------------

  // Every run's brief (terminal and in flight), in id order.
  virtual Result<std::vector<RunBrief>> list_briefs() = 0;
  // The plan of `rules` on the history as it is now, as thresholds and
  // figures (ExpiryMarks), for plan_expired(). Reads the whole history once
  // inside the database, in one consistent snapshot; holds one entry per task
  // name. Errors: io; corruption when a run has a status this build does
  // not know.
  virtual Result<ExpiryMarks> expiry_marks(const ExpiryRules& rules) = 0;
  // One page of the plan that `marks` describe: the expired terminal runs with
  // after_id < id, in increasing id order, at most `limit` of them, each with
  // the first rule that expires it (planner order). Requires: marks from
  // expiry_marks(rules) with the same rules; limit >= 1. A run's verdict
  // depends only on newer runs, so paging from the last id returned after
  // deleting a page yields the rest of the same plan. The newest-run,
  // newest-success and newest-failure exemptions are checked on the rows as
  // they are now, so a run that finished after expiry_marks() keeps them.
  // Memory: `limit` entries. Errors: io; invalid_argument for limit < 1.
  virtual Result<std::vector<ExpiredRun>> plan_expired(const ExpiryRules& rules, const ExpiryMarks& marks,
                                                       int64_t after_id, int64_t limit) = 0;
  // What the plan that `marks` describe expires of `task` (the figures of
  // plan_expired() restricted to the task's runs, and its terminal runs),
  // read in the database over the task's index entries: memory is one row
  // per reason, whatever the history. Requires: marks from
  // expiry_marks(rules) with the same rules. Errors: io.
  virtual Result<TaskExpiry> task_expiry(const ExpiryRules& rules, const ExpiryMarks& marks, std::string_view task) = 0;
  // Terminal runs matching a manual purge, oldest first (by id).
  virtual Result<std::vector<RunBrief>> find_purgeable(const PurgeQuery& query) = 0;
  // Deletes the given runs that are terminal (in-flight ones are left alone)
  // in ONE transaction, writing a tombstone for each deleted run's log and
  // taking the deleted runs off their tasks' kept counts (one update per
  // task; a task left with none leaves task_stats) in the same transaction.
  // Returns what was deleted and the tombstones to replay.
  virtual Result<Deleted> delete_runs(const std::vector<int64_t>& ids) = 0;
  // This node's tombstones not yet cleared, oldest first, at most `limit`
  // (a node removes only the files it wrote; delete_runs returns only this
  // node's tombstones too, and leaves the others for their nodes).
  virtual Result<std::vector<Tombstone>> list_tombstones(int limit) = 0;
  // Removes tombstones whose files are gone.
  virtual Status clear_tombstones(const std::vector<int64_t>& tombstone_ids) = 0;
  // Records the figures of a system run (retention or compactor).
  virtual Status record_maintenance(const MaintenanceFigures& figures) = 0;
  // The latest figures per system task, and their totals.
  virtual Result<std::vector<MaintenanceSummary>> maintenance_summaries() = 0;
  // The figures of every system run (both system tasks), newest first by run
  // id; `query.limit` at most. Figures outlive their run: retention may have
  // deleted the run itself.
  virtual Result<std::vector<MaintenanceFigures>> list_maintenance(const MaintenanceQuery& query) = 0;

  // ---- compaction ---------------------------------------------------------

  virtual Result<DbStats> db_stats() = 0;
  // Returns up to `pages` free pages to the file system (PRAGMA
  // incremental_vacuum) in one short write transaction; returns how many.
  virtual Result<int64_t> incremental_vacuum(int64_t pages) = 0;
  // Checkpoints the WAL and truncates it to zero bytes (waits for readers).
  virtual Status checkpoint_truncate() = 0;
  // Refreshes planner statistics (PRAGMA optimize).
  virtual Status optimize() = 0;
  // Rebuilds the file (VACUUM); switches a database created without
  // incremental auto-vacuum to it. Holds the write lock for its duration.
  virtual Status vacuum_full() = 0;

  // ---- checks -------------------------------------------------------------

  // PRAGMA integrity_check: "ok" or the problems, one per line.
  virtual Result<std::string> integrity_check() = 0;
  // The tasks whose kept run count differs from a count of their runs,
  // by name: one pass over the task index in one snapshot (`cronkeep
  // check`). Empty when every count is exact. Errors: io.
  virtual Result<std::vector<TaskCountMismatch>> check_task_counts() = 0;
  // Compares as check_task_counts() and, when a count is wrong, recounts
  // every task from its runs, in one write transaction (the store's other
  // writes wait for it; on PostgreSQL so do other nodes' inserts and
  // deletes of runs). Returns what was wrong, as found in that transaction.
  // Errors: io; conflict on a read-only store.
  virtual Result<std::vector<TaskCountMismatch>> repair_task_counts() = 0;
  // Sets the log_path of a run that has none (a log created just before the
  // daemon died, found at start-up). Errors: not_found; conflict when the
  // run already has a log path.
  virtual Status adopt_log(int64_t id, const std::string& log_path) = 0;
  // Clears a run's log_path (its file is gone) and appends `note` to its message.
  virtual Status forget_log(int64_t id, std::string_view note) = 0;
  // Every run with a non-empty log path, in id order.
  virtual Result<std::vector<LogRef>> log_paths() = 0;

  // Copies the write-ahead log into the database without blocking writers
  // (a passive checkpoint), on a connection of its own; when it copied every
  // frame and no reader holds the WAL, starts the WAL anew (one page written
  // under the write lock, so that no later commit syncs the WAL's new
  // header). Meant for a background thread.
  virtual Status checkpoint() = 0;

  // ---- nodes --------------------------------------------------------------

  // This store's node name (OpenOptions::node).
  virtual const std::string& node() const = 0;
  // Registers this node (first call) or renews its heartbeat. Errors:
  // conflict when another live process holds the name (its heartbeat is
  // younger than `lease`), or when this node was declared dead (it must
  // restart: its runs were taken over).
  virtual Status heartbeat(std::string_view api_address, TimePoint started_at, TimePoint now, Millis lease) = 0;
  // At a clean stop: marks this node stopped (dead, by itself), so its name
  // is free at once for the next start. SQLite: nothing to do.
  virtual Status leave(TimePoint now) = 0;
  // Declares dead every other node whose heartbeat is older than now - lease
  // and not yet dead: its in-flight runs become crashed (exit code -2) with a
  // message naming it. Returns the names declared dead. SQLite: none.
  virtual Result<std::vector<std::string>> expire_nodes(TimePoint now, Millis lease) = 0;
  // Every registered node, by name, with its in-flight run count.
  virtual Result<std::vector<NodeInfo>> list_nodes() = 0;
  // Drops a node's row and its tombstones (its files are gone with it).
  // Errors: not_found; conflict for this node itself.
  virtual Status forget_node(std::string_view name) = 0;
  // Runs `body` only when no other node is doing the same (a session-level
  // advisory lock named by `key` on PostgreSQL; always on SQLite). Returns
  // whether `body` ran.
  virtual Result<bool> exclusively(std::string_view key, const std::function<void()>& body) = 0;
};

struct OpenOptions {
  bool read_only = false;  // opens an existing database for reading only
  std::string node = "local";  // this node's name ([daemon] node), recorded on runs and tombstones
};

// Opens (creating if needed) {data_dir}/cronkeep.db, applies migrations.
// Errors: io when the file cannot be opened/created; corruption when it is not
// a cronkeep database or its schema is newer than this build.
Result<std::unique_ptr<Store>> open_sqlite(const std::string& db_path, OpenOptions options = {});

// Connects to PostgreSQL at `url` (a libpq URI or key=value string) and
// applies migrations (serialised across nodes by an advisory lock).
// Thread-safety as SQLite's: one writer and one reader connection, each
// reconnected on the next call after it broke. Errors: io when the server
// cannot be reached (the message names the URL with its password masked);
// corruption when the schema is newer than this build.
Result<std::unique_ptr<Store>> open_postgres(const std::string& url, OpenOptions options = {});

// `url` with any password replaced by "***", for messages.
std::string mask_password(std::string_view url);

}  // namespace cronkeep::store
