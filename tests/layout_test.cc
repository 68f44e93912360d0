// The data directory's layout, the task-name rule and removing a run's files,
// on real files in a temporary directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "layout/layout.h"
#include "test_util.h"

namespace cronkeep::layout {
namespace {

namespace fs = std::filesystem;
using cronkeep::testing::TempDir;

const TimePoint kT0 = *parse_rfc3339("2026-11-23T04:00:00Z");

TEST(TaskName, IsByteBasedAndRefusesAnythingThatCouldLeaveItsDirectory) {
  for (const char* good : {"backup", "a", "A-1", "x.y", "nightly_report", "0start"}) EXPECT_TRUE(valid_task_name(good)) << good;
  for (const char* bad : {"", "..", "x..y", ".hidden", "-dash", "a/b", "a b", "x%2Fy", "cronkeep:retention", "é",
                          "tab\there"})
    EXPECT_FALSE(valid_task_name(bad)) << bad;
  EXPECT_TRUE(valid_task_name(std::string(128, 'a')));
  EXPECT_FALSE(valid_task_name(std::string(129, 'a')));
  // Bytes above 0x7f are never letters, whatever the locale says.
  EXPECT_FALSE(valid_task_name("caf\xe9"));
  EXPECT_TRUE(is_system_task_name("cronkeep:retention"));
  EXPECT_FALSE(is_system_task_name("cronkeep:"));
  EXPECT_FALSE(is_system_task_name("cronkeep:../x"));
}

TEST(DataDir, OwnsEveryPath) {
  const DataDir d("/var/lib/cronkeep/");
  EXPECT_EQ(d.database(), "/var/lib/cronkeep/cronkeep.db");
  EXPECT_EQ(d.lock(), "/var/lib/cronkeep/cronkeep.lock");
  EXPECT_EQ(d.generated_token(), "/var/lib/cronkeep/token");
  EXPECT_EQ(d.task_logs("backup"), "/var/lib/cronkeep/logs/backup");
  EXPECT_EQ(DataDir::relative_log_path("backup", kT0, 42).value(), "logs/backup/20261123_040000_42.log");
  for (const char* bad : {"..", "a/b", "", ".hidden", "a b", "x..y", "cronkeep:retention"})
    EXPECT_FALSE(DataDir::relative_log_path(bad, kT0, 1)) << bad;
  EXPECT_EQ(DataDir::run_id_of("20261123_040000_42.log"), 42);
  EXPECT_EQ(DataDir::run_id_of("20261123_040000_42.log.idx"), 0);
  EXPECT_EQ(DataDir::run_id_of("junk.log"), 0);
}

TEST(DataDir, ArchivePathsAreBuiltOnlyFromRealDays) {
  const DataDir d("/var/lib/cronkeep");
  EXPECT_EQ(d.archive(), "/var/lib/cronkeep/archive");
  EXPECT_EQ(d.archive_file("2026-11-23"), "/var/lib/cronkeep/archive/2026-11-23.jsonl.zst");
  EXPECT_EQ(DataDir::archive_date(kT0), "2026-11-23");
  EXPECT_EQ(DataDir::archive_date(*parse_rfc3339("2026-11-23T23:59:59.999Z")), "2026-11-23");
  for (const char* good : {"2026-11-23", "2024-02-29", "1999-12-31"}) EXPECT_TRUE(DataDir::valid_archive_date(good)) << good;
  for (const char* bad : {"", "2026-11-2", "2026-11-233", "2026-02-30", "2025-02-29", "2026-13-01", "2026-00-10",
                          "2026/11/23", "26-11-23", "2026-11-23 ", "../../x", "2026-11-23/..", "2026-1a-23",
                          "２０２６-11-23", "2026-11-23\n"})
    EXPECT_FALSE(DataDir::valid_archive_date(bad)) << bad;
  EXPECT_EQ(DataDir::archive_date_of("2026-11-23.jsonl.zst"), "2026-11-23");
  for (const char* other : {"2026-11-23.jsonl", "2026-02-30.jsonl.zst", "x.jsonl.zst", "2026-11-23.jsonl.zst.tmp",
                            "notes.txt"})
    EXPECT_EQ(DataDir::archive_date_of(other), "") << other;
}

TEST(DataDir, ValidLogPathsAreExactlyTheOnesItMakes) {
  EXPECT_TRUE(DataDir::valid_log_path("logs/backup/20261123_040000_42.log"));
  EXPECT_TRUE(DataDir::valid_log_path("logs/a.b/20261123_040000_42.log"));
  for (const char* bad : {"", "/etc/passwd", "logs/../x.log", "logs/backup/../../x.log", "logs/x/y/z.log",
                          "logs/backup/.log", "logs/backup/x.txt", "other/backup/x.log", "logs//x.log",
                          "logs/x..y/1.log"})
    EXPECT_FALSE(DataDir::valid_log_path(bad)) << bad;
}

TEST(RemoveRunFiles, RemovesTheLogItsSidecarsAndAnEmptyTaskDirectory) {
  TempDir dir;
  const DataDir d(dir.path());
  fs::create_directories(d.task_logs("t"));
  const std::string rel = "logs/t/20261123_040000_1.log";
  for (const char* suffix : kLogFileSuffixes) std::ofstream(d.absolute(rel) + suffix) << "x";
  const std::string kept = "logs/t/20261123_040000_2.log";
  std::ofstream(d.absolute(kept)) << "y";

  Removal r;
  EXPECT_EQ(remove_run_files(d, {rel}, r), std::vector<bool>{true});
  EXPECT_EQ(r.files_deleted, 7);
  EXPECT_EQ(r.file_errors, 0);
  EXPECT_TRUE(fs::exists(d.absolute(kept)));  // the directory is not empty: it stays

  Removal r2;
  EXPECT_EQ(remove_run_files(d, {kept, rel}, r2), (std::vector<bool>{true, true}));
  EXPECT_EQ(r2.files_deleted, 1);
  EXPECT_EQ(r2.files_missing, 1);
  EXPECT_FALSE(fs::exists(d.task_logs("t")));  // left empty: removed
}

TEST(RemoveRunFiles, NeverTouchesAPathItDidNotMake) {
  TempDir dir;
  const DataDir d(dir / "data");
  fs::create_directories(d.logs());
  std::ofstream(dir / "victim.log") << "keep me";
  Removal r;
  EXPECT_EQ(remove_run_files(d, {"logs/../../victim.log", "../victim.log"}, r), (std::vector<bool>{true, true}));
  EXPECT_TRUE(fs::exists(dir / "victim.log"));
  EXPECT_EQ(r.files_deleted, 0);
}

TEST(RemoveRunFiles, ANameWithTwoDotsInsideIsStillRemoved) {
  // Such names are refused at config load now, but older histories may hold
  // them: what retention tombstoned must really go (issue: 32 files leaked).
  TempDir dir;
  const DataDir d(dir.path());
  fs::create_directories(d.logs() + "/x.y");
  const std::string rel = "logs/x.y/20261123_040000_1.log";
  std::ofstream(d.absolute(rel)) << "x";
  Removal r;
  EXPECT_EQ(remove_run_files(d, {rel}, r), std::vector<bool>{true});
  EXPECT_FALSE(fs::exists(d.absolute(rel)));
}

}  // namespace
}  // namespace cronkeep::layout
