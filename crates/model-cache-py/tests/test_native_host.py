"""The Python native-messaging host (`model_cache.native_host`) and `mcache native-host` give
the same answers to the same frames, with and without a running `mcache serve`."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN_DIR, REPO_ROOT

ORIGIN = "chrome-extension://abcdefghijklmnopabcdefghijklmnop/"


def frame(value) -> bytes:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return struct.pack("=I", len(body)) + body


def read_answers(output: bytes):
    answers = []
    while output:
        assert len(output) >= 4, output
        (length,) = struct.unpack("=I", output[:4])
        assert length <= 1024 * 1024
        body = output[4 : 4 + length]
        assert len(body) == length, "a whole answer"
        answers.append(json.loads(body))
        output = output[4 + length :]
    return answers


def rust_host(env, data_dir, frames: bytes):
    result = subprocess.run(
        [str(BIN_DIR / "mcache"), "--data-dir", str(data_dir), "native-host", ORIGIN],
        input=frames,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return read_answers(result.stdout)


def python_host(env, data_dir, frames: bytes):
    script = REPO_ROOT / "python" / "native_host.py"
    result = subprocess.run(
        [sys.executable, str(script), "--data-dir", str(data_dir), ORIGIN],
        input=frames,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return read_answers(result.stdout)


#: Fields that change between two reads of the same state: free memory, times of last use.
VOLATILE = {"available_ram", "available_bytes", "last_used"}


def stable(value):
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def by_id(answers):
    """Answers to requests run concurrently come in any order; those without an id (framing
    failures) keep theirs."""
    answers = stable(answers)
    with_id = sorted((a for a in answers if "id" in a), key=lambda a: json.dumps(a["id"]))
    return with_id, sorted((a for a in answers if "id" not in a), key=lambda a: a["error"])


REQUESTS = (
    frame({"id": 1, "type": "list"})
    + frame({"id": 2, "type": "variants", "repo": "demo/tiny-gguf"})
    + frame({"id": 3, "type": "path", "repo": "demo/tiny-gguf", "file": "config.json"})
    + frame({"id": 4, "type": "mirror_url", "repo": "demo/tiny-gguf", "file": "config.json"})
    + frame({"id": 5, "type": "path", "repo": "demo/tiny-gguf", "file": "missing.bin"})
    + frame({"id": 6, "type": "format_disk"})
    + frame({"id": 7, "type": "path", "repo": "demo/tiny-gguf", "file": "../../etc/passwd"})
    + frame(b"{not json")
    + frame(b" " * (1024 * 1024 + 1))
)


def test_both_hosts_answer_alike_without_an_app(env, tmp_path):
    data_dir = tmp_path / "data"
    frames = REQUESTS + frame({"id": 8, "type": "list"})[:7]
    rust = rust_host(env, data_dir, frames)
    python = python_host(env, data_dir, frames)
    assert by_id(rust) == by_id(python)
    kinds = {a.get("id"): a["error"] for a in rust}
    assert kinds[1] == "app_not_running"
    assert kinds[6] == "invalid_request"
    assert kinds[7] == "invalid_request"
    assert sorted(a["error"] for a in rust if "id" not in a) == [
        "invalid_json",
        "message_too_large",
        "truncated_message",
    ]


def test_both_hosts_answer_alike_with_a_running_app(env, tmp_path):
    data_dir = Path(env["MODEL_CACHE_DATA_DIR"])
    pull = subprocess.run(
        [str(BIN_DIR / "mcache"), "pull", "demo/tiny-gguf", "--include", "config.json", "--include", "*Q4_K_M.gguf"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert pull.returncode == 0, pull.stderr
    server = subprocess.Popen(
        [str(BIN_DIR / "mcache"), "serve", "--mirror-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout.readline().startswith("http://127.0.0.1:")
        rust = rust_host(env, data_dir, REQUESTS)
        python = python_host(env, data_dir, REQUESTS)
        assert by_id(rust) == by_id(python)
        answers = {a.get("id"): a for a in rust}
        assert answers[1]["models"][0]["repo"] == "demo/tiny-gguf"
        assert Path(answers[3]["path"]).read_text()
        assert answers[4]["url"].endswith("/demo/tiny-gguf/resolve/main/config.json")
        assert answers[5]["error"] == "not_cached"

        # A pull queued through the Python host, streamed to its end.
        queued = python_host(env, data_dir, frame({"id": 9, "type": "pull", "repo": "demo/tiny-safetensors"}))
        job_id = queued[0]["job_id"]
        streamed = python_host(env, data_dir, frame({"id": 10, "type": "progress", "job_id": job_id}))
        assert streamed[-1]["type"] == "progress_end", streamed
        assert streamed[-1]["job"]["state"] == "done", streamed[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)
