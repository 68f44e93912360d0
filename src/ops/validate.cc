// Parameters checked in one place for the CLI and the API, and `validate`.
#include "cron/cron.h"
#include "layout/layout.h"
#include "ops/ops.h"

namespace cronkeep::ops {

Result<store::RunStatus> parse_status(std::string_view text, std::string_view field) {
  if (auto s = store::parse_status(text)) return *s;
  return fail(ErrorCode::invalid_argument,
              std::string(field) + ": unknown status \"" + std::string(text) +
                  "\" (expected pending, running, succeeded, failed, timeout, cancelled, crashed, log_overflow, "
                  "skipped or missed)");
}

Status check_read(const logs::ReadRequest& read, bool from_line_given) {
  if (read.tail && (from_line_given || read.since))
    return fail(ErrorCode::invalid_argument, "tail: cannot be combined with from_line or since (tail reads the end)");
  if (read.since && from_line_given)
    return fail(ErrorCode::invalid_argument, "since: cannot be combined with from_line (both say where to start)");
  if (read.from_line < 1) return fail(ErrorCode::invalid_argument, "from_line: must be at least 1");
  if (read.lines && (*read.lines < 1 || *read.lines > read.max_lines))
    return fail(ErrorCode::invalid_argument, "lines: expected an integer from 1 to " + std::to_string(read.max_lines));
  if (read.tail && (*read.tail < 1 || *read.tail > read.max_lines))
    return fail(ErrorCode::invalid_argument, "tail: expected an integer from 1 to " + std::to_string(read.max_lines));
  return {};
}

Status check_task_name(std::string_view task) {
  if (layout::valid_task_name(task) || layout::is_system_task_name(task)) return {};
  return fail(ErrorCode::invalid_argument, "task: invalid task name \"" + std::string(task) + "\" (" +
                                               layout::kTaskNameRule + ")");
}

Status check_archive_query(const ArchiveQuery& q) {
  if (!layout::DataDir::valid_archive_date(q.date))
    return fail(ErrorCode::invalid_argument, "date: expected a day as YYYY-MM-DD (UTC), e.g. 2026-11-23, got \"" +
                                                 q.date.substr(0, 64) + "\"");
  if (q.task)
    if (auto st = check_task_name(*q.task); !st) return st;
  if (q.run_id && *q.run_id < 1) return fail(ErrorCode::invalid_argument, "run: expected a run id (1 or more)");
  if (q.after < 0) return fail(ErrorCode::invalid_argument, "after: expected 0 or more");
  if (q.limit < 1 || q.limit > 1000)
    return fail(ErrorCode::invalid_argument,
                "limit: expected an integer from 1 to 1000, got " + std::to_string(q.limit));
  return {};
}

Status check_env(const std::map<std::string, std::string>& env) {
  constexpr size_t kMaxVars = 64;
  constexpr size_t kMaxBytes = 64 * 1024;
  if (env.size() > kMaxVars)
    return fail(ErrorCode::invalid_argument, "env: at most " + std::to_string(kMaxVars) + " variables");
  size_t bytes = 0;
  for (const auto& [name, value] : env) {
    bool ok = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name)
      ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok)
      return fail(ErrorCode::invalid_argument,
                  "env: invalid variable name \"" + name + "\" (letters, digits and '_', not starting with a digit)");
    if (name.rfind("CRONKEEP_", 0) == 0)
      return fail(ErrorCode::invalid_argument, "env: " + name + ": names starting with CRONKEEP_ are set by cronkeep");
    if (value.find('\0') != std::string::npos)
      return fail(ErrorCode::invalid_argument, "env: " + name + ": the value must not contain a NUL character");
    bytes += name.size() + value.size();
  }
  if (bytes > kMaxBytes) return fail(ErrorCode::invalid_argument, "env: more than 64 KiB in all");
  return {};
}

ValidateReport validate(const std::string& config_path, TimePoint now) {
  ValidateReport out;
  out.file = config_path;
  auto cfg = config::load_config(config_path);
  if (!cfg) {
    for (const config::Problem& p : cfg.error()) out.problems.push_back(p.to_string());
    return out;
  }
  out.ok = true;
  for (const config::Task& task : cfg->tasks) {
    ValidatedTask v;
    v.task = task.name;
    v.cron = task.cron;
    v.timezone = task.timezone;
    std::optional<TimePoint> f = now;
    for (int i = 0; i < 3 && f && task.schedule && task.zone; ++i) {
      f = task.schedule->next_fire(*f, *task.zone);
      if (f) v.next_fires.push_back(*f);
    }
    out.tasks.push_back(std::move(v));
  }
  return out;
}

}  // namespace cronkeep::ops
