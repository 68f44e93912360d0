#include "layout/layout.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>

#include "base/unique_fd.h"

namespace cronkeep::layout {
namespace {

bool name_byte(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool alnum_byte(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

bool valid_task_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxTaskNameLength || !alnum_byte(name[0])) return false;
  for (char c : name)
    if (!name_byte(c)) return false;
  return name.find("..") == std::string_view::npos;
}

bool is_system_task_name(std::string_view name) {
  constexpr std::string_view kPrefix = "cronkeep:";
  if (name.size() <= kPrefix.size() || name.substr(0, kPrefix.size()) != kPrefix) return false;
  for (char c : name.substr(kPrefix.size()))
    if (c < 'a' || c > 'z') return false;
  return true;
}

DataDir::DataDir(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

Result<std::string> DataDir::relative_log_path(std::string_view task, TimePoint started, int64_t run_id) {
  if (!valid_task_name(task))
    return fail(ErrorCode::invalid_argument, "invalid task name \"" + std::string(task) + "\": " + kTaskNameRule);
  return "logs/" + std::string(task) + "/" + format_file_stamp(started) + "_" + std::to_string(run_id) + ".log";
}

bool DataDir::valid_log_path(std::string_view p) {
  constexpr std::string_view kLogs = "logs/";
  if (p.substr(0, kLogs.size()) != kLogs) return false;
  p.remove_prefix(kLogs.size());
  const size_t slash = p.find('/');
  if (slash == std::string_view::npos || !valid_task_name(p.substr(0, slash))) return false;
  const std::string_view file = p.substr(slash + 1);
  if (file.size() <= 4 || file.find('/') != std::string_view::npos || file[0] == '.') return false;
  if (file.substr(file.size() - 4) != ".log") return false;
  for (char c : file)
    if (!name_byte(c)) return false;
  return true;
}

std::string DataDir::archive_date(TimePoint t) {
  // format_rfc3339 is "YYYY-MM-DDTHH:MM:SSZ" in UTC.
  return format_rfc3339(t).substr(0, 10);
}

bool DataDir::valid_archive_date(std::string_view date) {
  if (date.size() != 10 || date[4] != '-' || date[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (date[i] < '0' || date[i] > '9') return false;
  // A real day: parse_rfc3339 refuses 2026-02-30 and month 13.
  const auto t = parse_rfc3339(date);
  return t && archive_date(*t) == date;
}

std::string DataDir::archive_date_of(std::string_view file_name) {
  const std::string_view suffix = kArchiveSuffix;
  if (file_name.size() != 10 + suffix.size() || file_name.substr(10) != suffix) return "";
  const std::string_view date = file_name.substr(0, 10);
  return valid_archive_date(date) ? std::string(date) : "";
}

int64_t DataDir::run_id_of(std::string_view file_name) {
  if (file_name.size() < 5 || file_name.substr(file_name.size() - 4) != ".log") return 0;
  file_name.remove_suffix(4);
  const size_t underscore = file_name.rfind('_');
  if (underscore == std::string_view::npos) return 0;
  int64_t id = 0;
  const char* first = file_name.data() + underscore + 1;
  const char* last = file_name.data() + file_name.size();
  auto [p, ec] = std::from_chars(first, last, id);
  return ec == std::errc() && p == last && id > 0 ? id : 0;
}

std::vector<bool> remove_run_files(const DataDir& dir, const std::vector<std::string>& paths, Removal& removal,
                                   const std::function<void()>& pace) {
  std::vector<bool> gone(paths.size(), true);
  // One descriptor per task directory: each unlink then resolves a single
  // name, not the whole path (a run has up to seven files).
  std::map<std::string, UniqueFd> dirs;
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& rel = paths[i];
    if (!DataDir::valid_log_path(rel)) continue;  // never build a path from it
    if (pace) pace();
    const size_t slash = rel.rfind('/');
    const std::string task_dir = dir.absolute(rel.substr(0, slash));
    const std::string name = rel.substr(slash + 1);
    auto it = dirs.find(task_dir);
    if (it == dirs.end())
      it = dirs.emplace(task_dir, UniqueFd(::open(task_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC))).first;
    if (!it->second.valid()) {
      if (errno == ENOENT || errno == ENOTDIR) {
        ++removal.files_missing;  // the whole directory is gone: so are its files
      } else {
        gone[i] = false;
        ++removal.file_errors;
        if (removal.first_error.empty()) removal.first_error = task_dir + ": " + std::strerror(errno);
      }
      continue;
    }
    auto unlink = [&](const char* suffix) {
      const std::string file = name + suffix;
      if (::unlinkat(it->second.get(), file.c_str(), 0) == 0) {
        ++removal.files_deleted;
      } else if (errno != ENOENT) {
        gone[i] = false;
        ++removal.file_errors;
        if (removal.first_error.empty()) removal.first_error = task_dir + "/" + file + ": " + std::strerror(errno);
      } else if (*suffix == '\0') {
        ++removal.files_missing;
      }
    };
    for (const char* suffix : {"", ".idx", ".tidx", ".meta"}) unlink(suffix);
    // The rotated part: its sidecars go before .prev itself. Rotation makes
    // .prev before its sidecars, and removal takes .prev last, so whatever
    // a kill interrupts, no .prev.* is ever left without its .prev: a log
    // without .prev (most: never rotated) costs one lookup, not three unlinks.
    if (::faccessat(it->second.get(), (name + ".prev").c_str(), F_OK, 0) == 0) {
      unlink(".prev.idx");
      unlink(".prev.tidx");
      unlink(".prev");
    }
  }
  // A task directory left empty goes too; rmdir refuses a non-empty one
  // without listing it (a new log may just have appeared: that is fine).
  for (auto& [path, fd] : dirs) {
    fd.reset();
    if (pace) pace();
    ::rmdir(path.c_str());
  }
  return gone;
}

Status make_reserve(const DataDir& dir, int64_t bytes) {
  const std::string path = dir.reserve();
  if (::access(path.c_str(), F_OK) == 0) return {};
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail(errno == ENOSPC ? ErrorCode::no_space : ErrorCode::io, tmp + ": " + std::strerror(errno));
  const int err = ::posix_fallocate(fd.get(), 0, bytes);
  if (err != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = err != 0 ? err : errno;
    ::unlink(tmp.c_str());
    return fail(e == ENOSPC ? ErrorCode::no_space : ErrorCode::io, "reserving space in " + path + ": " + std::strerror(e));
  }
  return {};
}

bool release_reserve(const DataDir& dir) { return ::unlink(dir.reserve().c_str()) == 0; }

}  // namespace cronkeep::layout
