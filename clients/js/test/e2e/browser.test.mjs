// The whole flow in a real browser: headless Chromium (Debian's) driven by
// playwright-core, against the real server binary.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  eventually, launchBrowser, metric, mint, publish, startPageServer, startServer, freePort, freshDatabase,
} from './harness.mjs';

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

/** Opens the test page with `query` parameters; the token goes in by script, never a URL. */
async function openPage(context, { token, ...query }) {
  const page = await context.newPage();
  const requested = [];
  page.on('request', (request) => requested.push(request.url()));
  await page.addInitScript((t) => { window.initialToken = t; }, token);
  await page.goto(`${pages.origin}/?${new URLSearchParams(query)}`);
  await page.waitForFunction(() => window.ready === true);
  return { page, requested };
}

const received = (page) => page.evaluate(() => window.received);

test('the page trades its token for a ticket and receives a published event', async () => {
  const server = await startServer({ corsOrigins: [pages.origin] });
  const context = await browser.newContext();
  try {
    const token = mint({ sub: 'alice', subscribe: ['orders/*'] });
    const { page, requested } = await openPage(context, {
      api: server.base, token, topics: JSON.stringify(['orders/*']), types: JSON.stringify(['order.updated']),
    });
    await page.waitForFunction(() => window.opened.length === 1, null, { timeout: 15_000 });
    const id = await publish(server.base, 'orders/42', { status: 'shipped' }, 'order.updated');
    await page.waitForFunction(() => window.received.length === 1, null, { timeout: 15_000 });
    assert.deepEqual(await received(page), [{ type: 'order.updated', id, data: { status: 'shipped' } }]);
    const streamUrls = requested.filter((url) => url.includes('/stream'));
    assert.equal(streamUrls.length, 1);
    assert.match(streamUrls[0], /\/stream\?token=[0-9a-f-]{36}$/);
    for (const url of requested) assert.ok(!url.includes(token) && !url.includes('eyJ'), `a JWT in ${url}`);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('after the server restarts, the helper reconnects with a new ticket and misses nothing', async (t) => {
  const port = await freePort();
  const database = freshDatabase();
  let server = await startServer({ port, database, corsOrigins: [pages.origin] });
  const context = await browser.newContext();
  try {
    const { page, requested } = await openPage(context, {
      api: server.base, token: mint({ sub: 'alice', subscribe: ['orders/*'] }), topics: JSON.stringify(['orders/*']),
    });
    await page.waitForFunction(() => window.opened.length === 1, null, { timeout: 15_000 });
    const first = await publish(server.base, 'orders/1', 1);
    await page.waitForFunction(() => window.received.length === 1, null, { timeout: 15_000 });

    await server.stop();
    await page.waitForFunction(() => window.closes.some((c) => c.reason === 'shutdown'), null, { timeout: 15_000 });
    server = await startServer({ port, database, corsOrigins: [pages.origin] });
    const restarted = Date.now();
    // Published before the browser is back: it must come from history.
    const second = await publish(server.base, 'orders/2', 2);
    await page.waitForFunction(() => window.opened.length === 2, null, { timeout: 15_000 });
    t.diagnostic(`back ${Date.now() - restarted} ms after the restart, ${requested.filter((u) => u.endsWith('/sse-token')).length} ticket requests in all`);
    const third = await publish(server.base, 'orders/3', 3);
    await page.waitForFunction(() => window.received.length >= 3, null, { timeout: 15_000 });
    assert.deepEqual((await received(page)).map((e) => e.id), [first, second, third], 'no loss, no duplicate');
    const streams = requested.filter((url) => url.includes('/stream'));
    assert.equal(new Set(streams.map((url) => new URL(url).searchParams.get('token'))).size, streams.length,
      'every connection used a fresh ticket');
    assert.equal(new URL(streams.at(-1)).searchParams.get('lastEventId'), first);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('a 401 from the token endpoint stops the helper without hammering the server', async (t) => {
  const server = await startServer({ corsOrigins: [pages.origin] });
  const context = await browser.newContext();
  try {
    const { page } = await openPage(context, { api: server.base, token: 'not-a-valid-token' });
    await page.waitForFunction(() => window.errors.length === 1, null, { timeout: 15_000 });
    const [error] = await page.evaluate(() => window.errors);
    assert.equal(error.status, 401);
    assert.equal(error.error, 'invalid_token');
    assert.equal(await page.evaluate(() => window.handle.state), 'stopped');
    // Given time for several backoff rounds, it asked exactly once.
    await page.waitForTimeout(1_500);
    const sample = 'sse_ticket_http_request_duration_seconds_count{method="POST",route="/sse-token",status="401"}';
    assert.equal(await metric(server.base, sample), 1);
    t.diagnostic('1 request to /sse-token in 1.5 s after the 401');
  } finally {
    await context.close();
    await server.stop();
  }
});

test('the browser refuses a cross-origin page whose origin is not allowed', async () => {
  const server = await startServer({ corsOrigins: ['https://app.example.com'] });
  const context = await browser.newContext();
  try {
    const token = mint({ sub: 'alice' });
    const { page } = await openPage(context, { api: server.base, token, autostart: '0' });
    const outcome = await page.evaluate(async ({ api, token }) => {
      try {
        await fetch(`${api}/sse-token`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
        return 'allowed';
      } catch (e) {
        return e.name;
      }
    }, { api: server.base, token });
    assert.equal(outcome, 'TypeError', 'the preflight fails, so fetch rejects');
    assert.equal(await metric(server.base, 'sse_ticket_tickets_issued_total'), 0);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('five tabs sharing one stream all receive every event, across a change of leader', async (t) => {
  // A closed tab's connection is noticed at the server's next write: a short
  // heartbeat makes that prompt.
  const server = await startServer({ corsOrigins: [pages.origin], env: { SSE_TICKET_HEARTBEAT: '500ms' } });
  const context = await browser.newContext();
  try {
    const query = {
      api: server.base, token: mint({ sub: 'alice', subscribe: ['orders/*'] }),
      topics: JSON.stringify(['orders/*']), share: '1',
    };
    const tabs = [];
    for (let i = 0; i < 5; i += 1) tabs.push((await openPage(context, query)).page);
    await eventually('one stream', async () => (await metric(server.base, 'sse_ticket_streams_open')) === 1);
    const ids = [await publish(server.base, 'orders/1', 1)];
    for (const tab of tabs) await tab.waitForFunction(() => window.received.length === 1, null, { timeout: 15_000 });

    // Close the leader: the first tab, which took the lock.
    await tabs.shift().close();
    const closed = Date.now();
    ids.push(await publish(server.base, 'orders/2', 2));
    await eventually('a new leader', async () => (await metric(server.base, 'sse_ticket_tickets_redeemed_total')) === 2);
    t.diagnostic(`a new leader streamed ${Date.now() - closed} ms after the old one closed`);
    await eventually('the old stream released', async () => (await metric(server.base, 'sse_ticket_streams_open')) === 1);
    ids.push(await publish(server.base, 'orders/3', 3));
    for (const tab of tabs) {
      await tab.waitForFunction(() => window.received.length >= 3, null, { timeout: 15_000 });
      assert.deepEqual((await received(tab)).map((e) => e.id), ids, 'every tab, every event, once');
    }
    assert.equal(await metric(server.base, 'sse_ticket_streams_open'), 1);
  } finally {
    await context.close();
    await server.stop();
  }
});
