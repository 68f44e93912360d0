// argv → ops → text or JSON. Every command but `daemon`, `validate` and
// `import-crontab` opens ops::open(): the running daemon's API when one holds
// the data directory, the data directory itself otherwise; both answer with
// the same structs, printed here the same way. `import-crontab` reads a file
// and hands its text to crontab::convert.
#include "cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>

#include "base/clock.h"
#include "base/units.h"
#include "config/config.h"
#include "crontab/crontab.h"
#include "ops/ops.h"
#include "ops/wire.h"

namespace cronkeep::cli {
namespace {

constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsage = 2;

constexpr const char* kCommands[] = {"daemon", "validate", "tasks",   "runs",   "logs",  "run",
                                     "cancel", "delete",   "purge",   "compact", "status", "check",
                                     "nodes",  "archive",
                                     "pause",  "resume",   "reload",  "notifications",
                                     "import-crontab"};

using ops::Json;

int report(const Error& e) {
  std::cerr << "cronkeep: " << e.message << "\n";
  return e.code == ErrorCode::invalid_argument ? kUsage : kFailure;
}

void print_json(const Json& j) { std::cout << ops::dump(j, 2) << "\n"; }

std::optional<config::Config> load_or_report(const std::string& path) {
  auto cfg = config::load_config(path);
  if (!cfg) {
    for (const config::Problem& p : cfg.error()) std::cerr << p.to_string() << "\n";
    std::cerr << path << ": " << cfg.error().size() << " problem(s); nothing was started\n";
    return std::nullopt;
  }
  return std::move(*cfg);
}

std::string or_dash(const std::optional<TimePoint>& t) { return t ? format_rfc3339(*t) : "-"; }

std::string size_text(int64_t bytes) { return format_size(static_cast<uint64_t>(std::max<int64_t>(0, bytes))); }

// What every command but daemon and validate starts with.
struct Session {
  config::Config config;
  std::unique_ptr<ops::Ops> ops;
};

// Loads the configuration and opens ops; returns kOk, or the exit code of
// what went wrong (already reported).
int open_session(const std::string& config_path, ops::Access access, Session& out) {
  auto cfg = load_or_report(config_path);
  if (!cfg) return kUsage;
  out.config = std::move(*cfg);
  auto o = ops::open(out.config, access);
  if (!o) return report(o.error());
  out.ops = std::move(*o);
  return kOk;
}

// ---- validate -------------------------------------------------------------------

int cmd_validate(const std::string& config_path, bool as_json) {
  const ops::ValidateReport v = ops::validate(config_path, SystemClock().now());
  if (as_json) {
    print_json(ops::to_json(v));
    return v.ok ? kOk : kUsage;
  }
  if (!v.ok) {
    for (const std::string& p : v.problems) std::cerr << p << "\n";
    std::cerr << config_path << ": " << v.problems.size() << " problem(s)\n";
    return kUsage;
  }
  std::cout << config_path << ": OK, " << v.tasks.size() << " task(s)\n";
  for (const ops::ValidatedTask& t : v.tasks) {
    std::cout << "  " << t.task << "  (" << (t.cron.empty() ? "on demand" : t.cron) << ", " << t.timezone << ")\n";
    for (TimePoint f : t.next_fires) std::cout << "    next: " << format_rfc3339(f) << "\n";
    if (t.next_fires.empty()) std::cout << "    next: none\n";
  }
  return kOk;
}

// ---- tasks and runs --------------------------------------------------------------

int cmd_tasks(const std::string& config_path, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto tasks = s.ops->tasks(true);
  if (!tasks) return report(tasks.error());
  if (as_json) {
    print_json(ops::to_json(*tasks));
    return kOk;
  }
  const auto short_time = [](const std::optional<TimePoint>& t) { return t ? format_rfc3339(*t).substr(0, 19) + "Z" : "-"; };
  std::cout << fmt::format("{:<24} {:<18} {:<8} {:<21} {:>6}  {}\n", "TASK", "SCHEDULE", "STATE", "NEXT FIRE", "RUNS",
                           "LAST RUN");
  for (const ops::TaskInfo& t : *tasks) {
    std::string last = "-";
    if (t.last_run)
      last = fmt::format("#{} {} {}", t.last_run->id, store::to_string(t.last_run->status),
                         short_time(t.last_run->finished_at ? t.last_run->finished_at : t.last_run->created_at));
    std::cout << fmt::format("{:<24} {:<18} {:<8} {:<21} {:>6}  {}\n", t.name,
                             !t.configured ? "(not configured)" : t.cron.empty() ? "(on demand)" : t.cron,
                             ops::to_string(t.state),
                             short_time(t.next_fire), t.runs, last);
  }
  return kOk;
}

int cmd_runs(const std::string& config_path, const std::string& task, int limit, int64_t before,
             const std::string& status, bool as_json) {
  ops::RunsQuery q{task, limit, before > 0 ? std::optional<int64_t>(before) : std::nullopt, std::nullopt};
  if (!status.empty()) {
    auto st = ops::parse_status(status, "--status");
    if (!st) return report(st.error());
    q.status = *st;
  }
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto page = s.ops->runs(q);
  if (!page) return report(page.error());
  if (as_json) {
    print_json(ops::to_json(page->runs));
    return kOk;
  }
  std::cout << fmt::format("{:>8}  {:<9} {:<12} {:<20} {:>9} {:>5}  {}\n", "ID", "TRIGGER", "STATUS", "STARTED",
                           "DURATION", "EXIT", "MESSAGE");
  for (const auto& r : page->runs)
    std::cout << fmt::format("{:>8}  {:<9} {:<12} {:<20} {:>9} {:>5}  {}\n", r.id, store::to_string(r.trigger),
                             store::to_string(r.status), or_dash(r.started_at ? r.started_at : r.scheduled_at),
                             r.duration_ms ? format_duration(Millis(*r.duration_ms)) : "-",
                             r.exit_code ? std::to_string(*r.exit_code) : "-", r.message);
  if (page->next_before) std::cerr << "(more: --before " << *page->next_before << ")\n";
  return kOk;
}

// ---- logs -------------------------------------------------------------------------

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

// Control bytes a terminal would act on (ESC, NUL, BEL …) are shown, not
// sent: "\x1b". Tabs stay. Only used when stdout is a terminal: piped
// output is the captured bytes exactly.
std::string visible(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void print_line(const logs::Line& l, bool as_json, bool newline) {
  if (as_json) {
    std::cout << ops::dump(ops::to_json(l)) << "\n";
    return;
  }
  static const bool terminal = ::isatty(STDOUT_FILENO);
  if (terminal) std::cout << visible(l.text);
  else std::cout.write(l.text.data(), static_cast<std::streamsize>(l.text.size()));
  if (newline && !l.continued) std::cout << '\n';
}

// Prints followed events: lines as they come, notes on stderr.
class PrintSink : public ops::FollowSink {
 public:
  explicit PrintSink(bool as_json) : json_(as_json) {}
  bool on_event(const ops::FollowEvent& e) override {
    switch (e.kind) {
      case ops::FollowEvent::Kind::line: print_line(e.line, json_, true); break;
      case ops::FollowEvent::Kind::rotated:
      case ops::FollowEvent::Kind::dropped: std::cerr << "cronkeep: " << e.text << "\n"; break;
      case ops::FollowEvent::Kind::done: status_ = e.text; break;
      case ops::FollowEvent::Kind::error: std::cerr << "cronkeep: " << e.text << "\n"; break;
    }
    return true;
  }
  bool flush() override {
    std::cout.flush();
    return static_cast<bool>(std::cout);
  }
  const std::string& status() const { return status_; }

 private:
  bool json_;
  std::string status_;
};

int cmd_logs(const std::string& config_path, const LogsArgs& a) {
  ops::LogQuery q{a.task, a.run_id, {}, a.from_line > 0};
  q.read.max_lines = ops::kMaxLogPage;
  if (a.from_line > 0) q.read.from_line = a.from_line;
  if (a.tail > 0) q.read.tail = a.tail;
  if (!a.since.empty()) {
    q.read.since = parse_rfc3339(a.since);
    if (!q.read.since) {
      auto ago = parse_duration(a.since);
      if (!ago)
        return report(Error{ErrorCode::invalid_argument,
                            "--since: expected a time (2026-11-23T04:00:00Z) or a duration ago (10m): \"" + a.since + "\""});
      q.read.since = SystemClock().now() - *ago;
    }
  }
  if (auto st = ops::check_read(q.read, q.from_line_given); !st) return report(st.error());
  if (a.follow && (a.tail > 0 || a.lines > 0 || !a.since.empty()))
    return report(Error{ErrorCode::invalid_argument, "--follow: combine it with --from-line only"});
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  if (a.follow) {
    PrintSink sink(a.json);
    ops::FollowRequest request{a.task, a.run_id, a.from_line > 0 ? a.from_line : 1};
    request.idle_timeout = std::chrono::hours(24 * 365);
    if (auto st = s.ops->follow(request, sink); !st) return report(st.error());
    return kOk;
  }
  int64_t left = a.lines > 0 ? a.lines : INT64_MAX;
  bool first = true;
  while (true) {
    q.read.lines = a.tail > 0 ? std::nullopt : std::optional<int64_t>(std::min<int64_t>(left, ops::kMaxLogPage));
    auto slice = s.ops->log(q);
    if (!slice) return report(slice.error());
    const logs::LogPage& page = slice->page;
    if (first) {
      if (!page.note.empty()) std::cerr << "cronkeep: " << page.note << "\n";
      if (q.from_line_given && page.first_available > a.from_line)
        std::cerr << "cronkeep: lines " << a.from_line << " to " << page.first_available - 1
                  << " were dropped when the log was rotated (log_on_full = drop_old); the kept part starts at line "
                  << page.first_available << "\n";
      first = false;
    }
    for (size_t i = 0; i < page.lines.size(); ++i)
      print_line(page.lines[i], a.json, !(i + 1 == page.lines.size() && page.partial_last_line));
    left -= static_cast<int64_t>(page.lines.size());
    if (a.tail > 0 || page.at_end || page.lines.empty() || left <= 0) break;
    q.read.from_line = page.next_line;
    q.read.since.reset();
    q.from_line_given = true;
  }
  std::cout.flush();
  return kOk;
}

// ---- actions ------------------------------------------------------------------------

int cmd_run(const std::string& config_path, const std::string& task, bool wait, const std::vector<std::string>& env,
            bool as_json) {
  ops::RunNowRequest request;
  request.task = task;
  request.wait = wait;
  for (const std::string& kv : env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos)
      return report(Error{ErrorCode::invalid_argument, "--env: expected NAME=VALUE, got \"" + kv + "\""});
    request.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (auto st = ops::check_env(request.env); !st) return report(st.error());
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto run = s.ops->run_now(request);
  if (!run) return report(run.error());
  if (as_json) {
    print_json(ops::to_json(*run));
  } else {
    std::cout << "run " << run->id << " of " << task << ": " << store::to_string(run->status);
    if (run->attempt > 1) std::cout << " (attempt " << run->attempt << ")";
    if (!run->message.empty()) std::cout << ": " << run->message;
    std::cout << "\n";
  }
  if (!wait) return kOk;
  return run->status == store::RunStatus::succeeded ? kOk : kFailure;
}

int cmd_pause(const std::string& config_path, const std::string& task, bool paused, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::write, s); rc != kOk) return rc;
  auto out = s.ops->pause(task, paused);
  if (!out) return report(out.error());
  if (as_json) print_json(ops::to_json(*out));
  else
    std::cout << task << ": " << (out->paused ? "paused" : "resumed")
              << (out->changed ? "" : out->paused ? " (it already was)" : " (it was not paused)") << "\n";
  return kOk;
}

int cmd_reload(const std::string& config_path, bool as_json) {
  // The daemon reads the same file; refusing it here says the same.
  if (auto cfg = config::load_config(config_path); !cfg) {
    for (const config::Problem& p : cfg.error()) std::cerr << p.to_string() << "\n";
    std::cerr << config_path << ": " << cfg.error().size()
              << " problem(s); not reloaded, the daemon keeps its running configuration\n";
    return kUsage;
  }
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->reload();
  if (!out) return report(out.error());
  if (as_json) print_json(ops::to_json(*out));
  else std::cout << out->message << "\n";
  return kOk;
}

int cmd_notifications(const std::string& config_path, int limit, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->notifications(limit);
  if (!out) return report(out.error());
  if (as_json) {
    print_json(ops::to_json(*out));
    return kOk;
  }
  std::cout << fmt::format("{:<20} {:<12} {:<16} {:<20} {:>5} {:>3} {:<10} {:>5}  {}\n", "TIME", "SINK", "EVENT", "TASK",
                           "COUNT", "TRY", "STATUS", "CODE", "ERROR");
  for (const store::Delivery& d : *out)
    std::cout << fmt::format("{:<20} {:<12} {:<16} {:<20} {:>5} {:>3} {:<10} {:>5}  {}\n",
                             format_rfc3339(d.created_at).substr(0, 19) + "Z", d.sink, d.event, d.task, d.count,
                             d.attempt, d.status, d.response_code ? std::to_string(*d.response_code) : "-", d.error);
  return kOk;
}

int cmd_cancel(const std::string& config_path, const std::string& task, int64_t id, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->cancel(task, id);
  if (!out) return report(out.error());
  if (as_json) print_json(ops::to_json(*out));
  else std::cout << "run " << out->id << " of " << task << ": cancelling\n";
  return kOk;
}

int cmd_delete(const std::string& config_path, const std::string& task, int64_t id, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::write, s); rc != kOk) return rc;
  auto out = s.ops->delete_run(task, id);
  if (!out) return report(out.error());
  if (as_json) print_json(ops::to_json(*out));
  else std::cout << out->message << "\n";
  return kOk;
}

