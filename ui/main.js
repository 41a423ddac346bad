// Placeholder front end: proves the page loads and that IPC reaches the engine.
const status = document.getElementById('status');
if (window.__TAURI__) {
  window.__TAURI__.core.invoke('app_version').then(
    (v) => { status.textContent = `Model Cache ${v} is running.`; },
    (e) => { status.textContent = `Engine unavailable: ${e}`; });
} else {
  status.textContent = 'Model Cache UI (browser mode).';
}
