// The HTTP server: one event loop (Boost.Beast on Asio) that accepts,
// reads requests and writes answers, and a router over it, each route
// turning a request into one ops call (on a worker pool, never on the loop)
// and its answer into JSON (ops/wire.h).
//
// Here a POST without a body is an empty body, query parameters come from
// the URL only, and a body is JSON whatever its Content-Type.
//
// Threads (docs/architecture.md, "The HTTP server"): the loop owns every
// socket, parser and connection count; `workers` run GET routes, `waiters`
// run POST routes (which may wait long: run?wait=true, purge, compact);
// a followed run's SSE feed has one leader thread (http/feed.h) whatever
// the number of its followers.
#include <sys/socket.h>
#include <malloc.h>
#include <zlib.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <latch>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "base/thread.h"
#include "http/feed.h"
#include "http/http.h"
#include "http/ui_assets.h"
#include "ops/remote.h"
#include "ops/wire.h"

namespace cronkeep::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using ops::Json;

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::busy:
    case ErrorCode::no_space: return 503;
    case ErrorCode::io:
    case ErrorCode::corruption:
    case ErrorCode::internal: return 500;
  }
  return 500;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// A request as the routes see it (read by the loop, handled on a worker).
struct Request {
  std::string method;
  std::string target;       // as sent: path and query
  std::string path;         // percent-decoded, without the query
  std::string body;
  std::string remote_addr;
  std::vector<std::pair<std::string, std::string>> headers;

  bool has_header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (iequals(k, name)) return true;
    return false;
  }
  std::string get_header_value(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (iequals(k, name)) return v;
    return "";
  }
};

// One subscription of a multiplexed stream (GET /api/stream): a run's log
// or the run-state watch, its frames tagged `sub: KEY`.
struct MuxSub {
  std::string key;  // "events" or "TASK/ID"
  bool follow = false;
  ops::FollowRequest follow_request;
  ops::WatchRequest watch_request;
  std::string failed;  // non-empty: the subscription was refused (frames sent as is), it has ended
};

// An answer: a body in memory, a raw log streamed in bounded chunks, or an
// SSE stream (whose events come from feeds).
struct Response {
  enum class Kind { buffered, raw, follow, watch, mux };
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type;
  Kind kind = Kind::buffered;
  // raw: Content-Length; `body` holds the first bytes; `next` is called on
  // a worker for the bytes after the first `sent` ones (empty: the log went
  // away or shrank, and the connection is closed).
  int64_t raw_length = 0;
  std::function<std::string(int64_t sent)> next;
  ops::FollowRequest follow;
  ops::WatchRequest watch;
  std::vector<MuxSub> subs;  // mux
  int slots = 1;             // a stream's places against the stream caps (mux: one per subscription)

  bool streaming() const { return kind == Kind::follow || kind == Kind::watch || kind == Kind::mux; }
  void set_header(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
  void set_content(std::string bytes, std::string type) {
    body = std::move(bytes);
    content_type = std::move(type);
  }
};

// Whether the client takes gzip (q > 0). Browsers get gzip, never brotli:
// the server compresses nothing but gzip.
bool accepts_gzip(const std::string& accept) {
  size_t start = 0;
  while (start < accept.size()) {
    size_t end = accept.find(',', start);
    if (end == std::string::npos) end = accept.size();
    std::string token = accept.substr(start, end - start);
    token.erase(0, token.find_first_not_of(' '));
    const size_t semi = token.find(';');
    std::string name = token.substr(0, semi);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (iequals(name, "gzip") || name == "*") {
      if (semi == std::string::npos) return true;
      const size_t q = token.find("q=", semi);
      return q == std::string::npos || std::strtod(token.c_str() + q + 2, nullptr) > 0;
    }
    start = end + 1;
  }
  return false;
}

bool compressible(const std::string& type) {
  return type.rfind("text/", 0) == 0 || type.rfind("application/json", 0) == 0 ||
         type.find("javascript") != std::string::npos || type.rfind("image/svg", 0) == 0;
}

// gzip at zlib's default level (fast: a 75 KB page of a log in a few ms).
std::optional<std::string> gzip(std::string_view in) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return std::nullopt;
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

// Percent-decoding of a path ('+' stays).
std::string decode_path(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

void send_json(Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(ops::dump(body), "application/json");
}

void send_error(Response& res, const Error& e) { send_json(res, status_for(e.code), ops::to_json(e)); }

void send_error(Response& res, ErrorCode code, const std::string& message) {
  send_error(res, Error{code, message});
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Percent-decoding of one query component ('+' is a space).
std::string decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
      } else {
        out += '%';
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// What a route sees of a request.
struct Call {
  const Request& req;
  Response& res;
  std::vector<std::string> args;  // the path, then each placeholder's segment
  std::map<std::string, std::string> query;  // from the URL only (a repeated key: its last value)
  std::vector<std::pair<std::string, std::string>> params;  // every key=value of the URL, in order
  Json body;                                 // an object (empty when no body was sent)
  bool authed = false;

  const std::string& arg(size_t i) const { return args.at(i); }
  bool has(const char* key) const { return query.count(key) > 0; }

  // Refuses query parameters the route does not know.
  bool only(std::initializer_list<const char*> allowed) {
    for (const auto& [key, value] : query) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || key == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        send_error(res, ErrorCode::invalid_argument,
                   "unknown query parameter \"" + key + "\"" +
                       (list.empty() ? std::string(" (this route takes none)") : " (expected " + list + ")"));
        return false;
      }
    }
    return true;
  }
  // Refuses body fields the route does not know.
  bool fields(std::initializer_list<const char*> allowed) {
    for (const auto& [key, value] : body.items()) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || key == a;
      if (!ok) {
        send_error(res, ErrorCode::invalid_argument, "unknown field \"" + key + "\"");
        return false;
      }
    }
    return true;
  }
  // An integer query parameter within [lo, hi]; false (and a 400) when bad.
  bool integer(const char* name, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
    auto it = query.find(name);
    if (it == query.end()) return true;
    auto v = parse_int(it->second);
    if (!v || *v < lo || *v > hi) {
      send_error(res, ErrorCode::invalid_argument,
                 std::string(name) + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got \"" + it->second + "\"");
      return false;
    }
    out = v;
    return true;
  }
  bool flag(const char* name, bool& out) {
    auto it = query.find(name);
    if (it == query.end()) return true;
    if (it->second != "true" && it->second != "false") {
      send_error(res, ErrorCode::invalid_argument, std::string(name) + ": expected true or false");
      return false;
    }
    out = it->second == "true";
    return true;
  }
  bool body_flag(const char* name, bool& out) {
    if (!body.contains(name) || body[name].is_null()) return true;
    if (!body[name].is_boolean()) {
      send_error(res, ErrorCode::invalid_argument, std::string(name) + ": expected true or false");
      return false;
    }
    out = body[name].get<bool>();
    return true;
  }
};

// A route's path, matched segment by segment: literal segments and the
// placeholders below, each a whole segment and captured (Call::arg(1) is
// the first). Not std::regex: the routes' compiled expressions held 580 kB
// of the idle daemon's heap.
const std::string kTask = "{task}";  // a task's name as ops accepts it (checked again there), or a system task's
const std::string kId = "{id}";      // 1 to 18 digits
const std::string kDay = "{day}";    // YYYY-MM-DD, as archive files are named (ops checks it is a real day)

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool task_segment(std::string_view s) {
  if (s.rfind("cronkeep:", 0) == 0) {
    const std::string_view kind = s.substr(9);
    return !kind.empty() && std::all_of(kind.begin(), kind.end(), [](char c) { return c >= 'a' && c <= 'z'; });
  }
  auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return !s.empty() && s.size() <= 128 && alnum(s[0]) &&
         std::all_of(s.begin() + 1, s.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool id_segment(std::string_view s) { return !s.empty() && s.size() <= 18 && all_digits(s); }

bool day_segment(std::string_view s) {
  return s.size() == 10 && s[4] == '-' && s[7] == '-' && all_digits(s.substr(0, 4)) && all_digits(s.substr(5, 2)) &&
         all_digits(s.substr(8, 2));
}

class PathPattern {
 public:
  explicit PathPattern(std::string_view pattern) {
    for (std::string_view seg : split(pattern)) {
      if (seg == kTask) segments_.push_back({std::nullopt, task_segment});
      else if (seg == kId) segments_.push_back({std::nullopt, id_segment});
      else if (seg == kDay) segments_.push_back({std::nullopt, day_segment});
      else segments_.push_back({std::string(seg), nullptr});
    }
  }

  // Whether `path` matches; `args` gets the path, then each placeholder's segment.
  bool match(std::string_view path, std::vector<std::string>& args) const {
    const std::vector<std::string_view> parts = split(path);
    if (parts.size() != segments_.size()) return false;
    for (size_t i = 0; i < parts.size(); ++i) {
      const Segment& seg = segments_[i];
      if (seg.check ? !seg.check(parts[i]) : parts[i] != *seg.literal) return false;
    }
    args.assign(1, std::string(path));
    for (size_t i = 0; i < parts.size(); ++i)
      if (segments_[i].check) args.emplace_back(parts[i]);
    return true;
  }

 private:
  struct Segment {
    std::optional<std::string> literal;
    bool (*check)(std::string_view);
  };
  // "/a/b" → "", "a", "b"; "/" → "", "".
  static std::vector<std::string_view> split(std::string_view path) {
    std::vector<std::string_view> out;
    for (;;) {
      const size_t slash = path.find('/');
      out.push_back(path.substr(0, slash));
      if (slash == std::string_view::npos) return out;
      path.remove_prefix(slash + 1);
    }
  }
  std::vector<Segment> segments_;
};

struct Route {
  const char* method;
  PathPattern pattern;
  bool needs_auth;
  std::function<void(Call&)> handle;
};

std::string sse_frame(const ops::FollowEvent& e) {
  return "id: " + std::to_string(e.id) + "\nevent: " + ops::to_string(e.kind) + "\ndata: " + ops::dump(ops::to_json(e)) +
         "\n\n";
}

std::string prom_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Seconds since the epoch, exactly (ms precision), never in exponent form.
std::string prom_seconds(TimePoint t) {
  const int64_t ms = to_unix_ms(t);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000));
  return buf;
}

