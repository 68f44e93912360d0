// The HTTP server: a small router over cpp-httplib, each route turning a
// request into one ops call and its answer into JSON (ops/wire.h).
//
// Routing is ours rather than cpp-httplib's: its router reads a POST body
// until the connection closes when the request has no Content-Length (a
// plain `curl -X POST` got a 400 after a timeout), and merges form-encoded
// bodies into the query parameters. Here a POST without a body is an empty
// body, query parameters come from the URL only, and a body is JSON
// whatever its Content-Type.
#include <sys/socket.h>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "http/http.h"
#include "http/ui_assets.h"
#include "ops/remote.h"
#include "ops/wire.h"

namespace cronkeep::http {
namespace {

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

// Debian's cpp-httplib compresses with brotli at its default quality (11)
// whenever a client accepts it, at about 1 MB/s: a 75 KB page of a log took
// 60 ms instead of 4 with gzip, and every browser accepts br. So `br` is
// taken out of Accept-Encoding before the library looks (it then uses gzip).
// The request is the server's own object; only the handler's view is const.
void drop_brotli(httplib::Request& req) {
  auto it = req.headers.find("Accept-Encoding");
  if (it == req.headers.end() || it->second.find("br") == std::string::npos) return;
  std::string kept;
  size_t start = 0;
  while (start <= it->second.size()) {
    size_t end = it->second.find(',', start);
    if (end == std::string::npos) end = it->second.size();
    std::string token = it->second.substr(start, end - start);
    token.erase(0, token.find_first_not_of(' '));
    if (!token.empty() && token.rfind("br", 0) != 0) kept += (kept.empty() ? "" : ", ") + token;
    start = end + 1;
  }
  it->second = kept;
}

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(ops::dump(body), "application/json");
}

void send_error(httplib::Response& res, const Error& e) { send_json(res, status_for(e.code), ops::to_json(e)); }

void send_error(httplib::Response& res, ErrorCode code, const std::string& message) {
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
  const httplib::Request& req;
  httplib::Response& res;
  std::smatch match;
  std::map<std::string, std::string> query;  // from the URL only
  Json body;                                 // an object (empty when no body was sent)
  bool authed = false;

  std::string arg(size_t i) const { return match[i].str(); }
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

struct Route {
  const char* method;
  std::regex pattern;
  bool needs_auth;
  std::function<void(Call&)> handle;
};

// Task names as ops accepts them (checked again there), or a system task's.
const std::string kTask = R"(([A-Za-z0-9][A-Za-z0-9._-]{0,127}|cronkeep:[a-z]+))";
const std::string kId = R"(([0-9]{1,18}))";
// A day as archive files are named; ops checks that it is a real one.
const std::string kDay = R"(([0-9]{4}-[0-9]{2}-[0-9]{2}))";

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

}  // namespace

struct Server::Impl {
  Deps deps;
  Limits limits;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::string listen_host;  // empty or a wildcard: any Host is served
  std::atomic<bool> stopping{false};
  std::vector<Route> routes;

  std::mutex streams_mu;
  std::condition_variable streams_cv;
  int streams = 0;
  std::map<std::string, int> streams_by_client;

  bool authenticated(const httplib::Request& req) const {
    const std::string h = req.get_header_value("Authorization");
    const size_t space = h.find(' ');
    if (space == std::string::npos || lower(std::string_view(h).substr(0, space)) != "bearer") return false;
    size_t start = space;
    while (start < h.size() && h[start] == ' ') ++start;
    return constant_time_equal(std::string_view(h).substr(start), deps.token);
  }

  // DNS rebinding: a page on another name must not read this API.
  bool host_allowed(const httplib::Request& req) const {
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
    routes.push_back(Route{method, std::regex(pattern), needs_auth, std::move(handle)});
  }

  // Every request comes here (and bodiless POSTs straight from pre-routing).
  void dispatch(const httplib::Request& req, httplib::Response& res, bool bodiless) {
    if (!host_allowed(req))
      return send_error(res, ErrorCode::invalid_argument,
                        "Host \"" + req.get_header_value("Host") + "\" is not served here (DNS rebinding protection)");
    const Route* route = nullptr;
    std::smatch match;
    bool path_known = false;
    for (const Route& r : routes) {
      if (!std::regex_match(req.path, match, r.pattern)) continue;
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
    Call call{req, res, match, {}, Json::object(), authenticated(req)};
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
          call.query[decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
        }
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
      }
    }
    if (!bodiless && !req.body.empty()) {
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
      std::string pattern;
      for (char ch : a.path) {
        if (ch == '.') pattern += '\\';
        pattern += ch;
      }
      add("GET", pattern, false, [&a](Call& c) {
        if (!c.only({})) return;
        send_asset(c, a);
      });
    }

