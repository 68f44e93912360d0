#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "daemon/daemon.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "test_util.h"

namespace cronkeep::retention {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::TempDir;
using store::RunStatus;
namespace fs = std::filesystem;

const TimePoint kNow = from_unix_ms(1'795'406'400'000);
constexpr Millis kDay = 24h;

RunFacts fact(int64_t id, std::string task, RunStatus status, Millis age, int64_t bytes = 0) {
  return RunFacts{id, std::move(task), status, kNow - age, bytes};
}

std::set<int64_t> ids(const std::vector<Expired>& e) {
  std::set<int64_t> out;
  for (const auto& x : e) out.insert(x.id);
  return out;
}

Policy simple(int64_t keep_runs, Millis keep_for, Millis keep_failed_for) {
  Policy p;
  p.defaults = TaskRules{keep_runs, keep_for, keep_failed_for};
  p.max_age = 0ms;
  p.max_runs = 0;
  return p;
}

TEST(Planner, KeepRunsExpiresAllButTheNewestN) {
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 5; ++i) runs.push_back(fact(i, "t", RunStatus::succeeded, 1h));
  auto e = plan_purge(simple(2, 30 * kDay, 90 * kDay), runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{1, 2, 3}));
  EXPECT_EQ(e[0].reason, Reason::keep_runs);
}

TEST(Planner, KeepForAndKeepFailedForApplyByStatus) {
  std::vector<RunFacts> runs = {
      fact(1, "t", RunStatus::succeeded, 40 * kDay), fact(2, "t", RunStatus::failed, 40 * kDay),
      fact(3, "t", RunStatus::failed, 100 * kDay),   fact(4, "t", RunStatus::timeout, 95 * kDay),
      fact(5, "t", RunStatus::failed, 1 * kDay),     fact(6, "t", RunStatus::succeeded, 1 * kDay),
  };
  auto e = plan_purge(simple(100, 30 * kDay, 90 * kDay), runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{1, 3, 4}));
  for (const auto& x : e) EXPECT_EQ(x.reason, x.id == 1 ? Reason::keep_for : Reason::keep_failed_for);
}

TEST(Planner, TheNewestRunAndNewestFailureSurviveTheAgeRulesOfAQuietTask) {
  std::vector<RunFacts> runs = {
      fact(1, "quiet", RunStatus::failed, 400 * kDay),
      fact(2, "quiet", RunStatus::failed, 300 * kDay),
      fact(3, "quiet", RunStatus::succeeded, 200 * kDay),
      fact(4, "quiet", RunStatus::succeeded, 100 * kDay),
  };
  auto e = plan_purge(simple(100, 30 * kDay, 90 * kDay), runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{1, 3}));
}

TEST(Planner, SkippedAndMissedRecordsDoNotDisplaceRunsThatExecuted) {
  // on_overlap = "skip" and keep_runs = 3: a long run makes many skipped
  // rows; they are counted on a list of their own.
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 3; ++i) runs.push_back(fact(i, "t", RunStatus::succeeded, 1h));
  for (int i = 4; i <= 13; ++i) runs.push_back(fact(i, "t", RunStatus::skipped, 1h));
  for (int i = 14; i <= 15; ++i) runs.push_back(fact(i, "t", RunStatus::missed, 1h));
  runs.push_back(fact(16, "t", RunStatus::failed, 1h));
  auto e = plan_purge(simple(3, 30 * kDay, 90 * kDay), runs, kNow);
  // Executed: 1, 2, 3, 16 -> the oldest, 1, goes. Records: 4..15 -> the three
  // newest (13, 14, 15) stay.
  EXPECT_EQ(ids(e), (std::set<int64_t>{1, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  for (const auto& x : e) EXPECT_EQ(x.reason, Reason::keep_runs);
}

TEST(Planner, TheNewestSuccessAndNewestFailureSurviveKeepRuns) {
  std::vector<RunFacts> runs = {fact(1, "ok-then-failing", RunStatus::succeeded, 5h)};
  for (int i = 2; i <= 6; ++i) runs.push_back(fact(i, "ok-then-failing", RunStatus::failed, 1h));
  runs.push_back(fact(7, "failed-then-ok", RunStatus::timeout, 5h));
  for (int i = 8; i <= 12; ++i) runs.push_back(fact(i, "failed-then-ok", RunStatus::succeeded, 1h));
  auto e = plan_purge(simple(2, 30 * kDay, 90 * kDay), runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{2, 3, 4, 8, 9, 10}));
}

TEST(Planner, TheNewestSuccessSurvivesTheAgeRulesBehindNewerFailures) {
  std::vector<RunFacts> runs = {
      fact(1, "t", RunStatus::succeeded, 200 * kDay), fact(2, "t", RunStatus::succeeded, 100 * kDay),
      fact(3, "t", RunStatus::failed, 1 * kDay), fact(4, "t", RunStatus::skipped, 1h)};
  auto e = plan_purge(simple(100, 30 * kDay, 90 * kDay), runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{1}));
}

TEST(Planner, DatabaseCeilingsExemptNothing) {
  // max_age is the ceiling "whatever the task says": the newest success goes too.
  Policy p = simple(100, 300 * kDay, 300 * kDay);
  p.max_age = 50 * kDay;
  std::vector<RunFacts> runs = {fact(1, "t", RunStatus::succeeded, 60 * kDay),
                                fact(2, "t", RunStatus::failed, 1 * kDay)};
  auto e = plan_purge(p, runs, kNow);
  ASSERT_EQ(ids(e), (std::set<int64_t>{1}));
  EXPECT_EQ(e[0].reason, Reason::max_age);
}

