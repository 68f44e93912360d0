#include <sqlite3.h>

#include <gtest/gtest.h>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <atomic>
#include <pqxx/pqxx>

#include "base/clock.h"
#include "store/store.h"
#include "pg_test_util.h"
#include "test_util.h"

namespace cronkeep::store {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::PgSchema;
using cronkeep::testing::pg_url;
using cronkeep::testing::TempDir;

TimePoint at(int64_t seconds) { return from_unix_ms(seconds * 1000); }

constexpr const char* kRetention = "cronkeep:retention";
constexpr const char* kCompactor = "cronkeep:compactor";

std::string pragma(const std::string& db_path, const std::string& name) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, ("PRAGMA " + name).c_str(), -1, &s, nullptr);
  std::string out;
  if (sqlite3_step(s) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

enum class Backend { sqlite, postgres };

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "Sqlite" : "Postgres";
}

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::postgres) {
      if (pg_url().empty())
        GTEST_SKIP() << "CRONKEEP_TEST_PG_URL is unset: run through tests/with_pg.sh (CTest does) to test PostgreSQL";
      pg_ = std::make_unique<PgSchema>();
    }
    auto s = open();
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  Result<std::unique_ptr<Store>> open(OpenOptions options = {}) {
    if (GetParam() == Backend::postgres) return open_postgres(pg_->url(), options);
    return open_sqlite(path_, options);
  }
  // Runs SQL on the database behind the store's back.
  void exec(const std::string& sql) {
    if (pg_) return pg_->exec(sql);
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    char* err = nullptr;
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(err, nullptr) << err;
    sqlite3_free(err);
    sqlite3_close(db);
  }
  std::string query(const std::string& sql) {
    if (pg_) return pg_->query(sql);
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
  }
  int64_t add(const std::string& task, RunStatus status = RunStatus::pending, int64_t created = 100) {
    NewRun r;
    r.task = task;
    r.status = status;
    r.created_at = at(created);
    r.scheduled_at = at(created);
    if (is_terminal(status)) r.finished_at = at(created);
    auto id = store_->insert_run(r);
    EXPECT_TRUE(id) << id.error().message;
    return id ? *id : 0;
  }
  TempDir dir_;
  std::string path_ = dir_ / "cronkeep.db";
  std::unique_ptr<PgSchema> pg_;
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::sqlite, Backend::postgres), backend_name);

// SQLite's own file-level behaviour.
class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = open_sqlite(path_);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  int64_t add(const std::string& task, RunStatus status = RunStatus::pending, int64_t created = 100) {
    NewRun r;
    r.task = task;
    r.status = status;
    r.created_at = at(created);
    if (is_terminal(status)) r.finished_at = at(created);
    auto id = store_->insert_run(r);
    EXPECT_TRUE(id) << id.error().message;
    return id ? *id : 0;
  }
  TempDir dir_;
  std::string path_ = dir_ / "cronkeep.db";
  std::unique_ptr<Store> store_;
};

TEST_F(SqliteStoreTest, CreatesTheDatabaseInWalWithIncrementalAutoVacuum) {
  EXPECT_EQ(pragma(path_, "journal_mode"), "wal");
  EXPECT_EQ(pragma(path_, "auto_vacuum"), "2");  // 2 = incremental
  EXPECT_EQ(pragma(path_, "user_version"), "0");
}

// The store keeps its statements prepared and reuses them: one left
// stepped but not reset would keep its read open, and a checkpoint could
// then never truncate the WAL (it waits for readers, then gives up).
TEST_F(SqliteStoreTest, StatementsKeptForReuseHoldNoReadOpen) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(add(i % 2 ? "a" : "b", RunStatus::succeeded, 100 + i));
  for (int round = 0; round < 3; ++round) {  // the second and third use cached statements
    for (int64_t id : ids) {
      auto run = store_->get_run(id);
      ASSERT_TRUE(run) << run.error().message;
      EXPECT_EQ(run->id, id);
    }
    RunQuery q;
    q.task = "a";
    q.limit = 3;  // stops after 3 rows of 10: the statement is left mid-way
    auto page = store_->list_runs(q);
    ASSERT_TRUE(page) << page.error().message;
    ASSERT_EQ(page->size(), 3u);
    EXPECT_EQ(page->front().id, ids[19]);
    auto summaries = store_->task_summaries();
    ASSERT_TRUE(summaries) << summaries.error().message;
    ASSERT_EQ(summaries->size(), 2u);
    EXPECT_EQ((*summaries)[0].runs, 10);
  }
  auto done = store_->checkpoint_truncate();  // SQLITE_BUSY after busy_timeout while a read is open
  ASSERT_TRUE(done) << done.error().message;
  auto st = store_->db_stats();
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->wal_bytes, 0);
}

TEST_P(StoreTest, RecordsMigrationsOnceAcrossReopens) {
  store_.reset();
  auto again = open();
  ASSERT_TRUE(again) << again.error().message;
  const std::string latest = GetParam() == Backend::sqlite ? "8" : "6";
  EXPECT_EQ(query("SELECT COUNT(*) FROM schema_migrations"), latest);  // one row per migration
  EXPECT_EQ(query("SELECT MAX(version) FROM schema_migrations"), latest);
}

TEST_P(StoreTest, RefusesADatabaseFromANewerVersion) {
  store_.reset();
  exec("INSERT INTO schema_migrations VALUES (99, 0)");
  auto s = open();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::corruption);
  EXPECT_NE(s.error().message.find("newer"), std::string::npos);
}

TEST_P(StoreTest, FindsPurgeableRunsOldestFirstAPageAtATime) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 7; ++i)
    ids.push_back(add(i % 2 ? "a" : "b", i == 3 ? RunStatus::failed : RunStatus::succeeded, 100 + i));
  add("a", RunStatus::running, 50);     // in flight: never
  add("a", RunStatus::succeeded, 500);  // after the cutoff
  PurgeQuery q{at(200), std::nullopt, std::nullopt, 3};
  std::vector<int64_t> seen;
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 10);
    auto page = store_->find_purgeable(q);
    ASSERT_TRUE(page) << page.error().message;
    ASSERT_LE(page->size(), 3u);
    if (page->empty()) break;
    for (const auto& r : *page) seen.push_back(r.id);
    q.after_id = page->back().id;
  }
  EXPECT_EQ(seen, ids);
  auto a_succeeded = store_->find_purgeable(PurgeQuery{at(200), "a", RunStatus::succeeded, 1, ids[1]});
  ASSERT_TRUE(a_succeeded);
  ASSERT_EQ(a_succeeded->size(), 1u);
  EXPECT_EQ(a_succeeded->front().id, ids[5]);  // ids[3] failed
}

