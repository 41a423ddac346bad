#!/usr/bin/env bash
# Runs the real desktop app in a virtual X display with a private D-Bus session and checks what a
# person would see: the window maps, the UI is rendered (the screenshot is not blank), and the app
# keeps running with no tray host. Screenshots are kept under target/app-test/ as CI artifacts.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -p model-cache-app -p hub-emulator
OUT=target/app-test
rm -rf "$OUT" && mkdir -p "$OUT"
export MODEL_CACHE_APP_TEST_OUT="$PWD/$OUT"
exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- tests/app/inside-xvfb.sh
