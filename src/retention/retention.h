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
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

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

struct PurgeReport {
  int64_t rows = 0;            // runs deleted
  int64_t log_bytes = 0;       // their log_bytes
  int64_t files_deleted = 0;   // files actually removed (log, sidecars, .prev)
  int64_t files_missing = 0;   // log files that were already gone (not an error)
  int64_t file_errors = 0;     // files that could not be removed (tombstone kept)
  int64_t batches = 0;
  std::map<Reason, int64_t> by_reason;
  std::string first_error;     // the first file error, for the message
};

// Called after each batch: runs deleted so far, of how many.
using Progress = std::function<void(int64_t done, int64_t total)>;

class Executor {
 public:
  // `max_batch` >= 1 (config [retention] batch_size). Thread-safe: it
  // holds no state between calls, and the store serialises the writes; two
  // purges may run at once (a run deleted by one is skipped by the other).
  Executor(store::Store& store, layout::DataDir dir, int64_t max_batch);

  // Deletes the given runs in batches (in-flight ones are skipped by the
  // store), then their files. The batch size adapts between 16 and
  // max_batch to keep each transaction near 5 ms. Errors: the store's (rows
  // already deleted stay deleted and are counted in the report of the
  // next run; their tombstones are replayed).
  Result<PurgeReport> purge(const std::vector<Expired>& expired, const Progress& progress = {});

  // A new batch_size (a configuration reload), for the next purge.
  void set_max_batch(int64_t max_batch);

  // Removes the files of every leftover tombstone and clears those removed.
  Result<PurgeReport> replay_tombstones();

 private:
  void remove_files(const std::vector<store::Tombstone>& tombstones, PurgeReport& report,
                    std::vector<int64_t>& cleared);

  store::Store& store_;
  const layout::DataDir dir_;
  std::atomic<int64_t> max_batch_;
};

// One sweep: lists the runs, plans with `policy` at `now`, purges. When
// age_rules_held_back() objects to the plan (a clock fault is likely), only
// the count and size rules are applied, and the sweep returns conflict with
// a message that starts "Retention stopped: ", says why and what the count
// and size rules purged. Other errors: the store's.
Result<PurgeReport> sweep(store::Store& store, Executor& executor, const Policy& policy, TimePoint now);

// "Purged 1532 run(s) and 4.1 MB of logs (keep_for: 1200, keep_runs: 300, max_age: 32; cutoff …)".
std::string describe(const PurgeReport& report, const Policy& policy, TimePoint now);

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
