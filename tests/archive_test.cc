// The archive of purged runs: its file format, appends, torn frames,
// roll-back after a failed write, duplicates and removal by age, on real
// files in a temporary directory.
#include "archive/archive.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_util.h"

namespace cronkeep::archive {
namespace {

using namespace std::chrono_literals;
using cronkeep::testing::TempDir;
using Json = nlohmann::json;
namespace fs = std::filesystem;

const TimePoint kNow = *parse_rfc3339("2026-11-23T04:00:00Z");

store::Run run_of(int64_t id, std::string task = "backup") {
  store::Run r;
  r.id = id;
  r.task = std::move(task);
  r.status = store::RunStatus::succeeded;
  r.scheduled_at = kNow - 1h;
  r.created_at = kNow - 1h;
  r.started_at = kNow - 1h;
  r.finished_at = kNow - 59min;
  r.exit_code = 0;
  r.duration_ms = 60'000;
  r.message = "exit code 0";
  r.node = "n1";
  return r;
}

Entry entry_of(int64_t id, std::string task = "backup") {
  return Entry{run_of(id, std::move(task)), "keep_runs", kNow, std::nullopt};
}

// Appends one batch and commits it.
void append(Writer& w, TimePoint now, const std::vector<Entry>& entries) {
  auto a = w.begin(now);
  ASSERT_TRUE(a) << a.error().message;
  for (const Entry& e : entries) ASSERT_TRUE(a->add(e));
  auto c = a->commit();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->entries, static_cast<int64_t>(entries.size()));
}

std::vector<int64_t> ids_shown(const layout::DataDir& dir, const std::string& date, ReadQuery q = {}) {
  q.date = date;
  auto page = read(dir, q);
  EXPECT_TRUE(page) << (page ? "" : page.error().message);
  std::vector<int64_t> out;
  if (!page) return out;
  for (const std::string& e : page->entries) out.push_back(Json::parse(e)["run_id"].get<int64_t>());
  return out;
}

ReadQuery day(std::string date) {
  ReadQuery q;
  q.date = std::move(date);
  return q;
}

int64_t size_of(const std::string& path) { return static_cast<int64_t>(fs::file_size(path)); }

std::string random_text(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s(n, ' ');
  for (char& c : s) c = kAlphabet[gen() % (sizeof kAlphabet - 1)];
  return s;
}

TEST(ArchiveFormat, EntriesRoundTripThroughAFileAsTheApiShowsRuns) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  Writer w(dir);
  Entry with_log = entry_of(7);
  with_log.log = LogText{"line 1\nline 2\n", 14, 0};
  append(w, kNow, {entry_of(5), with_log, entry_of(9, "cronkeep:retention")});
  EXPECT_TRUE(fs::exists(dir.archive_file("2026-11-23")));

  auto page = read(dir, day("2026-11-23"));
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->entries.size(), 3u);
  EXPECT_FALSE(page->next);
  const Json first = Json::parse(page->entries[0]);
  EXPECT_EQ(first["v"], 1);
  EXPECT_EQ(first["run_id"], 5);
  EXPECT_EQ(first["task"], "backup");
  EXPECT_EQ(first["reason"], "keep_runs");
  EXPECT_EQ(first["archived_at"], "2026-11-23T04:00:00.000Z");
  EXPECT_EQ(first["run"], run_json(run_of(5)));
  EXPECT_TRUE(first["log"].is_null());
  const Json second = Json::parse(page->entries[1]);
  EXPECT_EQ(second["log"]["text"], "line 1\nline 2\n");
  EXPECT_EQ(second["log"]["bytes"], 14);
  // A line is the object and its newline: the reader hands over the object.
  EXPECT_EQ(page->entries[1] + "\n", encode(with_log));

  auto files = list_files(dir);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].date, "2026-11-23");
  EXPECT_EQ((*files)[0].entries, 3);
  EXPECT_EQ((*files)[0].duplicates, 0);
  EXPECT_EQ((*files)[0].bytes, size_of(dir.archive_file("2026-11-23")));
  EXPECT_FALSE((*files)[0].torn);
}

