// A small client of Model Cache's local mirror for web pages: copy this file into your page.
//
// The mirror serves the models cached on this machine through the Hugging Face Hub's own routes
// (`/{repo}/resolve/{revision}/{path}`), to pages whose origin the user allowed in Model Cache's
// settings ("Web pages that may use the local mirror"). Every file is checked against the
// sha256 the mirror names for it (its `X-Linked-Etag`, the Hub's LFS hash) before it is handed
// to the page.
//
//   import { fetchVerified } from './mirror-client.js';
//   const { bytes, sha256 } = await fetchVerified('http://127.0.0.1:7870', 'org/name', 'model.gguf');

/** The mirror's usual address (a free port is taken when 7870 is in use: see Model Cache). */
export const DEFAULT_MIRROR = 'http://127.0.0.1:7870';

/** An error with the mirror's own words (`X-Error-Message`) when it gave some. */
export class MirrorError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'MirrorError';
    this.status = status;
  }
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Fetches one file of a repo from the mirror and checks it against its sha256.
 * `token`: the mirror token, for restricted repos and files the cache does not hold yet (not
 * needed for cached public repos, nor for an origin the user lets read without it).
 * Resolves to `{ bytes: ArrayBuffer, sha256, size, commit }`; rejects with a `MirrorError`.
 */
export async function fetchVerified(mirror, repo, path, { revision = 'main', token } = {}) {
  const url = `${mirror.replace(/\/$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/${path.split('/').map(encodeURIComponent).join('/')}`;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(url, { headers });
  } catch (error) {
    throw new MirrorError(`The mirror at ${mirror} did not answer (is Model Cache running, and this page's origin allowed?): ${error.message}`, 0);
  }
  if (!response.ok) {
    const said = response.headers.get('X-Error-Message');
    throw new MirrorError(said || `The mirror answered ${response.status} for ${repo}/${path}`, response.status);
  }
  const expected = (response.headers.get('X-Linked-Etag') || '').replace(/^W\//, '').replace(/"/g, '');
  const bytes = await response.arrayBuffer();
  const sha256 = await sha256Hex(bytes);
  if (/^[0-9a-f]{64}$/.test(expected) && sha256 !== expected) {
    throw new MirrorError(`${repo}/${path} does not match its sha256 (${sha256} instead of ${expected})`, response.status);
  }
  return { bytes, sha256, size: bytes.byteLength, commit: response.headers.get('X-Repo-Commit'), verified: expected === sha256 };
}
