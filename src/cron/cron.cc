// Cron expressions: parsing into bit sets, and a field-wise search for the
// next matching local civil time, converted to UTC with the DST rules of
// docs/cron.md (a repeated local time fires at its first occurrence; a
// skipped one fires at the end of the gap).
#include "cron/cron.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>
#include <vector>

#include "base/units.h"

namespace cronkeep::cron {

namespace {

using std::chrono::seconds;
using LocalSeconds = date::local_time<seconds>;

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const char* const* names;  // names[i] is the name of value min + i, or nullptr
};

const char* const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

const FieldSpec kSecond{"second", 0, 59, nullptr};
const FieldSpec kMinute{"minute", 0, 59, nullptr};
const FieldSpec kHour{"hour", 0, 23, nullptr};
const FieldSpec kDom{"day-of-month", 1, 31, nullptr};
const FieldSpec kMonth{"month", 1, 12, kMonthNames};
const FieldSpec kDow{"day-of-week", 0, 7, kDayNames};  // 7 is Sunday too

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

tl::unexpected<Error> field_error(const FieldSpec& f, std::string_view text, const std::string& why) {
  return fail(ErrorCode::invalid_argument, std::string(f.name) + " field \"" + std::string(text) + "\": " + why);
}

Result<int> parse_value(const FieldSpec& f, std::string_view field, std::string_view v) {
  if (v.empty()) return field_error(f, field, "empty value");
  if (f.names && std::isalpha(static_cast<unsigned char>(v[0]))) {
    const std::string name = lower(v);
    const int count = f.max - f.min + (f.names == kDayNames ? 0 : 1);
    for (int i = 0; i < count; ++i)
      if (name == f.names[i]) return f.min + i;
    return field_error(f, field, "unknown name \"" + std::string(v) + "\"");
  }
  int value = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || p != v.data() + v.size()) return field_error(f, field, "\"" + std::string(v) + "\" is not a number");
  if (value < f.min || value > f.max)
    return field_error(f, field,
                       "value " + std::to_string(value) + " out of range " + std::to_string(f.min) + "-" + std::to_string(f.max));
  return value;
}

