// config/config.cc: reads cronkeep.toml into the plain structs of config.h.
//
// The text is parsed once by toml++ into a tree; the tree is then walked table
// by table against one declaration per section (the k*Keys arrays below, in
// the spirit of redis's single option table). Each key is read by a small
// typed reader that records a Problem instead of stopping, so one pass reports
// every unknown key, wrong type and bad value, sorted by position. Nothing here
// throws: toml++'s parse_error becomes a Problem, and parse_config has a last
// catch for anything unexpected (e.g. std::bad_alloc from the tree).
//
// toml++ keeps a table's keys sorted by name, not in file order, so tasks are
// put back in file order by the position of their table.

#include "config/config.h"

#include <grp.h>
#include <pwd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <span>
#include <sstream>
#include <tuple>
#include <optional>
#include <utility>

#include "base/file.h"
#include "base/units.h"
#include "cron/cron.h"
#include "layout/layout.h"

namespace cronkeep::config {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int kMaxRetryAttempts = 100;
constexpr int64_t kMaxBatchSize = 100'000;

// ---------------------------------------------------------------------------
// Enum names: one table per enum serves both parsing and to_string().

template <class E>
struct EnumName {
  const char* name;
  E value;
};

constexpr EnumName<LogOnFull> kLogOnFullNames[] = {
    {"drop_old", LogOnFull::drop_old}, {"drop_new", LogOnFull::drop_new}, {"kill_task", LogOnFull::kill_task}};
constexpr EnumName<Overlap> kOverlapNames[] = {
    {"queue", Overlap::queue}, {"skip", Overlap::skip}, {"terminate", Overlap::terminate}};
constexpr EnumName<CatchUp> kCatchUpNames[] = {
    {"latest", CatchUp::latest}, {"all", CatchUp::all}, {"skip", CatchUp::skip}};
constexpr EnumName<Backoff> kBackoffNames[] = {
    {"constant", Backoff::constant}, {"linear", Backoff::linear}, {"exponential", Backoff::exponential}};
constexpr EnumName<Backend> kBackendNames[] = {{"sqlite", Backend::sqlite}, {"postgres", Backend::postgres}};
constexpr EnumName<Vacuum> kVacuumNames[] = {
    {"incremental", Vacuum::incremental}, {"full", Vacuum::full}, {"off", Vacuum::off}};

template <class E, size_t N>
const char* name_of(const EnumName<E> (&names)[N], E value) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  return "?";
}

// ---------------------------------------------------------------------------
// Text helpers.

// A string as it would be written in TOML: quoted, with control characters,
// quotes and backslashes escaped, so messages never carry raw control bytes.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

bool is_bare_key(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; });
}

