// The operations over a running daemon's HTTP API (net/http_client.h).
#include "ops/remote.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "base/file_lock.h"
#include "base/unique_fd.h"
#include "base/units.h"
#include "layout/layout.h"
#include "net/http_client.h"
#include "ops/local.h"
#include "ops/wire.h"

namespace cronkeep::ops {
namespace {

constexpr size_t kMinTokenLength = 32;

using Params = net::Headers;

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string octal_mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Task names are checked before they go into a URL; both kinds need no escaping.
std::string task_path(std::string_view task) { return "/api/tasks/" + std::string(task); }

std::string run_path(std::string_view task, int64_t id) { return task_path(task) + "/runs/" + std::to_string(id); }

class Remote : public Ops {
 public:
  Remote(Endpoint endpoint, std::string token) : endpoint_(std::move(endpoint)), token_(std::move(token)) {}

  Result<std::vector<TaskInfo>> tasks(bool include_system) override {
    auto reply = call("GET", "/api/tasks");
    if (!reply) return tl::unexpected(reply.error());
    if (!reply->is_array()) return fail(ErrorCode::corruption, "unexpected reply: tasks: expected an array");
    std::vector<TaskInfo> out;
    for (const Json& j : *reply) {
      auto t = task_from_json(j);
      if (!t) return tl::unexpected(t.error());
      if (t->system && !include_system) continue;
      out.push_back(std::move(*t));
    }
    return out;
  }

  Result<RunsPage> runs(const RunsQuery& q) override {
    if (auto st = check_task_name(q.task); !st) return tl::unexpected(st.error());
    Params params{{"limit", std::to_string(q.limit)}};
    if (q.before) params.emplace_back("before", std::to_string(*q.before));
    if (q.status) params.emplace_back("status", store::to_string(*q.status));
    auto reply = call("GET", task_path(q.task) + "/runs", nullptr, params);
    if (!reply) return tl::unexpected(reply.error());
    return runs_page_from_json(*reply);
  }

  Result<store::Run> run(std::string_view task, int64_t id) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto reply = call("GET", run_path(task, id));
    if (!reply) return tl::unexpected(reply.error());
    return run_from_json(*reply);
  }

  Result<LogSlice> log(const LogQuery& q) override {
    if (auto st = check_task_name(q.task); !st) return tl::unexpected(st.error());
    Params params;
    if (q.from_line_given) params.emplace_back("from_line", std::to_string(q.read.from_line));
    if (q.read.lines) params.emplace_back("lines", std::to_string(*q.read.lines));
    if (q.read.tail) params.emplace_back("tail", std::to_string(*q.read.tail));
    if (q.read.since) params.emplace_back("since", format_rfc3339(*q.read.since, true));
    auto reply = call("GET", run_path(q.task, q.run_id) + "/log", nullptr, params);
    if (!reply) return tl::unexpected(reply.error());
    return log_slice_from_json(*reply);
  }

  Status follow(const FollowRequest& req, FollowSink& sink) override {
    if (auto st = check_task_name(req.task); !st) return tl::unexpected(st.error());
    const std::string path = run_path(req.task, req.run_id) + "/log/stream?from=" + std::to_string(req.from);
    return stream(
        path,
        [&](const std::string& frame) -> Result<bool> {
          auto event = parse_frame(frame);
          if (!event) return tl::unexpected(event.error());
          return !*event || sink.on_event(**event);  // nullopt: a comment (keepalive)
        },
        [&] { return sink.flush(); });
  }

  Result<store::Run> run_now(const RunNowRequest& req) override {
    if (auto st = check_task_name(req.task); !st) return tl::unexpected(st.error());
    Params params{{"wait", req.wait ? "true" : "false"}};
    const auto timeout = req.wait ? std::chrono::duration_cast<std::chrono::seconds>(req.wait_timeout) + 60s : 30s;
    if (auto st = check_env(req.env); !st) return tl::unexpected(st.error());
    Json body = nullptr;
    if (!req.env.empty()) body = Json{{"env", req.env}};
    auto reply = call("POST", task_path(req.task) + "/run", body, params, timeout);
    if (!reply) return tl::unexpected(reply.error());
    return run_from_json(*reply);
  }

  Result<PauseResult> pause(std::string_view task, bool paused) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto reply = call("POST", task_path(task) + (paused ? "/pause" : "/resume"));
    if (!reply) return tl::unexpected(reply.error());
    return pause_from_json(*reply);
  }

  Result<std::vector<store::Delivery>> notifications(int limit) override {
    auto reply = call("GET", "/api/notifications", nullptr, {{"limit", std::to_string(limit)}});
    if (!reply) return tl::unexpected(reply.error());
    if (!reply->is_array()) return fail(ErrorCode::corruption, "unexpected reply: notifications: expected an array");
    std::vector<store::Delivery> out;
    for (const Json& j : *reply) {
      auto d = delivery_from_json(j);
      if (!d) return tl::unexpected(d.error());
      out.push_back(std::move(*d));
    }
    return out;
  }