// Parses one field into a bit set. `star` is set when the field starts with
// '*' or '?' (Vixie cron's notion of an unrestricted field).
Result<uint64_t> parse_field(const FieldSpec& f, std::string_view text, bool& star) {
  star = !text.empty() && (text[0] == '*' || text[0] == '?');
  uint64_t bits = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return field_error(f, text, "empty list item");
    std::string_view range = item;
    int step = 1;
    if (const size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const std::string_view s = item.substr(slash + 1);
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
      if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return field_error(f, text, "bad step \"" + std::string(s) + "\"");
      if (step < 1) return field_error(f, text, "step must be at least 1");
      if (step > f.max - f.min + 1 && f.max != 7) return field_error(f, text, "step " + std::to_string(step) + " is larger than the field's range");
    }
    int lo = f.min, hi = f.max == 7 ? 6 : f.max;
    if (range == "*" || range == "?") {
      // the whole range
    } else if (const size_t dash = range.find('-'); dash != std::string_view::npos) {
      auto a = parse_value(f, text, range.substr(0, dash));
      if (!a) return tl::unexpected(a.error());
      auto b = parse_value(f, text, range.substr(dash + 1));
      if (!b) return tl::unexpected(b.error());
      lo = *a;
      hi = *b;
      if (lo > hi) return field_error(f, text, "range " + std::string(range) + " runs backwards");
    } else {
      auto a = parse_value(f, text, range);
      if (!a) return tl::unexpected(a.error());
      lo = *a;
      if (item.find('/') == std::string_view::npos) hi = lo;  // "N" alone; "N/S" runs to the end
      else hi = f.max == 7 ? 6 : f.max;
    }
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << (f.max == 7 && v == 7 ? 0 : v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

int days_in_month(int y, unsigned m) {
  return static_cast<int>(static_cast<unsigned>((date::year(y) / date::month(m) / date::last).day()));
}

}  // namespace

Result<Zone> Zone::locate(std::string_view name) {
  try {
    return Zone(std::string(name), date::locate_zone(name));
  } catch (const std::exception&) {
    return fail(ErrorCode::invalid_argument, "unknown time zone \"" + std::string(name) + "\" (expected an IANA name such as Europe/Berlin)");
  }
}

Zone Zone::utc() {
  static const Zone kUtc = *locate("UTC");
  return kUtc;
}

Result<Schedule> Schedule::parse(std::string_view expr_in) {
  std::string expr(expr_in);
  while (!expr.empty() && std::isspace(static_cast<unsigned char>(expr.back()))) expr.pop_back();
  size_t first = 0;
  while (first < expr.size() && std::isspace(static_cast<unsigned char>(expr[first]))) ++first;
  expr = expr.substr(first);
  if (expr.empty()) return fail(ErrorCode::invalid_argument, "empty cron expression");

  Schedule s;
  s.text_ = std::string(expr_in);
  if (expr[0] == '@') {
    const std::string word = lower(expr.substr(0, expr.find(' ')));
    if (word == "@every") {
      const std::string rest = expr.size() > 6 ? expr.substr(7) : "";
      auto d = parse_duration(rest);
      if (!d) return fail(ErrorCode::invalid_argument, "@every: " + d.error().message);
      if (*d < std::chrono::seconds(1)) return fail(ErrorCode::invalid_argument, "@every: the interval must be at least 1s");
      s.every_ = *d;
      return s;
    }
    static const std::pair<const char*, const char*> kMacros[] = {
        {"@yearly", "0 0 0 1 1 *"}, {"@annually", "0 0 0 1 1 *"}, {"@monthly", "0 0 0 1 * *"},
        {"@weekly", "0 0 0 * * 0"}, {"@daily", "0 0 0 * * *"},    {"@midnight", "0 0 0 * * *"},
        {"@hourly", "0 0 * * * *"}};
    for (auto [name, fields] : kMacros)
      if (lower(expr) == name) {
        auto inner = parse(fields);
        if (!inner) return inner;
        inner->text_ = s.text_;
        return inner;
      }
    return fail(ErrorCode::invalid_argument,
                "unknown macro \"" + expr + "\" (expected @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>)");
  }

  std::vector<std::string> fields;
  std::istringstream in(expr);
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() != 5 && fields.size() != 6)
    return fail(ErrorCode::invalid_argument, "expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
                                             "(with leading seconds), got " + std::to_string(fields.size()));
  if (fields.size() == 5) fields.insert(fields.begin(), "0");
  bool star = false;
  auto sec = parse_field(kSecond, fields[0], star);
  if (!sec) return tl::unexpected(sec.error());
  auto min = parse_field(kMinute, fields[1], star);
  if (!min) return tl::unexpected(min.error());
  auto hour = parse_field(kHour, fields[2], star);
  if (!hour) return tl::unexpected(hour.error());
  bool dom_star = false, dow_star = false;
  auto dom = parse_field(kDom, fields[3], dom_star);
  if (!dom) return tl::unexpected(dom.error());
  auto month = parse_field(kMonth, fields[4], star);
  if (!month) return tl::unexpected(month.error());
  auto dow = parse_field(kDow, fields[5], dow_star);
  if (!dow) return tl::unexpected(dow.error());
  s.seconds_ = *sec;
  s.minutes_ = *min;
  s.hours_ = static_cast<unsigned>(*hour);
  s.days_of_month_ = static_cast<unsigned>(*dom);
  s.months_ = static_cast<unsigned>(*month);
  s.days_of_week_ = static_cast<unsigned>(*dow);
  s.dom_restricted_ = !dom_star;
  s.dow_restricted_ = !dow_star;

  // With only day-of-month restricting days, some month must have one of them.
  if (s.dom_restricted_ && !s.dow_restricted_) {
    bool possible = false;
    for (unsigned m = 1; m <= 12 && !possible; ++m) {
      if (!(s.months_ >> m & 1)) continue;
      const int dim = m == 2 ? 29 : days_in_month(2001, m);
      for (int d = 1; d <= dim; ++d)
        if (s.days_of_month_ >> d & 1) possible = true;
    }
    if (!possible)
      return fail(ErrorCode::invalid_argument,
                  "never fires: no month in \"" + fields[4] + "\" has a day in \"" + fields[3] + "\"");
  }
  return s;
}

