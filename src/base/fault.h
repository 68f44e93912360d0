// base/fault.h: named crash points and injected disk-full, for tests.
//
// Built in only with -DCRONKEEP_FAULT_INJECTION=ON (test builds); otherwise
// every function here is an inline no-op. At run time:
//   CRONKEEP_CRASH_AT=<name>   the process kills itself with SIGKILL the
//                              first time it reaches crash_point(<name>);
//   CRONKEEP_ENOSPC_FILE=<path> while <path> exists, log writes and archive
//                              writes fail with ENOSPC (disk_full() returns true).
// docs/reliability.md lists the points.
#pragma once

namespace cronkeep::fault {

#ifdef CRONKEEP_FAULT_INJECTION
void crash_point(const char* name);
bool disk_full();
#else
inline void crash_point(const char*) {}
inline bool disk_full() { return false; }
#endif

}  // namespace cronkeep::fault
