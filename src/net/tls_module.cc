// The TLS module, cronkeep-tls.so (net/tls_module.h): https:// exchanges on
// Boost.Beast's ssl_stream, and HMAC-SHA256, over OpenSSL.
#include "net/tls_module.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include "base/units.h"
#include "net/exchange.h"

namespace ssl = boost::asio::ssl;
using namespace cronkeep;
using namespace cronkeep::net;

extern "C" __attribute__((visibility("default"))) int cronkeep_tls_abi() { return kTlsModuleAbi; }

extern "C" __attribute__((visibility("default"))) void cronkeep_tls_exchange(
    const Request* req, const std::function<bool(std::string_view)>* on_body, Result<Response>* out) {
  namespace d = detail;
  d::asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  d::beast::error_code ec;
  ctx.set_default_verify_paths(ec);  // the system's store; SSL_CERT_FILE and SSL_CERT_DIR override it
  if (ec) {
    *out = tl::unexpected(d::io_error("cannot read the system's certificates: " + ec.message()));
    return;
  }
  ctx.set_verify_mode(ssl::verify_peer);
  d::beast::ssl_stream<d::beast::tcp_stream> stream(ioc, ctx);
  stream.set_verify_callback(ssl::host_name_verification(req->url.host));
  if (!SSL_set_tlsext_host_name(stream.native_handle(), req->url.host.c_str())) {  // SNI
    *out = tl::unexpected(d::io_error("cannot name " + req->url.host + " for TLS"));
    return;
  }
  if (auto st = d::connect(ioc, d::beast::get_lowest_layer(stream), *req); !st) {
    *out = tl::unexpected(st.error());
    return;
  }
  d::beast::get_lowest_layer(stream).expires_after(req->timeout);
  stream.async_handshake(ssl::stream_base::client, [&](d::beast::error_code e) { ec = e; });
  d::run(ioc);
  if (ec == d::beast::error::timeout) {
    *out = tl::unexpected(d::io_error("no TLS handshake with " + d::host_port(req->url) + " within " +
                                      d::format_timeout(req->timeout)));
    return;
  }
  if (ec) {
    *out = tl::unexpected(d::io_error("TLS with " + d::host_port(req->url) + " failed: " + ec.message()));
    return;
  }
  *out = d::exchange(ioc, stream, *req, on_body);
}

extern "C" __attribute__((visibility("default"))) void cronkeep_tls_hmac_sha256_hex(const std::string_view* key,
                                                                                   const std::string_view* body,
                                                                                   std::string* out) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()), reinterpret_cast<const unsigned char*>(body->data()),
       body->size(), mac, &len);
  *out = to_hex(std::string_view(reinterpret_cast<const char*>(mac), len));
}
