// http/http.h: the HTTP API (cpp-httplib): routes → ops → JSON, Server-Sent
// Events for live logs, Prometheus metrics, bearer-token authentication and
// Host checks.
//
// Owns: routing, turning query parameters and JSON bodies into ops
// requests (a parameter of the wrong type is a 400 naming it; the rules
// themselves live in ops, so the CLI and the API refuse the same things with
// the same words), mapping Error codes to statuses (one place), SSE framing
// with its stream caps, and the /metrics text. Must not know SQL text or the
// data directory's layout: everything goes through ops::Ops.
//
// Security: mutating routes need `Authorization: Bearer <token>` (scheme in
// any case), compared in constant time; system tasks are visible only to
// authenticated callers; task names and run ids are matched by strict
// patterns; bodies over 1 MiB are refused; only Host headers naming the
// listen address or loopback are served (DNS rebinding), unless the server
// listens on a wildcard address; the socket is bound without SO_REUSEPORT,
// so a second daemon on the same port fails to start.
// docs/api.md documents every route.
//
// Thread-safety: start() and stop() from one thread; requests are served
// on the server's worker threads, which only wait for ops (blocking
// maintenance runs on the ops' maintenance thread).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "ops/local.h"
#include "ops/ops.h"

namespace cronkeep::http {

struct Deps {
  ops::Ops* ops = nullptr;                               // Requires: set, outlives the server
  std::function<Result<ops::Metrics>()> metrics;         // for /metrics; empty: 404
  std::function<std::string()> health;                   // "" = healthy, else why not (503); empty: healthy
  std::string token;                                     // the bearer token
};

struct Limits {
  size_t max_body_bytes = 1 << 20;
  int max_streams = 32;                      // concurrent SSE streams in all
  int max_streams_per_client = 8;            // per remote address
  std::chrono::seconds stream_idle{600};     // an SSE stream with no event for this long is closed
  std::chrono::seconds keepalive{15};        // SSE comment lines to detect gone clients
  int threads = 8;                           // request workers, besides the SSE streams
};

// Serves in a background thread.
class Server {
 public:
  Server(Deps deps, Limits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `listen` ("127.0.0.1:7070", "[::1]:7070", port 0 = any free port)
  // and starts serving. Errors: invalid_argument for a bad address; io when
  // the port cannot be bound (in use: the message says so).
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

}  // namespace cronkeep::http
