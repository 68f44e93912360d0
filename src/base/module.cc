// Finding and opening cronkeep's loadable modules (base/module.h).
#include "base/module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>

#ifndef CRONKEEP_INSTALL_MODULE_DIR
#define CRONKEEP_INSTALL_MODULE_DIR "/usr/local/lib/cronkeep"
#endif
#ifndef CRONKEEP_INSTALL_LIBDIR
#define CRONKEEP_INSTALL_LIBDIR "lib"
#endif

namespace cronkeep {
namespace {

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

}  // namespace

Result<std::vector<void*>> load_module(const ModuleSpec& spec) {
  std::string tried;
  for (const auto& dir : candidate_dirs()) {
    const std::string path = (std::filesystem::path(dir) / spec.file).string();
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* error = ::dlerror();
      const std::string why = error ? error : "cannot be loaded";
      tried += "\n  " + (why.starts_with(path) ? why : path + ": " + why);  // dlerror() names it, mostly
      continue;
    }
    auto abi = reinterpret_cast<AbiFn>(::dlsym(handle, spec.abi_symbol));
    std::vector<void*> out;
    for (const char* name : spec.symbols) {
      void* symbol = ::dlsym(handle, name);
      if (!abi || !symbol)
        return fail(ErrorCode::internal, path + ": not the module expected (no " + (abi ? name : spec.abi_symbol) + ")");
      out.push_back(symbol);
    }
    if (abi() != spec.abi)
      return fail(ErrorCode::internal, path + ": built for another cronkeep (module ABI " + std::to_string(abi()) +
                                           ", this binary " + std::to_string(spec.abi) + ")");
    return out;  // never dlclose'd: what the module returns runs its code
  }
  return fail(ErrorCode::io, spec.needed_for + " " + spec.file +
                                 ", which could not be loaded (install it beside the cronkeep binary, in " +
                                 CRONKEEP_INSTALL_MODULE_DIR + ", or set CRONKEEP_MODULE_DIR):" + tried);
}

}  // namespace cronkeep
