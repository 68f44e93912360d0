// History page latency through HTTP on loopback: a database of RUNS runs
// across 100 tasks (one task holding 60% of them), the first page of a task
// and a page 500,000 rows deep (keyset paging), each requested REPS times
// over a keep-alive connection; p50 and p99. As a baseline in the same run,
// GET /healthz (no database work) over the same connection.
//
//   build/bench/http_bench [RUNS=1000000] [REPS=2000]
#include <sqlite3.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/clock.h"
#include "events/events.h"
#include "http/http.h"
#include "ops/local.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

using namespace cronkeep;
namespace fs = std::filesystem;

namespace {

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1'000'000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 2000;
  const std::string dir = "/tmp/cronkeep-http-bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  { auto s = store::open_sqlite(dir + "/cronkeep.db"); if (!s) return 1; }
  {
    sqlite3* db = nullptr;
    sqlite3_open((dir + "/cronkeep.db").c_str(), &db);
    sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", nullptr, nullptr, nullptr);
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO runs (task, trigger, status, scheduled_at, created_at, started_at, finished_at, "
                       "exit_code, duration_ms, log_path, log_bytes, message) VALUES (?1, 'schedule', 'succeeded', ?2, "
                       "?2, ?2, ?2, 0, 5, 'logs/x/y.log', 120, 'exit code 0')",
                       -1, &ins, nullptr);
    const int64_t t0 = to_unix_ms(SystemClock().now()) - n * 1000;
    for (int64_t i = 0; i < n; ++i) {
      const std::string task = i % 10 < 6 ? "big" : "t" + std::to_string(i % 99);
      sqlite3_bind_text(ins, 1, task.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(ins, 2, t0 + i * 1000);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    // Rows written behind the store's back: their counts too (task_stats).
    sqlite3_exec(db, "DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task; COMMIT; PRAGMA wal_checkpoint(TRUNCATE); ANALYZE", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto store = store::open_sqlite(dir + "/cronkeep.db");
  if (!store) return 1;
  config::Config cfg;
  cfg.daemon.data_dir = dir;
  config::Task big;
  big.name = "big";
  big.cron = "@yearly";
  big.run = "true";
  cfg.tasks.push_back(big);
  SystemClock clock;
  events::Bus bus;
  if (!config::prepare(cfg).empty()) return 1;
  scheduler::Scheduler sched(cfg, **store, clock, scheduler::Options{dir, std::chrono::seconds(1), 1, {}, &bus});
  retention::Executor executor(**store, layout::DataDir(dir), 1000);
  ops::MaintenanceThread maintenance;
  ops::Local local(ops::LocalDeps{&cfg, store->get(), &executor, &sched, &bus, &clock, &maintenance, true, {}});
  http::Server server(http::Deps{&local, [&local] { return local.metrics(); }, {}, "token"});
  if (!server.start("127.0.0.1:0")) return 1;
  httplib::Client client("127.0.0.1", server.port());
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);

  // The keyset cursor 500,000 rows deep into "big".
  int64_t before = 0;
  {
    auto deep = (*store)->list_runs(store::RunQuery{"big", 1, std::nullopt, std::nullopt});
    const int64_t newest = deep->front().id;
    // "big" holds 6 of every 10 ids: walk back by ids to about 500,000 rows deep, then check.
    before = newest - 500'000 * 10 / 6;
  }
  const std::string first = "/api/tasks/big/runs?limit=50";
  const std::string deep = "/api/tasks/big/runs?limit=50&before=" + std::to_string(before);
  std::vector<double> health_us, first_us, deep_us;
  for (int i = 0; i < reps; ++i) {
    double t = now_us();
    auto h = client.Get("/healthz");
    health_us.push_back(now_us() - t);
    t = now_us();
    auto f = client.Get(first.c_str());
    first_us.push_back(now_us() - t);
    t = now_us();
    auto d = client.Get(deep.c_str());
    deep_us.push_back(now_us() - t);
    if (!h || !f || !d || f->status != 200 || d->status != 200) {
      std::fprintf(stderr, "request failed\n");
      return 1;
    }
    if (i == 0) {
      auto j = nlohmann::json::parse(d->body);
      if (j["runs"].size() != 50) return 1;
    }
  }
  std::printf("history pages over HTTP on loopback, %lld runs, %d requests each\n", static_cast<long long>(n), reps);
  std::printf("  GET /healthz (baseline)           : p50 %.2f ms, p99 %.2f ms\n", pct(health_us, .5) / 1000, pct(health_us, .99) / 1000);
  std::printf("  first page (50 runs)              : p50 %.2f ms, p99 %.2f ms (goal p99 < 5 ms)\n", pct(first_us, .5) / 1000,
              pct(first_us, .99) / 1000);
  std::printf("  page 500,000 rows deep (keyset)   : p50 %.2f ms, p99 %.2f ms (goal p99 < 5 ms)\n", pct(deep_us, .5) / 1000,
              pct(deep_us, .99) / 1000);
  server.stop();
  sched.shutdown();
  fs::remove_all(dir);
  return 0;
}
