// store/expiry_sql.h: the SQL of retention's plan (Store::expiry_marks and
// Store::plan_expired), written once for both backends. Internal to store.
//
// Every statement but task_names() and keep_runs_floor() starts with the same
// common table expressions and takes the same first four parameters:
//   1  the per-task table as JSON text (per_task_json): [[task, cutoff,
//      failure cutoff, executed floor, records floor], ...]
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

// The id of the (2)-th newest (0-based OFFSET) terminal run of task (1) that
// executed, or with `records`, of its skipped/missed records. One column.
std::string keep_runs_floor(Dialect d, bool records);

// The per-task table (parameter 1) for `rules` and the floors in `marks`.
std::string per_task_json(const ExpiryRules& rules, const ExpiryMarks& marks);

// now - limit, or nullopt when the limit is off (0).
std::optional<int64_t> cutoff(TimePoint now, Millis limit);

// One row: unknown-status rows, terminal, expired, expired_by_age,
// newest_executed_finish (NULL when none), survivors (terminal runs no
// per-task rule nor max_age expires), kept_bytes (their log bytes and those
// of in-flight runs, each counted from 0), last_expired (NULL when none).
std::string summary(Dialect d);

// The survivors (as in summary) with id > (5), oldest first, at most (6):
// id, log_bytes.
std::string survivors(Dialect d);

// The id of the survivor after the (5) oldest ones (OFFSET (5)).
std::string nth_survivor(Dialect d);

// A page of the plan: (5) max_runs_below, (6) max_size_below, (7) after_id,
// (8) last_expired, (9) limit; rows (id, reason code) in id order.
std::string page(Dialect d);

// ---- the steps of expiry_marks() both backends share ----------------------

// Runs keep_runs_floor(): the floor's id, or nullopt when the task has too few runs of the kind.
using FloorQuery = std::function<Result<std::optional<int64_t>>(const std::string& task, bool records, int64_t offset)>;

// Sets each marks.tasks entry's floors (the names must be filled in).
Status fill_floors(const ExpiryRules& rules, ExpiryMarks& marks, const FloorQuery& query);

// The row summary() returns.
struct Summary {
  int64_t unknown = 0;
  int64_t terminal = 0;
  int64_t expired = 0;
  int64_t expired_by_age = 0;
  std::optional<int64_t> newest_executed_finish;
  int64_t survivors = 0;
  int64_t kept_bytes = 0;
  std::optional<int64_t> last_expired;
};

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
