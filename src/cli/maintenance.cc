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
#include "cli/commands.h"
#include "cron/cron.h"
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

// Records a manual maintenance action as a run of a system task.
void record_manual_run(store::Store& store, const char* task, TimePoint started, bool ok, const std::string& message,
                       store::MaintenanceFigures figures) {
  store::NewRun row;
  row.task = task;
  row.trigger = store::Trigger::manual;
  row.status = store::RunStatus::running;
  row.created_at = started;
  auto id = store.insert_run(row);
  if (!id) return;
  store::RunEnd end;
  end.status = ok ? store::RunStatus::succeeded : store::RunStatus::failed;
  end.finished_at = SystemClock().now();
  end.duration_ms = (end.finished_at - started).count();
  end.message = message;
  store.finish_run(*id, end);
  figures.run_id = *id;
  figures.task = task;
  store.record_maintenance(figures);
}

int64_t dir_bytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) total += static_cast<int64_t>(it->file_size(size_ec));
  }
  return total;
}

}  // namespace

int cmd_purge(const config::Config& cfg, const PurgeArgs& a) {
  auto older = parse_duration(a.older_than);
  if (!older) return fail_with("--older-than: " + older.error().message, kUsage);
  store::PurgeQuery q;
  const TimePoint now = SystemClock().now();
  q.finished_before = now - *older;
  if (!a.task.empty()) q.task = a.task;
  if (!a.status.empty()) {
    q.status = store::parse_status(a.status);
    if (!q.status)
      return fail_with("--status: unknown status \"" + a.status +
                           "\" (expected succeeded, failed, timeout, cancelled, crashed, log_overflow, skipped or missed)",
                       kUsage);
    if (!store::is_terminal(*q.status))
      return fail_with("--status: only terminal runs can be purged, not " + a.status, kUsage);
  }
  if (a.limit < 0) return fail_with("--limit: must be positive", kUsage);
  if (a.limit > 0) q.limit = a.limit;

  if (a.dry_run) {
    auto reader = open_reader(cfg);
    if (!reader) return fail_with(reader.error().message);
    auto found = (*reader)->find_purgeable(q);
    if (!found) return fail_with(found.error().message);
    std::map<std::string, std::pair<int64_t, int64_t>> per_task;
    for (const auto& r : *found) {
      per_task[r.task].first += 1;
      per_task[r.task].second += r.log_bytes;
    }
    int64_t runs = 0, bytes = 0;
    json out = json::array();
    for (const auto& [task, v] : per_task) {
      out.push_back({{"task", task}, {"runs", v.first}, {"log_bytes", v.second}});
      runs += v.first;
      bytes += v.second;
    }
    if (a.json) {
      std::cout << json{{"dry_run", true}, {"cutoff", format_rfc3339(q.finished_before)}, {"tasks", out},
                        {"runs", runs}, {"log_bytes", bytes}}
                       .dump(2)
                << "\n";
      return kOk;
    }
    std::cout << "dry run: nothing deleted; runs finished before " << format_rfc3339(q.finished_before) << "\n";
    std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "TASK", "RUNS", "LOG BYTES");
    for (const auto& [task, v] : per_task)
      std::cout << fmt::format("{:<32} {:>10} {:>12}\n", task, v.first, format_size(static_cast<uint64_t>(v.second)));
    std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "total", runs, format_size(static_cast<uint64_t>(bytes)));
    return kOk;
  }

  auto w = open_writable(cfg);
  if (!w) return fail_with(w.error().message);
  auto found = w->store->find_purgeable(q);
  if (!found) return fail_with(found.error().message);
  std::vector<retention::Expired> expired;
  expired.reserve(found->size());
  for (const auto& r : *found) expired.push_back({r.id, retention::Reason::manual});
  found->clear();
  const bool tty = ::isatty(STDERR_FILENO) && expired.size() >= 1000;
  retention::Executor executor(*w->store, cfg.daemon.data_dir, cfg.retention.batch_size);
  auto report = executor.purge(expired, [&](int64_t done, int64_t total) {
    if (!tty) return;
    const int width = 40;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    std::cerr << "\rpurging [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] " << done << "/"
              << total << std::flush;
  });
  if (tty) std::cerr << "\n";
  if (!report) {
    record_manual_run(*w->store, retention::kRetentionTask, now, false, "Manual purge failed: " + report.error().message, {});
    return fail_with(report.error().message);
  }
  std::string message = "Manual purge (--older-than " + a.older_than + (a.task.empty() ? "" : ", --task " + a.task) +
                        (a.status.empty() ? "" : ", --status " + a.status) +
                        (a.limit > 0 ? ", --limit " + std::to_string(a.limit) : "") + "): purged " +
                        std::to_string(report->rows) + " run(s) and " +
                        format_size(static_cast<uint64_t>(report->log_bytes)) + " of logs (cutoff " +
                        format_rfc3339(q.finished_before) + ")";
  if (report->files_missing) message += "; " + std::to_string(report->files_missing) + " log file(s) were already gone";
  if (report->file_errors)
    message += "; " + std::to_string(report->file_errors) + " file(s) could not be removed (" + report->first_error + ")";
  record_manual_run(*w->store, retention::kRetentionTask, now, report->file_errors == 0, message,
                    store::MaintenanceFigures{0, "", report->rows, report->files_deleted, report->file_errors,
                                              report->log_bytes, 0});
  if (a.json) {
    std::cout << json{{"runs", report->rows}, {"log_bytes", report->log_bytes}, {"files_deleted", report->files_deleted},
                      {"files_missing", report->files_missing}, {"file_errors", report->file_errors}, {"message", message}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << message << "\n";
  }
  return report->file_errors == 0 ? kOk : kFailure;
}

