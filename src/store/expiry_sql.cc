#include "store/expiry_sql.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace cronkeep::store::expiry_sql {
namespace {

constexpr const char* kExecuted = "('succeeded', 'failed', 'timeout', 'cancelled', 'crashed', 'log_overflow')";
constexpr const char* kRecords = "('skipped', 'missed')";
constexpr const char* kFailures = "('failed', 'timeout', 'crashed', 'log_overflow')";

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
// its class and its task's thresholds; `range` restricts it by id) and
// classified (the reason code of the per-task rules and max_age, NULL when
// none expires the run). `fence` keeps a subquery from being merged into
// its caller, so that the reason is computed once per row where the caller
// refers to it several times (an aggregate); pages leave it out, so that
// the database reads runs in id order and stops at the page's end.
std::string ctes(Dialect d, const std::string& range, bool fence) {
  const std::string f = !fence ? "" : d == Dialect::sqlite ? " LIMIT -1" : " OFFSET 0";
  const std::string per_task =
      d == Dialect::sqlite
          ? "SELECT CAST(json_extract(e.value, '$[0]') AS TEXT) AS task, json_extract(e.value, '$[1]') AS cut,"
            " json_extract(e.value, '$[2]') AS cutf, json_extract(e.value, '$[3]') AS ef,"
            " json_extract(e.value, '$[4]') AS rf FROM json_each(?1) AS e"
          : "SELECT e->>0 AS task, (e->>1)::bigint AS cut, (e->>2)::bigint AS cutf, (e->>3)::bigint AS ef,"
            " (e->>4)::bigint AS rf FROM jsonb_array_elements($1::jsonb) AS e";
  // The exemptions: the task's newest terminal run, newest success, newest
  // failure. Checked only for a run a per-task rule would expire, on the
  // task index (task, id DESC, status) alone.
  auto newer = [](const std::string& status_test) {
    return "EXISTS (SELECT 1 FROM runs n WHERE n.task = b.task AND n.id > b.id AND n.status " + status_test + ")";
  };
  const std::string floor_of = "(CASE WHEN b.cls = 4 THEN b.rf ELSE b.ef END)";
  return "per_task AS MATERIALIZED (" + per_task +
         "),"
         " base AS (SELECT r.id, r.task, r.log_bytes, COALESCE(r.finished_at, r.created_at) AS fin, " +
         kClass +
         " AS cls,"
         " CASE WHEN pt.task IS NULL THEN " + p(d, 2) + " ELSE pt.cut END AS cut,"
         " CASE WHEN pt.task IS NULL THEN " + p(d, 3) + " ELSE pt.cutf END AS cutf,"
         " pt.ef, pt.rf FROM runs r LEFT JOIN per_task pt ON pt.task = r.task" +
         (range.empty() ? "" : " WHERE " + range) + f +
         "),"
         " classified AS (SELECT b.id, b.cls, b.log_bytes, b.fin, CASE WHEN b.cls > 0 THEN COALESCE("
         " CASE WHEN b.id < " + floor_of + " OR b.fin < (CASE WHEN b.cls = 2 THEN b.cutf ELSE b.cut END) THEN"
         "  CASE WHEN NOT " + newer("NOT IN ('pending', 'running')") + " THEN NULL"
         "   WHEN b.cls = 1 AND NOT " + newer("= 'succeeded'") + " THEN NULL"
         "   WHEN b.cls = 2 AND NOT " + newer(std::string("IN ") + kFailures) + " THEN NULL"
         "   WHEN b.id < " + floor_of + " THEN 0 WHEN b.cls = 2 THEN 2 ELSE 1 END"
         " END,"
         " CASE WHEN b.fin < " + p(d, 4) + " THEN 3 END) END AS reason FROM base b" + f + ")";
}

std::string with(Dialect d, const std::string& range, bool fence) {
  return "WITH " + ctes(d, range, fence) + " ";
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

std::string keep_runs_floor(Dialect d, bool records) {
  const std::string task = d == Dialect::sqlite ? "?1" : "$1";
  return "SELECT id FROM runs WHERE task = " + task + " AND status IN " + (records ? kRecords : kExecuted) +
         " ORDER BY id DESC LIMIT 1 OFFSET " + p(d, 2);
}

std::optional<int64_t> cutoff(TimePoint now, Millis limit) {
  if (limit.count() <= 0) return std::nullopt;
  return to_unix_ms(now) - limit.count();
}

std::string per_task_json(const ExpiryRules& rules, const ExpiryMarks& marks) {
  std::string out = "[";
  for (const ExpiryMarks::Floors& t : marks.tasks) {
    auto found = rules.tasks.find(t.task);
    const ExpiryRule& rule = found != rules.tasks.end() ? found->second : rules.defaults;
    if (out.size() > 1) out += ',';
    out += '[';
    append_json_string(out, t.task);
    out += ',';
    append_json_number(out, cutoff(rules.now, rule.keep_for));
    out += ',';
    append_json_number(out, cutoff(rules.now, rule.keep_failed_for));
    out += ',';
    append_json_number(out, t.executed ? std::optional(t.executed) : std::nullopt);
    out += ',';
    append_json_number(out, t.records ? std::optional(t.records) : std::nullopt);
    out += ']';
  }
  out += ']';
  return out;
}

std::string summary(Dialect d) {
  const std::string sum_cast = d == Dialect::postgres ? "::bigint" : "";
  return with(d, "", true) +
         "SELECT COUNT(CASE WHEN cls < 0 THEN 1 END), COUNT(CASE WHEN cls > 0 THEN 1 END), COUNT(reason),"
         " COUNT(CASE WHEN reason IN (1, 2, 3) THEN 1 END), MAX(CASE WHEN cls IN (1, 2, 3) THEN fin END),"
         " COUNT(CASE WHEN cls > 0 AND reason IS NULL THEN 1 END),"
         " COALESCE(SUM(CASE WHEN cls >= 0 AND reason IS NULL AND log_bytes > 0 THEN log_bytes ELSE 0 END), 0)" +
         sum_cast + ", MAX(CASE WHEN reason IS NOT NULL THEN id END) FROM classified";
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
  return with(d, "r.id > " + p(d, 7) + " AND r.id <= " + p(d, 8), false) +
         "SELECT id, verdict FROM (SELECT id, CASE WHEN reason IS NOT NULL THEN reason"
         " WHEN cls > 0 AND id < " + p(d, 5) + " THEN 4 WHEN cls > 0 AND id < " + p(d, 6) +
         " THEN 5 END AS verdict FROM classified) v WHERE verdict IS NOT NULL ORDER BY id LIMIT " + p(d, 9);
}

Status fill_floors(const ExpiryRules& rules, ExpiryMarks& marks, const FloorQuery& query) {
  for (ExpiryMarks::Floors& t : marks.tasks) {
    auto found = rules.tasks.find(t.task);
    const int64_t keep = (found != rules.tasks.end() ? found->second : rules.defaults).keep_runs;
    if (keep < 1) {
      // No run of either kind is among the newest: every one is below.
      t.executed = t.records = std::numeric_limits<int64_t>::max();
      continue;
    }
    for (bool records : {false, true}) {
      auto id = query(t.task, records, keep - 1);
      if (!id) return tl::unexpected(id.error());
      (records ? t.records : t.executed) = id->value_or(0);
    }
  }
  return {};
}

Status apply_summary(const ExpiryRules& rules, const Summary& s, ExpiryMarks& marks, const NthSurvivor& nth,
                     const SurvivorPage& survivors) {
  if (s.unknown > 0)
    return fail(ErrorCode::corruption, std::to_string(s.unknown) + " run(s) have a status this build does not know");
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
  if (rules.max_runs > 0 && s.survivors > rules.max_runs) {
    dropped = s.survivors - rules.max_runs;
    auto bound = nth(dropped);
    if (!bound) return tl::unexpected(bound.error());
    if (!*bound) return fail(ErrorCode::conflict, "the history changed while retention read it");
    marks.max_runs_below = **bound;
    marks.expired += dropped;
  }
  // max_size: the oldest survivors go (whatever took them, max_runs or this)
  // until the bytes left fit: walk them oldest first, summing, until the
  // bytes before a survivor reach the excess.
  if (rules.max_log_bytes > 0 && static_cast<uint64_t>(std::max<int64_t>(0, s.kept_bytes)) > rules.max_log_bytes) {
    const int64_t excess = s.kept_bytes - static_cast<int64_t>(rules.max_log_bytes);
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
