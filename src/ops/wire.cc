#include "ops/wire.h"

#include "archive/archive.h"
#include "base/units.h"

namespace cronkeep::ops {
namespace {

template <class T>
Json opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

const char* auto_vacuum_name(int64_t v) { return v == 2 ? "incremental" : v == 1 ? "full" : "none"; }

// Reading JSON back without exceptions: each getter checks the type and
// records the first field that was missing or of the wrong type.
class Reader {
 public:
  explicit Reader(const Json& j, std::string where = "") : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) bad("", "an object");
  }
  bool has(const char* key) const { return j_.is_object() && j_.contains(key) && !j_[key].is_null(); }
  int64_t integer(const char* key) {
    if (!has(key) || !j_[key].is_number_integer()) return bad(key, "an integer"), 0;
    return j_[key].get<int64_t>();
  }
  std::optional<int64_t> opt_integer(const char* key) {
    if (!has(key)) return std::nullopt;
    return integer(key);
  }
  bool boolean(const char* key) {
    if (!has(key) || !j_[key].is_boolean()) return bad(key, "true or false"), false;
    return j_[key].get<bool>();
  }
  std::string string(const char* key) {
    if (!has(key) || !j_[key].is_string()) return bad(key, "a string"), "";
    return j_[key].get<std::string>();
  }
  std::string opt_string(const char* key) { return has(key) ? string(key) : ""; }
  std::optional<TimePoint> time(const char* key) {
    if (!has(key)) return std::nullopt;
    auto t = parse_rfc3339(string(key));
    if (!t) bad(key, "an RFC 3339 time");
    return t;
  }
  const Json& array(const char* key) {
    static const Json kEmpty = Json::array();
    if (!has(key) || !j_[key].is_array()) return bad(key, "an array"), kEmpty;
    return j_[key];
  }
  const Json& at(const char* key) const {
    static const Json kNull;
    return has(key) ? j_[key] : kNull;
  }
  void take(const Error& e) {
    if (error_.empty()) error_ = e.message;
  }
  template <class T>
  Result<T> done(T value) {
    if (!error_.empty()) return fail(ErrorCode::corruption, "unexpected reply: " + error_);
    return value;
  }

 private:
  void bad(const char* key, const char* what) {
    if (error_.empty()) error_ = where_ + (where_.empty() || !*key ? "" : ".") + key + ": expected " + what;
  }
  const Json& j_;
  std::string where_;
  std::string error_;
};

Json figures_json(const store::MaintenanceFigures& f) {
  return Json{{"rows_deleted", f.rows_deleted},       {"files_deleted", f.files_deleted},
              {"file_errors", f.file_errors},         {"log_bytes_freed", f.log_bytes_freed},
              {"db_bytes_reclaimed", f.db_bytes_reclaimed}};
}

store::MaintenanceFigures figures_from(Reader& r, const std::string& task) {
  return store::MaintenanceFigures{0,
                                   task,
                                   r.integer("rows_deleted"),
                                   r.integer("files_deleted"),
                                   r.integer("file_errors"),
                                   r.integer("log_bytes_freed"),
                                   r.integer("db_bytes_reclaimed")};
}

}  // namespace

std::string dump(const Json& j, int indent) { return j.dump(indent, ' ', false, Json::error_handler_t::replace); }

Json time_json(const std::optional<TimePoint>& t) { return t ? Json(format_rfc3339(*t, true)) : Json(nullptr); }

// One shape for a run, in the API and in the archive of purged runs: the
// archive defines it (it is written to disk), the API shows the same.
Json to_json(const store::Run& r) { return archive::run_json(r); }

Result<store::Run> run_from_json(const Json& j) {
  Reader r(j, "run");
  store::Run run;
  run.id = r.integer("id");
  run.task = r.string("task");
  auto trigger = store::parse_trigger(r.string("trigger"));
  if (!trigger) r.take(Error{ErrorCode::corruption, "run.trigger: unknown"});
  run.trigger = trigger.value_or(store::Trigger::manual);
  run.attempt = static_cast<int>(r.integer("attempt"));
  run.retry_of = r.opt_integer("retry_of");
  auto status = store::parse_status(r.string("status"));
  if (!status) r.take(Error{ErrorCode::corruption, "run.status: unknown"});
  run.status = status.value_or(store::RunStatus::failed);
  run.scheduled_at = r.time("scheduled_at");
  run.created_at = r.time("created_at").value_or(TimePoint{});
  run.started_at = r.time("started_at");
  run.finished_at = r.time("finished_at");
  if (auto v = r.opt_integer("exit_code")) run.exit_code = static_cast<int>(*v);
  if (auto v = r.opt_integer("signal")) run.signal = static_cast<int>(*v);
  run.duration_ms = r.opt_integer("duration_ms");
  run.cpu_ms = r.opt_integer("cpu_ms");
  run.max_rss_kb = r.opt_integer("max_rss_kb");
  run.log_path = r.opt_string("log_path");
  run.log_bytes = r.integer("log_bytes");
  run.message = r.opt_string("message");
  run.node = r.opt_string("node");
  return r.done(std::move(run));
}

