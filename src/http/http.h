// http/http.h: the HTTP API (cpp-httplib), Server-Sent Events for live logs,
// Prometheus metrics, and bearer-token authentication.
//
// Owns: routes, request validation (every bad field is a 400 with
// {"error": "..."} naming it), mapping Error codes to statuses (one place),
// SSE streams with their caps, and /metrics. Must not contain SQL text: it
// reads through store::Store and acts through the scheduler and retention.
//
// Security: mutating routes need `Authorization: Bearer <token>`, compared
// in constant time; system tasks are listed only to authenticated callers;
// task names and run ids are matched by strict patterns before anything is
// looked up, so no request can name a path; bodies over 1 MiB are refused.
// docs/api.md documents every route.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "events/events.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace cronkeep::http {

struct Deps {
  const config::Config* config = nullptr;
  store::Store* store = nullptr;             // the daemon's store (reads and maintenance writes)
  scheduler::Scheduler* scheduler = nullptr;
  events::Bus* bus = nullptr;
  retention::Executor* executor = nullptr;   // shared with the retention system task
  const Clock* clock = nullptr;
  std::string token;                         // the bearer token
};

struct Limits {
  size_t max_body_bytes = 1 << 20;
  int max_streams = 32;                      // concurrent SSE streams in all
  int max_streams_per_client = 8;            // per remote address
  std::chrono::seconds stream_idle{600};     // an SSE stream with no event for this long is closed
  std::chrono::seconds keepalive{15};        // SSE comment lines to detect gone clients
  int threads = 8;                           // request workers, besides the SSE streams
};

// Starts serving in a background thread. Thread-safe stop().
class Server {
 public:
  Server(Deps deps, Limits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `listen` ("127.0.0.1:7070", "[::1]:7070", port 0 = any free port)
  // and starts serving. Errors: invalid_argument for a bad address; io when
  // the port cannot be bound.
  Status start(const std::string& listen);
  // The port actually bound (after start).
  int port() const;
  // Ends open SSE streams with a `done` event, lets in-flight requests
  // finish, and stops. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads the token from `token_file`, or when that is empty from
// {data_dir}/token, creating it (32 random bytes, hex, mode 0600) if it does
// not exist. Errors: io; invalid_argument for an empty token file.
Result<std::string> load_or_create_token(const config::Config& config);

}  // namespace cronkeep::http