struct PurgeArgs {
  std::string older_than;
  std::string task;
  std::string status;
  int64_t limit = 0;
  bool dry_run = false;
  bool all = false;
  bool yes = false;
  bool json = false;
};

void print_purge_table(const retention::PurgeOutcome& out) {
  int64_t runs = 0, bytes = 0;
  std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "TASK", "RUNS", "LOG BYTES");
  for (const auto& v : out.per_task) {
    std::cout << fmt::format("{:<32} {:>10} {:>12}\n", v.task, v.runs, size_text(v.log_bytes));
    runs += v.runs;
    bytes += v.log_bytes;
  }
  std::cout << fmt::format("{:<32} {:>10} {:>12}\n", "total", runs, size_text(bytes));
}

int cmd_purge(const std::string& config_path, const PurgeArgs& a) {
  auto req = retention::make_purge_request(
      a.older_than, a.task.empty() ? std::nullopt : std::optional<std::string>(a.task),
      a.status.empty() ? std::nullopt : std::optional<std::string_view>(a.status),
      a.limit != 0 ? std::optional<int64_t>(a.limit) : std::nullopt, a.dry_run, a.all);
  if (!req) return report(req.error());
  Session s;
  if (const int rc = open_session(config_path, a.dry_run ? ops::Access::read : ops::Access::write, s); rc != kOk) return rc;
  if (!a.dry_run && !a.yes && ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO)) {
    // On a terminal, show what would go and ask.
    retention::PurgeRequest preview = *req;
    preview.dry_run = true;
    auto would = s.ops->purge(preview);
    if (!would) return report(would.error());
    print_purge_table(*would);
    if (would->per_task.empty()) {
      std::cout << "nothing to purge\n";
      return kOk;
    }
    std::cout << "Delete these runs and their logs? [y/N] " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "yes") {
      std::cout << "nothing deleted\n";
      return kOk;
    }
  }
  const bool tty = ::isatty(STDERR_FILENO);
  auto out = s.ops->purge(*req, [&](int64_t done, int64_t total) {
    if (!tty || total < 1000) return;
    const int width = 40;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    std::cerr << "\rpurging [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] " << done << "/"
              << total << (done == total ? "\n" : "") << std::flush;
  });
  if (!out) return report(out.error());
  if (a.json) {
    print_json(ops::to_json(*out, a.dry_run));
  } else {
    if (a.dry_run) print_purge_table(*out);
    std::cout << out->message << "\n";
  }
  return a.dry_run || out->report.file_errors == 0 ? kOk : kFailure;
}

