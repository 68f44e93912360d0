// Retention sweep on a long history: the plan in memory (the sweep before
// issue 14 item 8: list_briefs, plan_purge, the age guard, then the
// executor) against the plan in the database (retention::sweep:
// Store::expiry_marks, then Store::plan_expired a page at a time, each page
// through the same executor). Both delete the same runs (checked). Each
// sweep runs in a fresh process on a fresh copy of the history, so its peak
// RSS is its own; the variants alternate; medians are printed.
//
//   build/bench/retention_bench [RUNS=1000000] [REPS=3] [SCENARIO=age|count] [DIR=/tmp]
//   tests/with_pg.sh build/bench/retention_bench --postgres [RUNS] [REPS] [SCENARIO]
//
// The history: RUNS runs of 100 tasks finished evenly over 400 days up to
// now (2% failed, 3% skipped, the 20 newest running), 120 log bytes each and
// no log file (file removal is purge_bench's subject). Scenario `age`:
// keep_for = keep_failed_for = 360d, keep_runs twice a task's runs, so the
// oldest ~10% expire by keep_for. Scenario `count`: keep_runs = 90% of a task's runs,
// keep_for 1000d, so ~10% expire by keep_runs. Both: max_age 365d,
// batch_size 1000 (the defaults), max_runs 1,000,000 (the default) or RUNS
// when larger (not reached).
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "retention/retention.h"
#include "store/store.h"

using namespace cronkeep;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kTasks = 100;
constexpr int64_t kDayMs = 86'400'000;
const TimePoint kNow = from_unix_ms(1'795'406'400'000);

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The rows, as one INSERT … SELECT over a counter i = 1..n, for either SQL.
std::string history_select(int64_t n, bool postgres) {
  const std::string span = std::to_string(400 * kDayMs);
  const std::string t0 = std::to_string(to_unix_ms(kNow) - 400 * kDayMs);
  const std::string fin = t0 + " + (i * " + span + ") / " + std::to_string(n);
  const std::string series = postgres ? "generate_series(1, " + std::to_string(n) + ") AS g(i)"
                                      : "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
                                            std::to_string(n) + ") SELECT i FROM c)";
  return "INSERT INTO runs (task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code,"
         " duration_ms, log_bytes, message) SELECT 'task' || (i % " + std::to_string(kTasks) + "), 'schedule',"
         " CASE WHEN i > " + std::to_string(n - 20) + " THEN 'running' WHEN i % 50 = 0 THEN 'failed'"
         " WHEN i % 33 = 0 THEN 'skipped' ELSE 'succeeded' END,"
         " " + fin + " - 1000, " + fin + " - 1000, " + fin + " - 1000,"
         " CASE WHEN i > " + std::to_string(n - 20) + " THEN NULL ELSE " + fin + " END, 0, 1000, 120, 'exit code 0'"
         " FROM " + series;
}

// Rows written behind the store's back: their counts too (task_stats).
constexpr const char* kRecount =
    "DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;";

retention::Policy policy_for(const std::string& scenario, int64_t n) {
  retention::Policy p;
  p.max_age = Millis(365 * kDayMs);
  p.max_runs = std::max<int64_t>(1'000'000, n);  // the default, or no cap on a longer history
  if (scenario == "all") {  // every run but each task's newest: a purge of the whole history
    p.defaults = retention::TaskRules{1, Millis(1000 * kDayMs), Millis(1000 * kDayMs)};
  } else if (scenario == "count") {
    p.defaults = retention::TaskRules{(n / kTasks) * 9 / 10, Millis(1000 * kDayMs), Millis(1000 * kDayMs)};
  } else {
    p.defaults = retention::TaskRules{2 * n / kTasks, Millis(360 * kDayMs), Millis(360 * kDayMs)};
  }
  return p;
}

