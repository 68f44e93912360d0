// net/http_client.h: one HTTP/1.1 exchange per call, for the CLI's calls to
// a daemon (ops/remote) and for webhooks (notify).
//
// Boost.Beast on Asio, the library the server is built on: each call opens
// its own connection (Connection: close), so calls are independent and
// thread-safe. `http://` is handled here; `https://` goes through the TLS
// module (cronkeep-tls.so, OpenSSL, loaded on the first https call; see
// net/tls_module.h), so a daemon that never calls an https URL nor signs a
// body never maps libssl or libcrypto. Certificates are checked against the
// system's store (OpenSSL's default paths, which SSL_CERT_FILE and
// SSL_CERT_DIR override) and the URL's host name.
//
// Deadlines: `timeout` bounds the whole exchange of request() (an answer
// trickling a byte at a time does not escape it); in stream() it bounds
// each wait for more of the answer (a stream idle that long ends with an
// error). `connect_timeout` bounds connecting; name resolution is the
// system resolver's (blocking, with its own timeouts).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace cronkeep::net {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Url {
  bool tls = false;    // https
  std::string host;    // without the brackets of an IPv6 literal
  int port = 0;        // 80 or 443 when the URL has none
  std::string target;  // path and query, "/" when the URL has none
};
// http://HOST[:PORT][/PATH] or https://…; errors: invalid_argument.
Result<Url> parse_url(std::string_view url);

// "?a=1&b=x%20y" for the pairs given (values percent-encoded), "" for none.
std::string query_string(const Headers& params);

struct Request {
  std::string method = "GET";
  Url url;
  Headers headers;      // Host, Content-Length and Connection are set by the client
  std::string body;     // sent when not empty or when the method is POST
  std::string content_type = "application/json";
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds timeout{30000};
  uint64_t max_body = UINT64_MAX;  // a larger answer fails the call
};

struct Response {
  int status = 0;
  Headers headers;
  std::string body;
  // The first value of header `name` (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

// One request and its whole answer. Errors (io, with a message a person can
// read): the host cannot be resolved or reached, the deadline passed ("no
// complete answer within 2s"), the answer is larger than max_body ("response
// larger than N bytes"), it is not HTTP, or the TLS module cannot be loaded
// or the certificate is refused.
Result<Response> request(const Request& req);

// The same, but a 2xx answer's body goes to `on_body` as it arrives (each
// read's bytes) instead of into Response::body, until the answer ends or
// on_body returns false (which ends the call without an error). Any other
// status's body is read into Response::body (within max_body).
Result<Response> stream(const Request& req, const std::function<bool(std::string_view)>& on_body);

// HMAC-SHA256 of `body` with `key`, as lowercase hex (through the TLS
// module: OpenSSL's libcrypto). Errors: those of loading the module.
Result<std::string> hmac_sha256_hex(std::string_view key, std::string_view body);

}  // namespace cronkeep::net
