#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the Model Cache desktop app.
# Arguments are passed to the app: `--demo` uses the built-in demo hub (the hub emulator on
# 127.0.0.1). Without `--demo`, the app uses https://huggingface.co (or HF_ENDPOINT) and falls
# back to the demo hub by itself when the Hub cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build -p model-cache-app
exec target/debug/model-cache-app "$@"