TEST_P(StoreTest, AnUnknownStatusReadsAsCorruption) {
  const int64_t id = add("t", RunStatus::succeeded);
  exec(std::string(GetParam() == Backend::sqlite ? "PRAGMA ignore_check_constraints = ON; " : "") +
       "UPDATE runs SET status = 'exploded' WHERE id = " + std::to_string(id));
  auto run = store_->get_run(id);
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().code, ErrorCode::corruption);
  EXPECT_NE(run.error().message.find("exploded"), std::string::npos);
  EXPECT_EQ(store_->list_briefs().error().code, ErrorCode::corruption);
}

TEST_P(StoreTest, RunGoesFromPendingThroughRunningToItsEnd) {
  const int64_t id = add("backup");
  ASSERT_TRUE(store_->mark_running(id, "logs/backup/x.log", at(101)));
  RunEnd end;
  end.status = RunStatus::failed;
  end.finished_at = at(103);
  end.exit_code = 3;
  end.duration_ms = 2000;
  end.cpu_ms = 5;
  end.max_rss_kb = 1234;
  end.log_bytes = 42;
  end.message = "exit code 3";
  ASSERT_TRUE(store_->finish_run(id, end));
  auto run = store_->get_run(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::failed);
  EXPECT_EQ(run->log_path, "logs/backup/x.log");
  EXPECT_EQ(run->started_at, at(101));
  EXPECT_EQ(run->finished_at, at(103));
  EXPECT_EQ(run->exit_code, 3);
  EXPECT_FALSE(run->signal);
  EXPECT_EQ(run->max_rss_kb, 1234);
  EXPECT_EQ(run->log_bytes, 42);
  EXPECT_EQ(run->message, "exit code 3");
}

TEST_P(StoreTest, RefusesToFinishARunTwiceOrStartAFinishedOne) {
  const int64_t id = add("t");
  RunEnd end;
  end.finished_at = at(200);
  ASSERT_TRUE(store_->finish_run(id, end));
  auto again = store_->finish_run(id, end);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
  auto start = store_->mark_running(id, "x", at(201));
  ASSERT_FALSE(start);
  EXPECT_EQ(start.error().code, ErrorCode::conflict);
  auto missing = store_->finish_run(9999, end);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::not_found);
  EXPECT_EQ(store_->get_run(9999).error().code, ErrorCode::not_found);
}

TEST_P(StoreTest, AStartInASlotWaitsWhileTheTasksRunsHoldEverySlot) {
  const int64_t first = add("t");
  const int64_t second = add("t");
  const int64_t other = add("u");
  ASSERT_TRUE(store_->mark_running_in_slot(first, "logs/t/1.log", at(100), 1));
  auto refused = store_->mark_running_in_slot(second, "logs/t/2.log", at(101), 1);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::busy);
  EXPECT_EQ(store_->get_run(second)->status, RunStatus::pending) << "a refused start stays pending";
  EXPECT_TRUE(store_->mark_running_in_slot(other, "logs/u/1.log", at(101), 1)) << "slots are per task";
  // Two slots: the second starts. Ended, the first frees its slot.
  const int64_t third = add("t");
  ASSERT_TRUE(store_->mark_running_in_slot(second, "logs/t/2.log", at(102), 2));
  EXPECT_EQ(store_->mark_running_in_slot(third, "logs/t/3.log", at(102), 2).error().code, ErrorCode::busy);
  RunEnd end;
  end.finished_at = at(103);
  ASSERT_TRUE(store_->finish_run(first, end));
  EXPECT_TRUE(store_->mark_running_in_slot(third, "logs/t/3.log", at(104), 2));
  EXPECT_EQ(store_->mark_running_in_slot(third, "x", at(105), 9).error().code, ErrorCode::conflict);
  EXPECT_EQ(store_->mark_running_in_slot(9999, "x", at(105), 9).error().code, ErrorCode::not_found);
}

TEST_P(StoreTest, ReconcileTurnsEveryInFlightRunIntoCrashed) {
  const int64_t pending = add("a");
  const int64_t running = add("a");
  ASSERT_TRUE(store_->mark_running(running, "logs/a/r.log", at(100)));
  const int64_t done = add("a", RunStatus::succeeded);
  auto n = store_->reconcile_in_flight(at(160), "daemon died");
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2);
  for (int64_t id : {pending, running}) {
    auto r = store_->get_run(id);
    EXPECT_EQ(r->status, RunStatus::crashed);
    EXPECT_EQ(r->exit_code, -2);
    EXPECT_EQ(r->message, "daemon died");
    EXPECT_EQ(r->finished_at, at(160));
  }
  EXPECT_EQ(store_->get_run(running)->duration_ms, 60'000);
  EXPECT_EQ(store_->get_run(running)->log_path, "logs/a/r.log");
  EXPECT_EQ(store_->get_run(done)->status, RunStatus::succeeded);
  EXPECT_TRUE(store_->in_flight_runs()->empty());
}

TEST_P(StoreTest, ListsHistoryNewestFirstWithKeysetPagingAndStatusFilter) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(add("t", i % 5 == 0 ? RunStatus::failed : RunStatus::succeeded, 100 + i));
  add("other", RunStatus::succeeded);
  auto page1 = store_->list_runs(RunQuery{"t", 10, std::nullopt, std::nullopt});
  ASSERT_TRUE(page1);
  ASSERT_EQ(page1->size(), 10u);
  EXPECT_EQ(page1->front().id, ids.back());
  auto page3 = store_->list_runs(RunQuery{"t", 10, ids[5], std::nullopt});
  ASSERT_EQ(page3->size(), 5u);
  EXPECT_EQ(page3->front().id, ids[4]);
  EXPECT_EQ(page3->back().id, ids[0]);
  auto failed = store_->list_runs(RunQuery{"t", 100, std::nullopt, RunStatus::failed});
  ASSERT_EQ(failed->size(), 5u);
  for (const store::Run& r : *failed) EXPECT_EQ(r.status, RunStatus::failed);
  EXPECT_EQ(store_->list_runs(RunQuery{"t", 0, std::nullopt, std::nullopt}).error().code,
            ErrorCode::invalid_argument);
}

