#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test: formatting and lints, the Rust unit and
# integration tests of all crates (against the hub emulator, with the real `huggingface_hub`
# Python client for interoperability), the browser end-to-end tests and the real app window under
# Xvfb. This is the command CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# What ships is built without the dev-dependencies (and the engine's `test-support` feature).
cargo clippy --workspace --lib --bins --locked -- -D warnings

step "cargo test (all crates)"
cargo test --workspace --locked

step "desktop app under Xvfb"
tests/app/run-app-tests.sh

if [ -f tests/e2e/package.json ] && [ -d tests/e2e/specs ]; then
  step "browser end-to-end tests"
  tests/e2e/run.sh
fi

step "all tests passed"
