#!/usr/bin/env bash
# The part of the install test that runs inside Xvfb and the private D-Bus session: the
# installed app is started through its desktop entry, shows its window, and opens the repo of a
# `modelcache://` link given to xdg-open (as a browser does) in that same window; a bad link is
# refused with a message and the app lives on; with the app closed, a link starts it with the
# repo open.
set -euo pipefail
OUT="$MODEL_CACHE_INSTALL_TEST_OUT"
fail() { echo "install test FAILED: $*" >&2; tail -30 "$OUT/app.log" >&2 || true; exit 1; }

# No Hub on this machine: an endpoint that refuses connections makes the app fall back to its
# built-in demo hub, as it does on any machine without a network. xdg-open must never fall back
# to a web browser.
export HF_ENDPOINT=http://127.0.0.1:9 BROWSER=false

# A double-click: the desktop environment starts the entry's Exec line.
gtk-launch "Model Cache" >"$OUT/app.log" 2>&1 || fail "gtk-launch could not start the desktop entry"
WID=""
for _ in $(seq 1 80); do
  WID=$(xdotool search --name '^Model Cache$' 2>/dev/null | head -1 || true)
  [ -n "$WID" ] && xwininfo -id "$WID" | grep -q IsViewable && break
  sleep 0.5
done
[ -n "$WID" ] || fail "no window titled 'Model Cache' appeared"
PID=$(xdotool getwindowpid "$WID")
# Quit the app at the end, and wait for it: nothing of it may outlive the X display.
stop_app() {
  kill "$PID" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$PID" 2>/dev/null || return 0; sleep 0.25; done
}
trap stop_app EXIT
[ "$(readlink "/proc/$PID/exe")" = /usr/bin/model-cache-app ] ||
  fail "the window belongs to $(readlink "/proc/$PID/exe"), not the installed app"

painted() {
  local colors=0
  for _ in $(seq 1 40); do
    import -window "$WID" "$1"
    colors=$(convert "$1" -format "%k" info:)
    [ "$colors" -gt 16 ] && break
    sleep 0.5
  done
  echo "screenshot: $1 ($colors distinct colours)"
  [ "$colors" -gt 16 ]
}
painted "$OUT/window.png" || fail "the window looks blank"
for _ in $(seq 1 40); do grep -q 'Model Cache started' "$OUT/app.log" && break; sleep 0.25; done
grep -q 'demo.*true\|using the built-in demo hub' "$OUT/app.log" || fail "the app is not on its demo hub"

# A link, as a web page's "open in Model Cache" button hands it to the system.
xdg-open 'modelcache://open_from_hf?model=demo/tiny-gguf' >"$OUT/xdg-open.log" 2>&1 ||
  { cat "$OUT/xdg-open.log" >&2; fail "xdg-open modelcache://… failed"; }
SHOWN=""
for _ in $(seq 1 120); do
  SHOWN=$(xdotool search --name 'demo/tiny-gguf' 2>/dev/null | head -1 || true)
  [ -n "$SHOWN" ] && break
  sleep 0.25
done
[ -n "$SHOWN" ] || fail "the window never showed demo/tiny-gguf (title: $(xdotool getwindowname "$WID"))"
[ "$SHOWN" = "$WID" ] || fail "demo/tiny-gguf opened in another window ($SHOWN), not the running one ($WID)"
kill -0 "$PID" || fail "the first instance is gone"
[ "$(xdotool search --class '^model-cache-app$' 2>/dev/null | xargs -r -n1 xdotool getwindowpid 2>/dev/null | sort -u | wc -l)" = 1 ] ||
  fail "a second instance of the app kept running"
echo "the link opened demo/tiny-gguf in the running window: $(xdotool getwindowname "$WID")"
sleep 1.5 # WebKit shows the previous paint right after a change.
painted "$OUT/window-link.png" || fail "the window looks blank after the link"

# A link that names no valid repo is refused, said so, and the app carries on.
xdg-open 'modelcache://open_from_hf?model=../../etc/passwd' >>"$OUT/xdg-open.log" 2>&1 || true
for _ in $(seq 1 40); do grep -q 'refused a link' "$OUT/app.log" && break; sleep 0.25; done
grep -q 'refused a link.*not a repository id' "$OUT/app.log" || fail "the bad link was not refused"
kill -0 "$PID" || fail "a bad link stopped the app"
echo "a bad link was refused; the app is still running"

# With the app not running, a link starts it with that repo open.
stop_app
kill -0 "$PID" 2>/dev/null && fail "the app did not quit"
# (xdg-open waits for the program it starts: this one runs until the test ends.)
xdg-open 'modelcache://open_from_hf?model=demo/tiny-safetensors' >>"$OUT/app.log" 2>&1 &
WID=""
for _ in $(seq 1 120); do
  WID=$(xdotool search --name 'demo/tiny-safetensors' 2>/dev/null | head -1 || true)
  [ -n "$WID" ] && break
  sleep 0.25
done
[ -n "$WID" ] || fail "a link did not start the app with demo/tiny-safetensors open"
PID=$(xdotool getwindowpid "$WID")
[ "$(readlink "/proc/$PID/exe")" = /usr/bin/model-cache-app ] || fail "the link started $(readlink "/proc/$PID/exe")"
echo "with the app closed, a link started it showing: $(xdotool getwindowname "$WID")"
sleep 1.5
painted "$OUT/window-started-by-link.png" || fail "the window started by a link looks blank"
stop_app
wait # xdg-open, which returns when the app it started quits
