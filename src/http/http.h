// http/http.h: the HTTP API (Boost.Beast on Asio): routes → ops → JSON,
// Server-Sent Events for live logs, Prometheus metrics, bearer-token
// authentication and Host checks.
//
// Owns: routing, turning query parameters and JSON bodies into ops
// requests (a parameter of the wrong type is a 400 naming it; the rules
// themselves live in ops, so the CLI and the API refuse the same things with
// the same words), mapping Error codes to statuses (one place), SSE framing
// and fan-out with its stream caps, and the /metrics text. Must not know SQL
// text or the data directory's layout: everything goes through ops::Ops.
//
// Security: mutating routes need `Authorization: Bearer <token>` (scheme in
// any case), compared in constant time; system tasks are visible only to
// authenticated callers; task names and run ids are matched by strict
// patterns; bodies over max_body_bytes are refused (413), headers over
// 8 KiB too (400); only Host headers naming the listen address or loopback
// are served (DNS rebinding), unless the server listens on a wildcard
// address; the socket is bound with SO_REUSEADDR and without SO_REUSEPORT,
// so a second daemon on the same port fails to start.
// Availability: a request's whole header must arrive within header_timeout
// of its first byte (of the connection, for the first request), its body
// within body_timeout; a kept-alive connection idle for idle_timeout is
// closed; a client address holds at most max_connections_per_client
// connections besides its SSE streams (a new one closes that client's
// oldest connection still waiting for a request, or gets a 429 when all are
// busy), the server at most max_connections (503 beyond); the listen
// backlog is SOMAXCONN. docs/api.md documents every route.
//
// Thread-safety: start() and stop() from one thread. One event loop thread
// owns every socket (accepting, reading requests, writing answers, SSE
// frames); routes run on a fixed pool (`threads` workers for GETs,
// `waiters` for POSTs, which may wait long); each followed run (and the
// run-state watch) has one feed thread that frames each event once for all
// its followers (http/feed.h). docs/architecture.md, "The HTTP server".
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
  int max_streams = 256;                     // concurrent SSE streams in all
  int max_streams_per_client = 64;           // per remote address
  std::chrono::seconds stream_idle{600};     // an SSE stream with no event for this long is closed
  std::chrono::seconds keepalive{15};        // SSE comment lines to detect gone clients
  size_t stream_queue = 4096;                // frames queued per SSE stream; beyond, the oldest are dropped
  int threads = 8;                           // workers for GET routes (ops calls, log reads)
  int waiters = 16;                          // workers for POST routes (run?wait=true, purge, compact…), started as needed
  std::chrono::milliseconds header_timeout{10'000};  // a request's whole header, from its first byte
  std::chrono::milliseconds body_timeout{30'000};    // its body, after the header
  std::chrono::milliseconds idle_timeout{5'000};     // a kept-alive connection between requests
  std::chrono::milliseconds write_timeout{30'000};   // each write of an answer, a raw log's chunk, an SSE burst
  int max_connections = 4096;                // open connections in all (503 beyond)
  int max_connections_per_client = 128;      // per remote address, besides its SSE streams
};

// Serves in a background thread (the loop) and its worker pools.
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
