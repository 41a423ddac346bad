//! The local mirror against the hub emulator: what it serves without and with its token, the
//! `Range` edge cases, pull-through (four clients, one download), the cache still served with
//! the upstream gone, and the real `huggingface_hub` 2.4 and 0.36 (with `hf_transfer`) through
//! it, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, RepoKind};
use local_api::{MirrorConfig, MirrorServer};
use model_cache::Settings;
use model_cache::download::NoReporter;
use model_cache::engine::{Engine, EngineOptions, PullRequest};
use model_cache::policy::{DiskSpace, FakeDisk};
use model_cache::scheduler::Probes;
use sha2::Digest;

const TINY: &str = "demo/tiny-gguf";

struct Fixture {
    mirror: MirrorServer,
    engine: Engine,
    emulator: Option<Emulator>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Fixture {
    /// On a fake machine with 900 GiB free (what these tests check must not depend on the
    /// free space of the machine that runs them).
    async fn start(config: EmulatorConfig) -> Fixture {
        Fixture::start_with(config, Probes::fake()).await
    }

    async fn start_with(config: EmulatorConfig, probes: Probes) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let emulator = Emulator::start(config).await.unwrap();
        let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
        settings.endpoint = emulator.url();
        settings.token_file = Some(dir.path().join("token"));
        let options = EngineOptions {
            probes,
            ..EngineOptions::system()
        };
        let engine = Engine::open(settings, options).unwrap();
        let mut config = MirrorConfig::new(dir.path().join("data"));
        config.bind = "127.0.0.1:0".parse().unwrap();
        let mirror = local_api::serve_mirror(engine.clone(), config)
            .await
            .unwrap();
        Fixture {
            mirror,
            engine,
            emulator: Some(emulator),
            dir,
            client: reqwest::Client::new(),
        }
    }

    fn emulator(&self) -> &Emulator {
        self.emulator.as_ref().unwrap()
    }

    /// Pulls every file of `repo` into the cache the ordinary way (the engine's downloader).
    async fn pull(&self, repo: &str) {
        let request = PullRequest {
            include: vec!["*".into()],
            ..PullRequest::repo(repo.parse().unwrap())
        };
        let plan = self.engine.plan_pull(&request).await.unwrap();
        self.engine
            .download(&plan, Arc::new(NoReporter))
            .wait()
            .await
            .unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mirror.url())
    }

    async fn get(&self, path: &str, token: bool, range: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if token {
            request = request.bearer_auth(self.mirror.token().expose());
        }
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send().await.unwrap()
    }

    /// The emulator's bytes of a file at `main`.
    fn content(&self, repo: &str, path: &str) -> Vec<u8> {
        self.emulator()
            .catalog()
            .file(RepoKind::Model, repo, "main", path)
            .unwrap()
            .body
            .to_vec()
    }
}