Json to_json(const logs::Line& l) {
  Json j{{"line", l.number}, {"stream", std::string(1, l.stream)}, {"time", time_json(l.time)}, {"text", l.text}};
  if (l.continued) j["continued"] = true;  // only on the pieces of a line over 64 KiB
  return j;
}

Result<logs::Line> line_from_json(const Json& j) {
  Reader r(j, "line");
  logs::Line l;
  l.number = r.integer("line");
  const std::string stream = r.string("stream");
  l.stream = stream.size() == 1 ? stream[0] : '?';
  l.time = r.time("time");
  l.text = r.string("text");
  if (r.has("continued")) l.continued = r.boolean("continued");
  return r.done(std::move(l));
}

const char* to_string(TaskState s) {
  switch (s) {
    case TaskState::idle: return "idle";
    case TaskState::running: return "running";
    case TaskState::queued: return "queued";
    case TaskState::paused: return "paused";
    case TaskState::disabled: return "disabled";
    case TaskState::manual: return "manual";
  }
  return "idle";
}

Json to_json(const TaskInfo& t) {
  return Json{{"task", t.name},
              {"configured", t.configured},
              {"system", t.system},
              {"cron", t.cron.empty() ? Json(nullptr) : Json(t.cron)},
              {"timezone", t.timezone.empty() ? Json(nullptr) : Json(t.timezone)},
              {"next_fire", time_json(t.next_fire)},
              {"state", to_string(t.state)},
              {"enabled", t.enabled},
              {"paused", t.paused},
              {"running", t.running},
              {"queued", t.queued},
              {"runs", t.runs},
              {"last_run", t.last_run ? to_json(*t.last_run) : Json(nullptr)},
              {"last_success", time_json(t.last_success)},
              {"last_failure", time_json(t.last_failure)}};
}

Result<TaskInfo> task_from_json(const Json& j) {
  Reader r(j, "task");
  TaskInfo t;
  t.name = r.string("task");
  t.configured = r.boolean("configured");
  t.system = r.boolean("system");
  t.cron = r.opt_string("cron");
  t.timezone = r.opt_string("timezone");
  t.next_fire = r.time("next_fire");
  const std::string state = r.string("state");
  t.state = TaskState::idle;
  for (TaskState st : {TaskState::running, TaskState::queued, TaskState::paused, TaskState::disabled, TaskState::manual})
    if (state == to_string(st)) t.state = st;
  t.enabled = r.boolean("enabled");
  t.paused = r.boolean("paused");
  t.running = static_cast<int>(r.integer("running"));
  t.queued = static_cast<int>(r.integer("queued"));
  t.runs = r.integer("runs");
  if (r.has("last_run")) {
    auto run = run_from_json(r.at("last_run"));
    if (run) t.last_run = std::move(*run);
    else r.take(run.error());
  }
  t.last_success = r.time("last_success");
  t.last_failure = r.time("last_failure");
  return r.done(std::move(t));
}

Json to_json(const RunsPage& p) { return Json{{"runs", to_json(p.runs)}, {"next_before", opt(p.next_before)}}; }

Result<RunsPage> runs_page_from_json(const Json& j) {
  Reader r(j, "runs");
  RunsPage p;
  for (const Json& item : r.array("runs")) {
    auto run = run_from_json(item);
    if (!run) return tl::unexpected(run.error());
    p.runs.push_back(std::move(*run));
  }
  p.next_before = r.opt_integer("next_before");
  return r.done(std::move(p));
}

Json to_json(const LogSlice& s) {
  return Json{{"lines", to_json(s.page.lines)},
              {"first_available", s.page.first_available},
              {"next_line", s.page.next_line},
              {"at_end", s.page.at_end},
              {"partial_last_line", s.page.partial_last_line},
              {"finalized", s.page.finalized},
              {"run_status", store::to_string(s.run_status)},
              {"note", s.page.note}};
}

Result<LogSlice> log_slice_from_json(const Json& j) {
  Reader r(j, "log");
  LogSlice s;
  for (const Json& item : r.array("lines")) {
    auto line = line_from_json(item);
    if (!line) return tl::unexpected(line.error());
    s.page.lines.push_back(std::move(*line));
  }
  s.page.first_available = r.integer("first_available");
  s.page.next_line = r.integer("next_line");
  s.page.at_end = r.boolean("at_end");
  s.page.partial_last_line = r.boolean("partial_last_line");
  s.page.finalized = r.boolean("finalized");
  s.run_status = store::parse_status(r.string("run_status")).value_or(store::RunStatus::failed);
  s.page.note = r.opt_string("note");
  return r.done(std::move(s));
}

