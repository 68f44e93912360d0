// notify/notify.h: delivering events to the configured sinks.
//
// Owns: turning run outcomes into notifications ([notify.NAME] sinks:
// webhook = JSON POST signed with HMAC-SHA256 (net/http_client.h), command = /bin/sh -c with the
// event in CRONKEEP_* variables and as JSON on stdin), coalescing storms,
// retries with backoff within a budget, and the record of every delivery
// attempt (through store::Store). Must not know SQL text or the HTTP server.
//
// Never blocks its callers: submit() coalesces the notice into a bounded
// queue of messages (a full queue drops it and records it as `dropped`); a
// delivery thread per sink (started with the sink's first message) does the
// network and the processes, so a dead receiver delays only its own sink.
//
// Coalescing, at submit(): per (sink, task, event), the first notice of a
// window is a message at once; the following ones within `window` are
// counted and become one message with that count when the window ends; and a
// message not yet sent takes in any newer one of its key (counts added), so
// a storm against a stuck receiver waits as one message per key.
//
// Thread-safety: every public method is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "base/time.h"
#include "config/config.h"
#include "store/store.h"

namespace cronkeep::notify {

using namespace std::chrono_literals;

struct Notice {
  std::string event;               // one of config::kNotifyEvents
  std::string task;
  std::optional<int64_t> run_id;
  std::string status;              // the run's status, when about a run
  std::string message;             // the run's message or a note
  TimePoint time{};
};

struct Options {
  size_t queue_max = 1000;         // messages waiting; more are dropped (and recorded)
  Millis window = 60s;             // coalescing window per (sink, task, event)
  int max_attempts = 5;            // per message
  Millis first_retry = 2s;         // doubled after each failed attempt
  Millis budget = 10min;           // no retry starts later than this after the first attempt
  size_t max_response_bytes = 64 * 1024;
};

// The JSON body of a message (what a webhook receives and a command reads on stdin).
std::string message_json(const Notice& notice, const std::string& sink, int64_t count);

class Notifier {
 public:
  // Requires: `store` and `clock` outlive the notifier. Starts the delivery thread.
  Notifier(const config::Config& config, store::Store& store, Clock& clock, Options options = {});
  ~Notifier();  // stop()
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Queues `notice` for every sink that wants it: the task's `notify`
  // (config defaults for tasks not in the configuration and system tasks),
  // filtered by each sink's `events`. Never blocks.
  void submit(Notice notice);
  // A terminal run state from the bus: maps failed, timeout, crashed,
  // log_overflow, missed, and recovered (the first success after a failure
  // seen since start), and failures of cronkeep:retention/compactor to
  // retention_failed/compactor_failed.
  void run_ended(const std::string& task, int64_t run_id, const std::string& status, const std::string& message,
                 TimePoint at);
  // Replaces the sinks and task settings (configuration reload).
  void set_config(const config::Config& config);
  // Waits (real time, bounded) until nothing is queued or waiting for a
  // retry or a window; for tests and shutdown. Returns whether it got idle.
  bool wait_idle(Millis timeout);
  // Delivers what is queued within a short grace, then stops the thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cronkeep::notify
