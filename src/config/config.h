// config/config.h: the TOML configuration as plain, validated structs.
//
// Owns: reading cronkeep.toml (toml++), defaults and [defaults] inheritance,
// durations and sizes, validation of every key, and error reports that name
// file:line:column and the key. Must not know about the database, processes or
// HTTP. parse_config() is pure; load_config() only adds reading the file.
//
// Every field below states its default; they match ../shared/DESIGN.md.
// Relative paths (data_dir, token_file, workdir) are resolved against the
// directory of the configuration file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "base/time.h"
#include "cron/cron.h"

namespace cronkeep::config {

using namespace std::chrono_literals;

enum class LogOnFull { drop_old, drop_new, kill_task };
enum class Overlap { queue, skip, terminate };
enum class CatchUp { latest, all, skip };
enum class Backoff { constant, linear, exponential };
enum class Backend { sqlite, postgres };
enum class Vacuum { incremental, full, off };

const char* to_string(LogOnFull v);
const char* to_string(Overlap v);
const char* to_string(CatchUp v);
const char* to_string(Backoff v);
const char* to_string(Backend v);
const char* to_string(Vacuum v);

// The keys [defaults] sets and every [tasks.NAME] may override.
struct TaskPolicy {
  int64_t keep_runs = 100;                          // >= 1
  Millis keep_for = 30 * 24h;                       // > 0
  Millis keep_failed_for = 90 * 24h;                // > 0
  uint64_t log_max_size = 100ull * 1024 * 1024;     // bytes; 0 = unbounded
  LogOnFull log_on_full = LogOnFull::drop_old;
  Millis timeout = 0ms;                             // per attempt; 0 = none
  Millis graceful_stop = 5s;                        // SIGTERM → SIGKILL
  int max_concurrent = 1;                           // >= 1
  Overlap on_overlap = Overlap::queue;
  int queue_max = 100;                              // >= 0
  CatchUp catch_up = CatchUp::latest;
  int max_catch_up_runs = 100;                      // >= 1
  int retry_attempts = 0;                           // >= 0, retries after the first attempt
  Millis retry_delay = 5s;
  Backoff retry_backoff = Backoff::exponential;     // each wait capped at 5 min
  Millis jitter = 0ms;                              // random delay in [0, jitter]
  std::vector<std::string> notify;                  // [notify.NAME] sinks for the task's events; none by default

