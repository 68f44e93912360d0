// Shared by the browser test and the UI benchmarks: a real daemon on a
// temporary data directory and a free port, Debian's chromium driven by
// playwright-core (no browser download), SSE reading and CPU times.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.CRONKEEP_CHROMIUM || '/usr/bin/chromium';

export function skipUnlessReady() {
  if (!fs.existsSync(CHROMIUM)) {
    console.log(`SKIP: ${CHROMIUM} is absent (scripts/setup.sh installs Debian's chromium)`);
    process.exit(77);
  }
}

export async function playwright() {
  try {
    return (await import('playwright-core')).chromium;
  } catch {
    console.error('playwright-core is not installed: run `npm ci` in ui/tests (scripts/setup.sh does)');
    process.exit(1);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

// Starts `cronkeep daemon` on a config with `tasks` (TOML text); returns
// {base, token, dir, stop()}. The daemon is stopped by its PID only.
export async function startDaemon(binary, tasks, extra = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cronkeep-ui-'));
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'cronkeep.toml'),
    `[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:${port}"\n${extra}\n${tasks}\n`);
  const log = fs.openSync(path.join(dir, 'daemon.log'), 'w');
  const child = spawn(binary, ['daemon', '-c', path.join(dir, 'cronkeep.toml')], { stdio: ['ignore', log, log] });
  const base = `http://127.0.0.1:${port}`;
  let exited = false;
  child.on('exit', () => { exited = true; });
  for (let i = 0; ; i++) {
    if (exited) throw new Error('the daemon exited: ' + fs.readFileSync(path.join(dir, 'daemon.log'), 'utf8'));
    try { if ((await fetch(base + '/healthz')).ok) break; } catch {}
    if (i > 200) throw new Error('the daemon did not answer in 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const token = fs.readFileSync(path.join(dir, 'data', 'token'), 'utf8').trim();
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((r) => child.on('exit', r));
      process.kill(child.pid, 'SIGTERM');
      let timer;
      await Promise.race([gone, new Promise((r) => { timer = setTimeout(r, 15000); })]);
      clearTimeout(timer);  // else it keeps node alive 15 s after the last daemon stopped
      if (!exited) process.kill(child.pid, 'SIGKILL');
    }
    if (!process.env.CRONKEEP_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };
  const api = async (p, { method = 'GET', body } = {}) => {
    const res = await fetch(base + p, { method, headers: { Authorization: 'Bearer ' + token, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const data = await res.json();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${data.error}`);
    return data;
  };
  return { base, token, dir, stop, api, pid: child.pid };
}

// A daemon with one task, `follow`, for the live-tail benchmarks: once
// started it prints RATE lines a second, line n due n / RATE s after its
// start, each with its own write(2) and stamped `t=<ms since the epoch>`
// (the machine's wall clock, which the browser reads too) just before.
// stop() ends the writer (or it ends after an hour), then the daemon.
// `extra`: more [daemon] settings.
export async function startLineWriter(binary, rate, extra = '') {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cronkeep-follow-'));
  const stopFile = path.join(tmp, 'stop');
  fs.writeFileSync(path.join(tmp, 'writer.py'), `
import os, sys, time
rate, stop = int(sys.argv[1]), sys.argv[2]
pad = b'. a line of a busy run, padded to a usual length'
t0 = time.time()
n = 0
while not os.path.exists(stop) and time.time() - t0 < 3600:
    due = int((time.time() - t0) * rate)
    while n < due:
        n += 1
        os.write(1, b'follow %d t=%.3f %s\\n' % (n, time.time() * 1000, pad))
    time.sleep(max(0.0, t0 + (n + 1) / rate - time.time()))
`);
  const python = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const d = await startDaemon(binary, `
[tasks.follow]
cron = "0 0 1 1 *"
run = '${python} ${path.join(tmp, 'writer.py')} ${rate} ${stopFile}'
log_max_size = "0"
`, extra);
  const stopDaemon = d.stop;
  d.stop = async () => {
    fs.writeFileSync(stopFile, '');
    await stopDaemon();
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  return d;
}

export async function launch() {
  const chromium = await playwright();
  const args = ['--headless=new'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}

// Reads the daemon's GET /api/events (with its token) and calls
// `until({event, data})` for each event, `ready` first; resolves once it
// returns true (it may be async). Rejects after `ms`.
export function waitForEvents(d, until, ms = 10000) {
  return readSse(d, '/api/events', until, ms);
}

// Reads an SSE stream of the daemon (path, with its token) and calls
// `until({event, data, id})` for each event with data; resolves once it
// returns true (it may be async). Rejects after `ms`.
export async function readSse(d, p, until, ms = 10000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  try {
    const res = await fetch(d.base + p, { headers: { Authorization: 'Bearer ' + d.token }, signal: ctrl.signal });
    if (!res.ok) throw new Error(`GET ${p}: ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ${p} ended`);
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { event: 'message', data: null, id: null };
        for (const l of frame.split('\n')) {
          if (l.startsWith('event: ')) ev.event = l.slice(7);
          else if (l.startsWith('data: ')) ev.data = JSON.parse(l.slice(6));
          else if (l.startsWith('id: ')) ev.id = l.slice(4);
        }
        if (ev.data && (await until(ev))) return;
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) throw new Error(`the awaited event did not come within ${ms} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
}

// ---- CPU time, from /proc (Linux) ----

const TICKS = 100;  // USER_HZ: /proc/PID/stat counts in 1/100 s on Linux

// User + system CPU seconds of a process (0 when it is gone).
export function cpuSeconds(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');  // fields from the 3rd (state) on
    return (+f[11] + +f[12]) / TICKS;                       // utime, stime: fields 14 and 15
  } catch {
    return 0;
  }
}

// The PIDs of a process's children, their children, and so on.
export function descendants(pid) {
  const parent = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(+e, +s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {}
  }
  const out = [];
  const walk = (p) => { for (const [c, pp] of parent) if (pp === p) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

// The whole machine's busy and total CPU seconds so far (all cores), from
// /proc/stat: the difference of two readings says how loaded it was.
export function machineCpu() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: (total - f[3] - (f[4] || 0)) / TICKS, total: total / TICKS };
}
