#include <date/tz.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "cron/cron.h"

namespace cronkeep::cron {
namespace {

using namespace std::chrono_literals;

TimePoint utc(const char* text) {
  auto t = parse_rfc3339(text);
  EXPECT_TRUE(t) << text;
  return *t;
}

Zone zone(const char* name) { return *Zone::locate(name); }

std::string next(const char* expr, const char* after, const char* tz = "UTC") {
  auto s = Schedule::parse(expr);
  EXPECT_TRUE(s) << expr << ": " << (s ? "" : s.error().message);
  if (!s) return "parse error";
  auto n = s->next_fire(utc(after), zone(tz));
  return n ? format_rfc3339(*n) : "never";
}

TEST(CronParse, AcceptsTheDocumentedSyntax) {
  for (const char* ok : {"* * * * *", "*/15 * * * *", "0 4 * * *", "0 0 1 jan *", "0 9-17/2 * * mon-fri",
                         "5,10,15 * * * *", "0 0 * * 7", "0 0 * * sun,SAT", "30 */2 1-15 * *", "0 0 29 2 *",
                         "*/10 * * * * *", "0 0 12 * * ?", "5/15 * * * *", "@hourly", "@daily", "@midnight",
                         "@weekly", "@monthly", "@yearly", "@annually", "@every 10s", "@every 1h30m", "  0 4 * * *  "})
    EXPECT_TRUE(Schedule::parse(ok)) << ok << ": " << Schedule::parse(ok).error().message;
}

struct Bad {
  const char* expr;
  const char* fragment;
};

TEST(CronParse, RefusesBadExpressionsNamingTheField) {
  const Bad bad[] = {
      {"", "empty"},
      {"* * * *", "expected 5 fields"},
      {"* * * * * * *", "expected 5 fields"},
      {"61 * * * *", "minute field \"61\": value 61 out of range 0-59"},
      {"* 24 * * *", "hour field"},
      {"* * 0 * *", "day-of-month field"},
      {"* * * 13 *", "month field"},
      {"* * * * 8", "day-of-week field"},
      {"* * * foo *", "unknown name \"foo\""},
      {"*/0 * * * *", "step must be at least 1"},
      {"10-5 * * * *", "runs backwards"},
      {"1,,2 * * * *", "empty list item"},
      {"a * * * *", "is not a number"},
      {"0 0 30 2 *", "never fires"},
      {"0 0 31 4,6,9,11 *", "never fires"},
      {"@sometimes", "unknown macro"},
      {"@every", "@every"},
      {"@every 500ms", "at least 1s"},
      {"@every -5s", "@every"},
  };
  for (const Bad& b : bad) {
    auto s = Schedule::parse(b.expr);
    ASSERT_FALSE(s) << b.expr;
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(s.error().message.find(b.fragment), std::string::npos) << b.expr << ": " << s.error().message;
  }
}

TEST(CronParse, UnknownZonesAreRefusedByName) {
  auto z = Zone::locate("Mars/Olympus");
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().message.find("Mars/Olympus"), std::string::npos);
  EXPECT_EQ(Zone::utc().name(), "UTC");
}

TEST(CronNext, FindsTheNextMatchInUtc) {
  EXPECT_EQ(next("0 4 * * *", "2026-11-23T04:00:00Z"), "2026-11-24T04:00:00Z");
  EXPECT_EQ(next("0 4 * * *", "2026-11-23T03:59:59Z"), "2026-11-23T04:00:00Z");
  EXPECT_EQ(next("*/15 * * * *", "2026-11-23T04:07:00Z"), "2026-11-23T04:15:00Z");
  EXPECT_EQ(next("0 0 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
  EXPECT_EQ(next("0 9 * * mon", "2026-11-23T09:00:00Z"), "2026-11-30T09:00:00Z");  // the 23rd is a Monday
  EXPECT_EQ(next("*/10 * * * * *", "2026-11-23T04:00:05Z"), "2026-11-23T04:00:10Z");
  EXPECT_EQ(next("@hourly", "2026-12-31T23:30:00Z"), "2027-01-01T00:00:00Z");
  EXPECT_EQ(next("@every 10s", "2026-11-23T04:00:05.500Z"), "2026-11-23T04:00:10Z");
  EXPECT_EQ(next("@every 10s", "2026-11-23T04:00:10Z"), "2026-11-23T04:00:20Z");
}

TEST(CronNext, BothDayFieldsRestrictedMatchEitherLikeVixieCron) {
  // The 13th, or any Friday.
  EXPECT_EQ(next("0 0 13 * fri", "2026-11-01T00:00:00Z"), "2026-11-06T00:00:00Z");
  EXPECT_EQ(next("0 0 13 * fri", "2026-11-07T00:00:00Z"), "2026-11-13T00:00:00Z");
  // A star-step in day-of-month is unrestricted: only Fridays count.
  EXPECT_EQ(next("0 0 */1 * fri", "2026-11-07T00:00:00Z"), "2026-11-13T00:00:00Z");
}

TEST(CronNext, FollowsTheTaskTimeZone) {
  // 04:00 in Berlin is 03:00 UTC in winter, 02:00 in summer.
  EXPECT_EQ(next("0 4 * * *", "2026-11-23T04:00:00Z", "Europe/Berlin"), "2026-11-24T03:00:00Z");
  EXPECT_EQ(next("0 4 * * *", "2026-07-01T00:00:00Z", "Europe/Berlin"), "2026-07-01T02:00:00Z");
}

TEST(CronNext, SkipsNonexistentLocalTimeOnSpringForwardToTheEndOfTheGap) {
  // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
  EXPECT_EQ(next("30 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin"), "2026-03-29T01:00:00Z");
  EXPECT_EQ(next("30 2 * * *", "2026-03-29T01:00:00Z", "Europe/Berlin"), "2026-03-30T00:30:00Z");
  // Several fires swallowed by the gap fire once, at its end.
  EXPECT_EQ(next("*/15 2 * * *", "2026-03-29T00:59:00Z", "Europe/Berlin"), "2026-03-29T01:00:00Z");
  EXPECT_EQ(next("*/15 2,3 * * *", "2026-03-29T01:00:00Z", "Europe/Berlin"), "2026-03-29T01:15:00Z");
  // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
  EXPECT_EQ(next("30 2 * * *", "2026-03-08T05:00:00Z", "America/New_York"), "2026-03-08T07:00:00Z");
}

TEST(CronNext, RepeatedLocalTimeOnFallBackFiresOnceAtTheFirstOccurrence) {
  // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
  EXPECT_EQ(next("30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin"), "2026-10-25T00:30:00Z");
  EXPECT_EQ(next("30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin"), "2026-10-26T01:30:00Z");
  // Asked from inside the second pass, the repeated times are not fired again.
  EXPECT_EQ(next("*/20 2 * * *", "2026-10-25T01:10:00Z", "Europe/Berlin"), "2026-10-26T01:00:00Z");
  // Hourly keeps firing on every new local hour: 02:00 once, then 03:00.
  EXPECT_EQ(next("0 * * * *", "2026-10-25T00:00:00Z", "Europe/Berlin"), "2026-10-25T02:00:00Z");
}

// ---- property test against a brute-force reference ----

// Does local civil time `t` match the schedule's fields? Answered through
// next_fire on UTC (no DST), which the UTC cases below check against
// explicit enumeration first.
struct Fields {
  std::set<int> sec, min, hour, dom, mon, dow;
  bool dom_star, dow_star;
};

bool matches(const Fields& f, date::local_seconds t) {
  const auto day = std::chrono::floor<date::days>(t);
  const date::year_month_day ymd(day);
  const date::hh_mm_ss<std::chrono::seconds> tod(t - day);
  const int wd = static_cast<int>(date::weekday(day).c_encoding());
  const bool dom_ok = f.dom.count(static_cast<int>(static_cast<unsigned>(ymd.day())));
  const bool dow_ok = f.dow.count(wd);
  const bool day_ok = !f.dom_star && !f.dow_star ? (dom_ok || dow_ok) : (dom_ok && dow_ok);
  return day_ok && f.mon.count(static_cast<int>(static_cast<unsigned>(ymd.month()))) &&
         f.hour.count(static_cast<int>(tod.hours().count())) && f.min.count(static_cast<int>(tod.minutes().count())) &&
         f.sec.count(static_cast<int>(tod.seconds().count()));
}

// Steps through UTC instants one `step` at a time and applies the rules:
// fire at t if local(t) matches and is the first occurrence of that local
// time; at the first instant after a gap, fire if any skipped local time matched.
std::optional<date::sys_seconds> reference(const Fields& f, const date::time_zone* tz, date::sys_seconds after,
                                           std::chrono::seconds step, std::chrono::seconds horizon) {
  date::sys_seconds t = after;
  for (t += step; t <= after + horizon; t += step) {
    const auto local = tz->to_local(t);
    const auto prev_local = tz->to_local(t - step);
    if (local - prev_local > step) {  // a gap ends at t
      for (auto l = prev_local + step; l <= local; l += step)
        if (matches(f, l)) return t;
      continue;
    }
    if (!matches(f, local)) continue;
    // First occurrence: no earlier instant within 3 hours had the same local time.
    bool seen = false;
    for (auto back = t - step; back >= t - 3h; back -= step)
      if (tz->to_local(back) == local) {
        seen = true;
        break;
      }
    if (!seen) return t;
  }
  return std::nullopt;
}

// A random field over [lo, hi]; explicit values stay within [lo, hi], a
// star covers the whole [lo, star_hi] (day-of-month: explicit days stop at
// 28 so every expression can fire, "*" means every day).
std::string random_field(std::mt19937& rng, int lo, int hi, std::set<int>& values, bool& star, int dense,
                         int star_hi = -1) {
  if (star_hi < 0) star_hi = hi;
  auto pick = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); };
  star = false;
  const int kind = pick(0, 9);
  std::string text;
  if (kind < dense) {
    star = true;
    const int step = pick(0, 2) == 0 ? pick(2, std::max(2, (hi - lo) / 3)) : 1;
    text = step == 1 ? "*" : "*/" + std::to_string(step);
    for (int v = lo; v <= star_hi; v += step) values.insert(v);
  } else if (kind < dense + 2) {
    const int a = pick(lo, hi), b = pick(a, hi);
    const int step = pick(1, 3);
    text = std::to_string(a) + "-" + std::to_string(b) + (step > 1 ? "/" + std::to_string(step) : "");
    for (int v = a; v <= b; v += step) values.insert(v);
  } else {
    const int n = pick(1, 3);
    for (int i = 0; i < n; ++i) {
      const int v = pick(lo, hi);
      text += (i ? "," : "") + std::to_string(v);
      values.insert(v);
    }
  }
  return text;
}

void property_run(const char* tz_name, bool with_seconds, int iterations, uint32_t seed) {
  std::mt19937 rng(seed);
  const date::time_zone* tz = date::locate_zone(tz_name);
  const Zone z = zone(tz_name);
  auto pick = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); };
  // Instants around the 2025-2027 DST changes of both zones, and at random.
  const std::vector<const char*> anchors = {"2025-03-09T06:00:00Z", "2025-03-30T00:30:00Z", "2025-10-26T00:30:00Z",
                                            "2025-11-02T05:30:00Z", "2026-03-08T06:30:00Z", "2026-03-29T00:50:00Z",
                                            "2026-10-25T00:10:00Z", "2026-11-01T05:10:00Z", "2027-03-28T00:45:00Z",
                                            "2027-10-31T00:40:00Z", "2027-11-07T05:50:00Z", "2026-06-15T12:00:00Z"};
  int checked = 0, beyond = 0;
  for (int i = 0; i < iterations; ++i) {
    Fields f;
    bool unused;
    const std::string sec = with_seconds ? random_field(rng, 0, 59, f.sec, unused, 7) : (f.sec.insert(0), "");
    const std::string min = random_field(rng, 0, 59, f.min, unused, with_seconds ? 6 : 5);
    const std::string hour = random_field(rng, 0, 23, f.hour, unused, with_seconds ? 8 : 6);
    const std::string dom = random_field(rng, 1, 28, f.dom, f.dom_star, with_seconds ? 9 : 8, 31);
    const std::string mon = random_field(rng, 1, 12, f.mon, unused, with_seconds ? 10 : 9);
    const std::string dow = random_field(rng, 0, 6, f.dow, f.dow_star, with_seconds ? 9 : 8);
    const std::string expr = (with_seconds ? sec + " " : "") + min + " " + hour + " " + dom + " " + mon + " " + dow;
    auto s = Schedule::parse(expr);
    ASSERT_TRUE(s) << expr << ": " << s.error().message;
    date::sys_seconds after = std::chrono::floor<std::chrono::seconds>(
        utc(anchors[static_cast<size_t>(pick(0, static_cast<int>(anchors.size()) - 1))]));
    after += std::chrono::seconds(pick(-4 * 3600, 4 * 3600));
    const auto step = with_seconds ? 1s : 60s;
    if (!with_seconds) after = std::chrono::floor<std::chrono::minutes>(after);
    const auto horizon = with_seconds ? std::chrono::seconds(12 * 3600) : std::chrono::seconds(20 * 86400);
    const auto expected = reference(f, tz, after, step, horizon);
    const auto got = s->next_fire(TimePoint(after), z);
    ASSERT_TRUE(got) << expr;
    if (!expected) {
      ASSERT_GT(*got, TimePoint(after + horizon)) << expr << " after " << date::format("%FT%TZ", after) << " in " << tz_name;
      ++beyond;
      continue;
    }
    ASSERT_EQ(format_rfc3339(*got), date::format("%FT%TZ", *expected))
        << expr << " after " << date::format("%FT%TZ", after) << " in " << tz_name << " (seed " << seed << ")";
    ++checked;
  }
  // The generator favours dense expressions, so most answers lie within the
  // window (12 hours of seconds, 20 days of minutes).
  EXPECT_GT(checked, iterations * (with_seconds ? 4 : 7) / 10) << tz_name << ": too many answers beyond the reference window (" << beyond << ")";
}

TEST(CronNextProperty, MatchesBruteForceInUtc) { property_run("UTC", false, 1500, 1); }
TEST(CronNextProperty, MatchesBruteForceInBerlinAcrossDstChanges) { property_run("Europe/Berlin", false, 1500, 2); }
TEST(CronNextProperty, MatchesBruteForceInNewYorkAcrossDstChanges) { property_run("America/New_York", false, 1500, 3); }
TEST(CronNextProperty, MatchesBruteForceWithSecondsInBerlin) { property_run("Europe/Berlin", true, 400, 4); }
TEST(CronNextProperty, MatchesBruteForceWithSecondsInUtc) { property_run("UTC", true, 400, 5); }

}  // namespace
}  // namespace cronkeep::cron
