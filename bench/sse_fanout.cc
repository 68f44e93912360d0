// SSE fan-out: CLIENTS clients follow one run that prints RATE lines per
// second for SECONDS seconds (each line carries the time it was written);
// the delay from write to client (p50, p99), the share of lines each client
// got, the `dropped` notices, and the daemon's CPU and peak RSS. The daemon
// is a separate process, started afresh for each measurement.
//
//   build/bench/sse_fanout build/cronkeep CLIENTS RATE [SECONDS=10]
//   build/bench/sse_fanout build/cronkeep all [SECONDS=10] [REPEAT=3]
//   build/bench/sse_fanout build/cronkeep connections [SECONDS=12] [REPEAT=3]
//
// `all` runs the matrix of docs/benchmarks.md REPEAT times each and prints
// the median of each figure: 200 followers at 1,000 lines/s, 1,000 at 100,
// 50 at 1,000, and /healthz latency while 45 connections each send one
// header byte a second (slowloris; each is reopened when the daemon closes
// it at its header deadline). `connections` measures /healthz alone, then
// with 1,000 kept-alive connections and 50 slowloris ones (issue 11).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  if (s.empty()) return 0;
  std::istringstream f(s.substr(s.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && f >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long peak_rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

struct Daemon {
  pid_t pid = -1;
  int port = 0;
  std::string dir;
  std::string token;
};

// A daemon of its own in a fresh directory, with a task `spray` that prints
// `rate` lines a second for `secs` seconds after a 2 s pause.
Daemon start_daemon(const std::string& bin, int clients, int rate, int secs) {
  Daemon d;
  d.dir = "/tmp/cronkeep-sse-bench-" + std::to_string(getpid());
  fs::remove_all(d.dir);
  fs::create_directories(d.dir);
  static int serial = 0;
  d.port = 17000 + static_cast<int>((getpid() * 7 + serial++) % 2000);
  std::ofstream(d.dir + "/producer.py")
      << "import sys, time\ntime.sleep(2)\nrate, secs = " << rate << ", " << secs
      << "\nn = 0\nstart = time.time()\nwhile time.time() - start < secs:\n"
         "    batch = max(1, rate // 100)\n"
         "    sys.stdout.write(''.join(f'{time.time_ns()} {n + i}\\n' for i in range(batch)))\n"
         "    sys.stdout.flush()\n    n += batch\n    time.sleep(max(0.0, start + n / rate - time.time()))\n";
  std::ofstream(d.dir + "/c.toml") << "[daemon]\ndata_dir = \"data\"\nlisten = \"127.0.0.1:" << d.port
                                   << "\"\nmax_log_streams = " << clients + 10 << "\nmax_log_streams_per_client = "
                                   << clients + 10 << "\n[storage]\nmin_free_space = \"0\"\n[defaults]\nlog_max_size = \"0\"\n"
                                   << "[tasks.spray]\ncron = \"@yearly\"\nrun = \"python3 " << d.dir << "/producer.py\"\n";
  std::fflush(stdout);  // the child's freopen would write what is buffered a second time
  d.pid = fork();
  if (d.pid == 0) {
    if (chdir(d.dir.c_str()) != 0) _exit(1);
    if (!freopen("daemon.log", "w", stderr) || !freopen("daemon.out", "w", stdout)) _exit(1);
    execl(bin.c_str(), bin.c_str(), "daemon", "-c", "c.toml", static_cast<char*>(nullptr));
    _exit(127);
  }
  httplib::Client api("127.0.0.1", d.port);
  for (int i = 0; i < 100 && !api.Get("/healthz"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::ifstream(d.dir + "/data/token") >> d.token;
  return d;
}

void stop_daemon(Daemon& d) {
  kill(d.pid, SIGTERM);
  waitpid(d.pid, nullptr, 0);
  fs::remove_all(d.dir);
}

double quantile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct FanoutResult {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double received_pct = 0;      // lines received over lines written, all clients
  double min_client_pct = 0;    // the worst client's share
  uint64_t dropped_notices = 0;
  int failed_clients = 0;       // streams that could not be opened
  double cpu_pct = 0;           // daemon CPU, % of one core, over the run
  long rss_kb = 0;
};

FanoutResult fanout(const std::string& bin, int clients, int rate, int secs) {
  Daemon d = start_daemon(bin, clients, rate, secs);
  FanoutResult out;
  httplib::Client api("127.0.0.1", d.port);
  api.set_bearer_token_auth(d.token);
  auto started = api.Post("/api/tasks/spray/run", "", "application/json");
  if (!started || started->status != 202) {
    std::fprintf(stderr, "cannot start the run\n");
    stop_daemon(d);
    out.failed_clients = clients;
    return out;
  }
  const std::string id = started->body.substr(started->body.find("\"id\":") + 5);
  const std::string path = "/api/tasks/spray/runs/" + std::to_string(std::atoll(id.c_str())) + "/log/stream";
  const double cpu0 = cpu_seconds(d.pid);
  const auto t0 = std::chrono::steady_clock::now();

  std::vector<std::vector<int32_t>> delays_us(static_cast<size_t>(clients));
  std::vector<uint64_t> dropped(static_cast<size_t>(clients));
  std::vector<int64_t> highest(static_cast<size_t>(clients), -1);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", d.port);
      cli.set_read_timeout(std::chrono::seconds(secs + 30));
      std::string buf;
      auto& mine = delays_us[static_cast<size_t>(c)];
      mine.reserve(static_cast<size_t>(rate) * static_cast<size_t>(secs));
      auto r = cli.Get(path.c_str(), [&](const char* data, size_t n) {
        buf.append(data, n);
        size_t pos = 0, nl;
        while ((nl = buf.find('\n', pos)) != std::string::npos) {
          const size_t text = buf.find("\"text\":\"", pos);
          if (buf.compare(pos, 6, "data: ") == 0 && text != std::string::npos && text < nl) {
            const int64_t written = std::atoll(buf.c_str() + text + 8);
            if (written > 0) {
              mine.push_back(static_cast<int32_t>(std::min<int64_t>((now_ns() - written) / 1000, INT32_MAX)));
              const char* sp = std::strchr(buf.c_str() + text + 8, ' ');
              if (sp) highest[static_cast<size_t>(c)] = std::max<int64_t>(highest[static_cast<size_t>(c)], std::atoll(sp + 1));
            }
          } else if (buf.compare(pos, 14, "event: dropped") == 0) {
            ++dropped[static_cast<size_t>(c)];
          }
          pos = nl + 1;
        }
        buf.erase(0, pos);
        return true;
      });
      if (!r || r->status != 200) ++failed;
    });
    // One new connection a millisecond: the daemon lets one address hold 128
    // connections whose request has not arrived yet (its streams do not
    // count), and a burst of 1,000 connects at once would close the oldest.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_seconds(d.pid) - cpu0;
  out.rss_kb = peak_rss_kb(d.pid);
  stop_daemon(d);

  std::vector<double> all;
  int64_t lines = 0;
  for (int c = 0; c < clients; ++c) lines = std::max(lines, highest[static_cast<size_t>(c)] + 1);
  size_t total = 0, fewest = SIZE_MAX;
  for (int c = 0; c < clients; ++c) {
    for (int32_t us : delays_us[static_cast<size_t>(c)]) all.push_back(us / 1000.0);
    total += delays_us[static_cast<size_t>(c)].size();
    fewest = std::min(fewest, delays_us[static_cast<size_t>(c)].size());
    out.dropped_notices += dropped[static_cast<size_t>(c)];
  }
  out.p50_ms = quantile(all, .5);
  out.p99_ms = quantile(all, .99);
  out.max_ms = all.empty() ? 0 : all.back();
  if (lines > 0) {
    out.received_pct = 100.0 * static_cast<double>(total) / (static_cast<double>(lines) * clients);
    out.min_client_pct = 100.0 * static_cast<double>(fewest) / static_cast<double>(lines);
  }
  out.failed_clients = failed;
  out.cpu_pct = 100.0 * cpu / wall;
  return out;
}

void print(const char* what, const FanoutResult& r) {
  std::printf("%s: p50 %.1f ms, p99 %.1f ms, max %.1f ms; received %.2f%% (worst client %.2f%%), %llu dropped notices, "
              "%d failed; daemon %.0f%% of a core, peak RSS %ld kB\n",
              what, r.p50_ms, r.p99_ms, r.max_ms, r.received_pct, r.min_client_pct,
              static_cast<unsigned long long>(r.dropped_notices), r.failed_clients, r.cpu_pct, r.rss_kb);
  std::fflush(stdout);
}

// A TCP connection to the daemon from 127.0.0.1 + `source` (the daemon
// caps connections per client address, so many connections come from
// several loopback addresses).
int connect_raw(int port, uint32_t source = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (source != 0) {
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + source);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
  }
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct SlowResult {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  int reopened = 0;       // slow connections the daemon closed (and the bench reopened)
  int idle_reopened = 0;  // kept-alive connections the daemon closed
  int idle_failed = 0;    // kept-alive requests without a 200
  long rss_kb = 0;        // the daemon's resident memory with every connection open
  long anon_kb = 0;       // its anonymous part
};

// One GET /healthz on a kept-alive connection: true when a whole 200 answer
// came back (headers, then Content-Length bytes of body).
bool keepalive_request(int fd) {
  static const std::string request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) return false;
  std::string got;
  char buf[4096];
  size_t need = std::string::npos;
  while (need == std::string::npos || got.size() < need) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
    const size_t end = got.find("\r\n\r\n");
    if (need == std::string::npos && end != std::string::npos) {
      const size_t cl = got.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) return false;
      need = end + 4 + std::strtoul(got.c_str() + cl + 16, nullptr, 10);
    }
  }
  return got.rfind("HTTP/1.1 200", 0) == 0;
}

