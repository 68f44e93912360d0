// Reading logs back: .meta says which files hold which lines; each file's
// .idx (line → offset, stream) is searched by bisection through a read-only
// mapping, then at most one checkpoint interval (1024 lines or 256 KiB) is
// scanned. Without a usable index the file is scanned and the page says so.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/file.h"
#include "logs/format.h"
#include "logs/logs.h"

namespace cronkeep::logs {
namespace {

// A read-only mapping of a whole file (empty when the file is missing).
class Mapped {
 public:
  Mapped() = default;
  explicit Mapped(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return;
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0 || st.st_size == 0) {
      exists_ = fd.valid();
      return;
    }
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return;
    data_ = static_cast<const char*>(p);
    size_ = static_cast<size_t>(st.st_size);
    exists_ = true;
  }
  Mapped(Mapped&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_), exists_(o.exists_) {}
  Mapped& operator=(Mapped&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(exists_, o.exists_);
    return *this;
  }
  ~Mapped() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool exists() const { return exists_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
  bool exists_ = false;
};

template <class Record>
class RecordView {
 public:
  RecordView() = default;
  RecordView(const Mapped& m, const char* magic) {
    if (m.size() < format::kHeaderBytes || std::memcmp(m.data(), magic, format::kHeaderBytes) != 0) return;
    // A crash may leave a torn last record: ignore the incomplete tail.
    count_ = (m.size() - format::kHeaderBytes) / sizeof(Record);
    base_ = m.data() + format::kHeaderBytes;
    valid_ = true;
  }
  bool valid() const { return valid_; }
  size_t size() const { return count_; }
  Record operator[](size_t i) const {
    Record r;
    std::memcpy(&r, base_ + i * sizeof(Record), sizeof(Record));
    return r;
  }

 private:
  const char* base_ = nullptr;
  size_t count_ = 0;
  bool valid_ = false;
};

struct Segment {
  std::string path;
  int64_t first_line = 1;
  uint64_t size = 0;
  Mapped idx_map, tidx_map;
  RecordView<format::IdxRecord> idx;
  RecordView<format::TidxRecord> tidx;
  bool indexed = false;
};

Result<Segment> open_segment(const std::string& path, const std::string& idx_path, const std::string& tidx_path,
                             int64_t first_line) {
  Segment s;
  s.path = path;
  s.first_line = first_line;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(ErrorCode::not_found, "log " + path + " does not exist");
    return fail(ErrorCode::io, "cannot read log " + path + ": " + std::strerror(errno));
  }
  s.size = static_cast<uint64_t>(st.st_size);
  s.idx_map = Mapped(idx_path);
  s.tidx_map = Mapped(tidx_path);
  s.idx = RecordView<format::IdxRecord>(s.idx_map, format::kIdxMagic);
  s.tidx = RecordView<format::TidxRecord>(s.tidx_map, format::kTidxMagic);
  s.indexed = s.idx.valid() && s.idx.size() > 0 && s.idx[0].offset == 0 &&
              static_cast<int64_t>(s.idx[0].line) == first_line;
  if (s.indexed) {
    const auto last = s.idx[s.idx.size() - 1];
    if (last.offset > s.size)
      return fail(ErrorCode::corruption, "log " + path + " is shorter (" + std::to_string(s.size) +
                                             " bytes) than its index says: it was truncated or replaced");
    if (last.line < s.idx[0].line) s.indexed = false;
  }
  return s;
}

// Reads lines from a file: a line ends after '\n' or after kMaxLineBytes
// bytes without one (the writer's rule).
class LineScanner {
 public:
  LineScanner(const std::string& path, uint64_t offset) : offset_(offset) {
    fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }
  bool ok() const { return fd_.valid(); }
  // Returns false at end of file. `complete` is false for a last line
  // without a newline; `split` is true for a piece of a longer line (no
  // newline after it: the line goes on in the next).
  bool next(std::string* out, bool& complete, bool& split) {
    if (out) out->clear();
    split = false;
    size_t taken = 0;
    while (true) {
      if (pos_ == len_ && !refill()) {
        complete = false;
        return taken > 0;
      }
      const size_t room = kMaxLineBytes - taken;
      const size_t avail = std::min(len_ - pos_, room);
      const char* start = buf_.data() + pos_;
      const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
      const size_t n = nl ? static_cast<size_t>(nl - start) : avail;
      if (out) out->append(start, n);
      taken += n;
      pos_ += n;
      if (nl) {
        ++pos_;
        complete = true;
        return true;
      }
      if (taken == kMaxLineBytes) {
        complete = true;
        split = true;
        return true;
      }
    }
  }

