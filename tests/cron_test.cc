// tests/cron_test.cc: cron expressions and next fire times.
//
// Table-driven parser tests; known next fires in UTC and across DST changes
// in Europe/Berlin, America/New_York and Australia/Lord_Howe (30-minute
// DST); and a property test that compares next_fire with a brute-force
// reference over thousands of random expressions and instants.
#include "cron/cron.h"
#include "cron/zone_rules.h"

#include <date/date.h>
#include <date/tz.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace cronkeep::cron {
namespace {

using namespace std::chrono_literals;
using date::sys_seconds;
using std::chrono::seconds;

TimePoint at(const char* text) {
  const std::optional<TimePoint> t = parse_rfc3339(text);
  EXPECT_TRUE(t) << "bad instant in test: " << text;
  return t.value_or(TimePoint{});
}

Zone zone(const char* name) {
  Result<Zone> z = Zone::locate(name);
  EXPECT_TRUE(z) << name;
  return z ? *z : Zone::utc();
}

Schedule schedule(const std::string& expr) {
  Result<Schedule> s = Schedule::parse(expr);
  EXPECT_TRUE(s) << expr << ": " << (s ? "" : s.error().message);
  return s ? *s : *Schedule::parse("* * * * *");
}

std::string text(std::optional<TimePoint> t) { return t ? format_rfc3339(*t, true) : "none"; }

// The next `n` fires after `after`, as RFC 3339 to the second.
std::vector<std::string> fires(const char* expr, const char* after, const char* tz, int n) {
  const Schedule s = schedule(expr);
  const Zone z = zone(tz);
  std::vector<std::string> out;
  std::optional<TimePoint> t = at(after);
  for (int i = 0; i < n && t; ++i) {
    t = s.next_fire(*t, z);
    out.push_back(t ? format_rfc3339(*t) : "none");
  }
  return out;
}

std::string next(const char* expr, const char* after, const char* tz = "UTC") { return fires(expr, after, tz, 1)[0]; }

using Fires = std::vector<std::string>;

// ---------------------------------------------------------------- parsing

TEST(CronParse, AcceptsEveryDocumentedForm) {
  const char* const valid[] = {
      "* * * * *",
      "*/15 * * * *",
      "0 4 * * *",
      "0 0 1 jan *",
      "0 9-17/2 * * mon-fri",
      "5,10,15 * * * *",
      "0 0 * * 7",
      "0 0 * * sun,SAT",
      "30 */2 1-15 * *",
      "0 0 29 2 *",
      "*/10 * * * * *",
      "0 0 12 * * ?",
      "5/15 * * * *",
      "0 0 * JAN-Mar,oct *",
      "0 0 * * 5-7",
      "0-59/59 * * * *",
      "0 22 * * 1-5",
      "0 0 31 1,3 *",
      "0 0 30 2,4 *",
      "59 59 23 31 12 *",
      "1-30/5 * * * *",
      "0 12 * * *",
      "@hourly",
      "@daily",
      "@midnight",
      "@weekly",
      "@monthly",
      "@yearly",
      "@annually",
      "@DAILY",
      "@every 10s",
      "@every 1h30m",
      "@every 1s",
      "@every 1.5s",
      "@EVERY 2d",
      "  0 4 * * *  ",
      "0\t4\t*\t*\t*",
  };
  for (const char* expr : valid) {
    Result<Schedule> s = Schedule::parse(expr);
    ASSERT_TRUE(s) << expr << ": " << s.error().message;
    EXPECT_EQ(s->text(), expr);
  }
}

struct Invalid {
  const char* expr;
  const char* fragment;  // must appear in the error message
};

TEST(CronParse, RefusesInvalidExpressionsNamingTheFieldAndText) {
  const Invalid invalid[] = {
      {"", "empty cron expression"},
      {"   ", "empty cron expression"},
      {"* * * *", "expected 5 fields"},
      {"* * * *", "got 4"},
      {"* * * * * * *", "got 7"},
      {"61 * * * *", "minute field \"61\": value 61 out of range 0-59"},
      {"60 * * * * *", "second field \"60\": value 60 out of range 0-59"},
      {"0 60 * * * *", "minute field \"60\": value 60 out of range 0-59"},
      {"* 24 * * *", "hour field \"24\": value 24 out of range 0-23"},
      {"* * 0 * *", "day-of-month field \"0\": value 0 out of range 1-31"},
      {"* * 32 * *", "day-of-month field \"32\": value 32 out of range 1-31"},
      {"* * * 13 *", "month field \"13\": value 13 out of range 1-12"},
      {"* * * 0 *", "month field \"0\": value 0 out of range 1-12"},
      {"* * * * 8", "day-of-week field \"8\": value 8 out of range 0-7"},
      {"1,2,99 * * * *", "minute field \"1,2,99\": value 99 out of range 0-59"},
      {"99999999999 * * * *", "out of range 0-59"},
      {"* * * foo *", "month field \"foo\": unknown name \"foo\" (expected jan..dec)"},
      {"* * * * funday", "day-of-week field \"funday\": unknown name \"funday\" (expected sun..sat)"},
      {"* * * * monday", "unknown name \"monday\""},
      {"* * * mon *", "unknown name \"mon\""},
      {"* * * * jan", "unknown name \"jan\""},
      {"jan * * * *", "minute field \"jan\": \"jan\" is not a number"},
      {"1x * * * *", "minute field \"1x\": \"1x\" is not a number"},
      {"*/0 * * * *", "minute field \"*/0\": bad step 0"},
      {"1-30/0 * * * *", "bad step 0"},
      {"*/ * * * *", "missing step"},
      {"*/x * * * *", "bad step \"x\""},
      {"*/-1 * * * *", "bad step \"-1\""},
      {"*/61 * * * *", "bad step 61: larger than the field's range 0-59"},
      {"*/90 * * * *", "@every"},
      {"1/2/3 * * * *", "bad step \"2/3\""},
      {"/5 * * * *", "missing range before \"/\""},
      {"30-10 * * * *", "minute field \"30-10\": reversed range 30-10"},
      {"* * * dec-jan *", "month field \"dec-jan\": reversed range dec-jan"},
      {"* * * * sat-sun", "reversed range sat-sun"},
      {"-5 * * * *", "missing start of range"},
      {"5- * * * *", "missing end of range"},
      {"1-2-3 * * * *", "\"2-3\" is not a number"},
      {"1,,2 * * * *", "minute field \"1,,2\": empty item in list"},
      {"1, * * * *", "empty item in list"},
      {",1 * * * *", "empty item in list"},
      {"0 0 30 2 *", "never fires: February has no day 30"},
      {"0 0 30,31 feb *", "never fires: February has no day 30 or 31"},
      {"0 0 31 4,6,9,11 *", "never fires: April, June, September and November have no day 31"},
      {"0 0 0 31 2,4 *", "never fires: February and April have no day 31"},
      {"0 0 L * *", "\"L\": L, W and # (Quartz extensions) are not supported"},
      {"0 0 15W * *", "are not supported"},
      {"0 0 * * 5L", "are not supported"},
      {"0 0 * * 1#2", "are not supported"},
      {"@sometimes", "unknown macro \"@sometimes\""},
      {"@every", "@every needs a duration"},
      {"@every   ", "@every needs a duration"},
      {"@every10s", "unknown macro \"@every10s\""},
      {"@every 500ms", "@every \"500ms\": the interval must be at least 1s"},
      {"@every 0", "at least 1s"},
      {"@every -5s", "must not be negative"},
      {"@every 10 parsecs", "@every: invalid duration"},
      {"@every ten", "@every: invalid duration"},
      {"@daily 4", "unexpected text after @daily: \"4\""},
      {"@hourly *", "unexpected text after @hourly"},
  };
  for (const Invalid& c : invalid) {
    Result<Schedule> s = Schedule::parse(c.expr);
    ASSERT_FALSE(s) << "accepted: \"" << c.expr << "\"";
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument) << c.expr;
    EXPECT_NE(s.error().message.find(c.fragment), std::string::npos)
        << "\"" << c.expr << "\" gave: " << s.error().message << "\nexpected it to contain: " << c.fragment;
  }
}

