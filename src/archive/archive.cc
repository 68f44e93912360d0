// The archive of purged runs: zstd frames of JSON lines, one file per UTC
// day (docs/archive-format.md).
//
// A file starts with a zstd skippable frame holding "cronkeep-archive 1\n"
// (the version; zstd decoders skip it, so `zstdcat` prints only entries),
// then one or more zstd frames, each with a content checksum and made of
// whole lines. Appends only ever add whole frames after the last one, so the
// file is always "header, whole frames, maybe one torn frame": a reader
// stops at the first frame that does not end (or does not check out), and
// a writer cuts the file there before it appends.
#include "archive/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "base/fault.h"
#include "base/unique_fd.h"

namespace cronkeep::archive {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

// A zstd skippable frame (magic 0x184D2A50..5F, then a 4-byte little-endian
// payload size): every zstd decoder skips it.
constexpr uint32_t kHeaderMagic = 0x184D2A50;
constexpr std::string_view kHeaderWord = "cronkeep-archive ";
constexpr size_t kMaxHeaderPayload = 64;
// A frame's text is at most kFrameBytes plus one line; anything far larger
// is not ours, and must not make a reader hold it all.
constexpr size_t kMaxFrameText = 64 << 20;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

template <class T>
Json opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json time_json(const std::optional<TimePoint>& t) { return t ? Json(format_rfc3339(*t, true)) : Json(nullptr); }

void put_le32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

uint32_t get_le32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string header_bytes() {
  const std::string payload = std::string(kHeaderWord) + std::to_string(kFormatVersion) + "\n";
  std::string out;
  put_le32(out, kHeaderMagic);
  put_le32(out, static_cast<uint32_t>(payload.size()));
  return out + payload;
}

Error os_error(const std::string& what, int err) {
  return Error{err == ENOSPC || err == EDQUOT ? ErrorCode::no_space : ErrorCode::io, what + ": " + std::strerror(err)};
}

// Writes all of `data` at `offset`. While the fault-injection flag says the
// disk is full, fails with ENOSPC as a full disk would.
Status pwrite_all(int fd, std::string_view data, int64_t offset, const std::string& path) {
  if (fault::disk_full()) return tl::unexpected(os_error("writing " + path, ENOSPC));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return tl::unexpected(os_error("writing " + path, errno));
    done += static_cast<size_t>(n);
  }
  return {};
}

// Reads up to `n` bytes at `offset` (fewer at the end of the file).
Result<std::string> pread_some(int fd, int64_t offset, size_t n, const std::string& path) {
  std::string buf(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, buf.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return tl::unexpected(os_error("reading " + path, errno));
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  buf.resize(got);
  return buf;
}

Status fsync_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return tl::unexpected(os_error("syncing directory " + path, errno));
  return {};
}

// ---- reading frames -------------------------------------------------------------

struct Scan {
  int64_t valid_end = 0;  // just past the header and the last whole frame; 0: no whole header
  bool torn = false;      // bytes follow valid_end that are not a whole, checked frame
};

