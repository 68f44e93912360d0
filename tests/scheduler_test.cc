// The scheduler against a fake clock, real processes, real log files and a
// real SQLite database. Time only moves when a test says so; processes that
// must stay busy wait for a file the test creates.
#include <gtest/gtest.h>

#include <csignal>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include "logs/logs.h"
#include "scheduler/scheduler.h"
#include "pg_test_util.h"
#include "test_util.h"

namespace cronkeep::scheduler {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::TempDir;
using store::RunStatus;
using store::Trigger;

// 2026-11-23T04:00:00Z, a multiple of every interval used below.
const TimePoint kT0 = from_unix_ms(1'795'406'400'000);

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : clock_(kT0) {
    auto s = store::open_sqlite(dir_ / "cronkeep.db");
    EXPECT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    config_.daemon.data_dir = dir_.path();
  }
  ~SchedulerTest() override {
    release();
    if (scheduler_) scheduler_->shutdown();
  }

  config::Task& add_task(std::string name, std::string cron, std::string run) {
    config::Task t;
    t.name = std::move(name);
    t.cron = std::move(cron);
    t.run = std::move(run);
    t.workdir = dir_.path();
    config_.tasks.push_back(t);
    return config_.tasks.back();
  }
  // A command that runs until release() is called.
  static std::string blocking(const std::string& text = "busy") {
    return "echo " + text + "; while [ ! -e release ]; do sleep 0.02; done";
  }
  void release() { std::ofstream(dir_ / "release").flush(); }