const char* to_string(FollowEvent::Kind k) {
  switch (k) {
    case FollowEvent::Kind::line: return "line";
    case FollowEvent::Kind::rotated: return "rotated";
    case FollowEvent::Kind::dropped: return "dropped";
    case FollowEvent::Kind::done: return "done";
    case FollowEvent::Kind::error: return "error";
  }
  return "error";
}

std::optional<FollowEvent::Kind> follow_kind(std::string_view name) {
  for (auto k : {FollowEvent::Kind::line, FollowEvent::Kind::rotated, FollowEvent::Kind::dropped,
                 FollowEvent::Kind::done, FollowEvent::Kind::error})
    if (name == to_string(k)) return k;
  return std::nullopt;
}

Json to_json(const FollowEvent& e) {
  switch (e.kind) {
    case FollowEvent::Kind::line: return to_json(e.line);
    case FollowEvent::Kind::rotated: return Json{{"text", e.text}};
    case FollowEvent::Kind::dropped: return Json{{"text", e.text}, {"count", e.count}};
    case FollowEvent::Kind::done: return Json{{"status", e.text}};
    case FollowEvent::Kind::error: return Json{{"error", e.text}};
  }
  return Json::object();
}

Result<FollowEvent> follow_event_from_json(FollowEvent::Kind kind, int64_t id, const Json& j) {
  FollowEvent e;
  e.kind = kind;
  e.id = id;
  Reader r(j, to_string(kind));
  switch (kind) {
    case FollowEvent::Kind::line: {
      auto line = line_from_json(j);
      if (!line) return tl::unexpected(line.error());
      e.line = std::move(*line);
      break;
    }
    case FollowEvent::Kind::rotated: e.text = r.opt_string("text"); break;
    case FollowEvent::Kind::dropped:
      e.text = r.opt_string("text");
      e.count = r.opt_integer("count").value_or(0);
      break;
    case FollowEvent::Kind::done: e.text = r.string("status"); break;
    case FollowEvent::Kind::error: e.text = r.string("error"); break;
  }
  return r.done(std::move(e));
}

Json to_json(const CancelResult& c) { return Json{{"id", c.id}, {"cancelling", c.cancelling}}; }

Result<CancelResult> cancel_from_json(const Json& j) {
  Reader r(j, "cancel");
  CancelResult c{r.integer("id"), r.boolean("cancelling")};
  return r.done(c);
}

Json to_json(const store::Delivery& d) {
  return Json{{"id", d.id},
              {"time", time_json(d.created_at)},
              {"sink", d.sink},
              {"event", d.event},
              {"task", d.task},
              {"run_id", d.run_id ? Json(*d.run_id) : Json(nullptr)},
              {"count", d.count},
              {"attempt", d.attempt},
              {"status", d.status},
              {"response_code", d.response_code ? Json(*d.response_code) : Json(nullptr)},
              {"error", d.error}};
}

Result<store::Delivery> delivery_from_json(const Json& j) {
  Reader r(j, "notification");
  store::Delivery d;
  d.id = r.integer("id");
  d.created_at = r.time("time").value_or(TimePoint{});
  d.sink = r.string("sink");
  d.event = r.string("event");
  d.task = r.string("task");
  d.run_id = r.opt_integer("run_id");
  d.count = r.integer("count");
  d.attempt = static_cast<int>(r.integer("attempt"));
  d.status = r.string("status");
  if (auto code = r.opt_integer("response_code")) d.response_code = static_cast<int>(*code);
  d.error = r.string("error");
  return r.done(d);
}

Json to_json(const ReloadResult& r) {
  return Json{{"added", r.added},       {"removed", r.removed}, {"changed", r.changed},
              {"sections", r.sections}, {"message", r.message}, {"run_id", r.run_id}};
}

Result<ReloadResult> reload_from_json(const Json& j) {
  Reader r(j, "reload");
  ReloadResult out;
  auto names = [&](const char* key, std::vector<std::string>& into) {
    for (const Json& n : r.array(key))
      if (n.is_string()) into.push_back(n.get<std::string>());
  };
  names("added", out.added);
  names("removed", out.removed);
  names("changed", out.changed);
  names("sections", out.sections);
  out.message = r.string("message");
  out.run_id = r.integer("run_id");
  return r.done(out);
}

Json to_json(const PauseResult& p) {
  return Json{{"task", p.task}, {"paused", p.paused}, {"changed", p.changed}};
}

