// Retention's plan in SQL (Store::expiry_marks, Store::plan_expired) against
// the pure planner (plan_purge), its reference, on SQLite and on PostgreSQL:
// random histories written into a real database, the same runs with the
// same reasons, the same figures for the age guard.
#include <sqlite3.h>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <random>
#include <sstream>

#include "base/clock.h"
#include "ops/local.h"
#include "ops/wire.h"
#include "pg_test_util.h"
#include "retention/retention.h"
#include "store/expiry_sql.h"
#include "store/store.h"
#include "test_util.h"

namespace cronkeep::retention {

// Reasons by name in failure messages.
void PrintTo(Reason r, std::ostream* os) { *os << to_string(r); }

namespace {

using namespace std::chrono_literals;
using cronkeep::testing::PgSchema;
using cronkeep::testing::pg_url;
using cronkeep::testing::TempDir;
using store::RunStatus;

const TimePoint kNow = from_unix_ms(1'795'406'400'000);
constexpr Millis kDay = 24h;

enum class Backend { sqlite, postgres };

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "Sqlite" : "Postgres";
}

// A run as the test writes it: finished_at may be unset on a terminal run
// (the planner then reads created_at, as list_briefs does).
struct Row {
  int64_t id;
  std::string task;
  RunStatus status;
  int64_t created_ms;
  std::optional<int64_t> finished_ms;
  int64_t log_bytes;
};

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string dump(const Policy& p, const std::vector<Row>& rows) {
  std::ostringstream o;
  auto rules = [&](const TaskRules& r) {
    o << "{keep_runs " << r.keep_runs << ", keep_for " << r.keep_for.count() << " ms, keep_failed_for "
      << r.keep_failed_for.count() << " ms}";
  };
  o << "policy: defaults ";
  rules(p.defaults);
  for (const auto& [name, r] : p.tasks) {
    o << "; " << name << " ";
    rules(r);
  }
  o << "; max_age " << p.max_age.count() << " ms, max_runs " << p.max_runs << ", max_log_bytes " << p.max_log_bytes
    << "\nruns (id task status age_created age_finished bytes), ages in ms before now:\n";
  for (const Row& r : rows)
    o << "  " << r.id << " " << r.task << " " << store::to_string(r.status) << " "
      << to_unix_ms(kNow) - r.created_ms << " "
      << (r.finished_ms ? std::to_string(to_unix_ms(kNow) - *r.finished_ms) : "-") << " " << r.log_bytes << "\n";
  return o.str();
}

std::vector<std::pair<int64_t, Reason>> pairs(const std::vector<Expired>& plan) {
  std::vector<std::pair<int64_t, Reason>> out;
  for (const Expired& e : plan) out.emplace_back(e.id, e.reason);
  return out;
}

class ExpiryPlanTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::postgres) {
      if (pg_url().empty())
        GTEST_SKIP() << "CRONKEEP_TEST_PG_URL is unset: run through tests/with_pg.sh (CTest does) to test PostgreSQL";
      pg_ = std::make_unique<PgSchema>();
    }
    auto s = GetParam() == Backend::postgres ? store::open_postgres(pg_->url()) : store::open_sqlite(path_);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }

  // Runs SQL on the database behind the store's back.
  void exec(const std::string& sql) {
    if (pg_) return pg_->exec(sql);
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA synchronous = OFF", nullptr, nullptr, nullptr);  // the test's own writes
    char* err = nullptr;
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(err, nullptr) << err;
    sqlite3_free(err);
    sqlite3_close(db);
  }

  // Replaces the history with `rows`.
  void write(const std::vector<Row>& rows) {
    std::string sql = "DELETE FROM runs;";
    if (!rows.empty()) {
      sql += "INSERT INTO runs (id, task, trigger, status, created_at, finished_at, log_bytes) VALUES ";
      for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        sql += (i ? "," : "") + std::string("(") + std::to_string(r.id) + ", " + quote(r.task) + ", 'schedule', '" +
               store::to_string(r.status) + "', " + std::to_string(r.created_ms) + ", " +
               (r.finished_ms ? std::to_string(*r.finished_ms) : "NULL") + ", " + std::to_string(r.log_bytes) + ")";
      }
      sql += ";";
    }
    exec(sql);
  }

  // The whole plan, read a page of `page` runs at a time.
  Result<std::vector<Expired>> sql_plan(const store::ExpiryRules& rules, const store::ExpiryMarks& marks,
                                        int64_t page) {
    std::vector<Expired> out;
    int64_t after = 0;
    while (true) {
      auto got = store_->plan_expired(rules, marks, after, page);
      if (!got) return tl::unexpected(got.error());
      if (got->size() > static_cast<size_t>(page)) return fail(ErrorCode::conflict, "a page longer than its limit");
      for (const auto& e : *got) out.push_back(Expired{e.id, reason_of(e.reason)});
      if (got->size() < static_cast<size_t>(page)) break;
      after = got->back().id;
    }
    return out;
  }

  TempDir dir_;
  std::string path_ = dir_ / "cronkeep.db";
  std::unique_ptr<PgSchema> pg_;
  std::unique_ptr<store::Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ExpiryPlanTest, ::testing::Values(Backend::sqlite, Backend::postgres),
                         backend_name);