 private:
  bool refill() {
    if (buf_.empty()) buf_.resize(64 * 1024);
    ssize_t n;
    do n = ::pread(fd_.get(), buf_.data(), buf_.size(), static_cast<off_t>(offset_));
    while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    offset_ += static_cast<uint64_t>(n);
    pos_ = 0;
    len_ = static_cast<size_t>(n);
    return true;
  }
  UniqueFd fd_;
  uint64_t offset_;
  std::string buf_;
  size_t pos_ = 0, len_ = 0;
};

// The index of the last record whose line is <= `line` (records are sorted).
template <class View, class Key>
size_t last_at_or_before(const View& v, Key key, int64_t line) {
  size_t lo = 0, hi = v.size();
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (static_cast<int64_t>(key(v[mid])) <= line) lo = mid;
    else hi = mid;
  }
  return lo;
}

std::optional<format::Meta> read_meta(const std::string& path) {
  auto text = read_file(path + ".meta");
  if (!text) return std::nullopt;
  format::Meta m;
  if (!format::parse(*text, m)) return std::nullopt;
  return m;
}

// Lines from the end of the segment's last checkpoint to its end: returns the
// number one past the last line (a partial last line counts).
int64_t end_line(const Segment& s) {
  int64_t line = s.first_line;
  uint64_t offset = 0;
  if (s.indexed) {
    const auto last = s.idx[s.idx.size() - 1];
    line = static_cast<int64_t>(last.line);
    offset = last.offset;
  }
  LineScanner scan(s.path, offset);
  bool complete, split;
  while (scan.next(nullptr, complete, split)) ++line;
  return line;
}

}  // namespace

