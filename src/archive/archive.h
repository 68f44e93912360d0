// archive/archive.h: the archive of purged runs ([retention] archive = true).
//
// Owns: the archive's file format (docs/archive-format.md): one file per UTC
// day, {data_dir}/archive/{YYYY-MM-DD}.jsonl.zst, a version header followed
// by zstd frames of JSON lines, one line per archived run; appending a batch
// crash-safely (Writer/Append), reading the files back (list_files, read),
// and removing the files that are older than the archive is kept
// (remove_before). Must not know about SQL, processes or HTTP: it is given
// run rows (store::Run) and asks layout::DataDir for every path. Retention's
// executor archives a batch before it deletes it (retention.h); ops reads it
// back for `cronkeep archive` and GET /api/archive.
//
// Crash safety: an append remembers the file's size, writes its frames, and
// fsyncs the file (and the directory when it created the file) in commit().
// Any failure before that truncates the file back to the size it had (or
// removes the file it created). A kill -9 can still leave a torn last frame:
// readers ignore it, and the next append cuts it off before writing.
//
// A run archived twice (a crash after its archive was synced but before its
// row was deleted, then the next sweep) has two entries; readers show the
// first entry of each run id in a file.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time.h"
#include "layout/layout.h"
#include "store/store.h"

namespace cronkeep::archive {

// The version written at the start of every archive file.
inline constexpr int kFormatVersion = 1;
// An entry keeps the log's first and last kLogHalfBytes when it is larger
// than twice that, with a marker line between them.
inline constexpr int64_t kLogHalfBytes = 1 << 20;
// A frame is ended after the first line that brings it to this many
// uncompressed bytes, so a reader holds at most one frame (plus one line).
inline constexpr int64_t kFrameBytes = 4 << 20;

// The run as the API shows it (GET /api/tasks/{task}/runs/{id}); ops/wire.h's
// to_json(store::Run) is this function, so an archived run and a run read
// from the API have one shape. Thread-safe.
nlohmann::json run_json(const store::Run& run);

// What an entry keeps of a run's log.
struct LogText {
  std::string text;     // the log's bytes (.prev, then .log); above 2 × kLogHalfBytes, its first and last
                        // kLogHalfBytes around the line "[cronkeep archive: N bytes omitted]"
  int64_t bytes = 0;    // the log's size on disk (.prev + .log)
  int64_t omitted = 0;  // bytes left out between the head and the tail
};

// Reads `run`'s log for an entry. nullopt when the run has no log here (no
// log path, an invalid one, or no file: e.g. on another node). Thread-safe.
std::optional<LogText> read_log_text(const layout::DataDir& dir, const store::Run& run);

struct Entry {
  store::Run run;
  std::string reason;  // why it is deleted: keep_runs, keep_for, …, manual (retention::to_string(Reason))
  TimePoint archived_at{};
  std::optional<LogText> log;  // with [retention] archive_logs
};

// One line: {"v":1,"run_id":…,"task":…,"archived_at":…,"reason":…,"run":{…},"log":{…}|null}
// and '\n'. Text that is not valid UTF-8 becomes U+FFFD. Thread-safe.
std::string encode(const Entry& entry);

// ---- writing ------------------------------------------------------------------

class Writer;

// What a committed append wrote.
struct Committed {
  std::string file;  // relative to the data directory: "archive/2026-11-23.jsonl.zst"
  int64_t entries = 0;
  int64_t bytes = 0;  // compressed bytes appended
};

// One batch being appended to one file; holds the Writer's lock until it is
// committed or destroyed. Not thread-safe (one thread drives it).
class Append {
 public:
  Append(Append&&) noexcept;
  Append& operator=(Append&&) = delete;
  // Rolls back what was written unless commit() succeeded: the file is
  // truncated back to its size before begin() (a file begin() created is removed).
  ~Append();

  // Compresses one entry into the file (ending a frame every kFrameBytes).
  // Errors: no_space (ENOSPC), io. After an error, only destruction is left.
  Status add(const Entry& entry);
  // Ends the last frame and fsyncs the file, and its directory when the file
  // is new. Once it returns success the entries survive a crash. Errors:
  // no_space, io (the append is rolled back on destruction).
  Result<Committed> commit();

 private:
  friend class Writer;
  struct State;
  explicit Append(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

// Appends batches to the archive of a data directory. Thread-safe: one
// append at a time (begin() waits for the Append in progress to end).
class Writer {
 public:
  explicit Writer(layout::DataDir dir);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Opens (or creates, with the directory) the file of `now`'s UTC day for
  // appending. A torn frame at its end, left by a crash, is cut off first
  // (the file is read once per process, then its size is remembered).
  // Errors: corruption when the file exists but is not a cronkeep archive
  // (or of a newer format); no_space; io.
  Result<Append> begin(TimePoint now);

 private:
  friend class Append;
  const layout::DataDir dir_;
  std::mutex mu_;              // held by the Append in progress
  std::string checked_path_;   // guarded by mu_: the file known to end after a whole frame…
  int64_t checked_size_ = -1;  // …at this size
};

// ---- reading ------------------------------------------------------------------

struct FileInfo {
  std::string date;        // YYYY-MM-DD (UTC)
  int64_t entries = 0;     // distinct runs
  int64_t duplicates = 0;  // further entries of runs already counted (crash recovery)
  int64_t bytes = 0;       // the file's size (compressed)
  bool torn = false;       // ends with a torn frame (ignored; cut off by the next append)
};

// Every archive file, oldest day first (other files in archive/ are
// ignored). Reads each file whole to count its entries. Errors: io;
// corruption when a file of that name is not a cronkeep archive.
Result<std::vector<FileInfo>> list_files(const layout::DataDir& dir);

struct ReadQuery {
  std::string date;                 // Requires: layout::DataDir::valid_archive_date
  std::optional<std::string> task;  // only this task's runs
  std::optional<int64_t> run_id;    // only this run
  bool include_system = true;       // runs of cronkeep's own tasks too
  int64_t after = 0;                // start at this line of the file (the `next` of the previous page)
  int64_t limit = 100;              // >= 1: at most this many entries…
  int64_t max_bytes = 8 << 20;      // …and stop once this much entry text is taken (at least one entry)
};

struct ReadPage {
  std::vector<std::string> entries;  // each a JSON object (the line without '\n'), in file order
  std::optional<int64_t> next;       // pass as `after` for the next page; none at the end
};

// The entries of one day, the first of each run id only. Errors: not_found
// when there is no file for that day; io; corruption (not an archive).
Result<ReadPage> read(const layout::DataDir& dir, const ReadQuery& query);

// ---- bounding the archive ----------------------------------------------------------

struct Removal {
  int64_t files = 0;
  int64_t bytes = 0;
  int64_t errors = 0;
  std::string first_error;
};

// Removes the archive files whose whole day ended at or before `cutoff`
// (the file of day D goes once D + 1 day <= cutoff), so an entry is kept at
// least as long as the archive is asked to keep it. Thread-safe.
Removal remove_before(const layout::DataDir& dir, TimePoint cutoff);

}  // namespace cronkeep::archive
