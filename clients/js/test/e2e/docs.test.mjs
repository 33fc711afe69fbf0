// GET /docs in a real browser: Redoc, served by the binary, renders every
// path of the served openapi.yaml under the page's Content-Security-Policy,
// and nothing is loaded from another origin.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { eventually, launchBrowser, PATIENCE, startServer } from './harness.mjs';

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The paths of the served spec (the keys under `paths:`, two spaces in). */
async function specPaths() {
  const yaml = await (await fetch(`${server.base}/openapi.yaml`)).text();
  const paths = yaml.slice(yaml.indexOf('\npaths:\n'), yaml.indexOf('\ncomponents:\n'));
  return [...paths.matchAll(/^ {2}(\/\S*):$/gm)].map((m) => m[1]);
}

test('the docs page renders every path of the spec with nothing from another origin', async () => {
  const paths = await specPaths();
  assert.ok(paths.length >= 10 && paths.includes('/docs'), `paths: ${paths}`);

  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const requested = [];
    const answeredFromElsewhere = [];
    const failed = new Map();
    page.on('request', (request) => requested.push(request.url()));
    page.on('response', (response) => {
      if (new URL(response.url()).origin !== server.base) answeredFromElsewhere.push(response.url());
    });
    page.on('requestfailed', (request) => failed.set(request.url(), request.failure()?.errorText));
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));

    await page.goto(`${server.base}/docs`);
    assert.equal(await page.title(), 'sse-ticket API');
    // Redoc has rendered when the operations' endpoint paths are on the page.
    const rendered = await page.waitForFunction(
      (expected) => {
        const shown = new Set([...document.querySelectorAll('.http-verb')]
          .map((verb) => verb.nextElementSibling?.textContent));
        return expected.every((path) => shown.has(path)) && [...shown];
      },
      paths,
      { timeout: PATIENCE },
    ).then((handle) => handle.jsonValue());
    for (const path of paths) assert.ok(rendered.includes(path), `${path} not rendered: ${rendered}`);
    assert.deepEqual(errors, []);

    // Everything the page fetched came from the server itself (or is a blob:
    // the page made). The one thing Redoc tries elsewhere, its logo on
    // cdn.redoc.ly, is blocked by the CSP inside the browser: it never leaves.
    const elsewhere = requested.filter((url) => !url.startsWith(`${server.base}/`) && !url.startsWith('blob:'));
    for (const url of elsewhere) {
      await eventually(`the end of ${url}`, () => failed.has(url) || answeredFromElsewhere.includes(url));
      assert.equal(failed.get(url), 'csp', `${url} left the origin`);
    }
    assert.deepEqual(answeredFromElsewhere, []);
    assert.ok(requested.includes(`${server.base}/docs/redoc.standalone.js`), `requests: ${requested}`);
    assert.ok(requested.includes(`${server.base}/openapi.yaml`), `requests: ${requested}`);
  } finally {
    await context.close();
  }
});
