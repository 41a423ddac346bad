"""The browser native-messaging host, in Python, on the ``model_cache`` bindings.

A browser starts the host named by its host manifest and exchanges messages with it on
standard input and output: a 4-byte length in native byte order, then that many bytes of UTF-8
JSON. This module reads and writes the frames; the answers come from the same Rust code as
``mcache native-host`` (``NativeHost.handle``), which forwards each request to the running
Model Cache app's local API, so both hosts answer the same requests alike. Requests are handled
in threads of their own: a ``progress`` stream does not hold up a ``pause``.

Run it as ``python -m model_cache.native_host [--data-dir DIR]`` (or ``python/native_host.py``).
"""

from __future__ import annotations

import argparse
import struct
import sys
import threading
from typing import BinaryIO, List, Optional

from ._native import MAX_FROM_BROWSER, MAX_TO_BROWSER, NativeHost

_HEADER = struct.Struct("=I")


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    """Reads ``count`` bytes, fewer only when the stream ends."""
    chunks = []
    remaining = count
    while remaining:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Writer:
    """Writes whole frames, one at a time, from any thread."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, body: bytes) -> None:
        if len(body) > MAX_TO_BROWSER:
            raise ValueError(f"an answer of {len(body)} bytes is over the browser's limit")
        with self._lock:
            try:
                self._stream.write(_HEADER.pack(len(body)) + body)
                self._stream.flush()
            except BrokenPipeError:
                # The browser closed the port; nothing is left to answer.
                pass


def serve(stdin: BinaryIO, stdout: BinaryIO, data_dir: Optional[str] = None) -> None:
    """Serves one browser port until its input ends and every answer is written."""
    host = NativeHost(data_dir)
    write = _Writer(stdout)
    workers: List[threading.Thread] = []
    while True:
        header = _read_exactly(stdin, _HEADER.size)
        if not header:
            break
        if len(header) < _HEADER.size:
            write(NativeHost.truncated(_HEADER.size, len(header)))
            break
        (length,) = _HEADER.unpack(header)
        if length > MAX_FROM_BROWSER:
            remaining = length
            while remaining:
                chunk = stdin.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
            write(NativeHost.too_large(length))
            continue
        body = _read_exactly(stdin, length)
        if len(body) < length:
            write(NativeHost.truncated(length, len(body)))
            break
        worker = threading.Thread(target=host.handle, args=(body, write), daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="native_host.py",
        description="Model Cache's browser native-messaging host (started by the browser)",
    )
    parser.add_argument("--data-dir", help="Model Cache's app-data folder")
    # What the browser adds: the calling extension's origin (Chrome) or manifest and id
    # (Firefox).
    parser.add_argument("browser_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    serve(sys.stdin.buffer, sys.stdout.buffer, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