TEST(ArchiveFormat, TheFileOfADayGrowsByOneFrameGroupPerAppendAndReadsBackInOrder) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  Writer w(dir);
  append(w, kNow, {entry_of(1), entry_of(2)});
  const int64_t after_first = size_of(dir.archive_file("2026-11-23"));
  append(w, kNow + 1h, {entry_of(3)});
  EXPECT_GT(size_of(dir.archive_file("2026-11-23")), after_first);
  append(w, kNow + 21h, {entry_of(4)});  // 2026-11-24T01:00Z: the next day's file
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(ids_shown(dir, "2026-11-24"), (std::vector<int64_t>{4}));
  // A new writer (a restarted daemon) appends after what is there.
  Writer again(dir);
  append(again, kNow + 2h, {entry_of(5)});
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2, 3, 5}));
  auto none = read(dir, day("2026-11-25"));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::not_found);
}

TEST(ArchiveFormat, ARunArchivedTwiceIsShownOnceAndCountedOnce) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  Writer w(dir);
  append(w, kNow, {entry_of(1), entry_of(2)});
  // A crash after the archive was synced and before the delete: the next
  // sweep archives runs 1 and 2 again, with run 3.
  append(w, kNow + 1h, {entry_of(1), entry_of(2), entry_of(3)});
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2, 3}));
  auto files = list_files(dir);
  ASSERT_TRUE(files);
  EXPECT_EQ((*files)[0].entries, 3);
  EXPECT_EQ((*files)[0].duplicates, 2);
  // The first entry of a run is the one shown.
  ReadQuery q;
  q.run_id = 2;
  q.date = "2026-11-23";
  auto page = read(dir, q);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(Json::parse(page->entries[0])["archived_at"], "2026-11-23T04:00:00.000Z");
}

TEST(ArchiveFormat, ATornLastFrameIsIgnoredByReadersAndCutOffByTheNextAppend) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  const std::string path = dir.archive_file("2026-11-23");
  {
    Writer w(dir);
    append(w, kNow, {entry_of(1), entry_of(2)});
  }
  const int64_t whole = size_of(path);
  {
    Writer w(dir);
    append(w, kNow, {entry_of(3), entry_of(4)});
  }
  // kill -9 in the middle of writing the second frame.
  fs::resize_file(path, static_cast<uintmax_t>(size_of(path) - 7));
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2}));
  auto files = list_files(dir);
  ASSERT_TRUE(files);
  EXPECT_TRUE((*files)[0].torn);
  EXPECT_EQ((*files)[0].entries, 2);

  Writer w(dir);  // the restarted daemon
  append(w, kNow + 1h, {entry_of(5)});
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2, 5}));
  files = list_files(dir);
  ASSERT_TRUE(files);
  EXPECT_FALSE((*files)[0].torn);
  // What was cut is exactly the torn frame: the file is the whole part and the new frame.
  auto a = w.begin(kNow + 2h);
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->add(entry_of(6)));
  auto c = a->commit();
  ASSERT_TRUE(c);
  EXPECT_GT(size_of(path), whole);

  // Garbage after the last frame (not a frame at all) is ignored too.
  std::ofstream(path, std::ios::app) << "not zstd";
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 2, 5, 6}));
}

TEST(ArchiveFormat, AFileLeftWithHalfAHeaderIsStartedAgain) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  {
    Writer w(dir);
    append(w, kNow, {entry_of(1)});
  }
  const std::string path = dir.archive_file("2026-11-23");
  fs::resize_file(path, 5);  // a crash while the file was being created
  EXPECT_TRUE(ids_shown(dir, "2026-11-23").empty());
  Writer w(dir);
  append(w, kNow, {entry_of(2)});
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{2}));
}

