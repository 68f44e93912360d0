// cron/zone_rules.h: internal to cron/. A time zone's offsets from UTC over
// time, read from a TZif file (RFC 8536: the system's zoneinfo, which
// Debian's tzdata installs under /usr/share/zoneinfo).
//
// Owns: parsing TZif bytes (version 1 to 4; the 64-bit block when there is
// one) and the POSIX TZ rule of its footer, which gives the transitions
// after the file's last one; answering which offset is in force at an
// instant, and which instants a local time names (one, two, or none when
// the clocks skip it). Pure: bytes in, answers out; reading the file is
// Zone::locate's business (cron.cc).
//
// Why not a library: Debian's libdate-tz does this, but it is the last C++
// shared library the daemon would load, and it alone keeps libstdc++.so
// (1.7 MB of the idle daemon's memory) in the process. tests/cron_test.cc
// checks every zone of the system against it, instant by instant.
#pragma once

#include <date/date.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cronkeep::cron {

using SysSeconds = date::sys_seconds;
using LocalSeconds = date::local_seconds;

// One stretch of time with one offset: [begin, end).
struct ZoneSpan {
  SysSeconds begin;
  SysSeconds end;
  std::chrono::seconds offset{0};  // local = UTC + offset
};

// Which instants a local time names.
struct LocalSpans {
  enum Result { unique, nonexistent, ambiguous } result = unique;
  // unique: the span it falls in. ambiguous: the earlier and the later
  // span. nonexistent: the span before the skipped range and the one after.
  ZoneSpan first;
  ZoneSpan second;
};

class ZoneRules {
 public:
  // Parses a TZif file. Errors: invalid_argument (what is wrong with it).
  static Result<ZoneRules> parse(std::string_view tzif);

  ZoneSpan at(SysSeconds t) const;
  LocalSpans at_local(LocalSeconds t) const;

  // A POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3"), as in a TZif footer.
  struct Posix {
    struct When {
      enum Kind { julian_no_leap, zero_based, month_week_day } kind = month_week_day;
      int day = 0;    // Jn: 1..365; n: 0..365; Mm.w.d: weekday 0..6 (Sunday 0)
      int month = 0;  // Mm.w.d
      int week = 0;   // Mm.w.d: 1..5 (5: the last)
      int64_t time = 2 * 3600;  // local time of day of the change, seconds (may be < 0 or > 24 h)
    };
    int64_t std_offset = 0;  // seconds east of UTC
    std::optional<int64_t> dst_offset;
    When start, end;  // into and out of daylight time
  };
  // Errors: invalid_argument.
  static Result<Posix> parse_posix(std::string_view rule);

 private:
  // The changes the footer's rule makes in year `y`, sorted: (instant, offset after).
  std::vector<std::pair<int64_t, int64_t>> rule_changes(int y) const;

  std::vector<int64_t> times_;    // transitions, UTC seconds, ascending
  std::vector<int64_t> offsets_;  // offsets_[i]: in force from times_[i]
  int64_t initial_offset_ = 0;    // before the first transition
  std::optional<Posix> rule_;     // after the last transition
};

}  // namespace cronkeep::cron