Result<PauseResult> pause_from_json(const Json& j) {
  Reader r(j, "pause");
  PauseResult p{r.string("task"), r.boolean("paused"), r.boolean("changed")};
  return r.done(p);
}

Result<std::map<std::string, std::string>> env_from_json(const Json& body) {
  std::map<std::string, std::string> env;
  if (!body.contains("env") || body["env"].is_null()) return env;
  if (!body["env"].is_object())
    return fail(ErrorCode::invalid_argument, "env: expected an object of strings such as {\"DRY_RUN\": \"1\"}");
  for (const auto& [k, v] : body["env"].items()) {
    if (!v.is_string()) return fail(ErrorCode::invalid_argument, "env: " + k + ": expected a string");
    env[k] = v.get<std::string>();
  }
  if (auto st = check_env(env); !st) return tl::unexpected(st.error());
  return env;
}

Json to_json(const DeleteResult& d) {
  return Json{{"id", d.id},
              {"task", d.task},
              {"log_bytes", d.log_bytes},
              {"files_deleted", d.files_deleted},
              {"archived", d.archived},
              {"message", d.message}};
}

Result<DeleteResult> delete_from_json(const Json& j) {
  Reader r(j, "delete");
  DeleteResult d{r.integer("id"), r.string("task"), r.integer("log_bytes"), r.integer("files_deleted"),
                 r.string("message"), r.boolean("archived")};
  return r.done(std::move(d));
}

Json to_json(const retention::PurgeOutcome& o, bool dry_run) {
  Json tasks = Json::array();
  int64_t runs = 0, bytes = 0;
  for (const auto& v : o.per_task) {
    tasks.push_back({{"task", v.task}, {"runs", v.runs}, {"log_bytes", v.log_bytes}});
    runs += v.runs;
    bytes += v.log_bytes;
  }
  Json j{{"dry_run", dry_run},
         {"cutoff", format_rfc3339(o.cutoff, true)},
         {"tasks", tasks},
         {"message", o.message},
         {"run_id", opt(o.run_id)},
         {"runs", dry_run ? runs : o.report.rows},
         {"log_bytes", dry_run ? bytes : o.report.log_bytes}};
  if (!dry_run) {
    j["files_deleted"] = o.report.files_deleted;
    j["files_missing"] = o.report.files_missing;
    j["file_errors"] = o.report.file_errors;
    j["archived"] = o.report.archived;
  }
  return j;
}

Result<retention::PurgeOutcome> purge_from_json(const Json& j) {
  Reader r(j, "purge");
  retention::PurgeOutcome o;
  o.dry_run = r.boolean("dry_run");
  o.cutoff = r.time("cutoff").value_or(TimePoint{});
  for (const Json& t : r.array("tasks")) {
    Reader tr(t, "purge.tasks");
    o.per_task.push_back(retention::TaskVolume{tr.string("task"), tr.integer("runs"), tr.integer("log_bytes")});
    if (auto d = tr.done(0); !d) return tl::unexpected(d.error());
  }
  o.message = r.string("message");
  o.run_id = r.opt_integer("run_id");
  if (!o.dry_run) {
    o.report.rows = r.integer("runs");
    o.report.log_bytes = r.integer("log_bytes");
    o.report.files_deleted = r.integer("files_deleted");
    o.report.files_missing = r.integer("files_missing");
    o.report.file_errors = r.integer("file_errors");
    o.report.archived = r.integer("archived");
  }
  return r.done(std::move(o));
}

Json to_json(const retention::CompactOutcome& o) {
  return Json{{"message", o.message},
              {"pages_freed", o.report.pages_freed},
              {"bytes_reclaimed", std::max<int64_t>(0, o.report.bytes_before - o.report.bytes_after)},
              {"bytes_before", o.report.bytes_before},
              {"bytes_after", o.report.bytes_after},
              {"run_id", opt(o.run_id)}};
}

Result<retention::CompactOutcome> compact_from_json(const Json& j) {
  Reader r(j, "compact");
  retention::CompactOutcome o;
  o.message = r.string("message");
  o.report.pages_freed = r.integer("pages_freed");
  o.report.bytes_before = r.integer("bytes_before");
  o.report.bytes_after = r.integer("bytes_after");
  o.run_id = r.opt_integer("run_id");
  return r.done(std::move(o));
}