int cmd_compact(const std::string& config_path, bool full, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::write, s); rc != kOk) return rc;
  auto out = s.ops->compact(full ? retention::CompactMode::full : retention::CompactMode::incremental);
  if (!out) return report(out.error());
  if (as_json) print_json(ops::to_json(*out));
  else std::cout << out->message << "\n";
  return kOk;
}

int cmd_status(const std::string& config_path, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->status();
  if (!out) return report(out.error());
  if (as_json) {
    print_json(ops::to_json(*out));
    return kOk;
  }
  for (const ops::SystemTaskStatus& t : out->system_tasks) {
    std::cout << t.task << " (" << t.schedule << ")\n";
    if (!t.last_run) {
      std::cout << "  last run: never\n";
    } else {
      const store::Run& r = *t.last_run;
      std::cout << "  last run: #" << r.id << " " << store::to_string(r.status) << " (" << store::to_string(r.trigger)
                << ") " << or_dash(r.finished_at) << "\n    " << r.message << "\n";
    }
    std::cout << "  next run: " << or_dash(t.next_run) << "\n";
    if (t.total_figures) {
      const store::MaintenanceFigures& f = *t.total_figures;
      std::cout << fmt::format("  in total: {} row(s) and {} file(s) deleted, {} of logs freed, {} of database reclaimed\n",
                               f.rows_deleted, f.files_deleted, size_text(f.log_bytes_freed),
                               size_text(f.db_bytes_reclaimed));
    }
  }
  const store::DbStats& db = out->database;
  std::cout << fmt::format("database: {} ({} pages of {} B, {} free), WAL {}, auto_vacuum {}\n", size_text(db.db_bytes()),
                           db.page_count, db.page_size, db.freelist_count, size_text(db.wal_bytes),
                           db.auto_vacuum == 2 ? "incremental" : db.auto_vacuum == 1 ? "full" : "none");
  if (db.backend == "postgres")
    std::cout << fmt::format("postgres: runs table {}, its indexes {}\n", size_text(db.runs_table_bytes),
                             size_text(db.runs_index_bytes));
  std::cout << "log directory: " << size_text(out->log_dir_bytes) << "\n";
  if (const auto& disk = out->disk) {
    std::cout << fmt::format("disk: {} free of {} on the data directory's file system", size_text(disk->free_bytes),
                             size_text(disk->total_bytes));
    if (disk->min_free_space > 0) std::cout << " (min_free_space " << size_text(disk->min_free_space) << ")";
    if (disk->below_min()) std::cout << "; BELOW min_free_space: runs do not start, logs drop output";
    std::cout << "\n";
  }
  return kOk;
}