// Appends `key` to a dotted path, quoting it when TOML would ("tasks.\"a.b\"").
std::string join(std::string_view parent, std::string_view key) {
  std::string seg = is_bare_key(key) ? std::string(key) : quote(key);
  if (parent.empty()) return seg;
  return std::string(parent) + "." + seg;
}

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Levenshtein distance, ignoring ASCII case (TOML keys are case-sensitive, so
// "Keep_Runs" is unknown, and "keep_runs" is the right suggestion for it).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same =
          std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      const size_t next = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

// "; did you mean \"keep_runs\"?" for the closest candidate within edit
// distance 2 (and closer than the key's own length, so "x" suggests nothing).
std::string suggest(std::string_view key, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = 3;
  for (std::string_view c : candidates) {
    const size_t d = edit_distance(key, c);
    if (d < best_distance && d < key.size()) {
      best = c;
      best_distance = d;
    }
  }
  if (best.empty()) return "";
  return "; did you mean " + quote(best) + "?";
}

bool is_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// ---------------------------------------------------------------------------
// Reader: typed reads of single values that record problems instead of failing.

enum class Empty { allowed, refused };
enum class Zero { allowed, refused };

class Reader {
 public:
  Reader(std::string file, fs::path base_dir) : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  Problems& problems() { return problems_; }

  void add(const toml::source_region& at, std::string key, std::string message) {
    problems_.push_back(Problem{file_, static_cast<int>(at.begin.line), static_cast<int>(at.begin.column),
                                std::move(key), std::move(message)});
  }

  bool string(const toml::node& n, const std::string& key, std::string& out, Empty empty = Empty::allowed) {
    const auto* s = n.as_string();
    if (!s) {
      add(n.source(), key, std::string("expected a string, got ") + type_name(n));
      return false;
    }
    const std::string& v = s->get();
    if (v.find('\0') != std::string::npos) {
      add(n.source(), key, "must not contain a NUL character");
      return false;
    }
    if (empty == Empty::refused && trim(v).empty()) {
      add(n.source(), key, "must not be empty");
      return false;
    }
    out = v;
    return true;
  }

  // Sink names declared by [notify.NAME], for `notify = [...]` checks.
  std::vector<std::string>& sinks() { return sinks_; }

  // An array of strings; `allowed` (when non-empty) lists the valid values.
  void string_list(const toml::node& n, const std::string& key, const std::vector<std::string>& allowed,
                   const char* what, std::vector<std::string>& out) {
    const auto* arr = n.as_array();
    if (!arr) {
      add(n.source(), key, std::string("expected an array of strings such as [\"ops\"], got ") + type_name(n));
      return;
    }
    std::vector<std::string> values;
    for (const toml::node& item : *arr) {
      std::string v;
      if (!string(item, key, v, Empty::refused)) return;
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
        std::string list;
        for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
        add(item.source(), key, std::string("unknown ") + what + " " + quote(v) + "; expected one of: " +
                                    (list.empty() ? std::string("(none declared)") : list));
        return;
      }
      values.push_back(v);
    }
    out = std::move(values);
  }

  void boolean(const toml::node& n, const std::string& key, bool& out) {
    const auto* b = n.as_boolean();
    if (!b) {
      std::string msg = std::string("expected true or false, got ") + type_name(n);
      if (n.is_string()) msg += "; write it without quotes";
      add(n.source(), key, msg);
      return;
    }
    out = b->get();
  }

  template <class T>
  void integer(const toml::node& n, const std::string& key, int64_t min, int64_t max, T& out) {
    const auto* i = n.as_integer();
    if (!i) {
      std::string msg = std::string("expected an integer, got ") + type_name(n);
      if (const auto* s = n.as_string(); s && is_digits(s->get())) msg += "; write it without quotes";
      add(n.source(), key, msg);
      return;
    }
    const int64_t v = i->get();
    if (v < min || v > max) {
      if (max == kIntMax || max == kInt64Max)
        add(n.source(), key,
            "must be at least " + std::to_string(min) +
                (v > max ? " and at most " + std::to_string(max) : std::string()) + " (got " + std::to_string(v) + ")");
      else
        add(n.source(), key,
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " + std::to_string(v) +
                ")");
      return;
    }
    out = static_cast<T>(v);
  }

  void duration(const toml::node& n, const std::string& key, Zero zero, Millis& out) {
    Millis value{0};
    if (const auto* s = n.as_string()) {
      auto d = parse_duration(s->get());
      if (!d) {
        add(n.source(), key, d.error().message);
        return;
      }
      value = *d;
    } else if (const auto* i = n.as_integer()) {
      if (i->get() != 0) {
        const std::string v = std::to_string(i->get());
        add(n.source(), key,
            "a duration needs a unit: write it as a string such as \"" + (i->get() > 0 ? v : std::string("30")) +
                "s\" (units ms, s, m, h, d, w)");
        return;
      }
    } else {
      add(n.source(), key, std::string("expected a duration such as \"30s\", got ") + type_name(n));
      return;
    }
    if (zero == Zero::refused && value.count() == 0) {
      add(n.source(), key, "must be greater than 0");
      return;
    }
    out = value;
  }

  void size(const toml::node& n, const std::string& key, uint64_t& out) {
    if (const auto* s = n.as_string()) {
      auto v = parse_size(s->get());
      if (!v) {
        add(n.source(), key, v.error().message);
        return;
      }
      out = *v;
    } else if (const auto* i = n.as_integer()) {
      if (i->get() < 0) {
        add(n.source(), key, "must not be negative (got " + std::to_string(i->get()) + ")");
        return;
      }
      out = static_cast<uint64_t>(i->get());
    } else {
      add(n.source(), key, std::string("expected a size such as \"100MB\" or a number of bytes, got ") + type_name(n));
    }
  }

  // A number in (0, 1]; an integer (1) is read as a float.
  void fraction(const toml::node& n, const std::string& key, double& out) {
    double v = 0;
    if (const auto* f = n.as_floating_point()) {
      v = f->get();
    } else if (const auto* i = n.as_integer()) {
      v = static_cast<double>(i->get());
    } else {
      std::string msg = std::string("expected a number such as 0.5, got ") + type_name(n);
      if (n.is_string()) msg += "; write it without quotes";
      add(n.source(), key, msg);
      return;
    }
    if (!(v > 0 && v <= 1)) {  // also refuses nan
      std::ostringstream got;
      got << v;
      add(n.source(), key, "must be greater than 0 and at most 1 (got " + got.str() + ")");
      return;
    }
    out = v;
  }

  template <class E, size_t N>
  void enumeration(const toml::node& n, const std::string& key, const EnumName<E> (&names)[N], E& out) {
    std::string v;
    if (!string(n, key, v)) return;
    for (const auto& e : names) {
      if (v == e.name) {
        out = e.value;
        return;
      }
    }
    std::string allowed;
    for (const auto& e : names) allowed += (allowed.empty() ? "" : ", ") + std::string(e.name);
    add(n.source(), key, "invalid value " + quote(v) + "; expected one of: " + allowed);
  }

  // A path; a relative one is joined to the configuration file's directory.
  void path(const toml::node& n, const std::string& key, Empty empty, std::string& out) {
    std::string v;
    if (!string(n, key, v, empty)) return;
    out = v.empty() ? v : resolve(v);
  }

  void schedule(const toml::node& n, const std::string& key, std::string& out) {
    std::string v;
    if (!string(n, key, v, Empty::refused)) return;
    auto s = cron::Schedule::parse(v);
    if (!s) {
      add(n.source(), key, "invalid cron expression " + quote(v) + ": " + s.error().message);
      return;
    }
    out = v;
  }

  void timezone(const toml::node& n, const std::string& key, std::string& out) {
    std::string v;
    if (!string(n, key, v, Empty::refused)) return;
    auto z = cron::Zone::locate(v);
    if (!z) {
      add(n.source(), key, z.error().message);
      return;
    }
    out = v;
  }

  void listen(const toml::node& n, const std::string& key, std::string& out) {
    std::string v;
    if (!string(n, key, v, Empty::refused)) return;
    if (auto err = check_listen(v); !err.empty()) {
      add(n.source(), key, "invalid address " + quote(v) + ": " + err);
      return;
    }
    out = v;
  }

  // A user or group name as the passwd and group databases write them: no
  // ':', ',', '/', whitespace or control characters. Whether it exists is
  // load_config's check.
  bool account(const toml::node& n, const std::string& key, const char* what, std::string& out) {
    std::string v;
    if (!string(n, key, v, Empty::refused)) return false;
    const bool bad = std::any_of(v.begin(), v.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return c == ':' || c == ',' || c == '/' || std::isspace(u) || u < 0x20 || u == 0x7f;
    });
    if (bad || v.size() > 256) {
      add(n.source(), key, std::string("invalid ") + what + " name " + quote(v));
      return false;
    }
    out = v;
    return true;
  }

  std::string resolve(const std::string& p) const {
    fs::path path(p);
    if (path.is_relative()) path = base_dir_ / path;
    path = path.lexically_normal();
    // "/srv/x/" → "/srv/x": one spelling per directory.
    if (!path.has_filename() && path.has_relative_path()) path = path.parent_path();
    if (path.empty()) path = ".";
    return path.string();
  }

 private:
  // "host:port" or "[v6]:port", port 1..65535. Returns "" when valid.
  static std::string check_listen(std::string_view v) {
    std::string_view host, port;
    if (!v.empty() && v.front() == '[') {
      const size_t close = v.find(']');
      if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
      host = v.substr(1, close - 1);
      if (close + 1 >= v.size() || v[close + 1] != ':') return "expected host:port, e.g. \"[::1]:7070\"";
      port = v.substr(close + 2);
    } else {
      const size_t colon = v.rfind(':');
      if (colon == std::string_view::npos) return "expected host:port, e.g. \"127.0.0.1:7070\"";
      host = v.substr(0, colon);
      port = v.substr(colon + 1);
      if (host.find(':') != std::string_view::npos) return "an IPv6 address must be in brackets, e.g. \"[::1]:7070\"";
    }
    if (host.empty()) return "missing host (use \"0.0.0.0:PORT\" to listen on every interface)";
    if (!is_digits(port) || port.size() > 5) return "the port must be a number between 1 and 65535";
    const int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535) return "the port must be a number between 1 and 65535";
    return "";
  }

  std::string file_;
  fs::path base_dir_;
  Problems problems_;
  std::vector<std::string> sinks_;
};

