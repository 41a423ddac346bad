//! `mcache import`: local files and other apps' stores (Ollama, LM Studio, llama.cpp) built in a
//! temp folder with real GGUF headers and Ollama's real manifest shape. Checked with `mcache
//! verify`, with `huggingface_hub` offline, and by reading the other app's files afterwards:
//! they must be byte-identical, and nothing is downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hub_emulator::RepoKind;

use crate::common::{World, files_under, sha256_file};

const REPO: &str = "demo/tiny-gguf";
const Q4: &str = "tiny-model-Q4_K_M.gguf";
const Q2: &str = "tiny-model-Q2_K.gguf";

/// The bytes the emulator serves for a file of `demo/tiny-gguf` at `main`.
fn repo_file(world: &World, path: &str) -> Vec<u8> {
    world
        .emulator
        .catalog()
        .file(RepoKind::Model, REPO, "main", path)
        .unwrap_or_else(|| panic!("`{path}` is in `{REPO}`"))
        .body
        .to_vec()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An Ollama store as Ollama 0.x writes it: `blobs/sha256-<hex>` and one manifest per tag.
fn ollama_model(root: &Path, manifest: &str, gguf: &[u8]) {
    let blobs = root.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let model = sha256_hex(gguf);
    std::fs::write(blobs.join(format!("sha256-{model}")), gguf).unwrap();
    let template = b"{{ .Prompt }}";
    let params = br#"{"stop":["<|eot_id|>"]}"#;
    let config =
        br#"{"model_format":"gguf","model_family":"llama","model_type":"1B","file_type":"Q4_K_M"}"#;
    for extra in [&template[..], &params[..], &config[..]] {
        std::fs::write(blobs.join(format!("sha256-{}", sha256_hex(extra))), extra).unwrap();
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config)),
            "size": config.len()
        },
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{model}"), "size": gguf.len()},
            {"mediaType": "application/vnd.ollama.image.template", "digest": format!("sha256:{}", sha256_hex(template)), "size": template.len()},
            {"mediaType": "application/vnd.ollama.image.params", "digest": format!("sha256:{}", sha256_hex(params)), "size": params.len()}
        ]
    });
    let path = root.join("manifests").join(manifest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(&body).unwrap()).unwrap();
}

/// Every file under `dir` with its sha256 and modification time: what must not change.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (String, std::time::SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path.clone(), (sha256_file(&path), mtime))
        })
        .collect()
}

