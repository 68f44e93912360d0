// Tests for crontab/: each conversion rule of import-crontab, checked on the
// TOML it writes, which must parse with toml++ and load as a configuration
// (config::parse_config); the % rule also by running the converted command
// with /bin/sh as the runner does; and the TOML string writer on tricky and
// random strings.
#include "crontab/crontab.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <toml++/toml.h>

#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "cron/cron.h"

namespace cronkeep::crontab {
namespace {

using namespace std::string_literals;

struct Converted {
  Conversion conversion;
  toml::table table;
  config::Config config;

  const toml::table* task(std::string_view name) const {
    const toml::table* tasks = table["tasks"].as_table();
    return tasks ? (*tasks)[name].as_table() : nullptr;
  }
  // The string at `key` of task `name`, or "<none>".
  std::string get(std::string_view name, std::string_view key) const {
    const toml::table* t = task(name);
    return t ? (*t)[key].value<std::string>().value_or("<none>") : "<no task>";
  }
  std::string env(std::string_view name, std::string_view var) const {
    const toml::table* t = task(name);
    return t ? (*t)["env"][var].value<std::string>().value_or("<none>") : "<no task>";
  }
  bool has(std::string_view name, std::string_view key) const {
    const toml::table* t = task(name);
    return t && t->contains(key);
  }
  bool toml_contains(std::string_view text) const { return conversion.toml.find(text) != std::string::npos; }
  bool warned(int line, std::string_view text) const {
    for (const Warning& w : conversion.warnings)
      if (w.line == line && w.message.find(text) != std::string::npos) return true;
    return false;
  }
};

// Converts `crontab`; fails the test unless the TOML parses with toml++ and
// as a cronkeep configuration with as many tasks as the conversion wrote.
Converted convert_ok(std::string_view crontab, Options options = {}) {
  Converted out;
  auto c = convert(crontab, options);
  EXPECT_TRUE(c) << (c ? "" : c.error().message);
  if (!c) return out;
  out.conversion = *c;
  try {
    out.table = toml::parse(c->toml);
  } catch (const toml::parse_error& e) {
    ADD_FAILURE() << "toml++: " << e << "\n" << c->toml;
  }
  auto cfg = config::parse_config(c->toml, "/etc/cronkeep/imported.toml");
  if (!cfg) {
    std::string problems;
    for (const config::Problem& p : cfg.error()) problems += p.to_string() + "\n";
    ADD_FAILURE() << problems << c->toml;
    return out;
  }
  EXPECT_EQ(cfg->tasks.size(), static_cast<size_t>(c->tasks)) << c->toml;
  out.config = *cfg;
  return out;
}

Options system_format() {
  Options o;
  o.format = Format::system;
  return o;
}

// Runs `run` as the runner does (/bin/sh -c, stdin /dev/null); stdout and stderr.
std::string run_shell(const std::string& run) {
  ::setenv("CRONTAB_TEST_RUN", run.c_str(), 1);
  std::FILE* p = ::popen("/bin/sh -c \"$CRONTAB_TEST_RUN\" </dev/null 2>&1", "r");
  if (!p) return "<popen failed>";
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  ::pclose(p);
  return out;
}

// ---- lines that are not jobs ------------------------------------------------------

TEST(ImportCrontab, CarriesCommentsOverAndDropsBlankLines) {
  const Converted c = convert_ok("# backups\n\n   # indented\n\t\n");
  EXPECT_TRUE(c.toml_contains("\n# backups\n"));
  EXPECT_TRUE(c.toml_contains("\n# indented\n"));
  EXPECT_EQ(c.conversion.tasks, 0);
  EXPECT_TRUE(c.conversion.warnings.empty());
  EXPECT_FALSE(c.table.contains("tasks"));
}

TEST(ImportCrontab, AnEmptyCrontabSaysSo) {
  const Converted c = convert_ok("");
  EXPECT_TRUE(c.toml_contains("# No jobs found."));
  EXPECT_TRUE(c.conversion.toml.ends_with(".\n"));
}

TEST(ImportCrontab, KeepsEachJobLineAsACommentAboveItsTask) {
  const Converted c = convert_ok("# nightly\n30 4 * * * /usr/local/bin/backup.sh --full\n");
  EXPECT_TRUE(
      c.toml_contains("# nightly\n# line 2: 30 4 * * * /usr/local/bin/backup.sh --full\n[tasks.\"backup.sh\"]\n"))
      << c.conversion.toml;
  EXPECT_EQ(c.get("backup.sh", "cron"), "30 4 * * *");
  EXPECT_EQ(c.get("backup.sh", "run"), "/usr/local/bin/backup.sh --full");
  EXPECT_FALSE(c.has("backup.sh", "user"));
  EXPECT_FALSE(c.has("backup.sh", "env"));
  EXPECT_FALSE(c.has("backup.sh", "timezone"));
  EXPECT_TRUE(c.conversion.warnings.empty());
}

TEST(ImportCrontab, TakesTabsAndRunsOfBlanksBetweenFieldsAndKeepsTheCommandAsWritten) {
  const Converted c = convert_ok("  */5\t1-3  * jan,FEB mon-fri   echo  a\t b  \n");
  EXPECT_EQ(c.get("echo", "cron"), "*/5 1-3 * jan,FEB mon-fri");
  EXPECT_EQ(c.get("echo", "run"), "echo  a\t b  ");
}

// ---- variables -----------------------------------------------------------------------

TEST(ImportCrontab, VariableLinesApplyToTheJobsBelowThemUntilSetAgain) {
  const Converted c = convert_ok(
      "0 1 * * * first\n"
      "A=1\n"
      "0 2 * * * second\n"
      "A = 2\n"
      "B=\"two words \"\n"
      "0 3 * * * third\n");
  EXPECT_FALSE(c.has("first", "env"));
  EXPECT_EQ(c.env("second", "A"), "1");
  EXPECT_EQ(c.env("second", "B"), "<none>");
  EXPECT_EQ(c.env("third", "A"), "2");
  EXPECT_EQ(c.env("third", "B"), "two words ");
  EXPECT_EQ(c.config.tasks[2].env.at("B"), "two words ");
}

TEST(ImportCrontab, ReadsVariableLinesAsCronDoes) {
  struct Case {
    const char* line;
    const char* name;  // nullptr: not a variable line (so a job line, here a bad one)
    const char* value;
  };
  const Case cases[] = {
      {"A=b", "A", "b"},
      {"A = b c  ", "A", "b c"},
      {"A=\"x y\"", "A", "x y"},
      {"A='it \"is\"'  ", "A", "it \"is\""},
      {"A=x\"y\"", "A", "x\"y\""},
      {"A=\"\"", "A", ""},
      {"A=", "A", ""},
      {"\"A B\"=c", "A B", "c"},
      {"  lower_case=1", "lower_case", "1"},
      {"A=a=b", "A", "a=b"},
      {"A=\"x\" y", nullptr, nullptr},
      {"A=\"unterminated", nullptr, nullptr},
      {"=x", nullptr, nullptr},
      {"\"A=B\"=c", nullptr, nullptr},
      {"A B=c", nullptr, nullptr},
  };
  for (const Case& k : cases) {
    const Converted c = convert_ok(std::string(k.line) + "\n0 0 * * * job\n");
    if (k.name) {
      EXPECT_EQ(c.env("job", k.name), k.value) << k.line;
      EXPECT_EQ(c.conversion.skipped, 0) << k.line;
    } else {
      EXPECT_EQ(c.conversion.skipped, 1) << k.line;
      EXPECT_TRUE(c.warned(1, "not converted")) << k.line;
      EXPECT_FALSE(c.has("job", "env")) << k.line;
    }
  }
}

TEST(ImportCrontab, ShellOtherThanBinShIsStartedWithExec) {
  const Converted c = convert_ok(
      "SHELL=/bin/bash\n"
      "* * * * * echo \"$BASH_VERSION\" | grep -q . && echo bash\n"
      "SHELL=/bin/sh\n"
      "* * * * * echo plain\n");
  EXPECT_EQ(c.get("echo", "run"), "exec /bin/bash -c 'echo \"$BASH_VERSION\" | grep -q . && echo bash'");
  EXPECT_EQ(c.env("echo", "SHELL"), "/bin/bash");
  EXPECT_EQ(run_shell(c.get("echo", "run")), "bash\n");
  EXPECT_EQ(c.get("echo-2", "run"), "echo plain");
  EXPECT_EQ(c.env("echo-2", "SHELL"), "/bin/sh");
  EXPECT_TRUE(c.conversion.warnings.empty());
}

TEST(ImportCrontab, ShellWithOddCharactersIsQuoted) {
  const Converted c = convert_ok("SHELL=/opt/my shell/sh\n* * * * * true\n");
  EXPECT_EQ(c.get("true", "run"), "exec '/opt/my shell/sh' -c 'true'");
}

TEST(ImportCrontab, PathAndTzGoIntoEnvOnly) {
  const Converted c = convert_ok("PATH=/usr/local/bin:/usr/bin:/bin\nTZ=Asia/Tokyo\n0 9 * * * report\n");
  EXPECT_EQ(c.env("report", "PATH"), "/usr/local/bin:/usr/bin:/bin");
  EXPECT_EQ(c.env("report", "TZ"), "Asia/Tokyo");
  EXPECT_FALSE(c.has("report", "timezone"));
  EXPECT_TRUE(c.toml_contains("does not move their schedule"));
}

TEST(ImportCrontab, CronTzBecomesTheTimezoneOfTheTasksBelow) {
  const Converted c = convert_ok(
      "0 9 * * * before\n"
      "CRON_TZ=Europe/Berlin\n"
      "0 9 * * * berlin\n"
      "CRON_TZ=\n"
      "0 9 * * * after\n");
  EXPECT_FALSE(c.has("before", "timezone"));
  EXPECT_EQ(c.get("berlin", "timezone"), "Europe/Berlin");
  EXPECT_EQ(c.config.tasks[1].zone->name(), "Europe/Berlin");
  EXPECT_FALSE(c.has("after", "timezone"));
  EXPECT_EQ(c.config.tasks[2].timezone, "UTC");
}

TEST(ImportCrontab, AnUnknownCronTzLeavesTheJobsBelowAsCommentsUntilSetAgain) {
  const Converted c = convert_ok(
      "CRON_TZ=Mars/Olympus\n"
      "0 9 * * * lost\n"
      "CRON_TZ=UTC\n"
      "0 9 * * * found\n");
  EXPECT_TRUE(c.warned(1, "unknown time zone \"Mars/Olympus\"")) << c.conversion.toml;
  EXPECT_TRUE(c.warned(2, "not converted: CRON_TZ (line 1) is not a known time zone"));
  EXPECT_EQ(c.task("lost"), nullptr);
  EXPECT_TRUE(c.toml_contains("#   0 9 * * * lost\n"));
  EXPECT_EQ(c.get("found", "timezone"), "UTC");
  EXPECT_EQ(c.conversion.skipped, 1);
}

TEST(ImportCrontab, MailtoBecomesACommentSuggestingANotifySink) {
  const Converted c = convert_ok("MAILTO=ops@example.com\n0 0 * * * job\n");
  EXPECT_TRUE(c.warned(1, "MAILTO=ops@example.com: cronkeep sends no mail"));
  EXPECT_TRUE(c.toml_contains("#   [notify.mail]\n"));
  EXPECT_TRUE(c.toml_contains("ops@example.com'\n"));
  EXPECT_TRUE(c.toml_contains("notify = [\"mail\"]"));
  // A suggestion only: no sink is configured, and the task names none.
  EXPECT_FALSE(c.table.contains("notify"));
  EXPECT_FALSE(c.has("job", "notify"));
  EXPECT_TRUE(c.config.notify.empty());
  EXPECT_EQ(c.env("job", "MAILTO"), "ops@example.com");
}

TEST(ImportCrontab, AnEmptyMailtoIsACommentWithoutWarning) {
  const Converted c = convert_ok("MAILTO=\"\"\n0 0 * * * job\n");
  EXPECT_TRUE(c.toml_contains("MAILTO is empty: cron mails nothing"));
  EXPECT_TRUE(c.conversion.warnings.empty());
}

// ---- schedules -------------------------------------------------------------------------

TEST(ImportCrontab, KeepsCronsMacrosAsWritten) {
  for (const char* macro : {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}) {
    const Converted c = convert_ok(std::string(macro) + "\t/usr/bin/job\n");
    EXPECT_EQ(c.get("job", "cron"), macro);
    EXPECT_EQ(c.get("job", "run"), "/usr/bin/job");
    EXPECT_TRUE(c.config.tasks.at(0).schedule.has_value()) << macro;
  }
}

TEST(ImportCrontab, RebootBecomesAnOnDemandTaskWithAWarning) {
  const Converted c = convert_ok("@reboot /usr/local/bin/warm-cache --all\n");
  EXPECT_TRUE(c.task("warm-cache"));
  EXPECT_FALSE(c.has("warm-cache", "cron"));
  EXPECT_EQ(c.get("warm-cache", "run"), "/usr/local/bin/warm-cache --all");
  EXPECT_TRUE(c.warned(1, "@reboot: cronkeep has no boot trigger"));
  EXPECT_TRUE(c.toml_contains("# @reboot: cronkeep has no boot trigger; task \"warm-cache\" has no cron"));
  EXPECT_FALSE(c.config.tasks.at(0).schedule.has_value());
}

TEST(ImportCrontab, LinesTheCronParserRefusesBecomeCommentsWithItsReason) {
  for (const char* when : {"61 * * * *", "* * * foo *", "0 0 30 2 *", "*/90 * * * *", "0 0 L * *", "@sometimes"}) {
    const std::string line = std::string(when) + " /bin/true";
    const Converted c = convert_ok("# before\n" + line + "\n");
    auto parsed = cron::Schedule::parse(when);
    ASSERT_FALSE(parsed) << when;
    const std::string reason = "time fields \"" + std::string(when) + "\": " + parsed.error().message;
    EXPECT_TRUE(c.warned(2, "not converted: " + reason)) << when;
    EXPECT_TRUE(c.toml_contains("# line 2, not converted: " + reason + "\n#   " + line + "\n")) << c.conversion.toml;
    EXPECT_EQ(c.conversion.tasks, 0);
    EXPECT_EQ(c.conversion.skipped, 1);
  }
}

TEST(ImportCrontab, MalformedJobLinesBecomeCommentsSayingWhatIsMissing) {
  struct Case {
    const char* line;
    const char* reason;
  };
  const Case cases[] = {
      {"* * * *", "expected five time fields"},
      {"* * * * *", "no command after the time fields"},
      {"@daily   ", "no command after the time fields"},
      {"* * * * * * /bin/six", "\"*\" after the five time fields"},
      {"* * * * * %only stdin", "nothing before the first %"},
      {"* * * * * \v", "only blanks"},
      {"[tasks.x]", "expected five time fields"},
  };
  for (const Case& k : cases) {
    const Converted c = convert_ok(std::string(k.line) + "\n");
    EXPECT_TRUE(c.warned(1, k.reason)) << k.line << "\n" << c.conversion.toml;
    EXPECT_EQ(c.conversion.tasks, 0) << k.line;
  }
}

TEST(ImportCrontab, DropsCroniesNoLogDashWithAComment) {
  const Converted c = convert_ok("-*/10 * * * * /usr/bin/quiet\n");
  EXPECT_EQ(c.get("quiet", "cron"), "*/10 * * * *");
  EXPECT_TRUE(c.toml_contains("The leading \"-\""));
  EXPECT_TRUE(c.conversion.warnings.empty());
}

// ---- the % rule ---------------------------------------------------------------------------

TEST(ImportCrontab, EscapedPercentIsALiteralPercentInTheCommand) {
  const Converted c = convert_ok("0 0 * * * date +\\%Y-\\%m >> /tmp/d; printf 'a\\\\b'\n");
  EXPECT_EQ(c.get("date", "run"), "date +%Y-%m >> /tmp/d; printf 'a\\\\b'");
}

TEST(ImportCrontab, PercentEndsTheCommandAndTheRestIsItsStdin) {
  struct Case {
    const char* command;  // as written in the crontab
    const char* output;   // what the converted run prints (cat echoes its stdin)
  };
  const Case cases[] = {
      {"cat%a%b", "a\nb\n"},
      {"cat%a%", "a\n"},
      {"cat%%", "\n"},
      {"cat%a\\%b%c", "a%b\nc\n"},
      {"cat%a\\b\\\\%c", "a\\b\\%c\n"},
      {"cat%'$HOME' \"x\" `id`", "'$HOME' \"x\" `id`\n"},
      {"cat%CRONKEEP_STDIN%x", "CRONKEEP_STDIN\nx\n"},
      {"cat% lead and trail ", " lead and trail \n"},
      {"cat%ünïcode ✓", "ünïcode ✓\n"},
      // The whole command gets the stdin, not only its last part.
      {"read a; echo got $a; cat%one%two", "got one\ntwo\n"},
      {"printf x\\\\%y", "x\\"},
      // Nothing after %: nothing on stdin (EOF at once).
      {"echo start; cat; echo end%", "start\nend\n"},
  };
  for (const Case& k : cases) {
    const Converted c = convert_ok("* * * * * " + std::string(k.command) + "\n");
    ASSERT_EQ(c.conversion.tasks, 1) << k.command << "\n" << c.conversion.toml;
    const std::string name = c.config.tasks[0].name;
    EXPECT_EQ(run_shell(c.get(name, "run")), k.output) << k.command << "\n" << c.get(name, "run");
  }
}

TEST(ImportCrontab, StdinIsAHereDocumentWithAComment) {
  const Converted c = convert_ok("0 8 * * 1 mail -s \"weekly\" root%Hello,%100\\% done.\n");
  EXPECT_EQ(c.get("mail", "run"),
            "exec /bin/sh -c 'mail -s \"weekly\" root' <<'CRONKEEP_STDIN'\nHello,\n100% done.\nCRONKEEP_STDIN\n");
  EXPECT_TRUE(c.toml_contains("# cron writes the text after the first % to the command's stdin"));
  EXPECT_TRUE(c.conversion.warnings.empty());
}

TEST(ImportCrontab, AHereDocumentDelimiterNeverEqualsALineOfTheText) {
  const Converted c = convert_ok("* * * * * cat%CRONKEEP_STDIN%CRONKEEP_STDIN_2\n");
  EXPECT_TRUE(c.get("cat", "run").find("<<'CRONKEEP_STDIN_3'\n") != std::string::npos) << c.get("cat", "run");
}

TEST(ImportCrontab, StdinWithoutAFinalNewlineIsRefused) {
  // cron writes "x\n\\" here (the trailing backslash after a newline gets no newline).
  const Converted c = convert_ok("* * * * * cat%x%\\\n");
  EXPECT_EQ(c.conversion.tasks, 0);
  EXPECT_TRUE(c.warned(1, "a here-document cannot"));
}

TEST(ImportCrontab, ShellAndStdinTogether) {
  const Converted c = convert_ok("SHELL=/bin/bash\n* * * * * read a; echo \"${BASH_VERSION:+bash} $a\"%hi\n");
  EXPECT_EQ(run_shell(c.get("read", "run")), "bash hi\n");
}

// ---- the system format ------------------------------------------------------------------

TEST(ImportCrontab, SystemFormatTakesTheUserField) {
  const Converted c = convert_ok(
      "SHELL=/bin/sh\n"
      "17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n"
      "@daily backup /usr/local/bin/backup.sh\n"
      "@reboot www-data /srv/app/warm\n",
      system_format());
  EXPECT_EQ(c.get("cd", "user"), "root");
  EXPECT_EQ(c.get("cd", "cron"), "17 * * * *");
  EXPECT_EQ(c.get("cd", "run"), "cd / && run-parts --report /etc/cron.hourly");
  EXPECT_EQ(c.get("backup.sh", "user"), "backup");
  EXPECT_EQ(c.get("warm", "user"), "www-data");
  EXPECT_EQ(c.config.tasks.at(1).user, "backup");
  EXPECT_TRUE(c.toml_contains("(system crontab format)"));
}

TEST(ImportCrontab, SystemFormatLinesWithoutUserOrCommandAreComments) {
  const Converted c = convert_ok("* * * * * root\n@hourly\n* * * * * * root x\n* * * * * us:er x\n", system_format());
  EXPECT_TRUE(c.warned(1, "no command after the user field"));
  EXPECT_TRUE(c.warned(2, "no user field"));
  EXPECT_TRUE(c.warned(3, "\"*\" after the five time fields"));
  EXPECT_TRUE(c.warned(4, "user \"us:er\": not a user name"));
  EXPECT_EQ(c.conversion.tasks, 0);
}

TEST(ImportCrontab, TheUserFormatTakesNoUserField) {
  const Converted c = convert_ok("* * * * * root /bin/true\n");
  EXPECT_EQ(c.get("root", "run"), "root /bin/true");
  EXPECT_FALSE(c.has("root", "user"));
}

TEST(ImportCrontab, FormatForPath) {
  EXPECT_EQ(format_for_path("/etc/crontab"), Format::system);
  EXPECT_EQ(format_for_path("/etc/cron.d/e2scrub_all"), Format::system);
  for (const char* user : {"/etc/cron.d/", "/etc/crontab2", "/var/spool/cron/crontabs/alice", "crontab",
                           "/tmp/etc/crontab", "/etc/cron.daily/x", ""})
    EXPECT_EQ(format_for_path(user), Format::user) << user;
}

// ---- task names -------------------------------------------------------------------------

TEST(ImportCrontab, NamesTasksAfterTheFirstWordsBasenameMadeValidAndUnique) {
  struct Case {
    const char* command;
    const char* name;
  };
  const Case cases[] = {
      {"/usr/local/bin/backup.sh --full", "backup.sh"},
      {"LANG=C FOO=1 /usr/bin/sort x", "sort"},
      {"\"/opt/my app/run\" x", "my"},
      {"[ -x /usr/sbin/x ] && x", "task"},
      {"./..hidden..name", "hidden.name"},
      {"-dash", "dash"},
      {"caf\xc3\xa9-au-lait", "caf-au-lait"},
      {"a@b:c", "a-b-c"},
      {"_under", "under"},
      {"9lives", "9lives"},
  };
  for (const Case& k : cases) {
    const Converted c = convert_ok("* * * * * " + std::string(k.command) + "\n");
    ASSERT_EQ(c.config.tasks.size(), 1u) << k.command;
    EXPECT_EQ(c.config.tasks[0].name, k.name) << k.command;
  }
}

TEST(ImportCrontab, MakesNamesUniqueWithNumbers) {
  const Converted c =
      convert_ok("* * * * * job\n* * * * * job\n* * * * * job-2\n* * * * * job\n* * * * * /other/job\n");
  std::vector<std::string> names;
  for (const config::Task& t : c.config.tasks) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"job", "job-2", "job-2-2", "job-3", "job-4"}));
}

