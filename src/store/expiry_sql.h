// store/expiry_sql.h: the SQL of retention's plan (Store::expiry_marks and
// Store::plan_expired), written once for both backends. Internal to store.
//
// The statements that classify runs (expired_summary, survivors,
// nth_survivor, page) start with the same common table expressions and take
// the same first four parameters:
//   1  the per-task table as JSON text (per_task_json): for each task its
//      cutoff, failure cutoff, executed floor, records floor, newest, newest
//      success and newest failure (ExpiryMarks::TaskMarks); SQLite reads an
//      array [[task, ...], ...], PostgreSQL an object {task: [...], ...}
//   2  the default cutoff: runs of tasks not in the table (succeeded,
//      cancelled, skipped, missed) finished before it are too old; NULL = off
//   3  the same for the failure statuses (keep_failed_for)
//   4  the max_age cutoff; NULL = off
// A cutoff is now - limit: `now - finished > limit` is `finished < cutoff`.
// Each row gets a class (cls) and, when a rule expires it, a reason code
// (ExpiryReason's order: 0 keep_runs … 5 max_size). docs/retention.md
// ("Planning in the database") explains the rules' SQL form.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace cronkeep::store::expiry_sql {

enum class Dialect { sqlite, postgres };

// The task names that have runs, in order (a loose scan of the task index).
// No parameters; one column.
std::string task_names(Dialect d);

// The scheduler's start-up reads (Store::last_fire, Store::last_outcomes),
// here because they share the loose scan and the status sets. Both read a
// bounded stretch of each task's index instead of its whole history: the
// newest `kStartupWindow` matching runs by id. Fires and ends are recorded
// in order, so the latest time is among them; a catch-up row recorded later
// for an older fire, or a long run ending after shorter newer ones, is
// within the window too unless a thousand runs came in between.
inline constexpr int kStartupWindow = 1000;
// Parameter 1: the task. One row, one column: the latest scheduled_at of the
// task's schedule and catch_up runs (NULL when none).
std::string last_fire(Dialect d);
// No parameters. Per task with runs: task, latest finished_at of a success,
// latest finished_at of a failure status (NULL when none), by task.
std::string last_outcomes(Dialect d);

// Sets of statuses that TaskMarks are taken from.
enum class Kind { executed, records, terminal, succeeded, failures };

// The keep_runs floors (executed, records): the id of the (2)-th newest
// (0-based OFFSET) run of task (1) of that kind. The newest runs (terminal,
// succeeded, failures; no parameter 2): the id of the task's newest run of
// that kind among its 1,000 newest runs, NULL beyond (the exemption of an
// older candidate is then checked on the rows). One column.
std::string nth_newest(Dialect d, Kind kind);

// PostgreSQL: every task's marks in one statement (one round trip instead
// of five per task). Parameters: (1) the configured tasks' keep_runs as a
// JSON object (keep_runs_json), (2) the default keep_runs, (3) how many runs
// there are (a floor is looked for only when keep_runs is between 1 and
// that). Rows: task, keep_runs, executed floor, records floor, newest,
// newest success, newest failure (NULL = none).
std::string task_marks(Dialect d);
std::string keep_runs_json(const ExpiryRules& rules);

// The per-task table (parameter 1) for `rules` and `marks`.
std::string per_task_json(Dialect d, const ExpiryRules& rules, const ExpiryMarks& marks);

// now - limit, or nullopt when the limit is off (0).
std::optional<int64_t> cutoff(TimePoint now, Millis limit);

// (status, count) per status. No parameters.
std::string status_counts(Dialect d);

// The latest COALESCE(finished_at, created_at) of a terminal run that
// executed (NULL when none). No parameters.
std::string newest_executed_finish(Dialect d);

// The log bytes of every run, each counted from 0. No parameters.
std::string total_bytes(Dialect d);

// Parameters 5 and 6 of expired_summary() and page(): a run that finished
// before `cut` or whose id is below `below` may be expired; any other run
// is left out before its task is looked up. prefilter() computes them from
// the rules and marks (with_ceilings: the ceilings' bounds too, for pages).
struct Prefilter {
  std::optional<int64_t> cut;  // the latest cutoff of any age rule; nullopt = none
  int64_t below = 0;           // the highest keep_runs floor (or ceiling bound)
};
// What a page would hold of one task's runs, summed (Store::task_expiry):
// parameters 1-8 as page(), (9) the task, (10) last_expired; rows (reason
// code, runs, SUM(log_bytes), MIN(id), MAX(id)), one per reason. Reads the
// task's entries of the task index (and their rows), not the history.
std::string task_expired(Dialect d);

// The terminal runs of task (1), counted on the task index alone.
std::string task_terminal(Dialect d);

Prefilter prefilter(const ExpiryRules& rules, const ExpiryMarks& marks, bool with_ceilings);

// One row over the runs the per-task rules and max_age expire (parameters
// 1-6): how many, how many by an age rule, their log bytes (each from 0),
// the largest id (NULL when none).
std::string expired_summary(Dialect d);

// The survivors (terminal runs no per-task rule nor max_age expires) with
// id > (5), oldest first, at most (6): id, log_bytes.
std::string survivors(Dialect d);

// The id of the survivor after the (5) oldest ones (OFFSET (5)).
std::string nth_survivor(Dialect d);

// A page of the plan: parameters 1-6 (prefilter with the ceilings), (7)
// max_runs_below, (8) max_size_below, (9) after_id, (10) last_expired, (11)
// limit; rows (id, reason code) in id order.
std::string page(Dialect d);

// ---- the steps of expiry_marks() both backends share ----------------------

// Runs nth_newest(): the id, or nullopt when the task has too few such runs.
using NthNewest = std::function<Result<std::optional<int64_t>>(const std::string& task, Kind kind, int64_t offset)>;

// Fills each marks.tasks entry (its name set) from nth_newest() queries;
// `runs` (all runs, summary.total_runs) spares the floor queries of a
// keep_runs no task can reach.
Status fill_task_marks(const ExpiryRules& rules, ExpiryMarks& marks, int64_t runs, const NthNewest& query);

// What the statements above counted.
struct Summary {
  int64_t runs = 0;      // every run (status_counts, count_status)
  int64_t unknown = 0;   // runs of a status this build does not know
  int64_t terminal = 0;
  std::optional<int64_t> newest_executed_finish;
  int64_t expired = 0;  // (expired_summary)
  int64_t expired_by_age = 0;
  int64_t expired_bytes = 0;
  std::optional<int64_t> last_expired;
  int64_t total_bytes = 0;  // (total_bytes; read only when rules.max_log_bytes > 0)
};

// Adds a status_counts() row to `summary`.
void count_status(Summary& summary, std::string_view status, int64_t n);

// Runs nth_survivor(): the id, or nullopt past the last survivor.
using NthSurvivor = std::function<Result<std::optional<int64_t>>(int64_t offset)>;
// Runs survivors(): (id, log_bytes) pairs.
using SurvivorPage = std::function<Result<std::vector<std::pair<int64_t, int64_t>>>(int64_t after_id, int64_t limit)>;

// Fills the figures and the ceilings of `marks` from `summary`, reading the
// oldest survivors when a ceiling is exceeded (as many as it takes).
// Errors: corruption for rows of an unknown status; the queries'.
Status apply_summary(const ExpiryRules& rules, const Summary& summary, ExpiryMarks& marks,
                     const NthSurvivor& nth, const SurvivorPage& survivors);

}  // namespace cronkeep::store::expiry_sql