// ---------------------------------------------------------------------------
// The declaration of every key: one array per section.

template <class T>
struct KeySpec {
  std::string_view name;
  void (*read)(Reader&, const toml::node&, const std::string& key, T&);
};

constexpr KeySpec<TaskPolicy> kPolicyKeys[] = {
    {"keep_runs", [](auto& r, auto& n, auto& k, auto& p) { r.integer(n, k, 1, kInt64Max, p.keep_runs); }},
    {"keep_for", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::refused, p.keep_for); }},
    {"keep_failed_for", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::refused, p.keep_failed_for); }},
    {"log_max_size", [](auto& r, auto& n, auto& k, auto& p) { r.size(n, k, p.log_max_size); }},
    {"log_on_full", [](auto& r, auto& n, auto& k, auto& p) { r.enumeration(n, k, kLogOnFullNames, p.log_on_full); }},
    {"timeout", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::allowed, p.timeout); }},
    {"graceful_stop", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::allowed, p.graceful_stop); }},
    {"max_concurrent", [](auto& r, auto& n, auto& k, auto& p) { r.integer(n, k, 1, kIntMax, p.max_concurrent); }},
    {"on_overlap", [](auto& r, auto& n, auto& k, auto& p) { r.enumeration(n, k, kOverlapNames, p.on_overlap); }},
    {"queue_max", [](auto& r, auto& n, auto& k, auto& p) { r.integer(n, k, 0, kIntMax, p.queue_max); }},
    {"catch_up", [](auto& r, auto& n, auto& k, auto& p) { r.enumeration(n, k, kCatchUpNames, p.catch_up); }},
    {"max_catch_up_runs", [](auto& r, auto& n, auto& k, auto& p) { r.integer(n, k, 1, kIntMax, p.max_catch_up_runs); }},
    {"retry_attempts",
     [](auto& r, auto& n, auto& k, auto& p) { r.integer(n, k, 0, kMaxRetryAttempts, p.retry_attempts); }},
    {"retry_delay", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::allowed, p.retry_delay); }},
    {"retry_backoff", [](auto& r, auto& n, auto& k, auto& p) { r.enumeration(n, k, kBackoffNames, p.retry_backoff); }},
    {"jitter", [](auto& r, auto& n, auto& k, auto& p) { r.duration(n, k, Zero::allowed, p.jitter); }},
    {"notify",
     [](auto& r, auto& n, auto& k, auto& p) {
       r.string_list(n, k, r.sinks().empty() ? std::vector<std::string>{""} : r.sinks(), "sink", p.notify);
     }},
};

std::vector<std::string> notify_event_names() {
  return std::vector<std::string>(std::begin(kNotifyEvents), std::end(kNotifyEvents));
}