  bool operator==(const TaskPolicy&) const = default;
};

struct Task {
  std::string name;        // layout::valid_task_name: [A-Za-z0-9][A-Za-z0-9._-]{0,127}, no ".."
  std::string cron;        // validated by cron::Schedule::parse; empty = runs only on demand
  std::string run;         // the shell command, non-empty
  std::string timezone;    // IANA name; defaults to [daemon] timezone
  std::map<std::string, std::string> env;  // added to the daemon's environment
  std::string workdir;     // absolute after loading; empty = the data_dir
  bool enabled = true;     // false: never fires on its own (run now still works)
  // Pinned: fires on its own only on these nodes ([daemon] node names);
  // empty = on any node. Run now works on every node.
  std::vector<std::string> nodes;
  // Run as this user (and group): the daemon must run as root. Empty = as the
  // daemon. `group` (needs `user`) replaces the user's primary group;
  // supplementary groups are the user's (initgroups). load_config() refuses a
  // user or group the system does not know; parse_config() checks only the form.
  std::string user;
  std::string group;
  struct At {
    int line = 0, column = 0;
  };
  At user_at, group_at;    // where `user` and `group` were written, for load_config's problems
  TaskPolicy policy;       // [defaults] overridden by the task's own keys
  // Parsed once, by parse_config (or prepare() for a Config built in code):
  std::optional<cron::Schedule> schedule;  // `cron`, parsed
  std::optional<cron::Zone> zone;          // `timezone`, located
};

struct Daemon {
  std::string data_dir = "./cronkeep-data";  // absolute after loading
  std::string listen = "127.0.0.1:7070";     // host:port
  std::string timezone = "UTC";              // default zone for cron
  Millis shutdown_timeout = 10s;
  std::string token_file;                    // empty = {data_dir}/token
  int max_log_streams = 256;                 // concurrent SSE streams (logs and events), 1..10000
  int max_log_streams_per_client = 64;       // per client address, 1..10000
  // This node's name among the nodes sharing a PostgreSQL database: runs,
  // fires and tombstones record it. Empty = the host name (the daemon looks
  // it up). When set: [A-Za-z0-9][A-Za-z0-9._-]{0,127}.
  std::string node;
  // PostgreSQL: a node whose heartbeat is older than this is declared dead
  // by another node (its in-flight runs become crashed). Heartbeats go every
  // lease / 3. >= 1s.
  Millis node_lease = 30s;
};

struct Storage {
  Backend backend = Backend::sqlite;
  // Required when backend = "postgres": a libpq URI or key=value string,
  // e.g. "postgresql://cronkeep@db1/cronkeep". Ignored for sqlite.
  std::string postgres_url;
  uint64_t min_free_space = 1024ull * 1024 * 1024;  // bytes
  uint64_t max_size = 0;                         // all log bytes; 0 = none
};

struct Retention {
  std::string schedule = "@every 1h";  // cron expression (in UTC)
  std::optional<cron::Schedule> parsed;  // `schedule`, parsed (prepare())
  Millis max_age = 365 * 24h;
  int64_t max_runs = 1'000'000;        // >= 1
  int64_t batch_size = 1000;           // >= 1
  // 0 < x <= 1. A sweep whose age rules (keep_for, keep_failed_for, max_age)
  // would delete more than this fraction of the terminal runs, or that runs
  // later than the newest run by more than the retention window, deletes by
  // count and size only and fails, saying why (a clock fault is likely).
  double max_fraction_per_sweep = 0.5;
  // Before a run is deleted (sweeps, purge, delete), write its row to
  // {data_dir}/archive/{YYYY-MM-DD}.jsonl.zst (docs/retention.md "Archive").
  bool archive = false;
  bool archive_logs = false;           // with its log's text; requires archive
  Millis archive_keep_for = 365 * 24h; // > 0; sweeps remove archive files older than this
};

struct Compactor {
  std::string schedule = "@every 1h";    // cron expression (in UTC)
  std::optional<cron::Schedule> parsed;  // `schedule`, parsed (prepare())
  Vacuum vacuum = Vacuum::incremental;
};

// The events a sink may receive (DESIGN.md, issue 13).
inline constexpr const char* kNotifyEvents[] = {"failed",        "timeout",          "crashed",
                                                "log_overflow",  "missed",           "recovered",
                                                "disk_pressure", "retention_failed", "compactor_failed"};

// A [notify.NAME] sink: exactly one of webhook and command.
struct NotifySink {
  std::string name;
  std::string webhook;       // http:// or https:// URL; JSON POST
  std::string command;       // /bin/sh -c, the event in CRONKEEP_* variables and as JSON on stdin
  std::string secret_file;   // absolute after loading; its first line signs webhook bodies (HMAC-SHA256)
  std::string secret;        // read by load_config(); empty: no signature header
  std::vector<std::string> events;  // default: every event
  Millis timeout = 10s;      // one attempt (request or command)
  int line = 0, column = 0;  // where the sink was declared (problems found after parsing)
  bool operator==(const NotifySink&) const = default;
};

struct Config {
  std::string path;  // the file it came from, as given
  Daemon daemon;
  Storage storage;
  Retention retention;
  Compactor compactor;
  TaskPolicy defaults;
  std::vector<Task> tasks;  // in file order
  std::vector<NotifySink> notify;  // [notify.NAME], in file order

  // The task named `name`, or nullptr.
  const Task* find_task(std::string_view name) const;
};

// One thing wrong with a configuration.
struct Problem {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string key; // dotted path, e.g. "tasks.backup.keep_for"; may be empty
  std::string message;

  // "file:line:column: key: message"
  std::string to_string() const;
};

using Problems = std::vector<Problem>;

// Parses and validates TOML text. `file_name` is used in problems and to
// resolve relative paths. Returns the config, or every problem found (a
// TOML syntax error stops at that error, since the rest cannot be read).
// Thread-safe.
tl::expected<Config, Problems> parse_config(std::string_view text, std::string_view file_name);

// Reads the file at `path` and parses it. A file that cannot be read is one
// Problem naming the path and the OS error.
tl::expected<Config, Problems> load_config(const std::string& path);

// Parses every schedule and locates every zone of `config` into the parsed
// fields (a task without a timezone gets [daemon] timezone). parse_config
// does this; code that builds a Config by hand calls it. Returns the
// problems (an invalid expression or zone), empty when all parsed.
Problems prepare(Config& config);

// True when two tasks have the same settings (every key; the parsed
// schedule and zone follow from them). For reload's report of what changed.
bool same_settings(const Task& a, const Task& b);

// True when `name` is a valid task name (layout::valid_task_name).
bool valid_task_name(std::string_view name);

}  // namespace cronkeep::config
