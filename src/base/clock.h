// base/clock.h: where every part that needs "now" gets it.
//
// Code that reads time takes a Clock& so tests can move time with FakeClock
// instead of sleeping. SystemClock reads the real wall clock. Both are
// thread-safe.
#pragma once

#include <atomic>
#include <chrono>

#include "base/time.h"

namespace cronkeep {

class Clock {
 public:
  virtual ~Clock() = default;
  // The current UTC instant.
  virtual TimePoint now() const = 0;
  // How long until `t`, finer than now()'s milliseconds where the clock has
  // it: a loop that sleeps until a due instant wakes at it, not up to a
  // millisecond after. Negative once `t` has passed.
  virtual std::chrono::microseconds until(TimePoint t) const { return t - now(); }
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override {
    return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
  }
  std::chrono::microseconds until(TimePoint t) const override {
    return std::chrono::ceil<std::chrono::microseconds>(t - std::chrono::system_clock::now());
  }
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start) : now_ms_(to_unix_ms(start)) {}
  TimePoint now() const override { return from_unix_ms(now_ms_.load()); }
  void set(TimePoint t) { now_ms_.store(to_unix_ms(t)); }
  void advance(Millis d) { now_ms_.fetch_add(d.count()); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace cronkeep
