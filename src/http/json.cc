#include "http/json.h"

#include "cron/cron.h"
#include "retention/retention.h"

namespace cronkeep::http {

using nlohmann::json;

namespace {
template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}
}  // namespace

json time_json(const std::optional<TimePoint>& t) { return t ? json(format_rfc3339(*t, true)) : json(nullptr); }

json run_json(const store::Run& r) {
  return json{{"id", r.id},
              {"task", r.task},
              {"trigger", store::to_string(r.trigger)},
              {"attempt", r.attempt},
              {"retry_of", opt(r.retry_of)},
              {"status", store::to_string(r.status)},
              {"scheduled_at", time_json(r.scheduled_at)},
              {"created_at", format_rfc3339(r.created_at, true)},
              {"started_at", time_json(r.started_at)},
              {"finished_at", time_json(r.finished_at)},
              {"exit_code", opt(r.exit_code)},
              {"signal", opt(r.signal)},
              {"duration_ms", opt(r.duration_ms)},
              {"cpu_ms", opt(r.cpu_ms)},
              {"max_rss_kb", opt(r.max_rss_kb)},
              {"log_path", r.log_path},
              {"log_bytes", r.log_bytes},
              {"message", r.message}};
}

json line_json(const logs::Line& l) {
  return json{{"line", l.number}, {"stream", std::string(1, l.stream)}, {"time", time_json(l.time)}, {"text", l.text}};
}

Result<json> maintenance_status(store::Store& store, const config::Config& cfg, TimePoint now, int64_t log_dir_bytes) {
  auto stats = store.db_stats();
  if (!stats) return tl::unexpected(stats.error());
  auto summaries = store.maintenance_summaries();
  if (!summaries) return tl::unexpected(summaries.error());
  json tasks = json::array();
  for (auto [name, schedule] : {std::pair{retention::kRetentionTask, cfg.retention.schedule},
                                std::pair{retention::kCompactorTask, cfg.compactor.schedule}}) {
    json t{{"task", name}, {"schedule", schedule}};
    auto parsed = cron::Schedule::parse(schedule);
    t["next_run"] = time_json(parsed ? parsed->next_fire(now, cron::Zone::utc()) : std::nullopt);
    auto last = store.list_runs(store::RunQuery{name, 1, std::nullopt, std::nullopt});
    if (!last) return tl::unexpected(last.error());
    t["last_run"] = last->empty() ? json(nullptr) : run_json(last->front());
    auto figures = [](const store::MaintenanceFigures& f) {
      return json{{"rows_deleted", f.rows_deleted},
                  {"files_deleted", f.files_deleted},
                  {"file_errors", f.file_errors},
                  {"log_bytes_freed", f.log_bytes_freed},
                  {"db_bytes_reclaimed", f.db_bytes_reclaimed}};
    };
    t["last_figures"] = nullptr;
    t["total_figures"] = nullptr;
    for (const auto& m : *summaries) {
      if (m.last.task != name) continue;
      t["last_figures"] = figures(m.last);
      t["total_figures"] = figures(m.total);
    }
    tasks.push_back(t);
  }
  return json{{"system_tasks", tasks},
              {"database",
               {{"bytes", stats->db_bytes()},
                {"page_size", stats->page_size},
                {"page_count", stats->page_count},
                {"free_pages", stats->freelist_count},
                {"wal_bytes", stats->wal_bytes},
                {"auto_vacuum", stats->auto_vacuum == 2 ? "incremental" : stats->auto_vacuum == 1 ? "full" : "none"}}},
              {"log_dir_bytes", log_dir_bytes}};
}

}  // namespace cronkeep::http