  void start(Millis shutdown_timeout = 10s, std::vector<SystemTask> system = {}) {
    EXPECT_TRUE(config::prepare(config_).empty());
    // The steady clock follows the fake wall clock except by the steps a
    // test makes with step_wall().
    scheduler_ = std::make_unique<Scheduler>(
        config_, *store_, clock_,
        Options{dir_.path(), shutdown_timeout, 42, std::move(system), nullptr,
                [this] { return Millis(to_unix_ms(clock_.now()) - stepped_ms_.load()); }, node_});
    auto st = scheduler_->start();
    ASSERT_TRUE(st) << st.error().message;
  }
  void at(Millis offset) {
    clock_.set(kT0 + offset);
    scheduler_->tick();
  }
  // Steps the wall clock by `d` (as `date -s` or NTP would) without moving
  // the steady clock, then ticks.
  void step_wall(Millis d) {
    stepped_ms_ += d.count();
    clock_.advance(d);
    scheduler_->tick();
  }
  std::optional<TimePoint> next_fire() { return scheduler_->tasks().front().next_fire; }
  void settle() { ASSERT_TRUE(scheduler_->wait_idle(20s)); }
  // Waits (in real time, bounded) until the task has `n` runs with `status`.
  bool wait_for(const std::string& task, RunStatus status, size_t n) {
    for (int i = 0; i < 1000; ++i) {
      if (runs(task, status).size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::vector<store::Run> runs(const std::string& task, std::optional<RunStatus> status = std::nullopt) {
    auto r = store_->list_runs(store::RunQuery{task, 1000, std::nullopt, status});
    EXPECT_TRUE(r);
    std::vector<store::Run> out(r->rbegin(), r->rend());  // oldest first
    return out;
  }
  void record_fire(const std::string& task, TimePoint scheduled) {
    store::NewRun r;
    r.task = task;
    r.status = RunStatus::succeeded;
    r.scheduled_at = scheduled;
    r.created_at = scheduled;
    r.finished_at = scheduled;
    ASSERT_TRUE(store_->insert_run(r));
  }

  TempDir dir_;
  std::string node_ = "a";  // this scheduler's node name
  FakeClock clock_;
  std::atomic<int64_t> stepped_ms_{0};
  std::unique_ptr<store::Store> store_;
  config::Config config_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, FiresOnTimeAndRecordsTheRunWithItsLog) {
  add_task("hello", "@every 10s", "echo hello; echo oops >&2; exit 0");
  start();
  at(9'999ms);
  settle();
  EXPECT_TRUE(runs("hello").empty());
  at(10s);
  settle();
  auto all = runs("hello");
  ASSERT_EQ(all.size(), 1u);
  const store::Run& r = all[0];
  EXPECT_EQ(r.status, RunStatus::succeeded) << r.message;
  EXPECT_EQ(r.trigger, Trigger::schedule);
  EXPECT_EQ(r.scheduled_at, kT0 + 10s);
  EXPECT_EQ(r.started_at, kT0 + 10s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.log_bytes, 11);
  EXPECT_TRUE(std::regex_match(r.log_path, std::regex(R"(logs/hello/20261123_040010_\d+\.log)"))) << r.log_path;
  EXPECT_EQ(cronkeep::testing::read_file(dir_ / r.log_path), "hello\noops\n");
  // `echo` peaks far below this process: its figure cannot be told from ours.
  EXPECT_FALSE(r.max_rss_kb);
  ASSERT_TRUE(scheduler_->tasks()[0].next_fire);
  EXPECT_EQ(*scheduler_->tasks()[0].next_fire, kT0 + 20s);
}

// Bulk disk work (retention's removal of files) is asked to wait while a
// fire is near or its start is being prepared, and only then.
TEST_F(SchedulerTest, BulkIoWaitsOnlyNearAFireAndWhileItStarts) {
  add_task("hello", "@every 10s", "true");
  start();
  at(1s);  // the next fire is at 10 s
  EXPECT_EQ(scheduler_->bulk_io_wait(), Millis(0));
  clock_.set(kT0 + 10s - Scheduler::kBulkIoLead - 1ms);
  EXPECT_EQ(scheduler_->bulk_io_wait(), Millis(0));
  clock_.set(kT0 + 10s - 20ms);
  EXPECT_EQ(scheduler_->bulk_io_wait(), Millis(20));
  clock_.set(kT0 + 10s + 5ms);  // due, not yet ticked
  EXPECT_GT(scheduler_->bulk_io_wait(), Millis(0));
  scheduler_->tick();
  settle();
  EXPECT_EQ(scheduler_->bulk_io_wait(), Millis(0));  // started; the next fire is 10 s away
  ASSERT_EQ(runs("hello").size(), 1u);
  scheduler_->shutdown();
  clock_.set(kT0 + 20s);
  EXPECT_EQ(scheduler_->bulk_io_wait(), Millis(0));  // stopped: nothing to wait for
}

// The children's loop under load: 500 runs at once, each printing a random
// number of lines to stdout and stderr (some a 100+ KiB line), exiting with
// a random code, some hanging until their timeout. Every run must end with
// the right status and exit code, and its log must hold every byte, each
// stream's lines in the order it wrote them. Real processes, a fake clock.
TEST_F(SchedulerTest, FiveHundredConcurrentChildrenKeepEveryByteTheirStatusAndExitCode) {
  auto& t = add_task("many", "", R"(i=0; while [ $i -lt $NO ]; do echo "o$CRONKEEP_RUN_ID.$i"; i=$((i+1)); done
j=0; while [ $j -lt $NE ]; do echo "e$CRONKEEP_RUN_ID.$j" >&2; j=$((j+1)); done
if [ $BIG -gt 0 ]; then head -c $BIG /dev/zero | tr '\0' b; echo; fi
sleep $S; exit $CODE)");
  t.policy.max_concurrent = 500;
  t.policy.queue_max = 500;
  t.policy.timeout = 8s;
  t.policy.graceful_stop = 500ms;
  start();
  struct Plan {
    int no, ne, big, code;
    bool hangs;
  };
  std::mt19937 rng(11);
  std::map<int64_t, Plan> plans;
  for (int n = 0; n < 500; ++n) {
    Plan p{static_cast<int>(rng() % 120), static_cast<int>(rng() % 60), rng() % 10 == 0 ? 100'000 + static_cast<int>(rng() % 100'000) : 0,
           static_cast<int>(rng() % 4), rng() % 10 == 0};
    // Lines are written whole (echo), so none is split between the streams;
    // a big line is written in pieces, so its run writes nothing to stderr
    // (a stderr line read between two pieces would land inside it, which is
    // arrival order, but not what this test parses).
    if (p.big > 0) p.ne = 0;
    const Env env{{"NO", std::to_string(p.no)}, {"NE", std::to_string(p.ne)}, {"BIG", std::to_string(p.big)},
                  {"CODE", std::to_string(p.code)}, {"S", p.hangs ? "60" : std::to_string(rng() % 3) + ".0" + std::to_string(rng() % 10)}};
    auto id = scheduler_->run_now("many", env);
    ASSERT_TRUE(id) << id.error().message;
    plans[*id] = p;
  }
  ASSERT_TRUE(scheduler_->wait_idle(240s));
  auto all = runs("many");
  ASSERT_EQ(all.size(), 500u);
  for (const store::Run& r : all) {
    const Plan& p = plans.at(r.id);
    const std::string id = std::to_string(r.id);
    if (p.hangs) {
      EXPECT_EQ(r.status, RunStatus::timeout) << r.id << ": " << r.message;
      EXPECT_EQ(r.signal, SIGTERM) << r.id << ": " << r.message;
    } else {
      EXPECT_EQ(r.status, p.code == 0 ? RunStatus::succeeded : RunStatus::failed) << r.id << ": " << r.message;
      EXPECT_EQ(r.exit_code, p.code) << r.id << ": " << r.message;
    }
    const std::string log = cronkeep::testing::read_file(dir_ / r.log_path);
    EXPECT_EQ(r.log_bytes, static_cast<int64_t>(log.size())) << r.id;
    std::vector<std::string> out, err;
    std::string big;
    size_t expected = 0;
    for (int i = 0; i < p.no; ++i) expected += ("o" + id + "." + std::to_string(i) + "\n").size();
    for (int i = 0; i < p.ne; ++i) expected += ("e" + id + "." + std::to_string(i) + "\n").size();
    if (p.big > 0) expected += static_cast<size_t>(p.big) + 1;
    ASSERT_EQ(log.size(), expected) << r.id;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("o")) out.push_back(line);
      else if (line.starts_with("e")) err.push_back(line);
      else big = line;
    }
    ASSERT_EQ(out.size(), static_cast<size_t>(p.no)) << r.id;
    ASSERT_EQ(err.size(), static_cast<size_t>(p.ne)) << r.id;
    for (int i = 0; i < p.no; ++i) EXPECT_EQ(out[static_cast<size_t>(i)], "o" + id + "." + std::to_string(i));
    for (int i = 0; i < p.ne; ++i) EXPECT_EQ(err[static_cast<size_t>(i)], "e" + id + "." + std::to_string(i));
    EXPECT_EQ(big, std::string(static_cast<size_t>(p.big), 'b')) << r.id;
  }
}

TEST_F(SchedulerTest, FailedCommandEndsFailedWithItsExitCode) {
  add_task("bad", "@every 10s", "echo nope; exit 4");
  start();
  at(10s);
  settle();
  auto r = runs("bad");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, RunStatus::failed);
  EXPECT_EQ(r[0].exit_code, 4);
  EXPECT_EQ(r[0].message, "exit code 4");
}

TEST_F(SchedulerTest, CommandThatCannotStartFailsWithTheReason) {
  add_task("nowhere", "@every 10s", "true").workdir = dir_ / "missing-dir";
  start();
  at(10s);
  settle();
  auto r = runs("nowhere");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, RunStatus::failed);
  EXPECT_NE(r[0].message.find("missing-dir"), std::string::npos) << r[0].message;
  EXPECT_NE(r[0].message.find("No such file"), std::string::npos) << r[0].message;
}