Result<LogPage> read_log(const std::string& path, const ReadRequest& req) {
  LogPage page;
  const auto meta = read_meta(path);
  std::vector<Segment> segs;
  if (meta && meta->prev_first_line > 0) {
    auto prev = open_segment(path + ".prev", path + ".prev.idx", path + ".prev.tidx", meta->prev_first_line);
    if (prev) segs.push_back(std::move(*prev));
    else if (prev.error().code != ErrorCode::not_found) return tl::unexpected(prev.error());
  }
  auto cur = open_segment(path, path + ".idx", path + ".tidx", meta ? meta->first_line : 1);
  if (!cur) return tl::unexpected(cur.error());
  segs.push_back(std::move(*cur));
  page.finalized = meta && meta->finalized;
  // No .meta: the writer has not finished (it writes .meta at the end and at
  // each rotation), so the log was never rotated.
  if (!meta && ::access((path + ".prev").c_str(), F_OK) == 0)
    page.note = "no readable .meta beside a .prev: line numbers assume the log was never rotated";
  for (const Segment& s : segs)
    if (!s.indexed && s.size > 0 && (s.idx_map.exists() || page.finalized)) {
      page.note = (page.note.empty() ? "" : page.note + "; ") + "index of " + s.path + " unusable: scanned the file";
      break;
    }
  page.first_available = segs.front().first_line;

  // Where to start.
  int64_t start = std::max<int64_t>(req.from_line, 1);
  if (req.tail) {
    start = end_line(segs.back()) - *req.tail;
  } else if (req.since) {
    start = -1;
    for (const Segment& s : segs) {
      if (!s.tidx.valid()) continue;
      size_t lo = 0, hi = s.tidx.size();  // the first record at or after `since`
      while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (s.tidx[mid].time_ms < to_unix_ms(*req.since)) lo = mid + 1;
        else hi = mid;
      }
      if (lo < s.tidx.size()) start = static_cast<int64_t>(s.tidx[lo].line);
      if (start > 0) break;
    }
    if (start < 0) start = end_line(segs.back());  // nothing that recent: an empty page at the end
  }
  start = std::max(start, page.first_available);

  const int64_t want = std::min(req.lines.value_or(req.max_lines), req.max_lines);
  size_t si = 0;
  while (si + 1 < segs.size() && segs[si + 1].first_line <= start) ++si;
  int64_t line = segs[si].first_line;
  page.next_line = start;
  int64_t bytes = 0;  // text returned so far: a page stops at req.max_bytes too
  auto full = [&] { return static_cast<int64_t>(page.lines.size()) >= want || bytes >= req.max_bytes; };
  for (; si < segs.size() && !full(); ++si) {
    const Segment& s = segs[si];
    uint64_t offset = 0;
    line = s.first_line;
    size_t rec = 0;
    if (s.indexed && start > line) {
      rec = last_at_or_before(s.idx, [](const format::IdxRecord& r) { return r.line; }, start);
      line = static_cast<int64_t>(s.idx[rec].line);
      offset = s.idx[rec].offset;
    }
    size_t trec = 0;
    bool have_time = s.tidx.valid() && s.tidx.size() > 0;
    LineScanner scan(s.path, offset);
    if (!scan.ok()) return fail(ErrorCode::io, "cannot read log " + s.path + ": " + std::strerror(errno));
    std::string text;
    bool complete = true;
    bool split = false;
    while (!full()) {
      const bool wanted = line >= start;
      if (!scan.next(wanted ? &text : nullptr, complete, split)) break;
      if (wanted) {
        Line l;
        l.number = line;
        l.text = std::move(text);
        l.continued = split;
        l.stream = '?';
        if (s.indexed) {
          while (rec + 1 < s.idx.size() && static_cast<int64_t>(s.idx[rec + 1].line) <= line) ++rec;
          l.stream = static_cast<char>(s.idx[rec].stream);
        }
        if (have_time) {
          if (trec == 0) trec = last_at_or_before(s.tidx, [](const format::TidxRecord& r) { return r.line; }, line);
          while (trec + 1 < s.tidx.size() && static_cast<int64_t>(s.tidx[trec + 1].line) <= line) ++trec;
          if (static_cast<int64_t>(s.tidx[trec].line) <= line) l.time = from_unix_ms(s.tidx[trec].time_ms);
        }
        bytes += static_cast<int64_t>(l.text.size());
        page.lines.push_back(std::move(l));
        page.partial_last_line = !complete;
        page.next_line = complete || page.finalized ? line + 1 : line;
      }
      ++line;
    }
  }
  // More after what we return?
  if (full()) {
    page.at_end = page.next_line >= end_line(segs.back());
  }
  return page;
}

SidecarCheck check_sidecars(const std::string& path) {
  SidecarCheck c;
  auto bad = [&](SidecarProblem kind, std::string text) {
    c.index_ok = false;
    c.kind = kind;
    c.problem = std::move(text);
    return c;
  };
  const auto meta = read_meta(path);
  c.finalized = meta && meta->finalized;
  struct stat st{};
  // The writer leaves no .meta beside an empty log it finished cleanly.
  if (!meta && ::stat(path.c_str(), &st) == 0 && st.st_size == 0 && ::access((path + ".meta").c_str(), F_OK) != 0)
    c.finalized = true;
  if (!meta && ::access((path + ".meta").c_str(), F_OK) == 0) return bad(SidecarProblem::unreadable_meta, "unreadable .meta");
  if (meta && meta->prev_first_line > 0 && ::access((path + ".prev").c_str(), F_OK) != 0)
    return bad(SidecarProblem::missing_prev, ".meta names a rotated part (.prev) that is gone");
  auto seg = open_segment(path, path + ".idx", path + ".tidx", meta ? meta->first_line : 1);
  if (!seg)
    return bad(seg.error().code == ErrorCode::corruption ? SidecarProblem::truncated : SidecarProblem::bad_index,
               seg.error().message);
  if (seg->size > 0 && !seg->indexed && (seg->idx_map.exists() || c.finalized))
    return bad(SidecarProblem::bad_index, "unusable .idx");
  for (size_t i = 1; i < seg->idx.size(); ++i)
    if (seg->idx[i].line <= seg->idx[i - 1].line || seg->idx[i].offset <= seg->idx[i - 1].offset)
      return bad(SidecarProblem::bad_index, ".idx records out of order at record " + std::to_string(i));
  return c;
}

}  // namespace cronkeep::logs