TEST(Planner, NeverExpiresInFlightRuns) {
  std::vector<RunFacts> runs = {fact(1, "t", RunStatus::running, 999 * kDay, 5000),
                                fact(2, "t", RunStatus::pending, 999 * kDay, 5000),
                                fact(3, "t", RunStatus::succeeded, 1h, 10)};
  Policy p = simple(1, 1ms, 1ms);
  p.max_runs = 1;
  p.max_log_bytes = 1;
  auto e = plan_purge(p, runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{3}));  // only the terminal one can go
}

TEST(Planner, UnconfiguredTasksFollowTheDefaults) {
  Policy p = simple(1, 30 * kDay, 90 * kDay);
  p.tasks["kept"] = TaskRules{10, 30 * kDay, 90 * kDay};
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 3; ++i) runs.push_back(fact(i, "kept", RunStatus::succeeded, 1h));
  for (int i = 4; i <= 6; ++i) runs.push_back(fact(i, "removed", RunStatus::succeeded, 1h));
  EXPECT_EQ(ids(plan_purge(p, runs, kNow)), (std::set<int64_t>{4, 5}));
}

TEST(Planner, DatabaseCeilingsTakeTheOldestFirst) {
  Policy p = simple(100, 300 * kDay, 300 * kDay);
  p.max_age = 50 * kDay;
  p.max_runs = 3;
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 6; ++i) runs.push_back(fact(i, i % 2 ? "a" : "b", RunStatus::succeeded, (70 - i * 10) * kDay));
  auto e = plan_purge(p, runs, kNow);
  // 1 (60d) is over max_age; of the five left, the two oldest go for max_runs.
  ASSERT_EQ(ids(e), (std::set<int64_t>{1, 2, 3}));
  EXPECT_EQ(e[0].reason, Reason::max_age);
  EXPECT_EQ(e[1].reason, Reason::max_runs);
}

TEST(Planner, MaxSizeCountsEveryLogButExpiresOnlyTerminalRuns) {
  Policy p = simple(100, 300 * kDay, 300 * kDay);
  p.max_log_bytes = 250;
  std::vector<RunFacts> runs = {fact(1, "t", RunStatus::succeeded, 3h, 100), fact(2, "t", RunStatus::succeeded, 2h, 100),
                                fact(3, "t", RunStatus::succeeded, 1h, 100), fact(4, "t", RunStatus::running, 0h, 100)};
  auto e = plan_purge(p, runs, kNow);
  EXPECT_EQ(ids(e), (std::set<int64_t>{1, 2}));
  EXPECT_EQ(e[0].reason, Reason::max_size);
}

// ---------------------------------------------------------------------------
// The guard against clock faults (max_fraction_per_sweep)

Policy with_ages(Millis keep_for, Millis max_age, double fraction = 0.5) {
  Policy p = simple(100, keep_for, keep_for);
  p.max_age = max_age;
  p.max_fraction_per_sweep = fraction;
  return p;
}

std::optional<std::string> guard(const Policy& p, const std::vector<RunFacts>& runs, TimePoint now) {
  return age_rules_held_back(p, runs, plan_purge(p, runs, now), now);
}

TEST(AgeGuard, LetsAnOrdinarySweepThrough) {
  // An hourly task, 4 days of history, keep_for 3 days: a quarter goes.
  std::vector<RunFacts> runs;
  for (int i = 0; i < 96; ++i) runs.push_back(fact(i + 1, "t", RunStatus::succeeded, Millis(int64_t(96 - i) * 3'600'000)));
  const Policy p = with_ages(3 * kDay, 365 * kDay);
  EXPECT_EQ(plan_purge(p, runs, kNow).size(), 24u);
  EXPECT_EQ(guard(p, runs, kNow), std::nullopt);
}

TEST(AgeGuard, HoldsBackAgeRulesThatWouldDeleteMoreThanTheFraction) {
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 4; ++i) runs.push_back(fact(i, "t", RunStatus::succeeded, (10 - i) * kDay));
  // 9d, 8d, 7d, 6d old. keep_for 7d and 7.5d expire runs 1, 2 (2 of 4: exactly
  // the fraction, allowed); keep_for 6.5d expires 1, 2, 3 (3 of 4: held).
  EXPECT_EQ(guard(with_ages(7 * kDay + 12h, 0ms), runs, kNow), std::nullopt);
  EXPECT_EQ(guard(with_ages(7 * kDay, 0ms), runs, kNow), std::nullopt);
  auto held = guard(with_ages(6 * kDay + 12h, 0ms), runs, kNow);
  ASSERT_TRUE(held);
  EXPECT_NE(held->find("would delete 3 of 4 terminal run(s) (75% > max_fraction_per_sweep = 0.5)"), std::string::npos)
      << *held;
  EXPECT_NE(held->find("cronkeep purge --older-than"), std::string::npos) << *held;
  EXPECT_EQ(guard(with_ages(6 * kDay + 12h, 0ms, 0.75), runs, kNow), std::nullopt);
}

TEST(AgeGuard, CountsOnlyWhatTheAgeRulesDelete) {
  // keep_runs expires 8 of 10: not the guard's business.
  std::vector<RunFacts> runs;
  for (int i = 1; i <= 10; ++i) runs.push_back(fact(i, "t", RunStatus::succeeded, Millis(int64_t(11 - i) * 3'600'000)));
  Policy p = with_ages(1 * kDay, 365 * kDay);
  p.defaults.keep_runs = 2;
  EXPECT_EQ(plan_purge(p, runs, kNow).size(), 8u);
  EXPECT_EQ(guard(p, runs, kNow), std::nullopt);
}