TEST_F(SchedulerTest, TimeoutEndsTheRunAsTimeout) {
  add_task("slow", "@every 10s", "echo start; sleep 30").policy.timeout = 200ms;
  start();
  at(10s);
  settle();
  auto r = runs("slow");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, RunStatus::timeout);
  EXPECT_NE(r[0].message.find("timed out after 200ms"), std::string::npos) << r[0].message;
}

TEST_F(SchedulerTest, OverlapSkipRecordsASkippedRun) {
  auto& t = add_task("busy", "@every 10s", blocking());
  t.policy.on_overlap = config::Overlap::skip;
  start();
  at(10s);
  ASSERT_TRUE(wait_for("busy", RunStatus::running, 1));
  at(20s);
  release();
  settle();
  auto r = runs("busy");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, RunStatus::succeeded);
  EXPECT_EQ(r[1].status, RunStatus::skipped);
  EXPECT_EQ(r[1].scheduled_at, kT0 + 20s);
  EXPECT_NE(r[1].message.find("on_overlap = skip"), std::string::npos);
}

TEST_F(SchedulerTest, OverlapQueueRunsLaterAndSkipsBeyondQueueMax) {
  auto& t = add_task("busy", "@every 10s", blocking());
  t.policy.on_overlap = config::Overlap::queue;
  t.policy.queue_max = 1;
  start();
  at(10s);
  ASSERT_TRUE(wait_for("busy", RunStatus::running, 1));
  at(20s);
  at(30s);
  auto mid = runs("busy");
  ASSERT_EQ(mid.size(), 3u);
  EXPECT_EQ(mid[1].status, RunStatus::pending);
  EXPECT_EQ(mid[2].status, RunStatus::skipped);
  EXPECT_NE(mid[2].message.find("queue_max = 1"), std::string::npos);
  release();
  settle();
  auto r = runs("busy");
  EXPECT_EQ(r[0].status, RunStatus::succeeded);
  EXPECT_EQ(r[1].status, RunStatus::succeeded);
  EXPECT_EQ(r[1].scheduled_at, kT0 + 20s);
}

TEST_F(SchedulerTest, OverlapTerminateCancelsTheRunningRunAndStartsTheNewOne) {
  auto& t = add_task("busy", "@every 10s", "echo first; sleep 30");
  t.policy.on_overlap = config::Overlap::terminate;
  t.policy.graceful_stop = 1s;
  start();
  at(10s);
  ASSERT_TRUE(wait_for("busy", RunStatus::running, 1));
  config_.tasks[0].run = "unused";  // the scheduler holds its own copy
  at(20s);
  ASSERT_TRUE(wait_for("busy", RunStatus::cancelled, 1));
  ASSERT_TRUE(wait_for("busy", RunStatus::running, 1));
  auto r = runs("busy");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, RunStatus::cancelled);
  EXPECT_NE(r[0].message.find("terminated by a newer fire"), std::string::npos) << r[0].message;
  EXPECT_EQ(r[1].scheduled_at, kT0 + 20s);
  ASSERT_TRUE(scheduler_->cancel(r[1].id));
  settle();
  EXPECT_EQ(runs("busy")[1].status, RunStatus::cancelled);
}

TEST_F(SchedulerTest, MaxConcurrentAllowsParallelRuns) {
  auto& t = add_task("wide", "@every 10s", blocking());
  t.policy.max_concurrent = 3;
  t.policy.on_overlap = config::Overlap::skip;
  start();
  for (int i = 1; i <= 4; ++i) at(i * 10s);
  ASSERT_TRUE(wait_for("wide", RunStatus::running, 3));
  EXPECT_EQ(runs("wide", RunStatus::skipped).size(), 1u);
  release();
  settle();
  EXPECT_EQ(runs("wide", RunStatus::succeeded).size(), 3u);
}

TEST_F(SchedulerTest, CatchUpLatestRunsTheNewestLostFireAndRecordsTheRestMissed) {
  add_task("t", "@every 10s", "echo caught");
  record_fire("t", kT0);
  clock_.set(kT0 + 35s);  // fires at +10, +20, +30 were lost
  start();
  settle();
  auto r = runs("t");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[1].status, RunStatus::missed);
  EXPECT_EQ(r[1].scheduled_at, kT0 + 10s);
  EXPECT_EQ(r[2].status, RunStatus::missed);
  EXPECT_EQ(r[3].trigger, Trigger::catch_up);
  EXPECT_EQ(r[3].scheduled_at, kT0 + 30s);
  EXPECT_EQ(r[3].status, RunStatus::succeeded);
  EXPECT_EQ(*scheduler_->tasks()[0].next_fire, kT0 + 40s);
}

TEST_F(SchedulerTest, CatchUpAllRunsUpToMaxCatchUpRunsNewestFirstInOrder) {
  auto& t = add_task("t", "@every 10s", "true");
  t.policy.catch_up = config::CatchUp::all;
  t.policy.max_catch_up_runs = 2;
  record_fire("t", kT0);
  clock_.set(kT0 + 55s);  // +10 … +50 lost
  start();
  settle();
  auto caught = runs("t");
  std::vector<TimePoint> ran, missed;
  for (const store::Run& r : caught) {
    if (r.trigger == Trigger::catch_up) ran.push_back(*r.scheduled_at);
    if (r.status == RunStatus::missed) missed.push_back(*r.scheduled_at);
  }
  EXPECT_EQ(ran, (std::vector<TimePoint>{kT0 + 40s, kT0 + 50s}));
  // Two individual rows (+20, +30) and one summary for the older one (+10).
  ASSERT_EQ(missed.size(), 3u);
  EXPECT_EQ(missed[0], kT0 + 10s);
}

TEST_F(SchedulerTest, CatchUpSkipRecordsEveryLostFireAsMissed) {
  auto& t = add_task("t", "@every 10s", "true");
  t.policy.catch_up = config::CatchUp::skip;
  record_fire("t", kT0);
  clock_.set(kT0 + 35s);
  start();
  settle();
  EXPECT_EQ(runs("t", RunStatus::missed).size(), 3u);
  EXPECT_EQ(runs("t").size(), 4u);
}

