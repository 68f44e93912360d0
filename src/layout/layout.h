// layout/layout.h: the data directory's layout and the task-name rule.
//
// Owns: every path under {data_dir} (database, lock, token, logs/{task}/…,
// every sidecar suffix and the rotated .prev files), the one rule a task
// name must follow before it may become part of a path, and the one function
// that removes a run's files. Every other part asks this one for a path;
// nobody else spells "cronkeep.db" or "/logs/". Must not know about SQL,
// processes or HTTP.
//
// Layout (DESIGN.md "Data directory"):
//   {root}/cronkeep.db, cronkeep.db-wal, cronkeep.db-shm   SQLite
//   {root}/cronkeep.lock                                   held by the daemon
//   {root}/token                                           generated bearer token (0600)
//   {root}/logs/{task}/{YYYYMMDD}_{HHMMSS}_{run_id}.log    what a run printed
//   ….log.idx, .tidx, .meta, .prev, .prev.idx, .prev.tidx  its sidecars and rotated part
//   {root}/archive/{YYYY-MM-DD}.jsonl.zst                  purged runs ([retention] archive)
//
// Thread-safety: DataDir is immutable after construction and may be shared;
// the free functions are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time.h"

namespace cronkeep::layout {

// ---- task names ---------------------------------------------------------------

inline constexpr size_t kMaxTaskNameLength = 128;

// True when `name` may name a configured task: [A-Za-z0-9][A-Za-z0-9._-]{0,127}
// with no ".." anywhere. Byte-based (no locale): the name becomes a directory.
bool valid_task_name(std::string_view name);
// The rule above in words, for error messages.
inline constexpr const char* kTaskNameRule =
    "a task name is 1 to 128 of A-Z a-z 0-9 . _ -, starts with a letter or digit and contains no \"..\"";
// True for cronkeep's own tasks: "cronkeep:" followed by [a-z]+ (no path is
// ever built from them: they write no log).
bool is_system_task_name(std::string_view name);

// ---- paths --------------------------------------------------------------------

// The suffixes of every file that belongs to one run's log ("" is the .log
// itself). A rotation renames the log to ".prev" before its sidecars, and
// remove_run_files removes ".prev" after them, so when ".prev" does not
// exist neither does any ".prev.*".
inline constexpr const char* kLogFileSuffixes[] = {"", ".idx", ".tidx", ".meta", ".prev", ".prev.idx", ".prev.tidx"};

class DataDir {
 public:
  // `root` should be absolute (config makes it so); no trailing slash needed.
  explicit DataDir(std::string root);

  const std::string& root() const { return root_; }
  std::string database() const { return root_ + "/cronkeep.db"; }
  std::string wal() const { return root_ + "/cronkeep.db-wal"; }
  std::string lock() const { return root_ + "/cronkeep.lock"; }
  std::string generated_token() const { return root_ + "/token"; }
  // Preallocated space given up when the disk is full, so deletes can run.
  std::string reserve() const { return root_ + "/reserve"; }
  std::string logs() const { return root_ + "/logs"; }
  // {root}/logs/{task}. Requires: valid_task_name(task).
  std::string task_logs(std::string_view task) const { return logs() + "/" + std::string(task); }
  // {root}/{relative}. Requires: valid_log_path(relative).
  std::string absolute(std::string_view relative) const { return root_ + "/" + std::string(relative); }
  // Where purged runs are archived (docs/archive-format.md).
  std::string archive() const { return root_ + "/archive"; }
  // {root}/archive/{date}.jsonl.zst. Requires: valid_archive_date(date).
  std::string archive_file(std::string_view date) const { return archive() + "/" + archive_file_name(date); }

  // "2026-11-23.jsonl.zst". Requires: valid_archive_date(date).
  static std::string archive_file_name(std::string_view date) { return std::string(date) + kArchiveSuffix; }
  // The UTC day of `t`, as archive files are named: "2026-11-23".
  static std::string archive_date(TimePoint t);
  // True when `date` is exactly YYYY-MM-DD and a real day (no "2026-02-30"):
  // the only text an archive path is ever built from.
  static bool valid_archive_date(std::string_view date);
  // The date of an archive file's name ("2026-11-23.jsonl.zst" →
  // "2026-11-23"), or "" when the name is not an archive file's.
  static std::string archive_date_of(std::string_view file_name);
  static constexpr const char* kArchiveSuffix = ".jsonl.zst";

  // "logs/backup/20261123_040000_42.log" (relative to the root; the stamp is
  // `started` in UTC). Errors: invalid_argument when `task` breaks the rule.
  static Result<std::string> relative_log_path(std::string_view task, TimePoint started, int64_t run_id);
  // True when `relative` has exactly the shape relative_log_path makes:
  // logs/{valid task}/{name}.log with no "." or ".." component. Paths read
  // back from the database are checked with this before any file is touched.
  static bool valid_log_path(std::string_view relative);
  // The run id in a log file name ("…_42.log" → 42), or 0.
  static int64_t run_id_of(std::string_view file_name);

 private:
  std::string root_;
};

// What removing run files did.
struct Removal {
  int64_t files_deleted = 0;  // files removed (log, sidecars, .prev)
  int64_t files_missing = 0;  // logs that were already gone (not an error)
  int64_t file_errors = 0;    // files that could not be removed
  std::string first_error;    // the first error, with its path
};

// Removes every file of the given runs' logs (each a relative log path: the
// .log and every suffix in kLogFileSuffixes), then each task directory left
// empty. Returns, per path, whether all of its files are gone now (true also
// when they were gone already, or when the path is not a valid log path:
// nothing may be built from it). Used by retention, delete, check --repair.
// Thread-safe; resolves each name relative to an open directory descriptor.
// `pace`, when set, is called before each run's files and before each
// rmdir: bulk removal (retention) waits there while the scheduler starts
// runs (Executor::set_pace), since an unlink on a file system mounted with
// `discard` issues its discard synchronously and the starts' own file and
// database writes queue behind it (docs/benchmarks.md, "Fires during a
// purge of files").
std::vector<bool> remove_run_files(const DataDir& dir, const std::vector<std::string>& relative_paths,
                                   Removal& removal, const std::function<void()>& pace = {});

// ---- the space reserve ------------------------------------------------------------

// A full file system must not keep cronkeep from deleting (SQLite needs room
// in its WAL to delete). The daemon keeps {root}/reserve allocated
// (kReserveBytes); a delete that fails for lack of space releases it and
// tries again; the reserve is made again once space returns.
inline constexpr int64_t kReserveBytes = 8 << 20;

// Allocates the reserve if it is missing (posix_fallocate). Errors: io,
// no_space (nothing is left behind then).
Status make_reserve(const DataDir& dir, int64_t bytes = kReserveBytes);
// Gives the reserve's space back; returns whether there was one to give.
bool release_reserve(const DataDir& dir);

}  // namespace cronkeep::layout
