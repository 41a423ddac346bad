// The main user journey in a real browser against `mcache serve --demo` (engine + hub emulator):
// settings, search, variants, download with live progress, cache browser, pin, delete, errors.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

describe('Model Cache UI in a browser', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  const tab = (name) => page.getByRole('tab', { name: new RegExp(`^${name}`) });
  const variantRow = (quant) => page.locator(`#variants tr[data-quant="${quant}"]`);

  async function search(text) {
    await tab('Models').click();
    const box = page.getByLabel('Repository id or Hub URL');
    await box.fill(text);
    await box.press('Enter');
  }

  /** Waits for the job of `repo` to finish; returns every percentage its bar showed. */
  async function watchJob(repo) {
    const job = page.locator('#jobs li.job').filter({ hasText: repo }).last();
    await job.waitFor();
    await page.waitForFunction((el) => ['done', 'failed', 'cancelled'].includes(el.dataset.state),
      await job.elementHandle(), { timeout: 120000 });
    const state = await job.getAttribute('data-state');
    if (state !== 'done') assert.fail(`The job of ${repo} ended ${state}: ${await job.innerText()}`);
    return job;
  }

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
  });

  after(async () => {
    if (page) await screenshot(page, 'final').catch(() => {});
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('the page connects and takes the secret out of the address bar', async () => {
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the #token fragment is removed after reading it');
    assert.equal(await page.locator('#search-error').isHidden(), true);
    // Focus starts in the search box, ready to type.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'search-input');
  });

  step('a bandwidth limit is saved and persisted', async () => {
    await tab('Settings').click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    await page.getByLabel('Bandwidth limit', { exact: true }).fill('400');
    await page.getByLabel('Bandwidth limit unit').selectOption('KiB/s');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved', { hasText: 'Saved.' }).waitFor();
    const { json } = await server.request('GET', '/api/settings');
    assert.equal(json.max_rate_bps, 400 * 1024);
    // A reload shows the stored value, not the form's memory.
    await page.reload();
    await tab('Settings').click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    assert.equal(await page.getByLabel('Bandwidth limit', { exact: true }).inputValue(), '400');
    assert.equal(await page.getByLabel('Bandwidth limit unit').inputValue(), 'KiB/s');
  });

  step('bad input is explained without asking the engine', async () => {
    // Words are a search; something with a slash is read as a repository id.
    await search('org/not a repo!');
    const error = page.locator('#search-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-kind'), 'invalid_input');
    assert.match(await error.innerText(), /not a repository id/);
  });

  step('searching demo/tiny-gguf lists its variants with fit and a recommendation', async () => {
    await search('demo/tiny-gguf');
    await page.locator('#variants-title', { hasText: 'demo/tiny-gguf' }).waitFor();
    const rows = page.locator('#variants tr[data-variant]');
    const quants = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.quant));
    for (const q of ['Q2_K', 'Q4_K_M', 'Q8_0', 'F16', 'IQ4_XS']) assert.ok(quants.includes(q), `variant ${q} in ${quants}`);
    assert.equal(quants.filter((q) => q === 'Q8_0').length, 1, 'the 3 split Q8_0 files form one variant');
    const tiers = await rows.locator('td:nth-child(6) .badge').evaluateAll((b) => b.map((x) => x.className));
    assert.equal(tiers.length, quants.length);
    for (const t of tiers) assert.match(t, /badge (fits|tight|too_big|unknown)/);
    assert.equal(await page.locator('#variants .badge.recommended').count(), 1, 'exactly one recommended variant');
    // The recommended variant is preselected.
    const recommended = page.locator('#variants tr.is-recommended');
    assert.equal(await recommended.getByRole('radio').isChecked(), true);
    // The split variant lists its three parts.
    assert.equal(await variantRow('Q8_0').locator('details.files li').filter({ hasText: /Q8_0-0000\d-of-00003/ }).count(), 3);
  });

  step('picking Q2_K downloads it with live progress up to 100%', async () => {
    await variantRow('Q2_K').getByRole('radio').check();
    assert.match(await page.locator('#download-summary').innerText(), /Q2_K/);
    // Record every value the job's progress bar shows, to see it move rather than jump.
    await page.evaluate(() => {
      window.__seen = [];
      new MutationObserver(() => {
        for (const bar of document.querySelectorAll('#jobs li.job > progress')) window.__seen.push(Number(bar.value));
      }).observe(document.querySelector('#jobs'), { subtree: true, attributes: true, childList: true, characterData: true });
    });
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await page.locator('#tab-downloads[aria-selected="true"]').waitFor();
    const job = await watchJob('demo/tiny-gguf');
    assert.equal(Number(await job.locator('progress').first().getAttribute('value')), 100);
    assert.match(await job.locator('.bytes').innerText(), /\(100%\)/);
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen.some((v) => v > 0 && v < 100), `intermediate progress was shown (saw ${[...new Set(seen)].join(', ')})`);
    // Per-file rows: the GGUF file and its companions, all complete.
    const files = await job.locator('.file-progress progress').evaluateAll((bars) => bars.map((b) => Number(b.value)));
    assert.ok(files.length >= 1);
    assert.ok(files.every((v) => v === 100), `every file at 100%: ${files}`);
    assert.match(await job.locator('.file-progress').textContent(), /tiny-model-Q2_K\.gguf/);
  });

  step('the model appears in the cache browser and can be pinned', async () => {
    await tab('Cache').click();
    const row = page.locator('#cache-table tr[data-repo="demo/tiny-gguf"]');
    await row.waitFor();
    assert.match(await row.locator('td.num').innerText(), /^[0-9.]+ (B|KiB|MiB)$/);
    const pin = page.getByRole('switch', { name: 'Pin demo/tiny-gguf' });
    assert.equal(await pin.isChecked(), false);
    await pin.check();
    await row.locator('.switch', { hasText: 'Pinned' }).waitFor();
    const { json } = await server.request('GET', '/api/cache');
    assert.equal(json.find((r) => r.repo === 'demo/tiny-gguf').pinned, true);
    await page.reload();
    await tab('Cache').click();
    await page.locator('#cache-table tr[data-repo="demo/tiny-gguf"]').waitFor();
    assert.equal(await page.getByRole('switch', { name: 'Pin demo/tiny-gguf' }).isChecked(), true);
  });

  step('removing the bandwidth limit stores no limit', async () => {
    await tab('Settings').click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    assert.equal(await page.getByLabel('Bandwidth limit', { exact: true }).inputValue(), '400');
    await page.getByLabel('Bandwidth limit', { exact: true }).fill('');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved', { hasText: 'Saved.' }).waitFor();
    const { json } = await server.request('GET', '/api/settings');
    assert.equal(json.max_rate_bps, null);
  });

  step('a pasted Hub URL finds the repo, and a second model is downloaded then deleted', async () => {
    await search('https://huggingface.co/demo/tiny-safetensors/tree/main');
    await page.locator('#variants-title', { hasText: 'demo/tiny-safetensors' }).waitFor();
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await watchJob('demo/tiny-safetensors');

    await tab('Cache').click();
    const row = page.locator('#cache-table tr[data-repo="demo/tiny-safetensors"]');
    await row.waitFor();
    // Cancelling the confirmation keeps the model.
    await page.getByRole('button', { name: 'Delete demo/tiny-safetensors' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await row.count(), 1);
    await page.getByRole('button', { name: 'Delete demo/tiny-safetensors' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await row.waitFor({ state: 'detached' });
    await page.locator('.toast', { hasText: 'freed' }).waitFor();
    const { json } = await server.request('GET', '/api/cache');
    assert.deepEqual(json.map((r) => r.repo), ['demo/tiny-gguf']);
  });

  step('a gated repo shows its error with the hint', async () => {
    await search('demo/gated');
    const error = page.locator('#search-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-kind'), 'gated');
    const text = await error.innerText();
    assert.match(text, /Hint:/);
    assert.match(text, /access/i);
    assert.match(text, /token/i);
    // In the window's words: no raw kind, no Markdown quotes, a step in the app (not a command).
    assert.doesNotMatch(text, /\(gated\)|`|mcache /);
    assert.match(text, /in Settings/);
    assert.equal(await page.locator('#variants tr[data-variant]').count(), 0);
  });

  step('no script errors were logged', async () => {
    assert.deepEqual(browser.consoleErrors.filter((e) => !/status of 4\d\d/.test(e)), []);
  });
});
