// cron/cron.cc: cron expressions parsed by hand into bit sets, and the next
// fire instant found by a field-wise search on the local civil time of the
// zone, then mapped to UTC by the DST rules of docs/cron.md:
//
//   f(local) = its only instant            when the local time is unique,
//              its first (earlier) instant when it occurs twice,
//              the instant the gap ends    when it does not exist.
//
// f never decreases as the local time grows, so the first matching local
// time whose f is after the starting instant gives the answer; candidates
// whose f is not after it (the second pass of a repeated hour) are skipped
// a whole repeated range at a time.
#include "cron/cron.h"

#include <date/date.h>

#include <array>
#include <bit>
#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <vector>

#include "base/file.h"
#include "base/units.h"
#include "cron/zone_rules.h"

namespace cronkeep::cron {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

// How far next_fire looks ahead when at least one day field alone decides:
// the longest such gap is February 29 across a century year that is not a
// leap year (2096-02-29 to 2104-02-29, 2922 days). Schedules whose day
// fields must both match compute their own horizon at parse time.
constexpr int kDefaultHorizonDays = 8 * 366 + 2;

// Instants beyond these are refused by next_fire (nullopt): the civil-date
// arithmetic of date.h holds for years -32767..32767 only.
constexpr int kMinYear = -9999;
constexpr int kMaxYear = 9999;

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kWeekdayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
constexpr std::array<std::string_view, 12> kMonthTitles = {"January",   "February", "March",    "April",
                                                           "May",       "June",     "July",     "August",
                                                           "September", "October",  "November", "December"};
// The longest each month can be (February: 29, leap years exist).
constexpr std::array<unsigned, 13> kMaxMonthDays = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

struct FieldSpec {
  std::string_view name;          // as it appears in error messages
  int min;                        // lowest value
  int max;                        // highest value accepted in text (day-of-week: 7, Sunday again)
  int last;                       // highest distinct value: where "*" and "N/S" stop
  const std::string_view* names;  // names[i] is the name of value name_base + i; may be null
  int name_count;
  int name_base;
  std::string_view name_hint;  // "jan..dec"
};

constexpr FieldSpec kSecond{"second", 0, 59, 59, nullptr, 0, 0, ""};
constexpr FieldSpec kMinute{"minute", 0, 59, 59, nullptr, 0, 0, ""};
constexpr FieldSpec kHour{"hour", 0, 23, 23, nullptr, 0, 0, ""};
constexpr FieldSpec kDayOfMonth{"day-of-month", 1, 31, 31, nullptr, 0, 0, ""};
constexpr FieldSpec kMonth{"month", 1, 12, 12, kMonthNames.data(), 12, 1, "jan..dec"};
constexpr FieldSpec kDayOfWeek{"day-of-week", 0, 7, 6, kWeekdayNames.data(), 7, 0, "sun..sat"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

tl::unexpected<Error> field_error(const FieldSpec& f, std::string_view field, const std::string& why) {
  return fail(ErrorCode::invalid_argument, std::string(f.name) + " field " + quote(field) + ": " + why);
}

// Reads a run of decimal digits; nullopt if `s` is empty or holds anything
// else. Large numbers saturate (they are out of every range anyway).
std::optional<int> read_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n > 100'000 ? n : n * 10 + (c - '0');
  }
  return n;
}

// One value of a field: a number in [min, max] or a name.
Result<int> parse_value(const FieldSpec& f, std::string_view field, std::string_view text) {
  if (text.empty()) return field_error(f, field, "missing value");
  // Quartz's L (last), W (nearest weekday) and # (nth weekday) have no
  // Vixie cron meaning: say so rather than "not a number".
  const bool quartz = text.find('#') != std::string_view::npos ||
                      ((text.back() == 'L' || text.back() == 'W' || text.back() == 'l' || text.back() == 'w') &&
                       (text.size() == 1 || std::isdigit(static_cast<unsigned char>(text[text.size() - 2]))));
  if (quartz)
    return field_error(f, field,
                       quote(text) + ": L, W and # (Quartz extensions) are not supported; list the days instead");
  if (std::isalpha(static_cast<unsigned char>(text[0]))) {
    if (f.names == nullptr) return field_error(f, field, quote(text) + " is not a number");
    const std::string name = lower(text);
    for (int i = 0; i < f.name_count; ++i)
      if (name == f.names[i]) return f.name_base + i;
    return field_error(f, field, "unknown name " + quote(text) + " (expected " + std::string(f.name_hint) + ")");
  }
  const std::optional<int> n = read_number(text);
  if (!n) return field_error(f, field, quote(text) + " is not a number");
  if (*n < f.min || *n > f.max)
    return field_error(
        f, field,
        "value " + std::string(text) + " out of range " + std::to_string(f.min) + "-" + std::to_string(f.max));
  return *n;
}