// The sweep as it was before the plan moved into the store.
Result<retention::PurgeReport> sweep_in_memory(store::Store& store, retention::Executor& executor,
                                               const retention::Policy& policy, TimePoint now) {
  auto leftover = executor.replay_tombstones();
  if (!leftover) return tl::unexpected(leftover.error());
  auto runs = store.list_briefs();
  if (!runs) return tl::unexpected(runs.error());
  std::vector<retention::Expired> expired = retention::plan_purge(policy, *runs, now);
  const auto held = retention::age_rules_held_back(policy, *runs, expired, now);
  if (held) expired = retention::plan_purge(retention::without_age_rules(policy), *runs, now);
  runs->clear();
  runs->shrink_to_fit();
  return executor.purge(expired);
}

struct Sample {
  double wall_s = 0;
  double cpu_s = 0;
  long max_rss_kb = 0;
  long long rows = 0;
};

// The child: one sweep, its figures on stdout.
int child(const std::string& mode, const std::string& backend, const std::string& target, const std::string& scenario,
          int64_t n, const std::string& dir) {
  auto store = backend == "postgres" ? store::open_postgres(target) : store::open_sqlite(target);
  if (!store) {
    std::fprintf(stderr, "open: %s\n", store.error().message.c_str());
    return 1;
  }
  retention::Executor executor(**store, layout::DataDir(dir), 1000);
  const retention::Policy policy = policy_for(scenario, n);
  const double t0 = now_s();
  auto report = mode == "memory" ? sweep_in_memory(**store, executor, policy, kNow)
                                 : retention::sweep(**store, executor, policy, kNow);
  const double wall = now_s() - t0;
  if (!report) {
    std::fprintf(stderr, "sweep: %s\n", report.error().message.c_str());
    return 1;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  std::printf("%f %f %ld %lld\n", wall, cpu, ru.ru_maxrss, static_cast<long long>(report->rows));
  return 0;
}

Sample run_child(const std::string& self, const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) std::exit(1);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(self.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  Sample s;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      std::sscanf(out.c_str(), "%lf %lf %ld %lld", &s.wall_s, &s.cpu_s, &s.max_rss_kb, &s.rows) != 4) {
    std::fprintf(stderr, "child failed: %s\n", out.c_str());
    std::exit(1);
  }
  return s;
}

