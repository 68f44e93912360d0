// daemon/service_manager.h: telling systemd (or any service manager that
// speaks the sd_notify protocol) how the daemon is doing.
//
// Owns: READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1 messages,
// sent through libsystemd's sd_notify to the socket named by NOTIFY_SOCKET.
// Without NOTIFY_SOCKET every call is a no-op, no thread is started and
// libsystemd is not loaded (it is opened with dlopen when NOTIFY_SOCKET is
// set, so a daemon outside systemd does not map it nor its dependencies).
// The runner keeps NOTIFY_SOCKET and WATCHDOG_* out of tasks' environments,
// so only the daemon speaks for the service.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/time.h"

namespace cronkeep::daemon {

class ServiceManager {
 public:
  // `status` returns the STATUS= text. It is called on the service
  // manager's own thread every refresh, and a watchdog ping is sent only
  // after it returns, so it should take the locks whose deadlock the
  // watchdog is meant to catch (the scheduler's).
  explicit ServiceManager(std::function<std::string()> status);
  ~ServiceManager();
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;

  // True when NOTIFY_SOCKET is set.
  bool active() const { return active_; }

  // READY=1 with the first STATUS=, then starts the thread that refreshes
  // STATUS= every 2 s and, when the manager asked for a watchdog
  // (sd_watchdog_enabled: WATCHDOG_USEC, and WATCHDOG_PID unset or this
  // process), sends WATCHDOG=1 every half of its interval.
  void ready();
  // RELOADING=1 (with MONOTONIC_USEC), then READY=1 by reloaded().
  void reloading();
  void reloaded(const std::string& result);
  // STOPPING=1, and the refresh thread ends.
  void stopping(const std::string& why);

 private:
  void send(const std::string& message) const;
  void loop();

  std::function<std::string()> status_;
  bool active_ = false;
  Millis watchdog_{0};  // 0: none asked for
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace cronkeep::daemon
