// Keyboard and screen readers: axe-core (WCAG 2.1 A and AA rules) on each main screen, every
// control reachable by keyboard, and the "newer version available" flow done with the keyboard
// alone.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

const require = createRequire(import.meta.url);
// Evaluated through the DevTools protocol: the page's Content-Security-Policy (script-src 'self')
// rightly refuses an injected <script>.
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Runs axe-core on the page; fails with each violation's rule, impact and first targets. */
async function assertAccessible(page, screen) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  const problems = result.violations.map((v) => `${v.id} (${v.impact}): ${v.help}\n    `
    + v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n    '));
  assert.deepEqual(problems, [], `${screen}: axe-core found violations`);
  assert.ok(result.passes.length > 10, `${screen}: axe-core ran its rules (${result.passes.length} passed)`);
}

/** Every visible control of the page can take keyboard focus (no mouse-only actions). */
async function assertKeyboardReachable(page, screen) {
  const unreachable = await page.evaluate(() => {
    const visible = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
    const controls = document.querySelectorAll('button, input, select, textarea, a[href], summary, [role="button"], [role="tab"], [role="switch"], [onclick]');
    return Array.from(controls)
      .filter((el) => visible(el) && !el.disabled)
      // Tabs use a roving tabindex (arrow keys move between them); the selected one is in the
      // tab order.
      .filter((el) => el.getAttribute('role') !== 'tab' || el.getAttribute('aria-selected') === 'true')
      .filter((el) => el.tabIndex < 0 || !['BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'A', 'SUMMARY'].includes(el.tagName) && !el.hasAttribute('tabindex'))
      .map((el) => el.outerHTML.slice(0, 120));
  });
  assert.deepEqual(unreachable, [], `${screen}: controls the keyboard cannot reach`);
}

/** Presses Tab until `predicate(activeElement)` holds (at most `limit` times). */
async function tabTo(page, selector, limit = 80) {
  for (let i = 0; i < limit; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((sel) => document.activeElement && document.activeElement.matches(sel), selector)) return;
  }
  assert.fail(`Tab never reached ${selector}`);
}

describe('Accessibility of the main screens', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('the Models screen, empty and with the variants of a repo', async () => {
    await assertAccessible(page, 'Models (empty)');
    await assertKeyboardReachable(page, 'Models (empty)');
    // The landing list of popular models, then a keyword search.
    await page.locator('#results li.result').first().waitFor();
    await assertAccessible(page, 'Models (popular)');
    await page.locator('#search-input').fill('tiny');
    await page.keyboard.press('Enter');
    await page.locator('#results-title', { hasText: 'tiny' }).waitFor();
    await assertAccessible(page, 'Models (search results)');
    await assertKeyboardReachable(page, 'Models (search results)');
    await page.locator('#search-input').fill('demo/tiny-gguf');
    await page.keyboard.press('Enter');
    await page.locator('#variants tr[data-variant]').first().waitFor();
    await page.locator('#variants tr.is-recommended details.header-facts summary').click();
    await assertAccessible(page, 'Models (variants)');
    await assertKeyboardReachable(page, 'Models (variants)');
  });

  step('the Downloads screen with a finished download', async () => {
    // Two pulls of the same repo: `main` and the older tag `v1.0` (the update test below uses
    // both snapshots).
    for (const revision of ['main', 'v1.0']) {
      const { status, json } = await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', revision, files: ['README.md', 'config.json'] });
      assert.equal(status, 200, JSON.stringify(json));
      for (let i = 0; i < 600; i += 1) {
        const { json: jobs } = await server.request('GET', '/api/jobs');
        const job = jobs.find((j) => j.id === json.job_id);
        if (job && job.state === 'done') break;
        assert.ok(!job || !['failed', 'cancelled'].includes(job.state), JSON.stringify(job));
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    await page.locator('#jobs li[data-id]').first().waitFor();
    await assertAccessible(page, 'Downloads');
    await assertKeyboardReachable(page, 'Downloads');
  });

  step('the Cache screen, with an update available, used by keyboard alone', async () => {
    // Another tool left `main` at the older commit (as a pull before the branch moved would):
    // the cache now follows `main` one commit behind the Hub.
    const { json: cached } = await server.request('GET', '/api/cache');
    const repo = cached.find((r) => r.repo === 'demo/tiny-gguf');
    const older = repo.revisions.find((r) => r.refs.includes('v1.0')).commit;
    const latest = repo.revisions.find((r) => r.refs.includes('main')).commit;
    writeFileSync(join(repo.path, 'refs', 'main'), older);

    await page.getByRole('tab', { name: /^Cache/ }).click();
    await page.locator('#cache-table tr[data-repo="demo/tiny-gguf"]').waitFor();
    await page.locator('#cache-check-updates').focus();
    await page.keyboard.press('Enter');
    const note = page.locator('tr[data-repo="demo/tiny-gguf"] .update-note[data-branch="main"]');
    await note.waitFor();
    assert.match(await note.innerText(), new RegExp(`${older.slice(0, 7)} → ${latest.slice(0, 7)}`));
    await screenshot(page, 'cache-update-available');
    await assertAccessible(page, 'Cache (update available)');
    await assertKeyboardReachable(page, 'Cache (update available)');

    // Keep this version, then follow again, then update: each with Tab and Enter.
    await page.locator('#cache-refresh').focus();
    await tabTo(page, 'button[aria-label^="Keep this version of demo/tiny-gguf"]');
    await page.keyboard.press('Enter');
    await page.locator('tr[data-repo="demo/tiny-gguf"] .update-note', { hasText: 'stays at' }).waitFor();
    const { json: after } = await server.request('GET', '/api/cache');
    assert.deepEqual(after.find((r) => r.repo === 'demo/tiny-gguf').held.map((h) => h.commit), [older]);

    await page.locator('#cache-refresh').focus();
    await tabTo(page, 'button[aria-label^="Follow main"]');
    await page.keyboard.press('Enter');
    await note.locator('button', { hasText: 'Update' }).waitFor();
    await page.locator('#cache-refresh').focus();
    await tabTo(page, 'button[aria-label^="Update demo/tiny-gguf"]');
    await page.keyboard.press('Enter');
    // The update's job runs; `main` moves to the Hub's commit and the mark goes.
    for (let i = 0; i < 600; i += 1) {
      const { json: now } = await server.request('GET', '/api/cache');
      const entry = now.find((r) => r.repo === 'demo/tiny-gguf');
      if (entry.updates.length === 0 && entry.revisions.some((r) => r.commit === latest && r.refs.includes('main'))) break;
      assert.ok(i < 599, `the update did not land: ${JSON.stringify(entry)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.locator('#cache-refresh').click();
    await note.waitFor({ state: 'detached' });
  });

  step('the Settings screen', async () => {
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#set-cache-dir').waitFor();
    await assertAccessible(page, 'Settings');
    await assertKeyboardReachable(page, 'Settings');
  });

  step('the Peers screen', async () => {
    await page.getByRole('tab', { name: 'Peers' }).click();
    await page.locator('#peers-this', { hasText: 'This machine' }).waitFor();
    await assertAccessible(page, 'Peers');
    await assertKeyboardReachable(page, 'Peers');
  });

  step('the dark theme passes the same rules', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    for (const name of ['Models', 'Downloads', 'Cache', 'Peers', 'Settings']) {
      await page.getByRole('tab', { name: new RegExp(`^${name}`) }).click();
      await assertAccessible(page, `${name} (dark)`);
    }
  });
});
