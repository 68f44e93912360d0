// events/events.h: an in-process, bounded publish/subscribe bus.
//
// Owns: delivering run state changes, log lines and log conditions from the
// scheduler and the log writer to whoever listens (the HTTP layer's SSE
// streams, metrics). Must not know about SQL or HTTP.
//
// Guarantees:
//   - publish() never blocks on a subscriber: each subscriber has a bounded
//     queue (default 4096 events); when it is full the OLDEST event is
//     dropped and counted, and the subscriber's next take() reports how many
//     it lost (Batch::dropped) before the events that follow.
//   - publish() with no subscriber interested in the run is a few atomic
//     loads: no allocation, no lock (has_subscribers()).
//   - thread-safe: any thread may publish; each Subscription is read by one
//     thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cronkeep::events {

enum class Kind {
  run_state,      // a run changed status (text = the status name)
  log_line,       // a line of a run's log (text = the line without '\n', line = its number)
  log_rotated,    // drop_old moved the log to .prev (text = human note)
  log_truncated,  // a cap or disk pressure dropped output (text = human note, count = bytes dropped so far)
  disk_pressure,  // log.disk_pressure: free space below min_free_space (text = human note)
  progress,       // a system run's work so far (text = its phase, count = done, total = of how many)
};
const char* to_string(Kind k);

struct Event {
  uint64_t seq = 0;        // assigned by the bus: increasing across all events
  Kind kind = Kind::run_state;
  std::string task;
  int64_t run_id = 0;
  int64_t line = 0;        // log_line: 1-based line number in the run's log
  int64_t time_ms = 0;     // UTC ms since epoch when published
  char stream = 'o';       // log_line: 'o' stdout, 'e' stderr, 'm' cronkeep's marker
  int64_t count = 0;       // log_truncated: bytes dropped; progress: units done
  int64_t total = 0;       // progress: units to do (0: unknown)
  std::string text;
};

// What a subscriber receives at once.
struct Batch {
  uint64_t dropped = 0;       // events lost (oldest first) since the previous take
  std::vector<Event> events;  // in publish order
};

class Bus;

// A subscriber's handle; unsubscribes when destroyed.
class Subscription {
 public:
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Waits up to `timeout` for at least one event (or a drop notice) and
  // returns everything queued. Empty batch (dropped == 0) on timeout or after
  // close().
  Batch take(std::chrono::milliseconds timeout);
  // Wakes a blocked take() and makes every later take() return at once.
  void close();
  bool closed() const;

 private:
  friend class Bus;
  struct State;
  explicit Subscription(std::shared_ptr<State> state, Bus* bus);
  std::shared_ptr<State> state_;
  Bus* bus_;
};

struct Filter {
  std::optional<int64_t> run_id;  // only events of this run
  std::optional<std::string> task;  // only events of this task
  bool states_only = false;         // only run_state events (no log lines to crowd them out)
  bool with_disk_pressure = false;  // with states_only: disk_pressure events too (notifications)
  bool with_progress = false;       // with states_only: progress events too (the web UI's watch)
};

class Bus {
 public:
  explicit Bus(size_t queue_capacity = 4096);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  std::unique_ptr<Subscription> subscribe(Filter filter = {});

  // True when some subscriber could want events of this run/task; lets the
  // log writer skip building events nobody reads. Lock-free.
  bool has_subscribers() const;

  // Stamps seq (and time_ms when 0) and delivers to every matching
  // subscriber. Never blocks on a slow subscriber.
  void publish(Event event);

  // Events dropped across all subscribers since start (for metrics).
  uint64_t total_dropped() const;
  size_t subscriber_count() const;

 private:
  friend class Subscription;
  void unsubscribe(const Subscription::State* state);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cronkeep::events