template <class T>
T median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void sql(sqlite3* db, const std::string& q) {
  char* err = nullptr;
  if (sqlite3_exec(db, q.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sql: %s\n", err);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::setenv("CRONKEEP_MODULE_DIR", CRONKEEP_MODULE_BUILD_DIR, 0);  // the PostgreSQL module, unless told otherwise
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--child")  // --child MODE BACKEND TARGET SCENARIO RUNS DIR
    return child(args[1], args[2], args[3], args[4], std::atoll(args[5].c_str()), args[6]);
  const bool postgres = !args.empty() && args[0] == "--postgres";
  if (postgres) args.erase(args.begin());
  const int64_t n = args.size() > 0 ? std::atoll(args[0].c_str()) : 1'000'000;
  const int reps = args.size() > 1 ? std::atoi(args[1].c_str()) : 3;
  const std::string scenario = args.size() > 2 ? args[2] : "age";
  const std::string base = std::string(args.size() > 3 ? args[3] : "/tmp") + "/cronkeep-retention-bench";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  fs::remove_all(base);
  fs::create_directories(base + "/data");

  const char* pg_env = std::getenv("CRONKEEP_TEST_PG_URL");
  const std::string pg_base = pg_env ? pg_env : "";
  if (postgres && pg_base.empty()) {
    std::fprintf(stderr, "--postgres needs CRONKEEP_TEST_PG_URL (run through tests/with_pg.sh)\n");
    return 2;
  }
  // A database named `name` on the server of CRONKEEP_TEST_PG_URL.
  auto pg_url = [&](const std::string& name) {
    const size_t slash = pg_base.find(":///");
    const size_t q = pg_base.find('?');
    return pg_base.substr(0, slash + 4) + name + (q == std::string::npos ? "" : pg_base.substr(q));
  };
  auto pg_admin = [&](const std::string& statement) {
    pqxx::connection c(pg_base);
    pqxx::nontransaction tx(c);
    tx.exec(statement);
  };

  std::printf("retention sweep, %s, %lld runs, scenario %s\n", postgres ? "PostgreSQL" : "SQLite",
              static_cast<long long>(n), scenario.c_str());
  double t = now_s();
  if (postgres) {
    pg_admin("DROP DATABASE IF EXISTS ck_bench_base");
    pg_admin("CREATE DATABASE ck_bench_base");
    if (!store::open_postgres(pg_url("ck_bench_base"))) return 1;
    {
      pqxx::connection c(pg_url("ck_bench_base"));
      pqxx::nontransaction tx(c);
      tx.exec(history_select(n, true));
      tx.exec(kRecount);
    }
    // As autovacuum would leave it: statistics, and the visibility map set
    // (index-only scans). The copies (CREATE DATABASE … TEMPLATE) keep both.
    for (int attempt = 0; attempt < 10; ++attempt) {
      pqxx::connection c(pg_url("ck_bench_base"));
      pqxx::nontransaction tx(c);
      tx.exec("VACUUM (ANALYZE) runs");
      auto r = tx.exec("SELECT relallvisible >= relpages FROM pg_class WHERE relname = 'runs'");
      if (r[0][0].as<bool>()) break;
    }
  } else {
    { if (!store::open_sqlite(base + "/base.db")) return 1; }
    sqlite3* db = nullptr;
    sqlite3_open((base + "/base.db").c_str(), &db);
    sql(db, "PRAGMA synchronous=OFF");
    sql(db, "BEGIN");
    sql(db, history_select(n, false));
    sql(db, kRecount);
    sql(db, "COMMIT");
    sql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
  }
  std::printf("  (history built in %.0f s)\n", now_s() - t);

  std::vector<Sample> samples[2];
  const char* modes[2] = {"memory", "sql"};
  for (int rep = 0; rep < reps; ++rep) {
    for (int m = 0; m < 2; ++m) {
      const int which = (rep % 2 == 0) ? m : 1 - m;  // alternate which goes first
      std::string target;
      if (postgres) {
        pg_admin("DROP DATABASE IF EXISTS ck_bench_work");
        pg_admin("CREATE DATABASE ck_bench_work TEMPLATE ck_bench_base");
        target = pg_url("ck_bench_work");
      } else {
        target = base + "/work.db";
        fs::remove(target);
        fs::remove(target + "-wal");
        fs::remove(target + "-shm");
        fs::copy_file(base + "/base.db", target);
      }
      ::sync();
      const Sample s = run_child(self, {"--child", modes[which], postgres ? "postgres" : "sqlite", target, scenario,
                                        std::to_string(n), base + "/data"});
      std::printf("  %-6s rep %d: %.2f s wall, %.2f s CPU, peak RSS %.1f MB, %lld run(s) deleted\n", modes[which],
                  rep + 1, s.wall_s, s.cpu_s, static_cast<double>(s.max_rss_kb) / 1024.0, s.rows);
      std::fflush(stdout);
      samples[which].push_back(s);
    }
  }
  if (samples[0].front().rows != samples[1].front().rows) {
    std::fprintf(stderr, "the two plans deleted different numbers of runs\n");
    return 1;
  }
  for (int m = 0; m < 2; ++m) {
    std::vector<double> wall, cpu;
    std::vector<long> rss;
    for (const Sample& s : samples[m]) {
      wall.push_back(s.wall_s);
      cpu.push_back(s.cpu_s);
      rss.push_back(s.max_rss_kb);
    }
    std::printf("  median %-6s: %.2f s wall, %.2f s CPU, peak RSS %.1f MB (%lld runs deleted)\n", modes[m],
                median(wall), median(cpu), static_cast<double>(median(rss)) / 1024.0, samples[m].front().rows);
  }
  if (std::getenv("CRONKEEP_BENCH_KEEP")) return 0;  // leave the histories for a closer look
  if (postgres) {
    pg_admin("DROP DATABASE IF EXISTS ck_bench_work");
    pg_admin("DROP DATABASE IF EXISTS ck_bench_base");
  }
  fs::remove_all(base);
  return 0;
}
