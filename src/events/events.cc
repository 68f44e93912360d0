// The event bus: a list of subscribers behind a shared mutex (publishers
// share it, subscribe/unsubscribe take it exclusively), each subscriber with
// its own small mutex, a bounded deque and a condition variable. publish()
// holds a subscriber's mutex only to push (and maybe pop the oldest), so a
// slow reader never blocks a publisher for longer than that.
#include "events/events.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace cronkeep::events {

const char* to_string(Kind k) {
  switch (k) {
    case Kind::run_state: return "run_state";
    case Kind::log_line: return "log_line";
    case Kind::log_rotated: return "log_rotated";
    case Kind::log_truncated: return "log_truncated";
    case Kind::disk_pressure: return "log.disk_pressure";
    case Kind::progress: return "progress";
  }
  return "?";
}

struct Subscription::State {
  Filter filter;
  size_t capacity = 4096;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> queue;
  uint64_t dropped = 0;
  bool closed = false;
  bool bus_alive = true;  // cleared by ~Bus, so a later ~Subscription leaves the bus alone

  bool wants(const Event& e) const {
    if (filter.run_id && *filter.run_id != e.run_id) return false;
    if (filter.task && *filter.task != e.task) return false;
    if (filter.states_only && e.kind != Kind::run_state &&
        !(filter.with_disk_pressure && e.kind == Kind::disk_pressure) &&
        !(filter.with_progress && e.kind == Kind::progress))
      return false;
    return true;
  }
};

struct Bus::Impl {
  size_t capacity;
  mutable std::shared_mutex mu;
  std::vector<std::shared_ptr<Subscription::State>> subs;
  std::atomic<size_t> count{0};
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> dropped{0};
};

Subscription::Subscription(std::shared_ptr<State> state, Bus* bus) : state_(std::move(state)), bus_(bus) {}

Subscription::~Subscription() {
  bool alive;
  {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
    alive = state_->bus_alive;
  }
  if (alive && bus_) bus_->unsubscribe(state_.get());
}

Batch Subscription::take(std::chrono::milliseconds timeout) {
  State& s = *state_;
  std::unique_lock lock(s.mu);
  s.cv.wait_for(lock, timeout, [&] { return s.closed || !s.queue.empty() || s.dropped > 0; });
  Batch b;
  b.dropped = std::exchange(s.dropped, 0);
  b.events.assign(std::make_move_iterator(s.queue.begin()), std::make_move_iterator(s.queue.end()));
  s.queue.clear();
  return b;
}

void Subscription::close() {
  {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
  }
  state_->cv.notify_all();
}

bool Subscription::closed() const {
  std::lock_guard lock(state_->mu);
  return state_->closed;
}

Bus::Bus(size_t queue_capacity) : impl_(std::make_unique<Impl>()) { impl_->capacity = std::max<size_t>(1, queue_capacity); }

Bus::~Bus() {
  // Subscriptions may outlive the bus: close them and cut their link.
  std::unique_lock lock(impl_->mu);
  for (auto& s : impl_->subs) {
    {
      std::lock_guard sl(s->mu);
      s->closed = true;
      s->bus_alive = false;
    }
    s->cv.notify_all();
  }
  impl_->subs.clear();
  impl_->count = 0;
}

std::unique_ptr<Subscription> Bus::subscribe(Filter filter) {
  auto state = std::make_shared<Subscription::State>();
  state->filter = std::move(filter);
  state->capacity = impl_->capacity;
  {
    std::unique_lock lock(impl_->mu);
    impl_->subs.push_back(state);
    impl_->count = impl_->subs.size();
  }
  return std::unique_ptr<Subscription>(new Subscription(std::move(state), this));
}

void Bus::unsubscribe(const Subscription::State* state) {
  std::unique_lock lock(impl_->mu);
  std::erase_if(impl_->subs, [&](const auto& s) { return s.get() == state; });
  impl_->count = impl_->subs.size();
}

bool Bus::has_subscribers() const { return impl_->count.load(std::memory_order_relaxed) > 0; }

void Bus::publish(Event event) {
  if (!has_subscribers()) return;
  event.seq = ++impl_->seq;
  if (event.time_ms == 0)
    event.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  std::shared_lock lock(impl_->mu);
  Subscription::State* only = nullptr;
  size_t matching = 0;
  for (const auto& s : impl_->subs)
    if (s->wants(event)) {
      ++matching;
      only = s.get();
    }
  for (const auto& s : impl_->subs) {
    if (!s->wants(event)) continue;
    {
      std::lock_guard sl(s->mu);
      if (s->closed) continue;
      if (s->queue.size() >= s->capacity) {
        s->queue.pop_front();
        ++s->dropped;
        impl_->dropped.fetch_add(1, std::memory_order_relaxed);
      }
      // The last (or only) matching subscriber takes the event itself.
      if (matching == 1 && s.get() == only) s->queue.push_back(std::move(event));
      else s->queue.push_back(event);
    }
    s->cv.notify_one();
    --matching;
  }
}

uint64_t Bus::total_dropped() const { return impl_->dropped.load(); }

size_t Bus::subscriber_count() const { return impl_->count.load(); }

}  // namespace cronkeep::events
