// cronkeep's web UI: vanilla JS, no dependency, served from the daemon's
// binary. Pages are hash routes (#/, #/task/T, #/run/T/ID, #/maintenance).
// docs/ui.md describes the pages and the decisions behind them.

const TOKEN_KEY = 'cronkeep.token';
const mainEl = document.getElementById('app');
// Each route renders into a container of its own, so that a page still
// loading when the user moves on writes into its detached container only.
let app = mainEl;

// ---- small helpers -------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Binary units written as the configuration and the CLI write them
// (1 KB = 1024 B, one decimal), so "1GB" in min_free_space reads "1.0 GB".
function fmtBytes(n) {
  if (n == null) return '—';
  if (n < 1024) return n + ' B';
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(1) + ' ' + u[i];
}
function fmtMs(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  if (m < 60) return `${m}m ${r}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}
function fmtAge(iso) {
  if (!iso) return '';
  const d = (Date.now() - Date.parse(iso)) / 1000;
  const a = Math.abs(d);
  const t = a < 60 ? Math.round(a) + 's' : a < 3600 ? Math.round(a / 60) + 'm' : a < 86400 ? Math.round(a / 3600) + 'h' : Math.round(a / 86400) + 'd';
  return d >= 0 ? t + ' ago' : 'in ' + t;
}
const localFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
// A time in the viewer's zone, UTC on hover.
function time(iso, extraTitle) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: (extraTitle ? extraTitle + '\n' : '') + iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') + ' (UTC)' }, localFmt.format(d));
}
function inZone(iso, zone) {
  if (!iso || !zone) return '';
  try {
    return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short', timeZone: zone }).format(new Date(iso)) + ' ' + zone;
  } catch { return ''; }
}
function badge(status) { return h('span', { class: 'badge st-' + status }, status); }
function taskHref(t) { return '#/task/' + enc(t); }
function runHref(t, id) { return '#/run/' + enc(t) + '/' + id; }

// Cron in words for the common shapes; the expression otherwise.
function scheduleWords(cron) {
  if (!cron) return 'on demand';
  let m;
  if ((m = /^@every\s+(\S+)$/.exec(cron))) return 'every ' + m[1];
  const named = { '@hourly': 'every hour', '@daily': 'every day at 00:00', '@midnight': 'every day at 00:00', '@weekly': 'every Sunday at 00:00', '@monthly': 'on the 1st at 00:00', '@yearly': 'every 1 January', '@annually': 'every 1 January' };
  if (named[cron]) return named[cron];
  const f = cron.split(/\s+/);
  const sec = f.length === 6 ? f.shift() : null;
  if (f.length !== 5) return cron;
  const [mi, ho, dom, mon, dow] = f;
  const rest = dom === '*' && mon === '*' && dow === '*';
  if (sec && /^\*\/\d+$/.test(sec) && mi === '*' && ho === '*' && rest) return `every ${sec.slice(2)} seconds`;
  if (sec && sec !== '0') return cron;
  if (mi === '*' && ho === '*' && rest) return 'every minute';
  if (/^\*\/\d+$/.test(mi) && ho === '*' && rest) return `every ${mi.slice(2)} minutes`;
  if (/^\d+$/.test(mi) && ho === '*' && rest) return `every hour at :${mi.padStart(2, '0')}`;
  if (/^\d+$/.test(mi) && /^\d+$/.test(ho)) {
    const at = `${ho.padStart(2, '0')}:${mi.padStart(2, '0')}`;
    if (rest) return 'every day at ' + at;
    const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
    if (dom === '*' && mon === '*' && /^[0-6]$/.test(dow)) return `every ${days[+dow]} at ${at}`;
    if (dom === '*' && mon === '*' && dow === '1-5') return 'weekdays at ' + at;
    if (/^\d+$/.test(dom) && mon === '*' && dow === '*') return `on day ${dom} of each month at ${at}`;
  }
  return cron;
}

// ---- sign-in and the API -------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const dialog = document.getElementById('signin');
let signInWaiters = [];
// Shows the sign-in; resolves true once a token was entered, false on cancel.
function signIn(message) {
  document.getElementById('signin-message').textContent = message || "This action needs the daemon's token (the file {data_dir}/token).";
  const input = document.getElementById('signin-token');
  input.value = '';
  if (!dialog.open) dialog.showModal();
  input.focus();
  return new Promise((resolve) => signInWaiters.push(resolve));
}
function endSignIn(ok) {
  const waiters = signInWaiters;
  signInWaiters = [];
  if (dialog.open) dialog.close();
  waiters.forEach((w) => w(ok));
  updateAuthButton();
}
document.getElementById('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = document.getElementById('signin-token').value.trim();
  if (!v) return;
  sessionStorage.setItem(TOKEN_KEY, v);
  endSignIn(true);
});
document.getElementById('signin-cancel').addEventListener('click', () => endSignIn(false));
dialog.addEventListener('cancel', (e) => { e.preventDefault(); endSignIn(false); });
const authButton = document.getElementById('auth-button');
function updateAuthButton() { authButton.textContent = token() ? 'Sign out' : 'Sign in'; }
authButton.addEventListener('click', async () => {
  if (token()) sessionStorage.removeItem(TOKEN_KEY);
  else await signIn('Sign in to run tasks, cancel, delete, purge and compact, and to see the system tasks.');
  updateAuthButton();
  route();
});
updateAuthButton();

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: 'Bearer ' + t } : extra;
}

// A JSON call. A 401 drops the token and brings the sign-in back; the call is
// retried once a token is entered.
async function api(path, { method = 'GET', body, signal } = {}) {
  for (;;) {
    const init = { method, headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}), signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    if (res.status === 401) {
      const had = !!token();
      sessionStorage.removeItem(TOKEN_KEY);
      updateAuthButton();
      if (await signIn(had ? 'The token was refused (401). Enter the token from {data_dir}/token.' : "This action needs the daemon's token (the file {data_dir}/token).")) continue;
      throw new ApiError(401, 'not signed in');
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
    return data;
  }
}
// A mutating call: asks for the token first when there is none.
async function mutate(path, body) {
  if (!token() && !(await signIn())) throw new ApiError(401, 'not signed in');
  return api(path, { method: 'POST', body });
}

// The events feed and a run's log stream: through the tabs' shared stream
// (ui/assets/mux.js) when the browser has SharedWorker, so that any number
// of tabs holds one connection; else the page's own stream (sseOwn). Same
// events either way, to the same handler.
const MUX_URL = document.querySelector('meta[name="cronkeep-mux"]')?.content;
let muxPort = null;
const muxSubs = new Map();  // sid → {msg, handle}
let muxSeq = 0;
function sharedPort() {
  if (muxPort !== null) return muxPort;
  muxPort = false;
  if (typeof SharedWorker !== 'function' || !MUX_URL || new URLSearchParams(location.search).has('nomux')) return muxPort;
  try {
    const worker = new SharedWorker(MUX_URL, { name: 'cronkeep-stream' });
    muxPort = worker.port;
    muxPort.onmessage = (e) => {
      const m = e.data || {};
      if (m.type === 'ping') return muxPort.postMessage({ type: 'pong' });
      if (m.type === 'evs') for (const { sid, ev } of m.json ? JSON.parse(m.json) : m.list) muxSubs.get(sid)?.handle(ev);
    };
    muxPort.start();
    // Leaving (or going into the back/forward cache) says so; coming back subscribes again.
    window.addEventListener('pagehide', () => muxPort.postMessage({ type: 'bye' }));
    window.addEventListener('pageshow', (e) => { if (e.persisted) for (const s of muxSubs.values()) muxPort.postMessage(s.msg); });
  } catch { muxPort = false; }
  return muxPort;
}
function sse(url, onEvent, opts = {}) {
  const run = /^\/api\/tasks\/([^/]+)\/runs\/(\d+)\/log\/stream\?from=(-?\d+)$/.exec(url);
  const port = (url === '/api/events' || run) && !opts.lastId ? sharedPort() : false;
  if (!port) return sseOwn(url, onEvent, opts);
  const sid = ++muxSeq;
  const msg = run ? { type: 'sub', sid, token: token() || '', kind: 'run', task: decodeURIComponent(run[1]), id: +run[2], from: +run[3] }
    : { type: 'sub', sid, token: token() || '', kind: 'events' };
  let last = null;
  const close = () => { if (muxSubs.delete(sid)) port.postMessage({ type: 'unsub', sid }); };
  muxSubs.set(sid, { msg, handle: (ev) => { if (ev.id != null) last = ev.id; if (onEvent(ev) === false) close(); } });
  port.postMessage(msg);
  return { close, get lastId() { return last; } };
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization
// header). Reconnects after a dropped connection, sending Last-Event-ID so
// the server resumes after the last event received: no line twice.
function sseOwn(url, onEvent, { lastId = null, onOpen } = {}) {
  const ctrl = new AbortController();
  let stopped = false;
  let last = lastId;
  (async () => {
    let delay = 250;
    while (!stopped) {
      try {
        const hs = headers();
        if (last != null) hs['Last-Event-ID'] = String(last);
        const res = await fetch(url, { headers: hs, signal: ctrl.signal });
        if (res.status === 404 || res.status === 400) {
          const data = await res.json().catch(() => null);
          onEvent({ event: 'error', data: data || { error: res.statusText } });
          return;
        }
        if (!res.ok) throw new Error('HTTP ' + res.status);
        delay = 250;
        onOpen && onOpen();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message', data = '', id = null;
            for (const line of frame.split('\n')) {
              if (!line || line[0] === ':') continue;
              const c = line.indexOf(':');
              const f = c < 0 ? line : line.slice(0, c);
              const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (f === 'event') event = v; else if (f === 'data') data += v; else if (f === 'id') id = v;
            }
            if (!data) continue;
            if (id != null) last = id;
            let parsed;
            try { parsed = JSON.parse(data); } catch { continue; }
            if (onEvent({ event, data: parsed, id }) === false) { stopped = true; ctrl.abort(); return; }
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      if (stopped) return;
      await sleep(delay);
      delay = Math.min(delay * 2, 8000);
    }
  })();
  return { close() { stopped = true; ctrl.abort(); }, get lastId() { return last; } };
}

// ---- routing -------------------------------------------------------------------

let cleanups = [];
// What a page runs when the user leaves it; at once when already left.
const leaver = (root) => (fn) => { if (root.isConnected) cleanups.push(fn); else fn(); };

async function route() {
  cleanups.forEach((f) => { try { f(); } catch {} });
  cleanups = [];
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const root = h('div');
  mainEl.replaceChildren(root);
  app = root;
  try {
    if (!parts[0]) await overviewPage();
    else if (parts[0] === 'task' && parts[1]) await taskPage(parts[1]);
    else if (parts[0] === 'run' && parts[1] && /^\d+$/.test(parts[2] || '')) await runPage(parts[1], +parts[2]);
    else if (parts[0] === 'maintenance') await maintenancePage();
    else notFound('There is no page ' + location.hash + '.');
  } catch (e) {
    if (e.status === 404) notFound(e.message, root);
    else if (e.name !== 'AbortError') root.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Error: ' + e.message));
  }
}
function currentRoot() { return app; }
function notFound(message, root = app) {
  root.replaceChildren(h('div', { class: 'notfound', id: 'not-found' }, h('h1', {}, 'Not found'), h('p', {}, message), h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))));
}
window.addEventListener('hashchange', route);

// Run state changes from /api/events, shared by the pages that show runs.
// onChange(null) means "reload what you show": on `ready` (the stream is
// subscribed, so a change made before it is in the reload and every later
// one arrives as an event), and after events were dropped; the second
// argument names the event (ready, dropped, done).
function watchRuns(onChange) {
  const s = sse('/api/events', (ev) => {
    if (ev.event === 'state') onChange(ev.data);
    else if (ev.event === 'ready' || ev.event === 'dropped' || ev.event === 'done') onChange(null, ev.event);
  });
  return () => s.close();
}

// ---- overview ------------------------------------------------------------------

async function overviewPage() {
  const app = currentRoot();
  const onLeave = leaver(app);
  document.title = 'cronkeep';
  const filter = h('input', { type: 'search', id: 'filter', placeholder: 'Filter tasks', 'aria-label': 'Filter tasks', value: sessionStorage.getItem('cronkeep.filter') || '' });
  const tbody = h('tbody', { id: 'tasks' });
  const live = h('span', { class: 'muted', id: 'live' }, 'connecting…');
  app.append(h('h1', {}, 'Tasks'),
    h('div', { class: 'toolbar' }, filter, live),
    h('div', { class: 'scroll-x' }, h('table', { class: 'tasks' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', {}, 'Schedule'), h('th', {}, 'Next fire'), h('th', {}, 'State'),
        h('th', {}, 'Last run'), h('th', { class: 'hide-narrow' }, 'Last success'), h('th', { class: 'hide-narrow' }, 'Last failure'), h('th', {}, 'Last 30 runs'))),
      tbody)));
  const rows = new Map();  // task → {tr, info, runs}
  const apply = () => {
    const q = filter.value.trim().toLowerCase();
    sessionStorage.setItem('cronkeep.filter', filter.value);
    for (const [name, r] of rows) r.tr.hidden = !!q && !name.toLowerCase().includes(q);
  };
  filter.addEventListener('input', apply);

  const strip = (runs) => {
    const s = h('span', { class: 'strip', 'aria-label': 'last runs' });
    const max = Math.max(1, ...runs.map((r) => r.duration_ms || 0));
    for (const r of runs.slice().reverse()) {
      const bar = h('span', { class: 'b-' + r.status, title: `#${r.id} ${r.status}, ${fmtMs(r.duration_ms)}` });
      bar.style.height = Math.max(4, Math.round(22 * Math.sqrt((r.duration_ms || 0) / max))) + 'px';
      s.append(bar);
    }
    return s;
  };
  const render = (t, runs) => {
    const last = t.last_run;
    const tr = h('tr', { 'data-task': t.task, class: 'task-row' },
      h('td', {}, h('a', { href: taskHref(t.task) }, t.task), t.system ? h('span', { class: 'muted' }, ' system') : '', !t.configured ? h('span', { class: 'muted' }, ' removed') : ''),
      h('td', { title: t.cron || '' }, scheduleWords(t.cron), t.timezone && t.timezone !== 'UTC' ? h('div', { class: 'hint' }, t.timezone) : ''),
      h('td', {}, time(t.next_fire, inZone(t.next_fire, t.timezone)), t.next_fire ? h('div', { class: 'hint' }, fmtAge(t.next_fire)) : ''),
      h('td', { class: 'state' }, badge(t.state), t.queued ? h('span', { class: 'hint' }, ` ${t.queued} queued`) : ''),
      h('td', { class: 'last' }, last ? [h('a', { href: runHref(t.task, last.id) }, '#' + last.id), ' ', badge(last.status), h('div', { class: 'hint' }, fmtAge(last.finished_at || last.created_at))] : h('span', { class: 'muted' }, 'never')),
      h('td', { class: 'hide-narrow' }, time(t.last_success)),
      h('td', { class: 'hide-narrow' }, time(t.last_failure)),
      h('td', {}, strip(runs || [])));
    return tr;
  };
  const loadRuns = async (task) => (await api(`/api/tasks/${enc(task)}/runs?limit=30`)).runs;
  const reloadAll = async () => {
    // Two requests whatever the number of tasks: the tasks, and every
    // task's recent runs in one answer (GET /api/runs/recent).
    const [tasks, recent] = await Promise.all([api('/api/tasks'), api('/api/runs/recent?per_task=30')]);
    const runsOf = new Map(recent.tasks.map((t) => [t.task, t.runs]));
    rows.clear();
    tbody.replaceChildren();
    tasks.forEach((t) => { const runs = runsOf.get(t.task) || []; const tr = render(t, runs); rows.set(t.task, { tr, info: t, runs }); tbody.append(tr); });
    if (!tasks.length) tbody.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No tasks configured and no history.')));
    apply();
  };
  // Loads are never two at once: one asked for while another runs is made
  // once it ends (several asks, one load).
  let loading = null, again = false, started = false;
  const load = () => {
    started = true;
    if (loading) { again = true; return loading; }
    loading = reloadAll().finally(() => {
      loading = null;
      if (again) { again = false; load().catch(() => {}); }
    });
    return loading;
  };
  const pending = new Set();
  let timer = null;
  const reloadTask = async (task) => {
    const tasks = await api('/api/tasks');
    const t = tasks.find((x) => x.task === task);
    const old = rows.get(task);
    if (!t || !old) return load();
    const runs = await loadRuns(task);
    const tr = render(t, runs);
    old.tr.replaceWith(tr);
    rows.set(task, { tr, info: t, runs });
    apply();
  };
  // The first load waits for the stream's `ready` (subscribed: a change
  // made before it is in the load, every later one arrives as an event), so
  // a page shows its rows after one load, not two; if `ready` is slow (the
  // stream refused, reconnecting) it loads after 300 ms anyway, and the
  // `ready` that follows makes one more load.
  let first;
  const firstLoad = new Promise((resolve) => { first = resolve; });
  const begin = () => { if (!started) first(load()); };
  const fallback = setTimeout(begin, 300);
  onLeave(() => clearTimeout(fallback));
  onLeave(watchRuns((change, kind) => {
    live.textContent = 'live';
    if (!change) {
      if (kind === 'ready' && !started) begin();
      else load().catch(() => {});
      return;
    }
    pending.add(change.task);
    clearTimeout(timer);
    timer = setTimeout(() => {  // coalesce a burst of changes into one reload per task
      const tasks = [...pending];
      pending.clear();
      tasks.forEach((t) => reloadTask(t).catch(() => {}));
    }, 100);
  }));
  onLeave(() => clearTimeout(timer));
  await (await firstLoad);  // the first load's failure is the page's (route() shows it)
}