TEST_P(StoreTest, LastFireIgnoresManualAndRetryRuns) {
  EXPECT_FALSE(*store_->last_fire("t"));
  add("t", RunStatus::succeeded, 500);
  NewRun manual;
  manual.task = "t";
  manual.trigger = Trigger::manual;
  manual.created_at = at(900);
  manual.scheduled_at = at(900);
  ASSERT_TRUE(store_->insert_run(manual));
  EXPECT_EQ(**store_->last_fire("t"), at(500));
}

TEST_P(StoreTest, LastFireIsTheLatestScheduledTimeEvenWhenACatchUpRowCameLater) {
  add("t", RunStatus::succeeded, 500);
  add("t", RunStatus::missed, 300);  // recorded after, for an older fire
  add("u", RunStatus::succeeded, 900);
  EXPECT_EQ(**store_->last_fire("t"), at(500));
  EXPECT_EQ(**store_->last_fire("u"), at(900));
  EXPECT_FALSE(*store_->last_fire("nosuch"));
}

TEST_P(StoreTest, LastOutcomesGiveEachTasksLatestSuccessAndFailure) {
  add("a", RunStatus::succeeded, 100);
  add("a", RunStatus::failed, 200);
  add("a", RunStatus::succeeded, 300);
  add("a", RunStatus::cancelled, 400);  // neither
  add("a", RunStatus::timeout, 150);    // a failure that finished before the one above, recorded after
  for (int i = 0; i < 50; ++i) add("b", RunStatus::skipped, 500 + i);  // no success, no failure
  add("c", RunStatus::crashed, 700);
  add("d", RunStatus::log_overflow, 800);  // each failure status counts
  add("d", RunStatus::failed, 750);
  auto o = store_->last_outcomes();
  ASSERT_TRUE(o) << o.error().message;
  ASSERT_EQ(o->size(), 4u);
  EXPECT_EQ((*o)[3].task, "d");
  EXPECT_EQ((*o)[3].last_failure, at(800));
  EXPECT_EQ((*o)[0].task, "a");
  EXPECT_EQ((*o)[0].last_success, at(300));
  EXPECT_EQ((*o)[0].last_failure, at(200));
  EXPECT_EQ((*o)[1].task, "b");
  EXPECT_FALSE((*o)[1].last_success);
  EXPECT_FALSE((*o)[1].last_failure);
  EXPECT_EQ((*o)[2].task, "c");
  EXPECT_FALSE((*o)[2].last_success);
  EXPECT_EQ((*o)[2].last_failure, at(700));
}

TEST_P(StoreTest, SummarisesEachTaskWithItsNewestRun) {
  add("a", RunStatus::succeeded);
  const int64_t last_a = add("a", RunStatus::failed);
  const int64_t only_b = add("b", RunStatus::succeeded);
  auto s = store_->task_summaries();
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].task, "a");
  EXPECT_EQ((*s)[0].runs, 2);
  EXPECT_EQ((*s)[0].last_run->id, last_a);
  EXPECT_EQ((*s)[1].last_run->id, only_b);
}

// The counts task_summaries() reads, by task (tasks with no run absent).
std::map<std::string, int64_t> summary_counts(Store& store) {
  std::map<std::string, int64_t> out;
  auto s = store.task_summaries();
  EXPECT_TRUE(s) << s.error().message;
  if (!s) return out;
  for (const TaskSummary& t : *s) {
    EXPECT_TRUE(t.last_run) << t.task;
    out[t.task] = t.runs;
  }
  return out;
}

TEST_P(StoreTest, KeptCountsEqualARealCountAfterAnyMixOfInsertsAndDeletes) {
  std::mt19937 rng(12);
  const std::vector<std::string> tasks = {"a", "b", "c.d", "e-f", kRetention};
  std::map<int64_t, std::string> alive;  // the model: every run's task
  std::set<int64_t> in_flight;
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  auto any_alive = [&]() -> int64_t {
    if (alive.empty()) return 999999;
    auto it = alive.begin();
    std::advance(it, static_cast<long>(pick(alive.size())));
    return it->first;
  };
  auto insert = [&](const std::string& task) {
    const bool done = pick(4) != 0;
    const int64_t id = add(task, done ? RunStatus::succeeded : RunStatus::running, static_cast<int64_t>(100 + alive.size()));
    alive[id] = task;
    if (!done) in_flight.insert(id);
  };
  auto deleted = [&](const std::vector<int64_t>& ids) {
    auto d = store_->delete_runs(ids);
    ASSERT_TRUE(d) << d.error().message;
    int64_t expect = 0;
    for (int64_t id : std::set<int64_t>(ids.begin(), ids.end()))
      if (alive.count(id) && !in_flight.count(id)) {
        alive.erase(id);
        ++expect;
      }
    EXPECT_EQ(d->rows, expect);
  };
  int64_t fire = 1000;
  for (int step = 0; step < 300; ++step) {
    switch (pick(8)) {
      case 0:
      case 1:  // record a fire, or run now
        insert(tasks[pick(tasks.size())]);
        break;
      case 2: {  // a claimed fire
        NewRun r;
        r.task = tasks[pick(tasks.size())];
        r.status = RunStatus::missed;
        r.scheduled_at = at(++fire);
        r.created_at = at(fire);
        r.finished_at = at(fire);
        auto id = store_->claim_fire(r);
        ASSERT_TRUE(id && *id);
        alive[**id] = r.task;
        break;
      }
      case 3:  // the scheduler's batch
        ASSERT_TRUE(store_->write_batch([&] {
          for (size_t i = 0, n = 1 + pick(4); i < n; ++i) insert(tasks[pick(tasks.size())]);
        }));
        break;
      case 4: {  // a run ends
        if (in_flight.empty()) break;
        const int64_t id = *in_flight.begin();
        RunEnd end;
        end.finished_at = at(5000);
        ASSERT_TRUE(store_->finish_run(id, end));
        in_flight.erase(id);
        break;
      }
      case 5:  // delete one run (perhaps in flight, perhaps gone)
        deleted({any_alive()});
        break;
      case 6: {  // a retention batch: several tasks, in-flight and missing ids among them
        std::vector<int64_t> ids;
        for (size_t i = 0, n = pick(12); i < n; ++i) ids.push_back(any_alive());
        ids.push_back(999998);
        deleted(ids);
        break;
      }
      case 7: {  // a purge of one task, a page at a time
        PurgeQuery q;
        q.finished_before = at(100000);
        if (pick(2)) q.task = tasks[pick(tasks.size())];
        q.limit = 1 + static_cast<int64_t>(pick(20));
        auto page = store_->find_purgeable(q);
        ASSERT_TRUE(page) << page.error().message;
        std::vector<int64_t> ids;
        for (const RunBrief& b : *page) ids.push_back(b.id);
        deleted(ids);
        break;
      }
    }
    if (step % 10 != 9) continue;
    std::map<std::string, int64_t> want;
    for (const auto& [id, task] : alive) ++want[task];
    ASSERT_EQ(summary_counts(*store_), want) << "after step " << step;
    auto wrong = store_->check_task_counts();
    ASSERT_TRUE(wrong) << wrong.error().message;
    EXPECT_TRUE(wrong->empty()) << "after step " << step << ": " << wrong->front().task;
  }
  // Every run gone: no task is listed.
  while (!in_flight.empty()) {
    RunEnd end;
    end.finished_at = at(5000);
    ASSERT_TRUE(store_->finish_run(*in_flight.begin(), end));
    in_flight.erase(in_flight.begin());
  }
  std::vector<int64_t> all;
  for (const auto& [id, task] : alive) all.push_back(id);
  deleted(all);
  EXPECT_TRUE(summary_counts(*store_).empty());
  EXPECT_EQ(query("SELECT COUNT(*) FROM task_stats"), "0");
}

