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
#include "layout/layout.h"

namespace cronkeep::retention {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMinBatch = 16;
constexpr auto kBatchTarget = std::chrono::milliseconds(2);

TaskRules rules_of(const config::TaskPolicy& p) { return TaskRules{p.keep_runs, p.keep_for, p.keep_failed_for}; }

const Clock& system_clock() {
  static const SystemClock clock;
  return clock;
}

}  // namespace

ArchivePolicy archive_policy_from(const config::Config& config) {
  return ArchivePolicy{config.retention.archive, config.retention.archive_logs, config.retention.archive_keep_for};
}

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

Executor::Executor(store::Store& store, layout::DataDir dir, int64_t max_batch, const Clock* clock)
    : store_(store),
      dir_(std::move(dir)),
      max_batch_(std::max<int64_t>(1, max_batch)),
      clock_(clock ? *clock : system_clock()),
      writer_(dir_) {}

void Executor::set_max_batch(int64_t max_batch) { max_batch_ = std::max<int64_t>(1, max_batch); }

void Executor::set_archive(const ArchivePolicy& policy) {
  std::lock_guard lock(archive_mu_);
  archive_ = policy;
}

void Executor::set_pace(Pace pace) {
  std::lock_guard lock(archive_mu_);
  pace_ = std::move(pace);
}

Executor::Pace Executor::pace() const {
  std::lock_guard lock(archive_mu_);
  return pace_;
}

void Executor::pace_step(const Pace& pace, std::chrono::steady_clock::time_point& respite_until) {
  // Waits while `pace` asks, kMaxPaceHold at most in a row; after a hold
  // that long, kPaceRespite of work without asking.
  const auto start = std::chrono::steady_clock::now();
  if (start < respite_until) return;
  for (;;) {
    const Millis wait = pace();
    if (wait.count() <= 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - start >= kMaxPaceHold) {
      respite_until = now + kPaceRespite;
      return;
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(wait, kMaxPaceHold - (now - start)));
  }
}

ArchivePolicy Executor::archive() const {
  std::lock_guard lock(archive_mu_);
  return archive_;
}

archive::Removal Executor::prune_archive(TimePoint now) {
  return archive::remove_before(dir_, now - archive().keep_for);
}

Result<std::vector<int64_t>> Executor::archive_batch(std::span<const Expired> batch, bool logs, PurgeReport& report) {
  const TimePoint now = clock_.now();
  std::vector<int64_t> archived;
  std::optional<archive::Append> append;
  for (const Expired& e : batch) {
    auto run = store_.get_run(e.id);
    if (!run) {
      if (run.error().code == ErrorCode::not_found) continue;  // deleted meanwhile (another purge)
      return tl::unexpected(run.error());
    }
    // A run in flight is not deleted (and so not archived): were it to end
    // between here and the delete, it would go unarchived.
    if (!store::is_terminal(run->status)) continue;
    if (!append) {
      auto begun = writer_.begin(now);
      if (!begun) return tl::unexpected(begun.error());
      append.emplace(std::move(*begun));
    }
    archive::Entry entry{std::move(*run), to_string(e.reason), now, std::nullopt};
    if (logs) entry.log = archive::read_log_text(dir_, entry.run);
    if (auto st = append->add(entry); !st) return tl::unexpected(st.error());
    archived.push_back(e.id);
  }
  if (!append) return archived;
  auto committed = append->commit();
  if (!committed) return tl::unexpected(committed.error());
  report.archived += committed->entries;
  report.archive_file = committed->file;
  return archived;
}

void Executor::remove_files(const std::vector<store::Tombstone>& tombstones, PurgeReport& report,
                            std::vector<int64_t>& cleared) {
  std::vector<std::string> paths;
  paths.reserve(tombstones.size());
  for (const store::Tombstone& t : tombstones) paths.push_back(t.log_path);
  layout::Removal removal;
  const Pace pace = this->pace();
  std::function<void()> step;
  if (pace) step = [&pace, respite_until = std::chrono::steady_clock::time_point{}]() mutable {
    pace_step(pace, respite_until);
  };
  const std::vector<bool> gone = layout::remove_run_files(dir_, paths, removal, step);
  for (size_t i = 0; i < tombstones.size(); ++i)
    if (gone[i]) cleared.push_back(tombstones[i].id);
  report.files_deleted += removal.files_deleted;
  report.files_missing += removal.files_missing;
  report.file_errors += removal.file_errors;
  if (report.first_error.empty()) report.first_error = removal.first_error;
}

