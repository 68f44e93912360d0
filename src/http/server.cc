// The HTTP server: routes, validation, auth, SSE and metrics on cpp-httplib.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "base/units.h"
#include "cron/cron.h"
#include "http/http.h"
#include "http/json.h"
#include "logs/logs.h"

namespace cronkeep::http {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Task names as config accepts them, or a system task's name.
constexpr const char* kTaskPattern = R"(([A-Za-z0-9][A-Za-z0-9._-]{0,127}|cronkeep:[a-z]+))";
constexpr const char* kIdPattern = R"(([0-9]{1,18}))";

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::busy: return 503;
    case ErrorCode::io:
    case ErrorCode::corruption:
    case ErrorCode::internal: return 500;
  }
  return 500;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, json{{"error", message}});
}

void send_error(httplib::Response& res, const Error& e) { send_error(res, status_for(e.code), e.message); }

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

// Parses a whole decimal integer; nullopt for anything else.
std::optional<int64_t> parse_int(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Refuses query parameters a route does not know.
bool only_params(const httplib::Request& req, httplib::Response& res, std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : req.params) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      send_error(res, 400, "unknown query parameter \"" + key + "\"" +
                               (list.empty() ? std::string(" (this route takes none)") : " (expected " + list + ")"));
      return false;
    }
  }
  return true;
}

// An integer query parameter within [lo, hi]; false (and a 400) when bad.
bool int_param(const httplib::Request& req, httplib::Response& res, const char* name, int64_t lo, int64_t hi,
               std::optional<int64_t>& out) {
  if (!req.has_param(name)) return true;
  auto v = parse_int(req.get_param_value(name));
  if (!v || *v < lo || *v > hi) {
    send_error(res, 400, std::string(name) + ": expected an integer from " + std::to_string(lo) + " to " +
                             std::to_string(hi) + ", got \"" + req.get_param_value(name) + "\"");
    return false;
  }
  out = v;
  return true;
}

std::string sse_event(const char* type, int64_t id, const json& data) {
  return "id: " + std::to_string(id) + "\nevent: " + type + "\ndata: " +
         data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
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

}  // namespace