// Random policies and histories, meant to hit every rule and its edges:
// several tasks (configured or not, a system task, names that need quoting),
// every status, runs finished exactly at a limit, terminal runs without
// finished_at, in-flight runs holding log bytes, ids with gaps.
struct Generator {
  explicit Generator(uint32_t seed) : rng(seed) {}
  std::mt19937 rng;

  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

  Policy policy(const std::vector<std::string>& names) {
    auto rules = [&] {
      TaskRules r;
      r.keep_runs = pick(0, 9) == 0 ? pick(0, 1) * 1000 : pick(1, 8);  // now and then none or all
      r.keep_for = pick(0, 4) == 0 ? 0ms : pick(1, 20) * kDay;
      r.keep_failed_for = pick(0, 4) == 0 ? 0ms : pick(1, 40) * kDay;
      return r;
    };
    Policy p;
    p.defaults = rules();
    for (const std::string& n : names)
      if (pick(0, 1)) p.tasks[n] = rules();
    p.tasks["configured-without-runs"] = rules();
    p.max_age = pick(0, 1) ? pick(1, 60) * kDay : 0ms;
    p.max_runs = pick(0, 2) == 0 ? pick(1, 40) : 0;
    // Sizes in tens, so that the bytes left often equal the cap exactly.
    p.max_log_bytes = pick(0, 2) == 0 ? static_cast<uint64_t>(pick(1, 600)) * 10 : 0;
    return pick(0, 5) == 0 ? without_age_rules(p) : p;
  }

  std::vector<Row> history(const std::vector<std::string>& names, int max_runs) {
    static constexpr RunStatus kStatuses[] = {
        RunStatus::pending,  RunStatus::running, RunStatus::succeeded,    RunStatus::failed,  RunStatus::timeout,
        RunStatus::cancelled, RunStatus::crashed, RunStatus::log_overflow, RunStatus::skipped, RunStatus::missed};
    std::vector<Row> rows;
    const int n = pick(0, max_runs);
    // Some histories are mostly of one status (a failing task, a skip storm).
    const int bias = pick(0, 3) == 0 ? pick(2, 9) : -1;
    int64_t id = pick(0, 5);
    for (int i = 0; i < n; ++i) {
      id += pick(1, 3);
      const RunStatus status = bias >= 0 && pick(0, 3) ? kStatuses[bias] : kStatuses[pick(0, 9)];
      // Whole days (a run exactly keep_for old is kept), or days and a few ms.
      const int64_t age = int64_t(pick(0, 70)) * kDay.count() + (pick(0, 1) ? 0 : pick(-1000, 1000));
      Row r{id, names[static_cast<size_t>(pick(0, static_cast<int>(names.size()) - 1))], status,
            to_unix_ms(kNow) - age - pick(0, 3) * 3'600'000, std::nullopt, pick(0, 1) ? 0 : pick(0, 30) * 10};
      if (store::is_terminal(status) && pick(0, 9)) r.finished_ms = to_unix_ms(kNow) - age;
      if (pick(0, 40) == 0) r.log_bytes = -pick(1, 50);
      rows.push_back(r);
    }
    return rows;
  }

  std::vector<std::string> names() {
    static const std::vector<std::string> pool = {"t0", "t1", "t2", "backup.nightly", "cronkeep:retention", "o'dd",
                                                  "q\"uo\\te"};
    std::vector<std::string> out;
    const int n = pick(1, 5);
    for (int i = 0; i < n; ++i) out.push_back(pool[static_cast<size_t>(pick(0, static_cast<int>(pool.size()) - 1))]);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }
};

