"""Fixtures of the `model_cache` tests: hub emulators on 127.0.0.1 (the workspace's
`hub-emulator` binary), and a fresh cache, data folder and environment per test.

`MODEL_CACHE_BIN_DIR` names the folder of the built `hub-emulator` and `mcache` binaries
(`target/debug` by default); `tests/run.sh` builds them, and the wheel, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("MODEL_CACHE_BIN_DIR", REPO_ROOT / "target" / "debug"))

#: The size of the emulator's `demo/big` model: big enough that a slowed pull can be stopped
#: midway, small enough to generate at once.
BIG_SIZE = "24MiB"

#: A token the emulators accept for every repo.
TOKEN = "hf_model_cache_tests"

#: Variables the engine reads, cleared so the machine's own settings never leak in.
HUB_VARIABLES = [
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "MODEL_CACHE_DATA_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
]


class Emulator:
    """A `hub-emulator serve` process; `url` is its hub's base URL."""

    def __init__(self, hash_cache: Path, faults: List[str]) -> None:
        binary = BIN_DIR / "hub-emulator"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing; build it with `cargo build -p hub-emulator`")
        args = [
            str(binary),
            "serve",
            "--demo",
            "--big-repo-size",
            BIG_SIZE,
            "--hash-cache",
            str(hash_cache),
            "--token",
            TOKEN,
        ]
        for fault in faults:
            args += ["--fault", fault]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the emulator printed {self.url!r} instead of its URL")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def hash_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hash-cache")


@pytest.fixture(scope="session")
def hub(hash_cache: Path) -> Iterator[Emulator]:
    emulator = Emulator(hash_cache, [])
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def slow_hub(hash_cache: Path) -> Iterator[Emulator]:
    """A hub whose bodies come at 2 MB/s in all: a pull of `demo/big` takes seconds."""
    emulator = Emulator(hash_cache, ["total-bandwidth=2MB"])
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def corrupting_hub(hash_cache: Path) -> Iterator[Emulator]:
    """A hub that damages bytes 100-200 of every file it sends."""
    emulator = Emulator(hash_cache, ["corrupt=100-200"])
    yield emulator
    emulator.stop()


@pytest.fixture
def env(tmp_path: Path, hub: Emulator, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """A fresh hub cache and data folder, set in this process's environment (and returned,
    for child processes)."""
    for name in HUB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    values = {
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_ENDPOINT": hub.url,
        "MODEL_CACHE_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def python_child(code: str, env: Dict[str, str], **kwargs) -> subprocess.Popen:
    """A Python process of this interpreter running `code`."""
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)
