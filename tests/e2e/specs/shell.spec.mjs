// The page outside the main journey: access without the secret, keyboard use, small and dark
// windows.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

describe('Model Cache UI shell', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    browser = await launchBrowser({ viewport: { width: 800, height: 600 }, colorScheme: 'dark' });
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('without the secret the page says how to get in, and the API refuses it', async () => {
    await page.goto(server.origin + '/');
    const error = page.locator('#search-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-kind'), 'unauthorized');
    assert.match(await error.innerText(), /#token=/);
    const status = await page.evaluate(async () => (await fetch('/api/health')).status);
    assert.equal(status, 401);
  });

  step('the keyboard reaches every section and searches with Enter', async () => {
    // Past the first start: the welcome screen (welcome.spec.mjs) sits above the search box.
    await server.request('PUT', '/api/settings', { first_run_done: true });
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    await page.getByRole('tab', { name: 'Models' }).focus();
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-downloads');
    assert.equal(await page.locator('#panel-downloads').isVisible(), true);
    await page.keyboard.press('End');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-settings');
    await page.keyboard.press('Home');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-models');
    // Tab from the tab list goes into the panel: the search box, then type and press Enter.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'search-input');
    await page.keyboard.type('demo/tiny-gguf');
    await page.keyboard.press('Enter');
    await page.locator('#variants tr[data-variant]').first().waitFor();
    // Focus is visible (an outline) on keyboard focus.
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none');
  });

  step('a very long input wraps instead of widening the page', async () => {
    await page.getByRole('tab', { name: 'Models' }).click();
    await page.locator('#search-input').fill(`demo/${'x'.repeat(300)}`);
    await page.keyboard.press('Enter');
    await page.locator('#search-error').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
    const text = await page.locator('#search-error').innerText();
    assert.doesNotMatch(text, /null|undefined|`/);
  });

  step('the layout fits 800×600 without horizontal scrolling, in the dark theme', async () => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the window`);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(21, 23, 27)', 'dark background from prefers-color-scheme');
    await screenshot(page, 'dark-800x600');
    for (const name of ['Downloads', 'Cache', 'Settings']) {
      await page.getByRole('tab', { name: new RegExp(`^${name}`) }).click();
      const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(wide <= 0, `${name} is ${wide}px wider than the window`);
    }
    await screenshot(page, 'dark-800x600-settings');
  });

  step('a token is write-only: the UI shows that one is set, never its value', async () => {
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#token-status', { hasText: 'not set' }).waitFor();
    await page.getByLabel('New token').fill('hf_e2e_secret_value_123');
    await page.getByRole('button', { name: 'Set token' }).click();
    await page.locator('#token-status', { hasText: /^set$/ }).waitFor();
    assert.equal(await page.getByLabel('New token').inputValue(), '');
    const { json } = await server.request('GET', '/api/settings');
    assert.equal(json.token_set, true);
    assert.ok(!JSON.stringify(json).includes('hf_e2e_secret_value_123'));
    assert.ok(!(await page.content()).includes('hf_e2e_secret_value_123'));
    await page.getByRole('button', { name: 'Remove token' }).click();
    await page.locator('#token-status', { hasText: 'not set' }).waitFor();
  });
});
