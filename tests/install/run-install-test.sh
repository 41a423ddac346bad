#!/usr/bin/env bash
# Installs the app the way a person does and uses it the way a person does: builds a debug
# `.deb` (reusing target/debug), installs it with apt-get, checks what it put on the system (the
# app and `mcache` on PATH, a desktop entry that passes desktop-file-validate, the hicolor icons,
# the `modelcache` scheme handler), then, in a virtual X display with a private D-Bus session,
# starts the app through its desktop entry (gtk-launch, as a double-click does) and opens a
# `modelcache://` link with xdg-open (tests/install/inside-xvfb.sh). Finally it purges the
# package and checks the user's cache and app data are still there, unchanged.
#
# The package is purged on every exit (the machine may be reused). A model-cache package that
# was installed before the test is left alone: the test refuses to run over it.
# Screenshots and logs are kept under target/install-test/.
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
fail() { echo "install test FAILED: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' model-cache 2>/dev/null | grep -q "install ok installed"; }

if installed; then
  fail "the model-cache package is already installed on this machine; the test would remove it (apt-get purge model-cache, then run the test again)"
fi

scripts/package.sh --debug --bundles deb
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
debs=("$target_dir"/debug/bundle/deb/model-cache_*.deb)
[ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || fail "expected one model-cache_*.deb, found: ${debs[*]}"
DEB="${debs[0]}"
echo "package: $DEB ($(du -h "$DEB" | cut -f1))"

OUT="$target_dir/install-test"
rm -rf "$OUT" && mkdir -p "$OUT"
# A user of our own, with the default folders of a fresh account: nothing of the machine's
# real users is read or written.
unset XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME HF_HOME HF_HUB_CACHE HF_TOKEN HF_ENDPOINT \
  HF_HUB_OFFLINE MODEL_CACHE_DATA_DIR
export HOME="$OUT/home"
mkdir -p "$HOME"
CACHE="$HOME/.cache/huggingface"
DATA="$HOME/.local/share/dev.modelcache.app"

purge() {
  if installed; then
    echo "install test: purging the model-cache package" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q model-cache >"$OUT/purge.log" 2>&1 ||
      { cat "$OUT/purge.log" >&2; return 1; }
  fi
}
trap purge EXIT

as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$DEB" \
  >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log" >&2; fail "apt-get install $DEB"; }
installed || fail "apt-get did not install model-cache"

# What the package put on the system.
[ "$(command -v model-cache-app)" = /usr/bin/model-cache-app ] || fail "model-cache-app is not on PATH"
[ "$(command -v mcache)" = /usr/bin/mcache ] || fail "mcache is not on PATH"
mcache --version | grep -q '^mcache ' || fail "mcache --version: $(mcache --version 2>&1)"
ENTRY="/usr/share/applications/Model Cache.desktop"
[ -f "$ENTRY" ] || fail "no desktop entry at $ENTRY"
desktop-file-validate "$ENTRY" || fail "the desktop entry does not validate"
grep -qx 'MimeType=x-scheme-handler/modelcache;' "$ENTRY" || fail "the desktop entry does not register modelcache://"
grep -q '^Exec=model-cache-app %u$' "$ENTRY" || fail "the desktop entry does not pass the link: $(grep ^Exec "$ENTRY")"
for size in 16 24 32 48 64 128 256 512; do
  icon="/usr/share/icons/hicolor/${size}x${size}/apps/model-cache-app.png"
  [ "$(identify -format '%wx%h' "$icon" 2>/dev/null)" = "${size}x${size}" ] || fail "no ${size}px icon at $icon"
done
handler=$(xdg-mime query default x-scheme-handler/modelcache)
[ "$handler" = "Model Cache.desktop" ] || fail "xdg-mime names '$handler' as the modelcache:// handler"
echo "installed: /usr/bin/model-cache-app, /usr/bin/mcache, a valid desktop entry, icons 16-512 px, the modelcache:// handler"

# The user already has a model in their cache and settings of their own, made with the installed
# mcache against a demo hub on loopback.
mcache demo >"$OUT/demo-hub.log" 2>&1 &
DEMO_PID=$!
for _ in $(seq 1 40); do grep -q '^http://127.0.0.1:' "$OUT/demo-hub.log" && break; sleep 0.25; done
HUB=$(grep -m1 '^http://127.0.0.1:' "$OUT/demo-hub.log") || { kill $DEMO_PID; fail "mcache demo did not start"; }
mcache --quiet --endpoint "$HUB" pull demo/tiny-safetensors >"$OUT/pull.log" 2>&1 ||
  { kill $DEMO_PID; cat "$OUT/pull.log" >&2; fail "mcache pull"; }
kill $DEMO_PID; wait $DEMO_PID 2>/dev/null || true
mcache config set max_rate_bps 20MB/s >/dev/null 2>&1
[ -d "$CACHE/hub/models--demo--tiny-safetensors/snapshots" ] || fail "the user's model is not in $CACHE/hub"
[ -f "$DATA/preferences.json" ] || fail "the user's settings are not in $DATA"

# Every file, folder and link of the user's cache and app data, with the content of each file.
# (The app's demo mode keeps state of its own in $DATA/demo, which is not the user's.)
manifest() {
  (cd "$1" && find . -path ./demo -prune -o -printf '%y %p -> %l\n' | LC_ALL=C sort &&
    find . -path ./demo -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
manifest "$CACHE" >"$OUT/cache-before.txt"
manifest "$DATA" >"$OUT/data-before.txt"

export MODEL_CACHE_INSTALL_TEST_OUT="$OUT"
xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- tests/install/inside-xvfb.sh

purge
trap - EXIT
installed && fail "the package is still installed after apt-get purge"
for path in /usr/bin/model-cache-app /usr/bin/mcache "$ENTRY"; do
  [ ! -e "$path" ] || fail "$path is still there after the purge"
done
[ -z "$(xdg-mime query default x-scheme-handler/modelcache)" ] || fail "modelcache:// still has a handler after the purge"

manifest "$CACHE" >"$OUT/cache-after.txt"
manifest "$DATA" >"$OUT/data-after.txt"
# Nothing of the user's is changed or gone. The cache gains nothing either; the app-data folder
# also holds the window's web storage (WebKit's), which the window creates when it first opens.
diff -u "$OUT/cache-before.txt" "$OUT/cache-after.txt" >&2 || fail "the user's cache changed"
changed=$(LC_ALL=C comm -23 <(LC_ALL=C sort "$OUT/data-before.txt") <(LC_ALL=C sort "$OUT/data-after.txt"))
[ -z "$changed" ] || fail "the user's app data changed: $changed"
echo "purged; the user's cache ($(grep -c "^f " "$OUT/cache-before.txt") files) and app data ($(grep -c "^f " "$OUT/data-before.txt") files) are unchanged"
echo "install test passed"
