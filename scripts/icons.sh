#!/usr/bin/env bash
# Renders every app icon from the one source, icons/icon.svg, with the pinned Tauri CLI:
# the hicolor PNGs the Linux packages install (16 to 512 px), icon.png (the window and tray
# icon), icon.ico (Windows) and icon.icns (macOS). The results are committed; run this after
# changing the source.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tauri ] || npm ci --no-audit --no-fund --loglevel=error

SIZES=16,24,32,48,64,128,256,512
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

render() { node_modules/.bin/tauri icon icons/icon.svg "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; }
render --output "$work/png" --png "$SIZES"
# The default set holds the .ico and .icns (and mobile icons, which this app does not ship).
render --output "$work/all"

for size in ${SIZES//,/ }; do
  cp "$work/png/${size}x${size}.png" "icons/${size}x${size}.png"
done
cp "$work/png/128x128.png" icons/icon.png
cp "$work/all/icon.ico" "$work/all/icon.icns" icons/
echo "icons: rendered $SIZES px, icon.png, icon.ico and icon.icns from icons/icon.svg" >&2
