#!/usr/bin/env bash
# Benchmark-only: converts the tiny test models with llama.cpp's own convert_hf_to_gguf.py and
# with the native converter, and compares the two files tensor by tensor (names, shapes, types,
# bytes) and key by key (architecture, tokenizer and hyperparameter metadata). It needs a Python
# with torch, transformers and numpy (not installed by scripts/setup.sh: torch is large), and
# llama.cpp's source (the one scripts/llama-cpp-check.sh unpacks, or LLAMA_CPP_DIR).
#
#   PYTHON=/path/to/python-with-torch scripts/compare-with-llama-cpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TARGET=${CARGO_TARGET_DIR:-target}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-$(ls -d "$TARGET"/llama.cpp/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | head -1 || true)}
if ! "$PYTHON" -c "import torch, transformers, numpy" 2>/dev/null; then
  echo "compare: skipped: $PYTHON has no torch/transformers (set PYTHON to one that has)" >&2
  exit 0
fi
if [ ! -f "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" ]; then
  echo "compare: llama.cpp's source not found; run scripts/llama-cpp-check.sh first or set LLAMA_CPP_DIR" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run -q -p model-cache --example convert_bench -- tiny "$out" --keep-sources > "$out/models.txt"
failed=0
while read -r ours; do
  name=$(basename "$ours" .gguf)          # tiny-llama-F16
  source="$out/sources/${name%-*}"        # tiny-llama
  type=$(echo "${name##*-}" | tr 'A-Z' 'a-z')
  started=$(date +%s.%N)
  PYTHONPATH="$LLAMA_CPP_DIR/gguf-py" "$PYTHON" "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" "$source" \
    --outfile "$out/$name.ref.gguf" --outtype "$type" > "$out/ref.log" 2>&1 || { tail "$out/ref.log"; failed=1; continue; }
  echo "compare: convert_hf_to_gguf.py took $(echo "$(date +%s.%N) - $started" | bc) s for $name" >&2
  PYTHONPATH="$LLAMA_CPP_DIR/gguf-py" "$PYTHON" - "$ours" "$out/$name.ref.gguf" <<'PY' || failed=1
import sys
import numpy as np
import gguf
ours, ref = (gguf.GGUFReader(p) for p in sys.argv[1:3])
def fields(r):
    skip = ("general.", "model_cache.")
    return {k: f.contents() for k, f in r.fields.items()
            if not k.startswith(skip) and not k.startswith("GGUF.")}
a, b = fields(ours), fields(ref)
problems = [f"{k}: ours {a.get(k)!r:.80} vs llama.cpp {b.get(k)!r:.80}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
ta = {t.name: t for t in ours.tensors}
tb = {t.name: t for t in ref.tensors}
for name in sorted(set(ta) | set(tb)):
    if name not in ta or name not in tb:
        problems.append(f"tensor {name} only in {'ours' if name in ta else 'llama.cpp'}")
        continue
    x, y = ta[name], tb[name]
    if list(x.shape) != list(y.shape) or x.tensor_type != y.tensor_type:
        problems.append(f"tensor {name}: {list(x.shape)} {x.tensor_type.name} vs {list(y.shape)} {y.tensor_type.name}")
    elif np.asarray(x.data).tobytes() != np.asarray(y.data).tobytes():
        problems.append(f"tensor {name}: bytes differ")
print(f"compare: {sys.argv[1]}: {len(ta)} tensors, {len(a)} keys, {len(problems)} differences")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
done < "$out/models.txt"
exit $failed
