// logs/logs.h: per-run log files and reading them back.
//
// Owns: where a run's log lives under {data_dir}/logs, writing what the
// process printed (exactly the bytes, stdout and stderr interleaved in arrival
// order), and reading ranges of it back. Must not know about SQL or HTTP.
//
// Layout (DESIGN.md "Data directory"): logs/{task}/{YYYYMMDD}_{HHMMSS}_{run_id}.log
// with the UTC time the run started. Task names are validated at config
// load; this part refuses any name that could escape the logs directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time.h"
#include "base/unique_fd.h"

namespace cronkeep::logs {

// "logs/backup/20261123_040000_42.log", relative to the data directory.
// Errors: invalid_argument when `task` is not a valid task name.
Result<std::string> relative_log_path(std::string_view task, TimePoint started, int64_t run_id);

// Appends a run's output to its log file. Not thread-safe: one writer per run.
class LogWriter {
 public:
  // Creates the file (and its task directory) at `path`, mode 0640.
  // The file exists on disk when this returns. Errors: io.
  static Result<LogWriter> create(const std::string& path);

  LogWriter(LogWriter&&) = default;
  LogWriter& operator=(LogWriter&&) = default;

  // Appends `bytes` as they are. Errors: io (e.g. ENOSPC); the bytes that
  // could not be written are counted in dropped_bytes().
  Status append(std::string_view bytes);
  // Closes the file. Idempotent.
  void close();

  uint64_t bytes_written() const { return written_; }
  uint64_t dropped_bytes() const { return dropped_; }

 private:
  LogWriter() = default;
  UniqueFd fd_;
  uint64_t written_ = 0;
  uint64_t dropped_ = 0;
};

struct LineRange {
  int64_t from_line = 1;                  // 1-based; negative counts from the end (-10 = last ten)
  std::optional<int64_t> lines;           // how many; nullopt = to the end
};

struct LogPage {
  int64_t first_line = 1;                 // number of the first line returned
  std::vector<std::string> lines;         // without their trailing newline
  bool partial_last_line = false;         // the file ends without a newline
  int64_t total_lines = 0;                // lines in the file (a partial last line counts)
};

// Reads a range of lines of the log at `path`. Errors: not_found when the
// file does not exist; io otherwise.
Result<LogPage> read_lines(const std::string& path, const LineRange& range);

}  // namespace cronkeep::logs