TEST(CronParse, AcceptsFebruaryTwentyNinthBecauseLeapYearsExist) {
  EXPECT_EQ(next("0 0 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
  EXPECT_EQ(next("0 0 29-31 2,4 *", "2026-03-01T00:00:00Z"), "2026-04-29T00:00:00Z");
  // A restricted day-of-week can always fire, whatever day-of-month says (OR).
  EXPECT_EQ(next("0 0 30 2 mon", "2026-02-01T00:00:00Z"), "2026-02-02T00:00:00Z");
}

struct Same {
  const char* a;
  const char* b;
};

TEST(CronParse, SpellingsOfTheSameScheduleFireAlike) {
  const Same same[] = {
      {"0 0 * JAN-mar Mon-FRI", "0 0 * 1-3 1-5"},
      {"0 0 * * 7", "0 0 * * 0"},
      {"0 0 * * sun", "0 0 * * 0"},
      {"0 0 * * 5-7", "0 0 * * 0,5,6"},
      {"0 0 * * 0-7", "0 0 * * 0-6"},
      {"5/15 * * * *", "5,20,35,50 * * * *"},
      {"1-30/5 * * * *", "1,6,11,16,21,26 * * * *"},
      {"*/20 * * * *", "0,20,40 * * * *"},
      {"0 */7 * * *", "0 0,7,14,21 * * *"},
      {"0 0 * * */2", "0 0 * * 0,2,4,6"},
      {"0 0 * * 1/2", "0 0 * * 1,3,5"},
      {"0 0 1 */5 *", "0 0 1 1,6,11 *"},
      {"30 4 * * *", "0 30 4 * * *"},
      {"@hourly", "0 * * * *"},
      {"@daily", "0 0 * * *"},
      {"@midnight", "0 0 * * *"},
      {"@weekly", "0 0 * * 0"},
      {"@monthly", "0 0 1 * *"},
      {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"},
      {"@every 1m", "* * * * *"},
      {"@every 1s", "* * * * * *"},
  };
  const Zone berlin = zone("Europe/Berlin");
  for (const Same& c : same) {
    const Schedule a = schedule(c.a);
    const Schedule b = schedule(c.b);
    for (const Zone& z : {Zone::utc(), berlin}) {
      std::optional<TimePoint> ta = at("2026-01-01T00:00:00Z");
      std::optional<TimePoint> tb = ta;
      for (int i = 0; i < 40 && ta && tb; ++i) {
        ta = a.next_fire(*ta, z);
        tb = b.next_fire(*tb, z);
        ASSERT_EQ(text(ta), text(tb)) << c.a << " vs " << c.b << " in " << z.name() << ", fire " << i;
      }
    }
  }
}

TEST(CronParse, SurvivesMangledTextAndWhatItAcceptsAlwaysFires) {
  // A small fuzz: valid expressions with random characters replaced,
  // inserted or deleted. parse() must not crash; whatever it accepts must
  // fire after the start, in UTC and in a DST zone.
  static const char kAlphabet[] = "0123456789*/-,? @abcdefjmnorstuvwyADJMSW";
  static const char* const kSeeds[] = {
      "*/5 1-3 * * *", "0 0 29 2 *", "15,45 2 * 3,10 sun", "0 */2 1-15 * mon-fri", "*/10 * * * * *",
      "@every 90s",    "@daily",     "0 0 1 jan,jul *"};
  std::mt19937 rng(7);
  auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const Zone berlin = zone("Europe/Berlin");
  const TimePoint start = at("2026-10-25T00:30:00Z");
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string expr = kSeeds[pick(std::size(kSeeds))];
    for (size_t edits = 1 + pick(3); edits > 0; --edits) {
      const char c = kAlphabet[pick(sizeof kAlphabet - 1)];
      const size_t pos = pick(expr.size() + 1);
      switch (pick(3)) {
        case 0:
          expr.insert(pos, 1, c);
          break;
        case 1:
          if (pos < expr.size()) expr[pos] = c;
          break;
        default:
          if (pos < expr.size()) expr.erase(pos, 1);
      }
    }
    const Result<Schedule> s = Schedule::parse(expr);
    if (!s) {
      EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
      EXPECT_FALSE(s.error().message.empty());
      continue;
    }
    ++accepted;
    for (const Zone& z : {Zone::utc(), berlin}) {
      const std::optional<TimePoint> n = s->next_fire(start, z);
      ASSERT_TRUE(n) << "\"" << expr << "\" in " << z.name();
      EXPECT_GT(*n, start) << expr;
    }
  }
  EXPECT_GT(accepted, 1000);
}

TEST(CronZone, LocatesIanaZonesByName) {
  for (const char* name : {"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"}) {
    Result<Zone> z = Zone::locate(name);
    ASSERT_TRUE(z) << name << ": " << z.error().message;
    EXPECT_EQ(z->name(), name);
    EXPECT_EQ(z->rules() == nullptr, std::string(name) == "UTC") << name;  // UTC needs no rules
  }
}

TEST(CronZone, RefusesUnknownZonesNamingThem) {
  for (const char* name : {"Mars/Olympus_Mons", "", "Europe/berlin ", "../../etc/passwd"}) {
    Result<Zone> z = Zone::locate(name);
    ASSERT_FALSE(z) << name;
    EXPECT_EQ(z.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(z.error().message.find("unknown time zone \"" + std::string(name) + "\""), std::string::npos)
        << z.error().message;
  }
}

TEST(CronZone, UtcNeverFails) {
  const Zone z = Zone::utc();
  EXPECT_EQ(z.name(), "UTC");
  EXPECT_EQ(next("0 4 * * *", "2026-07-01T00:00:00Z"), "2026-07-01T04:00:00Z");
}

// ---------------------------------------------------------------- next fire

struct Known {
  const char* expr;
  const char* after;
  const char* tz;
  const char* expected;
};

void check_known(const std::vector<Known>& table) {
  for (const Known& k : table)
    EXPECT_EQ(next(k.expr, k.after, k.tz), k.expected) << k.expr << " after " << k.after << " in " << k.tz;
}

TEST(CronNext, FindsTheNextMatchInUtc) {
  check_known({
      {"0 4 * * *", "2026-11-23T04:00:00Z", "UTC", "2026-11-24T04:00:00Z"},
      {"0 4 * * *", "2026-11-23T03:59:59.999Z", "UTC", "2026-11-23T04:00:00Z"},
      {"0 4 * * *", "2026-11-23T04:00:00.001Z", "UTC", "2026-11-24T04:00:00Z"},
      {"*/15 * * * *", "2026-11-23T04:07:00Z", "UTC", "2026-11-23T04:15:00Z"},
      {"*/15 * * * *", "2026-11-23T23:59:00Z", "UTC", "2026-11-24T00:00:00Z"},
      {"0 9 * * mon", "2026-11-23T09:00:00Z", "UTC", "2026-11-30T09:00:00Z"},  // the 23rd is a Monday
      {"0 9 * * 1-5", "2026-11-27T10:00:00Z", "UTC", "2026-11-30T09:00:00Z"},  // Friday → Monday
      {"*/10 * * * * *", "2026-11-23T04:00:05Z", "UTC", "2026-11-23T04:00:10Z"},
      {"59 59 23 31 12 *", "2026-01-01T00:00:00Z", "UTC", "2026-12-31T23:59:59Z"},
      {"0 0 31 * *", "2026-04-01T00:00:00Z", "UTC", "2026-05-31T00:00:00Z"},
      {"0 0 1 1 *", "2026-01-01T00:00:00Z", "UTC", "2027-01-01T00:00:00Z"},
      {"0 12 * 2 *", "2026-02-28T12:00:00Z", "UTC", "2027-02-01T12:00:00Z"},
      {"@hourly", "2026-12-31T23:30:00Z", "UTC", "2027-01-01T00:00:00Z"},
      {"@weekly", "2026-11-23T00:00:00Z", "UTC", "2026-11-29T00:00:00Z"},
      {"@monthly", "2026-11-23T00:00:00Z", "UTC", "2026-12-01T00:00:00Z"},
      {"@yearly", "2026-11-23T00:00:00Z", "UTC", "2027-01-01T00:00:00Z"},
      {"0 0 * * *", "1969-12-31T12:00:00Z", "UTC", "1970-01-01T00:00:00Z"},
      {"0 0 29 2 *", "2096-03-01T00:00:00Z", "UTC", "2104-02-29T00:00:00Z"},  // 2100 is no leap year
      {"0 0 1 1 */7", "2027-01-02T00:00:00Z", "UTC", "2034-01-01T00:00:00Z"},  // January 1 on a Sunday
      {"0 0 */31 2 mon", "2027-02-02T00:00:00Z", "UTC", "2038-02-01T00:00:00Z"},
      {"0 0 29 2 */3", "2026-01-01T00:00:00Z", "UTC", "2032-02-29T00:00:00Z"},
  });
}

TEST(CronNext, EveryFiresAtMultiplesOfTheIntervalSinceTheEpochInAnyZone) {
  check_known({
      {"@every 10s", "2026-11-23T04:00:05.500Z", "UTC", "2026-11-23T04:00:10Z"},
      {"@every 10s", "2026-11-23T04:00:10Z", "UTC", "2026-11-23T04:00:20Z"},
      {"@every 1h", "2026-11-23T04:00:00Z", "Europe/Berlin", "2026-11-23T05:00:00Z"},
      {"@every 1d", "2026-11-23T04:00:00Z", "America/New_York", "2026-11-24T00:00:00Z"},
      {"@every 7m", "1970-01-01T00:00:00Z", "UTC", "1970-01-01T00:07:00Z"},
      {"@every 7m", "1969-12-31T23:59:00Z", "UTC", "1970-01-01T00:00:00Z"},
      {"@every 7m", "1969-12-31T23:52:59Z", "UTC", "1969-12-31T23:53:00Z"},
      {"@every 1h", "2026-10-25T00:30:00Z", "Europe/Berlin", "2026-10-25T01:00:00Z"},  // DST does not matter
  });
  EXPECT_EQ(fires("@every 1.5s", "2026-11-23T00:00:00Z", "UTC", 2),
            Fires({"2026-11-23T00:00:01Z", "2026-11-23T00:00:03Z"}));  // seconds shown, ms dropped
  const Schedule s = schedule("@every 1.5s");
  EXPECT_EQ(text(s.next_fire(at("2026-11-23T00:00:00Z"), Zone::utc())), "2026-11-23T00:00:01.500Z");
}

TEST(CronNext, IsStrictlyAfterTheGivenInstant) {
  const Schedule s = schedule("* * * * * *");
  const TimePoint t = at("2026-11-23T04:00:00Z");
  EXPECT_EQ(text(s.next_fire(t, Zone::utc())), "2026-11-23T04:00:01.000Z");
  EXPECT_EQ(text(s.next_fire(t - Millis(1), Zone::utc())), "2026-11-23T04:00:00.000Z");
  EXPECT_EQ(text(s.next_fire(t + Millis(999), Zone::utc())), "2026-11-23T04:00:01.000Z");
}

TEST(CronNext, BothDayFieldsRestrictedMatchEitherLikeVixieCron) {
  check_known({
      // The 13th, or any Friday.
      {"0 0 13 * fri", "2026-11-01T00:00:00Z", "UTC", "2026-11-06T00:00:00Z"},
      {"0 0 13 * fri", "2026-11-07T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      {"0 0 13 * fri", "2026-11-13T00:00:00Z", "UTC", "2026-11-20T00:00:00Z"},
      {"0 0 1,15 * 3", "2026-11-23T00:00:00Z", "UTC", "2026-11-25T00:00:00Z"},
      {"0 0 1,15 * 3", "2026-11-25T00:00:00Z", "UTC", "2026-12-01T00:00:00Z"},
  });
}

TEST(CronNext, DayOfMonthStartingWithStarIsUnrestrictedLikeVixieCron) {
  check_known({
      // "*/2" counts as "*": odd days that are Fridays (AND), not odd days or Fridays.
      {"0 0 */2 * fri", "2026-11-01T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      {"0 0 * * fri", "2026-11-07T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      // Restricted day-of-month with "*" day-of-week: day-of-month alone.
      {"0 0 13 * *", "2026-11-01T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      // "*/1" and "?" in day-of-week are unrestricted too.
      {"0 0 13 * */1", "2026-11-01T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      {"0 0 13 * ?", "2026-11-01T00:00:00Z", "UTC", "2026-11-13T00:00:00Z"},
      // "1-31" does not start with "*": restricted, so ORed with Fridays: every day.
      {"0 0 1-31 * fri", "2026-11-23T00:00:00Z", "UTC", "2026-11-24T00:00:00Z"},
  });
}

TEST(CronNext, FollowsTheZonesOffset) {
  check_known({
      // 04:00 in Berlin is 03:00 UTC in winter, 02:00 in summer.
      {"0 4 * * *", "2026-11-23T04:00:00Z", "Europe/Berlin", "2026-11-24T03:00:00Z"},
      {"0 4 * * *", "2026-07-01T00:00:00Z", "Europe/Berlin", "2026-07-01T02:00:00Z"},
      {"0 4 * * *", "2026-07-01T00:00:00Z", "America/New_York", "2026-07-01T08:00:00Z"},
      {"0 4 * * *", "2026-07-01T00:00:00Z", "Asia/Kolkata", "2026-07-01T22:30:00Z"},
      // Day and weekday are local too: Monday 00:30 in Berlin is Sunday 23:30 UTC in winter.
      {"30 0 * * mon", "2026-11-20T00:00:00Z", "Europe/Berlin", "2026-11-22T23:30:00Z"},
      {"0 0 1 * *", "2026-11-15T00:00:00Z", "America/New_York", "2026-12-01T05:00:00Z"},
  });
}

// Europe/Berlin, 2026-03-29: at 02:00 CET (01:00 UTC) clocks jump to 03:00
// CEST; local 02:00-02:59:59 does not exist.
TEST(CronNext, SkipsNonexistentLocalTimeOnSpringForwardToTheEndOfTheGap) {
  check_known({
      {"30 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin", "2026-03-29T01:00:00Z"},
      {"30 2 * * *", "2026-03-29T00:59:59Z", "Europe/Berlin", "2026-03-29T01:00:00Z"},
      {"30 2 * * *", "2026-03-29T01:00:00Z", "Europe/Berlin", "2026-03-30T00:30:00Z"},
      {"0 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin", "2026-03-29T01:00:00Z"},
      {"59 59 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin", "2026-03-29T01:00:00Z"},
      // 03:00 exists and is what the gap ends at: one fire.
      {"0 3 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin", "2026-03-29T01:00:00Z"},
      {"0 3 * * *", "2026-03-29T01:00:00Z", "Europe/Berlin", "2026-03-30T01:00:00Z"},
      // New York, 2026-03-08: 02:00 EST (07:00 UTC) jumps to 03:00 EDT.
      {"30 2 * * *", "2026-03-08T05:00:00Z", "America/New_York", "2026-03-08T07:00:00Z"},
      {"30 2 * * *", "2026-03-08T07:00:00Z", "America/New_York", "2026-03-09T06:30:00Z"},
      {"30 2 8 3 *", "2026-03-01T00:00:00Z", "America/New_York", "2026-03-08T07:00:00Z"},
  });
}

TEST(CronNext, FiresOnceForSeveralLocalTimesSwallowedByTheGap) {
  EXPECT_EQ(fires("*/15 2 * * *", "2026-03-28T23:00:00Z", "Europe/Berlin", 3),
            Fires({"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z", "2026-03-30T00:15:00Z"}));
  EXPECT_EQ(fires("*/15 2,3 * * *", "2026-03-29T00:00:00Z", "Europe/Berlin", 4),
            Fires({"2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z", "2026-03-29T01:45:00Z"}));
  EXPECT_EQ(fires("* * * * *", "2026-03-08T06:58:00Z", "America/New_York", 3),
            Fires({"2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:01:00Z"}));
}

// Europe/Berlin, 2026-10-25: at 03:00 CEST (01:00 UTC) clocks go back to
// 02:00 CET; 02:30 happens at 00:30 UTC and again at 01:30 UTC.
TEST(CronNext, FiresRepeatedLocalTimeOnceAtItsFirstOccurrence) {
  check_known({
      {"30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin", "2026-10-25T00:30:00Z"},
      {"30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin", "2026-10-26T01:30:00Z"},
      // New York, 2026-11-01: 02:00 EDT (06:00 UTC) goes back to 01:00 EST.
      {"30 1 * * *", "2026-11-01T00:00:00Z", "America/New_York", "2026-11-01T05:30:00Z"},
      {"30 1 * * *", "2026-11-01T05:30:00Z", "America/New_York", "2026-11-02T06:30:00Z"},
  });
  EXPECT_EQ(fires("0 * * * *", "2026-10-24T23:30:00Z", "Europe/Berlin", 4),
            Fires({"2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z", "2026-10-25T04:00:00Z"}));
  EXPECT_EQ(fires("*/20 2 * * *", "2026-10-24T23:00:00Z", "Europe/Berlin", 4),
            Fires({"2026-10-25T00:00:00Z", "2026-10-25T00:20:00Z", "2026-10-25T00:40:00Z", "2026-10-26T01:00:00Z"}));
}

TEST(CronNext, DoesNotFireAgainWhenAskedFromInsideTheRepeatedHour) {
  check_known({
      // 01:10 UTC is 02:10 CET, the second pass.
      {"*/20 2 * * *", "2026-10-25T01:10:00Z", "Europe/Berlin", "2026-10-26T01:00:00Z"},
      {"* * * * *", "2026-10-25T01:10:00Z", "Europe/Berlin", "2026-10-25T02:00:00Z"},
      {"* * * * * *", "2026-10-25T01:59:59Z", "Europe/Berlin", "2026-10-25T02:00:00Z"},
      {"*/20 2,3 * * *", "2026-10-25T01:10:00Z", "Europe/Berlin", "2026-10-25T02:00:00Z"},
      // 00:50 UTC is 02:50 CEST, the first pass: the rest of it still fires.
      {"55 2 * * *", "2026-10-25T00:50:00Z", "Europe/Berlin", "2026-10-25T00:55:00Z"},
      {"5 2 * * *", "2026-10-25T00:50:00Z", "Europe/Berlin", "2026-10-26T01:05:00Z"},
      // At the very instant the clocks go back.
      {"0 2 * * *", "2026-10-25T01:00:00Z", "Europe/Berlin", "2026-10-26T01:00:00Z"},
      // New York: 06:30 UTC is 01:30 EST, the second pass.
      {"45 1 * * *", "2026-11-01T06:30:00Z", "America/New_York", "2026-11-02T06:45:00Z"},
      {"15 2 * * *", "2026-11-01T06:30:00Z", "America/New_York", "2026-11-01T07:15:00Z"},
  });
}

// Australia/Lord_Howe moves its clocks by 30 minutes: on 2026-10-04 02:00
// (+10:30, 2026-10-03T15:30Z) jumps to 02:30 (+11); on 2026-04-05 02:00
// (+11, 2026-04-04T15:00Z) goes back to 01:30 (+10:30).
TEST(CronNext, HandlesThirtyMinuteDstInLordHowe) {
  check_known({
      {"15 2 * * *", "2026-10-03T12:00:00Z", "Australia/Lord_Howe", "2026-10-03T15:30:00Z"},
      {"45 2 * * *", "2026-10-03T12:00:00Z", "Australia/Lord_Howe", "2026-10-03T15:45:00Z"},
      {"45 1 * * *", "2026-04-04T12:00:00Z", "Australia/Lord_Howe", "2026-04-04T14:45:00Z"},
      {"45 1 * * *", "2026-04-04T14:45:00Z", "Australia/Lord_Howe", "2026-04-05T15:15:00Z"},
      {"45 1 * * *", "2026-04-04T15:10:00Z", "Australia/Lord_Howe", "2026-04-05T15:15:00Z"},
  });
  EXPECT_EQ(fires("*/20 * * * *", "2026-04-04T14:30:00Z", "Australia/Lord_Howe", 3),
            Fires({"2026-04-04T14:40:00Z", "2026-04-04T15:30:00Z", "2026-04-04T15:50:00Z"}));
}

TEST(CronNext, ReturnsTheSameResultsFromManyThreads) {
  const Schedule s = schedule("*/7 1-3 * * *");
  const Zone berlin = zone("Europe/Berlin");
  std::vector<std::string> expected;
  std::optional<TimePoint> t = at("2026-10-20T00:00:00Z");
  for (int i = 0; i < 300 && t; ++i) expected.push_back(text(t = s.next_fire(*t, berlin)));
  std::vector<std::vector<std::string>> got(4);
  std::vector<std::thread> threads;
  for (auto& out : got)
    threads.emplace_back([&s, &out] {
      const Zone z = *Zone::locate("Europe/Berlin");
      std::optional<TimePoint> u = *parse_rfc3339("2026-10-20T00:00:00Z");
      for (int i = 0; i < 300 && u; ++i) out.push_back(format_rfc3339(*(u = s.next_fire(*u, z)), true));
    });
  for (std::thread& th : threads) th.join();
  for (const auto& out : got) EXPECT_EQ(out, expected);
}

TEST(CronNext, SparseSchedulesAreFoundWithoutSecondBySecondSearch) {
  // Each call walks at most a few thousand days, never seconds: these
  // sparse calls finish in well under a second even in debug builds.
  const auto start = std::chrono::steady_clock::now();
  const Zone berlin = zone("Europe/Berlin");
  for (const char* expr : {"59 59 23 29 2 *", "0 0 0 31 12 *", "0 0 */31 2 */1", "30 2 29 2 *"}) {
    const Schedule s = schedule(expr);
    std::optional<TimePoint> t = at("2026-01-01T00:00:00Z");
    for (int i = 0; i < 15 && t; ++i) t = s.next_fire(*t, berlin);
    EXPECT_TRUE(t) << expr;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// ------------------------------------------------ property test

// The reference knows an expression only through the value sets the
// generator wrote into it, never through the parser.
struct Spec {
  std::bitset<60> sec, min;
  std::bitset<24> hour;
  std::bitset<32> dom;
  std::bitset<13> mon;
  std::bitset<7> dow;
  bool dom_star = true;  // the field starts with "*" (Vixie cron: unrestricted)
  bool dow_star = true;
  bool six = false;     // has a seconds field: the reference steps by 1 s, else by 1 min
  int64_t every_s = 0;  // "@every" interval in whole seconds
};

bool day_ok(const Spec& s, unsigned mon, unsigned dom, unsigned wd) {
  if (!s.mon[mon]) return false;
  const bool d = s.dom[dom];
  const bool w = s.dow[wd];
  return !s.dom_star && !s.dow_star ? d || w : d && w;
}

// Decides whether a local civil time (seconds since the local epoch)
// matches; remembers the last day seen so that stepping through seconds
// stays cheap, also in unoptimised and sanitizer builds.
class Matcher {
 public:
  explicit Matcher(const Spec& s) : s_(s) {
    for (size_t i = 0; i < 24; ++i) hour_[i] = s.hour[i];
    for (size_t i = 0; i < 60; ++i) {
      min_[i] = s.min[i];
      sec_[i] = s.sec[i];
    }
  }
  bool operator()(int64_t secs) {
    const int64_t day = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    if (day != day_) {
      day_ = day;
      const date::local_days d{date::days(day)};
      const date::year_month_day ymd(d);
      day_ok_ = day_ok(s_, static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                       date::weekday(d).c_encoding());
    }
    if (!day_ok_) return false;
    const int64_t tod = secs - day_ * 86400;
    return hour_[tod / 3600] && min_[tod / 60 % 60] && sec_[tod % 60];
  }

 private:
  const Spec& s_;
  bool hour_[24] = {};
  bool min_[60] = {};
  bool sec_[60] = {};
  int64_t day_ = INT64_MIN;
  bool day_ok_ = false;
};

// Steps through UTC instants one `step` at a time, from the first one
// after `after` up to `end`, and applies the rules directly:
//   - fire at t when local(t) matches, unless local(t) already happened
//     (an offset decrease at the start of t's period, and local(t) before
//     the point the clocks were at when they went back);
//   - at the instant a gap ends, fire if any skipped local time matches.
// Local time is t plus the offset of the zone period holding t (asked of
// the zone whenever t leaves the period); arithmetic on plain seconds.
std::optional<sys_seconds> reference(const Spec& s, const date::time_zone* tz, TimePoint after, sys_seconds end_time,
                                     bool& from_gap) {
  from_gap = false;
  const int64_t end = end_time.time_since_epoch().count();
  const int64_t after_s = std::chrono::floor<seconds>(after).time_since_epoch().count();
  if (s.every_s > 0) {
    for (int64_t t = after_s + 1; t <= end; ++t)
      if (t % s.every_s == 0) return sys_seconds(seconds(t));
    return std::nullopt;
  }
  const int64_t step = s.six ? 1 : 60;
  const int64_t t0 = (after_s >= 0 ? after_s / step : (after_s - step + 1) / step) * step + step;
  Matcher match(s);
  date::sys_info info = tz->get_info(sys_seconds(seconds(t0 - step)));
  date::sys_info prev = tz->get_info(info.begin - 1s);
  int64_t period_end = info.end.time_since_epoch().count();
  int64_t period_begin = info.begin.time_since_epoch().count();
  int64_t offset = info.offset.count();
  int64_t prev_offset = prev.offset.count();
  for (int64_t t = t0; t <= end; t += step) {
    if (t >= period_end) {
      prev = info;
      info = tz->get_info(sys_seconds(seconds(t)));
      period_end = info.end.time_since_epoch().count();
      period_begin = info.begin.time_since_epoch().count();
      offset = info.offset.count();
      prev_offset = prev.offset.count();
      EXPECT_EQ(period_begin, t) << "transitions fall on whole minutes in the zones tested";
      if (offset > prev_offset)
        for (int64_t l = period_begin + prev_offset; l < period_begin + offset; l += step)
          if (match(l)) {
            from_gap = true;
            return sys_seconds(seconds(t));
          }
    }
    const int64_t local = t + offset;
    if (!match(local)) continue;
    const bool repeated = prev_offset > offset && local < period_begin + prev_offset;
    if (!repeated) return sys_seconds(seconds(t));
  }
  return std::nullopt;
}

// How a generated field looks: the odds of "*" and of "*/S", and for the
// other values the odds of drawing them from [center - before, center + after].
struct Shape {
  double star;
  double star_step;
  double near;
  int before;
  int after;
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <class T>
  const T& one_of(const std::vector<T>& v) {
    return v[static_cast<size_t>(pick(0, static_cast<int>(v.size()) - 1))];
  }

  // One field over [lo, hi]: "*", "*/S", or a list of values, ranges and
  // steps whose values mostly cluster around `center` (the local time the
  // search starts near), so that schedules fire within the reference's
  // window and hit the DST changes.
  template <size_t N>
  std::string field(int lo, int hi, const Shape& shape, int center, std::bitset<N>& bits, bool* starred, int kind) {
    const double roll = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (roll < shape.star + shape.star_step) {
      const int step = roll < shape.star ? 1 : pick(2, std::max(2, (hi - lo + 1) / 3));
      for (int v = lo; v <= hi; v += step) bits.set(static_cast<size_t>(v));
      if (starred) *starred = true;
      return step == 1 ? "*" : "*/" + std::to_string(step);
    }
    if (starred) *starred = false;
    std::string out;
    const int items = pick(1, 3);
    for (int i = 0; i < items; ++i) {
      if (i > 0) out += ",";
      const int a = chance(shape.near) ? std::clamp(center + pick(-shape.before, shape.after), lo, hi) : pick(lo, hi);
      switch (pick(0, 5)) {
        case 0:
        case 1:
        case 2:
          out += name(a, kind);
          bits.set(static_cast<size_t>(a));
          break;
        case 3: {  // a-b or a-b/s
          int b = std::min(hi, a + pick(0, std::max(1, (hi - lo) / 4)));
          const int s = chance(0.5) ? 1 : pick(1, hi - lo + 1);
          // Day-of-week: "N-7" includes Sunday.
          const bool to_seven = kind == 2 && b == hi && chance(0.5);
          out += name(a, kind, false) + "-" + (to_seven ? "7" : name(b, kind, false)) +
                 (s > 1 || chance(0.2) ? "/" + std::to_string(s) : "");
          if (to_seven) b = 7;
          for (int v = a; v <= b; v += s) bits.set(static_cast<size_t>(kind == 2 && v == 7 ? 0 : v));
          break;
        }
        case 4: {  // a/s: from a to the end
          const int s = pick(1, hi - lo + 1);
          out += name(a, kind, false) + "/" + std::to_string(s);
          for (int v = a; v <= hi; v += s) bits.set(static_cast<size_t>(v));
          break;
        }
        default: {  // a value near the centre, written plainly
          const int v = std::clamp(center + pick(-shape.before, shape.after), lo, hi);
          out += std::to_string(kind == 2 && v == 0 && chance(0.5) ? 7 : v);
          bits.set(static_cast<size_t>(v));
          break;
        }
      }
    }
    return out;
  }

 private:
  // kind: 0 plain, 1 month, 2 day-of-week.
  std::string name(int v, int kind, bool seven_ok = true) {
    static const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
    static const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    if (kind == 0 || chance(0.6)) return std::to_string(kind == 2 && v == 0 && seven_ok && chance(0.3) ? 7 : v);
    std::string n = kind == 1 ? kMonths[v - 1] : kDays[v];
    switch (pick(0, 2)) {
      case 0:
        break;
      case 1:
        n[0] = static_cast<char>(n[0] - 'a' + 'A');
        break;
      default:
        for (char& c : n) c = static_cast<char>(c - 'a' + 'A');
    }
    return n;
  }

  std::mt19937_64 rng_;
};

struct Case {
  std::string expr;
  Spec spec;
};

Case random_case(Generator& g, date::local_seconds center, bool six) {
  const date::local_days cday = std::chrono::floor<date::days>(center);
  const date::year_month_day ymd(cday);
  const date::hh_mm_ss<seconds> tod(center - cday);
  Case c;
  Spec& s = c.spec;
  s.six = six;
  if (g.chance(0.08)) {
    struct Macro {
      const char* text;
      const char* fields;
    };
    static const std::vector<Macro> kMacros = {
        {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
        {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}};
    static const std::vector<std::pair<const char*, int64_t>> kEvery = {
        {"@every 1s", 1},     {"@every 7s", 7},     {"@every 45s", 45},     {"@every 1m", 60},
        {"@every 90s", 90},   {"@every 1m30s", 90}, {"@every 17m", 1020},   {"@every 1h", 3600},
        {"@every 90m", 5400}, {"@every 1d", 86400}, {"@every 36h", 129600}, {"@every 1w", 604800}};
    if (g.chance(0.5)) {
      const auto& e = g.one_of(kEvery);
      c.expr = e.first;
      s.every_s = e.second;
      return c;
    }
    const Macro& m = g.one_of(kMacros);
    c.expr = m.text;
    s.six = false;
    // Written out by hand, independently of the parser's own table.
    const std::string f = m.fields;
    s.sec.set(0);
    s.min.set(0);
    if (f == "0 * * * *")
      s.hour.set();
    else
      s.hour.set(0);
    for (unsigned d = 1; d <= 31; ++d) s.dom.set(d, f != "0 0 1 * *" && f != "0 0 1 1 *" ? true : d == 1);
    for (unsigned m2 = 1; m2 <= 12; ++m2) s.mon.set(m2, f != "0 0 1 1 *" ? true : m2 == 1);
    if (f == "0 0 * * 0")
      s.dow.set(0);
    else
      s.dow.set();
    s.dom_star = f != "0 0 1 * *" && f != "0 0 1 1 *";
    s.dow_star = f != "0 0 * * 0";
    return c;
  }
  const int h = static_cast<int>(tod.hours().count());
  const int mi = static_cast<int>(tod.minutes().count());
  const int se = static_cast<int>(tod.seconds().count());
  // Seconds-stepping references look 8 days ahead, minute-stepping ones
  // 400 days: six-field schedules keep their days and months loose.
  const Shape kSec{0.4, 0.2, 0.3, 2, 2};
  const Shape kMin{0.3, 0.15, 0.6, 2, 2};
  const Shape kHour{0.3, 0.1, 0.75, 2, 2};
  const Shape kDom = six ? Shape{0.85, 0.03, 1.0, 0, 3} : Shape{0.65, 0.1, 0.6, 2, 5};
  const Shape kMon = six ? Shape{0.9, 0.0, 1.0, 0, 0} : Shape{0.65, 0.1, 0.6, 0, 2};
  const Shape kDow = six ? Shape{0.7, 0.05, 0.8, 0, 3} : Shape{0.65, 0.1, 0.5, 1, 3};
  std::string sec;
  if (six)
    sec = g.field(0, 59, kSec, se, s.sec, nullptr, 0) + " ";
  else
    s.sec.set(0);
  const std::string min = g.field(0, 59, kMin, mi, s.min, nullptr, 0);
  const std::string hour = g.field(0, 23, kHour, h, s.hour, nullptr, 0);
  const std::string dom =
      g.field(1, 31, kDom, static_cast<int>(static_cast<unsigned>(ymd.day())), s.dom, &s.dom_star, 0);
  const std::string mon = g.field(1, 12, kMon, static_cast<int>(static_cast<unsigned>(ymd.month())), s.mon, nullptr, 1);
  const std::string dow =
      g.field(0, 6, kDow, static_cast<int>(date::weekday(cday).c_encoding()), s.dow, &s.dow_star, 2);
  c.expr = sec + min + " " + hour + " " + dom + " " + mon + " " + dow;
  return c;
}

// The reference's own view of which expressions parse() must refuse.
enum class Verdict { fires, never };

Verdict verdict(const Spec& s) {
  if (s.every_s > 0) return Verdict::fires;
  if (!s.dom_star && !s.dow_star) return Verdict::fires;  // either day field: every week has a match
  if (!s.dom_star) {
    bool possible = false;
    static const unsigned kLongest[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    for (unsigned m = 1; m <= 12; ++m)
      for (unsigned d = 1; d <= kLongest[m]; ++d) possible = possible || (s.mon[m] && s.dom[d]);
    if (!possible) return Verdict::never;
  }
  if (s.dow.all() || s.dom.count() == 31) return Verdict::fires;
  // Both day fields must match: some day in a 400-year cycle must match.
  const date::sys_days start = date::sys_days(date::year(2000) / 1 / 1);
  int64_t first = -1;
  for (int64_t n = 0; n < 146097; ++n) {
    const date::sys_days d = start + date::days(n);
    const date::year_month_day ymd(d);
    if (!day_ok(s, static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), date::weekday(d).c_encoding()))
      continue;
    first = n;
    break;
  }
  return first < 0 ? Verdict::never : Verdict::fires;
}

// The DST changes of `tz` in 2025-2027, or for a zone without any, a few
// instants spread over those years.
std::vector<sys_seconds> transitions(const date::time_zone* tz) {
  std::vector<sys_seconds> out;
  sys_seconds t = date::sys_days(date::year(2025) / 1 / 1);
  const sys_seconds end = date::sys_days(date::year(2028) / 1 / 1);
  while (t < end) {
    const date::sys_info info = tz->get_info(t);
    if (info.end >= end) break;
    out.push_back(info.end);
    t = info.end;
  }
  if (out.empty())
    for (int m = 0; m < 36; m += 5) out.push_back(date::sys_days(date::year(2025) / 3 / 30) + date::days(30 * m) + 1h);
  return out;
}

struct Stats {
  int checked = 0;
  int beyond_window = 0;
  int refused_never = 0;
  int dst_near = 0;     // the answer lies within 3 hours of a DST change
  int from_gap = 0;     // the answer is the end of a gap, for a local time the gap skipped
  int second_pass = 0;  // the search started inside the second pass of a repeated hour
  int six_fields = 0;
  int macros = 0;
};

void run_property(const char* tz_name, int iterations, uint64_t seed, Stats& stats) {
  Generator g(seed);
  const date::time_zone* tz = date::locate_zone(tz_name);
  const Zone z = zone(tz_name);
  const std::vector<sys_seconds> changes = transitions(tz);
  const sys_seconds range_start = date::sys_days(date::year(2025) / 1 / 1);
  for (int i = 0; i < iterations; ++i) {
    // An instant near a DST change (often within minutes of it), or anywhere in 2025-2027.
    sys_seconds anchor;
    if (g.chance(0.75)) {
      anchor = g.one_of(changes);
      const int spread = g.chance(0.3) ? 120 : 3 * 3600;
      anchor += seconds(g.pick(-spread, spread));
    } else {
      anchor = range_start + seconds(g.pick(0, 3 * 365 * 86400));
    }
    const TimePoint after = TimePoint(anchor) + Millis(g.chance(0.7) ? 0 : g.pick(1, 999));
    const bool six = g.chance(0.4);
    // Explicit field values cluster around the local time just before the
    // anchor, i.e. around the hour the clocks jump from.
    const Case c = random_case(g, tz->to_local(anchor - seconds(g.pick(0, 3600))), six);
    const Verdict v = verdict(c.spec);
    const Result<Schedule> s = Schedule::parse(c.expr);
    if (v != Verdict::fires) {
      ASSERT_FALSE(s) << "accepted \"" << c.expr << "\" which never fires";
      ASSERT_NE(s.error().message.find("never fires"), std::string::npos) << c.expr << ": " << s.error().message;
      ++stats.refused_never;
      continue;
    }
    ASSERT_TRUE(s) << c.expr << ": " << s.error().message;
    const sys_seconds window_end =
        std::chrono::floor<seconds>(after) + (c.spec.six || c.spec.every_s > 0 ? date::days(16) : date::days(800));
    bool from_gap = false;
    const std::optional<sys_seconds> expected = reference(c.spec, tz, after, window_end, from_gap);
    const std::optional<TimePoint> got = s->next_fire(after, z);
    const std::string where = "\"" + c.expr + "\" after " + format_rfc3339(after, true) + " in " + tz_name + " (seed " +
                              std::to_string(seed) + ", iteration " + std::to_string(i) + ")";
    if (!expected) {
      if (std::getenv("CRONKEEP_CRON_VERBOSE")) std::printf("beyond: %s -> %s\n", where.c_str(), text(got).c_str());
      ASSERT_TRUE(!got || *got > TimePoint(window_end)) << where << ": got " << text(got) << ", reference none";
      ++stats.beyond_window;
      continue;
    }
    ASSERT_EQ(text(got), text(TimePoint(*expected))) << where;
    ++stats.checked;
    stats.from_gap += from_gap;
    stats.six_fields += c.spec.six && c.spec.every_s == 0 && c.expr[0] != '@';
    stats.macros += c.expr[0] == '@';
    const date::sys_info info = tz->get_info(anchor);
    const date::sys_info prev = tz->get_info(info.begin - 1s);
    stats.second_pass += prev.offset > info.offset && anchor + info.offset < info.begin + prev.offset;
    for (sys_seconds change : changes)
      if (*expected >= change - 3h && *expected <= change + 3h) {
        ++stats.dst_near;
        break;
      }
  }
}

uint64_t property_seed() {
  if (const char* env = std::getenv("CRONKEEP_CRON_SEED")) return std::strtoull(env, nullptr, 10);
  return 20261124;
}

void property_test(const char* tz_name, int iterations, uint64_t salt) {
  const uint64_t seed = property_seed() + salt;
  const auto start = std::chrono::steady_clock::now();
  Stats stats;
  run_property(tz_name, iterations, seed, stats);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ property ] %s: seed %llu (CRONKEEP_CRON_SEED=%llu), %d iterations: %d compared (%d with seconds, %d "
      "macros; %d near a DST change, %d fired at a gap's end for a skipped time, %d started in a repeated "
      "hour's second pass), %d beyond the reference window, %d refused as never firing; "
      "%.0f ms\n",
      tz_name, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(property_seed()), iterations,
      stats.checked, stats.six_fields, stats.macros, stats.dst_near, stats.from_gap, stats.second_pass,
      stats.beyond_window, stats.refused_never, ms);
  if (::testing::Test::HasFatalFailure()) return;
  // Skips must stay rare, or the test would prove little.
  EXPECT_LE(stats.beyond_window, iterations / 100) << tz_name;
  EXPECT_GE(stats.checked, iterations * 9 / 10) << tz_name;
}

TEST(CronNextProperty, MatchesBruteForceInUtc) { property_test("UTC", 3000, 0); }
TEST(CronNextProperty, MatchesBruteForceAcrossDstChangesInEuropeBerlin) { property_test("Europe/Berlin", 6000, 1); }
TEST(CronNextProperty, MatchesBruteForceAcrossDstChangesInAmericaNewYork) {
  property_test("America/New_York", 6000, 2);
}
TEST(CronNextProperty, MatchesBruteForceAcrossThirtyMinuteDstChangesInAustraliaLordHowe) {
  property_test("Australia/Lord_Howe", 4000, 3);
}

// The zone rules read from the system's TZif files give, for every zone
// the date library knows, the same offset at every instant from 1900 to
// 2037 (each transition, the second before it, a second inside each
// span), and the same answer for the local times around each transition.
TEST(ZoneRulesTest, EveryZoneOfTheSystemAgreesWithTheDateLibrary) {
  const sys_seconds from = date::sys_days(date::year(1900) / 1 / 1);
  const sys_seconds to = date::sys_days(date::year(2037) / 1 / 1);
  int zones = 0, instants = 0, locals = 0;
  for (const date::time_zone& tz : date::get_tzdb().zones) {
    const Result<Zone> z = Zone::locate(tz.name());
    ASSERT_TRUE(z) << z.error().message;
    if (z->rules() == nullptr) {
      ASSERT_EQ(tz.name(), "UTC");  // UTC needs no rules
      continue;
    }
    const ZoneRules& rules = *z->rules();
    ++zones;
    for (date::sys_info info = tz.get_info(from); info.begin < to; info = tz.get_info(info.end)) {
      for (const sys_seconds t : {info.begin, info.begin - 1s, info.begin + (std::min(info.end, to) - info.begin) / 2}) {
        ASSERT_EQ(rules.at(t).offset, tz.get_info(t).offset) << tz.name() << " at " << date::format("%F %T", t);
        ++instants;
      }
      // Local times around the change into this span.
      const date::local_seconds around = date::local_seconds(info.begin.time_since_epoch()) + info.offset;
      for (const seconds d : {-7200s, -3600s, -1800s, -1s, 0s, 1s, 1800s, 3600s, 7200s}) {
        const date::local_seconds l = around + d;
        const date::local_info want = tz.get_info(l);
        const LocalSpans got = rules.at_local(l);
        ASSERT_EQ(static_cast<int>(got.result), static_cast<int>(want.result))
            << tz.name() << " at local " << date::format("%F %T", l);
        ASSERT_EQ(got.first.offset, want.first.offset) << tz.name() << " at local " << date::format("%F %T", l);
        if (want.result != date::local_info::unique) {
          ASSERT_EQ(got.second.offset, want.second.offset) << tz.name();
          ASSERT_EQ(got.second.begin, want.second.begin) << tz.name();
          ASSERT_EQ(got.first.end, want.first.end) << tz.name();
        }
        ++locals;
      }
      if (info.end >= to) break;
    }
  }
  EXPECT_GT(zones, 300);
  std::printf("%d zones: %d instants and %d local times agree\n", zones, instants, locals);
}

// After the last transition a TZif file lists (2037 in Debian's), the
// offsets come from the rule in its footer: they agree with the C
// library's localtime_r for every hour-ish step up to 2100, in zones with
// DST north and south, with 30-minute DST, and in one without DST.
TEST(ZoneRulesTest, AfterTheLastListedTransitionTheFooterRuleAgreesWithTheCLibrary) {
  std::mt19937_64 rng(2037);
  for (const char* name : {"Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago",
                           "Australia/Lord_Howe", "Pacific/Chatham", "America/Nuuk", "Asia/Tokyo", "Asia/Jerusalem"}) {
    const Result<Zone> z = Zone::locate(name);
    ASSERT_TRUE(z) << z.error().message;
    ::setenv("TZ", name, 1);
    ::tzset();
    const int64_t start = sys_seconds(date::sys_days(date::year(2030) / 1 / 1)).time_since_epoch().count();
    const int64_t end = sys_seconds(date::sys_days(date::year(2100) / 1 / 1)).time_since_epoch().count();
    for (int64_t t = start; t < end; t += 3000 + static_cast<int64_t>(rng() % 7200)) {
      const std::time_t tt = static_cast<std::time_t>(t);
      std::tm tm{};
      ASSERT_NE(::localtime_r(&tt, &tm), nullptr);
      ASSERT_EQ(z->rules()->at(sys_seconds(seconds(t))).offset.count(), tm.tm_gmtoff)
          << name << " at " << date::format("%F %T", sys_seconds(seconds(t)));
    }
  }
  ::unsetenv("TZ");
  ::tzset();
}

TEST(ZoneRulesTest, PosixRulesOfEveryShapeAreRead) {
  auto berlin = ZoneRules::parse_posix("CET-1CEST,M3.5.0,M10.5.0/3");
  ASSERT_TRUE(berlin) << berlin.error().message;
  EXPECT_EQ(berlin->std_offset, 3600);
  EXPECT_EQ(berlin->dst_offset, 7200);
  EXPECT_EQ(berlin->start.month, 3);
  EXPECT_EQ(berlin->start.week, 5);
  EXPECT_EQ(berlin->end.time, 3 * 3600);
  auto tehran = ZoneRules::parse_posix("<+0330>-3:30");
  ASSERT_TRUE(tehran) << tehran.error().message;
  EXPECT_EQ(tehran->std_offset, 3 * 3600 + 1800);
  EXPECT_FALSE(tehran->dst_offset);
  auto nuuk = ZoneRules::parse_posix("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
  ASSERT_TRUE(nuuk) << nuuk.error().message;
  EXPECT_EQ(nuuk->start.time, -3600);
  EXPECT_EQ(nuuk->dst_offset, -3600);
  auto jerusalem = ZoneRules::parse_posix("IST-2IDT,M3.4.4/26,M10.5.0");
  ASSERT_TRUE(jerusalem) << jerusalem.error().message;
  EXPECT_EQ(jerusalem->start.time, 26 * 3600);
  auto julian = ZoneRules::parse_posix("XXX3YYY,J60/2,300/1:30:15");
  ASSERT_TRUE(julian) << julian.error().message;
  EXPECT_EQ(julian->start.kind, ZoneRules::Posix::When::julian_no_leap);
  EXPECT_EQ(julian->end.kind, ZoneRules::Posix::When::zero_based);
  EXPECT_EQ(julian->end.time, 3600 + 1800 + 15);
  for (const char* bad : {"", "CET", "CE-1", "CET-1CEST", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0",
                          "CET-1CEST,M3.6.0,M10.5.0", "CET-1CEST,M3.5.7,M10.5.0", "CET-1CEST,J0,J365",
                          "CET-1CEST,M3.5.0/168,M10.5.0", "CET-25", "<+03-3", "CET-1CEST,M3.5.0,M10.5.0x"}) {
    const auto r = ZoneRules::parse_posix(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("invalid POSIX TZ rule"), std::string::npos) << r.error().message;
    }
  }
}

TEST(ZoneRulesTest, FilesThatAreNotZonesAreRefusedWithAReason) {
  std::ifstream in("/usr/share/zoneinfo/Europe/Berlin", std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  const std::string berlin = bytes.str();
  ASSERT_GT(berlin.size(), 100u);
  ASSERT_TRUE(ZoneRules::parse(berlin));
  EXPECT_EQ(ZoneRules::parse("").error().message, "not a TZif file");
  EXPECT_EQ(ZoneRules::parse("# a text file\n").error().message, "not a TZif file");
  // Cut anywhere, the file is refused, never read past its end.
  for (size_t n = 0; n < berlin.size(); n += 7) EXPECT_FALSE(ZoneRules::parse(berlin.substr(0, n))) << n;
  std::string footer_bad = berlin;
  footer_bad.replace(footer_bad.rfind("CET"), 3, "C1T");
  EXPECT_NE(ZoneRules::parse(footer_bad).error().message.find("invalid POSIX TZ rule"), std::string::npos);
}

TEST(ZoneRulesTest, ZoneNamesNeverNameAFileOutsideTheZoneinfo) {
  for (const char* name : {"../../etc/passwd", "/etc/localtime", "Europe/../../../etc/hostname", "Europe/./Berlin",
                           "Europe//Berlin", "Europe/", "", "Europe/Berlin\n", "Europe/Ber lin", "Europe"}) {
    const Result<Zone> z = Zone::locate(name);
    ASSERT_FALSE(z) << name;
    EXPECT_NE(z.error().message.find("unknown time zone"), std::string::npos) << z.error().message;
  }
  EXPECT_TRUE(Zone::locate("Etc/GMT+5"));
  EXPECT_TRUE(Zone::locate("America/Port-au-Prince"));
  EXPECT_TRUE(Zone::locate("America/Argentina/Buenos_Aires"));
  EXPECT_EQ(Zone::locate("UTC")->rules(), nullptr);
}

}  // namespace
}  // namespace cronkeep::cron
