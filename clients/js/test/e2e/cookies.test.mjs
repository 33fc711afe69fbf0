// A cookie-session app in a real browser: the page's own server logs the user
// in with a session cookie and is sse-ticket's auth webhook; the page, on
// another origin of the same site (127.0.0.1, another port), gets its tickets
// with `credentials: 'include'` and no token at all.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { launchBrowser, startPageServer, startServer, randomUUID } from './harness.mjs';

/** The key the test's backend publishes with (the webhook knows it). */
const BACKEND_KEY = `backend-${randomUUID()}`;

let browser;
let app;
/** Session id → subject, as the app's server keeps them. */
const sessions = new Map();
/** Every question the webhook received. */
const questions = [];

/** The app's server: `POST /login` and the auth webhook `POST /auth`. */
function appRoutes(req, res) {
  const { pathname } = new URL(req.url, 'http://x');
  if (req.method === 'POST' && pathname === '/login') {
    const id = randomUUID();
    sessions.set(id, 'alice');
    res.writeHead(204, { 'set-cookie': `session=${id}; Path=/; HttpOnly; SameSite=Lax` }).end();
    return true;
  }
  if (req.method === 'POST' && pathname === '/auth') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const question = JSON.parse(body);
      questions.push(question);
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const session = /(?:^|;\s*)session=([^;]+)/.exec(question.cookie ?? '')?.[1];
      let answer = null;
      if (question.authorization === `Bearer ${BACKEND_KEY}`) {
        answer = { sub: 'backend', exp, sse: { publish: ['*'] } };
      } else if (sessions.has(session)) {
        answer = { sub: sessions.get(session), exp };
      }
      res.writeHead(answer ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer ?? { error: 'no session' }));
    });
    return true;
  }
  return false;
}

before(async () => {
  browser = await launchBrowser();
  app = await startPageServer(appRoutes);
});

after(async () => {
  await browser?.close();
  await app?.close();
});

test("a cookie session gets tickets with credentials: 'include' from another origin", async () => {
  const server = await startServer({
    corsOrigins: [app.origin],
    env: {
      SSE_TICKET_JWT_SECRET: undefined,
      SSE_TICKET_AUTH_WEBHOOK_URL: `${app.origin}/auth`,
      SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES: 'true',
    },
  });
  assert.notEqual(new URL(server.base).origin, app.origin, 'two origins');
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const ticketRequests = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/sse-token')) ticketRequests.push(request);
    });
    await page.goto(`${app.origin}/?${new URLSearchParams({ api: server.base, autostart: '0' })}`);
    await page.waitForFunction(() => window.ready === true);
    const start = () => page.evaluate(() => window.start({ getToken: undefined, credentials: 'include' }));

    // Before logging in: no cookie, no credential; the helper stops for good.
    await start();
    await page.waitForFunction(() => window.errors.some((e) => e.fatal), null, { timeout: 15_000 });
    assert.equal((await page.evaluate(() => window.errors))[0].error, 'missing_token');

    // The page logs in; its server sets the session cookie.
    assert.equal(await page.evaluate(() => fetch('/login', { method: 'POST' }).then((r) => r.status)), 204);
    await page.evaluate(() => { window.handle.close(); window.errors.length = 0; });
    await start();
    await page.waitForFunction(() => window.opened.length === 1, null, { timeout: 15_000 });
    assert.deepEqual(await page.evaluate(() => window.opened), [{ sub: 'alice', topics: ['user/alice'] }]);

    const published = await fetch(`${server.base}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${BACKEND_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topic: 'user/alice', data: { hello: 'alice' } }),
    });
    assert.equal(published.status, 200, await published.clone().text());
    const { id } = await published.json();
    await page.waitForFunction(() => window.received.length === 1, null, { timeout: 15_000 });
    assert.deepEqual(await page.evaluate(() => window.received), [{ type: 'message', id, data: { hello: 'alice' } }]);

    // The ticket request carried the cookie and JSON, and no Authorization.
    const last = ticketRequests.at(-1);
    const headers = await last.allHeaders();
    assert.equal(headers['content-type'], 'application/json');
    assert.ok(!('authorization' in headers), JSON.stringify(headers));
    assert.match(headers.cookie ?? '', /session=/);
    const asked = questions.filter((q) => q.cookie?.includes('session='));
    assert.ok(asked.length >= 1, JSON.stringify(questions));
    assert.ok(asked.every((q) => q.authorization == null), JSON.stringify(asked));
    assert.ok(asked.every((q) => q.client_ip === '127.0.0.1' && /Chrome/.test(q.user_agent)), JSON.stringify(asked));
    assert.deepEqual(await page.evaluate(() => window.errors), []);
  } finally {
    await context.close();
    await server.stop();
  }
});