constexpr KeySpec<NotifySink> kNotifyKeys[] = {
    {"webhook",
     [](auto& r, auto& n, auto& k, auto& s) {
       std::string v;
       if (!r.string(n, k, v, Empty::refused)) return;
       const size_t scheme = v.find("://");
       const std::string proto = scheme == std::string::npos ? "" : v.substr(0, scheme);
       const std::string rest = scheme == std::string::npos ? "" : v.substr(scheme + 3);
       if ((proto != "http" && proto != "https") || rest.empty() || rest[0] == '/' ||
           v.find_first_of(" \t\r\n") != std::string::npos) {
         r.add(n.source(), k, "invalid URL " + quote(v) + ": expected http://HOST[:PORT]/PATH or https://…");
         return;
       }
       s.webhook = v;
     }},
    {"command", [](auto& r, auto& n, auto& k, auto& s) { r.string(n, k, s.command, Empty::refused); }},
    {"secret_file", [](auto& r, auto& n, auto& k, auto& s) { r.path(n, k, Empty::refused, s.secret_file); }},
    {"events",
     [](auto& r, auto& n, auto& k, auto& s) { r.string_list(n, k, notify_event_names(), "event", s.events); }},
    {"timeout", [](auto& r, auto& n, auto& k, auto& s) { r.duration(n, k, Zero::refused, s.timeout); }},
};

void read_env(Reader& r, const toml::node& n, const std::string& key, Task& t) {
  const auto* table = n.as_table();
  if (!table) {
    r.add(n.source(), key,
          std::string("expected a table of strings such as { PGHOST = \"db1\" }, got ") + type_name(n));
    return;
  }
  for (auto&& [name, value] : *table) {
    const std::string sub = join(key, name.str());
    if (name.str().empty() || name.str().find_first_of(std::string_view("=\0", 2)) != std::string_view::npos) {
      r.add(name.source(), sub, "invalid environment variable name (must be non-empty, without '=' or NUL)");
      continue;
    }
    std::string v;
    if (r.string(value, sub, v)) t.env[std::string(name.str())] = v;
  }
}

constexpr KeySpec<Task> kTaskKeys[] = {
    {"cron", [](auto& r, auto& n, auto& k, auto& t) { r.schedule(n, k, t.cron); }},
    {"run", [](auto& r, auto& n, auto& k, auto& t) { r.string(n, k, t.run, Empty::refused); }},
    {"timezone", [](auto& r, auto& n, auto& k, auto& t) { r.timezone(n, k, t.timezone); }},
    {"env", read_env},
    {"workdir", [](auto& r, auto& n, auto& k, auto& t) { r.path(n, k, Empty::allowed, t.workdir); }},
    {"enabled", [](auto& r, auto& n, auto& k, auto& t) { r.boolean(n, k, t.enabled); }},
    {"nodes",
     [](auto& r, auto& n, auto& k, auto& t) {
       if (const auto* arr = n.as_array(); arr && arr->empty()) {
         r.add(n.source(), k, "an empty list pins the task to no node; remove the key, or set enabled = false");
         return;
       }
       std::vector<std::string> nodes;
       r.string_list(n, k, {}, "node", nodes);
       for (const std::string& name : nodes)
         if (!valid_task_name(name)) {
           r.add(n.source(), k, "invalid node name \"" + name + "\" (letters, digits, '.', '_', '-'; at most 128)");
           return;
         }
       t.nodes = std::move(nodes);
     }},
    {"user",
     [](auto& r, auto& n, auto& k, auto& t) {
       if (r.account(n, k, "user", t.user))
         t.user_at = {static_cast<int>(n.source().begin.line), static_cast<int>(n.source().begin.column)};
     }},
    {"group",
     [](auto& r, auto& n, auto& k, auto& t) {
       if (r.account(n, k, "group", t.group))
         t.group_at = {static_cast<int>(n.source().begin.line), static_cast<int>(n.source().begin.column)};
     }},
};

constexpr KeySpec<Daemon> kDaemonKeys[] = {
    {"data_dir", [](auto& r, auto& n, auto& k, auto& d) { r.path(n, k, Empty::refused, d.data_dir); }},
    {"listen", [](auto& r, auto& n, auto& k, auto& d) { r.listen(n, k, d.listen); }},
    {"timezone", [](auto& r, auto& n, auto& k, auto& d) { r.timezone(n, k, d.timezone); }},
    {"shutdown_timeout",
     [](auto& r, auto& n, auto& k, auto& d) { r.duration(n, k, Zero::allowed, d.shutdown_timeout); }},
    {"token_file", [](auto& r, auto& n, auto& k, auto& d) { r.path(n, k, Empty::allowed, d.token_file); }},
    {"max_log_streams", [](auto& r, auto& n, auto& k, auto& d) { r.integer(n, k, 1, 10000, d.max_log_streams); }},
    {"max_log_streams_per_client",
     [](auto& r, auto& n, auto& k, auto& d) { r.integer(n, k, 1, 10000, d.max_log_streams_per_client); }},
    {"node",
     [](auto& r, auto& n, auto& k, auto& d) {
       if (!r.string(n, k, d.node, Empty::refused)) return;
       if (!valid_task_name(d.node))
         r.add(n.source(), k, "invalid node name \"" + d.node + "\" (letters, digits, '.', '_', '-'; at most 128)");
     }},
    {"node_lease",
     [](auto& r, auto& n, auto& k, auto& d) {
       Millis lease = d.node_lease;
       r.duration(n, k, Zero::refused, lease);
       if (lease < std::chrono::seconds(1)) r.add(n.source(), k, "must be at least 1s");
       else d.node_lease = lease;
     }},
};