TEST_P(StoreTest, CheckFindsAndRepairsWrongCounts) {
  add("a", RunStatus::succeeded);
  add("a", RunStatus::succeeded);
  add("b", RunStatus::succeeded);
  EXPECT_TRUE(store_->check_task_counts()->empty());
  // Counts broken behind the store's back: one wrong, one missing, one left over.
  exec("UPDATE task_stats SET runs = 7 WHERE task = 'a'; DELETE FROM task_stats WHERE task = 'b';"
       " INSERT INTO task_stats (task, runs) VALUES ('gone', 3)");
  auto wrong = store_->check_task_counts();
  ASSERT_TRUE(wrong) << wrong.error().message;
  ASSERT_EQ(wrong->size(), 3u);
  EXPECT_EQ((*wrong)[0].task, "a");
  EXPECT_EQ((*wrong)[0].recorded, 7);
  EXPECT_EQ((*wrong)[0].actual, 2);
  EXPECT_EQ((*wrong)[1].task, "b");
  EXPECT_EQ((*wrong)[1].recorded, 0);
  EXPECT_EQ((*wrong)[1].actual, 1);
  EXPECT_EQ((*wrong)[2].task, "gone");
  auto ro = open(OpenOptions{.read_only = true});
  ASSERT_TRUE(ro);
  EXPECT_EQ((*ro)->check_task_counts()->size(), 3u);  // the CLI's check reads them
  EXPECT_FALSE((*ro)->repair_task_counts());
  auto fixed = store_->repair_task_counts();
  ASSERT_TRUE(fixed) << fixed.error().message;
  EXPECT_EQ(fixed->size(), 3u);
  EXPECT_TRUE(store_->check_task_counts()->empty());
  EXPECT_EQ(summary_counts(*store_), (std::map<std::string, int64_t>{{"a", 2}, {"b", 1}}));
  EXPECT_TRUE(store_->repair_task_counts()->empty());
}

TEST_P(StoreTest, UpgradingCountsEachTasksRunsOnce) {
  for (int i = 0; i < 5; ++i) add("a", RunStatus::succeeded);
  add("b", RunStatus::failed);
  add(kRetention, RunStatus::succeeded);
  store_.reset();
  // Back to the version before the counts, with runs recorded since.
  const std::string before = GetParam() == Backend::sqlite ? "8" : "6";
  exec("DROP TABLE task_stats; DELETE FROM schema_migrations WHERE version >= " + before);
  exec("INSERT INTO runs (task, trigger, status, created_at) VALUES ('b', 'manual', 'pending', 1)");
  {
    // A read-only store (the CLI's, before the daemon was upgraded) does
    // not migrate: it counts, and has no kept counts to check.
    auto ro = open(OpenOptions{.read_only = true});
    ASSERT_TRUE(ro) << ro.error().message;
    EXPECT_EQ(summary_counts(**ro), (std::map<std::string, int64_t>{{"a", 5}, {"b", 2}, {kRetention, 1}}));
    auto none = (*ro)->check_task_counts();
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_TRUE(none->empty());
  }
  auto s = open();
  ASSERT_TRUE(s) << s.error().message;
  store_ = std::move(*s);
  EXPECT_EQ(query("SELECT MAX(version) FROM schema_migrations"), before);
  EXPECT_EQ(summary_counts(*store_), (std::map<std::string, int64_t>{{"a", 5}, {"b", 2}, {kRetention, 1}}));
  EXPECT_TRUE(store_->check_task_counts()->empty());
  add("b");
  EXPECT_EQ(summary_counts(*store_)["b"], 3);
}