// One comma-separated item: "*", "N", "N-M", each optionally followed by
// "/S". "N/S" runs from N to the end of the field's range.
Result<uint64_t> parse_item(const FieldSpec& f, std::string_view field, std::string_view item) {
  if (item.empty()) return field_error(f, field, "empty item in list");
  std::string_view range = item;
  int step = 1;
  const size_t slash = item.find('/');
  if (slash != std::string_view::npos) {
    range = item.substr(0, slash);
    const std::string_view step_text = item.substr(slash + 1);
    if (range.empty()) return field_error(f, field, "missing range before \"/\" in " + quote(item));
    if (step_text.empty()) return field_error(f, field, "missing step after \"/\" in " + quote(item));
    const std::optional<int> n = read_number(step_text);
    if (!n) return field_error(f, field, "bad step " + quote(step_text) + " (expected a number)");
    if (*n == 0) return field_error(f, field, "bad step 0 (must be at least 1)");
    const int span = f.last - f.min + 1;
    if (*n > span)
      return field_error(f, field,
                         "bad step " + std::to_string(*n) + ": larger than the field's range " + std::to_string(f.min) +
                             "-" + std::to_string(f.last) +
                             (f.name == "minute" || f.name == "second" || f.name == "hour"
                                  ? " (for a longer interval use \"@every <duration>\")"
                                  : ""));
    step = *n;
  }
  int lo = f.min;
  int hi = f.last;
  if (range == "*" || range == "?") {
    // the whole range
  } else if (const size_t dash = range.find('-'); dash != std::string_view::npos) {
    const std::string_view a = range.substr(0, dash);
    const std::string_view b = range.substr(dash + 1);
    if (a.empty()) return field_error(f, field, "missing start of range in " + quote(item));
    if (b.empty()) return field_error(f, field, "missing end of range in " + quote(item));
    const Result<int> va = parse_value(f, field, a);
    if (!va) return tl::unexpected(va.error());
    const Result<int> vb = parse_value(f, field, b);
    if (!vb) return tl::unexpected(vb.error());
    if (*va > *vb)
      return field_error(f, field,
                         "reversed range " + std::string(range) + " (the start must not be after the end" +
                             (f.max != f.last && *va == 7 ? "; 7 is Sunday, write 0" : "") + ")");
    lo = *va;
    hi = *vb;
  } else {
    const Result<int> v = parse_value(f, field, range);
    if (!v) return tl::unexpected(v.error());
    lo = *v;
    hi = slash == std::string_view::npos ? lo : std::max(lo, f.last);
  }
  uint64_t bits = 0;
  for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << (v > f.last ? v - 7 : v);  // weekday 7 → 0
  return bits;
}

Result<uint64_t> parse_field(const FieldSpec& f, std::string_view field) {
  uint64_t bits = 0;
  size_t start = 0;
  for (;;) {
    const size_t comma = field.find(',', start);
    const std::string_view item =
        field.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    const Result<uint64_t> r = parse_item(f, field, item);
    if (!r) return r;
    bits |= *r;
    if (comma == std::string_view::npos) return bits;
    start = comma + 1;
  }
}

// "a", "a and b", "a, b and c".
std::string join_and(const std::vector<std::string>& parts, const char* last_sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += i + 1 == parts.size() ? last_sep : ", ";
    out += parts[i];
  }
  return out;
}

// The fields of a schedule, copied out for the search helpers below.
struct Fields {
  uint64_t seconds;
  uint64_t minutes;
  uint64_t hours;
  uint64_t days_of_month;
  uint64_t months;
  uint64_t days_of_week;
  bool either_day;  // both day fields restricted: a day matches if either does
};

// The lowest set bit at or above `from`, or -1.
int next_bit(uint64_t bits, int from) {
  if (from >= 64) return -1;
  const uint64_t rest = bits & (~uint64_t{0} << from);
  return rest == 0 ? -1 : std::countr_zero(rest);
}

bool day_matches(const Fields& f, unsigned day_of_month, unsigned weekday) {
  const bool dom = (f.days_of_month >> day_of_month & 1) != 0;
  const bool dow = (f.days_of_week >> weekday & 1) != 0;
  return f.either_day ? dom || dow : dom && dow;
}