// ---- task page -----------------------------------------------------------------

const STATUSES = ['pending', 'running', 'succeeded', 'failed', 'timeout', 'cancelled', 'crashed', 'log_overflow', 'skipped', 'missed'];

async function taskPage(task) {
  const app = currentRoot();
  const onLeave = leaver(app);
  document.title = task + ' · cronkeep';
  // Both at once: the first history page does not wait for the task list.
  const [tasks, first] = await Promise.all([api('/api/tasks'), api(`/api/tasks/${enc(task)}/runs?limit=50`)]);  // 404 for an unknown task
  const info = tasks.find((t) => t.task === task);
  const msg = h('p', { id: 'task-message', role: 'status' });
  const runNow = h('button', { class: 'primary', id: 'run-now', type: 'button' }, 'Run now');
  runNow.addEventListener('click', async () => {
    runNow.disabled = true;
    try {
      const run = await mutate(`/api/tasks/${enc(task)}/run`);
      location.hash = runHref(task, run.id);
    } catch (e) { msg.textContent = 'Run now: ' + e.message; msg.className = 'error'; } finally { runNow.disabled = false; }
  });
  const status = h('select', { id: 'status-filter', 'aria-label': 'Status filter' }, h('option', { value: '' }, 'all statuses'), STATUSES.map((s) => h('option', { value: s }, s)));
  const tbody = h('tbody', { id: 'runs' });
  const newer = h('button', { type: 'button', id: 'newer' }, '← Newer');
  const older = h('button', { type: 'button', id: 'older' }, 'Older →');
  const pageInfo = h('span', { class: 'muted', id: 'page-info' });
  const retention = h('div', { class: 'card', id: 'retention' }, h('span', { class: 'muted' }, 'Loading the retention rules…'));

  app.append(h('h1', {}, task),
    h('div', { class: 'toolbar' },
      info ? [h('span', { title: info.cron || '' }, scheduleWords(info.cron)), info.timezone ? h('span', { class: 'muted' }, info.timezone) : '', badge(info.state), info.next_fire ? h('span', {}, 'next ', time(info.next_fire, inZone(info.next_fire, info.timezone))) : ''] : h('span', { class: 'muted' }, 'not in the configuration (history only)'),
      info && info.configured ? runNow : ''),
    msg,
    h('h2', {}, 'History'),
    h('div', { class: 'toolbar' }, status, newer, older, pageInfo),
    h('div', { class: 'scroll-x' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Run'), h('th', {}, 'Status'), h('th', { class: 'hide-narrow' }, 'Trigger'), h('th', {}, 'Started'),
        h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Exit'), h('th', { class: 'num hide-narrow' }, 'CPU'), h('th', { class: 'num hide-narrow' }, 'Peak memory'), h('th', { class: 'hide-narrow' }, 'Message'), h('th', {}, ''))),
      tbody)),
    h('h2', {}, 'Retention'), retention);

  // Keyset paging: `befores` is the stack of page starts (null = newest).
  let befores = [null];
  let page = first;
  const row = (r) => {
    const actions = h('td', {});
    if (r.status === 'pending' || r.status === 'running') {
      actions.append(h('button', { type: 'button', class: 'danger cancel', onclick: async (e) => {
        e.target.disabled = true;
        try { await mutate(`/api/tasks/${enc(task)}/runs/${r.id}/cancel`); msg.textContent = `Cancelling run ${r.id}.`; msg.className = ''; } catch (err) { msg.textContent = err.message; msg.className = 'error'; }
        e.target.disabled = false;
      } }, 'Cancel'));
    } else {
      actions.append(h('button', { type: 'button', class: 'danger delete', onclick: async (e) => {
        if (!confirm(`Delete run ${r.id} of ${task}, its row and its log?`)) return;
        e.target.disabled = true;
        try { const d = await mutate(`/api/tasks/${enc(task)}/runs/${r.id}/delete`); msg.textContent = d.message || `Deleted run ${r.id}.`; msg.className = ''; await load(); } catch (err) { msg.textContent = err.message; msg.className = 'error'; e.target.disabled = false; }
      } }, 'Delete'));
    }
    return h('tr', { 'data-run': r.id },
      h('td', {}, h('a', { href: runHref(task, r.id) }, '#' + r.id), r.attempt > 1 ? h('span', { class: 'hint' }, ` try ${r.attempt}`) : ''),
      h('td', {}, badge(r.status)),
      h('td', { class: 'hide-narrow' }, r.trigger),
      h('td', {}, time(r.started_at || r.created_at)),
      h('td', { class: 'num' }, fmtMs(r.duration_ms)),
      h('td', { class: 'num' }, r.exit_code ?? (r.signal ? 'sig ' + r.signal : '—')),
      h('td', { class: 'num hide-narrow' }, fmtMs(r.cpu_ms)),
      h('td', { class: 'num hide-narrow' }, r.max_rss_kb == null ? '—' : fmtBytes(r.max_rss_kb * 1024)),
      h('td', { class: 'hide-narrow' }, r.message || ''),
      actions);
  };
  const show = () => {
    tbody.replaceChildren(...page.runs.map(row));
    if (!page.runs.length) tbody.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No runs' + (status.value ? ' with status ' + status.value : '') + '.')));
    newer.disabled = befores.length <= 1;
    older.disabled = page.next_before == null;
    pageInfo.textContent = `page ${befores.length}` + (page.runs.length ? ` · runs #${page.runs[0].id}–#${page.runs[page.runs.length - 1].id}` : '');
  };
  let latest = 0;  // only the newest request's answer is shown
  const load = async () => {
    const mine = ++latest;
    const before = befores[befores.length - 1];
    const q = new URLSearchParams({ limit: '50' });
    if (before != null) q.set('before', before);
    if (status.value) q.set('status', status.value);
    const got = await api(`/api/tasks/${enc(task)}/runs?${q}`);
    if (mine !== latest) return;
    page = got;
    show();
  };
  older.addEventListener('click', () => { befores.push(page.next_before); load(); });
  newer.addEventListener('click', () => { befores.pop(); load(); });
  status.addEventListener('change', () => { befores = [null]; load(); });
  show();

  let timer = null;
  onLeave(watchRuns((change) => {
    if (change && change.task !== task) return;
    if (befores.length !== 1) return;  // only the newest page follows live
    clearTimeout(timer);
    timer = setTimeout(() => load().catch(() => {}), 150);
  }));
  onLeave(() => clearTimeout(timer));

  api(`/api/tasks/${enc(task)}/retention`).then((p) => {
    const reasons = Object.entries(p.by_reason).map(([k, v]) => `${v} by ${k}`).join(', ');
    retention.replaceChildren(
      h('table', { id: 'retention-rules' }, h('thead', {}, h('tr', {}, h('th', {}, 'Rule'), h('th', {}, 'Value'), h('th', {}, 'From'))),
        h('tbody', {}, p.rules.map((r) => h('tr', {}, h('td', {}, h('code', {}, r.key)), h('td', {}, r.value), h('td', { class: r.source === 'task' ? '' : 'muted' }, r.source))))),
      h('p', { id: 'retention-preview' }, p.expired_runs
        ? `The next sweep would delete ${p.expired_runs} of ${p.terminal_runs} ended run(s) (${fmtBytes(p.expired_log_bytes)} of logs): ${reasons}; runs #${p.oldest_expired_id}–#${p.newest_expired_id}.`
        : `The next sweep would delete none of the ${p.terminal_runs} ended run(s).`),
      p.held_back ? h('p', { class: 'notice' }, 'Age rules held back: ' + p.held_back) : '',
      h('p', { class: 'hint' }, 'The newest run, newest success and newest failure are always kept by the per-task rules.'));
  }).catch((e) => retention.replaceChildren(h('span', { class: 'error' }, 'Retention: ' + e.message)));
}