Json to_json(const MaintenanceStatus& s) {
  Json tasks = Json::array();
  for (const SystemTaskStatus& t : s.system_tasks)
    tasks.push_back(Json{{"task", t.task},
                         {"schedule", t.schedule},
                         {"next_run", time_json(t.next_run)},
                         {"last_run", t.last_run ? to_json(*t.last_run) : Json(nullptr)},
                         {"last_figures", t.last_figures ? figures_json(*t.last_figures) : Json(nullptr)},
                         {"total_figures", t.total_figures ? figures_json(*t.total_figures) : Json(nullptr)}});
  const store::DbStats& db = s.database;
  return Json{{"system_tasks", tasks},
              {"database",
               {{"bytes", db.db_bytes()},
                {"page_size", db.page_size},
                {"page_count", db.page_count},
                {"free_pages", db.freelist_count},
                {"wal_bytes", db.wal_bytes},
                {"auto_vacuum", auto_vacuum_name(db.auto_vacuum)},
                {"backend", db.backend},
                {"runs_table_bytes", db.runs_table_bytes},
                {"runs_index_bytes", db.runs_index_bytes}}},
              {"log_dir_bytes", s.log_dir_bytes},
              {"disk", s.disk ? Json{{"free_bytes", s.disk->free_bytes},
                                     {"total_bytes", s.disk->total_bytes},
                                     {"min_free_space", s.disk->min_free_space},
                                     {"below_min_free_space", s.disk->below_min()}}
                              : Json(nullptr)}};
}

Result<MaintenanceStatus> status_from_json(const Json& j) {
  Reader r(j, "status");
  MaintenanceStatus s;
  for (const Json& t : r.array("system_tasks")) {
    Reader tr(t, "status.system_tasks");
    SystemTaskStatus st;
    st.task = tr.string("task");
    st.schedule = tr.string("schedule");
    st.next_run = tr.time("next_run");
    if (tr.has("last_run")) {
      auto run = run_from_json(tr.at("last_run"));
      if (!run) return tl::unexpected(run.error());
      st.last_run = std::move(*run);
    }
    for (auto [key, slot] : {std::pair{"last_figures", &st.last_figures}, std::pair{"total_figures", &st.total_figures}})
      if (tr.has(key)) {
        Reader fr(tr.at(key), key);
        *slot = figures_from(fr, st.task);
        if (auto d = fr.done(0); !d) return tl::unexpected(d.error());
      }
    if (auto d = tr.done(0); !d) return tl::unexpected(d.error());
    s.system_tasks.push_back(std::move(st));
  }
  Reader db(r.at("database"), "status.database");
  s.database.page_size = db.integer("page_size");
  s.database.page_count = db.integer("page_count");
  s.database.freelist_count = db.integer("free_pages");
  s.database.wal_bytes = db.integer("wal_bytes");
  const std::string av = db.string("auto_vacuum");
  s.database.auto_vacuum = av == "incremental" ? 2 : av == "full" ? 1 : 0;
  s.database.backend = db.string("backend");
  s.database.runs_table_bytes = db.integer("runs_table_bytes");
  s.database.runs_index_bytes = db.integer("runs_index_bytes");
  if (auto d = db.done(0); !d) return tl::unexpected(d.error());
  s.log_dir_bytes = r.integer("log_dir_bytes");
  if (r.has("disk")) {
    Reader dr(r.at("disk"), "status.disk");
    s.disk = DiskStatus{dr.integer("free_bytes"), dr.integer("total_bytes"), dr.integer("min_free_space")};
    if (auto d = dr.done(0); !d) return tl::unexpected(d.error());
  }
  return r.done(std::move(s));
}

Json to_json(const MaintenanceHistory& h) {
  Json runs = Json::array();
  for (const store::MaintenanceFigures& f : h.runs) {
    Json j{{"run_id", f.run_id}, {"task", f.task}, {"finished_at", time_json(f.finished_at)}, {"db_bytes", opt(f.db_bytes)}};
    j.update(figures_json(f));
    runs.push_back(std::move(j));
  }
  return Json{{"runs", runs}, {"next_before", opt(h.next_before)}};
}

Result<MaintenanceHistory> maintenance_history_from_json(const Json& j) {
  Reader r(j, "history");
  MaintenanceHistory h;
  for (const Json& item : r.array("runs")) {
    Reader fr(item, "history.runs");
    store::MaintenanceFigures f = figures_from(fr, fr.string("task"));
    f.run_id = fr.integer("run_id");
    f.finished_at = fr.time("finished_at");
    f.db_bytes = fr.opt_integer("db_bytes");
    if (auto d = fr.done(0); !d) return tl::unexpected(d.error());
    h.runs.push_back(std::move(f));
  }
  h.next_before = r.opt_integer("next_before");
  return r.done(std::move(h));
}

Json to_json(const store::NodeInfo& n) {
  return Json{{"name", n.name},
              {"api_address", n.api_address},
              {"started_at", time_json(n.started_at)},
              {"heartbeat_at", time_json(n.heartbeat_at)},
              {"dead_at", time_json(n.dead_at)},
              {"declared_dead_by", n.declared_dead_by},
              {"in_flight", n.in_flight},
              {"clock_offset_ms", n.clock_offset_ms ? Json(*n.clock_offset_ms) : Json()}};
}