TEST(AgeGuard, HoldsBackASweepLaterThanTheNewestRunByMoreThanTheWindow) {
  // Many fresh skipped records after a jump do not hide it: the newest run
  // that executed is what counts. The fraction alone would let this pass.
  std::vector<RunFacts> runs = {fact(1, "t", RunStatus::succeeded, 401 * kDay),
                                fact(2, "t", RunStatus::succeeded, 400 * kDay)};
  for (int i = 3; i <= 10; ++i) runs.push_back(fact(i, "t", RunStatus::missed, 1h));
  const Policy p = with_ages(30 * kDay, 365 * kDay, 1.0);
  auto held = guard(p, runs, kNow);
  ASSERT_TRUE(held);
  EXPECT_NE(held->find("after the newest run"), std::string::npos) << *held;
  EXPECT_NE(held->find("retention window (365d)"), std::string::npos) << *held;
  // Without max_age, the window is the longest keep_for / keep_failed_for.
  Policy no_max_age = with_ages(30 * kDay, 0ms, 1.0);
  no_max_age.tasks["other"] = TaskRules{5, 10 * kDay, 500 * kDay};
  EXPECT_EQ(guard(no_max_age, runs, kNow), std::nullopt);  // 400d < 500d
  no_max_age.tasks["other"].keep_failed_for = 300 * kDay;
  EXPECT_TRUE(guard(no_max_age, runs, kNow));
}

TEST(AgeGuard, WithoutAgeRulesKeepsCountAndSizeRules) {
  Policy p = with_ages(1 * kDay, 2 * kDay);
  p.defaults.keep_runs = 3;
  p.tasks["x"] = TaskRules{4, 1 * kDay, 1 * kDay};
  p.max_runs = 7;
  p.max_log_bytes = 99;
  const Policy q = without_age_rules(p);
  EXPECT_EQ(q.max_age, 0ms);
  EXPECT_EQ(q.defaults.keep_for, 0ms);
  EXPECT_EQ(q.defaults.keep_failed_for, 0ms);
  EXPECT_EQ(q.tasks.at("x").keep_for, 0ms);
  EXPECT_EQ(q.tasks.at("x").keep_failed_for, 0ms);
  EXPECT_EQ(q.defaults.keep_runs, 3);
  EXPECT_EQ(q.tasks.at("x").keep_runs, 4);
  EXPECT_EQ(q.max_runs, 7);
  EXPECT_EQ(q.max_log_bytes, 99u);
}

// The rules, written as directly as they are stated, one run at a time.
std::set<int64_t> oracle(const Policy& p, const std::vector<RunFacts>& runs, TimePoint now) {
  auto rules = [&](const std::string& task) {
    auto it = p.tasks.find(task);
    return it == p.tasks.end() ? p.defaults : it->second;
  };
  // Runs that executed and skipped/missed records are counted apart.
  auto record = [](RunStatus s) { return s == RunStatus::skipped || s == RunStatus::missed; };
  std::set<int64_t> expired;
  for (const RunFacts& r : runs) {
    if (!store::is_terminal(r.status)) continue;
    const TaskRules tr = rules(r.task);
    int64_t newer_same_list = 0;
    bool newer_any = false, newer_success = false, newer_failure = false;
    for (const RunFacts& o : runs) {
      if (o.task != r.task || !store::is_terminal(o.status) || o.id <= r.id) continue;
      newer_any = true;
      if (record(o.status) == record(r.status)) ++newer_same_list;
      if (o.status == RunStatus::succeeded) newer_success = true;
      if (store::is_failure(o.status)) newer_failure = true;
    }
    const bool failure = store::is_failure(r.status);
    const bool exempt = !newer_any || (r.status == RunStatus::succeeded && !newer_success) ||
                        (failure && !newer_failure);
    const Millis limit = failure ? tr.keep_failed_for : tr.keep_for;
    if (!exempt && newer_same_list >= tr.keep_runs) expired.insert(r.id);
    else if (!exempt && limit.count() > 0 && now - r.finished_at > limit) expired.insert(r.id);
    else if (p.max_age.count() > 0 && now - r.finished_at > p.max_age) expired.insert(r.id);
  }
  // Ceilings: drop the oldest survivors while over either cap.
  std::vector<const RunFacts*> survivors;
  uint64_t bytes = 0;
  for (const RunFacts& r : runs) {
    if (!expired.count(r.id)) bytes += static_cast<uint64_t>(r.log_bytes);
    if (store::is_terminal(r.status) && !expired.count(r.id)) survivors.push_back(&r);
  }
  std::sort(survivors.begin(), survivors.end(), [](auto* a, auto* b) { return a->id < b->id; });
  int64_t count = static_cast<int64_t>(survivors.size());
  for (const RunFacts* r : survivors) {
    const bool over = (p.max_runs > 0 && count > p.max_runs) || (p.max_log_bytes > 0 && bytes > p.max_log_bytes);
    if (!over) break;
    expired.insert(r->id);
    --count;
    bytes -= static_cast<uint64_t>(r->log_bytes);
  }
  return expired;
}

