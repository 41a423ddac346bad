//! Interoperability with the real Python `huggingface_hub` (2.4.0, from PyPI, in a venv under
//! `target/`), in both directions:
//!
//! - Python downloads from the emulator into a cache; our scan, offline lookup and `doctor` read
//!   it.
//! - We write a cache with the store API (bytes fetched sequentially through the Hub client);
//!   Python, offline, finds everything (`hf_hub_download`, `snapshot_download`,
//!   `scan_cache_dir` without warnings, `try_to_load_from_cache`).
//! - Blob locks interlock with Python's `filelock`, both ways.

use model_cache::error::ErrorKind;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig, RepoKind};
use model_cache::doctor;
use model_cache::hub::retry::RetryPolicy;
use model_cache::hub::{EntryKind, HubClient, HubError};
use model_cache::index::Index;
use model_cache::store::{HubCache, LinkMode, SafeRelPath};
use model_cache::{RepoId, Settings};
use serde_json::Value;
use sha1::Digest as _;

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The shared venv of the emulator's fidelity tests (`hub_emulator::python`).
fn ensure_venv() -> PathBuf {
    hub_emulator::python::python_with_huggingface_hub(&target_dir())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The older release's interpreter (`huggingface_hub` 0.36, what transformers 4.x installs).
fn ensure_legacy_venv() -> PathBuf {
    hub_emulator::python::python_with_legacy_huggingface_hub(&target_dir())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A Python command with a clean Hugging Face environment pointing at `cache`.
fn python(cache: &Path, endpoint: Option<&str>, offline: bool) -> Command {
    python_with(ensure_venv(), cache, endpoint, offline)
}

/// [`python`] with another interpreter.
fn python_with(
    interpreter: PathBuf,
    cache: &Path,
    endpoint: Option<&str>,
    offline: bool,
) -> Command {
    let mut cmd = Command::new(interpreter);
    for name in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
    ] {
        cmd.env_remove(name);
    }
    let home = cache.parent().unwrap().join("hf-home");
    cmd.env("HF_HOME", &home)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("PYTHONWARNINGS", "always");
    if let Some(endpoint) = endpoint {
        cmd.env("HF_ENDPOINT", endpoint);
    }
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd
}

fn run_json(mut cmd: Command, script: &str) -> Value {
    let out = cmd.arg("-c").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}\n{stderr}"))
}

fn settings(emulator: &Emulator, root: &Path) -> Settings {
    let mut settings = Settings::new(root.join("hub"), root.join("data"));
    settings.endpoint = emulator.url();
    settings.retry = RetryPolicy::immediate();
    settings
}

#[test]
fn cachedir_tag_matches_huggingface_hub() {
    let dir = tempfile::tempdir().unwrap();
    let value = run_json(
        python(&dir.path().join("hub"), None, true),
        "import json; from huggingface_hub._local_folder import CACHEDIR_TAG_CONTENT as c; print(json.dumps(c))",
    );
    assert_eq!(value.as_str(), Some(model_cache::store::CACHEDIR_TAG));
}