Result<std::vector<store::NodeInfo>> nodes_from_json(const Json& j) {
  Reader r(j, "nodes");
  std::vector<store::NodeInfo> out;
  for (const Json& item : r.array("nodes")) {
    Reader nr(item, "nodes[]");
    store::NodeInfo n;
    n.name = nr.string("name");
    n.api_address = nr.string("api_address");
    n.started_at = nr.time("started_at").value_or(TimePoint{});
    n.heartbeat_at = nr.time("heartbeat_at").value_or(TimePoint{});
    n.dead_at = nr.time("dead_at");
    n.declared_dead_by = nr.opt_string("declared_dead_by");
    n.in_flight = nr.integer("in_flight");
    n.clock_offset_ms = nr.opt_integer("clock_offset_ms");
    if (auto d = nr.done(0); !d) return tl::unexpected(d.error());
    out.push_back(std::move(n));
  }
  return r.done(std::move(out));
}

Json to_json(const CheckReport& c) {
  Json problems = Json::array();
  for (const CheckProblem& p : c.problems)
    problems.push_back({{"kind", p.kind}, {"detail", p.detail}, {"repaired", p.repaired}});
  return Json{{"ok", c.ok}, {"problems", problems}, {"repaired", c.repaired}};
}

Result<CheckReport> check_from_json(const Json& j) {
  Reader r(j, "check");
  CheckReport c;
  c.ok = r.boolean("ok");
  for (const Json& p : r.array("problems")) {
    Reader pr(p, "check.problems");
    c.problems.push_back(CheckProblem{pr.string("kind"), pr.string("detail"), pr.boolean("repaired")});
    if (auto d = pr.done(0); !d) return tl::unexpected(d.error());
  }
  c.repaired = r.integer("repaired");
  return r.done(std::move(c));
}

Json to_json(const ValidateReport& v) {
  Json tasks = Json::array();
  for (const ValidatedTask& t : v.tasks) {
    Json fires = Json::array();
    for (TimePoint f : t.next_fires) fires.push_back(format_rfc3339(f));
    tasks.push_back({{"task", t.task}, {"cron", t.cron}, {"timezone", t.timezone}, {"next_fires", fires}});
  }
  return Json{{"file", v.file}, {"ok", v.ok}, {"problems", v.problems}, {"tasks", tasks}};
}

Json to_json(const Error& e) { return Json{{"error", e.message}, {"code", to_string(e.code)}}; }

Error error_from_json(int http_status, const Json& j) {
  Error e;
  e.code = http_status == 400   ? ErrorCode::invalid_argument
           : http_status == 401 ? ErrorCode::invalid_argument
           : http_status == 404 ? ErrorCode::not_found
           : http_status == 409 ? ErrorCode::conflict
           : http_status == 503 ? ErrorCode::busy
                                : ErrorCode::internal;
  if (j.is_object() && j.contains("code") && j["code"].is_string())
    if (auto code = parse_error_code(j["code"].get<std::string>())) e.code = *code;
  e.message = j.is_object() && j.contains("error") && j["error"].is_string()
                  ? j["error"].get<std::string>()
                  : "the daemon answered HTTP " + std::to_string(http_status);
  return e;
}

Result<retention::PurgeRequest> purge_request_from_json(const Json& body) {
  if (!body.is_object()) return fail(ErrorCode::invalid_argument, "the body must be a JSON object");
  static constexpr const char* kFields[] = {"older_than", "task", "status", "limit", "dry_run", "all"};
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (const char* f : kFields) known = known || key == f;
    if (!known)
      return fail(ErrorCode::invalid_argument,
                  "unknown field \"" + key + "\" (expected older_than, task, status, limit, dry_run or all)");
  }
  auto present = [&](const char* k) { return body.contains(k) && !body[k].is_null(); };
  if (!present("older_than") || !body["older_than"].is_string())
    return fail(ErrorCode::invalid_argument, "older_than: required, a duration string such as \"30d\"");
  std::optional<std::string> task, status;
  std::optional<int64_t> limit;
  bool dry_run = false, all = false;
  if (present("task")) {
    if (!body["task"].is_string()) return fail(ErrorCode::invalid_argument, "task: expected a string");
    task = body["task"].get<std::string>();
  }
  if (present("status")) {
    if (!body["status"].is_string()) return fail(ErrorCode::invalid_argument, "status: expected a string");
    status = body["status"].get<std::string>();
  }
  if (present("limit")) {
    if (!body["limit"].is_number_integer()) return fail(ErrorCode::invalid_argument, "limit: expected an integer");
    limit = body["limit"].get<int64_t>();
  }
  for (auto [key, slot] : {std::pair{"dry_run", &dry_run}, std::pair{"all", &all}})
    if (present(key)) {
      if (!body[key].is_boolean())
        return fail(ErrorCode::invalid_argument, std::string(key) + ": expected true or false");
      *slot = body[key].get<bool>();
    }
  return retention::make_purge_request(body["older_than"].get<std::string>(), task,
                                       status ? std::optional<std::string_view>(*status) : std::nullopt, limit,
                                       dry_run, all);
}