    add("GET", "/api/events", false, [this](Call& c) {
      if (!c.only({})) return;
      watch(c);
    });

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
      auto chunk = std::make_shared<ops::RawLogChunk>(std::move(*first));
      c.res.set_content_provider(
          static_cast<size_t>(end - start), "application/octet-stream",
          [this, task, id, start, chunk](size_t off, size_t len, httplib::DataSink& sink) {
            const int64_t at = start + static_cast<int64_t>(off);
            if (at < chunk->offset || at >= chunk->offset + static_cast<int64_t>(chunk->bytes.size())) {
              auto next = deps.ops->raw_log(task, id, at, ops::kMaxRawChunk);
              if (!next || next->bytes.empty()) return false;  // the log went away or shrank
              *chunk = std::move(*next);
            }
            const size_t skip = static_cast<size_t>(at - chunk->offset);
            const size_t n = std::min(len, chunk->bytes.size() - skip);
            return sink.write(chunk->bytes.data() + skip, n);
          });
    });
  }

  // The UI's pages load scripts and styles from this origin only, run no
  // inline script, and talk to this API only.
  static void send_asset(Call& c, const UiAsset& a) {
    httplib::Response& res = c.res;
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
  void watch(Call& c) {
    const std::string client = c.req.remote_addr;
    if (!take_stream_slot(c, client)) return;
    ops::WatchRequest request{c.authed, std::chrono::duration_cast<Millis>(limits.stream_idle)};
    c.res.set_chunked_content_provider(
        "text/event-stream",
        [this, request](size_t, httplib::DataSink& sink) {
          WatchSseSink out(*this, sink);
          if (auto st = deps.ops->watch(request, out); !st) {
            const std::string frame = "event: error\ndata: " + ops::dump(ops::to_json(st.error())) + "\n\n";
            sink.write(frame.data(), frame.size());
          }
          sink.done();
          return true;
        },
        [this, client](bool) { release_stream_slot(client); });
  }

  // Server-Sent Events for one run's log: ops::Ops::follow, framed.
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
    const std::string client = c.req.remote_addr;
    if (!take_stream_slot(c, client)) return;
    c.res.set_chunked_content_provider(
        "text/event-stream",
        [this, request](size_t, httplib::DataSink& sink) {
          SseSink out(*this, sink);
          if (auto st = deps.ops->follow(request, out); !st) {
            ops::FollowEvent e = ops::FollowEvent::of(ops::FollowEvent::Kind::error);
            e.text = st.error().message;
            out.on_event(e);
            out.flush();
          }
          sink.done();
          return true;
        },
        [this, client](bool) { release_stream_slot(client); });
  }

  // An SSE stream holds a worker: at most max_streams at once, and
  // max_streams_per_client per address. False (and an answer) when full.
  bool take_stream_slot(Call& c, const std::string& client) {
    {
      std::lock_guard lock(streams_mu);
      if (stopping) return send_error(c.res, ErrorCode::busy, "the daemon is shutting down"), false;
      if (streams >= limits.max_streams)
        return send_json(c.res, 429, Json{{"error", "too many log streams open"}}), false;
      if (streams_by_client[client] >= limits.max_streams_per_client)
        return send_json(c.res, 429, Json{{"error", "too many log streams open from " + client}}), false;
      ++streams;
      ++streams_by_client[client];
    }
    c.res.set_header("Cache-Control", "no-cache");
    c.res.set_header("X-Accel-Buffering", "no");
    return true;
  }

  void release_stream_slot(const std::string& client) {
    std::lock_guard lock(streams_mu);
    --streams;
    if (--streams_by_client[client] <= 0) streams_by_client.erase(client);
    streams_cv.notify_all();
  }

  // Gathers frames and writes them once per burst: one write per event
  // would cost a syscall each, times every client. On shutdown it appends
  // the stream's `done` frame and ends.
  class SseWriter {
   public:
    SseWriter(Impl& server, httplib::DataSink& sink, std::function<std::string()> shutdown_frame)
        : server_(server), sink_(sink), shutdown_frame_(std::move(shutdown_frame)) {}
    bool add(const std::string& frame) {
      pending_ += frame;
      return pending_.size() < (256 << 10) || flush();
    }
    bool flush() {
      const auto now = std::chrono::steady_clock::now();
      if (pending_.empty() && now - last_write_ > server_.limits.keepalive) pending_ = ": keepalive\n\n";
      if (server_.stopping && !ended_) {
        ended_ = true;
        pending_ += shutdown_frame_();
        write();
        return false;
      }
      return write();
    }

   private:
    bool write() {
      if (pending_.empty()) return true;
      const bool ok = sink_.is_writable() && sink_.write(pending_.data(), pending_.size());
      pending_.clear();
      last_write_ = std::chrono::steady_clock::now();
      return ok;
    }
    Impl& server_;
    httplib::DataSink& sink_;
    std::function<std::string()> shutdown_frame_;
    std::string pending_;
    bool ended_ = false;
    std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
  };

  class SseSink : public ops::FollowSink {
   public:
    SseSink(Impl& server, httplib::DataSink& sink)
        : writer_(server, sink, [this] {
            ops::FollowEvent done = ops::FollowEvent::of(ops::FollowEvent::Kind::done);
            done.id = last_id_;
            done.text = "shutdown";
            return sse_frame(done);
          }) {}
    bool on_event(const ops::FollowEvent& e) override {
      last_id_ = e.id;
      return writer_.add(sse_frame(e));
    }
    bool flush() override { return writer_.flush(); }

   private:
    SseWriter writer_;
    int64_t last_id_ = 0;
  };

  class WatchSseSink : public ops::WatchSink {
   public:
    WatchSseSink(Impl& server, httplib::DataSink& sink)
        : writer_(server, sink, [] {
            ops::WatchEvent done;
            done.kind = ops::WatchEvent::Kind::done;
            done.text = "shutdown";
            return frame(done);
          }) {}
    bool on_event(const ops::WatchEvent& e) override { return writer_.add(frame(e)); }
    bool flush() override { return writer_.flush(); }
    static std::string frame(const ops::WatchEvent& e) {
      return (e.seq ? "id: " + std::to_string(e.seq) + "\n" : std::string()) + "event: " + ops::to_string(e.kind) +
             "\ndata: " + ops::dump(ops::to_json(e)) + "\n\n";
    }

   private:
    SseWriter writer_;
  };
};

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
  s.server.set_payload_max_length(s.limits.max_body_bytes);
  // Each connection holds a worker while it is read: short timeouts bound
  // how long idle or slow clients can keep workers from others.
  s.server.set_read_timeout(std::chrono::seconds(2));
  s.server.set_write_timeout(std::chrono::seconds(10));
  s.server.set_keep_alive_timeout(2);
  s.server.set_tcp_nodelay(true);  // small JSON replies must not wait for delayed ACKs
  // SO_REUSEADDR only: with cpp-httplib's default SO_REUSEPORT a second
  // daemon could bind the same port and take half the requests.
  s.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  const int workers = s.limits.threads + s.limits.max_streams;
  s.server.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<size_t>(workers)); };
  auto handler = [&s](const httplib::Request& req, httplib::Response& res) { s.dispatch(req, res, false); };
  s.server.Get(".*", handler);
  s.server.Post(".*", handler);
  // A POST without Content-Length (nor chunks) has no body: answer it here,
  // before cpp-httplib would wait for the connection to close.
  s.server.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    drop_brotli(const_cast<httplib::Request&>(req));
    if (req.method == "POST" && !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      s.dispatch(req, res, true);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) send_json(res, 413, Json{{"error", "request body too large (at most 1 MiB)"}});
    else if (res.status == 404) send_error(res, ErrorCode::not_found, "no such route: " + req.method + " " + req.path);
    else send_json(res, res.status, Json{{"error", "HTTP error " + std::to_string(res.status)}});
  });
  s.server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(res, ErrorCode::internal, what);
  });
  if (endpoint->port == 0) {
    s.port = s.server.bind_to_any_port(endpoint->host);
    if (s.port < 0) return fail(ErrorCode::io, "cannot listen on " + listen);
  } else {
    if (!s.server.bind_to_port(endpoint->host, endpoint->port))
      return fail(ErrorCode::io, "cannot listen on " + listen +
                                     ": the address is in use (another daemon?) or not available on this machine");
    s.port = endpoint->port;
  }
  s.thread = std::thread([&s] { s.server.listen_after_bind(); });
  return {};
}

int Server::port() const { return impl_->port; }

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  {
    // Open streams see `stopping` at their next flush (at most every
    // half-second), send `done` and end.
    std::unique_lock lock(s.streams_mu);
    s.streams_cv.wait_for(lock, std::chrono::seconds(3), [&] { return s.streams == 0; });
  }
  s.server.stop();
  if (s.thread.joinable()) s.thread.join();
}

}  // namespace cronkeep::http
