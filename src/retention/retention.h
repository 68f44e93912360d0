// retention/retention.h: keeping history bounded.
//
// Owns: deciding which runs are expired (planner.h, pure), deleting them with
// their files crash-safely (Executor), and giving space back (compact). Must
// not know about HTTP. All SQL stays behind store::Store.
//
// Crash safety (docs/retention.md): rows are deleted in short transactions of
// at most batch_size rows, and in the same transaction each deleted run's log
// path is written to a tombstone; after the commit the files (log, sidecars,
// .prev, and a task directory left empty) are removed, then the tombstones
// are cleared. Leftover tombstones are replayed at start-up. A crash at any
// point leaves either the row, or a tombstone for the file: never a row
// without its file because of retention, never a file without row or
// tombstone.
//
// The archive ([retention] archive = true, docs/retention.md "Archive"):
// before each batch is deleted, its runs are appended to the archive and
// the archive is fsynced; only the runs archived are then deleted. A batch
// whose archive cannot be written is not deleted. So for every run deleted
// there is an archive entry, or the run still exists.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "base/clock.h"
#include "base/result.h"
#include "base/time.h"
#include "config/config.h"
#include "layout/layout.h"
#include "retention/planner.h"
#include "store/store.h"

namespace cronkeep::retention {

// The names of the system tasks; ':' keeps configured tasks from taking them.
inline constexpr const char* kRetentionTask = "cronkeep:retention";
inline constexpr const char* kCompactorTask = "cronkeep:compactor";

// The retention policy a configuration asks for.
Policy policy_from(const config::Config& config);

// What [retention] archive, archive_logs and archive_keep_for ask for.
struct ArchivePolicy {
  bool enabled = false;                  // archive each run before it is deleted
  bool logs = false;                     // with its log's text (archive::LogText)
  Millis keep_for{365LL * 86'400'000};   // sweeps remove archive files older than this; > 0
};
ArchivePolicy archive_policy_from(const config::Config& config);

struct PurgeReport {
  int64_t rows = 0;            // runs deleted
  int64_t log_bytes = 0;       // their log_bytes
  int64_t files_deleted = 0;   // files actually removed (log, sidecars, .prev)
  int64_t files_missing = 0;   // log files that were already gone (not an error)
  int64_t file_errors = 0;     // files that could not be removed (tombstone kept)
  int64_t batches = 0;
  std::map<Reason, int64_t> by_reason;
  std::string first_error;     // the first file error, for the message
  int64_t archived = 0;        // entries written to the archive before the deletes
  std::string archive_file;    // the archive file they went to ("archive/2026-11-23.jsonl.zst")
  int64_t archive_files_removed = 0;  // archive files past archive_keep_for (sweeps)
};

// Called after each batch: runs deleted so far, of how many.
using Progress = std::function<void(int64_t done, int64_t total)>;

class Executor {
 public:
  // `max_batch` >= 1 (config [retention] batch_size). `clock` dates the
  // archive's entries and names its files (null: the system clock; it must
  // outlive the executor). Archiving is off until set_archive(). Thread-safe:
  // it holds no state between calls besides its settings, the store
  // serialises the writes and the archive writer its appends; two purges may
  // run at once (a run deleted by one is skipped by the other).
  Executor(store::Store& store, layout::DataDir dir, int64_t max_batch, const Clock* clock = nullptr);

  // Deletes the given runs in batches (in-flight ones are skipped by the
  // store), then their files. The batch size adapts between 16 and
  // max_batch to keep each transaction near 5 ms. With archiving on, each
  // batch's terminal runs are first appended to the archive and synced
  // (one append per batch), and only those are deleted. Each batch, and
  // each run's files, first waits for the pace (set_pace). Errors: the store's
  // (rows already deleted stay deleted and are counted in the report of the
  // next run; their tombstones are replayed); the archive's (no_space, io,
  // corruption), saying that the batch was kept; a full disk gives up the
  // space reserve once (layout.h) before failing.
  Result<PurgeReport> purge(const std::vector<Expired>& expired, const Progress& progress = {});

