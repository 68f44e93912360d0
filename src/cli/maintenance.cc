// The maintenance commands. Each mutating one takes the data directory's
// lock first, so it never runs beside a daemon, and records itself as a run
// of the matching system task (trigger manual), so a purge shows up in the
// history like any other.
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "base/clock.h"
#include "base/file_lock.h"
#include "base/units.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cron/cron.h"
#include "http/json.h"
#include "logs/logs.h"
#include "retention/retention.h"
#include "store/store.h"

namespace cronkeep::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Writable {
  FileLock lock;
  std::unique_ptr<store::Store> store;
};

int fail_with(const std::string& message, int code = kFailure) {
  std::cerr << "cronkeep: " << message << "\n";
  return code;
}

Result<Writable> open_writable(const config::Config& cfg) {
  const std::string& dir = cfg.daemon.data_dir;
  if (!fs::exists(dir + "/cronkeep.db"))
    return fail(ErrorCode::not_found, "no history yet: " + dir + "/cronkeep.db does not exist (has the daemon run?)");
  auto lock = FileLock::acquire(dir + "/cronkeep.lock");
  if (!lock)
    return fail(ErrorCode::busy, lock.error().message +
                                     ": a daemon is running on this data directory; stop it first");
  auto store = store::open_sqlite(dir + "/cronkeep.db");
  if (!store) return tl::unexpected(store.error());
  return Writable{std::move(*lock), std::move(*store)};
}

Result<std::unique_ptr<store::Store>> open_reader(const config::Config& cfg) {
  const std::string path = cfg.daemon.data_dir + "/cronkeep.db";
  if (!fs::exists(path)) return fail(ErrorCode::not_found, "no history yet: " + path + " does not exist (has the daemon run?)");
  return store::open_sqlite(path, store::OpenOptions{.read_only = true});
}


// Prints a daemon's reply: its message (or the JSON), or its error.
int print_reply(const Result<Reply>& reply, bool as_json) {
  if (!reply) return fail_with(reply.error().message);
  if (reply->status >= 400) return fail_with(reply->body.value("error", "HTTP " + std::to_string(reply->status)));
  if (as_json) std::cout << reply->body.dump(2) << "\n";
  else std::cout << reply->body.value("message", reply->body.dump()) << "\n";
  return reply->body.value("file_errors", 0) == 0 ? kOk : kFailure;
}

}  // namespace

int cmd_purge(const config::Config& cfg, const PurgeArgs& a) {
  auto req = retention::make_purge_request(
      a.older_than, a.task.empty() ? std::nullopt : std::optional<std::string>(a.task),
      a.status.empty() ? std::nullopt : std::optional<std::string_view>(a.status),
      a.limit != 0 ? std::optional<int64_t>(a.limit) : std::nullopt, a.dry_run);
  if (!req) {
    std::string m = req.error().message;  // "older_than: …" names the flag --older-than
    if (m.rfind("older_than", 0) == 0) m.replace(0, 10, "older-than");
    return fail_with("--" + m, kUsage);
  }
  auto daemon = DaemonClient::connect(cfg);
  if (!daemon) return fail_with(daemon.error().message);
  if (*daemon) {
    json body{{"older_than", a.older_than}, {"dry_run", a.dry_run}};
    if (!a.task.empty()) body["task"] = a.task;
    if (!a.status.empty()) body["status"] = a.status;
    if (a.limit != 0) body["limit"] = a.limit;
    auto reply = (*daemon)->call("POST", "/api/maintenance/purge", body, 3600);
    return print_reply(reply, a.json);
  }
  SystemClock clock;
  Result<retention::PurgeOutcome> out = fail(ErrorCode::internal, "not run");
  if (a.dry_run) {
    // A dry run only reads: the store is opened read-only and the executor
    // is never asked to delete.
    auto reader = open_reader(cfg);
    if (!reader) return fail_with(reader.error().message);
    retention::Executor idle(**reader, cfg.daemon.data_dir, 1);
    out = retention::manual_purge(**reader, idle, *req, clock);
  } else {
    auto w = open_writable(cfg);
    if (!w) return fail_with(w.error().message);
    retention::Executor executor(*w->store, cfg.daemon.data_dir, cfg.retention.batch_size);
    const bool tty = ::isatty(STDERR_FILENO);
    out = retention::manual_purge(*w->store, executor, *req, clock, [&](int64_t done, int64_t total) {
      if (!tty || total < 1000) return;
      const int width = 40;
      const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
      std::cerr << "\rpurging [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] " << done << "/"
                << total << (done == total ? "\n" : "") << std::flush;
    });
  }
  if (!out) return fail_with(out.error().message);
  int64_t runs = 0, bytes = 0;
  json tasks = json::array();
  for (const auto& v : out->per_task) {
    tasks.push_back({{"task", v.task}, {"runs", v.runs}, {"log_bytes", v.log_bytes}});
    runs += v.runs;
    bytes += v.log_bytes;
  }
  if (a.json) {
    json j{{"dry_run", a.dry_run}, {"cutoff", format_rfc3339(out->cutoff)}, {"tasks", tasks}, {"message", out->message}};
    if (!a.dry_run) {
      j["runs"] = out->report.rows;
      j["log_bytes"] = out->report.log_bytes;
      j["files_deleted"] = out->report.files_deleted;
      j["files_missing"] = out->report.files_missing;
      j["file_errors"] = out->report.file_errors;
    } else {
      j["runs"] = runs;
      j["log_bytes"] = bytes;
    }
    std::cout << j.dump(2) << "\n";
  } else if (a.dry_run) {
    std::cout << "dry run: nothing deleted; terminal runs finished before " << format_rfc3339(out->cutoff) << "\n";
    std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "TASK", "RUNS", "LOG BYTES");
    for (const auto& v : out->per_task)
      std::cout << fmt::format("{:<32} {:>10} {:>12}\n", v.task, v.runs, format_size(static_cast<uint64_t>(v.log_bytes)));
    std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "total", runs, format_size(static_cast<uint64_t>(bytes)));
  } else {
    std::cout << out->message << "\n";
  }
  return a.dry_run || out->report.file_errors == 0 ? kOk : kFailure;
}

