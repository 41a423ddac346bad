// Asks Model Cache's native-messaging host (`mcache native-host install --browser chromium
// --allow-origin chrome-extension://<this extension's id>/` registers it) for the cached
// models and lists them. The host answers with names, sizes and paths, never file bytes.

const HOST = 'dev.modelcache.host';

function formatSize(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function show(answer) {
  const status = document.getElementById('status');
  const list = document.getElementById('models');
  if (chrome.runtime.lastError) {
    status.className = 'error';
    status.textContent = `The host could not be reached: ${chrome.runtime.lastError.message}`;
    return;
  }
  if (answer.error === 'app_not_running') {
    status.className = 'error';
    status.textContent = 'Model Cache is not running: start the app (or `mcache serve`).';
    return;
  }
  if (answer.error) {
    status.className = 'error';
    status.textContent = `${answer.error}: ${answer.message}`;
    return;
  }
  status.textContent = answer.models.length === 0
    ? 'No models are cached yet.'
    : `${answer.models.length} model(s)${answer.truncated ? ' (the first ones)' : ''}:`;
  for (const model of answer.models) {
    const item = document.createElement('li');
    item.className = 'model';
    item.textContent = `${model.repo} `;
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = formatSize(model.size_bytes);
    item.append(size);
    list.append(item);
  }
}

chrome.runtime.sendNativeMessage(HOST, { id: 1, type: 'list' }, show);
