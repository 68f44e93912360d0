// daemon/service_manager.cc: sd_notify messages (see service_manager.h).
//
// The refresh thread does one job: every tick it asks the scheduler for its
// runs (which takes the scheduler's lock, so a wedged scheduler shows up as
// missing watchdog pings) and the store for the last retention run, and
// sends both. It is separate from the checkpointer so a checkpoint stalled
// on the disk does not also starve the watchdog.

#include "daemon/service_manager.h"

#include <dlfcn.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/thread.h"

namespace cronkeep::daemon {
namespace {

constexpr Millis kStatusEvery{2000};

// STATUS= is one line: newlines would end the field.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  if (s.size() > 400) s = s.substr(0, 397) + "...";
  return s;
}

// libsystemd's two functions used here, from libsystemd.so.0 opened when
// NOTIFY_SOCKET is set: linking it would map it and its own dependencies
// (libgcrypt, libgpg-error, liblzma, liblz4, libcap: about 0.7 MB of
// resident memory) in every daemon, systemd's or not.
struct Libsystemd {
  decltype(&::sd_notify) notify = nullptr;
  decltype(&::sd_watchdog_enabled) watchdog_enabled = nullptr;
};

const Libsystemd* libsystemd() {
  static const Libsystemd* loaded = [] () -> const Libsystemd* {
    void* handle = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);  // never closed
    if (!handle) {
      const char* error = ::dlerror();
      spdlog::error("NOTIFY_SOCKET is set but libsystemd cannot be loaded ({}): the service manager is not told",
                    error ? error : "?");
      return nullptr;
    }
    static Libsystemd lib;
    lib.notify = reinterpret_cast<decltype(&::sd_notify)>(::dlsym(handle, "sd_notify"));
    lib.watchdog_enabled = reinterpret_cast<decltype(&::sd_watchdog_enabled)>(::dlsym(handle, "sd_watchdog_enabled"));
    if (!lib.notify || !lib.watchdog_enabled) {
      spdlog::error("libsystemd.so.0 has no sd_notify: the service manager is not told");
      return nullptr;
    }
    return &lib;
  }();
  return loaded;
}

}  // namespace

ServiceManager::ServiceManager(std::function<std::string()> status) : status_(std::move(status)) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket && *socket && libsystemd();
  uint64_t usec = 0;
  if (active_ && libsystemd()->watchdog_enabled(0, &usec) > 0 && usec > 0)
    watchdog_ = Millis(std::max<int64_t>(1, static_cast<int64_t>(usec / 1000)));
}

ServiceManager::~ServiceManager() {
  {
    std::lock_guard guard(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ServiceManager::send(const std::string& message) const {
  if (!active_) return;
  if (const int rc = libsystemd()->notify(0, message.c_str()); rc < 0)
    spdlog::warn("sd_notify: {}", std::strerror(-rc));
}

void ServiceManager::ready() {
  if (!active_) return;
  send("READY=1\nSTATUS=" + one_line(status_()));
  if (watchdog_.count() > 0)
    spdlog::info("systemd watchdog: {} ms, pinged every {} ms", watchdog_.count(), watchdog_.count() / 2);
  thread_ = std::thread([this] {
    thread::set_name("ck-systemd");
    loop();
  });
}

void ServiceManager::reloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t usec = static_cast<uint64_t>(now.tv_sec) * 1'000'000 + static_cast<uint64_t>(now.tv_nsec) / 1000;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading the configuration");
}

void ServiceManager::reloaded(const std::string& result) {
  send("READY=1\nSTATUS=" + one_line(result));
}

void ServiceManager::stopping(const std::string& why) {
  send("STOPPING=1\nSTATUS=" + one_line(why));
  {
    std::lock_guard guard(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ServiceManager::loop() {
  const Millis tick = watchdog_.count() > 0 ? std::min(kStatusEvery, std::max(Millis(1), watchdog_ / 2)) : kStatusEvery;
  std::unique_lock guard(mu_);
  while (!cv_.wait_for(guard, tick, [&] { return stop_; })) {
    guard.unlock();
    std::string message = "STATUS=" + one_line(status_());
    if (watchdog_.count() > 0) message += "\nWATCHDOG=1";
    send(message);
    guard.lock();
  }
}

}  // namespace cronkeep::daemon