constexpr KeySpec<Storage> kStorageKeys[] = {
    {"backend", [](auto& r, auto& n, auto& k, auto& s) { r.enumeration(n, k, kBackendNames, s.backend); }},
    {"postgres_url", [](auto& r, auto& n, auto& k, auto& s) { r.string(n, k, s.postgres_url); }},
    {"min_free_space", [](auto& r, auto& n, auto& k, auto& s) { r.size(n, k, s.min_free_space); }},
    {"max_size", [](auto& r, auto& n, auto& k, auto& s) { r.size(n, k, s.max_size); }},
};

constexpr KeySpec<Retention> kRetentionKeys[] = {
    {"schedule", [](auto& r, auto& n, auto& k, auto& s) { r.schedule(n, k, s.schedule); }},
    {"max_age", [](auto& r, auto& n, auto& k, auto& s) { r.duration(n, k, Zero::refused, s.max_age); }},
    {"max_runs", [](auto& r, auto& n, auto& k, auto& s) { r.integer(n, k, 1, kInt64Max, s.max_runs); }},
    {"batch_size", [](auto& r, auto& n, auto& k, auto& s) { r.integer(n, k, 1, kMaxBatchSize, s.batch_size); }},
    {"max_fraction_per_sweep",
     [](auto& r, auto& n, auto& k, auto& s) { r.fraction(n, k, s.max_fraction_per_sweep); }},
    {"archive", [](auto& r, auto& n, auto& k, auto& s) { r.boolean(n, k, s.archive); }},
    {"archive_logs", [](auto& r, auto& n, auto& k, auto& s) { r.boolean(n, k, s.archive_logs); }},
    {"archive_keep_for",
     [](auto& r, auto& n, auto& k, auto& s) { r.duration(n, k, Zero::refused, s.archive_keep_for); }},
};

constexpr KeySpec<Compactor> kCompactorKeys[] = {
    {"schedule", [](auto& r, auto& n, auto& k, auto& c) { r.schedule(n, k, c.schedule); }},
    {"vacuum", [](auto& r, auto& n, auto& k, auto& c) { r.enumeration(n, k, kVacuumNames, c.vacuum); }},
};

constexpr std::string_view kSections[] = {"daemon", "storage", "retention", "compactor", "defaults", "tasks", "notify"};

template <class T, size_t N>
std::vector<std::string_view> names_of(const KeySpec<T> (&keys)[N]) {
  std::vector<std::string_view> out;
  for (const auto& k : keys) out.push_back(k.name);
  return out;
}

template <class T, size_t N>
const KeySpec<T>* find_key(const KeySpec<T> (&keys)[N], std::string_view name) {
  for (const auto& k : keys)
    if (k.name == name) return &k;
  return nullptr;
}

// Where each key may be written, to tell a user who put one in the wrong place.
struct Placement {
  std::vector<std::string_view> scopes;  // the sections (kSections) it is valid in
  std::string_view where;                // how a message names them
  std::vector<std::string_view> keys;
};

const std::vector<Placement>& placements() {
  static const std::vector<Placement> kPlacements = {
      {{"daemon"}, "[daemon]", names_of(kDaemonKeys)},
      {{"storage"}, "[storage]", names_of(kStorageKeys)},
      {{"retention"}, "[retention]", names_of(kRetentionKeys)},
      {{"compactor"}, "[compactor]", names_of(kCompactorKeys)},
      {{"defaults", "tasks"}, "[defaults] or a [tasks.NAME]", names_of(kPolicyKeys)},
      {{"tasks"}, "a [tasks.NAME]", names_of(kTaskKeys)},
      {{"notify"}, "a [notify.NAME]", names_of(kNotifyKeys)},
  };
  return kPlacements;
}

// The message for an unknown key `name` found in the table `where` ("[daemon]",
// "[tasks.backup]", "the top level") of section `scope` ("" at the top level),
// given the keys valid there.
std::string unknown_key_message(std::string_view name, std::string_view where, std::string_view scope,
                                std::span<const std::string_view> valid) {
  std::string msg = "unknown key " + quote(name) + " in " + std::string(where);
  std::string elsewhere;
  for (const Placement& p : placements()) {
    if (std::find(p.scopes.begin(), p.scopes.end(), scope) != p.scopes.end()) continue;
    if (std::find(p.keys.begin(), p.keys.end(), name) == p.keys.end()) continue;
    elsewhere += (elsewhere.empty() ? "" : " or ") + std::string(p.where);
  }
  if (!elsewhere.empty()) return msg + "; it belongs in " + elsewhere;
  return msg + suggest(name, valid);
}

// Names other schedulers use for task keys (crontab, systemd, supervisord,
// Kubernetes), so their users are pointed at cronkeep's.
constexpr std::pair<std::string_view, std::string_view> kTaskKeyAliases[] = {
    {"schedule", "cron"},
    {"command", "run"},
    {"cmd", "run"},
    {"exec", "run"},
    {"cwd", "workdir"},
    {"directory", "workdir"},
    {"working_dir", "workdir"},
    {"tz", "timezone"},
    {"environment", "env"},
};

std::string unknown_task_key_message(std::string_view name, std::string_view where,
                                     std::span<const std::string_view> valid) {
  for (const auto& [alias, key] : kTaskKeyAliases)
    if (name == alias)
      return "unknown key " + quote(name) + " in " + std::string(where) + "; did you mean " + quote(key) + "?";
  return unknown_key_message(name, where, "tasks", valid);
}