// Checks the header at the start of a file of `size` bytes. Returns the
// header's length, or 0 for a file that is empty or holds a prefix of a
// header (a crash while the file was being created). Errors: corruption
// for a file that is not a cronkeep archive, or of a newer format.
Result<int64_t> check_header(int fd, int64_t size, const std::string& path) {
  if (size == 0) return 0;
  auto head = pread_some(fd, 0, static_cast<size_t>(std::min<int64_t>(size, 8 + kMaxHeaderPayload)), path);
  if (!head) return tl::unexpected(head.error());
  const std::string ours = header_bytes();
  auto not_ours = [&] {
    return fail(ErrorCode::corruption, path + " is not a cronkeep archive (move it out of the archive directory)");
  };
  if (head->size() < 8) {
    if (ours.compare(0, head->size(), *head) == 0) return 0;
    return not_ours();
  }
  const uint32_t length = get_le32(head->data() + 4);
  if (get_le32(head->data()) != kHeaderMagic || length > kMaxHeaderPayload) return not_ours();
  if (head->size() < 8 + length) {
    if (ours.compare(0, head->size(), *head) == 0) return 0;
    return not_ours();
  }
  const std::string_view payload(head->data() + 8, length);
  if (payload.substr(0, kHeaderWord.size()) != kHeaderWord || payload.back() != '\n') return not_ours();
  const std::string_view digits = payload.substr(kHeaderWord.size(), payload.size() - kHeaderWord.size() - 1);
  int version = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (ec != std::errc() || p != digits.data() + digits.size()) return not_ours();
  if (version != kFormatVersion)
    return fail(ErrorCode::corruption, path + " is a cronkeep archive of format " + std::to_string(version) +
                                           "; this cronkeep reads format " + std::to_string(kFormatVersion));
  return 8 + static_cast<int64_t>(length);
}

// Reads the first `size` bytes of an archive file frame by frame. `on_line`
// (may be empty) gets each line of each whole frame, in order, once the
// frame has ended and its checksum matched; returning false stops the scan.
// Errors: corruption (not an archive), io.
Result<Scan> scan(int fd, int64_t size, const std::string& path, const std::function<bool(std::string_view)>& on_line) {
  Scan out;
  auto header = check_header(fd, size, path);
  if (!header) return tl::unexpected(header.error());
  if (*header == 0) {
    out.torn = size > 0;
    return out;
  }
  out.valid_end = *header;
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!dctx) return fail(ErrorCode::internal, "zstd: cannot create a decompression context");
  std::string out_buf(ZSTD_DStreamOutSize(), '\0');
  std::string text;  // the current frame's lines, handed over when it ends
  bool stopped = false;
  bool damaged = false;
  // Feeds `input` (read at file offset `base`) to the decoder until it
  // needs more input (output left in the decoder is drained first).
  auto pump = [&](ZSTD_inBuffer& input, int64_t base) {
    while (true) {
      ZSTD_outBuffer output{out_buf.data(), out_buf.size(), 0};
      const size_t ret = ZSTD_decompressStream(dctx.get(), &output, &input);
      if (ZSTD_isError(ret)) {  // e.g. a checksum that does not match
        damaged = true;
        return;
      }
      if (on_line) {
        text.append(out_buf.data(), output.pos);
        if (text.size() > kMaxFrameText) {
          damaged = true;
          return;
        }
      }
      if (ret == 0) {  // a frame ended: its lines are whole and checked
        out.valid_end = base + static_cast<int64_t>(input.pos);
        if (on_line) {
          std::string_view rest(text);
          while (!rest.empty() && !stopped) {
            const size_t nl = rest.find('\n');
            if (!on_line(rest.substr(0, nl))) stopped = true;
            rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
          }
          text.clear();
        }
        if (stopped) return;
      }
      if (input.pos == input.size && output.pos < output.size) return;
    }
  };
  const size_t chunk = ZSTD_DStreamInSize();
  int64_t offset = *header;
  while (offset < size && !stopped && !damaged) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(chunk), size - offset));
    auto in = pread_some(fd, offset, want, path);
    if (!in) return tl::unexpected(in.error());
    if (in->empty()) break;  // the file shrank under us
    ZSTD_inBuffer input{in->data(), in->size(), 0};
    pump(input, offset);
    offset += static_cast<int64_t>(in->size());
  }
  out.torn = !stopped && out.valid_end < size;
  return out;
}

// ---- an entry's first fields, without parsing the whole line ---------------------

struct Head {
  int64_t run_id = 0;
  std::string task;
};

// Reads "run_id" and "task" at the top level of an entry and stops: the
// rest of the line (the run, a log of up to 2 MiB) is not parsed.
class HeadReader final : public nlohmann::json_sax<Json> {
 public:
  Head head;
  bool complete() const { return have_id_ && have_task_; }

