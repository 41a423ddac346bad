// Peers: two servers on loopback (discovery on the loopback interface only) turn sharing on, see
// each other, pair through the Peers panel with the code the other one shows, and a download on
// one is served by the other, which the panel and the download's card say.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, withScreenshot } from '../harness.mjs';

const PEER_ARGS = ['--no-mirror', '--peers-port', '0', '--peers-bind', '127.0.0.1', '--peers-discovery', 'loopback'];

async function waitFor(what, check, seconds = 20) {
  for (let i = 0; i < seconds * 10; i += 1) {
    const value = await check();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`waited ${seconds} s for ${what}`);
}

async function pulled(server, repo, files) {
  const { status, json } = await server.request('POST', '/api/pulls', { repo, files });
  assert.equal(status, 200, JSON.stringify(json));
  return waitFor(`the download of ${repo}`, async () => {
    const { json: jobs } = await server.request('GET', '/api/jobs');
    const job = jobs.find((j) => j.id === json.job_id);
    if (job && job.state === 'failed') throw new Error(JSON.stringify(job));
    return job && job.state === 'done' ? job : null;
  }, 60);
}

describe('Peers panel', () => {
  let a;
  let b;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    a = await startServer({ args: PEER_ARGS });
    b = await startServer({ args: PEER_ARGS });
    browser = await launchBrowser();
    page = browser.page;
    await a.request('PUT', '/api/settings', { first_run_done: true });
    await page.goto(a.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (a) await a.stop();
    if (b) await b.stop();
  });

  step('sharing is off until turned on, then the other machine is seen', async () => {
    await page.getByRole('tab', { name: 'Peers' }).click();
    const sharing = page.getByLabel('Share with paired machines on this network');
    await page.locator('#peers-this', { hasText: 'not sharing' }).waitFor();
    assert.equal(await sharing.isChecked(), false);
    await sharing.check();
    await page.locator('#peers-this', { hasText: ', sharing' }).waitFor();
    const { json } = await a.request('GET', '/api/peers');
    assert.equal(json.sharing, true);
    // Compressed transfers are off by default; the box turns them on for this machine.
    assert.equal(json.compress, false);
    const compress = page.getByLabel('Compress transfers of 16-bit weights');
    assert.equal(await compress.isChecked(), false);
    await compress.check();
    await waitFor('compression on', async () => (await a.request('GET', '/api/peers')).json.compress);
    await compress.uncheck();
    await waitFor('compression off', async () => !(await a.request('GET', '/api/peers')).json.compress);
    await b.request('POST', '/api/peers/sharing', { on: true });
    const { json: bView } = await b.request('GET', '/api/peers');
    await waitFor('A to see B', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      return page.locator(`#peers-seen li[data-peer="${bView.this.peer_id}"]`).count();
    });
  });

  step('pairing with the code the other machine shows', async () => {
    const { json: bView } = await b.request('GET', '/api/peers');
    const { json: code } = await b.request('POST', '/api/peers/pairing');
    assert.match(code.code, /^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    await page.locator(`#peers-seen li[data-peer="${bView.this.peer_id}"] button`).click();
    assert.equal(await page.locator('#peers-pair-address').inputValue(), bView.this.peer_id);
    await page.locator('#peers-pair-code').fill(code.code.toLowerCase());
    await page.getByRole('button', { name: 'Pair', exact: true }).click();
    await page.locator(`#peers-table tr[data-peer="${bView.this.peer_id}"]`).waitFor();
    const { json: after } = await b.request('GET', '/api/peers');
    assert.equal(after.paired.length, 1, 'B paired A too');
  });

  step('a download here is served by the paired machine, and the panel counts it', async () => {
    const files = ['config.json', 'tiny-model-Q2_K.gguf'];
    await pulled(b, 'demo/tiny-gguf', files);
    const job = await pulled(a, 'demo/tiny-gguf', files);
    const gguf = job.files.find((f) => f.path === 'tiny-model-Q2_K.gguf');
    const { json: bView } = await b.request('GET', '/api/peers');
    const fromB = gguf.sources.find((s) => s.source === `peer:${bView.this.peer_id}`);
    assert.ok(fromB && fromB.bytes > 0, JSON.stringify(gguf.sources));
    await page.getByRole('button', { name: 'Refresh' }).click();
    const row = page.locator(`#peers-table tr[data-peer="${bView.this.peer_id}"]`);
    await waitFor('the received bytes', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      return !(await row.locator('td').nth(4).innerText()).startsWith('0 B');
    });
    // What the paired machine holds, asked of it.
    await row.getByRole('button', { name: /holds$/ }).click();
    await page.locator('#peers-holdings li', { hasText: 'demo/tiny-gguf main' }).waitFor();
  });
});
