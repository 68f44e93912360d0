// store::open_postgres: loads the PostgreSQL module (cronkeep-postgres.so)
// on first use (base/module.h says where it is looked for) and opens a Store
// through its entry point (store/pg_module.h). A daemon on SQLite never
// calls this, so it never maps libpqxx, libpq nor libpq's dependencies.
#include <mutex>
#include <string>

#include "base/module.h"
#include "store/pg_module.h"
#include "store/store.h"

namespace cronkeep::store {
namespace {

using OpenFn = void (*)(const std::string*, const OpenOptions*, Result<std::unique_ptr<Store>>*);

Result<OpenFn> load() {
  auto symbols = load_module(ModuleSpec{kPgModuleFile, kPgModuleAbiSymbol, kPgModuleAbi, {kPgModuleOpenSymbol},
                                        "backend = \"postgres\" needs the PostgreSQL module"});
  if (!symbols) return tl::unexpected(symbols.error());
  return reinterpret_cast<OpenFn>((*symbols)[0]);
}

}  // namespace

Result<std::unique_ptr<Store>> open_postgres(const std::string& url, OpenOptions options) {
  static std::mutex mu;
  static Result<OpenFn> loaded = fail(ErrorCode::internal, "not loaded");
  OpenFn open = nullptr;
  {
    std::lock_guard lock(mu);
    if (!loaded) loaded = load();  // a failure is retried: the file may have been installed since
    if (!loaded) return tl::unexpected(loaded.error());
    open = *loaded;
  }
  Result<std::unique_ptr<Store>> out;
  open(&url, &options, &out);
  return out;
}

}  // namespace cronkeep::store
