// Tests against PostgreSQL: the server tests/with_pg.sh starts (CTest runs
// the PostgreSQL tests through it), and a fresh schema per test.
#pragma once

#include <pqxx/pqxx>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace cronkeep::testing {

// store::open_postgres loads build/cronkeep-postgres.so, looked for beside
// the executable (build/tests here): point it at the build's, unless the
// caller set CRONKEEP_MODULE_DIR.
inline const bool kPgModuleDirSet = ::setenv("CRONKEEP_MODULE_DIR", CRONKEEP_MODULE_BUILD_DIR, 0) == 0;

// The PostgreSQL server the tests use (tests/with_pg.sh exports it; CTest
// runs the PostgreSQL instances through that script). Empty when unset.
inline std::string pg_url() {
  const char* url = std::getenv("CRONKEEP_TEST_PG_URL");
  return url ? url : "";
}

// A fresh schema per test on the shared test database, so every test starts
// from an empty store; dropped at the end.
class PgSchema {
 public:
  PgSchema() {
    static std::atomic<int> counter{0};
    name_ = "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE; CREATE SCHEMA " + name_);
  }
  ~PgSchema() {
    try {
      exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    } catch (...) {
    }
  }
  // The URL whose connections use this schema.
  std::string url() const { return pg_url() + (pg_url().find('?') == std::string::npos ? "?" : "&") +
                                    "options=-csearch_path%3D" + name_; }
  void exec(const std::string& sql) const {
    pqxx::connection c(url());
    pqxx::nontransaction tx(c);
    tx.exec("SET client_min_messages = warning");
    tx.exec(sql);
  }
  std::string query(const std::string& sql) const {
    pqxx::connection c(url());
    pqxx::nontransaction tx(c);
    auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }

 private:
  std::string name_;
};

}  // namespace cronkeep::testing
