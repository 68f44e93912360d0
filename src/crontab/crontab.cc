// Reading a crontab as cron reads it, and writing its jobs as cronkeep tasks.
//
// "As cron reads it" means Vixie cron and its descendants (cronie, Debian's
// cron): which lines are variable lines, how the time fields and the user
// field end, and what % does are theirs, so a converted task runs the same
// command with the same stdin and environment. Where cronkeep differs
// (@reboot, mail, the shell it starts) the output says so in a comment and a
// warning rather than changing what runs.
#include "crontab/crontab.h"

#include <algorithm>
#include <cassert>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "cron/cron.h"
#include "layout/layout.h"

namespace cronkeep::crontab {
namespace {

constexpr size_t kMaxPrefixLength = 64;
// What `run` starts a here-document with; changed when a line of the text equals it.
constexpr std::string_view kStdinDelimiter = "CRONKEEP_STDIN";
constexpr std::string_view kCronShell = "/bin/sh";

bool blank(char c) { return c == ' ' || c == '\t'; }

size_t skip_blanks(std::string_view s, size_t i) {
  while (i < s.size() && blank(s[i])) ++i;
  return i;
}

// The next run of non-blanks at or after `i` (empty at the end); `i` moves past it.
std::string_view next_word(std::string_view s, size_t& i) {
  i = skip_blanks(s, i);
  const size_t start = i;
  while (i < s.size() && !blank(s[i])) ++i;
  return s.substr(start, i - start);
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// `text` made fit for a TOML comment: bytes that are not UTF-8 text, and
// control characters but tab, become \xNN.
std::string comment_text(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t len = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    const std::string_view seq = text.substr(i, len);
    const bool control = (lead < 0x20 && lead != '\t') || lead == 0x7f;
    if (!control && valid_utf8(seq)) {
      out += seq;
      i += seq.size();
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\x";
    out += kHex[lead >> 4];
    out += kHex[lead & 0xf];
    ++i;
  }
  return out;
}

// ---- cron's syntax ------------------------------------------------------------

struct Variable {
  std::string name;
  std::string value;
};

// A variable line as cron tells one from a job: NAME, blanks, '=', blanks,
// VALUE. NAME and VALUE may be in '…' or "…" quotes, which are removed and
// hold anything but their quote (a quoted NAME no '='); nothing but blanks
// may follow a quoted VALUE. An unquoted NAME ends at a blank or '='; an
// unquoted VALUE is the rest of the line without trailing blanks. nullopt
// when `s` (leading blanks removed) is not a variable line. One leniency:
// "NAME=" is an empty value (cronie wants NAME="").
std::optional<Variable> parse_variable(std::string_view s) {
  Variable v;
  size_t i = 0;
  if (i < s.size() && (s[i] == '\'' || s[i] == '"')) {
    const size_t end = s.find(s[i], i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    v.name = s.substr(i + 1, end - i - 1);
    if (v.name.find('=') != std::string::npos) return std::nullopt;
    i = end + 1;
  } else {
    while (i < s.size() && !blank(s[i]) && s[i] != '=') v.name += s[i++];
  }
  i = skip_blanks(s, i);
  if (v.name.empty() || i >= s.size() || s[i] != '=') return std::nullopt;
  i = skip_blanks(s, i + 1);
  if (i < s.size() && (s[i] == '\'' || s[i] == '"')) {
    const size_t end = s.find(s[i], i + 1);
    if (end == std::string_view::npos || skip_blanks(s, end + 1) != s.size()) return std::nullopt;
    v.value = s.substr(i + 1, end - i - 1);
  } else {
    size_t end = s.size();
    while (end > i && blank(s[end - 1])) --end;
    v.value = s.substr(i, end - i);
  }
  return v;
}

struct Entry {
  bool quiet = false;   // a leading '-': cronie's "do not log this job to syslog"
  std::string when;     // the five time fields joined by one space, or the @macro
  std::string user;     // system format only
  std::string command;  // the rest of the line, as written
};

// A job line (leading blanks removed). The time fields are only split here;
// cronkeep's cron parser judges them.
Result<Entry> parse_entry(std::string_view s, Format format) {
  Entry e;
  if (!s.empty() && s[0] == '-') {
    e.quiet = true;
    s.remove_prefix(1);
  }
  size_t i = 0;
  const std::string_view what_follows = format == Format::system ? "a user and a command" : "a command";
  if (!s.empty() && s[0] == '@') {
    e.when = next_word(s, i);
  } else {
    for (int field = 0; field < 5; ++field) {
      const std::string_view word = next_word(s, i);
      if (word.empty())
        return fail(ErrorCode::invalid_argument,
                    "expected five time fields (minute hour day-of-month month day-of-week), then " +
                        std::string(what_follows));
      e.when += (field ? " " : "") + std::string(word);
    }
    // Cron refuses this too: most often a sixth time field.
    if (const size_t at = skip_blanks(s, i); at < s.size() && s[at] == '*')
      return fail(ErrorCode::invalid_argument,
                  "\"*\" after the five time fields: a crontab line has five (minute hour day-of-month month "
                  "day-of-week), then " +
                      std::string(what_follows));
  }
  if (format == Format::system) {
    e.user = next_word(s, i);
    if (e.user.empty())
      return fail(ErrorCode::invalid_argument,
                  "no user field after the time fields (system format: time fields, user, command)");
  }
  i = skip_blanks(s, i);
  if (i >= s.size())
    return fail(ErrorCode::invalid_argument,
                std::string("no command after the ") + (format == Format::system ? "user field" : "time fields"));
  e.command = s.substr(i);
  return e;
}

// A user name as config accepts one (no ':', ',', '/', blanks or control
// characters; at most 256 bytes).
bool valid_user(std::string_view user) {
  if (user.empty() || user.size() > 256) return false;
  for (char c : user) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ':' || c == ',' || c == '/' || blank(c) || u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

struct Command {
  std::string text;                  // what cron hands to the shell
  std::optional<std::string> input;  // what cron writes to its stdin; nullopt: nothing (EOF at once)
};

// Cron's % rule. In the command, "\%" is a literal '%' (the backslash goes)
// and a backslash before anything else stays, with the character after it;
// the first other '%' ends the command. What follows is written to the
// command's stdin with "\%" as '%', each other '%' as a newline, and a
// newline added when the last character written was not one. Nothing
// follows the '%': nothing is written.
Command split_percent(std::string_view command) {
  Command out;
  size_t i = 0;
  for (; i < command.size(); ++i) {
    const char c = command[i];
    if (c == '\\' && i + 1 < command.size()) {
      if (command[i + 1] != '%') out.text += c;
      out.text += command[++i];
    } else if (c == '%') {
      break;
    } else {
      out.text += c;
    }
  }
  if (i >= command.size() || i + 1 == command.size()) return out;
  const std::string_view rest = command.substr(i + 1);
  std::string input;
  bool escaped = false;
  bool need_newline = false;
  for (char c : rest) {
    if (escaped) {
      if (c != '%') input += '\\';
    } else if (c == '%') {
      c = '\n';
    }
    escaped = c == '\\';
    if (!escaped) {
      input += c;
      need_newline = c != '\n';
    }
  }
  if (escaped) input += '\\';
  if (need_newline) input += '\n';
  out.input = std::move(input);
  return out;
}

// ---- shell text -----------------------------------------------------------------

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// `s` as one shell word: as is when it holds only characters the shell
// leaves alone, quoted otherwise.
std::string shell_word(std::string_view s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("_./+:,@%=-").find(c) != std::string_view::npos;
  });
  return plain ? std::string(s) : shell_quote(s);
}

// ---- task names -----------------------------------------------------------------

bool name_byte(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool alnum(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// "NAME=value" in front of a command sets a variable for it: not the command.
bool is_assignment(std::string_view word) {
  const size_t eq = word.find('=');
  if (eq == 0 || eq == std::string_view::npos || (word[0] >= '0' && word[0] <= '9')) return false;
  return std::all_of(word.begin(), word.begin() + static_cast<std::ptrdiff_t>(eq),
                     [](char c) { return alnum(c) || c == '_'; });
}

// The command's first word (after assignments), its basename, made a valid
// task name: other bytes become '-', a run of '-' or '.' becomes one, and it
// starts with a letter or digit; "task" when nothing is left.
std::string name_from(std::string_view command) {
  size_t i = 0;
  std::string_view word = next_word(command, i);
  while (is_assignment(word)) word = next_word(command, i);
  std::string bare;
  for (char c : word)
    if (c != '"' && c != '\'') bare += c;
  if (const size_t slash = bare.rfind('/'); slash != std::string::npos) bare.erase(0, slash + 1);
  std::string name;
  for (char c : bare) {
    const char mapped = name_byte(c) ? c : '-';
    if ((mapped == '-' || mapped == '.') && !name.empty() && name.back() == mapped) continue;
    name += mapped;
  }
  const size_t first = std::find_if(name.begin(), name.end(), alnum) - name.begin();
  name.erase(0, first);
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name.empty() ? "task" : name;
}

// ---- the conversion -------------------------------------------------------------

class Converter {
 public:
  explicit Converter(const Options& options) : options_(options) {}

  void header() {
    const std::string source = options_.source.empty() ? "stdin" : comment_text(options_.source);
    out_.toml += "# cronkeep tasks converted by `cronkeep import-crontab` from " + source + " (" +
                 (options_.format == Format::system ? "system" : "user") + " crontab format).\n";
    out_.toml +=
        "# Each task follows its crontab line, kept as a comment. A line that could not be\n"
        "# converted is a comment saying why; the same warnings went to stderr.\n"
        "# cron fires at this machine's local time; these tasks fire at [daemon] timezone\n"
        "# (UTC unless set) or at their own timezone (from CRON_TZ). Unlike cron, cronkeep\n"
        "# queues a fire while the task's previous run goes on, and after downtime runs the\n"
        "# latest missed fire ([defaults] on_overlap, catch_up; docs/import-crontab.md).\n\n";
  }

  void line(int n, std::string_view raw) {
    if (!raw.empty() && raw.back() == '\r') {
      raw.remove_suffix(1);
      if (!saw_cr_) {
        saw_cr_ = true;
        note_and_warn(n,
                      "DOS line endings (CR LF): the carriage returns are dropped (cron would pass each "
                      "to the shell as part of the command)");
        out_.toml += "\n";
      }
    }
    const std::string_view s = raw.substr(skip_blanks(raw, 0));
    if (s.empty()) return;
    if (s[0] == '#') {
      out_.toml += "#" + comment_text(s.substr(1)) + "\n";
      return;
    }
    std::string bad_text;
    if (s.find('\0') != std::string_view::npos)
      bad_text = "it holds a NUL byte";
    else if (!valid_utf8(s))
      bad_text = "it is not UTF-8 text (a TOML file holds only Unicode)";
    if (auto var = parse_variable(s)) return variable(n, raw, *var, bad_text);
    if (!bad_text.empty()) return skip(n, raw, bad_text);
    auto entry = parse_entry(s, options_.format);
    if (!entry) return skip(n, raw, entry.error().message);
    job(n, raw, *entry);
  }

  Conversion finish() {
    if (out_.tasks == 0 && out_.skipped == 0) out_.toml += "# No jobs found.\n";
    while (out_.toml.size() >= 2 && out_.toml.ends_with("\n\n")) out_.toml.pop_back();
    return std::move(out_);
  }

 private:
  void comment(std::string_view text) { out_.toml += "# " + comment_text(text) + "\n"; }

  void warn(int n, std::string message) { out_.warnings.push_back(Warning{n, std::move(message)}); }

  void note_and_warn(int n, const std::string& message) {
    comment(message);
    warn(n, message);
  }

  void original(int n, std::string_view raw) { comment("line " + std::to_string(n) + ": " + std::string(raw)); }

  void skip(int n, std::string_view raw, const std::string& why) {
    comment("line " + std::to_string(n) + ", not converted: " + why);
    comment("  " + std::string(raw));
    out_.toml += "\n";
    warn(n, "not converted: " + why);
    ++out_.skipped;
  }

  void variable(int n, std::string_view raw, const Variable& var, const std::string& bad_text) {
    original(n, raw);
    const std::string name = comment_text(var.name);
    const std::string where = " (line " + std::to_string(n) + ")";
    unusable_.erase(var.name);
    if (!bad_text.empty()) {
      unusable_[var.name] = "variable " + name + where + " could not be carried over";
      note_and_warn(n, "variable " + name + " is not carried over: " + bad_text +
                           "; the jobs below are not converted until it is set again");
      out_.toml += "\n";
      return;
    }
    auto it = std::find_if(env_.begin(), env_.end(), [&](const auto& kv) { return kv.first == var.name; });
    if (it != env_.end())
      it->second = var.value;
    else
      env_.emplace_back(var.name, var.value);

    if (var.name == "CRON_TZ") {
      zone_.clear();
      if (!var.value.empty()) {
        if (auto z = cron::Zone::locate(var.value)) {
          zone_ = var.value;
          comment("The tasks below get timezone = " + quote(var.value) + ".");
        } else {
          unusable_[var.name] = "CRON_TZ" + where + " is not a known time zone";
          note_and_warn(n, "CRON_TZ " + quote(comment_text(var.value)) + ": " + z.error().message +
                               "; the jobs below are not converted until CRON_TZ is set again");
        }
      }
    } else if (var.name == "MAILTO") {
      mail(n, var.value);
    } else if (var.name == "SHELL" && var.value != kCronShell) {
      comment("cron runs the commands below with SHELL; cronkeep starts /bin/sh, so their run execs it.");
    } else if (var.name == "TZ") {
      comment(
          "TZ is in env of the tasks below (their local time); it does not move their schedule (CRON_TZ "
          "would).");
    } else {
      comment("In env of the tasks below.");
    }
    out_.toml += "\n";
  }

  void mail(int n, const std::string& to) {
    if (to.empty()) {
      comment("MAILTO is empty: cron mails nothing, and cronkeep sends no mail either; each run's output");
      comment("is in its log (cronkeep logs TASK RUN).");
      return;
    }
    warn(n, "MAILTO=" + comment_text(to) + ": cronkeep sends no mail; the output suggests a [notify.NAME] sink");
    comment("MAILTO: cronkeep sends no mail. Each run's output is in its log (cronkeep logs TASK RUN).");
    comment("To hear about failures, add a sink and name it in notify of [defaults] or of the tasks, e.g.");
    comment("  [notify.mail]");
    comment("  command = " + toml_string("mail -s \"cronkeep: $CRONKEEP_TASK $CRONKEEP_EVENT\" " + shell_word(to)));
    comment("  events = [\"failed\", \"timeout\", \"crashed\"]");
    comment("and in [defaults]: notify = [\"mail\"]. The sink gets the event as JSON on stdin.");
  }

  void job(int n, std::string_view raw, const Entry& e) {
    if (!unusable_.empty()) {
      std::string why;
      for (const auto& [name, reason] : unusable_) why += (why.empty() ? "" : "; ") + reason;
      return skip(n, raw, why);
    }
    // Cron's macros are lower case; cronkeep's parser takes the others as written.
    const bool reboot = e.when == "@reboot";
    if (!reboot) {
      if (auto schedule = cron::Schedule::parse(e.when); !schedule)
        return skip(n, raw, "time fields " + quote(e.when) + ": " + schedule.error().message);
    }
    if (options_.format == Format::system && !valid_user(e.user))
      return skip(n, raw, "user " + quote(e.user) + ": not a user name (no ':', ',' or '/')");
    const Command cmd = split_percent(e.command);
    // Blank as config sees it (isspace), so that it never refuses `run`.
    if (cmd.text.find_first_not_of(" \t\n\v\f\r") == std::string::npos)
      return skip(n, raw, "no command to run (only blanks, or nothing before the first %)");
    if (cmd.input && cmd.input->back() != '\n')
      return skip(n, raw,
                  "the text after % ends in a backslash, which cron passes without a final newline; "
                  "a here-document cannot");

    std::string shell(kCronShell);
    for (const auto& [name, value] : env_)
      if (name == "SHELL") shell = value;
    std::string run = cmd.text;
    if (cmd.input || shell != kCronShell) {
      run = "exec " + shell_word(shell) + " -c " + shell_quote(cmd.text);
      if (cmd.input) {
        std::string delimiter(kStdinDelimiter);
        for (int k = 2; ("\n" + *cmd.input).find("\n" + delimiter + "\n") != std::string::npos; ++k)
          delimiter = std::string(kStdinDelimiter) + "_" + std::to_string(k);
        run += " <<'" + delimiter + "'\n" + *cmd.input + delimiter + "\n";
      }
    }
    const std::string name = unique_name(name_from(cmd.text));

    original(n, raw);
    if (e.quiet)
      comment("The leading \"-\" (cronie: no syslog line for this job) is dropped: cronkeep records every run.");
    if (cmd.input) {
      comment("cron writes the text after the first % to the command's stdin (each further % a newline):");
      comment("here it is a here-document, for the whole command.");
    }
    if (reboot) {
      note_and_warn(n, "@reboot: cronkeep has no boot trigger; task " + quote(name) +
                           " has no cron and runs only on demand (cronkeep run " + name + ")");
    }
    out_.toml += "[tasks." + toml_key(name) + "]\n";
    if (!reboot) out_.toml += "cron = " + toml_string(e.when) + "\n";
    out_.toml += "run = " + toml_string(run) + "\n";
    if (options_.format == Format::system) out_.toml += "user = " + toml_string(e.user) + "\n";
    if (!zone_.empty()) out_.toml += "timezone = " + toml_string(zone_) + "\n";
    if (!env_.empty()) {
      std::string table;
      for (const auto& [key, value] : env_)
        table += (table.empty() ? "" : ", ") + toml_key(key) + " = " + toml_string(value);
      out_.toml += "env = { " + table + " }\n";
    }
    out_.toml += "\n";
    ++out_.tasks;
  }

  // `base` with the prefix, cut to leave room for a "-N" suffix, then the
  // first of base, base-2, base-3 … not taken yet.
  std::string unique_name(const std::string& base) {
    std::string stem = options_.prefix.empty() ? base : options_.prefix + "-" + base;
    if (stem.size() > layout::kMaxTaskNameLength - 8) stem.resize(layout::kMaxTaskNameLength - 8);
    std::string name = stem;
    for (int k = 2; used_.count(name); ++k) name = stem + "-" + std::to_string(k);
    used_.insert(name);
    assert(layout::valid_task_name(name));
    return name;
  }

  const Options& options_;
  Conversion out_;
  std::vector<std::pair<std::string, std::string>> env_;  // in the order first set
  std::map<std::string, std::string> unusable_;           // variable → why the jobs below cannot be converted
  std::string zone_;                                      // from CRON_TZ; empty = [daemon] timezone
  std::set<std::string> used_;                            // task names given
  bool saw_cr_ = false;
};

}  // namespace

Result<Conversion> convert(std::string_view text, const Options& options) {
  if (!options.prefix.empty() && (!layout::valid_task_name(options.prefix) || options.prefix.size() > kMaxPrefixLength))
    return fail(ErrorCode::invalid_argument, "prefix " + quote(comment_text(options.prefix)) +
                                                 ": must be a task name of at most 64 bytes (" + layout::kTaskNameRule +
                                                 ")");
  Converter c(options);
  c.header();
  int n = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    c.line(++n, text.substr(at, end - at));
    at = end + 1;
  }
  return c.finish();
}

Format format_for_path(std::string_view path) {
  if (path == "/etc/crontab") return Format::system;
  constexpr std::string_view kCronD = "/etc/cron.d/";
  return path.size() > kCronD.size() && path.substr(0, kCronD.size()) == kCronD ? Format::system : Format::user;
}

}  // namespace cronkeep::crontab
