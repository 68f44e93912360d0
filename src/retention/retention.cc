#include "retention/retention.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/unique_fd.h"
#include <thread>

#include "base/fault.h"
#include "base/units.h"
#include "logs/logs.h"

namespace cronkeep::retention {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMinBatch = 16;
constexpr auto kBatchTarget = std::chrono::milliseconds(2);

TaskRules rules_of(const config::TaskPolicy& p) { return TaskRules{p.keep_runs, p.keep_for, p.keep_failed_for}; }

}  // namespace

Policy policy_from(const config::Config& config) {
  Policy p;
  p.defaults = rules_of(config.defaults);
  for (const config::Task& t : config.tasks) p.tasks.emplace(t.name, rules_of(t.policy));
  p.max_age = config.retention.max_age;
  p.max_runs = config.retention.max_runs;
  p.max_log_bytes = config.storage.max_size;
  p.max_fraction_per_sweep = config.retention.max_fraction_per_sweep;
  return p;
}

Executor::Executor(store::Store& store, std::string data_dir, int64_t max_batch)
    : store_(store), data_dir_(std::move(data_dir)), max_batch_(std::max<int64_t>(1, max_batch)) {}

void Executor::remove_files(const std::vector<store::Tombstone>& tombstones, PurgeReport& report,
                            std::vector<int64_t>& cleared) {
  // One descriptor per task directory: each unlink then resolves a single
  // name, not the whole path (a purge removes up to seven names per run).
  std::map<std::string, UniqueFd> dirs;
  for (const store::Tombstone& t : tombstones) {
    // Tombstones come from rows the store wrote; still, never follow a path
    // that could leave the logs directory.
    const size_t slash = t.log_path.rfind('/');
    if (t.log_path.empty() || t.log_path[0] == '/' || t.log_path.find("..") != std::string::npos ||
        t.log_path.rfind("logs/", 0) != 0 || slash == std::string::npos) {
      cleared.push_back(t.id);
      continue;
    }
    const std::string dir = data_dir_ + "/" + t.log_path.substr(0, slash);
    const std::string name = t.log_path.substr(slash + 1);
    auto it = dirs.find(dir);
    if (it == dirs.end()) it = dirs.emplace(dir, UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC))).first;
    if (!it->second.valid()) {  // the whole directory is gone: so are its files
      if (errno == ENOENT || !it->second.valid()) ++report.files_missing;
      cleared.push_back(t.id);
      continue;
    }
    bool ok = true;
    for (const char* suffix : logs::kFileSuffixes) {
      const std::string file = name + suffix;
      if (::unlinkat(it->second.get(), file.c_str(), 0) == 0) {
        ++report.files_deleted;
      } else if (errno != ENOENT) {
        ok = false;
        ++report.file_errors;
        if (report.first_error.empty()) report.first_error = dir + "/" + file + ": " + std::strerror(errno);
      } else if (*suffix == '\0') {
        ++report.files_missing;
      } else if (std::string_view(suffix) == ".prev") {
        break;  // never rotated: rotation renames the log to .prev before its sidecars
      }
    }
    if (ok) cleared.push_back(t.id);
  }
  // A task directory left empty goes too; rmdir refuses a non-empty one
  // without listing it (a new log may just have appeared: that is fine).
  for (auto& [dir, fd] : dirs) {
    fd.reset();
    ::rmdir(dir.c_str());
  }
}

