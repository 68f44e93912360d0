// The SQLite implementation of Store: one writer connection (all writes are
// serialised on it) and one reader connection, both in WAL mode, so a reader
// never waits for the writer. The schema is versioned in schema_migrations;
// migrations run in one transaction at open.
#include <sqlite3.h>

#include <filesystem>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/fault.h"
#include "store/expiry_sql.h"
#include "store/store.h"

namespace cronkeep::store {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// Migration N (1-based) is kMigrations[N-1]. Never edit a shipped migration;
// append a new one.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE runs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  task         TEXT    NOT NULL,
  trigger      TEXT    NOT NULL CHECK (trigger IN ('schedule','manual','retry','catch_up','system')),
  attempt      INTEGER NOT NULL DEFAULT 1,
  retry_of     INTEGER,
  status       TEXT    NOT NULL CHECK (status IN ('pending','running','succeeded','failed','timeout',
                                                  'cancelled','crashed','log_overflow','skipped','missed')),
  scheduled_at INTEGER,
  created_at   INTEGER NOT NULL,
  started_at   INTEGER,
  finished_at  INTEGER,
  exit_code    INTEGER,
  signal       INTEGER,
  duration_ms  INTEGER,
  cpu_ms       INTEGER,
  max_rss_kb   INTEGER,
  log_path     TEXT    NOT NULL DEFAULT '',
  log_bytes    INTEGER NOT NULL DEFAULT 0,
  message      TEXT    NOT NULL DEFAULT ''
);
-- A task's history, newest first (and keyset paging by id).
CREATE INDEX runs_by_task ON runs (task, id DESC);
-- Expired terminal runs by status and age (retention), and in-flight runs.
CREATE INDEX runs_by_status_finished ON runs (status, finished_at);
)sql",
    R"sql(
-- Log files of deleted runs, written in the deleting transaction and cleared
-- once the files are gone (replayed at start-up).
CREATE TABLE tombstones (
  id         INTEGER PRIMARY KEY,
  run_id     INTEGER NOT NULL,
  log_path   TEXT    NOT NULL,
  created_at INTEGER NOT NULL
);
-- What each system run (retention, compactor) did.
CREATE TABLE maintenance (
  run_id             INTEGER PRIMARY KEY,
  task               TEXT    NOT NULL,
  rows_deleted       INTEGER NOT NULL DEFAULT 0,
  files_deleted      INTEGER NOT NULL DEFAULT 0,
  file_errors        INTEGER NOT NULL DEFAULT 0,
  log_bytes_freed    INTEGER NOT NULL DEFAULT 0,
  db_bytes_reclaimed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX maintenance_by_task ON maintenance (task, run_id DESC);
)sql",
    R"sql(
-- The node that recorded each run and wrote each log (one node on SQLite).
ALTER TABLE runs ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE tombstones ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE TABLE nodes (
  name         TEXT    PRIMARY KEY,
  api_address  TEXT    NOT NULL DEFAULT '',
  started_at   INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
)sql",
    R"sql(
-- Tasks paused by `cronkeep pause` (paused = 1), and when each was last
-- paused or resumed: a resumed task catches up only fires after changed_at.
CREATE TABLE task_pauses (
  task       TEXT    PRIMARY KEY,
  paused     INTEGER NOT NULL,
  changed_at INTEGER NOT NULL
);
)sql",
    R"sql(
-- Every notification delivery attempt (issue 13), bounded by retention.
CREATE TABLE notifications (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at    INTEGER NOT NULL,
  sink          TEXT    NOT NULL,
  event         TEXT    NOT NULL,
  task          TEXT    NOT NULL DEFAULT '',
  run_id        INTEGER,
  count         INTEGER NOT NULL DEFAULT 1,
  attempt       INTEGER NOT NULL,
  status        TEXT    NOT NULL,
  response_code INTEGER,
  error         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX notifications_by_time ON notifications (created_at);
)sql",
    R"sql(
-- When each system run ended and the database's size then: the points of
-- the maintenance page's chart (GET /api/maintenance/history). Figures
-- recorded before take the end time of their run, when it still exists.
ALTER TABLE maintenance ADD COLUMN finished_at INTEGER;
ALTER TABLE maintenance ADD COLUMN db_bytes INTEGER;
UPDATE maintenance SET finished_at = (SELECT finished_at FROM runs WHERE runs.id = maintenance.run_id);
)sql",
    R"sql(
-- A task's runs newest first with their status: retention's plan reads the
-- keep_runs floors and the newest success and failure from the index alone
-- (docs/retention.md). Its prefix serves every query runs_by_task served.
CREATE INDEX runs_by_task_status ON runs (task, id DESC, status);
DROP INDEX runs_by_task;
)sql",
    R"sql(
-- Each task's number of runs (issue 12): GET /api/tasks reads it instead
-- of counting the task index. Kept by the store in the transaction of every
-- insert and delete of runs (docs/storage.md); counted once here.
CREATE TABLE task_stats (
  task TEXT    PRIMARY KEY,
  runs INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;
)sql",
};

// A connection and the statements prepared on it. A statement is prepared
// once per connection and text, and reset after each use: preparing (parsing,
// planning, generating code) costs more than running the short statements
// of the hot paths: a fire's insert, a start's mark, an end's finish, the
// API's reads (docs/storage.md, "Prepared once"). Used, like the connection,
// by one thread at a time (the store's mutex for that connection).
class Db {
 public:
  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() {
    for (auto& [sql, c] : cache_) sqlite3_finalize(c.stmt);
    if (db_) sqlite3_close_v2(db_);
  }
  sqlite3* get() const { return db_; }
  operator sqlite3*() const { return db_; }
  sqlite3** out() { return &db_; }

  // A statement of `sql` lent for one use: `stmt` is null when it does not
  // prepare (sqlite3_errmsg says why). A text already in use (a nested
  // use) or beyond the cache's size gets a statement of its own, which the
  // borrower finalizes (`busy` null); a cached one is given back.
  struct Loan {
    sqlite3_stmt* stmt = nullptr;
    bool* busy = nullptr;
  };
  Loan borrow(const char* sql) {
    auto it = cache_.find(std::string_view(sql));
    if (it != cache_.end() && !it->second.busy) {
      it->second.busy = true;
      return Loan{it->second.stmt, &it->second.busy};
    }
    const bool keep = it == cache_.end() && cache_.size() < kMaxCached;
    Loan loan;
    if (sqlite3_prepare_v3(db_, sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &loan.stmt, nullptr) != SQLITE_OK) {
      sqlite3_finalize(loan.stmt);
      return Loan{};
    }
    if (keep) loan.busy = &cache_.emplace(std::string(sql), Cached{loan.stmt, true}).first->second.busy;
    return loan;
  }

  // Ends a loan: the statement is reset (which ends its read, if any), its
  // parameters cleared, and it is free for the next borrower.
  static void give_back(const Loan& loan) {
    sqlite3_reset(loan.stmt);
    sqlite3_clear_bindings(loan.stmt);
    *loan.busy = false;
  }

 private:
  // The store's distinct statement texts number well under this; the cap
  // only bounds a future caller that builds texts without bound.
  static constexpr size_t kMaxCached = 128;
  struct Cached {
    sqlite3_stmt* stmt;
    bool busy;
  };
  sqlite3* db_ = nullptr;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const { return std::hash<std::string_view>{}(sql); }
  };
  std::unordered_map<std::string, Cached, Hash, std::equal_to<>> cache_;
};