  bool null() override { return more(); }
  bool boolean(bool) override { return more(); }
  bool number_integer(number_integer_t v) override {
    if (at("run_id")) id(v);
    return more();
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (at("run_id") && v <= static_cast<number_unsigned_t>(INT64_MAX)) id(static_cast<int64_t>(v));
    return more();
  }
  bool number_float(number_float_t, const string_t&) override { return more(); }
  bool string(string_t& s) override {
    if (at("task")) {
      head.task = s;
      have_task_ = true;
    }
    return more();
  }
  bool binary(binary_t&) override { return more(); }
  bool start_object(std::size_t) override {
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1) key_ = k;
    return true;
  }
  bool end_object() override {
    --depth_;
    return more();
  }
  bool start_array(std::size_t) override {
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return more();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool at(const char* k) const { return depth_ == 1 && key_ == k; }
  void id(int64_t v) {
    head.run_id = v;
    have_id_ = v > 0;
  }
  bool more() const { return !complete(); }
  int depth_ = 0;
  std::string key_;
  bool have_id_ = false;
  bool have_task_ = false;
};

std::optional<Head> head_of(std::string_view line) {
  HeadReader reader;
  try {
    (void)Json::sax_parse(line.begin(), line.end(), &reader, Json::input_format_t::json, false);
  } catch (...) {  // sax_parse reports errors to the reader; this is a last guard
    return std::nullopt;
  }
  if (!reader.complete()) return std::nullopt;
  return reader.head;
}

}  // namespace

// ---- entries ------------------------------------------------------------------------

Json run_json(const store::Run& r) {
  return Json{{"id", r.id},
              {"task", r.task},
              {"trigger", store::to_string(r.trigger)},
              {"attempt", r.attempt},
              {"retry_of", opt(r.retry_of)},
              {"status", store::to_string(r.status)},
              {"scheduled_at", time_json(r.scheduled_at)},
              {"created_at", format_rfc3339(r.created_at, true)},
              {"started_at", time_json(r.started_at)},
              {"finished_at", time_json(r.finished_at)},
              {"exit_code", opt(r.exit_code)},
              {"signal", opt(r.signal)},
              {"duration_ms", opt(r.duration_ms)},
              {"cpu_ms", opt(r.cpu_ms)},
              {"max_rss_kb", opt(r.max_rss_kb)},
              {"log_path", r.log_path},
              {"log_bytes", r.log_bytes},
              {"message", r.message},
              {"node", r.node}};
}

std::optional<LogText> read_log_text(const layout::DataDir& dir, const store::Run& run) {
  if (run.log_path.empty() || !layout::DataDir::valid_log_path(run.log_path)) return std::nullopt;
  const std::string log = dir.absolute(run.log_path);
  UniqueFd log_fd(::open(log.c_str(), O_RDONLY | O_CLOEXEC));
  if (!log_fd.valid()) return std::nullopt;
  UniqueFd prev_fd(::open((log + ".prev").c_str(), O_RDONLY | O_CLOEXEC));  // the rotated-out part, if any
  struct stat st {};
  const int64_t log_size = ::fstat(log_fd.get(), &st) == 0 ? st.st_size : 0;
  const int64_t prev_size = prev_fd.valid() && ::fstat(prev_fd.get(), &st) == 0 ? st.st_size : 0;
  // Bytes [from, from + n) of .prev followed by .log.
  auto range = [&](int64_t from, int64_t n) {
    std::string out;
    if (from < prev_size) {
      auto part = pread_some(prev_fd.get(), from, static_cast<size_t>(std::min(n, prev_size - from)), log);
      if (part) out += *part;
    }
    const int64_t at = std::max<int64_t>(0, from - prev_size);
    const int64_t left = n - static_cast<int64_t>(out.size());
    if (left > 0 && at < log_size) {
      auto part = pread_some(log_fd.get(), at, static_cast<size_t>(std::min(left, log_size - at)), log);
      if (part) out += *part;
    }
    return out;
  };
  LogText t;
  t.bytes = prev_size + log_size;
  if (t.bytes <= 2 * kLogHalfBytes) {
    t.text = range(0, t.bytes);
    return t;
  }
  t.omitted = t.bytes - 2 * kLogHalfBytes;
  t.text = range(0, kLogHalfBytes) + "\n[cronkeep archive: " + std::to_string(t.omitted) + " bytes omitted]\n" +
           range(t.bytes - kLogHalfBytes, kLogHalfBytes);
  return t;
}

