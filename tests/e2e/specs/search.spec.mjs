// Finding and choosing a model from the first screen, in a real browser against
// `mcache serve --demo`: the popular models on landing, a keyword search with order and format,
// results with downloads, formats and a plain-language fit badge, then a model's variants with
// the mid quant chosen, raw header facts behind a toggle, a Download button per row and a tick
// on what is cached.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

const FIT_TEXTS = ['Fits in GPU', 'Fits in RAM', 'Tight fit', 'Too large', 'Size unknown', 'Fit unknown'];

describe('Search and choose in a browser', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));
  const results = () => page.locator('#results li.result');
  const resultRepos = () => results().evaluateAll((lis) => lis.map((li) => li.dataset.repo));

  async function type(text) {
    const box = page.getByLabel('Search models, or enter a repository id or Hub URL');
    await box.fill(text);
    await box.press('Enter');
  }

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
  });

  after(async () => {
    if (page) await screenshot(page, 'search-final').catch(() => {});
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('the first screen lists popular models, most downloaded first', async () => {
    await page.locator('#results-title', { hasText: 'Popular models' }).waitFor();
    const repos = await resultRepos();
    assert.equal(repos[0], 'demo/tiny-gguf');
    assert.ok(repos.includes('demo/tiny-safetensors'), `${repos}`);
    assert.ok(!repos.includes('demo/private'), 'a private repo is not listed without a token');
    const first = results().first();
    assert.match(await first.innerText(), /↓ 52K/);
    assert.match(await first.innerText(), /GGUF/);
    assert.match(await first.innerText(), /Q4_K_M: /);
    const badges = await results().locator('.fit-badge').allInnerTexts();
    assert.equal(badges.length, repos.length);
    for (const b of badges) assert.ok(FIT_TEXTS.includes(b), `plain fit text, got ${b}`);
    assert.equal(badges[0], 'Fits in RAM');
    const reason = await results().first().locator('.fit-badge').getAttribute('title');
    assert.match(reason, /^Needs about .+ of memory \(.+ of weights \+ .+\); this machine has .+ of RAM free/);
    assert.doesNotMatch(await page.locator('#results').innerText(), /null|undefined|NaN/);
    // The library above it is empty so far, and says what to do.
    await page.locator('#library .empty', { hasText: 'Nothing downloaded yet' }).waitFor();
  });

  step('a word searches the Hub instead of failing as a repository id', async () => {
    await type('tiny');
    await page.locator('#results-title', { hasText: 'tiny' }).waitFor();
    assert.deepEqual(await resultRepos(), ['demo/tiny-gguf', 'demo/tiny-safetensors', 'tiny-legacy']);
    assert.equal(await page.locator('#search-error').isVisible(), false, 'no error for a word');
    const st = results().filter({ hasText: 'demo/tiny-safetensors' });
    assert.match(await st.innerText(), /safetensors/);
    assert.match(await st.innerText(), /BF16: /);
  });

  step('the order and the format filter change the results', async () => {
    // Waits until the list shows exactly `expected` (a search in flight shows no rows).
    const shows = (expected) => page.waitForFunction((want) => JSON.stringify(Array.from(
      document.querySelectorAll('#results li.result'), (li) => li.dataset.repo)) === want, JSON.stringify(expected));
    await page.getByLabel('Sort by').selectOption('likes');
    await shows(['demo/tiny-safetensors', 'demo/tiny-gguf', 'tiny-legacy']);
    await page.getByLabel('Format').selectOption('gguf');
    await shows(['demo/tiny-gguf', 'tiny-legacy']);
    await page.getByLabel('Format').selectOption('');
    await page.getByLabel('Sort by').selectOption('downloads');
    await shows(['demo/tiny-gguf', 'demo/tiny-safetensors', 'tiny-legacy']);
  });

  step('a word that matches nothing says so, in words', async () => {
    await type('llama');
    await page.locator('#results .empty', { hasText: 'No model matches' }).waitFor();
    assert.equal(await results().count(), 0);
    assert.equal(await page.locator('#search-error').isVisible(), false);
  });

  step('a result opens the model: the mid quant is chosen, header facts behind Details', async () => {
    await type('tiny');
    await results().first().waitFor();
    await page.getByRole('button', { name: 'demo/tiny-gguf' }).click();
    await page.locator('#variants-title', { hasText: 'demo/tiny-gguf' }).waitFor();
    assert.equal(await page.locator('#results').isVisible(), false);
    const recommended = page.locator('#variants tr.is-recommended');
    assert.equal(await recommended.getAttribute('data-quant'), 'Q4_K_M');
    assert.equal(await recommended.getByRole('radio').isChecked(), true);
    const badges = await page.locator('#variants .fit-badge').allInnerTexts();
    for (const b of badges) assert.ok(FIT_TEXTS.includes(b), `plain fit text, got ${b}`);
    const details = recommended.locator('details.header-facts');
    assert.equal(await details.locator('dl').isVisible(), false, 'raw facts are folded away');
    await details.locator('summary').click();
    const facts = await details.locator('dl').innerText();
    assert.match(facts, /Parameters\s+\d+(\.\d)? [KMB]/);
    assert.doesNotMatch(facts, /0\.00 B|null|undefined/);
    // The reason names the weights and the runtime's share, so a small model's memory figure adds up.
    const reason = await recommended.locator('.fit-badge').getAttribute('title');
    assert.match(reason, /of weights/);
    assert.match(reason, /for the runtime/);
  });

  step('the model page: its card rendered safely below the variants, its license above', async () => {
    const card = page.locator('#model-card');
    await card.locator('h1', { hasText: 'Tiny GGUF' }).waitFor();
    assert.match(await page.locator('#model-license').innerText(), /License: MIT/);
    assert.match(await card.innerText(), /Q4_K_M/);
    assert.doesNotMatch(await card.innerText(), /license: mit|---/, 'the front matter is not shown');
    assert.equal(await card.locator('img, script, iframe').count(), 0);
    const rels = await page.locator('#model-about a, #model-card a').evaluateAll((links) => links.map((a) => a.rel));
    for (const rel of rels) assert.match(rel, /noopener/);
    const hub = await page.locator('#model-about a.hub-page').getAttribute('href');
    assert.match(hub, /\/demo\/tiny-gguf$/);
    await screenshot(page, 'model-page');
  });

  step('a gated model says so and links to where access is requested', async () => {
    await type('demo/gated');
    const gating = page.locator('#model-gating');
    await gating.waitFor();
    assert.match(await gating.innerText(), /Gated: the authors review each request/);
    const link = page.locator('#request-access');
    assert.equal(await link.innerText(), 'Request access on the Hub');
    assert.match(await link.getAttribute('href'), /^http:\/\/127\.0\.0\.1:\d+\/demo\/gated$/);
    assert.match(await page.locator('#search-error').innerText(), /token|access/i);
    assert.doesNotMatch(await page.locator('#search-error').innerText(), /null|undefined|\(gated\)/);
  });

  step('More results appends the next page until the listing ends', async () => {
    // Pages of two (the UI asks for twenty): the engine follows the Hub's `Link` cursor.
    await page.route('**/api/search?*', (route) => {
      const url = new URL(route.request().url());
      if (url.searchParams.has('limit')) url.searchParams.set('limit', '2');
      route.continue({ url: url.toString() });
    });
    try {
      const { json: all } = await server.request('GET', '/api/search?limit=50');
      const expected = all.results.map((r) => r.repo);
      assert.ok(expected.length > 4, `${expected}`);
      await type('');
      await page.locator('#results-title', { hasText: 'Popular models' }).waitFor();
      assert.equal(await results().count(), 2);
      let pages = 1;
      while (await page.locator('#results-more').count()) {
        const before = await results().count();
        await page.locator('#results-more').click();
        await page.waitForFunction((n) => document.querySelectorAll('#results li.result').length > n, before);
        pages += 1;
        assert.ok(pages <= expected.length, 'the listing ends');
      }
      assert.deepEqual(await resultRepos(), expected, 'every model once, in order');
      assert.equal(pages, Math.ceil(expected.length / 2));
    } finally {
      await page.unroute('**/api/search?*');
    }
  });

  step('a row downloads its own variant, which is then ticked with Reveal instead of Download', async () => {
    await type('demo/tiny-gguf');
    await page.locator('#variants-title', { hasText: 'demo/tiny-gguf' }).waitFor();
    const row = page.locator('#variants tr[data-quant="Q2_K"]');
    await row.getByRole('button', { name: 'Download Q2_K' }).click();
    await page.locator('#tab-downloads[aria-selected="true"]').waitFor();
    const job = page.locator('#jobs li.job').filter({ hasText: 'demo/tiny-gguf' }).last();
    await job.waitFor();
    await page.waitForFunction((el) => ['done', 'failed', 'cancelled'].includes(el.dataset.state), await job.elementHandle(), { timeout: 120000 });
    assert.equal(await job.getAttribute('data-state'), 'done');
    assert.match(await job.innerText(), /Q2_K/);
    await page.getByRole('tab', { name: /^Models/ }).click();
    await type('demo/tiny-gguf');
    await page.locator('#variants-title', { hasText: 'demo/tiny-gguf' }).waitFor();
    const cached = page.locator('#variants tr[data-quant="Q2_K"]');
    await cached.locator('.cached-tick').waitFor();
    assert.equal(await cached.getByRole('button', { name: 'Download Q2_K' }).count(), 0, 'no second download');
    await cached.getByRole('button', { name: 'Reveal Q2_K in the file manager' }).click();
    await page.locator('.toast', { hasText: 'models--demo--tiny-gguf' }).first().waitFor();
    const other = page.locator('#variants tr[data-quant="Q4_K_M"]');
    assert.equal(await other.locator('.cached-tick').count(), 0);
    assert.equal(await other.getByRole('button', { name: 'Download Q4_K_M' }).count(), 1);
    // "Use it": the file's path in the cache, a llama.cpp command and a Python snippet.
    await cached.getByRole('button', { name: 'Use Q2_K' }).click();
    const use = page.locator('#use-it');
    await use.waitFor();
    const path = await use.getByLabel('Path').inputValue();
    assert.match(path, /\/models--demo--tiny-gguf\/snapshots\/[0-9a-f]{40}\/tiny-model-Q2_K\.gguf$/);
    assert.ok(existsSync(path), `${path} exists`);
    assert.equal(await use.getByLabel('Command').inputValue(), `llama-server -m '${path}'`);
    const python = await use.getByLabel('Python').inputValue();
    assert.match(python, /hf_hub_download\("demo\/tiny-gguf", "tiny-model-Q2_K\.gguf", revision="[0-9a-f]{40}"\)/);
    await use.getByRole('button', { name: 'Copy command' }).click();
    await page.waitForFunction(() => document.querySelector('#use-it-status').textContent.length > 0);
    assert.match(await use.locator('#use-it-status').innerText(), /^(Copied\.|Could not reach the clipboard: select the text and copy it with Ctrl\+C\.)$/);
    // The search marks the cached repo too.
    await type('tiny');
    await results().first().waitFor();
    assert.equal(await results().filter({ hasText: 'demo/tiny-gguf' }).locator('.cached-tick').count(), 1);
    // An empty search is the landing: the library lists the cached model, which opens its variants.
    await type('');
    const item = page.locator('#library li[data-repo="demo/tiny-gguf"][data-state="cached"]');
    await item.waitFor();
    assert.match(await item.innerText(), /✓ Cached/);
    await item.getByRole('button', { name: 'demo/tiny-gguf' }).click();
    await page.locator('#variants-title', { hasText: 'demo/tiny-gguf' }).waitFor();
    assert.equal(await page.locator('#library').isVisible(), false);
  });

  step('deleting a cached variant removes its file and offers Download again', async () => {
    await type('demo/tiny-gguf');
    const row = page.locator('#variants tr[data-quant="Q2_K"]');
    await row.locator('.cached-tick').waitFor();
    await row.getByRole('button', { name: 'Use Q2_K' }).click();
    const path = await page.locator('#use-it').getByLabel('Path').inputValue();
    await row.getByRole('button', { name: 'Delete Q2_K' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await page.locator('.toast', { hasText: 'freed' }).waitFor();
    await page.locator('#variants tr[data-quant="Q2_K"]').getByRole('button', { name: 'Download Q2_K' }).waitFor();
    assert.equal(await page.locator('#variants .cached-tick').count(), 0);
    assert.ok(!existsSync(path), `${path} is gone`);
  });
});
