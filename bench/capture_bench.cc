// Log capture: a producer printing SIZE bytes of ~100-byte lines, captured
// by cronkeep's runner and log writer (sidecars on, log_max_size = 0), against
// the same producer piped into `cat > file` and, when installed, into
// s6-log, svlogd and multilog, all in the same run. Prints the median MB/s of
// each, ratios, the CPU seconds per GiB of the capturing side, the peak RSS
// while capturing, and the read latencies on the finished log.
//
//   build/bench/capture_bench [SIZE_MB=1024] [REPS=3] [DIR=/tmp]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "layout/layout.h"
#include "logs/logs.h"
#include "runner/runner.h"

using namespace cronkeep;
namespace fs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string producer(long mb) {
  // 99 characters and a newline: ~100-byte lines; CAPTURE_LINE=short: `yes`
  // alone, 2-byte lines (the per-line cost at its worst).
  const char* line = std::getenv("CAPTURE_LINE");
  if (line && std::string(line) == "short") return "yes | head -c " + std::to_string(mb) + "M";
  return "yes 'cronkeep capture benchmark line: the quick brown fox jumps over the lazy dog 0123456789 abcdefg' | head -c " +
         std::to_string(mb) + "M";
}

// Runs a shell pipeline; returns its wall seconds and the children's CPU seconds.
std::pair<double, double> shell(const std::string& cmd) {
  rusage before{}, after{};
  getrusage(RUSAGE_CHILDREN, &before);
  const double t0 = now_s();
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "failed: %s\n", cmd.c_str());
    std::exit(1);
  }
  const double wall = now_s() - t0;
  getrusage(RUSAGE_CHILDREN, &after);
  auto cpu = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  return {wall, cpu(after) - cpu(before)};
}

struct Capture {
  double wall;
  double self_cpu;  // the capturing side only (this process)
};

Capture cronkeep_capture(const std::string& path, long mb) {
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const double t0 = now_s();
  auto writer = logs::LogWriter::create(path, logs::WriterOptions{});
  if (!writer) std::exit(1);
  runner::Command cmd;
  cmd.shell_command = producer(mb);
  cmd.workdir = "/tmp";
  auto exec = runner::Execution::start(cmd);
  if (!exec) std::exit(1);
  auto clock_now = [] { return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()); };
  (*exec)->wait([&](std::string_view chunk, runner::Stream s) {
    (*writer)->append(chunk, s == runner::Stream::out ? logs::Stream::out : logs::Stream::err, clock_now());
  });
  if (auto st = (*writer)->finalize(clock_now()); !st) std::fprintf(stderr, "finalize: %s\n", st.error().message.c_str());
  const double wall = now_s() - t0;
  getrusage(RUSAGE_SELF, &after);
  auto cpu = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  return {wall, cpu(after) - cpu(before)};
}

bool have(const char* tool) { return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0; }

}  // namespace

