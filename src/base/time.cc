#include "base/time.h"

// GCC 12 reports a false maybe-uninitialized inside date::parse at -O2.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <date/date.h>

#include <sstream>

namespace cronkeep {

std::string format_rfc3339(TimePoint t, bool with_millis) {
  if (with_millis) return date::format("%FT%TZ", t);
  return date::format("%FT%TZ", std::chrono::floor<std::chrono::seconds>(t));
}

std::string format_file_stamp(TimePoint t) {
  return date::format("%Y%m%d_%H%M%S", std::chrono::floor<std::chrono::seconds>(t));
}

std::optional<TimePoint> parse_rfc3339(std::string_view text) {
  const std::string s(text);
  const char* formats[] = {"%FT%T%Ez", "%FT%TZ", "%FT%T%z", "%F %T%Ez", "%F %TZ", "%F %T", "%FT%T"};
  for (const char* fmt : formats) {
    std::istringstream in(s);
    date::sys_time<Millis> tp;
    in >> date::parse(fmt, tp);
    if (!in.fail() && in.peek() == std::char_traits<char>::eof()) return TimePoint(tp);
  }
  std::istringstream in(s);
  date::sys_days day;
  in >> date::parse("%F", day);
  if (!in.fail() && in.peek() == std::char_traits<char>::eof()) return TimePoint(day);
  return std::nullopt;
}

}  // namespace cronkeep
