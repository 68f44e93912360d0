// The notifier against a real local HTTP receiver (httplib::Server), real
// commands and a real SQLite store: signatures, retries after a 500,
// coalescing of a storm, and a dead receiver that never slows a submit.
#include <gtest/gtest.h>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "net/http_client.h"
#include "notify/notify.h"
#include "test_util.h"

namespace cronkeep::notify {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::TempDir;

// A certificate and key for 127.0.0.1 (openssl req), valid for a day.
struct TestCertificate {
  explicit TestCertificate(const std::filesystem::path& dir)
      : cert((dir / "cert.pem").string()), key((dir / "key.pem").string()) {
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                            "-addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  std::string cert, key;
};

// A receiver of webhooks: plain HTTP, or HTTPS with `tls`'s certificate.
class Receiver {
 public:
  explicit Receiver(int fail_first = 0, Millis delay = 0ms, const TestCertificate* tls = nullptr)
      : server_(tls ? std::make_unique<httplib::SSLServer>(tls->cert.c_str(), tls->key.c_str())
                    : std::make_unique<httplib::Server>()),
        tls_(tls != nullptr),
        fail_first_(fail_first) {
    server_->Post("/hook", [this, delay](const httplib::Request& req, httplib::Response& res) {
      std::this_thread::sleep_for(delay);  // a slow receiver keeps the delivery thread busy
      std::lock_guard lock(mu_);
      bodies_.push_back(req.body);
      signatures_.push_back(req.get_header_value("X-Cronkeep-Signature"));
      res.status = static_cast<int>(bodies_.size()) <= fail_first_ ? 500 : 200;
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::yield();
  }
  ~Receiver() {
    server_->stop();
    thread_.join();
  }
  std::string url() const { return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(port_) + "/hook"; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::vector<std::string> signatures() {
    std::lock_guard lock(mu_);
    return signatures_;
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  bool tls_;
  std::thread thread_;
  int port_ = 0;
  int fail_first_;
  std::mutex mu_;
  std::vector<std::string> bodies_;
  std::vector<std::string> signatures_;
};

// A socket that listens but never accepts: connections to it hang until
// the sink's timeout.
class DeadListener {
 public:
  DeadListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    ::listen(fd_, 0);
    port_ = ntohs(addr.sin_port);
  }
  ~DeadListener() { ::close(fd_); }
  DeadListener(const DeadListener&) = delete;
  DeadListener& operator=(const DeadListener&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class NotifyTest : public ::testing::Test {
 protected:
  NotifyTest() : clock_(from_unix_ms(1'795'406'400'000)) {
    auto s = store::open_sqlite(dir_ / "cronkeep.db");
    EXPECT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    config_.defaults.notify = {"ops"};
  }
  void sink(const std::string& webhook, const std::string& command = "", const std::string& secret = "") {
    config::NotifySink s;
    s.name = "ops";
    s.webhook = webhook;
    s.command = command;
    s.secret = secret;
    s.timeout = 2s;
    s.events.assign(std::begin(config::kNotifyEvents), std::end(config::kNotifyEvents));
    config_.notify = {s};
  }
  Notice failed(const std::string& task = "backup", int64_t run = 1) {
    return Notice{"failed", task, run, "failed", "exit code 1", clock_.now()};
  }
  std::vector<store::Delivery> deliveries() {
    auto d = store_->list_deliveries(1000);
    EXPECT_TRUE(d);
    return std::vector<store::Delivery>(d->rbegin(), d->rend());  // oldest first
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  config::Config config_;
};

// https:// goes through the TLS module (cronkeep-tls.so): the receiver's
// certificate is checked against the system's store, which SSL_CERT_FILE
// replaces here; a certificate nobody vouches for is a failed attempt.
TEST_F(NotifyTest, AnHttpsWebhookIsDeliveredOnlyToAServerWhoseCertificateIsTrusted) {
  TestCertificate cert(dir_.path());
  Receiver receiver(0, 0ms, &cert);
  sink(receiver.url(), "", "s3cret");
  Options o;
  o.max_attempts = 1;
  const char* old = std::getenv("SSL_CERT_FILE");
  const std::string saved = old ? old : "";
  {
    ::setenv("SSL_CERT_FILE", (dir_ / "none.pem").c_str(), 1);  // trusts nothing
    Notifier notifier(config_, *store_, clock_, o);
    notifier.submit(failed());
    ASSERT_TRUE(notifier.wait_idle(10s));
  }
  ASSERT_EQ(deliveries().size(), 1u);
  EXPECT_EQ(deliveries()[0].status, "gave_up");
  EXPECT_NE(deliveries()[0].error.find("certificate verify failed"), std::string::npos) << deliveries()[0].error;
  EXPECT_TRUE(receiver.bodies().empty());
  {
    ::setenv("SSL_CERT_FILE", cert.cert.c_str(), 1);
    Notifier notifier(config_, *store_, clock_, o);
    notifier.submit(failed("other"));
    ASSERT_TRUE(notifier.wait_idle(10s));
  }
  if (old) ::setenv("SSL_CERT_FILE", saved.c_str(), 1);
  else ::unsetenv("SSL_CERT_FILE");
  ASSERT_EQ(deliveries().size(), 2u);
  EXPECT_EQ(deliveries()[1].status, "delivered") << deliveries()[1].error;
  ASSERT_EQ(receiver.bodies().size(), 1u);
  EXPECT_EQ(receiver.signatures()[0], "sha256=" + net::hmac_sha256_hex("s3cret", receiver.bodies()[0]).value());
}

TEST_F(NotifyTest, AWebhookIsSignedWithHmacSha256OfTheBody) {
  Receiver receiver;
  sink(receiver.url(), "", "s3cret");
  Notifier notifier(config_, *store_, clock_);
  notifier.submit(failed());
  ASSERT_TRUE(notifier.wait_idle(10s));
  ASSERT_EQ(receiver.bodies().size(), 1u);
  const std::string body = receiver.bodies()[0];
  EXPECT_EQ(receiver.signatures()[0], "sha256=" + net::hmac_sha256_hex("s3cret", body).value());
  auto j = nlohmann::json::parse(body);
  EXPECT_EQ(j["event"], "failed");
  EXPECT_EQ(j["task"], "backup");
  EXPECT_EQ(j["count"], 1);
  ASSERT_EQ(deliveries().size(), 1u);
  EXPECT_EQ(deliveries()[0].status, "delivered");
  EXPECT_EQ(deliveries()[0].response_code, 200);
  // A known vector (RFC 4231 test case 2).
  EXPECT_EQ(net::hmac_sha256_hex("Jefe", "what do ya want for nothing?").value(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_F(NotifyTest, AFailedDeliveryIsRetriedWithBackoffAndEveryAttemptRecorded) {
  Receiver receiver(2);  // two 500s, then 200
  sink(receiver.url());
  Options o;
  o.first_retry = 20ms;
  Notifier notifier(config_, *store_, clock_, o);
  notifier.submit(failed());
  ASSERT_TRUE(notifier.wait_idle(10s));
  EXPECT_EQ(receiver.bodies().size(), 3u);
  auto d = deliveries();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].status, "failed");
  EXPECT_EQ(d[0].response_code, 500);
  EXPECT_EQ(d[0].error, "HTTP 500");
  EXPECT_EQ(d[1].attempt, 2);
  EXPECT_EQ(d[2].status, "delivered");
  EXPECT_EQ(d[2].attempt, 3);
}

TEST_F(NotifyTest, AStormIsCoalescedIntoOneMessagePerTaskAndWindowWithACount) {
  Receiver receiver;
  sink(receiver.url());
  Options o;
  o.window = 300ms;
  Notifier notifier(config_, *store_, clock_, o);
  for (int i = 1; i <= 20; ++i) notifier.submit(failed("backup", i));
  notifier.submit(failed("other", 99));
  ASSERT_TRUE(notifier.wait_idle(10s));
  int64_t total = 0;
  int backup_messages = 0;
  for (const std::string& b : receiver.bodies()) {
    auto j = nlohmann::json::parse(b);
    if (j["task"] == "backup") {
      ++backup_messages;
      total += j["count"].get<int64_t>();
    }
  }
  EXPECT_EQ(backup_messages, 2);  // the first at once, the other 19 at the window's end
  EXPECT_EQ(total, 20);
  EXPECT_EQ(receiver.bodies().size(), 3u);
}

// A receiver that misbehaves on purpose: a redirect loop, a 10 MB answer,
// and an answer that trickles a byte every 100 ms for 30 s.
class BadReceiver {
 public:
  BadReceiver() {
    server_.Post("/loop", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/loop", 302); });
    server_.Post("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(10 << 20, 'x'), "text/plain");
    });
    server_.Post("/slow", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [this](size_t sent, httplib::DataSink& sink) {
        if (sent >= 300 || stopping_) {
          sink.done();
          return true;
        }
        std::this_thread::sleep_for(100ms);
        return sink.write("x", 1);
      });
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~BadReceiver() {
    stopping_ = true;
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  httplib::Server server_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  int port_ = 0;
};

TEST_F(NotifyTest, ARedirectATenMegabyteAnswerAndASlowAnswerAreFailedAttemptsOfBoundedTimeAndSize) {
  BadReceiver bad;
  Options o;
  o.max_attempts = 1;
  struct Case {
    const char* path;
    const char* error;
  };
  for (const Case& c : {Case{"/loop", "HTTP 302"}, Case{"/big", "response larger than 65536 bytes"},
                        Case{"/slow", "no complete answer within 2s"}}) {
    SCOPED_TRACE(c.path);
    sink(bad.url(c.path));  // timeout 2 s
    const size_t before = deliveries().size();
    Notifier notifier(config_, *store_, clock_, o);
    const auto start = std::chrono::steady_clock::now();
    notifier.submit(failed());
    ASSERT_TRUE(notifier.wait_idle(20s));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "bounded by the sink's timeout";
    auto d = deliveries();
    ASSERT_EQ(d.size(), before + 1);
    EXPECT_EQ(d.back().status, "gave_up");  // its only attempt failed
    EXPECT_EQ(d.back().error.substr(0, std::string(c.error).size()), c.error) << d.back().error;
  }
}

TEST_F(NotifyTest, AStormWhileTheReceiverIsBusyWaitsAsOneMessageAndDropsNothing) {
  Receiver receiver(0, 300ms);
  sink(receiver.url());
  Options o;
  o.queue_max = 5;
  o.window = 0ms;  // no window: only the waiting message coalesces
  Notifier notifier(config_, *store_, clock_, o);
  notifier.submit(failed("x", 0));  // sent at once; the receiver holds the thread 300 ms
  std::this_thread::sleep_for(50ms);
  for (int i = 1; i <= 500; ++i) notifier.submit(failed("x", i));
  ASSERT_TRUE(notifier.wait_idle(10s));
  int64_t total = 0;
  for (const std::string& b : receiver.bodies()) total += nlohmann::json::parse(b)["count"].get<int64_t>();
  EXPECT_EQ(total, 501);
  EXPECT_EQ(receiver.bodies().size(), 2u) << "the first, then one for the 500 that waited";
  for (const auto& d : deliveries()) EXPECT_NE(d.status, "dropped");
  EXPECT_EQ(nlohmann::json::parse(receiver.bodies().back())["run_id"], 500) << "it carries the newest notice";
}

TEST_F(NotifyTest, ASinkThatNeverAnswersDoesNotDelayAnotherSink) {
  DeadListener dead;  // its attempts hang for the sink's whole timeout (2 s)
  Receiver live;
  sink(dead.url());
  config::NotifySink second = config_.notify[0];
  second.name = "live";
  second.webhook = live.url();
  config_.notify.insert(config_.notify.begin(), second);  // not first in line either way
  config_.defaults.notify = {"ops", "live"};
  Options o;
  o.window = 0ms;
  {
    Notifier notifier(config_, *store_, clock_, o);
    for (int i = 0; i < 5; ++i) notifier.submit(failed("t" + std::to_string(i), i));
    const auto start = std::chrono::steady_clock::now();
    while (live.bodies().size() < 5 && std::chrono::steady_clock::now() - start < 10s)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(live.bodies().size(), 5u);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << "the live sink waited for the dead one";
  }
}

TEST_F(NotifyTest, ADeadReceiverNeverSlowsASubmitAndAFullQueueIsRecorded) {
  DeadListener dead;
  sink(dead.url());
  Options o;
  o.queue_max = 50;
  o.window = 0ms;
  {
    Notifier notifier(config_, *store_, clock_, o);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) notifier.submit(failed("t" + std::to_string(i), i));
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, 500ms) << "submit waited for the receiver";
  }  // stop() gives up what waits: it does not hang on the dead receiver
  int dropped = 0;
  for (const auto& d : deliveries()) dropped += d.status == "dropped";
  EXPECT_GT(dropped, 0);
}

TEST_F(NotifyTest, ACommandGetsTheEventInItsEnvironmentAndAsJsonOnStdin) {
  sink("", "cat > " + dir_ / "stdin.json" + "; echo \"$CRONKEEP_EVENT $CRONKEEP_TASK $CRONKEEP_COUNT\" > " +
               dir_ / "env.txt");
  Notifier notifier(config_, *store_, clock_);
  notifier.run_ended("backup", 7, "failed", "exit code 1", clock_.now());
  notifier.run_ended("backup", 8, "succeeded", "exit code 0", clock_.now());
  ASSERT_TRUE(notifier.wait_idle(10s));
  // The last command written: recovered (first success after a failure).
  EXPECT_EQ(cronkeep::testing::read_file(dir_ / "env.txt"), "recovered backup 1\n");
  auto j = nlohmann::json::parse(cronkeep::testing::read_file(dir_ / "stdin.json"));
  EXPECT_EQ(j["run_id"], 8);
  ASSERT_EQ(deliveries().size(), 2u);
  EXPECT_EQ(deliveries()[0].event, "failed");
  EXPECT_EQ(deliveries()[1].event, "recovered");
}

}  // namespace
}  // namespace cronkeep::notify