Result<PurgeReport> Executor::purge(const std::vector<Expired>& expired, const Progress& progress) {
  // Deleting is bulk work: this thread yields the CPU to the scheduler's
  // (raising it back needs privileges, so it stays lowered; purges run on
  // threads of their own in the daemon).
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  if (::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)) < 10) ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 10);
  PurgeReport report;
  for (const Expired& e : expired) ++report.by_reason[e.reason];
  int64_t batch = std::min<int64_t>(max_batch_, 256);
  size_t next = 0;
  while (next < expired.size()) {
    const size_t n = std::min(expired.size() - next, static_cast<size_t>(batch));
    std::vector<int64_t> ids;
    ids.reserve(n);
    for (size_t i = next; i < next + n; ++i) ids.push_back(expired[i].id);
    const auto t0 = std::chrono::steady_clock::now();
    auto deleted = store_.delete_runs(ids);
    const auto took = std::chrono::steady_clock::now() - t0;
    if (!deleted) return tl::unexpected(deleted.error());
    fault::crash_point("retention.after_delete_commit");
    report.rows += deleted->rows;
    report.log_bytes += deleted->log_bytes;
    ++report.batches;
    std::vector<int64_t> cleared;
    remove_files(deleted->tombstones, report, cleared);
    fault::crash_point("retention.after_file_removal");
    if (!cleared.empty())
      if (auto st = store_.clear_tombstones(cleared); !st) return tl::unexpected(st.error());
    next += n;
    if (progress) progress(static_cast<int64_t>(next), static_cast<int64_t>(expired.size()));
    // Keep each transaction short so the scheduler's writes never wait long.
    if (took > 2 * kBatchTarget) batch = std::max(kMinBatch, batch / 2);
    else if (took < kBatchTarget / 2) batch = std::min(max_batch_, batch * 2);
    std::this_thread::yield();  // let a waiting writer take the lock between batches
  }
  return report;
}

Result<PurgeReport> Executor::replay_tombstones() {
  PurgeReport report;
  while (true) {
    auto tombs = store_.list_tombstones(1000);
    if (!tombs) return tl::unexpected(tombs.error());
    if (tombs->empty()) break;
    std::vector<int64_t> cleared;
    remove_files(*tombs, report, cleared);
    if (!cleared.empty())
      if (auto st = store_.clear_tombstones(cleared); !st) return tl::unexpected(st.error());
    if (cleared.size() < tombs->size()) break;  // the rest cannot be removed now; retried next time
  }
  return report;
}

Result<PurgeReport> sweep(store::Store& store, Executor& executor, const Policy& policy, TimePoint now) {
  auto leftover = executor.replay_tombstones();
  if (!leftover) return tl::unexpected(leftover.error());
  auto runs = store.list_briefs();
  if (!runs) return tl::unexpected(runs.error());
  std::vector<Expired> expired = plan_purge(policy, *runs, now);
  // A clock stepped forward makes every run look old: rather than trust it,
  // apply only the count and size rules and fail loudly.
  const std::optional<std::string> held = age_rules_held_back(policy, *runs, expired, now);
  const Policy applied = held ? without_age_rules(policy) : policy;
  if (held) expired = plan_purge(applied, *runs, now);
  runs->clear();
  runs->shrink_to_fit();
  auto report = executor.purge(expired);
  if (!report) return report;
  report->files_deleted += leftover->files_deleted;
  report->file_errors += leftover->file_errors;
  if (report->first_error.empty()) report->first_error = leftover->first_error;
  if (held) return fail(ErrorCode::conflict, "Retention stopped: " + *held + ". Count and size rules applied: " +
                                                 describe(*report, applied, now));
  return report;
}

std::string describe(const PurgeReport& r, const Policy& policy, TimePoint now) {
  std::string text = "Purged " + std::to_string(r.rows) + " run(s) and " + format_size(static_cast<uint64_t>(r.log_bytes)) +
                     " of logs";
  std::string reasons;
  for (const auto& [reason, count] : r.by_reason) {
    if (!reasons.empty()) reasons += ", ";
    reasons += std::string(to_string(reason)) + ": " + std::to_string(count);
  }
  text += " (" + (reasons.empty() ? std::string("nothing expired") : reasons);
  if (policy.max_age.count() > 0) text += "; max_age cutoff " + format_rfc3339(now - policy.max_age);
  text += ")";
  if (r.files_missing > 0) text += "; " + std::to_string(r.files_missing) + " log file(s) were already gone";
  if (r.file_errors > 0)
    text += "; " + std::to_string(r.file_errors) + " file(s) could not be removed and will be retried (" +
            r.first_error + ")";
  return text;
}

