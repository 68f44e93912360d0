// store/pg_module.h: the one entry point of the PostgreSQL module.
//
// The PostgreSQL backend (pg_store.cc, libpqxx, libpq and libpq's own
// dependencies: GnuTLS, Kerberos, LDAP, SASL…) is built as a loadable module,
// cronkeep-postgres.so, so that a daemon on SQLite (the default) never maps
// those libraries. store::open_postgres (pg_loader.cc) dlopens the module the
// first time it is called and calls this function; the module is never
// unloaded (the Stores it returns run its code).
//
// The module and the binary are built together from one tree by the same
// compiler, so C++ types cross the boundary; kPgModuleAbi changes whenever
// Store, OpenOptions, Error or this signature does, and a module built for
// another revision is refused rather than called.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "store/store.h"

namespace cronkeep::store {

inline constexpr int kPgModuleAbi = 1;
inline constexpr const char* kPgModuleFile = "cronkeep-postgres.so";
inline constexpr const char* kPgModuleAbiSymbol = "cronkeep_postgres_abi";
inline constexpr const char* kPgModuleOpenSymbol = "cronkeep_postgres_open";

}  // namespace cronkeep::store

extern "C" {
// Returns kPgModuleAbi as the module was built.
int cronkeep_postgres_abi();
// What store::open_postgres(*url, *options) returns, written to *out.
void cronkeep_postgres_open(const std::string* url, const cronkeep::store::OpenOptions* options,
                            cronkeep::Result<std::unique_ptr<cronkeep::store::Store>>* out);
}
