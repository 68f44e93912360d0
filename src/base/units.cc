#include "base/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

namespace cronkeep {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Reads a non-negative decimal number ("12", "1.5", ".5") at s[pos].
// Returns false when no digit is found.
bool read_number(std::string_view s, size_t& pos, long double& value) {
  size_t start = pos;
  long double whole = 0;
  bool digits = false;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
    whole = whole * 10 + (s[pos] - '0');
    ++pos;
    digits = true;
  }
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    long double scale = 0.1L;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      whole += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      digits = true;
    }
  }
  if (!digits) pos = start;
  value = whole;
  return digits;
}

}  // namespace

Result<Millis> parse_duration(std::string_view text) {
  const std::string s = lower(text);
  const std::string quoted = "invalid duration \"" + std::string(text) + "\"";
  if (s.empty()) return fail(ErrorCode::invalid_argument, "empty duration (expected e.g. \"90s\", \"1h30m\", \"7d\")");
  if (s == "0") return Millis(0);
  if (s[0] == '-') return fail(ErrorCode::invalid_argument, quoted + ": must not be negative");
  long double total_ms = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    long double value = 0;
    if (!read_number(s, pos, value))
      return fail(ErrorCode::invalid_argument, quoted + ": expected a number at position " + std::to_string(pos + 1));
    size_t unit_start = pos;
    while (pos < s.size() && std::isalpha(static_cast<unsigned char>(s[pos]))) ++pos;
    const std::string unit = s.substr(unit_start, pos - unit_start);
    long double factor = 0;
    if (unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "m") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    else if (unit == "d") factor = 86'400'000;
    else if (unit == "w") factor = 604'800'000;
    else if (unit.empty())
      return fail(ErrorCode::invalid_argument, quoted + ": missing unit (use ms, s, m, h, d or w)");
    else
      return fail(ErrorCode::invalid_argument, quoted + ": unknown unit \"" + unit + "\" (use ms, s, m, h, d or w)");
    total_ms += value * factor;
    // 100 years is far beyond any sensible schedule and keeps arithmetic safe.
    if (total_ms > 100.0L * 366 * 86'400'000)
      return fail(ErrorCode::invalid_argument, quoted + ": too large (at most 100 years)");
  }
  return Millis(static_cast<int64_t>(std::llround(total_ms)));
}

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  struct Unit {
    const char* name;
    int64_t ms;
  };
  static constexpr Unit kUnits[] = {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}};
  for (const Unit& u : kUnits) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms) + u.name;
      ms %= u.ms;
    }
  }
  return out;
}

Result<uint64_t> parse_size(std::string_view text) {
  const std::string s = lower(text);
  const std::string quoted = "invalid size \"" + std::string(text) + "\"";
  if (s.empty()) return fail(ErrorCode::invalid_argument, "empty size (expected e.g. \"100MB\", \"1.5GB\", \"4096\")");
  if (s[0] == '-') return fail(ErrorCode::invalid_argument, quoted + ": must not be negative");
  size_t pos = 0;
  long double value = 0;
  if (!read_number(s, pos, value)) return fail(ErrorCode::invalid_argument, quoted + ": expected a number");
  while (pos < s.size() && s[pos] == ' ') ++pos;
  const std::string unit = s.substr(pos);
  long double factor = 0;
  if (unit.empty() || unit == "b") factor = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") factor = 1024.0L;
  else if (unit == "m" || unit == "mb" || unit == "mib") factor = 1024.0L * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") factor = 1024.0L * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") factor = 1024.0L * 1024 * 1024 * 1024;
  else return fail(ErrorCode::invalid_argument, quoted + ": unknown unit \"" + unit + "\" (use B, KB, MB, GB or TB)");
  const long double bytes = value * factor;
  if (bytes > static_cast<long double>(std::numeric_limits<int64_t>::max()))
    return fail(ErrorCode::invalid_argument, quoted + ": too large");
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

}  // namespace cronkeep
