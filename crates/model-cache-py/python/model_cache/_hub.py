"""``hf_hub_download`` and ``snapshot_download`` with ``huggingface_hub`` 2.4's signatures.

Both download through Model Cache's engine into the same cache ``huggingface_hub`` uses and
return the same paths. Arguments that only ``huggingface_hub`` 0.36 had (``proxies``,
``resume_download``, ``force_filename``, ``local_dir_use_symlinks``) are accepted with a
``DeprecationWarning`` and have no effect: proxies come from the environment, downloads always
resume, and ``local_dir`` always receives copies.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ._native import Cache

_LEGACY_FILE_ARGUMENTS = frozenset(
    {"proxies", "resume_download", "force_filename", "local_dir_use_symlinks"}
)
_LEGACY_SNAPSHOT_ARGUMENTS = frozenset({"proxies", "resume_download", "local_dir_use_symlinks"})


def _check_legacy(function: str, allowed: frozenset, given: Dict[str, Any]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    for name in sorted(given):
        warnings.warn(
            f"`{name}` is an argument of huggingface_hub 0.x that {function}() ignores; drop it",
            DeprecationWarning,
            stacklevel=3,
        )


def _repo(repo_id: str, repo_type: Optional[str]) -> str:
    if repo_type in (None, "model"):
        return repo_id
    if repo_type == "dataset":
        return f"datasets/{repo_id}"
    raise ValueError(f"repo_type {repo_type!r} is not supported; use 'model' or 'dataset'")


def _cache(
    cache_dir: Union[str, Path, None],
    token: Union[bool, str, None],
    local_files_only: bool,
    endpoint: Optional[str],
) -> Cache:
    return Cache(
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        endpoint=endpoint,
        # `True` and `None` mean "the saved or environment token"; `False` sends none.
        token=token if isinstance(token, str) else None,
        offline=local_files_only,
    )


def _refuse_dry_run(function: str, dry_run: bool) -> None:
    if dry_run:
        raise NotImplementedError(f"{function}(dry_run=True) is not supported by model_cache")


def hf_hub_download(
    repo_id: str,
    filename: str,
    *,
    subfolder: Optional[str] = None,
    repo_type: Optional[str] = None,
    revision: Optional[str] = None,
    library_name: Optional[str] = None,
    library_version: Optional[str] = None,
    cache_dir: Union[str, Path, None] = None,
    local_dir: Union[str, Path, None] = None,
    user_agent: Union[Dict, str, None] = None,
    force_download: bool = False,
    etag_timeout: float = 10,
    token: Union[bool, str, None] = None,
    local_files_only: bool = False,
    headers: Optional[Dict[str, str]] = None,
    endpoint: Optional[str] = None,
    tqdm_class: Optional[Any] = None,
    dry_run: bool = False,
    **deprecated: Any,
) -> str:
    """Downloads one file of a repo into the cache (if needed) and returns its local path.

    The same arguments as ``huggingface_hub.hf_hub_download`` (2.4). ``local_dir`` receives a
    copy of the file and its path is returned. Downloads are always verified against the Hub's
    hash, so ``force_download`` fetches nothing again when the cached file is intact;
    ``library_name``, ``library_version``, ``user_agent``, ``headers``, ``etag_timeout`` and
    ``tqdm_class`` are accepted and not used. ``local_files_only=True`` (or
    ``HF_HUB_OFFLINE=1``) raises ``OfflineMiss`` when the file is not cached.
    """
    _check_legacy("hf_hub_download", _LEGACY_FILE_ARGUMENTS, deprecated)
    _refuse_dry_run("hf_hub_download", dry_run)
    if subfolder:
        filename = f"{subfolder.strip('/')}/{filename}"
    repo = _repo(repo_id, repo_type)
    revision = revision or "main"
    cache = _cache(cache_dir, token, local_files_only, endpoint)
    try:
        if cache.offline:
            path = cache.path(repo, filename, revision)
        else:
            snapshot = cache.pull(repo, files=[filename], revision=revision)
            path = Path(snapshot) / filename
    finally:
        cache.close()
    if local_dir is not None:
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return str(target)
    return str(path)


def snapshot_download(
    repo_id: str,
    *,
    repo_type: Optional[str] = None,
    revision: Optional[str] = None,
    cache_dir: Union[str, Path, None] = None,
    local_dir: Union[str, Path, None] = None,
    library_name: Optional[str] = None,
    library_version: Optional[str] = None,
    user_agent: Union[Dict, str, None] = None,
    etag_timeout: float = 10,
    force_download: bool = False,
    token: Union[bool, str, None] = None,
    local_files_only: bool = False,
    allow_patterns: Union[List[str], str, None] = None,
    ignore_patterns: Union[List[str], str, None] = None,
    max_workers: int = 8,
    tqdm_class: Optional[Any] = None,
    headers: Optional[Dict[str, str]] = None,
    endpoint: Optional[str] = None,
    dry_run: bool = False,
    **deprecated: Any,
) -> str:
    """Downloads a whole repo (or the files ``allow_patterns`` keeps and ``ignore_patterns``
    does not drop) into the cache and returns the snapshot folder's path.

    The same arguments as ``huggingface_hub.snapshot_download`` (2.4). Unlike
    ``Cache.pull``, which takes the recommended variant of a repo with several, this takes
    every file, as ``huggingface_hub`` does. ``local_dir`` receives copies of the files and
    its path is returned; ``max_workers`` is left to the engine's connection limits.
    """
    _check_legacy("snapshot_download", _LEGACY_SNAPSHOT_ARGUMENTS, deprecated)
    _refuse_dry_run("snapshot_download", dry_run)
    if isinstance(allow_patterns, str):
        allow_patterns = [allow_patterns]
    if isinstance(ignore_patterns, str):
        ignore_patterns = [ignore_patterns]
    repo = _repo(repo_id, repo_type)
    revision = revision or "main"
    cache = _cache(cache_dir, token, local_files_only, endpoint)
    try:
        snapshot = Path(
            cache.pull(
                repo,
                include=list(allow_patterns or ["*"]),
                exclude=list(ignore_patterns or []),
                revision=revision,
            )
        )
    finally:
        cache.close()
    if local_dir is not None:
        target = Path(local_dir)
        for source in snapshot.rglob("*"):
            if source.is_file():
                copy = target / source.relative_to(snapshot)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, copy)
        return str(target)
    return str(snapshot)
