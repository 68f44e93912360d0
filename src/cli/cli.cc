#include "cli/cli.h"
#include "cli/commands.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "base/clock.h"
#include "base/units.h"
#include "config/config.h"
#include "cron/cron.h"
#include "daemon/daemon.h"
#include "http/json.h"
#include "logs/logs.h"
#include "store/store.h"

namespace cronkeep::cli {
namespace {

using nlohmann::json;
using http::run_json;
using http::time_json;

std::optional<config::Config> load_or_report(const std::string& path) {
  auto cfg = config::load_config(path);
  if (!cfg) {
    for (const config::Problem& p : cfg.error()) std::cerr << p.to_string() << "\n";
    std::cerr << path << ": " << cfg.error().size() << " problem(s); nothing was started\n";
    return std::nullopt;
  }
  return std::move(*cfg);
}

std::string db_path(const config::Config& cfg) { return cfg.daemon.data_dir + "/cronkeep.db"; }

Result<std::unique_ptr<store::Store>> open_read_only(const config::Config& cfg) {
  const std::string path = db_path(cfg);
  if (!std::filesystem::exists(path))
    return fail(ErrorCode::not_found, "no history yet: " + path + " does not exist (has the daemon run?)");
  return store::open_sqlite(path, store::OpenOptions{.read_only = true});
}

std::string or_dash(const std::optional<TimePoint>& t) { return t ? format_rfc3339(*t) : "-"; }

int report(const Error& e) {
  std::cerr << "cronkeep: " << e.message << "\n";
  return e.code == ErrorCode::invalid_argument ? kUsage : kFailure;
}

// validate: the configuration is loadable; print the next three fires.
int cmd_validate(const std::string& config_path, bool as_json) {
  auto cfg = load_or_report(config_path);
  if (!cfg) return kUsage;
  const TimePoint now = SystemClock().now();
  json out = json::array();
  for (const config::Task& task : cfg->tasks) {
    auto schedule = cron::Schedule::parse(task.cron);
    auto zone = cron::Zone::locate(task.timezone.empty() ? cfg->daemon.timezone : task.timezone);
    if (!schedule || !zone) return report(!schedule ? schedule.error() : zone.error());
    json fires = json::array();
    std::optional<TimePoint> f = now;
    for (int i = 0; i < 3 && f; ++i) {
      f = schedule->next_fire(*f, *zone);
      if (f) fires.push_back(format_rfc3339(*f));
    }
    out.push_back({{"task", task.name}, {"cron", task.cron}, {"timezone", zone->name()}, {"next_fires", fires}});
  }
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << config_path << ": OK, " << cfg->tasks.size() << " task(s)\n";
  for (const json& t : out) {
    std::cout << "  " << t["task"].get<std::string>() << "  (" << t["cron"].get<std::string>() << ", "
              << t["timezone"].get<std::string>() << ")\n";
    for (const json& f : t["next_fires"]) std::cout << "    next: " << f.get<std::string>() << "\n";
  }
  return kOk;
}

int cmd_tasks(const std::string& config_path, bool as_json) {
  auto cfg = load_or_report(config_path);
  if (!cfg) return kUsage;
  std::map<std::string, store::TaskSummary> summaries;
  if (auto st = open_read_only(*cfg)) {
    auto list = (*st)->task_summaries();
    if (!list) return report(list.error());
    for (auto& s : *list) summaries[s.task] = s;
  } else if (st.error().code != ErrorCode::not_found) {
    return report(st.error());
  }
  const TimePoint now = SystemClock().now();
  json out = json::array();
  auto add = [&](const std::string& name, const config::Task* task) {
    json j{{"task", name}, {"configured", task != nullptr}};
    if (task) {
      j["cron"] = task->cron;
      auto schedule = cron::Schedule::parse(task->cron);
      auto zone = cron::Zone::locate(task->timezone.empty() ? cfg->daemon.timezone : task->timezone);
      j["timezone"] = zone ? zone->name() : "";
      j["next_fire"] = time_json(schedule && zone ? schedule->next_fire(now, *zone) : std::nullopt);
    }
    auto it = summaries.find(name);
    j["runs"] = it == summaries.end() ? 0 : it->second.runs;
    j["last_run"] = it == summaries.end() || !it->second.last_run ? json(nullptr) : run_json(*it->second.last_run);
    out.push_back(j);
  };
  for (const config::Task& t : cfg->tasks) add(t.name, &t);
  for (const auto& [name, s] : summaries)
    if (!cfg->find_task(name)) add(name, nullptr);
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << fmt::format("{:<24} {:<18} {:<21} {:>6}  {}\n", "TASK", "SCHEDULE", "NEXT FIRE", "RUNS", "LAST RUN");
  for (const json& j : out) {
    std::string last = "-";
    if (!j["last_run"].is_null())
      last = fmt::format("#{} {} {}", j["last_run"]["id"].get<int64_t>(), j["last_run"]["status"].get<std::string>(),
                         j["last_run"]["created_at"].get<std::string>().substr(0, 19) + "Z");
    std::string next = j.contains("next_fire") && !j["next_fire"].is_null()
                           ? j["next_fire"].get<std::string>().substr(0, 19) + "Z"
                           : "-";
    std::cout << fmt::format("{:<24} {:<18} {:<21} {:>6}  {}\n", j["task"].get<std::string>(),
                             j.value("cron", std::string("(not configured)")), next, j["runs"].get<int64_t>(), last);
  }
  return kOk;
}

int cmd_runs(const std::string& config_path, const std::string& task, int limit, int64_t before,
             const std::string& status, bool as_json) {
  auto cfg = load_or_report(config_path);
  if (!cfg) return kUsage;
  store::RunQuery q;
  q.task = task;
  q.limit = limit;
  if (before > 0) q.before_id = before;
  if (!status.empty()) {
    q.status = store::parse_status(status);
    if (!q.status) {
      std::cerr << "cronkeep: unknown status \"" << status
                << "\" (expected pending, running, succeeded, failed, timeout, cancelled, crashed, log_overflow, "
                   "skipped or missed)\n";
      return kUsage;
    }
  }
  auto st = open_read_only(*cfg);
  if (!st) return report(st.error());
  auto runs = (*st)->list_runs(q);
  if (!runs) return report(runs.error());
  if (runs->empty() && !cfg->find_task(task)) {
    std::cerr << "cronkeep: task " << task << " is not configured and has no runs\n";
    return kFailure;
  }
  if (as_json) {
    json out = json::array();
    for (const auto& r : *runs) out.push_back(run_json(r));
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << fmt::format("{:>8}  {:<9} {:<12} {:<20} {:>9} {:>5}  {}\n", "ID", "TRIGGER", "STATUS", "STARTED",
                           "DURATION", "EXIT", "MESSAGE");
  for (const auto& r : *runs) {
    std::cout << fmt::format("{:>8}  {:<9} {:<12} {:<20} {:>9} {:>5}  {}\n", r.id, store::to_string(r.trigger),
                             store::to_string(r.status), or_dash(r.started_at ? r.started_at : r.scheduled_at),
                             r.duration_ms ? format_duration(Millis(*r.duration_ms)) : "-",
                             r.exit_code ? std::to_string(*r.exit_code) : "-", r.message);
  }
  return kOk;
}

struct LogsArgs {
  std::string task;
  int64_t run_id = 0;
  int64_t from_line = 0;  // 0 = not given
  int64_t lines = 0;      // 0 = all
  std::string since;
  int64_t tail = 0;
  bool follow = false;
  bool json = false;
};

int cmd_logs(const std::string& config_path, const LogsArgs& a) {
  auto cfg = load_or_report(config_path);
  if (!cfg) return kUsage;
  logs::ReadRequest req;
  if (a.from_line > 0) req.from_line = a.from_line;
  if (a.lines > 0) req.lines = a.lines;
  if (a.tail > 0) req.tail = a.tail;
  if (!a.since.empty()) {
    req.since = parse_rfc3339(a.since);
    if (!req.since) {
      auto ago = parse_duration(a.since);
      if (!ago) {
        std::cerr << "cronkeep: --since: expected a time (2026-11-23T04:00:00Z) or a duration ago (10m): \"" << a.since
                  << "\"\n";
        return kUsage;
      }
      req.since = SystemClock().now() - *ago;
    }
  }
  auto st = open_read_only(*cfg);
  if (!st) return report(st.error());
  auto run = (*st)->get_run(a.run_id);
  if (!run) return report(run.error());
  if (run->task != a.task)
    return report(Error{ErrorCode::not_found, "run " + std::to_string(a.run_id) + " is not a run of " + a.task});
  if (run->log_path.empty()) {
    std::cerr << "cronkeep: run " << a.run_id << " has no log (status " << store::to_string(run->status) << ")\n";
    return kFailure;
  }
  const std::string path = cfg->daemon.data_dir + "/" + run->log_path;
  bool notes_shown = false;
  while (true) {
    auto page = logs::read_log(path, req);
    if (!page) return report(page.error());
    if (!page->note.empty() && !notes_shown) {
      std::cerr << "cronkeep: " << page->note << "\n";
      notes_shown = true;
    }
    for (size_t i = 0; i < page->lines.size(); ++i) {
      const logs::Line& l = page->lines[i];
      const bool last_partial = i + 1 == page->lines.size() && page->partial_last_line;
      if (a.follow && last_partial && !page->finalized) break;  // print it once it is complete
      if (a.json) {
        std::cout << http::line_json(l).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      } else {
        std::cout << l.text;
        if (!last_partial) std::cout << '\n';
      }
    }
    std::cout.flush();
    if (!a.follow) return kOk;
    // Follow: keep reading until the run has ended and its log is complete.
    auto now_run = (*st)->get_run(a.run_id);
    if (!now_run) return report(now_run.error());
    if (store::is_terminal(now_run->status) && page->at_end && page->lines.empty()) return kOk;
    req = logs::ReadRequest{};
    req.from_line = page->next_line;
    if (page->lines.empty()) ::usleep(200'000);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cronkeep: runs commands on cron schedules, records every run, keeps its history bounded."};
  app.require_subcommand(1);
  app.fallthrough();
  std::string config_path = "cronkeep.toml";
  if (const char* env = std::getenv("CRONKEEP_CONFIG")) config_path = env;
  app.add_option("-c,--config", config_path, "configuration file (default: ./cronkeep.toml or $CRONKEEP_CONFIG)");
  app.set_version_flag("--version", "cronkeep 0.1.0");

  bool as_json = false;
  int exit_code = kOk;

  auto* daemon_cmd = app.add_subcommand("daemon", "Run the scheduler in the foreground until SIGTERM or SIGINT");
  daemon_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? daemon::run(*cfg) : kUsage;
  });

  auto* validate_cmd = app.add_subcommand(
      "validate", "Check a configuration; print every problem (file:line:column) or each task's next three fires");
  validate_cmd->add_flag("--json", as_json, "print JSON");
  validate_cmd->callback([&] { exit_code = cmd_validate(config_path, as_json); });

  auto* tasks_cmd = app.add_subcommand("tasks", "List tasks: schedule, next fire, number of runs, last run");
  tasks_cmd->add_flag("--json", as_json, "print JSON");
  tasks_cmd->callback([&] { exit_code = cmd_tasks(config_path, as_json); });

  std::string task;
  int limit = 20;
  int64_t before = 0;
  std::string status;
  auto* runs_cmd = app.add_subcommand("runs", "List a task's runs, newest first");
  runs_cmd->add_option("TASK", task, "task name")->required();
  runs_cmd->add_option("-n,--limit", limit, "how many runs (1-1000, default 20)")->check(CLI::Range(1, 1000));
  runs_cmd->add_option("--before", before, "only runs with an id below this (paging)")->check(CLI::PositiveNumber);
  runs_cmd->add_option("--status", status, "only runs with this status");
  runs_cmd->add_flag("--json", as_json, "print JSON");
  runs_cmd->callback([&] { exit_code = cmd_runs(config_path, task, limit, before, status, as_json); });

  LogsArgs logs_args;
  auto* logs_cmd = app.add_subcommand("logs", "Print what a run wrote (stdout and stderr in arrival order)");
  logs_cmd->add_option("TASK", logs_args.task, "task name")->required();
  logs_cmd->add_option("RUN", logs_args.run_id, "run id")->required()->check(CLI::PositiveNumber);
  logs_cmd->add_option("--from-line", logs_args.from_line, "first line to print (1-based)")->check(CLI::PositiveNumber);
  logs_cmd->add_option("--lines", logs_args.lines, "how many lines to print")->check(CLI::PositiveNumber);
  logs_cmd->add_option("--since", logs_args.since,
                       "start at the first line that arrived at or after TIME (RFC 3339) or DURATION ago (10m)");
  logs_cmd->add_option("--tail", logs_args.tail, "print only the last K lines")->check(CLI::PositiveNumber);
  logs_cmd->add_flag("-f,--follow", logs_args.follow, "keep printing new lines until the run ends");
  logs_cmd->add_flag("--json", logs_args.json, "one JSON object per line: line, stream (o/e/m), time, text");
  logs_cmd->callback([&] { exit_code = cmd_logs(config_path, logs_args); });

  bool wait = false;
  std::string run_task;
  auto* run_cmd = app.add_subcommand("run", "Run a task now through the running daemon");
  run_cmd->add_option("TASK", run_task, "task name")->required();
  run_cmd->add_flag("--wait", wait, "wait until the run ends; exit 0 only if it succeeded");
  run_cmd->add_flag("--json", as_json, "print the run as JSON");
  run_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? cmd_run(*cfg, run_task, wait, as_json) : kUsage;
  });