TEST_P(StoreTest, RecentRunsGiveEveryTasksNewestRunsByNameInByteOrder) {
  std::map<std::string, std::vector<int64_t>> ids;  // newest last
  const std::vector<std::string> names = {"b", "a", "Z", kRetention, "a.b"};
  for (int i = 0; i < 12; ++i) {
    const std::string& task = names[static_cast<size_t>(i * 7 % 5)];
    if (task == "a.b" && !ids[task].empty()) continue;  // one run only
    ids[task].push_back(add(task, i % 4 == 0 ? RunStatus::running : RunStatus::succeeded, 100 + i));
  }
  auto got = store_->recent_runs(2);
  ASSERT_TRUE(got) << got.error().message;
  std::vector<std::string> order;
  for (const TaskRuns& t : *got) order.push_back(t.task);
  EXPECT_EQ(order, (std::vector<std::string>{"Z", "a", "a.b", "b", kRetention}));  // bytes, not a locale's order
  for (const TaskRuns& t : *got) {
    const std::vector<int64_t>& all = ids[t.task];
    std::vector<int64_t> want(all.rbegin(), all.rbegin() + std::min<size_t>(2, all.size()));
    std::vector<int64_t> have;
    for (const store::Run& r : t.runs) have.push_back(r.id);
    EXPECT_EQ(have, want) << t.task;
    for (const store::Run& r : t.runs) EXPECT_EQ(r.task, t.task);
  }
  // Every column, as get_run reads it.
  const store::Run& newest_b = (*got)[3].runs.front();
  EXPECT_EQ(newest_b.created_at, store_->get_run(newest_b.id)->created_at);
  EXPECT_EQ(newest_b.status, store_->get_run(newest_b.id)->status);
  auto wide = store_->recent_runs(1000);
  ASSERT_TRUE(wide);
  EXPECT_EQ((*wide)[1].runs.size(), ids["a"].size());
  for (int bad : {0, 1001}) {
    auto refused = store_->recent_runs(bad);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::invalid_argument);
  }
  // A read-only store (the CLI's) reads them too.
  auto ro = open(OpenOptions{.read_only = true});
  ASSERT_TRUE(ro) << ro.error().message;
  auto again = (*ro)->recent_runs(2);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->size(), 5u);
  exec("DELETE FROM runs");
  auto empty = store_->recent_runs(30);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST_P(StoreTest, ReadOnlyStoreReadsButRefusesWrites) {
  add("a", RunStatus::succeeded);
  auto ro = open(OpenOptions{.read_only = true});
  ASSERT_TRUE(ro) << ro.error().message;
  EXPECT_EQ((*ro)->list_runs(RunQuery{"a", 10, std::nullopt, std::nullopt})->size(), 1u);
  NewRun r;
  r.task = "a";
  EXPECT_FALSE((*ro)->insert_run(r));
}

TEST_P(StoreTest, DeletesOnlyTerminalRunsAndWritesTombstonesInTheSameTransaction) {
  const int64_t done = add("t", RunStatus::succeeded);
  const int64_t live = add("t");
  const int64_t no_log = add("t", RunStatus::failed);
  exec("UPDATE runs SET log_path = 'logs/t/1.log', log_bytes = 10 WHERE id = " + std::to_string(done));
  exec("UPDATE runs SET log_path = 'logs/t/2.log' WHERE id = " + std::to_string(live));
  auto d = store_->delete_runs({done, live, no_log, 9999});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->log_bytes, 10);
  ASSERT_EQ(d->tombstones.size(), 1u);
  EXPECT_EQ(d->tombstones[0].run_id, done);
  EXPECT_EQ(d->tombstones[0].log_path, "logs/t/1.log");
  EXPECT_EQ(store_->get_run(done).error().code, ErrorCode::not_found);
  EXPECT_TRUE(store_->get_run(live));
  auto listed = store_->list_tombstones(10);
  ASSERT_EQ(listed->size(), 1u);
  ASSERT_TRUE(store_->clear_tombstones({listed->front().id}));
  EXPECT_TRUE(store_->list_tombstones(10)->empty());
}

TEST_P(StoreTest, WriteBatchCommitsEveryCallAtOnce) {
  int64_t a = 0, b = 0;
  ASSERT_TRUE(store_->write_batch([&] {
    a = add("t");
    b = add("t");
    ASSERT_TRUE(store_->mark_running(a, "logs/t/a.log", at(101)));
    RunEnd end;
    end.finished_at = at(102);
    ASSERT_TRUE(store_->finish_run(b, end));
  }));
  EXPECT_EQ(store_->get_run(a)->status, RunStatus::running);
  EXPECT_EQ(store_->get_run(b)->status, RunStatus::succeeded);
}

TEST_P(StoreTest, ClaimingAFireRecordsItsRunWithThisNode) {
  NewRun r;
  r.task = "t";
  r.scheduled_at = at(60);
  r.created_at = at(60);
  auto id = store_->claim_fire(r);
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE(*id);
  EXPECT_EQ(store_->get_run(**id)->node, "local");
  EXPECT_EQ(**store_->last_fire("t"), at(60));
}

TEST_P(StoreTest, ListsThisNodeAfterItsHeartbeat) {
  ASSERT_TRUE(store_->heartbeat("127.0.0.1:7070", at(10), at(20), 30s));
  add("t");
  auto nodes = store_->list_nodes();
  ASSERT_TRUE(nodes) << nodes.error().message;
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].name, "local");
  EXPECT_EQ((*nodes)[0].api_address, "127.0.0.1:7070");
  EXPECT_EQ((*nodes)[0].heartbeat_at, at(20));
  EXPECT_EQ((*nodes)[0].in_flight, 1);
  EXPECT_EQ(store_->forget_node("local").error().code, ErrorCode::conflict);
  EXPECT_EQ(store_->forget_node("nobody").error().code, ErrorCode::not_found);
}

TEST_P(StoreTest, DbStatsReportTheDatabaseSize) {
  for (int i = 0; i < 50; ++i) add("t", RunStatus::succeeded);
  auto st = store_->db_stats();
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_GT(st->db_bytes(), 0);
  EXPECT_EQ(st->auto_vacuum, 2);
  if (GetParam() == Backend::postgres) {
    EXPECT_EQ(st->backend, "postgres");
    EXPECT_GT(st->runs_table_bytes, 0);
    EXPECT_GT(st->runs_index_bytes, 0);
  }
  auto freed = store_->incremental_vacuum(100);
  ASSERT_TRUE(freed) << freed.error().message;
  EXPECT_TRUE(store_->optimize());
  EXPECT_TRUE(store_->checkpoint_truncate());
}

