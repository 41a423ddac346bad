// A page left open when its server stops: the server that takes the port next has a secret of
// its own, the page's is refused, and the page forgets it and stops asking (it never hands the
// old secret to whoever listens there next, again and again).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, withScreenshot } from '../harness.mjs';

describe('A page whose server restarted', () => {
  let first;
  let second;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    first = await startServer();
    browser = await launchBrowser();
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (second) await second.stop();
    if (first) await first.stop();
  });

  step('forgets a refused secret and stops reconnecting', async () => {
    await page.goto(first.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    const port = new URL(first.origin).port;
    await first.stop();
    first = null;
    // Another server on the same port: a new secret.
    second = await startServer({ port: Number(port) });
    assert.notEqual(second.token, undefined);
    const sent = [];
    page.on('request', (request) => {
      if (request.headers().authorization) sent.push(request.url());
    });
    await page.locator('#engine-status', { hasText: 'Disconnected' }).waitFor({ timeout: 30000 });
    assert.equal(
      await page.evaluate(() => window.sessionStorage.getItem('model-cache-api-token')),
      null,
      'the refused secret is forgotten',
    );
    const refusedAt = sent.length;
    // The old reconnect loop tried again within 10 s; nothing may go out now.
    await page.waitForTimeout(12000);
    assert.deepEqual(sent.slice(refusedAt), [], 'no request carries the old secret after the refusal');
    const error = page.locator('#search-error');
    assert.match(await error.innerText(), /new link/);
  });
});
