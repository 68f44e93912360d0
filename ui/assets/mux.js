// The web UI's shared stream (docs/ui.md, "One stream for every tab"): a
// SharedWorker that every tab of this origin talks to, holding ONE
// multiplexed SSE stream (GET /api/stream) for the events feed and the logs
// of every run any tab follows, so that many open tabs never use up the
// browser's 6 HTTP/1.1 connections per host.
//
// A tab posts {type: 'sub', sid, token, kind: 'events'} or {type: 'sub',
// sid, token, kind: 'run', task, id, from} and {type: 'unsub', sid}; it gets
// {sid, type: 'ev', ev: {event, data, id}} back, the events its own stream
// would have given it. Tabs with the same token share a stream (the token
// decides whether system tasks' events are sent).
//
// When the set of subscriptions changes, a new stream is opened from the
// current positions (each run from the lowest next line any of its tabs
// needs) and the old one is closed once the new one is live (its events
// feed `ready`, or its headers when there is no events feed); each tab takes
// a line only if it is the next one it needs, so nothing is lost or shown
// twice across the switch.
'use strict';

const ports = new Map();  // MessagePort → {id, subs: Map(sid → token), seen: time of its last message}
const muxes = new Map();  // token → Mux
let connSeq = 0;          // streams opened so far
const MAX_RUNS = 32;      // runs per stream (GET /api/stream refuses more)

class Mux {
  constructor(token) {
    this.token = token;
    this.events = new Map();  // "port-id/sid" → {port, sid}
    this.runs = new Map();    // "TASK/ID" → {task, id, listeners: Map(key → {port, sid, next}), high}
    this.cur = null;          // the live stream
    this.pending = null;      // a stream being opened to replace it
    this.eventsLive = false;  // cur's events feed is subscribed
    this.timer = 0;
    this.delay = 250;
  }

  wanted() { return this.events.size > 0 || this.runs.size > 0; }

  // Opens a stream with what is wanted now, after `ms` (batching changes).
  schedule(ms = 20) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }

  url() {
    const q = [];
    if (this.events.size) q.push('events=1');
    let n = 0;
    for (const [key, r] of this.runs) {
      if (++n > MAX_RUNS) break;  // the server's limit per stream: the rest wait for a place
      let from = Infinity;
      for (const l of r.listeners.values()) from = Math.min(from, l.next);
      q.push('run=' + encodeURIComponent(`${key}:${from === Infinity ? 1 : from}`));
    }
    return '/api/stream?' + q.join('&');
  }

  connect() {
    if (!this.wanted()) {
      this.drop(this.pending); this.drop(this.cur);
      this.pending = this.cur = null;
      this.eventsLive = false;
      muxes.delete(this.token);
      return;
    }
    if (this.pending) this.drop(this.pending);
    const conn = { seq: ++connSeq, ctrl: new AbortController(), events: this.events.size > 0, runs: new Set([...this.runs.keys()].slice(0, MAX_RUNS)), live: false };
    this.pending = conn;
    this.read(conn, this.url());
  }

  drop(conn) { if (conn) { conn.dead = true; conn.ctrl.abort(); } }

  // The new stream serves from now on; the old one is closed.
  goLive(conn) {
    if (conn.live || conn !== this.pending) return;
    conn.live = true;
    if (this.cur) this.drop(this.cur);
    this.cur = conn;
    this.pending = null;
    this.delay = 250;
  }

  async read(conn, url) {
    try {
      const headers = this.token ? { Authorization: 'Bearer ' + this.token } : {};
      const res = await fetch(url, { headers, signal: conn.ctrl.signal, cache: 'no-store' });
      if (!res.ok) {
        // Too many streams from here: the old stream makes room first.
        if (res.status === 429 && this.cur) { this.drop(this.cur); this.cur = null; this.eventsLive = false; }
        throw new Error('HTTP ' + res.status);
      }
      if (!conn.events) this.goLive(conn);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done || conn.dead) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (conn.dead) break;
          let sub = null, event = 'message', data = '', id = null;
          for (const line of frame.split('\n')) {
            if (!line || line[0] === ':') continue;
            const c = line.indexOf(':');
            const f = c < 0 ? line : line.slice(0, c);
            const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (f === 'sub') sub = v; else if (f === 'event') event = v; else if (f === 'data') data += v; else if (f === 'id') id = v;
          }
          if (!data || sub == null) continue;
          let parsed;
          try { parsed = JSON.parse(data); } catch { continue; }
          this.dispatch(conn, sub, { event, data: parsed, id, raw: data });
        }
        flushSoon();
      }
    } catch {}
    if (conn.dead) return;
    // The stream ended or failed: open another with what is wanted now.
    conn.dead = true;
    if (conn === this.cur) { this.cur = null; this.eventsLive = false; }
    if (conn === this.pending) this.pending = null;
    if (!this.pending) {
      this.schedule(this.delay);
      this.delay = Math.min(this.delay * 2, 8000);
    }
  }

  dispatch(conn, sub, ev) {
    if (conn.dead) return;
    if (sub === 'events') {
      if (ev.event === 'ready') {
        const was = this.eventsLive && this.cur && this.cur !== conn;
        this.goLive(conn);
        this.eventsLive = true;
        // A switch: the old stream was subscribed until now, nothing was missed.
        if (was) return;
      }
      if (conn !== this.cur) return;
      if (ev.event === 'done') { this.eventsLive = false; this.schedule(this.delay); }
      for (const l of this.events.values()) send(l.port, l.sid, ev);
      return;
    }
    const r = this.runs.get(sub);
    if (!r) return;
    if (ev.event === 'line') {
      const n = ev.data.line;
      if (n > r.high) r.high = n;
      for (const l of r.listeners.values()) {
        // The next line it needs, or a later one from a stream opened since
        // it subscribed (which started at or before its next line: the
        // lines between are not in the log any more). A stream older than
        // the tab may be past its next line: the newer one brings them.
        if (n < l.next || (n > l.next && conn.seq <= l.seq)) continue;
        l.next = n + 1;
        send(l.port, l.sid, ev);
      }
      return;
    }
    if (conn !== this.cur && conn !== this.pending) return;
    if (ev.event === 'done' && ['idle_timeout', 'shutdown', 'ended'].includes(ev.data.status || ev.data.text)) {
      // The subscription ended but the run goes on: follow it again.
      this.schedule(this.delay);
      return;
    }
    for (const l of r.listeners.values()) send(l.port, l.sid, ev);
    if (ev.event === 'done' || ev.event === 'error') {
      this.runs.delete(sub);
      this.schedule(1000);
    }
  }

  subscribe(port, m) {
    const key = ports.get(port).id + '/' + m.sid;
    if (m.kind === 'events') {
      this.events.set(key, { port, sid: m.sid });
      if (this.eventsLive && this.cur && this.cur.events) {
        // Subscribed already: this tab gets its own `ready` (it loads what it shows).
        send(port, m.sid, { event: 'ready', data: { system: !!this.token }, id: null });
        flush();
      } else if (!this.pending || !this.pending.events) {
        this.schedule();
      }
      return;
    }
    const rkey = `${m.task}/${m.id}`;
    let r = this.runs.get(rkey);
    if (!r) { r = { listeners: new Map(), high: 0 }; this.runs.set(rkey, r); }
    const from = Math.max(1, +m.from || 1);
    r.listeners.set(key, { port, sid: m.sid, next: from, seq: connSeq });
    // Lines from `from` on are still to come on a stream that has it,
    // unless some were given already: then a new stream starts earlier.
    const has = (c) => c && c.runs.has(rkey);
    if (!(has(this.cur) || has(this.pending)) || from <= r.high) this.schedule();
  }

  unsubscribe(port, sid) {
    const key = ports.get(port).id + '/' + sid;
    let changed = this.events.delete(key) && this.events.size === 0;
    for (const [rkey, r] of this.runs) {
      if (r.listeners.delete(key) && r.listeners.size === 0) { this.runs.delete(rkey); changed = true; }
    }
    // A stream with fewer subscriptions after a short while (a tab going
    // from one run to the next keeps its stream meanwhile).
    if (changed) this.schedule(this.wanted() ? 1000 : 200);
  }
}

