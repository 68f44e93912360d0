// RFC 8536 (TZif) and the POSIX TZ rules of its footer.
#include "cron/zone_rules.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

namespace cronkeep::cron {
namespace {

using std::chrono::seconds;

// Far enough for any year cron computes (±9999), near enough that adding an
// offset never overflows.
constexpr int64_t kMinTime = -(int64_t{1} << 40);
constexpr int64_t kMaxTime = int64_t{1} << 40;
constexpr int64_t kDay = 86'400;

tl::unexpected<Error> bad(const std::string& what) { return fail(ErrorCode::invalid_argument, what); }

int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0) ? 1 : 0); }

// Big-endian fields of a TZif file, bounds-checked.
class Bytes {
 public:
  explicit Bytes(std::string_view s) : s_(s) {}
  bool has(size_t n) const { return pos_ <= s_.size() && s_.size() - pos_ >= n; }
  uint8_t u8() { return static_cast<uint8_t>(s_[pos_++]); }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | u8();
    return v;
  }
  int64_t i64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | u8();
    return static_cast<int64_t>(v);
  }
  int64_t i32() { return static_cast<int32_t>(u32()); }
  void skip(size_t n) { pos_ += n; }
  size_t pos() const { return pos_; }
  std::string_view rest() const { return s_.substr(pos_); }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

struct Counts {
  uint32_t isut, isstd, leap, time, type, chars;
};

bool read_header(Bytes& b, Counts& c, char* version) {
  if (!b.has(44)) return false;
  char magic[4];
  for (char& m : magic) m = static_cast<char>(b.u8());
  if (std::memcmp(magic, "TZif", 4) != 0) return false;
  *version = static_cast<char>(b.u8());
  b.skip(15);
  c = Counts{b.u32(), b.u32(), b.u32(), b.u32(), b.u32(), b.u32()};
  return true;
}

// Days since 1970-01-01 of a civil date.
int64_t days_of(date::year_month_day ymd) { return date::sys_days(ymd).time_since_epoch().count(); }

bool leap_year(int y) { return date::year(y).is_leap(); }

// The day (since the epoch) a rule's date falls on in year `y`.
int64_t rule_day(const ZoneRules::Posix::When& w, int y) {
  using Kind = ZoneRules::Posix::When::Kind;
  const int64_t jan1 = days_of(date::year(y) / 1 / 1);
  switch (w.kind) {
    case Kind::julian_no_leap: return jan1 + w.day - 1 + (leap_year(y) && w.day >= 60 ? 1 : 0);
    case Kind::zero_based: return jan1 + w.day;
    case Kind::month_week_day: {
      const date::year_month ym = date::year(y) / date::month(static_cast<unsigned>(w.month));
      const int64_t first = days_of(ym / 1);
      const int64_t last = days_of(ym / date::last);
      const int first_weekday = static_cast<int>(date::weekday(date::sys_days(date::days(first))).c_encoding());
      int64_t d = first + (w.day - first_weekday + 7) % 7 + 7 * (w.week - 1);
      while (d > last) d -= 7;  // week 5: the last such weekday of the month
      return d;
    }
  }
  return jan1;
}