TEST_F(SchedulerTest, ALongOutageIsSummarisedInsteadOfOneRowPerFire) {
  auto& t = add_task("t", "@every 1s", "true");
  t.policy.catch_up = config::CatchUp::skip;
  t.policy.max_catch_up_runs = 5;
  record_fire("t", kT0);
  clock_.set(kT0 + 3h);
  start();
  auto missed = runs("t", RunStatus::missed);
  ASSERT_EQ(missed.size(), 6u);
  EXPECT_NE(missed[0].message.find("10795 fire(s)"), std::string::npos) << missed[0].message;
}

TEST_F(SchedulerTest, ALateLoopFiresOnceAndRecordsTheSkippedFiresAsMissed) {
  add_task("t", "@every 10s", "true");
  start();
  at(35s);
  settle();
  auto r = runs("t");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].status, RunStatus::missed);
  EXPECT_EQ(r[1].status, RunStatus::missed);
  EXPECT_EQ(r[2].scheduled_at, kT0 + 30s);
  EXPECT_EQ(r[2].status, RunStatus::succeeded);
}

TEST_F(SchedulerTest, RetriesFailuresWithExponentialBackoffAsRunsOfTheirOwn) {
  auto& t = add_task("flaky", "@every 1h", "exit 1");
  t.policy.retry_attempts = 2;
  t.policy.retry_delay = 5s;
  t.policy.retry_backoff = config::Backoff::exponential;
  clock_.set(kT0 - 1h + 1s);
  start();
  at(0s);
  settle();
  at(4'999ms);
  settle();
  ASSERT_EQ(runs("flaky").size(), 1u);
  at(5s);
  settle();
  ASSERT_EQ(runs("flaky").size(), 2u);
  at(14'999ms);  // second wait is 10s
  settle();
  ASSERT_EQ(runs("flaky").size(), 2u);
  at(15s);
  settle();
  at(1h - 1s);
  settle();
  auto r = runs("flaky");
  ASSERT_EQ(r.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r[i].attempt, i + 1);
    EXPECT_EQ(r[i].status, RunStatus::failed);
  }
  EXPECT_EQ(r[1].trigger, Trigger::retry);
  EXPECT_EQ(r[1].retry_of, r[0].id);
  EXPECT_EQ(r[2].retry_of, r[0].id);
  EXPECT_FALSE(r[0].retry_of);
}

TEST_F(SchedulerTest, ALogOverflowThatKillsTheTaskIsAFailureForRetries) {
  // log_on_full = kill_task ends the run log_overflow: the task did not do
  // its work, like a timeout, so it is retried (as RunWisp does).
  auto& t = add_task("chatty", "@every 1h", "head -c 100000 /dev/zero; sleep 30");
  t.policy.log_max_size = 4096;
  t.policy.log_on_full = config::LogOnFull::kill_task;
  t.policy.graceful_stop = 0ms;
  t.policy.retry_attempts = 1;
  t.policy.retry_delay = 5s;
  t.policy.retry_backoff = config::Backoff::constant;
  clock_.set(kT0 - 1h + 1s);
  start();
  at(0s);
  settle();
  ASSERT_EQ(runs("chatty").size(), 1u);
  EXPECT_EQ(runs("chatty")[0].status, RunStatus::log_overflow) << runs("chatty")[0].message;
  at(4'999ms);
  settle();
  ASSERT_EQ(runs("chatty").size(), 1u);
  at(5s);
  settle();
  auto r = runs("chatty");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].trigger, Trigger::retry);
  EXPECT_EQ(r[1].attempt, 2);
  EXPECT_EQ(r[1].retry_of, r[0].id);
  EXPECT_EQ(r[1].status, RunStatus::log_overflow);
  at(1h - 1s);  // retry_attempts = 1: no third attempt
  settle();
  EXPECT_EQ(runs("chatty").size(), 2u);
}

TEST_F(SchedulerTest, JitterDelaysTheStartButNotTheNominalTime) {
  add_task("j", "@every 1m", "true").policy.jitter = 30s;
  start();
  const auto due = scheduler_->tasks()[0].next_fire;
  ASSERT_EQ(due, kT0 + 1min);
  at(1min + 30s);
  settle();
  auto r = runs("j");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].scheduled_at, kT0 + 1min);
}

TEST_F(SchedulerTest, WithAnotherLiveNodeFiresAreSharedAndTheOthersAreClaimedAfterTheGrace) {
  // Node b never claims here (it is only named): the fires offered to b
  // first are claimed by a kClaimGrace late, as when b is dead or slow.
  add_task("t", "@every 1s", "true");
  start();
  scheduler_->set_peers({"a", "b"});
  int first = 0, after_grace = 0;
  for (int i = 1; i <= 20; ++i) {
    at(Millis(i * 1000));
    const size_t now = runs("t").size();
    at(Millis(i * 1000) + Scheduler::kClaimGrace - 1ms);
    ASSERT_EQ(runs("t").size(), now) << "nothing between the first claim and the grace";
    at(Millis(i * 1000) + Scheduler::kClaimGrace);
    ASSERT_EQ(runs("t").size(), static_cast<size_t>(i)) << "every fire claimed by the grace";
    (now == static_cast<size_t>(i) ? first : after_grace)++;
  }
  settle();
  EXPECT_GE(first, 4) << "node a is offered some fires first";
  EXPECT_GE(after_grace, 4) << "node b is offered some fires first";
  for (const store::Run& r : runs("t")) EXPECT_EQ(r.status, RunStatus::succeeded);

  // Alone again: every fire at once.
  scheduler_->set_peers({"a"});
  for (int i = 21; i <= 25; ++i) {
    at(Millis(i * 1000));
    EXPECT_EQ(runs("t").size(), static_cast<size_t>(i));
  }
}

