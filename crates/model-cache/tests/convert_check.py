"""Checks a GGUF file written by Model Cache's converter against its source checkpoint.

Usage: convert_check.py OUTPUT.gguf SNAPSHOT_DIR EXPECT.json

Reads the GGUF file with llama.cpp's own gguf-py (the `gguf` package) and the safetensors
weights with numpy alone, and prints one JSON object: what was checked, or the first mismatch
(exit status 1). EXPECT holds the metadata values, the tensor count, the token count and the
attention head counts (for llama's Q/K row permutation).
"""

import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q


def fail(message, **extra):
    print(json.dumps({"ok": False, "error": message, **extra}))
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        if info["dtype"] == "F32":
            arr = raw.view(np.float32)
        elif info["dtype"] == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        elif info["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            fail(f"unexpected source dtype {info['dtype']}")
        tensors[name] = arr.reshape(info["shape"])
    return tensors


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py's LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(name):
    fixed = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    if name in fixed:
        return fixed[name]
    _, block, module, suffix = name.split(".")
    hf = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }[module]
    return f"model.layers.{block}.{hf}.{suffix}"


def field_value(reader, key):
    field = reader.get_field(key)
    if field is None:
        return None
    return field.contents()


def main():
    out_path, snapshot, expect_path = sys.argv[1:4]
    expect = json.load(open(expect_path))
    reader = gguf.GGUFReader(out_path)

    checked = {"metadata": 0, "tensors": 0, "values": 0}
    for key, want in expect["metadata"].items():
        got = field_value(reader, key)
        if isinstance(want, float):
            ok = got is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want))
        else:
            ok = got == want
        if not ok:
            fail(f"metadata {key}", want=want, got=got)
        checked["metadata"] += 1

    tokens = field_value(reader, "tokenizer.ggml.tokens")
    if len(tokens) != expect["tokens"]:
        fail("token count", want=expect["tokens"], got=len(tokens))
    types = field_value(reader, "tokenizer.ggml.token_type")
    if len(types) != len(tokens):
        fail("token types count", want=len(tokens), got=len(types))
    for token, kind in expect.get("token_types", {}).items():
        if types[tokens.index(token)] != kind:
            fail(f"type of token {token}", want=kind, got=types[tokens.index(token)])
    if "merges" in expect:
        merges = field_value(reader, "tokenizer.ggml.merges")
        if len(merges) != expect["merges"]:
            fail("merge count", want=expect["merges"], got=len(merges))

    source = {}
    for f in expect["weights"]:
        source.update(read_safetensors(f"{snapshot}/{f}"))
    arch = expect["metadata"]["general.architecture"]
    n_head = expect["heads"]
    n_head_kv = expect["kv_heads"]
    file_type = expect["metadata"]["general.file_type"]

    if len(reader.tensors) != expect["tensor_count"]:
        fail("tensor count", want=expect["tensor_count"], got=len(reader.tensors))
    for t in reader.tensors:
        name = t.name
        src = source[hf_name(name)].astype(np.float32)
        if arch == "llama":
            if name.endswith(("attn_q.weight", "attn_q.bias")):
                src = permute(src, n_head, n_head)
            elif name.endswith(("attn_k.weight", "attn_k.bias")):
                src = permute(src, n_head, n_head_kv)
        dims = [int(d) for d in t.shape]
        if dims != list(reversed(src.shape)):
            fail(f"shape of {name}", want=list(reversed(src.shape)), got=dims)
        one_d = src.ndim <= 1 or name.endswith("_norm.weight")
        want_type = Q.F32 if one_d else (Q.F16 if file_type == 1 else Q.Q8_0)
        if t.tensor_type != want_type:
            fail(f"type of {name}", want=want_type.name, got=t.tensor_type.name)
        got = np.asarray(t.data)
        if want_type == Q.F32:
            if not np.array_equal(got.reshape(src.shape), src):
                fail(f"values of {name}")
        elif want_type == Q.F16:
            want16 = src.astype(np.float16)
            if not np.array_equal(got.reshape(src.shape).view(np.uint16), want16.view(np.uint16)):
                bad = int(np.sum(got.reshape(src.shape).view(np.uint16) != want16.view(np.uint16)))
                fail(f"values of {name}", differing=bad)
        else:
            want_q = gguf.quants.quantize(src, Q.Q8_0)
            if got.tobytes() != np.asarray(want_q).tobytes():
                fail(f"Q8_0 bytes of {name} differ from gguf-py's quantization")
            back = gguf.quants.dequantize(got, Q.Q8_0).reshape(src.shape)
            blocks = np.abs(src).reshape(-1, 32).max(axis=1) / 127.0
            tolerance = np.repeat(blocks, 32).reshape(src.shape) * 0.5 + 1e-3 * np.abs(src) + 1e-7
            if np.any(np.abs(back - src) > tolerance):
                fail(f"Q8_0 values of {name} are not within half a step")
        checked["tensors"] += 1
        checked["values"] += int(src.size)

    print(json.dumps({"ok": True, "checked": checked, "tokens": len(tokens)}))


main()