TEST(Planner, AgreesWithABruteForceOracleOnRandomHistories) {
  const uint32_t seed = 20261123;
  std::mt19937 rng(seed);
  const RunStatus statuses[] = {RunStatus::pending, RunStatus::running,   RunStatus::succeeded,    RunStatus::failed,
                                RunStatus::timeout, RunStatus::cancelled, RunStatus::crashed,      RunStatus::log_overflow,
                                RunStatus::skipped, RunStatus::missed};
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int nonempty = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Policy p;
    p.defaults = TaskRules{pick(1, 8), pick(0, 20) * kDay, pick(0, 40) * kDay};
    const int tasks = pick(1, 4);
    for (int t = 0; t < tasks; ++t)
      if (pick(0, 1)) p.tasks["t" + std::to_string(t)] = TaskRules{pick(1, 8), pick(1, 20) * kDay, pick(1, 40) * kDay};
    p.max_age = pick(0, 1) ? pick(1, 60) * kDay : 0ms;
    p.max_runs = pick(0, 1) ? pick(1, 40) : 0;
    p.max_log_bytes = pick(0, 1) ? static_cast<uint64_t>(pick(1, 4000)) : 0;
    std::vector<RunFacts> runs;
    const int n = pick(0, 60);
    int64_t id = 0;
    for (int i = 0; i < n; ++i) {
      id += pick(1, 3);
      runs.push_back(RunFacts{id, "t" + std::to_string(pick(0, tasks)), statuses[pick(0, 9)],
                              kNow - Millis(int64_t(pick(0, 70)) * kDay.count() + pick(0, 1000)), pick(0, 200)});
    }
    std::shuffle(runs.begin(), runs.end(), rng);
    const auto planned = plan_purge(p, runs, kNow);
    const std::set<int64_t> got = ids(planned);
    ASSERT_EQ(got, oracle(p, runs, kNow)) << "seed " << seed << " iteration " << iter;
    ASSERT_EQ(got.size(), planned.size()) << "duplicate ids in the plan";
    for (const RunFacts& r : runs) {
      if (!store::is_terminal(r.status)) {
        ASSERT_FALSE(got.count(r.id)) << "in-flight run " << r.id << " chosen";
      }
    }
    if (!got.empty()) ++nonempty;
  }
  EXPECT_GT(nonempty, 1000);  // the random settings do expire things
}

