// base/units.h: durations ("90s", "36h", "7d", "2w", "1h30m") and sizes
// ("100MB", "1.5gb", "4096") as written in configuration, flags and requests.
//
// Pure functions; no I/O. Errors are ErrorCode::invalid_argument with a message
// that quotes the input and says what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/time.h"

namespace cronkeep {

// A duration: one or more <number><unit> groups, units ms, s, m, h, d, w
// (case-insensitive), numbers may have a fraction ("1.5h"). A bare "0" is zero.
// Negative values, empty text, unknown units and overflow are errors.
Result<Millis> parse_duration(std::string_view text);

// The shortest exact form: 90000ms → "1m30s", 0 → "0s".
std::string format_duration(Millis d);

// A size in bytes: a number (fraction allowed) with an optional unit
// B, KB, MB, GB, TB (powers of 1024; "KiB", "MiB" … also accepted),
// case-insensitive. "0" is zero. Negative, unknown unit or overflow → error.
Result<uint64_t> parse_size(std::string_view text);

// Human form with one decimal: 4300000 → "4.1 MB", 512 → "512 B".
std::string format_size(uint64_t bytes);

// Lower-case hexadecimal, two digits a byte: "\x01\xab" → "01ab".
std::string to_hex(std::string_view bytes);

}  // namespace cronkeep
