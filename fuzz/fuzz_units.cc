// libFuzzer target: durations, sizes and RFC 3339 times. Never a crash; a
// parsed duration prints to a form that parses back to the same value.
#include <cstdint>
#include <string_view>

#include "base/time.h"
#include "base/units.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cronkeep;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = parse_duration(text)) {
    auto back = parse_duration(format_duration(*d));
    if (!back || *back != *d) __builtin_trap();
  }
  if (auto s = parse_size(text)) format_size(*s);
  if (auto t = parse_rfc3339(text)) format_rfc3339(*t, true);
  return 0;
}