class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest() {
    auto s = store::open_sqlite(dir_ / "cronkeep.db");
    EXPECT_TRUE(s);
    store_ = std::move(*s);
  }
  // A finished run with a log file (and sidecars) on disk.
  int64_t add_run(const std::string& task, RunStatus status, TimePoint finished, const std::string& content = "output\n") {
    store::NewRun r;
    r.task = task;
    r.created_at = finished;
    auto id = store_->insert_run(r);
    const std::string rel = "logs/" + task + "/20261123_040000_" + std::to_string(*id) + ".log";
    fs::create_directories(dir_ / ("logs/" + task));
    std::ofstream(dir_ / rel) << content;
    std::ofstream(dir_ / (rel + ".idx")) << "idx";
    EXPECT_TRUE(store_->mark_running(*id, rel, finished));
    if (store::is_terminal(status)) {
      store::RunEnd end;
      end.status = status;
      end.finished_at = finished;
      end.log_bytes = static_cast<int64_t>(content.size());
      EXPECT_TRUE(store_->finish_run(*id, end));
    }
    return *id;
  }
  std::string path_of(int64_t id) { return dir_ / store_->get_run(id)->log_path; }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(ExecutorTest, DeletesRowsFilesSidecarsAndEmptyDirectoriesTogether) {
  const int64_t a = add_run("gone", RunStatus::succeeded, kNow - 40 * kDay);
  const int64_t b = add_run("stays", RunStatus::succeeded, kNow - 1h);
  const std::string pa = path_of(a);
  std::ofstream(pa + ".prev") << "older";
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  auto r = ex.purge({{a, Reason::keep_for}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 1);
  EXPECT_EQ(r->log_bytes, 7);
  EXPECT_EQ(r->files_deleted, 3);  // .log, .idx, .prev
  EXPECT_FALSE(fs::exists(pa));
  EXPECT_FALSE(fs::exists(pa + ".idx"));
  EXPECT_FALSE(fs::exists(pa + ".prev"));
  EXPECT_FALSE(fs::exists(dir_ / "logs/gone"));
  EXPECT_EQ(store_->get_run(a).error().code, ErrorCode::not_found);
  EXPECT_TRUE(fs::exists(path_of(b)));
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
}

TEST_F(ExecutorTest, FileRemovalWaitsWhileThePaceAsksButNeverStops) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(add_run("t" + std::to_string(i), RunStatus::succeeded, kNow - 40 * kDay));
  std::vector<std::string> paths;
  for (int64_t id : ids) paths.push_back(path_of(id));
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  // Asked before each delete batch, each run's files and each rmdir.
  int asked = 0;
  ex.set_pace([&] {
    ++asked;
    return Millis(0);
  });
  auto r = ex.purge({{ids[0], Reason::keep_for}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(asked, 3);  // the delete batch, the run's files, its directory
  EXPECT_FALSE(fs::exists(paths[0]));
  // A pace that always asks to wait holds each step kMaxPaceHold at most,
  // then lets kPaceRespite of removal through: the purge ends, complete.
  ex.set_pace([] { return Millis(10); });
  const auto t0 = std::chrono::steady_clock::now();
  r = ex.purge({{ids[1], Reason::keep_for}, {ids[2], Reason::keep_for}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (const std::string& p : paths) EXPECT_FALSE(fs::exists(p)) << p;
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
}

TEST_F(ExecutorTest, LeavesInFlightRunsAndTheirFilesAlone) {
  const int64_t running = add_run("t", RunStatus::running, kNow - 400 * kDay);
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  auto r = ex.purge({{running, Reason::manual}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rows, 0);
  EXPECT_EQ(store_->get_run(running)->status, RunStatus::running);
  EXPECT_TRUE(fs::exists(path_of(running)));
}

TEST_F(ExecutorTest, AMissingLogFileIsCountedNotAnError) {
  const int64_t a = add_run("t", RunStatus::failed, kNow - 400 * kDay);
  fs::remove(path_of(a));
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  auto r = ex.purge({{a, Reason::max_age}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rows, 1);
  EXPECT_EQ(r->files_missing, 1);
  EXPECT_EQ(r->file_errors, 0);
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
}

TEST_F(ExecutorTest, AFileThatCannotBeRemovedKeepsItsTombstoneAndIsRetried) {
  const int64_t a = add_run("t", RunStatus::succeeded, kNow - 400 * kDay);
  const std::string sidecar = path_of(a) + ".tidx";
  fs::create_directories(sidecar + "/blocker");  // a non-empty directory cannot be removed like a file
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  auto r = ex.purge({{a, Reason::max_age}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rows, 1);  // the run is deleted all the same
  EXPECT_EQ(r->file_errors, 1);
  EXPECT_NE(describe(*r, Policy{}, kNow).find("could not be removed"), std::string::npos);
  ASSERT_EQ(store_->list_tombstones(10)->size(), 1u);
  fs::remove_all(sidecar);
  auto replay = ex.replay_tombstones();
  ASSERT_TRUE(replay);
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
  EXPECT_FALSE(fs::exists(dir_ / "logs/t"));
}

TEST_F(ExecutorTest, TombstonesLeftByACrashAfterTheCommitAreReplayed) {
  const int64_t a = add_run("t", RunStatus::succeeded, kNow - 400 * kDay);
  const std::string p = path_of(a);
  // The crash: rows deleted and tombstones written, files not yet removed.
  auto deleted = store_->delete_runs({a});
  ASSERT_TRUE(deleted);
  ASSERT_EQ(deleted->tombstones.size(), 1u);
  ASSERT_TRUE(fs::exists(p));
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  auto r = ex.replay_tombstones();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->files_deleted, 2);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
}

TEST_F(ExecutorTest, SweepAppliesThePolicyAndReportsReasons) {
  for (int i = 0; i < 30; ++i) add_run("t", RunStatus::succeeded, kNow - Millis(int64_t(30 - i) * 3'600'000));
  Policy p = simple(10, 30 * kDay, 90 * kDay);
  Executor ex(*store_, layout::DataDir(dir_.path()), 7);
  auto r = sweep(*store_, ex, p, kNow);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 20);
  EXPECT_GE(r->batches, 3);  // batch_size 7
  EXPECT_EQ(store_->list_briefs()->size(), 10u);
  EXPECT_EQ(describe(*r, p, kNow).rfind("Purged 20 run(s) and 140 B of logs (keep_runs: 20", 0), 0u)
      << describe(*r, p, kNow);
  auto again = sweep(*store_, ex, p, kNow);
  EXPECT_EQ(again->rows, 0);
}

TEST_F(ExecutorTest, ASweepAfterAForwardClockJumpAppliesOnlyCountAndSizeRulesAndFails) {
  for (int i = 0; i < 30; ++i) add_run("t", RunStatus::succeeded, kNow - Millis(int64_t(30 - i) * 3'600'000));
  Policy p = simple(10, 30 * kDay, 90 * kDay);
  p.max_age = 365 * kDay;
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  const TimePoint jumped = kNow + 400 * kDay;
  auto r = sweep(*store_, ex, p, jumped);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  const std::string& m = r.error().message;
  EXPECT_EQ(m.rfind("Retention stopped: age rules held back: ", 0), 0u) << m;
  EXPECT_NE(m.find("Count and size rules applied: Purged 20 run(s)"), std::string::npos) << m;
  EXPECT_EQ(store_->list_briefs()->size(), 10u);  // keep_runs still applied, max_age not
  // With the clock back where it belongs, the sweep runs normally.
  auto back = sweep(*store_, ex, p, kNow);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->rows, 0);
}

TEST_F(ExecutorTest, TheRetentionSystemTaskRecordsAFailedRunSayingWhy) {
  for (int i = 0; i < 5; ++i) add_run("t", RunStatus::succeeded, kNow - Millis(int64_t(5 - i) * 3'600'000));
  config::Config config;
  config.daemon.data_dir = dir_.path();
  FakeClock clock(kNow + 400 * kDay);
  Executor ex(*store_, layout::DataDir(dir_.path()), 100);
  scheduler::Scheduler sched(config, *store_, clock,
                             scheduler::Options{dir_.path(), 2s, 1, daemon::system_tasks(config, *store_, ex, clock)});
  ASSERT_TRUE(sched.start());
  auto id = sched.run_now(kRetentionTask);
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE(sched.wait_idle(20s));
  auto run = store_->get_run(*id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::failed);
  EXPECT_EQ(run->message.rfind("Retention stopped: age rules held back", 0), 0u) << run->message;
  EXPECT_EQ(store_->list_briefs()->size(), 6u);  // the five runs and the failed sweep
  sched.shutdown();
}

// ---- the archive ([retention] archive = true) ----------------------------------------

// A day's archive as JSON objects, the first entry of each run (all pages).
std::vector<nlohmann::json> archived(const std::string& data_dir, TimePoint day) {
  archive::ReadQuery q;
  q.date = layout::DataDir::archive_date(day);
  q.limit = 1000;
  auto page = archive::read(layout::DataDir(data_dir), q);
  EXPECT_TRUE(page) << (page ? "" : page.error().message);
  std::vector<nlohmann::json> out;
  if (page)
    for (const std::string& e : page->entries) out.push_back(nlohmann::json::parse(e));
  return out;
}

TEST_F(ExecutorTest, AnArchivedSweepLeavesOneEntryPerDeletedRunWithItsLog) {
  std::vector<int64_t> all;
  for (int i = 0; i < 30; ++i)
    all.push_back(add_run("t", RunStatus::succeeded, kNow - Millis(int64_t(30 - i) * 3'600'000),
                          "output " + std::to_string(i) + "\n"));
  FakeClock clock(kNow);
  Executor ex(*store_, layout::DataDir(dir_.path()), 7, &clock);
  ex.set_archive(ArchivePolicy{true, true, 30 * kDay});
  const Policy p = simple(10, 30 * kDay, 90 * kDay);
  auto r = sweep(*store_, ex, p, kNow);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 20);
  EXPECT_EQ(r->archived, 20);
  const std::string file = "archive/" + layout::DataDir::archive_date(kNow) + ".jsonl.zst";
  EXPECT_EQ(r->archive_file, file);
  EXPECT_NE(describe(*r, p, kNow).find("; archived 20 run(s) to " + file), std::string::npos) << describe(*r, p, kNow);
  const auto entries = archived(dir_.path(), kNow);
  ASSERT_EQ(entries.size(), 20u);
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i]["run_id"], all[i]);
    EXPECT_EQ(entries[i]["reason"], "keep_runs");
    EXPECT_EQ(entries[i]["run"]["status"], "succeeded");
    EXPECT_EQ(entries[i]["log"]["text"], "output " + std::to_string(i) + "\n");
    EXPECT_EQ(store_->get_run(all[i]).error().code, ErrorCode::not_found);
  }
  for (size_t i = 20; i < all.size(); ++i) EXPECT_TRUE(store_->get_run(all[i]));
  auto files = archive::list_files(layout::DataDir(dir_.path()));
  ASSERT_TRUE(files);
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].entries, 20);
  EXPECT_EQ((*files)[0].duplicates, 0);
}