TEST(ImportCrontab, CutsLongNamesToFitTheRule) {
  const std::string word(300, 'x');
  const Converted c = convert_ok("* * * * * " + word + "\n* * * * * " + word + "\n");
  ASSERT_EQ(c.config.tasks.size(), 2u);
  EXPECT_LE(c.config.tasks[1].name.size(), 128u);
  EXPECT_NE(c.config.tasks[0].name, c.config.tasks[1].name);
}

TEST(ImportCrontab, PrefixStartsEveryName) {
  Options o;
  o.prefix = "web1";
  const Converted c = convert_ok("* * * * * job\n* * * * * job\n", o);
  EXPECT_TRUE(c.task("web1-job"));
  EXPECT_TRUE(c.task("web1-job-2"));
  for (const char* bad : {"a b", "-x", "x..y", "caf\xc3\xa9", "x/y"}) {
    o.prefix = bad;
    auto r = convert("* * * * * job\n", o);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  }
  o.prefix = std::string(65, 'p');
  EXPECT_FALSE(convert("", o));
}

// ---- text that TOML cannot hold as is ------------------------------------------------------

TEST(ImportCrontab, EscapesQuotesBackslashesAndUnicodeInStrings) {
  const std::string command = "echo \"q\" 'single' \\back\\slash '''triple''' \"\"\" ünïcode ✓ \x01\x7f tab\tend";
  const Converted c = convert_ok("PATH=\"/a b/\\\\x\"\nV='x \"y\" \\z'\n* * * * * " + command + "\n");
  EXPECT_EQ(c.get("echo", "run"), command);
  EXPECT_EQ(c.env("echo", "PATH"), "/a b/\\\\x");
  EXPECT_EQ(c.env("echo", "V"), "x \"y\" \\z");
  EXPECT_EQ(c.config.tasks.at(0).run, command);
}

