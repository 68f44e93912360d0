// cli/client.h: internal to cli/. Talking to a running daemon over its HTTP
// API (address from [daemon] listen, token from the token file).
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "config/config.h"

namespace cronkeep::cli {

struct Reply {
  int status = 0;
  nlohmann::json body;
};

class DaemonClient {
 public:
  // A client when a daemon holds the data directory's lock; nullopt when
  // none runs. Errors: the daemon runs but its token cannot be read.
  static Result<std::optional<DaemonClient>> connect(const config::Config& config);

  DaemonClient(DaemonClient&&) noexcept;
  ~DaemonClient();

  // Sends a request (authenticated) and parses the JSON reply. Errors: io
  // when the daemon does not answer.
  Result<Reply> call(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr,
                     int timeout_seconds = 30);

 private:
  DaemonClient();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cronkeep::cli