// Reads every key of a section table against its declaration.
template <class T, size_t N>
void read_section(Reader& r, const toml::node& node, std::string_view section, const KeySpec<T> (&keys)[N], T& out) {
  const std::string prefix(section);
  const auto* table = node.as_table();
  if (!table) {
    r.add(node.source(), prefix, std::string("expected a table [") + prefix + "], got " + type_name(node));
    return;
  }
  const std::vector<std::string_view> valid = names_of(keys);
  for (auto&& [name, value] : *table) {
    const std::string key = join(prefix, name.str());
    if (const auto* spec = find_key(keys, name.str()))
      spec->read(r, value, key, out);
    else
      r.add(name.source(), key, unknown_key_message(name.str(), "[" + prefix + "]", section, valid));
  }
}

std::string task_name_problem(std::string_view name) {
  if (name.empty()) return "task name must not be empty";
  if (name.find(':') != std::string_view::npos)
    return "task names may not contain ':' (reserved for system tasks such as cronkeep:retention)";
  if (name.size() > layout::kMaxTaskNameLength) return "task name is longer than 128 characters";
  if (name.find("..") != std::string_view::npos)
    return "invalid task name " + quote(name) + ": \"..\" is not allowed (the name becomes a directory under logs/)";
  return "invalid task name " + quote(name) +
         ": use letters, digits, '.', '_' and '-', starting with a letter or digit";
}

struct Position {
  uint32_t line = 0;
  uint32_t column = 0;
  bool operator<(const Position& o) const { return std::tie(line, column) < std::tie(o.line, o.column); }
};

void read_task(Reader& r, const toml::key& name, const toml::node& node, const Config& config,
               std::vector<std::pair<Position, Task>>& out) {
  const std::string prefix = join("tasks", name.str());
  const bool name_ok = valid_task_name(name.str());
  if (!name_ok) r.add(name.source(), prefix, task_name_problem(name.str()));
  const auto* table = node.as_table();
  if (!table) {
    r.add(node.source(), prefix, "expected a table [" + prefix + "] with cron and run, got " + type_name(node));
    return;
  }
  Task task;
  task.name = std::string(name.str());
  task.policy = config.defaults;
  std::vector<std::string_view> valid = names_of(kTaskKeys);
  for (auto n : names_of(kPolicyKeys)) valid.push_back(n);
  for (auto&& [key_name, value] : *table) {
    const std::string key = join(prefix, key_name.str());
    if (const auto* spec = find_key(kTaskKeys, key_name.str()))
      spec->read(r, value, key, task);
    else if (const auto* pspec = find_key(kPolicyKeys, key_name.str()))
      pspec->read(r, value, key, task.policy);
    else
      r.add(key_name.source(), key, unknown_task_key_message(key_name.str(), "[" + prefix + "]", valid));
  }
  // A table that only appears implicitly (e.g. through [tasks.x.env]) has no
  // header of its own; fall back to where its name was written.
  const toml::source_region& at = table->source().begin.line > 0 ? table->source() : name.source();
  // No cron: the task runs only on demand (cronkeep run).
  if (!table->contains("run")) r.add(at, prefix + ".run", "missing required key \"run\" (the shell command to run)");
  if (!task.group.empty() && task.user.empty())
    if (const toml::node* g = table->get("group"))
      r.add(g->source(), prefix + ".group", "group needs user (the user to run as, e.g. user = \"backup\")");
  if (name_ok) out.emplace_back(Position{at.begin.line, at.begin.column}, std::move(task));
}

// Where the first non-ASCII character outside a string or a comment is
// (line, column), if any. TOML 1.0 allows them only there, and toml++ 3.3
// (Debian's) reaches a __builtin_unreachable() on some of them elsewhere
// (is_non_ascii_horizontal_whitespace; fuzz_config under UBSan found it),
// so they are refused before it sees the text.
std::optional<std::pair<int, int>> stray_non_ascii(std::string_view text) {
  enum class In { plain, comment, basic, literal, multiline_basic, multiline_literal } in = In::plain;
  int line = 1;
  int column = 0;
  // A closing """ or ''' may follow up to two quotes of the content.
  const auto close_run = [&](size_t& i, char quote) {
    size_t n = 0;
    while (i + n < text.size() && text[i + n] == quote && n < 5) ++n;
    if (n < 3) return false;
    i += n - 1;
    column += static_cast<int>(n) - 1;
    return true;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) ++column;  // a character starts here
    if (c == '\n') {
      ++line;
      column = 0;
      // A single-line string left open is toml++'s to report.
      if (in == In::comment || in == In::basic || in == In::literal) in = In::plain;
      continue;
    }
    switch (in) {
      case In::plain:
        if (c >= 0x80) return std::make_pair(line, column);
        if (c == '#') {
          in = In::comment;
        } else if (c == '"' || c == '\'') {
          const bool triple = text.substr(i, 3) == std::string(3, static_cast<char>(c));
          in = c == '"' ? (triple ? In::multiline_basic : In::basic) : (triple ? In::multiline_literal : In::literal);
          if (triple) {
            i += 2;
            column += 2;
          }
        }
        break;
      case In::comment: break;
      case In::basic:
      case In::multiline_basic:
        if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n' && static_cast<unsigned char>(text[i + 1]) < 0x80) {
          ++i;  // an escaped character, '"' included
          ++column;
        } else if (c == '"' && (in == In::basic || close_run(i, '"'))) {
          in = In::plain;
        }
        break;
      case In::literal:
      case In::multiline_literal:
        if (c == '\'' && (in == In::literal || close_run(i, '\''))) in = In::plain;
        break;
    }
  }
  return std::nullopt;
}