// The first local civil time at or after `from` whose fields all match, if
// its day is not after `limit`. Advances the largest mismatching field to its
// next allowed value and resets the smaller ones, so the work is bounded by
// the number of days searched, not by the number of seconds.
std::optional<LocalSeconds> find_local(const Fields& f, LocalSeconds from, date::local_days limit) {
  date::local_days day = std::chrono::floor<days>(from);
  const date::hh_mm_ss<seconds> tod(from - day);
  int h = static_cast<int>(tod.hours().count());
  int mi = static_cast<int>(tod.minutes().count());
  int s = static_cast<int>(tod.seconds().count());
  while (day <= limit) {
    const date::year_month_day ymd(day);
    const unsigned month = static_cast<unsigned>(ymd.month());
    if ((f.months >> month & 1) == 0) {
      const int next = next_bit(f.months, static_cast<int>(month) + 1);
      const date::year year = next < 0 ? ymd.year() + date::years(1) : ymd.year();
      const unsigned m = static_cast<unsigned>(next < 0 ? next_bit(f.months, 1) : next);
      day = date::local_days(year / date::month(m) / 1);
      h = mi = s = 0;
      continue;
    }
    if (!day_matches(f, static_cast<unsigned>(ymd.day()), date::weekday(day).c_encoding())) {
      day += days(1);
      h = mi = s = 0;
      continue;
    }
    const int nh = next_bit(f.hours, h);
    if (nh < 0) {
      day += days(1);
      h = mi = s = 0;
      continue;
    }
    if (nh != h) {
      h = nh;
      mi = s = 0;
    }
    const int nmi = next_bit(f.minutes, mi);
    if (nmi < 0) {
      mi = s = 0;
      if (++h > 23) {
        h = 0;
        day += days(1);
      }
      continue;
    }
    if (nmi != mi) {
      mi = nmi;
      s = 0;
    }
    const int ns = next_bit(f.seconds, s);
    if (ns < 0) {
      s = 0;
      if (++mi > 59) {
        mi = 0;
        if (++h > 23) {
          h = 0;
          day += days(1);
        }
      }
      continue;
    }
    return LocalSeconds(day) + hours(h) + minutes(mi) + seconds(ns);
  }
  return std::nullopt;
}

LocalSeconds to_local(const ZoneRules* rules, SysSeconds t) {
  return LocalSeconds(t.time_since_epoch() + (rules != nullptr ? rules->at(t).offset : seconds(0)));
}

LocalSeconds local_of(SysSeconds t, seconds offset) { return LocalSeconds(t.time_since_epoch() + offset); }

// The most consecutive days without a matching day over one 400-year
// Gregorian cycle (after which dates and weekdays repeat exactly).
int longest_gap_in_days(const Fields& f) {
  const date::local_days start = date::local_days(date::year(2000) / 1 / 1);
  constexpr int kCycleDays = 146'097;
  int first = -1;
  int previous = -1;
  int longest = 0;
  for (int y = 2000; y < 2400; ++y) {
    for (unsigned m = 1; m <= 12; ++m) {
      if ((f.months >> m & 1) == 0) continue;
      const date::year_month ym = date::year(y) / date::month(m);
      const date::local_days month_start(ym / 1);
      const unsigned first_weekday = date::weekday(month_start).c_encoding();
      const unsigned length = static_cast<unsigned>((ym / date::last).day());
      for (unsigned d = 1; d <= length; ++d) {
        if (!day_matches(f, d, (first_weekday + d - 1) % 7)) continue;
        const int n = static_cast<int>((month_start - start).count()) + static_cast<int>(d) - 1;
        if (first < 0) first = n;
        if (previous >= 0) longest = std::max(longest, n - previous);
        previous = n;
      }
    }
  }
  if (first < 0) return std::numeric_limits<int>::max();
  return std::max(longest, first + kCycleDays - previous);
}