// ---- ANSI colours --------------------------------------------------------------

// Renders text with SGR escapes as spans (colours as classes, or through
// CSSOM for 256/RGB colours: no inline style attribute, so the CSP holds).
// Other escape sequences are dropped; control characters shown as symbols.
const XTERM = (n) => {
  if (n < 16) return null;
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  n -= 16;
  const c = (x) => (x ? 55 + x * 40 : 0);
  return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
};
function ansi(text, into) {
  const re = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b./g;
  let st = { fg: null, bg: null, b: false, i: false, u: false, d: false };
  let at = 0, m;
  const put = (s) => {
    if (!s) return;
    s = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => String.fromCharCode(0x2400 + (c === '\x7f' ? 0x21 : c.charCodeAt(0))));
    if (st.fg == null && st.bg == null && !st.b && !st.i && !st.u && !st.d) { into.append(s); return; }
    const span = document.createElement('span');
    const cls = [];
    if (typeof st.fg === 'number') cls.push('f' + st.fg); else if (st.fg) span.style.color = st.fg;
    if (typeof st.bg === 'number') cls.push('g' + st.bg); else if (st.bg) span.style.background = st.bg;
    if (st.b) cls.push('a-b'); if (st.i) cls.push('a-i'); if (st.u) cls.push('a-u'); if (st.d) cls.push('a-d');
    span.className = cls.join(' ');
    span.textContent = s;
    into.append(span);
  };
  while ((m = re.exec(text))) {
    put(text.slice(at, m.index));
    at = re.lastIndex;
    if (m[2] !== 'm') continue;
    const p = (m[1] || '0').split(';').map((x) => +x || 0);
    for (let k = 0; k < p.length; k++) {
      const c = p[k];
      if (c === 0) st = { fg: null, bg: null, b: false, i: false, u: false, d: false };
      else if (c === 1) st.b = true; else if (c === 2) st.d = true; else if (c === 3) st.i = true; else if (c === 4) st.u = true;
      else if (c === 22) st.b = st.d = false; else if (c === 23) st.i = false; else if (c === 24) st.u = false;
      else if (c >= 30 && c <= 37) st.fg = c - 30; else if (c >= 90 && c <= 97) st.fg = c - 82; else if (c === 39) st.fg = null;
      else if (c >= 40 && c <= 47) st.bg = c - 40; else if (c >= 100 && c <= 107) st.bg = c - 92; else if (c === 49) st.bg = null;
      else if ((c === 38 || c === 48) && p[k + 1] === 5) { const n = p[k + 2] || 0; const v = n < 16 ? n : XTERM(n); if (c === 38) st.fg = v; else st.bg = v; k += 2; }
      else if ((c === 38 || c === 48) && p[k + 1] === 2) { const v = `rgb(${p[k + 2] || 0},${p[k + 3] || 0},${p[k + 4] || 0})`; if (c === 38) st.fg = v; else st.bg = v; k += 4; }
    }
  }
  put(text.slice(at));
}

