// One run page following a run that prints RATE lines a second: where its
// main thread's time goes. Chromium's Performance.getMetrics over SECONDS
// (busy time, script, style, layout per second, frames) and a trace of the
// same window summed by event name (self time) on the renderer's main
// thread, its compositor and the GPU process.
//
//   node ui/tests/prof_follow.mjs build/cronkeep [RATE=1000] [SECONDS=5] [TRACE_FILE]
import fs from 'node:fs';
import os from 'node:os';
import { cpuSeconds, descendants, launch, skipUnlessReady, startLineWriter } from './harness.mjs';

skipUnlessReady();
const binary = process.argv[2];
const rate = +(process.argv[3] || 1000);
const seconds = +(process.argv[4] || 5);
const traceFile = process.argv[5];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const d = await startLineWriter(binary, rate);
let browser, cdp;
try {
  const run = await d.api('/api/tasks/follow/run', { method: 'POST' });
  await sleep(500);
  browser = await launch();
  const ctx = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  // Counts the messages the page gets from the shared worker.
  await ctx.addInitScript(() => {
    window.cronkeepPortMessages = 0;
    const d = Object.getOwnPropertyDescriptor(MessagePort.prototype, 'onmessage');
    Object.defineProperty(MessagePort.prototype, 'onmessage', {
      configurable: true,
      get() { return d.get.call(this); },
      set(f) { d.set.call(this, (e) => { window.cronkeepPortMessages++; return f(e); }); },
    });
  });
  const page = await ctx.newPage();
  await page.goto(`${d.base}/#/run/follow/${run.id}`);
  await page.waitForSelector('#log .rows .ln.s-o');
  await sleep(2000);
  cdp = await ctx.newCDPSession(page);
  await cdp.send('Performance.enable');
  const frames = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(window.__frames || 0))));
  const messages = () => page.evaluate(() => window.cronkeepPortMessages);
  await page.evaluate(() => { window.__frames = 0; const f = () => { window.__frames++; requestAnimationFrame(f); }; requestAnimationFrame(f); });
  const get = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  // The CPU of chromium's processes by type (the renderer: the page's and
  // the shared worker's), from /proc.
  const cpu = () => {
    const by = {};
    for (const pid of descendants(process.pid)) {
      if (pid === d.pid || descendants(d.pid).includes(pid)) continue;
      let cmd = '';
      try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
      if (!cmd.includes('chrom')) continue;
      const type = (/--type=([a-z-]+)/.exec(cmd) || [, 'browser'])[1];
      by[type] = (by[type] || 0) + cpuSeconds(pid);
    }
    return by;
  };
  const a = await get(), fa = await frames(), ma = await messages(), ca = cpu();
  await sleep(seconds * 1000);
  const b = await get(), fb = await frames(), mb = await messages(), cb = cpu();
  const dt = b.Timestamp - a.Timestamp;
  const per = (k) => ((b[k] - a[k]) / dt);
  console.log(`one page, ${rate} lines/s, ${dt.toFixed(1)} s (load average ${os.loadavg()[0].toFixed(1)}): ` +
    `main thread busy ${Math.round(1000 * per('TaskDuration'))} ms/s (script ${Math.round(1000 * per('ScriptDuration'))}, ` +
    `style ${Math.round(1000 * per('RecalcStyleDuration'))}, layout ${Math.round(1000 * per('LayoutDuration'))} ms/s); ` +
    `${per('LayoutCount').toFixed(0)} layouts/s, ${per('RecalcStyleCount').toFixed(0)} style recalcs/s, ${((fb - fa) / dt).toFixed(1)} frames/s, ${((mb - ma) / dt).toFixed(0)} messages/s from the worker, ` +
    `${Math.round(b.Nodes)} nodes, JS heap ${(b.JSHeapUsedSize / 1e6).toFixed(1)} MB; CPU (100 % = one core): ` +
    Object.keys(cb).map((k) => `${k} ${Math.round((100 * (cb[k] - (ca[k] || 0))) / dt)} %`).join(', '));

  if (process.env.LAYERS) {
    const trees = [];
    cdp.on('LayerTree.layerTreeDidChange', (e) => e.layers && trees.push(e.layers));
    await cdp.send('LayerTree.enable');
    await sleep(500);
    const layers = trees.at(-1) || [];
    for (const l of layers) {
      let why = [];
      try { why = (await cdp.send('LayerTree.compositingReasons', { layerId: l.layerId })).compositingReasonIds; } catch {}
      console.log(`  layer ${l.layerId} ${l.width}x${l.height} at ${l.offsetX},${l.offsetY} draws ${l.drawsContent} paints ${l.paintCount} scroll ${JSON.stringify(l.scrollRects || [])} ${why.join(',')}`);
    }
    await cdp.send('LayerTree.disable');
  }
  // A trace of the same: self time per event name and thread (not with
  // CRONKEEP_NO_TRACE=1).
  if (process.env.CRONKEEP_JS_PROFILE) {
    // Where the page's script time goes: self time by function over 3 s.
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    await cdp.send('Profiler.start');
    await sleep(3000);
    const { profile } = await cdp.send('Profiler.stop');
    const self = new Map();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const dt = profile.timeDeltas;
    profile.samples.forEach((id, i) => {
      const n = byId.get(id);
      const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber + 1}`;
      self.set(k, (self.get(k) || 0) + (dt[i] || 0));
    });
    console.log('  script self time, ms/s:', [...self].sort((x, y) => y[1] - x[1]).slice(0, 20).map(([k, v]) => `${k} ${(v / 3000).toFixed(1)}`).join(', '));
  }
  if (!process.env.CRONKEEP_NO_TRACE) await trace();
} finally {
  if (browser) await browser.close();
  await d.stop();
}

async function trace() {
  const events = [];
  cdp.on('Tracing.dataCollected', (e) => events.push(...e.value));
  const done = new Promise((r) => cdp.once('Tracing.tracingComplete', r));
  await cdp.send('Tracing.start', { transferMode: 'ReportEvents', traceConfig: { includedCategories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'toplevel', 'blink', 'cc', 'gpu', 'viz', 'v8'], excludedCategories: ['*'] } });
  await sleep(seconds * 1000);
  await cdp.send('Tracing.end');
  await done;
  if (traceFile) fs.writeFileSync(traceFile, JSON.stringify({ traceEvents: events }));
  const threads = new Map();
  for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') threads.set(`${e.pid}/${e.tid}`, e.args.name);
  let t0 = Infinity, t1 = 0;
  for (const e of events) if (e.ts) { t0 = Math.min(t0, e.ts); t1 = Math.max(t1, e.ts); }
  const span = (t1 - t0) / 1e6;
  // self time: complete events (X) per thread, nested by ts/dur.
  const byThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || e.dur == null) continue;
    const k = `${e.pid}/${e.tid}`;
    (byThread.get(k) || byThread.set(k, []).get(k)).push(e);
  }
  for (const [k, list] of byThread) {
    const name = threads.get(k) || k;
    if (!/CrRendererMain|Compositor|CrGpuMain|VizCompositor|ThreadPoolForeg|DedicatedWorker|SharedWorker/.test(name)) continue;
    list.sort((x, y) => x.ts - y.ts || y.dur - x.dur);
    const self = new Map();
    const stack = [];
    let top = 0;
    for (const e of list) {
      while (stack.length && stack.at(-1).ts + stack.at(-1).dur <= e.ts) stack.pop();
      const parent = stack.at(-1);
      if (parent) self.set(parent.name, (self.get(parent.name) || 0) - e.dur);
      else top += e.dur;
      self.set(e.name, (self.get(e.name) || 0) + e.dur);
      stack.push(e);
    }
    if (top / 1000 / span < 5) continue;
    const rows = [...self].sort((x, y) => y[1] - x[1]).slice(0, 14).map(([n, v]) => `${n} ${(v / 1000 / span).toFixed(1)}`);
    console.log(`  ${name} (${k}): busy ${(top / 1000 / span).toFixed(0)} ms/s; self ms/s: ${rows.join(', ')}`);
  }
}