  Result<ReloadResult> reload() override {
    auto reply = call("POST", "/api/reload", nullptr, {}, 120s);
    if (!reply) return tl::unexpected(reply.error());
    return reload_from_json(*reply);
  }

  Result<CancelResult> cancel(std::string_view task, int64_t id) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto reply = call("POST", run_path(task, id) + "/cancel");
    if (!reply) return tl::unexpected(reply.error());
    return cancel_from_json(*reply);
  }

  Result<DeleteResult> delete_run(std::string_view task, int64_t id) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto reply = call("POST", run_path(task, id) + "/delete", nullptr, {}, 3600s);
    if (!reply) return tl::unexpected(reply.error());
    return delete_from_json(*reply);
  }

  Result<retention::PurgeOutcome> purge(const retention::PurgeRequest& req, const retention::Progress&) override {
    auto reply = call("POST", "/api/maintenance/purge", to_json(req), {}, 24h);
    if (!reply) return tl::unexpected(reply.error());
    return purge_from_json(*reply);
  }

  Result<retention::CompactOutcome> compact(retention::CompactMode mode) override {
    auto reply = call("POST", "/api/maintenance/compact", Json{{"full", mode == retention::CompactMode::full}}, {}, 24h);
    if (!reply) return tl::unexpected(reply.error());
    return compact_from_json(*reply);
  }

  Result<MaintenanceStatus> status() override {
    auto reply = call("GET", "/api/maintenance/status");
    if (!reply) return tl::unexpected(reply.error());
    return status_from_json(*reply);
  }

  Result<MaintenanceHistory> maintenance_history(const MaintenanceHistoryQuery& q) override {
    Params params{{"limit", std::to_string(q.limit)}};
    if (q.before) params.emplace_back("before", std::to_string(*q.before));
    auto reply = call("GET", "/api/maintenance/history", nullptr, params);
    if (!reply) return tl::unexpected(reply.error());
    return maintenance_history_from_json(*reply);
  }

  Result<std::vector<store::NodeInfo>> nodes() override {
    auto reply = call("GET", "/api/nodes");
    if (!reply) return tl::unexpected(reply.error());
    return nodes_from_json(*reply);
  }

  Status forget_node(std::string_view name) override {
    auto reply = call("POST", "/api/nodes/" + std::string(name) + "/forget", Json::object());
    if (!reply) return tl::unexpected(reply.error());
    return {};
  }

  Result<CheckReport> check(bool repair) override {
    auto reply = repair ? call("POST", "/api/maintenance/check", Json{{"repair", true}}, {}, 24h)
                        : call("GET", "/api/maintenance/check", nullptr, {}, 24h);
    if (!reply) return tl::unexpected(reply.error());
    return check_from_json(*reply);
  }

  // ---- for the web UI ----

  Status watch(const WatchRequest& req, WatchSink& sink) override {
    // The daemon shows system tasks to this client, which holds the token.
    return stream(
        "/api/events",
        [&](const std::string& frame) -> Result<bool> {
          std::string event, payload;
          int64_t id = 0;
          split_frame(frame, event, payload, id);
          if (event.empty()) return true;
          auto e = watch_event_from_json(event, static_cast<uint64_t>(id), Json::parse(payload, nullptr, false));
          if (!e) return tl::unexpected(e.error());
          const bool about_a_run = e->kind == WatchEvent::Kind::state || e->kind == WatchEvent::Kind::progress;
          if (about_a_run && !req.include_system && layout::is_system_task_name(e->task)) return true;
          if (e->kind == WatchEvent::Kind::ready) e->include_system = req.include_system;
          return sink.on_event(*e);
        },
        [&] { return sink.flush(); });
  }

  Result<RetentionPreview> retention_preview(std::string_view task) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto reply = call("GET", task_path(task) + "/retention", nullptr, {}, 120s);
    if (!reply) return tl::unexpected(reply.error());
    return retention_preview_from_json(*reply);
  }

  Result<RecentRuns> recent_runs(const RecentRunsQuery& q) override {
    auto reply = call("GET", "/api/runs/recent", nullptr, {{"per_task", std::to_string(q.per_task)}});
    if (!reply) return tl::unexpected(reply.error());
    auto out = recent_runs_from_json(*reply);
    if (!out) return out;
    // The daemon shows system tasks to this client, which holds the token.
    std::erase_if(out->tasks, [&](const store::TaskRuns& t) {
      return !q.include_system && layout::is_system_task_name(t.task);
    });
    return out;
  }

  // ---- the archive of purged runs ----

  Result<std::vector<ArchiveFile>> archive_list() override {
    auto reply = call("GET", "/api/archive", nullptr, {}, 600s);
    if (!reply) return tl::unexpected(reply.error());
    return archive_files_from_json(*reply);
  }

  Result<ArchivePage> archive_show(const ArchiveQuery& q) override {
    // The date becomes part of the URL: checked first, like every parameter.
    if (auto st = check_archive_query(q); !st) return tl::unexpected(st.error());
    Params params{{"after", std::to_string(q.after)}, {"limit", std::to_string(q.limit)}};
    if (q.task) params.emplace_back("task", *q.task);
    if (q.run_id) params.emplace_back("run", std::to_string(*q.run_id));
    auto reply = call("GET", "/api/archive/" + q.date, nullptr, params, 600s);
    if (!reply) return tl::unexpected(reply.error());
    return archive_page_from_json(*reply);
  }

  Result<RawLogChunk> raw_log(std::string_view task, int64_t id, int64_t offset, int64_t max_bytes) override {
    if (auto st = check_task_name(task); !st) return tl::unexpected(st.error());
    auto res = net::request(
        make_request("GET", run_path(task, id) + "/log/raw",
                     {{"offset", std::to_string(offset)}, {"length", std::to_string(max_bytes)}}, 30s));
    if (!res) return tl::unexpected(unreachable(res.error()));
    if (res->status >= 300) return tl::unexpected(error_from_json(res->status, Json::parse(res->body, nullptr, false)));
    RawLogChunk out;
    out.offset = offset;
    out.total = parse_int(res->header("X-Log-Size")).value_or(0);
    out.bytes = std::move(res->body);
    return out;
  }

 private:
  net::Request make_request(std::string method, const std::string& path, const Params& params,
                            std::chrono::seconds timeout) const {
    net::Request req;
    req.method = std::move(method);
    req.url = net::Url{false, endpoint_.host, endpoint_.port, path + net::query_string(params)};
    req.headers = {{"Authorization", "Bearer " + token_}};
    req.timeout = timeout;
    return req;
  }

  // One Server-Sent Events stream: each frame (without its blank line) goes
  // to on_frame, which returns false to stop (or an error); flush after
  // each burst. Returns when the stream ends, the callback stops, or on an
  // error (the daemon's, or io when it does not answer).
  Status stream(const std::string& path, const std::function<Result<bool>(const std::string&)>& on_frame,
                const std::function<bool()>& flush) const {
    std::string buffer;
    bool stopped = false;
    Status frame_error;
    // The daemon sends a keepalive every 15 s: 90 s without a byte is a dead stream.
    auto res = net::stream(make_request("GET", path, {}, 90s), [&](std::string_view data) {
      buffer.append(data);
      size_t end;
      while ((end = buffer.find("\n\n")) != std::string::npos) {
        const std::string frame = buffer.substr(0, end);
        buffer.erase(0, end + 2);
        auto more = on_frame(frame);
        if (!more) {
          frame_error = tl::unexpected(more.error());
          return false;
        }
        if (!*more) {
          stopped = true;
          return false;
        }
      }
      return flush();
    });
    if (!frame_error) return frame_error;
    if (stopped) return {};
    if (!res) return tl::unexpected(unreachable(res.error()));
    if (res->status != 200) return tl::unexpected(error_from_json(res->status, Json::parse(res->body, nullptr, false)));
    return {};
  }

  Error unreachable(const Error& e) const {
    return Error{ErrorCode::io, "the daemon at " + endpoint_.host + ":" + std::to_string(endpoint_.port) +
                                    " does not answer (" + e.message + ")"};
  }

  // One request; a 2xx answer's JSON, or the daemon's error.
  Result<Json> call(const std::string& method, const std::string& path, const Json& body = nullptr,
                    const Params& params = {}, std::chrono::seconds timeout = 30s) const {
    net::Request req = make_request(method, path, params, timeout);
    if (method != "GET") req.body = body.is_null() ? std::string() : body.dump();
    auto res = net::request(req);
    if (!res) return tl::unexpected(unreachable(res.error()));
    Json reply = Json::parse(res->body, nullptr, false);
    if (res->status >= 300) return tl::unexpected(error_from_json(res->status, reply));
    if (reply.is_discarded()) return fail(ErrorCode::corruption, "unexpected reply: not JSON");
    return reply;
  }

  // An SSE frame's event name, data and id (event empty for a comment).
  static void split_frame(const std::string& frame, std::string& event, std::string& data, int64_t& id) {
    size_t pos = 0;
    while (pos <= frame.size()) {
      size_t nl = frame.find('\n', pos);
      if (nl == std::string::npos) nl = frame.size();
      const std::string_view line(frame.data() + pos, nl - pos);
      pos = nl + 1;
      if (line.empty() || line[0] == ':') continue;
      const size_t colon = line.find(':');
      const std::string_view field = line.substr(0, colon);
      std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      if (field == "event") event = value;
      else if (field == "data") data += value;
      else if (field == "id") id = parse_int(value).value_or(0);
    }
  }

  // One SSE frame: nullopt for a comment-only frame.
  static Result<std::optional<FollowEvent>> parse_frame(const std::string& frame) {
    std::string event, data;
    int64_t id = 0;
    split_frame(frame, event, data, id);
    if (event.empty()) return std::optional<FollowEvent>();
    auto kind = follow_kind(event);
    if (!kind) return fail(ErrorCode::corruption, "unexpected event \"" + event + "\" in the log stream");
    auto e = follow_event_from_json(*kind, id, Json::parse(data, nullptr, false));
    if (!e) return tl::unexpected(e.error());
    return std::optional<FollowEvent>(std::move(*e));
  }

  Endpoint endpoint_;
  std::string token_;
};

}  // namespace

