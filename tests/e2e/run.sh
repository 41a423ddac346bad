#!/usr/bin/env bash
# Browser end-to-end tests: builds `mcache`, then runs the specs (node's test runner driving
# Debian's headless Chromium through playwright-core). Each spec file starts its own
# `mcache serve --demo` (the built-in hub emulator, temp cache and data folders).
# Screenshots land in target/e2e/. Set E2E_SERVE_CMD to test another server command.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "e2e: /usr/bin/chromium is missing; run scripts/setup.sh --with-test-tools" >&2
  exit 1
fi
if [ -z "${E2E_SERVE_CMD:-}" ]; then
  (cd "$root" && cargo build -p mcache --quiet)
  export MCACHE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/mcache"
fi
mkdir -p "$root/target/e2e"
export E2E_ARTIFACTS="$root/target/e2e"
exec node --test --test-concurrency=1 --test-reporter=spec specs/*.spec.mjs
