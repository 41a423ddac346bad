"""Fidelity checks of the hub emulator with the real `huggingface_hub` client.

Run by tests/python_fidelity.rs with HF_ENDPOINT pointing at the emulator and an empty
HF_HOME/HF_HUB_CACHE. argv[1] is a JSON file with what the emulator says it serves:
{"commits": {repo: sha}, "etags": {repo: {path: etag}}, "lfs": {repo: [paths]}}.
Prints one line per check; any failure raises and exits non-zero.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download, scan_cache_dir, snapshot_download
from huggingface_hub import errors

expected = json.loads(Path(sys.argv[1]).read_text())
cache = Path(os.environ["HF_HUB_CACHE"])
print("huggingface_hub", huggingface_hub.__version__)


def ok(what):
    print("OK", what, flush=True)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def content_id(path: Path, lfs: bool) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest() if lfs else git_sha1(data)


def check_snapshot(repo: str, snapshot: Path, files):
    commit = expected["commits"][repo]
    assert snapshot.name == commit, (snapshot, commit)
    folder = cache / ("models--" + repo.replace("/", "--"))
    refs_main = (folder / "refs" / "main").read_text()
    assert refs_main == commit, refs_main
    for path in files:
        etag = expected["etags"][repo][path]
        lfs = path in expected["lfs"][repo]
        local = snapshot / path
        assert local.is_file(), local
        assert content_id(local, lfs) == etag, (path, etag)
        blob = folder / "blobs" / etag
        assert blob.is_file(), f"blob {blob} missing"
        assert local.resolve() == blob.resolve(), (local, blob)


def expect_error(cls, fn, what, status=None):
    try:
        fn()
    except cls as e:
        if status is not None:
            assert e.response is not None and e.response.status_code == status, (
                what,
                e.response.status_code if e.response is not None else None,
            )
        ok(f"{what} -> {type(e).__name__}")
        return e
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{what}: expected {cls.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"{what}: expected {cls.__name__}, got no error")


# 1. snapshot_download of the whole safetensors checkpoint.
repo = "demo/tiny-safetensors"
snap = Path(snapshot_download(repo))
check_snapshot(repo, snap, expected["etags"][repo].keys())
index = json.loads((snap / "model.safetensors.index.json").read_text())
assert set(index["weight_map"].values()) == {
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
}
ok("snapshot_download demo/tiny-safetensors")

# 2. snapshot_download with allow_patterns picks one quant (and the split one).
repo = "demo/tiny-gguf"
snap = Path(snapshot_download(repo, allow_patterns=["*Q4_K_M*", "*.json", "README.md"]))
got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())
assert got == ["README.md", "config.json", "tiny-model-Q4_K_M.gguf"], got
check_snapshot(repo, snap, got)
snap = Path(snapshot_download(repo, allow_patterns=["*Q8_0*"]))
got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file() and "Q8_0" in p.name)
assert got == [f"tiny-model-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)], got
check_snapshot(repo, snap, got)
ok("snapshot_download demo/tiny-gguf with allow_patterns")

# 3. hf_hub_download of single files: hash equals the emulator's, blob named by the etag.
p = Path(hf_hub_download(repo, "tiny-model-Q6_K.gguf"))
assert content_id(p, True) == expected["etags"][repo]["tiny-model-Q6_K.gguf"]
check_snapshot(repo, p.parent, ["tiny-model-Q6_K.gguf"])
p = Path(hf_hub_download(repo, "tiny-model-IQ4_XS.gguf", subfolder="IQ4_XS"))
assert content_id(p, True) == expected["etags"][repo]["IQ4_XS/tiny-model-IQ4_XS.gguf"]
p = Path(hf_hub_download(repo, "tiny-model-Q4_0.gguf", revision="refs/pr/1"))
assert (cache / "models--demo--tiny-gguf" / "refs" / "refs" / "pr" / "1").is_file()
p = Path(hf_hub_download(repo, "README.md", revision="v1.0"))
assert p.parent.name == expected["commits"]["demo/tiny-gguf@v1.0"]
p = Path(hf_hub_download("demo/tiny-dataset", "data/train file.csv", repo_type="dataset"))
assert p.read_text().startswith("id,text")
p = Path(hf_hub_download("demo/gated", "model-Q4_K_M.gguf", token="hf_demo_token"))
assert p.read_bytes()[:4] == b"GGUF"
ok("hf_hub_download (LFS, subfolder, PR, tag, dataset, gated with token)")

# 4. list_repo_tree, recursive, over several pages.
api = HfApi()
entries = list(api.list_repo_tree(repo, recursive=True))
paths = sorted(e.path for e in entries)
assert paths == sorted(expected["tree"][repo]), paths
files = {e.path: e for e in entries if isinstance(e, huggingface_hub.hf_api.RepoFile)}
q4 = files["tiny-model-Q4_K_M.gguf"]
assert q4.lfs is not None and q4.lfs.sha256 == expected["etags"][repo]["tiny-model-Q4_K_M.gguf"]
sub = list(api.list_repo_tree(repo, path_in_repo="IQ4_XS"))
assert [e.path for e in sub] == ["IQ4_XS/tiny-model-IQ4_XS.gguf"], sub
ok(f"list_repo_tree recursive ({len(entries)} entries)")

# 5. model_info with files metadata.
info = api.model_info(repo, files_metadata=True)
assert info.sha == expected["commits"][repo]
sib = {s.rfilename: s for s in info.siblings}
assert sib["tiny-model-Q4_K_M.gguf"].lfs.sha256 == expected["etags"][repo]["tiny-model-Q4_K_M.gguf"]
assert sib["config.json"].blob_id == expected["etags"][repo]["config.json"]
assert sib["config.json"].lfs is None
assert api.model_info("demo/gated").gated == "manual"
ds = api.dataset_info("demo/tiny-dataset", files_metadata=True)
assert any(s.rfilename == "data/train file.csv" for s in ds.siblings)
ok("model_info(files_metadata=True)")

# 6. Errors come out as huggingface_hub raises them for the real Hub.
e = expect_error(errors.RepositoryNotFoundError, lambda: hf_hub_download("demo/missing", "a.txt"), "missing repo")
assert not isinstance(e, errors.GatedRepoError)
expect_error(errors.RepositoryNotFoundError, lambda: api.model_info("demo/missing"), "missing repo info")
expect_error(
    errors.RepositoryNotFoundError,
    lambda: hf_hub_download("demo/missing", "a.txt", token="hf_demo_token"),
    "missing repo with token",
    404,
)
expect_error(errors.GatedRepoError, lambda: hf_hub_download("demo/gated", "config.json"), "gated without token", 401)
expect_error(
    errors.GatedRepoError,
    lambda: hf_hub_download("demo/gated", "config.json", token="hf_other_token"),
    "gated with a token not in the allow-list",
    403,
)
e = expect_error(errors.RepositoryNotFoundError, lambda: hf_hub_download("demo/private", "config.json"), "private")
assert not isinstance(e, errors.GatedRepoError)
expect_error(errors.RepositoryNotFoundError, lambda: api.model_info("demo/private"), "private info")
assert api.model_info("demo/private", token="hf_demo_token").private is True
remote_entry = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
expect_error(remote_entry, lambda: hf_hub_download(repo, "missing.bin"), "missing file")
assert (cache / "models--demo--tiny-gguf" / ".no_exist" / expected["commits"][repo] / "missing.bin").exists()
expect_error(errors.RevisionNotFoundError, lambda: hf_hub_download(repo, "config.json", revision="nope"), "missing revision")
expect_error(errors.RevisionNotFoundError, lambda: api.model_info(repo, revision="nope"), "missing revision info")
expect_error(
    errors.HfHubHTTPError,
    lambda: api.model_info(repo, token="hf_bogus"),
    "invalid token",
    401,
)

# 7. The cache is one huggingface_hub itself considers clean.
report = scan_cache_dir(cache)
assert not report.warnings, report.warnings
repos = {r.repo_id for r in report.repos}
assert {"demo/tiny-safetensors", "demo/tiny-gguf", "demo/tiny-dataset", "demo/gated"} <= repos, repos
ok("scan_cache_dir is clean")
print("ALL OK")
