// The HTTP API over real loopback sockets, with a real scheduler, real
// processes and a real SQLite database.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "events/events.h"
#include "http/http.h"
#include "layout/layout.h"
#include "ops/local.h"
#include "ops/remote.h"
#include "ops/wire.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "test_util.h"

namespace cronkeep::http {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using cronkeep::testing::TempDir;

constexpr const char* kToken = "s3cret-token";

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.daemon.data_dir = dir_.path();
    add_task("hello", "@yearly", "echo hello; echo oops >&2");
    add_task("fail", "@yearly", "echo no; exit 3");
    add_task("slow", "@yearly", "echo started; sleep 30");
    auto s = store::open_sqlite(dir_ / "cronkeep.db");
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    executor_ = std::make_unique<retention::Executor>(*store_, layout::DataDir(dir_.path()), 100);
    std::vector<scheduler::SystemTask> system = {
        {retention::kRetentionTask, "@every 1h", [](int64_t) -> Result<std::string> { return std::string("ok"); },
         std::nullopt}};
    ASSERT_TRUE(config::prepare(config_).empty());
    scheduler_ = std::make_unique<scheduler::Scheduler>(
        config_, *store_, clock_, scheduler::Options{dir_.path(), 2s, 1, std::move(system), &bus_});
    ASSERT_TRUE(scheduler_->start());
    Limits limits = limits_;
    local_ = std::make_unique<ops::Local>(ops::LocalDeps{&config_, store_.get(), executor_.get(), scheduler_.get(),
                                                         &bus_, &clock_, &maintenance_, true, {}});
    server_ = std::make_unique<Server>(Deps{local_.get(), [this] { return local_->metrics(); }, {}, kToken}, limits);
    auto st = server_->start("127.0.0.1:0");
    ASSERT_TRUE(st) << st.error().message;
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(20s);
  }
  void TearDown() override {
    local_->stop();
    scheduler_->shutdown();
    server_->stop();
  }
  void add_task(const char* name, const char* cron, const char* run) {
    config::Task t;
    t.name = name;
    t.cron = cron;
    t.run = run;
    t.workdir = dir_.path();
    config_.tasks.push_back(t);
  }
  httplib::Headers auth() const { return {{"Authorization", std::string("Bearer ") + kToken}}; }
  static json body(const httplib::Result& r) {
    EXPECT_TRUE(r);
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  int64_t run_and_wait(const std::string& task) {
    auto r = client_->Post(("/api/tasks/" + task + "/run?wait=true").c_str(), auth(), "", "application/json");
    EXPECT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    return body(r)["id"].get<int64_t>();
  }

  Limits limits_ = [] {
    Limits l;
    l.max_streams_per_client = 2;
    return l;
  }();
  TempDir dir_;
  config::Config config_;
  SystemClock clock_;
  events::Bus bus_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<retention::Executor> executor_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  ops::MaintenanceThread maintenance_;
  std::unique_ptr<ops::Local> local_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpTest, HealthzAnswers) {
  auto r = client_->Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body(r)["status"], "ok");
}

// The process's threads named `name`, with their nice values.
std::vector<int> nice_of_threads_named(const std::string& name) {
  std::vector<int> nice;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n != name) continue;
    const auto tid = static_cast<id_t>(std::stoi(task.path().filename().string()));
    errno = 0;
    const int v = ::getpriority(PRIO_PROCESS, tid);
    if (errno == 0) nice.push_back(v);
  }
  return nice;
}

TEST_F(HttpTest, EveryGetWorkerGivesWayToTheFirePathBeforeAnyRequest) {
  // No request yet: the workers are prepared by start() itself.
  std::vector<int> nice;
  for (int i = 0; i < 500; ++i) {
    nice = nice_of_threads_named("ck-http-get");
    if (nice.size() == static_cast<size_t>(limits_.threads)) break;
    std::this_thread::sleep_for(10ms);  // start() returns before the workers have taken their first job
  }
  ASSERT_EQ(nice.size(), static_cast<size_t>(limits_.threads));
  for (int v : nice) EXPECT_EQ(v, 10);
  EXPECT_EQ(nice_of_threads_named("ck-http").size(), 1u);
}

