// Why sse-ticket serves HTTP/2: a browser opens at most six HTTP/1.1
// connections to one host, and every open EventSource holds one. Ten tabs of
// one origin, each with a stream: over HTTP/1.1 the seventh tab on hangs (even
// its ticket request waits for a connection); over HTTP/2 all ten share one
// connection and all receive the event.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { PATIENCE, launchBrowser, metric, mint, publish, startPageServer, startServer } from './harness.mjs';

const TABS = 10;
/** Chromium's limit of HTTP/1.1 connections to one host. */
const H1_CONNECTIONS = 6;

let browser;
let pages;

before(async () => {
  browser = await launchBrowser();
  pages = await startPageServer();
});

after(async () => {
  await browser?.close();
  await pages?.close();
});

/**
 * Opens `TABS` tabs of the page origin; each fetches a ticket from `base` and
 * opens an EventSource with it, without waiting (a stalled tab must not stall
 * the test). Returns the tabs.
 */
async function openTabs(context, base) {
  const tabs = [];
  for (let i = 0; i < TABS; i += 1) {
    const tab = await context.newPage();
    await tab.goto(`${pages.origin}/?autostart=0`);
    await tab.waitForFunction(() => window.ready === true);
    await tab.evaluate(({ base, token }) => {
      window.streamOpen = false;
      window.got = [];
      void (async () => {
        const response = await fetch(`${base}/sse-token`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ topics: ['news'] }),
        });
        const { stream_url: streamUrl } = await response.json();
        const source = new EventSource(`${base}${streamUrl}`);
        source.addEventListener('ready', () => { window.streamOpen = true; });
        source.onmessage = (event) => window.got.push(event.data);
      })();
    }, { base, token: mint({ sub: `tab-${i}`, subscribe: ['news'] }) });
    tabs.push(tab);
  }
  return tabs;
}

const isOpen = (tab) => tab.evaluate(() => window.streamOpen);

test('over HTTP/2 ten tabs of one origin each hold a stream and all receive an event', async () => {
  const server = await startServer({
    args: ['--dev', '--tls'],
    cwd: mkdtempSync(join(tmpdir(), 'sse-ticket-h2-')),
    corsOrigins: [pages.origin],
  });
  assert.match(server.base, /^https:/);
  // The certificate is self-signed for localhost and 127.0.0.1.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const tabs = await openTabs(context, server.base);
    for (const tab of tabs) await tab.waitForFunction(() => window.streamOpen, null, { timeout: PATIENCE });
    // Published from a tab (the test's own fetch would not trust the
    // certificate), watching the protocol through the DevTools protocol.
    const devtools = await context.newCDPSession(tabs[0]);
    await devtools.send('Network.enable');
    const protocols = [];
    devtools.on('Network.responseReceived', ({ response }) => protocols.push(response.protocol));
    await tabs[0].evaluate(async ({ base, token }) => {
      const response = await fetch(`${base}/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'news', data: 'to every tab' }),
      });
      if (response.status !== 200) throw new Error(`publish answered ${response.status}`);
    }, { base: server.base, token: mint({ sub: 'backend', publish: ['*'] }) });
    assert.ok(protocols.includes('h2'), `the publish went over HTTP/2: ${protocols}`);
    for (const tab of tabs) {
      await tab.waitForFunction(() => window.got.includes('"to every tab"'), null, { timeout: PATIENCE });
    }
  } finally {
    await context.close();
    await server.stop();
  }
});

test('over HTTP/1.1 the same ten tabs stall after six connections', async () => {
  const server = await startServer({ corsOrigins: [pages.origin] });
  assert.match(server.base, /^http:/);
  const context = await browser.newContext();
  try {
    const tabs = await openTabs(context, server.base);
    let open = [];
    const deadline = Date.now() + PATIENCE;
    while (open.length < H1_CONNECTIONS) {
      assert.ok(Date.now() < deadline, `only ${open.length} streams opened`);
      open = (await Promise.all(tabs.map(isOpen))).flatMap((yes, i) => (yes ? [i] : []));
    }
    // Every connection the browser allows itself is held by a stream: an event
    // reaches those tabs, while the others have not even got their ticket.
    await publish(server.base, 'news', 'to every tab');
    for (const i of open) {
      await tabs[i].waitForFunction(() => window.got.includes('"to every tab"'), null, { timeout: PATIENCE });
    }
    assert.equal(open.length, H1_CONNECTIONS);
    assert.equal((await Promise.all(tabs.map(isOpen))).filter(Boolean).length, H1_CONNECTIONS);
    assert.equal(await metric(server.base, 'sse_ticket_streams_open'), H1_CONNECTIONS);
  } finally {
    await context.close();
    await server.stop();
  }
});
