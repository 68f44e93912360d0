// base/file_lock.h: an exclusive advisory lock on a file (flock), held for
// the lifetime of the object and released by the kernel however the process
// ends.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cronkeep {

class FileLock {
 public:
  // Creates `path` if needed and locks it without waiting; writes our pid
  // into it. Errors: busy when another process holds it (the message names
  // that process's pid when known); io when the file cannot be opened.
  static Result<FileLock> acquire(const std::string& path);

  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;

 private:
  FileLock() = default;
  UniqueFd fd_;
};

}  // namespace cronkeep