std::string prometheus(const ops::Metrics& m, int sse_clients) {
  std::ostringstream out;
  out << "# HELP cronkeep_runs_finished_total Runs whose end was recorded since the daemon started.\n"
         "# TYPE cronkeep_runs_finished_total counter\n";
  for (const auto& [key, n] : m.finished)
    out << "cronkeep_runs_finished_total{task=\"" << prom_escape(key.first) << "\",status=\"" << key.second << "\"} "
        << n << "\n";
  out << "# HELP cronkeep_runs_running Runs in flight.\n# TYPE cronkeep_runs_running gauge\n";
  for (const auto& t : m.tasks) out << "cronkeep_runs_running{task=\"" << prom_escape(t.task) << "\"} " << t.running << "\n";
  out << "# HELP cronkeep_runs_queued Runs waiting for a slot.\n# TYPE cronkeep_runs_queued gauge\n";
  for (const auto& t : m.tasks) out << "cronkeep_runs_queued{task=\"" << prom_escape(t.task) << "\"} " << t.queued << "\n";
  out << "# HELP cronkeep_last_success_timestamp_seconds When each task last succeeded.\n"
         "# TYPE cronkeep_last_success_timestamp_seconds gauge\n";
  for (const auto& t : m.tasks)
    if (t.last_success)
      out << "cronkeep_last_success_timestamp_seconds{task=\"" << prom_escape(t.task) << "\"} "
          << prom_seconds(*t.last_success) << "\n";
  out << "# HELP cronkeep_last_failure_timestamp_seconds When each task last failed.\n"
         "# TYPE cronkeep_last_failure_timestamp_seconds gauge\n";
  for (const auto& t : m.tasks)
    if (t.last_failure)
      out << "cronkeep_last_failure_timestamp_seconds{task=\"" << prom_escape(t.task) << "\"} "
          << prom_seconds(*t.last_failure) << "\n";
  out << "# HELP cronkeep_scheduler_lateness_seconds How late scheduled runs started.\n"
         "# TYPE cronkeep_scheduler_lateness_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t b = 0; b < m.lateness_bounds_ms.size(); ++b) {
    cumulative += m.lateness_counts[b];
    out << "cronkeep_scheduler_lateness_seconds_bucket{le=\"" << m.lateness_bounds_ms[b] / 1000.0 << "\"} "
        << cumulative << "\n";
  }
  out << "cronkeep_scheduler_lateness_seconds_bucket{le=\"+Inf\"} " << m.lateness_count << "\n"
      << "cronkeep_scheduler_lateness_seconds_sum " << m.lateness_sum_ms / 1000.0 << "\n"
      << "cronkeep_scheduler_lateness_seconds_count " << m.lateness_count << "\n";
  out << "# TYPE cronkeep_retention_rows_deleted_total counter\ncronkeep_retention_rows_deleted_total "
      << m.retention_total.rows_deleted
      << "\n# TYPE cronkeep_retention_files_deleted_total counter\ncronkeep_retention_files_deleted_total "
      << m.retention_total.files_deleted
      << "\n# TYPE cronkeep_retention_log_bytes_freed_total counter\ncronkeep_retention_log_bytes_freed_total "
      << m.retention_total.log_bytes_freed
      << "\n# TYPE cronkeep_compactor_bytes_reclaimed_total counter\ncronkeep_compactor_bytes_reclaimed_total "
      << m.compactor_total.db_bytes_reclaimed << "\n";
  out << "# TYPE cronkeep_database_bytes gauge\ncronkeep_database_bytes " << m.database.db_bytes()
      << "\n# TYPE cronkeep_database_free_pages gauge\ncronkeep_database_free_pages " << m.database.freelist_count
      << "\n# TYPE cronkeep_wal_bytes gauge\ncronkeep_wal_bytes " << m.database.wal_bytes << "\n";
  out << "# TYPE cronkeep_log_dir_bytes gauge\ncronkeep_log_dir_bytes " << m.log_dir_bytes << "\n";
  out << "# HELP cronkeep_log_events_dropped_total Live log events dropped for slow readers.\n"
         "# TYPE cronkeep_log_events_dropped_total counter\ncronkeep_log_events_dropped_total "
      << m.log_events_dropped << "\n";
  out << "# HELP cronkeep_log_disk_pressure_total Runs whose log output hit min_free_space since the daemon started.\n"
         "# TYPE cronkeep_log_disk_pressure_total counter\ncronkeep_log_disk_pressure_total "
      << m.disk_pressure_runs << "\n";
  out << "# TYPE cronkeep_sse_clients gauge\ncronkeep_sse_clients " << sse_clients << "\n";
  return out.str();
}

// A pool of at most `max` threads that starts them as work comes: a thread
// is started when a job is posted and more jobs are waiting than threads are
// idle, and then stays (no shrinking, so a burst pays the start once). An
// idle daemon that nobody calls has none (each costs ~8.5 kB of stack and
// its kernel bookkeeping: the 16 waiters, ~135 kB of anonymous memory). The
// POST routes use it (they are rare, and a thread's start, tens of
// microseconds, is nothing next to a commit); the GET workers stay an
// asio::thread_pool started with the server. join() runs
// what was posted, then ends the threads; a job posted after join() is not
// run (as with asio::thread_pool).
class LazyPool {
 public:
  explicit LazyPool(size_t max) : max_(std::max<size_t>(1, max)) {}
  ~LazyPool() { join(); }
  LazyPool(const LazyPool&) = delete;
  LazyPool& operator=(const LazyPool&) = delete;

  void post(std::function<void()> job) {
    std::lock_guard lock(mu_);
    if (stopping_ && live_ == 0) return;  // joined: nobody would run it
    jobs_.push_back(std::move(job));
    if (!stopping_ && jobs_.size() > idle_ && threads_.size() < max_) {
      ++idle_;
      ++live_;
      threads_.emplace_back([this] {
        thread::set_name("ck-http-post");
        work();
      });
    }
    cv_.notify_one();
  }

  // Runs what is queued (and what those jobs post), then ends the threads.
  void join() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;  // from here threads_ does not change
    }
    cv_.notify_all();
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
      if (jobs_.empty()) break;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      --idle_;
      lock.unlock();
      job();
      job = nullptr;  // its captures go before the thread waits again
      lock.lock();
      ++idle_;
    }
    --idle_;
    --live_;
  }

  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;       // threads started and not running a job
  size_t live_ = 0;       // threads started and not ended
  bool stopping_ = false;
};

}  // namespace

struct Server::Impl {
  class Conn;

  Deps deps;
  Limits limits;
  int port = 0;
  std::string listen_host;  // empty or a wildcard: any Host is served
  std::atomic<bool> stopping{false};
  std::vector<Route> routes;

  // The loop and what only it touches.
  asio::io_context io{1};
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> accept_retry;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;  // the loop runs until stop()
  std::thread loop;
  std::unordered_map<Conn*, std::weak_ptr<Conn>> conns;                  // loop only: every open connection
  std::unordered_map<std::string, std::vector<Conn*>> requests_by_client; // loop only: connections that are not streams

  // Route handlers (GET: workers; POST: waiters, which may wait long).
  // Workers are started with the server (GETs and SSE replays are the hot
  // path); waiters, for POSTs, as they come (LazyPool).
  std::optional<asio::thread_pool> workers;
  std::optional<LazyPool> waiters;

