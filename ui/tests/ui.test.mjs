// The web UI in a real browser (Debian's chromium, driven by playwright-core)
// against a real daemon on a temporary data directory.
//
//   node ui/tests/ui.test.mjs build/cronkeep [screenshot-dir]
//
// Exit 0 on success, 1 on a failure, 77 (skipped) when chromium is absent.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launch, skipUnlessReady, startDaemon, waitForEvents } from './harness.mjs';

skipUnlessReady();
const binary = process.argv[2];
const shots = process.argv[3];
if (!binary) { console.error('usage: ui.test.mjs CRONKEEP_BINARY [SCREENSHOT_DIR]'); process.exit(2); }

const TASKS = String.raw`
[tasks.colors]
cron = "0 0 1 1 *"
run = '''printf '\033[31mred text\033[0m and plain\n'; echo 'to stderr' >&2; echo 'last line'; printf 'bad \377\376 utf8 and a NUL \000 here\n''''

# The 100 kB line has a run of its own: it is more than a pipe holds, so a
# stderr line read while it is half read would join it (a line's stream is
# its first byte's, docs/log-format.md) and the colours' stderr line with it.
[tasks.longline]
cron = "0 0 1 1 *"
run = '''echo before; head -c 100000 /dev/zero | tr '\0' 'x'; echo'''

[tasks.many]
cron = "0 0 1 1 *"
run = "true"
keep_runs = 1000

[tasks.slowlog]
cron = "0 0 1 1 *"
run = "for i in $(seq 1 30); do echo line $i; sleep 0.1; done"

[tasks.ticker]
cron = "0 4 * * *"
timezone = "Europe/Berlin"
run = "echo tick"
`;

