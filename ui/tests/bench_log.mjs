// The log viewer on a big log: a run prints N lines (default 1,000,000);
// headless chromium opens its page, then jumps to the middle and near the
// end. For each step: the time until the lines are on screen, and the
// requests and bytes the viewer fetched (it must load only what is on
// screen). Then 50 random jumps to a line and 50 to a time, timed inside
// the page. Fails (exit 1) when a step fetches more than a few blocks.
//
//   node ui/tests/bench_log.mjs build/cronkeep [LINES]
//   node ui/tests/bench_log.mjs build/cronkeep gib   10,000,000 lines of 108 characters: 1.09 GB
import assert from 'node:assert/strict';
import { launch, skipUnlessReady, startDaemon } from './harness.mjs';

skipUnlessReady();
const binary = process.argv[2];
const gib = process.argv[3] === 'gib';
const lines = gib ? 10_000_000 : +(process.argv[3] || 1_000_000);
const LINE = 'cronkeep 1 GiB log line, the same 107 characters each time, so that ten million of them make one gibibyte...';
const d = await startDaemon(binary, `
[tasks.big]
cron = "0 0 1 1 *"
run = "${gib ? `yes '${LINE}' | head -n ${lines}` : `seq 1 ${lines} | sed 's/^/line /; s/$/ of the big log, padded to look like real output/'`}"
log_max_size = "0"
`);
let browser;
try {
  let t = Date.now();
  const run = await d.api('/api/tasks/big/run?wait=true', { method: 'POST' });
  console.log(`log: ${lines} lines, ${(run.log_bytes / 1e6).toFixed(1)} MB, written in ${Date.now() - t} ms`);
  browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  const step = async (name, action, line) => {
    await page.evaluate(() => { if (window.cronkeepViewer) window.cronkeepViewer.stats = { requests: 0, bytes: 0 }; });
    const start = Date.now();
    await action();
    await page.waitForSelector(`#log .ln[data-line="${line}"]:not(.pending)`);
    const ms = Date.now() - start;
    const s = await page.evaluate(() => window.cronkeepViewer.stats);
    const rendered = await page.$$eval('#log .ln', (l) => l.length);
    console.log(`${name.padEnd(28)} ${String(ms).padStart(5)} ms  ${s.requests} request(s)  ${(s.bytes / 1024).toFixed(1)} KiB  ${rendered} line elements`);
    assert.ok(s.requests <= 4, `${name}: ${s.requests} requests`);
    assert.ok(s.bytes < 200 * 1024, `${name}: ${s.bytes} bytes`);
    assert.ok(rendered < 100, `${name}: ${rendered} line elements in the DOM`);
    return ms;
  };
  await step('first paint (navigation)', () => page.goto(`${d.base}/#/run/big/${run.id}`), 1);
  const mid = Math.floor(lines / 2);
  await step(`jump to line ${mid}`, async () => { await page.fill('#goto-line', String(mid)); await page.press('#goto-line', 'Enter'); }, mid);
  const near = lines - 1000;
  await step(`jump to line ${near}`, async () => { await page.fill('#goto-line', String(near)); await page.press('#goto-line', 'Enter'); }, near);
  await step('End key (last line)', async () => { await page.focus('#log'); await page.keyboard.press('End'); }, lines);
  // Jumps timed inside the page (from the call to the frame that shows the
  // line), without the driver's round trips.
  const times = await page.evaluate(async (n) => {
    const v = window.cronkeepViewer;
    const out = [];
    for (let i = 0; i < 50; i++) {
      const target = 1 + Math.floor(Math.random() * (n - 100));
      const t0 = performance.now();
      v.jumpToLine(target);
      await new Promise((resolve) => {
        const check = () => (document.querySelector(`#log .ln[data-line="${target}"]:not(.pending)`) ? resolve() : requestAnimationFrame(check));
        check();
      });
      out.push(performance.now() - t0);
    }
    return out.sort((a, b) => a - b);
  }, lines);
  console.log(`50 random jumps in the page: median ${times[25].toFixed(1)} ms, p90 ${times[45].toFixed(1)} ms, max ${times[49].toFixed(1)} ms`);
  // Jumps to a time, as the page's "Time" form does them: the since= read
  // through the .tidx sidecar, then the jump to the line it names.
  const started = Date.parse(run.started_at), finished = Date.parse(run.finished_at);
  const timeJumps = await page.evaluate(async ([from, to, id]) => {
    const v = window.cronkeepViewer;
    const out = [];
    while (out.length < 50) {
      const at = new Date(from + Math.random() * (to - from)).toISOString();
      const t0 = performance.now();
      const p = await v.fetchJson('/log?since=' + encodeURIComponent(at) + '&lines=1');
      if (!p.lines.length) continue;  // after the last line's second
      const target = p.lines[0].line;
      v.jumpToLine(target);
      await new Promise((resolve) => {
        const check = () => (document.querySelector(`#log .ln[data-line="${target}"]:not(.pending)`) ? resolve() : requestAnimationFrame(check));
        check();
      });
      out.push(performance.now() - t0);
    }
    return out.sort((a, b) => a - b);
  }, [started, finished, run.id]);
  console.log(`50 random jumps to a time in the page: median ${timeJumps[25].toFixed(1)} ms, p90 ${timeJumps[45].toFixed(1)} ms, max ${timeJumps[49].toFixed(1)} ms`);
  const fetchMs = await page.evaluate(async ([n, id]) => {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await fetch(`/api/tasks/big/runs/${id}/log?from_line=${1 + Math.floor(Math.random() * (n - 300))}&lines=200`).then((r) => r.json());
    return (performance.now() - t0) / 20;
  }, [lines, run.id]);
  console.log(`fetch of 200 lines in the page: ${fetchMs.toFixed(1)} ms`);
  const curl = Date.now();
  for (let i = 0; i < 20; i++) await fetch(`${d.base}/api/tasks/big/runs/${run.id}/log?from_line=${1 + Math.floor(Math.random() * (lines - 300))}&lines=200`).then((r) => r.text());
  console.log(`the API alone: ${((Date.now() - curl) / 20).toFixed(1)} ms per 200-line read`);
} finally {
  if (browser) await browser.close();
  await d.stop();
}
