#!/usr/bin/env bash
# Closing the window hides it and keeps the app (and its downloads) running; a second launch
# hands its arguments to the first instance, which shows its window again, and exits 0.
set -euo pipefail
/usr/bin/python3 - "$WID" <<'PY'
import sys
from Xlib import display, X, protocol
d = display.Display(); win = d.create_resource_object('window', int(sys.argv[1], 0))
ev = protocol.event.ClientMessage(window=win, client_type=d.intern_atom('WM_PROTOCOLS'),
        data=(32, [d.intern_atom('WM_DELETE_WINDOW'), X.CurrentTime, 0, 0, 0]))
win.send_event(ev, event_mask=X.NoEventMask); d.flush()
PY
for _ in $(seq 1 20); do xwininfo -id "$WID" | grep -q IsUnMapped && break; sleep 0.25; done
xwininfo -id "$WID" | grep -q IsUnMapped || { echo "the window is still shown after close"; exit 1; }
kill -0 "$APP_PID" || { echo "closing the window quit the app"; exit 1; }
echo "closed to the tray; still running"

timeout 30 "$APP" demo/tiny-safetensors >"$OUT/second.log" 2>&1 || { echo "second launch failed"; cat "$OUT/second.log"; exit 1; }
for _ in $(seq 1 20); do xwininfo -id "$WID" | grep -q IsViewable && break; sleep 0.25; done
xwininfo -id "$WID" | grep -q IsViewable || { echo "the second launch did not bring the window back"; exit 1; }
kill -0 "$APP_PID" || { echo "the first instance died"; exit 1; }
echo "second launch handed over to the first instance"
