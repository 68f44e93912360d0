#include "cli/client.h"

#include <httplib.h>

#include <fstream>

#include "base/file_lock.h"

namespace cronkeep::cli {

struct DaemonClient::Impl {
  std::string host;
  int port = 0;
  std::string token;
};

DaemonClient::DaemonClient() : impl_(std::make_unique<Impl>()) {}
DaemonClient::DaemonClient(DaemonClient&&) noexcept = default;
DaemonClient::~DaemonClient() = default;

Result<std::optional<DaemonClient>> DaemonClient::connect(const config::Config& cfg) {
  {
    // The daemon holds this lock for as long as it runs.
    auto lock = FileLock::acquire(cfg.daemon.data_dir + "/cronkeep.lock");
    if (lock || lock.error().code != ErrorCode::busy) return std::optional<DaemonClient>();
  }
  DaemonClient c;
  const std::string& listen = cfg.daemon.listen;
  const size_t colon = listen.rfind(':');
  c.impl_->host = listen.substr(0, colon);
  if (c.impl_->host.size() >= 2 && c.impl_->host.front() == '[') c.impl_->host = c.impl_->host.substr(1, c.impl_->host.size() - 2);
  if (c.impl_->host == "0.0.0.0" || c.impl_->host.empty()) c.impl_->host = "127.0.0.1";
  if (c.impl_->host == "::") c.impl_->host = "::1";
  c.impl_->port = std::atoi(listen.c_str() + colon + 1);
  const std::string token_path = cfg.daemon.token_file.empty() ? cfg.daemon.data_dir + "/token" : cfg.daemon.token_file;
  std::ifstream in(token_path);
  if (!in || !std::getline(in, c.impl_->token) || c.impl_->token.empty())
    return fail(ErrorCode::io, "a daemon is running but its token " + token_path + " cannot be read");
  return std::optional<DaemonClient>(std::move(c));
}

Result<Reply> DaemonClient::call(const std::string& method, const std::string& path, const nlohmann::json& body,
                                 int timeout_seconds) {
  httplib::Client client(impl_->host, impl_->port);
  client.set_connection_timeout(std::chrono::seconds(3));
  client.set_read_timeout(std::chrono::seconds(timeout_seconds));
  client.set_bearer_token_auth(impl_->token);
  client.set_tcp_nodelay(true);
  httplib::Result res = method == "GET" ? client.Get(path)
                                        : client.Post(path, body.is_null() ? std::string() : body.dump(), "application/json");
  if (!res)
    return fail(ErrorCode::io, "the daemon at " + impl_->host + ":" + std::to_string(impl_->port) +
                                   " does not answer (" + httplib::to_string(res.error()) + ")");
  Reply reply;
  reply.status = res->status;
  reply.body = nlohmann::json::parse(res->body, nullptr, false);
  if (reply.body.is_discarded()) reply.body = nlohmann::json{{"error", res->body}};
  return reply;
}

}  // namespace cronkeep::cli