struct Macro {
  std::string_view name;
  std::string_view fields;
};
constexpr Macro kMacros[] = {{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
                             {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
                             {"@hourly", "0 * * * *"}};

// An IANA name: components of letters, digits, '_', '-', '+' and '.',
// none of them "." or "..", so that it names a file below the zoneinfo
// directory and nothing else.
bool zone_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/' || name.back() == '/') return false;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t slash = std::min(name.find('/', start), name.size());
    const std::string_view part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '+' && c != '.') return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

Result<Zone> Zone::locate(std::string_view name) {
  if (name == "UTC") return utc();
  const auto unknown = [&](const std::string& why) {
    return fail(ErrorCode::invalid_argument, "unknown time zone " + quote(name) + why +
                                                 " (expected an IANA name such as \"Europe/Berlin\" or \"UTC\")");
  };
  if (!zone_name_ok(name)) return unknown("");
  // Each zone is read once; every Zone of that name shares its rules.
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const ZoneRules>, std::less<>> known;
  std::lock_guard lock(mu);
  if (auto it = known.find(name); it != known.end()) return Zone(std::string(name), it->second);
  const std::string path = "/usr/share/zoneinfo/" + std::string(name);
  auto bytes = read_file(path);
  if (!bytes) return unknown(bytes.error().code == ErrorCode::not_found ? "" : ": " + path + ": " + bytes.error().message);
  auto rules = ZoneRules::parse(*bytes);
  if (!rules) return unknown(": " + path + ": " + rules.error().message);
  auto shared = std::make_shared<const ZoneRules>(std::move(*rules));
  known.emplace(std::string(name), shared);
  return Zone(std::string(name), std::move(shared));
}

Zone Zone::utc() { return Zone("UTC", nullptr); }

Result<Schedule> Schedule::parse(std::string_view expr) {
  const std::string_view text = trim(expr);
  if (text.empty()) return fail(ErrorCode::invalid_argument, "empty cron expression");

  if (text[0] == '@') {
    size_t word_end = 0;
    while (word_end < text.size() && !is_space(text[word_end])) ++word_end;
    const std::string word = lower(text.substr(0, word_end));
    const std::string_view rest = trim(text.substr(word_end));
    if (word == "@every") {
      if (rest.empty()) return fail(ErrorCode::invalid_argument, "@every needs a duration, e.g. \"@every 10s\"");
      const Result<Millis> d = parse_duration(rest);
      if (!d) return fail(ErrorCode::invalid_argument, "@every: " + d.error().message);
      if (*d < seconds(1))
        return fail(ErrorCode::invalid_argument, "@every " + quote(rest) + ": the interval must be at least 1s");
      Schedule s;
      s.text_ = std::string(expr);
      s.every_ = *d;
      return s;
    }
    for (const Macro& m : kMacros) {
      if (word != m.name) continue;
      if (!rest.empty())
        return fail(ErrorCode::invalid_argument, "unexpected text after " + std::string(m.name) + ": " + quote(rest));
      Result<Schedule> s = parse(m.fields);
      if (s) s->text_ = std::string(expr);
      return s;
    }
    return fail(
        ErrorCode::invalid_argument,
        "unknown macro " + quote(text.substr(0, word_end)) +
            " (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)");
  }

  std::vector<std::string_view> fields;
  for (size_t pos = 0; pos < text.size();) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
    const size_t start = pos;
    while (pos < text.size() && !is_space(text[pos])) ++pos;
    if (pos > start) fields.push_back(text.substr(start, pos - start));
  }
  if (fields.size() != 5 && fields.size() != 6)
    return fail(ErrorCode::invalid_argument,
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds), got " +
                    std::to_string(fields.size()) + " in " + quote(text));
  if (fields.size() == 5) fields.insert(fields.begin(), "0");

  const FieldSpec* const specs[] = {&kSecond, &kMinute, &kHour, &kDayOfMonth, &kMonth, &kDayOfWeek};
  uint64_t bits[6] = {};
  for (size_t i = 0; i < 6; ++i) {
    const Result<uint64_t> b = parse_field(*specs[i], fields[i]);
    if (!b) return tl::unexpected(b.error());
    bits[i] = *b;
  }
  // Vixie cron: a day field is unrestricted when it starts with "*" (so
  // "*/2" is unrestricted too); "?" is accepted as a synonym.
  const auto restricted = [](std::string_view f) { return f[0] != '*' && f[0] != '?'; };

  Schedule s;
  s.text_ = std::string(expr);
  s.seconds_ = bits[0];
  s.minutes_ = bits[1];
  s.hours_ = static_cast<unsigned>(bits[2]);
  s.days_of_month_ = static_cast<unsigned>(bits[3]);
  s.months_ = static_cast<unsigned>(bits[4]);
  s.days_of_week_ = static_cast<unsigned>(bits[5]);
  s.dom_restricted_ = restricted(fields[3]);
  s.dow_restricted_ = restricted(fields[5]);

  // Only day-of-month decides the days: some allowed month must have one of
  // them (February counts 29 days).
  if (s.dom_restricted_ && !s.dow_restricted_) {
    bool possible = false;
    std::vector<std::string> months;
    for (unsigned m = 1; m <= 12; ++m) {
      if ((s.months_ >> m & 1) == 0) continue;
      months.emplace_back(kMonthTitles[m - 1]);
      const uint64_t in_month = (uint64_t{1} << (kMaxMonthDays[m] + 1)) - 2;  // bits 1..length
      if ((s.days_of_month_ & in_month) != 0) possible = true;
    }
    if (!possible) {
      std::vector<std::string> day_list;
      for (unsigned d = 1; d <= 31; ++d)
        if (s.days_of_month_ >> d & 1) day_list.push_back(std::to_string(d));
      return fail(ErrorCode::invalid_argument, "never fires: " + join_and(months, " and ") +
                                                   (months.size() == 1 ? " has" : " have") + " no day " +
                                                   join_and(day_list, " or ") + " (day-of-month " + quote(fields[3]) +
                                                   ", month " + quote(fields[4]) + ")");
    }
  }

  // When either day field starts with "*", both must match (Vixie cron), and
  // two partial sets can meet rarely: "0 0 */15 2 mon" wants February 1 or
  // 16 on a Monday, "0 0 1 1 */7" a January 1 on a Sunday; years can pass
  // between such days. The longest gap over one 400-year cycle (after which
  // the calendar repeats) is how far next_fire must look; none at all means
  // the expression never fires.
  constexpr uint64_t kAllDays = (uint64_t{1} << 32) - 2;  // 1-31
  constexpr uint64_t kAllWeekdays = (uint64_t{1} << 7) - 1;
  s.horizon_days_ = kDefaultHorizonDays;
  if (!(s.dom_restricted_ && s.dow_restricted_) && s.days_of_month_ != kAllDays && s.days_of_week_ != kAllWeekdays) {
    const Fields f{s.seconds_, s.minutes_, s.hours_, s.days_of_month_, s.months_, s.days_of_week_, false};
    const int gap = longest_gap_in_days(f);
    if (gap == std::numeric_limits<int>::max())
      return fail(ErrorCode::invalid_argument,
                  "never fires: no day matches day-of-month " + quote(fields[3]) + ", month " + quote(fields[4]) +
                      " and day-of-week " + quote(fields[5]) +
                      " together (as in Vixie cron, when either day field starts with \"*\", a day must match both)");
    s.horizon_days_ = std::max(kDefaultHorizonDays, gap + 2);
  }
  return s;
}

