// daemon/daemon.h: wiring only. Builds the parts from a validated
// configuration, owns the signals, and runs until SIGTERM or SIGINT.
//
// The data directory is held with an exclusive lock ({data_dir}/cronkeep.lock)
// so two daemons never share one; the lock is released when the process ends,
// however it ends.
#pragma once

#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "events/events.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace cronkeep::daemon {

// The system tasks cronkeep:retention and cronkeep:compactor, wired to
// `store` and `executor` (which must outlive the tasks). With a `bus`, the
// compactor publishes its steps there (events::Kind::progress).
std::vector<scheduler::SystemTask> system_tasks(const config::Config& config, store::Store& store,
                                                retention::Executor& executor, Clock& clock,
                                                events::Bus* bus = nullptr);

// How the daemon's own log lines are written to stdout: `text` is spdlog's
// "[time] [level] message" (coloured only on a terminal); `json` is one JSON
// object per line, {"time", "level", "message"}, for journald or a log
// shipper.
enum class LogFormat { text, json };

// Runs the daemon in the foreground. Returns the process exit code: 0 after
// a clean shutdown, 1 when it could not start (the reason is logged).
int run(const config::Config& config, LogFormat log_format = LogFormat::text);

}  // namespace cronkeep::daemon