TEST_F(ExecutorTest, ARunArchivedBeforeACrashIsArchivedAgainWhenDeletedAndShownOnce) {
  const int64_t a = add_run("t", RunStatus::failed, kNow - 400 * kDay);
  const layout::DataDir dir(dir_.path());
  {
    // The crash at retention.after_archive_fsync: the entry is synced, the row not deleted.
    archive::Writer w(dir);
    auto append = w.begin(kNow - 1h);
    ASSERT_TRUE(append);
    ASSERT_TRUE(append->add(archive::Entry{*store_->get_run(a), "max_age", kNow - 1h, std::nullopt}));
    ASSERT_TRUE(append->commit());
  }
  ASSERT_TRUE(store_->get_run(a));
  FakeClock clock(kNow);
  Executor ex(*store_, dir, 100, &clock);
  ex.set_archive(ArchivePolicy{true, false, 30 * kDay});
  auto r = ex.purge({{a, Reason::max_age}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 1);
  EXPECT_EQ(r->archived, 1);
  EXPECT_EQ(store_->get_run(a).error().code, ErrorCode::not_found);
  const auto entries = archived(dir_.path(), kNow);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["run_id"], a);
  EXPECT_EQ(entries[0]["archived_at"], format_rfc3339(kNow - 1h, true));  // the first entry is the one shown
  auto files = archive::list_files(dir);
  ASSERT_TRUE(files);
  EXPECT_EQ((*files)[0].duplicates, 1);
}

TEST_F(ExecutorTest, ABatchWhoseArchiveCannotBeWrittenIsNotDeleted) {
  const int64_t a = add_run("t", RunStatus::succeeded, kNow - 400 * kDay);
  const int64_t b = add_run("t", RunStatus::succeeded, kNow - 300 * kDay);
  // A file where the archive directory belongs: every archive write fails.
  std::ofstream(dir_ / "archive") << "in the way";
  FakeClock clock(kNow);
  Executor ex(*store_, layout::DataDir(dir_.path()), 100, &clock);
  ex.set_archive(ArchivePolicy{true, true, 30 * kDay});
  auto r = ex.purge({{a, Reason::max_age}, {b, Reason::max_age}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::io);
  const std::string& m = r.error().message;
  EXPECT_EQ(m.rfind("archiving before deleting: ", 0), 0u) << m;
  EXPECT_NE(m.find("the 2 run(s) of this batch were not deleted"), std::string::npos) << m;
  for (int64_t id : {a, b}) {
    ASSERT_TRUE(store_->get_run(id));
    EXPECT_TRUE(fs::exists(path_of(id)));
  }
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
  // Once the archive can be written, the same purge goes through.
  fs::remove(dir_ / "archive");
  auto again = ex.purge({{a, Reason::max_age}, {b, Reason::max_age}});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->rows, 2);
  EXPECT_EQ(again->archived, 2);
  EXPECT_EQ(archived(dir_.path(), kNow).size(), 2u);
}

