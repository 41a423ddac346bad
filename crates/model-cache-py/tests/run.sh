#!/usr/bin/env bash
# Builds the `model_cache` wheel once (dev profile, in the workspace's target folder), installs
# it into the test virtual environment (the one with huggingface_hub 2.4, see
# scripts/setup.sh --with-test-tools) and runs the pytest suite against the hub emulator.
# Extra arguments go to pytest (`-k resume`, `-x`).
set -euo pipefail
cd "$(dirname "$0")/../../.."

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
venv="$target/py-venv"
python="$venv/bin/python"
if ! "$python" -c 'import huggingface_hub, maturin, pytest' 2>/dev/null; then
  echo "run.sh: $venv lacks huggingface_hub, maturin or pytest; run scripts/setup.sh --with-test-tools" >&2
  exit 1
fi

# The binaries the tests start: the hub emulator and `mcache` (for the native host).
cargo build --locked -p hub-emulator -p mcache

wheels="$target/wheels/model-cache-py"
rm -rf "$wheels"
start=$(date +%s)
"$venv/bin/maturin" build --locked --profile dev --compatibility linux \
  -m crates/model-cache-py/Cargo.toml --interpreter "$python" --out "$wheels"
echo "run.sh: wheel built in $(( $(date +%s) - start )) s" >&2
"$python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/*.whl

cd crates/model-cache-py/tests
MODEL_CACHE_BIN_DIR="$target/debug" "$python" -m pytest -q -p no:cacheprovider "$@"
