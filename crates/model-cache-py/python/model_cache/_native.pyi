"""Type stubs of the Rust extension module ``model_cache._native``."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

__version__: str
MAX_FROM_BROWSER: int
MAX_TO_BROWSER: int

class ModelCacheError(Exception):
    """An error of the Model Cache engine."""

    kind: Optional[str]
    """The stable snake_case name of the failure (``network``, ``not_cached``, ...)."""
    hints: List[Dict[str, Any]]
    """Actions that may help, each a dict with an ``action`` key (``log_in``, ``go_online``)."""

class RepoNotFound(ModelCacheError):
    """The repository does not exist, or it is private and no token with access was given."""

class GatedRepo(ModelCacheError):
    """The repository is gated: accept its conditions on the Hub and use a token with access."""

class OfflineMiss(ModelCacheError):
    """Offline mode is on and the cache does not hold what was asked."""

class DiskFull(ModelCacheError):
    """The disk holding the cache is full."""

class IntegrityError(ModelCacheError):
    """Downloaded bytes did not match the hash the Hub publishes for the file."""

ProgressEvent = Dict[str, Any]

class Cache:
    """A Hugging Face cache managed by Model Cache.

    Arguments left out are read from the environment as ``huggingface_hub`` reads it
    (``HF_HUB_CACHE``, ``HF_HOME``, ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``), then from
    Model Cache's saved settings. ``data_dir`` is Model Cache's own folder (index, settings).
    """

    def __init__(
        self,
        cache_dir: Union[str, PathLike[str], None] = None,
        endpoint: Optional[str] = None,
        token: Optional[str] = None,
        offline: bool = False,
        data_dir: Union[str, PathLike[str], None] = None,
    ) -> None: ...
    @property
    def cache_dir(self) -> Path: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def offline(self) -> bool: ...
    def variants(self, repo: str, revision: str = "main") -> Dict[str, Any]:
        """The repo's variants with sizes, fit and the recommended one."""
    def pull(
        self,
        repo: str,
        quant: Optional[str] = None,
        include: Optional[List[str]] = None,
        revision: str = "main",
        progress: Optional[Callable[[ProgressEvent], object]] = None,
        exclude: Optional[List[str]] = None,
        files: Optional[List[str]] = None,
    ) -> Path:
        """Downloads into the cache and returns the snapshot folder.

        ``progress`` is called on the calling thread with each event (a dict tagged by
        ``event``: ``file_started``, ``bytes``, ``chunk_done``, ``verified``, ``linked``,
        ``skipped``, ``finished``, ...). Ctrl-C pauses the transfer and raises
        ``KeyboardInterrupt``; the next pull of the same files resumes it.
        """
    def path(self, repo: str, file: str, revision: str = "main") -> Path:
        """The path of a cached file."""
    def ls(self) -> List[Dict[str, Any]]:
        """The cached repos with their revisions, sizes and snapshot folders."""
    def rm(
        self,
        repo: str,
        revision: Optional[str] = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> Dict[str, Any]:
        """Removes a repo or one revision; returns ``{"paths": [...], "bytes_freed": N}``."""
    def verify(self, repo: Optional[str] = None) -> Dict[str, Any]:
        """Hashes cached files again and reports those that no longer match."""
    def stats(self) -> Dict[str, Any]:
        """Counters, the cache's health and the last finished downloads."""
    def close(self) -> None:
        """Stops background work."""
    def __enter__(self) -> "Cache": ...
    def __exit__(self, kind: object, value: object, traceback: object) -> None: ...

class NativeHost:
    """The request handling of the browser native-messaging host."""

    def __init__(self, data_dir: Union[str, PathLike[str], None] = None) -> None: ...
    def handle(self, message: bytes, emit: Callable[[bytes], object]) -> None:
        """Answers one message; ``emit`` receives each answer's JSON bytes, in order."""
    @staticmethod
    def too_large(length: int) -> bytes:
        """The failure answer to a message over the host's size limit."""
    @staticmethod
    def truncated(expected: int, received: int) -> bytes:
        """The failure answer to a message cut short."""
