"""`model_cache.Cache` against the hub emulator: pull, progress, the cache views, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import model_cache
from model_cache import Cache

from conftest import TOKEN


def test_pull_downloads_a_variant_and_reports_progress_on_the_calling_thread(env, tmp_path):
    cache = Cache()
    events = []
    threads = set()

    def progress(event):
        events.append(event)
        threads.add(threading.get_ident())

    snapshot = cache.pull("demo/tiny-gguf", quant="Q4_K_M", progress=progress)
    assert isinstance(snapshot, Path)
    assert snapshot.parent.parent == Path(env["HF_HUB_CACHE"]) / "models--demo--tiny-gguf"
    names = sorted(p.name for p in snapshot.iterdir())
    assert any(name.endswith("Q4_K_M.gguf") for name in names), names
    assert not any(name.endswith("Q8_0.gguf") for name in names), names
    kinds = [event["event"] for event in events]
    assert kinds[-1] == "finished", kinds
    assert "verified" in kinds and "linked" in kinds, kinds
    assert threads == {threading.get_ident()}

    # A second pull finds everything cached.
    again = []
    assert cache.pull("demo/tiny-gguf", quant="Q4_K_M", progress=again.append) == snapshot
    assert [e for e in again if e["event"] == "skipped"], again
    assert not [e for e in again if e["event"] == "file_started"], again


def test_path_ls_stats_verify_and_rm(env):
    with Cache() as cache:
        snapshot = cache.pull("demo/tiny-safetensors", include=["config.json", "*.md"])
        path = cache.path("demo/tiny-safetensors", "config.json")
        assert path == snapshot / "config.json"
        assert path.read_text()

        repos = cache.ls()
        assert [repo["repo"] for repo in repos] == ["demo/tiny-safetensors"]
        assert repos[0]["revisions"][0]["snapshot_path"] == str(snapshot)

        stats = cache.stats()
        assert stats["counters"]["bytes_downloaded"] > 0, stats

        report = cache.verify("demo/tiny-safetensors")
        assert report["corrupt"] == [], report

        # `path` never downloads: a file not in the cache is an offline miss.
        with pytest.raises(model_cache.OfflineMiss) as error:
            cache.path("demo/tiny-safetensors", "model.safetensors")
        assert error.value.kind == "offline_miss"

        removed = cache.rm("demo/tiny-safetensors")
        assert removed["bytes_freed"] > 0, removed
        assert cache.ls() == []
        assert not path.exists()


def test_variants_lists_quantizations(env):
    report = Cache().variants("demo/tiny-gguf")
    quants = {variant["quant"] for variant in report["variants"]}
    assert {"Q4_K_M", "Q8_0"} <= quants, quants
    assert report["recommended"]


def test_errors_are_exceptions_by_kind(env, tmp_path):
    cache = Cache()
    with pytest.raises(model_cache.RepoNotFound) as error:
        cache.pull("demo/does-not-exist")
    assert isinstance(error.value, model_cache.ModelCacheError)
    assert error.value.kind == "repo_not_found"
    assert "demo/does-not-exist" in str(error.value)

    with pytest.raises(model_cache.GatedRepo) as error:
        cache.pull("demo/gated")
    assert error.value.kind == "gated"

    # With a token the emulator accepts, the gated repo downloads.
    Cache(token=TOKEN).pull("demo/gated", include=["*.json"])

    with pytest.raises(model_cache.OfflineMiss) as error:
        Cache(offline=True).pull("demo/tiny-gguf", quant="Q8_0")
    assert error.value.kind == "offline_miss"
    assert error.value.hints, "an offline miss says what to do"

    with pytest.raises(ValueError, match="org/name"):
        cache.pull("not a repo id!")
    with pytest.raises(ValueError, match="http"):
        Cache(endpoint="ftp://example")

    for name in ("RepoNotFound", "GatedRepo", "OfflineMiss", "DiskFull", "IntegrityError"):
        assert issubclass(getattr(model_cache, name), model_cache.ModelCacheError)
    assert issubclass(model_cache.ModelCacheError, Exception)


def test_bytes_that_do_not_match_the_hash_raise_integrity_error(env, corrupting_hub):
    cache = Cache(endpoint=corrupting_hub.url)
    with pytest.raises(model_cache.IntegrityError) as error:
        cache.pull("demo/tiny-safetensors", include=["config.json"])
    assert error.value.kind == "integrity"
    # Nothing that looks complete is left: the file is not in the snapshot.
    with pytest.raises(model_cache.ModelCacheError):
        cache.path("demo/tiny-safetensors", "config.json")


def test_a_callback_error_stops_the_pull_and_propagates(env):
    def progress(event):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        Cache().pull("demo/tiny-gguf", quant="Q8_0", progress=progress)