class Stmt {
 public:
  // Prepared for this use only (statements of set-up and rare paths).
  Stmt(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v3(db, sql, -1, 0, &stmt_, nullptr); }
  // Borrowed from the connection's prepared statements.
  Stmt(Db& db, const char* sql) : db_(db.get()), loan_(db.borrow(sql)), stmt_(loan_.stmt) {
    rc_ = stmt_ ? SQLITE_OK : sqlite3_errcode(db_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() {
    if (loan_.busy) Db::give_back(loan_);
    else sqlite3_finalize(stmt_);
  }

  bool ok() const { return rc_ == SQLITE_OK; }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void bind(int i, std::string_view v) { sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); }
  void bind(int i, const char* v) { sqlite3_bind_text(stmt_, i, v, -1, SQLITE_STATIC); }
  void bind_null(int i) { sqlite3_bind_null(stmt_, i); }
  template <class T>
  void bind_opt(int i, const std::optional<T>& v) {
    if (v) bind(i, static_cast<int64_t>(*v));
    else bind_null(i);
  }
  void bind_opt(int i, const std::optional<TimePoint>& v) {
    if (v) bind(i, to_unix_ms(*v));
    else bind_null(i);
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return rc_ = sqlite3_step(stmt_); }
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  // Valid until the next step, reset or finalize.
  std::string_view text_view(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string_view();
  }
  std::string text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::optional<int64_t> opt_int64(int col) const { return is_null(col) ? std::nullopt : std::optional(int64(col)); }
  std::optional<TimePoint> opt_time(int col) const {
    return is_null(col) ? std::nullopt : std::optional(from_unix_ms(int64(col)));
  }

 private:
  sqlite3* db_;
  Db::Loan loan_;  // busy set when stmt_ is the connection's, to be given back
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

tl::unexpected<Error> sql_error(sqlite3* db, std::string_view what) {
  const int code = sqlite3_errcode(db);
  ErrorCode ec = ErrorCode::io;
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) ec = ErrorCode::busy;
  else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) ec = ErrorCode::corruption;
  else if (code == SQLITE_CONSTRAINT) ec = ErrorCode::conflict;
  else if (code == SQLITE_FULL) ec = ErrorCode::no_space;
  return fail(ec, std::string(what) + ": " + sqlite3_errmsg(db));
}

Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return fail(sqlite3_errcode(db) == SQLITE_FULL ? ErrorCode::no_space : ErrorCode::io, std::string("sqlite: ") + msg);
  }
  return {};
}

// After a failed statement: the first error is the one reported; should the
// ROLLBACK fail too, SQLite rolls the transaction back when the connection
// closes or the next BEGIN fails loudly.
void rollback(sqlite3* db) { (void)exec(db, "ROLLBACK"); }

// Both statements are the same on PostgreSQL (pg_store.cc).
constexpr const char* kCountMismatchSql =
    "SELECT task, SUM(recorded), SUM(actual) FROM ("
    " SELECT task, runs AS recorded, 0 AS actual FROM task_stats"
    " UNION ALL SELECT task, 0, COUNT(*) FROM runs GROUP BY task) c"
    " GROUP BY task HAVING SUM(recorded) <> SUM(actual) ORDER BY task";
constexpr const char* kRecountSql =
    "DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;";

constexpr const char* kRunColumns =
    "id, task, trigger, attempt, retry_of, status, scheduled_at, created_at, started_at, finished_at, "
    "exit_code, signal, duration_ms, cpu_ms, max_rss_kb, log_path, log_bytes, message, node";

// A status or trigger this build does not know is corruption (or a newer
// schema), never silently some other value.
Result<RunStatus> status_column(const Stmt& s, int column, int64_t id) {
  const std::string text = s.text(column);
  if (auto st = parse_status(text)) return *st;
  return fail(ErrorCode::corruption, "run " + std::to_string(id) + " has an unknown status \"" + text + "\"");
}

Result<Run> read_run(const Stmt& s) {
  Run r;
  r.id = s.int64(0);
  r.task = s.text(1);
  auto trigger = parse_trigger(s.text(2));
  if (!trigger)
    return fail(ErrorCode::corruption, "run " + std::to_string(r.id) + " has an unknown trigger \"" + s.text(2) + "\"");
  r.trigger = *trigger;
  r.attempt = static_cast<int>(s.int64(3));
  r.retry_of = s.opt_int64(4);
  auto status = status_column(s, 5, r.id);
  if (!status) return tl::unexpected(status.error());
  r.status = *status;
  r.scheduled_at = s.opt_time(6);
  r.created_at = from_unix_ms(s.int64(7));
  r.started_at = s.opt_time(8);
  r.finished_at = s.opt_time(9);
  if (auto v = s.opt_int64(10)) r.exit_code = static_cast<int>(*v);
  if (auto v = s.opt_int64(11)) r.signal = static_cast<int>(*v);
  r.duration_ms = s.opt_int64(12);
  r.cpu_ms = s.opt_int64(13);
  r.max_rss_kb = s.opt_int64(14);
  r.log_path = s.text(15);
  r.log_bytes = s.int64(16);
  r.message = s.text(17);
  r.node = s.text(18);
  return r;
}

Status configure(sqlite3* db, bool writer) {
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db, 0);
  // journal_size_limit: once a checkpoint has copied the WAL back, the file
  // is cut to this size when the WAL starts over, so it never stays at the
  // size of its busiest minute.
  if (auto st = exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=16777216;"); !st)
    return st;
  // Automatic checkpoints would fsync inside whichever commit crosses the
  // threshold; the daemon checkpoints from a background thread instead.
  if (writer) return exec(db, "PRAGMA wal_autocheckpoint=0;");
  return {};
}

