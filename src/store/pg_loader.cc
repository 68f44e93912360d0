// store::open_postgres: loads the PostgreSQL module (cronkeep-postgres.so)
// on first use and opens a Store through its entry point (store/pg_module.h).
// A daemon on SQLite never calls this, so it never maps libpqxx, libpq nor
// libpq's dependencies.
//
// Where the module is looked for, first match wins:
//   1. $CRONKEEP_MODULE_DIR, when set (and then only there);
//   2. the directory of the running executable (/proc/self/exe), which is
//      build/ in a build tree;
//   3. {that directory}/../{libdir}/cronkeep, where cmake --install puts it
//      beside bin/cronkeep, whatever the prefix given at install time;
//   4. CRONKEEP_INSTALL_MODULE_DIR, the installed location compiled in
//      ({prefix}/{libdir}/cronkeep of the configured prefix).
// The module is opened RTLD_NOW | RTLD_LOCAL and never closed.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "store/pg_module.h"
#include "store/store.h"

#ifndef CRONKEEP_INSTALL_MODULE_DIR
#define CRONKEEP_INSTALL_MODULE_DIR "/usr/local/lib/cronkeep"
#endif
#ifndef CRONKEEP_INSTALL_LIBDIR
#define CRONKEEP_INSTALL_LIBDIR "lib"
#endif

namespace cronkeep::store {
namespace {

using OpenFn = void (*)(const std::string*, const OpenOptions*, Result<std::unique_ptr<Store>>*);
using AbiFn = int (*)();

std::vector<std::string> candidate_dirs() {
  if (const char* dir = std::getenv("CRONKEEP_MODULE_DIR"); dir && *dir) return {dir};
  std::vector<std::string> dirs;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back(exe.parent_path().string());
    dirs.push_back((exe.parent_path().parent_path() / CRONKEEP_INSTALL_LIBDIR / "cronkeep").string());
  }
  dirs.push_back(CRONKEEP_INSTALL_MODULE_DIR);
  return dirs;
}

// The entry point, or an error naming every file tried and why it failed.
Result<OpenFn> load() {
  std::string tried;
  for (const auto& dir : candidate_dirs()) {
    const std::string path = (std::filesystem::path(dir) / kPgModuleFile).string();
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* error = ::dlerror();
      const std::string why = error ? error : "cannot be loaded";
      tried += "\n  " + (why.starts_with(path) ? why : path + ": " + why);  // dlerror() names it, mostly
      continue;
    }
    auto abi = reinterpret_cast<AbiFn>(::dlsym(handle, kPgModuleAbiSymbol));
    auto open = reinterpret_cast<OpenFn>(::dlsym(handle, kPgModuleOpenSymbol));
    if (!abi || !open)
      return fail(ErrorCode::internal, path + ": not a cronkeep PostgreSQL module (no " + kPgModuleOpenSymbol + ")");
    if (abi() != kPgModuleAbi)
      return fail(ErrorCode::internal, path + ": built for another cronkeep (module ABI " + std::to_string(abi()) +
                                           ", this binary " + std::to_string(kPgModuleAbi) + ")");
    return open;  // never dlclose'd: the Stores it makes run its code
  }
  return fail(ErrorCode::io, std::string("backend = \"postgres\" needs the PostgreSQL module ") + kPgModuleFile +
                                 ", which could not be loaded (install it beside the cronkeep binary, in " +
                                 CRONKEEP_INSTALL_MODULE_DIR + ", or set CRONKEEP_MODULE_DIR):" + tried);
}

}  // namespace

Result<std::unique_ptr<Store>> open_postgres(const std::string& url, OpenOptions options) {
  static std::mutex mu;
  static Result<OpenFn> loaded = fail(ErrorCode::internal, "not loaded");
  static bool tried = false;
  OpenFn open = nullptr;
  {
    std::lock_guard lock(mu);
    if (!tried || !loaded) {  // a failure is retried: the file may have been installed since
      loaded = load();
      tried = true;
    }
    if (!loaded) return tl::unexpected(loaded.error());
    open = *loaded;
  }
  Result<std::unique_ptr<Store>> out;
  open(&url, &options, &out);
  return out;
}

}  // namespace cronkeep::store