TEST(ImportCrontab, LinesThatAreNotUtf8OrHoldANulAreComments) {
  const Converted c = convert_ok("* * * * * echo caf\xe9\n* * * * * echo a\0b\n# caf\xe9 \x01\n"s);
  EXPECT_TRUE(c.warned(1, "not UTF-8"));
  EXPECT_TRUE(c.warned(2, "NUL"));
  EXPECT_TRUE(c.toml_contains("echo caf\\xe9\n"));
  EXPECT_TRUE(c.toml_contains("# caf\\xe9 \\x01\n"));
  EXPECT_EQ(c.conversion.tasks, 0);
}

TEST(ImportCrontab, AVariableThatCannotBeCarriedOverStopsTheJobsBelowIt) {
  const Converted c = convert_ok("HOME=/home/caf\xe9\n* * * * * job\nHOME=/home/cafe\n* * * * * job\n");
  EXPECT_TRUE(c.warned(1, "variable HOME is not carried over"));
  EXPECT_TRUE(c.warned(2, "not converted: variable HOME (line 1) could not be carried over"));
  EXPECT_EQ(c.conversion.tasks, 1);
  EXPECT_EQ(c.env("job", "HOME"), "/home/cafe");
}

TEST(ImportCrontab, DropsCarriageReturnsWithOneWarning) {
  const Converted c = convert_ok("A=1\r\n* * * * * echo x\r\n* * * * * echo y\r\n");
  EXPECT_EQ(c.env("echo", "A"), "1");
  EXPECT_EQ(c.get("echo", "run"), "echo x");
  EXPECT_EQ(c.get("echo-2", "run"), "echo y");
  ASSERT_EQ(c.conversion.warnings.size(), 1u);
  EXPECT_TRUE(c.warned(1, "DOS line endings"));
}

