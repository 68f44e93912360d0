// cli/commands.h: internal to cli/. The maintenance commands (purge,
// compact, status, check) that work on the data directory directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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
int cmd_check(const config::Config& cfg, bool repair, bool json);

}  // namespace cronkeep::cli
