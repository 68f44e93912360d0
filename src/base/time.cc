#include "base/time.h"


#include <date/date.h>


namespace cronkeep {

std::string format_rfc3339(TimePoint t, bool with_millis) {
  if (with_millis) return date::format("%FT%TZ", t);
  return date::format("%FT%TZ", std::chrono::floor<std::chrono::seconds>(t));
}

std::string format_file_stamp(TimePoint t) {
  return date::format("%Y%m%d_%H%M%S", std::chrono::floor<std::chrono::seconds>(t));
}

namespace {

// Reads exactly `n` digits at s[pos].
bool digits(std::string_view s, size_t& pos, int n, int& out) {
  if (pos + static_cast<size_t>(n) > s.size()) return false;
  out = 0;
  for (int i = 0; i < n; ++i) {
    const char c = s[pos + static_cast<size_t>(i)];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += static_cast<size_t>(n);
  return true;
}

bool expect(std::string_view s, size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

// A strict hand-written reader: date::parse misbehaves on some malformed
// offsets (found by fuzzing), and the accepted forms are few.
std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  size_t pos = 0;
  int y, mo, d;
  if (!digits(s, pos, 4, y) || !expect(s, pos, '-') || !digits(s, pos, 2, mo) || !expect(s, pos, '-') ||
      !digits(s, pos, 2, d))
    return std::nullopt;
  const date::year_month_day ymd{date::year(y), date::month(static_cast<unsigned>(mo)), date::day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return std::nullopt;
  TimePoint t = TimePoint(date::sys_days(ymd));
  if (pos == s.size()) return t;
  if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return std::nullopt;
  ++pos;
  int h, mi, se;
  if (!digits(s, pos, 2, h) || !expect(s, pos, ':') || !digits(s, pos, 2, mi) || !expect(s, pos, ':') ||
      !digits(s, pos, 2, se) || h > 23 || mi > 59 || se > 60)
    return std::nullopt;
  int64_t ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int scale = 100, n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++n;
    }
    if (n == 0) return std::nullopt;
  }
  t += std::chrono::hours(h) + std::chrono::minutes(mi) + std::chrono::seconds(se) + Millis(ms);
  if (pos == s.size()) return t;  // no zone: UTC
  if (s[pos] == 'Z' || s[pos] == 'z') return pos + 1 == s.size() ? std::optional(t) : std::nullopt;
  if (s[pos] != '+' && s[pos] != '-') return std::nullopt;
  const int sign = s[pos] == '-' ? -1 : 1;
  ++pos;
  int oh, om;
  if (!digits(s, pos, 2, oh) || !expect(s, pos, ':') || !digits(s, pos, 2, om) || oh > 23 || om > 59 || pos != s.size())
    return std::nullopt;
  return t - sign * (std::chrono::hours(oh) + std::chrono::minutes(om));
}

}  // namespace cronkeep