std::string encode(const Entry& e) {
  Json log = nullptr;
  if (e.log) log = Json{{"text", e.log->text}, {"bytes", e.log->bytes}, {"omitted", e.log->omitted}};
  // Written field by field so that readers find run_id and task first.
  return "{\"v\":" + std::to_string(kFormatVersion) + ",\"run_id\":" + std::to_string(e.run.id) +
         ",\"task\":" + dump(Json(e.run.task)) + ",\"archived_at\":" + dump(Json(format_rfc3339(e.archived_at, true))) +
         ",\"reason\":" + dump(Json(e.reason)) + ",\"run\":" + dump(run_json(e.run)) + ",\"log\":" + dump(log) + "}\n";
}

// ---- writing --------------------------------------------------------------------------

struct Append::State {
  Writer* writer = nullptr;
  std::unique_lock<std::mutex> lock;  // the writer's, until this append ends
  std::string path;                   // absolute
  std::string relative;               // "archive/2026-11-23.jsonl.zst"
  UniqueFd fd;
  bool created = false;      // this append created the file (rollback removes it)
  bool dir_created = false;  // …and the archive directory
  int64_t start = -1;        // the file's size before this append; -1 until known
  int64_t end = 0;           // where the next byte goes
  int64_t entries = 0;
  int64_t frame_text = 0;  // uncompressed bytes in the open frame
  bool failed = false;
  bool committed = false;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{nullptr, &ZSTD_freeCCtx};
  std::string out_buf;

  Status write(std::string_view data) {
    auto st = pwrite_all(fd.get(), data, end, path);
    if (!st) return st;
    end += static_cast<int64_t>(data.size());
    return {};
  }

  // Compresses `input` (ZSTD_e_continue) or ends the frame (ZSTD_e_end).
  Status compress(std::string_view input, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    while (true) {
      ZSTD_outBuffer out{out_buf.data(), out_buf.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx.get(), &out, &in, mode);
      if (ZSTD_isError(left)) return fail(ErrorCode::internal, std::string("zstd: ") + ZSTD_getErrorName(left));
      if (out.pos > 0)
        if (auto st = write(std::string_view(out_buf.data(), out.pos)); !st) return st;
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return {};
    }
  }

  Status end_frame() {
    if (frame_text == 0) return {};
    if (auto st = compress({}, ZSTD_e_end); !st) return st;
    frame_text = 0;
    return {};
  }
};

Append::Append(std::unique_ptr<State> state) : s_(std::move(state)) {}
Append::Append(Append&&) noexcept = default;

Append::~Append() {
  if (!s_ || s_->committed) return;
  // Back to where the file was: a reader never sees half an append as
  // entries (an unfinished frame is ignored anyway), and the next append
  // starts after whole frames.
  Writer& w = *s_->writer;
  if (s_->created) {
    ::unlink(s_->path.c_str());
    if (s_->dir_created) ::rmdir(w.dir_.archive().c_str());
    w.checked_path_.clear();
    w.checked_size_ = -1;
  } else if (s_->start >= 0) {
    // Always: a write that failed may have put part of its bytes there.
    const bool clean = ::ftruncate(s_->fd.get(), static_cast<off_t>(s_->start)) == 0;
    w.checked_path_ = clean ? s_->path : std::string();
    w.checked_size_ = clean ? s_->start : -1;
  }
}