  PurgeArgs purge;
  auto* purge_cmd = app.add_subcommand(
      "purge", "Delete terminal runs (rows, logs and sidecars) that finished before now minus --older-than");
  purge_cmd->add_option("--older-than", purge.older_than, "age, e.g. 30d, 12h, 2w")->required();
  purge_cmd->add_option("--task", purge.task, "only this task");
  purge_cmd->add_option("--status", purge.status, "only runs with this terminal status");
  purge_cmd->add_option("--limit", purge.limit, "at most N runs, oldest first");
  purge_cmd->add_flag("--dry-run", purge.dry_run, "print per task how many runs and log bytes would go; delete nothing");
  purge_cmd->add_flag("--json", purge.json, "print JSON");
  purge_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? cmd_purge(*cfg, purge) : kUsage;
  });

  bool full = false;
  auto* compact_cmd = app.add_subcommand(
      "compact", "Give free database pages back to the file system in slices and truncate the WAL");
  compact_cmd->add_flag("--full", full,
                        "run a VACUUM instead (also converts a database created without incremental auto-vacuum)");
  compact_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? cmd_compact(*cfg, full) : kUsage;
  });

  auto* status_cmd = app.add_subcommand(
      "status", "Retention and compactor: last and next run, what they deleted and reclaimed; database and log sizes");
  status_cmd->add_flag("--json", as_json, "print JSON");
  status_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? cmd_status(*cfg, as_json) : kUsage;
  });

  bool repair = false;
  auto* check_cmd = app.add_subcommand(
      "check", "Verify the data directory: integrity_check, rows without log, logs without row, leftover tombstones");
  check_cmd->add_flag("--repair", repair, "fix what can be fixed safely (needs the daemon stopped)");
  check_cmd->add_flag("--json", as_json, "print JSON");
  check_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? cmd_check(*cfg, repair, as_json) : kUsage;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  return exit_code;
}

}  // namespace cronkeep::cli
