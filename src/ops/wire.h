// ops/wire.h: the one JSON shape of every ops answer and request.
//
// The HTTP API answers with to_json(answer); the CLI prints
// to_json(answer) with --json; the remote implementation reads answers back
// with from_json. So a command prints the same JSON with a daemon and
// without one. Every from_json refuses a value of the wrong shape with
// invalid_argument naming the field (it never throws). Thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>

#include "base/result.h"
#include "ops/ops.h"

namespace cronkeep::ops {

using Json = nlohmann::json;

// Serialises for output: invalid UTF-8 in log text becomes U+FFFD.
std::string dump(const Json& j, int indent = -1);

Json time_json(const std::optional<TimePoint>& t);  // RFC 3339 UTC with ms, or null
Json to_json(const store::Run& r);
Json to_json(const logs::Line& l);
Json to_json(const TaskInfo& t);
Json to_json(const RunsPage& p);
Json to_json(const LogSlice& s);
Json to_json(const FollowEvent& e);   // the SSE `data` of the event
Json to_json(const CancelResult& r);
Json to_json(const DeleteResult& r);
Json to_json(const PauseResult& r);
Json to_json(const ReloadResult& r);
Json to_json(const store::Delivery& d);
Json to_json(const retention::PurgeOutcome& o, bool dry_run);
Json to_json(const retention::CompactOutcome& o);
Json to_json(const MaintenanceStatus& s);
Json to_json(const MaintenanceHistory& h);
Json to_json(const CheckReport& r);
Json to_json(const ValidateReport& r);
Json to_json(const store::NodeInfo& n);  // a node of GET /api/nodes
Json to_json(const Error& e);         // {"error": message, "code": "not_found"}
template <class T>
Json to_json(const std::vector<T>& items) {
  Json out = Json::array();
  for (const T& item : items) out.push_back(to_json(item));
  return out;
}

Result<store::Run> run_from_json(const Json& j);
Result<logs::Line> line_from_json(const Json& j);
Result<TaskInfo> task_from_json(const Json& j);
Result<RunsPage> runs_page_from_json(const Json& j);
Result<LogSlice> log_slice_from_json(const Json& j);
Result<FollowEvent> follow_event_from_json(FollowEvent::Kind kind, int64_t id, const Json& j);
std::optional<FollowEvent::Kind> follow_kind(std::string_view name);
Result<CancelResult> cancel_from_json(const Json& j);
Result<DeleteResult> delete_from_json(const Json& j);
Result<PauseResult> pause_from_json(const Json& j);
Result<ReloadResult> reload_from_json(const Json& j);
Result<store::Delivery> delivery_from_json(const Json& j);
// The `env` field of a run-now body ({"env": {"K": "V"}}), checked by
// check_env; absent or null is no variables.
Result<std::map<std::string, std::string>> env_from_json(const Json& body);
Result<retention::PurgeOutcome> purge_from_json(const Json& j);
Result<retention::CompactOutcome> compact_from_json(const Json& j);
Result<MaintenanceStatus> status_from_json(const Json& j);
Result<MaintenanceHistory> maintenance_history_from_json(const Json& j);
Result<CheckReport> check_from_json(const Json& j);
// {"nodes": [...]}
Result<std::vector<store::NodeInfo>> nodes_from_json(const Json& j);
Error error_from_json(int http_status, const Json& j);

// The purge request as the API takes it ({older_than, task, status, limit,
// dry_run, all}); errors name the field.
Result<retention::PurgeRequest> purge_request_from_json(const Json& body);
Json to_json(const retention::PurgeRequest& r);

// The archive of purged runs: GET /api/archive is {"files": [...]}; a page
// of GET /api/archive/{date} is {"date", "entries": [...], "next"}.
Json to_json(const ArchiveFile& f);
Json to_json(const ArchivePage& p);
Result<std::vector<ArchiveFile>> archive_files_from_json(const Json& j);
Result<ArchivePage> archive_page_from_json(const Json& j);

// For the web UI: the events stream's `data` and the retention preview.
Json to_json(const WatchEvent& e);
Result<WatchEvent> watch_event_from_json(std::string_view kind, uint64_t seq, const Json& j);
Json to_json(const RetentionPreview& p);
Result<RetentionPreview> retention_preview_from_json(const Json& j);
// GET /api/runs/recent: {"per_task", "tasks": [{"task", "runs": [...]}]}.
Json to_json(const RecentRuns& r);
Result<RecentRuns> recent_runs_from_json(const Json& j);

}  // namespace cronkeep::ops
