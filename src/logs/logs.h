// logs/logs.h: per-run log files, their caps and sidecar indexes, reading
// them back, and disk-pressure checks.
//
// Owns: where a run's log lives under {data_dir}/logs, writing exactly the
// bytes the process printed (stdout and stderr interleaved in arrival order),
// the size cap and its overflow policy, the sidecars (.idx, .tidx, .meta; the
// format is docs/log-format.md), and reading ranges of lines back in time
// logarithmic in the log's size. Must not know about SQL or HTTP.
//
// Where a log lives is layout::DataDir's business (layout/layout.h); this
// part works on the paths it is given.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time.h"
#include "base/unique_fd.h"

namespace cronkeep::events {
class Bus;
}

namespace cronkeep::logs {

// A line longer than this (without a newline) is split: the index counts
// each 64 KiB piece as a line of its own. The bytes are not changed.
inline constexpr size_t kMaxLineBytes = 64 * 1024;

enum class OnFull { drop_old, drop_new, kill_task };
enum class Stream : char { out = 'o', err = 'e', marker = 'm' };

struct WriterOptions {
  uint64_t max_size = 0;          // per run, bytes in the current file; 0 = unbounded
  OnFull on_full = OnFull::drop_old;
  uint64_t min_free_space = 0;    // bytes that must stay free; 0 = no check
  std::string space_dir;          // directory whose file system is checked
  events::Bus* bus = nullptr;     // log lines and conditions are published here when set
  std::string task;               // for events
  int64_t run_id = 0;             // for events
};

// Why a writer asks for the process to be stopped.
enum class Verdict { keep_going, stop_overflow, stop_disk_pressure };

struct WriterStats {
  uint64_t bytes_on_disk = 0;     // current file + .prev
  uint64_t bytes_written = 0;     // everything accepted since the start
  uint64_t bytes_dropped = 0;     // rotated away, refused when full, or lost to disk pressure
  int64_t lines = 0;              // lines so far (a partial last line counts)
  int64_t rotations = 0;
  bool truncated = false;         // drop_new or kill_task cap reached
  bool disk_pressure = false;
  std::string error;              // the first write error, if any
};

// Files made ahead of the logs that will need them. Making a file is mostly
// finding a free inode, which on a busy file system can cost milliseconds
// (ext4 without a journal skips every recently deleted inode); a start that
// makes its log pays that on its path. A spare is an anonymous file
// (O_TMPFILE) made beforehand, off that path, in a directory of the logs'
// file system; naming it (linkat) is all the start then pays. A spare never
// appears in any directory unless a log is made of it, so a kill leaves
// nothing behind (the kernel frees it with the descriptor). Thread-safe.
class SpareFiles {
 public:
  // `dir`: where spares are made (any directory on the logs' file system;
  // it may appear later). At most `cap` are kept.
  SpareFiles(std::string dir, size_t cap);
  // A spare, or an invalid descriptor when none is ready.
  UniqueFd take();
  // Keep at least `n` ready from now on (up to the cap); the target never
  // shrinks, so a burst that came once is ready for when it comes again.
  void want(size_t n);
  // Whether fewer are ready than wanted (false for good once the file
  // system turned out not to support anonymous files).
  bool low() const;
  // Makes one spare. False when it could not (the directory is missing, or
  // anonymous files are unsupported: then low() is false from now on).
  bool make_one();
  size_t ready() const;

 private:
  const std::string dir_;
  const size_t cap_;
  mutable std::mutex mu_;
  std::vector<UniqueFd> ready_;  // guarded by mu_
  size_t target_ = 0;            // guarded by mu_
  bool unsupported_ = false;     // guarded by mu_
};

// Writes one run's log. Not thread-safe: one writer per run, one thread.
// Memory is bounded whatever the output: sidecar records are buffered and
// written in batches, and no allocation happens per line.
class LogWriter {
 public:
  // Creates the log (and its task directory) at `path`; the sidecars follow
  // when their first records are flushed. The .log exists on disk when this
  // returns. A `spare` (SpareFiles::take) becomes the log by being named
  // `path`; when it cannot be (or none is given), the file is made anew.
  // Errors: io.
  static Result<std::unique_ptr<LogWriter>> create(const std::string& path, WriterOptions options,
                                                   UniqueFd spare = {});
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Appends `bytes` that arrived at `now` on `stream`. Applies the cap, the
  // disk-pressure check (every 1 MiB or second), indexes the lines. Returns
  // whether the caller should stop the process (kill_task).
  Verdict append(std::string_view bytes, Stream stream, TimePoint now);

