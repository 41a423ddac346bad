// Import in a real browser against `mcache serve --demo`: a GGUF file in a folder of its own is
// checked (a dry run that creates nothing and says what it saves), then imported by hard link
// into Model Cache's own folder; the file is unchanged.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

/** A small GGUF v3 file: a header with `general.architecture = llama`, no tensors. */
function tinyGguf() {
  const parts = [];
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
  const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
  const str = (s) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3); // version
  u64(0); // tensors
  u64(1); // metadata entries
  str('general.architecture');
  u32(8); // string
  str('llama');
  parts.push(Buffer.alloc(4096, 7)); // stands in for the weights
  return Buffer.concat(parts);
}

describe('Import in the UI', () => {
  let server;
  let browser;
  let page;
  let folder;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    folder = mkdtempSync(join(tmpdir(), 'mcache-e2e-import-'));
    writeFileSync(join(folder, 'tiny-Q4_K_M.gguf'), tinyGguf());
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
  });

  after(async () => {
    if (page) await screenshot(page, 'import-final').catch(() => {});
    if (browser) await browser.close();
    if (server) await server.stop();
    if (folder) rmSync(folder, { recursive: true, force: true });
  });

  const file = () => join(folder, 'tiny-Q4_K_M.gguf');
  const imported = () => join(server.dataDir, 'demo', 'imported', 'tiny-Q4_K_M.gguf', 'tiny-Q4_K_M.gguf');

  step('Check says how the file would be placed and creates nothing', async () => {
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    await page.getByRole('tab', { name: /^Cache/ }).click();
    await page.locator('#import-path').fill(file());
    await page.locator('#import-check').click();
    const result = page.locator('#import-result');
    await result.waitFor();
    const text = await result.innerText();
    assert.match(text, /planned: tiny-Q4_K_M\.gguf/);
    assert.match(text, /hard link/);
    assert.match(text, /would save 4\.\d+ KiB/);
    assert.equal(existsSync(imported()), false, 'a dry run creates nothing');
  });

  step('Import places it by hard link, unchanged', async () => {
    const before = readFileSync(file());
    await page.locator('#import-run').click();
    await page.locator('#import-result', { hasText: 'imported: tiny-Q4_K_M.gguf' }).waitFor();
    assert.equal(statSync(imported()).ino, statSync(file()).ino, 'the same file, a second name');
    assert.deepEqual(readFileSync(file()), before);
    // The API sees the same thing the page did.
    const again = await server.request('POST', '/api/import', { from: 'files', paths: [file()], dry_run: true });
    assert.equal(again.status, 200);
    assert.equal(again.json.items[0].files[0].method, 'already_there');
    assert.equal(again.json.items[0].variants[0].name, 'Q4_K_M');
  });

  step('a path that is no model is refused with the reason', async () => {
    writeFileSync(join(folder, 'notes.txt'), 'x');
    await page.locator('#import-path').fill(join(folder, 'notes.txt'));
    await page.locator('#import-check').click();
    await page.locator('#import-error', { hasText: 'is not a GGUF or safetensors file' }).waitFor();
  });
});