// toml++ describes a second [tasks.NAME] as a redefined table; say what it
// means for cronkeep.
std::string describe_parse_error(const toml::parse_error& e) {
  const std::string_view d = e.description();
  const std::string msg = "TOML syntax error: " + std::string(d);
  constexpr std::string_view kRedefined = "cannot redefine existing table 'tasks.";
  if (const size_t at = d.find(kRedefined); at != std::string_view::npos) {
    std::string_view rest = d.substr(at + kRedefined.size());
    rest = rest.substr(0, rest.find('\''));
    if (!rest.empty() && rest.find('.') == std::string_view::npos)
      return msg + " (task " + quote(rest) + " is defined more than once; each task name may appear once)";
  }
  if (d.find("cannot redefine") != std::string_view::npos)
    return msg + " (each table and each key may be defined only once)";
  return msg;
}

tl::expected<Config, Problems> parse(std::string_view text, std::string_view file_name, const fs::path& base_dir) {
  Reader r(std::string(file_name), base_dir);
  Config config;
  config.path = std::string(file_name);
  config.daemon.data_dir = r.resolve(config.daemon.data_dir);

  if (const auto at = stray_non_ascii(text)) {
    toml::source_region where;
    where.begin = toml::source_position{static_cast<toml::source_index>(at->first),
                                        static_cast<toml::source_index>(at->second)};
    r.add(where, "", "TOML syntax error: a non-ASCII character outside a string or a comment (a key that is not "
                     "plain ASCII must be quoted, e.g. \"tâche\" = 1)");
    return tl::unexpected(std::move(r.problems()));
  }
  toml::table root;
  try {
    root = toml::parse(text, file_name);
  } catch (const toml::parse_error& e) {
    r.add(e.source(), "", describe_parse_error(e));
    return tl::unexpected(std::move(r.problems()));
  }

  for (auto&& [name, value] : root) {
    if (std::find(std::begin(kSections), std::end(kSections), name.str()) != std::end(kSections)) continue;
    const std::string key = join("", name.str());
    std::string msg;
    if (value.is_table())
      msg = "unknown section [" + key + "]" + suggest(name.str(), kSections);
    else
      msg = unknown_key_message(name.str(), "the top level", "", {});
    r.add(name.source(), key, msg);
  }

  if (const auto* n = root.get("daemon")) read_section(r, *n, "daemon", kDaemonKeys, config.daemon);
  if (const auto* n = root.get("storage")) read_section(r, *n, "storage", kStorageKeys, config.storage);
  if (const auto* n = root.get("retention")) read_section(r, *n, "retention", kRetentionKeys, config.retention);
  if (config.retention.archive_logs && !config.retention.archive)
    if (const toml::node* logs = root.at_path("retention.archive_logs").node())
      r.add(logs->source(), "retention.archive_logs",
            "archive_logs adds logs to the archive; it needs archive = true in [retention]");
  if (const auto* n = root.get("compactor")) read_section(r, *n, "compactor", kCompactorKeys, config.compactor);
  // Sinks first: `notify = [...]` in [defaults] and tasks is checked against them.
  if (const auto* n = root.get("notify")) {
    if (const auto* sinks = n->as_table()) {
      for (auto&& [name, value] : *sinks) {
        const std::string prefix = join("notify", name.str());
        if (!valid_task_name(name.str())) {
          r.add(name.source(), prefix, "invalid sink name " + quote(name.str()) + " (" + layout::kTaskNameRule + ")");
          continue;
        }
        NotifySink sink;
        sink.name = std::string(name.str());
        sink.events = notify_event_names();
        sink.line = static_cast<int>(name.source().begin.line);
        sink.column = static_cast<int>(name.source().begin.column);
        read_section(r, value, prefix, kNotifyKeys, sink);
        const auto* tbl = value.as_table();
        if (tbl && tbl->contains("webhook") == tbl->contains("command"))
          r.add(name.source(), prefix, "set exactly one of webhook (a URL) and command (a shell command)");
        if (!sink.secret_file.empty() && sink.webhook.empty())
          r.add(name.source(), prefix + ".secret_file", "secret_file signs webhook bodies; this sink has no webhook");
        config.notify.push_back(std::move(sink));
        r.sinks().push_back(std::string(name.str()));
      }
    } else {
      r.add(n->source(), "notify", std::string("expected a table of sinks, one [notify.NAME] each, got ") + type_name(*n));
    }
  }
  if (const auto* n = root.get("defaults")) read_section(r, *n, "defaults", kPolicyKeys, config.defaults);

  if (config.storage.backend == Backend::postgres && config.storage.postgres_url.empty()) {
    const toml::node* backend = root.at_path("storage.backend").node();
    r.add(backend ? backend->source() : toml::source_region{}, "storage.postgres_url",
          "backend = \"postgres\" needs postgres_url (e.g. \"postgresql://cronkeep@db1/cronkeep\")");
  }

  if (const auto* n = root.get("tasks")) {
    if (const auto* tasks = n->as_table()) {
      std::vector<std::pair<Position, Task>> found;
      for (auto&& [name, value] : *tasks) read_task(r, name, value, config, found);
      std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (auto& [pos, task] : found) {
        if (task.timezone.empty()) task.timezone = config.daemon.timezone;
        config.tasks.push_back(std::move(task));
      }
    } else {
      r.add(n->source(), "tasks",
            std::string("expected a table of tasks, one [tasks.NAME] each, got ") + type_name(*n));
    }
  }

  if (!r.problems().empty()) {
    Problems problems = std::move(r.problems());
    std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
      const int la = a.line > 0 ? a.line : std::numeric_limits<int>::max();
      const int lb = b.line > 0 ? b.line : std::numeric_limits<int>::max();
      return std::tie(la, a.column) < std::tie(lb, b.column);
    });
    return tl::unexpected(std::move(problems));
  }
  if (Problems problems = prepare(config); !problems.empty()) return tl::unexpected(std::move(problems));
  return config;
}