long status_kb(pid_t pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const size_t len = std::strlen(key);
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, len, key) == 0) return std::atol(line.c_str() + len);
  return 0;
}

// /healthz latency (a new connection each time, every 50 ms) for `secs`
// seconds while `slow` connections each send one header byte a second and
// `idle` kept-alive connections each send one GET /healthz every 4 s (the
// daemon closes a connection idle for 5 s), from 8 loopback addresses
// (127.0.0.2 to .9: the daemon's cap is 128 connections per client address).
SlowResult slowloris(const std::string& bin, int slow, int secs, int idle = 0) {
  Daemon d = start_daemon(bin, 0, 1, 1);
  SlowResult out;
  std::atomic<bool> stop{false};
  std::atomic<int> reopened{0}, idle_reopened{0}, idle_failed{0};
  std::atomic<int> idle_open{0};
  std::thread keep([&] {
    std::vector<int> fds(static_cast<size_t>(idle), -1);
    for (size_t i = 0; i < fds.size() && !stop; ++i) fds[i] = connect_raw(d.port, 1 + static_cast<uint32_t>(i % 8));
    for (int fd : fds) idle_open += fd >= 0;
    const auto period = std::chrono::milliseconds(4000);
    for (size_t i = 0; !stop && !fds.empty(); i = (i + 1) % fds.size()) {
      const auto next = std::chrono::steady_clock::now() + period / fds.size();
      if (fds[i] < 0 || !keepalive_request(fds[i])) {
        if (fds[i] >= 0) {
          ::close(fds[i]);
          ++idle_reopened;
        }
        fds[i] = connect_raw(d.port, 1 + static_cast<uint32_t>(i % 8));
        if (fds[i] < 0 || !keepalive_request(fds[i])) ++idle_failed;
      }
      std::this_thread::sleep_until(next);
    }
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  });
  std::thread drip([&] {
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + std::string(1000, 'a');
    std::vector<int> fds(static_cast<size_t>(slow), -1);
    std::vector<size_t> at(static_cast<size_t>(slow), 0);
    while (!stop) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i] < 0) {
          fds[i] = connect_raw(d.port, 9 + static_cast<uint32_t>(i % 4));
          at[i] = 0;
        }
        if (fds[i] >= 0 && ::send(fds[i], &request[at[i]++ % request.size()], 1, MSG_NOSIGNAL) <= 0) {
          ::close(fds[i]);
          fds[i] = -1;
          ++reopened;
        }
      }
      for (int k = 0; k < 10 && !stop; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  });
  std::this_thread::sleep_for(std::chrono::seconds(idle > 0 ? 5 : 1));
  std::vector<double> ms;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(secs);
  while (std::chrono::steady_clock::now() < end) {
    httplib::Client c("127.0.0.1", d.port);
    c.set_read_timeout(std::chrono::seconds(30));
    const auto t = std::chrono::steady_clock::now();
    auto r = c.Get("/healthz");
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
    if (!r || r->status != 200) std::fprintf(stderr, "healthz failed\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  out.rss_kb = status_kb(d.pid, "VmRSS:");
  out.anon_kb = status_kb(d.pid, "RssAnon:");
  stop = true;
  drip.join();
  keep.join();
  stop_daemon(d);
  out.idle_reopened = idle_reopened;
  out.idle_failed = idle_failed;
  out.p50_ms = quantile(ms, .5);
  out.p99_ms = quantile(ms, .99);
  out.max_ms = ms.empty() ? 0 : ms.back();
  out.reopened = reopened;
  return out;
}

template <class T, class F>
double median_of(std::vector<T>& runs, F field) {
  std::vector<double> v;
  for (auto& r : runs) v.push_back(field(r));
  return quantile(v, .5);
}

// Issue 11's connection figure: /healthz with nothing else open (the
// baseline), then with 1,000 kept-alive connections and 50 slowloris ones,
// alternately, REPEAT times each; medians.
int connections(const std::string& bin, int secs, int repeat) {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;  // 1,050 descriptors here, as many in the daemon
  ::setrlimit(RLIMIT_NOFILE, &files);
  std::vector<SlowResult> base, loaded;
  for (int i = 0; i < repeat; ++i) {
    base.push_back(slowloris(bin, 0, std::max(secs, 12)));
    std::printf("  run %d: /healthz alone: p50 %.2f ms, p99 %.2f ms; daemon RSS %.1f MB (anonymous %.1f MB)\n", i + 1,
                base.back().p50_ms, base.back().p99_ms, base.back().rss_kb / 1024.0, base.back().anon_kb / 1024.0);
    loaded.push_back(slowloris(bin, 50, std::max(secs, 12), 1000));
    const SlowResult& r = loaded.back();
    std::printf("  run %d: /healthz with 1,000 kept-alive + 50 slowloris connections: p50 %.2f ms, p99 %.2f ms, max %.2f ms;"
                " daemon RSS %.1f MB (anonymous %.1f MB); kept-alive closed by the daemon %d, failed %d; slow closed %d\n",
                i + 1, r.p50_ms, r.p99_ms, r.max_ms, r.rss_kb / 1024.0, r.anon_kb / 1024.0, r.idle_reopened, r.idle_failed,
                r.reopened);
    std::fflush(stdout);
  }
  std::printf("MEDIAN of %d: /healthz alone p99 %.2f ms, RSS %.1f MB; with 1,000 kept-alive + 50 slowloris p99 %.2f ms"
              " (p50 %.2f ms), RSS %.1f MB (anonymous %.1f MB)\n",
              repeat, median_of(base, [](auto& r) { return r.p99_ms; }),
              median_of(base, [](auto& r) { return r.rss_kb / 1024.0; }), median_of(loaded, [](auto& r) { return r.p99_ms; }),
              median_of(loaded, [](auto& r) { return r.p50_ms; }), median_of(loaded, [](auto& r) { return r.rss_kb / 1024.0; }),
              median_of(loaded, [](auto& r) { return r.anon_kb / 1024.0; }));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CRONKEEP CLIENTS RATE [SECONDS]\n       %s CRONKEEP all|connections [SECONDS] [REPEAT]\n", argv[0],
                 argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const std::string bin = fs::absolute(argv[1]);
  if (std::string(argv[2]) == "connections")
    return connections(bin, argc > 3 ? std::atoi(argv[3]) : 12, argc > 4 ? std::atoi(argv[4]) : 3);
  if (std::string(argv[2]) != "all") {
    const int clients = std::atoi(argv[2]);
    const int rate = argc > 3 ? std::atoi(argv[3]) : 1000;
    const int secs = argc > 4 ? std::atoi(argv[4]) : 10;
    char what[128];
    std::snprintf(what, sizeof what, "%d followers, %d lines/s, %d s", clients, rate, secs);
    print(what, fanout(bin, clients, rate, secs));
    return 0;
  }
  const int secs = argc > 3 ? std::atoi(argv[3]) : 10;
  const int repeat = argc > 4 ? std::atoi(argv[4]) : 3;
  const std::pair<int, int> matrix[] = {{200, 1000}, {1000, 100}, {50, 1000}};
  for (auto [clients, rate] : matrix) {
    std::vector<FanoutResult> runs;
    for (int i = 0; i < repeat; ++i) {
      runs.push_back(fanout(bin, clients, rate, secs));
      char what[128];
      std::snprintf(what, sizeof what, "  run %d: %d followers, %d lines/s", i + 1, clients, rate);
      print(what, runs.back());
    }
    FanoutResult m;
    m.p50_ms = median_of(runs, [](auto& r) { return r.p50_ms; });
    m.p99_ms = median_of(runs, [](auto& r) { return r.p99_ms; });
    m.max_ms = median_of(runs, [](auto& r) { return r.max_ms; });
    m.received_pct = median_of(runs, [](auto& r) { return r.received_pct; });
    m.min_client_pct = median_of(runs, [](auto& r) { return r.min_client_pct; });
    m.dropped_notices = static_cast<uint64_t>(median_of(runs, [](auto& r) { return static_cast<double>(r.dropped_notices); }));
    m.failed_clients = static_cast<int>(median_of(runs, [](auto& r) { return static_cast<double>(r.failed_clients); }));
    m.cpu_pct = median_of(runs, [](auto& r) { return r.cpu_pct; });
    m.rss_kb = static_cast<long>(median_of(runs, [](auto& r) { return static_cast<double>(r.rss_kb); }));
    char what[128];
    std::snprintf(what, sizeof what, "MEDIAN of %d: %d followers, %d lines/s, %d s", repeat, clients, rate, secs);
    print(what, m);
  }
  std::vector<SlowResult> slow;
  for (int i = 0; i < repeat; ++i) {
    slow.push_back(slowloris(bin, 45, std::max(secs, 12)));
    std::printf("  run %d: /healthz with 45 slowloris connections: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d closed by the daemon)\n",
                i + 1, slow.back().p50_ms, slow.back().p99_ms, slow.back().max_ms, slow.back().reopened);
    std::fflush(stdout);
  }
  std::printf("MEDIAN of %d: /healthz with 45 slowloris connections: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", repeat,
              median_of(slow, [](auto& r) { return r.p50_ms; }), median_of(slow, [](auto& r) { return r.p99_ms; }),
              median_of(slow, [](auto& r) { return r.max_ms; }));
  return 0;
}
