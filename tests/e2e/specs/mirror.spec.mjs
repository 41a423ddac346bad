// The mirror with the JavaScript Hub client: `@huggingface/hub` (what transformers.js builds on)
// pointed at the mirror `mcache serve --demo` runs, lists a repo and downloads its files (a miss
// fetched through the mirror, then a hit), checked against the hashes the listing gives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { downloadFile, listFiles, modelInfo } from '@huggingface/hub';
import { startServer } from '../harness.mjs';

let server;
let mirror;
let token;

before(async () => {
  server = await startServer();
  // The demo keeps its data under `<data>/demo/`: the discovery record names the mirror, and its
  // token is in `mirror-token` beside it.
  const demoData = join(server.dataDir, 'demo');
  mirror = JSON.parse(readFileSync(join(demoData, 'api.json'), 'utf8')).mirror_url;
  token = readFileSync(join(demoData, 'mirror-token'), 'utf8').trim();
  assert.match(mirror, /^http:\/\/127\.0\.0\.1:\d+$/);
});

after(async () => {
  await server?.stop();
});

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('@huggingface/hub lists and downloads through the mirror, miss then hit', async () => {
  const repo = { type: 'model', name: 'demo/tiny-gguf' };
  const info = await modelInfo({ name: repo.name, hubUrl: mirror, accessToken: token });
  assert.equal(info.name, repo.name);
  const files = [];
  for await (const file of listFiles({ repo, hubUrl: mirror, accessToken: token, recursive: true })) {
    files.push(file);
  }
  const gguf = files.find((f) => f.path.endsWith('.gguf') && f.lfs);
  assert.ok(gguf, `a GGUF with its LFS hash in ${JSON.stringify(files.map((f) => f.path))}`);
  // A miss: fetched through the mirror, verified against the listing's sha256.
  const blob = await downloadFile({ repo, path: gguf.path, hubUrl: mirror, accessToken: token });
  const bytes = Buffer.from(await blob.arrayBuffer());
  assert.equal(bytes.length, gguf.size);
  assert.equal(sha256(bytes), gguf.lfs.oid);
  // Now cached: the same bytes without the token (the demo repo is public).
  const again = await downloadFile({ repo, path: gguf.path, hubUrl: mirror });
  assert.equal(sha256(Buffer.from(await again.arrayBuffer())), gguf.lfs.oid);
  // A repo that is not cached is not served without the token.
  await assert.rejects(
    downloadFile({ repo: { type: 'model', name: 'demo/tiny-safetensors' }, path: 'config.json', hubUrl: mirror }),
  );
});