Json to_json(const retention::PurgeRequest& r) {
  Json j{{"older_than", r.older_than_text}, {"dry_run", r.dry_run}, {"all", r.all}};
  if (r.task) j["task"] = *r.task;
  if (r.status) j["status"] = store::to_string(*r.status);
  if (r.limit) j["limit"] = *r.limit;
  return j;
}

// ---- the archive of purged runs ------------------------------------------------------

Json to_json(const ArchiveFile& f) { return Json{{"date", f.date}, {"entries", f.entries}, {"bytes", f.bytes}}; }

Json to_json(const ArchivePage& p) {
  Json entries = Json::array();
  for (const std::string& text : p.entries) {
    Json e = Json::parse(text, nullptr, false);
    entries.push_back(e.is_discarded() ? Json(text) : std::move(e));  // never drop what was archived
  }
  return Json{{"date", p.date}, {"entries", std::move(entries)}, {"next", opt(p.next)}};
}

Result<std::vector<ArchiveFile>> archive_files_from_json(const Json& j) {
  Reader r(j, "archive");
  std::vector<ArchiveFile> out;
  for (const Json& item : r.array("files")) {
    Reader fr(item, "archive.files");
    out.push_back(ArchiveFile{fr.string("date"), fr.integer("entries"), fr.integer("bytes")});
    if (auto d = fr.done(0); !d) return tl::unexpected(d.error());
  }
  return r.done(std::move(out));
}

Result<ArchivePage> archive_page_from_json(const Json& j) {
  Reader r(j, "archive");
  ArchivePage p;
  p.date = r.string("date");
  for (const Json& e : r.array("entries")) p.entries.push_back(e.is_string() ? e.get<std::string>() : dump(e));
  p.next = r.opt_integer("next");
  return r.done(std::move(p));
}

// ---- for the web UI ---------------------------------------------------------------

const char* to_string(WatchEvent::Kind k) {
  switch (k) {
    case WatchEvent::Kind::ready: return "ready";
    case WatchEvent::Kind::progress: return "progress";
    case WatchEvent::Kind::state: return "state";
    case WatchEvent::Kind::dropped: return "dropped";
    case WatchEvent::Kind::done: return "done";
  }
  return "done";
}

Json to_json(const WatchEvent& e) {
  switch (e.kind) {
    case WatchEvent::Kind::ready: return Json{{"system", e.include_system}};
    case WatchEvent::Kind::state:
      return Json{{"task", e.task}, {"run_id", e.run_id}, {"status", e.status}, {"time", time_json(e.time)}};
    case WatchEvent::Kind::progress:
      return Json{{"task", e.task},  {"run_id", e.run_id}, {"phase", e.status},
                  {"done", e.count}, {"total", e.total},   {"time", time_json(e.time)}};
    case WatchEvent::Kind::dropped: return Json{{"count", e.count}};
    case WatchEvent::Kind::done: return Json{{"status", e.text}};
  }
  return Json::object();
}

Result<WatchEvent> watch_event_from_json(std::string_view kind, uint64_t seq, const Json& j) {
  Reader r(j, "event");
  WatchEvent e;
  e.seq = seq;
  if (kind == "ready") {
    e.kind = WatchEvent::Kind::ready;
    e.include_system = r.boolean("system");
  } else if (kind == "progress") {
    e.kind = WatchEvent::Kind::progress;
    e.task = r.string("task");
    e.run_id = r.integer("run_id");
    e.status = r.string("phase");
    e.count = r.integer("done");
    e.total = r.integer("total");
    e.time = r.time("time");
  } else if (kind == "state") {
    e.kind = WatchEvent::Kind::state;
    e.task = r.string("task");
    e.run_id = r.integer("run_id");
    e.status = r.string("status");
    e.time = r.time("time");
  } else if (kind == "dropped") {
    e.kind = WatchEvent::Kind::dropped;
    e.count = r.integer("count");
  } else if (kind == "done") {
    e.kind = WatchEvent::Kind::done;
    e.text = r.string("status");
  } else {
    return fail(ErrorCode::corruption, "unexpected event \"" + std::string(kind) + "\" in the events stream");
  }
  return r.done(std::move(e));
}