int main(int argc, char** argv) {
  const long mb = argc > 1 ? std::atol(argv[1]) : 1024;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string base = std::string(argc > 3 ? argv[3] : "/tmp") + "/cronkeep-capture-bench";
  fs::remove_all(base);
  fs::create_directories(base + "/logs");  // the daemon makes logs/; the writer its task directory
  const double mbytes = static_cast<double>(mb) * 1048576 / 1e6;

  std::vector<double> direct_s, cat_s, ck_s, ck_cpu, s6_s, svlogd_s, multilog_s;
  for (int r = 0; r < reps; ++r) {
    cat_s.push_back(shell(producer(mb) + " | cat > " + base + "/cat.log").first);
    fs::remove(base + "/cat.log");
    direct_s.push_back(shell(producer(mb) + " > " + base + "/direct.log").first);
    fs::remove(base + "/direct.log");
    const std::string path = base + "/logs/t/run.log";
    for (const char* suffix : layout::kLogFileSuffixes) fs::remove(path + suffix);
    Capture c = cronkeep_capture(path, mb);
    ck_s.push_back(c.wall);
    ck_cpu.push_back(c.self_cpu);
    if (r + 1 < reps) {
      for (const char* suffix : layout::kLogFileSuffixes) fs::remove(path + suffix);
    }
    if (have("s6-log")) {
      fs::remove_all(base + "/s6");
      s6_s.push_back(shell(producer(mb) + " | s6-log n2 s100000000 " + base + "/s6").first);
    }
    if (have("svlogd")) {
      fs::remove_all(base + "/svlogd");
      fs::create_directories(base + "/svlogd");
      shell("echo s100000000 > " + base + "/svlogd/config; echo n2 >> " + base + "/svlogd/config");
      svlogd_s.push_back(shell(producer(mb) + " | svlogd " + base + "/svlogd").first);
    }
    if (have("multilog")) {
      fs::remove_all(base + "/multilog");
      multilog_s.push_back(shell(producer(mb) + " | multilog s16777215 n2 " + base + "/multilog").first);
    }
  }
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  const double cat = mbytes / median(cat_s), ck = mbytes / median(ck_s);
  const char* line = std::getenv("CAPTURE_LINE");
  std::printf("capture of %ld MiB of %s lines, median of %d\n", mb,
              line && std::string(line) == "short" ? "2-byte" : "~100-byte", reps);
  std::printf("  producer > file (no capture)    : %7.0f MB/s  (reference: the producer's own ceiling)\n",
              mbytes / median(direct_s));
  std::printf("  cat > file                      : %7.0f MB/s\n", cat);
  std::printf("  cronkeep (runner + log + sidecars): %7.0f MB/s  = %.2fx cat (goal >= 0.90)\n", ck, ck / cat);
  if (!s6_s.empty()) std::printf("  s6-log (size cap)               : %7.0f MB/s  cronkeep = %.2fx\n", mbytes / median(s6_s), ck / (mbytes / median(s6_s)));
  if (!svlogd_s.empty()) std::printf("  svlogd (size cap)               : %7.0f MB/s  cronkeep = %.2fx\n", mbytes / median(svlogd_s), ck / (mbytes / median(svlogd_s)));
  if (!multilog_s.empty()) std::printf("  multilog (size cap)             : %7.0f MB/s  cronkeep = %.2fx\n", mbytes / median(multilog_s), ck / (mbytes / median(multilog_s)));
  std::printf("  cronkeep CPU per GiB captured   : %7.2f s\n", median(ck_cpu) * 1024.0 / static_cast<double>(mb));
  std::printf("  peak RSS of the capturing process: %6ld kB\n", self.ru_maxrss);

  // Reads on the finished log.
  const std::string path = base + "/logs/t/run.log";
  auto request = [](int64_t from, std::optional<int64_t> lines, std::optional<TimePoint> since,
                    std::optional<int64_t> tail_lines) {
    logs::ReadRequest r;
    r.from_line = from;
    r.lines = lines;
    r.since = since;
    r.tail = tail_lines;
    return r;
  };
  auto page = logs::read_log(path, request(1, 1, std::nullopt, std::nullopt));
  auto tail = logs::read_log(path, request(1, std::nullopt, std::nullopt, 1));
  if (!page || !tail || tail->lines.empty()) return 1;
  const int64_t total = tail->lines.back().number;
  const int64_t target = std::min<int64_t>(9'000'000, total - 100);
  std::vector<double> range_ms, since_ms;
  const TimePoint first = *page->lines.front().time;
  const TimePoint last = tail->lines.back().time.value_or(first);
  const TimePoint at90 = first + (last - first) * 9 / 10;
  for (int i = 0; i < 101; ++i) {
    double t0 = now_s();
    auto p = logs::read_log(path, request(target, 100, std::nullopt, std::nullopt));
    range_ms.push_back((now_s() - t0) * 1000);
    if (!p || p->lines.size() != 100 || p->lines.front().number != target) return 1;
    t0 = now_s();
    auto s = logs::read_log(path, request(1, 1, at90, std::nullopt));
    since_ms.push_back((now_s() - t0) * 1000);
    if (!s || s->lines.empty()) return 1;
  }
  std::printf("reads on the finished log (%lld lines), median of 101\n", static_cast<long long>(total));
  std::printf("  100 lines from line %lld         : %.3f ms (goal < 5 ms)\n", static_cast<long long>(target), median(range_ms));
  std::printf("  first line at/after 90%% time     : %.3f ms (goal < 5 ms)\n", median(since_ms));
  fs::remove_all(base);
  return 0;
}
