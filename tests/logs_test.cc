#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events/events.h"
#include "logs/logs.h"
#include "test_util.h"

namespace cronkeep::logs {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::read_file;
using cronkeep::testing::TempDir;
namespace fs = std::filesystem;

const TimePoint kT0 = from_unix_ms(1'795'406'400'000);

class LogsTest : public ::testing::Test {
 protected:
  std::unique_ptr<LogWriter> writer(WriterOptions o = {}) {
    fs::create_directories(dir_ / "logs");  // the daemon makes logs/; the writer only the task's directory
    auto w = LogWriter::create(path_, std::move(o));
    EXPECT_TRUE(w) << w.error().message;
    return std::move(*w);
  }
  LogPage read(ReadRequest r = {}) {
    auto p = read_log(path_, r);
    EXPECT_TRUE(p) << p.error().message;
    return p ? *p : LogPage{};
  }
  static std::string numbered(int i) { return "line " + std::to_string(i) + " of the log"; }

  TempDir dir_;
  std::string path_ = dir_ / "logs/t/20261123_040000_1.log";
};

TEST_F(LogsTest, KeepsTheBytesExactlyAndIndexesLinesWithStreamAndTime) {
  auto w = writer();
  w->append("out one\nout ", Stream::out, kT0);
  w->append("two\n", Stream::out, kT0 + 10ms);
  w->append("err one\n", Stream::err, kT0 + 1500ms);
  w->append("tail without newline", Stream::out, kT0 + 3s);
  ASSERT_TRUE(w->finalize(kT0 + 4s));
  EXPECT_EQ(read_file(path_), "out one\nout two\nerr one\ntail without newline");
  EXPECT_TRUE(fs::exists(path_ + ".idx"));
  EXPECT_TRUE(fs::exists(path_ + ".tidx"));
  EXPECT_NE(read_file(path_ + ".meta").find("finalized=1"), std::string::npos);
  LogPage p = read();
  ASSERT_EQ(p.lines.size(), 4u);
  EXPECT_EQ(p.lines[1].text, "out two");
  EXPECT_EQ(p.lines[1].stream, 'o');
  EXPECT_EQ(p.lines[2].stream, 'e');
  EXPECT_EQ(p.lines[2].number, 3);
  EXPECT_EQ(p.lines[2].time, kT0 + 1500ms);
  EXPECT_EQ(p.lines[3].text, "tail without newline");
  EXPECT_TRUE(p.partial_last_line);
  EXPECT_TRUE(p.finalized);
  EXPECT_TRUE(p.note.empty()) << p.note;
  EXPECT_EQ(w->stats().lines, 4);
}

TEST_F(LogsTest, ReadsAnyRangeOfALargeLogThroughTheIndex) {
  auto w = writer();
  std::string chunk;
  for (int i = 1; i <= 200'000; ++i) {
    chunk += numbered(i) + "\n";
    if (chunk.size() > 60'000) {
      w->append(chunk, i % 7 ? Stream::out : Stream::err, kT0 + Millis(i));
      chunk.clear();
    }
  }
  w->append(chunk, Stream::out, kT0 + 200s);
  ASSERT_TRUE(w->finalize(kT0 + 201s));
  ReadRequest r;
  r.from_line = 150'000;
  r.lines = 100;
  LogPage p = read(r);
  ASSERT_EQ(p.lines.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(p.lines[i].number, 150'000 + i);
    EXPECT_EQ(p.lines[i].text, numbered(150'000 + i));
  }
  EXPECT_EQ(p.next_line, 150'100);
  EXPECT_FALSE(p.at_end);
  // Well under a tenth of the index; the sidecar stays sparse.
  EXPECT_LT(fs::file_size(path_ + ".idx"), fs::file_size(path_) / 100);
  ReadRequest tail;
  tail.tail = 3;
  LogPage t = read(tail);
  ASSERT_EQ(t.lines.size(), 3u);
  EXPECT_EQ(t.lines.back().text, numbered(200'000));
  EXPECT_TRUE(t.at_end);
}

TEST_F(LogsTest, SinceFindsTheFirstLineThatArrivedAtOrAfterATime) {
  auto w = writer();
  for (int s = 0; s < 100; ++s) w->append("second " + std::to_string(s) + "\n", Stream::out, kT0 + Millis(s * 1000));
  ASSERT_TRUE(w->finalize(kT0 + 100s));
  ReadRequest r;
  r.since = kT0 + 42s;
  r.lines = 2;
  LogPage p = read(r);
  ASSERT_EQ(p.lines.size(), 2u);
  EXPECT_EQ(p.lines[0].text, "second 42");
  EXPECT_EQ(p.lines[0].time, kT0 + 42s);
  r.since = kT0 + 500s;
  EXPECT_TRUE(read(r).lines.empty());
}

TEST_F(LogsTest, SplitsLinesLongerThan64KiBWithoutChangingTheBytes) {
  auto w = writer();
  const std::string huge(kMaxLineBytes * 2 + 10, 'x');
  w->append(huge + "\nshort\n", Stream::out, kT0);
  ASSERT_TRUE(w->finalize(kT0));
  EXPECT_EQ(fs::file_size(path_), huge.size() + 7);
  LogPage p = read();
  ASSERT_EQ(p.lines.size(), 4u);
  EXPECT_EQ(p.lines[0].text.size(), kMaxLineBytes);
  EXPECT_EQ(p.lines[2].text.size(), 10u);
  EXPECT_EQ(p.lines[3].text, "short");
  // The pieces say so, so a reader can print the bytes back exactly.
  EXPECT_TRUE(p.lines[0].continued);
  EXPECT_TRUE(p.lines[1].continued);
  EXPECT_FALSE(p.lines[2].continued);
  std::string back;
  for (const Line& l : p.lines) back += l.text + (l.continued ? "" : "\n");
  EXPECT_EQ(back, huge + "\nshort\n");
}

TEST_F(LogsTest, BinaryAndNulBytesAreCapturedAsWritten) {
  auto w = writer();
  const std::string bin("\0\1\2\xff\n\0", 6);
  w->append(bin, Stream::out, kT0);
  ASSERT_TRUE(w->finalize(kT0));
  EXPECT_EQ(read_file(path_), bin);
  LogPage p = read();
  ASSERT_EQ(p.lines.size(), 2u);
  EXPECT_EQ(p.lines[0].text, std::string("\0\1\2\xff", 4));
}

TEST_F(LogsTest, DropOldRotatesToPrevAndReadsServePrevThenCurrent) {
  WriterOptions o;
  o.max_size = 10'000;
  auto w = writer(o);
  for (int i = 1; i <= 2000; ++i) w->append(numbered(i) + "\n", Stream::out, kT0 + Millis(i));
  ASSERT_TRUE(w->finalize(kT0 + 3s));
  EXPECT_TRUE(fs::exists(path_ + ".prev"));
  EXPECT_LE(fs::file_size(path_), 10'000u + 200);
  EXPECT_LE(fs::file_size(path_ + ".prev"), 10'000u + 200);
  EXPECT_GT(w->stats().rotations, 2);
  EXPECT_GT(w->stats().bytes_dropped, 0u);
  LogPage p = read();
  ASSERT_FALSE(p.lines.empty());
  EXPECT_GT(p.first_available, 1);
  EXPECT_EQ(p.lines.front().number, p.first_available);
  // The newest output is all there, in order, up to the very last line.
  EXPECT_EQ(p.lines.back().text, numbered(2000));
  int markers = 0;
  int64_t last_number = 0;
  for (const Line& l : p.lines) {
    EXPECT_GT(l.number, last_number);
    last_number = l.number;
    if (l.stream == 'm') {
      ++markers;
      EXPECT_NE(l.text.find("log rotated"), std::string::npos) << l.text;
    }
  }
  EXPECT_GE(markers, 1);
}

TEST_F(LogsTest, DropNewStopsAcceptingAndSaysHowMuchWasDropped) {
  WriterOptions o;
  o.max_size = 1000;
  o.on_full = OnFull::drop_new;
  auto w = writer(o);
  for (int i = 1; i <= 200; ++i) EXPECT_EQ(w->append(numbered(i) + "\n", Stream::out, kT0), Verdict::keep_going);
  ASSERT_TRUE(w->finalize(kT0 + 1s));
  const std::string text = read_file(path_);
  EXPECT_NE(text.find("log full (log_max_size = 1000 B, log_on_full = drop_new)"), std::string::npos) << text;
  EXPECT_NE(text.find("byte(s) of output were dropped"), std::string::npos);
  EXPECT_TRUE(w->stats().truncated);
  EXPECT_GT(w->stats().bytes_dropped, 2500u);  // about 3.9 KB offered, 1000 B kept
  EXPECT_LT(fs::file_size(path_), 1300u);
}

TEST_F(LogsTest, KillTaskAsksToStopTheProcess) {
  WriterOptions o;
  o.max_size = 100;
  o.on_full = OnFull::kill_task;
  auto w = writer(o);
  EXPECT_EQ(w->append(std::string(80, 'a') + "\n", Stream::out, kT0), Verdict::keep_going);
  EXPECT_EQ(w->append(std::string(80, 'b') + "\n", Stream::out, kT0), Verdict::stop_overflow);
  ASSERT_TRUE(w->finalize(kT0));
  EXPECT_NE(read_file(path_).find("kill_task): stopping the task"), std::string::npos);
}

TEST_F(LogsTest, DiskPressureStopsAcceptingOrStopsTheTask) {
  WriterOptions o;
  o.min_free_space = 1ull << 60;  // more than any disk has
  o.space_dir = dir_.path();
  auto w = writer(o);
  EXPECT_EQ(w->append("hello\n", Stream::out, kT0), Verdict::keep_going);
  EXPECT_TRUE(w->stats().disk_pressure);
  EXPECT_GT(w->stats().bytes_dropped, 0u);
  ASSERT_TRUE(w->finalize(kT0));
  EXPECT_NE(read_file(path_).find("disk pressure"), std::string::npos);

  const std::string other = dir_ / "logs/t/20261123_040000_2.log";
  o.on_full = OnFull::kill_task;
  auto k = LogWriter::create(other, o);
  ASSERT_TRUE(k);
  EXPECT_EQ((*k)->append("hello\n", Stream::out, kT0), Verdict::stop_disk_pressure);
}

TEST_F(LogsTest, ACrashedLogWithAPartialLineAndNoFinalizeIsReadable) {
  {
    auto w = writer();
    for (int i = 1; i <= 5000; ++i) w->append(numbered(i) + "\n", Stream::out, kT0);
    w->append("half a li", Stream::out, kT0);
    // destroyed without finalize(), as after kill -9
  }
  ReadRequest r;
  r.from_line = 4999;
  LogPage p = read(r);
  ASSERT_EQ(p.lines.size(), 3u);
  EXPECT_EQ(p.lines[1].text, numbered(5000));
  EXPECT_EQ(p.lines[2].text, "half a li");
  EXPECT_TRUE(p.partial_last_line);
  EXPECT_FALSE(p.finalized);
  EXPECT_FALSE(check_sidecars(path_).finalized);
}

// kill -9 after any system call of a writer that rotates every few lines
// (the child stops at each call under ptrace; round k kills it after its
// k-th): what start-up's recovery makes of the files is a finalized log
// whose sidecars check out and that reads back in order.
TEST_F(LogsTest, AWriterKilledAfterAnySystemCallLeavesALogThatRecovers) {
  fs::create_directories(dir_ / "logs");
  constexpr int kLines = 60;
  for (int k = 1;; ++k) {
    ASSERT_LT(k, 5000) << "the writer never finished";
    const std::string path = dir_ / ("logs/t/20261127_070000_" + std::to_string(k) + ".log");
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
      ::raise(SIGSTOP);
      WriterOptions o;
      o.max_size = 400;  // a rotation every few chunks
      auto w = LogWriter::create(path, o);
      if (!w) ::_exit(2);
      // Three lines a chunk, so the cap falls inside chunks and inside lines;
      // a new second every four chunks, so there are .tidx records to move.
      for (int i = 1; i <= kLines; i += 3)
        (*w)->append(numbered(i) + "\n" + numbered(i + 1) + "\n" + numbered(i + 2) + "\n", Stream::out,
                     kT0 + Millis(250 * i / 3));
      ::_exit((*w)->finalize(kT0 + 1min) ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSTOPPED(status));
    ::ptrace(PTRACE_SETOPTIONS, child, nullptr, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL);
    int stops = 0;
    bool finished = false;
    for (;;) {
      ASSERT_EQ(::ptrace(PTRACE_SYSCALL, child, nullptr, nullptr), 0);
      ASSERT_EQ(::waitpid(child, &status, 0), child);
      if (WIFEXITED(status)) {
        ASSERT_EQ(WEXITSTATUS(status), 0);
        finished = true;
        break;
      }
      // Each call stops twice, on entry and on exit: kill after the k-th exit.
      if (WIFSTOPPED(status) && WSTOPSIG(status) == (SIGTRAP | 0x80) && ++stops == 2 * k) {
        ::kill(child, SIGKILL);
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        break;
      }
    }
    if (finished) {
      // Round k ran to the end: every call before it was a kill point.
      const std::string meta = read_file(path + ".meta");
      EXPECT_GE(std::stoi(meta.substr(meta.find("rotations=") + 10)), 3) << meta;
      break;
    }
    if (!fs::exists(path) && !fs::exists(path + ".prev")) continue;  // killed before the log was made
    ASSERT_TRUE(recover_crashed(path)) << "after call " << k;
    const SidecarCheck c = check_sidecars(path);
    ASSERT_TRUE(c.index_ok) << "after call " << k << ": " << c.problem;
    EXPECT_TRUE(c.finalized) << "after call " << k;
    auto page = read_log(path, {});
    ASSERT_TRUE(page) << "after call " << k << ": " << page.error().message;
    EXPECT_EQ(page->note, "") << "after call " << k;
    if (!page->lines.empty()) {
      EXPECT_EQ(page->lines.front().number, page->first_available) << "after call " << k;
    }
    for (size_t i = 1; i < page->lines.size(); ++i)
      ASSERT_EQ(page->lines[i].number, page->lines[i - 1].number + 1) << "after call " << k;
  }
}

TEST_F(LogsTest, ACorruptIndexFallsBackToScanningAndSaysSo) {
  auto w = writer();
  for (int i = 1; i <= 3000; ++i) w->append(numbered(i) + "\n", Stream::out, kT0);
  ASSERT_TRUE(w->finalize(kT0));
  std::ofstream(path_ + ".idx", std::ios::trunc) << "garbage, not an index";
  ReadRequest r;
  r.from_line = 2500;
  r.lines = 1;
  LogPage p = read(r);
  ASSERT_EQ(p.lines.size(), 1u);
  EXPECT_EQ(p.lines[0].text, numbered(2500));
  EXPECT_NE(p.note.find("unusable"), std::string::npos);
  EXPECT_FALSE(check_sidecars(path_).index_ok);
}

TEST_F(LogsTest, DeletedOrTruncatedLogsGiveClearErrors) {
  auto w = writer();
  for (int i = 1; i <= 3000; ++i) w->append(numbered(i) + "\n", Stream::out, kT0);
  ASSERT_TRUE(w->finalize(kT0));
  fs::resize_file(path_, 100);
  auto truncated = read_log(path_, {});
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code, ErrorCode::corruption);
  fs::remove(path_);
  auto gone = read_log(path_, {});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::not_found);
}

TEST_F(LogsTest, ALogBeingWrittenIsReadableUpToWhatIsOnDisk) {
  auto w = writer();
  w->append("first\nsecond\npart", Stream::out, kT0);
  LogPage p = read();
  ASSERT_EQ(p.lines.size(), 3u);
  EXPECT_TRUE(p.partial_last_line);
  EXPECT_FALSE(p.finalized);
  EXPECT_EQ(p.next_line, 3);  // the partial line will be read again once complete
  w->append("ial\nfourth\n", Stream::out, kT0);
  ReadRequest r;
  r.from_line = p.next_line;
  LogPage q = read(r);
  ASSERT_EQ(q.lines.size(), 2u);
  EXPECT_EQ(q.lines[0].text, "partial");
}

TEST_F(LogsTest, ASpareFileBecomesTheLogAndIsInvisibleUntilThen) {
  fs::create_directories(dir_ / "logs");
  SpareFiles spares(dir_ / "logs", 4);
  EXPECT_FALSE(spares.take().valid());  // none made yet
  spares.want(100);                     // capped at 4
  while (spares.low()) ASSERT_TRUE(spares.make_one());
  EXPECT_EQ(spares.ready(), 4u);
  // Anonymous: nothing under logs/ until a log is made of one.
  EXPECT_TRUE(fs::is_empty(dir_ / "logs"));
  auto w = LogWriter::create(path_, {}, spares.take());
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(spares.ready(), 3u);
  EXPECT_TRUE(fs::exists(path_));  // named before create returns
  (*w)->append("one\n", Stream::out, kT0);
  (*w)->append("two\n", Stream::out, kT0 + 1s);
  ASSERT_TRUE((*w)->finalize(kT0 + 2s));
  EXPECT_EQ(read_file(path_), "one\ntwo\n");
  EXPECT_EQ(read().lines.size(), 2u);
  // A name already taken: the spare is not used, the file is made anew (truncated).
  auto again = LogWriter::create(path_, {}, spares.take());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(read_file(path_), "");
}

TEST_F(LogsTest, SparesInAMissingDirectoryAreNotMadeButAskedForAgainLater) {
  SpareFiles spares(dir_ / "nowhere", 2);
  spares.want(2);
  EXPECT_FALSE(spares.make_one());
  EXPECT_TRUE(spares.low());  // the directory may appear later
  fs::create_directories(dir_ / "nowhere");
  EXPECT_TRUE(spares.make_one());
}

TEST_F(LogsTest, AMissingLogsDirectoryIsNeverMadeAgain) {
  // logs/ gone means the data directory moved: the writer must not recreate it.
  auto w = LogWriter::create(path_, {});
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find("cannot create log directory"), std::string::npos) << w.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "logs"));
}

TEST_F(LogsTest, LinesCountedInBulkAreIndexedExactlyAsLineByLine) {
  // With nobody following, runs of short lines are counted in bulk; with a
  // viewer, line by line (each becomes an event). Both must write the same
  // index: random short lines, long lines that get split, stream switches
  // and new seconds, in random chunks.
  std::mt19937 rng(20261126);
  std::vector<std::tuple<std::string, Stream, TimePoint>> chunks;
  TimePoint t = kT0;
  Stream stream = Stream::out;
  for (int c = 0; c < 400; ++c) {
    std::string chunk;
    const int lines = static_cast<int>(rng() % 3000);
    for (int i = 0; i < lines; ++i) {
      const unsigned kind = rng() % 1000;
      const size_t len = kind == 0 ? 70'000 + rng() % 70'000 : kind < 10 ? rng() % 300 : rng() % 4;
      chunk.append(len, static_cast<char>('a' + rng() % 26));
      chunk += '\n';
    }
    chunk.append(rng() % 5, 'z');  // a partial line across chunks
    if (rng() % 7 == 0) stream = stream == Stream::out ? Stream::err : Stream::out;
    if (rng() % 5 == 0) t += Millis(700);
    chunks.emplace_back(std::move(chunk), stream, t);
  }
  auto write = [&](const std::string& path, events::Bus* bus) {
    WriterOptions o;
    o.bus = bus;
    auto w = LogWriter::create(path, o);
    EXPECT_TRUE(w) << w.error().message;
    for (const auto& [bytes, s, at] : chunks) (*w)->append(bytes, s, at);
    EXPECT_TRUE((*w)->finalize(t));
    return (*w)->stats().lines;
  };
  fs::create_directories(dir_ / "logs/t");
  const int64_t bulk = write(dir_ / "logs/t/bulk.log", nullptr);
  events::Bus bus;
  auto viewer = bus.subscribe();
  const int64_t one_by_one = write(dir_ / "logs/t/each.log", &bus);
  EXPECT_EQ(bulk, one_by_one);
  for (const char* suffix : {".log", ".log.idx", ".log.tidx"})
    EXPECT_EQ(cronkeep::testing::read_file(dir_ / (std::string("logs/t/bulk") + suffix)),
              cronkeep::testing::read_file(dir_ / (std::string("logs/t/each") + suffix)))
        << suffix;
  // And reads through that index find every line where it is.
  ReadRequest r;
  r.from_line = bulk / 2;
  r.lines = 3;
  auto a = read_log(dir_ / "logs/t/bulk.log", r);
  auto b = read_log(dir_ / "logs/t/each.log", r);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->lines.size(), b->lines.size());
  for (size_t i = 0; i < a->lines.size(); ++i) {
    EXPECT_EQ(a->lines[i].text, b->lines[i].text);
    EXPECT_EQ(a->lines[i].stream, b->lines[i].stream);
  }
}

TEST_F(LogsTest, APageIsBoundedInBytesAsWellAsLines) {
  // 95 MB without a newline are 1,450 pieces of 64 KiB: a read of 10,000
  // "lines" must not hold them all in memory at once.
  auto w = writer();
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 16; ++i) w->append(chunk, Stream::out, kT0);
  ASSERT_TRUE(w->finalize(kT0));
  ReadRequest r;
  r.lines = 10'000;
  r.max_bytes = 1 << 20;
  LogPage p = read(r);
  EXPECT_EQ(p.lines.size(), 16u);  // 16 x 64 KiB = 1 MiB
  EXPECT_FALSE(p.at_end);
  EXPECT_EQ(p.next_line, 17);
  r.from_line = p.next_line;
  LogPage q = read(r);
  EXPECT_EQ(q.lines.front().number, 17);
}

TEST_F(LogsTest, ALiveLogTellsStderrFromStdoutBeforeItEnds) {
  auto w = writer();
  // Within a second of each other, so no time-based flush happens between.
  w->append("out\n", Stream::out, kT0 + 900ms);
  w->append("err one\nerr two\n", Stream::err, kT0 + 1100ms);
  w->append("out again\n", Stream::out, kT0 + 1200ms);
  LogPage p = read();  // no finalize: the run is live
  ASSERT_EQ(p.lines.size(), 4u);
  EXPECT_EQ(p.lines[0].stream, 'o');
  EXPECT_EQ(p.lines[1].stream, 'e');
  EXPECT_EQ(p.lines[2].stream, 'e');
  EXPECT_EQ(p.lines[3].stream, 'o');
  ASSERT_TRUE(p.lines[1].time);
  EXPECT_EQ(*p.lines[1].time, kT0 + 1100ms);
}

}  // namespace
}  // namespace cronkeep::logs