struct Server::Impl {
  Deps deps;
  Limits limits;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};

  std::mutex streams_mu;
  std::condition_variable streams_cv;
  int streams = 0;
  std::map<std::string, int> streams_by_client;

  // Finished runs by task and status since start (for /metrics).
  std::mutex counts_mu;
  std::map<std::pair<std::string, std::string>, uint64_t> finished;
  std::unique_ptr<events::Subscription> counter_sub;
  std::atomic<uint64_t> disk_pressure_events{0};
  std::thread counter;

  std::mutex dir_size_mu;
  int64_t log_dir_bytes = 0;
  TimePoint log_dir_measured{};

  bool authenticated(const httplib::Request& req) const {
    const std::string h = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (h.size() <= kBearer.size() || h.compare(0, kBearer.size(), kBearer) != 0) return false;
    return constant_time_equal(std::string_view(h).substr(kBearer.size()), deps.token);
  }

  bool require_auth(const httplib::Request& req, httplib::Response& res) const {
    if (authenticated(req)) return true;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, req.has_header("Authorization") ? "invalid bearer token" : "missing bearer token");
    return false;
  }

  // A task the caller may see: configured, or with history; system tasks
  // only for authenticated callers.
  bool task_visible(const std::string& task, const httplib::Request& req) {
    const bool system = task.find(':') != std::string::npos;
    if (system) return authenticated(req) && (task == retention::kRetentionTask || task == retention::kCompactorTask);
    if (deps.config->find_task(task)) return true;
    auto runs = deps.store->list_runs(store::RunQuery{task, 1, std::nullopt, std::nullopt});
    return runs && !runs->empty();
  }

  // The run `id` of `task`, or a 404/500 already sent.
  std::optional<store::Run> find_run(const httplib::Request& req, httplib::Response& res) {
    const std::string task = req.matches[1];
    if (!task_visible(task, req)) {
      send_error(res, 404, "task " + task + " not found");
      return std::nullopt;
    }
    auto id = parse_int(req.matches[2]);
    auto run = deps.store->get_run(id.value_or(0));
    if (!run) {
      send_error(res, run.error());
      return std::nullopt;
    }
    if (run->task != task) {
      send_error(res, 404, "run " + std::to_string(*id) + " is not a run of " + task);
      return std::nullopt;
    }
    return *run;
  }

  // Parses a JSON object body, refusing unknown fields. nullopt = 400 sent.
  std::optional<json> body_object(const httplib::Request& req, httplib::Response& res,
                                  std::initializer_list<const char*> fields) {
    if (req.body.empty()) return json::object();
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) {
      send_error(res, 400, "malformed JSON body");
      return std::nullopt;
    }
    if (!body.is_object()) {
      send_error(res, 400, "the body must be a JSON object");
      return std::nullopt;
    }
    for (const auto& [key, value] : body.items()) {
      bool known = false;
      for (const char* f : fields) known = known || key == f;
      if (!known) {
        send_error(res, 400, "unknown field \"" + key + "\"");
        return std::nullopt;
      }
    }
    return body;
  }

  void routes() {
    server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, json{{"status", "ok"}});
    });

    server.Get("/api/tasks", [this](const httplib::Request& req, httplib::Response& res) {
      if (!only_params(req, res, {})) return;
      const bool authed = authenticated(req);
      std::map<std::string, store::TaskSummary> summaries;
      if (auto list = deps.store->task_summaries()) {
        for (auto& s : *list) summaries[s.task] = std::move(s);
      } else {
        return send_error(res, list.error());
      }
      json out = json::array();
      std::set<std::string> listed;
      for (const scheduler::TaskView& t : deps.scheduler->tasks()) {
        if (t.system && !authed) continue;
        json j{{"task", t.name},       {"cron", t.cron},     {"timezone", t.timezone}, {"configured", true},
               {"system", t.system},   {"running", t.running}, {"queued", t.queued},
               {"next_fire", time_json(t.next_fire)}};
        auto it = summaries.find(t.name);
        j["runs"] = it == summaries.end() ? 0 : it->second.runs;
        j["last_run"] = it == summaries.end() || !it->second.last_run ? json(nullptr) : run_json(*it->second.last_run);
        out.push_back(std::move(j));
        listed.insert(t.name);
      }
      for (const auto& [name, s] : summaries) {
        if (listed.count(name) || (name.find(':') != std::string::npos && !authed)) continue;
        out.push_back(json{{"task", name},
                           {"configured", false},
                           {"system", name.find(':') != std::string::npos},
                           {"runs", s.runs},
                           {"last_run", s.last_run ? run_json(*s.last_run) : json(nullptr)}});
      }
      send_json(res, 200, out);
    });

    server.Get(std::string("/api/tasks/") + kTaskPattern + "/runs",
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (!only_params(req, res, {"limit", "before", "status"})) return;
                 const std::string task = req.matches[1];
                 if (!task_visible(task, req)) return send_error(res, 404, "task " + task + " not found");
                 std::optional<int64_t> limit, before;
                 if (!int_param(req, res, "limit", 1, 1000, limit) || !int_param(req, res, "before", 1, INT64_MAX, before))
                   return;
                 store::RunQuery q{task, static_cast<int>(limit.value_or(50)), before, std::nullopt};
                 if (req.has_param("status")) {
                   q.status = store::parse_status(req.get_param_value("status"));
                   if (!q.status) return send_error(res, 400, "status: unknown status \"" + req.get_param_value("status") + "\"");
                 }
                 auto runs = deps.store->list_runs(q);
                 if (!runs) return send_error(res, runs.error());
                 json items = json::array();
                 for (const auto& r : *runs) items.push_back(run_json(r));
                 json out{{"runs", items}};
                 out["next_before"] = static_cast<int>(runs->size()) == q.limit ? json(runs->back().id) : json(nullptr);
                 send_json(res, 200, out);
               });

    server.Get(std::string("/api/tasks/") + kTaskPattern + "/runs/" + kIdPattern,
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (!only_params(req, res, {})) return;
                 if (auto run = find_run(req, res)) send_json(res, 200, run_json(*run));
               });

    server.Get(std::string("/api/tasks/") + kTaskPattern + "/runs/" + kIdPattern + "/log",
               [this](const httplib::Request& req, httplib::Response& res) {
                 if (!only_params(req, res, {"from_line", "lines", "since", "tail"})) return;
                 auto run = find_run(req, res);
                 if (!run) return;
                 logs::ReadRequest r;
                 std::optional<int64_t> from, lines, tail;
                 if (!int_param(req, res, "from_line", 1, INT64_MAX, from) ||
                     !int_param(req, res, "lines", 1, 10'000, lines) || !int_param(req, res, "tail", 1, 10'000, tail))
                   return;
                 if (from) r.from_line = *from;
                 r.lines = lines.value_or(1000);
                 r.tail = tail;
                 if (req.has_param("since")) {
                   r.since = parse_rfc3339(req.get_param_value("since"));
                   if (!r.since) return send_error(res, 400, "since: expected an RFC 3339 time, e.g. 2026-11-23T04:00:00Z");
                 }
                 if (run->log_path.empty()) return send_error(res, 404, "run " + std::to_string(run->id) + " has no log");
                 auto page = logs::read_log(deps.config->daemon.data_dir + "/" + run->log_path, r);
                 if (!page) return send_error(res, page.error());
                 json lines_json = json::array();
                 for (const auto& l : page->lines) lines_json.push_back(line_json(l));
                 send_json(res, 200,
                           json{{"lines", lines_json},
                                {"first_available", page->first_available},
                                {"next_line", page->next_line},
                                {"at_end", page->at_end},
                                {"partial_last_line", page->partial_last_line},
                                {"finalized", page->finalized},
                                {"run_status", store::to_string(run->status)},
                                {"note", page->note}});
               });

    server.Get(std::string("/api/tasks/") + kTaskPattern + "/runs/" + kIdPattern + "/log/stream",
               [this](const httplib::Request& req, httplib::Response& res) { stream(req, res); });

    server.Post(std::string("/api/tasks/") + kTaskPattern + "/run",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (!require_auth(req, res) || !only_params(req, res, {"wait"})) return;
                  const std::string task = req.matches[1];
                  const std::string wait = req.has_param("wait") ? req.get_param_value("wait") : "false";
                  if (wait != "true" && wait != "false") return send_error(res, 400, "wait: expected true or false");
                  if (!body_object(req, res, {})) return;
                  std::unique_ptr<events::Subscription> sub;
                  if (wait == "true") sub = deps.bus->subscribe(events::Filter{std::nullopt, task});
                  auto id = deps.scheduler->run_now(task);
                  if (!id) return send_error(res, id.error());
                  if (sub) {
                    while (!stopping) {
                      auto run = deps.store->get_run(*id);
                      if (run && store::is_terminal(run->status)) return send_json(res, 200, run_json(*run));
                      sub->take(std::chrono::milliseconds(500));
                    }
                    return send_error(res, 503, "the daemon is shutting down; run " + std::to_string(*id) + " was started");
                  }
                  auto run = deps.store->get_run(*id);
                  if (!run) return send_error(res, run.error());
                  send_json(res, 202, run_json(*run));
                });

    server.Post(std::string("/api/tasks/") + kTaskPattern + "/runs/" + kIdPattern + "/cancel",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (!require_auth(req, res) || !only_params(req, res, {}) || !body_object(req, res, {})) return;
                  auto run = find_run(req, res);
                  if (!run) return;
                  if (store::is_terminal(run->status))
                    return send_error(res, 409, "run " + std::to_string(run->id) + " already ended (" +
                                                    store::to_string(run->status) + ")");
                  if (auto st = deps.scheduler->cancel(run->id); !st) return send_error(res, st.error());
                  send_json(res, 202, json{{"id", run->id}, {"cancelling", true}});
                });

    server.Post("/api/maintenance/purge", [this](const httplib::Request& req, httplib::Response& res) {
      if (!require_auth(req, res) || !only_params(req, res, {})) return;
      auto body = body_object(req, res, {"older_than", "task", "status", "limit", "dry_run"});
      if (!body) return;
      if (!body->contains("older_than") || !(*body)["older_than"].is_string())
        return send_error(res, 400, "older_than: required, a duration string such as \"30d\"");
      std::optional<std::string> task;
      std::optional<std::string> status;
      std::optional<int64_t> limit;
      bool dry_run = false;
      if (body->contains("task") && !(*body)["task"].is_null()) {
        if (!(*body)["task"].is_string()) return send_error(res, 400, "task: expected a string");
        task = (*body)["task"].get<std::string>();
      }
      if (body->contains("status") && !(*body)["status"].is_null()) {
        if (!(*body)["status"].is_string()) return send_error(res, 400, "status: expected a string");
        status = (*body)["status"].get<std::string>();
      }
      if (body->contains("limit") && !(*body)["limit"].is_null()) {
        if (!(*body)["limit"].is_number_integer()) return send_error(res, 400, "limit: expected an integer");
        limit = (*body)["limit"].get<int64_t>();
      }
      if (body->contains("dry_run")) {
        if (!(*body)["dry_run"].is_boolean()) return send_error(res, 400, "dry_run: expected true or false");
        dry_run = (*body)["dry_run"].get<bool>();
      }
      auto request = retention::make_purge_request((*body)["older_than"].get<std::string>(), task,
                                                   status ? std::optional<std::string_view>(*status) : std::nullopt,
                                                   limit, dry_run);
      if (!request) return send_error(res, request.error());
      auto out = retention::manual_purge(*deps.store, *deps.executor, *request, *deps.clock);
      if (!out) return send_error(res, out.error());
      json tasks = json::array();
      int64_t runs = 0, bytes = 0;
      for (const auto& v : out->per_task) {
        tasks.push_back({{"task", v.task}, {"runs", v.runs}, {"log_bytes", v.log_bytes}});
        runs += v.runs;
        bytes += v.log_bytes;
      }
      json j{{"dry_run", dry_run}, {"cutoff", format_rfc3339(out->cutoff)}, {"tasks", tasks},
             {"message", out->message}, {"run_id", out->run_id ? json(*out->run_id) : json(nullptr)}};
      j["runs"] = dry_run ? runs : out->report.rows;
      j["log_bytes"] = dry_run ? bytes : out->report.log_bytes;
      if (!dry_run) {
        j["files_deleted"] = out->report.files_deleted;
        j["file_errors"] = out->report.file_errors;
      }
      send_json(res, 200, j);
    });

    server.Post("/api/maintenance/compact", [this](const httplib::Request& req, httplib::Response& res) {
      if (!require_auth(req, res) || !only_params(req, res, {})) return;
      auto body = body_object(req, res, {"full"});
      if (!body) return;
      bool full = false;
      if (body->contains("full")) {
        if (!(*body)["full"].is_boolean()) return send_error(res, 400, "full: expected true or false");
        full = (*body)["full"].get<bool>();
      }
      auto out = retention::manual_compact(*deps.store, full ? retention::CompactMode::full : retention::CompactMode::incremental,
                                           *deps.clock);
      if (!out) return send_error(res, out.error());
      send_json(res, 200, json{{"message", out->message},
                               {"pages_freed", out->report.pages_freed},
                               {"bytes_reclaimed", std::max<int64_t>(0, out->report.bytes_before - out->report.bytes_after)},
                               {"run_id", out->run_id ? json(*out->run_id) : json(nullptr)}});
    });

    server.Get("/api/maintenance/status", [this](const httplib::Request& req, httplib::Response& res) {
      if (!only_params(req, res, {})) return;
      auto status = maintenance_status(*deps.store, *deps.config, deps.clock->now(), cached_log_dir_bytes());
      if (!status) return send_error(res, status.error());
      send_json(res, 200, *status);
    });

    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });

    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) send_error(res, 404, "no such route: " + req.method + " " + req.path);
      else if (res.status == 413) send_error(res, 413, "request body too large (at most 1 MiB)");
      else send_error(res, res.status, "HTTP error " + std::to_string(res.status));
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = std::string("internal error: ") + e.what();
      } catch (...) {
      }
      send_error(res, 500, what);
    });
  }

  int64_t cached_log_dir_bytes() {
    std::lock_guard lock(dir_size_mu);
    const TimePoint now = deps.clock->now();
    if (now - log_dir_measured > std::chrono::seconds(30) || log_dir_measured == TimePoint{}) {
      log_dir_bytes = logs::directory_bytes(deps.config->daemon.data_dir + "/logs");
      log_dir_measured = now;
    }
    return log_dir_bytes;
  }

  // Server-Sent Events for one run's log: replay from the file, then follow
  // the bus; gaps (a slow client's dropped events) are refilled from the file.
  void stream(const httplib::Request& req, httplib::Response& res) {
    if (!only_params(req, res, {"from"})) return;
    auto run = find_run(req, res);
    if (!run) return;
    std::optional<int64_t> from;
    if (!int_param(req, res, "from", -100'000, INT64_MAX, from)) return;
    // A run that is still queued has no log yet: wait for it to start.
    for (int i = 0; i < 600 && run->log_path.empty() && !store::is_terminal(run->status) && !stopping; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto again = deps.store->get_run(run->id);
      if (!again) return send_error(res, again.error());
      run = std::move(*again);
    }
    if (run->log_path.empty()) return send_error(res, 404, "run " + std::to_string(run->id) + " has no log");
    int64_t start = from.value_or(1);
    if (req.has_header("Last-Event-ID")) {
      auto last = parse_int(req.get_header_value("Last-Event-ID"));
      if (!last || *last < 0) return send_error(res, 400, "Last-Event-ID: expected a line number");
      start = *last + 1;
    }
    const std::string client = req.remote_addr;
    {
      std::lock_guard lock(streams_mu);
      if (stopping) return send_error(res, 503, "the daemon is shutting down");
      if (streams >= limits.max_streams) return send_error(res, 429, "too many log streams open");
      if (streams_by_client[client] >= limits.max_streams_per_client)
        return send_error(res, 429, "too many log streams open from " + client);
      ++streams;
      ++streams_by_client[client];
    }
    auto sub = std::shared_ptr<events::Subscription>(deps.bus->subscribe(events::Filter{run->id, std::nullopt}));
    const std::string path = deps.config->daemon.data_dir + "/" + run->log_path;
    const int64_t run_id = run->id;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, sub, path, run_id, start](size_t, httplib::DataSink& sink) mutable {
          follow(sink, *sub, path, run_id, start);
          sink.done();
          return true;
        },
        [this, client](bool) {
          std::lock_guard lock(streams_mu);
          --streams;
          if (--streams_by_client[client] <= 0) streams_by_client.erase(client);
          streams_cv.notify_all();
        });
  }

  void follow(httplib::DataSink& sink, events::Subscription& sub, const std::string& path, int64_t run_id,
              int64_t start) {
    // Events are gathered and written once per batch: one write per event
    // would cost a syscall each, times every client.
    std::string pending;
    auto flush = [&]() {
      if (pending.empty()) return true;
      const bool ok = sink.is_writable() && sink.write(pending.data(), pending.size());
      pending.clear();
      return ok;
    };
    auto write = [&](const std::string& s) {
      pending += s;
      return pending.size() < (256 << 10) || flush();
    };
    int64_t next = start;
    int64_t last_id = start - 1;
    // Sends complete lines from the file from `next` on; false when the client is gone.
    auto replay = [&]() -> bool {
      while (true) {
        logs::ReadRequest r;
        if (next < 0) r.tail = -next;
        else r.from_line = next;
        r.lines = 1000;
        auto page = logs::read_log(path, r);
        if (!page) {
          write(sse_event("error", last_id, json{{"error", page.error().message}}));
          flush();
          return false;
        }
        for (const auto& l : page->lines) {
          if (l.number == page->next_line) break;  // a partial last line: wait until it is complete
          last_id = l.number;
          if (!write(sse_event("line", l.number, line_json(l)))) return false;
        }
        const int64_t before = next;
        next = page->next_line;
        if (!flush()) return false;
        if (page->lines.empty() || page->at_end || next == before) return true;
      }
    };
    auto done = [&](const std::string& status) {
      if (!replay()) return;
      write(sse_event("done", last_id, json{{"status", status}}));
      flush();
    };
    if (!replay()) return;
    auto current = deps.store->get_run(run_id);
    if (current && store::is_terminal(current->status)) return done(store::to_string(current->status));
    auto idle_since = std::chrono::steady_clock::now();
    auto last_write = idle_since;
    while (!stopping) {
      events::Batch batch = sub.take(std::chrono::milliseconds(500));
      const auto now = std::chrono::steady_clock::now();
      if (batch.dropped > 0) {
        if (!write(sse_event("dropped", last_id, json{{"count", batch.dropped}}))) return;
        if (!replay()) return;  // the file has what the bus dropped
        last_write = now;
      }
      for (const events::Event& e : batch.events) {
        idle_since = now;
        switch (e.kind) {
          case events::Kind::log_line:
            if (e.line < next) break;
            if (e.line > next && !replay()) return;  // fill a gap from the file
            if (e.line != next) break;
            if (!write(sse_event("line", e.line,
                                 json{{"line", e.line},
                                      {"stream", std::string(1, e.stream)},
                                      {"time", format_rfc3339(from_unix_ms(e.time_ms), true)},
                                      {"text", e.text}})))
              return;
            last_id = e.line;
            next = e.line + 1;
            break;
          case events::Kind::log_rotated:
            if (!write(sse_event("rotated", last_id, json{{"text", e.text}}))) return;
            break;
          case events::Kind::log_truncated:
          case events::Kind::disk_pressure:
            if (!write(sse_event("dropped", last_id, json{{"text", e.text}, {"bytes", e.count}}))) return;
            break;
          case events::Kind::run_state: {
            auto st = store::parse_status(e.text);
            if (st && store::is_terminal(*st)) return done(e.text);
            break;
          }
        }
        last_write = now;
      }
      if (!flush()) return;
      if (now - idle_since > limits.stream_idle) {
        write(sse_event("done", last_id, json{{"status", "idle_timeout"}}));
        flush();
        return;
      }
      if (now - last_write > limits.keepalive) {
        if (!write(": keepalive\n\n") || !flush()) return;
        last_write = now;
        // The run may have ended while its last event was lost.
        auto r = deps.store->get_run(run_id);
        if (r && store::is_terminal(r->status)) return done(store::to_string(r->status));
      }
    }
    done("shutdown");
  }

  std::string metrics() {
    std::ostringstream out;
    {
      std::lock_guard lock(counts_mu);
      out << "# HELP cronkeep_runs_finished_total Runs that reached a terminal status since the daemon started.\n"
             "# TYPE cronkeep_runs_finished_total counter\n";
      for (const auto& [key, n] : finished)
        out << "cronkeep_runs_finished_total{task=\"" << prom_escape(key.first) << "\",status=\"" << key.second
            << "\"} " << n << "\n";
    }
    out << "# HELP cronkeep_runs_running Runs in flight.\n# TYPE cronkeep_runs_running gauge\n";
    out << "# HELP cronkeep_runs_queued Runs waiting for a slot.\n# TYPE cronkeep_runs_queued gauge\n";
    for (const auto& t : deps.scheduler->tasks()) {
      out << "cronkeep_runs_running{task=\"" << prom_escape(t.name) << "\"} " << t.running << "\n";
      out << "cronkeep_runs_queued{task=\"" << prom_escape(t.name) << "\"} " << t.queued << "\n";
    }
    if (auto last = deps.store->last_outcomes()) {
      out << "# HELP cronkeep_last_success_timestamp_seconds When each task last succeeded.\n"
             "# TYPE cronkeep_last_success_timestamp_seconds gauge\n";
      for (const auto& l : *last)
        if (l.last_success)
          out << "cronkeep_last_success_timestamp_seconds{task=\"" << prom_escape(l.task) << "\"} "
              << to_unix_ms(*l.last_success) / 1000.0 << "\n";
      out << "# HELP cronkeep_last_failure_timestamp_seconds When each task last failed.\n"
             "# TYPE cronkeep_last_failure_timestamp_seconds gauge\n";
      for (const auto& l : *last)
        if (l.last_failure)
          out << "cronkeep_last_failure_timestamp_seconds{task=\"" << prom_escape(l.task) << "\"} "
              << to_unix_ms(*l.last_failure) / 1000.0 << "\n";
    }
    const scheduler::Lateness late = deps.scheduler->lateness();
    out << "# HELP cronkeep_scheduler_lateness_seconds How late scheduled runs started.\n"
           "# TYPE cronkeep_scheduler_lateness_seconds histogram\n";
    uint64_t cumulative = 0;
    for (size_t b = 0; b < scheduler::Lateness::kBuckets; ++b) {
      cumulative += late.counts[b];
      out << "cronkeep_scheduler_lateness_seconds_bucket{le=\"" << scheduler::Lateness::kBoundsMs[b] / 1000.0 << "\"} "
          << cumulative << "\n";
    }
    out << "cronkeep_scheduler_lateness_seconds_bucket{le=\"+Inf\"} " << late.count << "\n"
        << "cronkeep_scheduler_lateness_seconds_sum " << late.sum_ms / 1000.0 << "\n"
        << "cronkeep_scheduler_lateness_seconds_count " << late.count << "\n";
    if (auto m = deps.store->maintenance_summaries()) {
      int64_t rows = 0, files = 0, bytes = 0, reclaimed = 0;
      for (const auto& s : *m) {
        rows += s.total.rows_deleted;
        files += s.total.files_deleted;
        bytes += s.total.log_bytes_freed;
        reclaimed += s.total.db_bytes_reclaimed;
      }
      out << "# TYPE cronkeep_retention_rows_deleted_total counter\ncronkeep_retention_rows_deleted_total " << rows
          << "\n# TYPE cronkeep_retention_files_deleted_total counter\ncronkeep_retention_files_deleted_total " << files
          << "\n# TYPE cronkeep_retention_log_bytes_freed_total counter\ncronkeep_retention_log_bytes_freed_total "
          << bytes << "\n# TYPE cronkeep_compactor_bytes_reclaimed_total counter\ncronkeep_compactor_bytes_reclaimed_total "
          << reclaimed << "\n";
    }
    if (auto st = deps.store->db_stats()) {
      out << "# TYPE cronkeep_database_bytes gauge\ncronkeep_database_bytes " << st->db_bytes()
          << "\n# TYPE cronkeep_database_free_pages gauge\ncronkeep_database_free_pages " << st->freelist_count
          << "\n# TYPE cronkeep_wal_bytes gauge\ncronkeep_wal_bytes " << st->wal_bytes << "\n";
    }
    out << "# TYPE cronkeep_log_dir_bytes gauge\ncronkeep_log_dir_bytes " << cached_log_dir_bytes() << "\n";
    out << "# TYPE cronkeep_log_events_dropped_total counter\ncronkeep_log_events_dropped_total "
        << deps.bus->total_dropped() << "\n";
    out << "# HELP cronkeep_log_disk_pressure_total log.disk_pressure events since the daemon started.\n"
           "# TYPE cronkeep_log_disk_pressure_total counter\ncronkeep_log_disk_pressure_total "
        << disk_pressure_events.load() << "\n";
    {
      std::lock_guard lock(streams_mu);
      out << "# TYPE cronkeep_sse_clients gauge\ncronkeep_sse_clients " << streams << "\n";
    }
    return out.str();
  }
};