Result<Endpoint> parse_listen(std::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos)
    return fail(ErrorCode::invalid_argument, "listen: expected host:port, got \"" + std::string(listen) + "\"");
  Endpoint e;
  e.host = std::string(listen.substr(0, colon));
  if (e.host.size() >= 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  auto port = parse_int(listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535)
    return fail(ErrorCode::invalid_argument, "listen: bad port in \"" + std::string(listen) + "\" (expected 0-65535)");
  e.port = static_cast<int>(*port);
  return e;
}

Result<std::string> read_token(const config::Config& config) {
  const bool generated = config.daemon.token_file.empty();
  const std::string path =
      generated ? layout::DataDir(config.daemon.data_dir).generated_token() : config.daemon.token_file;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return fail(err == ENOENT ? ErrorCode::not_found : ErrorCode::io,
                "cannot read the token file " + path + ": " + std::strerror(err));
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) == 0 && (st.st_mode & 077) != 0)
    return fail(ErrorCode::invalid_argument, "token file " + path +
                                                 " can be read by other users (mode " +
                                                 octal_mode(st.st_mode) + "): chmod 600 it");
  std::string text(4096, '\0');
  const ssize_t n = ::read(fd.get(), text.data(), text.size());
  if (n < 0) return fail(ErrorCode::io, "cannot read the token file " + path + ": " + std::strerror(errno));
  text.resize(static_cast<size_t>(n));
  const size_t nl = text.find('\n');
  std::string token = text.substr(0, nl);
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!token.empty() && blank(token.back())) token.pop_back();
  size_t start = 0;
  while (start < token.size() && blank(token[start])) ++start;
  token.erase(0, start);
  if (token.empty()) return fail(ErrorCode::invalid_argument, "token file " + path + " is empty");
  if (token.size() < kMinTokenLength)
    return fail(ErrorCode::invalid_argument, "the token in " + path + " is " + std::to_string(token.size()) +
                                                 " characters long; use at least 32 (e.g. openssl rand -hex 32)");
  return token;
}