TEST_F(SchedulerTest, APinnedTaskFiresOnlyOnItsNodesAndRunsNowAnywhere) {
  add_task("elsewhere", "@every 1s", "true").nodes = {"b"};
  add_task("here", "@every 1s", "true").nodes = {"b", "a"};
  start();
  scheduler_->set_peers({"a", "b"});
  for (int i = 1; i <= 5; ++i) at(Millis(i * 1000) + Scheduler::kClaimGrace);
  settle();
  EXPECT_TRUE(runs("elsewhere").empty());
  EXPECT_EQ(runs("here").size(), 5u);
  EXPECT_FALSE(scheduler_->tasks()[0].next_fire);
  ASSERT_TRUE(scheduler_->run_now("elsewhere"));
  settle();
  EXPECT_EQ(runs("elsewhere", RunStatus::succeeded).size(), 1u);
}

TEST_F(SchedulerTest, RunNowStartsAManualRunAndRefusesUnknownTasks) {
  add_task("t", "@yearly", "echo manual");
  start();
  auto id = scheduler_->run_now("t");
  ASSERT_TRUE(id);
  settle();
  auto r = store_->get_run(*id);
  EXPECT_EQ(r->trigger, Trigger::manual);
  EXPECT_EQ(r->status, RunStatus::succeeded);
  EXPECT_FALSE(r->scheduled_at);
  EXPECT_EQ(scheduler_->run_now("nope").error().code, ErrorCode::not_found);
}

TEST_F(SchedulerTest, StartUpMarksRunsLeftInFlightAsCrashedAndKeepsTheirLogs) {
  add_task("t", "@yearly", "true");
  store::NewRun left;
  left.task = "t";
  left.created_at = kT0 - 1min;
  auto id = store_->insert_run(left);
  ASSERT_TRUE(store_->mark_running(*id, "logs/t/partial.log", kT0 - 1min));
  std::filesystem::create_directories(dir_ / "logs/t");
  std::ofstream(dir_ / "logs/t/partial.log") << "half a li";
  start();
  auto r = store_->get_run(*id);
  EXPECT_EQ(r->status, RunStatus::crashed);
  EXPECT_EQ(r->exit_code, -2);
  EXPECT_EQ(cronkeep::testing::read_file(dir_ / "logs/t/partial.log"), "half a li");
  // Its .meta now says the log is complete as far as it goes, so `check` is clean.
  EXPECT_TRUE(logs::check_sidecars(dir_ / "logs/t/partial.log").finalized);
  EXPECT_NE(cronkeep::testing::read_file(dir_ / "logs/t/partial.log.meta").find("crashed=1"), std::string::npos);
}

TEST_F(SchedulerTest, StartUpAdoptsALogCreatedJustBeforeTheDaemonDied) {
  add_task("t", "@yearly", "true");
  store::NewRun left;
  left.task = "t";
  left.created_at = kT0 - 1min;
  auto id = store_->insert_run(left);  // pending, no log_path yet
  const std::string rel = "logs/t/20261123_035900_" + std::to_string(*id) + ".log";
  std::filesystem::create_directories(dir_ / "logs/t");
  std::ofstream(dir_ / rel) << "early output";
  start();
  auto r = store_->get_run(*id);
  EXPECT_EQ(r->status, RunStatus::crashed);
  EXPECT_EQ(r->log_path, rel);
  EXPECT_TRUE(logs::check_sidecars(dir_ / rel).finalized);
}

TEST_F(SchedulerTest, ShutdownWaitsThenCancelsRunningAndQueuedRuns) {
  auto& t = add_task("long", "@every 10s", "echo going; sleep 30");
  t.policy.graceful_stop = 1s;
  start(300ms);
  at(10s);
  ASSERT_TRUE(wait_for("long", RunStatus::running, 1));
  at(20s);  // queued behind the first
  scheduler_->shutdown();
  auto r = runs("long");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, RunStatus::cancelled);
  EXPECT_NE(r[0].message.find("shut down"), std::string::npos) << r[0].message;
  EXPECT_EQ(r[1].status, RunStatus::cancelled);
  EXPECT_FALSE(r[1].started_at);
  EXPECT_EQ(scheduler_->run_now("long").error().code, ErrorCode::conflict);
}

TEST_F(SchedulerTest, ShutdownLetsRunsThatEndInTimeSucceed) {
  add_task("quick", "@every 10s", "sleep 0.2; echo done");
  start(10s);
  at(10s);
  ASSERT_TRUE(wait_for("quick", RunStatus::running, 1));
  scheduler_->shutdown();
  EXPECT_EQ(runs("quick")[0].status, RunStatus::succeeded);
}

TEST_F(SchedulerTest, TasksFollowTheirOwnTimeZone) {
  add_task("berlin", "0 4 * * *", "true").timezone = "Europe/Berlin";
  start();
  // 04:00 in Berlin (UTC+1 in November) is 03:00 UTC; kT0 is 04:00 UTC.
  EXPECT_EQ(*scheduler_->tasks()[0].next_fire, kT0 + 23h);
  EXPECT_EQ(scheduler_->tasks()[0].timezone, "Europe/Berlin");
}

TEST_F(SchedulerTest, AfterTheWallClockStepsBackFiresResumeFromTheNewNow) {
  add_task("t", "@every 10s", "true");
  start();
  at(10s);
  settle();
  ASSERT_EQ(runs("t").size(), 1u);
  ASSERT_EQ(next_fire(), kT0 + 20s);
  step_wall(-2h);  // now kT0 - 2h + 10s
  // Not kT0 + 20s: the task would stall for two hours.
  EXPECT_EQ(next_fire(), kT0 - 2h + 20s);
  at(-2h + 19'999ms);
  settle();
  EXPECT_EQ(runs("t").size(), 1u);
  at(-2h + 20s);
  settle();
  at(-2h + 30s);
  settle();
  auto r = runs("t");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[1].scheduled_at, kT0 - 2h + 20s);
  EXPECT_EQ(r[2].scheduled_at, kT0 - 2h + 30s);
  EXPECT_EQ(r[2].status, RunStatus::succeeded);
}