TEST_P(StoreTest, ListsMaintenanceFiguresNewestFirstWithTheirTimeAndDatabaseSize) {
  const int64_t sweep = add(kRetention, RunStatus::succeeded, 100);
  const int64_t compact = add(kCompactor, RunStatus::succeeded, 200);
  const int64_t old = add(kCompactor, RunStatus::succeeded, 300);
  ASSERT_TRUE(store_->record_maintenance(MaintenanceFigures{sweep, kRetention, 5, 10, 0, 4096, 0, at(101), 81920}));
  ASSERT_TRUE(store_->record_maintenance(MaintenanceFigures{compact, kCompactor, 0, 0, 0, 0, 65536, at(201), 16384}));
  // Figures recorded without a time or size (as before schema version 6/3).
  ASSERT_TRUE(store_->record_maintenance(MaintenanceFigures{old, kCompactor, 0, 0, 0, 0, 0}));

  auto all = store_->list_maintenance(MaintenanceQuery{});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].run_id, old);
  EXPECT_FALSE((*all)[0].finished_at);
  EXPECT_FALSE((*all)[0].db_bytes);
  EXPECT_EQ((*all)[1].run_id, compact);
  EXPECT_EQ((*all)[1].task, kCompactor);
  EXPECT_EQ((*all)[1].db_bytes_reclaimed, 65536);
  EXPECT_EQ((*all)[1].finished_at, at(201));
  EXPECT_EQ((*all)[1].db_bytes, 16384);
  EXPECT_EQ((*all)[2].rows_deleted, 5);
  EXPECT_EQ((*all)[2].log_bytes_freed, 4096);
  EXPECT_EQ((*all)[2].db_bytes, 81920);

  auto page = store_->list_maintenance(MaintenanceQuery{1, compact});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ(page->front().run_id, sweep);

  // The figures outlive their run (retention deletes system runs too).
  ASSERT_TRUE(store_->delete_runs({sweep}));
  EXPECT_EQ(store_->list_maintenance(MaintenanceQuery{})->size(), 3u);
  auto sums = store_->maintenance_summaries();
  ASSERT_TRUE(sums);
  ASSERT_EQ(sums->size(), 2u);
  EXPECT_EQ((*sums)[0].total.db_bytes_reclaimed, 65536);
}

TEST_P(StoreTest, UpgradingGivesEarlierFiguresTheEndTimeOfTheirRun) {
  const int64_t kept = add(kCompactor, RunStatus::succeeded, 500);
  const int64_t gone = add(kCompactor, RunStatus::succeeded, 600);
  ASSERT_TRUE(store_->record_maintenance(MaintenanceFigures{kept, kCompactor, 0, 0, 0, 0, 1}));
  ASSERT_TRUE(store_->record_maintenance(MaintenanceFigures{gone, kCompactor, 0, 0, 0, 0, 2}));
  ASSERT_TRUE(store_->delete_runs({gone}));
  store_.reset();
  // Back to the schema before the columns existed, then open again (the
  // migrations after it are undone too, so that they run again).
  if (GetParam() == Backend::sqlite) {
    exec("ALTER TABLE maintenance DROP COLUMN finished_at; ALTER TABLE maintenance DROP COLUMN db_bytes;"
         " DROP INDEX runs_by_task_status; CREATE INDEX runs_by_task ON runs (task, id DESC);"
         " DROP TABLE task_stats; DELETE FROM schema_migrations WHERE version >= 6");
  } else {
    exec("ALTER TABLE maintenance DROP COLUMN finished_at, DROP COLUMN db_bytes;"
         " ALTER TABLE nodes DROP COLUMN clock_offset_ms;"
         " DROP INDEX runs_by_task_status; CREATE INDEX runs_by_task ON runs (task, id DESC);"
         " DROP TABLE task_stats; DELETE FROM schema_migrations WHERE version >= 3");
  }
  auto s = open();
  ASSERT_TRUE(s) << s.error().message;
  store_ = std::move(*s);
  auto all = store_->list_maintenance(MaintenanceQuery{});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].run_id, gone);
  EXPECT_FALSE((*all)[0].finished_at);  // its run was deleted: no time to take
  EXPECT_EQ((*all)[1].finished_at, at(500));
  EXPECT_FALSE((*all)[1].db_bytes);
}

// ---- several nodes on one PostgreSQL database ---------------------------------

class PgNodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (pg_url().empty())
      GTEST_SKIP() << "CRONKEEP_TEST_PG_URL is unset: run through tests/with_pg.sh (CTest does) to test PostgreSQL";
    pg_ = std::make_unique<PgSchema>();
    a_ = open("a");
    b_ = open("b");
  }
  std::unique_ptr<Store> open(const std::string& node) {
    auto s = open_postgres(pg_->url(), OpenOptions{.node = node});
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  static NewRun fire(const std::string& task, int64_t second) {
    NewRun r;
    r.task = task;
    r.scheduled_at = at(second);
    r.created_at = at(second);
    return r;
  }
  std::unique_ptr<PgSchema> pg_;
  std::unique_ptr<Store> a_, b_;
};

TEST_F(PgNodesTest, OnlyTheFirstClaimOfAFireGetsARun) {
  auto first = a_->claim_fire(fire("t", 60));
  auto second = b_->claim_fire(fire("t", 60));
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(*first);
  EXPECT_FALSE(*second);
  EXPECT_TRUE(*b_->claim_fire(fire("t", 61)));
  EXPECT_TRUE(*b_->claim_fire(fire("u", 60)));
  EXPECT_EQ(pg_->query("SELECT COUNT(*) FROM runs WHERE task = 't' AND scheduled_at = 60000"), "1");
}

TEST_F(PgNodesTest, ALostClaimInsideABatchKeepsTheBatchsOtherWrites) {
  ASSERT_TRUE(a_->claim_fire(fire("t", 60)));
  std::optional<int64_t> won, lost;
  ASSERT_TRUE(b_->write_batch([&] {
    lost = *b_->claim_fire(fire("t", 60));
    won = *b_->claim_fire(fire("t", 61));
  }));
  EXPECT_FALSE(lost);
  ASSERT_TRUE(won);
  EXPECT_EQ(b_->get_run(*won)->node, "b");
}