  // Ends the log: indexes a partial last line, flushes the sidecars and
  // marks .meta finalized (an empty log gets no .meta: `check_sidecars`
  // counts an empty log without one as finalized). Errors: io or no_space
  // when the finalized .meta cannot be written; calling again retries
  // writing it (on a full disk, once space returns). Idempotent once it
  // succeeded. Write errors during the run are in stats().error, not here.
  Status finalize(TimePoint now);

  const WriterStats& stats() const { return stats_; }

 private:
  struct State;
  explicit LogWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
  WriterStats stats_;
};

// Marks the log of a run whose writer died (daemon killed) as finalized and
// crashed in its .meta, keeping every byte and sidecar as they are. Called
// by start-up reconciliation. Errors: io.
Status finalize_crashed(const std::string& path);

// What start-up does with the log of a run whose daemon died: undoes a
// rotation cut short before its .meta was written (the .log gone, or made
// anew and still empty: the .prev files are renamed back, matching the
// .meta written before the rotation), marks the log finalized and crashed
// (finalize_crashed), and repairs whatever sidecars the kill left torn
// (repair_sidecars, until check_sidecars finds nothing). Every byte of the
// log is kept. A log that does not exist is left alone. Errors: io.
Status recover_crashed(const std::string& path);

// Bytes in the regular files below `dir` (0 when it does not exist).
int64_t directory_bytes(const std::string& dir);

// Free bytes available to unprivileged users on the file system of `dir`.
Result<uint64_t> free_space(const std::string& dir);

struct DiskSpace {
  uint64_t free = 0;   // bytes available to unprivileged users (what free_space() returns)
  uint64_t total = 0;  // the file system's size in bytes
};
// The file system of `dir`. Errors: io.
Result<DiskSpace> disk_space(const std::string& dir);

struct Line {
  int64_t number = 0;            // 1-based, counting across rotations
  std::string text;              // without its newline
  char stream = 'o';             // 'o', 'e', 'm' (marker), '?' (unknown: index unusable)
  std::optional<TimePoint> time; // when it arrived (second precision), if indexed
  bool continued = false;        // a 64 KiB piece of a longer line: no newline follows it in the file
};

struct ReadRequest {
  int64_t from_line = 1;                 // 1-based
  std::optional<int64_t> lines;          // how many; nullopt = to the end (capped at max_lines)
  std::optional<TimePoint> since;        // instead of from_line: first line arrived at or after
  std::optional<int64_t> tail;           // instead of from_line: the last K lines
  int64_t max_lines = 100'000;           // hard cap on one read
  int64_t max_bytes = 4 << 20;           // a page ends once its text reaches this (a line is at most 64 KiB)
};

struct LogPage {
  std::vector<Line> lines;
  int64_t first_available = 1;   // lines before this were dropped (drop_old)
  int64_t next_line = 1;         // the line after the last returned (for paging and following)
  bool at_end = true;            // nothing more after next_line right now
  bool partial_last_line = false;// the returned last line has no newline (yet)
  bool finalized = false;        // the writer ended the log cleanly
  std::string note;              // e.g. "index unusable, scanned the file"
};

// Reads lines of the log at `path` (the .log path). Works on logs being
// written, rotated logs (.prev first) and crashed logs (partial last line,
// .meta not finalized). Errors: not_found when the log does not exist;
// corruption when the log is shorter than its index says (truncated by
// hand); io otherwise.
Result<LogPage> read_log(const std::string& path, const ReadRequest& request);

// What `cronkeep check` wants to know of a log's sidecars.
enum class SidecarProblem {
  none,
  unreadable_meta,  // .meta exists but does not parse
  truncated,        // the log is shorter than its index says (truncated or replaced by hand)
  bad_index,        // .idx unusable or out of order
  missing_prev,     // .meta says part of the log was rotated to .prev, which is gone
};
struct SidecarCheck {
  bool finalized = false;
  bool index_ok = true;
  SidecarProblem kind = SidecarProblem::none;
  std::string problem;  // in words, for the report
};
SidecarCheck check_sidecars(const std::string& path);

// Fixes what check_sidecars found so that the log reads again, keeping
// every byte of the log: unreadable_meta → a finalized (crashed) .meta;
// truncated, bad_index → the .idx is replaced by one that only marks the
// first line (streams unknown, reads scan the file) and .tidx removed;
// missing_prev → .meta forgets the .prev (the kept part starts where the
// current file starts). Errors: io.
Status repair_sidecars(const std::string& path, SidecarProblem problem);

}  // namespace cronkeep::logs
