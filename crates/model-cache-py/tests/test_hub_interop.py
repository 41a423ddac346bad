"""The drop-in helpers and `huggingface_hub` reading what `model_cache` downloaded."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import model_cache


def test_helpers_have_huggingface_hub_2_4_signatures():
    huggingface_hub = pytest.importorskip("huggingface_hub")
    assert huggingface_hub.__version__.startswith("2.4"), huggingface_hub.__version__
    for name in ("hf_hub_download", "snapshot_download"):
        ours = inspect.signature(getattr(model_cache, name)).parameters
        theirs = inspect.signature(getattr(huggingface_hub, name)).parameters
        ours = [(p.name, p.kind, p.default) for p in ours.values() if p.kind != p.VAR_KEYWORD]
        theirs = [(p.name, p.kind, p.default) for p in theirs.values()]
        assert ours == theirs, name


def test_arguments_only_0_36_had_warn_and_unknown_ones_fail(env):
    with pytest.warns(DeprecationWarning) as caught:
        path = model_cache.hf_hub_download(
            "demo/tiny-gguf", "config.json", resume_download=True, local_dir_use_symlinks="auto"
        )
    assert Path(path).is_file()
    messages = " ".join(str(w.message) for w in caught)
    assert "resume_download" in messages and "local_dir_use_symlinks" in messages
    with pytest.warns(DeprecationWarning, match="proxies"):
        model_cache.snapshot_download("demo/tiny-gguf", allow_patterns="*.json", proxies={})
    with pytest.raises(TypeError, match="no_such_argument"):
        model_cache.hf_hub_download("demo/tiny-gguf", "config.json", no_such_argument=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_cache.hf_hub_download("demo/tiny-gguf", "config.json")


def test_files_pulled_here_are_found_by_huggingface_hub_offline(env, tmp_path):
    pytest.importorskip("huggingface_hub")
    snapshot = model_cache.snapshot_download("demo/tiny-safetensors")
    config = model_cache.hf_hub_download("demo/tiny-gguf", "config.json")
    local = model_cache.hf_hub_download(
        "demo/tiny-gguf", "README.md", local_dir=tmp_path / "local"
    )
    assert Path(local) == tmp_path / "local" / "README.md"
    assert Path(local).read_text().startswith("---")

    # A separate interpreter with the network off: huggingface_hub reads the same cache.
    code = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
print(json.dumps({
    "snapshot": snapshot_download("demo/tiny-safetensors"),
    "config": hf_hub_download("demo/tiny-gguf", "config.json"),
}))
"""
    offline = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-c", code], env=offline, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {"snapshot": snapshot, "config": config}
    names = sorted(p.name for p in Path(snapshot).iterdir())
    assert "model.safetensors" in names or any(n.endswith(".safetensors") for n in names), names

    # And model_cache offline finds them as well, without the network.
    assert model_cache.hf_hub_download("demo/tiny-gguf", "config.json", local_files_only=True) == config
    with pytest.raises(model_cache.OfflineMiss):
        model_cache.hf_hub_download("demo/tiny-gguf", "missing.bin", local_files_only=True)
