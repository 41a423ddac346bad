//! The team bucket against a real S3 API on 127.0.0.1 (`moto_server` from the test venv): a
//! pull pushed after verification; a second cache pulling from the bucket with no byte from
//! the Hub's CDN; a corrupted object rejected; a multipart upload resumed after a kill; a ref
//! one member moved picked up by another on the next lookup; with the Hub unreachable, a pull
//! going by the bucket's ref and manifest alone, its bytes checked against the stored hashes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hub_emulator::RepoKind;

use crate::common::{World, sha256_file};

const REPO: &str = "demo/tiny-gguf";
const Q4: &str = "tiny-model-Q4_K_M.gguf";
const BUCKET: &str = "team";
const PREFIX: &str = "cache";

/// A `moto_server` child process with one bucket; killed when dropped.
struct S3 {
    child: Child,
    port: u16,
}

impl S3 {
    fn start() -> S3 {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let program = hub_emulator::python::moto_server(&target).unwrap_or_else(|e| panic!("{e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s3 = S3 { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while s3.request("GET", "/", &[]).is_none() {
            assert!(Instant::now() < deadline, "moto_server did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, _) = s3.request("PUT", &format!("/{BUCKET}"), &[]).unwrap();
        assert_eq!(status, 200, "the bucket is created");
        s3
    }

    /// One plain HTTP/1.1 request; `None` when nothing answers.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        // An anonymous request cannot read private objects; moto checks no signature (it
        // enforces no IAM policy), so a header naming the test key is enough.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Connection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..split]).to_string();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut body = answer[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = unchunk(&body);
        }
        Some((status, body))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The bucket's listing (XML), for failure messages.
    fn listing(&self) -> String {
        self.request("GET", &format!("/{BUCKET}?list-type=2"), &[])
            .map(|(status, body)| format!("{status} {}", String::from_utf8_lossy(&body)))
            .unwrap_or_default()
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        match self.request("GET", &format!("/{BUCKET}/{PREFIX}/{key}"), &[]) {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    fn put_object(&self, key: &str, bytes: &[u8]) {
        let (status, _) = self
            .request("PUT", &format!("/{BUCKET}/{PREFIX}/{key}"), bytes)
            .unwrap();
        assert_eq!(status, 200);
    }

    /// The variables that point `mcache` at this bucket (test credentials: moto takes any).
    fn env(&self, push: bool) -> Vec<(&'static str, String)> {
        vec![
            ("MODEL_CACHE_BUCKET", format!("s3://{BUCKET}/{PREFIX}")),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key-not-logged".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "MODEL_CACHE_BUCKET_PUSH",
                if push { "1" } else { "0" }.into(),
            ),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn run(world: &World, args: &[&str], env: &[(&'static str, String)]) -> crate::common::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.run_with_env(args, &env)
}

fn commit_of(world: &World, revision: &str) -> String {
    world
        .emulator
        .catalog()
        .resolve(RepoKind::Model, REPO, revision)
        .unwrap()
        .sha
        .clone()
}

#[test]
fn a_pull_is_pushed_and_another_cache_pulls_it_from_the_bucket_not_the_cdn() {
    let s3 = S3::start();
    let member_a = World::new();
    let pulled = run(
        &member_a,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(true),
    );
    pulled.ok();
    assert!(
        !pulled.stderr.contains("test-secret-key-not-logged"),
        "no credential in messages"
    );
    let sha = member_a.sha256(REPO, Q4);
    let object = s3
        .object(&format!("models--demo--tiny-gguf/blobs/{sha}"))
        .unwrap_or_else(|| panic!("the verified blob was pushed: {}", s3.listing()));
    assert_eq!(sha256_hex(&object), sha);
    let main = commit_of(&member_a, "main");
    assert_eq!(
        s3.object("models--demo--tiny-gguf/refs/main").as_deref(),
        Some(main.as_bytes()),
        "the ref was pushed after the blobs"
    );

    // Another member's cache: every LFS byte from the bucket, none from the Hub's CDN.
    let member_b = World::new();
    let run_b = run(
        &member_b,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(false),
    );
    let snapshot = run_b.ok().trim().to_string();
    assert_eq!(sha256_file(&Path::new(&snapshot).join(Q4)), sha);
    assert_eq!(member_b.cdn_bytes(), 0, "nothing came from the CDN");
    run(&member_b, &["verify", REPO], &[]).ok();
}

#[test]
fn a_corrupted_object_in_the_bucket_is_rejected_and_the_file_fetched_from_the_hub() {
    let s3 = S3::start();
    let member_a = World::new();
    run(
        &member_a,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(true),
    )
    .ok();
    let sha = member_a.sha256(REPO, Q4);
    let key = format!("models--demo--tiny-gguf/blobs/{sha}");
    let mut object = s3.object(&key).unwrap();
    let middle = object.len() / 2;
    object[middle] ^= 0x55;
    s3.put_object(&key, &object);

    let member_b = World::new();
    let run_b = run(
        &member_b,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(false),
    );
    let snapshot = run_b.ok().trim().to_string();
    assert_eq!(
        sha256_file(&Path::new(&snapshot).join(Q4)),
        sha,
        "only the Hub's bytes are linked"
    );
    assert!(
        member_b.cdn_bytes() > 0,
        "the file came from the CDN instead"
    );
    run(&member_b, &["verify", REPO], &[]).ok();
}

/// An endpoint nothing listens on: the Hub cannot be reached.
fn unreachable_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn with_the_hub_unreachable_a_member_pulls_by_the_buckets_ref_and_manifest() {
    let s3 = S3::start();
    let member_a = World::new();
    run(
        &member_a,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(true),
    )
    .ok();
    let sha = member_a.sha256(REPO, Q4);
    let main = commit_of(&member_a, "main");
    let manifest: serde_json::Value = serde_json::from_slice(
        &s3.object(&format!("models--demo--tiny-gguf/manifests/{main}.json"))
            .unwrap_or_else(|| panic!("the manifest was pushed: {}", s3.listing())),
    )
    .unwrap();
    let listed = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == Q4)
        .unwrap_or_else(|| panic!("the manifest lists the file: {manifest}"));
    assert_eq!(listed["etag"], sha.as_str());

    // Member B cannot reach the Hub: the team's ref, the manifest and the blobs are enough.
    let mut env = s3.env(false);
    env.push(("HF_ENDPOINT", unreachable_endpoint()));
    let member_b = World::new();
    let pulled = run(&member_b, &["pull", REPO, "--quant", "Q4_K_M"], &env);
    let snapshot = pulled.ok().trim().to_string();
    assert!(snapshot.ends_with(&main), "{snapshot}");
    assert_eq!(sha256_file(&Path::new(&snapshot).join(Q4)), sha);
    assert_eq!(member_b.cdn_bytes(), 0);
    run(&member_b, &["verify", REPO], &[]).ok();

    // A corrupted object is caught against the stored hash: nothing is linked, the error says
    // what happened.
    let key = format!("models--demo--tiny-gguf/blobs/{sha}");
    let mut object = s3.object(&key).unwrap();
    let middle = object.len() / 2;
    object[middle] ^= 0x55;
    s3.put_object(&key, &object);
    let member_c = World::new();
    let failed = run(&member_c, &["pull", REPO, "--quant", "Q4_K_M"], &env);
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    assert!(
        !member_c
            .hub_cache()
            .join("models--demo--tiny-gguf/snapshots")
            .join(&main)
            .join(Q4)
            .exists(),
        "no corrupted file is linked"
    );

    // Without a bucket an unreachable Hub is an error naming the network, as before.
    let member_d = World::new();
    let alone = member_d.run_with_env(
        &["pull", REPO, "--quant", "Q4_K_M"],
        &[("HF_ENDPOINT", env.last().unwrap().1.as_str())],
    );
    assert_ne!(alone.code, 0);
}

#[test]
fn a_ref_moved_by_one_member_is_what_another_gets_on_the_next_lookup() {
    let s3 = S3::start();
    let first = commit_of(&World::new(), "v1.0");
    let member_a = World::new();
    let latest = commit_of(&member_a, "main");
    assert_ne!(first, latest);
    // A member put the team on the older commit.
    s3.put_object("models--demo--tiny-gguf/refs/main", first.as_bytes());
    let member_b = World::new();
    let snapshot = run(
        &member_b,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(false),
    );
    assert!(
        snapshot.ok().trim().ends_with(&first),
        "the team's ref wins: {}",
        snapshot.stdout
    );

    // Member A pulls the Hub's main and pushes it: the ref moves.
    run(&member_a, &["pull", REPO, "--quant", "Q4_K_M"], &[]).ok();
    let pushed = run(&member_a, &["--json", "push", REPO], &s3.env(false)).json();
    assert_eq!(pushed["commit"], latest.as_str());
    assert_eq!(
        s3.object("models--demo--tiny-gguf/refs/main").as_deref(),
        Some(latest.as_bytes())
    );
    let again = run(
        &member_b,
        &["pull", REPO, "--quant", "Q4_K_M"],
        &s3.env(false),
    );
    assert!(again.ok().trim().ends_with(&latest), "{}", again.stdout);
    assert_eq!(
        std::fs::read_to_string(
            member_b
                .hub_cache()
                .join("models--demo--tiny-gguf")
                .join("refs")
                .join("main")
        )
        .unwrap(),
        latest
    );
}

#[test]
fn a_multipart_push_killed_halfway_resumes_at_the_next_part() {
    let s3 = S3::start();
    let member = World::new();
    run(&member, &["pull", "demo/big"], &[]).ok();
    let files = member
        .emulator
        .catalog()
        .resolve(RepoKind::Model, "demo/big", "main")
        .unwrap();
    let big = files
        .files
        .values()
        .find(|f| f.path.ends_with(".gguf"))
        .unwrap()
        .path
        .clone();
    let sha = member.sha256("demo/big", &big);
    let key = format!("models--demo--big/blobs/{sha}");

    let mut command = member.command();
    for (name, value) in s3.env(false) {
        command.env(name, value);
    }
    let mut child = command
        .args(["push", "demo/big"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    // Hold the server still as soon as the first part is acknowledged, so the push is killed
    // halfway whatever the speed of this machine; then let the server go on.
    s3.signal("-STOP");
    assert!(first.starts_with("pushed part 1/"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
    s3.signal("-CONT");
    assert!(
        s3.object(&key).is_none(),
        "an unfinished upload is not an object"
    );

    let resumed = run(&member, &["--json", "push", "demo/big"], &s3.env(false));
    let report = resumed.json();
    assert!(
        report["resumed_parts"].as_u64().unwrap() >= 1,
        "{report:#}\n{}",
        resumed.stderr
    );
    assert!(
        !resumed.stderr.contains("pushed part 1/"),
        "{}",
        resumed.stderr
    );
    let object = s3.object(&key).expect("the upload completed");
    assert_eq!(sha256_hex(&object), sha);
}
