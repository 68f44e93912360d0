// The log writer: one write(2) per chunk for the log itself, sidecar records
// buffered and written in batches, the line bookkeeping done with memchr over
// each chunk, so the cost per byte stays close to a plain copy.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <optional>
#include <cstring>
#include <filesystem>

#include "base/fault.h"
#include "base/file.h"
#include "base/units.h"
#include "events/events.h"
#include "logs/format.h"
#include "logs/logs.h"

namespace cronkeep::logs {
namespace {

namespace fs = std::filesystem;

constexpr size_t kFlushRecords = 128;
constexpr uint64_t kSpaceCheckBytes = 1 << 20;
constexpr Millis kSpaceCheckEvery{1000};

Status write_all(int fd, const char* data, size_t size) {
  if (fault::disk_full()) return fail(ErrorCode::io, std::strerror(ENOSPC));
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(ErrorCode::io, std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

Result<UniqueFd> open_append(const std::string& path, bool truncate) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
  if (fd < 0) return fail(ErrorCode::io, "cannot create " + path + ": " + std::strerror(errno));
  return UniqueFd(fd);
}

// Gives the anonymous file `fd` the name `path` and makes it append-only,
// as open_append's files are. False when it cannot (the name is taken, no
// /proc): the caller makes the file anew.
bool name_spare(const UniqueFd& fd, const std::string& path) {
  const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
  if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0) return false;
  if (::fcntl(fd.get(), F_SETFL, O_APPEND) != 0) {
    ::unlink(path.c_str());
    return false;
  }
  return true;
}

}  // namespace

SpareFiles::SpareFiles(std::string dir, size_t cap) : dir_(std::move(dir)), cap_(cap) {}

UniqueFd SpareFiles::take() {
  std::lock_guard lock(mu_);
  if (ready_.empty()) return UniqueFd();
  UniqueFd fd = std::move(ready_.back());
  ready_.pop_back();
  return fd;
}

void SpareFiles::want(size_t n) {
  std::lock_guard lock(mu_);
  target_ = std::max(target_, std::min(n, cap_));
}

bool SpareFiles::low() const {
  std::lock_guard lock(mu_);
  return !unsupported_ && ready_.size() < target_;
}

size_t SpareFiles::ready() const {
  std::lock_guard lock(mu_);
  return ready_.size();
}

bool SpareFiles::make_one() {
  const int fd = ::open(dir_.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
  if (fd < 0) {
    const int err = errno;
    // No such directory (yet, or any more): try again later. Anything else
    // (EOPNOTSUPP, EISDIR on kernels without O_TMPFILE, EINVAL): never.
    if (err != ENOENT && err != EMFILE && err != ENFILE && err != ENOSPC && err != EINTR) {
      std::lock_guard lock(mu_);
      unsupported_ = true;
    }
    return false;
  }
  std::lock_guard lock(mu_);
  ready_.emplace_back(fd);
  return true;
}

std::string format::render(const Meta& m) {
  return std::string(kMetaHeader) + "\nfirst_line=" + std::to_string(m.first_line) +
         "\nprev_first_line=" + std::to_string(m.prev_first_line) + "\nrotations=" + std::to_string(m.rotations) +
         "\nbytes_dropped=" + std::to_string(m.bytes_dropped) + "\nfinalized=" + (m.finalized ? "1" : "0") +
         (m.crashed ? "\ncrashed=1" : "") + "\n";
}

bool format::parse(const std::string& text, Meta& m) {
  if (text.rfind(kMetaHeader, 0) != 0) return false;
  size_t pos = text.find('\n');
  while (pos != std::string::npos && pos + 1 < text.size()) {
    const size_t end = text.find('\n', pos + 1);
    const std::string line = text.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
    pos = end;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) return false;
    const std::string key = line.substr(0, eq);
    char* rest = nullptr;
    const long long v = std::strtoll(line.c_str() + eq + 1, &rest, 10);
    if (rest == line.c_str() + eq + 1) return false;
    if (key == "first_line") m.first_line = v;
    else if (key == "prev_first_line") m.prev_first_line = v;
    else if (key == "rotations") m.rotations = v;
    else if (key == "bytes_dropped") m.bytes_dropped = static_cast<uint64_t>(v);
    else if (key == "finalized") m.finalized = v == 1;
    else if (key == "crashed") m.crashed = v == 1;
  }
  return m.first_line >= 1;
}

Status finalize_crashed(const std::string& path);

namespace {

Result<format::Meta> meta_of(const std::string& path) {
  format::Meta m;
  if (auto text = read_file(path + ".meta"); text && !format::parse(*text, m)) m = format::Meta{};
  return m;
}

Status write_meta_file(const std::string& path, const format::Meta& m) {
  const std::string tmp = path + ".meta.tmp";
  auto fd = open_append(tmp, true);
  if (!fd) return tl::unexpected(fd.error());
  const std::string text = format::render(m);
  if (auto st = write_all(fd->get(), text.data(), text.size()); !st) return st;
  fd->reset();
  if (::rename(tmp.c_str(), (path + ".meta").c_str()) != 0)
    return fail(ErrorCode::io, "cannot write " + path + ".meta: " + std::strerror(errno));
  return {};
}

}  // namespace

Status repair_sidecars(const std::string& path, SidecarProblem problem) {
  switch (problem) {
    case SidecarProblem::none: return {};
    case SidecarProblem::unreadable_meta: return finalize_crashed(path);
    case SidecarProblem::missing_prev: {
      auto m = meta_of(path);
      if (!m) return tl::unexpected(m.error());
      m->prev_first_line = 0;
      ::unlink((path + ".prev.idx").c_str());
      ::unlink((path + ".prev.tidx").c_str());
      return write_meta_file(path, *m);
    }
    case SidecarProblem::truncated:
    case SidecarProblem::bad_index: {
      auto m = meta_of(path);
      if (!m) return tl::unexpected(m.error());
      format::IdxRecord first{};
      first.line = static_cast<uint64_t>(m->first_line);
      first.offset = 0;
      first.stream = static_cast<uint8_t>('?');
      const std::string tmp = path + ".idx.tmp";
      auto fd = open_append(tmp, true);
      if (!fd) return tl::unexpected(fd.error());
      if (auto st = write_all(fd->get(), format::kIdxMagic, format::kHeaderBytes); !st) return st;
      if (auto st = write_all(fd->get(), reinterpret_cast<const char*>(&first), sizeof first); !st) return st;
      fd->reset();
      if (::rename(tmp.c_str(), (path + ".idx").c_str()) != 0)
        return fail(ErrorCode::io, "cannot write " + path + ".idx: " + std::strerror(errno));
      ::unlink((path + ".tidx").c_str());
      return {};
    }
  }
  return {};
}

Status finalize_crashed(const std::string& path) {
  auto m = meta_of(path);
  if (!m) return tl::unexpected(m.error());
  m->finalized = true;
  m->crashed = true;
  return write_meta_file(path, *m);
}

namespace {

// The first line of the segment whose .idx is `idx_path`, when the .idx
// starts with a record for offset 0 (the writer's first record of a file).
std::optional<int64_t> first_indexed_line(const std::string& idx_path) {
  UniqueFd fd(::open(idx_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char head[format::kHeaderBytes + sizeof(format::IdxRecord)];
  if (::pread(fd.get(), head, sizeof head, 0) != static_cast<ssize_t>(sizeof head)) return std::nullopt;
  if (std::memcmp(head, format::kIdxMagic, format::kHeaderBytes) != 0) return std::nullopt;
  format::IdxRecord first;
  std::memcpy(&first, head + format::kHeaderBytes, sizeof first);
  if (first.offset != 0) return std::nullopt;
  return static_cast<int64_t>(first.line);
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A rotation renames the log, then its .idx, then its .tidx to .prev names,
// makes the new (empty) log, and only then writes the .meta that counts the
// rotation. Cut short anywhere before that .meta, it is undone: the .prev
// goes back to being the log, and each .prev sidecar goes back only if the
// log's own did not stay (a sidecar not yet renamed is the log's; the .prev
// one beside it belongs to the older part the rotation was dropping).
Status undo_rotation(const std::string& path) {
  if (::rename((path + ".prev").c_str(), path.c_str()) != 0)
    return fail(ErrorCode::io, "undoing the rotation of " + path + ": " + std::strerror(errno));
  for (const char* side : {".idx", ".tidx"}) {
    const std::string prev = path + ".prev" + side;
    if (exists(path + side)) ::unlink(prev.c_str());
    else if (::rename(prev.c_str(), (path + side).c_str()) != 0 && errno != ENOENT)
      return fail(ErrorCode::io, "undoing the rotation of " + path + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace

Status recover_crashed(const std::string& path) {
  // Half-made sidecars of the killed writer (they are created under .tmp names).
  for (const char* tmp : {".idx.tmp", ".tidx.tmp", ".meta.tmp", ".prev.idx.tmp", ".prev.tidx.tmp"})
    ::unlink((path + tmp).c_str());
  if (exists(path + ".prev")) {
    // A rotation cut short between making the new log and writing its .meta:
    // the new log is still empty and the .meta (or its absence: first_line 1)
    // still names the .prev's first line as the log's.
    struct stat st{};
    const auto prev_first = first_indexed_line(path + ".prev.idx");
    auto m = meta_of(path);
    if (!m) return tl::unexpected(m.error());
    if (::stat(path.c_str(), &st) == 0 && st.st_size == 0 && prev_first && *prev_first == m->first_line)
      ::unlink(path.c_str());
    if (!exists(path))
      if (auto undone = undo_rotation(path); !undone) return undone;
  } else if (!exists(path)) {
    return {};  // no log at all: nothing to recover
  }
  if (auto st = finalize_crashed(path); !st) return st;
  // Each repair mends one kind of problem; a kill may have left several.
  for (int kinds = 0; kinds < 4; ++kinds) {
    const SidecarCheck c = check_sidecars(path);
    if (c.index_ok) return {};
    if (auto st = repair_sidecars(path, c.kind); !st) return st;
  }
  return {};
}

int64_t directory_bytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) total += static_cast<int64_t>(it->file_size(size_ec));
  }
  return total;
}

Result<uint64_t> free_space(const std::string& dir) {
  auto space = disk_space(dir);
  if (!space) return tl::unexpected(space.error());
  return space->free;
}

Result<DiskSpace> disk_space(const std::string& dir) {
  struct statvfs st{};
  if (::statvfs(dir.c_str(), &st) != 0) return fail(ErrorCode::io, "statvfs " + dir + ": " + std::strerror(errno));
  return DiskSpace{static_cast<uint64_t>(st.f_bavail) * st.f_frsize, static_cast<uint64_t>(st.f_blocks) * st.f_frsize};
}

struct LogWriter::State {
  std::string path;
  WriterOptions options;
  WriterStats* stats = nullptr;
  UniqueFd log, idx, tidx;
  format::Meta meta;
  uint64_t file_bytes = 0;          // bytes in the current file
  uint64_t prev_bytes = 0;          // bytes in .prev
  int64_t line = 1;                 // global number of the current (or next) line
  bool at_line_start = true;
  size_t line_len = 0;              // bytes of the current line so far
  char prev_stream = 0;             // stream of the previous line in this file
  uint64_t lines_since_checkpoint = 0;
  uint64_t offset_at_checkpoint = 0;
  int64_t tidx_second = INT64_MIN;
  std::optional<TimePoint> pending_time;  // a new second began: record the next line start
  std::vector<format::IdxRecord> idx_buf;
  std::vector<format::TidxRecord> tidx_buf;
  TimePoint last_flush{};
  bool flush_now = false;  // a record live readers need was buffered
  bool meta_final = false; // the finalized .meta is on disk
  uint64_t written_at_space_check = 0;
  TimePoint last_space_check{};
  bool refusing = false;            // drop_new full or disk pressure: bytes are counted, not written
  bool finalized = false;
  bool meta_written = false;
  char line_stream = 'o';
  std::string line_text;            // the current line, kept only while someone subscribes

  std::string side(const char* suffix) const { return path + suffix; }

  void note_error(const std::string& e) {
    if (stats->error.empty()) stats->error = e;
  }

  // Opens a new current file. The sidecars are created on first use, so a
  // run that prints nothing costs one file, not three.
  Status open_current(UniqueFd* spare = nullptr) {
    if (spare && spare->valid() && name_spare(*spare, path)) {
      log = std::move(*spare);
    } else {
      auto l = open_append(path, true);
      if (!l) return tl::unexpected(l.error());
      log = std::move(*l);
    }
    idx.reset();
    tidx.reset();
    file_bytes = 0;
    prev_stream = 0;
    lines_since_checkpoint = 0;
    offset_at_checkpoint = 0;
    tidx_second = INT64_MIN;
    return {};
  }

  // A sidecar appears with its header already in it (written to a temporary
  // name, then renamed): a kill never leaves an empty or headerless one.
  Status open_sidecar(UniqueFd& fd, const char* suffix, const char* magic) {
    if (fd.valid()) return {};
    const std::string target = side(suffix);
    const std::string tmp = target + ".tmp";
    auto f = open_append(tmp, true);
    if (!f) return tl::unexpected(f.error());
    if (auto st = write_all(f->get(), magic, format::kHeaderBytes); !st) {
      ::unlink(tmp.c_str());
      return st;
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return fail(ErrorCode::io, "cannot create " + target + ": " + std::strerror(err));
    }
    fd = std::move(*f);
    return {};
  }

  // The first .meta of a log never rotated is written in place: a torn one
  // reads as "not finalized" and as first_line 1, which is what it is. Any
  // other replaces the one before atomically.
  Status write_meta() {
    const std::string text = format::render(meta);
    const std::string target = side(".meta");
    const bool in_place = !meta_written && meta.rotations == 0;
    const std::string tmp = in_place ? target : side(".meta.tmp");
    auto fd = open_append(tmp, true);
    if (!fd) return tl::unexpected(fd.error());
    if (auto st = write_all(fd->get(), text.data(), text.size()); !st) {
      ::unlink(tmp.c_str());  // no torn .meta: a missing one reads as "not finalized"
      return fail(ErrorCode::io, "writing " + target + ": " + st.error().message);
    }
    fd->reset();
    if (!in_place && ::rename(tmp.c_str(), target.c_str()) != 0)
      return fail(ErrorCode::io, "cannot write " + target + ": " + std::strerror(errno));
    meta_written = true;
    return {};
  }

  void flush_sidecars(TimePoint now) {
    if (!idx_buf.empty()) {
      if (auto st = open_sidecar(idx, ".idx", format::kIdxMagic); !st) note_error(st.error().message);
      if (auto st = write_all(idx.get(), reinterpret_cast<const char*>(idx_buf.data()),
                              idx_buf.size() * sizeof(format::IdxRecord));
          !st)
        note_error("writing " + side(".idx") + ": " + st.error().message);
      idx_buf.clear();
    }
    if (!tidx_buf.empty()) {
      if (auto st = open_sidecar(tidx, ".tidx", format::kTidxMagic); !st) note_error(st.error().message);
      if (auto st = write_all(tidx.get(), reinterpret_cast<const char*>(tidx_buf.data()),
                              tidx_buf.size() * sizeof(format::TidxRecord));
          !st)
        note_error("writing " + side(".tidx") + ": " + st.error().message);
      tidx_buf.clear();
    }
    last_flush = now;
  }

  // A line begins at `offset` of the current file.
  void begin_line(uint64_t offset, char stream) {
    at_line_start = false;
    line_len = 0;
    line_stream = stream;
    if (stream != prev_stream || lines_since_checkpoint >= format::kCheckpointLines ||
        offset - offset_at_checkpoint >= format::kCheckpointBytes) {
      format::IdxRecord r{};
      r.line = static_cast<uint64_t>(line);
      r.offset = offset;
      r.stream = static_cast<uint8_t>(stream);
      idx_buf.push_back(r);
      lines_since_checkpoint = 0;
      offset_at_checkpoint = offset;
      // A live reader labels the lines after the last record on disk with
      // its stream: a switch must reach the disk now, not with the batch.
      if (stream != prev_stream) flush_now = true;
    }
    prev_stream = stream;
    ++lines_since_checkpoint;
    if (pending_time) {
      tidx_buf.push_back(format::TidxRecord{to_unix_ms(*pending_time), static_cast<uint64_t>(line), offset});
      pending_time.reset();
      flush_now = true;  // at most once a second: live readers see the right time
    }
  }

  void end_line(TimePoint now) {
    if (options.bus && options.bus->has_subscribers()) {
      events::Event e;
      e.kind = events::Kind::log_line;
      e.task = options.task;
      e.run_id = options.run_id;
      e.line = line;
      e.time_ms = to_unix_ms(now);
      e.stream = line_stream;
      e.text = line_text;
      options.bus->publish(std::move(e));
    }
    line_text.clear();
    ++line;
    ++stats->lines;
    at_line_start = true;
  }

  // The fast path of write_indexed: from `p` (a line start at file offset
  // `offset`, same stream as the line before, no time record pending, no
  // viewer), the complete lines that begin before the next index checkpoint
  // is due (kCheckpointLines lines or kCheckpointBytes bytes) are counted
  // in 64-byte blocks. Returns where the first line it did not count begins
  // (p when it counted none): that line goes through begin_line as usual.
  const char* count_lines(const char* p, const char* end, uint64_t offset) {
    if (lines_since_checkpoint >= format::kCheckpointLines) return p;
    const uint64_t allowed = format::kCheckpointLines - lines_since_checkpoint;
    const uint64_t byte_room =
        offset_at_checkpoint + format::kCheckpointBytes > offset ? offset_at_checkpoint + format::kCheckpointBytes - offset : 0;
    // Below kMaxLineBytes, no line counted here can need splitting.
    const size_t limit = static_cast<size_t>(
        std::min<uint64_t>({static_cast<uint64_t>(end - p), byte_room, static_cast<uint64_t>(kMaxLineBytes - 1)}));
    constexpr size_t kBlock = 64;
    uint64_t n = 0;
    const char* q = p;
    while (static_cast<size_t>(q - p) + kBlock <= limit) {
      unsigned c = 0;
      for (size_t i = 0; i < kBlock; ++i) c += q[i] == '\n';
      if (n + c > allowed) break;
      n += c;
      q += kBlock;
    }
    if (n == 0) return p;
    const char* last = static_cast<const char*>(::memrchr(p, '\n', static_cast<size_t>(q - p)));
    line += static_cast<int64_t>(n);
    stats->lines += static_cast<int64_t>(n);
    lines_since_checkpoint += n;
    return last + 1;
  }

  // Writes bytes that fit (no cap decisions here) and indexes them.
  void write_indexed(std::string_view bytes, char stream, TimePoint now) {
    if (bytes.empty()) return;
    if (auto st = write_all(log.get(), bytes.data(), bytes.size()); !st) {
      stats->bytes_dropped += bytes.size();
      note_error("writing " + path + ": " + st.error().message);
      on_write_failure(now);
      return;
    }
    const int64_t second = to_unix_ms(now) / 1000;
    if (second != tidx_second) {
      tidx_second = second;
      pending_time = now;
    }
    const bool keep_text = options.bus && options.bus->has_subscribers();
    const char* p = bytes.data();
    const char* end = p + bytes.size();
    while (p < end) {
      if (!keep_text && at_line_start && stream == prev_stream && !pending_time) {
        // Nobody follows the run: runs of short lines between two index
        // checkpoints are counted in bulk, not one line at a time.
        const char* q = count_lines(p, end, file_bytes + static_cast<uint64_t>(p - bytes.data()));
        if (q != p) {
          p = q;
          continue;
        }
      }
      if (at_line_start) begin_line(file_bytes + static_cast<uint64_t>(p - bytes.data()), stream);
      const size_t room = kMaxLineBytes - line_len;
      const size_t avail = static_cast<size_t>(end - p);
      const size_t scan = std::min(room, avail);
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', scan));
      if (nl) {
        if (keep_text) line_text.append(p, static_cast<size_t>(nl - p));
        p = nl + 1;
        end_line(now);
      } else {
        if (keep_text) line_text.append(p, scan);
        line_len += scan;
        p += scan;
        if (line_len == kMaxLineBytes) end_line(now);  // split a very long line
      }
    }
    file_bytes += bytes.size();
    stats->bytes_written += bytes.size();
    stats->bytes_on_disk = file_bytes + prev_bytes;
    if (flush_now || idx_buf.size() >= kFlushRecords || tidx_buf.size() >= kFlushRecords ||
        now - last_flush >= Millis(1000)) {
      flush_now = false;
      flush_sidecars(now);
    }
  }

  // A synthetic line saying what happened; starts on a line of its own.
  void marker(const std::string& text, TimePoint now) {
    std::string m;
    if (!at_line_start) m += '\n';
    const bool was_refusing = refusing;
    refusing = false;
    if (!m.empty()) write_indexed(m, line_stream, now);
    write_indexed("[cronkeep " + format_rfc3339(now) + "] " + text + "\n", static_cast<char>(Stream::marker), now);
    refusing = was_refusing;
  }

  void publish(events::Kind kind, std::string text, TimePoint now) {
    if (!options.bus) return;
    events::Event e;
    e.kind = kind;
    e.task = options.task;
    e.run_id = options.run_id;
    e.time_ms = to_unix_ms(now);
    e.count = static_cast<int64_t>(stats->bytes_dropped);
    e.text = std::move(text);
    options.bus->publish(std::move(e));
  }

  void on_write_failure(TimePoint now) {
    if (stats->disk_pressure) return;
    stats->disk_pressure = true;
    refusing = true;
    publish(events::Kind::disk_pressure, "writing the log failed: " + stats->error, now);
  }

  // drop_old: the current file becomes .prev (replacing an older one).
  void rotate(TimePoint now) {
    flush_sidecars(now);
    if (!at_line_start) end_line(now);
    stats->bytes_dropped += prev_bytes;
    fault::crash_point("logs.before_rotate");
    for (auto [from, to] : {std::pair{"", ".prev"}, {".idx", ".prev.idx"}, {".tidx", ".prev.tidx"}})
      if (::rename(side(from).c_str(), side(to).c_str()) != 0) {
        if (errno == ENOENT && *from != '\0') ::unlink(side(to).c_str());  // no sidecar yet: drop the older one
        else note_error("rotating " + side(from) + ": " + std::strerror(errno));
      }
    prev_bytes = file_bytes;
    meta.prev_first_line = meta.first_line;
    meta.first_line = line;
    ++meta.rotations;
    ++stats->rotations;
    meta.bytes_dropped = stats->bytes_dropped;
    fault::crash_point("logs.after_rotate_rename");
    if (auto st = open_current(); !st) {
      note_error(st.error().message);
      refusing = true;
      return;
    }
    if (auto st = write_meta(); !st) note_error(st.error().message);  // the run goes on; the first error is kept
    marker("log rotated: the previous " + format_size(prev_bytes) + " moved to .prev (log_max_size = " +
               format_size(options.max_size) + ", log_on_full = drop_old)",
           now);
    publish(events::Kind::log_rotated, "log rotated to .prev", now);
  }

  Verdict check_space(TimePoint now) {
    if (options.min_free_space == 0 || stats->disk_pressure) return Verdict::keep_going;
    if (stats->bytes_written - written_at_space_check < kSpaceCheckBytes && now - last_space_check < kSpaceCheckEvery)
      return Verdict::keep_going;
    written_at_space_check = stats->bytes_written;
    last_space_check = now;
    auto free = free_space(options.space_dir);
    if (!free || *free >= options.min_free_space) return Verdict::keep_going;
    stats->disk_pressure = true;
    const std::string note = "disk pressure: " + format_size(*free) + " free on " + options.space_dir +
                             ", below min_free_space " + format_size(options.min_free_space);
    marker(note + (options.on_full == OnFull::kill_task ? "; stopping the task" : "; further output dropped"), now);
    refusing = true;
    meta.bytes_dropped = stats->bytes_dropped;
    if (auto st = write_meta(); !st) note_error(st.error().message);  // the run goes on; the first error is kept
    publish(events::Kind::disk_pressure, note, now);
    return options.on_full == OnFull::kill_task ? Verdict::stop_disk_pressure : Verdict::keep_going;
  }
};

LogWriter::LogWriter(std::unique_ptr<State> state) : state_(std::move(state)) { state_->stats = &stats_; }
LogWriter::~LogWriter() = default;

Result<std::unique_ptr<LogWriter>> LogWriter::create(const std::string& path, WriterOptions options,
                                                     UniqueFd spare) {
  // Only the task's own directory is created (retention removes it when it
  // empties): a missing logs/ means the data directory moved or went away,
  // and is never quietly made anew.
  const std::string dir = fs::path(path).parent_path().string();
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return fail(ErrorCode::io, "cannot create log directory " + dir + ": " + std::strerror(errno));
  auto state = std::make_unique<State>();
  state->path = path;
  state->options = std::move(options);
  state->idx_buf.reserve(kFlushRecords);
  state->tidx_buf.reserve(kFlushRecords);
  auto writer = std::unique_ptr<LogWriter>(new LogWriter(std::move(state)));
  if (auto st = writer->state_->open_current(&spare); !st) return tl::unexpected(st.error());
  return writer;
}

Verdict LogWriter::append(std::string_view bytes, Stream stream_kind, TimePoint now) {
  State& s = *state_;
  if (s.finalized) return Verdict::keep_going;
  const char stream = static_cast<char>(stream_kind);
  if (s.refusing) {
    stats_.bytes_dropped += bytes.size();
    return Verdict::keep_going;
  }
  if (Verdict v = s.check_space(now); v != Verdict::keep_going) {
    stats_.bytes_dropped += bytes.size();
    return v;
  }
  if (s.refusing) {
    stats_.bytes_dropped += bytes.size();
    return Verdict::keep_going;
  }
  const uint64_t cap = s.options.max_size;
  while (!bytes.empty()) {
    if (cap == 0 || s.file_bytes + bytes.size() <= cap) {
      s.write_indexed(bytes, stream, now);
      break;
    }
    const size_t fits = s.file_bytes < cap ? static_cast<size_t>(cap - s.file_bytes) : 0;
    s.write_indexed(bytes.substr(0, fits), stream, now);
    bytes.remove_prefix(fits);
    if (s.options.on_full == OnFull::drop_old) {
      s.rotate(now);
      if (s.refusing) {
        stats_.bytes_dropped += bytes.size();
        break;
      }
      continue;
    }
    // drop_new and kill_task: the cap is final.
    stats_.truncated = true;
    stats_.bytes_dropped += bytes.size();
    s.refusing = true;
    const bool kill = s.options.on_full == OnFull::kill_task;
    s.marker("log full (log_max_size = " + format_size(cap) + ", log_on_full = " +
                 (kill ? "kill_task): stopping the task" : "drop_new): further output dropped"),
             now);
    s.meta.bytes_dropped = stats_.bytes_dropped;
    if (auto st = s.write_meta(); !st) s.note_error(st.error().message);
    s.publish(events::Kind::log_truncated, "log full", now);
    return kill ? Verdict::stop_overflow : Verdict::keep_going;
  }
  return Verdict::keep_going;
}

Status LogWriter::finalize(TimePoint now) {
  State& s = *state_;
  if (!s.finalized) {
    if (stats_.truncated && s.options.on_full == OnFull::drop_new && stats_.bytes_dropped > 0)
      s.marker(std::to_string(stats_.bytes_dropped) + " byte(s) of output were dropped after the log was full", now);
    if (!s.at_line_start) s.end_line(now);
    s.flush_sidecars(now);
    fault::crash_point("logs.before_finalize");
    s.finalized = true;
    s.meta.bytes_dropped = stats_.bytes_dropped;
    s.meta.finalized = true;
    stats_.bytes_on_disk = s.file_bytes + s.prev_bytes;
    s.log.reset();
    s.idx.reset();
    s.tidx.reset();
  }
  if (s.meta_final) return {};
  // A run that printed nothing keeps just its empty .log: one file created
  // per run is what launch throughput is made of on a busy file system.
  const bool empty = stats_.bytes_written == 0 && stats_.rotations == 0 && stats_.bytes_dropped == 0;
  // On a full disk the .meta may not fit: the caller may call again later.
  if (!empty)
    if (Status st = s.write_meta(); !st) return st;
  s.meta_final = true;
  return {};
}

}  // namespace cronkeep::logs
