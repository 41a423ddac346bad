#!/usr/bin/env bash
# The part of the app test that runs inside Xvfb and the private D-Bus session.
set -euo pipefail
OUT="$MODEL_CACHE_APP_TEST_OUT"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
APP="$TARGET/debug/model-cache-app"
export HOME="$OUT/home" XDG_CONFIG_HOME="$OUT/home/.config" XDG_DATA_HOME="$OUT/home/.local/share"
export HF_HUB_CACHE="$OUT/hub-cache"
export MODEL_CACHE_LOG="${MODEL_CACHE_LOG:-info,model_cache_app=debug}"
mkdir -p "$HOME"

fail() { echo "app test FAILED: $*" >&2; exit 1; }

# A notification server and a monitor on this private session bus, before the app starts.
dunst >"$OUT/dunst.log" 2>&1 &
DUNST_PID=$!
dbus-monitor "interface='org.freedesktop.Notifications',member='Notify'" >"$OUT/notify.log" 2>&1 &
MONITOR_PID=$!
# A tray host's StatusNotifierWatcher, so the app's tray icon registers as on a desktop.
/usr/bin/python3 tests/app/sni_watcher.py "$OUT/sni-items" >"$OUT/sni-watcher.log" 2>&1 &
WATCHER_PID=$!
sleep 1

"$APP" --demo >"$OUT/app.log" 2>&1 &
APP_PID=$!
trap 'kill $APP_PID $DUNST_PID $MONITOR_PID $WATCHER_PID 2>/dev/null || true' EXIT

# Wait for the window to map.
WID=""
for _ in $(seq 1 60); do
  WID=$(xdotool search --name '^Model Cache$' 2>/dev/null | head -1 || true)
  [ -n "$WID" ] && xwininfo -id "$WID" | grep -q "IsViewable" && break
  kill -0 $APP_PID 2>/dev/null || { cat "$OUT/app.log" >&2; fail "the app exited early"; }
  sleep 0.5
done
[ -n "$WID" ] || { cat "$OUT/app.log" >&2; fail "no window titled 'Model Cache' appeared"; }

# Wait until the page has painted something other than a flat background.
for _ in $(seq 1 40); do
  import -window "$WID" "$OUT/window.png"
  COLORS=$(convert "$OUT/window.png" -format "%k" info:)
  [ "$COLORS" -gt 16 ] && break
  sleep 0.5
done
echo "screenshot: $OUT/window.png ($COLORS distinct colours)"
[ "$COLORS" -gt 16 ] || fail "the window looks blank ($COLORS colours)"

# Extra checks added by later tests live next to this script and are run here, in order.
for check in tests/app/checks/*.sh; do
  [ -e "$check" ] || continue
  echo "app check: $check"
  WID="$WID" APP_PID="$APP_PID" OUT="$OUT" APP="$APP" bash "$check" || { tail -50 "$OUT/app.log" >&2; fail "$check"; }
done

kill -0 $APP_PID 2>/dev/null || fail "the app died during the checks"

# The app as start-at-login starts it (`--hidden`), with the first instance gone (a second one
# would hand over to it and exit): no window, downloads run, every kind of notification reaches
# the bus with the app's icon, and a kind turned off in Settings does not.
kill $APP_PID; wait $APP_PID 2>/dev/null || true
export XDG_DATA_HOME="$OUT/background-data"
"$APP" --demo --hidden >"$OUT/background-app.log" 2>&1 &
BG_PID=$!
trap 'kill $APP_PID $BG_PID $DUNST_PID $MONITOR_PID $WATCHER_PID 2>/dev/null || true' EXIT
python3 tests/app/background_checks.py "$XDG_DATA_HOME/dev.modelcache.app/demo" "$OUT/notify.log" "$BG_PID" \
  || { tail -50 "$OUT/background-app.log" >&2; fail "the app in the background"; }
kill $BG_PID; wait $BG_PID 2>/dev/null || true

# The UI inside the real window, driven over WebDriver.
rm -rf "$HF_HUB_CACHE"
export XDG_DATA_HOME="$OUT/webdriver-data"   # a fresh index: the only job is the UI's
python3 tests/app/webdriver_ui.py "$APP" "$OUT" || fail "the UI could not download through the app"

# A cache folder on a drive that is not there: the app waits for it. The hub emulator stands in
# for the Hub (a reachable endpoint: the app does not switch to its demo hub).
HUB_LOG="$OUT/drive-hub.log"
"$TARGET/debug/hub-emulator" serve --demo >"$OUT/drive-hub.url" 2>"$HUB_LOG" &
HUB_PID=$!
trap 'kill $APP_PID $DUNST_PID $MONITOR_PID $WATCHER_PID $HUB_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do [ -s "$OUT/drive-hub.url" ] && break; sleep 0.5; done
HUB_URL=$(head -1 "$OUT/drive-hub.url")
[ -n "$HUB_URL" ] || { cat "$HUB_LOG" >&2; fail "the hub emulator did not start"; }
python3 tests/app/webdriver_drive.py "$APP" "$OUT" "$HUB_URL" || fail "the app did not wait for its cache folder"
grep -q "Cache drive not connected" "$OUT/notify.log" || fail "no notification said the cache drive is missing"
kill $HUB_PID 2>/dev/null || true
echo "app tests passed"
