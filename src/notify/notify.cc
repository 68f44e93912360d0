// The notifier: a bounded queue of messages, a delivery thread per sink,
// coalescing windows and retries on the steady clock, every attempt recorded.
#include "notify/notify.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "base/thread.h"
#include "base/units.h"
#include "net/http_client.h"
#include "runner/runner.h"

namespace cronkeep::notify {
namespace {

using Steady = std::chrono::steady_clock;

bool is_failure_status(const std::string& s) {
  return s == "failed" || s == "timeout" || s == "crashed" || s == "log_overflow";
}

struct Message {
  std::string sink;
  Notice notice;
  int64_t count = 1;
  int attempt = 1;
  Steady::time_point due;
  Steady::time_point first;
};

struct Window {
  Steady::time_point end;
  int64_t pending = 0;
  Notice last;
};

}  // namespace

std::string message_json(const Notice& n, const std::string& sink, int64_t count) {
  nlohmann::json j{{"event", n.event},
                   {"task", n.task},
                   {"run_id", n.run_id ? nlohmann::json(*n.run_id) : nlohmann::json(nullptr)},
                   {"status", n.status},
                   {"message", n.message},
                   {"time", format_rfc3339(n.time)},
                   {"count", count},
                   {"sink", sink}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct Notifier::Impl {
  store::Store& store;
  Clock& clock;
  Options options;

  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<const config::Config> config;  // guarded by mu
  std::deque<Notice> incoming;
  std::map<std::tuple<std::string, std::string, std::string>, Window> windows;
  std::vector<Message> ready;
  uint64_t changes = 0;  // bumped by take_incoming(): the loop's wake-up time may have moved
  std::map<std::string, bool> failing;  // task → its last run failed (for recovered)
  int delivering = 0;
  bool stopping = false;
  std::atomic<bool> stop_now{false};  // stop(): give up the rest of a batch
  // One delivery thread per sink, started with its first message, so that
  // a receiver that never answers delays only its own sink's messages.
  std::map<std::string, std::thread> threads;

  Impl(const config::Config& c, store::Store& s, Clock& k, Options o)
      : store(s), clock(k), options(o), config(std::make_shared<const config::Config>(c)) {}

  void record(const Message& m, const std::string& status, std::optional<int> code, const std::string& error) {
    store::Delivery d;
    d.created_at = clock.now();
    d.sink = m.sink;
    d.event = m.notice.event;
    d.task = m.notice.task;
    d.run_id = m.notice.run_id;
    d.count = m.count;
    d.attempt = m.attempt;
    d.status = status;
    d.response_code = code;
    d.error = error;
    if (auto st = store.record_delivery(d); !st) spdlog::warn("recording a notification: {}", st.error().message);
  }

  // Sends one message; returns "" on success, else why it failed (and the code).
  std::string send(const config::NotifySink& sink, const Message& m, std::optional<int>& code) {
    const std::string body = message_json(m.notice, sink.name, m.count);
    if (!sink.webhook.empty()) {
      auto url = net::parse_url(sink.webhook);  // checked when the configuration was read
      if (!url) return url.error().message;
      net::Request req;
      req.method = "POST";
      req.url = std::move(*url);
      req.headers = {{"X-Cronkeep-Event", m.notice.event}, {"User-Agent", "cronkeep"}};
      if (!sink.secret.empty()) {
        auto signature = net::hmac_sha256_hex(sink.secret, body);
        if (!signature) return "cannot sign: " + signature.error().message;
        req.headers.emplace_back("X-Cronkeep-Signature", "sha256=" + *signature);
      }
      req.body = body;
      req.connect_timeout = std::min<Millis>(sink.timeout, 5s);
      // The whole answer has this deadline, so one trickling a byte at a
      // time cannot hold the sink longer; a redirect is a failed attempt.
      req.timeout = sink.timeout;
      req.max_body = options.max_response_bytes;
      auto res = net::request(req);
      if (!res) return res.error().message;
      code = res->status;
      if (res->status >= 200 && res->status < 300) return "";
      return "HTTP " + std::to_string(res->status);
    }
    runner::Command cmd;
    // The event as JSON on stdin, through the shell, so the runner's
    // process group, timeout and reaping apply to the sink's command too.
    cmd.shell_command = "printf '%s\\n' \"$CRONKEEP_EVENT_JSON\" | {\n" + sink.command + "\n}";
    cmd.env = {{"CRONKEEP_EVENT", m.notice.event},
               {"CRONKEEP_TASK", m.notice.task},
               {"CRONKEEP_RUN_ID", m.notice.run_id ? std::to_string(*m.notice.run_id) : ""},
               {"CRONKEEP_STATUS", m.notice.status},
               {"CRONKEEP_MESSAGE", m.notice.message},
               {"CRONKEEP_COUNT", std::to_string(m.count)},
               {"CRONKEEP_SINK", sink.name},
               {"CRONKEEP_EVENT_JSON", body}};
    cmd.workdir = "/";
    cmd.timeout = sink.timeout;
    cmd.graceful_stop = 2s;
    auto exec = runner::Execution::start(cmd);
    if (!exec) return "cannot start: " + exec.error().message;
    const runner::Outcome out = (*exec)->wait([](std::string_view, runner::Stream) {});
    if (out.exit_code) code = *out.exit_code;
    if (out.exit_code && *out.exit_code == 0) return "";
    return runner::describe(out);
  }

  // Requires mu held. A message whose first attempt is still waiting (the
  // delivery thread is busy, e.g. with a receiver that never answers) takes
  // the new one in: same sink, task and event, counts added, newest notice.
  // So a storm against a dead sink waits as one message per key, never as
  // one per failure.
  void enqueue(Message m) {
    if (stopping) return;  // given up, as stop() says; and no thread starts while stop() joins them
    for (Message& waiting : ready)
      if (waiting.attempt == 1 && waiting.sink == m.sink && waiting.notice.task == m.notice.task &&
          waiting.notice.event == m.notice.event) {
        waiting.count += m.count;
        waiting.notice = std::move(m.notice);
        return;
      }
    if (ready.size() >= options.queue_max) {
      // Recorded without waiting for the delivery thread; the store write is short.
      record(m, "dropped", std::nullopt, "queue full (" + std::to_string(options.queue_max) + " messages)");
      return;
    }
    if (!threads.count(m.sink)) {
      const std::string sink = m.sink;
      threads.emplace(sink, std::thread([this, sink] {
        thread::set_name("ck-notify");
        loop(sink);
      }));
    }
    ready.push_back(std::move(m));
  }

  // Requires mu held: spreads the incoming notices over sinks and windows.
  void take_incoming(Steady::time_point now) {
    ++changes;
    while (!incoming.empty()) {
      Notice n = std::move(incoming.front());
      incoming.pop_front();
      const config::Task* task = config->find_task(n.task);
      const std::vector<std::string>& names = task ? task->policy.notify : config->defaults.notify;
      for (const config::NotifySink& sink : config->notify) {
        if (std::find(names.begin(), names.end(), sink.name) == names.end()) continue;
        if (std::find(sink.events.begin(), sink.events.end(), n.event) == sink.events.end()) continue;
        auto key = std::make_tuple(sink.name, n.task, n.event);
        auto it = windows.find(key);
        if (it != windows.end() && it->second.end > now) {
          ++it->second.pending;
          it->second.last = n;
          continue;
        }
        windows[key] = Window{now + options.window, 0, n};
        enqueue(Message{sink.name, n, 1, 1, now, now});
      }
    }
    for (auto it = windows.begin(); it != windows.end();) {
      if (it->second.end > now) {
        ++it;
        continue;
      }
      if (it->second.pending > 0) {
        enqueue(Message{std::get<0>(it->first), it->second.last, it->second.pending, 1, now, now});
        it->second = Window{now + options.window, 0, it->second.last};
        ++it;
      } else {
        it = windows.erase(it);
      }
    }
  }

  // The delivery thread of `sink`.
  void loop(const std::string& sink_name) {
    std::unique_lock lock(mu);
    while (true) {
      const auto now = Steady::now();
      take_incoming(now);
      std::vector<Message> due;
      std::erase_if(ready, [&](const Message& m) {
        if (m.sink != sink_name || m.due > now) return false;
        due.push_back(m);
        return true;
      });
      if (due.empty()) {
        if (stopping) return;
        auto wake = now + std::chrono::hours(1);
        for (const Message& m : ready)
          if (m.sink == sink_name) wake = std::min(wake, m.due);
        for (const auto& [key, w] : windows) wake = std::min(wake, w.end);
        const uint64_t seen = changes;
        cv.wait_until(lock, wake, [&] { return stopping || changes != seen; });
        continue;
      }
      ++delivering;
      const std::shared_ptr<const config::Config> cfg = config;
      lock.unlock();
      for (Message& m : due) {
        if (stop_now) break;
        const auto sink = std::find_if(cfg->notify.begin(), cfg->notify.end(),
                                       [&](const config::NotifySink& s) { return s.name == m.sink; });
        if (sink == cfg->notify.end()) continue;  // removed by a reload
        std::optional<int> code;
        const std::string error = send(*sink, m, code);
        if (error.empty()) {
          record(m, "delivered", code, "");
          continue;
        }
        const auto wait = options.first_retry * (1 << std::min(m.attempt - 1, 16));
        const auto retry_at = Steady::now() + wait;
        const bool retry = m.attempt < options.max_attempts && retry_at - m.first <= options.budget;
        record(m, retry ? "failed" : "gave_up", code, error);
        if (retry) {
          Message again = m;
          ++again.attempt;
          again.due = retry_at;
          std::lock_guard relock(mu);
          ready.push_back(std::move(again));
        }
      }
      lock.lock();
      --delivering;
      cv.notify_all();
    }
  }
};

Notifier::Notifier(const config::Config& config, store::Store& store, Clock& clock, Options options)
    : impl_(std::make_unique<Impl>(config, store, clock, options)) {
}

Notifier::~Notifier() { stop(); }

void Notifier::submit(Notice notice) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) return;
    // Coalesced here rather than by the delivery thread, which may be stuck
    // on a receiver for a whole timeout.
    s.incoming.push_back(std::move(notice));
    s.take_incoming(Steady::now());
  }
  s.cv.notify_all();
}