TEST(ImportCrontab, ReadsALastLineWithoutNewline) {
  const Converted c = convert_ok("* * * * * echo last");
  EXPECT_EQ(c.get("echo", "run"), "echo last");
}

TEST(ImportCrontab, NamesTheSourceInTheHeader) {
  Options o;
  o.source = "/etc/cron.d/caf\xe9";
  o.format = Format::system;
  const Converted c = convert_ok("", o);
  EXPECT_TRUE(c.toml_contains("from /etc/cron.d/caf\\xe9 (system crontab format)"));
  EXPECT_TRUE(convert_ok("").toml_contains("from stdin (user crontab format)"));
}

TEST(ImportCrontab, ARealisticCrontabLoadsAsAConfiguration) {
  const Converted c = convert_ok(R"(# Edit this file to introduce tasks to be run by cron.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
MAILTO=admin@example.com
CRON_TZ=America/New_York

# m h  dom mon dow   command
0 5 * * 1 tar -zcf /var/backups/home.tgz /home/
*/10 * * * * /usr/bin/php /var/www/cron.php > /dev/null 2>&1
@reboot /usr/local/bin/start-tunnel
0 0 1 * * /usr/bin/find /tmp -mtime +30 -delete
30 2 * * 0 mysqldump --all-databases | gzip > /backup/db-$(date +\%F).sql.gz
15 14 1 * * mail -s "It's 2:15pm" john%Hi John,%%Time for lunch.%
61 25 * * * broken
MAILTO=""
@hourly curl -fsS https://hc.example/ping/abc
)");
  EXPECT_EQ(c.conversion.tasks, 7);
  EXPECT_EQ(c.conversion.skipped, 1);
  EXPECT_EQ(c.get("tar", "timezone"), "America/New_York");
  EXPECT_EQ(c.get("mysqldump", "run"),
            "exec /bin/bash -c 'mysqldump --all-databases | gzip > /backup/db-$(date +%F).sql.gz'");
  EXPECT_EQ(c.env("curl", "MAILTO"), "");
  EXPECT_EQ(c.conversion.warnings.size(), 3u);  // MAILTO, @reboot, the bad line
}