TEST_P(ExpiryPlanTest, ChoosesTheSameRunsForTheSameReasonsAsThePlannerOnRandomHistories) {
  const uint32_t seed = 20261127;
  Generator gen(seed);
  int nonempty = 0, ceilings = 0, held = 0;
  std::map<Reason, int> reasons;
  for (int iter = 0; iter < 400; ++iter) {
    const std::vector<std::string> names = gen.names();
    const Policy policy = gen.policy(names);
    const std::vector<Row> rows = gen.history(names, 80);
    write(rows);
    const std::string context = "seed " + std::to_string(seed) + ", case " + std::to_string(iter) + "\n";

    auto briefs = store_->list_briefs();
    ASSERT_TRUE(briefs) << briefs.error().message;
    const std::vector<Expired> expected = plan_purge(policy, *briefs, kNow);
    const GuardFacts facts = guard_facts(*briefs, expected);

    const store::ExpiryRules rules = expiry_rules(policy, kNow);
    auto marks = store_->expiry_marks(rules);
    ASSERT_TRUE(marks) << context << marks.error().message;
    const int64_t page = gen.pick(0, 3) == 0 ? 1000 : gen.pick(1, 5);
    auto got = sql_plan(rules, *marks, page);
    ASSERT_TRUE(got) << context << got.error().message;

    ASSERT_EQ(pairs(*got), pairs(expected)) << context << "page " << page << "\n" << dump(policy, rows);
    ASSERT_EQ(marks->terminal, facts.terminal) << context << dump(policy, rows);
    ASSERT_EQ(marks->expired_by_age, facts.expired_by_age) << context << dump(policy, rows);
    ASSERT_EQ(marks->newest_executed_finish, facts.newest_executed_finish) << context << dump(policy, rows);
    ASSERT_EQ(marks->expired, static_cast<int64_t>(expected.size())) << context << dump(policy, rows);
    if (!expected.empty()) {
      ASSERT_GE(marks->last_expired, expected.back().id) << context;
    }
    ASSERT_EQ(age_rules_held_back(policy, guard_facts(*marks), kNow).has_value(),
              age_rules_held_back(policy, *briefs, expected, kNow).has_value())
        << context;

    nonempty += expected.empty() ? 0 : 1;
    held += age_rules_held_back(policy, facts, kNow) ? 1 : 0;
    for (const Expired& e : expected) {
      ++reasons[e.reason];
      ceilings += e.reason == Reason::max_runs || e.reason == Reason::max_size;
    }
  }
  // The random settings reach every rule and the guard.
  EXPECT_GT(nonempty, 250);
  for (Reason r : {Reason::keep_runs, Reason::keep_for, Reason::keep_failed_for, Reason::max_age, Reason::max_runs,
                   Reason::max_size})
    EXPECT_GT(reasons[r], 20) << to_string(r);
  EXPECT_GT(ceilings, 100);
  EXPECT_GT(held, 10);
}

// The retention preview of one task as it was computed before it used the
// SQL plan: every run's brief in memory, plan_purge, the guard (and the plan
// without the age rules when it objects), the task's share of the plan.
ops::RetentionPreview preview_in_memory(const Policy& policy, const std::vector<store::RunBrief>& runs,
                                        const std::string& task) {
  ops::RetentionPreview out;
  out.task = task;
  std::vector<Expired> plan = plan_purge(policy, runs, kNow);
  if (auto held = age_rules_held_back(policy, runs, plan, kNow)) {
    out.held_back = *held;
    plan = plan_purge(without_age_rules(policy), runs, kNow);
  }
  std::map<int64_t, const store::RunBrief*> of_task;
  for (const store::RunBrief& r : runs)
    if (r.task == task && store::is_terminal(r.status)) {
      ++out.terminal_runs;
      of_task.emplace(r.id, &r);
    }
  std::map<std::string, int64_t> reasons;
  for (const Expired& e : plan) {
    auto it = of_task.find(e.id);
    if (it == of_task.end()) continue;
    ++out.expired_runs;
    out.expired_log_bytes += it->second->log_bytes;
    ++reasons[to_string(e.reason)];
    if (!out.oldest_expired_id) out.oldest_expired_id = e.id;
    out.newest_expired_id = e.id;
  }
  for (auto& [reason, n] : reasons) out.by_reason.emplace_back(reason, n);
  return out;
}