TEST_F(SchedulerTest, AfterTheWallClockStepsForwardPassedFiresAreLostFiresAndFiresResume) {
  add_task("t", "@every 10m", "true");
  start();
  at(10min);
  settle();
  step_wall(1h);  // now kT0 + 1h10m: fires at 20m..70m were passed over
  settle();
  auto r = runs("t");
  ASSERT_EQ(r.size(), 7u);
  for (int i = 1; i < 6; ++i) EXPECT_EQ(r[i].status, RunStatus::missed) << i;
  EXPECT_EQ(r[6].scheduled_at, kT0 + 70min);
  EXPECT_EQ(r[6].status, RunStatus::succeeded);
  EXPECT_EQ(next_fire(), kT0 + 80min);
  at(80min);
  settle();
  EXPECT_EQ(runs("t").size(), 8u);
}

TEST_F(SchedulerTest, ARetryKeepsItsRealWaitAcrossWallClockSteps) {
  auto& t = add_task("flaky", "@every 1h", "exit 1");
  t.policy.retry_attempts = 2;
  t.policy.retry_delay = 10s;
  t.policy.retry_backoff = config::Backoff::constant;
  clock_.set(kT0 - 1h + 1s);
  start();
  at(0s);
  settle();
  ASSERT_EQ(runs("flaky").size(), 1u);
  step_wall(30min);  // forward: the retry is not due at once
  settle();
  EXPECT_EQ(runs("flaky").size(), 1u);
  at(30min + 9'999ms);
  settle();
  EXPECT_EQ(runs("flaky").size(), 1u);
  at(30min + 10s);
  settle();
  ASSERT_EQ(runs("flaky").size(), 2u);
  step_wall(-20min);  // back: the second retry is not 20 minutes away
  at(10min + 20s);
  settle();
  auto r = runs("flaky");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].trigger, Trigger::retry);
  EXPECT_EQ(r[2].attempt, 3);
}

TEST_F(SchedulerTest, TheLoopNoticesAWallClockStepWithinASecond) {
  // Real waiting: nothing wakes the loop but its own bounded sleep.
  add_task("t", "@every 10s", "true");
  start();
  std::thread loop([&] { scheduler_->run_loop(); });
  ASSERT_EQ(next_fire(), kT0 + 10s);
  stepped_ms_ += Millis(-2h).count();
  clock_.advance(-2h);
  bool seen = false;
  for (int i = 0; i < 300 && !seen; ++i) {  // up to 3 s
    std::this_thread::sleep_for(10ms);
    seen = next_fire() == kT0 - 2h + 10s;
  }
  scheduler_->shutdown();
  loop.join();
  EXPECT_TRUE(seen) << "next fire still " << (next_fire() ? format_rfc3339(*next_fire()) : "none");
}

TEST_F(SchedulerTest, SystemTasksAreRecordedAsSystemRunsWithTheirResult) {
  int calls = 0;
  std::vector<SystemTask> system = {
      {"cronkeep:ok", "@every 1m", [&](int64_t) -> Result<std::string> { return "did " + std::to_string(++calls); },
       std::nullopt},
      {"cronkeep:broken", "@every 1m",
       [](int64_t) -> Result<std::string> { return fail(ErrorCode::io, "disk on fire"); }, std::nullopt},
  };
  start(10s, std::move(system));
  at(1min);
  settle();
  auto ok = runs("cronkeep:ok");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].trigger, Trigger::system);
  EXPECT_EQ(ok[0].status, RunStatus::succeeded);
  EXPECT_EQ(ok[0].message, "did 1");
  EXPECT_EQ(ok[0].log_path, "");
  auto broken = runs("cronkeep:broken");
  ASSERT_EQ(broken.size(), 1u);
  EXPECT_EQ(broken[0].status, RunStatus::failed);
  EXPECT_EQ(broken[0].message, "disk on fire");
  auto id = scheduler_->run_now("cronkeep:ok");  // on demand
  ASSERT_TRUE(id);
  settle();
  EXPECT_EQ(store_->get_run(*id)->message, "did 2");
  EXPECT_TRUE(scheduler_->tasks().back().system);
}

// One node of several on a PostgreSQL database: its own data directory,
// store connection, fake clock and scheduler, running `tasks` (each
// `@every 1s` with the given command and overlap settings).
struct PgNode {
  TempDir dir;
  config::Config config;
  std::unique_ptr<store::Store> store;
  FakeClock clock{kT0};
  std::unique_ptr<Scheduler> scheduler;

  // Returns "" or why the node could not start.
  std::string start(const std::string& url, const std::string& name, std::vector<config::Task> tasks) {
    auto s = store::open_postgres(url, store::OpenOptions{.node = name});
    if (!s) return s.error().message;
    store = std::move(*s);
    config.daemon.data_dir = dir.path();
    for (config::Task& t : tasks) {
      t.cron = "@every 1s";
      t.workdir = dir.path();
      config.tasks.push_back(t);
    }
    if (!config::prepare(config).empty()) return "config::prepare refused the tasks";
    scheduler = std::make_unique<Scheduler>(config, *store, clock,
                                            Options{dir.path(), 10s, 42, {}, nullptr,
                                                    [this] { return Millis(to_unix_ms(clock.now())); }, name});
    auto st = scheduler->start();
    return st ? "" : st.error().message;
  }
};

config::Task pg_task(std::string name, std::string run, int max_concurrent = 1,
                     config::Overlap overlap = config::Overlap::queue) {
  config::Task t;
  t.name = std::move(name);
  t.run = std::move(run);
  t.policy.max_concurrent = max_concurrent;
  t.policy.on_overlap = overlap;
  return t;
}