#[test]
fn we_read_a_cache_written_by_huggingface_hub() {
    let dir = tempfile::tempdir().unwrap();
    let cache_root = dir.path().join("hub");
    let emulator = Emulator::start_blocking(EmulatorConfig::demo_with_big_size(1 << 20)).unwrap();
    let repo_name = "demo/tiny-safetensors";
    let value = run_json(
        python(&cache_root, Some(&emulator.url()), false),
        &format!(
            "import json; from huggingface_hub import snapshot_download; print(json.dumps(snapshot_download({repo_name:?})))"
        ),
    );
    let commit = emulator
        .catalog()
        .resolve(RepoKind::Model, repo_name, "main")
        .unwrap()
        .sha
        .clone();
    assert_eq!(
        PathBuf::from(value.as_str().unwrap()),
        cache_root
            .join("models--demo--tiny-safetensors/snapshots")
            .join(&commit)
    );

    // What the Hub says the repo holds.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hub = HubClient::new(&settings(&emulator, dir.path())).unwrap();
    let repo = RepoId::model(repo_name).unwrap();
    let tree = runtime
        .block_on(hub.list_tree(&repo, "main", None, true))
        .unwrap();
    let mut expected: Vec<(String, u64, String)> = tree
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.path.clone(), e.size, e.etag().to_string()))
        .collect();
    expected.sort();

    let cache = HubCache::new(&cache_root);
    let scan = cache.scan().unwrap();
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    assert_eq!(scan.repos.len(), 1);
    let cached = &scan.repos[0];
    assert_eq!(cached.repo, repo);
    assert_eq!(cached.revisions.len(), 1);
    assert_eq!(cached.revisions[0].commit, commit);
    assert_eq!(cached.revisions[0].refs, vec!["main"]);
    let mut found: Vec<(String, u64, String)> = cached.revisions[0]
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size, f.etag.clone().unwrap_or_default()))
        .collect();
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(
        cached.size_on_disk,
        expected.iter().map(|(_, size, _)| size).sum::<u64>()
    );

    let repo_cache = cache.repo(&repo);
    let config = repo_cache.resolve_cached("main", "config.json").unwrap();
    assert_eq!(config, repo_cache.snapshot_dir(&commit).join("config.json"));
    assert_eq!(
        std::fs::read(&config).unwrap().len() as u64,
        expected.iter().find(|e| e.0 == "config.json").unwrap().1
    );

    let index = Index::open(&dir.path().join("data")).unwrap();
    let report = doctor::run(&cache, &index, true).unwrap();
    assert_eq!(report.repos_added, vec![repo.clone()]);
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    assert!(report.is_healthy(), "{report:?}");
    let files = index.files(&repo, &commit).unwrap();
    let mut indexed: Vec<(String, u64, String)> = files
        .into_iter()
        .map(|f| (f.path, f.size, f.etag))
        .collect();
    indexed.sort();
    assert_eq!(indexed, expected);
    assert_eq!(
        index.revision_commit(&repo, "main").unwrap().as_deref(),
        Some(commit.as_str())
    );
}

/// Downloads every file of `repo` at `revision` into the cache, one after the other, through the
/// store API: lock, fetch into `.incomplete`, verify, rename, link; then the ref. (The parallel
/// downloader lives elsewhere; this is the simplest correct client of the store.)
async fn fetch_sequentially(
    hub: &HubClient,
    cache: &HubCache,
    repo: &RepoId,
    revision: &str,
) -> String {
    let repo_cache = cache.repo(repo);
    repo_cache.ensure_dirs().unwrap();
    let tree = hub.list_tree(repo, revision, None, true).await.unwrap();
    let mut commit = None;
    for entry in tree.iter().filter(|e| e.kind == EntryKind::File) {
        let path = SafeRelPath::new(&entry.path).unwrap();
        let meta = hub
            .file_metadata(repo, revision, &entry.path)
            .await
            .unwrap();
        commit = Some(meta.commit.clone());
        let lock = repo_cache
            .lock_blob(&meta.etag, Duration::from_secs(10))
            .unwrap();
        if !repo_cache.blob_exists(&meta.etag) {
            let mut response = hub
                .get_range(&meta.download_url, None, None)
                .await
                .unwrap()
                .body;
            let incomplete = repo_cache.partial_path(&meta.etag);
            let mut file = std::fs::File::create(&incomplete).unwrap();
            let mut sha256 = sha2::Sha256::new();
            let mut sha1 = sha1::Sha1::new();
            sha1.update(format!("blob {}\0", meta.size).as_bytes());
            let mut written = 0u64;
            while let Some(chunk) = response.chunk().await.unwrap() {
                file.write_all(&chunk).unwrap();
                sha256.update(&chunk);
                sha1.update(&chunk);
                written += chunk.len() as u64;
            }
            drop(file);
            assert_eq!(written, meta.size, "{}", entry.path);
            if let Some(expected) = &meta.sha256 {
                assert_eq!(&hex::encode(sha256.finalize()), expected, "{}", entry.path);
            } else {
                let expected = meta
                    .git_sha1
                    .as_ref()
                    .expect("a git sha1 for regular files");
                assert_eq!(&hex::encode(sha1.finalize()), expected, "{}", entry.path);
            }
            repo_cache.finish_blob(&meta.etag).unwrap();
        }
        repo_cache.link(&meta.commit, &path, &meta.etag).unwrap();
        drop(lock);
    }
    let commit = commit.expect("the repo has files");
    repo_cache.write_ref(revision, &commit).unwrap();
    match hub.file_metadata(repo, revision, "missing.bin").await {
        Err(HubError::EntryNotFound {
            commit: Some(at), ..
        }) => repo_cache
            .mark_no_exist(&at, &SafeRelPath::new("missing.bin").unwrap())
            .unwrap(),
        other => panic!("expected EntryNotFound with a commit, got {other:?}"),
    }
    commit
}