// The figures of a preview, without its rules.
std::string figures(const ops::RetentionPreview& p) {
  ops::RetentionPreview f = p;
  f.rules.clear();
  return ops::dump(ops::to_json(f));
}

TEST_P(ExpiryPlanTest, TheRetentionPreviewOfATaskIsWhatItWasWithEveryRunInMemory) {
  const uint32_t seed = 20261129;
  Generator gen(seed);
  FakeClock clock(kNow);
  int compared = 0, with_expired = 0, held = 0;
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<std::string> names = gen.names();
    const Policy policy = gen.policy(names);
    const std::vector<Row> rows = gen.history(names, 80);
    write(rows);
    const std::string context = "seed " + std::to_string(seed) + ", case " + std::to_string(iter) + "\n";
    // The configuration that policy_from() turns into `policy`.
    config::Config cfg;
    cfg.defaults.keep_runs = policy.defaults.keep_runs;
    cfg.defaults.keep_for = policy.defaults.keep_for;
    cfg.defaults.keep_failed_for = policy.defaults.keep_failed_for;
    for (const auto& [name, r] : policy.tasks) {
      config::Task t;
      t.name = name;
      t.policy = cfg.defaults;
      t.policy.keep_runs = r.keep_runs;
      t.policy.keep_for = r.keep_for;
      t.policy.keep_failed_for = r.keep_failed_for;
      cfg.tasks.push_back(t);
    }
    cfg.retention.max_age = policy.max_age;
    cfg.retention.max_runs = policy.max_runs;
    cfg.storage.max_size = policy.max_log_bytes;
    cfg.retention.max_fraction_per_sweep = policy.max_fraction_per_sweep;
    // What the preview reads from the configuration is `policy`.
    const Policy read_back = policy_from(cfg);
    ASSERT_EQ(read_back.tasks.size(), policy.tasks.size());
    ASSERT_EQ(read_back.max_log_bytes, policy.max_log_bytes);
    ASSERT_EQ(read_back.defaults.keep_runs, policy.defaults.keep_runs);
    ops::Local local(ops::LocalDeps{&cfg, store_.get(), nullptr, nullptr, nullptr, &clock, nullptr, false, {}});

    auto briefs = store_->list_briefs();
    ASSERT_TRUE(briefs);
    store::ExpiryRules rules = expiry_rules(policy, kNow);
    auto marks = store_->expiry_marks(rules);
    ASSERT_TRUE(marks) << context << marks.error().message;
    if (age_rules_held_back(policy, guard_facts(*marks), kNow)) {
      rules = expiry_rules(without_age_rules(policy), kNow);
      marks = store_->expiry_marks(rules);
      ASSERT_TRUE(marks);
    }
    names.push_back("configured-without-runs");
    for (const std::string& task : names) {
      const ops::RetentionPreview want = preview_in_memory(policy, *briefs, task);
      // The store's share of the SQL plan, for every name (some are not
      // valid task names, which ops refuses before the store is asked).
      auto mine = store_->task_expiry(rules, *marks, task);
      ASSERT_TRUE(mine) << context << mine.error().message;
      ASSERT_EQ(mine->terminal, want.terminal_runs) << context << task << "\n" << dump(policy, rows);
      ASSERT_EQ(mine->expired, want.expired_runs) << context << task << "\n" << dump(policy, rows);
      ASSERT_EQ(mine->expired_log_bytes, want.expired_log_bytes) << context << task;
      ASSERT_EQ(mine->oldest_expired, want.oldest_expired_id) << context << task;
      ASSERT_EQ(mine->newest_expired, want.newest_expired_id) << context << task;
      if (!ops::check_task_name(task)) continue;
      // The preview itself, through the operations layer.
      auto got = local.retention_preview(task);
      const bool known = cfg.find_task(task) || task == kRetentionTask ||
                         std::any_of(rows.begin(), rows.end(), [&](const Row& r) { return r.task == task; });
      if (!known) {
        ASSERT_FALSE(got) << context << task;
        EXPECT_EQ(got.error().code, ErrorCode::not_found);
        continue;
      }
      ASSERT_TRUE(got) << context << task << ": " << got.error().message;
      ASSERT_EQ(figures(*got), figures(want)) << context << task << "\n" << dump(policy, rows);
      ++compared;
      with_expired += want.expired_runs > 0;
      held += !want.held_back.empty();
    }
  }
  EXPECT_GT(compared, 300);
  EXPECT_GT(with_expired, 120);
  EXPECT_GT(held, 10);
}

