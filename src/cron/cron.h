// cron/cron.h: cron expressions and the instants they fire at.
//
// Owns: parsing schedule expressions and computing the next fire time in UTC
// or an IANA time zone. Pure: no clock, no files (a zone's TZif file is
// read once by Zone::locate; cron/zone_rules.h reads its bytes), no
// knowledge of tasks, runs or the database.
//
// Expressions:
//   5 fields      "min hour dom month dow"
//   6 fields      "sec min hour dom month dow"
//   each field:   *  N  N-M  */S  N-M/S  N/S  and comma lists of these;
//                 months jan..dec and weekdays sun..sat by name (any case);
//                 weekday 7 is Sunday too.
//   macros:       @yearly (@annually) @monthly @weekly @daily (@midnight) @hourly
//   intervals:    "@every <duration>" (base/units.h durations, >= 1s), fires at
//                 every multiple of the interval since the Unix epoch (UTC),
//                 whatever the zone.
// Day matching follows Vixie cron: when both day-of-month and day-of-week are
// restricted (neither is "*"), a day matches if either matches.
//
// Time zones and DST (docs/cron.md has the rules with examples):
//   - a local time that occurs twice (clocks go back) fires once, at its first
//     occurrence;
//   - a local time that does not exist (clocks go forward) fires at the first
//     valid instant after the gap, once, however many matching local times the
//     gap swallowed.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/time.h"

namespace cronkeep::cron {

class ZoneRules;  // cron/zone_rules.h

// An IANA time zone ("UTC", "Europe/Berlin"). Cheap to copy; thread-safe.
class Zone {
 public:
  // Finds the zone in the system's zoneinfo (/usr/share/zoneinfo/NAME, a
  // TZif file, read once per name and process). "UTC" needs no file.
  // Errors: invalid_argument when the name is not a zone name or no such
  // zone exists, or its file does not read as one (message names it).
  static Result<Zone> locate(std::string_view name);
  // The UTC zone; never fails.
  static Zone utc();

  const std::string& name() const { return name_; }
  // Its offsets over time; null for UTC.
  const ZoneRules* rules() const { return rules_.get(); }

 private:
  Zone(std::string name, std::shared_ptr<const ZoneRules> rules) : name_(std::move(name)), rules_(std::move(rules)) {}
  std::string name_;
  std::shared_ptr<const ZoneRules> rules_;
};

// A parsed, validated expression. Immutable; thread-safe.
class Schedule {
 public:
  // Parses and validates `expr`.
  // Errors: invalid_argument naming the field and the offending text, e.g.
  // "minute field \"61\": value out of range 0-59"; also for an expression
  // that can never fire ("0 0 30 2 *": "never fires: February has no day 30").
  static Result<Schedule> parse(std::string_view expr);

  // The first fire instant strictly after `after`, in `zone`. Looks as far
  // ahead as the calendar needs for this expression (parse() computes the
  // longest gap between its days over a 400-year cycle), so an accepted
  // expression always has a next fire; nullopt only beyond year 9999.
  // Runs in time bounded independently of the expression (no second-by-second
  // search).
  std::optional<TimePoint> next_fire(TimePoint after, const Zone& zone) const;

  // The expression as given to parse().
  const std::string& text() const { return text_; }

 private:
  Schedule() = default;
  friend struct ScheduleAccess;
  std::string text_;
  // Bit sets of allowed values; bit i set = value i allowed.
  unsigned long long seconds_ = 0;  // 0-59
  unsigned long long minutes_ = 0;  // 0-59
  unsigned int hours_ = 0;          // 0-23
  unsigned int days_of_month_ = 0;  // 1-31
  unsigned int months_ = 0;         // 1-12
  unsigned int days_of_week_ = 0;   // 0-6, Sunday = 0
  bool dom_restricted_ = false;
  bool dow_restricted_ = false;
  Millis every_{0};  // > 0 for "@every"
  int horizon_days_ = 0;  // how many days of local dates next_fire searches
};

}  // namespace cronkeep::cron