#[test]
fn huggingface_hub_reads_our_cache_offline() {
    reads_our_cache_offline(LinkMode::Symlink);
}

/// Where symlinks are refused (Windows without Developer Mode), snapshot files are the blobs'
/// bytes as regular files, as `huggingface_hub` lays them out itself there: both releases read
/// such a cache offline, with no warning.
#[test]
fn huggingface_hub_reads_our_cache_without_symlinks_offline() {
    reads_our_cache_offline(LinkMode::Copy);
}

fn reads_our_cache_offline(mode: LinkMode) {
    let dir = tempfile::tempdir().unwrap();
    let cache_root = dir.path().join("hub");
    let emulator = Emulator::start_blocking(EmulatorConfig::demo_with_big_size(1 << 20)).unwrap();
    let repo_name = "demo/tiny-gguf";
    let repo = RepoId::model(repo_name).unwrap();
    let cache = HubCache::new(&cache_root).with_link_mode(mode);
    let hub = HubClient::new(&settings(&emulator, dir.path())).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let commit = runtime.block_on(fetch_sequentially(&hub, &cache, &repo, "main"));
    let tree = runtime
        .block_on(hub.list_tree(&repo, "main", None, true))
        .unwrap();
    let files: Vec<_> = tree.iter().filter(|e| e.kind == EntryKind::File).collect();
    let nested = files
        .iter()
        .find(|e| e.path.contains('/'))
        .expect("a file in a subfolder")
        .path
        .clone();
    // Python sizes a repo by the files its snapshot links resolve to: each blob once with
    // symlinks, each snapshot file without them.
    let total: u64 = match mode {
        LinkMode::Symlink => {
            let mut blobs: Vec<(&str, u64)> = files.iter().map(|e| (e.etag(), e.size)).collect();
            blobs.sort();
            blobs.dedup();
            blobs.iter().map(|(_, size)| size).sum()
        }
        LinkMode::Copy => files.iter().map(|e| e.size).sum(),
    };
    if mode == LinkMode::Copy {
        let config = cache.repo(&repo).snapshot_dir(&commit).join("config.json");
        assert!(
            std::fs::symlink_metadata(&config).unwrap().is_file(),
            "a regular file in the snapshot"
        );
    }
    let requests_before = emulator.requests().len();

    let script = format!(
        r#"
import json, warnings
from huggingface_hub import hf_hub_download, snapshot_download, scan_cache_dir, try_to_load_from_cache
from huggingface_hub.file_download import _CACHED_NO_EXIST
out = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out["config"] = hf_hub_download({repo_name:?}, "config.json")
    out["nested"] = hf_hub_download({repo_name:?}, {nested:?})
    out["by_commit"] = hf_hub_download({repo_name:?}, "config.json", revision={commit:?})
    out["snapshot"] = snapshot_download({repo_name:?})
    info = scan_cache_dir()
    out["warnings"] = [str(w) for w in info.warnings]
    out["repos"] = [
        {{
            "id": r.repo_id,
            "nb_files": r.nb_files,
            "size": r.size_on_disk,
            "revisions": [
                {{"commit": v.commit_hash, "refs": sorted(v.refs), "nb_files": v.nb_files}}
                for v in r.revisions
            ],
        }}
        for r in info.repos
    ]
    out["try"] = try_to_load_from_cache({repo_name:?}, "config.json")
    out["missing_is_no_exist"] = try_to_load_from_cache({repo_name:?}, "missing.bin") is _CACHED_NO_EXIST
    out["unknown"] = try_to_load_from_cache({repo_name:?}, "unknown.bin")
    try:
        hf_hub_download({repo_name:?}, "unknown.bin")
        out["unknown_error"] = None
    except Exception as e:
        out["unknown_error"] = type(e).__name__
    out["python_warnings"] = [str(w.message) for w in caught]
print(json.dumps(out))
"#
    );
    // Both releases the tests use: 2.4, and 0.36 (what transformers 4.x installs).
    for (interpreter, legacy) in [(ensure_venv(), false), (ensure_legacy_venv(), true)] {
        let out = run_json(
            python_with(interpreter, &cache_root, Some(&emulator.url()), true),
            &script,
        );
        let repo_cache = cache.repo(&repo);
        let snapshot = repo_cache.snapshot_dir(&commit);
        let path =
            |key: &str| PathBuf::from(out[key].as_str().unwrap_or_else(|| panic!("{key}: {out}")));
        assert_eq!(path("config"), snapshot.join("config.json"));
        assert_eq!(path("nested"), snapshot.join(&nested));
        assert_eq!(path("by_commit"), snapshot.join("config.json"));
        assert_eq!(path("snapshot"), snapshot);
        assert_eq!(path("try"), snapshot.join("config.json"));
        assert_eq!(out["missing_is_no_exist"], Value::Bool(true));
        assert_eq!(out["unknown"], Value::Null);
        assert_eq!(out["unknown_error"], "LocalEntryNotFoundError");
        // 0.36 predates `CACHEDIR.TAG` (which 2.x writes, and so do we, for 2.x): it reports
        // that file as "not a directory", and nothing else.
        let warnings: Vec<&str> = out["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|w| !(legacy && w.ends_with("/CACHEDIR.TAG")))
            .collect();
        assert!(warnings.is_empty(), "{out}");
        assert_eq!(out["python_warnings"], Value::Array(vec![]), "{out}");
        let repos = out["repos"].as_array().unwrap();
        assert_eq!(repos.len(), 1, "{out}");
        assert_eq!(repos[0]["id"], repo_name);
        assert_eq!(repos[0]["size"].as_u64(), Some(total));
        assert_eq!(repos[0]["revisions"][0]["commit"], commit.as_str());
        assert_eq!(
            repos[0]["revisions"][0]["refs"],
            serde_json::json!(["main"])
        );
        assert_eq!(
            repos[0]["revisions"][0]["nb_files"].as_u64(),
            Some(files.len() as u64)
        );
        assert_eq!(
            emulator.requests().len(),
            requests_before,
            "offline Python made no request"
        );
    }
}

#[test]
fn blob_locks_interlock_with_python_filelock() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache::new(dir.path().join("hub"));
    let repo = cache.repo(&RepoId::model("org/tiny").unwrap());
    repo.ensure_dirs().unwrap();
    let etag = "a".repeat(64);
    let lock_path = repo.lock_path(&etag);

    // Python holds the lock (as `hf_hub_download` does while downloading): we must wait.
    let mut child = python(cache.root(), None, true)
        .arg("-c")
        .arg(format!(
            "import sys\nfrom huggingface_hub.utils import WeakFileLock\nwith WeakFileLock({:?}):\n    print('locked', flush=True)\n    sys.stdin.read()\nprint('released', flush=True)",
            lock_path.to_str().unwrap()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let err = repo
        .lock_blob(&etag, Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err}");
    drop(child.stdin.take());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "released");
    assert!(child.wait().unwrap().success());
    let ours = repo.lock_blob(&etag, Duration::from_secs(5)).unwrap();

    // We hold it: Python times out.
    let out = run_json(
        python(cache.root(), None, true),
        &format!(
            "import json, filelock\nlock = filelock.FileLock({:?}, timeout=0.2)\ntry:\n    lock.acquire()\n    print(json.dumps('acquired'))\nexcept filelock.Timeout:\n    print(json.dumps('timeout'))",
            lock_path.to_str().unwrap()
        ),
    );
    assert_eq!(out, "timeout");
    drop(ours);
    let out = run_json(
        python(cache.root(), None, true),
        &format!(
            "import json, filelock\nlock = filelock.FileLock({:?}, timeout=2)\nlock.acquire()\nprint(json.dumps('acquired'))",
            lock_path.to_str().unwrap()
        ),
    );
    assert_eq!(out, "acquired");
}

/// Where `lock_blob_in_a_child_process` finds its cache and its blob.
const CHILD_CACHE: &str = "MODEL_CACHE_TEST_LOCK_CACHE";
const CHILD_ETAG: &str = "MODEL_CACHE_TEST_LOCK_ETAG";

/// `program` run with the given umask (this process's own umask is never changed).
fn with_umask(umask: u32, program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"umask "$0" && exec "$@""#)
        .arg(format!("{umask:03o}"))
        .arg(program);
    cmd
}

/// Part of `lock_files_are_created_like_filelock_under_each_umask`, which runs this test binary
/// again with a umask set: takes `RepoCache::lock_blob` on the blob the environment names, so
/// creating its lock file. Run on its own, it does nothing.
#[test]
fn lock_blob_in_a_child_process() {
    let (Some(root), Ok(etag)) = (std::env::var_os(CHILD_CACHE), std::env::var(CHILD_ETAG)) else {
        return;
    };
    let repo = HubCache::new(PathBuf::from(root)).repo(&RepoId::model("org/locks").unwrap());
    drop(repo.lock_blob(&etag, Duration::from_secs(5)).unwrap());
}

/// Lock files are created exactly as Python's `filelock` creates them (`0o666` through the
/// umask, no `chmod`), so both tools can open each other's lock files in a shared cache. Each
/// side creates one under the same umask, in a child process; the modes are equal, and each
/// side then locks the file the other created, without changing its mode.
#[test]
#[cfg(unix)]
fn lock_files_are_created_like_filelock_under_each_umask() {
    use std::os::unix::fs::PermissionsExt;

    let python = ensure_venv();
    let exe = std::env::current_exe().unwrap();
    let mode = |path: &Path| {
        let bits = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        format!("{bits:03o}")
    };
    // 000 is the umask that tells `0o666` from the `0o664` asked for before.
    for umask in [0o022, 0o002, 0o000] {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path().join("hub"));
        let repo = cache.repo(&RepoId::model("org/locks").unwrap());
        repo.ensure_dirs().unwrap();
        let (ours_etag, theirs_etag) = ("a".repeat(64), "b".repeat(64));
        let (ours, theirs) = (repo.lock_path(&ours_etag), repo.lock_path(&theirs_etag));

        let out = with_umask(umask, &exe)
            .args([
                "--exact",
                "lock_blob_in_a_child_process",
                "--test-threads=1",
            ])
            .env(CHILD_CACHE, cache.root())
            .env(CHILD_ETAG, &ours_etag)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = with_umask(umask, &python)
            .arg("-c")
            .arg("import sys, filelock\nwith filelock.FileLock(sys.argv[1], timeout=5):\n    pass")
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            (mode(&ours), mode(&theirs)),
            (
                format!("{:03o}", 0o666 & !umask),
                format!("{:03o}", 0o666 & !umask)
            ),
            "lock file modes (ours, filelock's) under umask {umask:03o}"
        );

        // Python locks ours, we lock Python's; neither changes the other's mode.
        let out = run_json(
            Command::new(&python),
            &format!(
                "import json, filelock\nlock = filelock.FileLock({:?}, timeout=2)\nlock.acquire()\nprint(json.dumps('acquired'))",
                ours.to_str().unwrap()
            ),
        );
        assert_eq!(out, "acquired");
        drop(
            repo.lock_blob(&theirs_etag, Duration::from_secs(2))
                .unwrap(),
        );
        assert_eq!(
            (mode(&ours), mode(&theirs)),
            (
                format!("{:03o}", 0o666 & !umask),
                format!("{:03o}", 0o666 & !umask)
            ),
            "modes after each side locked the other's file, umask {umask:03o}"
        );
    }
}

