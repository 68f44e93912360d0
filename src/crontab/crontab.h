// crontab/crontab.h: a crontab turned into cronkeep TOML (`cronkeep import-crontab`).
//
// Owns: reading crontab text as cron reads it (comment and blank lines,
// variable lines, the five time fields or an @macro, the user field of the
// system format, cron's % rule) and writing the same jobs as [tasks.NAME]
// tables, with a TOML comment for whatever cannot be carried over. Must not
// know about files, the clock, the passwd database, the data directory or
// processes: convert() takes text and returns text. Like config, it locates
// CRON_TZ zones through cron::Zone (the system's zoneinfo, read once).
//
// The rules, each with what is reported (docs/import-crontab.md):
//   - `#` lines are carried over as comments; blank lines are dropped.
//   - `NAME=value` lines (cron's syntax: blanks around `=`, a value in ' or "
//     quotes kept as is) go into `env` of every task below them, until set
//     again; SHELL, PATH, TZ, MAILTO and CRON_TZ too, as cron passes them.
//   - SHELL other than /bin/sh: cron runs the command with it, so `run`
//     becomes `exec SHELL -c 'command'` (cronkeep always starts /bin/sh).
//   - CRON_TZ: the `timezone` of the tasks below it ("" ends it); an unknown
//     zone makes the tasks below it comments until CRON_TZ is set again.
//   - MAILTO: a comment suggesting a [notify.NAME] sink (no mail is sent).
//   - @yearly @annually @monthly @weekly @daily @midnight @hourly are kept as
//     written (cronkeep's cron parser accepts them); @reboot becomes a task
//     without `cron` (on demand only) with a comment and a warning.
//   - %: `\%` is a literal %; the first unescaped % ends the command and the
//     rest is its stdin (each further % a newline, a final newline added), so
//     `run` becomes `exec /bin/sh -c 'command' <<'CRONKEEP_STDIN'` with that
//     text as a here-document: the same bytes on stdin, for the whole command.
//   - System format: the user field becomes `user`.
//   - A line cronkeep cannot take (time fields its cron parser refuses, with
//     the parser's reason; no command; a sixth time field; bytes that are not
//     UTF-8 or a NUL) becomes a comment holding the line and the reason. A
//     variable line that cannot be carried over makes the tasks below it
//     comments until the variable is set again, so no task silently loses it.
//   - Task names come from the command's first word (after NAME=value
//     assignments): its basename, with bytes outside [A-Za-z0-9._-] turned
//     into '-', runs of '-' or '.' made one, trimmed to start with a letter
//     or digit ("task" when nothing is left), made unique with -2, -3 …
//   - Each task is preceded by its crontab line as a comment.
//   - cronie's leading '-' (no syslog line) is dropped with a comment; CRs of
//     CR LF line endings are dropped with one warning.
//
// Thread-safety: every function is thread-safe (no shared state).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cronkeep::crontab {

// User crontabs (`crontab -e`): "m h dom mon dow command". System crontabs
// (/etc/crontab, /etc/cron.d/*): "m h dom mon dow user command".
enum class Format { user, system };

struct Options {
  Format format = Format::user;
  // How the input is named in the header comment ("" = "stdin").
  std::string source;
  // When not empty, every task name starts with "PREFIX-" (to import several
  // crontabs into one configuration). Must be a valid task name of at most
  // 64 bytes.
  std::string prefix;
};

// Something that could not be carried over as it was.
struct Warning {
  int line = 0;  // 1-based line of the crontab it is about
  std::string message;
};

struct Conversion {
  std::string toml;               // TOML text: comments and [tasks.NAME] tables; ends with "\n"
  std::vector<Warning> warnings;  // in line order; each also stands as a comment in `toml`
  int tasks = 0;                  // [tasks.NAME] tables written
  int skipped = 0;                // crontab lines left as comments only
};

// Converts crontab `text` (any line ending "\n" or "\r\n"; a last line
// without "\n" is read too). The result parses as TOML and as a cronkeep
// configuration (config::parse_config), on its own or appended to one whose
// tasks have other names; unknown users are load_config's to report.
// Errors: invalid_argument when options.prefix is not a valid task name or
// longer than 64 bytes.
[[nodiscard]] Result<Conversion> convert(std::string_view text, const Options& options);

// Format::system for "/etc/crontab" and paths under "/etc/cron.d/",
// Format::user for anything else. Lexical: `path` should be absolute and
// normal (the CLI makes it so); nothing is looked up on disk.
Format format_for_path(std::string_view path);

// ---- writing TOML (used by convert(); exposed for its tests) --------------------

// `value` as a TOML string, in the most readable form that holds it exactly:
// "basic" when nothing needs escaping, 'literal' when only quotes or
// backslashes would, '''multi-line literal''' or """multi-line basic""" when
// it holds newlines, escaped basic otherwise. Requires: valid UTF-8.
std::string toml_string(std::string_view value);

// `key` as a TOML key: bare when it is [A-Za-z0-9_-]+, a quoted basic string
// otherwise. Requires: valid UTF-8.
std::string toml_key(std::string_view key);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

}  // namespace cronkeep::crontab