TEST_F(HttpTest, ABrowsersAcceptEncodingGetsGzipNotTheSlowBrotli) {
  httplib::Client raw("127.0.0.1", server_->port());
  raw.set_decompress(false);
  auto r = raw.Get("/api/tasks", {{"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Encoding"), "gzip");
  auto only_br = raw.Get("/api/tasks", {{"Accept-Encoding", "br"}});
  ASSERT_TRUE(only_br);
  EXPECT_EQ(only_br->get_header_value("Content-Encoding"), "");
  EXPECT_EQ(nlohmann::json::parse(only_br->body).size(), body(client_->Get("/api/tasks")).size());  // plain JSON
}

TEST_F(HttpTest, TasksListShowsSystemTasksOnlyToAuthenticatedCallers) {
  auto anon = body(client_->Get("/api/tasks"));
  ASSERT_TRUE(anon.is_array());
  EXPECT_EQ(anon.size(), 3u);
  EXPECT_EQ(anon[0]["task"], "hello");
  EXPECT_FALSE(anon[0]["next_fire"].is_null());
  auto authed = body(client_->Get("/api/tasks", auth()));
  ASSERT_EQ(authed.size(), 4u);
  EXPECT_EQ(authed[3]["task"], retention::kRetentionTask);
  EXPECT_EQ(client_->Get("/api/tasks/cronkeep:retention/runs")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/cronkeep:retention/runs", auth())->status, 200);
}

TEST_F(HttpTest, MutatingRoutesNeedTheBearerToken) {
  auto none = client_->Post("/api/tasks/hello/run", "", "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(body(none)["error"], "missing bearer token");
  auto wrong = client_->Post("/api/tasks/hello/run", {{"Authorization", "Bearer nope"}}, "", "application/json");
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(body(wrong)["error"], "invalid bearer token");
  EXPECT_EQ(client_->Post("/api/maintenance/compact", "", "application/json")->status, 401);
  EXPECT_EQ(client_->Post("/api/maintenance/purge", "{}", "application/json")->status, 401);
  EXPECT_TRUE(store_->list_runs(store::RunQuery{"hello", 10, std::nullopt, std::nullopt})->empty());
}

TEST_F(HttpTest, RunNowWithWaitReturnsTheFinishedRunAndItsLog) {
  const int64_t id = run_and_wait("hello");
  auto run = body(client_->Get(("/api/tasks/hello/runs/" + std::to_string(id)).c_str()));
  EXPECT_EQ(run["status"], "succeeded");
  EXPECT_EQ(run["trigger"], "manual");
  auto log = body(client_->Get(("/api/tasks/hello/runs/" + std::to_string(id) + "/log").c_str()));
  ASSERT_EQ(log["lines"].size(), 2u);
  EXPECT_EQ(log["lines"][0]["text"], "hello");
  EXPECT_EQ(log["lines"][0]["stream"], "o");
  EXPECT_EQ(log["lines"][1]["stream"], "e");
  EXPECT_TRUE(log["finalized"].get<bool>());
  auto tail = body(client_->Get(("/api/tasks/hello/runs/" + std::to_string(id) + "/log?tail=1").c_str()));
  ASSERT_EQ(tail["lines"].size(), 1u);
  EXPECT_EQ(tail["lines"][0]["line"], 2);
}

TEST_F(HttpTest, HistoryPagesNewestFirstWithKeysetPaging) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(run_and_wait(i % 2 ? "fail" : "hello"));
  for (int i = 0; i < 3; ++i) run_and_wait("hello");
  auto page = body(client_->Get("/api/tasks/hello/runs?limit=2"));
  ASSERT_EQ(page["runs"].size(), 2u);
  const int64_t before = page["next_before"].get<int64_t>();
  auto next = body(client_->Get(("/api/tasks/hello/runs?limit=2&before=" + std::to_string(before)).c_str()));
  ASSERT_EQ(next["runs"].size(), 2u);
  EXPECT_LT(next["runs"][0]["id"].get<int64_t>(), before);
  auto failed = body(client_->Get("/api/tasks/fail/runs?status=failed"));
  EXPECT_EQ(failed["runs"].size(), 2u);
  EXPECT_EQ(failed["runs"][0]["exit_code"], 3);
}

TEST_F(HttpTest, BadRequestsGetA400NamingTheField) {
  struct Case {
    const char* path;
    const char* fragment;
  };
  for (const Case& c : {Case{"/api/tasks/hello/runs?limit=0", "limit"}, Case{"/api/tasks/hello/runs?limit=abc", "limit"},
                        Case{"/api/tasks/hello/runs?before=-1", "before"}, Case{"/api/tasks/hello/runs?status=great", "status"},
                        Case{"/api/tasks/hello/runs?sort=asc", "unknown query parameter \"sort\""}}) {
    auto r = client_->Get(c.path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.path;
    EXPECT_NE(body(r)["error"].get<std::string>().find(c.fragment), std::string::npos) << c.path << ": " << r->body;
  }
}

TEST_F(HttpTest, UnknownTasksRunsAndPathLikeNamesAreNeverFileAccesses) {
  EXPECT_EQ(client_->Get("/api/tasks/nope/runs")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/hello/runs/999")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/hello/runs/abc")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/../runs")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/..%2F..%2Fetc/runs")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/hello%2F..%2Ffail/runs/1/log")->status, 404);
  auto r = client_->Post("/api/tasks/..%2Fhello/run", auth(), "", "application/json");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(body(r)["error"].get<std::string>().rfind("no such route", 0), 0u);
  const int64_t id = run_and_wait("hello");
  EXPECT_EQ(client_->Get(("/api/tasks/fail/runs/" + std::to_string(id)).c_str())->status, 404);  // another task's run
  // Each placeholder is one whole segment of exactly its shape: anything
  // else is no route at all (404 "no such route"), never a lookup.
  auto no_route = [&](const std::string& path) {
    auto res = client_->Get(path.c_str());
    if (!res) return ::testing::AssertionFailure() << path << ": no answer";
    if (res->status != 404 || body(res)["error"].get<std::string>().rfind("no such route", 0) != 0)
      return ::testing::AssertionFailure() << path << ": " << res->status << " " << res->body;
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(no_route("/api/tasks/"));
  EXPECT_TRUE(no_route("/api/tasks//runs"));
  EXPECT_TRUE(no_route("/api/tasks/hello/runs/"));
  EXPECT_TRUE(no_route("/api/tasks/hello/runs/1234567890123456789"));  // 19 digits
  EXPECT_TRUE(no_route("/api/tasks/" + std::string(129, 'a') + "/runs"));
  EXPECT_TRUE(no_route("/api/tasks/-hello/runs"));
  EXPECT_TRUE(no_route("/api/tasks/cronkeep:/runs"));
  EXPECT_TRUE(no_route("/api/tasks/cronkeep:Retention/runs"));
  EXPECT_TRUE(no_route("/api/archive/2026-1-01"));
  EXPECT_TRUE(no_route("/api/archive/2026-01-01/x"));
  EXPECT_TRUE(no_route("/healthz/"));
  EXPECT_TRUE(no_route("//healthz"));
  // ...while the longest name, an 18-digit id and a system task's name are routed.
  EXPECT_EQ(client_->Get(("/api/tasks/" + std::string(128, 'a') + "/runs").c_str())->status, 404);
  EXPECT_EQ(client_->Get(("/api/tasks/" + std::string(128, 'a') + "/runs").c_str())->body.find("no such route"),
            std::string::npos);
  EXPECT_EQ(client_->Get("/api/tasks/hello/runs/123456789012345678")->status, 404);  // routed: no such run
  EXPECT_EQ(client_->Get("/api/tasks/hello/runs/123456789012345678")->body.find("no such route"), std::string::npos);
  EXPECT_EQ(client_->Get("/api/tasks/cronkeep:retention/runs", auth())->status, 200);
}

TEST_F(HttpTest, PurgeValidatesItsBodyAndDryRunDeletesNothing) {
  run_and_wait("hello");
  auto post = [&](const std::string& b) { return client_->Post("/api/maintenance/purge", auth(), b, "application/json"); };
  struct Case {
    const char* body;
    const char* fragment;
  };
  for (const Case& c : {Case{"{not json", "not valid JSON"}, Case{"[1]", "JSON object"},
                        Case{R"({"older_than": "30d", "colour": 1})", "unknown field \"colour\""},
                        Case{R"({"older_than": "thirty days"})", "older_than"}, Case{R"({})", "older_than"},
                        Case{R"({"older_than": 30})", "older_than"},
                        Case{R"({"older_than": "1d", "status": "running"})", "status"},
                        Case{R"({"older_than": "1d", "limit": -1})", "limit"},
                        Case{R"({"older_than": "1d", "dry_run": "yes"})", "dry_run"}}) {
    auto r = post(c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body;
    EXPECT_NE(body(r)["error"].get<std::string>().find(c.fragment), std::string::npos) << c.body << ": " << r->body;
  }
  run_and_wait("hello");
  run_and_wait("fail");
  // Without "all", each task's newest success and newest failure stay.
  auto dry = body(post(R"({"older_than": "0s", "dry_run": true})"));
  EXPECT_EQ(dry["runs"], 1);
  EXPECT_EQ(dry["tasks"][0]["task"], "hello");
  EXPECT_EQ(store_->list_runs(store::RunQuery{"hello", 10, std::nullopt, std::nullopt})->size(), 2u);
  auto real = body(post(R"({"older_than": "0s"})"));
  EXPECT_EQ(real["runs"], 1);
  EXPECT_EQ(real["files_missing"], 0);
  EXPECT_EQ(store_->list_runs(store::RunQuery{"hello", 10, std::nullopt, std::nullopt})->size(), 1u);
  EXPECT_EQ(store_->list_runs(store::RunQuery{"fail", 10, std::nullopt, std::nullopt})->size(), 1u);
  auto all = body(post(R"({"older_than": "0s", "all": true, "task": "hello"})"));
  EXPECT_EQ(all["runs"], 1);
  EXPECT_TRUE(store_->list_runs(store::RunQuery{"hello", 10, std::nullopt, std::nullopt})->empty());
  // An unknown task is an error that lists the known ones, not "purged 0".
  auto unknown = post(R"({"older_than": "0s", "task": "nosuch"})");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(body(unknown)["error"].get<std::string>().find("known tasks: hello, fail, slow"), std::string::npos)
      << unknown->body;
  // Each purge is in the history as a run of its own.
  auto sys = store_->list_runs(store::RunQuery{retention::kRetentionTask, 10, std::nullopt, std::nullopt});
  ASSERT_EQ(sys->size(), 2u);
  EXPECT_EQ(sys->front().trigger, store::Trigger::manual);
  EXPECT_NE(sys->back().message.find("purged 1 run(s)"), std::string::npos) << sys->back().message;
}

TEST_F(HttpTest, BodiesOverOneMebibyteAreRefused) {
  const std::string big(2 << 20, 'x');
  auto r = client_->Post("/api/maintenance/purge", auth(), big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(HttpTest, CancelStopsARunningRun) {
  auto r = client_->Post("/api/tasks/slow/run", auth(), "", "application/json");
  ASSERT_EQ(r->status, 202);
  const int64_t id = body(r)["id"];
  for (int i = 0; i < 200 && store_->get_run(id)->status != store::RunStatus::running; ++i) std::this_thread::sleep_for(10ms);
  auto c = client_->Post(("/api/tasks/slow/runs/" + std::to_string(id) + "/cancel").c_str(), auth(), "", "application/json");
  EXPECT_EQ(c->status, 202) << c->body;
  ASSERT_TRUE(scheduler_->wait_idle(10s));
  EXPECT_EQ(store_->get_run(id)->status, store::RunStatus::cancelled);
  auto again = client_->Post(("/api/tasks/slow/runs/" + std::to_string(id) + "/cancel").c_str(), auth(), "", "application/json");
  EXPECT_EQ(again->status, 409);
}

// Reads an SSE stream to its end; returns the events as (type, id, data).
struct SseEvent {
  std::string type;
  int64_t id;
  json data;
};
std::vector<SseEvent> read_stream(httplib::Client& c, const std::string& path, httplib::Headers headers = {}) {
  std::string raw;
  auto r = c.Get(path.c_str(), headers, [&](const char* data, size_t n) {
    raw.append(data, n);
    return true;
  });
  std::vector<SseEvent> out;
  size_t pos = 0;
  while (true) {
    const size_t end = raw.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::istringstream block(raw.substr(pos, end - pos));
    pos = end + 2;
    SseEvent e{"", -1, nullptr};
    for (std::string line; std::getline(block, line);) {
      if (line.rfind("id: ", 0) == 0) e.id = std::stoll(line.substr(4));
      if (line.rfind("event: ", 0) == 0) e.type = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
    }
    if (!e.type.empty()) out.push_back(e);
  }
  return out;
}

TEST_F(HttpTest, StreamReplaysAFinishedLogThenSaysDone) {
  const int64_t id = run_and_wait("hello");
  auto events = read_stream(*client_, "/api/tasks/hello/runs/" + std::to_string(id) + "/log/stream");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "line");
  EXPECT_EQ(events[0].id, 1);
  EXPECT_EQ(events[0].data["text"], "hello");
  EXPECT_EQ(events[1].data["stream"], "e");
  EXPECT_EQ(events[2].type, "done");
  EXPECT_EQ(events[2].data["status"], "succeeded");
  // Resuming after line 1 gives line 2 only: no duplicates, no gaps.
  auto resumed = read_stream(*client_, "/api/tasks/hello/runs/" + std::to_string(id) + "/log/stream",
                             {{"Last-Event-ID", "1"}});
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].id, 2);
}

TEST_F(HttpTest, StreamFollowsALiveRunUntilItEnds) {
  config::Task t;
  auto r = client_->Post("/api/tasks/slow/run", auth(), "", "application/json");
  const int64_t id = body(r)["id"];
  std::thread canceller([&] {
    for (int i = 0; i < 300; ++i) {
      auto run = store_->get_run(id);
      if (run && run->status == store::RunStatus::running && run->log_bytes == 0) {
        std::this_thread::sleep_for(300ms);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(scheduler_->cancel(id));
  });
  auto events = read_stream(*client_, "/api/tasks/slow/runs/" + std::to_string(id) + "/log/stream");
  canceller.join();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front().data["text"], "started");
  EXPECT_EQ(events.back().type, "done");
  EXPECT_EQ(events.back().data["status"], "cancelled");
}

// ---- GET /api/stream: several subscriptions on one stream ----

struct MuxEvent {
  std::string sub;
  std::string type;
  int64_t id;
  json data;
};
std::vector<MuxEvent> parse_mux(const std::string& raw) {
  std::vector<MuxEvent> out;
  size_t pos = 0;
  for (size_t end; (end = raw.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    std::istringstream block(raw.substr(pos, end - pos));
    MuxEvent e{"", "", -1, nullptr};
    for (std::string line; std::getline(block, line);) {
      if (line.rfind("sub: ", 0) == 0) e.sub = line.substr(5);
      if (line.rfind("id: ", 0) == 0) e.id = std::stoll(line.substr(4));
      if (line.rfind("event: ", 0) == 0) e.type = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
    }
    if (!e.type.empty()) out.push_back(e);
  }
  return out;
}
std::vector<MuxEvent> of(const std::vector<MuxEvent>& all, const std::string& sub) {
  std::vector<MuxEvent> out;
  for (const auto& e : all)
    if (e.sub == sub) out.push_back(e);
  return out;
}

TEST_F(HttpTest, MultiplexedStreamTagsEachFrameWithItsSubscriptionAndResumesEachFromItsLine) {
  const std::string hello = "hello/" + std::to_string(run_and_wait("hello"));
  const std::string fail = "fail/" + std::to_string(run_and_wait("fail"));
  std::string raw;
  auto r = client_->Get(("/api/stream?run=" + hello + "&run=" + fail + "&run=hello/999").c_str(),
                        [&](const char* data, size_t n) {
                          raw.append(data, n);
                          return true;
                        });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto all = parse_mux(raw);
  for (const auto& e : all) EXPECT_FALSE(e.sub.empty()) << "an untagged frame: " << e.type;
  auto h = of(all, hello);
  ASSERT_EQ(h.size(), 3u) << raw;
  EXPECT_EQ(h[0].type, "line");
  EXPECT_EQ(h[0].id, 1);
  EXPECT_EQ(h[0].data["text"], "hello");
  EXPECT_EQ(h[1].data["text"], "oops");
  EXPECT_EQ(h[2].type, "done");
  EXPECT_EQ(h[2].data["status"], "succeeded");
  auto f = of(all, fail);
  ASSERT_EQ(f.size(), 2u) << raw;
  EXPECT_EQ(f[0].data["text"], "no");
  EXPECT_EQ(f[1].data["status"], "failed");
  // A run that cannot be followed says so on its own; the others are served.
  auto missing = of(all, "hello/999");
  ASSERT_EQ(missing.size(), 1u) << raw;
  EXPECT_EQ(missing[0].type, "error");
  EXPECT_NE(missing[0].data.dump().find("not found"), std::string::npos) << raw;

  // Each subscription resumes from its own line: no line twice, none missing.
  raw.clear();
  client_->Get(("/api/stream?run=" + hello + ":2&run=" + fail + ":1").c_str(), [&](const char* data, size_t n) {
    raw.append(data, n);
    return true;
  });
  all = parse_mux(raw);
  h = of(all, hello);
  ASSERT_EQ(h.size(), 2u) << raw;
  EXPECT_EQ(h[0].id, 2);
  EXPECT_EQ(h[0].data["text"], "oops");
  EXPECT_EQ(of(all, fail).size(), 2u) << raw;

  // A system task's run is not followed without the token (as its own stream).
  raw.clear();
  client_->Get("/api/stream?run=cronkeep:retention/1", [&](const char* data, size_t n) {
    raw.append(data, n);
    return true;
  });
  all = parse_mux(raw);
  ASSERT_EQ(all.size(), 1u) << raw;
  EXPECT_EQ(all[0].sub, "cronkeep:retention/1");
  EXPECT_EQ(all[0].type, "error");
}

TEST_F(HttpTest, MultiplexedStreamCarriesTheEventsFeedAndALiveRunTogether) {
  auto r = client_->Post("/api/tasks/slow/run", auth(), "", "application/json");
  ASSERT_EQ(r->status, 202) << r->body;
  const int64_t id = body(r)["id"];
  const std::string slow = "slow/" + std::to_string(id);
  std::string raw;
  std::thread reader([&] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(20s);
    c.Get(("/api/stream?events=1&run=" + slow).c_str(), [&](const char* data, size_t n) {
      raw.append(data, n);
      return raw.find("event: done") == std::string::npos;
    });
  });
  for (int i = 0; i < 500; ++i) {
    auto run = store_->get_run(id);
    if (run && run->status == store::RunStatus::running && run->log_bytes > 0 && bus_.subscriber_count() >= 1) break;
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(scheduler_->cancel(id));
  reader.join();
  auto all = parse_mux(raw);
  auto ev = of(all, "events");
  ASSERT_FALSE(ev.empty()) << raw;
  EXPECT_EQ(ev[0].type, "ready");
  auto s = of(all, slow);
  ASSERT_GE(s.size(), 2u) << raw;
  EXPECT_EQ(s[0].type, "line");
  EXPECT_EQ(s[0].data["text"], "started");
  EXPECT_EQ(s.back().type, "done");
  EXPECT_EQ(s.back().data["status"], "cancelled");
}

TEST_F(HttpTest, MultiplexedStreamValidatesItsParametersAndCountsEachSubscriptionAgainstTheCaps) {
  const std::string hello = "hello/" + std::to_string(run_and_wait("hello"));
  const std::string fail = "fail/" + std::to_string(run_and_wait("fail"));
  auto error_of = [&](const std::string& path) {
    auto res = client_->Get(path.c_str());
    EXPECT_TRUE(res);
    EXPECT_EQ(res->status, 400) << path << ": " << res->body;
    return body(res)["error"].get<std::string>();
  };
  EXPECT_EQ(error_of("/api/stream").rfind("events or run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?events=yes").rfind("events:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=hello").rfind("run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=hello/x").rfind("run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=../etc/1").rfind("run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=" + hello + ":abc").rfind("run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=" + hello + ":-99999999").rfind("run:", 0), 0u);
  EXPECT_EQ(error_of("/api/stream?run=" + hello + "&run=" + hello).rfind("run:", 0), 0u);
  EXPECT_NE(error_of("/api/stream?from=1").find("unknown query parameter \"from\""), std::string::npos);
  std::string many = "/api/stream?events=0";
  for (int i = 1; i <= 33; ++i) many += "&run=hello/" + std::to_string(i);
  EXPECT_NE(error_of(many).find("at most 32"), std::string::npos);
  // Each subscription takes a place (this fixture allows 2 streams per client).
  // A stream accepted by mistake would never end (the events feed): the
  // response handler gives up on anything but the refusal.
  int status = 0;
  std::string refusal;
  auto res = client_->Get(
      ("/api/stream?events=1&run=" + hello + "&run=" + fail).c_str(),
      [&](const httplib::Response& r) {
        status = r.status;
        return r.status != 200;
      },
      [&](const char* data, size_t n) {
        refusal.append(data, n);
        return true;
      });
  ASSERT_EQ(status, 429) << refusal;
  EXPECT_NE(nlohmann::json::parse(refusal)["error"].get<std::string>().find("too many log streams"),
            std::string::npos);
  // Two fit; their places are given back when the stream ends.
  for (int i = 0; i < 3; ++i) {
    std::string raw;
    res = client_->Get(("/api/stream?run=" + hello + "&run=" + fail).c_str(), [&](const char* data, size_t n) {
      raw.append(data, n);
      return true;
    });
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(parse_mux(raw).size(), 5u) << raw;
  }
}

TEST_F(HttpTest, MetricsUsePrometheusTextFormat) {
  run_and_wait("hello");
  run_and_wait("fail");
  auto r = client_->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const std::string& m = r->body;
  for (const char* needle :
       {"cronkeep_runs_finished_total{task=\"hello\",status=\"succeeded\"} 1",
        "cronkeep_runs_finished_total{task=\"fail\",status=\"failed\"} 1", "cronkeep_last_success_timestamp_seconds{task=\"hello\"}",
        "cronkeep_last_failure_timestamp_seconds{task=\"fail\"}", "cronkeep_runs_running{task=\"slow\"} 0",
        "cronkeep_database_bytes ", "cronkeep_wal_bytes ", "cronkeep_log_dir_bytes ", "cronkeep_sse_clients 0",
        "# TYPE cronkeep_scheduler_lateness_seconds histogram"})
    EXPECT_NE(m.find(needle), std::string::npos) << needle << "\n" << m;
}

TEST_F(HttpTest, MaintenanceStatusAndCompact) {
  auto c = client_->Post("/api/maintenance/compact", auth(), "{}", "application/json");
  ASSERT_EQ(c->status, 200) << c->body;
  EXPECT_NE(body(c)["message"].get<std::string>().find("Reclaimed"), std::string::npos);
  auto s = body(client_->Get("/api/maintenance/status"));
  EXPECT_EQ(s["system_tasks"].size(), 2u);
  EXPECT_EQ(s["system_tasks"][1]["last_run"]["trigger"], "manual");
  EXPECT_GT(s["database"]["bytes"].get<int64_t>(), 0);
  EXPECT_EQ(s["database"]["auto_vacuum"], "incremental");
  // The data directory's file system against [storage] min_free_space.
  const auto space = logs::disk_space(dir_.path());
  ASSERT_TRUE(space);
  const json& disk = s["disk"];
  ASSERT_TRUE(disk.is_object()) << s.dump();
  EXPECT_EQ(disk["total_bytes"].get<int64_t>(), static_cast<int64_t>(space->total));
  EXPECT_NEAR(static_cast<double>(disk["free_bytes"].get<int64_t>()), static_cast<double>(space->free), 64e6);
  EXPECT_EQ(disk["min_free_space"].get<int64_t>(), static_cast<int64_t>(config_.storage.min_free_space));
  EXPECT_EQ(disk["below_min_free_space"].get<bool>(), space->free < config_.storage.min_free_space);
  auto tight = std::make_shared<config::Config>(config_);
  tight->storage.min_free_space = space->total + 1;  // more than the disk holds: always below
  local_->set_config(tight);
  auto below = body(client_->Get("/api/maintenance/status"))["disk"];
  EXPECT_EQ(below["min_free_space"].get<int64_t>(), static_cast<int64_t>(space->total + 1));
  EXPECT_TRUE(below["below_min_free_space"].get<bool>());
}

TEST_F(HttpTest, MaintenanceHistoryListsEachSystemRunsFiguresNewestFirst) {
  EXPECT_EQ(body(client_->Get("/api/maintenance/history"))["runs"].size(), 0u);
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto c = client_->Post("/api/maintenance/compact", auth(), "{}", "application/json");
    ASSERT_EQ(c->status, 200) << c->body;
    ids.push_back(body(c)["run_id"].get<int64_t>());
  }
  auto h = body(client_->Get("/api/maintenance/history?limit=2"));
  ASSERT_EQ(h["runs"].size(), 2u) << h.dump();
  EXPECT_EQ(h["runs"][0]["run_id"], ids[2]);
  EXPECT_EQ(h["runs"][1]["run_id"], ids[1]);
  EXPECT_EQ(h["runs"][0]["task"], retention::kCompactorTask);
  EXPECT_GT(h["runs"][0]["db_bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(h["runs"][0]["finished_at"].is_string());
  EXPECT_TRUE(h["runs"][0].contains("db_bytes_reclaimed"));
  EXPECT_EQ(h["next_before"], ids[1]);
  auto rest = body(client_->Get(("/api/maintenance/history?limit=2&before=" + std::to_string(ids[1])).c_str()));
  ASSERT_EQ(rest["runs"].size(), 1u);
  EXPECT_EQ(rest["runs"][0]["run_id"], ids[0]);
  EXPECT_TRUE(rest["next_before"].is_null());
  auto bad = client_->Get("/api/maintenance/history?limit=0");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(body(bad)["error"], "limit: expected an integer from 1 to 1000, got \"0\"");
  EXPECT_EQ(client_->Get("/api/maintenance/history?task=x")->status, 400);
}

// ---- for the web UI ----

TEST_F(HttpTest, UiIsServedFromTheBinaryWithAStrictCspAndHashedAssets) {
  auto index = client_->Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_NE(index->get_header_value("Content-Security-Policy").find("default-src 'none'; script-src 'self'"),
            std::string::npos);
  EXPECT_EQ(index->get_header_value("Cache-Control"), "no-cache");
  const size_t at = index->body.find("/assets/app.");
  ASSERT_NE(at, std::string::npos) << index->body;
  const std::string asset = index->body.substr(at, index->body.find('"', at) - at);
  auto js = client_->Get(asset.c_str());
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_NE(js->get_header_value("Cache-Control").find("immutable"), std::string::npos);
  auto again = client_->Get(asset.c_str(), {{"If-None-Match", js->get_header_value("ETag")}});
  EXPECT_EQ(again->status, 304);
  EXPECT_EQ(client_->Get("/assets/app.js")->status, 404);  // only the hashed name
  // The page takes `?nomux` (its own streams instead of the shared worker's), nothing else.
  auto nomux = client_->Get("/?nomux");
  ASSERT_TRUE(nomux);
  EXPECT_EQ(nomux->status, 200) << nomux->body;
  EXPECT_EQ(nomux->body, index->body);
  EXPECT_EQ(client_->Get("/?other=1")->status, 400);
  EXPECT_EQ(client_->Get((asset + "?nomux").c_str())->status, 400);
  EXPECT_EQ(client_->Get("/", {{"Host", "evil.example"}})->status, 400);
}

TEST_F(HttpTest, RetentionPreviewSaysWhereEachRuleComesFromAndDeletesNothing) {
  config_.tasks[0].policy.keep_runs = 1;  // hello keeps one run: the task's own value
  for (int i = 0; i < 3; ++i) run_and_wait("hello");
  auto p = body(client_->Get("/api/tasks/hello/retention"));
  ASSERT_TRUE(p.is_object()) << p;
  EXPECT_EQ(p["rules"][0], json({{"key", "keep_runs"}, {"value", "1"}, {"source", "task"}}));
  EXPECT_EQ(p["rules"][1]["source"], "[defaults]");
  EXPECT_EQ(p["terminal_runs"], 3);
  EXPECT_EQ(p["expired_runs"], 2);
  EXPECT_EQ(p["by_reason"]["keep_runs"], 2);
  EXPECT_EQ(store_->list_runs(store::RunQuery{"hello", 10, std::nullopt, std::nullopt})->size(), 3u);
  EXPECT_EQ(client_->Get("/api/tasks/nope/retention")->status, 404);
  EXPECT_EQ(client_->Get("/api/tasks/cronkeep:retention/retention")->status, 404);  // hidden without the token
}

TEST_F(HttpTest, RecentRunsAnswerEveryVisibleTasksNewestRunsAtOnce) {
  std::vector<int64_t> hello;
  for (int i = 0; i < 3; ++i) hello.push_back(run_and_wait("hello"));
  const int64_t failed = run_and_wait("fail");
  const int64_t system = run_and_wait(retention::kRetentionTask);

  auto r = client_->Get("/api/runs/recent?per_task=2");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = body(r);
  EXPECT_EQ(j["per_task"], 2);
  // Tasks with history, by name; no system task without the token; slow has no run.
  ASSERT_EQ(j["tasks"].size(), 2u) << j.dump();
  EXPECT_EQ(j["tasks"][0]["task"], "fail");
  ASSERT_EQ(j["tasks"][0]["runs"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["runs"][0]["id"], failed);
  EXPECT_EQ(j["tasks"][0]["runs"][0]["status"], "failed");
  EXPECT_EQ(j["tasks"][1]["task"], "hello");
  ASSERT_EQ(j["tasks"][1]["runs"].size(), 2u);  // newest first, per_task of them
  EXPECT_EQ(j["tasks"][1]["runs"][0]["id"], hello[2]);
  EXPECT_EQ(j["tasks"][1]["runs"][1]["id"], hello[1]);
  // A strip's run: the columns the overview draws, as the run's own route has them.
  const json whole = body(client_->Get(("/api/tasks/hello/runs/" + std::to_string(hello[2])).c_str()));
  json brief;
  for (const char* key : {"id", "trigger", "attempt", "status", "started_at", "finished_at", "duration_ms", "exit_code"})
    brief[key] = whole[key];
  EXPECT_EQ(j["tasks"][1]["runs"][0], brief);

  auto authed = body(client_->Get("/api/runs/recent", auth()));
  EXPECT_EQ(authed["per_task"], 30);  // the default
  ASSERT_EQ(authed["tasks"].size(), 3u) << authed.dump();
  EXPECT_EQ(authed["tasks"][0]["task"], retention::kRetentionTask);
  EXPECT_EQ(authed["tasks"][0]["runs"][0]["id"], system);
  EXPECT_EQ(authed["tasks"][2]["runs"].size(), 3u);

  // Bad parameters: a 400 whose JSON names the parameter.
  for (const char* q : {"per_task=0", "per_task=101", "per_task=abc", "per_task="}) {
    auto bad = client_->Get(("/api/runs/recent?" + std::string(q)).c_str());
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400) << q;
    EXPECT_EQ(body(bad)["code"], "invalid_argument") << q;
    EXPECT_EQ(body(bad)["error"].get<std::string>().rfind("per_task: expected an integer from 1 to 100, got \"", 0), 0u)
        << bad->body;
  }
  auto unknown = client_->Get("/api/runs/recent?limit=5");
  EXPECT_EQ(unknown->status, 400);
  EXPECT_EQ(body(unknown)["error"], "unknown query parameter \"limit\" (expected per_task)");
  EXPECT_EQ(client_->Post("/api/runs/recent", auth(), "", "application/json")->status, 405);

  // The remote implementation answers what the local one does.
  auto remote = ops::make_remote(ops::Endpoint{"127.0.0.1", server_->port()}, kToken);
  for (bool include_system : {false, true}) {
    auto there = remote->recent_runs(ops::RecentRunsQuery{2, include_system});
    auto here = local_->recent_runs(ops::RecentRunsQuery{2, include_system});
    ASSERT_TRUE(there) << there.error().message;
    ASSERT_TRUE(here) << here.error().message;
    EXPECT_EQ(ops::dump(ops::to_json(*there)), ops::dump(ops::to_json(*here)));
  }
  for (auto* o : {static_cast<ops::Ops*>(local_.get()), remote.get()}) {
    auto bad = o->recent_runs(ops::RecentRunsQuery{0, false});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(bad.error().message, "per_task: expected an integer from 1 to 100, got \"0\"");
  }
}

TEST_F(HttpTest, RawLogIsTheFileBytesInRanges) {
  const int64_t id = run_and_wait("hello");
  const std::string base = "/api/tasks/hello/runs/" + std::to_string(id) + "/log/raw";
  auto all = client_->Get(base.c_str());
  ASSERT_TRUE(all);
  EXPECT_EQ(all->status, 200);
  EXPECT_EQ(all->body, "hello\noops\n");
  EXPECT_EQ(all->get_header_value("X-Log-Size"), "11");
  EXPECT_NE(all->get_header_value("Content-Disposition").find("attachment"), std::string::npos);
  EXPECT_EQ(client_->Get((base + "?offset=6&length=3").c_str())->body, "oop");
  EXPECT_EQ(client_->Get((base + "?offset=100").c_str())->body, "");
  EXPECT_EQ(client_->Get((base + "?offset=-1").c_str())->status, 400);
  EXPECT_EQ(client_->Get("/api/tasks/hello/runs/999/log/raw")->status, 404);
}

TEST_F(HttpTest, EventsStreamRunStateChanges) {
  std::string got;
  std::thread reader([&] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(10s);
    c.Get("/api/events", [&](const char* data, size_t n) {
      got.append(data, n);
      return got.find("\"status\":\"succeeded\"") == std::string::npos;
    });
  });
  // The stream subscribes when its request is read: give it that moment, then run.
  for (int i = 0; i < 100 && bus_.subscriber_count() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GT(bus_.subscriber_count(), 0u);
  const int64_t id = run_and_wait("hello");
  reader.join();
  EXPECT_NE(got.find("event: state"), std::string::npos) << got;
  EXPECT_NE(got.find("\"run_id\":" + std::to_string(id)), std::string::npos) << got;
  EXPECT_NE(got.find("\"task\":\"hello\""), std::string::npos) << got;
}

TEST_F(HttpTest, EventsStreamFollowsAManualCompactionFromRunningToItsEnd) {
  std::mutex mu;
  std::condition_variable cv;
  std::string got;
  bool ready = false;
  std::thread reader([&] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(10s);
    c.Get("/api/events", auth(), [&](const char* data, size_t n) {
      std::lock_guard lock(mu);
      got.append(data, n);
      if (!ready && got.find("event: ready") != std::string::npos) {
        ready = true;
        cv.notify_all();
      }
      return got.find("\"status\":\"succeeded\"") == std::string::npos;
    });
  });
  {
    // `ready` comes once the stream is subscribed: nothing after it is missed.
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return ready; })) << got;
  }
  auto c = client_->Post("/api/maintenance/compact", auth(), "{}", "application/json");
  ASSERT_EQ(c->status, 200) << c->body;
  const std::string id = std::to_string(body(c)["run_id"].get<int64_t>());
  reader.join();
  const size_t at_ready = got.find("event: ready\ndata: {\"system\":true}");
  const size_t at_running = got.find("\"run_id\":" + id + ",\"status\":\"running\"");
  const size_t at_freeing = got.find("event: progress\n");
  const size_t at_checkpoint = got.find("\"phase\":\"checkpointing\"");
  const size_t at_end = got.find("\"run_id\":" + id + ",\"status\":\"succeeded\"");
  ASSERT_NE(at_ready, std::string::npos) << got;
  ASSERT_NE(at_running, std::string::npos) << got;
  ASSERT_NE(at_freeing, std::string::npos) << got;
  ASSERT_NE(at_checkpoint, std::string::npos) << got;
  ASSERT_NE(at_end, std::string::npos) << got;
  EXPECT_LT(at_ready, at_running);
  EXPECT_LT(at_running, at_freeing);
  EXPECT_LT(at_freeing, at_checkpoint);
  EXPECT_LT(at_checkpoint, at_end);
  EXPECT_NE(got.find("\"phase\":\"freeing\",\"run_id\":" + id + ",\"task\":\"cronkeep:compactor\""),
            std::string::npos)
      << got;
}

TEST(Token, IsGeneratedOnceWithMode0600AndReadBack) {
  TempDir dir;
  config::Config cfg;
  cfg.daemon.data_dir = dir.path();
  auto t1 = ops::load_or_create_token(cfg);
  ASSERT_TRUE(t1);
  EXPECT_EQ(t1->size(), 64u);
  struct stat st{};
  ASSERT_EQ(::stat((dir / "token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*ops::load_or_create_token(cfg), *t1);
  cfg.daemon.token_file = dir / "missing";
  EXPECT_FALSE(ops::load_or_create_token(cfg));
}

TEST_F(HttpTest, TheArchiveOfDeletedRunsIsReadThroughTheApiAndRemoteOpsAlike) {
  executor_->set_archive(retention::ArchivePolicy{true, true, 30 * 24h});
  const int64_t kept = run_and_wait("hello");
  const int64_t gone = run_and_wait("hello");
  auto del = client_->Post(("/api/tasks/hello/runs/" + std::to_string(gone) + "/delete").c_str(), auth(), "",
                           "application/json");
  ASSERT_TRUE(del);
  ASSERT_EQ(del->status, 200) << del->body;
  const std::string date = layout::DataDir::archive_date(clock_.now());

  auto files = body(client_->Get("/api/archive"));
  ASSERT_EQ(files["files"].size(), 1u) << files.dump();
  EXPECT_EQ(files["files"][0]["date"], date);
  EXPECT_EQ(files["files"][0]["entries"], 1);
  EXPECT_GT(files["files"][0]["bytes"].get<int64_t>(), 0);

  auto page = body(client_->Get(("/api/archive/" + date).c_str()));
  ASSERT_EQ(page["entries"].size(), 1u) << page.dump();
  const json& e = page["entries"][0];
  EXPECT_EQ(e["run_id"], gone);
  EXPECT_EQ(e["reason"], "manual");
  EXPECT_EQ(e["run"]["task"], "hello");
  EXPECT_EQ(e["run"]["status"], "succeeded");
  EXPECT_NE(e["log"]["text"].get<std::string>().find("hello"), std::string::npos);
  EXPECT_TRUE(page["next"].is_null());
  // The archived run reads like the run did from the API before it was deleted.
  EXPECT_EQ(body(client_->Get(("/api/tasks/hello/runs/" + std::to_string(kept)).c_str())).size(), e["run"].size());

  EXPECT_EQ(body(client_->Get(("/api/archive/" + date + "?run=" + std::to_string(kept)).c_str()))["entries"].size(), 0u);
  EXPECT_EQ(client_->Get("/api/archive/2026-02-30")->status, 400);
  EXPECT_EQ(body(client_->Get("/api/archive/2026-02-30"))["error"],
            "date: expected a day as YYYY-MM-DD (UTC), e.g. 2026-11-23, got \"2026-02-30\"");
  EXPECT_EQ(client_->Get("/api/archive/1999-01-01")->status, 404);
  EXPECT_EQ(client_->Get("/api/archive/..%2F..%2Fetc")->status, 404);
  EXPECT_EQ(client_->Get("/api/archive/2026-1-1")->status, 404);
  EXPECT_EQ(client_->Get(("/api/archive/" + date + "?limit=0").c_str())->status, 400);
  EXPECT_EQ(client_->Get(("/api/archive/" + date + "?bogus=1").c_str())->status, 400);
  EXPECT_EQ(client_->Get(("/api/archive/" + date + "?task=cronkeep:retention").c_str())->status, 404);
  EXPECT_EQ(client_->Get(("/api/archive/" + date + "?task=cronkeep:retention").c_str(), auth())->status, 200);

  // The CLI's remote path answers what the local one does.
  auto remote = ops::make_remote(ops::Endpoint{"127.0.0.1", server_->port()}, kToken);
  ops::ArchiveQuery q;
  q.date = date;
  auto there = remote->archive_show(q);
  auto here = local_->archive_show(q);
  ASSERT_TRUE(there) << there.error().message;
  ASSERT_TRUE(here) << here.error().message;
  EXPECT_EQ(ops::dump(ops::to_json(*there)), ops::dump(ops::to_json(*here)));
  auto list = remote->archive_list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].entries, 1);
  q.date = "2026-13-01";
  auto bad = remote->archive_show(q);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace cronkeep::http

namespace cronkeep::http {
namespace {

// ---- the transport under abuse (issue 10 item 22, issue 11 items 2 and 3) ----

// A raw loopback connection; `rcvbuf` > 0 shrinks its receive buffer first.
int connect_raw(int port, int rcvbuf = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, const std::string& s) {
  size_t at = 0;
  while (at < s.size()) {
    const ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

// Reads until the server closes (or `timeout` passes); the bytes read.
std::string read_until_closed(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  if (closed) *closed = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

class HttpAbuseTest : public HttpTest {
 protected:
  HttpAbuseTest() {
    limits_.header_timeout = 2s;
    limits_.max_streams_per_client = 4;
    limits_.stream_queue = 64;
  }
  void SetUp() override {
    add_task("spray", "@yearly", "sleep 1; seq 1 30000; sleep 1");
    HttpTest::SetUp();
  }
};

TEST_F(HttpAbuseTest, SlowlorisConnectionsDoNotDelayOthersAndCloseAtTheHeaderDeadline) {
  std::vector<int> slow;
  for (int i = 0; i < 45; ++i) {
    const int fd = connect_raw(server_->port());
    ASSERT_GE(fd, 0);
    slow.push_back(fd);
  }
  const auto opened = std::chrono::steady_clock::now();
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    // One header byte a second on every connection: never a whole header.
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + std::string(100, 'a');
    for (size_t k = 0; k < request.size() && !stop; ++k) {
      for (int fd : slow) ::send(fd, &request[k], 1, MSG_NOSIGNAL);
      for (int i = 0; i < 10 && !stop; ++i) std::this_thread::sleep_for(100ms);
    }
  });
  auto worst = std::chrono::steady_clock::duration::zero();
  while (std::chrono::steady_clock::now() - opened < 3s) {
    httplib::Client c("127.0.0.1", server_->port());
    const auto t = std::chrono::steady_clock::now();
    auto r = c.Get("/healthz");
    worst = std::max(worst, std::chrono::steady_clock::now() - t);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LT(worst, 1s) << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count() << " ms";
  // Each is closed at the deadline (2 s after it connected), whatever it still sends.
  for (int fd : slow) {
    bool closed = false;
    read_until_closed(fd, 3s, &closed);
    EXPECT_TRUE(closed);
  }
  const auto took = std::chrono::steady_clock::now() - opened;
  EXPECT_GE(took, 1500ms);
  EXPECT_LT(took, 5s);
  stop = true;
  drip.join();
  for (int fd : slow) ::close(fd);
}

class HttpConnectionCapTest : public HttpTest {
 protected:
  HttpConnectionCapTest() { limits_.max_connections_per_client = 4; }
};

TEST_F(HttpConnectionCapTest, AClientsOldestWaitingConnectionMakesRoomAndBusyOnesGetA429) {
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connect_raw(server_->port()));
  std::this_thread::sleep_for(200ms);
  // A fifth: the oldest idle one is closed for it, and it is served.
  const int fifth = connect_raw(server_->port());
  send_all(fifth, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(read_until_closed(fifth, 5s).rfind("HTTP/1.1 200", 0), 0u);
  bool closed = false;
  read_until_closed(idle[0], 2s, &closed);
  EXPECT_TRUE(closed);
  for (int fd : idle) ::close(fd);
  ::close(fifth);
  std::this_thread::sleep_for(200ms);

  // Four connections each waiting for a run: none can make room.
  std::vector<int> busy;
  for (int i = 0; i < 4; ++i) {
    busy.push_back(connect_raw(server_->port()));
    send_all(busy.back(), std::string("POST /api/tasks/slow/run?wait=true HTTP/1.1\r\nHost: localhost\r\n") +
                              "Authorization: Bearer " + kToken + "\r\n\r\n");
  }
  std::this_thread::sleep_for(500ms);
  const int refused = connect_raw(server_->port());
  bool refused_closed = false;
  const std::string answer = read_until_closed(refused, 5s, &refused_closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 429", 0), 0u) << answer;
  EXPECT_NE(answer.find("too many connections from 127.0.0.1"), std::string::npos) << answer;
  EXPECT_TRUE(refused_closed);
  ::close(refused);
  for (int fd : busy) ::close(fd);
}

// ---- the log-stream caps: a stream beyond them is refused, the open ones go on ----

// A raw connection to the server from `from` (127.0.0.X): every loopback
// address reaches 127.0.0.1, and the server counts each as another client.
int connect_from(int port, const char* from) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  if (::inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
    ::close(fd);
    return -1;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One raw connection that sent one GET: `read_until` appends what arrives
// to `raw` until `needle` is in it (counting from `from`), or 10 s passed.
struct RawStream {
  int fd = -1;
  std::string raw;
  bool closed = false;
  RawStream(int port, const char* from, const std::string& path) : fd(connect_from(port, from)) {
    if (fd >= 0) send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }
  ~RawStream() {
    if (fd >= 0) ::close(fd);
  }
  RawStream(const RawStream&) = delete;
  RawStream& operator=(const RawStream&) = delete;
  bool read_until(const std::string& needle, size_t from = 0) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    char buf[65536];
    while (raw.find(needle, from) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (closed || left.count() <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) closed = true;
      else raw.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until the server closes the connection (or 10 s passed).
  bool wait_closed() {
    read_until(std::string(1, '\0'), raw.size());  // no NUL in SSE: reads to the end
    return closed;
  }
  size_t count(const std::string& needle) const {
    size_t n = 0;
    for (size_t at = raw.find(needle); at != std::string::npos; at = raw.find(needle, at + 1)) ++n;
    return n;
  }
};

// A one-off GET from `from`: the status and the JSON body of the answer.
struct Refusal {
  int status = 0;
  std::string content_type;
  json body;
  std::string raw;
};
Refusal get_from(int port, const char* from, const std::string& path) {
  Refusal out;
  const int fd = connect_from(port, from);
  if (fd < 0) return out;
  send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  out.raw = read_until_closed(fd, 10s);
  ::close(fd);
  if (out.raw.rfind("HTTP/1.1 ", 0) == 0) out.status = std::stoi(out.raw.substr(9, 3));
  const size_t type = out.raw.find("Content-Type: ");
  const size_t head_end = out.raw.find("\r\n\r\n");
  if (type != std::string::npos && type < head_end)
    out.content_type = out.raw.substr(type + 14, out.raw.find("\r\n", type) - type - 14);
  if (head_end != std::string::npos) out.body = json::parse(out.raw.substr(head_end + 4), nullptr, false);
  return out;
}

class HttpStreamCapTest : public HttpTest {
 protected:
  HttpStreamCapTest() {
    limits_.max_streams = 3;
    limits_.max_streams_per_client = 2;
  }
  void SetUp() override {
    // Prints one line, then another only once the test creates `go`.
    add_task("gated", "@yearly", "echo before; while [ ! -e go ]; do sleep 0.02; done; echo after");
    HttpTest::SetUp();
  }
};

TEST_F(HttpStreamCapTest, AStreamBeyondTheCapsGetsA429WithAJsonErrorAndTheOpenStreamsGoOn) {
  auto r = client_->Post("/api/tasks/gated/run", auth(), "", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  const std::string id = std::to_string(body(r)["id"].get<int64_t>());
  const std::string log = "/api/tasks/gated/runs/" + id + "/log/stream";
  const std::string mux_run = "/api/stream?run=gated/" + id;
  const int port = server_->port();

  // Client A (127.0.0.1) fills its 2 places: a run's log and the events feed.
  RawStream a_log(port, "127.0.0.1", log);
  RawStream a_events(port, "127.0.0.1", "/api/events");
  ASSERT_TRUE(a_log.read_until("\"text\":\"before\"")) << a_log.raw;
  ASSERT_TRUE(a_events.read_until("event: ready")) << a_events.raw;
  ASSERT_EQ(a_log.raw.rfind("HTTP/1.1 200", 0), 0u) << a_log.raw;
  // Every kind of stream A opens now is refused with its address, as JSON.
  for (const std::string& path : {log, std::string("/api/events"), mux_run, std::string("/api/stream?events=1")}) {
    const Refusal no = get_from(port, "127.0.0.1", path);
    EXPECT_EQ(no.status, 429) << path << ": " << no.raw;
    EXPECT_EQ(no.content_type.rfind("application/json", 0), 0u) << path << ": " << no.raw;
    ASSERT_TRUE(no.body.is_object()) << path << ": " << no.raw;
    EXPECT_EQ(no.body.value("error", ""), "too many log streams open from 127.0.0.1") << path;
  }

  // Client B (127.0.0.2) is under its own cap: its shared stream is served
  // and takes the last of the 3 places in all.
  RawStream b_mux(port, "127.0.0.2", mux_run);
  ASSERT_TRUE(b_mux.read_until("\"text\":\"before\"")) << b_mux.raw;
  ASSERT_EQ(b_mux.raw.rfind("HTTP/1.1 200", 0), 0u) << b_mux.raw;
  // Now the total is reached: B (1 of its 2) and C (none yet) are refused too,
  // with the message of the total cap; a shared stream of 2 subscriptions as well.
  for (const auto& [from, path] : std::vector<std::pair<const char*, std::string>>{
           {"127.0.0.2", log},
           {"127.0.0.2", "/api/stream?events=1"},
           {"127.0.0.3", "/api/events"},
           {"127.0.0.3", mux_run},
           {"127.0.0.3", mux_run + "&events=1"}}) {
    const Refusal no = get_from(port, from, path);
    EXPECT_EQ(no.status, 429) << from << " " << path << ": " << no.raw;
    EXPECT_EQ(no.content_type.rfind("application/json", 0), 0u) << path << ": " << no.raw;
    ASSERT_TRUE(no.body.is_object()) << path << ": " << no.raw;
    EXPECT_EQ(no.body.value("error", ""), "too many log streams open") << from << " " << path;
  }
  // Answers that are not streams are not affected.
  EXPECT_EQ(get_from(port, "127.0.0.1", "/api/tasks/gated/runs/" + id).status, 200);

  // The streams already open were not disturbed by the refusals: the run's
  // next line reaches both followers live, once, after the first, then its end.
  { std::ofstream(dir_ / "go").put('\n'); }
  ASSERT_TRUE(a_log.read_until("event: done")) << a_log.raw;
  ASSERT_TRUE(b_mux.read_until("event: done")) << b_mux.raw;
  for (const RawStream* s : {&a_log, &b_mux}) {
    EXPECT_EQ(s->count("\"text\":\"before\""), 1u) << s->raw;
    EXPECT_EQ(s->count("\"text\":\"after\""), 1u) << s->raw;
    EXPECT_LT(s->raw.find("\"text\":\"before\""), s->raw.find("\"text\":\"after\"")) << s->raw;
    EXPECT_NE(s->raw.find("\"status\":\"succeeded\""), std::string::npos) << s->raw;
  }
  EXPECT_NE(b_mux.raw.find("sub: gated/" + id + "\nid: 2\nevent: line"), std::string::npos) << b_mux.raw;
  // The events feed says the run ended.
  ASSERT_TRUE(a_events.read_until("\"status\":\"succeeded\"")) << a_events.raw;
  EXPECT_NE(a_events.raw.find("\"run_id\":" + id), std::string::npos) << a_events.raw;

  // An ended stream gives its place back once its client closes (the server
  // half-closes after `done` and waits up to 1 s for that): B's next
  // stream is served.
  ASSERT_TRUE(b_mux.wait_closed()) << b_mux.raw;
  ::close(b_mux.fd);
  b_mux.fd = -1;
  Refusal again;
  for (const auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    again = get_from(port, "127.0.0.2", log);
    if (again.status != 429) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(again.status, 200) << again.raw;
  EXPECT_NE(again.raw.find("\"text\":\"after\""), std::string::npos) << again.raw;
}

TEST_F(HttpAbuseTest, ASlowFollowerFallsBehindAloneAndIsToldWhatItDropped) {
  auto r = client_->Post("/api/tasks/spray/run", auth(), "", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  const std::string path = "/api/tasks/spray/runs/" + std::to_string(body(r)["id"].get<int64_t>()) + "/log/stream";
  // The slow follower asks and then reads nothing until the fast one is done.
  const int slow = connect_raw(server_->port(), 4096);
  ASSERT_GE(slow, 0);
  send_all(slow, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  httplib::Client fast("127.0.0.1", server_->port());
  fast.set_read_timeout(60s);
  const auto t0 = std::chrono::steady_clock::now();
  auto events = read_stream(fast, path);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, "done");
  EXPECT_EQ(events.back().data["status"], "succeeded");
  int64_t expected = 1;
  for (const auto& e : events)
    if (e.type == "line") {
      ASSERT_EQ(e.id, expected) << "a gap or a duplicate in the fast follower's lines";
      ++expected;
    }
  EXPECT_EQ(expected, 30001);
  EXPECT_LT(took, 30s);
  // Now the slow one reads: it was told it dropped frames, and got every line anyway.
  bool closed = false;
  const std::string raw = read_until_closed(slow, 30s, &closed);
  ::close(slow);
  EXPECT_TRUE(closed);
  EXPECT_NE(raw.find("event: dropped\n"), std::string::npos);
  EXPECT_NE(raw.find("\"text\":\"30000\""), std::string::npos);
  EXPECT_NE(raw.find("event: done\n"), std::string::npos);
}

TEST_F(HttpTest, HeadAnswersAGetsHeadWithoutItsBody) {
  const int fd = connect_raw(server_->port());
  send_all(fd, "HEAD /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  const std::string both = read_until_closed(fd, 5s);
  ::close(fd);
  ASSERT_EQ(both.rfind("HTTP/1.1 200", 0), 0u) << both;
  const size_t length = both.find("Content-Length: ");
  ASSERT_NE(length, std::string::npos) << both;
  EXPECT_GT(std::stoll(both.substr(length + 16)), 0);
  // The next answer on the connection follows the head at once: no body came between.
  const size_t second = both.find("HTTP/1.1 200", 1);
  ASSERT_NE(second, std::string::npos) << both;
  EXPECT_EQ(both.substr(second - 4, 4), "\r\n\r\n");
  EXPECT_NE(both.find("{\"status\":\"ok\"}", second), std::string::npos) << both;
}

TEST_F(HttpTest, ASecondServerOnTheSamePortFailsToStart) {
  Server other(Deps{local_.get(), {}, {}, kToken});
  auto st = other.start("127.0.0.1:" + std::to_string(server_->port()));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::io);
  EXPECT_NE(st.error().message.find("in use"), std::string::npos) << st.error().message;
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
}

}  // namespace
}  // namespace cronkeep::http