TEST_F(PgNodesTest, TheSecondProcessWithANameIsRefusedWhileTheFirstIsAlive) {
  ASSERT_TRUE(a_->heartbeat("h:1", at(100), at(100), 30s));
  auto twin = open("a");
  auto st = twin->heartbeat("h:2", at(105), at(105), 30s);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
  // Once the first one's lease ran out, a restarted node takes the name.
  EXPECT_TRUE(twin->heartbeat("h:2", at(200), at(200), 30s));
}

TEST_F(PgNodesTest, EachHeartbeatMeasuresTheNodesClockAgainstTheServers) {
  const TimePoint real = cronkeep::SystemClock().now();
  ASSERT_TRUE(a_->heartbeat("h:1", real, real + 5s, 30s));  // a's clock runs 5 s ahead
  ASSERT_TRUE(b_->heartbeat("h:2", real, real, 30s));
  auto nodes = a_->list_nodes();
  ASSERT_TRUE(nodes) << nodes.error().message;
  ASSERT_EQ(nodes->size(), 2u);
  ASSERT_TRUE((*nodes)[0].clock_offset_ms && (*nodes)[1].clock_offset_ms);
  EXPECT_NEAR(static_cast<double>(*(*nodes)[0].clock_offset_ms), 5000.0, 1000.0);
  EXPECT_NEAR(static_cast<double>(*(*nodes)[1].clock_offset_ms), 0.0, 1000.0);
  // The next heartbeat measures again.
  ASSERT_TRUE(a_->heartbeat("h:1", real, cronkeep::SystemClock().now(), 30s));
  EXPECT_NEAR(static_cast<double>(*(*a_->list_nodes())[0].clock_offset_ms), 0.0, 1000.0);
}

TEST_F(PgNodesTest, ANodeThatLeftCleanlyFreesItsNameAtOnce) {
  ASSERT_TRUE(a_->heartbeat("h:1", at(100), at(100), 30s));
  ASSERT_TRUE(a_->leave(at(101)));
  auto restarted = open("a");
  EXPECT_TRUE(restarted->heartbeat("h:1", at(102), at(102), 30s));
  auto nodes = b_->list_nodes();
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_FALSE((*nodes)[0].dead_at);
}

TEST_F(PgNodesTest, ADeadNodesRunsAreCrashedAndItCannotRecordIntoThem) {
  ASSERT_TRUE(a_->heartbeat("h:1", at(0), at(100), 30s));
  ASSERT_TRUE(b_->heartbeat("h:2", at(0), at(100), 30s));
  auto id = a_->claim_fire(fire("t", 100));
  ASSERT_TRUE(a_->mark_running(**id, "logs/t/x.log", at(100)));
  // a stops heartbeating; b keeps going.
  ASSERT_TRUE(b_->heartbeat("h:2", at(0), at(125), 30s));
  EXPECT_TRUE(b_->expire_nodes(at(125), 30s)->empty());  // within the lease
  auto dead = b_->expire_nodes(at(131), 30s);
  ASSERT_TRUE(dead) << dead.error().message;
  ASSERT_EQ(*dead, std::vector<std::string>{"a"});
  auto run = b_->get_run(**id);
  EXPECT_EQ(run->status, RunStatus::crashed);
  EXPECT_NE(run->message.find("node a"), std::string::npos) << run->message;
  EXPECT_EQ(run->duration_ms, 31'000);
  RunEnd end;
  end.finished_at = at(140);
  auto late = a_->finish_run(**id, end);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::conflict);
  EXPECT_EQ(a_->heartbeat("h:1", at(0), at(141), 30s).error().code, ErrorCode::conflict);
  auto nodes = b_->list_nodes();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_TRUE((*nodes)[0].dead_at);
  EXPECT_EQ((*nodes)[0].declared_dead_by, "b");
  EXPECT_TRUE(b_->expire_nodes(at(200), 30s)->empty());  // declared once
}

TEST_F(PgNodesTest, ARunFinishedOnlyByTheNodeThatOwnsIt) {
  auto id = a_->claim_fire(fire("t", 100));
  RunEnd end;
  end.finished_at = at(101);
  EXPECT_EQ(b_->finish_run(**id, end).error().code, ErrorCode::conflict);
  EXPECT_TRUE(a_->finish_run(**id, end));
}