int cmd_history(const std::string& config_path, int64_t limit, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->maintenance_history(ops::MaintenanceHistoryQuery{limit, std::nullopt});
  if (!out) return report(out.error());
  if (as_json) {
    print_json(ops::to_json(*out));
    return kOk;
  }
  std::cout << fmt::format("{:>8} {:<20} {:<24} {:>10} {:>8} {:>10} {:>10}\n", "RUN", "TASK", "FINISHED", "DATABASE",
                           "ROWS", "LOGS FREED", "RECLAIMED");
  for (const store::MaintenanceFigures& f : out->runs)
    std::cout << fmt::format("{:>8} {:<20} {:<24} {:>10} {:>8} {:>10} {:>10}\n", f.run_id, f.task, or_dash(f.finished_at),
                             f.db_bytes ? size_text(*f.db_bytes) : "-", f.rows_deleted, size_text(f.log_bytes_freed),
                             size_text(f.db_bytes_reclaimed));
  if (out->runs.empty()) std::cout << "no retention or compactor run has recorded figures yet\n";
  return kOk;
}

// ---- nodes ---------------------------------------------------------------------

int cmd_nodes(const std::string& config_path, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto nodes = s.ops->nodes();
  if (!nodes) return report(nodes.error());
  if (as_json) {
    print_json(Json{{"nodes", ops::to_json(*nodes)}});
    return kOk;
  }
  if (nodes->empty()) {
    std::cout << "no node has registered yet (has the daemon run?)\n";
    return kOk;
  }
  const TimePoint now = SystemClock().now();
  std::cout << fmt::format("{:<24} {:<22} {:<26} {:>9} {:>10}  {}\n", "NODE", "API", "LAST HEARTBEAT", "IN FLIGHT",
                           "CLOCK", "STATE");
  for (const store::NodeInfo& n : *nodes) {
    const std::string ago = format_duration(std::max(Millis(0), std::chrono::duration_cast<Millis>(now - n.heartbeat_at)));
    const std::string state = n.dead_at ? "dead (declared by " + n.declared_dead_by + " at " + or_dash(n.dead_at) + ")"
                                        : ago + " ago";
    // The node's clock against the database server's, at its last heartbeat.
    const std::string clock = n.clock_offset_ms ? fmt::format("{:+} ms", *n.clock_offset_ms) : "-";
    std::cout << fmt::format("{:<24} {:<22} {:<26} {:>9} {:>10}  {}\n", n.name,
                             n.api_address.empty() ? "-" : n.api_address, format_rfc3339(n.heartbeat_at), n.in_flight,
                             clock, state);
  }
  return kOk;
}

