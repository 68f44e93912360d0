// http/json.h: the JSON shapes of the API, shared by the server and the CLI
// (which prints the same shapes with --json).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>

#include "base/result.h"
#include "base/time.h"
#include "config/config.h"
#include "logs/logs.h"
#include "store/store.h"

namespace cronkeep::http {

// RFC 3339 UTC with milliseconds, or null.
nlohmann::json time_json(const std::optional<TimePoint>& t);
nlohmann::json run_json(const store::Run& run);
nlohmann::json line_json(const logs::Line& line);

// What `cronkeep status` and GET /api/maintenance/status show: for each
// system task its last and next run and figures; database and log sizes.
Result<nlohmann::json> maintenance_status(store::Store& store, const config::Config& config, TimePoint now,
                                          int64_t log_dir_bytes);

}  // namespace cronkeep::http