  // Runs `job` on a GET worker.
  template <class Job>
  void post_read(Job&& job) {
    asio::post(*workers, std::forward<Job>(job));
  }
  // Before any request, each of the `n` GET workers names itself and gives
  // way to the fire path (thread::yield_to_latency_sensitive): a flood of
  // reads must not make the scheduler late (docs/architecture.md,
  // "Priorities"). One job per worker: each holds its thread until every
  // worker has taken one.
  void prepare_workers(size_t n) {
    auto all = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(n));
    for (size_t i = 0; i < n; ++i)
      asio::post(*workers, [all] {
        thread::set_name("ck-http-get");
        thread::yield_to_latency_sensitive();
        all->arrive_and_wait();
      });
  }
  Hub hub;

  // After a large answer (a log page or raw chunk of up to 4 MiB), hands the
  // memory that the workers' malloc arenas keep free back to the system, on
  // a worker (it takes a few milliseconds): glibc keeps it otherwise, and 8
  // parallel 4 MiB log pages left the daemon 74 MB above its idle size. At
  // most one trim is pending.
  static constexpr size_t kTrimAfterBytes = 1 << 20;
  std::atomic<bool> trim_pending{false};
  void give_memory_back() {
    if (trim_pending.exchange(true)) return;
    post_read([this] {
      ::malloc_trim(0);
      trim_pending = false;
    });
  }

  std::mutex streams_mu;
  std::condition_variable streams_cv;
  int streams = 0;
  std::map<std::string, int> streams_by_client;


  bool authenticated(const Request& req) const {
    const std::string h = req.get_header_value("Authorization");
    const size_t space = h.find(' ');
    if (space == std::string::npos || lower(std::string_view(h).substr(0, space)) != "bearer") return false;
    size_t start = space;
    while (start < h.size() && h[start] == ' ') ++start;
    return constant_time_equal(std::string_view(h).substr(start), deps.token);
  }

  // DNS rebinding: a page on another name must not read this API.
  bool host_allowed(const Request& req) const {
    if (listen_host.empty() || listen_host == "0.0.0.0" || listen_host == "::") return true;
    std::string host = req.get_header_value("Host");
    if (host.empty()) return true;  // HTTP/1.0 clients; no browser sends none
    if (host.front() == '[') {
      const size_t close = host.find(']');
      host = close == std::string::npos ? host : host.substr(1, close - 1);
    } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
      host.resize(colon);
    }
    host = lower(host);
    return host == listen_host || host == "localhost" || host == "127.0.0.1" || host == "::1";
  }

  void add(const char* method, const std::string& pattern, bool needs_auth, std::function<void(Call&)> handle) {
    routes.push_back(Route{method, PathPattern(pattern), needs_auth, std::move(handle)});
  }

  // On a worker: the route's answer, compressed when the client takes gzip.
  Response handle(const Request& req) {
    Response res;
    try {
      dispatch(req, res);
    } catch (const std::exception& e) {
      res = Response{};
      send_error(res, ErrorCode::internal, std::string("internal error: ") + e.what());
    } catch (...) {
      res = Response{};
      send_error(res, ErrorCode::internal, "internal error");
    }
    if (res.kind == Response::Kind::buffered && !res.body.empty() && compressible(res.content_type)) {
      res.set_header("Vary", "Accept-Encoding");
      if (accepts_gzip(req.get_header_value("Accept-Encoding"))) {
        if (auto z = gzip(res.body)) {
          res.body = std::move(*z);
          res.set_header("Content-Encoding", "gzip");
        }
      }
    }
    return res;
  }

  // Every request comes here.
  void dispatch(const Request& req, Response& res) {
    if (!host_allowed(req))
      return send_error(res, ErrorCode::invalid_argument,
                        "Host \"" + req.get_header_value("Host") + "\" is not served here (DNS rebinding protection)");
    const Route* route = nullptr;
    std::vector<std::string> args;
    bool path_known = false;
    for (const Route& r : routes) {
      if (!r.pattern.match(req.path, args)) continue;
      path_known = true;
      if (req.method == r.method) {
        route = &r;
        break;
      }
    }
    if (!route) {
      if (path_known) {
        res.set_header("Allow", req.method == "GET" ? "POST" : "GET");
        return send_json(res, 405, Json{{"error", "method " + req.method + " not allowed on " + req.path}});
      }
      return send_error(res, ErrorCode::not_found, "no such route: " + req.method + " " + req.path);
    }
    Call call{req, res, std::move(args), {}, {}, Json::object(), authenticated(req)};
    if (route->needs_auth && !call.authed) {
      res.set_header("WWW-Authenticate", "Bearer");
      return send_json(res, 401,
                       Json{{"error", req.has_header("Authorization") ? "invalid bearer token" : "missing bearer token"}});
    }
    // Query parameters from the URL only (not from a form body).
    const size_t q = req.target.find('?');
    if (q != std::string::npos) {
      std::string_view rest(req.target);
      rest.remove_prefix(q + 1);
      while (!rest.empty()) {
        const size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        if (!pair.empty()) {
          const size_t eq = pair.find('=');
          std::string key = decode(pair.substr(0, eq));
          std::string value = eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
          call.query[key] = value;
          call.params.emplace_back(std::move(key), std::move(value));
        }
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
      }
    }
    if (!req.body.empty()) {
      call.body = Json::parse(req.body, nullptr, false);
      if (call.body.is_discarded())
        return send_error(res, ErrorCode::invalid_argument, "the body is not valid JSON (send a JSON object, or nothing)");
      if (!call.body.is_object()) return send_error(res, ErrorCode::invalid_argument, "the body must be a JSON object");
    }
    route->handle(call);
  }

  // ---- routes -----------------------------------------------------------------

  // A task the caller may name: system tasks only when authenticated.
  bool visible(Call& c, const std::string& task) {
    if (task.find(':') == std::string::npos || c.authed) return true;
    send_error(c.res, ErrorCode::not_found, "task " + task + " not found");
    return false;
  }

  template <class T>
  void answer(Call& c, const Result<T>& r, int status = 200) {
    if (!r) return send_error(c.res, r.error());
    send_json(c.res, status, ops::to_json(*r));
  }

  void install() {
    ops::Ops& o = *deps.ops;
    add("GET", "/healthz", false, [this](Call& c) {
      const std::string problem = deps.health ? deps.health() : std::string();
      if (problem.empty()) return send_json(c.res, 200, Json{{"status", "ok"}});
      send_json(c.res, 503, Json{{"status", "degraded"}, {"reason", problem}});
    });

    add("GET", "/api/tasks", false, [&o](Call& c) {
      if (!c.only({})) return;
      auto tasks = o.tasks(c.authed);
      if (!tasks) return send_error(c.res, tasks.error());
      send_json(c.res, 200, ops::to_json(*tasks));
    });

    add("GET", "/api/tasks/" + kTask + "/runs", false, [this, &o](Call& c) {
      if (!c.only({"limit", "before", "status"}) || !visible(c, c.arg(1))) return;
      std::optional<int64_t> limit, before;
      if (!c.integer("limit", 1, 1000, limit) || !c.integer("before", 1, INT64_MAX, before)) return;
      ops::RunsQuery q{c.arg(1), static_cast<int>(limit.value_or(50)), before, std::nullopt};
      if (c.has("status")) {
        auto st = ops::parse_status(c.query["status"]);
        if (!st) return send_error(c.res, st.error());
        q.status = *st;
      }
      answer(c, o.runs(q));
    });

    add("GET", "/api/tasks/" + kTask + "/runs/" + kId, false, [this, &o](Call& c) {
      if (!c.only({}) || !visible(c, c.arg(1))) return;
      answer(c, o.run(c.arg(1), *parse_int(c.arg(2))));
    });

    add("GET", "/api/tasks/" + kTask + "/runs/" + kId + "/log", false, [this, &o](Call& c) {
      if (!c.only({"from_line", "lines", "since", "tail"}) || !visible(c, c.arg(1))) return;
      std::optional<int64_t> from, lines, tail;
      if (!c.integer("from_line", 1, INT64_MAX, from) || !c.integer("lines", 1, ops::kMaxLogPage, lines) ||
          !c.integer("tail", 1, ops::kMaxLogPage, tail))
        return;
      ops::LogQuery q{c.arg(1), *parse_int(c.arg(2)), {}, from.has_value()};
      if (from) q.read.from_line = *from;
      q.read.lines = tail ? lines : lines.value_or(1000);
      q.read.tail = tail;
      if (c.has("since")) {
        q.read.since = parse_rfc3339(c.query["since"]);
        if (!q.read.since)
          return send_error(c.res, ErrorCode::invalid_argument, "since: expected an RFC 3339 time, e.g. 2026-11-23T04:00:00Z");
      }
      answer(c, o.log(q));
    });

    add("GET", "/api/tasks/" + kTask + "/runs/" + kId + "/log/stream", false,
        [this](Call& c) { stream(c); });

    add("POST", "/api/tasks/" + kTask + "/run", true, [&o](Call& c) {
      bool wait = false;
      if (!c.only({"wait"}) || !c.flag("wait", wait) || !c.fields({"env"})) return;
      auto env = ops::env_from_json(c.body);
      if (!env) return send_error(c.res, env.error());
      ops::RunNowRequest request;
      request.task = c.arg(1);
      request.wait = wait;
      request.env = std::move(*env);
      auto run = o.run_now(request);
      if (!run) return send_error(c.res, run.error());
      send_json(c.res, store::is_terminal(run->status) ? 200 : 202, ops::to_json(*run));
    });

    add("POST", "/api/tasks/" + kTask + "/runs/" + kId + "/cancel", true, [this, &o](Call& c) {
      if (!c.only({}) || !c.fields({})) return;
      answer(c, o.cancel(c.arg(1), *parse_int(c.arg(2))), 202);
    });

    add("POST", "/api/tasks/" + kTask + "/runs/" + kId + "/delete", true, [this, &o](Call& c) {
      if (!c.only({}) || !c.fields({})) return;
      answer(c, o.delete_run(c.arg(1), *parse_int(c.arg(2))));
    });

    add("POST", "/api/maintenance/purge", true, [&o](Call& c) {
      if (!c.only({})) return;
      auto request = ops::purge_request_from_json(c.body);
      if (!request) return send_error(c.res, request.error());
      auto out = o.purge(*request);
      if (!out) return send_error(c.res, out.error());
      send_json(c.res, 200, ops::to_json(*out, request->dry_run));
    });

    add("POST", "/api/maintenance/compact", true, [this, &o](Call& c) {
      bool full = false;
      if (!c.only({}) || !c.fields({"full"}) || !c.body_flag("full", full)) return;
      answer(c, o.compact(full ? retention::CompactMode::full : retention::CompactMode::incremental));
    });

    add("GET", "/api/maintenance/status", false, [this, &o](Call& c) {
      if (!c.only({})) return;
      answer(c, o.status());
    });

    add("GET", "/api/maintenance/history", false, [this, &o](Call& c) {
      std::optional<int64_t> limit, before;
      if (!c.only({"limit", "before"}) || !c.integer("limit", 1, 1000, limit) ||
          !c.integer("before", 1, INT64_MAX, before))
        return;
      answer(c, o.maintenance_history(ops::MaintenanceHistoryQuery{limit.value_or(100), before}));
    });

    add("GET", "/api/maintenance/check", false, [this, &o](Call& c) {
      if (!c.only({})) return;
      answer(c, o.check(false));
    });

    add("POST", "/api/maintenance/check", true, [this, &o](Call& c) {
      bool repair = false;
      if (!c.only({}) || !c.fields({"repair"}) || !c.body_flag("repair", repair)) return;
      answer(c, o.check(repair));
    });

    install_ui_routes();

    // Nodes sharing the database (several machines, one PostgreSQL).
    add("GET", "/api/nodes", false, [&o](Call& c) {
      if (!c.only({})) return;
      auto nodes = o.nodes();
      if (!nodes) return send_error(c.res, nodes.error());
      send_json(c.res, 200, Json{{"nodes", ops::to_json(*nodes)}});
    });

    add("POST", "/api/nodes/" + kTask + "/forget", true, [&o](Call& c) {
      if (!c.only({}) || !c.fields({})) return;
      if (auto st = o.forget_node(c.arg(1)); !st) return send_error(c.res, st.error());
      send_json(c.res, 200, Json{{"forgotten", c.arg(1)}});
    });

    // ---- the archive of purged runs (issue 13) ----
    add("GET", "/api/archive", false, [&o](Call& c) {
      if (!c.only({})) return;
      auto files = o.archive_list();
      if (!files) return send_error(c.res, files.error());
      send_json(c.res, 200, Json{{"files", ops::to_json(*files)}});
    });

    add("GET", "/api/archive/" + kDay, false, [this, &o](Call& c) {
      if (!c.only({"task", "run", "after", "limit"})) return;
      std::optional<int64_t> run, after, limit;
      if (!c.integer("run", 1, INT64_MAX, run) || !c.integer("after", 0, INT64_MAX, after) ||
          !c.integer("limit", 1, 1000, limit))
        return;
      ops::ArchiveQuery q;
      q.date = c.arg(1);
      if (c.has("task")) {
        q.task = c.query["task"];
        if (!visible(c, *q.task)) return;
      }
      q.run_id = run;
      q.after = after.value_or(0);
      q.limit = static_cast<int>(limit.value_or(100));
      q.include_system = c.authed;  // system tasks' runs, like their history, for authenticated callers
      answer(c, o.archive_show(q));
    });

    // ---- operating: pause/resume (issue 13) ----
    for (const bool paused : {true, false})
      add("POST", "/api/tasks/" + kTask + (paused ? "/pause" : "/resume"), true, [this, &o, paused](Call& c) {
        if (!c.only({}) || !c.fields({})) return;
        answer(c, o.pause(c.arg(1), paused));
      });

    // ---- operating: configuration reload (issue 13) ----
    add("POST", "/api/reload", true, [this, &o](Call& c) {
      if (!c.only({}) || !c.fields({})) return;
      answer(c, o.reload());
    });

    // ---- operating: notification deliveries (issue 13) ----
    add("GET", "/api/notifications", false, [this, &o](Call& c) {
      std::optional<int64_t> limit;
      if (!c.only({"limit"}) || !c.integer("limit", 1, 1000, limit)) return;
      answer(c, o.notifications(static_cast<int>(limit.value_or(50))));
    });

    add("GET", "/metrics", false, [this](Call& c) {
      if (!deps.metrics) return send_error(c.res, ErrorCode::not_found, "no metrics here");
      auto m = deps.metrics();
      if (!m) return send_error(c.res, m.error());
      int clients = 0;
      {
        std::lock_guard lock(streams_mu);
        clients = streams;
      }
      c.res.set_content(prometheus(*m, clients), "text/plain; version=0.0.4");
    });
  }

  // ---- the web UI and the routes it needs (docs/api.md, "For the web UI") ----

  void install_ui_routes() {
    ops::Ops& o = *deps.ops;
    for (const UiAsset& a : ui_assets()) {
      add("GET", std::string(a.path), false, [&a](Call& c) {
        // The page itself reads `?nomux` (its own streams, no shared worker:
        // docs/ui.md); the assets take no parameter.
        if (a.path == "/" ? !c.only({"nomux"}) : !c.only({})) return;
        send_asset(c, a);
      });
    }

    add("GET", "/api/events", false, [this](Call& c) {
      if (!c.only({})) return;
      watch(c);
    });

    add("GET", "/api/stream", false, [this](Call& c) { mux(c); });

    add("GET", "/api/tasks/" + kTask + "/retention", false, [this, &o](Call& c) {
      if (!c.only({}) || !visible(c, c.arg(1))) return;
      answer(c, o.retention_preview(c.arg(1)));
    });

    // The overview's strips: every visible task's newest runs in one answer.
    add("GET", "/api/runs/recent", false, [this, &o](Call& c) {
      std::optional<int64_t> per_task;
      if (!c.only({"per_task"}) || !c.integer("per_task", 1, ops::kMaxRecentPerTask, per_task)) return;
      answer(c, o.recent_runs(ops::RecentRunsQuery{static_cast<int>(per_task.value_or(30)), c.authed}));
    });

    add("GET", "/api/tasks/" + kTask + "/runs/" + kId + "/log/raw", false, [this, &o](Call& c) {
      if (!c.only({"offset", "length"}) || !visible(c, c.arg(1))) return;
      std::optional<int64_t> offset, length;
      if (!c.integer("offset", 0, INT64_MAX, offset) || !c.integer("length", 1, INT64_MAX, length)) return;
      const std::string task = c.arg(1);
      const int64_t id = *parse_int(c.arg(2));
      const int64_t start = offset.value_or(0);
      // The first chunk answers errors with a status; the rest stream.
      auto first = o.raw_log(task, id, start, std::min<int64_t>(ops::kMaxRawChunk, length.value_or(INT64_MAX)));
      if (!first) return send_error(c.res, first.error());
      const int64_t end = length ? std::min(first->total, start + *length) : first->total;
      c.res.set_header("X-Log-Size", std::to_string(first->total));
      c.res.set_header("Content-Disposition", "attachment; filename=\"" + task + "-" + std::to_string(id) + ".log\"");
      c.res.set_header("X-Content-Type-Options", "nosniff");
      c.res.set_header("Cache-Control", "no-store");
      if (start >= end) return c.res.set_content("", "application/octet-stream");
      if (first->offset + static_cast<int64_t>(first->bytes.size()) >= end) {
        first->bytes.resize(static_cast<size_t>(end - start));
        return c.res.set_content(std::move(first->bytes), "application/octet-stream");
      }
      // Larger than one read: streamed, one bounded chunk in memory at a time.
      const int64_t total = end - start;
      c.res.kind = Response::Kind::raw;
      c.res.raw_length = total;
      c.res.content_type = "application/octet-stream";
      c.res.body = std::move(first->bytes);
      c.res.next = [this, task, id, start, total](int64_t sent) -> std::string {
        auto next = deps.ops->raw_log(task, id, start + sent, std::min<int64_t>(ops::kMaxRawChunk, total - sent));
        if (!next) return {};
        return std::move(next->bytes);
      };
    });
  }

  // The UI's pages load scripts and styles from this origin only, run no
  // inline script, and talk to this API only.
  static void send_asset(Call& c, const UiAsset& a) {
    Response& res = c.res;
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("X-Frame-Options", "DENY");
    const std::string etag = "\"" + std::string(a.hash) + "\"";
    res.set_header("ETag", etag);
    res.set_header("Cache-Control", a.immutable ? "public, max-age=31536000, immutable" : "no-cache");
    if (c.req.get_header_value("If-None-Match") == etag) {
      res.status = 304;
      return;
    }
    res.status = 200;
    res.set_content(std::string(a.bytes), std::string(a.content_type));
  }

  // Server-Sent Events of run state changes (ops::Ops::watch), for the
  // overview's live updates; counts as a log stream against the caps.
  // Server-Sent Events of run state changes (ops::Ops::watch), for the
  // overview's live updates; counts as a log stream against the caps. One
  // watch per kind (with or without system tasks) serves every client.
  void watch(Call& c) {
    if (!take_stream_slot(c, c.req.remote_addr)) return;
    c.res.kind = Response::Kind::watch;
    c.res.watch = ops::WatchRequest{c.authed, std::chrono::duration_cast<Millis>(limits.stream_idle)};
  }

  // Server-Sent Events for one run's log: ops::Ops::follow, framed once per
  // event for all the run's followers (http/feed.h).
  void stream(Call& c) {
    if (!c.only({"from"}) || !visible(c, c.arg(1))) return;
    std::optional<int64_t> from;
    if (!c.integer("from", -ops::kMaxLogPage * 10, INT64_MAX, from)) return;
    ops::FollowRequest request{c.arg(1), *parse_int(c.arg(2)), from.value_or(1)};
    request.idle_timeout = std::chrono::duration_cast<Millis>(limits.stream_idle);
    if (c.req.has_header("Last-Event-ID")) {
      auto last = parse_int(c.req.get_header_value("Last-Event-ID"));
      if (!last || *last < 0)
        return send_error(c.res, ErrorCode::invalid_argument, "Last-Event-ID: expected a line number");
      request.from = *last + 1;
    }
    // Refuse at once what follow() would refuse (unknown run, no log).
    auto run = deps.ops->run(request.task, request.run_id);
    if (!run) return send_error(c.res, run.error());
    if (run->log_path.empty() && store::is_terminal(run->status))
      return send_error(c.res, ErrorCode::not_found, "run " + std::to_string(run->id) + " has no log");
    if (!take_stream_slot(c, c.req.remote_addr)) return;
    c.res.kind = Response::Kind::follow;
    c.res.follow = request;
  }

  // Several subscriptions on one SSE stream (the web UI's shared worker,
  // docs/api.md): `events=1` (the run-state watch, as /api/events) and
  // `run=TASK/ID[:FROM]` (a run's log, as its log/stream?from=FROM),
  // repeated. Each subscription joins the same feed a plain stream would,
  // keeps its own queue, position and refills, and takes one place against
  // the stream caps; each frame is its feed's shared bytes preceded by
  // `sub: KEY`. A run that cannot be followed (unknown, no log, a system
  // task without the token) gets its own `error` frame; the others go on.
  static constexpr size_t kMaxMuxRuns = 32;
  void mux(Call& c) {
    if (!c.only({"events", "run"})) return;
    bool events = false;
    std::vector<MuxSub> subs;
    std::set<std::string> keys;
    for (const auto& [key, value] : c.params) {
      if (key == "events") {
        if (value != "0" && value != "1")
          return send_error(c.res, ErrorCode::invalid_argument, "events: expected 1 or 0, got \"" + value + "\"");
        events = value == "1";
        continue;
      }
      // TASK/ID or TASK/ID:FROM, FROM a line number (-?[0-9]{1,19}).
      const std::string_view v(value);
      const size_t slash = v.find('/');
      const std::string_view task = v.substr(0, slash);
      const std::string_view rest = slash == std::string_view::npos ? std::string_view() : v.substr(slash + 1);
      const size_t colon = rest.find(':');
      const std::string_view id = rest.substr(0, colon);
      const std::optional<std::string_view> from_text =
          colon == std::string_view::npos ? std::nullopt : std::optional(rest.substr(colon + 1));
      auto line_number = [](std::string_view f) {
        const std::string_view digits = f.substr(!f.empty() && f[0] == '-' ? 1 : 0);
        return !digits.empty() && digits.size() <= 19 && all_digits(digits);
      };
      if (slash == std::string_view::npos || !task_segment(task) || !id_segment(id) ||
          (from_text && !line_number(*from_text)))
        return send_error(c.res, ErrorCode::invalid_argument,
                          "run: expected TASK/ID or TASK/ID:FROM (FROM a line number), got \"" + value + "\"");
      MuxSub sub;
      sub.follow = true;
      sub.key = std::string(task) + "/" + std::string(id);
      sub.follow_request.task = std::string(task);
      sub.follow_request.run_id = *parse_int(id);
      sub.follow_request.idle_timeout = std::chrono::duration_cast<Millis>(limits.stream_idle);
      if (from_text) {
        auto from = parse_int(*from_text);
        if (!from || *from < -ops::kMaxLogPage * 10)
          return send_error(c.res, ErrorCode::invalid_argument,
                            "run: FROM must be an integer from " + std::to_string(-ops::kMaxLogPage * 10) +
                                ", got \"" + value + "\"");
        sub.follow_request.from = *from;
      }
      if (!keys.insert(sub.key).second)
        return send_error(c.res, ErrorCode::invalid_argument, "run: " + sub.key + " given twice");
      if (keys.size() > kMaxMuxRuns)
        return send_error(c.res, ErrorCode::invalid_argument,
                          "run: at most " + std::to_string(kMaxMuxRuns) + " runs per stream");
      subs.push_back(std::move(sub));
    }
    if (!events && subs.empty())
      return send_error(c.res, ErrorCode::invalid_argument, "events or run: expected at least one subscription");
    // Refuse at once, per subscription, what follow() would refuse.
    int live = events ? 1 : 0;
    for (MuxSub& sub : subs) {
      const std::string& task = sub.follow_request.task;
      std::optional<Error> refused;
      if (task.find(':') != std::string::npos && !c.authed) {
        refused = Error{ErrorCode::not_found, "task " + task + " not found"};
      } else if (auto run = deps.ops->run(task, sub.follow_request.run_id); !run) {
        refused = run.error();
      } else if (run->log_path.empty() && store::is_terminal(run->status)) {
        refused = Error{ErrorCode::not_found, "run " + std::to_string(run->id) + " has no log"};
      }
      if (refused) {
        ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::error);
        e.text = refused->message;
        sub.failed = sse_frame(e);
      } else {
        ++live;
      }
    }
    if (events) {
      MuxSub sub;
      sub.key = "events";
      sub.watch_request = ops::WatchRequest{c.authed, std::chrono::duration_cast<Millis>(limits.stream_idle)};
      subs.insert(subs.begin(), std::move(sub));
    }
    if (!take_stream_slot(c, c.req.remote_addr, live)) return;
    c.res.kind = Response::Kind::mux;
    c.res.subs = std::move(subs);
    c.res.slots = live;
  }

  // SSE streams: at most max_streams at once, and
  // max_streams_per_client per address (a multiplexed stream takes `n`
  // places, one per subscription). False (and an answer) when full.
  bool take_stream_slot(Call& c, const std::string& client, int n = 1) {
    {
      std::lock_guard lock(streams_mu);
      if (stopping) return send_error(c.res, ErrorCode::busy, "the daemon is shutting down"), false;
      if (streams + n > limits.max_streams)
        return send_json(c.res, 429, Json{{"error", "too many log streams open"}}), false;
      if (streams_by_client[client] + n > limits.max_streams_per_client)
        return send_json(c.res, 429, Json{{"error", "too many log streams open from " + client}}), false;
      streams += n;
      streams_by_client[client] += n;
    }
    c.res.set_header("Cache-Control", "no-cache");
    c.res.set_header("X-Accel-Buffering", "no");
    return true;
  }

  void release_stream_slot(const std::string& client, int n = 1) {
    if (n <= 0) return;
    std::lock_guard lock(streams_mu);
    streams -= n;
    if ((streams_by_client[client] -= n) <= 0) streams_by_client.erase(client);
    streams_cv.notify_all();
  }

  // ---- SSE feeds: each event framed once, for every follower ----

  static std::shared_ptr<const std::string> shared(std::string s) {
    return std::make_shared<const std::string>(std::move(s));
  }

  static std::string watch_frame(const ops::WatchEvent& e) {
    return (e.seq ? "id: " + std::to_string(e.seq) + "\n" : std::string()) + "event: " + ops::to_string(e.kind) +
           "\ndata: " + ops::dump(ops::to_json(e)) + "\n\n";
  }

  // Gathers a burst of frames and publishes it at the flush: one lock of
  // the feed and one wake-up of each follower per burst.
  class FrameBatch {
   public:
    explicit FrameBatch(Feed& feed) : feed_(feed) {}
    bool add(Frame f) {
      batch_.push_back(std::move(f));
      return batch_.size() < 1024 || flush();
    }
    bool flush() {
      if (batch_.empty()) return feed_.wanted();
      std::vector<Frame> b;
      b.swap(batch_);
      return feed_.publish(b);
    }

   private:
    Feed& feed_;
    std::vector<Frame> batch_;
  };

  class FeedFollowSink : public ops::FollowSink {
   public:
    explicit FeedFollowSink(Feed& feed) : batch_(feed) {}
    bool on_event(const ops::FollowEvent& e) override {
      Frame f;
      if (e.kind == ops::FollowEvent::Kind::line) {
        f.kind = Frame::Kind::line;
        f.line = e.line.number;
        f.bytes = shared(sse_frame(e));
      } else if (e.kind == ops::FollowEvent::Kind::done) {
        f.kind = Frame::Kind::done;
        f.text = e.text;
      } else {
        f.bytes = shared(sse_frame(e));
      }
      return batch_.add(std::move(f));
    }
    bool flush() override { return batch_.flush(); }

   private:
    FrameBatch batch_;
  };

  class FeedWatchSink : public ops::WatchSink {
   public:
    explicit FeedWatchSink(Feed& feed) : batch_(feed) {}
    bool on_event(const ops::WatchEvent& e) override {
      Frame f;
      if (e.kind == ops::WatchEvent::Kind::done) {
        f.kind = Frame::Kind::done;
        f.text = e.text;
      } else {
        f.kind = e.kind == ops::WatchEvent::Kind::ready ? Frame::Kind::ready : Frame::Kind::note;
        f.bytes = shared(watch_frame(e));
      }
      return batch_.add(std::move(f));
    }
    bool flush() override { return batch_.flush(); }

   private:
    FrameBatch batch_;
  };

  // A run's feed: one ops::follow from the log's end (followers replay
  // what came before on their own).
  static void lead_follow(ops::Ops* o, ops::FollowRequest request, Feed& feed) {
    request.from = -1;
    FeedFollowSink sink(feed);
    if (auto st = o->follow(request, sink); !st) {
      ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::error);
      e.text = st.error().message;
      sink.on_event(e);
    }
    sink.flush();
  }

  static void lead_watch(ops::Ops* o, ops::WatchRequest request, Feed& feed) {
    FeedWatchSink sink(feed);
    if (auto st = o->watch(request, sink); !st) {
      Frame f;
      f.bytes = shared("event: error\ndata: " + ops::dump(ops::to_json(st.error())) + "\n\n");
      feed.publish({f});
    }
    sink.flush();
  }

  // Lines of a run's log from the file, framed for one follower (a late
  // joiner's replay, or a gap after this follower dropped frames).
  struct Fill {
    std::vector<std::shared_ptr<const std::string>> frames;
    int64_t next = 0;
    int64_t last_id = 0;
    bool at_end = false;
    bool progress = false;
    std::optional<Error> error;
  };

  // On a worker: up to one page of lines from `from` (negative: the last
  // -from lines), before line `upto` when upto > 0.
  Fill fill(const std::string& task, int64_t run_id, int64_t from, int64_t upto) {
    Fill r;
    r.next = from;
    ops::LogQuery q;
    q.task = task;
    q.run_id = run_id;
    if (from < 0) {
      q.read.tail = std::min<int64_t>(-from, ops::kMaxLogPage);
      q.read.lines = std::nullopt;
    } else {
      q.read.from_line = from;
      q.read.lines = upto > 0 ? std::clamp<int64_t>(upto - from, 1, kFillPage) : kFillPage;
      q.from_line_given = true;
    }
    auto slice = deps.ops->log(q);
    if (!slice) {
      r.error = slice.error();
      return r;
    }
    const logs::LogPage& page = slice->page;
    int64_t last = 0;
    for (const logs::Line& l : page.lines) {
      if (l.number == page.next_line) break;  // a partial last line: wait until it is complete
      if (upto > 0 && l.number >= upto) break;
      if (from > 0 && l.number < from) continue;
      ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::line);
      e.id = l.number;
      e.line = l;
      r.frames.push_back(shared(sse_frame(e)));
      last = l.number;
    }
    r.last_id = last;
    r.next = upto > 0 ? (last > 0 ? last + 1 : from) : page.next_line;
    r.at_end = page.at_end || page.lines.empty();
    r.progress = r.next != from;
    return r;
  }
  static constexpr int64_t kFillPage = 1000;

  // ---- connections (owned by the loop) ----

  class Conn;

  // One subscription of a stream: a run's log (follow) or the run-state
  // watch. A plain stream has one; a multiplexed one (/api/stream)
  // several, each writing `tag` before each of its frames. Its fields are
  // the loop's, but for the queue, which its feed's leader fills.
  class Sub : public Follower, public std::enable_shared_from_this<Sub> {
   public:
    // Any thread (a feed's leader): queue frames, drop the oldest beyond the cap.
    void push(const std::vector<Frame>& frames) override;

    std::weak_ptr<Conn> conn;
    size_t cap = 4096;
    std::shared_ptr<const std::string> tag;  // "sub: KEY\n"; null on a plain stream
    bool follow = false;
    ops::FollowRequest request;
    ops::WatchRequest watch;
    std::shared_ptr<Feed> feed;
    int64_t next = 0;      // the next line this follower needs
    int64_t last_id = 0;   // the last line it was sent
    int64_t gap_to = 0;    // > 0: lines next .. gap_to-1 are read from the file first
    bool catching_up = false;
    bool filling = false;
    bool ending = false;   // its last frame is queued in `own`; nothing more is taken
    std::deque<std::shared_ptr<const std::string>> own;
    std::mutex q_mu;
    std::deque<Frame> queue;  // guarded by q_mu
    uint64_t dropped = 0;     // guarded by q_mu
  };

  class Conn : public std::enable_shared_from_this<Conn> {
   public:
    enum class State { reading, busy, streaming };

    Conn(Impl& s, tcp::socket socket, std::string client)
        : s_(s), stream_(std::move(socket)), client_(std::move(client)), timer_(s.io) {}

    const std::string& client() const { return client_; }
    State state() const { return state_; }
    std::chrono::steady_clock::time_point since() const { return since_; }

    void start() { read_request(true); }

    // Answers at once and closes (a cap, an unreadable request).
    void refuse(int status, const std::string& message) {
      Response res;
      send_json(res, status, Json{{"error", message}});
      keep_alive_ = false;
      write_response(std::move(res));
    }

    // Any thread: a subscription has frames; pump() on the loop, once.
    void kick() {
      {
        std::lock_guard lock(kick_mu_);
        if (kick_posted_) return;
        kick_posted_ = true;
      }
      asio::post(s_.io, [self = shared_from_this()] { self->pump(); });
    }

    // At stop: each subscription ends with `done` "shutdown" once what it is writing is out.
    void shutdown_stream() {
      if (closed_ || state_ != State::streaming || ending_) return;
      for (auto& sub : subs_) {
        if (sub->ending) continue;
        sub->own.push_back(shared(done_frame(*sub, "shutdown")));
        sub->ending = true;
      }
      ending_ = true;
      pump();
    }

    void close() {
      if (closed_) return;
      closed_ = true;
      s_.unregister(this);
      for (auto& sub : subs_) {
        if (sub->feed) s_.hub.leave(sub->feed, sub.get());
        sub->feed.reset();
      }
      subs_.clear();
      if (slots_ > 0) {
        s_.release_stream_slot(client_, slots_);
        slots_ = 0;
      }
      timer_.cancel();
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      stream_.close();
    }

   private:
    // ---- requests ----

    void read_request(bool first) {
      state_ = State::reading;
      since_ = std::chrono::steady_clock::now();
      parser_.emplace();
      parser_->header_limit(8 * 1024);
      parser_->body_limit(s_.limits.max_body_bytes);
      if (first || buffer_.size() > 0) {
        // The whole header within one deadline, however it trickles in.
        stream_.expires_after(s_.limits.header_timeout);
        return read_header();
      }
      // Kept alive: idle until the next request's first byte, then its deadline.
      stream_.expires_after(s_.limits.idle_timeout);
      stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
        if (ec) return self->close();
        self->buffer_.commit(n);
        self->since_ = std::chrono::steady_clock::now();
        self->stream_.expires_after(self->s_.limits.header_timeout);
        self->read_header();
      });
    }

    void read_header() {
      bhttp::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->on_read_error(ec);
        self->on_header();
      });
    }

    void on_read_error(beast::error_code ec) {
      if (closed_) return;
      if (ec == bhttp::error::body_limit) return refuse(413, "request body too large (at most 1 MiB)");
      if (ec == bhttp::error::header_limit) return refuse(400, "request header too large (at most 8 KiB)");
      if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
          ec == asio::error::eof || ec == asio::error::connection_reset || ec == bhttp::error::partial_message)
        return close();
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category())
        return refuse(400, "bad request: " + ec.message());
      close();
    }

    void on_header() {
      if (auto length = parser_->content_length(); length && *length > s_.limits.max_body_bytes)
        return refuse(413, "request body too large (at most 1 MiB)");
      if (parser_->is_done()) return on_request();
      stream_.expires_after(s_.limits.body_timeout);
      const auto expect = parser_->get()[bhttp::field::expect];
      if (iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        return asio::async_write(stream_, asio::buffer(kContinue),
                                 [self = shared_from_this()](beast::error_code ec, size_t) {
                                   if (ec) return self->close();
                                   self->read_body();
                                 });
      }
      read_body();
    }

    void read_body() {
      bhttp::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->on_read_error(ec);
        self->on_request();
      });
    }

    void on_request() {
      auto msg = parser_->release();
      parser_.reset();
      Request req;
      req.method = std::string(msg.method_string().data(), msg.method_string().size());
      req.target = std::string(msg.target().data(), msg.target().size());
      req.path = decode_path(std::string_view(req.target).substr(0, req.target.find('?')));
      req.body = std::move(msg.body());
      req.remote_addr = client_;
      for (const auto& field : msg)
        req.headers.emplace_back(std::string(field.name_string().data(), field.name_string().size()),
                                 std::string(field.value().data(), field.value().size()));
      // HEAD is a GET whose answer is sent without its body.
      head_only_ = req.method == "HEAD";
      if (head_only_) req.method = "GET";
      keep_alive_ = msg.keep_alive() && !s_.stopping;
      http10_ = msg.version() == 10;
      state_ = State::busy;
      stream_.expires_never();
      const bool post = req.method == "POST";
      auto job = [self = shared_from_this(), req = std::move(req)] {
        Response res = self->s_.handle(req);
        asio::post(self->s_.io, [self, res = std::move(res)]() mutable { self->write_response(std::move(res)); });
      };
      if (post) s_.waiters->post(std::move(job));
      else s_.post_read(std::move(job));
    }

    // ---- answers ----

    void write_response(Response res) {
      const bool streaming = res.streaming();
      if (closed_) {
        if (streaming) s_.release_stream_slot(client_, res.slots);
        return;
      }
      if (s_.stopping || streaming) keep_alive_ = false;
      std::string head = "HTTP/1.1 " + std::to_string(res.status) + " ";
      const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(res.status)));
      head.append(reason.data(), reason.size());
      head += "\r\n";
      for (const auto& [name, value] : res.headers) head += name + ": " + value + "\r\n";
      if (streaming) {
        head += "Content-Type: text/event-stream\r\n";
      } else {
        if (!res.content_type.empty()) head += "Content-Type: " + res.content_type + "\r\n";
        const int64_t length = res.kind == Response::Kind::raw ? res.raw_length : static_cast<int64_t>(res.body.size());
        head += "Content-Length: " + std::to_string(length) + "\r\n";
      }
      head += keep_alive_ ? (http10_ ? "Connection: keep-alive\r\n" : "") : "Connection: close\r\n";
      head += "\r\n";
      head_ = std::move(head);
      if (streaming && head_only_) {
        slots_ = res.slots;  // released by close()
        keep_alive_ = false;
        res = Response{};
      } else if (streaming) {
        return open_stream(std::move(res));
      }
      if (head_only_) {
        res.body.clear();
        res.kind = Response::Kind::buffered;
      }
      body_ = std::move(res.body);
      raw_ = res.kind == Response::Kind::raw;
      raw_length_ = res.raw_length;
      raw_sent_ = static_cast<int64_t>(body_.size());
      raw_next_ = std::move(res.next);
      stream_.expires_after(s_.limits.write_timeout);
      std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body_)};
      asio::async_write(stream_, buffers,
                        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
    }

    void on_written(beast::error_code ec) {
      if (ec) return close();
      head_.clear();
      const bool large = body_.size() >= Impl::kTrimAfterBytes;
      std::string().swap(body_);  // a 4 MiB chunk goes back at once
      if (large) s_.give_memory_back();
      if (raw_ && raw_sent_ < raw_length_) {
        // The next chunk is read on a worker; one chunk in memory at a time.
        s_.post_read([self = shared_from_this(), sent = raw_sent_, next = raw_next_] {
          std::string bytes = next(sent);
          asio::post(self->s_.io, [self, bytes = std::move(bytes)]() mutable { self->write_chunk(std::move(bytes)); });
        });
        return;
      }
      raw_ = false;
      raw_next_ = nullptr;
      if (keep_alive_) return read_request(false);
      linger_close();
    }

    void write_chunk(std::string bytes) {
      if (closed_) return;
      if (bytes.empty()) return close();  // the log went away or shrank: the client sees a short body
      if (static_cast<int64_t>(bytes.size()) > raw_length_ - raw_sent_) bytes.resize(static_cast<size_t>(raw_length_ - raw_sent_));
      raw_sent_ += static_cast<int64_t>(bytes.size());
      body_ = std::move(bytes);
      stream_.expires_after(s_.limits.write_timeout);
      asio::async_write(stream_, asio::buffer(body_),
                        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
    }

    // Half-closes, lets the client read the answer, then closes (closing
    // with unread bytes would reset the connection and lose the answer).
    void linger_close() {
      if (closed_) return;
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      if (state_ == State::streaming) {
        // The stream's reader sees the client's close; this bounds the wait.
        timer_.expires_after(std::chrono::seconds(1));
        timer_.async_wait([self = shared_from_this()](beast::error_code) { self->close(); });
        return;
      }
      stream_.expires_after(std::chrono::seconds(1));
      drain();
    }
    void drain() {
      stream_.async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->close();
        self->drain();
      });
    }

    // ---- SSE streams ----

    void open_stream(Response res) {
      state_ = State::streaming;
      slots_ = res.slots;
      s_.became_stream(this);
      auto self = shared_from_this();
      auto make = [&](bool follow, const ops::FollowRequest& fr, const ops::WatchRequest& wr, const std::string& key) {
        auto sub = std::make_shared<Sub>();
        sub->conn = self;
        sub->cap = s_.limits.stream_queue;
        if (!key.empty()) sub->tag = shared("sub: " + key + "\n");
        sub->follow = follow;
        sub->request = fr;
        sub->watch = wr;
        sub->next = follow ? fr.from : 0;
        sub->last_id = sub->next > 0 ? sub->next - 1 : 0;
        sub->catching_up = follow;
        subs_.push_back(sub);
        return sub;
      };
      if (res.kind == Response::Kind::mux) {
        for (const MuxSub& m : res.subs) {
          auto sub = make(m.follow, m.follow_request, m.watch_request, m.key);
          if (!m.failed.empty()) {
            sub->catching_up = false;
            sub->ending = true;
            sub->own.push_back(shared(m.failed));
          }
        }
      } else {
        make(res.kind == Response::Kind::follow, res.follow, res.watch, "");
      }
      // What the kernel holds for a slow reader is bounded too; frames beyond
      // it wait in this stream's queues (stream_queue frames each).
      beast::error_code ec;
      stream_.socket().set_option(asio::socket_base::send_buffer_size(64 << 10), ec);
      stream_.expires_never();
      writing_ = true;
      asio::async_write(stream_, asio::buffer(head_), [self](beast::error_code e, size_t) {
        self->writing_ = false;
        if (e) return self->close();
        self->last_write_ = std::chrono::steady_clock::now();
        self->watch_reader();
        self->arm_keepalive();
        for (auto& sub : self->subs_)
          if (!sub->follow && !sub->ending) self->join_feed(*sub);
        self->pump();
      });
    }

    // The client sends nothing more; a read ends when it goes away.
    void watch_reader() {
      stream_.async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->close();
        self->watch_reader();
      });
    }

    void arm_keepalive() {
      timer_.expires_after(s_.limits.keepalive);
      timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (ec || self->closed_ || self->ending_) return;
        if (!self->writing_ && std::chrono::steady_clock::now() - self->last_write_ >= self->s_.limits.keepalive / 2) {
          self->own_.push_back(shared(": keepalive\n\n"));
          self->pump();
        }
        self->arm_keepalive();
      });
    }

    void join_feed(Sub& sub) {
      auto follower = sub.shared_from_this();
      if (sub.follow) {
        sub.feed = s_.hub.join("log " + sub.request.task + " " + std::to_string(sub.request.run_id), follower,
                               [o = s_.deps.ops, request = sub.request](Feed& feed) { lead_follow(o, request, feed); });
      } else {
        ops::WatchEvent ready;
        ready.kind = ops::WatchEvent::Kind::ready;
        ready.include_system = sub.watch.include_system;
        Frame late{Frame::Kind::ready, 0, shared(watch_frame(ready)), {}};
        sub.feed = s_.hub.join(sub.watch.include_system ? "watch all" : "watch", follower,
                               [o = s_.deps.ops, request = sub.watch](Feed& feed) { lead_watch(o, request, feed); }, late);
      }
      if (!sub.feed && !sub.ending) {
        sub.own.push_back(shared(done_frame(sub, "shutdown")));
        sub.ending = true;
      }
    }

    static std::string done_frame(const Sub& sub, const std::string& text) {
      if (sub.follow) {
        ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::done);
        e.id = sub.last_id;
        e.text = text;
        return sse_frame(e);
      }
      ops::WatchEvent e;
      e.kind = ops::WatchEvent::Kind::done;
      e.text = text;
      return watch_frame(e);
    }

    static std::string dropped_frame(const Sub& sub, uint64_t n) {
      if (sub.follow) {
        ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::dropped);
        e.id = sub.last_id;
        e.count = static_cast<int64_t>(n);
        e.text = std::to_string(n) + " event(s) dropped for a slow reader; refilled from the file";
        return sse_frame(e);
      }
      ops::WatchEvent e;
      e.kind = ops::WatchEvent::Kind::dropped;
      e.count = static_cast<int64_t>(n);
      return watch_frame(e);
    }

    // Writes what is due, in order within each subscription: its own frames
    // (replayed lines, notices), then its feed's frames; a gap in the lines
    // (frames it dropped, or lines before it joined) is filled from the file
    // first. Subscriptions take turns; one write per burst, at most ~256 KiB.
    void pump() {
      if (closed_ || writing_) return;
      {
        std::lock_guard lock(kick_mu_);
        kick_posted_ = false;
      }
      buffers_.clear();
      hold_.clear();
      size_t bytes = 0;
      auto add = [&](std::shared_ptr<const std::string> p) {
        bytes += p->size();
        buffers_.push_back(asio::buffer(*p));
        hold_.push_back(std::move(p));
      };
      while (!own_.empty()) {
        add(std::move(own_.front()));
        own_.pop_front();
      }
      const size_t n = subs_.size();
      for (size_t k = 0; k < n && bytes < (256u << 10); ++k) {
        Sub& sub = *subs_[(turn_ + k) % n];
        auto tagged = [&](std::shared_ptr<const std::string> p) {
          if (sub.tag) add(sub.tag);
          add(std::move(p));
        };
        while (!sub.own.empty()) {
          tagged(std::move(sub.own.front()));
          sub.own.pop_front();
        }
        if (sub.filling || sub.catching_up || sub.ending) continue;
        std::lock_guard lock(sub.q_mu);
        if (sub.dropped > 0) {
          tagged(shared(dropped_frame(sub, sub.dropped)));
          sub.dropped = 0;
        }
        while (!sub.queue.empty() && bytes < (256u << 10) && !sub.ending && sub.gap_to == 0) {
          Frame& f = sub.queue.front();
          switch (f.kind) {
            case Frame::Kind::line:
              if (sub.follow) {
                if (f.line < sub.next) break;
                if (f.line > sub.next) {
                  sub.gap_to = f.line;
                  continue;
                }
                sub.next = f.line + 1;
                sub.last_id = f.line;
              }
              tagged(f.bytes);
              break;
            case Frame::Kind::note:
            case Frame::Kind::ready: tagged(f.bytes); break;
            case Frame::Kind::done:
              tagged(shared(done_frame(sub, f.text)));
              sub.ending = true;
              break;
            case Frame::Kind::end:
              // A plain stream just closes; a multiplexed one goes on with
              // its other subscriptions, so it says this one ended.
              if (sub.tag) tagged(shared(done_frame(sub, "ended")));
              sub.ending = true;
              break;
          }
          sub.queue.pop_front();
        }
      }
      if (n > 0) turn_ = (turn_ + 1) % n;
      if (!buffers_.empty()) {
        writing_ = true;
        // A client that takes nothing for write_timeout is closed (its read
        // stays pending without a deadline: the stream's timer for writes
        // is set only while a write is).
        stream_.expires_after(s_.limits.write_timeout);
        asio::async_write(stream_, buffers_, [self = shared_from_this()](beast::error_code ec, size_t) {
          self->writing_ = false;
          self->hold_.clear();
          if (ec) return self->close();
          self->stream_.expires_never();
          self->last_write_ = std::chrono::steady_clock::now();
          self->pump();
        });
        return;
      }
      bool all_ended = true;
      for (auto& sub : subs_) {
        if (sub->ending) {
          // An ended subscription leaves its feed (its place is given back at close).
          if (sub->feed) {
            s_.hub.leave(sub->feed, sub.get());
            sub->feed.reset();
          }
          continue;
        }
        all_ended = false;
        if (sub->catching_up || sub->gap_to > 0) start_fill(*sub);
      }
      if (all_ended) ending_ = true;
      if (ending_) return linger_close();
    }

    void start_fill(Sub& sub) {
      if (sub.filling) return;
      sub.filling = true;
      s_.post_read([self = shared_from_this(), sub = sub.shared_from_this(), task = sub.request.task,
                               id = sub.request.run_id, from = sub.next, upto = sub.gap_to] {
        Fill r = self->s_.fill(task, id, from, upto);
        asio::post(self->s_.io, [self, sub, r = std::move(r)]() mutable { self->on_fill(*sub, std::move(r)); });
      });
    }

    void on_fill(Sub& sub, Fill r) {
      sub.filling = false;
      if (closed_ || sub.ending) return pump();
      const int64_t gap = sub.gap_to;
      sub.gap_to = 0;
      if (r.error) {
        if (sub.catching_up && r.error->code == ErrorCode::not_found) {
          // A queued run has no log yet: its lines come from the feed.
          sub.catching_up = false;
          join_feed(sub);
          return pump();
        }
        ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::error);
        e.id = sub.last_id;
        e.text = r.error->message;
        sub.own.push_back(shared(sse_frame(e)));
        sub.ending = true;
        return pump();
      }
      for (auto& f : r.frames) sub.own.push_back(std::move(f));
      if (r.last_id > 0) sub.last_id = r.last_id;
      if (sub.catching_up) {
        sub.next = r.next;
        if (r.at_end || !r.progress) {
          sub.catching_up = false;
          join_feed(sub);
        }
      } else {
        // No progress: the lines are not in the file (any more); go on after the gap.
        sub.next = r.progress ? r.next : std::max(sub.next, gap);
      }
      pump();
    }

    Impl& s_;
    beast::tcp_stream stream_;
    std::string client_;
    asio::steady_timer timer_;  // streams: keepalive comments, the last wait before closing
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::array<char, 1024> scratch_{};
    State state_ = State::reading;
    std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
    bool closed_ = false;
    bool keep_alive_ = true;
    bool http10_ = false;
    bool head_only_ = false;  // a HEAD request: the answer's head only
    // a buffered or raw answer being written
    std::string head_;
    std::string body_;
    bool raw_ = false;
    int64_t raw_length_ = 0;
    int64_t raw_sent_ = 0;
    std::function<std::string(int64_t)> raw_next_;
    // a stream (loop only)
    int slots_ = 0;                            // places held against the stream caps
    std::vector<std::shared_ptr<Sub>> subs_;   // one on a plain stream
    size_t turn_ = 0;                          // the subscription served first by the next pump()
    bool writing_ = false;
    bool ending_ = false;                      // every subscription has ended (or the daemon stops)
    std::deque<std::shared_ptr<const std::string>> own_;  // untagged: keepalive comments
    std::vector<asio::const_buffer> buffers_;
    std::vector<std::shared_ptr<const std::string>> hold_;
    std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
    // any thread
    std::mutex kick_mu_;
    bool kick_posted_ = false;    // guarded by kick_mu_: a pump() is posted to the loop
  };

  // ---- the loop: accepting, caps ----

  void accept() {
    acceptor->async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping) return;
        // Out of descriptors (or similar): try again shortly rather than spin.
        accept_retry->expires_after(std::chrono::milliseconds(50));
        accept_retry->async_wait([this](beast::error_code e) {
          if (!e && !stopping) accept();
        });
        return;
      }
      on_accept(std::move(socket));
      accept();
    });
  }

  void on_accept(tcp::socket socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);  // small JSON replies must not wait for delayed ACKs
    const auto remote = socket.remote_endpoint(ec);
    const std::string client = ec ? std::string("?") : remote.address().to_string();
    auto conn = std::make_shared<Conn>(*this, std::move(socket), client);
    if (stopping) return conn->close();
    if (static_cast<int>(conns.size()) >= limits.max_connections)
      return conn->refuse(503, "too many connections");
    auto& mine = requests_by_client[client];
    if (static_cast<int>(mine.size()) >= limits.max_connections_per_client) {
      // Make room by closing this client's oldest connection that waits for a
      // request (idle, or sending its header slowly); refuse when all are busy.
      Conn* victim = nullptr;
      for (Conn* c : mine)
        if (c->state() == Conn::State::reading && (!victim || c->since() < victim->since())) victim = c;
      if (!victim) return conn->refuse(429, "too many connections from " + client);
      victim->close();
    }
    conns[conn.get()] = conn;
    requests_by_client[client].push_back(conn.get());
    conn->start();
  }

  void unregister(Conn* c) {
    conns.erase(c);
    auto it = requests_by_client.find(c->client());
    if (it == requests_by_client.end()) return;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), c), v.end());
    if (v.empty()) requests_by_client.erase(it);
  }

  // A stream counts against the stream caps, not the connection cap.
  void became_stream(Conn* c) {
    auto it = requests_by_client.find(c->client());
    if (it == requests_by_client.end()) return;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), c), v.end());
    if (v.empty()) requests_by_client.erase(it);
  }

  // Runs `fn` on the loop and waits for it.
  void on_loop(const std::function<void()>& fn) {
    auto done = std::make_shared<std::promise<void>>();
    auto ready = done->get_future();
    asio::post(io, [fn, done] {
      fn();
      done->set_value();
    });
    if (ready.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
      spdlog::warn("http: the loop did not answer within 5 s at shutdown");
  }
};

