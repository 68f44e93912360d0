// libFuzzer target: HTTP request handling (paths, query strings, headers,
// JSON bodies) against a real server on loopback with a real store and
// scheduler. Every request must get an answer; errors must be JSON; no input
// may touch a file outside the data directory (the tasks run `true`).
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "base/clock.h"
#include "events/events.h"
#include "http/http.h"
#include "layout/layout.h"
#include "ops/local.h"
#include "retention/retention.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

using namespace cronkeep;

namespace {

struct World {
  std::string dir;
  config::Config cfg;
  SystemClock clock;
  events::Bus bus;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<retention::Executor> executor;
  std::unique_ptr<scheduler::Scheduler> sched;
  ops::MaintenanceThread maintenance;
  std::unique_ptr<ops::Local> local;
  std::unique_ptr<http::Server> server;
  std::unique_ptr<httplib::Client> client;

  World() {
    char tmpl[] = "/tmp/cronkeep-fuzz-http-XXXXXX";
    dir = ::mkdtemp(tmpl);
    cfg.daemon.data_dir = dir;
    config::Task t;
    t.name = "hello";
    t.cron = "@yearly";
    t.run = "true";
    t.workdir = dir;
    cfg.tasks.push_back(t);
    if (!config::prepare(cfg).empty()) std::abort();
    store = std::move(*store::open_sqlite(dir + "/cronkeep.db"));
    executor = std::make_unique<retention::Executor>(*store, layout::DataDir(dir), 100);
    sched = std::make_unique<scheduler::Scheduler>(cfg, *store, clock,
                                                   scheduler::Options{dir, std::chrono::seconds(1), 1, {}, &bus});
    if (!sched->start() || !sched->run_now("hello")) std::abort();
    sched->wait_idle(std::chrono::seconds(5));
    local = std::make_unique<ops::Local>(
        ops::LocalDeps{&cfg, store.get(), executor.get(), sched.get(), &bus, &clock, &maintenance, true, {}});
    server = std::make_unique<http::Server>(
        http::Deps{local.get(), [this] { return local->metrics(); }, {}, "fuzz-token-of-at-least-32-characters"});
    if (!server->start("127.0.0.1:0")) std::abort();
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
    client->set_keep_alive(true);
    client->set_read_timeout(std::chrono::seconds(5));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  if (size < 2) return 0;
  // Byte 0: method and auth; up to the first NUL: the path and query; the rest: the body.
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = input.find('\0');
  std::string path = input.substr(0, split);
  const std::string body = split == std::string::npos ? "" : input.substr(split + 1);
  if (path.empty() || path[0] != '/') path = "/" + path;
  for (char& c : path)
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) c = '_';  // a request line cannot hold these
  httplib::Headers headers;
  if (data[0] & 1) headers.emplace("Authorization", "Bearer fuzz-token-of-at-least-32-characters");
  // Stream routes follow a run until it ends; keep them to finished runs.
  const bool stream = path.find("/stream") != std::string::npos;
  if (stream && !(data[0] & 2)) return 0;
  httplib::Result r = (data[0] & 4) ? world->client->Post(path.c_str(), headers, body, "application/json")
                                    : world->client->Get(path.c_str(), headers);
  if (!r) __builtin_trap();  // the server must answer every request
  if (r->status >= 400 && !stream) {
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.contains("error")) __builtin_trap();
  }
  return 0;
}