int cmd_forget_node(const std::string& config_path, const std::string& name, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::write, s); rc != kOk) return rc;
  if (auto st = s.ops->forget_node(name); !st) return report(st.error());
  if (as_json) print_json(Json{{"forgotten", name}});
  else std::cout << "forgot node " << name << " and its tombstones\n";
  return kOk;
}

int cmd_check(const std::string& config_path, bool repair, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, repair ? ops::Access::write : ops::Access::read, s); rc != kOk) return rc;
  auto out = s.ops->check(repair);
  if (!out) return report(out.error());
  if (as_json) {
    print_json(ops::to_json(*out));
  } else {
    for (const ops::CheckProblem& p : out->problems)
      std::cout << p.kind << ": " << p.detail << (p.repaired ? " (repaired)" : "") << "\n";
    std::cout << (out->ok ? "check: ok" : "check: " + std::to_string(out->problems.size()) + " problem(s)")
              << (repair ? ", " + std::to_string(out->repaired) + " repaired" : "") << "\n";
  }
  return out->ok ? kOk : kFailure;
}

// ---- import-crontab -------------------------------------------------------------

// The whole of `file` (stdin for "" or "-"). Errors: io naming the file and the OS error.
Result<std::string> read_input(const std::string& file) {
  const bool from_stdin = file.empty() || file == "-";
  const std::string name = from_stdin ? "stdin" : file;
  auto cannot_read = [&](int err) {
    return fail(ErrorCode::io, "cannot read the crontab " + name + ": " + std::strerror(err));
  };
  std::error_code ec;
  if (!from_stdin && std::filesystem::is_directory(file, ec)) return cannot_read(EISDIR);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> opened(from_stdin ? nullptr : std::fopen(file.c_str(), "rb"),
                                                         &std::fclose);
  if (!from_stdin && !opened) return cannot_read(errno);
  std::FILE* in = from_stdin ? stdin : opened.get();
  std::string text;
  char buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, in)) > 0) text.append(buf, got);
  if (std::ferror(in)) return cannot_read(errno);
  return text;
}

int cmd_import_crontab(const std::string& file, bool system, const std::string& prefix) {
  const bool from_stdin = file.empty() || file == "-";
  const std::string source = from_stdin ? "stdin" : file;
  auto text = read_input(file);
  if (!text) return report(text.error());
  crontab::Options options;
  options.source = source;
  options.prefix = prefix;
  if (system) {
    options.format = crontab::Format::system;
  } else if (!from_stdin) {
    std::error_code ec;
    const std::filesystem::path absolute = std::filesystem::absolute(file, ec);
    if (!ec) options.format = crontab::format_for_path(absolute.lexically_normal().string());
  }
  auto out = crontab::convert(*text, options);
  if (!out) return report(out.error());
  std::cout << out->toml << std::flush;
  for (const crontab::Warning& w : out->warnings) std::cerr << source << ":" << w.line << ": " << w.message << "\n";
  if (!out->warnings.empty())
    std::cerr << source << ": " << out->tasks << " task(s), " << out->warnings.size()
              << " warning(s); each is also a comment in the output\n";
  return kOk;
}