Json to_json(const RetentionPreview& p) {
  Json rules = Json::array();
  for (const RetentionRule& r : p.rules) rules.push_back({{"key", r.key}, {"value", r.value}, {"source", r.source}});
  Json reasons = Json::object();
  for (const auto& [reason, n] : p.by_reason) reasons[reason] = n;
  return Json{{"task", p.task},
              {"rules", rules},
              {"terminal_runs", p.terminal_runs},
              {"expired_runs", p.expired_runs},
              {"expired_log_bytes", p.expired_log_bytes},
              {"by_reason", reasons},
              {"oldest_expired_id", opt(p.oldest_expired_id)},
              {"newest_expired_id", opt(p.newest_expired_id)},
              {"held_back", p.held_back.empty() ? Json(nullptr) : Json(p.held_back)}};
}

Result<RetentionPreview> retention_preview_from_json(const Json& j) {
  Reader r(j, "retention");
  RetentionPreview p;
  p.task = r.string("task");
  for (const Json& rule : r.array("rules")) {
    Reader rr(rule, "retention.rules");
    p.rules.push_back(RetentionRule{rr.string("key"), rr.string("value"), rr.string("source")});
    if (auto d = rr.done(0); !d) return tl::unexpected(d.error());
  }
  p.terminal_runs = r.integer("terminal_runs");
  p.expired_runs = r.integer("expired_runs");
  p.expired_log_bytes = r.integer("expired_log_bytes");
  const Json& reasons = r.at("by_reason");
  if (reasons.is_object())
    for (const auto& [reason, n] : reasons.items())
      p.by_reason.emplace_back(reason, n.is_number_integer() ? n.get<int64_t>() : 0);
  p.oldest_expired_id = r.opt_integer("oldest_expired_id");
  p.newest_expired_id = r.opt_integer("newest_expired_id");
  p.held_back = r.opt_string("held_back");
  return r.done(std::move(p));
}

// A run of a strip: the columns the overview draws (status, timing, exit),
// not the whole run (no message, log or resource figures), so the answer
// for a hundred tasks stays small: about 140 bytes a run instead of 390.
namespace {
Json recent_run_json(const store::Run& r) {
  return Json{{"id", r.id},
              {"trigger", store::to_string(r.trigger)},
              {"attempt", r.attempt},
              {"status", store::to_string(r.status)},
              {"started_at", time_json(r.started_at)},
              {"finished_at", time_json(r.finished_at)},
              {"duration_ms", opt(r.duration_ms)},
              {"exit_code", opt(r.exit_code)}};
}
}  // namespace

Json to_json(const RecentRuns& r) {
  Json tasks = Json::array();
  for (const store::TaskRuns& t : r.tasks) {
    Json runs = Json::array();
    for (const store::Run& run : t.runs) runs.push_back(recent_run_json(run));
    tasks.push_back(Json{{"task", t.task}, {"runs", std::move(runs)}});
  }
  return Json{{"per_task", r.per_task}, {"tasks", std::move(tasks)}};
}

Result<RecentRuns> recent_runs_from_json(const Json& j) {
  Reader r(j, "recent");
  RecentRuns out;
  out.per_task = static_cast<int>(r.integer("per_task"));
  for (const Json& item : r.array("tasks")) {
    Reader tr(item, "recent.tasks");
    store::TaskRuns t;
    t.task = tr.string("task");
    for (const Json& one : tr.array("runs")) {
      Reader rr(one, "recent.tasks.runs");
      store::Run run;
      run.id = rr.integer("id");
      run.task = t.task;
      auto trigger = store::parse_trigger(rr.string("trigger"));
      if (!trigger) rr.take(Error{ErrorCode::corruption, "run.trigger: unknown"});
      run.trigger = trigger.value_or(store::Trigger::manual);
      run.attempt = static_cast<int>(rr.integer("attempt"));
      auto status = store::parse_status(rr.string("status"));
      if (!status) rr.take(Error{ErrorCode::corruption, "run.status: unknown"});
      run.status = status.value_or(store::RunStatus::failed);
      run.started_at = rr.time("started_at");
      run.finished_at = rr.time("finished_at");
      run.duration_ms = rr.opt_integer("duration_ms");
      if (auto v = rr.opt_integer("exit_code")) run.exit_code = static_cast<int>(*v);
      if (auto d = rr.done(0); !d) return tl::unexpected(d.error());
      t.runs.push_back(std::move(run));
    }
    if (auto d = tr.done(0); !d) return tl::unexpected(d.error());
    out.tasks.push_back(std::move(t));
  }
  return r.done(std::move(out));
}

}  // namespace cronkeep::ops