int cmd_compact(const config::Config& cfg, bool full) {
  auto w = open_writable(cfg);
  if (!w) return fail_with(w.error().message);
  const TimePoint started = SystemClock().now();
  auto report = retention::compact(*w->store, full ? retention::CompactMode::full : retention::CompactMode::incremental);
  if (!report) {
    record_manual_run(*w->store, retention::kCompactorTask, started, false, report.error().message, {});
    return fail_with(report.error().message);
  }
  const std::string message = (full ? "Full VACUUM: " : "") + retention::describe(*report);
  record_manual_run(*w->store, retention::kCompactorTask, started, true, message,
                    store::MaintenanceFigures{0, "", 0, 0, 0, 0, std::max<int64_t>(0, report->bytes_before - report->bytes_after)});
  std::cout << message << "\n";
  return kOk;
}

int cmd_status(const config::Config& cfg, bool as_json) {
  auto reader = open_reader(cfg);
  if (!reader) return fail_with(reader.error().message);
  store::Store& st = **reader;
  auto stats = st.db_stats();
  if (!stats) return fail_with(stats.error().message);
  auto summaries = st.maintenance_summaries();
  if (!summaries) return fail_with(summaries.error().message);
  const TimePoint now = SystemClock().now();
  json tasks = json::array();
  for (auto [name, schedule] : {std::pair{retention::kRetentionTask, cfg.retention.schedule},
                                std::pair{retention::kCompactorTask, cfg.compactor.schedule}}) {
    json t{{"task", name}, {"schedule", schedule}};
    auto parsed = cron::Schedule::parse(schedule);
    auto next = parsed ? parsed->next_fire(now, cron::Zone::utc()) : std::nullopt;
    t["next_run"] = next ? json(format_rfc3339(*next)) : json(nullptr);
    auto last = st.list_runs(store::RunQuery{name, 1, std::nullopt, std::nullopt});
    if (last && !last->empty()) {
      const store::Run& r = last->front();
      t["last_run"] = {{"id", r.id},
                       {"status", store::to_string(r.status)},
                       {"trigger", store::to_string(r.trigger)},
                       {"finished_at", r.finished_at ? json(format_rfc3339(*r.finished_at)) : json(nullptr)},
                       {"message", r.message}};
    } else {
      t["last_run"] = nullptr;
    }
    for (const auto& m : *summaries) {
      if (m.last.task != name) continue;
      auto figures = [](const store::MaintenanceFigures& f) {
        return json{{"rows_deleted", f.rows_deleted},       {"files_deleted", f.files_deleted},
                    {"file_errors", f.file_errors},         {"log_bytes_freed", f.log_bytes_freed},
                    {"db_bytes_reclaimed", f.db_bytes_reclaimed}};
      };
      t["last_figures"] = figures(m.last);
      t["total_figures"] = figures(m.total);
    }
    tasks.push_back(t);
  }
  const int64_t log_bytes = dir_bytes(cfg.daemon.data_dir + "/logs");
  json out{{"system_tasks", tasks},
           {"database",
            {{"bytes", stats->db_bytes()},
             {"page_size", stats->page_size},
             {"page_count", stats->page_count},
             {"free_pages", stats->freelist_count},
             {"wal_bytes", stats->wal_bytes},
             {"auto_vacuum", stats->auto_vacuum == 2 ? "incremental" : stats->auto_vacuum == 1 ? "full" : "none"}}},
           {"log_dir_bytes", log_bytes}};
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  for (const json& t : tasks) {
    std::cout << t["task"].get<std::string>() << " (" << t["schedule"].get<std::string>() << ")\n";
    if (t["last_run"].is_null()) {
      std::cout << "  last run: never\n";
    } else {
      std::cout << "  last run: #" << t["last_run"]["id"] << " " << t["last_run"]["status"].get<std::string>() << " "
                << (t["last_run"]["finished_at"].is_null() ? "" : t["last_run"]["finished_at"].get<std::string>())
                << "\n    " << t["last_run"]["message"].get<std::string>() << "\n";
    }
    std::cout << "  next run: " << (t["next_run"].is_null() ? "-" : t["next_run"].get<std::string>()) << "\n";
    if (t.contains("total_figures")) {
      const json& f = t["total_figures"];
      std::cout << fmt::format("  in total: {} row(s) and {} file(s) deleted, {} of logs freed, {} of database reclaimed\n",
                               f["rows_deleted"].get<int64_t>(), f["files_deleted"].get<int64_t>(),
                               format_size(f["log_bytes_freed"].get<uint64_t>()),
                               format_size(f["db_bytes_reclaimed"].get<uint64_t>()));
    }
  }
  std::cout << fmt::format("database: {} ({} pages of {} B, {} free), WAL {}, auto_vacuum {}\n",
                           format_size(static_cast<uint64_t>(stats->db_bytes())), stats->page_count, stats->page_size,
                           stats->freelist_count, format_size(static_cast<uint64_t>(stats->wal_bytes)),
                           out["database"]["auto_vacuum"].get<std::string>());
  std::cout << "log directory: " << format_size(static_cast<uint64_t>(log_bytes)) << "\n";
  return kOk;
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
    if (!sc.index_ok)
      problem("bad_sidecar", "run " + std::to_string(ref.id) + ": " + ref.log_path + ": " + sc.problem +
                                 " (reads fall back to scanning)");
    else if (!sc.finalized && store::is_terminal(ref.status))
      problem("unfinalized_log", "run " + std::to_string(ref.id) + " (" + store::to_string(ref.status) +
                                     "): " + ref.log_path + " was not finalized (the daemon stopped while it was written)");
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
