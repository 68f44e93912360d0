// base/result.h: the error type every part returns instead of throwing.
//
// Result<T> holds either a value or an Error. An Error carries a code that the
// HTTP layer maps to a status in one place, and a message with enough context
// (which file, which key, which run) for a human to act on it.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace cronkeep {

enum class ErrorCode {
  invalid_argument,  // bad input from a user: config, CLI flag, request field
  not_found,         // a task, run or file that does not exist
  conflict,          // the state does not allow it (e.g. run not in flight)
  io,                // the operating system refused (open, write, spawn …)
  corruption,        // stored data does not parse
  busy,              // a lock is held by someone else
  internal,          // a broken invariant or an unexpected library failure
};

const char* to_string(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

// Status is Result<void>: success or an Error.
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace cronkeep