TEST_P(ExpiryPlanTest, DeletingEachPageBeforeReadingTheNextDeletesExactlyThePlan) {
  const uint32_t seed = 20261128;
  Generator gen(seed);
  for (int iter = 0; iter < 120; ++iter) {
    const std::vector<std::string> names = gen.names();
    const Policy policy = gen.policy(names);
    const std::vector<Row> rows = gen.history(names, 60);
    write(rows);
    const std::string context = "seed " + std::to_string(seed) + ", case " + std::to_string(iter) + "\n";
    auto briefs = store_->list_briefs();
    ASSERT_TRUE(briefs);
    std::set<int64_t> expected;
    for (const Expired& e : plan_purge(policy, *briefs, kNow)) expected.insert(e.id);

    const store::ExpiryRules rules = expiry_rules(policy, kNow);
    auto marks = store_->expiry_marks(rules);
    ASSERT_TRUE(marks) << context << marks.error().message;
    const int64_t page = gen.pick(1, 4);
    int64_t after = 0;
    std::set<int64_t> deleted;
    while (true) {
      auto got = store_->plan_expired(rules, *marks, after, page);
      ASSERT_TRUE(got) << context << got.error().message;
      if (got->empty()) break;
      std::vector<int64_t> ids;
      for (const auto& e : *got) ids.push_back(e.id);
      auto d = store_->delete_runs(ids);
      ASSERT_TRUE(d) << d.error().message;
      ASSERT_EQ(d->rows, static_cast<int64_t>(ids.size())) << context;
      deleted.insert(ids.begin(), ids.end());
      after = ids.back();
    }
    ASSERT_EQ(deleted, expected) << context << "page " << page << "\n" << dump(policy, rows);
    // What is left is a history the plan leaves alone.
    auto left = store_->list_briefs();
    ASSERT_TRUE(left);
    ASSERT_EQ(left->size(), rows.size() - expected.size());
  }
}

TEST_P(ExpiryPlanTest, ARunThatFinishesAfterTheMarksKeepsTheNewestSuccessExemption) {
  // keep_runs = 2: with runs 1 (running) and 2, 3, 4 (failed), run 1 is not
  // among the two newest executed runs. It succeeds after the marks were
  // read: it is now the task's newest success, which no per-task rule may
  // take.
  write({Row{1, "t", RunStatus::running, to_unix_ms(kNow) - 3'600'000, std::nullopt, 0},
         Row{2, "t", RunStatus::failed, to_unix_ms(kNow) - 3'000'000, to_unix_ms(kNow) - 3'000'000, 0},
         Row{3, "t", RunStatus::failed, to_unix_ms(kNow) - 2'000'000, to_unix_ms(kNow) - 2'000'000, 0},
         Row{4, "t", RunStatus::failed, to_unix_ms(kNow) - 1'000'000, to_unix_ms(kNow) - 1'000'000, 0}});
  Policy p;
  p.defaults = TaskRules{2, 30 * kDay, 90 * kDay};
  const store::ExpiryRules rules = expiry_rules(p, kNow);
  auto marks = store_->expiry_marks(rules);
  ASSERT_TRUE(marks) << marks.error().message;
  auto before = store_->plan_expired(rules, *marks, 0, 100);
  ASSERT_TRUE(before);
  ASSERT_EQ(before->size(), 1u);  // run 2: the third newest executed run, not the newest failure
  EXPECT_EQ(before->front().id, 2);

  exec("UPDATE runs SET status = 'succeeded', finished_at = " + std::to_string(to_unix_ms(kNow)) + " WHERE id = 1");
  auto after = store_->plan_expired(rules, *marks, 0, 100);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u) << "run 1 is the newest success now";
  EXPECT_EQ(after->front().id, 2);
}