TEST(ArchiveFormat, AFileThatIsNotAnArchiveIsNeitherReadNorWrittenTo) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  fs::create_directories(dir.archive());
  const std::string path = dir.archive_file("2026-11-23");
  std::ofstream(path) << "{\"run_id\": 1}\n";
  Writer w(dir);
  auto a = w.begin(kNow);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, ErrorCode::corruption);
  EXPECT_NE(a.error().message.find("is not a cronkeep archive"), std::string::npos) << a.error().message;
  EXPECT_EQ(cronkeep::testing::read_file(path), "{\"run_id\": 1}\n");
  auto page = read(dir, day("2026-11-23"));
  ASSERT_FALSE(page);
  EXPECT_EQ(page.error().code, ErrorCode::corruption);
}

TEST(ArchiveFormat, AnAppendThatIsNotCommittedLeavesTheFileAsItWas) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  const std::string path = dir.archive_file("2026-11-23");
  Writer w(dir);
  {
    auto a = w.begin(kNow);  // a new file, then abandoned: removed again
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->add(entry_of(1)));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir.archive()));
  append(w, kNow, {entry_of(2)});
  const int64_t before = size_of(path);
  {
    auto a = w.begin(kNow);
    ASSERT_TRUE(a);
    Entry big = entry_of(3);
    big.log = LogText{random_text(6 << 20, 1), 6 << 20, 0};  // more than a frame: some of it is on disk
    ASSERT_TRUE(a->add(big));
    EXPECT_GT(size_of(path), before);
  }
  EXPECT_EQ(size_of(path), before);
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{2}));
}

TEST(ArchiveFormat, AWriteThatFailsIsTruncatedBack) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  const std::string path = dir.archive_file("2026-11-23");
  Writer w(dir);
  append(w, kNow, {entry_of(1)});
  const int64_t before = size_of(path);
  // A file-size limit makes the next write fail for real (EFBIG), as a full
  // disk would with ENOSPC.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(before + 4096);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  Status failed;
  {
    auto a = w.begin(kNow);
    ASSERT_TRUE(a);
    Entry big = entry_of(2);
    big.log = LogText{random_text(1 << 20, 2), 1 << 20, 0};
    failed = a->add(big);
    if (failed) failed = a->commit().map([](const Committed&) {});
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::io);
  EXPECT_NE(failed.error().message.find(path), std::string::npos) << failed.error().message;
  EXPECT_EQ(size_of(path), before);
  // The writer goes on where the file ends.
  append(w, kNow, {entry_of(3)});
  EXPECT_EQ(ids_shown(dir, "2026-11-23"), (std::vector<int64_t>{1, 3}));
}

TEST(ArchiveFormat, PagesFollowOneAnotherAndFiltersApply) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  Writer w(dir);
  std::vector<Entry> batch;
  for (int64_t id = 1; id <= 25; ++id) batch.push_back(entry_of(id, id % 5 == 0 ? "cronkeep:retention" : "backup"));
  append(w, kNow, batch);
  std::vector<int64_t> all;
  ReadQuery q;
  q.date = "2026-11-23";
  q.limit = 7;
  int pages = 0;
  while (true) {
    auto page = read(dir, q);
    ASSERT_TRUE(page);
    ++pages;
    for (const std::string& e : page->entries) all.push_back(Json::parse(e)["run_id"].get<int64_t>());
    if (!page->next) break;
    q.after = *page->next;
  }
  EXPECT_EQ(pages, 4);
  ASSERT_EQ(all.size(), 25u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], static_cast<int64_t>(i + 1));
  ReadQuery only;
  only.task = "cronkeep:retention";
  EXPECT_EQ(ids_shown(dir, "2026-11-23", only), (std::vector<int64_t>{5, 10, 15, 20, 25}));
  ReadQuery hidden;
  hidden.include_system = false;
  EXPECT_EQ(ids_shown(dir, "2026-11-23", hidden).size(), 20u);
  ReadQuery one;
  one.run_id = 12;
  EXPECT_EQ(ids_shown(dir, "2026-11-23", one), (std::vector<int64_t>{12}));
  // A byte budget smaller than an entry still makes progress, one entry a page.
  ReadQuery tiny;
  tiny.date = "2026-11-23";
  tiny.max_bytes = 10;
  auto page = read(dir, tiny);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->next, 1);
  ReadQuery bad;
  bad.date = "../../etc";
  EXPECT_EQ(read(dir, bad).error().code, ErrorCode::invalid_argument);
}

