// Purge: N terminal runs with log files, all expired, purged by a retention
// sweep while a real scheduler fires 20 tasks @every 1s in the same process;
// against the physical limit measured in the same run on a copy: one raw
// DELETE of the same rows plus `find … -delete` of the same files. Then the
// space check: compact once and compare with a VACUUMed copy.
//
//   build/bench/purge_bench [RUNS=1000000] [DIR=/tmp]
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

using namespace cronkeep;
namespace fs = std::filesystem;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void sql(sqlite3* db, const std::string& q) {
  char* err = nullptr;
  if (sqlite3_exec(db, q.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sql: %s: %s\n", q.c_str(), err);
    std::exit(1);
  }
}

// A database with `n` terminal runs of 100 tasks, finished 400 days ago,
// each with a 120-byte log and the sidecars the writer leaves beside a log
// with output (.idx, .tidx, .meta); built with raw inserts for speed.
void build_history(const std::string& dir, int64_t n) {
  fs::create_directories(dir);
  { auto s = store::open_sqlite(dir + "/cronkeep.db"); if (!s) std::exit(1); }
  sqlite3* db = nullptr;
  sqlite3_open((dir + "/cronkeep.db").c_str(), &db);
  sql(db, "PRAGMA synchronous=OFF");
  sql(db, "BEGIN");
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO runs (task, trigger, status, scheduled_at, created_at, started_at, finished_at, "
                     "exit_code, duration_ms, log_path, log_bytes, message) VALUES (?1, 'schedule', 'succeeded', ?2, ?2, ?2, ?2, 0, 5, ?3, 120, 'exit code 0')",
                     -1, &ins, nullptr);
  const int64_t t0 = to_unix_ms(SystemClock().now()) - 400LL * 86'400'000;
  const std::string line(119, 'x');
  for (int64_t i = 1; i <= n; ++i) {
    const std::string task = "old" + std::to_string(i % 100);
    const std::string rel = "logs/" + task + "/20251001_000000_" + std::to_string(i) + ".log";
    if (i <= 100) fs::create_directories(dir + "/logs/" + task);
    std::ofstream(dir + "/" + rel) << line << '\n';
    std::ofstream(dir + "/" + rel + ".idx") << "cronkeep-idx record";
    std::ofstream(dir + "/" + rel + ".tidx") << "cronkeep-tidx record";
    std::ofstream(dir + "/" + rel + ".meta") << "cronkeep-log-meta 1\nfinalized=1\n";
    sqlite3_bind_text(ins, 1, task.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins, 2, t0 + i);
    sqlite3_bind_text(ins, 3, rel.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(ins) != SQLITE_DONE) std::exit(1);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  // Rows written behind the store's back: their counts too (task_stats).
  sql(db, "DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;");
  sql(db, "COMMIT");
  sql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

int64_t file_size(const std::string& p) {
  std::error_code ec;
  auto s = fs::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(s);
}

double percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1'000'000;
  const std::string base = std::string(argc > 2 ? argv[2] : "/tmp") + "/cronkeep-purge-bench";
  fs::remove_all(base);
  std::printf("purge of %lld expired runs with their log files (log + 3 sidecars each)\n", static_cast<long long>(n));
  double t = now_s();
  build_history(base + "/a", n);
  build_history(base + "/b", n);
  std::printf("  (built two histories in %.0f s; database %.0f MB each)\n", now_s() - t,
              static_cast<double>(file_size(base + "/a/cronkeep.db")) / 1e6);

  // Both sides start from the same state of the page cache: everything
  // written back (sync), and cold caches where we may drop them (root).
  // Without it, find -delete ran on files still dirty in the cache while the
  // sweep met files already written back: 0.4x to 8.8x from run to run.
  auto settle = [] {
    ::sync();
    std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
    const bool dropped = f && std::fputs("3\n", f) >= 0;
    if (f) std::fclose(f);
    return dropped;
  };
  std::printf("  (caches %s before each side)\n", settle() ? "synced and dropped" : "synced (not dropped: not root)");

  // The physical limit, on copy b: one DELETE, then find -delete.
  double limit = 0;
  {
    sqlite3* db = nullptr;
    sqlite3_open((base + "/b/cronkeep.db").c_str(), &db);
    sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    t = now_s();
    sql(db, "DELETE FROM runs");
    const double del = now_s() - t;
    sqlite3_close(db);
    t = now_s();
    if (std::system(("find " + base + "/b/logs -mindepth 1 -delete").c_str()) != 0) return 1;
    const double find = now_s() - t;
    std::printf("  limit: one DELETE %.2f s + find -delete %.2f s = %.2f s\n", del, find, del + find);
    limit = del + find;
  }

  // cronkeep on a: a retention sweep while the scheduler fires 20 tasks @every 1s.
  auto store = store::open_sqlite(base + "/a/cronkeep.db");
  if (!store) return 1;
  config::Config cfg;
  cfg.daemon.data_dir = base + "/a";
  for (int i = 1; i <= 20; ++i) {
    config::Task task;
    task.name = "live" + std::to_string(i);
    task.cron = "@every 1s";
    task.run = "true";
    task.workdir = "/tmp";
    cfg.tasks.push_back(task);
  }
  cfg.storage.min_free_space = 0;
  SystemClock clock;
  if (!config::prepare(cfg).empty()) return 1;
  scheduler::Scheduler sched(cfg, **store, clock, scheduler::Options{cfg.daemon.data_dir, std::chrono::seconds(5), 1, {}, nullptr});
  if (!sched.start()) return 1;
  std::thread loop([&] { sched.run_loop(); });
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a steady state before the purge
  const TimePoint purge_start = clock.now();
  retention::Policy policy;
  policy.defaults = retention::TaskRules{1, std::chrono::hours(1), std::chrono::hours(1)};
  policy.max_age = std::chrono::hours(24 * 365);
  retention::Executor executor(**store, layout::DataDir(cfg.daemon.data_dir), 1000);
  // As the daemon wires it (daemon.cc); CRONKEEP_BENCH_NO_PACE=1 measures without.
  if (!std::getenv("CRONKEEP_BENCH_NO_PACE")) executor.set_pace([&sched] { return sched.bulk_io_wait(); });
  settle();
  t = now_s();
  auto report = retention::sweep(**store, executor, policy, clock.now());
  const double took = now_s() - t;
  const TimePoint purge_end = clock.now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  sched.shutdown();
  loop.join();
  if (!report) {
    std::fprintf(stderr, "purge failed: %s\n", report.error().message.c_str());
    return 1;
  }
  std::vector<int64_t> lateness;
  for (int i = 1; i <= 20; ++i) {
    auto runs = (*store)->list_runs(store::RunQuery{"live" + std::to_string(i), 1000, std::nullopt, std::nullopt});
    for (const auto& r : *runs)
      if (r.trigger == store::Trigger::schedule && r.started_at && r.scheduled_at && *r.scheduled_at >= purge_start &&
          *r.scheduled_at <= purge_end)
        lateness.push_back((*r.started_at - *r.scheduled_at).count());
  }
  std::printf("  cronkeep sweep: %.2f s for %lld run(s), %lld file(s), %lld batch(es) = %.2fx the limit (goal <= 1.5x)\n",
              took, static_cast<long long>(report->rows), static_cast<long long>(report->files_deleted),
              static_cast<long long>(report->batches), took / limit);
  std::printf("  scheduler lateness during the purge (%zu fires of 20 tasks @every 1s): p50 %.0f ms, p99 %.0f ms, max %.0f ms (goal p99 < 20 ms)\n",
              lateness.size(), percentile(lateness, 0.5), percentile(lateness, 0.99), percentile(lateness, 1.0));

  // Space: one compactor cycle against a VACUUMed copy.
  const int64_t before = file_size(base + "/a/cronkeep.db");
  t = now_s();
  auto c = retention::compact(**store, retention::CompactMode::incremental);
  const double compact_s = now_s() - t;
  if (!c) return 1;
  const int64_t after = file_size(base + "/a/cronkeep.db");
  store->reset();
  fs::copy_file(base + "/a/cronkeep.db", base + "/vacuumed.db");
  sqlite3* db = nullptr;
  sqlite3_open((base + "/vacuumed.db").c_str(), &db);
  sql(db, "VACUUM");
  sqlite3_close(db);
  const int64_t vacuumed = file_size(base + "/vacuumed.db");
  std::printf("  compaction: %.1f MB -> %.1f MB in %.2f s (%lld slices); VACUUMed copy %.1f MB; ratio %.2fx (goal <= 1.25x)\n",
              static_cast<double>(before) / 1e6, static_cast<double>(after) / 1e6, compact_s,
              static_cast<long long>(c->slices), static_cast<double>(vacuumed) / 1e6,
              static_cast<double>(after) / static_cast<double>(std::max<int64_t>(1, vacuumed)));
  fs::remove_all(base);
  return 0;
}
