// net/exchange.h (private to net/): one HTTP/1.1 exchange over a connected
// Beast stream, plain (beast::tcp_stream) or TLS (beast::ssl_stream of one),
// with the deadlines net/http_client.h describes. Compiled into the binary
// for http:// and into the TLS module for https://.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <functional>
#include <limits>
#include <string>
#include <string_view>

#include "net/http_client.h"

namespace cronkeep::net::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

using OnBody = std::function<bool(std::string_view)>;

// "2s", "1.5s" or "300ms": how the errors name a timeout.
inline std::string format_timeout(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  if (ms > 1000) return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
  return std::to_string(ms) + "ms";
}

inline std::string host_port(const Url& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  return (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

inline Error io_error(std::string message) { return Error{ErrorCode::io, std::move(message)}; }

// Runs the io_context until the operation just started has completed.
inline void run(asio::io_context& ioc) {
  ioc.restart();
  ioc.run();
}

// Resolves the URL's host and connects `tcp` within req.connect_timeout.
inline Status connect(asio::io_context& ioc, beast::tcp_stream& tcp, const Request& req) {
  beast::error_code ec;
  asio::ip::tcp::resolver resolver(ioc);
  const auto endpoints = resolver.resolve(req.url.host, std::to_string(req.url.port), ec);
  if (ec) return tl::unexpected(io_error("cannot resolve " + req.url.host + ": " + ec.message()));
  tcp.expires_after(req.connect_timeout);
  tcp.async_connect(endpoints, [&](beast::error_code e, const asio::ip::tcp::endpoint&) { ec = e; });
  run(ioc);
  if (ec == beast::error::timeout)
    return tl::unexpected(io_error("cannot connect to " + host_port(req.url) + " within " +
                                   format_timeout(req.connect_timeout)));
  if (ec) return tl::unexpected(io_error("cannot connect to " + host_port(req.url) + ": " + ec.message()));
  tcp.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  return {};
}

// Sends `req` over the connected `stream` and reads the answer: into
// Response::body, or a 2xx answer's body to `on_body` when it is set.
template <class Stream>
Result<Response> exchange(asio::io_context& ioc, Stream& stream, const Request& req, const OnBody* on_body) {
  beast::tcp_stream& tcp = beast::get_lowest_layer(stream);
  const auto deadline = std::chrono::steady_clock::now() + req.timeout;
  // Streams wait `timeout` for each read; a request has one deadline for everything.
  auto arm = [&] {
    if (on_body) tcp.expires_after(req.timeout);
    else tcp.expires_at(deadline);
  };
  auto late = [&] {
    return io_error(on_body ? "no data for " + format_timeout(req.timeout)
                            : "no complete answer within " + format_timeout(req.timeout));
  };
  beast::error_code ec;

  bhttp::request<bhttp::string_body> msg{bhttp::string_to_verb(req.method), req.url.target, 11};
  const bool default_port = req.url.port == (req.url.tls ? 443 : 80);
  const std::string host = host_port(req.url);
  msg.set(bhttp::field::host, default_port ? host.substr(0, host.rfind(':')) : host);
  msg.set(bhttp::field::connection, "close");
  for (const auto& [name, value] : req.headers) msg.set(name, value);
  if (!req.body.empty() || msg.method() == bhttp::verb::post) {
    msg.set(bhttp::field::content_type, req.content_type);
    msg.body() = req.body;
  }
  msg.prepare_payload();
  arm();
  bhttp::async_write(stream, msg, [&](beast::error_code e, size_t) { ec = e; });
  run(ioc);
  if (ec == beast::error::timeout) return tl::unexpected(late());
  if (ec) return tl::unexpected(io_error("cannot send the request to " + host_port(req.url) + ": " + ec.message()));

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // max_body is checked below, as it arrives
  arm();
  bhttp::async_read_header(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  run(ioc);
  if (ec == beast::error::timeout) return tl::unexpected(late());
  if (ec) return tl::unexpected(io_error("no answer from " + host_port(req.url) + ": " + ec.message()));

  Response out;
  out.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) out.headers.emplace_back(field.name_string(), field.value());
  const bool to_sink = on_body && out.status >= 200 && out.status < 300;
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    arm();
    bhttp::async_read_some(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
    run(ioc);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec == beast::error::timeout) return tl::unexpected(late());
    if (ec) return tl::unexpected(io_error("the answer from " + host_port(req.url) + " broke off: " + ec.message()));
    const size_t n = sizeof chunk - parser.get().body().size;
    if (to_sink) {
      if (n && !(*on_body)(std::string_view(chunk, n))) return out;
      continue;
    }
    if (out.body.size() + n > req.max_body)
      return tl::unexpected(io_error("response larger than " + std::to_string(req.max_body) + " bytes"));
    out.body.append(chunk, n);
  }
  return out;
}

}  // namespace cronkeep::net::detail
