// Many run pages following one live run: a task prints RATE lines a second,
// each carrying its write time (ms since the epoch, the machine's wall
// clock, which the browser reads too); once it prints, PAGES run pages are
// opened in one headless chromium (as tabs of one browser context: below)
// and left to tail it. In each page a MutationObserver on the viewer's
// rows and their subtree (the viewer writes them in the animation frame
// that paints them: a row given a new line, or a pending row its text)
// notes the first time each line is in the DOM: its delay is that time
// minus the line's write time. The viewer is virtualised (one screenful of
// line elements) and follows the end, so these are the lines drawn at the
// bottom while tailing; a line that came and went between two frames is
// never in the DOM and is counted as not seen; the newest line at each
// render gives the delay of what is on screen. Then, for REPS windows of
// SECONDS each: p50/p99/max per page and over all pages, the share of
// lines seen, frames drawn, and the CPU of the daemon, chromium (by process
// type), the writer and the machine (/proc). A Node follower of the same
// SSE stream shows the delivery delay outside the browser (on a busy
// machine it waits for the CPU like the rest).
//
//   node ui/tests/bench_follow.mjs build/cronkeep [PAGES=50] [RATE=1000] [SECONDS=20] [REPS=1]
import fs from 'node:fs';
import os from 'node:os';
import { cpuSeconds, descendants, launch, machineCpu, readSse, skipUnlessReady, startLineWriter } from './harness.mjs';

skipUnlessReady();
const binary = process.argv[2];
const pages = +(process.argv[3] || 50);
const rate = +(process.argv[4] || 1000);
const seconds = +(process.argv[5] || 20);
const reps = +(process.argv[6] || 1);
const GRACE = 3000;  // ms after a window for its last lines to show
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Each run page holds two streams (its log and /api/events).
const d = await startLineWriter(binary, rate,
  `max_log_streams = ${2 * pages + 16}\nmax_log_streams_per_client = ${2 * pages + 16}`);

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const ms = (v) => (Number.isNaN(v) ? '—' : v < 10 ? v.toFixed(1) : String(Math.round(v)));
const summary = (delays) => {
  const s = Float64Array.from(delays).sort();
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.length ? s[s.length - 1] : NaN };
};
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