TEST(ArchiveFormat, FilesWhoseWholeDayIsOlderThanTheCutoffAreRemoved) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  Writer w(dir);
  for (const char* day : {"2026-11-01", "2026-11-14", "2026-11-15", "2026-11-16", "2026-11-23"})
    append(w, *parse_rfc3339(std::string(day) + "T12:00:00Z"), {entry_of(1)});
  std::ofstream(dir.archive() + "/notes.txt") << "mine";
  std::ofstream(dir.archive() + "/2026-02-30.jsonl.zst") << "not a day";
  // archive_keep_for = 7d at 2026-11-23T04:00Z: the cutoff is 2026-11-16T04:00Z,
  // so 2026-11-15 (ended 2026-11-16T00:00Z) goes and 2026-11-16 stays.
  const Removal removed = remove_before(dir, kNow - 7 * 24h);
  EXPECT_EQ(removed.files, 3);
  EXPECT_EQ(removed.errors, 0);
  EXPECT_GT(removed.bytes, 0);
  auto files = list_files(dir);
  ASSERT_TRUE(files);
  std::vector<std::string> days;
  for (const FileInfo& f : *files) days.push_back(f.date);
  EXPECT_EQ(days, (std::vector<std::string>{"2026-11-16", "2026-11-23"}));
  EXPECT_TRUE(fs::exists(dir.archive() + "/notes.txt"));
  EXPECT_TRUE(fs::exists(dir.archive() + "/2026-02-30.jsonl.zst"));
  EXPECT_EQ(remove_before(layout::DataDir(tmp / "nothing-here"), kNow).files, 0);
}

TEST(ArchiveLog, KeepsAWholeSmallLogWithItsRotatedPartFirst) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  fs::create_directories(dir.task_logs("backup"));
  store::Run r = run_of(1);
  r.log_path = "logs/backup/20261123_030000_1.log";
  std::ofstream(dir.absolute(r.log_path) + ".prev") << "old\n";
  std::ofstream(dir.absolute(r.log_path)) << "new\n";
  auto t = read_log_text(dir, r);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->text, "old\nnew\n");
  EXPECT_EQ(t->bytes, 8);
  EXPECT_EQ(t->omitted, 0);
  r.log_path = "logs/backup/20261123_030000_2.log";
  EXPECT_FALSE(read_log_text(dir, r));  // no file here
  r.log_path = "../../etc/passwd";
  EXPECT_FALSE(read_log_text(dir, r));  // never read from a path that is not a log's
  r.log_path = "";
  EXPECT_FALSE(read_log_text(dir, r));
}

TEST(ArchiveLog, KeepsTheFirstAndLastMebibyteOfALargeLogAroundAMarker) {
  TempDir tmp;
  const layout::DataDir dir(tmp.path());
  fs::create_directories(dir.task_logs("backup"));
  store::Run r = run_of(1);
  r.log_path = "logs/backup/20261123_030000_1.log";
  const std::string head = random_text(kLogHalfBytes, 3);
  const std::string middle(500'000, 'm');
  const std::string tail = random_text(kLogHalfBytes, 4);
  std::ofstream(dir.absolute(r.log_path) + ".prev") << head << middle.substr(0, 100);
  std::ofstream(dir.absolute(r.log_path)) << middle.substr(100) << tail;
  auto t = read_log_text(dir, r);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->bytes, static_cast<int64_t>(head.size() + middle.size() + tail.size()));
  EXPECT_EQ(t->omitted, 500'000);
  EXPECT_EQ(t->text, head + "\n[cronkeep archive: 500000 bytes omitted]\n" + tail);
}

}  // namespace
}  // namespace cronkeep::archive