// A feed's leader hands a subscription its frames.
void Server::Impl::Sub::push(const std::vector<Frame>& frames) {
  {
    std::lock_guard lock(q_mu);
    for (const Frame& f : frames) {
      if (queue.size() >= cap && (queue.front().kind == Frame::Kind::line || queue.front().kind == Frame::Kind::note)) {
        queue.pop_front();
        ++dropped;
      }
      queue.push_back(f);
    }
  }
  if (auto c = conn.lock()) c->kick();
}

Server::Server(Deps deps, Limits limits) : impl_(std::make_unique<Impl>()) {
  impl_->deps = std::move(deps);
  impl_->limits = limits;
}

Server::~Server() { stop(); }

Status Server::start(const std::string& listen) {
  Impl& s = *impl_;
  auto endpoint = ops::parse_listen(listen);
  if (!endpoint) return tl::unexpected(endpoint.error());
  s.listen_host = lower(endpoint->host);
  s.install();
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(endpoint->host, ec);
  if (ec) {
    tcp::resolver resolver(s.io);
    auto found = resolver.resolve(endpoint->host, std::to_string(endpoint->port), ec);
    if (ec || found.empty()) return fail(ErrorCode::invalid_argument, "cannot resolve " + endpoint->host);
    address = found.begin()->endpoint().address();
  }
  const tcp::endpoint at(address, static_cast<unsigned short>(endpoint->port));
  s.acceptor.emplace(s.io);
  s.acceptor->open(at.protocol(), ec);
  if (ec) return fail(ErrorCode::io, "cannot listen on " + listen + ": " + ec.message());
  // SO_REUSEADDR only (a restart binds at once despite TIME_WAIT); never
  // SO_REUSEPORT, with which a second daemon could bind the same port.
  s.acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  s.acceptor->bind(at, ec);
  if (ec) {
    s.acceptor.reset();
    if (endpoint->port == 0) return fail(ErrorCode::io, "cannot listen on " + listen + ": " + ec.message());
    return fail(ErrorCode::io, "cannot listen on " + listen +
                                   ": the address is in use (another daemon?) or not available on this machine");
  }
  s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(ErrorCode::io, "cannot listen on " + listen + ": " + ec.message());
  s.port = s.acceptor->local_endpoint().port();
  s.accept_retry.emplace(s.io);
  const auto readers = static_cast<size_t>(std::max(1, s.limits.threads));
  s.workers.emplace(readers);
  s.prepare_workers(readers);
  s.waiters.emplace(static_cast<size_t>(std::max(1, s.limits.waiters)));
  s.work.emplace(s.io.get_executor());
  s.accept();
  s.loop = std::thread([&s] {
    thread::set_name("ck-http");
    s.io.run();
  });
  return {};
}