Status Append::add(const Entry& entry) {
  State& s = *s_;
  if (s.failed || s.committed) return fail(ErrorCode::internal, "archive append already ended");
  const std::string line = encode(entry);
  auto st = s.compress(line, ZSTD_e_continue);
  if (st) {
    s.frame_text += static_cast<int64_t>(line.size());
    ++s.entries;
    if (s.frame_text >= kFrameBytes) st = s.end_frame();
  }
  if (!st) s.failed = true;
  return st;
}

Result<Committed> Append::commit() {
  State& s = *s_;
  if (s.failed || s.committed) return fail(ErrorCode::internal, "archive append already ended");
  auto st = s.end_frame();
  if (st && ::fsync(s.fd.get()) != 0) st = tl::unexpected(os_error("syncing " + s.path, errno));
  // A new file must also be found after a crash: its directory entry too.
  if (st && s.created) st = fsync_dir(s.writer->dir_.archive());
  if (st && s.dir_created) st = fsync_dir(s.writer->dir_.root());
  if (!st) {
    s.failed = true;
    return tl::unexpected(st.error());
  }
  s.committed = true;
  s.writer->checked_path_ = s.path;
  s.writer->checked_size_ = s.end;
  return Committed{s.relative, s.entries, s.end - s.start};
}

Writer::Writer(layout::DataDir dir) : dir_(std::move(dir)) {}
Writer::~Writer() = default;

Result<Append> Writer::begin(TimePoint now) {
  auto s = std::make_unique<Append::State>();
  s->writer = this;
  s->lock = std::unique_lock(mu_);
  const std::string date = layout::DataDir::archive_date(now);
  s->path = dir_.archive_file(date);
  s->relative = "archive/" + layout::DataDir::archive_file_name(date);
  if (::mkdir(dir_.archive().c_str(), 0755) == 0)
    s->dir_created = true;
  else if (errno != EEXIST)
    return tl::unexpected(os_error("creating " + dir_.archive(), errno));
  s->fd.reset(::open(s->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (s->fd.valid())
    s->created = true;
  else if (errno == EEXIST)
    s->fd.reset(::open(s->path.c_str(), O_RDWR | O_CLOEXEC));
  if (!s->fd.valid()) {
    const int err = errno;
    if (s->dir_created) ::rmdir(dir_.archive().c_str());
    return tl::unexpected(os_error("opening " + s->path, err));
  }
  // From here on, destroying the Append rolls back (removes what it created).
  Append append(std::move(s));
  Append::State& st = *append.s_;
  struct stat info {};
  if (::fstat(st.fd.get(), &info) != 0) return tl::unexpected(os_error("reading " + st.path, errno));
  int64_t size = info.st_size;
  if (!st.created && !(checked_path_ == st.path && checked_size_ == size)) {
    // Not written by this process since it was last whole: cut a torn frame off.
    auto sc = scan(st.fd.get(), size, st.path, {});
    if (!sc) return tl::unexpected(sc.error());
    if (sc->valid_end < size) {
      if (::ftruncate(st.fd.get(), static_cast<off_t>(sc->valid_end)) != 0)
        return tl::unexpected(os_error("cutting the torn end off " + st.path, errno));
      size = sc->valid_end;
    }
  }
  st.start = size;
  st.end = size;
  st.cctx.reset(ZSTD_createCCtx());
  if (!st.cctx) return fail(ErrorCode::internal, "zstd: cannot create a compression context");
  ZSTD_CCtx_setParameter(st.cctx.get(), ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(st.cctx.get(), ZSTD_c_checksumFlag, 1);
  st.out_buf.resize(ZSTD_CStreamOutSize());
  if (size == 0)
    if (auto w = st.write(header_bytes()); !w) return tl::unexpected(w.error());
  return append;
}

// ---- reading ----------------------------------------------------------------------------

Result<std::vector<FileInfo>> list_files(const layout::DataDir& dir) {
  std::vector<FileInfo> out;
  std::error_code ec;
  fs::directory_iterator it(dir.archive(), ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    return fail(ErrorCode::io, "listing " + dir.archive() + ": " + ec.message());
  }
  for (const auto& item : it) {
    const std::string date = layout::DataDir::archive_date_of(item.path().filename().string());
    if (date.empty()) continue;  // not an archive file: never touched
    const std::string path = dir.archive_file(date);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) continue;  // removed since it was listed
      return tl::unexpected(os_error("opening " + path, errno));
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) return tl::unexpected(os_error("reading " + path, errno));
    FileInfo f;
    f.date = date;
    f.bytes = info.st_size;
    std::set<int64_t> seen;
    auto sc = scan(fd.get(), info.st_size, path, [&](std::string_view line) {
      if (auto h = head_of(line)) {
        if (seen.insert(h->run_id).second)
          ++f.entries;
        else
          ++f.duplicates;
      }
      return true;
    });
    if (!sc) return tl::unexpected(sc.error());
    f.torn = sc->torn;
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const FileInfo& a, const FileInfo& b) { return a.date < b.date; });
  return out;
}

