// libFuzzer target: cron expressions. Parsing must never crash; an accepted
// expression must give a next fire strictly after the start, in UTC and in
// a DST zone, and never loop.
#include <cstdint>
#include <string_view>

#include "cron/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cronkeep;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto s = cron::Schedule::parse(text);
  if (!s) return 0;
  static const cron::Zone berlin = *cron::Zone::locate("Europe/Berlin");
  uint64_t seed = 0;
  for (size_t i = 0; i < size; ++i) seed = seed * 131 + data[i];
  // An instant between 2000 and 2060.
  const TimePoint start = from_unix_ms(946'684'800'000LL + static_cast<int64_t>(seed % 1'893'456'000ULL) * 1000);
  for (const cron::Zone& z : {cron::Zone::utc(), berlin}) {
    auto next = s->next_fire(start, z);
    if (next && *next <= start) __builtin_trap();
  }
  return 0;
}