void Notifier::run_ended(const std::string& task, int64_t run_id, const std::string& status,
                         const std::string& message, TimePoint at) {
  std::string event;
  {
    std::lock_guard lock(impl_->mu);
    bool& failing = impl_->failing[task];
    if (task == "cronkeep:retention" && status == "failed") event = "retention_failed";
    else if (task == "cronkeep:compactor" && status == "failed") event = "compactor_failed";
    else if (is_failure_status(status) || status == "missed") event = status;
    else if (status == "succeeded" && failing) event = "recovered";
    if (status == "succeeded") failing = false;
    if (is_failure_status(status)) failing = true;
  }
  if (!event.empty()) submit(Notice{event, task, run_id, status, message, at});
}

void Notifier::set_config(const config::Config& config) {
  std::lock_guard lock(impl_->mu);
  impl_->config = std::make_shared<const config::Config>(config);
}

bool Notifier::wait_idle(Millis timeout) {
  Impl& s = *impl_;
  std::unique_lock lock(s.mu);
  return s.cv.wait_for(lock, timeout, [&] {
    if (!s.incoming.empty() || !s.ready.empty() || s.delivering > 0) {
      s.cv.notify_all();
      return false;
    }
    return std::all_of(s.windows.begin(), s.windows.end(), [](const auto& w) { return w.second.pending == 0; });
  });
}

void Notifier::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) return;
    s.stopping = true;
    s.stop_now = true;
    // What waits for a retry or a window is given up: a stop must not hang
    // on a dead receiver.
    s.ready.erase(std::remove_if(s.ready.begin(), s.ready.end(), [](const Message& m) { return m.attempt > 1; }),
                  s.ready.end());
  }
  s.cv.notify_all();
  // No thread starts once stopping is set (enqueue is under mu, and so is
  // the check in submit), so the map is stable here.
  for (auto& [sink, thread] : s.threads)
    if (thread.joinable()) thread.join();
}

}  // namespace cronkeep::notify
