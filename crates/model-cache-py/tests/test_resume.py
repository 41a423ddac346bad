"""A pull stopped midway (Ctrl-C, or the process killed) is resumed by the next pull: the
bytes recorded before the stop are not fetched again."""

from __future__ import annotations

import signal
import threading
import subprocess

import pytest

from model_cache import Cache

from conftest import BIN_DIR, python_child

#: A child that pulls `demo/big` and prints the bytes on disk as they grow.
PULL = """
import sys
from model_cache import Cache

def progress(event):
    if event["event"] == "chunk_done" and event["path"].endswith(".gguf"):
        print("chunk", event["chunks_done"], flush=True)

try:
    Cache(endpoint=sys.argv[1] if len(sys.argv) > 1 else None).pull("demo/big", progress=progress)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


def start_pull(env, hub_url):
    # One connection at a time: chunks finish one after another, not all at the end.
    subprocess.run([str(BIN_DIR / "mcache"), "config", "set", "connections", "1"], env=env, check=True)
    env = dict(env, HF_ENDPOINT=hub_url)
    return python_child(PULL, env, stdout=subprocess.PIPE, text=True)


def wait_for_chunks(child, count):
    seen = 0
    for line in child.stdout:
        if line.startswith("chunk"):
            seen += 1
            if seen >= count:
                return
        if line.strip() == "finished":
            break
    pytest.fail("the pull ended before it could be stopped midway")


def resumed_bytes_of_next_pull(hub_url):
    events = []
    Cache(endpoint=hub_url).pull("demo/big", progress=events.append)
    started = [e for e in events if e["event"] == "file_started" and e["path"].endswith(".gguf")]
    assert started, events
    finished = [e for e in events if e["event"] == "finished"]
    assert finished, events
    return started[0]["resumed_bytes"], started[0]["size"], finished[0]


@pytest.mark.parametrize("stop", ["ctrl_c", "kill"])
def test_a_stopped_pull_resumes(env, slow_hub, stop):
    child = start_pull(env, slow_hub.url)
    try:
        wait_for_chunks(child, 2)
        if stop == "ctrl_c":
            child.send_signal(signal.SIGINT)
            rest, _ = child.communicate(timeout=30)
            assert "interrupted" in rest
            assert child.returncode == 42, "KeyboardInterrupt reached the caller"
        else:
            child.kill()
            child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    resumed, size, finished = resumed_bytes_of_next_pull(slow_hub.url)
    assert resumed > 0, "the recorded chunks were kept"
    assert resumed < size
    # Only what was missing came over the network again.
    assert finished["bytes_downloaded"] <= size - resumed + 8 * 1024 * 1024, finished


def test_a_pull_releases_the_gil(env, slow_hub):
    """Other Python threads run while a pull waits on the network: the pull holds the GIL only
    to call back."""
    started = threading.Event()
    done = []

    def progress(event):
        if event["event"] == "bytes":
            started.set()

    worker = threading.Thread(
        target=lambda: done.append(
            Cache(endpoint=slow_hub.url).pull("demo/big", progress=progress)
        )
    )
    worker.start()
    try:
        assert started.wait(60), "the pull started"
        # This thread runs Python while the pull (seconds long at the hub's 2 MB/s) goes on.
        ran = 0
        while not done and ran < 200_000:
            ran += 1
        assert ran == 200_000 and not done
    finally:
        worker.join()
    assert done and done[0].is_dir()
