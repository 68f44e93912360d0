// SSE fan-out: CLIENTS clients follow one run that prints RATE lines per
// second for SECONDS seconds (each line carries the time it was written); the
// delay from write to client (p50, p99), the events each client got, and the
// daemon's CPU and peak RSS. The daemon is a separate process.
//
//   build/bench/sse_fanout build/cronkeep [CLIENTS=200] [RATE=10000] [SECONDS=10]
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CRONKEEP [CLIENTS] [RATE] [SECONDS]\n", argv[0]);
    return 2;
  }
  const std::string bin = fs::absolute(argv[1]);
  const int clients = argc > 2 ? std::atoi(argv[2]) : 200;
  const int rate = argc > 3 ? std::atoi(argv[3]) : 10000;
  const int secs = argc > 4 ? std::atoi(argv[4]) : 10;
  const std::string dir = "/tmp/cronkeep-sse-bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int port = 17000 + static_cast<int>(getpid() % 1000);
  {
    std::ofstream(dir + "/producer.py")
        << "import sys, time\ntime.sleep(2)\nrate, secs = " << rate << ", " << secs
        << "\nn = 0\nstart = time.time()\nwhile time.time() - start < secs:\n"
           "    batch = max(1, rate // 100)\n"
           "    sys.stdout.write(''.join(f'{time.time_ns()} {n + i}\\n' for i in range(batch)))\n"
           "    sys.stdout.flush()\n    n += batch\n    time.sleep(max(0.0, start + n / rate - time.time()))\n";
    std::ofstream(dir + "/c.toml") << "[daemon]\ndata_dir = \"data\"\nlisten = \"127.0.0.1:" << port
                                   << "\"\nmax_log_streams = " << clients + 10 << "\nmax_log_streams_per_client = "
                                   << clients + 10 << "\n[storage]\nmin_free_space = \"0\"\n[defaults]\nlog_max_size = \"0\"\n"
                                   << "[tasks.spray]\ncron = \"@yearly\"\nrun = \"python3 " << dir << "/producer.py\"\n";
  }
  const pid_t daemon = fork();
  if (daemon == 0) {
    if (chdir(dir.c_str()) != 0) _exit(1);
    freopen("daemon.log", "w", stderr);
    execl(bin.c_str(), bin.c_str(), "daemon", "-c", "c.toml", static_cast<char*>(nullptr));
    _exit(127);
  }
  httplib::Client api("127.0.0.1", port);
  for (int i = 0; i < 100 && !api.Get("/healthz"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::string token;
  std::ifstream(dir + "/data/token") >> token;
  api.set_bearer_token_auth(token);
  auto started = api.Post("/api/tasks/spray/run", "", "application/json");
  if (!started || started->status != 202) {
    std::fprintf(stderr, "cannot start the run\n");
    kill(daemon, SIGKILL);
    return 1;
  }
  const std::string id = started->body.substr(started->body.find("\"id\":") + 5);
  const std::string path = "/api/tasks/spray/runs/" + std::to_string(std::atoll(id.c_str())) + "/log/stream";
  const double cpu0 = cpu_seconds(daemon);

  std::vector<std::vector<int32_t>> delays_us(static_cast<size_t>(clients));
  std::vector<uint64_t> dropped(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(std::chrono::seconds(secs + 30));
      std::string buf;
      auto& mine = delays_us[static_cast<size_t>(c)];
      mine.reserve(static_cast<size_t>(rate) * static_cast<size_t>(secs));
      cli.Get(path.c_str(), [&](const char* data, size_t n) {
        buf.append(data, n);
        size_t pos = 0, nl;
        while ((nl = buf.find('\n', pos)) != std::string::npos) {
          const size_t text = buf.find("\"text\":\"", pos);
          if (buf.compare(pos, 6, "data: ") == 0 && text != std::string::npos && text < nl) {
            const int64_t written = std::atoll(buf.c_str() + text + 8);
            if (written > 0) mine.push_back(static_cast<int32_t>(std::min<int64_t>((now_ns() - written) / 1000, INT32_MAX)));
          } else if (buf.compare(pos, 15, "event: dropped") == 0) {
            ++dropped[static_cast<size_t>(c)];
          }
          pos = nl + 1;
        }
        buf.erase(0, pos);
        return true;
      });
    });
  }
  for (auto& t : threads) t.join();
  const double cpu = cpu_seconds(daemon) - cpu0;
  const long rss = peak_rss_kb(daemon);
  kill(daemon, SIGTERM);
  waitpid(daemon, nullptr, 0);

  std::vector<int32_t> all;
  size_t min_events = SIZE_MAX;
  uint64_t drops = 0;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), delays_us[static_cast<size_t>(c)].begin(), delays_us[static_cast<size_t>(c)].end());
    min_events = std::min(min_events, delays_us[static_cast<size_t>(c)].size());
    drops += dropped[static_cast<size_t>(c)];
  }
  std::sort(all.begin(), all.end());
  auto q = [&](double p) { return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * static_cast<double>(all.size())))] / 1000.0; };
  std::printf("SSE fan-out: %d clients, %d lines/s for %d s (%d lines)\n", clients, rate, secs, rate * secs);
  std::printf("  delay write -> client: p50 %.1f ms, p99 %.1f ms, max %.1f ms (goal p99 < 50 ms)\n", q(.5), q(.99), q(1));
  std::printf("  lines received: %zu in all, at least %zu per client; %llu dropped notices\n", all.size(), min_events,
              static_cast<unsigned long long>(drops));
  std::printf("  daemon: %.1f CPU s (%.0f%% of one core), peak RSS %ld kB\n", cpu, 100.0 * cpu / secs, rss);
  fs::remove_all(dir);
  return 0;
}