Server::Server(Deps deps, Limits limits) : impl_(std::make_unique<Impl>()) {
  impl_->deps = std::move(deps);
  impl_->limits = limits;
}

Server::~Server() { stop(); }

Status Server::start(const std::string& listen) {
  Impl& s = *impl_;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return fail(ErrorCode::invalid_argument, "listen: expected host:port, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto port = parse_int(listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) return fail(ErrorCode::invalid_argument, "listen: bad port in " + listen);
  s.routes();
  s.server.set_payload_max_length(s.limits.max_body_bytes);
  // Each connection holds a worker while it is read: short timeouts bound
  // how long idle or slow clients can keep workers from others.
  s.server.set_read_timeout(std::chrono::seconds(2));
  s.server.set_write_timeout(std::chrono::seconds(10));
  s.server.set_keep_alive_timeout(2);
  s.server.set_tcp_nodelay(true);  // small JSON replies must not wait for delayed ACKs
  const int workers = s.limits.threads + s.limits.max_streams;
  s.server.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<size_t>(workers)); };
  if (*port == 0) {
    s.port = s.server.bind_to_any_port(host);
    if (s.port < 0) return fail(ErrorCode::io, "cannot listen on " + listen);
  } else {
    if (!s.server.bind_to_port(host, static_cast<int>(*port)))
      return fail(ErrorCode::io, "cannot listen on " + listen + ": address in use or not available");
    s.port = static_cast<int>(*port);
  }
  s.counter_sub = s.deps.bus->subscribe();
  s.counter = std::thread([&s] {
    while (!s.counter_sub->closed()) {
      events::Batch b = s.counter_sub->take(std::chrono::milliseconds(1000));
      for (const auto& e : b.events) {
        if (e.kind == events::Kind::disk_pressure) s.disk_pressure_events.fetch_add(1);
        if (e.kind != events::Kind::run_state) continue;
        auto st = store::parse_status(e.text);
        if (!st || !store::is_terminal(*st)) continue;
        std::lock_guard lock(s.counts_mu);
        ++s.finished[{e.task, e.text}];
      }
    }
  });
  s.thread = std::thread([&s] { s.server.listen_after_bind(); });
  return {};
}

