// net/tls_module.h: the entry points of the TLS module, cronkeep-tls.so.
//
// https:// exchanges (Boost.Beast's ssl_stream over OpenSSL) and HMAC-SHA256
// (libcrypto) are built as a module so that the binary does not link
// OpenSSL: libcrypto's initialisation alone costs a process about 3 MB of
// resident memory, which every daemon paid when cpp-httplib's client
// (built with OpenSSL) was linked in. net/http_client.cc loads the module
// (base/module.h) the first time an https URL is called or a body signed.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "net/http_client.h"

namespace cronkeep::net {

inline constexpr int kTlsModuleAbi = 1;
inline constexpr const char* kTlsModuleFile = "cronkeep-tls.so";
inline constexpr const char* kTlsModuleAbiSymbol = "cronkeep_tls_abi";
inline constexpr const char* kTlsModuleExchangeSymbol = "cronkeep_tls_exchange";
inline constexpr const char* kTlsModuleHmacSymbol = "cronkeep_tls_hmac_sha256_hex";

}  // namespace cronkeep::net

extern "C" {
// Returns kTlsModuleAbi as the module was built.
int cronkeep_tls_abi();
// What net::request (on_body null) or net::stream does for an https URL, written to *out.
void cronkeep_tls_exchange(const cronkeep::net::Request* req, const std::function<bool(std::string_view)>* on_body,
                           cronkeep::Result<cronkeep::net::Response>* out);
// HMAC-SHA256 of *body with *key as lowercase hex, written to *out.
void cronkeep_tls_hmac_sha256_hex(const std::string_view* key, const std::string_view* body, std::string* out);
}