int cmd_compact(const config::Config& cfg, bool full) {
  auto daemon = DaemonClient::connect(cfg);
  if (!daemon) return fail_with(daemon.error().message);
  if (*daemon) return print_reply((*daemon)->call("POST", "/api/maintenance/compact", json{{"full", full}}, 3600), false);
  auto w = open_writable(cfg);
  if (!w) return fail_with(w.error().message);
  auto out = retention::manual_compact(*w->store, full ? retention::CompactMode::full : retention::CompactMode::incremental,
                                       SystemClock());
  if (!out) return fail_with(out.error().message);
  std::cout << out->message << "\n";
  return kOk;
}

int cmd_status(const config::Config& cfg, bool as_json) {
  auto daemon = DaemonClient::connect(cfg);
  if (!daemon) return fail_with(daemon.error().message);
  if (*daemon) {
    auto reply = (*daemon)->call("GET", "/api/maintenance/status");
    if (!reply) return fail_with(reply.error().message);
    if (reply->status != 200) return fail_with(reply->body.value("error", "HTTP " + std::to_string(reply->status)));
    print_status(reply->body, as_json);
    return kOk;
  }
  auto reader = open_reader(cfg);
  if (!reader) return fail_with(reader.error().message);
  auto status = http::maintenance_status(**reader, cfg, SystemClock().now(), logs::directory_bytes(cfg.daemon.data_dir + "/logs"));
  if (!status) return fail_with(status.error().message);
  print_status(*status, as_json);
  return kOk;
}

void print_status(const json& out, bool as_json) {
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const json& t : out["system_tasks"]) {
    std::cout << t["task"].get<std::string>() << " (" << t["schedule"].get<std::string>() << ")\n";
    if (t["last_run"].is_null()) {
      std::cout << "  last run: never\n";
    } else {
      const json& r = t["last_run"];
      std::cout << "  last run: #" << r["id"] << " " << r["status"].get<std::string>() << " ("
                << r["trigger"].get<std::string>() << ") "
                << (r["finished_at"].is_null() ? "" : r["finished_at"].get<std::string>()) << "\n    "
                << r["message"].get<std::string>() << "\n";
    }
    std::cout << "  next run: " << (t["next_run"].is_null() ? "-" : t["next_run"].get<std::string>()) << "\n";
    if (!t["total_figures"].is_null()) {
      const json& f = t["total_figures"];
      std::cout << fmt::format("  in total: {} row(s) and {} file(s) deleted, {} of logs freed, {} of database reclaimed\n",
                               f["rows_deleted"].get<int64_t>(), f["files_deleted"].get<int64_t>(),
                               format_size(f["log_bytes_freed"].get<uint64_t>()),
                               format_size(f["db_bytes_reclaimed"].get<uint64_t>()));
    }
  }
  const json& db = out["database"];
  std::cout << fmt::format("database: {} ({} pages of {} B, {} free), WAL {}, auto_vacuum {}\n",
                           format_size(db["bytes"].get<uint64_t>()), db["page_count"].get<int64_t>(),
                           db["page_size"].get<int64_t>(), db["free_pages"].get<int64_t>(),
                           format_size(db["wal_bytes"].get<uint64_t>()), db["auto_vacuum"].get<std::string>());
  std::cout << "log directory: " << format_size(out["log_dir_bytes"].get<uint64_t>()) << "\n";
}

