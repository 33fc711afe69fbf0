// Shared set-up of the browser tests: the real server (the Rust binary), a
// static server for the pages on another origin, HS256 tokens, and Chromium
// from Debian driven by playwright-core.

import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const clientDir = join(here, '..', '..');
const repo = join(clientDir, '..', '..');

export const SECRET = 'browser-test-secret-0123456789abcdef-0123456789';
export const BIN = process.env.SSE_TICKET_BIN ?? join(repo, 'target', 'debug', 'sse-ticket');
export const CHROMIUM = process.env.SSE_TICKET_CHROMIUM ?? '/usr/bin/chromium';
/** Longest a test waits for something that should happen. */
export const PATIENCE = 15_000;

const b64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 bearer token signed with SECRET. */
export function mint({ sub, subscribe = [], publish = [], ttlSeconds = 3600, secret = SECRET }) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub, iat: now, exp: now + ttlSeconds, sse: { subscribe, publish } }));
  const signature = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

/** A free port on 127.0.0.1 (to restart a server on the same address). */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A fresh SQLite database URL in a temporary directory. */
export function freshDatabase() {
  return `sqlite://${join(mkdtempSync(join(tmpdir(), 'sse-ticket-e2e-')), 'e2e.db')}`;
}

/**
 * Starts `sse-ticket serve` (with extra `args`, in `cwd`) and waits until it
 * listens; the base URL is https:// when it serves TLS.
 * Returns { base, port, stop() }.
 */
export async function startServer({
  port = 0, database = freshDatabase(), corsOrigins = [], env = {}, args = [], cwd = undefined,
} = {}) {
  // A variable `env` sets to `undefined` is left out (e.g. the JWT secret,
  // for another verifier).
  const variables = Object.fromEntries(Object.entries({
    PATH: process.env.PATH,
    SSE_TICKET_JWT_SECRET: SECRET,
    SSE_TICKET_DATABASE_URL: database,
    SSE_TICKET_LOG_FORMAT: 'json',
    SSE_TICKET_CORS_ORIGINS: corsOrigins.join(','),
    RUST_LOG: 'info',
    ...env,
  }).filter(([, value]) => value !== undefined));
  const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${port}`, ...args], {
    cwd,
    env: variables,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const base = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('the server did not start')), PATIENCE);
    child.stderr.on('data', (chunk) => {
      buffered += chunk;
      for (const line of buffered.split('\n')) {
        try {
          const entry = JSON.parse(line);
          if (entry.message === 'listening') {
            clearTimeout(timer);
            resolve(`${entry.tls ? 'https' : 'http'}://${entry.addr}`);
          }
        } catch { /* not a whole JSON line yet */ }
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return {
    base,
    port: Number(new URL(base).port),
    database,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Serves clients/js (the module and test pages) on its own origin; `app`, when
 * given, answers first (the app's own routes): it returns true when it did.
 */
export async function startPageServer(app = () => false) {
  const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html' };
  const server = createServer((req, res) => {
    if (app(req, res)) return;
    const path = new URL(req.url, 'http://x').pathname;
    const file = path === '/' ? '/test/e2e/page.html' : path;
    if (file.includes('..')) { res.writeHead(400).end(); return; }
    try {
      const body = readFileSync(join(clientDir, file));
      res.writeHead(200, { 'content-type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** Headless Chromium from Debian. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Publishes an event from the test (a backend), returning its id. */
export async function publish(base, topic, data, event) {
  const token = mint({ sub: 'backend', publish: ['*'] });
  const response = await fetch(`${base}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic, data, ...(event ? { event } : {}) }),
  });
  if (response.status !== 200) throw new Error(`publish answered ${response.status}: ${await response.text()}`);
  return (await response.json()).id;
}

/** One sample of the server's /metrics, 0 when absent. */
export async function metric(base, sample) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

/** Polls `check` until it returns a truthy value (bounded by PATIENCE). */
export async function eventually(what, check) {
  const deadline = Date.now() + PATIENCE;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export { randomUUID };