// Two schedulers (two nodes) on one PostgreSQL database, ticking the same
// instants in turn: every fire of the schedule is recorded and run once, and
// both nodes run some.
TEST(PgSchedulers, EveryFireRunsOnceAcrossTwoNodes) {
  if (cronkeep::testing::pg_url().empty())
    GTEST_SKIP() << "CRONKEEP_TEST_PG_URL is unset: run through tests/with_pg.sh (CTest does) to test PostgreSQL";
  cronkeep::testing::PgSchema pg;
  PgNode nodes[2];
  for (int i = 0; i < 2; ++i) ASSERT_EQ(nodes[i].start(pg.url(), i == 0 ? "a" : "b", {pg_task("tick", "true")}), "");
  constexpr int kSeconds = 20;
  for (int s = 1; s <= kSeconds; ++s) {
    // Who ticks first alternates every three seconds: that node wins the claims.
    const int first = (s / 3) % 2;
    for (int k : {first, 1 - first}) {
      nodes[k].clock.set(kT0 + std::chrono::seconds(s));
      nodes[k].scheduler->tick();
    }
  }
  for (PgNode& n : nodes) ASSERT_TRUE(n.scheduler->wait_idle(20s));
  EXPECT_EQ(pg.query("SELECT COUNT(*) FROM runs WHERE task = 'tick'"), std::to_string(kSeconds));
  EXPECT_EQ(pg.query("SELECT COUNT(DISTINCT scheduled_at) FROM runs WHERE task = 'tick'"), std::to_string(kSeconds));
  EXPECT_EQ(pg.query("SELECT COUNT(*) FROM runs WHERE task = 'tick' AND status <> 'succeeded'"), "0");
  EXPECT_NE(pg.query("SELECT COUNT(*) FROM runs WHERE node = 'a'"), "0");
  EXPECT_NE(pg.query("SELECT COUNT(*) FROM runs WHERE node = 'b'"), "0");
  for (PgNode& n : nodes) n.scheduler->shutdown();
}

