// base/result.h: the error type every part returns instead of throwing.
//
// Result<T> holds either a value or an Error. An Error carries a code that the
// HTTP layer maps to a status in one place, and a message with enough context
// (which file, which key, which run) for a human to act on it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
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
  no_space,          // the file system is full (ENOSPC, SQLITE_FULL)
  internal,          // a broken invariant or an unexpected library failure
};

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

const char* to_string(ErrorCode code);
// The code named by to_string(), or nullopt.
std::optional<ErrorCode> parse_error_code(std::string_view name);

// A value or an Error. [[nodiscard]]: a Result that is dropped is a
// compile error under -Werror, so no failure goes unnoticed; write
// `(void)call()` only where ignoring it is the decision, with a comment.
template <class T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;
  Result() = default;
  Result(const tl::expected<T, Error>& e) : tl::expected<T, Error>(e) {}
  Result(tl::expected<T, Error>&& e) : tl::expected<T, Error>(std::move(e)) {}
};

// Status is Result<void>: success or an Error.
using Status = Result<void>;

inline tl::unexpected<Error> fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace cronkeep
