// Launch throughput: runs per second of a task `true` through the whole
// scheduler path (row inserted, log file created, row marked running, process
// spawned and reaped, row finished), against two baselines measured in the
// same process run: a posix_spawn loop that starts `/bin/sh -c true` (what a
// run starts) and waits for it, one at a time, and a shell loop that forks
// /bin/true. Prints the median of each over several repetitions and the
// ratios.
//
//   [BENCH_DIR=/tmp] build/bench/launch_bench [RUNS_PER_REP=2000] [REPS=5] [MAX_CONCURRENT=4]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <algorithm>

#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

using namespace cronkeep;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double shell_loop_rate(int n) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string cmd = "i=0; while [ $i -lt " + std::to_string(n) + " ]; do /bin/true; i=$((i+1)); done";
  if (std::system(("/bin/sh -c '" + cmd + "'").c_str()) != 0) std::abort();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return n / s;
}

double spawn_loop_rate(int n) {
  std::string sh = "/bin/sh", dash_c = "-c", cmd = "true";
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ) != 0) std::abort();
    int status;
    if (::waitpid(pid, &status, 0) != pid || status != 0) std::abort();
  }
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double cronkeep_rate(int n, int concurrency) {
  const char* root = std::getenv("BENCH_DIR");
  std::string tmpl = std::string(root ? root : "/tmp") + "/cronkeep-bench-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl.data());
  auto store = store::open_sqlite(dir + "/cronkeep.db");
  if (!store) std::abort();
  config::Config cfg;
  config::Task task;
  task.name = "true";
  task.cron = "@yearly";
  task.run = "true";
  task.workdir = dir;
  task.policy.max_concurrent = concurrency;
  task.policy.queue_max = n;
  cfg.tasks.push_back(task);
  SystemClock clock;
  double rate = 0;
  {
    if (!config::prepare(cfg).empty()) return 1;
    scheduler::Scheduler s(cfg, **store, clock, scheduler::Options{dir, std::chrono::seconds(10), 1, {}, nullptr});
    if (!s.start()) std::abort();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i)
      if (!s.run_now("true")) std::abort();
    if (!s.wait_idle(std::chrono::minutes(5))) std::abort();
    rate = n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.shutdown();
  }
  // Every run must be recorded as succeeded with its log file.
  auto runs = (*store)->list_runs(store::RunQuery{"true", 1000, std::nullopt, store::RunStatus::succeeded});
  if (!runs || runs->size() != static_cast<size_t>(std::min(n, 1000))) {
    std::fprintf(stderr, "not every run succeeded\n");
    std::abort();
  }
  for (const auto& r : *runs)
    if (!std::filesystem::exists(dir + "/" + r.log_path)) std::abort();
  store->reset();
  std::filesystem::remove_all(dir);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const int concurrency = argc > 3 ? std::atoi(argv[3]) : 4;
  std::vector<double> loop, spawn, ck;
  for (int i = 0; i < reps; ++i) {
    loop.push_back(shell_loop_rate(n));
    spawn.push_back(spawn_loop_rate(n));
    ck.push_back(cronkeep_rate(n, concurrency));
  }
  const double l = median(loop), p = median(spawn), c = median(ck);
  std::printf("launch throughput, %d runs x %d reps, max_concurrent %d (median)\n", n, reps, concurrency);
  std::printf("  shell loop forking /bin/true      : %8.0f runs/s\n", l);
  std::printf("  posix_spawn loop of sh -c true    : %8.0f runs/s\n", p);
  std::printf("  cronkeep (recorded + logged)      : %8.0f runs/s\n", c);
  std::printf("  ratio cronkeep / posix_spawn loop : %8.2f  (goal >= 0.80)\n", c / p);
  std::printf("  ratio cronkeep / shell loop       : %8.2f\n", c / l);
  return 0;
}