const d = await startDaemon(binary, TASKS);
let browser;
let step = 'start';
const t0 = Date.now();
const ok = (what) => console.log(`ok   ${what} (${Date.now() - t0} ms)`);
try {
  // Some history: 60 runs of `many`, one of `colors`.
  step = 'seed';
  for (let i = 0; i < 60; i++) await d.api('/api/tasks/many/run', { method: 'POST' });
  const colors = await d.api('/api/tasks/colors/run?wait=true', { method: 'POST' });
  assert.equal(colors.status, 'succeeded');
  const longline = await d.api('/api/tasks/longline/run?wait=true', { method: 'POST' });
  assert.equal(longline.status, 'succeeded');
  for (let i = 0; i < 200; i++) {
    const page = await d.api('/api/tasks/many/runs?limit=100');
    if (page.runs.length === 60 && page.runs.every((r) => r.status === 'succeeded')) break;
    assert.ok(i < 199, 'the 60 runs of many did not finish');
    await new Promise((r) => setTimeout(r, 50));
  }

  browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(d.base + '/') && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/401|404|409/.test(m.text())) errors.push(m.text()); });

  // ---- overview: lists the tasks, updates live when a run ends ----
  step = 'overview';
  const apiCalls = [];
  const countCalls = (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/api/')) apiCalls.push(u.pathname + u.search); };
  page.on('request', countCalls);
  const res = await page.goto(d.base + '/');
  assert.match(res.headers()['content-security-policy'], /default-src 'none'; script-src 'self'/);
  await page.waitForSelector('tr[data-task="ticker"]');
  const names = await page.$$eval('tr.task-row', (rows) => rows.map((r) => r.dataset.task));
  assert.deepEqual(names, ['colors', 'longline', 'many', 'slowlog', 'ticker']);  // system tasks hidden without a token
  assert.match(await page.textContent('tr[data-task="ticker"]'), /every day at 04:00/);
  await page.waitForSelector('#live:text("live")');
  assert.equal(await page.$$eval('tr[data-task="many"] .strip span', (s) => s.length), 30);
  // Every task's strip from one request (GET /api/runs/recent), one more at most on `ready`; none per task.
  page.off('request', countCalls);
  const recentCalls = apiCalls.filter((u) => u.startsWith('/api/runs/recent'));
  assert.ok(recentCalls.length >= 1 && recentCalls.length <= 2, `recent runs read ${recentCalls.length} time(s): ${apiCalls.join(' ')}`);
  assert.equal(apiCalls.filter((u) => /^\/api\/tasks\/[^/]+\/runs/.test(u)).length, 0, `no request per task: ${apiCalls.join(' ')}`);
  const before = await page.textContent('tr[data-task="colors"] td.last');
  const fresh = await d.api('/api/tasks/colors/run?wait=true', { method: 'POST' });  // not through the page
  await page.waitForSelector(`tr[data-task="colors"] td.last a[href="#/run/colors/${fresh.id}"]`, { timeout: 5000 });
  assert.notEqual(before, await page.textContent('tr[data-task="colors"] td.last'));
  await page.fill('#filter', 'slow');
  await page.waitForSelector('tr[data-task="colors"]', { state: 'hidden' });
  assert.ok(await page.isVisible('tr[data-task="slowlog"]'));
  await page.fill('#filter', '');
  if (shots) await page.screenshot({ path: `${shots}/ui-overview.png` });
  ok('overview lists the tasks and updates live from /api/events');

  // ---- task page: keyset paging, status filter ----
  step = 'task page';
  await page.goto(d.base + '/#/task/many');
  await page.waitForSelector('#runs tr[data-run]');
  const first = await page.$$eval('#runs tr[data-run]', (r) => r.map((x) => +x.dataset.run));
  assert.equal(first.length, 50);
  assert.ok(first[0] > first[49]);
  await page.click('#older');
  await page.waitForFunction((top) => +document.querySelector('#runs tr[data-run]').dataset.run < top, first[49]);
  const second = await page.$$eval('#runs tr[data-run]', (r) => r.map((x) => +x.dataset.run));
  assert.equal(second.length, 10);
  assert.ok(second[0] < first[49], 'the second page continues below the first');
  await page.click('#newer');
  await page.waitForSelector(`#runs tr[data-run="${first[0]}"]`);
  await page.selectOption('#status-filter', 'failed');
  await page.waitForFunction(() => /No runs with status failed/.test(document.querySelector("#runs").textContent), null, { timeout: 5000 }).catch(async (e) => { console.error(await page.textContent("#runs")); throw e; });
  await page.selectOption('#status-filter', '');
  await page.waitForSelector('#retention-preview');
  assert.match(await page.textContent('#retention-rules'), /keep_runs\s*1000\s*task/);
  assert.match(await page.textContent('#retention-rules'), /keep_for\s*30d\s*\[defaults\]/);
  ok('task page pages the history (keyset) and filters by status; retention rules with sources');

  // ---- sign-in: a mutating action without a token, then a wrong token, then the right one ----
  step = 'sign-in';
  await page.click('#run-now');
  await page.waitForSelector('#signin[open]');
  await page.fill('#signin-token', 'wrong-token-wrong-token-wrong-token');
  await page.click('#signin-submit');
  await page.waitForSelector('#signin[open] #signin-message:text("refused")');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cronkeep.token')), null);
  await page.fill('#signin-token', d.token);
  await page.click('#signin-submit');
  await page.waitForFunction(() => /^#\/run\/many\/\d+$/.test(location.hash));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cronkeep.token')), d.token);
  assert.equal(await context.cookies().then((c) => c.length), 0, 'no cookie');
  await page.waitForSelector('#run-meta .badge.st-succeeded');
  ok('a wrong token brings the sign-in back; the right one runs the task and opens its run');

  // ---- run page: stdout/stderr told apart, ANSI colours, bad bytes, long lines ----
  step = 'run page';
  await page.goto(`${d.base}/#/run/colors/${colors.id}`);
  await page.waitForSelector('#log .ln.s-e');
  assert.match(await page.textContent('#log .ln.s-e'), /to stderr/);
  const red = await page.$eval('#log .ln.s-o .t span.f1', (s) => [s.textContent, getComputedStyle(s).color]);
  assert.equal(red[0], 'red text');
  assert.equal(red[1], 'rgb(205, 49, 49)');
  assert.ok(!(await page.textContent('#log')).includes('\x1b'), 'escape codes are not shown raw');
  const texts = await page.$$eval('#log .ln .t', (l) => l.map((x) => x.textContent));
  assert.ok(texts.some((t) => /bad \uFFFD\uFFFD utf8 and a NUL \u2400 here/.test(t)), texts.join('|').slice(0, 500));
  assert.equal(await page.getAttribute('#download', 'href'), `/api/tasks/colors/runs/${colors.id}/log/raw`);
  const raw = await page.evaluate(async (u) => (await fetch(u)).text(), `/api/tasks/colors/runs/${colors.id}/log/raw`);
  assert.ok(raw.startsWith('\x1b[31mred text'));
  if (shots) await page.screenshot({ path: `${shots}/ui-run.png` });
  // A 100 kB line without a newline: two lines of the log (64 KiB, then the
  // rest), each cut for display.
  await page.goto(`${d.base}/#/run/longline/${longline.id}`);
  // (A row is numbered before its block is read: wait for the text itself.)
  await page.waitForFunction(() => [...document.querySelectorAll('#log .ln .t')]
    .some((t) => /^x{4000} … 61536 more characters/.test(t.textContent)), null, { timeout: 15000 });
  ok('run page: stdout/stderr apart, ANSI red rendered, invalid UTF-8/NUL/100 kB line render, raw download');

  // ---- live tail: Run now on a slow task, lines arrive over SSE ----
  step = 'live tail';
  await page.goto(d.base + '/#/task/slowlog');
  await page.click('#run-now');  // signed in: no dialog
  await page.waitForFunction(() => /^#\/run\/slowlog\/\d+$/.test(location.hash));
  await page.waitForSelector('#run-meta .badge.st-running');
  await page.waitForSelector('#log .ln[data-line="5"]');
  const runningWhileLine5 = await page.isVisible('#run-meta .badge.st-running');
  assert.ok(runningWhileLine5, 'line 5 arrived while the run was still running (live)');
  await page.waitForSelector('#log .ln[data-line="30"]', { timeout: 15000 });
  await page.waitForSelector('#run-meta .badge.st-succeeded');
  const numbers = await page.$$eval('#log .ln[data-line]', (l) => l.map((x) => +x.dataset.line));
  assert.equal(new Set(numbers).size, numbers.length, 'no line twice');
  assert.match(await page.textContent('#log .ln[data-line="30"]'), /line 30/);
  ok('run page tails a live run over SSE');

  // ---- a run that does not exist ----
  step = 'not found';
  await page.goto(d.base + '/#/run/colors/999999');
  await page.waitForSelector('#not-found');
  assert.match(await page.textContent('#not-found'), /999999/);
  await page.goto(d.base + '/#/task/nope');
  await page.waitForSelector('#not-found');
  ok('an unknown run or task says so');

  // ---- maintenance: sizes, a purge previewed then confirmed ----
  step = 'maintenance';
  await page.goto(d.base + '/#/maintenance');
  await page.waitForSelector('#db-size b');
  assert.match(await page.textContent('#db-size b'), /^\d+(\.\d+)? (B|KB|MB)$/);
  assert.match(await page.textContent('#wal-size b'), /B$/);
  assert.match(await page.textContent('#log-size b'), /B$/);
  await page.waitForSelector('[data-task="cronkeep:retention"]');
  await page.fill('#purge-older', '1s');
  await page.selectOption('#purge-task', 'many');
  await page.click('#purge-preview-button');
  await page.waitForSelector('#purge-total');
  const previewed = +(await page.textContent('#purge-total'));
  const manyBefore = (await d.api('/api/tasks/many/runs?limit=1000')).runs.length;
  assert.ok(previewed > 0 && previewed < manyBefore, `preview ${previewed} of ${manyBefore}`);
  assert.equal((await d.api('/api/tasks/many/runs?limit=1000')).runs.length, manyBefore, 'a preview deletes nothing');
  await page.click('#purge-confirm');
  await page.waitForSelector('#purge-done');
  const manyAfter = (await d.api('/api/tasks/many/runs?limit=1000')).runs.length;
  assert.equal(manyBefore - manyAfter, previewed, 'the purge removed the runs it previewed');
  await page.click('#compact');
  await page.waitForFunction(() => /reclaim|page|Compact/i.test(document.querySelector('#compact-result').textContent) && !document.querySelector('#compact').disabled);
  ok(`maintenance shows sizes; purge previewed ${previewed} run(s) and deleted exactly those; compact`);

  // ---- maintenance over time: a daemon whose retention and compactor run every second ----
  step = 'maintenance chart';
  const m = await startDaemon(binary, String.raw`
[tasks.churn]
run = "seq 1 100"
keep_runs = 5
max_concurrent = 4
queue_max = 1000
`, '[storage]\nmin_free_space = "1MB"\n[retention]\nschedule = "@every 1s"\n[compactor]\nschedule = "@every 1s"\n');
  try {
    // 300 runs, of which each sweep keeps 5: rows, logs and whole pages go.
    for (let i = 0; i < 300; i++) await m.api('/api/tasks/churn/run', { method: 'POST' });
    let seen = { sweeps: 0, compactions: 0 };
    const history = async () => (await m.api('/api/maintenance/history?limit=1000')).runs;
    await waitForEvents(m, async (ev) => {
      const ended = ev.event === 'state' && ev.data.task.startsWith('cronkeep:') && ev.data.status !== 'running';
      if (ev.event !== 'ready' && !ended) return false;
      const h = await history();
      const sweep = h.find((r) => r.task === 'cronkeep:retention' && r.rows_deleted >= 100);
      const reclaim = sweep && h.find((r) => r.task === 'cronkeep:compactor' && r.run_id > sweep.run_id && r.db_bytes_reclaimed > 0);
      seen = { sweeps: h.filter((r) => r.task === 'cronkeep:retention').length, compactions: h.filter((r) => r.task === 'cronkeep:compactor').length };
      return !!reclaim && seen.sweeps >= 3 && seen.compactions >= 3;
    }, 30000).catch((e) => { throw new Error(`${e.message} (${JSON.stringify(seen)})`); });
    const mpage = await context.newPage();
    mpage.on('pageerror', (e) => errors.push(e.message));
    mpage.on('request', (r) => { if (!r.url().startsWith(m.base + '/') && !r.url().startsWith('data:')) foreign.push(r.url()); });
    await mpage.goto(m.base + '/#/maintenance');
    await mpage.evaluate((t) => sessionStorage.setItem('cronkeep.token', t), m.token);  // signed in
    await mpage.reload();
    // The chart: one point per system run with figures, drawn by uPlot.
    await mpage.waitForFunction(() => +(document.querySelector('#maint-chart')?.dataset.points || 0) >= 6);
    await mpage.waitForSelector('#maint-chart canvas');
    const chart = await mpage.$eval('#maint-chart', (box) => {
      const c = box.querySelector('canvas');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let painted = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
      return { points: +box.dataset.points, sizes: +box.dataset.sizes, reclaims: +box.dataset.reclaims, painted,
        legend: [...box.querySelectorAll('.u-legend .u-label')].map((l) => l.textContent) };
    });
    const h = await history();
    assert.ok(chart.points >= 6 && chart.points <= h.length, JSON.stringify(chart));
    assert.ok(chart.sizes >= 6 && chart.reclaims >= 3, JSON.stringify(chart));
    assert.ok(chart.painted > 2000, `the chart's canvas is painted (${chart.painted} pixels)`);
    assert.deepEqual(chart.legend.slice(1), ['Database size', 'Reclaimed (compactor)', 'Logs freed (retention)']);
    const summary = await mpage.textContent('#chart-summary');
    assert.match(summary, /system run\(s\) from .* the compactor reclaimed \d+\.\d (KB|MB)/, summary);
    ok(`maintenance chart: ${chart.points} points from the system runs' own figures (${seen.sweeps} sweeps, ${seen.compactions} compactions)`);

    // Free disk of the data directory against min_free_space (1MB).
    step = 'free disk';
    const disk = await mpage.$eval('#disk-free', (c) => ({ free: +c.dataset.free, min: +c.dataset.min, below: c.dataset.below, text: c.textContent }));
    const fsys = fs.statfsSync(path.join(m.dir, 'data'));
    assert.ok(Math.abs(disk.free - fsys.bavail * fsys.bsize) < 256 * 1024 * 1024, `free ${disk.free} vs statfs ${fsys.bavail * fsys.bsize}`);
    assert.equal(disk.min, 1024 * 1024);
    assert.equal(disk.below, 'false');
    assert.match(disk.text, /Free disk\s*\d+\.\d (MB|GB|TB).*of \d+\.\d (GB|TB); min_free_space 1\.0 MB/s, disk.text);
    ok('free disk shown against min_free_space');

    // Compact from the UI: the run is seen starting, freeing pages, ending.
    step = 'compact progress';
    await mpage.click('#compact');
    await mpage.waitForSelector('#compact-result[data-phase="finished"]', { timeout: 15000 });
    const run = await mpage.getAttribute('#compact-result', 'data-run');
    assert.match(run, /^\d+$/);
    const line = `#compact-runs li[data-run="${run}"]`;
    await mpage.waitForSelector(`${line}[data-status="succeeded"]`);
    await mpage.waitForFunction((sel) => /\brunning\b.*\bfreeing\b.*\bcheckpointing\b/.test(document.querySelector(sel).dataset.phases), line);
    const phases = await mpage.getAttribute(line, 'data-phases');
    assert.match(await mpage.textContent('#compact-result'), /^Reclaimed \d+(\.\d)? (B|KB|MB) \(\d+ page\(s\)/);
    const stored = await m.api(`/api/tasks/cronkeep:compactor/runs/${run}`);
    assert.equal(stored.trigger, 'manual');
    assert.equal(stored.status, 'succeeded');
    assert.equal(await mpage.textContent(`${line} .hint`), stored.message);
    ok(`compact from the UI: run #${run} seen ${phases.split(' ').join(' → ')}`);
    if (shots) {
      await mpage.waitForFunction(() => +(document.querySelector('#maint-chart')?.dataset.points || 0) >= 7);
      await mpage.screenshot({ path: `${shots}/ui-maintenance.png`, fullPage: true });
    }
    await mpage.close();
  } finally {
    await m.stop();
  }

  // ---- a 1 GiB, 10,000,000-line log: jump to line 9,000,000 and to a time ----
  step = 'big log';
  const LINE = 'cronkeep 1 GiB log line, the same 107 characters each time, so that ten million of them make one gibibyte...';
  const g = await startDaemon(binary, `
[tasks.big]
run = "yes '${LINE}' | head -n 5000000; sleep 2.5; yes '${LINE}' | head -n 5000000"
log_max_size = "0"
`);
  try {
    let t = Date.now();
    const big = await g.api('/api/tasks/big/run?wait=true', { method: 'POST' });
    assert.equal(big.status, 'succeeded');
    assert.equal(big.log_bytes, 10_000_000 * (LINE.length + 1));
    const written = Date.now() - t;
    const gpage = await context.newPage();
    gpage.on('pageerror', (e) => errors.push(e.message));
    // The line is drawn, highlighted, inside the viewer's box.
    const shown = async (line) => {
      const el = await gpage.waitForFunction((n) => {
        const ln = document.querySelector(`#log .ln.hl[data-line="${n}"]:not(.pending)`);
        if (!ln) return null;
        const box = ln.getBoundingClientRect(), view = document.querySelector('#log').getBoundingClientRect();
        return box.top >= view.top && box.bottom <= view.bottom ? ln : null;
      }, line);
      return el.evaluate((ln) => ln.querySelector('.t').textContent);
    };
    await gpage.goto(`${g.base}/#/run/big/${big.id}`);
    await gpage.waitForSelector('#log .ln[data-line="1"]:not(.pending)');
    assert.match(await gpage.textContent('#where'), /of 10000000$/);
    await gpage.evaluate(() => { window.cronkeepViewer.stats = { requests: 0, bytes: 0 }; });
    t = Date.now();
    await gpage.fill('#goto-line', '9000000');
    await gpage.press('#goto-line', 'Enter');
    const at9m = await shown(9000000);
    const lineMs = Date.now() - t;
    assert.equal(at9m, LINE);
    const fetched = await gpage.evaluate(() => window.cronkeepViewer.stats);
    assert.ok(fetched.requests <= 4 && fetched.bytes < 200 * 1024, `only what is on screen is read: ${JSON.stringify(fetched)}`);
    // A time inside the run: the whole second that falls in its 2.5 s pause
    // between two halves (however fast the machine writes), so lines come
    // before it and after it; the viewer shows the first line at or after it.
    const started = Date.parse(big.started_at), finished = Date.parse(big.finished_at);
    const half = (await g.api(`/api/tasks/big/runs/${big.id}/log?from_line=5000000&lines=2`)).lines;
    const target = Math.floor(Date.parse(half[0].time) / 1000) * 1000 + 1000;
    assert.ok(started < target && target < finished && target <= Date.parse(half[1].time),
      `a whole second inside the pause: ${JSON.stringify(half.map((l) => l.time))}`);
    const local = await gpage.evaluate((ms) => {
      const d = new Date(ms), p = (n) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    }, target);
    const expected = (await g.api(`/api/tasks/big/runs/${big.id}/log?since=${new Date(target).toISOString()}&lines=1`)).lines[0].line;
    assert.ok(expected > 1 && expected < 10_000_000, `the time falls inside the log (line ${expected})`);
    const around = (await g.api(`/api/tasks/big/runs/${big.id}/log?from_line=${expected - 1}&lines=2`)).lines;
    assert.ok(Date.parse(around[0].time) < target && Date.parse(around[1].time) >= target, JSON.stringify(around.map((l) => l.time)));
    t = Date.now();
    await gpage.fill('#goto-time', local);
    await gpage.click('#jump-time button');
    assert.equal(await shown(expected), LINE);
    const timeMs = Date.now() - t;
    // End reaches the very last line (the scroll range is the spacer's).
    await gpage.focus('#log');
    await gpage.keyboard.press('End');
    await gpage.waitForSelector('#log .ln[data-line="10000000"]:not(.pending)');
    assert.match(await gpage.textContent('#where'), /–10000000 of 10000000$/);
    ok(`1 GiB log (10,000,000 lines, written in ${written} ms): line 9,000,000 shown in ${lineMs} ms (${fetched.requests} request(s), ${(fetched.bytes / 1024).toFixed(1)} KiB), the time ${local} (line ${expected}) in ${timeMs} ms, End shows the last line`);
    await gpage.close();
  } finally {
    await g.stop();
  }

  // ---- 8 run pages and an overview in tabs of one browser (issue 12) ----
  // Each page follows its run live and a 9th page still loads: the browser
  // allows 6 HTTP/1.1 connections per host, so the tabs must share streams.
  step = 'tabs';
  const md = await startDaemon(binary, `
[tasks.printer]
run = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo printed $i; sleep 0.05; done"
max_concurrent = 8
`, 'shutdown_timeout = "1s"');
  try {
    const runs = [];
    for (let i = 0; i < 8; i++) runs.push(await md.api('/api/tasks/printer/run', { method: 'POST' }));
    const tabs = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const tabErrors = [];
    const open = async (hash, selector) => {
      const p = await tabs.newPage();
      p.on('pageerror', (e) => tabErrors.push(e.message));
      await p.goto(md.base + '/' + hash, { timeout: 15000 });
      await p.waitForSelector(selector, { timeout: 15000 });
      return p;
    };
    const overview = await open('#/', '#live:text("live")');
    const pages = [];
    for (const r of runs) pages.push(await open(`#/run/printer/${r.id}`, '#log .ln:not(.pending)'));
    // Each run page shows new lines as they come (its run prints 20 a second).
    const total = (p) => p.evaluate(() => window.cronkeepViewer.total);
    const before = await Promise.all(pages.map(total));
    await Promise.all(pages.map((p, i) => p.waitForFunction((n) => window.cronkeepViewer.total >= n + 10, before[i], { timeout: 15000 })));
    // Each shows its own run's lines, in order, none twice.
    for (const [i, p] of pages.entries()) {
      const lines = await p.$$eval('#log .ln:not(.pending)', (ls) => ls.map((l) => [+l.dataset.line, l.querySelector('.t').textContent]));
      for (const [n, text] of lines) assert.equal(text, `printed ${n}`, `run ${runs[i].id} line ${n}`);
      for (let k = 1; k < lines.length; k++) assert.equal(lines[k][0], lines[k - 1][0] + 1, `run ${runs[i].id}: lines in order, none twice`);
    }
    // A plain navigation in a 10th tab still loads, and the overview stays live.
    const extra = await open('#/task/printer', '#run-now');
    await extra.close();
    await overview.waitForSelector('#live:text("live")');
    assert.deepEqual(tabErrors, [], 'no error in the tabs');
    ok('8 run pages and an overview in tabs of one browser each follow live; a 10th tab still loads');
    await tabs.close();
  } finally {
    await md.stop();
  }

  // ---- without the shared stream: ?nomux, and a browser without SharedWorker ----
  // The page then keeps its own streams (docs/ui.md, "One stream for every
  // tab"): a running task's new lines still arrive live, in order, none twice.
  step = 'no SharedWorker';
  const nd = await startDaemon(binary, `
[tasks.printer]
run = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo printed $i; sleep 0.05; done"
`, 'shutdown_timeout = "1s"');
  try {
    const nrun = await nd.api('/api/tasks/printer/run', { method: 'POST' });
    // Every line the log viewer is handed, in arrival order: the viewer keeps
    // lines by number, so its DOM alone would hide a line given twice.
    const recordLines = () => {
      let viewer;
      window.cronkeepLinesAdded = [];
      Object.defineProperty(window, 'cronkeepViewer', {
        configurable: true,
        get: () => viewer,
        set: (v) => {
          viewer = v;
          const add = v.add.bind(v);
          v.add = (l) => {
            window.cronkeepReadBeforeLive ??= v.total;  // the lines the page read before its stream
            window.cronkeepLinesAdded.push(l.line);
            add(l);
          };
        },
      });
    };
    const cases = [
      { name: '?nomux', query: '?nomux', init: [recordLines] },
      { name: 'no SharedWorker', query: '', init: [() => { delete window.SharedWorker; }, recordLines] },
    ];
    for (const c of cases) {
      const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      for (const f of c.init) await ctx.addInitScript(f);
      const p = await ctx.newPage();
      const pageErrors = [];
      p.on('pageerror', (e) => pageErrors.push(e.message));
      const own = [];  // the page's own log streams (with the shared worker, the page makes none)
      p.on('request', (r) => { const u = new URL(r.url()); if (u.pathname.endsWith('/log/stream')) own.push(u.pathname + u.search); });
      await p.goto(`${nd.base}/${c.query}#/run/printer/${nrun.id}`);
      await p.waitForSelector('#log .ln:not(.pending)');
      await p.waitForSelector('#run-meta .badge.st-running');
      if (c.query === '') assert.equal(await p.evaluate(() => typeof SharedWorker), 'undefined', c.name);
      const before = await p.evaluate(() => window.cronkeepViewer.total);
      await p.waitForFunction((n) => window.cronkeepViewer.total >= n + 10, before, { timeout: 10000 });
      assert.ok(await p.isVisible('#run-meta .badge.st-running'), `${c.name}: the lines came while the run was running`);
      assert.ok(own.length >= 1, `${c.name}: the page follows the log on its own stream`);
      const from = +new URLSearchParams(own[0].split('?')[1]).get('from');
      // Every line from the one the stream started at, each once, in order, up to the last shown.
      const { added, read, total } = await p.evaluate(() => ({ added: window.cronkeepLinesAdded.slice(), read: window.cronkeepReadBeforeLive, total: window.cronkeepViewer.total }));
      assert.ok(added.length >= 10, `${c.name}: ${added.length} live line(s)`);
      assert.ok(read >= 1, `${c.name}: the page read ${read} line(s) before following`);
      assert.equal(from, read + 1, `${c.name}: the stream starts after the lines the page read`);
      assert.equal(added[0], from, `${c.name}: the live lines begin where the page's read ended`);
      for (let k = 1; k < added.length; k++) assert.equal(added[k], added[k - 1] + 1, `${c.name}: lines in order, none twice: ${added.join(',')}`);
      assert.ok(added[added.length - 1] <= total, c.name);
      const lines = await p.$$eval('#log .ln:not(.pending)', (ls) => ls.map((l) => [+l.dataset.line, l.querySelector('.t').textContent]));
      assert.ok(lines.length > 0 && lines[lines.length - 1][0] >= before + 10, `${c.name}: the new lines are on screen`);
      for (const [n, text] of lines) assert.equal(text, `printed ${n}`, `${c.name}: line ${n}`);
      for (let k = 1; k < lines.length; k++) assert.equal(lines[k][0], lines[k - 1][0] + 1, `${c.name}: lines on screen in order, none twice`);
      assert.deepEqual(pageErrors, [], `${c.name}: no error in the page`);
      await ctx.close();
    }
    ok('without the shared stream (?nomux; no SharedWorker) a run page follows its run live on its own stream, in order, none twice');
  } finally {
    await nd.stop();
  }

  // ---- a 401 (token changed under the tab) brings the sign-in back ----
  step = '401';
  await page.evaluate(() => sessionStorage.setItem('cronkeep.token', 'stale-token-stale-token-stale-token'));
  await page.goto(d.base + '/#/task/many');
  await page.waitForSelector('#run-now');
  await page.click('#run-now');
  await page.waitForSelector('#signin[open] #signin-message:text("refused")');
  await page.click('#signin-cancel');
  await page.waitForSelector('#task-message.error');
  ok('a refused token shows the sign-in again');

  if (shots) {
    await page.goto(d.base + '/#/task/many');
    await page.waitForSelector('#retention-preview');
    await page.screenshot({ path: `${shots}/ui-task.png` });
  }
  assert.deepEqual(foreign, [], 'no request leaves the host');
  assert.deepEqual(errors, [], 'no error in the page');
  ok('no request left the host; no page error');
} catch (e) {
  console.error(`FAIL at ${step}: ${e.stack || e}`);
  // What each open page showed, to tell a slow daemon from a wrong page.
  for (const pg of browser ? browser.contexts().flatMap((c) => c.pages()) : []) {
    const text = await pg.evaluate(() => document.querySelector('main').innerText).catch((x) => String(x));
    console.error(`--- ${pg.url()}\n${text.slice(0, 2000)}`);
    // A log viewer's rows, one line each: which lines it holds and how it classed them.
    const rows = await pg.evaluate(() => [...document.querySelectorAll('#log .ln')].map((r) => `${r.className} | ${r.textContent.slice(0, 60)}`)).catch(() => []);
    if (rows.length) console.error(`--- #log rows:\n${rows.join('\n')}`);
  }
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  await d.stop();
}