TEST_F(PgNodesTest, StartsInASlotCountEveryNodesRunsOneNodeAfterTheOther) {
  auto ra = a_->claim_fire(fire("t", 100));
  auto rb = b_->claim_fire(fire("t", 101));
  // b's start waits for a's batch, which holds t's slot lock to its commit,
  // and then counts a's run: one slot, one run, whichever node asks.
  std::thread other;
  std::atomic<bool> b_done{false};
  Status b_start;
  ASSERT_TRUE(a_->write_batch([&] {
    ASSERT_TRUE(a_->mark_running_in_slot(**ra, "logs/t/a.log", at(100), 1));
    other = std::thread([&] {
      b_start = b_->mark_running_in_slot(**rb, "logs/t/b.log", at(101), 1);
      b_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(b_done) << "b counted before a's start committed";
  }));
  other.join();
  ASSERT_FALSE(b_start);
  EXPECT_EQ(b_start.error().code, ErrorCode::busy);
  RunEnd end;
  end.finished_at = at(102);
  ASSERT_TRUE(a_->finish_run(**ra, end));
  EXPECT_TRUE(b_->mark_running_in_slot(**rb, "logs/t/b.log", at(103), 1));
  EXPECT_EQ(a_->mark_running_in_slot(**rb, "x", at(104), 1).error().code, ErrorCode::conflict) << "b's run";
}

TEST_F(PgNodesTest, EachNodeReplaysOnlyItsOwnTombstonesAndForgettingANodeDropsItsOwn) {
  auto ra = a_->claim_fire(fire("t", 100));
  auto rb = b_->claim_fire(fire("t", 101));
  RunEnd end;
  end.finished_at = at(102);
  ASSERT_TRUE(a_->mark_running(**ra, "logs/t/a.log", at(100)));
  ASSERT_TRUE(b_->mark_running(**rb, "logs/t/b.log", at(101)));
  ASSERT_TRUE(a_->finish_run(**ra, end));
  ASSERT_TRUE(b_->finish_run(**rb, end));
  auto d = a_->delete_runs({**ra, **rb});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->rows, 2);
  ASSERT_EQ(d->tombstones.size(), 1u);  // a removes only its file
  EXPECT_EQ(d->tombstones[0].log_path, "logs/t/a.log");
  auto theirs = b_->list_tombstones(10);
  ASSERT_EQ(theirs->size(), 1u);
  EXPECT_EQ(theirs->front().log_path, "logs/t/b.log");
  EXPECT_EQ(pg_->query("SELECT COUNT(*) FROM fires"), "0");  // claims go with their runs
  ASSERT_TRUE(a_->forget_node("b"));
  EXPECT_TRUE(b_->list_tombstones(10)->empty());
}

TEST_F(PgNodesTest, OnlyOneNodeAtATimeHoldsAnExclusiveSection) {
  bool inner_ran = true;
  auto outer = a_->exclusively("cronkeep:retention", [&] {
    auto inner = b_->exclusively("cronkeep:retention", [] {});
    ASSERT_TRUE(inner);
    inner_ran = *inner;
  });
  ASSERT_TRUE(outer);
  EXPECT_TRUE(*outer);
  EXPECT_FALSE(inner_ran);
  EXPECT_TRUE(*b_->exclusively("cronkeep:retention", [] {}));
}

TEST(PgOpen, AnUnreachableServerIsAnIoErrorNamingTheUrlWithoutItsPassword) {
  auto s = open_postgres("postgresql://me:secret@/nodb?host=/nonexistent-dir&connect_timeout=2");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::io);
  EXPECT_NE(s.error().message.find("postgresql://me:***@"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().message.find("secret"), std::string::npos) << s.error().message;
}

// Counts the runs in a copy of the main database file alone, without its
// WAL: what a checkpoint has moved into the file.
int64_t runs_in_main_file(const TempDir& dir, const std::string& db) {
  const std::string copy = dir / "copy.db";
  std::filesystem::copy_file(db, copy, std::filesystem::copy_options::overwrite_existing);
  sqlite3* c = nullptr;
  sqlite3_open(copy.c_str(), &c);
  sqlite3_stmt* s = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(c, "SELECT COUNT(*) FROM runs", -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
    n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(c);
  std::filesystem::remove(copy);
  return n;
}

TEST_F(SqliteStoreTest, WritesStayInTheWalUntilACheckpointMovesThem) {
  for (int i = 0; i < 200; ++i) add("t", RunStatus::succeeded);
  EXPECT_LT(runs_in_main_file(dir_, path_), 200);  // automatic checkpoints are off
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(runs_in_main_file(dir_, path_), 200);
}

// The WAL header's checkpoint sequence number (bytes 12-15, big-endian):
// SQLite adds one each time the WAL starts anew, which is also when it
// writes and syncs that header.
uint32_t wal_restarts(const std::string& wal) {
  std::ifstream in(wal, std::ios::binary);
  unsigned char h[16] = {};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  return (uint32_t{h[12]} << 24) | (uint32_t{h[13]} << 16) | (uint32_t{h[14]} << 8) | h[15];
}

TEST_F(SqliteStoreTest, ACheckpointStartsTheWalAnewItselfSoThatNoCommitSyncsItsHeader) {
  const std::string wal = path_ + "-wal";
  for (int i = 0; i < 50; ++i) add("t", RunStatus::succeeded);
  const uint32_t before = wal_restarts(wal);
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(wal_restarts(wal), before + 1);  // started anew by the checkpoint, before any commit
  add("t", RunStatus::succeeded);
  EXPECT_EQ(wal_restarts(wal), before + 1);  // the commit appended: no header to write and sync
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(wal_restarts(wal), before + 2);
  // Nothing written since: the WAL holds only the restart's own page, and a
  // checkpoint of an idle store writes nothing.
  ASSERT_TRUE(store_->checkpoint());
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(wal_restarts(wal), before + 2);
  EXPECT_EQ(runs_in_main_file(dir_, path_), 51);
}

TEST_F(SqliteStoreTest, TheWalShrinksBackAfterACheckpointOnceItGrewPast16MB) {
  // Automatic checkpoints are off (the daemon checkpoints off the hot
  // path); without journal_size_limit the WAL file kept its peak size.
  const std::string wal = path_ + "-wal";
  NewRun r;
  r.task = "t";
  r.status = RunStatus::skipped;
  r.created_at = at(1);
  r.finished_at = at(1);
  r.message = std::string(64 << 10, 'x');
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(store_->insert_run(r));  // ~26 MB of WAL
  EXPECT_GT(std::filesystem::file_size(wal), 16u << 20);
  ASSERT_TRUE(store_->checkpoint());
  r.message = "small";
  ASSERT_TRUE(store_->insert_run(r));  // the WAL starts over, and is cut to the limit
  EXPECT_LE(std::filesystem::file_size(wal), 16u << 20);
}

TEST(StoreOpen, RefusesAFileThatIsNotADatabase) {
  TempDir dir;
  {
    std::ofstream f(dir / "cronkeep.db");
    f << "this is not sqlite, not even close, and long enough to have a header";
  }
  auto s = open_sqlite(dir / "cronkeep.db");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("cronkeep.db"), std::string::npos);
}

TEST_P(StoreTest, PausesAreKeptPerTaskAndReplaced) {
  ASSERT_TRUE(store_->set_paused("a", true, from_unix_ms(1000)));
  ASSERT_TRUE(store_->set_paused("b", true, from_unix_ms(2000)));
  ASSERT_TRUE(store_->set_paused("a", false, from_unix_ms(3000)));
  auto pauses = store_->task_pauses();
  ASSERT_TRUE(pauses) << pauses.error().message;
  ASSERT_EQ(pauses->size(), 2u);
  EXPECT_EQ((*pauses)[0].task, "a");
  EXPECT_FALSE((*pauses)[0].paused);
  EXPECT_EQ((*pauses)[0].changed_at, from_unix_ms(3000));
  EXPECT_TRUE((*pauses)[1].paused);
}

}  // namespace
}  // namespace cronkeep::store