int cmd_run(const config::Config& cfg, const std::string& task, bool wait, bool as_json) {
  auto daemon = DaemonClient::connect(cfg);
  if (!daemon) return fail_with(daemon.error().message);
  if (!*daemon)
    return fail_with("no daemon is running on " + cfg.daemon.data_dir + ": start one with `cronkeep daemon` to run tasks");
  auto reply = (*daemon)->call("POST", "/api/tasks/" + task + "/run?wait=" + (wait ? "true" : "false"), nullptr,
                               wait ? 7 * 24 * 3600 : 30);
  if (!reply) return fail_with(reply.error().message);
  if (reply->status >= 400) return fail_with(reply->body.value("error", "HTTP " + std::to_string(reply->status)));
  const json& r = reply->body;
  if (as_json) {
    std::cout << r.dump(2) << "\n";
  } else {
    std::cout << "run " << r.value("id", int64_t{0}) << " of " << task << ": " << r.value("status", std::string("?"));
    if (!r.value("message", std::string()).empty()) std::cout << " (" << r["message"].get<std::string>() << ")";
    std::cout << "\n";
  }
  if (!wait) return kOk;
  return r.value("status", std::string()) == "succeeded" ? kOk : kFailure;
}

int cmd_check(const config::Config& cfg, bool repair, bool as_json) {
  std::unique_ptr<store::Store> store;
  std::optional<FileLock> lock;
  if (repair) {
    auto w = open_writable(cfg);
    if (!w) return fail_with(w.error().message);
    lock.emplace(std::move(w->lock));
    store = std::move(w->store);
  } else {
    auto r = open_reader(cfg);
    if (!r) return fail_with(r.error().message);
    store = std::move(*r);
  }
  const std::string& dir = cfg.daemon.data_dir;
  json problems = json::array();
  int64_t repaired = 0;
  auto problem = [&](std::string kind, std::string detail) {
    problems.push_back({{"kind", kind}, {"detail", detail}});
  };

  auto integrity = store->integrity_check();
  if (!integrity) return fail_with(integrity.error().message);
  if (*integrity != "ok") problem("integrity", *integrity);

  auto paths = store->log_paths();
  if (!paths) return fail_with(paths.error().message);
  std::set<std::string> known;
  for (const store::LogRef& ref : *paths) {
    known.insert(ref.log_path);
    const std::string full = dir + "/" + ref.log_path;
    std::error_code ec;
    if (!fs::exists(full, ec)) {
      problem("missing_log", "run " + std::to_string(ref.id) + ": " + ref.log_path);
      if (repair && store->forget_log(ref.id, "log file was missing (cronkeep check --repair)")) ++repaired;
      continue;
    }
    const logs::SidecarCheck sc = logs::check_sidecars(full);
    if (!sc.index_ok) {
      problem("bad_sidecar", "run " + std::to_string(ref.id) + ": " + ref.log_path + ": " + sc.problem +
                                 " (reads fall back to scanning)");
      // An unreadable .meta is rewritten; a bad index stays (reads scan).
      if (repair && sc.problem == "unreadable .meta" && store::is_terminal(ref.status) && logs::finalize_crashed(full))
        ++repaired;
    }
    else if (!sc.finalized && store::is_terminal(ref.status)) {
      problem("unfinalized_log", "run " + std::to_string(ref.id) + " (" + store::to_string(ref.status) +
                                     "): " + ref.log_path + " was not finalized (its writer stopped or could not finish)");
      if (repair && logs::finalize_crashed(full)) ++repaired;
    }
  }

  auto tombs = store->list_tombstones(1'000'000);
  if (!tombs) return fail_with(tombs.error().message);
  std::set<std::string> tombstoned;
  for (const auto& t : *tombs) tombstoned.insert(t.log_path);
  if (!tombs->empty()) {
    problem("tombstones", std::to_string(tombs->size()) + " leftover tombstone(s) of an interrupted purge");
    if (repair) {
      retention::Executor executor(*store, dir, cfg.retention.batch_size);
      if (auto r = executor.replay_tombstones(); r && r->file_errors == 0) ++repaired;
    }
  }

  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir + "/logs", ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".log") continue;
    const std::string rel = fs::relative(it->path(), dir).string();
    if (known.count(rel) || tombstoned.count(rel)) continue;
    problem("orphan_log", rel + " has no run");
    if (repair) {
      for (const char* suffix : logs::kFileSuffixes) fs::remove(it->path().string() + suffix, ec);
      ec.clear();
      ++repaired;
    }
  }

  const bool ok = problems.empty() || (repair && repaired >= static_cast<int64_t>(problems.size()));
  if (as_json) {
    std::cout << json{{"ok", ok}, {"problems", problems}, {"repaired", repaired}}.dump(2) << "\n";
  } else {
    for (const json& p : problems)
      std::cout << p["kind"].get<std::string>() << ": " << p["detail"].get<std::string>() << "\n";
    std::cout << (ok ? "check: ok" : "check: " + std::to_string(problems.size()) + " problem(s)")
              << (repair ? ", " + std::to_string(repaired) + " repaired" : "") << "\n";
  }
  return ok ? kOk : kFailure;
}

}  // namespace cronkeep::cli
