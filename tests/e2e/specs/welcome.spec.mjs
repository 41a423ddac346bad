// The welcome screen of a first start: where models are stored and what is already there, the
// disk budget, battery and metered-network behaviour; saved once, then not shown by itself
// again, and reachable from Settings.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

describe('Welcome screen', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('a first start shows where models go and what is already there', async () => {
    // Something in the cache already (as another tool would have left it).
    await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', variant: 'Q2_K' });
    for (let i = 0; i < 300; i += 1) {
      const { json: jobs } = await server.request('GET', '/api/jobs');
      if (jobs.some((j) => j.state === 'done')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await page.goto(server.url);
    const welcome = page.locator('#welcome');
    await welcome.waitFor();
    const { json: settings } = await server.request('GET', '/api/settings');
    assert.equal(settings.first_run_done, false);
    assert.equal(await page.locator('#welcome-cache-dir').innerText(), settings.cache_dir);
    await page.locator('#welcome-cache-contents', { hasText: 'Already there: 1 model' }).waitFor();
    assert.match(await page.locator('#welcome-cache-contents').innerText(), /\d+(\.\d+)? [KMG]iB/);
    assert.match(await page.locator('#welcome-disk-free').innerText(), /free on that disk/);
    assert.match(await page.locator('#welcome-metered').innerText(), /hotspot/);
    assert.equal(await page.locator('#welcome-metered-policy').inputValue(), 'download');
    assert.equal(await page.locator('#welcome-autostart-field').isVisible(), false, 'start at login is the app\'s');
    assert.doesNotMatch(await welcome.innerText(), /null|undefined|NaN/);
    await screenshot(page, 'welcome');
  });

  step('a bad budget is refused beside the form; a good one is saved with the battery choice', async () => {
    await page.locator('#welcome-budget').fill('-3');
    await page.locator('#welcome-save').click();
    await page.locator('#welcome-error').filter({ hasText: /Disk budget/ }).waitFor();
    assert.equal((await server.request('GET', '/api/settings')).json.first_run_done, false);
    await page.locator('#welcome-budget').fill('50');
    await page.locator('#welcome-battery').selectOption('always');
    await page.locator('#welcome-metered-policy').selectOption('wait');
    await page.locator('#welcome-save').click();
    await page.locator('#welcome').waitFor({ state: 'hidden' });
    const { json: saved } = await server.request('GET', '/api/settings');
    assert.equal(saved.first_run_done, true);
    assert.equal(saved.size_budget_bytes, 50 * 2 ** 30);
    assert.equal(saved.battery_policy.mode, 'always');
    assert.equal(saved.on_metered, 'wait');
  });

  step('it is not shown again by itself, and Settings shows it on demand', async () => {
    await page.reload();
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    await page.locator('#results li.result').first().waitFor();
    assert.equal(await page.locator('#welcome').isVisible(), false);
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Show the welcome screen' }).click();
    await page.locator('#welcome').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'welcome-title');
    assert.equal(await page.locator('#welcome-budget').inputValue(), '50');
    assert.equal(await page.locator('#welcome-metered-policy').inputValue(), 'wait');
    assert.equal(await page.locator('#set-on-metered').inputValue(), 'wait', 'Settings shows it too');
    await page.getByRole('button', { name: 'Not now' }).click();
    await page.locator('#welcome').waitFor({ state: 'hidden' });
  });
});