TEST_P(ExpiryPlanTest, ATasksNewestSuccessBehindMoreThanAThousandFailuresIsStillExempt) {
  // The marks look for the newest success among a task's 1,000 newest runs
  // only; an older one is checked on the rows.
  auto at = [](int64_t id) { return to_unix_ms(kNow) - (2000 - id) * 1000; };
  std::vector<Row> rows = {Row{1, "t", RunStatus::succeeded, at(1), at(1), 0},
                           Row{2, "t", RunStatus::succeeded, at(2), at(2), 0}};
  for (int64_t id = 3; id <= 1502; ++id) rows.push_back(Row{id, "t", RunStatus::failed, at(id), at(id), 0});
  write(rows);
  Policy p;
  p.defaults = TaskRules{2, 30 * kDay, 90 * kDay};
  const store::ExpiryRules rules = expiry_rules(p, kNow);
  auto marks = store_->expiry_marks(rules);
  ASSERT_TRUE(marks) << marks.error().message;
  auto got = sql_plan(rules, *marks, 500);
  ASSERT_TRUE(got) << got.error().message;
  auto briefs = store_->list_briefs();
  ASSERT_TRUE(briefs);
  const auto expected = plan_purge(p, *briefs, kNow);
  EXPECT_EQ(pairs(*got), pairs(expected));
  ASSERT_EQ(expected.size(), 1499u);  // run 1 and the failures but the 2 newest; run 2 stays
  EXPECT_EQ(expected.front().id, 1);
  EXPECT_EQ(expected[1].id, 3);
}

TEST_P(ExpiryPlanTest, AnUnknownStatusIsCorruption) {
  write({Row{1, "t", RunStatus::succeeded, 0, 0, 0}});
  exec(std::string(GetParam() == Backend::sqlite ? "PRAGMA ignore_check_constraints = ON; " : "") +
       "UPDATE runs SET status = 'exploded' WHERE id = 1");
  auto marks = store_->expiry_marks(expiry_rules(Policy{}, kNow));
  ASSERT_FALSE(marks);
  EXPECT_EQ(marks.error().code, ErrorCode::corruption);
}

TEST_P(ExpiryPlanTest, RefusesAnEmptyPage) {
  auto marks = store_->expiry_marks(expiry_rules(Policy{}, kNow));
  ASSERT_TRUE(marks);
  EXPECT_EQ(store_->plan_expired(expiry_rules(Policy{}, kNow), *marks, 0, 0).error().code,
            ErrorCode::invalid_argument);
}

// ---- the sweep on both backends ---------------------------------------------

TEST_P(ExpiryPlanTest, ASweepDeletesWhatThePlannerChoosesAndHoldsBackAgeRulesAfterAClockJump) {
  std::vector<Row> rows;
  for (int i = 1; i <= 30; ++i)
    rows.push_back(Row{i, i % 3 ? "a" : "b", i % 7 ? RunStatus::succeeded : RunStatus::failed,
                       to_unix_ms(kNow) - (31 - i) * 3'600'000, to_unix_ms(kNow) - (31 - i) * 3'600'000, 10});
  write(rows);
  Policy p;
  p.defaults = TaskRules{4, 30 * kDay, 90 * kDay};
  p.max_age = 365 * kDay;
  Executor ex(*store_, layout::DataDir(dir_.path()), 3);
  // A clock 400 days ahead: the age rules are held back, keep_runs applies.
  const TimePoint ahead = kNow + 400 * kDay;
  auto all = store_->list_briefs();
  ASSERT_TRUE(all);
  ASSERT_EQ(plan_purge(p, *all, ahead).size(), 30u);  // max_age would take everything
  const auto by_count = plan_purge(without_age_rules(p), *all, ahead);
  ASSERT_EQ(by_count.size(), 22u);  // each task keeps its 4 newest runs
  auto jumped = sweep(*store_, ex, p, ahead);
  ASSERT_FALSE(jumped);
  EXPECT_EQ(jumped.error().code, ErrorCode::conflict);
  EXPECT_EQ(jumped.error().message.rfind("Retention stopped: age rules held back: ", 0), 0u) << jumped.error().message;
  EXPECT_NE(jumped.error().message.find("Count and size rules applied: Purged 22 run(s)"), std::string::npos)
      << jumped.error().message;
  auto left = store_->list_briefs();
  ASSERT_TRUE(left);
  EXPECT_EQ(left->size(), 8u);

  // Back on time, with a lower keep_runs: exactly the planner's choice goes.
  p.defaults.keep_runs = 2;
  const auto expected = plan_purge(p, *left, kNow);
  ASSERT_FALSE(expected.empty());
  auto r = sweep(*store_, ex, p, kNow);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(r->by_reason[Reason::keep_runs], static_cast<int64_t>(expected.size()));
  auto now_left = store_->list_briefs();
  ASSERT_TRUE(now_left);
  EXPECT_EQ(now_left->size(), left->size() - expected.size());
  EXPECT_TRUE(plan_purge(p, *now_left, kNow).empty());
}