TEST(ImportCrontab, RandomLinesAlwaysGiveTomlThatLoads) {
  // Pieces of crontab lines, valid and not: fields, macros, variables,
  // quotes, escapes, %, blanks, Unicode, bytes that are not UTF-8.
  const char* pieces[] = {"*",         " ",
                          "\t",        "0",
                          "5",         "*/15",
                          "1-5",       "mon",
                          "@daily",    "@reboot",
                          "@x",        "A",
                          "=",         "\"",
                          "'",         "\\",
                          "%",         "\\%",
                          "#",         "-",
                          "root",      "echo",
                          "/x",        "é",
                          "✓",         "\x01",
                          "\x7f",      "\xe9",
                          "\r",        "\v",
                          "'''",       "UTC",
                          "CRON_TZ=",  "SHELL=/bin/bash",
                          "MAILTO=",   "a@b",
                          "[tasks.x]", "CRONKEEP_STDIN"};
  const unsigned seed = 20261127;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> count(0, 14), pick(0, std::size(pieces) - 1), lines(1, 6);
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    for (size_t l = lines(rng); l > 0; --l) {
      // Half the lines start like a job, so that the job rules are reached.
      if (rng() % 2) text += "* * * * * ";
      for (size_t n = count(rng); n > 0; --n) text += pieces[pick(rng)];
      text += "\n";
    }
    for (const Format format : {Format::user, Format::system}) {
      Options o;
      o.format = format;
      SCOPED_TRACE("seed " + std::to_string(seed) + ", case " + std::to_string(i) + ":\n" + text);
      convert_ok(text, o);
      ASSERT_FALSE(::testing::Test::HasFailure());
    }
  }
}

