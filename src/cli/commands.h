// cli/commands.h: internal to cli/. The maintenance commands (purge,
// compact, status, check, run): through a running daemon's API when one
// holds the data directory, on the data directory directly otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace cronkeep::cli {

inline constexpr int kOk = 0;
inline constexpr int kFailure = 1;
inline constexpr int kUsage = 2;

struct PurgeArgs {
  std::string older_than;        // a duration, required
  std::string task;              // empty = every task
  std::string status;            // empty = every terminal status
  int64_t limit = 0;             // 0 = no limit
  bool dry_run = false;
  bool json = false;
};

int cmd_purge(const config::Config& cfg, const PurgeArgs& args);
int cmd_compact(const config::Config& cfg, bool full);
int cmd_status(const config::Config& cfg, bool json);
// Prints a maintenance status (as built by http::maintenance_status).
void print_status(const nlohmann::json& status, bool as_json);
int cmd_check(const config::Config& cfg, bool repair, bool json);
// Needs a running daemon; with `wait`, exits 0 only when the run succeeded.
int cmd_run(const config::Config& cfg, const std::string& task, bool wait, bool json);

}  // namespace cronkeep::cli
