import { launch, startDaemon } from './harness.mjs';
const d = await startDaemon('/work/wt-ui/build/cronkeep', String.raw`[tasks.colors]
cron = "0 0 1 1 *"
run = '''printf '\033[31mred text\033[0m and plain\n'; echo 'to stderr' >&2; echo 'last line'; printf 'bad \377\376 utf8 and a NUL \000 here\n'; head -c 100000 /dev/zero | tr '\0' 'x'; echo'''
`);
const r = await d.api('/api/tasks/colors/run?wait=true', { method: 'POST' });
const b = await launch(); const p = await b.newPage();
p.on('console', (m) => console.log('console', m.text())); p.on('pageerror', (e) => console.log('pageerror', e.message));
await p.goto(`${d.base}/#/run/colors/${r.id}`);
await new Promise((x) => setTimeout(x, 1500));
console.log(await p.evaluate(async () => { const v = window.cronkeepViewer; return JSON.stringify({first: v.first, total: v.total, blocks: [...v.blocks.entries()].map(([k, x]) => [k, Array.isArray(x) ? x.length : String(x)]), stats: v.stats}); }));
console.log(await p.evaluate(() => document.querySelector('#log').innerHTML.slice(0, 1500)));
console.log(await p.evaluate(() => document.querySelector('#run-message').textContent));
await b.close(); await d.stop();
