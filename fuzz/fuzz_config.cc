// libFuzzer target: the configuration loader. Any text gives a config or a
// list of problems, each with a message; never a crash or an exception.
#include <cstdint>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cronkeep;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cfg = config::parse_config(text, "fuzz.toml");
  if (!cfg) {
    if (cfg.error().empty()) __builtin_trap();
    for (const auto& p : cfg.error())
      if (p.message.empty()) __builtin_trap();
  }
  return 0;
}