Result<CompactReport> compact(store::Store& store, CompactMode mode, int64_t slice_pages) {
  CompactReport report;
  auto before = store.db_stats();
  if (!before) return tl::unexpected(before.error());
  report.bytes_before = before->db_bytes();
  report.wal_bytes_before = before->wal_bytes;
  if (mode == CompactMode::full) {
    if (auto st = store.vacuum_full(); !st) return tl::unexpected(st.error());
    report.pages_freed = before->freelist_count;
    report.slices = 1;
  } else if (mode == CompactMode::incremental) {
    if (before->auto_vacuum != 2)
      return fail(ErrorCode::conflict,
                  "the database was created without incremental auto-vacuum; run `cronkeep compact --full` once");
    while (true) {
      auto freed = store.incremental_vacuum(slice_pages);
      if (!freed) return tl::unexpected(freed.error());
      if (*freed <= 0) break;
      report.pages_freed += *freed;
      ++report.slices;
      fault::crash_point("compactor.between_slices");
      std::this_thread::yield();  // writers may go between slices
    }
  }
  fault::crash_point("compactor.before_checkpoint");
  if (auto st = store.checkpoint_truncate(); !st) return tl::unexpected(st.error());
  if (auto st = store.optimize(); !st) return tl::unexpected(st.error());
  auto after = store.db_stats();
  if (!after) return tl::unexpected(after.error());
  report.after = *after;
  report.bytes_after = after->db_bytes();
  return report;
}

std::string describe(const CompactReport& r) {
  const int64_t reclaimed = std::max<int64_t>(0, r.bytes_before - r.bytes_after);
  return "Reclaimed " + format_size(static_cast<uint64_t>(reclaimed)) + " (" + std::to_string(r.pages_freed) +
         " page(s) in " + std::to_string(r.slices) + " slice(s)); database " +
         format_size(static_cast<uint64_t>(r.bytes_after)) + ", " + std::to_string(r.after.freelist_count) +
         " free page(s), WAL " + format_size(static_cast<uint64_t>(r.after.wal_bytes)) + " (was " +
         format_size(static_cast<uint64_t>(r.wal_bytes_before)) + ")";
}

namespace {

// Records a manual maintenance action as a run of a system task.
std::optional<int64_t> record_manual_run(store::Store& store, const char* task, TimePoint started, TimePoint ended,
                                         bool ok, const std::string& message, store::MaintenanceFigures figures) {
  store::NewRun row;
  row.task = task;
  row.trigger = store::Trigger::manual;
  row.status = store::RunStatus::running;
  row.created_at = started;
  auto id = store.insert_run(row);
  if (!id) return std::nullopt;
  store::RunEnd end;
  end.status = ok ? store::RunStatus::succeeded : store::RunStatus::failed;
  end.finished_at = ended;
  end.duration_ms = (ended - started).count();
  end.message = message;
  store.finish_run(*id, end);
  figures.run_id = *id;
  figures.task = task;
  store.record_maintenance(figures);
  return *id;
}

}  // namespace

