// One HTTP/1.1 exchange per call (net/http_client.h): http:// here, https://
// and HMAC through the TLS module.
#include "net/http_client.h"

#include <charconv>
#include <mutex>

#include "base/module.h"
#include "net/exchange.h"
#include "net/tls_module.h"

namespace cronkeep::net {
namespace {

using ExchangeFn = void (*)(const Request*, const std::function<bool(std::string_view)>*, Result<Response>*);
using HmacFn = void (*)(const std::string_view*, const std::string_view*, std::string*);

struct TlsModule {
  ExchangeFn exchange = nullptr;
  HmacFn hmac = nullptr;
};

Result<TlsModule> tls_module() {
  static std::mutex mu;
  static Result<TlsModule> loaded = fail(ErrorCode::internal, "not loaded");
  std::lock_guard lock(mu);
  if (loaded) return loaded;
  // A failure is retried: the file may have been installed since.
  auto symbols = load_module(ModuleSpec{kTlsModuleFile, kTlsModuleAbiSymbol, kTlsModuleAbi,
                                        {kTlsModuleExchangeSymbol, kTlsModuleHmacSymbol},
                                        "https:// and signed webhooks need the TLS module"});
  if (!symbols) return tl::unexpected(symbols.error());
  loaded = TlsModule{reinterpret_cast<ExchangeFn>((*symbols)[0]), reinterpret_cast<HmacFn>((*symbols)[1])};
  return loaded;
}

Result<Response> call(const Request& req, const detail::OnBody* on_body) {
  if (req.url.tls) {
    auto tls = tls_module();
    if (!tls) return tl::unexpected(tls.error());
    Result<Response> out;
    tls->exchange(&req, on_body, &out);
    return out;
  }
  detail::asio::io_context ioc;
  detail::beast::tcp_stream stream(ioc);
  if (auto st = detail::connect(ioc, stream, req); !st) return tl::unexpected(st.error());
  return detail::exchange(ioc, stream, req, on_body);
}

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

}  // namespace

Result<Url> parse_url(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return fail(ErrorCode::invalid_argument, "invalid URL \"" + std::string(text) + "\": " + why);
  };
  Url url;
  std::string_view rest;
  if (text.starts_with("http://")) rest = text.substr(7);
  else if (text.starts_with("https://")) rest = text.substr(8), url.tls = true;
  else return bad("expected http:// or https://");
  const size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (url.target[0] == '?') url.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) return bad("user information is not supported");
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    url.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("expected :PORT after ]");
      port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.find(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) return bad("no host");
  url.port = url.tls ? 443 : 80;
  if (!port.empty() || authority.ends_with(':')) {
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535) return bad("bad port");
    url.port = p;
  }
  return url;
}

std::string query_string(const Headers& params) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const auto& [name, value] : params) {
    out += out.empty() ? '?' : '&';
    for (const std::string* s : {&name, &value}) {
      for (unsigned char c : *s) {
        if (unreserved(static_cast<char>(c))) out += static_cast<char>(c);
        else out += {'%', kHex[c >> 4], kHex[c & 15]};
      }
      if (s == &name) out += '=';
    }
  }
  return out;
}

std::string Response::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (detail::beast::iequals(n, detail::beast::string_view(name.data(), name.size()))) return v;
  return "";
}

Result<Response> request(const Request& req) { return call(req, nullptr); }

Result<Response> stream(const Request& req, const std::function<bool(std::string_view)>& on_body) {
  return call(req, &on_body);
}

Result<std::string> hmac_sha256_hex(std::string_view key, std::string_view body) {
  auto tls = tls_module();
  if (!tls) return tl::unexpected(tls.error());
  std::string out;
  tls->hmac(&key, &body, &out);
  return out;
}

}  // namespace cronkeep::net