// ---- the TOML writer ----------------------------------------------------------------------

// `value` written by toml_string, read back by toml++.
std::optional<std::string> round_trip(const std::string& value) {
  try {
    toml::table t = toml::parse("v = " + toml_string(value) + "\n");
    return t["v"].value<std::string>();
  } catch (const toml::parse_error& e) {
    ADD_FAILURE() << e << "\nfor " << toml_string(value);
    return std::nullopt;
  }
}

TEST(TomlString, UsesTheMostReadableFormThatHoldsTheValue) {
  EXPECT_EQ(toml_string("plain"), "\"plain\"");
  EXPECT_EQ(toml_string(""), "\"\"");
  EXPECT_EQ(toml_string("say \"hi\""), "'say \"hi\"'");
  EXPECT_EQ(toml_string("a\\b"), "'a\\b'");
  EXPECT_EQ(toml_string("it's \"x\""), "'''it's \"x\"'''");
  EXPECT_EQ(toml_string("two\nlines"), "'''\ntwo\nlines'''");
  EXPECT_EQ(toml_string("bell\x07"), "\"bell\\u0007\"");
  EXPECT_EQ(toml_string("cr\r\nlf"), "\"\"\"\ncr\\r\nlf\"\"\"");
  EXPECT_EQ(toml_key("PATH"), "PATH");
  EXPECT_EQ(toml_key("backup.sh"), "\"backup.sh\"");
  EXPECT_EQ(toml_key("a \"b\""), "\"a \\\"b\\\"\"");
  EXPECT_EQ(toml_key(""), "\"\"");
}

