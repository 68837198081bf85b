// Starts the real gateway (`obleth mock` + `obleth serve`) on free ports with temp dirs,
// a Chromium through playwright-core, and cleans everything up (also on failure).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startDevServer, CSP } from './devserver.mjs';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.OBLETH_BIN ?? '/work/main/target/debug/obleth';
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ADMIN_TOKEN = 'admin-token-for-console-tests-0123456789abcdef';
export const VIEWER_TOKEN = 'viewer-token-for-console-tests-0123456789abcdef';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(fn, what, ms = 60_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

export class Gateway {
  procs = [];
  dir = null;
  dev = null;

  async start() {
    if (!fs.existsSync(BIN)) throw new Error(`obleth binary not found at ${BIN} (set OBLETH_BIN)`);
    this.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'obleth-console-test-'));
    const [mock, data, admin, metrics] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    this.ports = { mock, data, admin, metrics };
    this.admin = `http://127.0.0.1:${admin}`;
    this.data = `http://127.0.0.1:${data}`;
    this.spawn('mock', [BIN, 'mock', '--listen', `127.0.0.1:${mock}`, '--max-num-seqs', '4', '--ttft-ms', '30', '--itl-ms', '15'], {});
    const d = this.dir;
    this.spawn('serve', [BIN, 'serve'], {
      OBLETH_LISTEN_DATA: `127.0.0.1:${data}`,
      OBLETH_LISTEN_ADMIN: `127.0.0.1:${admin}`,
      OBLETH_LISTEN_METRICS: `127.0.0.1:${metrics}`,
      OBLETH_ADMIN_TOKEN: ADMIN_TOKEN,
      OBLETH_VIEWER_TOKENS: VIEWER_TOKEN,
      OBLETH_DATABASE_URL: `sqlite://${d}/cp.db`,
      OBLETH_LEDGER_SQLITE_URL: `sqlite://${d}/usage.db`,
      OBLETH_LEDGER_WAL_DIR: `${d}/wal`,
      OBLETH_UPSTREAM_BASE_URL: `http://127.0.0.1:${mock}/v1`,
      OBLETH_ADMISSION_MAX_IN_FLIGHT: '4',
    });
    await waitFor(async () => (await fetch(`${this.admin}/healthz`)).ok, 'the admin listener /healthz');
    await waitFor(async () => (await fetch(`http://127.0.0.1:${mock}/v1/models`)).status < 500, 'the mock upstream');
    // Where the console is: the binary's embedded /ui/ or (OBLETH_CONSOLE_FROM=dist, or no
    // /ui/ in this binary) the local console/dist behind a proxy with the same CSP.
    const from = process.env.OBLETH_CONSOLE_FROM ?? 'server';
    const ui = await fetch(`${this.admin}/ui/`).catch(() => null);
    if (from === 'server' && ui && ui.ok && (ui.headers.get('content-type') ?? '').includes('html')) {
      this.ui = this.admin;
      this.uiSource = 'server';
    } else {
      this.dev = await startDevServer({ admin: this.admin });
      this.ui = `http://127.0.0.1:${this.dev.port}`;
      this.uiSource = 'dist';
    }
    return this;
  }

  spawn(name, [cmd, ...args], env) {
    const log = fs.openSync(path.join(this.dir, `${name}.log`), 'a');
    const p = spawn(cmd, args, {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...env },
      stdio: ['ignore', log, log],
      detached: false,
    });
    p.on('exit', (code, sig) => {
      p.exited = { code, sig };
    });
    this.procs.push({ name, p });
  }

  logs() {
    if (!this.dir) return '';
    let out = '';
    for (const n of ['mock', 'serve']) {
      try {
        const s = fs.readFileSync(path.join(this.dir, `${n}.log`), 'utf8');
        out += `--- ${n}.log (tail) ---\n${s.slice(-3000)}\n`;
      } catch {
        /* none */
      }
    }
    return out;
  }

  async api(method, p, body, token = ADMIN_TOKEN) {
    const r = await fetch(`${this.admin}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not json */
    }
    return { status: r.status, json, text };
  }

  async stop() {
    if (this.dev) await this.dev.close().catch(() => {});
    for (const { p } of this.procs) {
      if (p.exitCode === null && !p.exited) p.kill('SIGTERM');
    }
    const end = Date.now() + 5000;
    for (const { p } of this.procs) {
      while (p.exitCode === null && !p.exited && Date.now() < end) await sleep(50);
      if (p.exitCode === null && !p.exited) p.kill('SIGKILL');
    }
    if (this.dir && !process.env.KEEP_TEST_DIR) await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** One chat completion against the data plane; resolves to the HTTP status. */
export async function chat(gw, key, { stream = true, maxTokens = 40, timeout = 20_000 } = {}) {
  const r = await fetch(`${gw.data}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'hello' }], max_tokens: maxTokens, stream }),
    signal: AbortSignal.timeout(timeout),
  });
  await r.arrayBuffer();
  return r.status;
}

/** `n` concurrent request loops with `key` until `stop.done` or `untilMs`. */
export function drive(gw, key, n, untilMs, stop, counts = {}) {
  const worker = async () => {
    while (!stop.done && Date.now() < untilMs) {
      try {
        const s = await chat(gw, key);
        counts[s] = (counts[s] ?? 0) + 1;
        if (s >= 400) await sleep(100);
      } catch {
        counts.failed = (counts.failed ?? 0) + 1;
        await sleep(200);
      }
    }
  };
  return Promise.all(Array.from({ length: n }, worker)).then(() => counts);
}

export { CSP, sleep, waitFor };