// POSIX TZ text: a cursor with the grammar's pieces.
class PosixText {
 public:
  explicit PosixText(std::string_view s) : s_(s) {}
  bool done() const { return pos_ == s_.size(); }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  // A zone abbreviation: three or more letters, or <…> of letters, digits, '+' and '-'.
  bool name() {
    if (eat('<')) {
      const size_t start = pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '+' || s_[pos_] == '-'))
        ++pos_;
      return pos_ - start >= 3 && eat('>');
    }
    const size_t start = pos_;
    while (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    return pos_ - start >= 3;
  }
  // A decimal number of at most `digits` digits.
  bool number(int digits, int64_t& out) {
    const size_t start = pos_;
    out = 0;
    while (pos_ < s_.size() && pos_ - start < static_cast<size_t>(digits) &&
           std::isdigit(static_cast<unsigned char>(s_[pos_])))
      out = out * 10 + (s_[pos_++] - '0');
    return pos_ > start;
  }
  // [+-]hh[:mm[:ss]] in seconds; hours up to `max_hours`.
  bool hms(int64_t max_hours, int64_t& out) {
    const bool negative = eat('-');
    if (!negative) eat('+');
    int64_t h = 0, m = 0, sec = 0;
    if (!number(3, h) || h > max_hours) return false;
    if (eat(':') && (!number(2, m) || m > 59 || (eat(':') && (!number(2, sec) || sec > 59)))) return false;
    out = (h * 3600 + m * 60 + sec) * (negative ? -1 : 1);
    return true;
  }
  bool when(ZoneRules::Posix::When& w) {
    using Kind = ZoneRules::Posix::When::Kind;
    int64_t a = 0, b = 0, c = 0;
    if (eat('J')) {
      if (!number(3, a) || a < 1 || a > 365) return false;
      w.kind = Kind::julian_no_leap;
      w.day = static_cast<int>(a);
    } else if (eat('M')) {
      if (!number(2, a) || a < 1 || a > 12 || !eat('.') || !number(1, b) || b < 1 || b > 5 || !eat('.') ||
          !number(1, c) || c > 6)
        return false;
      w.kind = Kind::month_week_day;
      w.month = static_cast<int>(a);
      w.week = static_cast<int>(b);
      w.day = static_cast<int>(c);
    } else {
      if (!number(3, a) || a > 365) return false;
      w.kind = Kind::zero_based;
      w.day = static_cast<int>(a);
    }
    w.time = 2 * 3600;
    return !eat('/') || hms(167, w.time);  // RFC 8536 allows -167..167 hours
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

Result<ZoneRules::Posix> ZoneRules::parse_posix(std::string_view rule) {
  PosixText p(rule);
  Posix out;
  const auto invalid = [&] { return bad("invalid POSIX TZ rule \"" + std::string(rule) + "\""); };
  int64_t west = 0;
  if (!p.name() || !p.hms(24, west)) return invalid();
  out.std_offset = -west;  // POSIX counts hours west of Greenwich
  if (p.done()) return out;
  if (!p.name()) return invalid();
  int64_t dst = out.std_offset + 3600;
  if (p.peek() != ',' && !p.done()) {
    if (!p.hms(24, west)) return invalid();
    dst = -west;
  }
  out.dst_offset = dst;
  // Without dates the rule is the implementation's; TZif footers always give them.
  if (!p.eat(',') || !p.when(out.start) || !p.eat(',') || !p.when(out.end) || !p.done()) return invalid();
  return out;
}

Result<ZoneRules> ZoneRules::parse(std::string_view tzif) {
  Bytes b(tzif);
  Counts c{};
  char version = 0;
  if (!read_header(b, c, &version)) return bad("not a TZif file");
  const bool wide = version >= '2';
  if (wide) {
    // Skip the 32-bit block: its twin follows with 64-bit times.
    const size_t v1 = size_t{c.time} * 5 + size_t{c.type} * 6 + c.chars + size_t{c.leap} * 8 + c.isstd + c.isut;
    if (!b.has(v1)) return bad("TZif file cut short");
    b.skip(v1);
    if (!read_header(b, c, &version)) return bad("TZif file without its 64-bit header");
  }
  if (c.type == 0 || c.type > 256 || c.chars == 0) return bad("TZif file without time types");
  if (c.leap != 0) return bad("TZif file with leap seconds (\"right/\" zones are not supported)");
  const size_t time_bytes = wide ? 8 : 4;
  const size_t block = size_t{c.time} * (time_bytes + 1) + size_t{c.type} * 6 + c.chars + c.isstd + c.isut;
  if (!b.has(block)) return bad("TZif file cut short");
  ZoneRules z;
  z.times_.reserve(c.time);
  for (uint32_t i = 0; i < c.time; ++i) {
    z.times_.push_back(wide ? b.i64() : b.i32());
    if (i > 0 && z.times_[i] <= z.times_[i - 1]) return bad("TZif transitions out of order");
  }
  std::vector<uint8_t> index(c.time);
  for (uint8_t& i : index) {
    i = b.u8();
    if (i >= c.type) return bad("TZif transition names a time type that does not exist");
  }
  std::vector<int64_t> type_offset(c.type);
  for (int64_t& off : type_offset) {
    off = b.i32();
    b.skip(2);  // isdst, abbreviation index
    if (off <= -kDay || off >= kDay) return bad("TZif offset out of range");
  }
  b.skip(size_t{c.chars} + c.isstd + c.isut);
  for (uint8_t i : index) z.offsets_.push_back(type_offset[i]);
  z.initial_offset_ = type_offset[0];
  if (wide) {
    // The footer: "\n" rule "\n"; an empty rule says nothing about later times.
    std::string_view rest = b.rest();
    if (rest.size() < 2 || rest.front() != '\n') return bad("TZif footer missing");
    rest.remove_prefix(1);
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return bad("TZif footer missing");
    if (nl > 0) {
      auto rule = parse_posix(rest.substr(0, nl));
      if (!rule) return tl::unexpected(rule.error());
      z.rule_ = *rule;
    }
  }
  return z;
}

std::vector<std::pair<int64_t, int64_t>> ZoneRules::rule_changes(int y) const {
  const Posix& r = *rule_;
  // Each change is at a local time of the offset in force before it.
  const int64_t into_dst = rule_day(r.start, y) * kDay + r.start.time - r.std_offset;
  const int64_t out_of_dst = rule_day(r.end, y) * kDay + r.end.time - *r.dst_offset;
  std::vector<std::pair<int64_t, int64_t>> out{{into_dst, *r.dst_offset}, {out_of_dst, r.std_offset}};
  std::sort(out.begin(), out.end());
  return out;
}

ZoneSpan ZoneRules::at(SysSeconds t) const {
  const int64_t s = t.time_since_epoch().count();
  const auto span = [](int64_t begin, int64_t end, int64_t offset) {
    return ZoneSpan{SysSeconds(seconds(begin)), SysSeconds(seconds(end)), seconds(offset)};
  };
  if (rule_ && (times_.empty() || s >= times_.back())) {
    const int64_t floor = times_.empty() ? kMinTime : times_.back();
    if (!rule_->dst_offset) return span(floor, kMaxTime, rule_->std_offset);
    const int y = static_cast<int>(
        date::year_month_day(date::sys_days(date::days(floor_div(s + rule_->std_offset, kDay)))).year());
    std::vector<std::pair<int64_t, int64_t>> changes;
    for (int year = y - 2; year <= y + 1; ++year)
      for (const auto& c : rule_changes(year)) changes.push_back(c);
    std::sort(changes.begin(), changes.end());
    const auto next = std::upper_bound(changes.begin(), changes.end(), std::make_pair(s, kMaxTime));
    const int64_t end = next == changes.end() ? kMaxTime : next->first;
    if (next == changes.begin()) return span(floor, end, rule_->std_offset);
    const auto& [begin, offset] = *std::prev(next);
    return span(std::max(begin, floor), end, offset);
  }
  const auto after = std::upper_bound(times_.begin(), times_.end(), s);
  const int64_t end = after == times_.end() ? kMaxTime : *after;
  if (after == times_.begin()) return span(kMinTime, end, initial_offset_);
  const size_t i = static_cast<size_t>(after - times_.begin()) - 1;
  return span(times_[i], end, offsets_[i]);
}

LocalSpans ZoneRules::at_local(LocalSeconds t) const {
  const int64_t l = t.time_since_epoch().count();
  // Offsets stay within a day of UTC: every span whose local range could
  // hold `l` begins before l + 1 day and ends after l - 1 day.
  LocalSpans out;
  int found = 0;
  std::optional<ZoneSpan> prev;
  ZoneSpan span = at(SysSeconds(seconds(l - kDay)));
  for (int guard = 0; guard < 64; ++guard) {
    const int64_t off = span.offset.count();
    const int64_t local_begin = span.begin.time_since_epoch().count() + off;
    const int64_t local_end = span.end.time_since_epoch().count() + off;
    if (local_begin <= l && l < local_end) {
      (found == 0 ? out.first : out.second) = span;
      ++found;
    } else if (found == 0 && prev && local_begin > l &&
               prev->end.time_since_epoch().count() + prev->offset.count() <= l) {
      out.result = LocalSpans::nonexistent;
      out.first = *prev;
      out.second = span;
      return out;
    }
    if (span.end.time_since_epoch().count() >= kMaxTime || span.begin.time_since_epoch().count() > l + kDay) break;
    prev = span;
    span = at(span.end);
  }
  out.result = found >= 2 ? LocalSpans::ambiguous : LocalSpans::unique;
  if (found == 0) out.first = at(SysSeconds(seconds(l)));  // unreachable for a well-formed zone
  return out;
}

}  // namespace cronkeep::cron
