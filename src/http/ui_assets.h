// http/ui_assets.h: the web UI's files, embedded in the binary at build time
// (cmake/EmbedUi.cmake turns ui/ into a generated source), so the daemon
// serves the UI with no file read and no network at run time.
#pragma once

#include <span>
#include <string_view>

namespace cronkeep::http {

struct UiAsset {
  std::string_view path;          // "/" for index.html; "/assets/<stem>.<hash>.<ext>" for the rest
  std::string_view content_type;
  std::string_view hash;          // first 12 hex digits of the SHA-256 of the bytes (the ETag)
  bool immutable = false;         // a hashed name: cache for a year
  std::string_view bytes;
};

// Every asset, index.html first. Thread-safe (constant data).
std::span<const UiAsset> ui_assets();

}  // namespace cronkeep::http
