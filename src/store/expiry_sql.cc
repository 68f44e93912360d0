#include "store/expiry_sql.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace cronkeep::store::expiry_sql {
namespace {

constexpr const char* kExecuted = "IN ('succeeded', 'failed', 'timeout', 'cancelled', 'crashed', 'log_overflow')";
constexpr const char* kRecords = "IN ('skipped', 'missed')";
constexpr const char* kTerminal = "NOT IN ('pending', 'running')";
constexpr const char* kSucceeded = "= 'succeeded'";
// The failure statuses; last_outcomes() names them one by one on PostgreSQL.
constexpr const char* kFailures = "IN ('failed', 'timeout', 'crashed', 'log_overflow')";

const char* status_test(Kind k) {
  switch (k) {
    case Kind::executed: return kExecuted;
    case Kind::records: return kRecords;
    case Kind::terminal: return kTerminal;
    case Kind::succeeded: return kSucceeded;
    case Kind::failures: return kFailures;
  }
  return kTerminal;
}

// How far back from a task's newest run its newest success, failure and
// terminal run are looked for (nth_newest): an exemption check needs only
// some such run newer than the candidate, and a candidate newer than every
// one found is checked on the rows.
constexpr int kRecent = 1000;

// A task's thresholds, in the order of the per-task JSON (after the name).
constexpr const char* kFields[] = {"cut", "cutf", "ef", "rf", "nt", "ns", "nf"};

// Parameter n: SQLite's ?n; PostgreSQL's $n, typed (libpq sends text).
std::string p(Dialect d, int n) {
  if (d == Dialect::sqlite) return "?" + std::to_string(n);
  return "$" + std::to_string(n) + "::bigint";
}

// The class of a run: 1 succeeded, 2 a failure status, 3 cancelled,
// 4 skipped or missed (records), 0 in flight, -1 a status this build does
// not know.
constexpr const char* kClass =
    "CASE r.status WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 WHEN 'timeout' THEN 2 WHEN 'crashed' THEN 2"
    " WHEN 'log_overflow' THEN 2 WHEN 'cancelled' THEN 3 WHEN 'skipped' THEN 4 WHEN 'missed' THEN 4"
    " WHEN 'pending' THEN 0 WHEN 'running' THEN 0 ELSE -1 END";

// The common table expressions: per_task (parameter 1), base (each run with
// its class and its task's thresholds, restricted by `where`) and
// classified (the reason code of the per-task rules and max_age, NULL when
// none expires the run). On PostgreSQL `fence` (OFFSET 0) keeps classified
// a subquery of its own, so that a caller that refers to the reason several
// times computes it once; SQLite merges it into the caller (a co-routine
// costs more than the second evaluation), and pages need the merge on both
// so that the database reads runs in id order and stops at the page's end.
std::string ctes(Dialect d, const std::string& where, bool fence) {
  const std::string f = fence && d == Dialect::postgres ? " OFFSET 0" : "";
  // The task's thresholds. SQLite: a table from the JSON array, joined on
  // task through an automatic index. PostgreSQL: one lookup per run in the
  // JSON object (a binary search on its keys), in a LATERAL subquery, so
  // that pages stay a nested loop over the primary key in id order (a hash
  // join would have to sort) and the lookup is done once per run.
  std::string per_task, from;
  auto field = [&](int i) {
    return d == Dialect::sqlite ? "pt." + std::string(kFields[i])
                                : "(pt.v->>" + std::to_string(i) + ")::bigint";
  };
  const std::string known = d == Dialect::sqlite ? "pt.task IS NOT NULL" : "pt.v IS NOT NULL";
  if (d == Dialect::sqlite) {
    per_task = "per_task AS MATERIALIZED (SELECT CAST(json_extract(e.value, '$[0]') AS TEXT) AS task";
    for (int i = 0; i < 7; ++i)
      per_task += ", json_extract(e.value, '$[" + std::to_string(i + 1) + "]') AS " + kFields[i];
    per_task += " FROM json_each(?1) AS e), ";
    from = "runs r LEFT JOIN per_task pt ON pt.task = r.task";
  } else {
    from = "runs r LEFT JOIN LATERAL (SELECT $1::jsonb -> r.task AS v OFFSET 0) pt ON true";
  }
  // The exemptions: the task's newest terminal run, newest success, newest
  // failure. Checked only for a run a per-task rule would expire; a run
  // older than the newest one in the marks is not exempt, a newer one (it
  // finished since, or its task is new) is looked up in the task index
  // (task, id DESC, status) alone.
  auto exempt = [](const char* newest, const char* status) {
    return std::string("b.id >= COALESCE(b.") + newest +
           ", 0) AND NOT EXISTS (SELECT 1 FROM runs n WHERE n.task = b.task AND n.id > b.id AND n.status " + status +
           ")";
  };
  const std::string floor_of = "(CASE WHEN b.cls = 4 THEN b.rf ELSE b.ef END)";
  return per_task +
         "base AS (SELECT r.id, r.task, r.log_bytes, COALESCE(r.finished_at, r.created_at) AS fin, " + kClass +
         " AS cls,"
         " CASE WHEN " + known + " THEN " + field(0) + " ELSE " + p(d, 2) + " END AS cut,"
         " CASE WHEN " + known + " THEN " + field(1) + " ELSE " + p(d, 3) + " END AS cutf, " +
         field(2) + " AS ef, " + field(3) + " AS rf, " + field(4) + " AS nt, " + field(5) + " AS ns, " + field(6) +
         " AS nf FROM " + from + (where.empty() ? "" : " WHERE " + where) +
         "),"
         " classified AS (SELECT b.id, b.cls, b.log_bytes, b.fin, CASE WHEN b.cls > 0 THEN COALESCE("
         " CASE WHEN b.id < " + floor_of + " OR b.fin < (CASE WHEN b.cls = 2 THEN b.cutf ELSE b.cut END) THEN"
         "  CASE WHEN " + exempt("nt", kTerminal) + " THEN NULL"
         "   WHEN b.cls = 1 AND " + exempt("ns", kSucceeded) + " THEN NULL"
         "   WHEN b.cls = 2 AND " + exempt("nf", kFailures) + " THEN NULL"
         "   WHEN b.id < " + floor_of + " THEN 0 WHEN b.cls = 2 THEN 2 ELSE 1 END"
         " END,"
         " CASE WHEN b.fin < " + p(d, 4) + " THEN 3 END) END AS reason FROM base b" + f + ")";
}

std::string with(Dialect d, const std::string& where, bool fence) {
  return "WITH " + ctes(d, where, fence) + " ";
}

// The candidates: a run no rule can expire is left out before its task is
// looked up (parameters 5 and 6, Prefilter).
std::string candidates(Dialect d) {
  return "(COALESCE(r.finished_at, r.created_at) < " + p(d, 5) + " OR r.id < " + p(d, 6) + ")";
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_json_number(std::string& out, std::optional<int64_t> v) {
  out += v ? std::to_string(*v) : "null";
}

}  // namespace

std::string task_names(Dialect) {
  // One index seek per task instead of a scan of every row.
  return "WITH RECURSIVE names(task) AS (SELECT MIN(task) FROM runs UNION ALL"
         " SELECT (SELECT MIN(r.task) FROM runs r WHERE r.task > names.task) FROM names WHERE names.task IS NOT NULL)"
         " SELECT task FROM names WHERE task IS NOT NULL";
}

std::string last_fire(Dialect d) {
  return "SELECT MAX(f.scheduled_at) FROM (SELECT r.scheduled_at FROM runs r WHERE r.task = " + std::string(d == Dialect::sqlite ? "?1" : "$1") +
         " AND r.trigger IN ('schedule', 'catch_up') ORDER BY r.task, r.id DESC LIMIT " +
         std::to_string(kStartupWindow) + ") f";
}

std::string last_outcomes(Dialect d) {
  // Each a walk down the (task, id DESC, status) index that stops at the
  // window's end; a task that never failed walks its index entries only.
  auto latest = [](const std::string& test) {
    return "(SELECT MAX(w.finished_at) FROM (SELECT r.finished_at FROM runs r WHERE r.task = k.task AND r.status " +
           test + " ORDER BY r.task, r.id DESC LIMIT " + std::to_string(kStartupWindow) + ") w)";
  };
  std::string failures = latest(kFailures);
  if (d == Dialect::postgres) {
    // PostgreSQL (before 17) takes an IN list on the index's third column
    // as an unordered index condition: it fetched and sorted every failure
    // of the task (7.5 s warm for 100 tasks on 10,000,000 runs). One ordered
    // walk per status stops at its window (1.7 s), over a window that holds
    // the old one, so the newest failure is the same.
    failures = "GREATEST(";
    const char* statuses[] = {"failed", "timeout", "crashed", "log_overflow"};
    for (const char* st : statuses)
      failures += std::string(st == statuses[0] ? "" : ", ") + latest("= '" + std::string(st) + "'");
    failures += ")";
  }
  return "SELECT k.task, " + latest(kSucceeded) + ", " + failures + " FROM (" + task_names(d) + ") k ORDER BY k.task";
}

std::string nth_newest(Dialect d, Kind kind) {
  const std::string task = d == Dialect::sqlite ? "?1" : "$1";
  if (kind == Kind::executed || kind == Kind::records)
    return "SELECT id FROM runs WHERE task = " + task + " AND status " + status_test(kind) +
           " ORDER BY id DESC LIMIT 1 OFFSET " + p(d, 2);
  return "SELECT MAX(id) FROM (SELECT id, status FROM runs WHERE task = " + task + " ORDER BY id DESC LIMIT " +
         std::to_string(kRecent) + ") w WHERE status " + status_test(kind);
}

std::string task_marks(Dialect d) {
  // The same queries as nth_newest(), one correlated subquery each: only
  // PostgreSQL lets an OFFSET name a column of the outer query.
  auto nth = [](Kind kind, const std::string& offset) {
    if (kind == Kind::executed || kind == Kind::records)
      return "(SELECT r.id FROM runs r WHERE r.task = k.task AND r.status " + std::string(status_test(kind)) +
             " ORDER BY r.id DESC LIMIT 1 OFFSET " + offset + ")";
    return "(SELECT MAX(w.id) FROM (SELECT r.id, r.status FROM runs r WHERE r.task = k.task ORDER BY r.id DESC LIMIT " +
           std::to_string(kRecent) + ") w WHERE w.status " + status_test(kind) + ")";
  };
  const std::string reachable = "k.keep >= 1 AND k.keep <= " + p(d, 3);
  return "WITH RECURSIVE names(task) AS (SELECT MIN(task) FROM runs UNION ALL"
         " SELECT (SELECT MIN(r.task) FROM runs r WHERE r.task > names.task) FROM names WHERE names.task IS NOT NULL),"
         " k AS (SELECT n.task, COALESCE(($1::jsonb ->> n.task)::bigint, " + p(d, 2) +
         ") AS keep FROM names n WHERE n.task IS NOT NULL)"
         " SELECT k.task, k.keep, CASE WHEN " + reachable + " THEN " + nth(Kind::executed, "k.keep - 1") +
         " END, CASE WHEN " + reachable + " THEN " + nth(Kind::records, "k.keep - 1") + " END, " +
         nth(Kind::terminal, "") + ", " + nth(Kind::succeeded, "") + ", " + nth(Kind::failures, "") + " FROM k";
}

std::string keep_runs_json(const ExpiryRules& rules) {
  std::string out = "{";
  for (const auto& [name, rule] : rules.tasks) {
    if (out.size() > 1) out += ',';
    append_json_string(out, name);
    out += ':' + std::to_string(rule.keep_runs);
  }
  return out + "}";
}

std::optional<int64_t> cutoff(TimePoint now, Millis limit) {
  if (limit.count() <= 0) return std::nullopt;
  return to_unix_ms(now) - limit.count();
}

std::string per_task_json(Dialect d, const ExpiryRules& rules, const ExpiryMarks& marks) {
  const bool object = d == Dialect::postgres;
  std::string out = object ? "{" : "[";
  for (const ExpiryMarks::TaskMarks& t : marks.tasks) {
    auto found = rules.tasks.find(t.task);
    const ExpiryRule& rule = found != rules.tasks.end() ? found->second : rules.defaults;
    if (out.size() > 1) out += ',';
    if (object) {
      append_json_string(out, t.task);
      out += ":[";
    } else {
      out += '[';
      append_json_string(out, t.task);
      out += ',';
    }
    append_json_number(out, cutoff(rules.now, rule.keep_for));
    out += ',';
    append_json_number(out, cutoff(rules.now, rule.keep_failed_for));
    for (int64_t id : {t.executed_floor, t.records_floor, t.newest, t.newest_success, t.newest_failure}) {
      out += ',';
      append_json_number(out, id ? std::optional(id) : std::nullopt);
    }
    out += ']';
  }
  out += object ? "}" : "]";
  return out;
}

std::string status_counts(Dialect) { return "SELECT status, COUNT(*) FROM runs GROUP BY status"; }

std::string newest_executed_finish(Dialect) {
  // One seek per status on runs_by_status_finished, and the few terminal
  // runs without finished_at (created_at stands for it).
  std::string sql = "SELECT MAX(m) FROM (";
  for (const char* status : {"succeeded", "failed", "timeout", "cancelled", "crashed", "log_overflow"})
    sql += std::string("SELECT MAX(finished_at) AS m FROM runs WHERE status = '") + status + "' UNION ALL ";
  return sql + "SELECT MAX(created_at) FROM runs WHERE finished_at IS NULL AND status " + kExecuted + ") x";
}

std::string total_bytes(Dialect d) {
  return std::string("SELECT COALESCE(SUM(CASE WHEN log_bytes > 0 THEN log_bytes ELSE 0 END), 0)") +
         (d == Dialect::postgres ? "::bigint" : "") + " FROM runs";
}

std::string expired_summary(Dialect d) {
  return with(d, candidates(d), true) +
         "SELECT COUNT(*), COUNT(CASE WHEN reason IN (1, 2, 3) THEN 1 END),"
         " COALESCE(SUM(CASE WHEN log_bytes > 0 THEN log_bytes ELSE 0 END), 0)" +
         std::string(d == Dialect::postgres ? "::bigint" : "") +
         ", MAX(id) FROM classified WHERE reason IS NOT NULL";
}

std::string survivors(Dialect d) {
  return with(d, "r.id > " + p(d, 5), false) +
         "SELECT id, log_bytes FROM classified WHERE cls > 0 AND reason IS NULL ORDER BY id LIMIT " + p(d, 6);
}

std::string nth_survivor(Dialect d) {
  return with(d, "", false) + "SELECT id FROM classified WHERE cls > 0 AND reason IS NULL ORDER BY id LIMIT 1 OFFSET " +
         p(d, 5);
}

std::string page(Dialect d) {
  return with(d, "r.id > " + p(d, 9) + " AND r.id <= " + p(d, 10) + " AND " + candidates(d), false) +
         "SELECT id, verdict FROM (SELECT id, COALESCE(reason, CASE WHEN cls > 0 AND id < " + p(d, 7) +
         " THEN 4 WHEN cls > 0 AND id < " + p(d, 8) +
         " THEN 5 END) AS verdict FROM classified) v WHERE verdict IS NOT NULL ORDER BY id LIMIT " + p(d, 11);
}

std::string task_expired(Dialect d) {
  const std::string task = d == Dialect::sqlite ? "?9" : "$9";
  return with(d, "r.task = " + task + " AND r.id <= " + p(d, 10) + " AND " + candidates(d), false) +
         "SELECT verdict, COUNT(*), SUM(log_bytes)" + (d == Dialect::postgres ? "::bigint" : "") +
         ", MIN(id), MAX(id) FROM (SELECT id, log_bytes, COALESCE(reason, CASE WHEN cls > 0 AND id < " + p(d, 7) +
         " THEN 4 WHEN cls > 0 AND id < " + p(d, 8) +
         " THEN 5 END) AS verdict FROM classified) v WHERE verdict IS NOT NULL GROUP BY verdict";
}

std::string task_terminal(Dialect d) {
  return std::string("SELECT COUNT(*) FROM runs WHERE task = ") + (d == Dialect::sqlite ? "?1" : "$1") +
         " AND status " + kTerminal;
}

Prefilter prefilter(const ExpiryRules& rules, const ExpiryMarks& marks, bool with_ceilings) {
  Prefilter out;
  auto cut = [&](std::optional<int64_t> c) {
    if (c && (!out.cut || *c > *out.cut)) out.cut = c;
  };
  auto rule_cuts = [&](const ExpiryRule& r) {
    cut(cutoff(rules.now, r.keep_for));
    cut(cutoff(rules.now, r.keep_failed_for));
  };
  rule_cuts(rules.defaults);  // tasks the marks do not know
  cut(cutoff(rules.now, rules.max_age));
  for (const ExpiryMarks::TaskMarks& t : marks.tasks) {
    auto found = rules.tasks.find(t.task);
    if (found != rules.tasks.end()) rule_cuts(found->second);
    out.below = std::max({out.below, t.executed_floor, t.records_floor});
  }
  if (with_ceilings) out.below = std::max({out.below, marks.max_runs_below, marks.max_size_below});
  return out;
}

void count_status(Summary& s, std::string_view status, int64_t n) {
  s.runs += n;
  auto parsed = parse_status(status);
  if (!parsed) s.unknown += n;
  else if (is_terminal(*parsed)) s.terminal += n;
}

Status fill_task_marks(const ExpiryRules& rules, ExpiryMarks& marks, int64_t runs, const NthNewest& query) {
  for (ExpiryMarks::TaskMarks& t : marks.tasks) {
    auto found = rules.tasks.find(t.task);
    const int64_t keep = (found != rules.tasks.end() ? found->second : rules.defaults).keep_runs;
    const std::pair<Kind, int64_t*> newest[] = {
        {Kind::terminal, &t.newest}, {Kind::succeeded, &t.newest_success}, {Kind::failures, &t.newest_failure}};
    for (const auto& [kind, field] : newest) {
      auto id = query(t.task, kind, 0);  // among the task's kRecent newest runs; no offset
      if (!id) return tl::unexpected(id.error());
      *field = id->value_or(0);
    }
    if (keep < 1) {
      // No run of either kind is among the newest: every one is below.
      t.executed_floor = t.records_floor = std::numeric_limits<int64_t>::max();
      continue;
    }
    if (keep > runs) continue;  // no task has that many runs: no floor to look for
    for (Kind kind : {Kind::executed, Kind::records}) {
      auto id = query(t.task, kind, keep - 1);
      if (!id) return tl::unexpected(id.error());
      (kind == Kind::records ? t.records_floor : t.executed_floor) = id->value_or(0);
    }
  }
  return {};
}

Status apply_summary(const ExpiryRules& rules, const Summary& s, ExpiryMarks& marks, const NthSurvivor& nth,
                     const SurvivorPage& survivors) {
  if (s.unknown > 0)
    return fail(ErrorCode::corruption, std::to_string(s.unknown) + " run(s) have a status this build does not know");
  const int64_t survivor_count = s.terminal - s.expired;
  const int64_t kept_bytes = s.total_bytes - s.expired_bytes;  // survivors' and in-flight runs'
  marks.terminal = s.terminal;
  marks.expired = s.expired;
  marks.expired_by_age = s.expired_by_age;
  marks.newest_executed_finish =
      s.newest_executed_finish ? std::optional(from_unix_ms(*s.newest_executed_finish)) : std::nullopt;
  marks.last_expired = s.last_expired.value_or(0);
  marks.max_runs_below = marks.max_size_below = 0;

  // max_runs: the oldest survivors beyond the newest max_runs go; the first
  // one that stays is the bound.
  int64_t dropped = 0;
  if (rules.max_runs > 0 && survivor_count > rules.max_runs) {
    dropped = survivor_count - rules.max_runs;
    auto bound = nth(dropped);
    if (!bound) return tl::unexpected(bound.error());
    if (!*bound) return fail(ErrorCode::conflict, "the history changed while retention read it");
    marks.max_runs_below = **bound;
    marks.expired += dropped;
  }
  // max_size: the oldest survivors go (whatever took them, max_runs or this)
  // until the bytes left fit: walk them oldest first, summing, until the
  // bytes before a survivor reach the excess.
  if (rules.max_log_bytes > 0 && static_cast<uint64_t>(std::max<int64_t>(0, kept_bytes)) > rules.max_log_bytes) {
    const int64_t excess = kept_bytes - static_cast<int64_t>(rules.max_log_bytes);
    constexpr int64_t kPage = 4096;
    int64_t before = 0, seen = 0, after = 0;
    marks.max_size_below = std::numeric_limits<int64_t>::max();  // unless one survivor stays
    bool found = false;
    while (!found) {
      auto page = survivors(after, kPage);
      if (!page) return tl::unexpected(page.error());
      for (const auto& [id, bytes] : *page) {
        if (before >= excess) {
          marks.max_size_below = id;
          found = true;
          break;
        }
        before += std::max<int64_t>(0, bytes);
        ++seen;
      }
      if (page->size() < static_cast<size_t>(kPage)) break;
      after = page->back().first;
    }
    marks.expired += std::max<int64_t>(0, seen - dropped);
  }
  const int64_t bound = std::max(marks.max_runs_below, marks.max_size_below);
  if (bound > 0) marks.last_expired = std::max(marks.last_expired, bound - 1);
  return {};
}

}  // namespace cronkeep::store::expiry_sql