// Events for a port are gathered and posted together: at once when nothing
// was posted in the last FLUSH_MS, else FLUSH_MS after the last post (the
// server writes a busy log line by line, so a read from the stream is
// mostly one line: posted per read, a run printing 1,000 lines a second
// was ~800 messages a second to each tab, each a task on its busy main
// thread; now at most ~60, a frame's worth each, for at most FLUSH_MS
// more delay). A post is ONE string of JSON made of the events' data as
// it came from the server: postMessage copies a string, it does not walk
// it (the structured clone of the events as objects cost each tab ~20 ms
// a second to decode at 1,000 lines a second).
const FLUSH_MS = 16;
const outbox = new Map();  // port → [JSON text of {sid, ev}]
let flushedAt = -Infinity, flushTimer = 0;
function send(port, sid, ev) {
  let list = outbox.get(port);
  if (!list) { list = []; outbox.set(port, list); }
  list.push(`{"sid":${sid},"ev":{"event":${JSON.stringify(ev.event)},"id":${ev.id == null ? 'null' : JSON.stringify(ev.id)},"data":${ev.raw ?? JSON.stringify(ev.data)}}}`);
}
function flushSoon() {
  if (flushTimer || !outbox.size) return;
  const wait = flushedAt + FLUSH_MS - performance.now();
  if (wait <= 0) flush(); else flushTimer = setTimeout(flush, wait);
}
function flush() {
  clearTimeout(flushTimer);
  flushTimer = 0;
  if (!outbox.size) return;
  flushedAt = performance.now();
  for (const [port, list] of outbox) try { port.postMessage({ type: 'evs', json: '[' + list.join(',') + ']' }); } catch {}
  outbox.clear();
}

let portSeq = 0;
function forget(port) {
  const p = ports.get(port);
  if (!p) return;
  for (const [sid, token] of p.subs) muxes.get(token)?.unsubscribe(port, sid);
  ports.delete(port);
}

onconnect = (e) => {
  const port = e.ports[0];
  ports.set(port, { id: ++portSeq, subs: new Map(), seen: Date.now() });
  port.onmessage = (ev) => {
    flush();
    const m = ev.data || {};
    let p = ports.get(port);
    if (!p) { p = { id: ++portSeq, subs: new Map(), seen: 0 }; ports.set(port, p); }  // back from the back/forward cache
    p.seen = Date.now();
    if (m.type === 'sub') {
      const token = m.token || '';
      let mux = muxes.get(token);
      if (!mux) { mux = new Mux(token); muxes.set(token, mux); }
      p.subs.set(m.sid, token);
      mux.subscribe(port, m);
    } else if (m.type === 'unsub') {
      const token = p.subs.get(m.sid);
      p.subs.delete(m.sid);
      if (token != null) muxes.get(token)?.unsubscribe(port, m.sid);
    } else if (m.type === 'bye') {
      forget(port);
    }
  };
  port.start();
};

// A tab that went away without saying so (crashed, killed) answers no
// ping: its subscriptions go after 30 s.
setInterval(() => {
  const now = Date.now();
  for (const [port, p] of ports) {
    if (now - p.seen > 30000) forget(port);
    else try { port.postMessage({ type: 'ping' }); } catch {}
  }
}, 10000);