Status migrate(sqlite3* db) {
  // auto_vacuum must be chosen before the first table exists.
  if (auto st = exec(db, "PRAGMA auto_vacuum=INCREMENTAL;"); !st) return st;
  {
    Stmt mode(db, "PRAGMA journal_mode=WAL");
    if (!mode.ok() || mode.step() != SQLITE_ROW) return sql_error(db, "enabling WAL");
    if (mode.text(0) != "wal") return fail(ErrorCode::io, "could not enable WAL journal mode (got " + mode.text(0) + ")");
  }
  if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return st;
  auto undo = [db](Status st) {
    rollback(db);
    return st;
  };
  if (auto st = exec(db,
                     "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
      !st)
    return undo(st);
  int64_t current = 0;
  {
    Stmt q(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!q.ok() || q.step() != SQLITE_ROW) return undo(sql_error(db, "reading schema version"));
    current = q.int64(0);
  }
  constexpr int64_t kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);
  if (current > kLatest)
    return undo(fail(ErrorCode::corruption, "database schema version " + std::to_string(current) +
                                                    " is newer than this cronkeep supports (" +
                                                    std::to_string(kLatest) + ")"));
  for (int64_t v = current + 1; v <= kLatest; ++v) {
    if (auto st = exec(db, kMigrations[v - 1]); !st) return undo(st);
    Stmt ins(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now') * 1000)");
    ins.bind(1, v);
    if (ins.step() != SQLITE_DONE) return undo(sql_error(db, "recording migration"));
  }
  return exec(db, "COMMIT");
}

class SqliteStore final : public Store {
 public:
  Status open(const std::string& path, OpenOptions options) {
    const int flags = options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!options.read_only) {
      if (sqlite3_open_v2(path.c_str(), writer_.out(), flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
        return fail(ErrorCode::io, "cannot open database " + path + ": " + sqlite3_errmsg(writer_.get()));
      if (auto st = configure(writer_.get(), true); !st) return st;
      if (auto st = migrate(writer_.get()); !st) return fail(st.error().code, path + ": " + st.error().message);
    }
    if (sqlite3_open_v2(path.c_str(), reader_.out(), SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK)
      return fail(ErrorCode::io, "cannot open database " + path + ": " + sqlite3_errmsg(reader_.get()));
    if (auto st = configure(reader_.get(), false); !st) return st;
    if (options.read_only) {
      Stmt q(reader_, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs'");
      if (!q.ok() || q.step() != SQLITE_ROW) return sql_error(reader_.get(), path);
      if (q.int64(0) == 0) return fail(ErrorCode::corruption, path + " is not a cronkeep database");
      // A read-only store does not migrate: a database of a version before
      // 8 (its daemon not yet upgraded) has no counts to read.
      Stmt kept(reader_, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'task_stats'");
      if (!kept.ok() || kept.step() != SQLITE_ROW) return sql_error(reader_.get(), path);
      counts_kept_ = kept.int64(0) != 0;
    }
    read_only_ = options.read_only;
    path_ = path;
    node_ = options.node;
    return {};
  }

  Status checkpoint() override {
    std::lock_guard lock(checkpoint_mu_);
    if (read_only_) return fail(ErrorCode::conflict, "the store was opened read-only");
    if (!checkpointer_.get()) {
      if (sqlite3_open_v2(path_.c_str(), checkpointer_.out(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
          SQLITE_OK)
        return fail(ErrorCode::io, "cannot open database " + path_ + ": " + sqlite3_errmsg(checkpointer_.get()));
      if (auto st = configure(checkpointer_.get(), false); !st) return st;
    }
    int frames = 0;
    int copied = 0;
    if (sqlite3_wal_checkpoint_v2(checkpointer_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied) !=
        SQLITE_OK)
      return sql_error(checkpointer_.get(), "checkpoint");
    if (frames > kRestartFrames && copied == frames) return restart_wal();
    return {};
  }

  // The first write after a checkpoint that copied every frame starts the
  // WAL anew: it writes the WAL's header and syncs it (fdatasync, even at
  // synchronous=NORMAL). Left to the next writer, that sync fell on a fire's
  // commit once per checkpoint (0.6-3 ms here, a disk flush elsewhere). Made
  // here instead by a write of one page that changes nothing (the database's
  // user_version, set to what it is), unless a commit of the scheduler is
  // waiting or someone is writing (their commit restarts the WAL then).
  // kRestartFrames is that write's own frame: a WAL holding nothing else is
  // not restarted again, so an idle daemon does not write every 5 s.
  static constexpr int kRestartFrames = 1;
  Status restart_wal() {
    if (urgent_waiters_.load() > 0) return {};
    std::unique_lock lock(write_mu_, std::try_to_lock);
    if (!lock.owns_lock() || urgent_waiters_.load() > 0) return {};
    Stmt version(writer_, "PRAGMA user_version");
    if (!version.ok() || version.step() != SQLITE_ROW) return sql_error(writer_.get(), "reading user_version");
    const std::string set = "PRAGMA user_version = " + std::to_string(version.int64(0));
    version.reset();
    return exec(writer_.get(), set.c_str());
  }

  Status write_batch(const std::function<void()>& body) override {
    // The scheduler's batches go before bulk deletes waiting for the lock.
    urgent_waiters_.fetch_add(1);
    std::unique_lock lock(write_mu_);
    urgent_waiters_.fetch_sub(1);
    if (auto st = writable(); !st) return st;
    if (auto st = exec(writer_.get(), "BEGIN IMMEDIATE"); !st) return st;
    body();
    fault::crash_point("store.before_batch_commit");
    if (auto st = exec(writer_.get(), "COMMIT"); !st) {
      rollback(writer_.get());
      return st;
    }
    return {};
  }

  Result<int64_t> insert_run(const NewRun& run) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Stmt s(writer_,
           "INSERT INTO runs (task, trigger, attempt, retry_of, status, scheduled_at, created_at, finished_at, message,"
           " node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, run.task);
    s.bind(2, to_string(run.trigger));
    s.bind(3, run.attempt);
    s.bind_opt(4, run.retry_of);
    s.bind(5, to_string(run.status));
    s.bind_opt(6, run.scheduled_at);
    s.bind(7, to_unix_ms(run.created_at));
    s.bind_opt(8, run.finished_at);
    s.bind(9, run.message);
    s.bind(10, node_);
    // The row and its task's count in one transaction: write_batch's, or
    // one of its own.
    Db& db = writer_;
    const bool own = sqlite3_get_autocommit(db) != 0;
    if (own) {
      if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return tl::unexpected(st.error());
    }
    auto abort = [&](const std::string& what) {
      auto err = sql_error(db, what);
      if (own) rollback(db);
      return err;
    };
    if (s.step() != SQLITE_DONE) return abort("inserting run of " + run.task);
    const int64_t id = sqlite3_last_insert_rowid(db);
    Stmt count(db, "INSERT INTO task_stats (task, runs) VALUES (?, 1) ON CONFLICT (task) DO UPDATE SET runs = runs + 1");
    count.bind(1, run.task);
    if (count.step() != SQLITE_DONE) return abort("counting run of " + run.task);
    if (own) {
      if (auto st = exec(db, "COMMIT"); !st) {
        rollback(db);
        return tl::unexpected(st.error());
      }
    }
    return id;
  }

  // One node: every fire is this node's.
  Result<std::optional<int64_t>> claim_fire(const NewRun& run) override {
    auto id = insert_run(run);
    if (!id) return tl::unexpected(id.error());
    return std::optional<int64_t>(*id);
  }

  Status mark_running(int64_t id, const std::string& log_path, TimePoint started_at) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_, "UPDATE runs SET status = 'running', log_path = ?, started_at = ? WHERE id = ? AND status = 'pending'");
    s.bind(1, log_path);
    s.bind(2, to_unix_ms(started_at));
    s.bind(3, id);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "starting run " + std::to_string(id));
    if (sqlite3_changes(writer_.get()) == 0) return missing_or_conflict(id, "is not pending");
    return {};
  }

  Status mark_running_in_slot(int64_t id, const std::string& log_path, TimePoint started_at,
                              int max_concurrent) override {
    // One writer: the count and the mark are one statement.
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_,
           "UPDATE runs SET status = 'running', log_path = ?, started_at = ? WHERE id = ? AND status = 'pending'"
           " AND (SELECT COUNT(*) FROM runs r WHERE r.task = runs.task AND r.status = 'running') < ?");
    s.bind(1, log_path);
    s.bind(2, to_unix_ms(started_at));
    s.bind(3, id);
    s.bind(4, static_cast<int64_t>(max_concurrent));
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "starting run " + std::to_string(id));
    if (sqlite3_changes(writer_.get()) > 0) return {};
    Stmt q(writer_, "SELECT task FROM runs WHERE id = ? AND status = 'pending'");
    q.bind(1, id);
    if (q.step() == SQLITE_ROW)
      return fail(ErrorCode::busy, "max_concurrent = " + std::to_string(max_concurrent) + " reached: the runs of " +
                                       q.text(0) + " hold every slot");
    return missing_or_conflict(id, "is not pending");
  }

  Status finish_run(int64_t id, const RunEnd& end) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_,
           "UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, signal = ?, duration_ms = ?, cpu_ms = ?,"
           " max_rss_kb = ?, log_bytes = ?, message = ? WHERE id = ? AND status IN ('pending', 'running')");
    s.bind(1, to_string(end.status));
    s.bind(2, to_unix_ms(end.finished_at));
    s.bind_opt(3, end.exit_code);
    s.bind_opt(4, end.signal);
    s.bind_opt(5, end.duration_ms);
    s.bind_opt(6, end.cpu_ms);
    s.bind_opt(7, end.max_rss_kb);
    s.bind(8, end.log_bytes);
    s.bind(9, end.message);
    s.bind(10, id);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "finishing run " + std::to_string(id));
    if (sqlite3_changes(writer_.get()) == 0) return missing_or_conflict(id, "is already finished");
    return {};
  }

  Result<int64_t> reconcile_in_flight(TimePoint now, std::string_view message) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Stmt s(writer_,
           "UPDATE runs SET status = 'crashed', exit_code = -2, finished_at = ?,"
           " duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE MAX(0, ? - started_at) END,"
           " message = ? WHERE status IN ('pending', 'running')");
    s.bind(1, to_unix_ms(now));
    s.bind(2, to_unix_ms(now));
    s.bind(3, message);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "reconciling in-flight runs");
    return static_cast<int64_t>(sqlite3_changes(writer_.get()));
  }

  Result<Run> get_run(int64_t id) override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?").c_str());
    s.bind(1, id);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return fail(ErrorCode::not_found, "run " + std::to_string(id) + " not found");
    if (rc != SQLITE_ROW) return sql_error(reader_.get(), "reading run " + std::to_string(id));
    return read_run(s);
  }

  Result<std::vector<Run>> list_runs(const RunQuery& q) override {
    if (q.limit < 1 || q.limit > 1000) return fail(ErrorCode::invalid_argument, "limit must be between 1 and 1000");
    std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs WHERE task = ?1";
    if (q.before_id) sql += " AND id < ?2";
    if (q.status) sql += " AND status = ?3";
    sql += " ORDER BY id DESC LIMIT ?4";
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, sql.c_str());
    if (!s.ok()) return sql_error(reader_.get(), "listing runs");
    s.bind(1, q.task);
    if (q.before_id) s.bind(2, *q.before_id);
    if (q.status) s.bind(3, to_string(*q.status));
    s.bind(4, q.limit);
    return collect(s, "listing runs of " + q.task);
  }

  Result<std::optional<TimePoint>> last_fire(std::string_view task) override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, expiry_sql::last_fire(expiry_sql::Dialect::sqlite).c_str());
    s.bind(1, task);
    if (s.step() != SQLITE_ROW) return sql_error(reader_.get(), "reading last fire");
    return s.opt_time(0);
  }

  Result<std::vector<TaskSummary>> task_summaries() override {
    std::lock_guard lock(read_mu_);
    Db& db = reader_;
    const std::string what = "summarising tasks";
    // One read transaction: the counts and the newest runs from one snapshot.
    if (auto st = exec(db, "BEGIN"); !st) return tl::unexpected(st.error());
    struct EndRead {
      sqlite3* db;
      ~EndRead() { rollback(db); }
    } end_read{db};
    // The counts the store keeps (task_stats), not a pass over the task
    // index (75 ms at 1,000,000 runs; still the way on a database of a
    // version before 8, read-only).
    std::vector<TaskSummary> out;
    {
      Stmt s(db, counts_kept_ ? "SELECT task, runs FROM task_stats WHERE runs > 0 ORDER BY task"
                              : "SELECT task, COUNT(*) FROM runs GROUP BY task ORDER BY task");
      if (!s.ok()) return sql_error(db, what);
      int rc;
      while ((rc = s.step()) == SQLITE_ROW) {
        TaskSummary t;
        t.task = s.text(0);
        t.runs = s.int64(1);
        out.push_back(std::move(t));
      }
      if (rc != SQLITE_DONE) return sql_error(db, what);
    }
    // The newest run of each: one seek of the task index per task.
    Stmt s(db, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE task = ?1 ORDER BY id DESC LIMIT 1").c_str());
    if (!s.ok()) return sql_error(db, what);
    for (TaskSummary& t : out) {
      s.reset();
      s.bind(1, std::string_view(t.task));
      const int rc = s.step();
      if (rc == SQLITE_DONE) continue;
      if (rc != SQLITE_ROW) return sql_error(db, what);
      auto run = read_run(s);
      if (!run) return tl::unexpected(run.error());
      t.last_run = std::move(*run);
    }
    return out;
  }

  Result<std::vector<TaskRuns>> recent_runs(int per_task) override {
    if (per_task < 1 || per_task > 1000) return fail(ErrorCode::invalid_argument, "per_task must be between 1 and 1000");
    std::lock_guard lock(read_mu_);
    Db& db = reader_;
    // One read transaction: every task's runs from the same snapshot.
    if (auto st = exec(db, "BEGIN"); !st) return tl::unexpected(st.error());
    struct EndRead {
      sqlite3* db;
      ~EndRead() { rollback(db); }
    } end_read{db};
    const std::string what = "listing recent runs";
    std::vector<TaskRuns> out;
    {
      // A loose scan of the task index: one seek per task name.
      Stmt names(db, expiry_sql::task_names(expiry_sql::Dialect::sqlite).c_str());
      if (!names.ok()) return sql_error(db, what);
      int rc;
      while ((rc = names.step()) == SQLITE_ROW) out.push_back(TaskRuns{names.text(0), {}});
      if (rc != SQLITE_DONE) return sql_error(db, what);
    }
    Stmt s(db, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE task = ?1 ORDER BY id DESC LIMIT ?2").c_str());
    if (!s.ok()) return sql_error(db, what);
    for (TaskRuns& t : out) {
      s.reset();
      s.bind(1, std::string_view(t.task));
      s.bind(2, static_cast<int64_t>(per_task));
      auto runs = collect(s, what + " of " + t.task);
      if (!runs) return tl::unexpected(runs.error());
      t.runs = std::move(*runs);
    }
    return out;
  }

  Result<std::vector<RunBrief>> list_briefs() override {
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    Stmt s(*db, "SELECT id, task, status, COALESCE(finished_at, created_at), log_bytes FROM runs ORDER BY id");
    return collect_briefs(*db, s, "listing runs for retention");
  }

  Result<ExpiryMarks> expiry_marks(const ExpiryRules& rules) override {
    namespace sql = expiry_sql;
    constexpr auto kDialect = sql::Dialect::sqlite;
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    // One read transaction: every step sees the same snapshot.
    if (auto st = exec(*db, "BEGIN"); !st) return tl::unexpected(st.error());
    struct EndRead {
      sqlite3* db;
      ~EndRead() { rollback(db); }
    } end_read{*db};
    const std::string what = "planning retention";
    auto failed = [&] { return sql_error(*db, what); };
    ExpiryMarks marks;
    {
      Stmt names(*db, sql::task_names(kDialect).c_str());
      if (!names.ok()) return failed();
      int rc;
      while ((rc = names.step()) == SQLITE_ROW) marks.tasks.push_back(ExpiryMarks::TaskMarks{names.text(0)});
      if (rc != SQLITE_DONE) return failed();
    }
    sql::Summary summary;
    {
      Stmt s(*db, sql::status_counts(kDialect).c_str());
      int rc;
      while ((rc = s.step()) == SQLITE_ROW) sql::count_status(summary, s.text(0), s.int64(1));
      if (rc != SQLITE_DONE) return failed();
    }
    std::map<sql::Kind, std::unique_ptr<Stmt>> nth_newest;
    for (auto kind : {sql::Kind::executed, sql::Kind::records, sql::Kind::terminal, sql::Kind::succeeded,
                      sql::Kind::failures}) {
      auto s = std::make_unique<Stmt>(*db, sql::nth_newest(kDialect, kind).c_str());
      if (!s->ok()) return failed();
      nth_newest.emplace(kind, std::move(s));
    }
    auto filled = sql::fill_task_marks(rules, marks, summary.runs, [&](const std::string& task, sql::Kind kind, int64_t offset)
                                                         -> Result<std::optional<int64_t>> {
      Stmt& s = *nth_newest.at(kind);
      s.reset();
      s.bind(1, task);
      if (kind == sql::Kind::executed || kind == sql::Kind::records) s.bind(2, offset);
      const int rc = s.step();
      if (rc == SQLITE_ROW) return s.opt_int64(0);
      if (rc == SQLITE_DONE) return std::optional<int64_t>();
      return failed();
    });
    if (!filled) return tl::unexpected(filled.error());

    {
      Stmt s(*db, sql::newest_executed_finish(kDialect).c_str());
      if (s.step() != SQLITE_ROW) return failed();
      summary.newest_executed_finish = s.opt_int64(0);
    }
    const std::string per_task = sql::per_task_json(kDialect, rules, marks);
    {
      Stmt s(*db, sql::expired_summary(kDialect).c_str());
      if (!s.ok()) return failed();
      bind_expiry(s, per_task, rules, sql::prefilter(rules, marks, false));
      if (s.step() != SQLITE_ROW) return failed();
      summary.expired = s.int64(0);
      summary.expired_by_age = s.int64(1);
      summary.expired_bytes = s.int64(2);
      summary.last_expired = s.opt_int64(3);
    }
    if (rules.max_log_bytes > 0) {
      Stmt s(*db, sql::total_bytes(kDialect).c_str());
      if (s.step() != SQLITE_ROW) return failed();
      summary.total_bytes = s.int64(0);
    }
    Stmt nth(*db, sql::nth_survivor(kDialect).c_str());
    Stmt survivors(*db, sql::survivors(kDialect).c_str());
    if (!nth.ok() || !survivors.ok()) return failed();
    auto applied = sql::apply_summary(
        rules, summary, marks,
        [&](int64_t offset) -> Result<std::optional<int64_t>> {
          nth.reset();
          bind_expiry(nth, per_task, rules);
          nth.bind(5, offset);
          const int rc = nth.step();
          if (rc == SQLITE_ROW) return std::optional(nth.int64(0));
          if (rc == SQLITE_DONE) return std::optional<int64_t>();
          return failed();
        },
        [&](int64_t after, int64_t limit) -> Result<std::vector<std::pair<int64_t, int64_t>>> {
          survivors.reset();
          bind_expiry(survivors, per_task, rules);
          survivors.bind(5, after);
          survivors.bind(6, limit);
          std::vector<std::pair<int64_t, int64_t>> out;
          int rc;
          while ((rc = survivors.step()) == SQLITE_ROW) out.emplace_back(survivors.int64(0), survivors.int64(1));
          if (rc != SQLITE_DONE) return failed();
          return out;
        });
    if (!applied) return tl::unexpected(applied.error());
    return marks;
  }

  Result<std::vector<ExpiredRun>> plan_expired(const ExpiryRules& rules, const ExpiryMarks& marks, int64_t after_id,
                                               int64_t limit) override {
    if (limit < 1) return fail(ErrorCode::invalid_argument, "limit must be at least 1");
    std::vector<ExpiredRun> out;
    if (marks.last_expired <= after_id) return out;
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    Stmt s(*db, expiry_sql::page(expiry_sql::Dialect::sqlite).c_str());
    if (!s.ok()) return sql_error(*db, "planning retention");
    bind_expiry(s, expiry_sql::per_task_json(expiry_sql::Dialect::sqlite, rules, marks), rules, expiry_sql::prefilter(rules, marks, true));
    s.bind(7, marks.max_runs_below);
    s.bind(8, marks.max_size_below);
    s.bind(9, after_id);
    s.bind(10, marks.last_expired);
    s.bind(11, limit);
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) out.push_back(ExpiredRun{s.int64(0), static_cast<ExpiryReason>(s.int64(1))});
    if (rc != SQLITE_DONE) return sql_error(*db, "planning retention");
    return out;
  }

  Result<TaskExpiry> task_expiry(const ExpiryRules& rules, const ExpiryMarks& marks, std::string_view task) override {
    namespace sql = expiry_sql;
    constexpr auto kDialect = sql::Dialect::sqlite;
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    const std::string what = "previewing retention of " + std::string(task);
    TaskExpiry out;
    {
      Stmt s(*db, sql::task_terminal(kDialect).c_str());
      if (!s.ok()) return sql_error(*db, what);
      s.bind(1, task);
      if (s.step() != SQLITE_ROW) return sql_error(*db, what);
      out.terminal = s.int64(0);
    }
    if (marks.last_expired <= 0) return out;
    Stmt s(*db, sql::task_expired(kDialect).c_str());
    if (!s.ok()) return sql_error(*db, what);
    bind_expiry(s, sql::per_task_json(kDialect, rules, marks), rules, sql::prefilter(rules, marks, true));
    s.bind(7, marks.max_runs_below);
    s.bind(8, marks.max_size_below);
    s.bind(9, task);
    s.bind(10, marks.last_expired);
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      const int64_t n = s.int64(1);
      out.by_reason[static_cast<ExpiryReason>(s.int64(0))] += n;
      out.expired += n;
      out.expired_log_bytes += s.int64(2);
      const int64_t lo = s.int64(3), hi = s.int64(4);
      if (!out.oldest_expired || lo < *out.oldest_expired) out.oldest_expired = lo;
      if (!out.newest_expired || hi > *out.newest_expired) out.newest_expired = hi;
    }
    if (rc != SQLITE_DONE) return sql_error(*db, what);
    return out;
  }

  Result<std::vector<RunBrief>> find_purgeable(const PurgeQuery& q) override {
    std::string sql =
        "SELECT id, task, status, finished_at, log_bytes FROM runs"
        " WHERE status NOT IN ('pending', 'running') AND finished_at < ?1";
    if (q.task) sql += " AND task = ?2";
    // `+status`: read in id order (the primary key, or the task index) and
    // stop at the limit, rather than sort every run of the status.
    if (q.status) sql += " AND +status = ?3";
    sql += " AND id > ?5 ORDER BY id";
    if (q.limit) sql += " LIMIT ?4";
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    Stmt s(*db, sql.c_str());
    if (!s.ok()) return sql_error(*db, "finding runs to purge");
    s.bind(1, to_unix_ms(q.finished_before));
    if (q.task) s.bind(2, *q.task);
    if (q.status) s.bind(3, to_string(*q.status));
    if (q.limit) s.bind(4, *q.limit);
    s.bind(5, q.after_id);
    return collect_briefs(*db, s, "finding runs to purge");
  }

  Result<Deleted> delete_runs(const std::vector<int64_t>& ids) override {
    // Yield to scheduler batches that are waiting (bounded, so a busy
    // scheduler cannot starve retention).
    for (int i = 0; i < 200 && urgent_waiters_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Db& db = writer_;
    if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return tl::unexpected(st.error());
    Deleted out;
    auto abort = [&](std::string what) {
      auto err = sql_error(db, what);
      rollback(db);
      return err;
    };
    Stmt pick(db, "SELECT log_path, log_bytes, task FROM runs WHERE id = ? AND status NOT IN ('pending', 'running')");
    Stmt tomb(db, "INSERT INTO tombstones (run_id, log_path, created_at, node) VALUES (?, ?, strftime('%s','now') * 1000, ?)");
    Stmt del(db, "DELETE FROM runs WHERE id = ?");
    std::map<std::string, int64_t, std::less<>> gone;  // runs deleted per task
    for (int64_t id : ids) {
      pick.reset();
      pick.bind(1, id);
      const int rc = pick.step();
      if (rc == SQLITE_DONE) continue;  // gone already, or in flight
      if (rc != SQLITE_ROW) return abort("reading run to delete");
      const std::string path = pick.text(0);
      const int64_t bytes = pick.int64(1);
      if (!path.empty()) {
        tomb.reset();
        tomb.bind(1, id);
        tomb.bind(2, path);
        tomb.bind(3, node_);
        if (tomb.step() != SQLITE_DONE) return abort("writing tombstone");
        out.tombstones.push_back(Tombstone{sqlite3_last_insert_rowid(db), id, path});
      }
      del.reset();
      del.bind(1, id);
      if (del.step() != SQLITE_DONE) return abort("deleting run");
      ++out.rows;
      out.log_bytes += bytes;
      if (auto it = gone.find(pick.text_view(2)); it != gone.end()) ++it->second;
      else gone.emplace(pick.text(2), 1);
    }
    // The counts: one update per task per transaction, and a task whose
    // last run went leaves the table.
    Stmt dec(db, "UPDATE task_stats SET runs = runs - ? WHERE task = ? RETURNING runs");
    Stmt drop(db, "DELETE FROM task_stats WHERE task = ? AND runs <= 0");
    for (const auto& [task, n] : gone) {
      dec.reset();
      dec.bind(1, n);
      dec.bind(2, std::string_view(task));
      const int rc = dec.step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return abort("counting deleted runs");
      const bool left = rc == SQLITE_ROW && dec.int64(0) > 0;
      if (rc == SQLITE_ROW && dec.step() != SQLITE_DONE) return abort("counting deleted runs");
      if (left) continue;
      drop.reset();
      drop.bind(1, std::string_view(task));
      if (drop.step() != SQLITE_DONE) return abort("counting deleted runs");
    }
    fault::crash_point("store.before_delete_commit");
    if (auto st = exec(db, "COMMIT"); !st) {
      rollback(db);
      return tl::unexpected(st.error());
    }
    return out;
  }

  Result<std::vector<Tombstone>> list_tombstones(int limit) override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, "SELECT id, run_id, log_path FROM tombstones ORDER BY id LIMIT ?");
    s.bind(1, limit);
    std::vector<Tombstone> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) out.push_back(Tombstone{s.int64(0), s.int64(1), s.text(2)});
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "listing tombstones");
    return out;
  }

  Status clear_tombstones(const std::vector<int64_t>& ids) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Db& db = writer_;
    if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return st;
    Stmt del(db, "DELETE FROM tombstones WHERE id = ?");
    for (int64_t id : ids) {
      del.reset();
      del.bind(1, id);
      if (del.step() != SQLITE_DONE) {
        auto err = sql_error(db, "clearing tombstone");
        rollback(db);
        return err;
      }
    }
    return exec(db, "COMMIT");
  }

  Status record_maintenance(const MaintenanceFigures& f) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_,
           "INSERT OR REPLACE INTO maintenance (run_id, task, rows_deleted, files_deleted, file_errors,"
           " log_bytes_freed, db_bytes_reclaimed, finished_at, db_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, f.run_id);
    s.bind(2, f.task);
    s.bind(3, f.rows_deleted);
    s.bind(4, f.files_deleted);
    s.bind(5, f.file_errors);
    s.bind(6, f.log_bytes_freed);
    s.bind(7, f.db_bytes_reclaimed);
    s.bind_opt(8, f.finished_at);
    s.bind_opt(9, f.db_bytes);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "recording maintenance figures");
    return {};
  }

  Result<std::vector<MaintenanceSummary>> maintenance_summaries() override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_,
           "SELECT m.run_id, m.task, m.rows_deleted, m.files_deleted, m.file_errors, m.log_bytes_freed,"
           " m.db_bytes_reclaimed, t.rows, t.files, t.errors, t.bytes, t.reclaimed FROM maintenance m JOIN"
           " (SELECT task, MAX(run_id) AS last, SUM(rows_deleted) AS rows, SUM(files_deleted) AS files,"
           "  SUM(file_errors) AS errors, SUM(log_bytes_freed) AS bytes, SUM(db_bytes_reclaimed) AS reclaimed"
           "  FROM maintenance GROUP BY task) t ON m.run_id = t.last ORDER BY m.task");
    std::vector<MaintenanceSummary> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      MaintenanceSummary m;
      m.last = MaintenanceFigures{s.int64(0), s.text(1), s.int64(2), s.int64(3), s.int64(4), s.int64(5), s.int64(6)};
      m.total = MaintenanceFigures{0, s.text(1), s.int64(7), s.int64(8), s.int64(9), s.int64(10), s.int64(11)};
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "reading maintenance figures");
    return out;
  }

  Result<std::vector<MaintenanceFigures>> list_maintenance(const MaintenanceQuery& q) override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_,
           "SELECT run_id, task, rows_deleted, files_deleted, file_errors, log_bytes_freed, db_bytes_reclaimed,"
           " finished_at, db_bytes FROM maintenance WHERE run_id < ?1 ORDER BY run_id DESC LIMIT ?2");
    s.bind(1, q.before_run_id.value_or(INT64_MAX));
    s.bind(2, static_cast<int64_t>(q.limit));
    std::vector<MaintenanceFigures> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW)
      out.push_back(MaintenanceFigures{s.int64(0), s.text(1), s.int64(2), s.int64(3), s.int64(4), s.int64(5),
                                       s.int64(6), s.opt_time(7), s.opt_int64(8)});
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "listing maintenance figures");
    return out;
  }

  Result<DbStats> db_stats() override {
    std::lock_guard lock(read_mu_);
    DbStats st;
    for (auto [pragma, field] : {std::pair{"PRAGMA page_size", &st.page_size}, {"PRAGMA page_count", &st.page_count},
                                 {"PRAGMA freelist_count", &st.freelist_count}, {"PRAGMA auto_vacuum", &st.auto_vacuum}}) {
      Stmt s(reader_, pragma);
      if (s.step() != SQLITE_ROW) return sql_error(reader_.get(), pragma);
      *field = s.int64(0);
    }
    std::error_code ec;
    const auto wal = std::filesystem::file_size(path_ + "-wal", ec);
    st.wal_bytes = ec ? 0 : static_cast<int64_t>(wal);
    return st;
  }

  Result<int64_t> incremental_vacuum(int64_t pages) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Db& db = writer_;
    auto free_pages = [&]() -> int64_t {
      Stmt s(db, "PRAGMA freelist_count");
      return s.step() == SQLITE_ROW ? s.int64(0) : 0;
    };
    const int64_t before = free_pages();
    Stmt s(db, ("PRAGMA incremental_vacuum(" + std::to_string(pages) + ")").c_str());
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return sql_error(db, "incremental_vacuum");
    return before - free_pages();
  }

  Status checkpoint_truncate() override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    if (sqlite3_wal_checkpoint_v2(writer_.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) != SQLITE_OK)
      return sql_error(writer_.get(), "wal_checkpoint(TRUNCATE)");
    return {};
  }

  Status optimize() override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    return exec(writer_.get(), "PRAGMA optimize");
  }

  Status vacuum_full() override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    if (auto st = exec(writer_.get(), "PRAGMA auto_vacuum=INCREMENTAL"); !st) return st;
    return exec(writer_.get(), "VACUUM");
  }

  Result<std::string> integrity_check() override {
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    Stmt s(*db, "PRAGMA integrity_check");
    std::string out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      if (!out.empty()) out += "\n";
      out += s.text(0);
    }
    if (rc != SQLITE_DONE) return sql_error(*db, "integrity_check");
    return out;
  }

  Result<std::vector<TaskCountMismatch>> check_task_counts() override {
    if (!counts_kept_) return std::vector<TaskCountMismatch>{};  // nothing kept to check
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    return count_mismatches(*db);
  }

  Result<std::vector<TaskCountMismatch>> repair_task_counts() override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Db& db = writer_;
    if (auto st = exec(db, "BEGIN IMMEDIATE"); !st) return tl::unexpected(st.error());
    auto wrong = count_mismatches(db);
    if (!wrong) {
      rollback(db);
      return wrong;
    }
    if (!wrong->empty()) {
      if (auto st = exec(db, kRecountSql); !st) {
        rollback(db);
        return tl::unexpected(st.error());
      }
    }
    if (auto st = exec(db, "COMMIT"); !st) {
      rollback(db);
      return tl::unexpected(st.error());
    }
    return wrong;
  }

  Status adopt_log(int64_t id, const std::string& log_path) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_, "UPDATE runs SET log_path = ? WHERE id = ? AND log_path = ''");
    s.bind(1, log_path);
    s.bind(2, id);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "adopting log");
    if (sqlite3_changes(writer_.get()) == 0) return missing_or_conflict(id, "already has a log");
    return {};
  }

  Status forget_log(int64_t id, std::string_view note) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_,
           "UPDATE runs SET log_path = '', message = CASE WHEN message = '' THEN ?1 ELSE message || '; ' || ?1 END"
           " WHERE id = ?2");
    s.bind(1, note);
    s.bind(2, id);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "clearing log path");
    if (sqlite3_changes(writer_.get()) == 0) return fail(ErrorCode::not_found, "run " + std::to_string(id) + " not found");
    return {};
  }

  Result<std::vector<LogRef>> log_paths() override {
    std::lock_guard lock(bulk_mu_);
    auto db = bulk();
    if (!db) return tl::unexpected(db.error());
    Stmt s(*db, "SELECT id, status, log_path FROM runs WHERE log_path != '' ORDER BY id");
    std::vector<LogRef> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW)
    {
      auto status = status_column(s, 1, s.int64(0));
      if (!status) return tl::unexpected(status.error());
      out.push_back(LogRef{s.int64(0), *status, s.text(2)});
    }
    if (rc != SQLITE_DONE) return sql_error(*db, "listing log paths");
    return out;
  }

  const std::string& node() const override { return node_; }

  Status heartbeat(std::string_view api_address, TimePoint started_at, TimePoint now, Millis) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    // The data directory's lock already keeps a second daemon out: the row
    // is this node's, whatever name an earlier run used.
    Stmt s(writer_,
           "INSERT INTO nodes (name, api_address, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4)"
           " ON CONFLICT (name) DO UPDATE SET api_address = ?2, started_at = ?3, heartbeat_at = ?4");
    s.bind(1, node_);
    s.bind(2, api_address);
    s.bind(3, to_unix_ms(started_at));
    s.bind(4, to_unix_ms(now));
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "recording heartbeat");
    // One node: names this data directory ran under before are not nodes.
    Stmt others(writer_, "DELETE FROM nodes WHERE name <> ?");
    others.bind(1, node_);
    if (others.step() != SQLITE_DONE) return sql_error(writer_.get(), "recording heartbeat");
    return {};
  }

  Status leave(TimePoint) override { return {}; }
  Result<std::vector<std::string>> expire_nodes(TimePoint, Millis) override { return std::vector<std::string>{}; }

  Result<std::vector<NodeInfo>> list_nodes() override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_,
           "SELECT name, api_address, started_at, heartbeat_at,"
           " (SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')) FROM nodes ORDER BY name");
    std::vector<NodeInfo> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      NodeInfo n;
      n.name = s.text(0);
      n.api_address = s.text(1);
      n.started_at = from_unix_ms(s.int64(2));
      n.heartbeat_at = from_unix_ms(s.int64(3));
      n.in_flight = s.int64(4);
      out.push_back(std::move(n));
    }
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "listing nodes");
    return out;
  }

  Status forget_node(std::string_view name) override {
    if (name == node_) return fail(ErrorCode::conflict, "node " + std::string(name) + " is this node");
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_, "DELETE FROM nodes WHERE name = ?");
    s.bind(1, name);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "forgetting node");
    const int changed = sqlite3_changes(writer_.get());
    Stmt t(writer_, "DELETE FROM tombstones WHERE node = ?");
    t.bind(1, name);
    if (t.step() != SQLITE_DONE) return sql_error(writer_.get(), "forgetting node's tombstones");
    if (changed == 0 && sqlite3_changes(writer_.get()) == 0)
      return fail(ErrorCode::not_found, "node " + std::string(name) + " not found");
    return {};
  }

  Result<bool> exclusively(std::string_view, const std::function<void()>& body) override {
    body();
    return true;
  }

  Result<std::vector<LastOutcome>> last_outcomes() override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, expiry_sql::last_outcomes(expiry_sql::Dialect::sqlite).c_str());
    std::vector<LastOutcome> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) out.push_back(LastOutcome{s.text(0), s.opt_time(1), s.opt_time(2)});
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "reading last outcomes");
    return out;
  }

  Status set_paused(std::string_view task, bool paused, TimePoint at) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_, "INSERT OR REPLACE INTO task_pauses (task, paused, changed_at) VALUES (?, ?, ?)");
    s.bind(1, task);
    s.bind(2, int64_t(paused ? 1 : 0));
    s.bind(3, to_unix_ms(at));
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "recording a pause");
    return {};
  }

  Result<std::vector<TaskPause>> task_pauses() override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, "SELECT task, paused, changed_at FROM task_pauses ORDER BY task");
    std::vector<TaskPause> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) out.push_back(TaskPause{s.text(0), s.int64(1) != 0, from_unix_ms(s.int64(2))});
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "reading pauses");
    return out;
  }

  Status record_delivery(const Delivery& d) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return st;
    Stmt s(writer_,
           "INSERT INTO notifications (created_at, sink, event, task, run_id, count, attempt, status, response_code,"
           " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, to_unix_ms(d.created_at));
    s.bind(2, d.sink);
    s.bind(3, d.event);
    s.bind(4, d.task);
    if (d.run_id) s.bind(5, *d.run_id);
    s.bind(6, d.count);
    s.bind(7, int64_t(d.attempt));
    s.bind(8, d.status);
    if (d.response_code) s.bind(9, int64_t(*d.response_code));
    s.bind(10, d.error);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "recording a notification");
    return {};
  }

  Result<std::vector<Delivery>> list_deliveries(int limit) override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_,
           "SELECT id, created_at, sink, event, task, run_id, count, attempt, status, response_code, error"
           " FROM notifications ORDER BY id DESC LIMIT ?");
    s.bind(1, int64_t(limit));
    std::vector<Delivery> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      Delivery d;
      d.id = s.int64(0);
      d.created_at = from_unix_ms(s.int64(1));
      d.sink = s.text(2);
      d.event = s.text(3);
      d.task = s.text(4);
      d.run_id = s.opt_int64(5);
      d.count = s.int64(6);
      d.attempt = static_cast<int>(s.int64(7));
      d.status = s.text(8);
      if (auto code = s.opt_int64(9)) d.response_code = static_cast<int>(*code);
      d.error = s.text(10);
      out.push_back(std::move(d));
    }
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), "listing notifications");
    return out;
  }

  Result<int64_t> trim_deliveries(TimePoint older_than, int64_t keep) override {
    std::lock_guard lock(write_mu_);
    if (auto st = writable(); !st) return tl::unexpected(st.error());
    Stmt s(writer_,
           "DELETE FROM notifications WHERE created_at < ? OR id <= (SELECT id FROM notifications ORDER BY id DESC"
           " LIMIT 1 OFFSET ?)");
    s.bind(1, to_unix_ms(older_than));
    s.bind(2, keep);
    if (s.step() != SQLITE_DONE) return sql_error(writer_.get(), "trimming notifications");
    return static_cast<int64_t>(sqlite3_changes(writer_.get()));
  }

  Result<int64_t> count_running_elsewhere(std::string_view) override { return 0; }

  Result<std::vector<Run>> in_flight_runs() override {
    std::lock_guard lock(read_mu_);
    Stmt s(reader_, (std::string("SELECT ") + kRunColumns +
                           " FROM runs WHERE status IN ('pending', 'running') ORDER BY id")
                              .c_str());
    return collect(s, "listing in-flight runs");
  }

 private:
  Status writable() const {
    if (read_only_) return fail(ErrorCode::conflict, "the store was opened read-only");
    return {};
  }

  // The connection for long reads (retention's listings, checks): of its
  // own, so the API's reads on reader_ never wait behind them. Requires:
  // bulk_mu_ held.
  Result<sqlite3*> bulk() {
    if (!bulk_.get()) {
      if (sqlite3_open_v2(path_.c_str(), bulk_.out(), SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
        return fail(ErrorCode::io, "cannot open database " + path_ + ": " + sqlite3_errmsg(bulk_.get()));
      if (auto st = configure(bulk_.get(), false); !st) return tl::unexpected(st.error());
    }
    return bulk_.get();
  }

  // The tasks whose kept count differs from a count of their runs: one
  // statement (one snapshot), one pass over the task index.
  static Result<std::vector<TaskCountMismatch>> count_mismatches(sqlite3* db) {
    Stmt s(db, kCountMismatchSql);
    if (!s.ok()) return sql_error(db, "checking task counts");
    std::vector<TaskCountMismatch> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) out.push_back(TaskCountMismatch{s.text(0), s.int64(1), s.int64(2)});
    if (rc != SQLITE_DONE) return sql_error(db, "checking task counts");
    return out;
  }

  // The parameters every expiry_sql statement shares (expiry_sql.h).
  static void bind_expiry(Stmt& s, const std::string& per_task, const ExpiryRules& rules,
                          std::optional<expiry_sql::Prefilter> prefilter = std::nullopt) {
    s.bind(1, std::string_view(per_task));
    s.bind_opt(2, expiry_sql::cutoff(rules.now, rules.defaults.keep_for));
    s.bind_opt(3, expiry_sql::cutoff(rules.now, rules.defaults.keep_failed_for));
    s.bind_opt(4, expiry_sql::cutoff(rules.now, rules.max_age));
    if (prefilter) {
      s.bind_opt(5, prefilter->cut);
      s.bind(6, prefilter->below);
    }
  }

  Result<std::vector<RunBrief>> collect_briefs(sqlite3* db, Stmt& s, const std::string& what) {
    std::vector<RunBrief> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW)
    {
      auto status = status_column(s, 2, s.int64(0));
      if (!status) return tl::unexpected(status.error());
      out.push_back(RunBrief{s.int64(0), s.text(1), *status, from_unix_ms(s.int64(3)), s.int64(4)});
    }
    if (rc != SQLITE_DONE) return sql_error(db, what);
    return out;
  }

  Result<std::vector<Run>> collect(Stmt& s, const std::string& what) {
    std::vector<Run> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      auto run = read_run(s);
      if (!run) return tl::unexpected(run.error());
      out.push_back(std::move(*run));
    }
    if (rc != SQLITE_DONE) return sql_error(reader_.get(), what);
    return out;
  }

  // Called with write_mu_ held after an UPDATE matched no row.
  Status missing_or_conflict(int64_t id, const char* state) {
    Stmt s(writer_, "SELECT 1 FROM runs WHERE id = ?");
    s.bind(1, id);
    if (s.step() == SQLITE_ROW) return fail(ErrorCode::conflict, "run " + std::to_string(id) + " " + state);
    return fail(ErrorCode::not_found, "run " + std::to_string(id) + " not found");
  }

  std::recursive_mutex write_mu_;  // recursive: write_batch's body calls the other writers
  std::atomic<int> urgent_waiters_{0};  // write_batch callers waiting for write_mu_
  std::mutex read_mu_;
  std::mutex checkpoint_mu_;
  std::string path_;
  std::string node_;
  Db writer_;
  Db reader_;
  Db checkpointer_;
  std::mutex bulk_mu_;
  Db bulk_;
  bool read_only_ = false;
  bool counts_kept_ = true;  // false: a read-only store on a database of a version before 8
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite(const std::string& db_path, OpenOptions options) {
  // Before SQLite's first use: no connection takes its page cache in one
  // bulk allocation (20 pages, 87 kB, each page touched at once); pages are
  // allocated as they are read. A later call (SQLite already in use) is a
  // harmless SQLITE_MISUSE.
  static const int no_bulk_page_cache = sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0);
  (void)no_bulk_page_cache;
  auto store = std::make_unique<SqliteStore>();
  if (auto st = store->open(db_path, options); !st) {
    Error e = st.error();
    if (e.message.find(db_path) == std::string::npos) e.message = db_path + ": " + e.message;
    return tl::unexpected(e);
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace cronkeep::store