// ---- the log viewer ------------------------------------------------------------

const LH = 18;            // px per line (CSS .ln)
const BLOCK = 64;         // lines per ranged read (about a screenful: only what is on screen is fetched)
const MAX_BLOCKS = 200;   // kept in memory
const MAX_PX = 8_000_000; // scroll height cap; beyond it the scroll position maps to lines proportionally
const MAX_CHARS = 4000;   // shown per line; the rest is counted (download the raw log for it)

class LogViewer {
  constructor(base, el) {
    this.base = base;       // /api/tasks/T/runs/ID
    this.el = el;
    this.spacer = h('div', { class: 'spacer' });
    this.rows = h('div', { class: 'rows', role: 'log', 'aria-live': 'off' });
    el.append(this.spacer, this.rows);
    this.first = 1;         // first available line (drop_old rotates older ones out)
    this.total = 0;         // last complete line's number
    this.blocks = new Map();  // block index → lines (array) | Promise
    this.highlight = null;
    this.follow = false;
    this.stats = { requests: 0, bytes: 0 };
    this.frame = 0;
    el.addEventListener('scroll', () => {
      if (this.ignoreScroll) { this.ignoreScroll = false; } else if (this.follow && !this.atBottom()) this.onUnfollow && this.onUnfollow();
      this.schedule();
    });
    this.resizer = new ResizeObserver(() => this.schedule());
    this.resizer.observe(el);
  }
  destroy() { this.resizer.disconnect(); cancelAnimationFrame(this.frame); }
  async init() {
    const p = await this.fetchJson('/log?tail=1');
    this.first = p.first_available || 1;
    this.total = p.next_line - 1;
    this.layout();
    return p;
  }
  async fetchJson(q) {
    const res = await fetch(this.base + q, { headers: headers() });
    const text = await res.text();
    this.stats.requests++;
    this.stats.bytes += text.length;
    const data = JSON.parse(text);
    if (!res.ok) throw new ApiError(res.status, data.error);
    return data;
  }
  get count() { return Math.max(0, this.total - this.first + 1); }
  get visible() { return Math.ceil(this.el.clientHeight / LH) + 1; }
  get scaled() { return this.count * LH > MAX_PX; }
  layout() {
    this.spacer.style.height = this.height = Math.min(this.count * LH, MAX_PX) + LH + 'px';
    this.schedule();
  }
  // The scroll positions the lines map onto: the spacer's, not the
  // element's scrollHeight, which grows by the rows sticking out below the
  // spacer once they are moved to the bottom (then, on a 10-million-line
  // log, the last ~50 lines could not be scrolled to).
  range(ch = this.el.clientHeight) { return Math.max(1, Math.min(this.count * LH, MAX_PX) + LH - ch); }
  // The index (0-based from `first`) of the line at the top of the view.
  topIndex(st = this.el.scrollTop, ch = this.el.clientHeight) {
    if (!this.scaled) return Math.floor(st / LH);
    return Math.round(Math.min(1, st / this.range(ch)) * Math.max(0, this.count - (Math.ceil(ch / LH) + 1) + 1));
  }
  scrollToIndex(i) {
    i = Math.max(0, Math.min(i, this.count - 1));
    if (!this.scaled) this.el.scrollTop = i * LH;
    else this.el.scrollTop = Math.min(1, i / Math.max(1, this.count - this.visible + 1)) * this.range();
    this.schedule();
  }
  atBottom() { return this.el.scrollTop >= this.range() - LH * 2; }
  jumpToLine(n) {
    this.highlight = n;
    this.scrollToIndex(n - this.first - Math.floor(this.visible / 3));
  }
  toBottom() { this.ignoreScroll = true; this.scrollToIndex(this.count); this.el.scrollTop = this.el.scrollHeight; }
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }
  block(b) {
    let v = this.blocks.get(b);
    if (v) { this.blocks.delete(b); this.blocks.set(b, v); return v; }  // LRU order
    const from = this.first + b * BLOCK;
    v = this.fetchJson(`/log?from_line=${from}&lines=${BLOCK}`).then((p) => {
      const arr = this.blocks.get(b);
      const lines = Array.isArray(arr) ? arr : [];
      // Lines the live tail brought while the block was read (maybe after
      // the read): kept on this read's promise, which may have left the
      // cache meanwhile (evicted as the oldest while a slow read was out).
      for (const t of [v.tail, arr && arr !== v && arr.tail]) if (t) for (const l of t) if (l.line >= from && l.line < from + BLOCK) lines[l.line - from] = l;
      for (const l of p.lines) if (l.line >= from && l.line < from + BLOCK && l.line <= Math.max(this.total, p.next_line - 1)) lines[l.line - from] = l;
      if (p.first_available > this.first) { this.first = p.first_available; this.blocks.clear(); }
      this.blocks.set(b, lines);
      this.schedule();
      return lines;
    }).catch((e) => { this.blocks.delete(b); this.error && this.error(e); });
    this.blocks.set(b, v);
    while (this.blocks.size > MAX_BLOCKS) this.blocks.delete(this.blocks.keys().next().value);
    return v;
  }
  // A line from the live tail. The spacer and the scroll position follow
  // in the next frame's render, once for all the lines of the frame (set
  // for each line, they forced two layouts a line).
  add(l) {
    if (l.line < this.first) return;
    const i = l.line - this.first;
    const b = Math.floor(i / BLOCK);
    let arr = this.blocks.get(b);
    if (!Array.isArray(arr) && arr) (arr.tail ||= []).push(l);  // being read: merged when the read ends
    else {
      if (!arr) this.blocks.set(b, arr = []);
      arr[i % BLOCK] = l;
    }
    if (l.line > this.total) { this.total = l.line; this.grown = true; }
    this.schedule();
  }
  // Draws the lines in view. The row elements are kept from one frame to
  // the next, each at a fixed place in the rows' box (moved to the view
  // as a whole): the j-th row shows the j-th line in view, and a row
  // whose line, state and highlight are unchanged is not touched; a
  // changed one gets its text written into its text node.
  render() {
    // Everything this frame needs from the layout is read first (the
    // layout is clean at the start of a frame) and the scroll position
    // set last: one layout a frame, with the rows (setting the log's
    // height and then the scroll position first forced one more, before
    // the rows were written).
    let st = this.el.scrollTop;
    const ch = this.el.clientHeight;
    let scrollTo = null;
    if (this.grown) {
      this.grown = false;
      if (this.follow) { st = scrollTo = this.range(ch); }  // the bottom
    }
    const count = this.count;
    const visible = Math.ceil(ch / LH) + 1;
    const top = this.topIndex(st, ch);
    const n = Math.min(visible + 1, Math.max(0, count - top));
    const scaled = this.scaled;
    const offset = scaled ? st : top * LH;
    const marker = this.first > 1 && top === 0;
    const transform = `translateY(${offset}px)`;
    if (transform !== this.transform) { this.rows.style.transform = this.transform = transform; }
    // What each row should show: the marker (key 0), then lines by number.
    const want = [];
    if (marker) want.push({ key: 0, line: this.first, y: 0 });
    for (let k = 0; k < n; k++) {
      const idx = top + k;
      const b = Math.floor(idx / BLOCK);
      const v = this.blocks.get(b);
      if (!v) this.block(b);
      want.push({ key: this.first + idx, line: Array.isArray(v) ? v[idx % BLOCK] : undefined, y: (k + (marker ? 1 : 0)) * LH });
    }
    // The j-th row shows the j-th line in view: the rows are never moved
    // in the DOM (so they are in line order for reading, selection and
    // copy), only added or removed at the end when the view's height
    // changes.
    const shown = this.shown || [];
    while (shown.length < want.length) { const r = this.rowEl(); shown.push(r); this.rows.append(r.el); }
    while (shown.length > want.length) shown.pop().el.remove();
    for (let j = 0; j < want.length; j++) this.fill(shown[j], want[j]);
    this.shown = shown;
    const height = Math.min(count * LH, MAX_PX) + LH + 'px';
    if (height !== this.height) this.spacer.style.height = this.height = height;
    this.onRender && this.onRender(top + this.first, n);
    if (scrollTo != null && scrollTo !== this.el.scrollTop) { this.ignoreScroll = true; this.el.scrollTop = scrollTo; }
  }
  rowEl() {
    const no = h('span', { class: 'no' }), t = h('span', { class: 't' });
    return { el: h('div', { class: 'ln' }, no, t), no, t, key: -1, line: null, hl: false, y: null };
  }
  // Writes a row for what it is to show, only what changed.
  fill(r, w) {
    if (r.y !== w.y) { r.el.style.top = w.y + 'px'; r.y = w.y; }
    const hl = w.key === this.highlight;
    if (r.key === w.key && r.line === w.line && r.hl === hl) return;  // unchanged (or still pending)
    const line = w.line;
    r.key = w.key; r.line = line; r.hl = hl;
    if (w.key === 0) {
      r.el.className = 'ln s-m';
      delete r.el.dataset.line;
      r.no.textContent = '…';
      r.no.title = '';
      r.t.textContent = `lines 1–${this.first - 1} were rotated out (log_on_full = drop_old)`;
      return;
    }
    const cls = 'ln ' + (line ? 's-' + line.stream : 'pending') + (hl ? ' hl' : '');
    if (r.el.className !== cls) r.el.className = cls;
    r.el.dataset.line = w.key;
    setText(r.no, String(w.key));
    r.no.title = line && line.time ? line.time + ' (UTC)' + (line.stream === 'e' ? ', stderr' : line.stream === 'o' ? ', stdout' : '') : '';
    const t = r.t;
    if (!line) { t.textContent = '…'; return; }
    let text = line.text;
    if (text.length > MAX_CHARS) text = text.slice(0, MAX_CHARS);
    if (!text.includes('\x1b') && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) setText(t, text);  // plain: one text node
    else { t.textContent = ''; ansi(text, t); }
    if (line.text.length > MAX_CHARS) t.append(h('span', { class: 'muted' }, ` … ${line.text.length - MAX_CHARS} more characters (download the raw log)`));
  }
}

