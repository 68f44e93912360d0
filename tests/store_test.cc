#include <sqlite3.h>

#include <gtest/gtest.h>

#include "store/store.h"
#include "test_util.h"

namespace cronkeep::store {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::TempDir;

TimePoint at(int64_t seconds) { return from_unix_ms(seconds * 1000); }

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

class StoreTest : public ::testing::Test {
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
    r.scheduled_at = at(created);
    if (is_terminal(status)) r.finished_at = at(created);
    auto id = store_->insert_run(r);
    EXPECT_TRUE(id) << id.error().message;
    return *id;
  }
  TempDir dir_;
  std::string path_ = dir_ / "cronkeep.db";
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, CreatesTheDatabaseInWalWithIncrementalAutoVacuum) {
  EXPECT_EQ(pragma(path_, "journal_mode"), "wal");
  EXPECT_EQ(pragma(path_, "auto_vacuum"), "2");  // 2 = incremental
  EXPECT_EQ(pragma(path_, "user_version"), "0");
}

TEST_F(StoreTest, RecordsMigrationsOnceAcrossReopens) {
  store_.reset();
  auto again = open_sqlite(path_);
  ASSERT_TRUE(again);
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT COUNT(*), MAX(version) FROM schema_migrations", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 4);  // one row per migration
  EXPECT_EQ(sqlite3_column_int(s, 1), 4);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(StoreTest, RefusesADatabaseFromANewerVersion) {
  store_.reset();
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 0)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto s = open_sqlite(path_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::corruption);
  EXPECT_NE(s.error().message.find("newer"), std::string::npos);
}

TEST_F(StoreTest, RunGoesFromPendingThroughRunningToItsEnd) {
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

TEST_F(StoreTest, RefusesToFinishARunTwiceOrStartAFinishedOne) {
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

TEST_F(StoreTest, ReconcileTurnsEveryInFlightRunIntoCrashed) {
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

TEST_F(StoreTest, ListsHistoryNewestFirstWithKeysetPagingAndStatusFilter) {
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

TEST_F(StoreTest, LastFireIgnoresManualAndRetryRuns) {
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

TEST_F(StoreTest, SummarisesEachTaskWithItsNewestRun) {
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

TEST_F(StoreTest, ReadOnlyStoreReadsButRefusesWrites) {
  add("a", RunStatus::succeeded);
  auto ro = open_sqlite(path_, OpenOptions{.read_only = true});
  ASSERT_TRUE(ro) << ro.error().message;
  EXPECT_EQ((*ro)->list_runs(RunQuery{"a", 10, std::nullopt, std::nullopt})->size(), 1u);
  NewRun r;
  r.task = "a";
  EXPECT_FALSE((*ro)->insert_run(r));
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

TEST_F(StoreTest, WritesStayInTheWalUntilACheckpointMovesThem) {
  for (int i = 0; i < 200; ++i) add("t", RunStatus::succeeded);
  EXPECT_LT(runs_in_main_file(dir_, path_), 200);  // automatic checkpoints are off
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(runs_in_main_file(dir_, path_), 200);
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

TEST_F(StoreTest, PausesAreKeptPerTaskAndReplaced) {
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
