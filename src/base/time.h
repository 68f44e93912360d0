// base/time.h: the time types every part shares, and their text forms.
//
// Wall-clock instants are UTC milliseconds since the Unix epoch (TimePoint);
// spans are std::chrono::milliseconds. Text forms are RFC 3339 in UTC.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cronkeep {

using Millis = std::chrono::milliseconds;
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Millis>;

inline int64_t to_unix_ms(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint from_unix_ms(int64_t ms) { return TimePoint(Millis(ms)); }

// "2026-11-23T04:00:00Z", or with milliseconds "2026-11-23T04:00:00.123Z"
// when `with_millis` is set.
std::string format_rfc3339(TimePoint t, bool with_millis = false);

// "20261123_040000": the UTC stamp used in log file names.
std::string format_file_stamp(TimePoint t);

// Parses "2026-11-23T04:00:00Z", "2026-11-23T04:00:00.5+01:00",
// "2026-11-23 04:00:00" (UTC) or "2026-11-23" (midnight UTC), strictly:
// nullopt for anything else, including impossible dates.
std::optional<TimePoint> parse_rfc3339(std::string_view text);

}  // namespace cronkeep