// An element's text, as its one text node's data when it has one (the
// node and its layout object are kept).
function setText(el, text) {
  const c = el.firstChild;
  if (c && c === el.lastChild && c.nodeType === 3) { if (c.data !== text) c.data = text; } else el.textContent = text;
}

// ---- run page ------------------------------------------------------------------

async function runPage(task, id) {
  const app = currentRoot();
  const onLeave = leaver(app);
  document.title = `${task} #${id} · cronkeep`;
  const base = `/api/tasks/${enc(task)}/runs/${id}`;
  let run = await api(base);  // 404: "run N not found"
  const meta = h('div', { class: 'card', id: 'run-meta' });
  const msg = h('p', { id: 'run-message', role: 'status' });
  const notices = h('div', { id: 'notices' });
  const renderMeta = async () => {
    const chain = [];
    if (run.retry_of) chain.push(h('span', {}, 'retry of ', h('a', { href: runHref(task, run.retry_of), id: 'retry-of' }, '#' + run.retry_of)));
    const root = run.retry_of || run.id;
    try {
      const p = await api(`/api/tasks/${enc(task)}/runs?limit=100&before=${root + 100}`);
      const tries = p.runs.filter((r) => r.id === root || r.retry_of === root).sort((a, b) => a.id - b.id);
      if (tries.length > 1) chain.push(h('span', { id: 'retry-chain' }, 'attempts: ', tries.map((r) => [r.id === run.id ? h('b', {}, '#' + r.id) : h('a', { href: runHref(task, r.id) }, '#' + r.id), ' ', badge(r.status), ' '])));
    } catch {}
    const inflight = run.status === 'pending' || run.status === 'running';
    meta.replaceChildren(
      h('div', { class: 'toolbar' }, badge(run.status), h('span', {}, 'trigger ', h('b', {}, run.trigger)), h('span', {}, 'attempt ', h('b', {}, run.attempt)), ...chain),
      h('div', { class: 'grid' },
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Started'), h('b', {}, time(run.started_at))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Finished'), h('b', {}, time(run.finished_at))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Duration'), h('b', {}, fmtMs(run.duration_ms))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Exit code'), h('b', { id: 'exit-code' }, run.exit_code ?? (run.signal ? 'signal ' + run.signal : '—'))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'CPU'), h('b', {}, fmtMs(run.cpu_ms))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Peak memory'), h('b', {}, run.max_rss_kb == null ? '—' : fmtBytes(run.max_rss_kb * 1024))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Log'), h('b', {}, fmtBytes(run.log_bytes)))),
      run.message ? h('p', {}, run.message) : '',
      h('div', { class: 'toolbar' },
        run.log_path ? h('a', { class: 'button', id: 'download', href: base + '/log/raw', download: `${task}-${id}.log` }, 'Download raw log') : '',
        inflight ? h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: async () => {
          try { await mutate(base + '/cancel'); msg.textContent = 'Cancelling…'; } catch (e) { msg.textContent = e.message; msg.className = 'error'; }
        } }, 'Cancel') : h('button', { type: 'button', class: 'danger', id: 'delete', onclick: async () => {
          if (!confirm(`Delete run ${id} of ${task}, its row and its log?`)) return;
          try { await mutate(base + '/delete'); location.hash = taskHref(task); } catch (e) { msg.textContent = e.message; msg.className = 'error'; }
        } }, 'Delete')));
  };
  app.append(h('h1', {}, h('a', { href: taskHref(task) }, task), ` · run #${id}`), meta, msg);
  await renderMeta();
  if (!run.log_path && !(run.status === 'pending' || run.status === 'running')) {
    app.append(h('p', { class: 'muted', id: 'no-log' }, 'This run has no log' + (task.includes(':') ? ' (system tasks write their result in the message).' : '.')));
    return;
  }

  const lineInput = h('input', { type: 'number', min: 1, id: 'goto-line', placeholder: 'line', 'aria-label': 'Jump to line', class: 'narrow' });
  const timeInput = h('input', { type: 'datetime-local', step: 1, id: 'goto-time', 'aria-label': 'Jump to time (your zone)' });
  const followBox = h('input', { type: 'checkbox', id: 'follow' });
  const where = h('span', { class: 'muted', id: 'where' });
  const logEl = h('div', { class: 'log', id: 'log', tabindex: 0, 'aria-label': 'Log' });
  app.append(
    h('form', { class: 'toolbar', id: 'jump-line', onsubmit: (e) => { e.preventDefault(); if (lineInput.value) { follow(false); viewer.jumpToLine(+lineInput.value); } } }, h('label', {}, 'Line ', lineInput), h('button', { type: 'submit' }, 'Go')),
    h('form', { class: 'toolbar', id: 'jump-time', onsubmit: async (e) => {
      e.preventDefault();
      if (!timeInput.value) return;
      const since = new Date(timeInput.value).toISOString();
      try {
        const p = await viewer.fetchJson('/log?since=' + enc(since) + '&lines=1');
        follow(false);
        if (p.lines.length) viewer.jumpToLine(p.lines[0].line); else msg.textContent = 'No line at or after that time.';
      } catch (err) { msg.textContent = err.message; msg.className = 'error'; }
    } }, h('label', {}, 'Time ', timeInput), h('button', { type: 'submit' }, 'Go')),
    h('div', { class: 'toolbar legend' }, h('span', { class: 'o' }, 'stdout'), h('span', { class: 'e' }, 'stderr'), h('span', { class: 'm' }, 'cronkeep marker'), h('label', {}, followBox, ' follow'), where),
    notices, logEl);

  const viewer = new LogViewer(base, logEl);
  window.cronkeepViewer = viewer;  // for tests and benchmarks: request and byte counts
  onLeave(() => viewer.destroy());
  viewer.error = (e) => { msg.textContent = 'Log: ' + e.message; msg.className = 'error'; };
  viewer.onRender = (top, n) => setText(where, viewer.count ? `lines ${top}–${Math.min(top + n - 1, viewer.total)} of ${viewer.total}` : 'empty');
  const follow = (on) => { viewer.follow = on; followBox.checked = on; if (on) viewer.toBottom(); };
  viewer.onUnfollow = () => follow(false);
  followBox.addEventListener('change', () => follow(followBox.checked));
  logEl.addEventListener('keydown', (e) => {
    const page = viewer.visible - 1;
    const keys = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, ' ': page };
    if (e.key === 'Home') { follow(false); viewer.scrollToIndex(0); e.preventDefault(); }
    else if (e.key === 'End') { follow(true); e.preventDefault(); }
    else if (keys[e.key]) { viewer.scrollToIndex(viewer.topIndex() + keys[e.key]); e.preventDefault(); }
  });
  let slice;
  try { slice = await viewer.init(); } catch (e) {
    if (e.status === 404 && (run.status === 'pending' || run.status === 'running')) slice = { next_line: 1 };
    else throw e;
  }
  const m = /^#\/run\/[^/]+\/\d+\/line\/(\d+)$/.exec(location.hash);
  if (m) viewer.jumpToLine(+m[1]);

  const live = run.status === 'pending' || run.status === 'running';
  if (!live) return;
  follow(true);
  const note = (text) => notices.append(h('div', { class: 'notice' }, text));
  let dropped = 0, dropNote = null;
  const stream = sse(`${base}/log/stream?from=${slice.next_line || 1}`, (ev) => {
    if (ev.event === 'line') viewer.add(ev.data);
    else if (ev.event === 'dropped') {
      if (ev.data.count != null && ev.data.text == null) {
        dropped += ev.data.count;
        if (!dropNote) { dropNote = h('div', { class: 'notice', id: 'dropped' }); notices.append(dropNote); }
        dropNote.textContent = `${dropped} lines dropped for this slow viewer (re-read from the file: none is missing)`;
      } else note(`${ev.data.text || 'output dropped'}${ev.data.bytes ? ` (${fmtBytes(ev.data.bytes)})` : ''}`);
    } else if (ev.event === 'rotated') note('Log rotated: ' + ev.data.text);
    else if (ev.event === 'done') {
      api(base).then((r) => { run = r; renderMeta(); }).catch(() => {});
      if (ev.data.status !== 'idle_timeout' && ev.data.status !== 'shutdown') return false;
    } else if (ev.event === 'error') { note('Live tail: ' + (ev.data.error || ev.data.text)); return false; }
  });
  onLeave(() => stream.close());
  // The run's state also changes the buttons (running → cancel).
  onLeave(watchRuns((c) => { if (!c || c.run_id === id) api(base).then((r) => { run = r; renderMeta(); }).catch(() => {}); }));
}

