// ops/remote.h: the operations over a running daemon's HTTP API.
//
// Each call is one request (a follow is one SSE stream), authenticated with
// the daemon's bearer token; answers are read back with ops/wire.h, so they
// are the structs the daemon's own Local returned. Errors are the daemon's
// (code and message travel in the JSON error body); io when the daemon
// does not answer. Thread-safe: each call opens its own connection.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "ops/ops.h"

namespace cronkeep::ops {

// Where a daemon's API is reachable from this machine: [daemon] listen,
// with a wildcard host (0.0.0.0, ::, empty) replaced by loopback.
struct Endpoint {
  std::string host;
  int port = 0;
};
// Errors: invalid_argument naming `listen` when it is not host:port.
Result<Endpoint> parse_listen(std::string_view listen);

// Reads the bearer token from `[daemon] token_file`, or {data_dir}/token
// (first line, surrounding blanks removed). Errors: io; invalid_argument
// for an empty token.
Result<std::string> read_token(const config::Config& config);

// For the daemon: read_token(), or when no token_file is configured and
// {data_dir}/token does not exist yet, creates it (32 random bytes as hex,
// mode 0600). Errors: those of read_token(); io when it cannot be created.
Result<std::string> load_or_create_token(const config::Config& config);

std::unique_ptr<Ops> make_remote(Endpoint endpoint, std::string token);

}  // namespace cronkeep::ops
