//! Fidelity: the real `huggingface_hub` (from PyPI, in a venv under `target/`) downloads from
//! the emulator and gets the errors it raises for the real Hub. See `tests/python/fidelity.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hub_emulator::{Emulator, EmulatorConfig, RepoKind};

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("Cannot run {what}: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn ensure_venv() -> PathBuf {
    hub_emulator::python::python_with_huggingface_hub(&target_dir())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn huggingface_hub_downloads_from_the_emulator() {
    let python = ensure_venv();
    let home = tempfile::tempdir().unwrap();
    let hash_cache = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::demo_with_big_size(16 << 20);
    config.hash_cache_dir = Some(hash_cache.path().to_path_buf());
    // A tiny page size forces list_repo_tree through several pages.
    config.page_size = 3;
    let emu = Emulator::start_blocking(config).unwrap();

    // What the emulator serves, for the script to compare with.
    let mut etags = serde_json::Map::new();
    let mut lfs = serde_json::Map::new();
    let mut commits = serde_json::Map::new();
    let mut trees = serde_json::Map::new();
    for repo in ["demo/tiny-safetensors", "demo/tiny-gguf"] {
        let commit = emu
            .catalog()
            .resolve(RepoKind::Model, repo, "main")
            .unwrap();
        commits.insert(repo.into(), commit.sha.clone().into());
        let mut e = serde_json::Map::new();
        let mut l = Vec::new();
        let mut tree = std::collections::BTreeSet::new();
        for (path, f) in &commit.files {
            e.insert(
                path.clone(),
                emu.file_etag(RepoKind::Model, repo, "main", path)
                    .unwrap()
                    .into(),
            );
            if f.lfs {
                l.push(path.clone());
            }
            let mut dir = path.as_str();
            tree.insert(path.clone());
            while let Some((parent, _)) = dir.rsplit_once('/') {
                tree.insert(parent.to_string());
                dir = parent;
            }
        }
        etags.insert(repo.into(), e.into());
        lfs.insert(repo.into(), l.into());
        trees.insert(repo.into(), tree.into_iter().collect::<Vec<_>>().into());
    }
    let tag = emu
        .catalog()
        .resolve(RepoKind::Model, "demo/tiny-gguf", "v1.0")
        .unwrap();
    commits.insert("demo/tiny-gguf@v1.0".into(), tag.sha.clone().into());
    let expected =
        serde_json::json!({"etags": etags, "lfs": lfs, "commits": commits, "tree": trees});
    let expected_path = home.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fidelity.py");
    let hub_cache = home.path().join("hub");
    let out = run(
        Command::new(&python)
            .arg(&script)
            .arg(&expected_path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("HF_ENDPOINT", emu.url())
            .env("HF_HOME", home.path())
            .env("HF_HUB_CACHE", &hub_cache)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_XET", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .env("HF_HUB_ETAG_TIMEOUT", "30")
            .env("NO_PROXY", "*"),
        "the huggingface_hub fidelity script",
    );
    println!("{out}");
    assert!(out.contains("ALL OK"), "{out}");

    // What the emulator saw: LFS bytes came from the CDN, without the token, and paginated.
    let log = emu.log();
    assert!(
        !log.cdn_saw_authorization(),
        "the CDN must never see Authorization"
    );
    let records = emu.requests();
    let cdn_gets = records
        .iter()
        .filter(|r| r.listener == hub_emulator::Listener::Cdn && r.method == "GET")
        .count();
    assert!(cdn_gets >= 8, "{cdn_gets} CDN downloads");
    let tree_pages = records
        .iter()
        .filter(|r| {
            r.path.contains("/tree/") && r.query.as_deref().is_some_and(|q| q.contains("cursor="))
        })
        .count();
    assert!(
        tree_pages >= 3,
        "list_repo_tree followed {tree_pages} Link pages"
    );
    let shard = emu
        .file_hashes(
            RepoKind::Model,
            "demo/tiny-safetensors",
            "main",
            "model-00001-of-00002.safetensors",
        )
        .unwrap();
    let blob = hub_cache
        .join("models--demo--tiny-safetensors/blobs")
        .join(&shard.sha256);
    assert!(blob.is_file(), "{} missing", blob.display());
}