// ---- the plans SQLite chooses ------------------------------------------------

std::string query_plan(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &s, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  std::string out;
  while (sqlite3_step(s) == SQLITE_ROW) out += std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 3))) + "\n";
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

TEST(ExpiryPlanSqlite, PagesReadRunsInIdOrderWithoutSortingAndFloorsReadTheTaskIndexAlone) {
  TempDir dir;
  ASSERT_TRUE(store::open_sqlite(dir / "cronkeep.db"));
  namespace sql = store::expiry_sql;
  const auto d = sql::Dialect::sqlite;
  const std::string page = query_plan(dir / "cronkeep.db", sql::page(d));
  EXPECT_NE(page.find("SEARCH r USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), std::string::npos) << page;
  EXPECT_EQ(page.find("TEMP B-TREE"), std::string::npos) << page;  // no sort: the page stops at its limit
  EXPECT_NE(page.find("USING COVERING INDEX runs_by_task_status (task=? AND id>?)"), std::string::npos) << page;
  const std::string summary = query_plan(dir / "cronkeep.db", sql::expired_summary(d));
  EXPECT_EQ(summary.find("TEMP B-TREE"), std::string::npos) << summary;
  EXPECT_EQ(summary.find("CO-ROUTINE"), std::string::npos) << summary;  // one pass, no subquery per row
  EXPECT_NE(summary.find("AUTOMATIC COVERING INDEX (task=?)"), std::string::npos) << summary;
  const std::string counts = query_plan(dir / "cronkeep.db", sql::status_counts(d));
  EXPECT_NE(counts.find("COVERING INDEX runs_by_status_finished"), std::string::npos) << counts;
  EXPECT_EQ(counts.find("TEMP B-TREE"), std::string::npos) << counts;
  const std::string newest = query_plan(dir / "cronkeep.db", sql::newest_executed_finish(d));
  EXPECT_NE(newest.find("runs_by_status_finished (status=?)"), std::string::npos) << newest;
  EXPECT_EQ(newest.find("SCAN runs"), std::string::npos) << newest;
  for (auto kind : {sql::Kind::executed, sql::Kind::records, sql::Kind::terminal, sql::Kind::succeeded,
                    sql::Kind::failures}) {
    // The newest runs: at most 1,000 index entries, not sorted again.
    const std::string floor = query_plan(dir / "cronkeep.db", sql::nth_newest(d, kind));
    EXPECT_NE(floor.find("USING COVERING INDEX runs_by_task_status (task=?)"), std::string::npos) << floor;
    EXPECT_EQ(floor.find("TEMP B-TREE"), std::string::npos) << floor;
  }
  // A task's preview reads that task's index entries, not the history.
  const std::string preview = query_plan(dir / "cronkeep.db", sql::task_expired(d));
  EXPECT_NE(preview.find("SEARCH r USING INDEX runs_by_task_status (task=? AND id<?)"), std::string::npos) << preview;
  EXPECT_EQ(preview.find("SCAN r"), std::string::npos) << preview;
  const std::string terminal = query_plan(dir / "cronkeep.db", sql::task_terminal(d));
  EXPECT_NE(terminal.find("USING COVERING INDEX runs_by_task_status (task=?)"), std::string::npos) << terminal;
  const std::string names = query_plan(dir / "cronkeep.db", sql::task_names(d));
  EXPECT_NE(names.find("runs_by_task_status (task>?)"), std::string::npos) << names;
  // The scheduler's start-up reads walk each task's index, newest first, and
  // stop at their window: no scan of the runs, no sort of runs (only the
  // task names are sorted).
  for (const std::string& startup : {sql::last_fire(d), sql::last_outcomes(d)}) {
    const std::string plan = query_plan(dir / "cronkeep.db", startup);
    EXPECT_NE(plan.find("SEARCH r USING INDEX runs_by_task_status (task=?)"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN r\n"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN runs"), std::string::npos) << plan;
  }
  EXPECT_EQ(query_plan(dir / "cronkeep.db", sql::last_fire(d)).find("TEMP B-TREE"), std::string::npos);
}

}  // namespace
}  // namespace cronkeep::retention