int Server::port() const { return impl_->port; }

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  if (!s.loop.joinable()) return;
  // No new connection; idle ones close; streams send `done` and end.
  s.on_loop([&s] {
    beast::error_code ec;
    s.acceptor->close(ec);
    s.accept_retry->cancel();
    std::vector<std::shared_ptr<Impl::Conn>> all;
    for (auto& [p, w] : s.conns)
      if (auto c = w.lock()) all.push_back(std::move(c));
    for (auto& c : all) {
      if (c->state() == Impl::Conn::State::streaming) c->shutdown_stream();
      else if (c->state() == Impl::Conn::State::reading) c->close();
    }
  });
  {
    std::unique_lock lock(s.streams_mu);
    s.streams_cv.wait_for(lock, std::chrono::seconds(3), [&] { return s.streams == 0; });
  }
  // In-flight requests finish (and are answered: the loop still runs).
  s.workers->join();
  s.waiters->join();
  s.hub.stop();
  s.on_loop([&s] {
    std::vector<std::shared_ptr<Impl::Conn>> all;
    for (auto& [p, w] : s.conns)
      if (auto c = w.lock()) all.push_back(std::move(c));
    for (auto& c : all) c->close();
  });
  s.work.reset();
  s.io.stop();
  s.loop.join();
}

}  // namespace cronkeep::http