// ---- the archive of purged runs ------------------------------------------------

int cmd_archive_list(const std::string& config_path, bool as_json) {
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  auto files = s.ops->archive_list();
  if (!files) return report(files.error());
  if (as_json) {
    print_json(Json{{"files", ops::to_json(*files)}});
    return kOk;
  }
  if (files->empty()) {
    std::cout << "no archive yet (runs are archived before they are deleted when [retention] archive = true)\n";
    return kOk;
  }
  std::cout << fmt::format("{:<12} {:>10} {:>12}\n", "DATE", "ENTRIES", "COMPRESSED");
  for (const ops::ArchiveFile& f : *files)
    std::cout << fmt::format("{:<12} {:>10} {:>12}\n", f.date, f.entries, size_text(f.bytes));
  return kOk;
}

struct ArchiveShowArgs {
  std::string date;
  std::string task;
  int64_t run_id = 0;
  bool json = false;
};

int cmd_archive_show(const std::string& config_path, const ArchiveShowArgs& a) {
  ops::ArchiveQuery q;
  q.date = a.date;
  if (!a.task.empty()) q.task = a.task;
  if (a.run_id > 0) q.run_id = a.run_id;
  q.limit = 1000;
  if (auto st = ops::check_archive_query(q); !st) return report(st.error());
  Session s;
  if (const int rc = open_session(config_path, ops::Access::read, s); rc != kOk) return rc;
  Json all = Json::array();
  int64_t shown = 0;
  while (true) {
    auto page = s.ops->archive_show(q);
    if (!page) return report(page.error());
    // Each entry on a line of its own (JSON lines), the same through a daemon or not.
    Json answer = ops::to_json(*page);
    for (Json& entry : answer["entries"]) {
      if (a.json) all.push_back(std::move(entry));
      else std::cout << ops::dump(entry) << "\n";
      ++shown;
    }
    if (!page->next) break;
    q.after = *page->next;
  }
  if (a.json) print_json(Json{{"date", a.date}, {"entries", std::move(all)}});
  std::cout.flush();
  if (shown == 0 && (q.task || q.run_id)) {
    std::cerr << "cronkeep: no archived run of " << a.date << " matches"
              << (q.task ? " --task " + *q.task : std::string())
              << (q.run_id ? " --run " + std::to_string(*q.run_id) : std::string()) << "\n";
    return kFailure;
  }
  return kOk;
}

// The first word that is not an option (nor the value of -c): the command.
std::optional<std::string> command_word(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      ++i;
      continue;
    }
    if (!arg.empty() && arg[0] == '-') continue;
    return std::string(arg);
  }
  return std::nullopt;
}

std::string command_list() {
  std::string out;
  for (const char* c : kCommands) out += (out.empty() ? "" : ", ") + std::string(c);
  return out;
}

}  // namespace