/// A cache as `huggingface_hub` 2.4 writes it with `hf_xet`: one payload in the shared blob
/// store (`<cache>/blobs/<h[..2]>/<h>`, `h` its Xet hash, a `.refs` manifest, the layout
/// marker) that two repos link from their `blobs/<sha256>`. Built by hand after 2.4's
/// `utils/_shared_blobs.py` (a Xet download needs a CAS server the emulator does not run
/// yet), and checked against the real 2.4: its `scan_cache_dir` reports no warning.
fn write_shared_store_cache(
    root: &Path,
    content: &[u8],
) -> (String, String, Vec<(String, String)>) {
    use sha2::Digest as _;
    let sha = hex::encode(sha2::Sha256::digest(content));
    let xet = hex::encode(sha2::Sha256::digest([b"xet:".as_slice(), content].concat()));
    let store = root.join("blobs");
    std::fs::create_dir_all(store.join(&xet[..2])).unwrap();
    std::fs::write(store.join(".huggingface-shared-blobs"), "1\n").unwrap();
    std::fs::write(store.join(&xet[..2]).join(&xet), content).unwrap();
    let mut manifest = String::new();
    let mut repos = Vec::new();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let folder = format!("models--acme--{name}");
        let commit = format!("{}", i + 1).repeat(40);
        let repo = root.join(&folder);
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots").join(&commit)).unwrap();
        std::os::unix::fs::symlink(
            format!("../../blobs/{}/{xet}", &xet[..2]),
            repo.join("blobs").join(&sha),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            format!("../../blobs/{sha}"),
            repo.join("snapshots")
                .join(&commit)
                .join("model.safetensors"),
        )
        .unwrap();
        std::fs::write(repo.join("refs/main"), &commit).unwrap();
        manifest.push_str(&format!("{folder}/blobs/{sha}\n"));
        repos.push((format!("acme/{name}"), commit));
    }
    std::fs::write(store.join(&xet[..2]).join(format!("{xet}.refs")), manifest).unwrap();
    (sha, xet, repos)
}