TEST_F(ExecutorTest, RunsInFlightAreNeitherArchivedNorDeleted) {
  const int64_t running = add_run("t", RunStatus::running, kNow - 400 * kDay);
  const int64_t ended = add_run("t", RunStatus::succeeded, kNow - 400 * kDay);
  FakeClock clock(kNow);
  Executor ex(*store_, layout::DataDir(dir_.path()), 100, &clock);
  ex.set_archive(ArchivePolicy{true, false, 30 * kDay});
  auto r = ex.purge({{running, Reason::manual}, {ended, Reason::manual}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, 1);
  EXPECT_EQ(r->archived, 1);
  EXPECT_EQ(store_->get_run(running)->status, RunStatus::running);
  const auto entries = archived(dir_.path(), kNow);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["run_id"], ended);
  EXPECT_EQ(entries[0]["reason"], "manual");
}

TEST_F(ExecutorTest, SweepsRemoveArchiveFilesPastArchiveKeepForUnlessTheClockIsDoubted) {
  for (int i = 0; i < 5; ++i) add_run("t", RunStatus::succeeded, kNow - Millis(int64_t(5 - i) * 3'600'000));
  const layout::DataDir dir(dir_.path());
  archive::Writer w(dir);
  for (TimePoint day : {kNow - 10 * kDay, kNow - 1 * kDay}) {
    auto append = w.begin(day);
    ASSERT_TRUE(append);
    ASSERT_TRUE(append->add(archive::Entry{*store_->get_run(1), "manual", day, std::nullopt}));
    ASSERT_TRUE(append->commit());
  }
  FakeClock clock(kNow);
  Executor ex(*store_, dir, 100, &clock);
  ex.set_archive(ArchivePolicy{false, false, 7 * kDay});  // archiving off: what is there stays bounded
  Policy p = simple(10, 30 * kDay, 90 * kDay);
  p.max_age = 365 * kDay;
  // A clock 400 days ahead: the age rules are held back, and no archive file goes either.
  auto held = sweep(*store_, ex, p, kNow + 400 * kDay);
  ASSERT_FALSE(held);
  EXPECT_EQ(held.error().code, ErrorCode::conflict);
  EXPECT_EQ(archive::list_files(dir)->size(), 2u);
  auto r = sweep(*store_, ex, p, kNow);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->archive_files_removed, 1);
  EXPECT_NE(describe(*r, p, kNow).find("; removed 1 archive file(s) past archive_keep_for"), std::string::npos)
      << describe(*r, p, kNow);
  auto files = archive::list_files(dir);
  ASSERT_TRUE(files);
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].date, layout::DataDir::archive_date(kNow - kDay));
}

TEST_F(ExecutorTest, AManualPurgeArchivesAndSaysSo) {
  for (int i = 0; i < 4; ++i) add_run("t", RunStatus::succeeded, kNow - 40 * kDay + Millis(i));
  FakeClock clock(kNow);
  Executor ex(*store_, layout::DataDir(dir_.path()), 100, &clock);
  ex.set_archive(ArchivePolicy{true, true, 30 * kDay});
  auto req = make_purge_request("30d", std::nullopt, std::nullopt, std::nullopt, false);
  ASSERT_TRUE(req);
  auto out = manual_purge(*store_, ex, *req, clock);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->report.rows, 3);  // the newest success stays
  EXPECT_EQ(out->report.archived, 3);
  EXPECT_NE(out->message.find("; archived 3 run(s) to archive/"), std::string::npos) << out->message;
  EXPECT_EQ(archived(dir_.path(), kNow).size(), 3u);
}

TEST_F(ExecutorTest, AManualPurgeLongerThanAPageKeepsTheNewestSuccessAndFailureAndItsLimit) {
  // More runs than a page of the purge (4,096): it reads them a page at a
  // time, twice (what would go, then the deletion).
  std::vector<int64_t> ids;
  ASSERT_TRUE(store_->write_batch([&] {
    for (int i = 0; i < 9000; ++i) {
      store::NewRun r;
      r.task = i % 2 ? "odd" : "even";
      r.status = i == 4000 ? RunStatus::failed : RunStatus::succeeded;
      r.created_at = kNow - 100 * kDay + Millis(i);
      r.finished_at = r.created_at;
      ids.push_back(*store_->insert_run(r));
    }
  }));
  const int64_t newest_failure = ids[4000], newest_even = ids[8998], newest_odd = ids[8999];
  FakeClock clock(kNow);
  Executor ex(*store_, layout::DataDir(dir_.path()), 500);

  auto dry = manual_purge(*store_, ex, *make_purge_request("30d", std::nullopt, std::nullopt, 6000, true), clock);
  ASSERT_TRUE(dry) << dry.error().message;
  ASSERT_EQ(dry->per_task.size(), 2u);
  EXPECT_EQ(dry->per_task[0].runs + dry->per_task[1].runs, 6000);
  EXPECT_EQ(store_->list_briefs()->size(), 9000u);  // a dry run deletes nothing

  std::vector<std::pair<int64_t, int64_t>> progress;
  auto limited = manual_purge(*store_, ex, *make_purge_request("30d", std::nullopt, std::nullopt, 6000, false), clock,
                              [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(limited) << limited.error().message;
  EXPECT_EQ(limited->report.rows, 6000);
  ASSERT_FALSE(progress.empty());
  for (size_t i = 1; i < progress.size(); ++i) ASSERT_GT(progress[i].first, progress[i - 1].first);
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{6000}, int64_t{6000}));
  // The oldest 6,000 but the newest failure (run 4000 of the history) went.
  EXPECT_TRUE(store_->get_run(newest_failure));
  EXPECT_EQ(store_->get_run(ids[6000]).error().code, ErrorCode::not_found);
  EXPECT_TRUE(store_->get_run(ids[6001]));

  auto rest = manual_purge(*store_, ex, *make_purge_request("30d", std::nullopt, std::nullopt, std::nullopt, false),
                           clock);
  ASSERT_TRUE(rest) << rest.error().message;
  EXPECT_EQ(rest->report.rows, 9000 - 6001 - 2);
  auto left = store_->list_briefs();
  ASSERT_TRUE(left);
  std::set<int64_t> left_ids;
  for (const auto& r : *left)
    if (r.task != kRetentionTask) left_ids.insert(r.id);
  EXPECT_EQ(left_ids, (std::set<int64_t>{newest_failure, newest_even, newest_odd}));
}