TEST(PgSchedulers, MaxConcurrentHoldsAcrossNodes) {
  if (cronkeep::testing::pg_url().empty())
    GTEST_SKIP() << "CRONKEEP_TEST_PG_URL is unset: run through tests/with_pg.sh (CTest does) to test PostgreSQL";
  cronkeep::testing::PgSchema pg;
  TempDir shared;  // the release file the blocking runs wait for
  PgNode nodes[2];
  const std::string blocking = "while [ ! -e '" + shared / "release" + "' ]; do sleep 0.02; done";
  // The queuer's processes say when each begins and ends, in one file both
  // nodes' runs append to: what ran at once is read there, not in the
  // timestamps of two nodes' clocks.
  const std::string trace = shared / "queuer.trace";
  const std::string queuer = "echo begin >> '" + trace + "'; " + blocking + "; sleep 0.05; echo end >> '" + trace + "'";
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(nodes[i].start(pg.url(), i == 0 ? "a" : "b",
                             {pg_task("skipper", blocking, 1, config::Overlap::skip),
                              pg_task("queuer", queuer, 1, config::Overlap::queue)}),
              "");
    nodes[i].scheduler->set_peers({"a", "b"});
  }
  auto count = [&](const std::string& where) {
    return std::stoi(pg.query("SELECT COUNT(*) FROM runs WHERE " + where));
  };
  // Six fires; the fires alternate between the nodes (rendezvous), each node
  // ticks at the fire and after the grace. The first fire's run holds the
  // only slot throughout, wherever it runs.
  for (int s = 1; s <= 6; ++s) {
    for (Millis at : {Millis(0), Scheduler::kClaimGrace})
      for (PgNode& n : nodes) {
        n.clock.set(kT0 + std::chrono::seconds(s) + at);
        n.scheduler->tick();
      }
    // Wait until the first run is recorded running (it started after its commit).
    for (int i = 0; i < 500 && count("status = 'running'") < 2; ++i) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(count("task = 'skipper' AND status = 'running'"), 1);
  EXPECT_EQ(count("task = 'skipper' AND status = 'skipped'"), 5);
  EXPECT_EQ(count("task = 'queuer' AND status = 'running'"), 1);
  EXPECT_EQ(count("task = 'queuer' AND status = 'pending'"), 5);
  const int on_a = count("task = 'skipper' AND node = 'a'");
  EXPECT_GT(on_a, 0);
  EXPECT_LT(on_a, 6) << "both nodes claimed some of the fires";
  // Released: the queued runs go one at a time, on whichever node queued them.
  std::ofstream(shared / "release").flush();
  for (int s = 7; s <= 40 && count("task = 'queuer' AND status = 'succeeded'") < 6; ++s) {
    for (PgNode& n : nodes) {
      n.clock.set(kT0 + std::chrono::seconds(s) + Millis(900));  // between fires: only queues move
      n.scheduler->tick();
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_GE(count("task = 'queuer' AND status = 'succeeded'"), 6);
  // What still waits in a queue starts when a tick sees the other node's
  // slot free (the daemon ticks at least once a second): tick without
  // moving the clock, so no new fire comes, until both nodes are idle.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  bool idle = false;
  while (!idle && std::chrono::steady_clock::now() < deadline) {
    idle = true;
    for (PgNode& n : nodes) {
      n.scheduler->tick();
      idle = n.scheduler->wait_idle(200ms) && idle;
    }
  }
  ASSERT_TRUE(idle) << "queued runs never started";
  for (PgNode& n : nodes) n.scheduler->shutdown();
  // Never two at once, across both nodes: each process began after the one
  // before ended.
  std::ifstream in(trace);
  std::string line, sequence;
  while (std::getline(in, line)) sequence += line == "begin" ? 'b' : line == "end" ? 'e' : '?';
  std::string alternating;  // as many begin-end pairs as the file holds
  for (size_t i = 0; i < sequence.size() / 2; ++i) alternating += "be";
  EXPECT_GE(sequence.size(), 12u) << "six runs or more";
  EXPECT_EQ(sequence, alternating);
}

// ---- tasks that do not fire on their own (issue 13) ----------------------------

TEST_F(SchedulerTest, ADisabledTaskNeverFiresButRunsOnDemand) {
  add_task("off", "@every 10s", "echo off").enabled = false;
  start();
  EXPECT_FALSE(next_fire().has_value());
  at(60s);
  settle();
  EXPECT_TRUE(runs("off").empty());
  auto id = scheduler_->run_now("off");
  ASSERT_TRUE(id) << id.error().message;
  settle();
  ASSERT_EQ(runs("off", RunStatus::succeeded).size(), 1u);
  EXPECT_FALSE(scheduler_->tasks().front().enabled);
}

TEST_F(SchedulerTest, ATaskWithoutCronRunsOnlyOnDemand) {
  add_task("manual", "", "echo hi");
  start();
  EXPECT_FALSE(next_fire().has_value());
  at(24h);
  settle();
  EXPECT_TRUE(runs("manual").empty());
  ASSERT_TRUE(scheduler_->run_now("manual"));
  settle();
  EXPECT_EQ(runs("manual", RunStatus::succeeded).size(), 1u);
}

TEST_F(SchedulerTest, APauseSurvivesARestartAndAResumeCatchesNothingUpFromThePause) {
  add_task("tick", "@every 10s", "true");
  start();
  at(10s);
  settle();
  ASSERT_EQ(runs("tick").size(), 1u);
  auto changed = scheduler_->set_paused("tick", true);
  ASSERT_TRUE(changed && *changed);
  EXPECT_FALSE(next_fire().has_value());
  EXPECT_FALSE(*scheduler_->set_paused("tick", true));  // already paused
  at(40s);
  settle();
  EXPECT_EQ(runs("tick").size(), 1u);
  // A restart keeps the pause and records no missed fires for it.
  scheduler_->shutdown();
  scheduler_.reset();
  clock_.set(kT0 + 100s);
  start();
  EXPECT_TRUE(scheduler_->tasks().front().paused);
  EXPECT_EQ(runs("tick").size(), 1u);
  at(200s);
  ASSERT_TRUE(*scheduler_->set_paused("tick", false));
  EXPECT_EQ(next_fire(), kT0 + 210s);
  // Restarted after the resume: only fires after the resume are lost fires.
  scheduler_->shutdown();
  scheduler_.reset();
  clock_.set(kT0 + 205s);
  start();
  settle();
  EXPECT_EQ(runs("tick").size(), 1u);
  EXPECT_TRUE(runs("tick", RunStatus::missed).empty());
}

TEST_F(SchedulerTest, SystemTasksCannotBePaused) {
  start(10s, {SystemTask{"cronkeep:retention", "@every 1h", [](int64_t) -> Result<std::string> { return "ok"; }, {}}});
  auto r = scheduler_->set_paused("cronkeep:retention", true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
}

TEST_F(SchedulerTest, AReloadKeepsRunningRunsRecomputesNextFiresAndStopsRemovedTasks) {
  add_task("long", "@every 10s", blocking());
  add_task("gone", "@every 10s", "true");
  add_task("same", "@every 1h", "true");
  start();
  at(10s);  // long and gone start; long stays running
  ASSERT_TRUE(wait_for("gone", RunStatus::succeeded, 1));
  config::Config next = config_;
  next.tasks.clear();
  config::Task changed = config_.tasks[0];
  changed.cron = "@every 1m";  // long: a new schedule
  next.tasks.push_back(changed);
  next.tasks.push_back(config_.tasks[2]);
  config::Task fresh = config_.tasks[2];
  fresh.name = "fresh";
  fresh.cron = "@every 30s";
  next.tasks.push_back(fresh);
  ASSERT_TRUE(config::prepare(next).empty());
  clock_.set(kT0 + 15s);
  const ReloadSummary summary = scheduler_->reload(next, {});
  EXPECT_EQ(summary.added, std::vector<std::string>{"fresh"});
  EXPECT_EQ(summary.removed, std::vector<std::string>{"gone"});
  EXPECT_EQ(summary.changed, std::vector<std::string>{"long"});
  const std::vector<TaskView> tasks = scheduler_->tasks();
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].name, "long");
  EXPECT_EQ(tasks[0].running, 1);  // the run in flight survived
  EXPECT_EQ(tasks[0].next_fire, kT0 + 60s);
  EXPECT_EQ(tasks[1].name, "same");
  EXPECT_EQ(tasks[2].name, "fresh");
  EXPECT_EQ(tasks[2].next_fire, kT0 + 30s);
  at(40s);
  release();
  settle();
  EXPECT_EQ(runs("gone").size(), 1u);  // stopped firing
  EXPECT_EQ(runs("long", RunStatus::succeeded).size(), 1u);
  EXPECT_EQ(runs("fresh").size(), 1u);
  // A removed task cannot be run now; re-adding it revives it.
  EXPECT_FALSE(scheduler_->run_now("gone"));
  next.tasks.push_back(config_.tasks[1]);
  ASSERT_TRUE(config::prepare(next).empty());
  EXPECT_EQ(scheduler_->reload(next, {}).added, std::vector<std::string>{"gone"});
  EXPECT_TRUE(scheduler_->run_now("gone"));
  settle();
}

TEST_F(SchedulerTest, RunNowAddsExtraEnvironmentVariables) {
  add_task("env", "", "echo \"$GREETING-$CRONKEEP_TASK\" > out.txt");
  start();
  ASSERT_TRUE(scheduler_->run_now("env", Env{{"GREETING", "hello"}}));
  settle();
  EXPECT_EQ(cronkeep::testing::read_file(dir_ / "out.txt"), "hello-env\n");
}

}  // namespace
}  // namespace cronkeep::scheduler