std::optional<TimePoint> Schedule::next_fire(TimePoint after, const Zone& zone) const {
  if (every_.count() > 0) {
    const int64_t e = every_.count();
    const int64_t a = to_unix_ms(after);
    int64_t q = a / e;
    if (a % e != 0 && a < 0) --q;  // floor division
    if (q >= std::numeric_limits<int64_t>::max() / e - 1) return std::nullopt;
    return from_unix_ms((q + 1) * e);
  }

  const SysSeconds after_s = std::chrono::floor<seconds>(after);
  if (after_s < date::sys_days(date::year(kMinYear) / 1 / 1) || after_s > date::sys_days(date::year(kMaxYear) / 1 / 1))
    return std::nullopt;

  const ZoneRules* tz = zone.rules();
  const Fields f{
      seconds_, minutes_, hours_, days_of_month_, months_, days_of_week_, dom_restricted_ && dow_restricted_};
  // Every local time up to local(after) maps to an instant <= after (also
  // when `after` lies in the second pass of a repeated hour), so the search
  // starts one second later.
  LocalSeconds from = to_local(tz, after_s) + seconds(1);
  const date::local_days limit = std::chrono::floor<days>(from) + days(horizon_days_);
  // Each round either returns or moves `from` past a transition; the bound
  // only guards against a malformed zone.
  for (int round = 0; round < 64; ++round) {
    const std::optional<LocalSeconds> local = find_local(f, from, limit);
    if (!local) return std::nullopt;
    if (tz == nullptr) return TimePoint(SysSeconds(local->time_since_epoch()));
    const LocalSpans info = tz->at_local(*local);
    switch (info.result) {
      case LocalSpans::unique: {
        const SysSeconds t(local->time_since_epoch() - info.first.offset);
        if (t > after) return TimePoint(t);
        from = *local + seconds(1);
        break;
      }
      case LocalSpans::ambiguous: {
        const SysSeconds first(local->time_since_epoch() - info.first.offset);
        if (first > after) return TimePoint(first);
        // `after` is in the second pass: the whole repeated range fired on
        // its first pass. Resume where the range ends.
        from = local_of(info.first.end, info.first.offset);
        break;
      }
      case LocalSpans::nonexistent: {
        if (info.second.begin > after) return TimePoint(info.second.begin);
        from = local_of(info.second.begin, info.second.offset);
        break;
      }
    }
  }
  return std::nullopt;
}

}  // namespace cronkeep::cron