Result<ReadPage> read(const layout::DataDir& dir, const ReadQuery& q) {
  if (!layout::DataDir::valid_archive_date(q.date))
    return fail(ErrorCode::invalid_argument, "date: expected YYYY-MM-DD, got \"" + q.date + "\"");
  const std::string path = dir.archive_file(q.date);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT)
      return fail(ErrorCode::not_found, "no archive for " + q.date + " (no run was archived that day, UTC)");
    return tl::unexpected(os_error("opening " + path, errno));
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return tl::unexpected(os_error("reading " + path, errno));
  ReadPage page;
  std::set<int64_t> seen;
  int64_t line_no = 0;
  int64_t taken = 0;
  auto sc = scan(fd.get(), info.st_size, path, [&](std::string_view line) {
    const int64_t at = line_no++;
    const auto h = head_of(line);
    if (!h || !seen.insert(h->run_id).second || at < q.after) return true;
    if (q.task && h->task != *q.task) return true;
    if (q.run_id && h->run_id != *q.run_id) return true;
    if (!q.include_system && layout::is_system_task_name(h->task)) return true;
    if (static_cast<int64_t>(page.entries.size()) >= q.limit ||
        (!page.entries.empty() && taken + static_cast<int64_t>(line.size()) > q.max_bytes)) {
      page.next = at;
      return false;
    }
    page.entries.emplace_back(line);
    taken += static_cast<int64_t>(line.size());
    return true;
  });
  if (!sc) return tl::unexpected(sc.error());
  return page;
}

Removal remove_before(const layout::DataDir& dir, TimePoint cutoff) {
  Removal out;
  std::error_code ec;
  fs::directory_iterator it(dir.archive(), ec);
  if (ec) {
    if (ec != std::errc::no_such_file_or_directory) {
      ++out.errors;
      out.first_error = dir.archive() + ": " + ec.message();
    }
    return out;
  }
  std::vector<std::string> dates;
  for (const auto& item : it) {
    const std::string date = layout::DataDir::archive_date_of(item.path().filename().string());
    if (!date.empty()) dates.push_back(date);
  }
  for (const std::string& date : dates) {
    const auto day = parse_rfc3339(date);
    if (!day || *day + std::chrono::hours(24) > cutoff) continue;
    const std::string path = dir.archive_file(date);
    struct stat info {};
    const int64_t bytes = ::stat(path.c_str(), &info) == 0 ? info.st_size : 0;
    if (::unlink(path.c_str()) == 0) {
      ++out.files;
      out.bytes += bytes;
    } else if (errno != ENOENT) {
      ++out.errors;
      if (out.first_error.empty()) out.first_error = path + ": " + std::strerror(errno);
    }
  }
  return out;
}

}  // namespace cronkeep::archive