// Installed in each page before its script runs, it waits for the log
// viewer's rows, then records, per line, its write time and the time it
// was first in the DOM; per render, the newest line's delay; every
// animation frame's time; and the lines ever shown pending.
function observe() {
  const rows = document.querySelector('#log .rows');
  if (!rows) return requestAnimationFrame(observe);
  const now = () => performance.timeOrigin + performance.now();
  const seen = new Set();
  const m = { line: [], write: [], delay: [], renders: [], newest: [], frames: [], pending: new Set(), seen, offscreen: [] };
  const re = / t=(\d+(?:\.\d+)?) /;
  new MutationObserver(() => {
    const t = now();
    let newest = 0, newestWrite = 0, newestEl = null;
    for (const el of rows.children) {
      const n = +el.dataset.line;
      if (el.classList.contains('pending')) { m.pending.add(n); continue; }
      if (!el.classList.contains('s-o')) continue;  // a line with its text (not pending, not a marker)
      let w;
      if (!seen.has(n) || n > newest) w = re.exec(el.lastChild.textContent);
      if (!w) continue;
      if (n > newest) { newest = n; newestWrite = +w[1]; newestEl = el; }
      if (seen.has(n)) continue;
      seen.add(n);
      m.line.push(n); m.write.push(+w[1]); m.delay.push(t - +w[1]);
    }
    m.renders.push(t);
    // Is the newest line inside the log's box? (Right after the render,
    // as it will be painted; between frames the scroll position runs ahead.)
    if (newestEl) {
      const r = newestEl.getBoundingClientRect(), box = rows.parentElement.getBoundingClientRect();
      if (r.top < box.top || r.bottom > box.bottom + 0.5) m.offscreen.push(t);
    }
    m.newest.push(newest ? [newestWrite, t - newestWrite] : [0, 0]);
  }).observe(rows, { childList: true, subtree: true, characterData: true });
  const frame = () => { m.frames.push(now()); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  window.cronkeepFollowBench = m;
}

// What a page saw of the lines written in [a, b].
function collect([a, b]) {
  const m = window.cronkeepFollowBench;
  const delays = [];
  for (let k = 0; k < m.write.length; k++) if (m.write[k] >= a && m.write[k] <= b) delays.push(m.delay[k]);
  const newest = m.newest.filter(([w]) => w >= a && w <= b).map(([, dl]) => dl);
  const v = window.cronkeepViewer;
  return {
    delays, newest,
    renders: m.renders.filter((t) => t >= a && t <= b).length,
    frames: m.frames.filter((t) => t >= a && t <= b).length,
    follow: v.follow, total: v.total,
    offscreen: m.offscreen.filter((t) => t >= a && t <= b).length,
    pending: document.querySelectorAll('#log .rows .ln.pending').length,
    // Lines shown as pending ("…", their block being read), never with
    // their text since, and still without it in the viewer's cache: lost
    // (a line that scrolled by while its block was read is in the cache).
    lost: [...m.pending].filter((n) => {
      if (m.seen.has(n)) return false;
      const i = n - v.first, blk = v.blocks.get(Math.floor(i / 64));
      return Array.isArray(blk) && !blk[i % 64];
    }).sort((x, y) => x - y),
    visibility: document.visibilityState,
    clockSkew: performance.timeOrigin + performance.now() - Date.now(),
  };
}

let browser, follower;
const procs = () => {
  const kids = new Set(descendants(d.pid));
  const out = { daemon: [d.pid], writer: [...kids], chromium: {} };
  for (const pid of descendants(process.pid)) {
    if (pid === d.pid || kids.has(pid)) continue;
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    if (!cmd.includes('chrom')) continue;
    const type = (/--type=([a-z-]+)/.exec(cmd) || [, 'browser'])[1];
    (out.chromium[type] ||= []).push(pid);
  }
  return out;
};
const cpuOf = (pids) => pids.reduce((a, p) => a + cpuSeconds(p), 0);
const snapshot = (p) => {
  const s = { t: Date.now(), daemon: cpuOf(p.daemon), writer: cpuOf(p.writer), node: cpuSeconds(process.pid), machine: machineCpu(), chromium: {} };
  for (const [type, pids] of Object.entries(p.chromium)) s.chromium[type] = cpuOf(pids);
  return s;
};

try {
  const run = await d.api('/api/tasks/follow/run', { method: 'POST' });
  const runBase = `/api/tasks/follow/runs/${run.id}`;
  for (let i = 0; ; i++) {
    const r = await fetch(d.base + runBase + '/log?tail=1');
    if (r.ok && (await r.json()).next_line > 1) break;
    if (i > 200) throw new Error('the run printed nothing in 10 s');
    await sleep(50);
  }
  // The server's side: a follower in Node, from the line being written on.
  const served = [];  // [write time, arrival - write]
  let stopFollower = false;
  const tail = await (await fetch(d.base + runBase + '/log?tail=1')).json();
  follower = readSse(d, `${runBase}/log/stream?from=${tail.next_line}`, (ev) => {
    if (ev.event === 'line') {
      const w = / t=(\d+(?:\.\d+)?) /.exec(ev.data.text);
      if (w) served.push([+w[1], Date.now() - +w[1]]);
    }
    return stopFollower || ev.event === 'done';
  }, 24 * 3600e3).catch((e) => { if (!stopFollower) console.error('follower:', e.message); });

  browser = await launch();
  // A browser holds at most 6 HTTP/1.1 connections per host and profile.
  // The pages of one context (profile) share one stream through the UI's
  // SharedWorker (ui/assets/mux.js), so by default every page is a tab of
  // one context, as an operator's browser would be. CRONKEEP_PER_CONTEXT=2
  // spreads them over contexts of 2 pages (one shared stream each), as the
  // figures before the shared stream were taken (each page then held two
  // streams of its own, and a fourth page in a context waited for ever).
  const perContext = +(process.env.CRONKEEP_PER_CONTEXT || pages);
  const contexts = [];
  const url = `${d.base}/#/run/follow/${run.id}`;
  const opened = [];
  let t = Date.now();
  for (let i = 0; i < pages; i += 5) {
    // allSettled: a page that fails must not leave the others' rejections
    // unhandled (Node would exit before the daemon is stopped).
    const open = await Promise.allSettled(Array.from({ length: Math.min(5, pages - i) }, async (_, k) => {
      const c = Math.floor((i + k) / perContext);
      if (!contexts[c]) {
        contexts[c] = browser.newContext({ viewport: { width: 1920, height: 1080 } })
          .then(async (ctx) => { await ctx.addInitScript(`(${observe})()`); return ctx; });
      }
      const page = await (await contexts[c]).newPage();
      page.on('pageerror', (e) => console.error('page error:', e.message));
      await page.goto(url);
      try { await page.waitForSelector('#log .rows .ln.s-o', { timeout: 60000 }); } catch {
        console.log(`a page showed no line of the log within 60 s (measured all the same)`);
      }
      opened.push(page);
    }));
    for (const o of open) if (o.status === 'rejected') throw o.reason;
  }
  console.log(`${pages} run pages open and tailing in ${((Date.now() - t) / 1000).toFixed(1)} s (chromium ${browser.version()}, 1920x1080, ${contexts.length} context(s)); ` +
    `${rate} lines/s, ${reps} window(s) of ${seconds} s`);
  await sleep(2000);

  // CRONKEEP_METRICS=1: each page's main thread over the window, from
  // chromium's Performance.getMetrics (busy, script, style, layout).
  const cdps = process.env.CRONKEEP_METRICS ? await Promise.all(opened.map(async (pg) => {
    const s = await pg.context().newCDPSession(pg);
    await s.send('Performance.enable');
    return s;
  })) : [];
  const metrics = () => Promise.all(cdps.map(async (s) => Object.fromEntries((await s.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]))));
  const results = [];
  for (let rep = 1; rep <= reps; rep++) {
    const p = procs();
    const ma = await metrics();
    const a = snapshot(p);
    const la = os.loadavg()[0];
    await sleep(seconds * 1000);
    const b = snapshot(p);
    const mb = await metrics();
    const from = a.t, to = b.t;
    await sleep(GRACE);
    const per = await Promise.all(opened.map((pg) => pg.evaluate(collect, [from, to])));
    // The lines written in the window, from the raw log.
    const raw = await (await fetch(d.base + runBase + '/log/raw')).text();
    let written = 0;
    for (const m of raw.matchAll(/^follow \d+ t=(\d+(?:\.\d+)?) /gm)) if (+m[1] >= from && +m[1] <= to) written++;

    console.log(`\nwindow ${rep}: ${written} lines written in ${((to - from) / 1000).toFixed(1)} s`);
    const all = [], allNewest = [], p99s = [];
    let seen = 0;
    per.forEach((r, i) => {
      const s = summary(r.delays);
      p99s.push(s.p99);
      seen += s.n;
      for (const v of r.delays) all.push(v);
      for (const v of r.newest) allNewest.push(v);
      const secs = (to - from) / 1000;
      console.log(`  page ${String(i + 1).padStart(2)}: p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms, max ${ms(s.max)} ms; ` +
        `seen ${(100 * s.n / written).toFixed(1)} % (${s.n}); ${(r.frames / secs).toFixed(1)} frames/s, ${(r.renders / secs).toFixed(1)} renders/s` +
        `${r.follow ? '' : '; NOT FOLLOWING'}${r.offscreen ? `; newest line off screen in ${r.offscreen} render(s)` : ''}${r.pending ? `; ${r.pending} pending now` : ''}${r.lost.length ? `; LOST ${r.lost.length} line(s) (${r.lost[0]}–${r.lost.at(-1)}): shown pending, never filled` : ''}` +
        `${r.visibility !== 'visible' ? '; ' + r.visibility : ''}${Math.abs(r.clockSkew) > 2 ? `; clock skew ${r.clockSkew.toFixed(1)} ms` : ''}`);
    });
    const s = summary(all), n = summary(allNewest), sv = summary(served.filter(([w]) => w >= from && w <= to).map(([, dl]) => dl));
    const share = seen / (written * pages);
    console.log(`  all ${pages} pages, each line's first time in the DOM: p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms, max ${ms(s.max)} ms ` +
      `(${s.n} line sightings; ${(100 * share).toFixed(2)} % of the lines seen); per-page p99: median ${ms(median(p99s))} ms, worst ${ms(Math.max(...p99s))} ms`);
    if (cdps.length) {
      const per = (k) => median(mb.map((m, i) => (1000 * (m[k] - ma[i][k])) / (m.Timestamp - ma[i].Timestamp)));
      console.log(`  a page's main thread (median of the pages): busy ${Math.round(per('TaskDuration'))} ms/s, script ${Math.round(per('ScriptDuration'))}, ` +
        `style ${Math.round(per('RecalcStyleDuration'))}, layout ${Math.round(per('LayoutDuration'))} ms/s; ${(per('LayoutCount') / 1000).toFixed(1)} layouts/s`);
    }
    console.log(`  the newest line in the DOM at each render: p50 ${ms(n.p50)} ms, p99 ${ms(n.p99)} ms, max ${ms(n.max)} ms`);
    console.log(`  the server alone (a Node follower of the same stream): p50 ${ms(sv.p50)} ms, p99 ${ms(sv.p99)} ms, max ${ms(sv.max)} ms`);
    const wall = (to - from) / 1000;
    const pc = (x) => `${Math.round((100 * x) / wall)} %`;
    const chrom = Object.keys(b.chromium).map((k) => [k, b.chromium[k] - (a.chromium[k] || 0), p.chromium[k].length]);
    const chromTotal = chrom.reduce((x, [, v]) => x + v, 0);
    const machine = (b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total);
    console.log(`  CPU (100 % = one core): daemon ${pc(b.daemon - a.daemon)}, chromium ${pc(chromTotal)} (` +
      chrom.map(([k, v, c]) => `${k} ${pc(v)}${c > 1 ? ` in ${c}` : ''}`).join(', ') + `), writer ${pc(b.writer - a.writer)}, ` +
      `node (driver and follower) ${pc(b.node - a.node)}; the machine's ${os.cpus().length} cores ${Math.round(100 * machine)} % busy, load average ${la.toFixed(1)} → ${os.loadavg()[0].toFixed(1)}`);
    results.push({ p50: s.p50, p99: s.p99, max: s.max, share, daemon: (b.daemon - a.daemon) / wall, chromium: chromTotal / wall, machine });
  }
  if (reps > 1) {
    const med = (k) => median(results.map((r) => r[k]));
    console.log(`\nmedian of ${reps} windows: p50 ${ms(med('p50'))} ms, p99 ${ms(med('p99'))} ms, max ${ms(med('max'))} ms, ` +
      `${(100 * med('share')).toFixed(2)} % seen; daemon ${Math.round(100 * med('daemon'))} %, chromium ${Math.round(100 * med('chromium'))} %, machine ${Math.round(100 * med('machine'))} % busy`);
  }
  // CRONKEEP_JS_PROFILE=1: the script self time of one page, by function, over 4 s.
  if (process.env.CRONKEEP_JS_PROFILE) {
    const cdp = await opened[0].context().newCDPSession(opened[0]);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
    await cdp.send('Profiler.start');
    await sleep(4000);
    const { profile } = await cdp.send('Profiler.stop');
    const self = new Map();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const n = byId.get(id);
      const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber + 1}`;
      self.set(k, (self.get(k) || 0) + (profile.timeDeltas[i] || 0));
    });
    console.log('page 1, script self time (wall), ms/s:', [...self].sort((x, y) => y[1] - x[1]).slice(0, 16).map(([k, v]) => `${k} ${(v / 4000).toFixed(1)}`).join(', '));
  }
  // CRONKEEP_TRACE=FILE: a trace of the whole browser over 4 s (every
  // page, the worker, the GPU process), written to FILE.
  if (process.env.CRONKEEP_TRACE) {
    await browser.startTracing(opened[0], { path: process.env.CRONKEEP_TRACE, categories: ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink', 'cc', 'viz'] });
    await sleep(4000);
    await browser.stopTracing();
  }
  stopFollower = true;
} finally {
  if (browser) await browser.close();
  await d.stop();
}