TEST_F(ExecutorTest, CompactionGivesFreedPagesBackToTheFileSystem) {
  const std::string big(20'000, 'x');
  std::vector<Expired> all;
  for (int i = 0; i < 300; ++i) {
    store::NewRun r;
    r.task = "t";
    r.status = RunStatus::succeeded;
    r.finished_at = kNow;
    r.message = big;
    all.push_back({*store_->insert_run(r), Reason::manual});
  }
  ASSERT_TRUE(store_->checkpoint_truncate());
  const int64_t before = fs::file_size(dir_ / "cronkeep.db");
  Executor ex(*store_, layout::DataDir(dir_.path()), 1000);
  ASSERT_TRUE(ex.purge(all));
  auto c = compact(*store_, CompactMode::incremental, 64);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_GT(c->pages_freed, 1000);
  EXPECT_GT(c->slices, 10);
  EXPECT_EQ(c->after.freelist_count, 0);
  EXPECT_EQ(c->after.wal_bytes, 0);
  const int64_t after = fs::file_size(dir_ / "cronkeep.db");
  EXPECT_LT(after, before / 10) << "before " << before << " after " << after;
  EXPECT_NE(describe(*c).find("Reclaimed"), std::string::npos);
}

TEST_F(ExecutorTest, AManualCompactionIsARunningRunWhileItReportsEachSlice) {
  const std::string big(20'000, 'x');
  std::vector<Expired> all;
  for (int i = 0; i < 150; ++i) {
    store::NewRun r;
    r.task = "t";
    r.status = RunStatus::succeeded;
    r.finished_at = kNow;
    r.message = big;
    all.push_back({*store_->insert_run(r), Reason::manual});
  }
  Executor ex(*store_, layout::DataDir(dir_.path()), 1000);
  ASSERT_TRUE(ex.purge(all));
  const int64_t free_pages = store_->db_stats()->freelist_count;
  ASSERT_GT(free_pages, 512);  // more than one slice

  std::vector<std::pair<int64_t, RunStatus>> states;
  std::vector<CompactStep> steps;
  std::vector<RunStatus> stored_during;  // the run as the history shows it while the work goes on
  CompactHooks hooks;
  hooks.state = [&](int64_t id, RunStatus st) { states.emplace_back(id, st); };
  hooks.step = [&](int64_t id, const CompactStep& step) {
    steps.push_back(step);
    stored_during.push_back(store_->get_run(id)->status);
  };
  FakeClock clock(kNow);
  auto out = manual_compact(*store_, CompactMode::incremental, clock, hooks);
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_TRUE(out->run_id);
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0], std::make_pair(*out->run_id, RunStatus::running));
  EXPECT_EQ(states[1], std::make_pair(*out->run_id, RunStatus::succeeded));
  // Freeing from 0, slice by slice, to every free page; then the checkpoint.
  ASSERT_GE(steps.size(), 4u);
  EXPECT_EQ(steps.front().phase, CompactStep::Phase::freeing);
  EXPECT_EQ(steps.front().pages_done, 0);
  for (size_t i = 1; i + 1 < steps.size(); ++i) {
    EXPECT_EQ(steps[i].phase, CompactStep::Phase::freeing);
    EXPECT_GT(steps[i].pages_done, steps[i - 1].pages_done);
    EXPECT_EQ(steps[i].pages_total, free_pages);
  }
  EXPECT_EQ(steps[steps.size() - 2].pages_done, free_pages);
  EXPECT_EQ(steps.back().phase, CompactStep::Phase::checkpointing);
  for (RunStatus st : stored_during) EXPECT_EQ(st, RunStatus::running);
  auto run = store_->get_run(*out->run_id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::succeeded);
  EXPECT_EQ(run->trigger, store::Trigger::manual);
  EXPECT_EQ(run->started_at, kNow);
  EXPECT_EQ(run->message, out->message);
  auto figures = store_->list_maintenance(store::MaintenanceQuery{});
  ASSERT_TRUE(figures);
  ASSERT_EQ(figures->size(), 1u);
  EXPECT_EQ(figures->front().run_id, *out->run_id);
  EXPECT_EQ(figures->front().db_bytes, out->report.bytes_after);
  EXPECT_EQ(figures->front().finished_at, kNow);
  EXPECT_GT(figures->front().db_bytes_reclaimed, 0);
}

TEST_F(ExecutorTest, AFullVacuumSaysItRewritesTheDatabase) {
  std::vector<CompactStep> steps;
  auto c = compact(*store_, CompactMode::full, 512, [&](const CompactStep& s) { steps.push_back(s); });
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].phase, CompactStep::Phase::rewriting);
  EXPECT_EQ(steps[1].phase, CompactStep::Phase::checkpointing);
  EXPECT_STREQ(to_string(steps[0].phase), "rewriting");
}

}  // namespace
}  // namespace cronkeep::retention
