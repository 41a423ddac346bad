// Model Cache's local mirror over a WebRTC data channel, for pages that cannot fetch from
// loopback HTTP (or prefer an encrypted channel): copy this file into your page.
//
// Signaling is one POST of the page's offer to the mirror (the page's origin must be allowed in
// Model Cache's settings); then each file is asked for on the channel and checked against its
// sha256 before it is handed over.
//
//   import { connect } from './mirror-webrtc.js';
//   const mirror = await connect('http://127.0.0.1:7870');
//   const { bytes, sha256 } = await mirror.fetchFile('org/name', 'model.gguf');
//   mirror.close();

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Waits until the connection has gathered its ICE candidates (the mirror takes no trickle). */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', check); resolve(); } };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(resolve, 3000);
  });
}

/**
 * Opens a data channel to the mirror. `token`: the mirror token, for restricted repos (not
 * needed for cached public repos, nor for an origin the user lets read without it).
 */
export async function connect(mirror, { token } = {}) {
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel('model-cache', { ordered: true });
  channel.binaryType = 'arraybuffer';
  const opened = new Promise((resolve, reject) => {
    channel.onopen = resolve;
    channel.onerror = (event) => reject(new Error(`The data channel failed: ${event.error?.message || 'unknown'}`));
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(`${mirror.replace(/\/$/, '')}/api/webrtc/offer`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(pc.localDescription),
  });
  if (!response.ok) {
    pc.close();
    throw new Error(response.headers.get('X-Error-Message') || `The mirror refused the connection (${response.status})`);
  }
  await pc.setRemoteDescription(await response.json());
  await opened;

  // Requests are answered one at a time, in order: a head, binary pieces, then `done`.
  let nextId = 1;
  const waiting = [];
  let current = null;
  channel.onmessage = (event) => {
    if (typeof event.data !== 'string') {
      if (current) { current.pieces.push(event.data); current.received += event.data.byteLength; }
      return;
    }
    const message = JSON.parse(event.data);
    if (message.error !== undefined) {
      const request = waiting.shift();
      current = null;
      request?.reject(Object.assign(new Error(message.error), { status: message.status }));
    } else if (message.done) {
      const request = waiting.shift();
      const done = current;
      current = null;
      request?.resolve(done);
    } else {
      current = { head: message, pieces: [], received: 0 };
    }
  };

  return {
    /** Fetches a cached file (or `range: [start, end)` of it) and checks it against its sha256. */
    async fetchFile(repo, path, { revision = 'main', range } = {}) {
      const id = nextId++;
      const result = new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      channel.send(JSON.stringify({ id, repo, revision, path, ...(range ? { range } : {}) }));
      const { head, pieces, received } = await result;
      if (received !== head.end - head.start) throw new Error(`${repo}/${path}: received ${received} of ${head.end - head.start} bytes`);
      const bytes = new Uint8Array(received);
      let at = 0;
      for (const piece of pieces) { bytes.set(new Uint8Array(piece), at); at += piece.byteLength; }
      const whole = head.start === 0 && head.end === head.size;
      const sha256 = whole ? await sha256Hex(bytes) : null;
      if (whole && head.sha256 && sha256 !== head.sha256) throw new Error(`${repo}/${path} does not match its sha256`);
      return { bytes: bytes.buffer, sha256, size: head.size, commit: head.commit, verified: Boolean(whole && head.sha256) };
    },
    close() { channel.close(); pc.close(); },
  };
}