// Whether the passwd (group) database knows `name`; a lookup error counts
// as unknown.
bool user_exists(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  return ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found;
}

bool group_exists(const std::string& name) {
  std::vector<char> buf(65536);
  group gr{};
  group* found = nullptr;
  return ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found;
}

// parse() with a last guard, so no exception leaves this part.
tl::expected<Config, Problems> parse_guarded(std::string_view text, std::string_view file_name,
                                             const fs::path& base_dir) {
  try {
    return parse(text, file_name, base_dir);
  } catch (const std::exception& e) {
    return tl::unexpected(
        Problems{Problem{std::string(file_name), 0, 0, "", std::string("internal error: ") + e.what()}});
  }
}

}  // namespace

const char* to_string(LogOnFull v) { return name_of(kLogOnFullNames, v); }
const char* to_string(Overlap v) { return name_of(kOverlapNames, v); }
const char* to_string(CatchUp v) { return name_of(kCatchUpNames, v); }
const char* to_string(Backoff v) { return name_of(kBackoffNames, v); }
const char* to_string(Backend v) { return name_of(kBackendNames, v); }
const char* to_string(Vacuum v) { return name_of(kVacuumNames, v); }

Problems prepare(Config& config) {
  Problems problems;
  auto schedule = [&](const std::string& text, const std::string& key, std::optional<cron::Schedule>& out) {
    auto s = cron::Schedule::parse(text);
    if (s) out = std::move(*s);
    else problems.push_back(Problem{config.path, 0, 0, key, s.error().message});
  };
  schedule(config.retention.schedule, "retention.schedule", config.retention.parsed);
  schedule(config.compactor.schedule, "compactor.schedule", config.compactor.parsed);
  for (Task& t : config.tasks) {
    if (!t.cron.empty()) schedule(t.cron, "tasks." + t.name + ".cron", t.schedule);
    if (t.timezone.empty()) t.timezone = config.daemon.timezone;
    auto z = cron::Zone::locate(t.timezone);
    if (z) t.zone = *z;
    else problems.push_back(Problem{config.path, 0, 0, "tasks." + t.name + ".timezone", z.error().message});
  }
  return problems;
}

const Task* Config::find_task(std::string_view name) const {
  for (const Task& t : tasks)
    if (t.name == name) return &t;
  return nullptr;
}

std::string Problem::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

bool valid_task_name(std::string_view name) { return layout::valid_task_name(name); }

bool same_settings(const Task& a, const Task& b) {
  return std::tie(a.name, a.cron, a.run, a.timezone, a.env, a.workdir, a.enabled, a.nodes, a.user, a.group, a.policy) ==
         std::tie(b.name, b.cron, b.run, b.timezone, b.env, b.workdir, b.enabled, b.nodes, b.user, b.group, b.policy);
}

tl::expected<Config, Problems> parse_config(std::string_view text, std::string_view file_name) {
  return parse_guarded(text, file_name, fs::path(file_name).parent_path());
}

tl::expected<Config, Problems> load_config(const std::string& path) {
  auto cannot_read = [&](const std::string& why) {
    return tl::unexpected(Problems{Problem{path, 0, 0, "", "cannot read the configuration file: " + why}});
  };
  auto read = read_file(path);
  if (!read) return cannot_read(read.error().message);
  const std::string text = std::move(*read);
  std::error_code ec;

  fs::path absolute = fs::absolute(path, ec);
  if (ec) absolute = path;
  auto config = parse_guarded(text, path, absolute.parent_path());
  if (!config) return config;
  // Secrets are read here, at load (and reload), so a missing file is
  // refused with the sink's position rather than found at the first failure.
  Problems problems;
  for (NotifySink& sink : config->notify) {
    if (sink.secret_file.empty()) continue;
    std::ifstream in(sink.secret_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      problems.push_back(Problem{path, sink.line, sink.column, "notify." + sink.name + ".secret_file",
                                 "cannot read " + sink.secret_file + (in ? ": empty file" : ": " + std::string(std::strerror(errno)))});
      continue;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty())
      problems.push_back(Problem{path, sink.line, sink.column, "notify." + sink.name + ".secret_file",
                                 sink.secret_file + ": the first line (the secret) is empty"});
    sink.secret = line;
  }
  // Users and groups are looked up here, at load (and reload), so a task
  // that could never start is refused with the key's position.
  for (const Task& t : config->tasks) {
    if (!t.user.empty() && !user_exists(t.user))
      problems.push_back(Problem{path, t.user_at.line, t.user_at.column, join(join("tasks", t.name), "user"),
                                 "unknown user " + quote(t.user) + " (not in the passwd database)"});
    if (!t.group.empty() && !group_exists(t.group))
      problems.push_back(Problem{path, t.group_at.line, t.group_at.column, join(join("tasks", t.name), "group"),
                                 "unknown group " + quote(t.group) + " (not in the group database)"});
  }
  if (!problems.empty()) return tl::unexpected(std::move(problems));
  return config;
}

}  // namespace cronkeep::config