  // A new batch_size (a configuration reload), for the next purge.
  void set_max_batch(int64_t max_batch);
  int64_t max_batch() const { return max_batch_.load(); }

  // The archive settings for the next purge (start-up, configuration reload).
  void set_archive(const ArchivePolicy& policy);
  ArchivePolicy archive() const;

  // Removes the archive files older than the archive's keep_for at `now`
  // (whether archiving is on or not: what was archived stays bounded).
  archive::Removal prune_archive(TimePoint now);

  // Removes the files of every leftover tombstone and clears those removed.
  Result<PurgeReport> replay_tombstones();

  // How long a purge should wait before its next delete batch, run's files
  // or rmdir (Millis(0): go on); the daemon passes Scheduler::bulk_io_wait,
  // so that a purge's unlinks (each a synchronous discard on a file system
  // mounted with `discard`) stay out of the way of the scheduler's starts.
  // The purge waits at most kMaxPaceHold in a row, then goes on for at least
  // kPaceRespite without asking: a scheduler always busy slows a purge, it
  // never stops it. Rows, tombstones and their order are unchanged (crash
  // safety as above). Empty (the default): no waiting.
  using Pace = std::function<Millis()>;
  static constexpr Millis kMaxPaceHold{250};
  static constexpr Millis kPaceRespite{100};
  void set_pace(Pace pace);
  Pace pace() const;

 private:
  void remove_files(const std::vector<store::Tombstone>& tombstones, PurgeReport& report,
                    std::vector<int64_t>& cleared);
  // Waits while `pace` asks (kMaxPaceHold at most, then kPaceRespite without asking).
  static void pace_step(const Pace& pace, std::chrono::steady_clock::time_point& respite_until);
  // Appends the terminal runs among `batch` to the archive and syncs it;
  // returns their ids (the ones that may now be deleted).
  Result<std::vector<int64_t>> archive_batch(std::span<const Expired> batch, bool logs, PurgeReport& report);