// ---- maintenance ---------------------------------------------------------------

const RETENTION = 'cronkeep:retention';
const COMPACTOR = 'cronkeep:compactor';
const PHASES = { running: 'started', freeing: 'giving free pages back', rewriting: 'rewriting the database (VACUUM)', checkpointing: 'truncating the WAL' };
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// The data directory's file system against [storage] min_free_space.
function diskCard(d) {
  const card = h('div', { class: 'card stat', id: 'disk-free' }, h('span', { class: 'muted' }, 'Free disk'));
  if (!d) return card.append(h('b', {}, '—'), h('span', { class: 'hint' }, "the data directory's file system could not be read")), card;
  const below = d.below_min_free_space;
  card.dataset.free = d.free_bytes;
  card.dataset.min = d.min_free_space;
  card.dataset.below = below;
  if (below) card.classList.add('below');
  const meter = h('span', { class: 'meter', role: 'meter', 'aria-label': 'disk used', 'aria-valuemin': 0, 'aria-valuemax': d.total_bytes, 'aria-valuenow': d.total_bytes - d.free_bytes });
  const used = h('span', { class: 'used' });
  used.style.width = (100 * (d.total_bytes - d.free_bytes) / Math.max(1, d.total_bytes)).toFixed(1) + '%';
  meter.append(used);
  if (d.min_free_space > 0 && d.min_free_space <= d.total_bytes) {
    const min = h('span', { class: 'min', title: 'min_free_space' });
    min.style.left = (100 * (d.total_bytes - d.min_free_space) / Math.max(1, d.total_bytes)).toFixed(1) + '%';
    meter.append(min);
  }
  card.append(h('b', {}, fmtBytes(d.free_bytes)), meter,
    h('span', { class: 'hint', id: 'disk-hint' }, `of ${fmtBytes(d.total_bytes)}; `,
      d.min_free_space > 0 ? (below ? `below min_free_space (${fmtBytes(d.min_free_space)}): runs do not start, logs drop output` : `min_free_space ${fmtBytes(d.min_free_space)}`) : 'no min_free_space'));
  return card;
}

