#include "logs/logs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include "config/config.h"

namespace cronkeep::logs {

Result<std::string> relative_log_path(std::string_view task, TimePoint started, int64_t run_id) {
  if (!config::valid_task_name(task))
    return fail(ErrorCode::invalid_argument, "invalid task name \"" + std::string(task) + "\"");
  return "logs/" + std::string(task) + "/" + format_file_stamp(started) + "_" + std::to_string(run_id) + ".log";
}

Result<LogWriter> LogWriter::create(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return fail(ErrorCode::io, "cannot create log directory for " + path + ": " + ec.message());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return fail(ErrorCode::io, "cannot create log " + path + ": " + std::strerror(errno));
  LogWriter w;
  w.fd_.reset(fd);
  return w;
}

Status LogWriter::append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (!fd_.valid()) {
      dropped_ += bytes.size();
      return fail(ErrorCode::io, "log is closed");
    }
    const ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      dropped_ += bytes.size();
      return fail(ErrorCode::io, std::string("writing log: ") + std::strerror(err));
    }
    written_ += static_cast<uint64_t>(n);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

void LogWriter::close() { fd_.reset(); }

Result<LogPage> read_lines(const std::string& path, const LineRange& range) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return fail(ErrorCode::not_found, "log " + path + " does not exist");
    return fail(ErrorCode::io, "cannot open log " + path + ": " + std::strerror(errno));
  }
  LogPage page;
  std::string line;
  int64_t number = 0;
  // A negative start keeps a window of the last |from_line| lines.
  std::deque<std::string> tail;
  const bool from_end = range.from_line < 0;
  const int64_t window = from_end ? -range.from_line : 0;
  while (std::getline(in, line)) {
    ++number;
    page.partial_last_line = in.eof();
    if (from_end) {
      tail.push_back(std::move(line));
      if (static_cast<int64_t>(tail.size()) > window) tail.pop_front();
    } else if (number >= range.from_line && (!range.lines || number < range.from_line + *range.lines)) {
      page.lines.push_back(std::move(line));
    }
  }
  page.total_lines = number;
  if (from_end) {
    page.first_line = number - static_cast<int64_t>(tail.size()) + 1;
    for (auto& l : tail) {
      if (range.lines && static_cast<int64_t>(page.lines.size()) >= *range.lines) break;
      page.lines.push_back(std::move(l));
    }
  } else {
    page.first_line = std::max<int64_t>(range.from_line, 1);
  }
  return page;
}

}  // namespace cronkeep::logs
