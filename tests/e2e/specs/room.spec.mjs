// Consent to evict: a download that would take the cache over its budget asks first, naming
// the models that would go with their sizes, and offers to remove them, to raise the budget,
// or to cancel. Nothing is removed without that answer unless background cleanup (the
// setting's consent) is on; every eviction is announced and the Cache tab follows it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, withScreenshot } from '../harness.mjs';

describe('Room for a download', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));
  const tab = (name) => page.getByRole('tab', { name: new RegExp(`^${name}`) });
  const dialog = () => page.locator('#room-dialog');
  const GGUF = { repo: 'demo/tiny-gguf', variant: 'Q2_K' };
  const SAFETENSORS = { repo: 'demo/tiny-safetensors' };

  /** The UI's own formatting of a size (the module the page loaded). */
  const fmtBytes = (n) => page.evaluate(async (bytes) => (await import(new URL('app.js', document.baseURI).href)).fmtBytes(bytes), n);

  async function api(method, path, body) {
    const { status, json } = await server.request(method, path, body);
    assert.ok(status < 300, `${method} ${path}: ${status} ${JSON.stringify(json)}`);
    return json;
  }

  async function waitDone(id) {
    for (let i = 0; i < 600; i += 1) {
      const job = (await api('GET', '/api/jobs')).find((j) => j.id === id);
      if (job && job.state === 'done') return;
      if (job && ['failed', 'cancelled'].includes(job.state)) assert.fail(`job ${id} ${job.state}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`job ${id} never finished`);
  }

  const cached = async () => (await api('GET', '/api/cache')).filter((r) => r.repo_type === 'model').map((r) => r.repo);
  const jobsOf = async (repo) => (await api('GET', '/api/jobs')).filter((j) => j.repo === repo);

  /** Waits until `repo` has `count` jobs; returns the newest. */
  async function nthJob(repo, count) {
    for (let i = 0; i < 300; i += 1) {
      const jobs = await jobsOf(repo);
      if (jobs.length >= count) return jobs.sort((a, b) => a.id - b.id)[count - 1];
      await new Promise((r) => setTimeout(r, 100));
    }
    return assert.fail(`${repo} never had ${count} jobs`);
  }

  /** Opens `repo` in the Models tab and clicks its Download button. */
  async function clickDownload(repo) {
    await tab('Models').click();
    const box = page.getByLabel('Repository id or Hub URL');
    await box.fill(repo);
    await box.press('Enter');
    await page.locator('#variants-title', { hasText: repo }).waitFor();
    await page.getByRole('button', { name: 'Download', exact: true }).click();
  }

  before(async () => {
    server = await startServer();
    await api('PUT', '/api/settings', { first_run_done: true });
    await waitDone((await api('POST', '/api/pulls', GGUF)).job_id);
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('a download over the budget asks first, naming what would go, and Cancel keeps all', async () => {
    // A budget nothing fits in, with background cleanup off: the user has not agreed to
    // evictions. Removing every model would not be enough, so only Cancel is offered.
    await api('PUT', '/api/settings', { size_budget_bytes: 1, auto_cleanup: false });
    const asked = page.waitForRequest((r) => r.url().endsWith('/api/pulls/room'));
    await clickDownload('demo/tiny-safetensors');
    const request = JSON.parse((await asked).postData());
    await dialog().waitFor();
    assert.match(await page.locator('#room-evict-intro').innerText(), /would not make enough room/);
    assert.equal(await page.locator('#room-evict').isVisible(), false);
    await page.locator('#room-cancel').click();
    await dialog().waitFor({ state: 'hidden' });

    // One byte short for what the page asks for: removing the cached model makes room.
    const room = await api('POST', '/api/pulls/room', request);
    await api('PUT', '/api/settings', { size_budget_bytes: room.used + room.needed - 1 });
    const short = await api('POST', '/api/pulls/room', request);
    assert.deepEqual([short.fits, short.consent, short.over_budget_by], [false, false, 1]);
    assert.deepEqual(short.evictions.map((e) => e.repo), ['demo/tiny-gguf']);

    await clickDownload('demo/tiny-safetensors');
    await dialog().waitFor();
    const needs = await fmtBytes(short.needed);
    const body = await page.locator('#room-body').innerText();
    assert.ok(body.includes(`needs ${needs}`) && body.includes('1 B over its budget'), body);
    const items = await page.locator('#room-evictions li').allInnerTexts();
    assert.equal(items.length, 1);
    assert.ok(items[0].startsWith('demo/tiny-gguf'), items[0]);
    assert.ok(items[0].endsWith(` — ${await fmtBytes(short.evictions[0].bytes_freed)}`), items[0]);
    assert.ok(await page.locator('#room-evict').isVisible());
    assert.ok(await page.locator('#room-budget').isVisible(), 'the disk has room: raising the budget is offered');
    await page.locator('#room-cancel').click();
    await dialog().waitFor({ state: 'hidden' });
    assert.deepEqual(await jobsOf('demo/tiny-safetensors'), [], 'no download was queued');
    assert.ok((await cached()).includes('demo/tiny-gguf'), 'nothing was removed');
  });

  step('agreeing removes exactly the named model, announces it, and downloads', async () => {
    await clickDownload('demo/tiny-safetensors');
    await dialog().waitFor();
    await page.locator('#room-evict').click();
    await page.locator('.toast', { hasText: /Removed .* from the cache/ }).waitFor();
    await waitDone((await nthJob('demo/tiny-safetensors', 1)).id);
    assert.deepEqual((await cached()).sort(), ['demo/tiny-safetensors']);
    await tab('Cache').click();
    await page.locator('#cache-table tr[data-repo="demo/tiny-safetensors"]').waitFor();
    assert.equal(await page.locator('#cache-table tr[data-repo="demo/tiny-gguf"]').count(), 0);
  });

  step('raising the budget instead keeps every model', async () => {
    const before = await api('POST', '/api/pulls/room', GGUF);
    const queued = (await jobsOf('demo/tiny-gguf')).length;
    await api('PUT', '/api/settings', { size_budget_bytes: before.used + 1 });
    await clickDownload('demo/tiny-gguf');
    await dialog().waitFor();
    const label = await page.locator('#room-budget').innerText();
    await page.locator('#room-budget').click();
    const job = await nthJob('demo/tiny-gguf', queued + 1);
    const settings = await api('GET', '/api/settings');
    assert.ok(settings.size_budget_bytes >= before.used + before.needed, JSON.stringify(settings));
    assert.ok(label.includes(await fmtBytes(settings.size_budget_bytes)), `${label} names the new budget`);
    await waitDone(job.id);
    assert.deepEqual((await cached()).sort(), ['demo/tiny-gguf', 'demo/tiny-safetensors']);
  });

  step('with background cleanup on, the setting is the consent: no question', async () => {
    await api('PUT', '/api/settings', { size_budget_bytes: 1, auto_cleanup: true });
    const room = await api('POST', '/api/pulls/room', SAFETENSORS);
    assert.deepEqual([room.fits, room.consent], [false, true]);
    const queued = (await jobsOf('demo/tiny-safetensors')).length;
    await clickDownload('demo/tiny-safetensors');
    await nthJob('demo/tiny-safetensors', queued + 1);
    assert.equal(await dialog().isVisible(), false);
  });
});
