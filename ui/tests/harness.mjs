// Shared by the browser test and the log-viewer benchmark: a real daemon on
// a temporary data directory and a free port, and Debian's chromium driven
// by playwright-core (no browser download).
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
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15000))]);
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

export async function launch() {
  const chromium = await playwright();
  const args = ['--headless=new'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}

// Reads the daemon's GET /api/events (with its token) and calls
// `until({event, data})` for each event, `ready` first; resolves once it
// returns true (it may be async). Rejects after `ms`.
export async function waitForEvents(d, until, ms = 10000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  try {
    const res = await fetch(d.base + '/api/events', { headers: { Authorization: 'Bearer ' + d.token }, signal: ctrl.signal });
    if (!res.ok) throw new Error(`GET /api/events: ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the events stream ended');
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { event: 'message', data: null };
        for (const l of frame.split('\n')) {
          if (l.startsWith('event: ')) ev.event = l.slice(7);
          else if (l.startsWith('data: ')) ev.data = JSON.parse(l.slice(6));
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