Result<PurgeReport> Executor::purge(const std::vector<Expired>& expired, const Progress& progress) {
  PurgeReport report;
  for (const Expired& e : expired) ++report.by_reason[e.reason];
  const ArchivePolicy archiving = archive();
  const Pace pace = this->pace();
  auto respite_until = std::chrono::steady_clock::time_point{};
  const int64_t max_batch = max_batch_.load();
  int64_t batch = std::min<int64_t>(max_batch, 256);
  size_t next = 0;
  while (next < expired.size()) {
    const size_t n = std::min(expired.size() - next, static_cast<size_t>(batch));
    std::vector<int64_t> ids;
    if (archiving.enabled) {
      // No run of this batch is deleted unless its entry is on disk first.
      const std::span<const Expired> these(expired.data() + next, n);
      auto archived = archive_batch(these, archiving.logs, report);
      // A full disk: give up the reserve (layout.h) and try once more.
      if (!archived && archived.error().code == ErrorCode::no_space && layout::release_reserve(dir_))
        archived = archive_batch(these, archiving.logs, report);
      if (!archived)
        return fail(archived.error().code,
                    "archiving before deleting: " + archived.error().message + "; the " + std::to_string(n) +
                        " run(s) of this batch were not deleted ([retention] archive = true deletes a run only "
                        "once it is archived)" +
                        (report.rows > 0
                             ? "; " + std::to_string(report.rows) + " run(s) were archived and deleted before"
                             : std::string()));
      fault::crash_point("retention.after_archive_fsync");
      ids = std::move(*archived);
    } else {
      ids.reserve(n);
      for (size_t i = next; i < next + n; ++i) ids.push_back(expired[i].id);
    }
    // A delete batch writes the WAL and reads pages that may not be cached:
    // it too waits for the starts (set_pace).
    if (pace) pace_step(pace, respite_until);
    const auto t0 = std::chrono::steady_clock::now();
    auto deleted = store_.delete_runs(ids);
    // A full disk must not keep us from freeing it: give up the reserve
    // (layout.h) and try once more.
    if (!deleted && deleted.error().code == ErrorCode::no_space && layout::release_reserve(dir_))
      deleted = store_.delete_runs(ids);
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
    else if (took < kBatchTarget / 2) batch = std::min(max_batch, batch * 2);
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

namespace {

void add_to(PurgeReport& total, const PurgeReport& r) {
  total.rows += r.rows;
  total.log_bytes += r.log_bytes;
  total.files_deleted += r.files_deleted;
  total.files_missing += r.files_missing;
  total.file_errors += r.file_errors;
  total.batches += r.batches;
  for (const auto& [reason, n] : r.by_reason) total.by_reason[reason] += n;
  if (total.first_error.empty()) total.first_error = r.first_error;
  total.archived += r.archived;
  if (!r.archive_file.empty()) total.archive_file = r.archive_file;  // the latest
  total.archive_files_removed += r.archive_files_removed;
}

}  // namespace

Result<PurgeReport> sweep(store::Store& store, Executor& executor, const Policy& policy, TimePoint now) {
  auto leftover = executor.replay_tombstones();
  if (!leftover) return tl::unexpected(leftover.error());
  // The store evaluates the rules in the database (docs/retention.md,
  // "Planning in the database"): first the thresholds and figures of the
  // whole plan, then the plan itself a page at a time, in id order, each
  // page deleted before the next is read. Memory: one page, whatever the
  // history's length.
  store::ExpiryRules rules = expiry_rules(policy, now);
  auto marks = store.expiry_marks(rules);
  if (!marks) return tl::unexpected(marks.error());
  // A clock stepped forward makes every run look old: rather than trust it,
  // apply only the count and size rules and fail loudly.
  const std::optional<std::string> held = age_rules_held_back(policy, guard_facts(*marks), now);
  const Policy applied = held ? without_age_rules(policy) : policy;
  if (held) {
    rules = expiry_rules(applied, now);
    marks = store.expiry_marks(rules);
    if (!marks) return tl::unexpected(marks.error());
  }
  const int64_t page_size = std::max<int64_t>(4096, 4 * executor.max_batch());
  PurgeReport report;
  int64_t after = 0;
  while (true) {
    auto page = store.plan_expired(rules, *marks, after, page_size);
    if (!page) return tl::unexpected(page.error());
    if (page->empty()) break;
    std::vector<Expired> expired;
    expired.reserve(page->size());
    for (const store::ExpiredRun& e : *page) expired.push_back(Expired{e.id, reason_of(e.reason)});
    after = page->back().id;
    auto done = executor.purge(expired);
    if (!done) return done;
    add_to(report, *done);
    if (page->size() < static_cast<size_t>(page_size)) break;
  }
  report.files_deleted += leftover->files_deleted;
  report.file_errors += leftover->file_errors;
  if (report.first_error.empty()) report.first_error = leftover->first_error;
  if (!held) {
    const archive::Removal removed = executor.prune_archive(now);
    report.archive_files_removed = removed.files;
    report.file_errors += removed.errors;
    if (report.first_error.empty()) report.first_error = removed.first_error;
  }
  if (held) return fail(ErrorCode::conflict, "Retention stopped: " + *held + ". Count and size rules applied: " +
                                                 describe(report, applied, now));
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
  text += describe_archive(r);
  return text;
}

std::string describe_archive(const PurgeReport& r) {
  std::string text;
  if (r.archived > 0) text += "; archived " + std::to_string(r.archived) + " run(s) to " + r.archive_file;
  if (r.archive_files_removed > 0)
    text += "; removed " + std::to_string(r.archive_files_removed) + " archive file(s) past archive_keep_for";
  return text;
}

const char* to_string(CompactStep::Phase phase) {
  switch (phase) {
    case CompactStep::Phase::freeing: return "freeing";
    case CompactStep::Phase::rewriting: return "rewriting";
    case CompactStep::Phase::checkpointing: return "checkpointing";
  }
  return "freeing";
}

Result<CompactReport> compact(store::Store& store, CompactMode mode, int64_t slice_pages,
                              const CompactObserver& observe) {
  CompactReport report;
  auto before = store.db_stats();
  if (!before) return tl::unexpected(before.error());
  report.bytes_before = before->db_bytes();
  report.wal_bytes_before = before->wal_bytes;
  auto step = [&](CompactStep::Phase phase) {
    if (observe) observe(CompactStep{phase, report.pages_freed, before->freelist_count});
  };
  if (mode == CompactMode::full) {
    step(CompactStep::Phase::rewriting);
    if (auto st = store.vacuum_full(); !st) return tl::unexpected(st.error());
    report.pages_freed = before->freelist_count;
    report.slices = 1;
  } else if (mode == CompactMode::incremental) {
    if (before->auto_vacuum != 2)
      return fail(ErrorCode::conflict,
                  "the database was created without incremental auto-vacuum; run `cronkeep compact --full` once");
    step(CompactStep::Phase::freeing);
    while (true) {
      auto freed = store.incremental_vacuum(slice_pages);
      if (!freed) return tl::unexpected(freed.error());
      if (*freed <= 0) break;
      report.pages_freed += *freed;
      ++report.slices;
      step(CompactStep::Phase::freeing);
      fault::crash_point("compactor.between_slices");
      std::this_thread::yield();  // writers may go between slices
    }
  }
  fault::crash_point("compactor.before_checkpoint");
  step(CompactStep::Phase::checkpointing);
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

Status record_figures(store::Store& store, store::MaintenanceFigures figures, TimePoint ended) {
  figures.finished_at = ended;
  if (!figures.db_bytes)
    if (auto stats = store.db_stats()) figures.db_bytes = stats->db_bytes();
  return store.record_maintenance(figures);
}

namespace {

// Records a manual maintenance action as a run of a system task.
Result<int64_t> record_manual_run(store::Store& store, const char* task, TimePoint started, TimePoint ended, bool ok,
                                  const std::string& message, store::MaintenanceFigures figures) {
  store::NewRun row;
  row.task = task;
  row.trigger = store::Trigger::manual;
  row.status = store::RunStatus::running;
  row.created_at = started;
  auto id = store.insert_run(row);
  if (!id) return id;
  store::RunEnd end;
  end.status = ok ? store::RunStatus::succeeded : store::RunStatus::failed;
  end.finished_at = ended;
  end.duration_ms = (ended - started).count();
  end.message = message;
  if (auto st = store.finish_run(*id, end); !st) return tl::unexpected(st.error());
  figures.run_id = *id;
  figures.task = task;
  if (auto st = record_figures(store, figures, ended); !st) return tl::unexpected(st.error());
  return *id;
}

// The work is done either way; a failure to record it is said in the message.
void note_recorded(const Result<int64_t>& id, std::optional<int64_t>& run_id, std::string& message) {
  if (id) run_id = *id;
  else message += "; not recorded in the history: " + id.error().message;
}

}  // namespace

Result<PurgeRequest> make_purge_request(std::string_view older_than, std::optional<std::string> task,
                                        std::optional<std::string_view> status, std::optional<int64_t> limit,
                                        bool dry_run, bool all) {
  PurgeRequest r;
  r.older_than_text = std::string(older_than);
  r.all = all;
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
             (status ? ", status " + std::string(*status) : "") + (limit ? ", limit " + std::to_string(*limit) : "") +
             (all ? ", all" : "");
  return r;
}

Result<PurgeOutcome> manual_purge(store::Store& store, Executor& executor, const PurgeRequest& req,
                                  const Clock& clock, const Progress& progress) {
  const TimePoint now = clock.now();
  PurgeOutcome out;
  out.cutoff = now - req.older_than;
  out.dry_run = req.dry_run;
  // Each task's newest success and newest failure stay (DESIGN.md: the age
  // rules keep them; a manual purge does too unless --all), looked up once
  // for each task the purge meets.
  std::map<std::string, std::set<int64_t>, std::less<>> kept;
  auto is_kept = [&](const std::string& task, int64_t id) -> Result<bool> {
    auto it = kept.find(task);
    if (it == kept.end()) {
      std::set<int64_t> ids;
      int64_t newest_failure = 0;
      for (auto status : {store::RunStatus::succeeded, store::RunStatus::failed, store::RunStatus::timeout,
                          store::RunStatus::crashed, store::RunStatus::log_overflow}) {
        auto newest = store.list_runs(store::RunQuery{task, 1, std::nullopt, status});
        if (!newest) return tl::unexpected(newest.error());
        if (newest->empty()) continue;
        if (status == store::RunStatus::succeeded) ids.insert(newest->front().id);
        else newest_failure = std::max(newest_failure, newest->front().id);  // only the newest failure overall
      }
      if (newest_failure) ids.insert(newest_failure);
      it = kept.emplace(task, std::move(ids)).first;
    }
    return it->second.count(id) > 0;
  };
  // The runs the request selects, oldest first, read a page at a time (the
  // purge's memory does not grow with the history), up to `through` (an id)
  // and the limit; `each` gets each page's share. Returns the last id chosen.
  constexpr int64_t kPage = 4096;
  auto walk = [&](std::optional<int64_t> through,
                  const std::function<Status(const std::vector<store::RunBrief>&)>& each) -> Result<int64_t> {
    int64_t after = 0, taken = 0, last = 0;
    while (true) {
      auto found = store.find_purgeable(store::PurgeQuery{out.cutoff, req.task, req.status, kPage, after});
      if (!found) return tl::unexpected(found.error());
      if (found->empty()) break;
      after = found->back().id;
      std::vector<store::RunBrief> chosen;
      bool done = false;
      for (store::RunBrief& r : *found) {
        if ((through && r.id > *through) || (req.limit && taken >= *req.limit)) {
          done = true;
          break;
        }
        if (!req.all) {
          auto k = is_kept(r.task, r.id);
          if (!k) return tl::unexpected(k.error());
          if (*k) continue;
        }
        ++taken;
        last = r.id;
        chosen.push_back(std::move(r));
      }
      if (!chosen.empty())
        if (auto st = each(chosen); !st) return tl::unexpected(st.error());
      if (done || found->size() < static_cast<size_t>(kPage)) break;
    }
    return last;
  };

  // First what would go, per task (and the total, for the progress).
  std::map<std::string, TaskVolume> volumes;
  int64_t total = 0;
  auto last = walk(std::nullopt, [&](const std::vector<store::RunBrief>& runs) -> Status {
    for (const store::RunBrief& r : runs) {
      TaskVolume& v = volumes[r.task];
      v.task = r.task;
      ++v.runs;
      v.log_bytes += r.log_bytes;
      ++total;
    }
    return {};
  });
  if (!last) return tl::unexpected(last.error());
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
  // Then the same runs again (no further than the last one counted), each
  // page through the executor.
  Result<PurgeReport> report = PurgeReport{};
  if (total > 0) {
    int64_t done = 0;
    auto walked = walk(*last, [&](const std::vector<store::RunBrief>& runs) -> Status {
      std::vector<Expired> expired;
      expired.reserve(runs.size());
      for (const store::RunBrief& r : runs) expired.push_back({r.id, Reason::manual});
      Progress page_progress;
      if (progress) page_progress = [&](int64_t d, int64_t) { progress(done + d, total); };
      auto page = executor.purge(expired, page_progress);
      if (!page) return tl::unexpected(page.error());
      add_to(*report, *page);
      done += static_cast<int64_t>(runs.size());
      return {};
    });
    if (!walked) report = tl::unexpected(walked.error());
  }
  const TimePoint ended = clock.now();
  if (!report) {
    // The purge's own error is the one to report; recording it is best effort.
    (void)record_manual_run(store, kRetentionTask, now, ended, false, "Manual purge failed: " + report.error().message, {});
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
  out.message += describe_archive(*report);
  note_recorded(record_manual_run(store, kRetentionTask, now, ended, report->file_errors == 0, out.message,
                                  store::MaintenanceFigures{0, "", report->rows, report->files_deleted,
                                                            report->file_errors, report->log_bytes, 0}),
                out.run_id, out.message);
  return out;
}

Result<CompactOutcome> manual_compact(store::Store& store, CompactMode mode, const Clock& clock,
                                      const CompactHooks& hooks) {
  const TimePoint started = clock.now();
  // The run exists while the work goes on; a crash leaves it running, and
  // the next start-up marks it crashed like any other.
  std::optional<int64_t> run_id;
  std::string unrecorded;
  store::NewRun row;
  row.task = kCompactorTask;
  row.trigger = store::Trigger::manual;
  row.status = store::RunStatus::pending;
  row.created_at = started;
  if (auto id = store.insert_run(row); !id) {
    unrecorded = id.error().message;
  } else if (auto st = store.mark_running(*id, "", started); !st) {
    unrecorded = st.error().message;
  } else {
    run_id = *id;
    if (hooks.state) hooks.state(*run_id, store::RunStatus::running);
  }
  auto report = compact(store, mode, 512, [&](const CompactStep& step) {
    if (run_id && hooks.step) hooks.step(*run_id, step);
  });
  const TimePoint ended = clock.now();
  CompactOutcome out;
  if (report) {
    out.report = *report;
    out.message = (mode == CompactMode::full ? "Full VACUUM: " : "") + describe(*report);
  }
  if (run_id) {
    store::RunEnd end;
    end.status = report ? store::RunStatus::succeeded : store::RunStatus::failed;
    end.finished_at = ended;
    end.duration_ms = (ended - started).count();
    end.message = report ? out.message : report.error().message;
    Status recorded = store.finish_run(*run_id, end);
    if (recorded && report)
      recorded = record_figures(store,
                                store::MaintenanceFigures{*run_id, kCompactorTask, 0, 0, 0, 0,
                                                          std::max<int64_t>(0, report->bytes_before - report->bytes_after),
                                                          std::nullopt, report->bytes_after},
                                ended);
    if (!recorded) unrecorded = recorded.error().message;
    if (hooks.state) hooks.state(*run_id, end.status);
  }
  // The compaction's own error is the one to report; recording it is best effort.
  if (!report) return tl::unexpected(report.error());
  if (!unrecorded.empty()) out.message += "; not recorded in the history: " + unrecorded;
  else out.run_id = run_id;
  return out;
}

}  // namespace cronkeep::retention