#[cfg(unix)]
fn inode(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

/// Runs `script` offline with both `huggingface_hub` releases the cache is shared with (2.4,
/// and 0.36, what transformers 4.x installs), each with `LEGACY` set to `True` or `False`;
/// returns both outputs.
fn python_offline(world: &World, script: &str) -> String {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let current = hub_emulator::python::python_with_huggingface_hub(&target)
        .unwrap_or_else(|e| panic!("{e}"));
    let legacy = hub_emulator::python::python_with_legacy_huggingface_hub(&target)
        .unwrap_or_else(|e| panic!("{e}"));
    [(current, "False"), (legacy, "True")]
        .into_iter()
        .map(|(python, is_legacy)| {
            python_offline_with(world, &python, &format!("LEGACY = {is_legacy}\n{script}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn python_offline_with(world: &World, python: &Path, script: &str) -> String {
    let output = Command::new(python)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HF_HOME", world.hf_home())
        .env("HF_HUB_CACHE", world.hub_cache())
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .args(["-c", script])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn ollama_models_are_adopted_by_hard_link_under_their_hub_repo_or_in_our_own_folder() {
    let world = World::new();
    let ollama = world.dir.path().join("ollama-models");
    let q4 = repo_file(&world, Q4);
    let q2 = repo_file(&world, Q2);
    ollama_model(&ollama, "hf.co/demo/tiny-gguf/Q4_K_M", &q4);
    ollama_model(&ollama, "registry.ollama.ai/library/tiny/latest", &q2);
    let before = fingerprint(&ollama);
    let total = (q4.len() + q2.len()) as u64;

    // A dry run says what adopting saves and creates nothing.
    let dry = world
        .run(&[
            "--json",
            "import",
            "--from",
            "ollama",
            ollama.to_str().unwrap(),
            "--suggested-repos",
            "--dry-run",
        ])
        .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["items"].as_array().unwrap().len(), 2);
    assert_eq!(dry["saved_bytes"], total, "{dry:#}");
    assert_eq!(dry["copy_bytes"], 0);
    for item in dry["items"].as_array().unwrap() {
        assert_eq!(item["state"], "planned", "{item:#}");
        assert_eq!(item["files"][0]["method"], "hard_link", "{item:#}");
    }
    assert!(!world.hub_cache().join("models--demo--tiny-gguf").exists());
    assert!(!world.data_dir().join("imported").exists());

    let run = world.run(&[
        "import",
        "--from",
        "ollama",
        ollama.to_str().unwrap(),
        "--suggested-repos",
    ]);
    let out = run.ok();
    assert!(out.contains("imported"), "{out}");

    // The hf.co model is in the standard layout, as the very file Ollama holds.
    let blob = world
        .hub_cache()
        .join("models--demo--tiny-gguf/blobs")
        .join(world.sha256(REPO, Q4));
    assert_eq!(
        inode(&blob),
        inode(&ollama.join(format!("blobs/sha256-{}", sha256_hex(&q4))))
    );
    world.run(&["verify", REPO]).ok();
    let found = python_offline(
        &world,
        &format!(
            "import hashlib\n\
             from huggingface_hub import hf_hub_download, scan_cache_dir\n\
             p = hf_hub_download('{REPO}', '{Q4}')\n\
             print(hashlib.sha256(open(p, 'rb').read()).hexdigest())\n\
             info = scan_cache_dir()\n\
             warnings = [w for w in info.warnings if not (LEGACY and str(w).endswith('/CACHEDIR.TAG'))]\n\
             assert not warnings, info.warnings\n\
             print([r.repo_id for r in info.repos])"
        ),
    );
    assert!(found.contains(&sha256_hex(&q4)), "{found}");
    assert!(found.contains("demo/tiny-gguf"), "{found}");
    // The library model names no repo: it is in our own folder, never a `models--` folder.
    let listed = world.run(&["--json", "import", "--list"]).json();
    let models = listed.as_array().unwrap();
    assert_eq!(models.len(), 1, "{listed:#}");
    assert_eq!(models[0]["name"], "tiny:latest");
    assert_eq!(models[0]["origin"], "ollama");
    assert_eq!(models[0]["variants"][0]["name"], "Q2_K", "{listed:#}");
    let names: Vec<String> = std::fs::read_dir(world.hub_cache())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("models--"))
        .collect();
    assert_eq!(names, vec!["models--demo--tiny-gguf".to_string()]);
    // Nothing was downloaded, and Ollama's files are exactly as they were.
    assert_eq!(world.cdn_bytes(), 0);
    assert_eq!(fingerprint(&ollama), before);

    // Adopting again changes nothing and says the files are already there.
    let again = world
        .run(&[
            "--json",
            "import",
            "--from",
            "ollama",
            ollama.to_str().unwrap(),
            "--suggested-repos",
        ])
        .json();
    for item in again["items"].as_array().unwrap() {
        assert_eq!(item["files"][0]["method"], "already_there", "{item:#}");
    }
}

#[test]
fn a_file_is_placed_under_a_named_repo_only_when_its_hash_matches() {
    let world = World::new();
    // LM Studio's layout: publisher/model/file.gguf.
    let lmstudio = world.dir.path().join("lmstudio");
    let model_dir = lmstudio.join("someone/tiny-GGUF");
    std::fs::create_dir_all(&model_dir).unwrap();
    let mut changed = repo_file(&world, Q4);
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    std::fs::write(model_dir.join(Q4), &changed).unwrap();
    let before = fingerprint(&lmstudio);

    let run = world.run(&[
        "import",
        "--from",
        "lmstudio",
        lmstudio.to_str().unwrap(),
        "--repo",
        REPO,
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.stdout
            .contains("is not a file of `demo/tiny-gguf` at `main`"),
        "{}",
        run.stdout
    );
    assert!(
        !world
            .hub_cache()
            .join("models--demo--tiny-gguf/snapshots")
            .exists(),
        "nothing is placed under the repo"
    );
    assert!(
        files_under(&world.hub_cache())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".mcpart"))
    );

    // The genuine file is placed, and found by path like any pulled file.
    std::fs::write(model_dir.join(Q4), repo_file(&world, Q4)).unwrap();
    let before = {
        let _ = before;
        fingerprint(&lmstudio)
    };
    world
        .run(&[
            "import",
            "--from",
            "lmstudio",
            lmstudio.to_str().unwrap(),
            "--repo",
            REPO,
        ])
        .ok();
    let path = world.run(&["--offline", "path", REPO, Q4]);
    assert_eq!(
        sha256_file(Path::new(path.ok().trim())),
        world.sha256(REPO, Q4)
    );
    world.run(&["verify", REPO]).ok();
    assert_eq!(fingerprint(&lmstudio), before);
    assert_eq!(world.cdn_bytes(), 0);
}

#[test]
fn a_folder_without_a_repo_goes_to_our_own_folder_and_a_copy_is_only_made_when_allowed() {
    let world = World::new();
    // Another file system than the cache's (tmpfs): neither a hard link nor a reflink works.
    let elsewhere = tempfile::tempdir_in("/dev/shm").expect("/dev/shm is a tmpfs");
    let folder = elsewhere.path().join("my-model");
    std::fs::create_dir_all(&folder).unwrap();
    let q2 = repo_file(&world, Q2);
    std::fs::write(folder.join("my-model-Q2_K.gguf"), &q2).unwrap();
    std::fs::write(folder.join("README.md"), b"# mine\n").unwrap();
    let before = fingerprint(&folder);

    let refused = world.run(&["import", folder.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stdout.contains("needs a copy"),
        "{}",
        refused.stdout
    );
    assert!(refused.stderr.contains("--copy"), "{}", refused.stderr);
    let size = q2.len() as u64 + 7;
    assert!(
        refused
            .stderr
            .contains(&model_cache::units::format_size(size)),
        "the size of the copy is said: {}",
        refused.stderr
    );
    let imported = world.data_dir().join("imported");
    assert!(
        !imported.exists() || files_under(&imported).is_empty(),
        "nothing copied silently"
    );

    let done = world
        .run(&["--json", "import", folder.to_str().unwrap(), "--copy"])
        .json();
    assert_eq!(done["items"][0]["state"], "imported", "{done:#}");
    assert_eq!(done["copy_bytes"], size);
    let dir = imported.join("my-model");
    assert_eq!(
        sha256_file(&dir.join("my-model-Q2_K.gguf")),
        sha256_hex(&q2)
    );
    assert!(dir.join(".model-cache-import.json").is_file());
    assert!(
        !world.hub_cache().exists()
            || std::fs::read_dir(world.hub_cache()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("models--"))
    );
    assert_eq!(fingerprint(&folder), before);

    // `mcache verify` re-hashes our own area against the recorded sha256s too.
    let verified = world.run(&["--json", "verify"]).json();
    assert_eq!(verified["corrupt"], serde_json::json!([]), "{verified:#}");
    assert!(verified["checked"].as_u64().unwrap() >= 2, "{verified:#}");
    let mut bytes = std::fs::read(dir.join("my-model-Q2_K.gguf")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(dir.join("my-model-Q2_K.gguf"), &bytes).unwrap();
    let caught = world.run(&["--json", "verify"]);
    assert_ne!(caught.code, 0, "a corrupted import fails the check");
    // The report, then the error (both JSON documents on stdout).
    let report: serde_json::Value = serde_json::Deserializer::from_str(&caught.stdout)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        report["corrupt"][0]["repo"], "imported/my-model",
        "{report:#}"
    );
    assert_eq!(report["corrupt"][0]["path"], "my-model-Q2_K.gguf");

    // Not a model at all: a clear error.
    let notes = elsewhere.path().join("notes.txt");
    std::fs::write(&notes, b"x").unwrap();
    let bad = world.run(&["import", notes.to_str().unwrap()]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("is not a GGUF or safetensors file"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_llama_cpp_cache_names_the_repo_in_its_metadata() {
    let world = World::new();
    let cache = world.dir.path().join("llama.cpp");
    std::fs::create_dir_all(&cache).unwrap();
    let file = cache.join(format!("demo_tiny-gguf_{Q4}"));
    std::fs::write(&file, repo_file(&world, Q4)).unwrap();
    std::fs::write(
        cache.join(format!("demo_tiny-gguf_{Q4}.json")),
        format!(
            r#"{{"etag":"\"x\"","lastModified":"Mon, 01 Dec 2025 00:00:00 GMT","url":"https://huggingface.co/{REPO}/resolve/main/{Q4}"}}"#
        ),
    )
    .unwrap();
    let before = fingerprint(&cache);
    let report = world
        .run(&[
            "--json",
            "import",
            "--from",
            "llama.cpp",
            cache.to_str().unwrap(),
            "--suggested-repos",
        ])
        .json();
    assert_eq!(report["items"][0]["suggested_repo"], REPO);
    assert_eq!(report["items"][0]["placement"]["kind"], "hub", "{report:#}");
    assert_eq!(report["items"][0]["files"][0]["path"], Q4);
    world.run(&["verify", REPO]).ok();
    assert_eq!(fingerprint(&cache), before);
}
