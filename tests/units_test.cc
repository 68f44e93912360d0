#include <gtest/gtest.h>

#include "base/time.h"
#include "base/units.h"

namespace cronkeep {
namespace {

using namespace std::chrono_literals;

struct DurationCase {
  const char* text;
  int64_t ms;
};

TEST(ParseDuration, AcceptsEveryUnitAndCombinations) {
  const DurationCase cases[] = {
      {"0", 0},           {"90s", 90'000},      {"36h", 36 * 3'600'000LL}, {"7d", 7 * 86'400'000LL},
      {"2w", 14 * 86'400'000LL}, {"1h30m", 5'400'000}, {"250ms", 250},   {"1.5h", 5'400'000},
      {"10S", 10'000},    {"1d12h", 129'600'000}, {"0s", 0},
  };
  for (const auto& c : cases) {
    auto d = parse_duration(c.text);
    ASSERT_TRUE(d) << c.text << ": " << d.error().message;
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
}

TEST(ParseDuration, RefusesBadInputWithAMessageQuotingIt) {
  const char* bad[] = {"", "-5s", "5", "5x", "s", "1h30", "abc", "1..5s", "9999999w"};
  for (const char* text : bad) {
    auto d = parse_duration(text);
    ASSERT_FALSE(d) << text;
    EXPECT_EQ(d.error().code, ErrorCode::invalid_argument);
    if (*text) {
      EXPECT_NE(d.error().message.find(text), std::string::npos) << d.error().message;
    }
  }
}

TEST(FormatDuration, PrintsTheShortestExactForm) {
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(90'000ms), "1m30s");
  EXPECT_EQ(format_duration(86'400'000ms + 1ms), "1d1ms");
  auto round_trip = parse_duration(format_duration(5'400'250ms));
  ASSERT_TRUE(round_trip);
  EXPECT_EQ(round_trip->count(), 5'400'250);
}

TEST(ParseSize, AcceptsUnitsFractionsAndPlainBytes) {
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("100MB").value(), 100ull * 1024 * 1024);
  EXPECT_EQ(parse_size("1.5gb").value(), 1536ull * 1024 * 1024);
  EXPECT_EQ(parse_size("1KiB").value(), 1024u);
  EXPECT_EQ(parse_size("0").value(), 0u);
  EXPECT_EQ(parse_size("2 tb").value(), 2ull << 40);
}

TEST(ParseSize, RefusesNegativeUnknownUnitsAndOverflow) {
  for (const char* text : {"", "-1", "12 parsecs", "MB", "1e9", "99999999999TB"}) {
    auto s = parse_size(text);
    EXPECT_FALSE(s) << text;
  }
}

TEST(FormatSize, UsesOneDecimal) {
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(4'300'000), "4.1 MB");
}

TEST(Rfc3339, RoundTripsWithAndWithoutMillis) {
  auto t = parse_rfc3339("2026-11-23T04:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_rfc3339(*t), "2026-11-23T04:00:00Z");
  auto with_offset = parse_rfc3339("2026-11-23T05:00:00.250+01:00");
  ASSERT_TRUE(with_offset);
  EXPECT_EQ(format_rfc3339(*with_offset, true), "2026-11-23T04:00:00.250Z");
  EXPECT_EQ(format_file_stamp(*t), "20261123_040000");
  EXPECT_TRUE(parse_rfc3339("2026-11-23"));
  EXPECT_FALSE(parse_rfc3339("yesterday"));
  EXPECT_FALSE(parse_rfc3339("2026-11-23T04:00:00Zjunk"));
  EXPECT_FALSE(parse_rfc3339("2026-02-30"));
  EXPECT_FALSE(parse_rfc3339("2026-11-23T24:00:00Z"));
  // Found by the fuzzer: a malformed offset once reached undefined behaviour.
  EXPECT_FALSE(parse_rfc3339("2026-17-23T04:00:00-1q-23T\xcf"));
  EXPECT_FALSE(parse_rfc3339("2026-11-23T04:00:00+1:00"));
  EXPECT_EQ(format_rfc3339(*parse_rfc3339("2026-11-23t04:00:00.5-02:30"), true), "2026-11-23T06:30:00.500Z");
}

TEST(ToHex, GivesTwoLowerCaseDigitsPerByteIncludingZeroAndHighBytes) {
  EXPECT_EQ(to_hex(""), "");
  EXPECT_EQ(to_hex(std::string_view("\x00\x01\x7f\x80\xab\xff", 6)), "00017f80abff");
  EXPECT_EQ(to_hex("cronkeep"), "63726f6e6b656570");
}

}  // namespace
}  // namespace cronkeep
