// retention/planner.h: which runs are expired. Pure: values in, ids out; no
// database, no files, no clock (`now` is a parameter).
//
// Rules (DESIGN.md "Retention and compaction", docs/retention.md):
//   per task   a terminal run is expired when it is not among the task's
//              keep_runs newest terminal runs of its kind (by id), or when it
//              finished more than keep_for ago (keep_failed_for for failed,
//              timeout, crashed, log_overflow). Two kinds are counted apart:
//              runs that executed, and records of fires that never ran
//              (skipped, missed), so records never displace real results.
//              The task's newest terminal run, newest success (succeeded)
//              and newest failure are exempt from all per-task rules.
//              Runs of tasks that are not configured follow the defaults.
//   database   max_age: no terminal run older than this, no exemption;
//              max_runs: at most this many terminal runs survive, oldest go;
//              max_log_bytes: the log bytes of all runs (in-flight included)
//              stay within this, oldest terminal runs go first; 0 = no cap.
//   never      pending and running runs are never expired.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/time.h"
#include "store/store.h"

namespace cronkeep::retention {

struct TaskRules {
  int64_t keep_runs = 100;
  Millis keep_for{30LL * 86'400'000};
  Millis keep_failed_for{90LL * 86'400'000};
};

struct Policy {
  std::map<std::string, TaskRules, std::less<>> tasks;  // configured tasks
  TaskRules defaults;                                    // everything else
  Millis max_age{365LL * 86'400'000};                    // 0 = none
  int64_t max_runs = 1'000'000;                          // 0 = none
  uint64_t max_log_bytes = 0;                            // 0 = none
  double max_fraction_per_sweep = 0.5;                   // 0 < x <= 1; see age_rules_held_back
};

// What the planner needs to know of one run (id, task, status, finished_at,
// log_bytes), as the store lists it.
using RunFacts = store::RunBrief;

// `manual` marks runs chosen by a manual purge, never by the planner.
enum class Reason { keep_runs, keep_for, keep_failed_for, max_age, max_runs, max_size, manual };
const char* to_string(Reason r);

struct Expired {
  int64_t id;
  Reason reason;  // the first rule, in the order above, that expires it
};

// Returns the expired runs among `runs`, in increasing id order.
// Requires: ids are unique. Thread-safe (no shared state).
std::vector<Expired> plan_purge(const Policy& policy, std::span<const RunFacts> runs, TimePoint now);

// True for the rules that expire a run because of its age (keep_for,
// keep_failed_for, max_age): the ones a wrong clock turns against the history.
bool is_age_rule(Reason r);

// `policy` with its age rules off (keep_for, keep_failed_for, max_age = 0):
// only count and size rules remain.
Policy without_age_rules(Policy policy);

// What the guard against clock faults looks at in a plan of the whole history.
struct GuardFacts {
  int64_t terminal = 0;        // terminal runs
  int64_t expired_by_age = 0;  // runs the plan expires by an age rule (is_age_rule)
  // The latest finished_at of a terminal run that executed (skipped and
  // missed records excluded); nullopt when there is none.
  std::optional<TimePoint> newest_executed_finish;
};

// The facts of `plan`, which plan_purge(policy, runs, now) returned.
GuardFacts guard_facts(std::span<const RunFacts> runs, std::span<const Expired> plan);

// The guard against clock faults (docs/retention.md). Given the facts of the
// plan of `policy` at `now`, says why its age rules must not run now, or
// returns nullopt when they may:
//   - they would expire more than policy.max_fraction_per_sweep of the
//     terminal runs; or
//   - `now` is later than the newest terminal run that executed (skipped and
//     missed records excluded) by more than the retention window: max_age,
//     or when max_age is 0 the longest keep_for/keep_failed_for in `policy`.
// The text names the figures and what to do. Pure; thread-safe.
std::optional<std::string> age_rules_held_back(const Policy& policy, const GuardFacts& facts, TimePoint now);

// The same, from the runs and the plan plan_purge(policy, runs, now) returned.
std::optional<std::string> age_rules_held_back(const Policy& policy, std::span<const RunFacts> runs,
                                               std::span<const Expired> plan, TimePoint now);

// ---- the same rules, evaluated by the store in SQL -------------------------
//
// A sweep does not list the history: it passes the rules to the store
// (Store::expiry_marks, Store::plan_expired), which evaluates them in the
// database and returns the plan a page at a time, the same plan as
// plan_purge() (a property test holds the two to it). docs/retention.md.

// `policy` at `now` as the store's parameters.
store::ExpiryRules expiry_rules(const Policy& policy, TimePoint now);

// The planner's reason for the store's.
Reason reason_of(store::ExpiryReason reason);

// The guard's facts as the store counted them.
GuardFacts guard_facts(const store::ExpiryMarks& marks);

}  // namespace cronkeep::retention
