// base/module.h: finding and opening cronkeep's loadable modules.
//
// Parts whose libraries most daemons never need are built as modules beside
// the binary (cronkeep-postgres.so: libpqxx, libpq and theirs; cronkeep-tls.so:
// OpenSSL), so a daemon that does not use them never maps those libraries.
// A module exports `int SYMBOL_abi()` and the entry points its loader names.
//
// Where a module is looked for, first match wins:
//   1. $CRONKEEP_MODULE_DIR, when set (and then only there);
//   2. the directory of the running executable (/proc/self/exe), which is
//      build/ in a build tree;
//   3. {that directory}/../{libdir}/cronkeep, where cmake --install puts it
//      beside bin/cronkeep, whatever the prefix given at install time;
//   4. CRONKEEP_INSTALL_MODULE_DIR, the installed location compiled in
//      ({prefix}/{libdir}/cronkeep of the configured prefix).
// A module is opened RTLD_NOW | RTLD_LOCAL and never closed (what it returns
// runs its code). Modules and the binary are built together from one tree,
// so C++ types cross the boundary; each module's ABI number changes with the
// types its entry points take, and a module built for another revision is
// refused rather than called.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace cronkeep {

struct ModuleSpec {
  const char* file;                  // e.g. "cronkeep-tls.so"
  const char* abi_symbol;            // int (*)(): the module's ABI number
  int abi;                           // what this binary expects
  std::vector<const char*> symbols;  // entry points that must be there
  std::string needed_for;            // e.g. "backend = \"postgres\" needs the PostgreSQL module"
};

// The entry points of `spec.symbols`, in that order. Errors: io naming every
// file tried and why it failed (with where to install the module);
// internal for a file that is not this module or is built for another ABI.
Result<std::vector<void*>> load_module(const ModuleSpec& spec);

}  // namespace cronkeep