Result<std::string> load_or_create_token(const config::Config& config) {
  auto token = read_token(config);
  if (token || token.error().code != ErrorCode::not_found || !config.daemon.token_file.empty()) return token;
  const std::string path = layout::DataDir(config.daemon.data_dir).generated_token();
  std::random_device rd;
  std::string random(32, '\0');
  for (char& c : random) c = static_cast<char>(rd() & 0xff);
  const std::string fresh = to_hex(random);
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail(ErrorCode::io, "cannot create " + path + ": " + std::strerror(errno));
  const std::string line = fresh + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0)
    return fail(ErrorCode::io, "cannot write " + path + ": " + std::strerror(errno));
  return fresh;
}

std::unique_ptr<Ops> make_remote(Endpoint endpoint, std::string token) {
  return std::make_unique<Remote>(std::move(endpoint), std::move(token));
}

Result<std::unique_ptr<Ops>> open(const config::Config& config, Access access) {
  bool daemon_runs = false;
  {
    // The daemon holds this lock for as long as it runs; released at once.
    auto lock = FileLock::acquire(layout::DataDir(config.daemon.data_dir).lock());
    daemon_runs = !lock && lock.error().code == ErrorCode::busy;
  }
  if (!daemon_runs) return open_local(config, access);
  auto endpoint = parse_listen(config.daemon.listen);
  if (!endpoint) return tl::unexpected(endpoint.error());
  if (endpoint->host.empty() || endpoint->host == "0.0.0.0") endpoint->host = "127.0.0.1";
  if (endpoint->host == "::") endpoint->host = "::1";
  auto token = read_token(config);
  if (!token)
    return fail(ErrorCode::io, "a daemon is running on " + config.daemon.data_dir + " but " + token.error().message);
  return make_remote(std::move(*endpoint), std::move(*token));
}

}  // namespace cronkeep::ops