std::optional<TimePoint> Schedule::next_fire(TimePoint after, const Zone& zone) const {
  if (every_.count() > 0) {
    const int64_t e = every_.count();
    const int64_t a = to_unix_ms(after);
    const int64_t q = a >= 0 ? a / e : -((-a + e - 1) / e);
    return from_unix_ms((q + 1) * e);
  }
  const date::time_zone* tz = zone.tz();
  const auto after_s = std::chrono::floor<seconds>(after);
  LocalSeconds local = tz->to_local(after_s) + seconds(1);
  const int limit_year = static_cast<int>(date::year_month_day(std::chrono::floor<date::days>(local)).year()) + 5;

  while (true) {
    // Field-wise search for the first matching local civil time >= `local`.
    auto day = std::chrono::floor<date::days>(local);
    date::year_month_day ymd(day);
    date::hh_mm_ss<seconds> tod(local - day);
    int y = static_cast<int>(ymd.year());
    unsigned mo = static_cast<unsigned>(ymd.month());
    unsigned d = static_cast<unsigned>(ymd.day());
    int h = static_cast<int>(tod.hours().count());
    int mi = static_cast<int>(tod.minutes().count());
    int se = static_cast<int>(tod.seconds().count());
    bool found = false;
    while (!found) {
      if (y > limit_year) return std::nullopt;
      if (!(months_ >> mo & 1)) {
        if (++mo > 12) {
          mo = 1;
          ++y;
        }
        d = 1;
        h = mi = se = 0;
        continue;
      }
      const int dim = days_in_month(y, mo);
      if (static_cast<int>(d) > dim) {
        if (++mo > 12) {
          mo = 1;
          ++y;
        }
        d = 1;
        h = mi = se = 0;
        continue;
      }
      const unsigned wd = date::weekday(date::year(y) / date::month(mo) / date::day(d)).c_encoding();
      const bool dom_ok = days_of_month_ >> d & 1;
      const bool dow_ok = days_of_week_ >> wd & 1;
      const bool day_ok = dom_restricted_ && dow_restricted_ ? (dom_ok || dow_ok) : (dom_ok && dow_ok);
      if (!day_ok) {
        ++d;
        h = mi = se = 0;
        continue;
      }
      if (!(hours_ >> h & 1)) {
        if (++h > 23) {
          ++d;
          h = 0;
        }
        mi = se = 0;
        continue;
      }
      if (!(minutes_ >> mi & 1)) {
        if (++mi > 59) {
          mi = 0;
          ++h;
          if (h > 23) {
            h = 0;
            ++d;
          }
        }
        se = 0;
        continue;
      }
      if (!(seconds_ >> se & 1)) {
        if (++se > 59) {
          se = 0;
          ++mi;
          if (mi > 59) {
            mi = 0;
            ++h;
            if (h > 23) {
              h = 0;
              ++d;
            }
          }
        }
        continue;
      }
      found = true;
    }
    const LocalSeconds candidate =
        LocalSeconds(date::local_days(date::year(y) / date::month(mo) / date::day(d))) + std::chrono::hours(h) +
        std::chrono::minutes(mi) + seconds(se);
    const date::local_info info = tz->get_info(candidate);
    date::sys_seconds utc;
    switch (info.result) {
      case date::local_info::unique: utc = date::sys_seconds(candidate.time_since_epoch() - info.first.offset); break;
      case date::local_info::ambiguous:  // the first occurrence
        utc = date::sys_seconds(candidate.time_since_epoch() - info.first.offset);
        break;
      case date::local_info::nonexistent:  // the end of the gap
        utc = info.second.begin;
        break;
    }
    if (TimePoint(utc) > after) return TimePoint(utc);
    local = candidate + seconds(1);
  }
}

}  // namespace cronkeep::cron