int Server::port() const { return impl_->port; }

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  {
    // Open streams see `stopping`, send `done` and end within a poll interval.
    std::unique_lock lock(s.streams_mu);
    s.streams_cv.wait_for(lock, std::chrono::seconds(3), [&] { return s.streams == 0; });
  }
  s.server.stop();
  if (s.thread.joinable()) s.thread.join();
  if (s.counter_sub) s.counter_sub->close();
  if (s.counter.joinable()) s.counter.join();
}

Result<std::string> load_or_create_token(const config::Config& config) {
  const bool generated = config.daemon.token_file.empty();
  const std::string path = generated ? config.daemon.data_dir + "/token" : config.daemon.token_file;
  std::ifstream in(path);
  if (in) {
    std::string token;
    std::getline(in, token);
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) return fail(ErrorCode::invalid_argument, "token file " + path + " is empty");
    return token;
  }
  if (!generated) return fail(ErrorCode::io, "cannot read token_file " + path + ": " + std::strerror(errno));
  std::random_device rd;
  std::string token;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    const unsigned v = rd() & 0xff;
    token += kHex[v >> 4];
    token += kHex[v & 0xf];
  }
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail(ErrorCode::io, "cannot create " + path + ": " + std::strerror(errno));
  const std::string line = token + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::rename(tmp.c_str(), path.c_str()) != 0)
    return fail(ErrorCode::io, "cannot write " + path + ": " + std::strerror(errno));
  return token;
}

}  // namespace cronkeep::http
