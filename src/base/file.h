// base/file.h: reading a small file whole (a configuration, a zone's rules,
// a log's .meta).
#pragma once

#include <string>

#include "base/result.h"

namespace cronkeep {

// The whole content of the file at `path`. On failure the message is the
// system's reason alone ("No such file or directory", "Is a directory"),
// for the caller to put in context; the code is not_found for a missing
// file, io otherwise.
Result<std::string> read_file(const std::string& path);

}  // namespace cronkeep