/// `scan_cache_dir` of the real 2.4: its warnings, repo ids and total size.
fn python_scan(cache: &Path) -> Value {
    run_json(
        python(cache, None, true),
        r#"
import json
from huggingface_hub import scan_cache_dir
info = scan_cache_dir()
print(json.dumps({"warnings": [str(w) for w in info.warnings],
                  "repos": sorted(r.repo_id for r in info.repos),
                  "size": info.size_on_disk}))
"#,
    )
}

#[tokio::test]
async fn a_cache_written_by_huggingface_hub_2_with_xet_verifies_and_cleans() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (sha, xet, repos) = write_shared_store_cache(&root, &content);
    let size = content.len() as u64;
    let python_view = python_scan(&root);
    assert_eq!(
        python_view["warnings"],
        serde_json::json!([]),
        "{python_view}"
    );
    assert_eq!(python_view["size"], size, "2.4 counts the payload once");

    // Verified against the name the snapshot links (the sha256), not the payload's Xet hash.
    let cache = HubCache::new(&root);
    let report = cache.verify(None).await.unwrap();
    assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
    assert_eq!(report.checked, 2);
    // Counted once, in the listing and in what removals account.
    assert_eq!(cache.scan().unwrap().size_on_disk, size);
    assert_eq!(cache.inventory().unwrap().total_bytes(), size);

    let payload = root.join("blobs").join(&xet[..2]).join(&xet);
    let manifest = payload.with_file_name(format!("{xet}.refs"));
    let none = std::collections::HashSet::new();
    let one = RepoId::model(&repos[0].0).unwrap();
    let two = RepoId::model(&repos[1].0).unwrap();
    // Removing one repo frees nothing: the other still uses the payload, and the manifest
    // names only it.
    let dry = model_cache::store::removal::delete_repo(&root, &one, &none, true).unwrap();
    assert_eq!(dry.bytes_freed, 0);
    let done = model_cache::store::removal::delete_repo(&root, &one, &none, false).unwrap();
    assert_eq!(done.bytes_freed, 0);
    assert!(payload.exists());
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        format!("models--acme--two/blobs/{sha}\n")
    );
    // The last one takes the payload and its manifest with it (the lock file stays).
    let dry = model_cache::store::removal::delete_repo(&root, &two, &none, true).unwrap();
    assert_eq!(dry.bytes_freed, size);
    let done = model_cache::store::removal::delete_repo(&root, &two, &none, false).unwrap();
    assert_eq!(done.bytes_freed, size);
    assert!(!payload.exists() && !manifest.exists());
    assert!(payload.with_file_name(format!("{xet}.lock")).exists());
    let python_view = python_scan(&root);
    assert_eq!(
        python_view["warnings"],
        serde_json::json!([]),
        "{python_view}"
    );
    assert_eq!(python_view["repos"], serde_json::json!([]));
    assert_eq!(python_view["size"], 0);
}
