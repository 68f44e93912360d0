// ops/local.h: the operations on the data directory itself.
//
// Inside the daemon: reads go to the daemon's store, actions to its
// scheduler, live logs to its bus, and blocking maintenance (purge, delete,
// compact, repair) to the maintenance thread, never onto the caller's
// thread (an HTTP worker). In the CLI without a daemon: open_local() opens
// the database (read-only, or holding the data directory's lock to write).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "config/config.h"
#include "ops/ops.h"

namespace cronkeep::scheduler {
class Scheduler;
}
namespace cronkeep::events {
class Bus;
}

namespace cronkeep::ops {

// One thread for blocking maintenance: callers hand a job over and wait for
// it; jobs run one at a time, in order. It keeps its priority: it holds the
// store's write lock for each batch, so a reniced thread would keep the
// scheduler waiting (docs/architecture.md, "Threads"). Thread-safe.
class MaintenanceThread {
 public:
  MaintenanceThread();
  // Finishes the queued jobs, then joins.
  ~MaintenanceThread();
  MaintenanceThread(const MaintenanceThread&) = delete;
  MaintenanceThread& operator=(const MaintenanceThread&) = delete;

  // Runs `job` on the maintenance thread and returns when it has run.
  void run(const std::function<void()>& job);

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>*> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

struct LocalDeps {
  const config::Config* config = nullptr;    // Requires: set
  store::Store* store = nullptr;             // null: no history yet (reads see an empty history)
  retention::Executor* executor = nullptr;   // null: read-only (mutations fail with busy)
  scheduler::Scheduler* scheduler = nullptr; // null: no daemon (run_now and cancel fail with conflict)
  events::Bus* bus = nullptr;                // live logs and run?wait; null: nothing is live
  const Clock* clock = nullptr;              // Requires: set
  MaintenanceThread* maintenance = nullptr;  // null: maintenance runs on the calling thread
  bool daemon = false;                       // true inside the daemon (repair spares runs in flight)
  // The daemon's configuration reload (reads the file, applies it all or
  // nothing, records it); empty: no daemon (reload fails with conflict).
  std::function<Result<ReloadResult>()> reload;
};

// Everything /metrics shows; only a daemon has it.
struct Metrics {
  std::map<std::pair<std::string, std::string>, uint64_t> finished;  // (task, status) → runs ended since start
  struct TaskGauges {
    std::string task;
    int running = 0;
    int queued = 0;
    std::optional<TimePoint> last_success;
    std::optional<TimePoint> last_failure;
  };
  std::vector<TaskGauges> tasks;
  std::vector<double> lateness_bounds_ms;
  std::vector<uint64_t> lateness_counts;     // per bucket, the last one +Inf (not cumulative)
  uint64_t lateness_count = 0;
  double lateness_sum_ms = 0;
  store::MaintenanceFigures retention_total;
  store::MaintenanceFigures compactor_total;
  store::DbStats database;
  int64_t log_dir_bytes = 0;
  uint64_t log_events_dropped = 0;
  uint64_t disk_pressure_runs = 0;
};

class Local : public Ops {
 public:
  explicit Local(LocalDeps deps);
  ~Local() override;

  Result<std::vector<TaskInfo>> tasks(bool include_system) override;
  Result<RunsPage> runs(const RunsQuery& query) override;
  Result<store::Run> run(std::string_view task, int64_t id) override;
  Result<LogSlice> log(const LogQuery& query) override;
  Status follow(const FollowRequest& request, FollowSink& sink) override;
  Result<store::Run> run_now(const RunNowRequest& request) override;
  Result<PauseResult> pause(std::string_view task, bool paused) override;
  Result<CancelResult> cancel(std::string_view task, int64_t id) override;
  Result<DeleteResult> delete_run(std::string_view task, int64_t id) override;
  Result<retention::PurgeOutcome> purge(const retention::PurgeRequest& request,
                                        const retention::Progress& progress = {}) override;
  Result<retention::CompactOutcome> compact(retention::CompactMode mode) override;
  Result<MaintenanceStatus> status() override;
  Result<MaintenanceHistory> maintenance_history(const MaintenanceHistoryQuery& query) override;
  Result<std::vector<store::NodeInfo>> nodes() override;
  Status forget_node(std::string_view name) override;
  Result<CheckReport> check(bool repair) override;
  Status watch(const WatchRequest& request, WatchSink& sink) override;
  Result<RetentionPreview> retention_preview(std::string_view task) override;
  Result<RecentRuns> recent_runs(const RecentRunsQuery& query) override;
  Result<RawLogChunk> raw_log(std::string_view task, int64_t id, int64_t offset, int64_t max_bytes) override;
  Result<std::vector<ArchiveFile>> archive_list() override;
  Result<ArchivePage> archive_show(const ArchiveQuery& query) override;

  // For /metrics. Errors: the store's.
  Result<Metrics> metrics();
  Result<ReloadResult> reload() override;
  Result<std::vector<store::Delivery>> notifications(int limit) override;
  // Ends every follow() in progress (done "shutdown") and refuses new ones.
  void stop();
  // The configuration the operations answer from from now on (after a
  // reload). Thread-safe: calls in progress keep the one they started with.
  void set_config(std::shared_ptr<const config::Config> config);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The data directory without a daemon, for the CLI. `write`: takes the data
// directory's lock (busy when a daemon holds it) and opens the database for
// writing, creating nothing else; `read`: opens it read-only (no database
// yet = an empty history). Errors: busy, io, corruption.
Result<std::unique_ptr<Ops>> open_local(const config::Config& config, Access access);

// This node's name: [daemon] node, else the host name.
std::string node_name(const config::Config& config);

// Opens the configured store: {data_dir}/cronkeep.db ([storage] backend =
// "sqlite") or the server at [storage] postgres_url, as node_name(config).
// Errors: those of store::open_sqlite / store::open_postgres.
Result<std::unique_ptr<store::Store>> open_store(const config::Config& config, store::OpenOptions options = {});

}  // namespace cronkeep::ops
