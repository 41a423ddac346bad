#!/usr/bin/env bash
# The tray icon registered with the session's StatusNotifierWatcher (a tray host's service); its
# menu, read and clicked over com.canonical.dbusmenu as a desktop's tray host does, drives the
# app: pause all, quit (asks while a download is not finished), resume all, show window, and a
# status line pushed by the engine's events.
set -euo pipefail
/usr/bin/python3 tests/app/tray_checks.py "$OUT/sni-items" "$XDG_DATA_HOME/dev.modelcache.app/demo" "$APP_PID" "$WID"
