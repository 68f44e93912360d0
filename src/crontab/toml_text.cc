// Writing TOML strings and keys by hand: the converter interleaves comments
// with tables, which toml++'s formatter cannot do. Each value takes the most
// readable of TOML's four string forms that holds it exactly; tests parse
// the result back with toml++.
#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "crontab/crontab.h"

namespace cronkeep::crontab {
namespace {

// The characters TOML refuses unescaped in every string form but basic
// strings' escapes: U+0000-U+001F but tab, and U+007F. Newline is counted
// separately (multi-line forms hold it).
bool control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t' && c != '\n') || u == 0x7f;
}

bool has_control(std::string_view v) { return std::any_of(v.begin(), v.end(), control); }

// Basic-string escapes; `keep_newlines` for the multi-line form. Every '"'
// is escaped, so no run of three can end a """ string early.
std::string escape(std::string_view v, bool keep_newlines) {
  std::string out;
  out.reserve(v.size() + 8);
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += keep_newlines ? "\n" : "\\n";
        break;
      default:
        if (control(c)) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// A ''' string holds anything but control characters and "'''" (one or
// two quotes next to a delimiter belong to the value, as TOML 1.0 says).
bool fits_multiline_literal(std::string_view v) { return !has_control(v) && v.find("'''") == std::string_view::npos; }

}  // namespace

std::string toml_string(std::string_view value) {
  const bool newlines = value.find('\n') != std::string_view::npos;
  if (!newlines) {
    if (has_control(value)) return "\"" + escape(value, false) + "\"";
    if (value.find_first_of("\"\\") == std::string_view::npos) return "\"" + std::string(value) + "\"";
    if (value.find('\'') == std::string_view::npos) return "'" + std::string(value) + "'";
    if (fits_multiline_literal(value)) return "'''" + std::string(value) + "'''";
    return "\"" + escape(value, false) + "\"";
  }
  // The newline right after the opening delimiter is not part of the value.
  if (fits_multiline_literal(value)) return "'''\n" + std::string(value) + "'''";
  return "\"\"\"\n" + escape(value, true) + "\"\"\"";
}

std::string toml_key(std::string_view key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  return bare ? std::string(key) : "\"" + escape(key, false) + "\"";
}

bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (lead >= 0xc2 && lead <= 0xdf) {
      len = 2;
      cp = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      len = 3;
      cp = lead & 0x0f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      len = 4;
      cp = lead & 0x07;
    } else {
      return false;  // a continuation byte, an overlong 2-byte lead (c0, c1), or beyond U+10FFFF
    }
    if (text.size() - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

}  // namespace cronkeep::crontab