#[tokio::test]
async fn without_the_token_only_cached_public_files_are_served() {
    let f = Fixture::start(EmulatorConfig::demo()).await;
    let readme = "/demo/tiny-gguf/resolve/main/README.md";
    // Nothing cached: nothing without the token, and nothing is fetched.
    let response = f.get(readme, false, None).await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["x-error-message"]
            .to_str()
            .unwrap()
            .contains("mirror token")
    );
    // A token that is not the mirror's (a client's Hub token) counts as none.
    let response = f
        .client
        .get(f.url(readme))
        .bearer_auth("hf_not_the_mirror_token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(f.emulator().log().bytes_served_matching("README.md"), 0);

    f.pull(TINY).await;
    let response = f.get(readme, false, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap(),
        f.content(TINY, "README.md")
    );
    let info: serde_json::Value = f
        .get("/api/models/demo/tiny-gguf/revision/main", false, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        info["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["rfilename"] == "README.md")
    );
    // A file of the repo that is not cached, and a private repo, need the token.
    assert_eq!(
        f.get("/demo/tiny-gguf/resolve/main/missing.bin", false, None)
            .await
            .status(),
        401
    );
    // Nor is a public repo that is not cached.
    assert_eq!(
        f.get(
            "/demo/tiny-safetensors/resolve/main/config.json",
            false,
            None
        )
        .await
        .status(),
        401
    );
    assert_eq!(f.emulator().log().bytes_served_matching("missing.bin"), 0);
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let f = Fixture::start(EmulatorConfig::demo()).await;
    f.pull(TINY).await;
    let path = "/demo/tiny-gguf/resolve/main/README.md";
    let content = f.content(TINY, "README.md");
    let size = content.len();

    let head = f.client.head(f.url(path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert!(head.headers().contains_key("x-repo-commit"));

    // Suffix.
    let response = f.get(path, false, Some("bytes=-10")).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {}-{}/{size}", size - 10, size - 1).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), &content[size - 10..]);
    // Open-ended and past the end.
    let response = f.get(path, false, Some("bytes=5-100000")).await;
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap(), &content[5..]);
    // Unsatisfiable.
    let response = f.get(path, false, Some(&format!("bytes={size}-"))).await;
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    // Several ranges: multipart/byteranges, each part with its Content-Range.
    let response = f.get(path, false, Some("bytes=0-3, 10-12")).await;
    assert_eq!(response.status(), 206);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let text = String::from_utf8_lossy(&body);
    let parts: Vec<&str> = text.split(&format!("--{boundary}")).collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert!(parts[1].contains(&format!("Content-Range: bytes 0-3/{size}")));
    assert!(parts[1].ends_with(&format!(
        "\r\n\r\n{}\r\n",
        String::from_utf8_lossy(&content[0..4])
    )));
    assert!(parts[2].contains(&format!("Content-Range: bytes 10-12/{size}")));
    assert_eq!(parts[3], "--\r\n");
    // If-None-Match.
    let response = f
        .client
        .get(f.url(path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    let response = f
        .client
        .get(f.url(path))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A Host that is not the mirror's (DNS rebinding) is refused.
    let response = f
        .client
        .get(f.url(path))
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn four_clients_missing_the_same_file_cause_one_download() {
    let file = "big-model-Q4_K_M.gguf";
    let f = Fixture::start(EmulatorConfig::demo_with_big_size(24 << 20)).await;
    // Slow enough that the four requests overlap the one download.
    f.emulator()
        .faults()
        .set(FaultRule::global(Fault::TotalBandwidth(20_000_000)).on("/cdn/*"));
    let content = f.content("demo/big", file);
    let path = format!("/demo/big/resolve/main/{file}");
    let clients = (0..4).map(|_| {
        let request = f
            .client
            .get(f.url(&path))
            .bearer_auth(f.mirror.token().expose());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        }
    });
    let bodies = futures::future::join_all(clients).await;
    let expected = hex::encode(sha2::Sha256::digest(&content));
    for body in &bodies {
        assert_eq!(body.len(), content.len());
        assert_eq!(hex::encode(sha2::Sha256::digest(body)), expected);
    }
    assert_one_download(&f, "demo/big", file, content.len() as u64);
    let served = f.emulator().log().bytes_served_matching(file);
    // The file is in the cache now: served from it, no new upstream bytes.
    let again = f.get(&path, true, Some("bytes=0-99")).await;
    assert_eq!(again.status(), 206);
    assert_eq!(again.bytes().await.unwrap(), &content[..100]);
    assert_eq!(f.emulator().log().bytes_served_matching(file), served);
}

#[tokio::test]
async fn a_client_whose_download_is_deferred_is_told_why_at_once() {
    const GIB: u64 = 1 << 30;
    let mut probes = Probes::fake();
    // A full disk: the pull-through job is deferred by the reserve.
    let disk = FakeDisk::new(
        DiskSpace {
            total: 100 * GIB,
            available: 0,
        },
        probes.changes.clone(),
    );
    probes.disk = Arc::new(disk.clone());
    let f = Fixture::start_with(EmulatorConfig::demo(), probes).await;
    let path = "/demo/tiny-gguf/resolve/main/README.md";
    let response = f.get(path, true, None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let message = response.headers()["x-error-message"]
        .to_str()
        .unwrap()
        .to_string();
    // The reason, not the start timeout's "has not started yet".
    assert!(message.contains("waits:"), "{message}");
    assert!(message.to_lowercase().contains("disk"), "{message}");
    // A second client joins the same deferred job and hears the same.
    let response = f.get(path, true, None).await;
    assert_eq!(response.status(), 503);
    assert!(
        response.headers()["x-error-message"]
            .to_str()
            .unwrap()
            .contains("(job 1)")
    );
    // Space is freed: the job runs and the next request is served.
    disk.set_available(90 * GIB);
    let content = f.content(TINY, "README.md");
    let mut served = None;
    for _ in 0..100 {
        let response = f.get(path, true, None).await;
        if response.status() == 200 {
            served = Some(response.bytes().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some(&content[..]));
}

#[tokio::test]
async fn cached_files_are_served_with_the_upstream_gone() {
    let mut f = Fixture::start(EmulatorConfig::demo()).await;
    f.pull(TINY).await;
    let content = f.content(TINY, "README.md");
    f.emulator.take().unwrap().shutdown().await;
    for token in [true, false] {
        let response = f
            .get("/demo/tiny-gguf/resolve/main/README.md", token, None)
            .await;
        assert_eq!(response.status(), 200, "token: {token}");
        assert_eq!(response.bytes().await.unwrap(), content);
    }
    let response = f
        .get(
            "/api/models/demo/tiny-gguf/tree/main?recursive=true",
            true,
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let tree: serde_json::Value = response.json().await.unwrap();
    assert!(
        tree.as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "README.md")
    );
    // A miss with the upstream gone says so (a gateway error), and is not a crash.
    let response = f
        .get("/demo/tiny-gguf/resolve/main/missing.bin", true, None)
        .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    drop(f.dir);
}

// --- The real Python clients through the mirror -------------------------------------------

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// Runs `script` with `python` against the mirror, into the cache `cache`; returns stdout.
fn run_python(
    python: &Path,
    mirror: &MirrorServer,
    cache: &Path,
    token: bool,
    env: &[(&str, &str)],
    script: &str,
) -> String {
    let mut cmd = Command::new(python);
    for name in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("HF_HOME", cache.parent().unwrap().join("hf-home"))
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", mirror.url())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1");
    if token {
        cmd.env("HF_TOKEN", mirror.token().expose());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.arg("-c").arg(script).output().unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `snapshot_download` of a cached repo (a hit) and `hf_hub_download` of files the cache lacks
/// (misses fetched through the mirror), byte for byte against the emulator.
async fn python_through_the_mirror(python: PathBuf, env: &[(&str, &str)]) {
    let f = Fixture::start(EmulatorConfig::demo_with_big_size(64 << 20)).await;
    f.pull(TINY).await;
    let cache = f.dir.path().join("python-cache");
    std::fs::create_dir_all(&cache).unwrap();
    // A hit, without the token: every file of the cached repo.
    let script = "import huggingface_hub as h, os\n\
        p = h.snapshot_download('demo/tiny-gguf')\n\
        for root, _, files in os.walk(p):\n\
        \x20   for name in files:\n\
        \x20       full = os.path.join(root, name)\n\
        \x20       print(os.path.relpath(full, p) + '\\t' + full)\n";
    let (mirror, python_ref) = (&f.mirror, &python);
    let listed =
        tokio::task::block_in_place(|| run_python(python_ref, mirror, &cache, false, env, script));
    let mut seen = 0;
    for line in listed.lines() {
        let (name, full) = line.split_once('\t').unwrap();
        assert_eq!(
            std::fs::read(full).unwrap(),
            f.content(TINY, name),
            "{name}"
        );
        seen += 1;
    }
    let cached = f
        .engine
        .served_files(
            &TINY.parse().unwrap(),
            &f.engine
                .cached_commit(&TINY.parse().unwrap(), "main")
                .unwrap(),
        )
        .len();
    assert_eq!(seen, cached, "{listed}");
    // Misses, with the token: a small file and a 64 MiB one (hf_transfer takes files > 50 MB).
    let big = "big-model-Q4_K_M.gguf";
    let script = format!(
        "import huggingface_hub as h\n\
         print(h.hf_hub_download('demo/big', 'config.json'))\n\
         print(h.hf_hub_download('demo/big', '{big}'))\n"
    );
    let paths =
        tokio::task::block_in_place(|| run_python(python_ref, mirror, &cache, true, env, &script));
    let paths: Vec<&str> = paths.lines().collect();
    assert_eq!(
        std::fs::read(paths[0]).unwrap(),
        f.content("demo/big", "config.json")
    );
    let content = f.content("demo/big", big);
    let got = std::fs::read(paths[1]).unwrap();
    assert_eq!(got.len(), content.len());
    assert!(got == content, "the big file differs");
    // And it is in our cache too, fetched from upstream once.
    let commit = Path::new(paths[1])
        .parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        f.engine
            .served_file(&"demo/big".parse().unwrap(), &commit, big)
            .is_some()
    );
    assert_one_download(&f, "demo/big", big, content.len() as u64);
}

/// One download of `path` from upstream, whatever the number of clients: one queue job for it,
/// and less than twice its bytes served upstream. (A loaded machine may see a stalled range
/// asked again, so the bytes are not an exact count; a second download would double them.)
fn assert_one_download(f: &Fixture, repo: &str, path: &str, size: u64) {
    let jobs: Vec<_> = f
        .engine
        .jobs()
        .unwrap()
        .into_iter()
        .filter(|job| job.repo.to_string() == repo && job.selection.files == [path])
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let served = f.emulator().log().bytes_served_matching(path);
    assert!(
        served >= size && served < 2 * size,
        "{served} bytes served upstream for a file of {size}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_2_4_downloads_through_the_mirror() {
    let python = hub_emulator::python::python_with_huggingface_hub(&target_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    python_through_the_mirror(python, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_0_36_with_hf_transfer_downloads_through_the_mirror() {
    let python = hub_emulator::python::python_with_legacy_huggingface_hub(&target_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    let has_transfer = Command::new(&python)
        .args(["-c", "import hf_transfer"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_transfer,
        "hf_transfer is not installed in {}: scripts/setup.sh installs it",
        python.display()
    );
    python_through_the_mirror(python, &[("HF_HUB_ENABLE_HF_TRANSFER", "1")]).await;
}
