#include "base/result.h"

namespace cronkeep {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::conflict: return "conflict";
    case ErrorCode::io: return "io";
    case ErrorCode::corruption: return "corruption";
    case ErrorCode::busy: return "busy";
    case ErrorCode::no_space: return "no_space";
    case ErrorCode::internal: return "internal";
  }
  return "internal";
}

std::optional<ErrorCode> parse_error_code(std::string_view name) {
  for (auto c : {ErrorCode::invalid_argument, ErrorCode::not_found, ErrorCode::conflict, ErrorCode::io,
                 ErrorCode::corruption, ErrorCode::busy, ErrorCode::no_space,
                 ErrorCode::internal})
    if (name == to_string(c)) return c;
  return std::nullopt;
}

}  // namespace cronkeep
