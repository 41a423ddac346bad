#!/usr/bin/env bash
# Loads GGUF files written by the native converter in llama.cpp itself and generates a few tokens
# with each: Llama (byte-level BPE tokenizer) in F16 and Q8_0, Mistral (SentencePiece-style
# tokenizer) in F16, Qwen2 (attention biases, tied embeddings) in Q8_0.
#
# llama.cpp's `llama-simple` is built with cmake from the llama.cpp source inside the
# `llama-cpp-python` source distribution (PyPI), once, and kept under
# `${CARGO_TARGET_DIR:-target}/llama.cpp/`: about 7 minutes on 2 cores (measured while another
# build shared them), then nothing on later runs. `scripts/test.sh` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
TARGET=${CARGO_TARGET_DIR:-target}
LLAMA="$TARGET/llama.cpp"
SIMPLE="$LLAMA/build/bin/llama-simple"

if [ ! -x "$SIMPLE" ]; then
  mkdir -p "$LLAMA"
  started=$(date +%s)
  if [ ! -x "$LLAMA/venv/bin/cmake" ]; then
    python3 -m venv "$LLAMA/venv"
    "$LLAMA/venv/bin/pip" install -q --disable-pip-version-check cmake scikit-build-core
  fi
  if [ ! -d "$LLAMA/llama_cpp_python-$VERSION" ]; then
    PATH="$LLAMA/venv/bin:$PATH" "$LLAMA/venv/bin/pip" download -q --disable-pip-version-check \
      --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$VERSION" -d "$LLAMA"
    tar xzf "$LLAMA/llama_cpp_python-$VERSION.tar.gz" -C "$LLAMA"
  fi
  PATH="$LLAMA/venv/bin:$PATH" cmake -S "$LLAMA/llama_cpp_python-$VERSION/vendor/llama.cpp" \
    -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_EXAMPLES=ON >/dev/null
  PATH="$LLAMA/venv/bin:$PATH" cmake --build "$LLAMA/build" --target llama-simple -j"$(nproc)" >/dev/null
  echo "llama-check: built llama-simple in $(( $(date +%s) - started )) s" >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run -q -p model-cache --example convert_bench -- tiny "$out/models" > "$out/models.txt"
failed=0
while read -r model; do
  if "$SIMPLE" -m "$model" -n 8 "the quick brown fox" > "$out/stdout" 2> "$out/stderr" \
    && grep -Eq "decoded [1-9][0-9]* tokens" "$out/stderr"; then
    echo "llama-check: ok   $(basename "$model"): $(grep -Eo 'decoded [0-9]+ tokens' "$out/stderr")" >&2
  else
    echo "llama-check: FAIL $(basename "$model")" >&2
    tail -20 "$out/stderr" >&2
    failed=1
  fi
done < "$out/models.txt"
exit $failed
