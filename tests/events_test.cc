#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "events/events.h"

namespace cronkeep::events {
namespace {

using namespace std::chrono_literals;

Event line(int64_t run, int64_t n, std::string task = "t") {
  Event e;
  e.kind = Kind::log_line;
  e.task = std::move(task);
  e.run_id = run;
  e.line = n;
  e.text = "line " + std::to_string(n);
  return e;
}

TEST(Bus, DeliversInOrderWithIncreasingSeq) {
  Bus bus;
  auto sub = bus.subscribe();
  for (int i = 1; i <= 5; ++i) bus.publish(line(1, i));
  Batch b = sub->take(1s);
  ASSERT_EQ(b.events.size(), 5u);
  EXPECT_EQ(b.dropped, 0u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(b.events[i].line, static_cast<int64_t>(i + 1));
    if (i) {
      EXPECT_GT(b.events[i].seq, b.events[i - 1].seq);
    }
    EXPECT_GT(b.events[i].time_ms, 0);
  }
}

TEST(Bus, FiltersByRunAndTask) {
  Bus bus;
  auto by_run = bus.subscribe(Filter{7, std::nullopt});
  auto by_task = bus.subscribe(Filter{std::nullopt, std::string("b")});
  bus.publish(line(7, 1, "a"));
  bus.publish(line(8, 1, "b"));
  bus.publish(line(9, 1, "c"));
  auto r = by_run->take(1s);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].run_id, 7);
  auto t = by_task->take(1s);
  ASSERT_EQ(t.events.size(), 1u);
  EXPECT_EQ(t.events[0].task, "b");
}

TEST(Bus, SlowSubscriberLosesOldestEventsAndIsToldHowMany) {
  Bus bus(4);
  auto slow = bus.subscribe();
  auto fast = bus.subscribe();
  for (int i = 1; i <= 10; ++i) {
    bus.publish(line(1, i));
    ASSERT_EQ(fast->take(1s).events.size(), 1u);  // the fast one keeps up
  }
  Batch b = slow->take(1s);
  EXPECT_EQ(b.dropped, 6u);
  ASSERT_EQ(b.events.size(), 4u);
  EXPECT_EQ(b.events.front().line, 7);
  EXPECT_EQ(b.events.back().line, 10);
  EXPECT_EQ(bus.total_dropped(), 6u);
  EXPECT_EQ(slow->take(10ms).dropped, 0u);  // reported once
}

TEST(Bus, PublishingToASubscriberThatNeverReadsDoesNotBlock) {
  Bus bus;
  auto idle = bus.subscribe();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100'000; ++i) bus.publish(line(1, i));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  Batch b = idle->take(1s);
  EXPECT_EQ(b.events.size(), 4096u);
  EXPECT_EQ(b.dropped, 100'000u - 4096u);
}

TEST(Bus, WithoutSubscribersPublishIsANoOp) {
  Bus bus;
  EXPECT_FALSE(bus.has_subscribers());
  bus.publish(line(1, 1));
  auto sub = bus.subscribe();
  EXPECT_TRUE(bus.has_subscribers());
  EXPECT_TRUE(sub->take(10ms).events.empty());  // the earlier event went nowhere
}

TEST(Bus, TakeTimesOutEmptyAndCloseWakesABlockedTake) {
  Bus bus;
  auto sub = bus.subscribe();
  Batch b = sub->take(20ms);
  EXPECT_TRUE(b.events.empty());
  EXPECT_EQ(b.dropped, 0u);
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    sub->close();
  });
  const auto t0 = std::chrono::steady_clock::now();
  sub->take(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  closer.join();
  EXPECT_TRUE(sub->closed());
}

TEST(Bus, DestroyingASubscriptionUnsubscribes) {
  Bus bus;
  {
    auto a = bus.subscribe();
    auto b = bus.subscribe();
    EXPECT_EQ(bus.subscriber_count(), 2u);
  }
  EXPECT_EQ(bus.subscriber_count(), 0u);
  EXPECT_FALSE(bus.has_subscribers());
}

TEST(Bus, ASubscriptionMayOutliveTheBus) {
  auto bus = std::make_unique<Bus>();
  auto sub = bus->subscribe();
  bus->publish(line(1, 1));
  bus.reset();
  EXPECT_TRUE(sub->closed());
  EXPECT_EQ(sub->take(10ms).events.size(), 1u);
}

TEST(Bus, ConcurrentPublishersLoseNothingUnaccounted) {
  Bus bus(256);
  auto sub = bus.subscribe();
  constexpr int kThreads = 4, kEach = 20'000;
  std::atomic<bool> done{false};
  uint64_t received = 0, dropped = 0;
  std::thread consumer([&] {
    while (true) {
      Batch b = sub->take(5ms);
      received += b.events.size();
      dropped += b.dropped;
      if (done && b.events.empty() && b.dropped == 0) break;
    }
  });
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t)
    publishers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) bus.publish(line(t, i));
    });
  for (auto& p : publishers) p.join();
  done = true;
  consumer.join();
  EXPECT_EQ(received + dropped, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(dropped, bus.total_dropped());
}

}  // namespace
}  // namespace cronkeep::events