TEST(TomlString, RoundTripsTrickyValues) {
  const std::vector<std::string> values = {
      "",
      "'",
      "''",
      "'''",
      "''''",
      "\"",
      "\"\"\"",
      "\\",
      "\\\\'",
      "'x'",
      "x'",
      "'x",
      "'''x'''",
      "a\nb",
      "\n",
      "\n\n",
      "\nx",
      "x\n",
      "'\n'",
      "\"\n\"",
      "'''\n",
      "\\\n\\",
      "tab\there",
      "\r",
      "\x01\x1f\x7f",
      "ünïcode ✓ 😀",
      "\"'\\\n\t",
      "x\"\"\"y'''z",
      std::string("nul\0x", 5),
  };
  for (const std::string& v : values) EXPECT_EQ(round_trip(v), v) << toml_string(v);
}

TEST(TomlString, RoundTripsRandomValues) {
  const char* pieces[] = {"a", " ", "'", "''", "\"", "\\", "\n",  "\t",     "\r",  "\x01", "\x7f",
                          "é", "✓", "😀", "#",  "=",  "%",  "'''", "\"\"\"", "\\n", "$(x)"};
  const unsigned seed = 20261126;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> count(0, 12), pick(0, std::size(pieces) - 1);
  for (int i = 0; i < 5000; ++i) {
    std::string v;
    for (size_t n = count(rng); n > 0; --n) v += pieces[pick(rng)];
    ASSERT_EQ(round_trip(v), v) << "seed " << seed << ", case " << i << ": " << toml_string(v);
    // As a key too.
    toml::table t = toml::parse(toml_key(v) + " = 1\n");
    ASSERT_TRUE(t.contains(v)) << toml_key(v);
  }
}

TEST(ValidUtf8, AcceptsUnicodeAndRefusesMalformedBytes) {
  for (const char* good : {"", "ascii", "é", "✓", "😀", "\xf4\x8f\xbf\xbf"}) EXPECT_TRUE(valid_utf8(good)) << good;
  for (const char* bad : {"\xe9", "\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xf8\x88\x80\x80\x80", "\xe2\x9c", "a\xc3"})
    EXPECT_FALSE(valid_utf8(bad)) << bad;
}

}  // namespace
}  // namespace cronkeep::crontab