// Database size (line) and what each system run gave back (bars: the
// compactor's reclaimed bytes; points: log bytes retention freed), drawn
// with uPlot from GET /api/maintenance/history.
function maintenanceChart(box, summary) {
  let plot = null;
  let width = 0;
  const bytes = (u, vals) => vals.map((v) => (v == null ? '' : fmtBytes(v)));
  const value = (u, v) => (v == null ? '—' : fmtBytes(v));
  const make = (data) => {
    const fg = cssVar('--fg'), line = cssVar('--line'), run = cssVar('--run'), ok = cssVar('--ok'), warn = cssVar('--warn');
    const axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    width = box.clientWidth;
    plot = new uPlot({
      width: Math.max(280, width), height: 260,
      scales: { x: { time: true }, size: { range: (u, min, max) => [0, (max || 1) * 1.15] }, per: { range: (u, min, max) => [0, (max || 1) * 1.15] } },
      axes: [
        axis,
        { ...axis, scale: 'size', values: bytes, size: 72, label: 'database' },
        { ...axis, scale: 'per', side: 1, values: bytes, size: 72, label: 'per run', grid: { show: false } },
      ],
      series: [
        { value: (u, v) => (v == null ? '—' : localFmt.format(new Date(v * 1000))) },
        { label: 'Database size', scale: 'size', stroke: run, width: 2, spanGaps: true, points: { show: true, size: 5, fill: run }, value },
        { label: 'Reclaimed (compactor)', scale: 'per', stroke: ok, fill: ok + '66', width: 1, paths: uPlot.paths.bars({ size: [0.5, 14] }), points: { show: false }, value },
        { label: 'Logs freed (retention)', scale: 'per', stroke: warn, width: 1, paths: () => null, points: { show: true, size: 6, fill: warn }, value },
      ],
    }, data, box);
  };
  new ResizeObserver(() => {
    if (plot && Math.abs(box.clientWidth - width) > 2) { width = box.clientWidth; plot.setSize({ width: Math.max(280, width), height: 260 }); }
  }).observe(box);
  return (history) => {
    const pts = history.runs.filter((r) => r.finished_at)
      .map((r) => ({ ...r, t: Date.parse(r.finished_at) / 1000 }))
      .sort((a, b) => a.t - b.t || a.run_id - b.run_id);
    box.dataset.points = pts.length;
    box.dataset.sizes = pts.filter((p) => p.db_bytes != null).length;
    box.dataset.reclaims = pts.filter((p) => p.task === COMPACTOR).length;
    if (!pts.length) {
      if (plot) { plot.destroy(); plot = null; }
      box.replaceChildren(h('p', { class: 'muted' }, 'No retention or compactor run has recorded its figures yet.'));
      summary.textContent = '';
      return;
    }
    const data = [pts.map((p) => p.t), pts.map((p) => p.db_bytes ?? null),
      pts.map((p) => (p.task === COMPACTOR ? p.db_bytes_reclaimed : null)),
      pts.map((p) => (p.task === RETENTION ? p.log_bytes_freed : null))];
    if (typeof uPlot === 'undefined') {
      box.replaceChildren(h('p', { class: 'error' }, 'The chart library did not load.'));
    } else if (plot) {
      plot.setData(data);
    } else {
      box.replaceChildren();
      make(data);
    }
    const sizes = pts.filter((p) => p.db_bytes != null);
    const sum = (task, key) => pts.filter((p) => p.task === task).reduce((a, p) => a + p[key], 0);
    summary.textContent = `${pts.length} system run(s) from ${localFmt.format(new Date(pts[0].t * 1000))} to ${localFmt.format(new Date(pts[pts.length - 1].t * 1000))}` +
      (sizes.length ? `; database ${fmtBytes(sizes[0].db_bytes)} then, ${fmtBytes(sizes[sizes.length - 1].db_bytes)} after the last` : '') +
      `; the compactor reclaimed ${fmtBytes(sum(COMPACTOR, 'db_bytes_reclaimed'))}, retention freed ${fmtBytes(sum(RETENTION, 'log_bytes_freed'))} of logs` +
      (history.next_before ? ` (the last ${pts.length} runs shown)` : '') + '.';
  };
}

