#include "retention/planner.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <unordered_map>

#include "base/units.h"

namespace cronkeep::retention {

const char* to_string(Reason r) {
  switch (r) {
    case Reason::keep_runs: return "keep_runs";
    case Reason::keep_for: return "keep_for";
    case Reason::keep_failed_for: return "keep_failed_for";
    case Reason::max_age: return "max_age";
    case Reason::max_runs: return "max_runs";
    case Reason::max_size: return "max_size";
    case Reason::manual: return "manual";
  }
  return "?";
}

std::vector<Expired> plan_purge(const Policy& policy, std::span<const RunFacts> runs, TimePoint now) {
  // Terminal runs, oldest first (ids increase with creation).
  std::vector<const RunFacts*> terminal;
  terminal.reserve(runs.size());
  uint64_t total_bytes = 0;
  for (const RunFacts& r : runs) {
    total_bytes += static_cast<uint64_t>(std::max<int64_t>(0, r.log_bytes));
    if (store::is_terminal(r.status)) terminal.push_back(&r);
  }
  std::sort(terminal.begin(), terminal.end(), [](const RunFacts* a, const RunFacts* b) { return a->id < b->id; });

  std::unordered_map<const RunFacts*, Reason> verdict;
  verdict.reserve(terminal.size() / 4 + 16);

  // Per task, newest first. Runs that executed and the records of fires that
  // never ran (skipped, missed) are ranked on lists of their own, so a burst
  // of skipped fires cannot push the task's real results out. The newest
  // terminal run, the newest success and the newest failure are protected
  // from every per-task rule.
  struct TaskPass {
    int64_t executed_rank = 0;
    int64_t record_rank = 0;
    bool seen_any = false;
    bool seen_success = false;
    bool seen_failure = false;
  };
  std::unordered_map<std::string_view, TaskPass> pass;
  for (auto it = terminal.rbegin(); it != terminal.rend(); ++it) {
    const RunFacts& r = **it;
    auto found = policy.tasks.find(r.task);
    const TaskRules& rules = found != policy.tasks.end() ? found->second : policy.defaults;
    TaskPass& tp = pass[r.task];
    const bool failure = store::is_failure(r.status);
    const bool success = r.status == store::RunStatus::succeeded;
    const bool is_record = r.status == store::RunStatus::skipped || r.status == store::RunStatus::missed;
    const bool is_protected = !tp.seen_any || (success && !tp.seen_success) || (failure && !tp.seen_failure);
    tp.seen_any = true;
    tp.seen_success = tp.seen_success || success;
    tp.seen_failure = tp.seen_failure || failure;
    const int64_t rank = ++(is_record ? tp.record_rank : tp.executed_rank);
    std::optional<Reason> why;
    if (!is_protected) {
      if (rank > rules.keep_runs) {
        why = Reason::keep_runs;
      } else {
        const Millis limit = failure ? rules.keep_failed_for : rules.keep_for;
        if (limit.count() > 0 && now - r.finished_at > limit) why = failure ? Reason::keep_failed_for : Reason::keep_for;
      }
    }
    if (!why && policy.max_age.count() > 0 && now - r.finished_at > policy.max_age) why = Reason::max_age;
    if (why) verdict.emplace(&r, *why);
  }

  // Database-wide ceilings on what survived, oldest first.
  int64_t survivors = static_cast<int64_t>(terminal.size() - verdict.size());
  uint64_t bytes = total_bytes;
  for (const RunFacts* r : terminal)
    if (verdict.count(r)) bytes -= static_cast<uint64_t>(std::max<int64_t>(0, r->log_bytes));
  for (const RunFacts* r : terminal) {
    const bool over_runs = policy.max_runs > 0 && survivors > policy.max_runs;
    const bool over_bytes = policy.max_log_bytes > 0 && bytes > policy.max_log_bytes;
    if (!over_runs && !over_bytes) break;
    if (verdict.count(r)) continue;
    verdict.emplace(r, over_runs ? Reason::max_runs : Reason::max_size);
    --survivors;
    bytes -= static_cast<uint64_t>(std::max<int64_t>(0, r->log_bytes));
  }

  std::vector<Expired> out;
  out.reserve(verdict.size());
  for (const RunFacts* r : terminal)
    if (auto it = verdict.find(r); it != verdict.end()) out.push_back(Expired{r->id, it->second});
  return out;
}

bool is_age_rule(Reason r) { return r == Reason::keep_for || r == Reason::keep_failed_for || r == Reason::max_age; }

Policy without_age_rules(Policy policy) {
  policy.max_age = Millis(0);
  policy.defaults.keep_for = policy.defaults.keep_failed_for = Millis(0);
  for (auto& [name, rules] : policy.tasks) rules.keep_for = rules.keep_failed_for = Millis(0);
  return policy;
}

GuardFacts guard_facts(std::span<const RunFacts> runs, std::span<const Expired> plan) {
  GuardFacts f;
  for (const RunFacts& r : runs) {
    if (!store::is_terminal(r.status)) continue;
    ++f.terminal;
    if (r.status == store::RunStatus::skipped || r.status == store::RunStatus::missed) continue;
    if (!f.newest_executed_finish || r.finished_at > *f.newest_executed_finish) f.newest_executed_finish = r.finished_at;
  }
  for (const Expired& e : plan) f.expired_by_age += is_age_rule(e.reason) ? 1 : 0;
  return f;
}

GuardFacts guard_facts(const store::ExpiryMarks& marks) {
  return GuardFacts{marks.terminal, marks.expired_by_age, marks.newest_executed_finish};
}

std::optional<std::string> age_rules_held_back(const Policy& policy, std::span<const RunFacts> runs,
                                               std::span<const Expired> plan, TimePoint now) {
  return age_rules_held_back(policy, guard_facts(runs, plan), now);
}

store::ExpiryRules expiry_rules(const Policy& policy, TimePoint now) {
  auto rule = [](const TaskRules& r) { return store::ExpiryRule{r.keep_runs, r.keep_for, r.keep_failed_for}; };
  store::ExpiryRules out;
  for (const auto& [name, rules] : policy.tasks) out.tasks.emplace(name, rule(rules));
  out.defaults = rule(policy.defaults);
  out.max_age = policy.max_age;
  out.max_runs = policy.max_runs;
  out.max_log_bytes = policy.max_log_bytes;
  out.now = now;
  return out;
}

Reason reason_of(store::ExpiryReason reason) {
  switch (reason) {
    case store::ExpiryReason::keep_runs: return Reason::keep_runs;
    case store::ExpiryReason::keep_for: return Reason::keep_for;
    case store::ExpiryReason::keep_failed_for: return Reason::keep_failed_for;
    case store::ExpiryReason::max_age: return Reason::max_age;
    case store::ExpiryReason::max_runs: return Reason::max_runs;
    case store::ExpiryReason::max_size: return Reason::max_size;
  }
  return Reason::manual;
}

std::optional<std::string> age_rules_held_back(const Policy& policy, const GuardFacts& facts, TimePoint now) {
  const int64_t terminal = facts.terminal;
  const std::optional<TimePoint>& newest_executed = facts.newest_executed_finish;
  const int64_t by_age = facts.expired_by_age;
  if (by_age == 0) return std::nullopt;

  const std::string hint =
      ". If the clock is right, delete them with `cronkeep purge --older-than D` or raise max_fraction_per_sweep";
  if (static_cast<double>(by_age) > policy.max_fraction_per_sweep * static_cast<double>(terminal)) {
    char fractions[64];
    std::snprintf(fractions, sizeof fractions, "%.0f%% > max_fraction_per_sweep = %g",
                  100.0 * static_cast<double>(by_age) / static_cast<double>(terminal), policy.max_fraction_per_sweep);
    return "age rules held back: they would delete " + std::to_string(by_age) + " of " + std::to_string(terminal) +
           " terminal run(s) (" + fractions + "), which suggests a clock fault (now " + format_rfc3339(now) + ")" + hint;
  }

  Millis window = policy.max_age;
  if (window.count() == 0) {
    window = std::max(policy.defaults.keep_for, policy.defaults.keep_failed_for);
    for (const auto& [name, rules] : policy.tasks) window = std::max({window, rules.keep_for, rules.keep_failed_for});
  }
  if (newest_executed && window.count() > 0 && now - *newest_executed > window)
    return "age rules held back: now (" + format_rfc3339(now) + ") is " + format_duration(now - *newest_executed) +
           " after the newest run (" + format_rfc3339(*newest_executed) + "), more than the retention window (" +
           format_duration(window) + "), which suggests a clock fault" + hint;
  return std::nullopt;
}

}  // namespace cronkeep::retention