int main(int argc, char** argv, const DaemonMain& daemon_main) {
  CLI::App app{"cronkeep: runs commands on cron schedules, records every run, keeps its history bounded."};
  app.require_subcommand(1);
  app.fallthrough();
  std::string config_path = "cronkeep.toml";
  if (const char* env = std::getenv("CRONKEEP_CONFIG")) config_path = env;
  app.add_option("-c,--config", config_path, "configuration file (default: ./cronkeep.toml or $CRONKEEP_CONFIG)");
  app.set_version_flag("--version", "cronkeep 0.1.0");

  if (auto word = command_word(argc, argv);
      word && std::find(std::begin(kCommands), std::end(kCommands), *word) == std::end(kCommands)) {
    std::cerr << "cronkeep: unknown command \"" << *word << "\"; the commands are " << command_list()
              << " (cronkeep --help)\n";
    return kUsage;
  }

  bool as_json = false;
  int exit_code = kOk;

  auto* daemon_cmd = app.add_subcommand("daemon", "Run the scheduler and the HTTP API in the foreground until SIGTERM or SIGINT");
  std::string log_format = "text";
  daemon_cmd->add_option("--log-format", log_format,
                         "the daemon's own log on stdout: text (default; coloured only on a terminal) or json (one "
                         "{time, level, message} object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  daemon_cmd->callback([&] {
    auto cfg = load_or_report(config_path);
    exit_code = cfg ? daemon_main(*cfg, DaemonFlags{.json_log = log_format == "json"}) : kUsage;
  });

  auto* validate_cmd = app.add_subcommand(
      "validate", "Check a configuration; print every problem (file:line:column) or each task's next three fires");
  validate_cmd->add_flag("--json", as_json, "print JSON ({file, ok, problems, tasks}), also when there are problems");
  validate_cmd->callback([&] { exit_code = cmd_validate(config_path, as_json); });

  auto* tasks_cmd = app.add_subcommand(
      "tasks", "List tasks (configured, system, and removed ones with history): schedule, state, next fire, runs, last run");
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
  logs_cmd->add_option("--tail", logs_args.tail, "print only the last K lines (at most 10000; not with --from-line)")
      ->check(CLI::PositiveNumber);
  logs_cmd->add_flag("-f,--follow", logs_args.follow, "keep printing new lines until the run ends");
  logs_cmd->add_flag("--json", logs_args.json, "one JSON object per line: line, stream (o/e/m), time, text");
  logs_cmd->callback([&] { exit_code = cmd_logs(config_path, logs_args); });

  bool wait = false;
  std::vector<std::string> run_env;
  auto* run_cmd = app.add_subcommand(
      "run", "Run a task now through the running daemon (also a paused, disabled or on-demand task)");
  run_cmd->add_option("TASK", task, "task name")->required();
  run_cmd->add_option("--env", run_env,
                      "NAME=VALUE added to the task's environment for this run (repeatable; names [A-Za-z_][A-Za-z0-9_]*)")
      ->allow_extra_args(false);
  run_cmd->add_flag("--wait", wait,
                    "wait until the run (and its retries) ended; exit 0 only if the final attempt succeeded");
  run_cmd->add_flag("--json", as_json, "print the run as JSON");
  run_cmd->callback([&] { exit_code = cmd_run(config_path, task, wait, run_env, as_json); });

  for (const bool paused : {true, false}) {
    auto* cmd = app.add_subcommand(
        paused ? "pause" : "resume",
        paused ? "Stop a task's scheduled fires until `cronkeep resume` (kept across restarts; run now still works)"
               : "Let a paused task fire again; its next fire is computed from now (no catch-up of the pause)");
    cmd->add_option("TASK", task, "task name")->required();
    cmd->add_flag("--json", as_json, "print JSON");
    cmd->callback([&, paused] { exit_code = cmd_pause(config_path, task, paused, as_json); });
  }

  auto* reload_cmd = app.add_subcommand(
      "reload", "Make the running daemon read its configuration again (as SIGHUP does): all or nothing; runs in "
                "flight go on; a changed listen or data_dir needs a restart");
  reload_cmd->add_flag("--json", as_json, "print JSON");
  reload_cmd->callback([&] { exit_code = cmd_reload(config_path, as_json); });

  int notify_limit = 50;
  auto* notifications_cmd = app.add_subcommand(
      "notifications", "List notification delivery attempts, newest first: sink, event, task, count, attempt, "
                       "status, response code, error");
  notifications_cmd->add_option("-n,--limit", notify_limit, "how many (1-1000, default 50)")->check(CLI::Range(1, 1000));
  notifications_cmd->add_flag("--json", as_json, "print JSON");
  notifications_cmd->callback([&] { exit_code = cmd_notifications(config_path, notify_limit, as_json); });

  int64_t run_id = 0;
  auto* cancel_cmd = app.add_subcommand("cancel", "Cancel a queued or running run (SIGTERM, then SIGKILL after graceful_stop)");
  cancel_cmd->add_option("TASK", task, "task name")->required();
  cancel_cmd->add_option("RUN", run_id, "run id")->required()->check(CLI::PositiveNumber);
  cancel_cmd->add_flag("--json", as_json, "print JSON");
  cancel_cmd->callback([&] { exit_code = cmd_cancel(config_path, task, run_id, as_json); });

  auto* delete_cmd = app.add_subcommand("delete", "Delete one ended run: its row, its log and the log's sidecars");
  delete_cmd->add_option("TASK", task, "task name")->required();
  delete_cmd->add_option("RUN", run_id, "run id")->required()->check(CLI::PositiveNumber);
  delete_cmd->add_flag("--json", as_json, "print JSON");
  delete_cmd->callback([&] { exit_code = cmd_delete(config_path, task, run_id, as_json); });

  PurgeArgs purge;
  auto* purge_cmd = app.add_subcommand(
      "purge", "Delete ended runs (rows, logs and sidecars) that finished before now minus --older-than; each task's "
               "newest success and newest failure stay unless --all");
  purge_cmd->add_option("--older-than", purge.older_than, "age, e.g. 30d, 12h, 2w")->required();
  purge_cmd->add_option("--task", purge.task, "only this task");
  purge_cmd->add_option("--status", purge.status, "only runs with this terminal status");
  purge_cmd->add_option("--limit", purge.limit, "at most N runs, oldest first");
  purge_cmd->add_flag("--dry-run", purge.dry_run, "print per task how many runs and log bytes would go; delete nothing");
  purge_cmd->add_flag("--all", purge.all, "also delete each task's newest success and newest failure");
  purge_cmd->add_flag("-y,--yes", purge.yes, "do not ask on a terminal");
  purge_cmd->add_flag("--json", purge.json, "print JSON");
  purge_cmd->callback([&] { exit_code = cmd_purge(config_path, purge); });

  bool full = false;
  auto* compact_cmd = app.add_subcommand(
      "compact", "Give free database pages back to the file system in slices and truncate the WAL");
  compact_cmd->add_flag("--full", full,
                        "run a VACUUM instead (also converts a database created without incremental auto-vacuum)");
  compact_cmd->add_flag("--json", as_json, "print JSON");
  compact_cmd->callback([&] { exit_code = cmd_compact(config_path, full, as_json); });

  int64_t history = 0;
  auto* status_cmd = app.add_subcommand(
      "status", "Retention and compactor: last and next run, what they deleted and reclaimed; database and log sizes");
  status_cmd->add_flag("--json", as_json, "print JSON");
  auto* history_opt = status_cmd->add_option("--history", history,
                         "instead: the figures of the last N retention and compactor runs (1-1000), newest first, "
                         "with the database size after each");
  status_cmd->callback([&] {
    exit_code = *history_opt ? cmd_history(config_path, history, as_json) : cmd_status(config_path, as_json);
  });

  bool repair = false;
  auto* check_cmd = app.add_subcommand(
      "check", "Verify the data directory: integrity, rows without logs, logs and sidecars without rows, tombstones");
  check_cmd->add_flag("--repair", repair,
                      "fix what can be fixed safely (through the daemon when one runs: runs in flight are left alone)");
  check_cmd->add_flag("--json", as_json, "print JSON");
  check_cmd->callback([&] { exit_code = cmd_check(config_path, repair, as_json); });

  auto* nodes_cmd = app.add_subcommand(
      "nodes", "The nodes sharing the database: API address, last heartbeat, runs in flight, dead or alive");
  nodes_cmd->add_flag("--json", as_json, "print JSON");
  std::string node;
  auto* forget_cmd = nodes_cmd->add_subcommand(
      "forget", "Forget a node gone for good: drop its row and its tombstones (its log files went with it)");
  forget_cmd->add_option("NAME", node, "the node's name")->required();
  forget_cmd->add_flag("--json", as_json, "print JSON");
  forget_cmd->callback([&] { exit_code = cmd_forget_node(config_path, node, as_json); });
  nodes_cmd->callback([&] {
    if (nodes_cmd->get_subcommands().empty()) exit_code = cmd_nodes(config_path, as_json);
  });

  std::string crontab_file;
  bool crontab_system = false;
  std::string crontab_prefix;
  auto* import_cmd = app.add_subcommand(
      "import-crontab",
      "Print a crontab as cronkeep TOML ([tasks.NAME] tables, each after its crontab line as a comment); what "
      "cannot be carried over (@reboot, MAILTO, lines cronkeep's cron parser refuses) is a comment there and a "
      "warning on stderr (docs/import-crontab.md)");
  import_cmd->add_option("FILE", crontab_file, "the crontab to read; - or none: stdin")->type_name("FILE");
  import_cmd->add_flag("--system", crontab_system,
                       "system format, with a user field after the time fields (m h dom mon dow user command); "
                       "the default for /etc/crontab and /etc/cron.d/*");
  import_cmd->add_option("--prefix", crontab_prefix,
                         "start every task name with PREFIX- (to import several crontabs into one configuration)")
      ->type_name("PREFIX");
  import_cmd->callback([&] { exit_code = cmd_import_crontab(crontab_file, crontab_system, crontab_prefix); });
  auto* archive_cmd = app.add_subcommand(
      "archive", "Read the archive of purged runs ([retention] archive = true): one file per day in {data_dir}/archive");
  archive_cmd->require_subcommand(1);
  auto* archive_list_cmd =
      archive_cmd->add_subcommand("list", "List the archive's days: date (UTC), runs archived, compressed size");
  archive_list_cmd->add_flag("--json", as_json, "print JSON ({\"files\": [{date, entries, bytes}]})");
  archive_list_cmd->callback([&] { exit_code = cmd_archive_list(config_path, as_json); });
  ArchiveShowArgs archive_args;
  auto* archive_show_cmd = archive_cmd->add_subcommand(
      "show", "Print the runs archived on DATE, one JSON object per line (the run as the API shows it, why it was "
              "deleted, and its log with archive_logs); a run archived twice is shown once");
  archive_show_cmd->add_option("DATE", archive_args.date, "the day the runs were deleted, YYYY-MM-DD (UTC)")
      ->required();
  archive_show_cmd->add_option("--task", archive_args.task, "only this task's runs");
  archive_show_cmd->add_option("--run", archive_args.run_id, "only this run")->check(CLI::PositiveNumber);
  archive_show_cmd->add_flag("--json", archive_args.json, "print one JSON document ({\"date\", \"entries\": [...]})");
  archive_show_cmd->callback([&] { exit_code = cmd_archive_show(config_path, archive_args); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  return exit_code;
}

}  // namespace cronkeep::cli