async function maintenancePage() {
  const app = currentRoot();
  const onLeave = leaver(app);
  document.title = 'Maintenance · cronkeep';
  const stats = h('div', { id: 'sizes', class: 'grid' });
  const systems = h('div', { id: 'system-tasks' });
  const msg = h('p', { id: 'maint-message', role: 'status' });
  const load = async () => {
    const s = await api('/api/maintenance/status');
    const db = s.database;
    const stat = (label, value, id, hint) => h('div', { class: 'card stat', id }, h('span', { class: 'muted' }, label), h('b', {}, value), hint ? h('span', { class: 'hint' }, hint) : '');
    stats.replaceChildren(
      stat('Database', fmtBytes(db.bytes), 'db-size', `${db.page_count} pages × ${db.page_size} B; auto_vacuum ${db.auto_vacuum}`),
      stat('WAL', fmtBytes(db.wal_bytes), 'wal-size'),
      stat('Free pages', String(db.free_pages), 'free-pages', fmtBytes(db.free_pages * db.page_size) + ' reclaimable'),
      stat('Log directory', fmtBytes(s.log_dir_bytes), 'log-size'),
      diskCard(s.disk));
    msg.replaceChildren(s.disk && s.disk.below_min_free_space
      ? h('span', { class: 'error', id: 'disk-warning' }, `Free disk (${fmtBytes(s.disk.free_bytes)}) is below min_free_space (${fmtBytes(s.disk.min_free_space)}): runs do not start and running ones drop their output. Purge, compact or free space elsewhere.`)
      : '');
    systems.replaceChildren(...s.system_tasks.map((t) => h('div', { class: 'card', 'data-task': t.task },
      h('b', {}, t.task), ' ', h('span', { class: 'muted' }, scheduleWords(t.schedule)),
      h('div', {}, 'Last run: ', t.last_run ? [h('a', { href: runHref(t.task, t.last_run.id) }, '#' + t.last_run.id), ' ', badge(t.last_run.status), ' ', time(t.last_run.finished_at), ' — ', t.last_run.message] : h('span', { class: 'muted' }, 'never')),
      h('div', {}, 'Next run: ', time(t.next_run)),
      t.total_figures ? h('div', { class: 'hint' }, `In all: ${t.total_figures.rows_deleted} run(s) and ${t.total_figures.files_deleted} file(s) deleted, ${fmtBytes(t.total_figures.log_bytes_freed)} of logs freed, ${fmtBytes(t.total_figures.db_bytes_reclaimed)} reclaimed from the database`) : '')));
  };
  const chartBox = h('div', { id: 'maint-chart', class: 'chart', role: 'img', 'aria-label': 'Database size and bytes reclaimed over time; summary below' });
  const chartSummary = h('p', { class: 'hint', id: 'chart-summary' });
  const draw = maintenanceChart(chartBox, chartSummary);
  const loadChart = async () => draw(await api('/api/maintenance/history?limit=500'));
  const history = h('div', { id: 'system-history' });
  const loadHistory = async () => {
    if (!token()) { history.replaceChildren(h('p', { class: 'muted' }, 'Sign in to see the system tasks\' history.')); return; }
    const [r, c] = await Promise.all([RETENTION, COMPACTOR].map((t) => api(`/api/tasks/${enc(t)}/runs?limit=20`).catch(() => ({ runs: [] }))));
    const runs = [...r.runs, ...c.runs].sort((a, b) => b.id - a.id).slice(0, 20);
    history.replaceChildren(h('div', { class: 'scroll-x' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Run'), h('th', {}, 'Task'), h('th', {}, 'Status'), h('th', {}, 'Finished'), h('th', {}, 'Message'))),
      h('tbody', {}, runs.map((x) => h('tr', {}, h('td', {}, h('a', { href: runHref(x.task, x.id) }, '#' + x.id)), h('td', {}, x.task), h('td', {}, badge(x.status)), h('td', {}, time(x.finished_at)), h('td', {}, x.message)))))));
  };

  const tasks = await api('/api/tasks').catch(() => []);
  const olderThan = h('input', { id: 'purge-older', value: '30d', required: true, size: 6, 'aria-label': 'Older than' });
  const taskSel = h('select', { id: 'purge-task', 'aria-label': 'Task' }, h('option', { value: '' }, 'every task'), tasks.filter((t) => !t.system).map((t) => h('option', { value: t.task }, t.task)));
  const statusSel = h('select', { id: 'purge-status', 'aria-label': 'Status' }, h('option', { value: '' }, 'any status'), STATUSES.filter((s) => s !== 'pending' && s !== 'running').map((s) => h('option', { value: s }, s)));
  const limit = h('input', { id: 'purge-limit', type: 'number', min: 1, placeholder: 'no limit', size: 8, 'aria-label': 'Limit' });
  const all = h('input', { id: 'purge-all', type: 'checkbox' });
  const preview = h('div', { id: 'purge-preview' });
  const request = (dry) => {
    const b = { older_than: olderThan.value.trim(), dry_run: dry, all: all.checked };
    if (taskSel.value) b.task = taskSel.value;
    if (statusSel.value) b.status = statusSel.value;
    if (limit.value) b.limit = +limit.value;
    return b;
  };
  const form = h('form', { id: 'purge-form', class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    preview.replaceChildren(h('span', { class: 'muted' }, 'Previewing…'));
    const body = request(true);
    try {
      const p = await mutate('/api/maintenance/purge', body);
      const confirmBtn = h('button', { type: 'button', class: 'danger', id: 'purge-confirm' }, `Delete ${p.runs} run(s) and ${fmtBytes(p.log_bytes)} of logs`);
      confirmBtn.disabled = !p.runs;
      confirmBtn.addEventListener('click', async () => {
        confirmBtn.disabled = true;
        try {
          const done = await mutate('/api/maintenance/purge', { ...body, dry_run: false });
          preview.replaceChildren(h('p', { id: 'purge-done' }, done.message || `Deleted ${done.runs} run(s).`));
          await refreshNow();
        } catch (err) { preview.append(h('p', { class: 'error' }, err.message)); confirmBtn.disabled = false; }
      });
      preview.replaceChildren(
        h('p', {}, `Dry run: runs ended before ${p.cutoff} would go.`),
        h('table', { id: 'purge-tasks' }, h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', { class: 'num' }, 'Runs'), h('th', { class: 'num' }, 'Log bytes'))),
          h('tbody', {}, p.tasks.map((t) => h('tr', {}, h('td', {}, t.task), h('td', { class: 'num' }, t.runs), h('td', { class: 'num' }, fmtBytes(t.log_bytes)))),
            h('tr', {}, h('th', {}, 'In all'), h('th', { class: 'num', id: 'purge-total' }, p.runs), h('th', { class: 'num' }, fmtBytes(p.log_bytes))))),
        h('div', { class: 'toolbar' }, confirmBtn, h('button', { type: 'button', onclick: () => preview.replaceChildren() }, 'Cancel')));
    } catch (err) { preview.replaceChildren(h('p', { class: 'error' }, err.message)); }
  } },
  h('div', { class: 'toolbar' }, h('label', {}, 'Older than ', olderThan), h('label', {}, 'Task ', taskSel), h('label', {}, 'Status ', statusSel), h('label', {}, 'Limit ', limit),
    h('label', { title: "Also delete each task's newest success and newest failure" }, all, ' all'), h('button', { type: 'submit', id: 'purge-preview-button' }, 'Preview')),
  preview);

  // Compactions in flight, scheduled or manual, as the event stream tells
  // them: the run starts (state running), reports its steps (progress), ends
  // (state). Each run is one line; its data-phases lists what was received.
  const compactOut = h('p', { id: 'compact-result', role: 'status' });
  const compactRuns = h('ul', { id: 'compact-runs', class: 'progress-list', 'aria-live': 'polite' });
  const compactions = new Map();
  const showCompaction = (id, patch) => {
    let c = compactions.get(id);
    if (!c) {
      c = { li: h('li', { 'data-run': id }), phases: [], status: 'running', done: 0, total: 0, phase: 'running', message: '' };
      compactions.set(id, c);
      compactRuns.prepend(c.li);
      for (const [old, o] of compactions) if (compactions.size > 5 && o.status !== 'running') { o.li.remove(); compactions.delete(old); }
    }
    if (patch.phase) c.phases.push(patch.phase);
    const ended = c.status !== 'running';
    // A run that ended stays ended, whatever arrives late.
    if (patch.status && (!ended || patch.status !== 'running')) c.status = patch.status;
    if (!ended && patch.phase) { c.phase = patch.phase; if (patch.done != null) { c.done = patch.done; c.total = patch.total; } }
    if (patch.message) c.message = patch.message;
    c.li.dataset.phases = c.phases.join(' ');
    c.li.dataset.status = c.status;
    const freeing = c.status === 'running' && c.phase === 'freeing' && c.total > 0;
    c.li.replaceChildren(h('a', { href: runHref(COMPACTOR, id) }, '#' + id), ' ', badge(c.status), ' ',
      c.status === 'running' ? h('span', { class: 'phase' }, PHASES[c.phase] || c.phase) : '',
      freeing ? [h('progress', { max: c.total, value: Math.min(c.done, c.total) }), `${Math.min(c.done, c.total)} of ${c.total} free pages`] : '',
      c.message ? h('div', { class: 'hint' }, c.message) : '');
  };
  const compactButtons = [];
  const compact = (full) => async () => {
    compactButtons.forEach((b) => { b.disabled = true; });
    compactOut.dataset.phase = 'started';
    compactOut.textContent = 'Starting…';
    try {
      if (!token() && !(await signIn())) throw new ApiError(401, 'not signed in');
      await watcher.ensure();  // subscribed with the token: the run's start and steps will be seen
      compactOut.textContent = full ? 'Running VACUUM: the database is rewritten (the run below shows where it is)…' : 'Compacting (the run below shows where it is)…';
      const r = await mutate('/api/maintenance/compact', { full });
      if (r.run_id != null) showCompaction(r.run_id, { status: 'succeeded', message: r.message });
      compactOut.dataset.phase = 'finished';
      compactOut.dataset.run = r.run_id ?? '';
      compactOut.textContent = r.message;
      await refreshNow();
    } catch (err) {
      compactOut.dataset.phase = 'failed';
      compactOut.textContent = err.message;
    }
    compactButtons.forEach((b) => { b.disabled = false; });
  };
  compactButtons.push(h('button', { type: 'button', id: 'compact', onclick: compact(false) }, 'Compact (incremental)'),
    h('button', { type: 'button', id: 'compact-full', onclick: compact(true) }, 'Full VACUUM'));

  app.append(h('h1', {}, 'Maintenance'), stats, msg,
    h('h2', {}, 'Database size and space given back'), chartBox, chartSummary,
    h('h2', {}, 'Retention and compactor'), systems,
    h('h2', {}, 'Purge'), form,
    h('h2', {}, 'Compact'), h('div', { class: 'toolbar' }, ...compactButtons), compactOut, compactRuns,
    h('h2', {}, 'Recent system runs'), history);

  const refreshNow = () => {
    if (watcher.stream && watcher.authed !== !!token()) watcher.open();  // signed in (or out) meanwhile
    return Promise.all([load(), loadHistory(), loadChart()]);
  };
  let timer = null;
  const refresh = () => { clearTimeout(timer); timer = setTimeout(() => refreshNow().catch(() => {}), 200); };
  onLeave(() => clearTimeout(timer));
  const onState = (d) => {
    if (!d.task.startsWith('cronkeep:')) return;
    if (d.task === COMPACTOR) {
      showCompaction(d.run_id, { status: d.status, phase: d.status === 'running' ? 'running' : d.status });
      if (d.status !== 'running' && token())
        api(`/api/tasks/${enc(COMPACTOR)}/runs/${d.run_id}`).then((r) => showCompaction(d.run_id, { message: r.message })).catch(() => {});
    }
    if (d.status !== 'running' && d.status !== 'pending') refresh();
  };
  // The events stream, with the token when there is one (system tasks'
  // events need it); reopened when that changes. `ready` says it is
  // subscribed.
  const watcher = {
    stream: null, authed: false, ready: null,
    open() {
      if (this.stream) this.stream.close();
      this.authed = !!token();
      let resolve;
      this.ready = new Promise((r) => { resolve = r; });
      this.stream = sse('/api/events', (ev) => {
        if (ev.event === 'ready') { resolve(); refresh(); }
        else if (ev.event === 'state') onState(ev.data);
        else if (ev.event === 'progress' && ev.data.task === COMPACTOR) showCompaction(ev.data.run_id, { phase: ev.data.phase, done: ev.data.done, total: ev.data.total });
        else if (ev.event === 'dropped' || ev.event === 'done') refresh();
      });
    },
    async ensure() {
      if (!this.stream || this.authed !== !!token()) this.open();
      await Promise.race([this.ready, sleep(5000)]);
    },
  };
  await load();
  loadHistory().catch(() => {});
  loadChart().catch((e) => { chartBox.replaceChildren(h('p', { class: 'error' }, 'History: ' + e.message)); });
  watcher.open();
  onLeave(() => watcher.stream.close());
}

route();
