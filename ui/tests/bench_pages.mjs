// The overview and a task page on a long history: a daemon with 100 tasks
// whose database holds RUNS runs (default 1,000,000; one task holds 60 % of
// them), written with sqlite3 while the daemon runs (with the per-task
// counts the store keeps, in the same transaction). Headless chromium then
// navigates, REPS times each, to the overview until every task's row and
// its strip of recent runs are on screen, and to the big task's page until
// its first history page is; prints the median and the worst.
//
//   node ui/tests/bench_pages.mjs build/cronkeep [RUNS] [REPS]
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { launch, skipUnlessReady, startDaemon } from './harness.mjs';

skipUnlessReady();
const binary = process.argv[2];
const runs = +(process.argv[3] || 1_000_000);
const reps = +(process.argv[4] || 9);
let tasks = '';
for (let i = 0; i < 100; i++) tasks += `[tasks.t${String(i).padStart(2, '0')}]\ncron = "0 0 1 1 *"\nrun = "true"\n`;
const d = await startDaemon(binary, tasks);
let browser;
try {
  const db = path.join(d.dir, 'data', 'cronkeep.db');
  let t = Date.now();
  execFileSync('sqlite3', [db, `
    PRAGMA busy_timeout = 10000;
    BEGIN IMMEDIATE;
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ${runs})
    INSERT INTO runs (task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code, duration_ms)
    SELECT CASE WHEN n % 10 < 6 THEN 't00' ELSE 't' || printf('%02d', 1 + n % 99) END, 'schedule',
           CASE WHEN n % 17 = 0 THEN 'failed' ELSE 'succeeded' END,
           1700000000000 + n * 1000, 1700000000000 + n * 1000, 1700000000000 + n * 1000,
           1700000000000 + n * 1000 + 40, CASE WHEN n % 17 = 0 THEN 1 ELSE 0 END, 40 FROM g;
    -- Rows written behind the store's back: their counts too (task_stats).
    DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;
    COMMIT;`]);
  console.log(`history: ${runs} runs written in ${Date.now() - t} ms`);
  browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  const timed = async (url, ready) => {
    const v = [];
    for (let i = 0; i < reps; i++) {
      await page.goto('about:blank');
      const start = Date.now();
      await page.goto(url);
      await page.waitForFunction(ready, null, { polling: 'raf', timeout: 30000 });
      v.push(Date.now() - start);
    }
    v.sort((a, b) => a - b);
    return `median ${v[Math.floor(v.length / 2)]} ms, max ${v[v.length - 1]} ms (${reps} navigations)`;
  };
  console.log(`overview, 100 tasks, every row with its recent runs: ${await timed(`${d.base}/#/`,
    () => document.querySelectorAll('tr.task-row').length >= 100 &&
          document.querySelector('tr.task-row[data-task="t00"] .strip > *') !== null)}`);
  console.log(`task page of t00 (${Math.round(runs * 0.6)} runs), first history page: ${await timed(`${d.base}/#/task/t00`,
    () => document.querySelectorAll('#runs tr[data-run]').length > 0)}`);
} finally {
  if (browser) await browser.close();
  await d.stop();
}