  store::Store& store_;
  const layout::DataDir dir_;
  std::atomic<int64_t> max_batch_;
  const Clock& clock_;
  archive::Writer writer_;
  mutable std::mutex archive_mu_;
  ArchivePolicy archive_;  // guarded by archive_mu_
  Pace pace_;              // guarded by archive_mu_
};

// One sweep: plans with `policy` at `now` in the store (the same plan as
// plan_purge() on every run; Store::expiry_marks, Store::plan_expired),
// purges it a page at a time (pages of max(4096, 4 x max_batch) runs: the
// sweep's memory does not grow with the history), then removes the archive
// files past the archive's keep_for. When age_rules_held_back() objects to
// the plan (a clock fault is likely), only the count and size rules are
// applied, no archive file is removed (a wrong clock must not empty the
// archive either), and the sweep returns conflict with a message that starts
// "Retention stopped: ", says why and what the count and size rules purged.
// Other errors: the store's and the archive's (Executor::purge).
Result<PurgeReport> sweep(store::Store& store, Executor& executor, const Policy& policy, TimePoint now);

// "Purged 1532 run(s) and 4.1 MB of logs (keep_for: 1200, keep_runs: 300, max_age: 32; cutoff …)".
std::string describe(const PurgeReport& report, const Policy& policy, TimePoint now);
// "; archived 12 run(s) to archive/2026-11-23.jsonl.zst; removed 1 archive
// file(s) past archive_keep_for", or "" when nothing was archived or removed.
std::string describe_archive(const PurgeReport& report);

struct CompactReport {
  int64_t pages_freed = 0;
  int64_t slices = 0;
  int64_t bytes_before = 0;      // page_count x page_size before
  int64_t bytes_after = 0;
  int64_t wal_bytes_before = 0;
  store::DbStats after;
};

enum class CompactMode { incremental, full, checkpoint_only };

// Where a compaction is, for a live view: reported when it begins (freeing,
// 0 done), after each slice of freed pages, before a full VACUUM
// (rewriting) and before the WAL is truncated (checkpointing).
struct CompactStep {
  enum class Phase { freeing, rewriting, checkpointing };
  Phase phase = Phase::freeing;
  int64_t pages_done = 0;    // free pages given back to the file system so far
  int64_t pages_total = 0;   // free pages when the compaction began
};
const char* to_string(CompactStep::Phase phase);  // "freeing", "rewriting", "checkpointing"
// Called on the compacting thread; must not block.
using CompactObserver = std::function<void(const CompactStep&)>;

// Frees pages in slices of `slice_pages` (each its own short transaction),
// truncates the WAL, refreshes statistics; or VACUUMs (full). `observe`, if
// set, hears each step.
Result<CompactReport> compact(store::Store& store, CompactMode mode, int64_t slice_pages = 512,
                              const CompactObserver& observe = {});

std::string describe(const CompactReport& report);

// Records the figures of a system run (store::Store::record_maintenance)
// with `ended` as their time and, unless figures.db_bytes is set, the
// database's size now (left unset should reading it fail: the figures are
// recorded anyway). Errors: the store's.
Status record_figures(store::Store& store, store::MaintenanceFigures figures, TimePoint ended);

// ---- manual actions (CLI and HTTP) ----------------------------------------

struct PurgeRequest {
  Millis older_than{0};                   // terminal runs that finished before now - older_than
  std::optional<std::string> task;
  std::optional<store::RunStatus> status; // Requires: terminal
  std::optional<int64_t> limit;           // >= 1
  bool dry_run = false;
  bool all = false;                       // also each task's newest success and newest failure
  std::string older_than_text;            // as the user wrote it ("30d")
  std::string origin;                     // "older_than 30d, task backup": for the message
};

struct TaskVolume {
  std::string task;
  int64_t runs = 0;
  int64_t log_bytes = 0;
};

struct PurgeOutcome {
  bool dry_run = false;
  std::vector<TaskVolume> per_task;  // what was (or, for a dry run, would be) deleted, by task
  PurgeReport report;                // empty for a dry run
  TimePoint cutoff{};
  std::string message;
  std::optional<int64_t> run_id;     // the cronkeep:retention run that records it (not for dry runs)
};

// Parses and checks a purge's parameters as users write them. Errors:
// invalid_argument naming the parameter (older_than, status, limit).
Result<PurgeRequest> make_purge_request(std::string_view older_than, std::optional<std::string> task,
                                        std::optional<std::string_view> status, std::optional<int64_t> limit,
                                        bool dry_run, bool all = false);

// Runs a manual purge through `executor` and records it as a run of
// cronkeep:retention (trigger manual); a dry run deletes and records nothing.
// Unless request.all, each task's newest succeeded run and newest failure
// are kept, so "last success" and "last failure" survive any purge.
Result<PurgeOutcome> manual_purge(store::Store& store, Executor& executor, const PurgeRequest& request,
                                  const Clock& clock, const Progress& progress = {});

struct CompactOutcome {
  CompactReport report;
  std::string message;
  std::optional<int64_t> run_id;
};

// What a manual compaction tells a live view (ops publishes it on the event
// bus): its run's state changes and the compaction's steps. Called on the
// compacting thread; must not block.
struct CompactHooks {
  std::function<void(int64_t run_id, store::RunStatus status)> state;  // running, then how it ended
  std::function<void(int64_t run_id, const CompactStep& step)> step;
};

// Compacts now as a run of cronkeep:compactor (trigger manual): the run is
// recorded running before the work begins (so the history and `hooks` show
// it while it lasts), and ended with the result. Should recording fail, the
// compaction runs anyway and the message says it was not recorded.
Result<CompactOutcome> manual_compact(store::Store& store, CompactMode mode, const Clock& clock,
                                      const CompactHooks& hooks = {});

}  // namespace cronkeep::retention