Result<PurgeRequest> make_purge_request(std::string_view older_than, std::optional<std::string> task,
                                        std::optional<std::string_view> status, std::optional<int64_t> limit,
                                        bool dry_run) {
  PurgeRequest r;
  auto d = parse_duration(older_than);
  if (!d) return fail(ErrorCode::invalid_argument, "older_than: " + d.error().message);
  r.older_than = *d;
  r.task = std::move(task);
  if (status) {
    r.status = store::parse_status(*status);
    if (!r.status)
      return fail(ErrorCode::invalid_argument,
                  "status: unknown status \"" + std::string(*status) +
                      "\" (expected succeeded, failed, timeout, cancelled, crashed, log_overflow, skipped or missed)");
    if (!store::is_terminal(*r.status))
      return fail(ErrorCode::invalid_argument, "status: only terminal runs can be purged, not " + std::string(*status));
  }
  if (limit && *limit < 1) return fail(ErrorCode::invalid_argument, "limit: must be at least 1");
  r.limit = limit;
  r.dry_run = dry_run;
  r.origin = "older_than " + std::string(older_than) + (r.task ? ", task " + *r.task : "") +
             (status ? ", status " + std::string(*status) : "") + (limit ? ", limit " + std::to_string(*limit) : "");
  return r;
}

Result<PurgeOutcome> manual_purge(store::Store& store, Executor& executor, const PurgeRequest& req,
                                  const Clock& clock, const Progress& progress) {
  const TimePoint now = clock.now();
  PurgeOutcome out;
  out.cutoff = now - req.older_than;
  auto found = store.find_purgeable(store::PurgeQuery{out.cutoff, req.task, req.status, req.limit});
  if (!found) return tl::unexpected(found.error());
  std::map<std::string, TaskVolume> volumes;
  std::vector<Expired> expired;
  expired.reserve(found->size());
  for (const auto& r : *found) {
    TaskVolume& v = volumes[r.task];
    v.task = r.task;
    ++v.runs;
    v.log_bytes += r.log_bytes;
    expired.push_back({r.id, Reason::manual});
  }
  found->clear();
  for (auto& [name, v] : volumes) out.per_task.push_back(v);
  if (req.dry_run) {
    int64_t runs = 0, bytes = 0;
    for (const auto& v : out.per_task) {
      runs += v.runs;
      bytes += v.log_bytes;
    }
    out.message = "Dry run (" + req.origin + "): would purge " + std::to_string(runs) + " run(s) and " +
                  format_size(static_cast<uint64_t>(bytes)) + " of logs (cutoff " + format_rfc3339(out.cutoff) + ")";
    return out;
  }
  auto report = executor.purge(expired, progress);
  const TimePoint ended = clock.now();
  if (!report) {
    record_manual_run(store, kRetentionTask, now, ended, false, "Manual purge failed: " + report.error().message, {});
    return tl::unexpected(report.error());
  }
  out.report = *report;
  out.message = "Manual purge (" + req.origin + "): purged " + std::to_string(report->rows) + " run(s) and " +
                format_size(static_cast<uint64_t>(report->log_bytes)) + " of logs (cutoff " +
                format_rfc3339(out.cutoff) + ")";
  if (report->files_missing)
    out.message += "; " + std::to_string(report->files_missing) + " log file(s) were already gone";
  if (report->file_errors)
    out.message += "; " + std::to_string(report->file_errors) + " file(s) could not be removed and will be retried (" +
                   report->first_error + ")";
  out.run_id = record_manual_run(store, kRetentionTask, now, ended, report->file_errors == 0, out.message,
                                 store::MaintenanceFigures{0, "", report->rows, report->files_deleted,
                                                           report->file_errors, report->log_bytes, 0});
  return out;
}

Result<CompactOutcome> manual_compact(store::Store& store, CompactMode mode, const Clock& clock) {
  const TimePoint started = clock.now();
  auto report = compact(store, mode);
  if (!report) {
    record_manual_run(store, kCompactorTask, started, clock.now(), false, report.error().message, {});
    return tl::unexpected(report.error());
  }
  CompactOutcome out;
  out.report = *report;
  out.message = (mode == CompactMode::full ? "Full VACUUM: " : "") + describe(*report);
  out.run_id = record_manual_run(
      store, kCompactorTask, started, clock.now(), true, out.message,
      store::MaintenanceFigures{0, "", 0, 0, 0, 0, std::max<int64_t>(0, report->bytes_before - report->bytes_after)});
  return out;
}

}  // namespace cronkeep::retention
