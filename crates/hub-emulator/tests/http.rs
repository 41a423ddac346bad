//! The emulator's HTTP behaviour, checked with a plain HTTP client: routes, pagination, ranges,
//! every error status, and each fault.

use std::time::Duration;

use hub_emulator::faults::{Fault, FaultRule};
use hub_emulator::{Emulator, EmulatorConfig, FileChange, RepoKind};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

async fn start() -> (Emulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::demo_with_big_size(64 << 20);
    config.hash_cache_dir = Some(dir.path().to_path_buf());
    (Emulator::start(config).await.unwrap(), dir)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn git_sha1(b: &[u8]) -> String {
    use sha1::Digest as _;
    let mut s = sha1::Sha1::new();
    s.update(format!("blob {}\0", b.len()).as_bytes());
    s.update(b);
    hex::encode(s.finalize())
}

const GGUF: &str = "tiny-model-Q4_K_M.gguf";

/// HEADs the resolve URL of an LFS file and returns the CDN location.
async fn cdn_location(emu: &Emulator, repo: &str, file: &str) -> String {
    let r = client()
        .head(format!("{}/{repo}/resolve/main/{file}", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    h(r.headers(), "location").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn repo_info_with_and_without_blobs() {
    let (emu, _d) = start().await;
    let c = client();
    let v: serde_json::Value = c
        .get(format!("{}/api/models/demo/tiny-gguf", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["id"], "demo/tiny-gguf");
    assert_eq!(v["private"], false);
    assert_eq!(v["gated"], false);
    let sha = v["sha"].as_str().unwrap();
    assert_eq!(sha.len(), 40);
    let names: Vec<&str> = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    for f in [
        "README.md",
        "config.json",
        GGUF,
        "tiny-model-Q8_0-00002-of-00003.gguf",
        "IQ4_XS/tiny-model-IQ4_XS.gguf",
        "mmproj-tiny-model-f16.gguf",
    ] {
        assert!(names.contains(&f), "{f} missing from {names:?}");
    }
    assert!(v["siblings"][0].get("size").is_none());

    let v: serde_json::Value = c
        .get(format!(
            "{}/api/models/demo/tiny-gguf/revision/main?blobs=true",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["sha"], sha);
    let sib = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rfilename"] == GGUF)
        .unwrap();
    let loc = cdn_location(&emu, "demo/tiny-gguf", GGUF).await;
    let body = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sib["size"], body.len() as u64);
    assert_eq!(sib["lfs"]["sha256"], sha256_hex(&body));
    assert_eq!(sib["lfs"]["size"], body.len() as u64);
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        sha256_hex(&body),
        body.len()
    );
    assert_eq!(sib["lfs"]["pointerSize"], pointer.len() as u64);
    assert_eq!(sib["blobId"], git_sha1(pointer.as_bytes()));
    let readme = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rfilename"] == "README.md")
        .unwrap();
    assert!(readme.get("lfs").is_none());

    // Revisions: tag, PR (encoded and not), commit sha, dataset, legacy one-segment id.
    let get = |p: String| {
        let c = c.clone();
        async move {
            let r = c.get(p).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let tag = get(format!(
        "{}/api/models/demo/tiny-gguf/revision/v1.0",
        emu.url()
    ))
    .await;
    assert_ne!(tag["sha"], sha);
    let pr = get(format!(
        "{}/api/models/demo/tiny-gguf/revision/refs%2Fpr%2F1",
        emu.url()
    ))
    .await;
    assert!(
        pr["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["rfilename"] == "tiny-model-Q4_0.gguf")
    );
    let by_sha = get(format!(
        "{}/api/models/demo/tiny-gguf/revision/{sha}",
        emu.url()
    ))
    .await;
    assert_eq!(by_sha["sha"], sha);
    let ds = get(format!("{}/api/datasets/demo/tiny-dataset", emu.url())).await;
    assert_eq!(ds["id"], "demo/tiny-dataset");
    let legacy = get(format!("{}/api/models/tiny-legacy", emu.url())).await;
    assert_eq!(legacy["id"], "tiny-legacy");
    let refs = get(format!(
        "{}/api/models/demo/tiny-gguf/refs?include_prs=1",
        emu.url()
    ))
    .await;
    assert_eq!(refs["branches"][0]["targetCommit"], sha);
    assert_eq!(refs["tags"][0]["name"], "v1.0");
    assert_eq!(refs["pullRequests"][0]["ref"], "refs/pr/1");
}

#[tokio::test(flavor = "multi_thread")]
async fn tree_listing_paginates_with_absolute_links() {
    let (emu, _d) = start().await;
    emu.set_page_size(4);
    let c = client();
    let mut url = format!(
        "{}/api/models/demo/tiny-gguf/tree/main?recursive=True&expand=False",
        emu.url()
    );
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<serde_json::Value> = r.json().await.unwrap();
        assert!(page.len() <= 4);
        all.extend(page);
        pages += 1;
        match link {
            Some(l) => {
                assert!(l.starts_with(&format!("<{}/", emu.url())), "{l}");
                assert!(l.ends_with("; rel=\"next\""));
                url = l[1..l.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    assert!(pages >= 4);
    let paths: Vec<&str> = all.iter().map(|e| e["path"].as_str().unwrap()).collect();
    let mut dedup = paths.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), paths.len(), "no entry twice");
    assert!(paths.contains(&"IQ4_XS"));
    assert!(paths.contains(&"IQ4_XS/tiny-model-IQ4_XS.gguf"));
    let dir = all.iter().find(|e| e["path"] == "IQ4_XS").unwrap();
    assert_eq!(dir["type"], "directory");
    let f = all.iter().find(|e| e["path"] == GGUF).unwrap();
    assert_eq!(f["type"], "file");
    assert_eq!(f["lfs"]["oid"].as_str().unwrap().len(), 64);
    // The same files as repo info lists.
    let info: serde_json::Value = c
        .get(format!("{}/api/models/demo/tiny-gguf", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = all.iter().filter(|e| e["type"] == "file").count();
    assert_eq!(files, info["siblings"].as_array().unwrap().len());

    // Sub-path (encoded), non-recursive, expand, missing folder.
    emu.set_page_size(1000);
    let sub: Vec<serde_json::Value> = c
        .get(format!(
            "{}/api/models/demo/tiny-gguf/tree/main/IQ4_XS",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sub.len(), 1);
    assert_eq!(sub[0]["path"], "IQ4_XS/tiny-model-IQ4_XS.gguf");
    let ds: Vec<serde_json::Value> = c
        .get(format!(
            "{}/api/datasets/demo/tiny-dataset/tree/main/data?expand=true",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds[0]["lastCommit"]["id"].as_str().unwrap().len(), 40);
    assert_eq!(ds[0]["securityFileStatus"]["status"], "safe");
    let root: Vec<serde_json::Value> = c
        .get(format!("{}/api/models/demo/tiny-gguf/tree/main", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        root.iter()
            .all(|e| !e["path"].as_str().unwrap().contains('/'))
    );
    let r = c
        .get(format!(
            "{}/api/models/demo/tiny-gguf/tree/main/nope%2Fdir",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(h(r.headers(), "x-error-code"), "EntryNotFound");

    // paths-info
    let r = c
        .post(format!(
            "{}/api/models/demo/tiny-gguf/paths-info/main",
            emu.url()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("paths=config.json&paths=IQ4_XS&paths=missing.bin&expand=false")
        .send()
        .await
        .unwrap();
    let v: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(v.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_regular_and_lfs_files_with_ranges() {
    let (emu, _d) = start().await;
    let c = client();
    let url = format!("{}/demo/tiny-gguf/resolve/main/config.json", emu.url());
    let head = c
        .head(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let commit = h(head.headers(), "x-repo-commit").to_string();
    assert_eq!(commit.len(), 40);
    let etag = h(head.headers(), "etag").trim_matches('"').to_string();
    let len: u64 = h(head.headers(), "content-length").parse().unwrap();
    assert!(head.headers().get("x-linked-etag").is_none());
    let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len() as u64, len);
    assert_eq!(git_sha1(&body), etag);
    assert_eq!(
        emu.file_etag(RepoKind::Model, "demo/tiny-gguf", "main", "config.json")
            .unwrap(),
        etag
    );
    let r = c
        .get(&url)
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(h(r.headers(), "content-range"), format!("bytes 0-0/{len}"));
    assert_eq!(&r.bytes().await.unwrap()[..], &body[..1]);

    // LFS: 302 to another origin with the identity headers on the redirect itself.
    let url = format!("{}/demo/tiny-gguf/resolve/main/{GGUF}", emu.url());
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(h(r.headers(), "x-repo-commit"), commit);
    let linked = h(r.headers(), "x-linked-etag")
        .trim_matches('"')
        .to_string();
    let size: u64 = h(r.headers(), "x-linked-size").parse().unwrap();
    let loc = h(r.headers(), "location").to_string();
    assert!(loc.starts_with(&format!("{}/", emu.cdn_url())));
    assert_ne!(emu.cdn_url(), emu.url());
    let full = c.get(&loc).send().await.unwrap();
    assert_eq!(h(full.headers(), "accept-ranges"), "bytes");
    let full = full.bytes().await.unwrap();
    assert_eq!(full.len() as u64, size);
    assert_eq!(sha256_hex(&full), linked);
    assert_eq!(&full[..4], b"GGUF");
    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        (
            &format!("bytes={}-", size - 10) as &str,
            size - 10,
            size - 1,
        ),
        ("bytes=-5", size - 5, size - 1),
        (&format!("bytes=5-{}", size + 100) as &str, 5, size - 1),
    ] {
        let r = c.get(&loc).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            h(r.headers(), "content-range"),
            format!("bytes {start}-{end}/{size}")
        );
        let b = r.bytes().await.unwrap();
        assert_eq!(&b[..], &full[start as usize..=end as usize], "{range}");
    }
    let r = c
        .get(&loc)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h(r.headers(), "content-range"), format!("bytes */{size}"));
    // The CDN tolerates gzip requests and serves identity bytes.
    let r = c
        .get(&loc)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len() as u64, size);

    // Datasets with a space in the file name; PR revisions in resolve URLs.
    let r = c
        .get(format!(
            "{}/datasets/demo/tiny-dataset/resolve/main/data/train%20file.csv",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("id,text"));
    let r = c
        .head(format!(
            "{}/demo/tiny-gguf/resolve/refs%2Fpr%2F1/tiny-model-Q4_0.gguf",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = c
        .head(format!(
            "{}/demo/tiny-gguf/resolve/main/tiny-model-Q4_0.gguf",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(emu.log().range_requests() >= 7);
}

async fn status_and_code(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
) -> (StatusCode, String, HeaderMap) {
    let mut rb = c.request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let code = r
        .headers()
        .get("x-error-code")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), code, r.headers().clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_the_hubs() {
    let (emu, _d) = start().await;
    let c = client();
    let u = emu.url();
    use reqwest::Method as M;
    let cases: Vec<(M, String, Option<&str>, u16, &str)> = vec![
        (
            M::GET,
            format!("{u}/api/models/demo/missing"),
            None,
            401,
            "RepoNotFound",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/missing"),
            Some("hf_demo_token"),
            404,
            "RepoNotFound",
        ),
        (
            M::HEAD,
            format!("{u}/demo/missing/resolve/main/a.txt"),
            None,
            401,
            "RepoNotFound",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/private"),
            None,
            401,
            "RepoNotFound",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/private"),
            Some("hf_other_token"),
            404,
            "RepoNotFound",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/private"),
            Some("hf_demo_token"),
            200,
            "",
        ),
        (
            M::HEAD,
            format!("{u}/demo/private/resolve/main/config.json"),
            Some("hf_demo_token"),
            200,
            "",
        ),
        (M::GET, format!("{u}/api/models/demo/gated"), None, 200, ""),
        (
            M::HEAD,
            format!("{u}/demo/gated/resolve/main/config.json"),
            None,
            401,
            "GatedRepo",
        ),
        (
            M::HEAD,
            format!("{u}/demo/gated/resolve/main/config.json"),
            Some("hf_other_token"),
            403,
            "GatedRepo",
        ),
        (
            M::HEAD,
            format!("{u}/demo/gated/resolve/main/config.json"),
            Some("hf_demo_token"),
            200,
            "",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/tiny-gguf/revision/nope"),
            None,
            404,
            "RevisionNotFound",
        ),
        (
            M::HEAD,
            format!("{u}/demo/tiny-gguf/resolve/nope/config.json"),
            None,
            404,
            "RevisionNotFound",
        ),
        (
            M::GET,
            format!("{u}/api/models/demo/tiny-gguf/tree/nope"),
            None,
            404,
            "RevisionNotFound",
        ),
        (
            M::HEAD,
            format!("{u}/demo/tiny-gguf/resolve/main/missing.bin"),
            None,
            404,
            "EntryNotFound",
        ),
        (M::GET, format!("{u}/api/agent-harnesses"), None, 404, ""),
    ];
    for (method, url, token, status, code) in cases {
        let (s, got, headers) = status_and_code(&c, method.clone(), url.clone(), token).await;
        assert_eq!(
            (s.as_u16(), got.as_str()),
            (status, code),
            "{method} {url} {token:?}"
        );
        if status >= 400 && !code.is_empty() {
            assert!(!h(&headers, "x-error-message").is_empty());
        }
        if code == "EntryNotFound" {
            assert_eq!(h(&headers, "x-repo-commit").len(), 40);
        }
    }
    // JSON body with `error`.
    let r = c
        .get(format!("{u}/api/models/demo/missing"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].is_string());
    // An unknown token is refused everywhere, without an error code.
    let (s, code, headers) = status_and_code(
        &c,
        M::GET,
        format!("{u}/api/models/demo/tiny-gguf"),
        Some("hf_bogus"),
    )
    .await;
    assert_eq!((s.as_u16(), code.as_str()), (401, ""));
    assert_eq!(
        h(&headers, "x-error-message"),
        "Invalid credentials in Authorization header"
    );
    // The log keeps no token in clear.
    let recs = emu.requests();
    assert!(recs.iter().any(|r| r.authorization.is_some()));
    assert!(
        recs.iter()
            .all(|r| !format!("{r:?}").contains("hf_demo_token"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_faults_answer_then_recover() {
    let (emu, _d) = start().await;
    let c = client();
    let url = format!("{}/api/models/demo/tiny-gguf", emu.url());
    emu.faults().set(
        FaultRule::global(Fault::ServerError(503))
            .on("/api/*")
            .times(2),
    );
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);

    emu.faults().set("rate-limit=7#1".parse().unwrap());
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(r.headers(), "retry-after"), "7");
    assert_eq!(h(r.headers(), "ratelimit"), "\"api\";r=0;t=7");
    assert!(r.headers().contains_key("ratelimit-policy"));
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);

    // A glob that does not match leaves other paths alone.
    emu.faults()
        .set(FaultRule::global(Fault::ServerError(500)).on("/cdn/*"));
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    emu.faults().clear();
    assert!(emu.faults().active().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn body_faults_shape_the_cdn_response() {
    let (emu, _d) = start().await;
    let c = client();
    let loc = cdn_location(&emu, "demo/tiny-gguf", GGUF).await;
    let full = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
    let cdn_path = reqwest::Url::parse(&loc).unwrap().path().to_string();

    // Dropped connection after N bytes: the client gets exactly N bytes, then an error.
    emu.log().clear();
    emu.faults().set(
        FaultRule::global(Fault::DropAfter(300_000))
            .on("/cdn/*")
            .times(1),
    );
    let mut r = c.get(&loc).send().await.unwrap();
    let mut got = 0usize;
    let err = loop {
        match r.chunk().await {
            Ok(Some(b)) => got += b.len(),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    assert!(err.is_some(), "the body must end with an error");
    assert_eq!(got, 300_000);
    assert_eq!(emu.log().bytes_served_for(&cdn_path), 300_000);
    // The budget was one request. (A fresh client: the aborted connection must not be reused.)
    drop(r);
    let c = client();
    assert_eq!(
        c.get(&loc)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        full.len()
    );

    // Ignored Range: 200 with the whole body.
    emu.faults()
        .set(FaultRule::global(Fault::IgnoreRange).times(1));
    let r = c
        .get(&loc)
        .header("range", "bytes=10-20")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), full.len());

    // Corrupted bytes: the same headers, flipped bytes exactly in the range.
    emu.faults().set(
        FaultRule::global(Fault::Corrupt {
            start: 1000,
            end: 1010,
        })
        .times(1),
    );
    let r = c
        .get(&loc)
        .header("range", "bytes=990-1019")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let b = r.bytes().await.unwrap();
    for (i, byte) in b.iter().enumerate() {
        let off = 990 + i;
        let want = if (1000..1010).contains(&off) {
            !full[off]
        } else {
            full[off]
        };
        assert_eq!(*byte, want, "offset {off}");
    }

    // Stall: headers arrive, then silence; a client with a read timeout gives up.
    emu.faults().set(
        FaultRule::global(Fault::Stall {
            after_bytes: 1000,
            duration: Duration::from_secs(30),
        })
        .times(1),
    );
    let slow = reqwest::Client::builder()
        .read_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut r = slow.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut got = 0;
    let timed_out = loop {
        match r.chunk().await {
            Ok(Some(b)) => got += b.len(),
            Ok(None) => break false,
            Err(e) => break e.is_timeout(),
        }
    };
    assert!(timed_out);
    assert_eq!(got, 1000);

    // Latency and bandwidth caps: a client with a short timeout cannot finish; without the
    // fault it can (the margins are 10x and more, so this does not measure time).
    emu.faults().set(
        FaultRule::global(Fault::Latency(Duration::from_secs(20)))
            .on("/cdn/*")
            .times(1),
    );
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(quick.get(&loc).send().await.unwrap_err().is_timeout());
    for fault in [
        Fault::ConnectionBandwidth(50_000),
        Fault::TotalBandwidth(50_000),
    ] {
        emu.faults()
            .set(FaultRule::global(fault.clone()).on("/cdn/*").times(1));
        let res = async { quick.get(&loc).send().await?.bytes().await }.await;
        assert!(res.unwrap_err().is_timeout(), "{fault:?}");
    }
    assert_eq!(
        quick
            .get(&loc)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        full.len()
    );
    assert!(emu.faults().active().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn content_changes_upstream_and_branches_move() {
    let (emu, _d) = start().await;
    let c = client();
    let url = format!("{}/demo/tiny-gguf/resolve/main/{GGUF}", emu.url());
    let r = c.head(&url).send().await.unwrap();
    let old_commit = h(r.headers(), "x-repo-commit").to_string();
    let old_etag = h(r.headers(), "x-linked-etag").to_string();
    let old_loc = h(r.headers(), "location").to_string();
    let old_body = c.get(&old_loc).send().await.unwrap().bytes().await.unwrap();

    let new_commit = emu
        .change_file(RepoKind::Model, "demo/tiny-gguf", "main", GGUF)
        .unwrap();
    assert_ne!(new_commit, old_commit);
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(h(r.headers(), "x-repo-commit"), new_commit);
    let new_etag = h(r.headers(), "x-linked-etag").to_string();
    assert_ne!(new_etag, old_etag);
    // A resume against the stale URL with the old validator gets the whole new file.
    let r = c
        .get(&old_loc)
        .header("range", "bytes=100-")
        .header("if-range", &old_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let new_body = r.bytes().await.unwrap();
    assert_eq!(new_body.len(), old_body.len());
    assert_ne!(new_body, old_body);
    assert_eq!(format!("\"{}\"", sha256_hex(&new_body)), new_etag);
    // With the current validator the range is honoured.
    let r = c
        .get(&old_loc)
        .header("range", "bytes=100-")
        .header("if-range", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    // The old commit still resolves, with the old content.
    let r = c
        .head(format!(
            "{}/demo/tiny-gguf/resolve/{old_commit}/{GGUF}",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(h(r.headers(), "x-linked-etag"), old_etag);

    // Moving a branch with new files.
    let sha = emu
        .move_branch(
            RepoKind::Model,
            "demo/tiny-gguf",
            "main",
            "Add notes",
            vec![
                FileChange::put("notes.txt", "hello\n"),
                FileChange::Delete("README.md".into()),
            ],
        )
        .unwrap();
    let v: serde_json::Value = c
        .get(format!("{}/api/models/demo/tiny-gguf", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["sha"], sha);
    let names: Vec<&str> = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"notes.txt") && !names.contains(&"README.md"));
    assert!(
        emu.move_branch(RepoKind::Model, "demo/tiny-gguf", "nope", "x", vec![])
            .is_err()
    );
    assert!(
        emu.move_branch(RepoKind::Model, "demo/none", "main", "x", vec![])
            .is_err()
    );
}

/// An independent GGUF reader: checks the layout the generator promises.
fn parse_gguf(b: &[u8]) -> (std::collections::HashMap<String, String>, u64) {
    let mut p = 0usize;
    let u32_ = |p: &mut usize| {
        let v = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
        *p += 4;
        v
    };
    let u64_ = |p: &mut usize| {
        let v = u64::from_le_bytes(b[*p..*p + 8].try_into().unwrap());
        *p += 8;
        v
    };
    let string = |p: &mut usize| {
        let n = u64_(p) as usize;
        let s = String::from_utf8(b[*p..*p + n].to_vec()).unwrap();
        *p += n;
        s
    };
    fn value(b: &[u8], p: &mut usize, t: u32) -> String {
        let fixed = |p: &mut usize, n: usize| {
            let v = b[*p..*p + n].to_vec();
            *p += n;
            v
        };
        match t {
            0 | 1 | 7 => format!("{}", fixed(p, 1)[0]),
            2 | 3 => format!("{}", u16::from_le_bytes(fixed(p, 2).try_into().unwrap())),
            4 => format!("{}", u32::from_le_bytes(fixed(p, 4).try_into().unwrap())),
            5 | 6 => format!("{:?}", fixed(p, 4)),
            10..=12 => format!("{:?}", fixed(p, 8)),
            8 => {
                let n = u64::from_le_bytes(fixed(p, 8).try_into().unwrap()) as usize;
                String::from_utf8(fixed(p, n)).unwrap()
            }
            9 => {
                let et = u32::from_le_bytes(fixed(p, 4).try_into().unwrap());
                let n = u64::from_le_bytes(fixed(p, 8).try_into().unwrap());
                for _ in 0..n {
                    value(b, p, et);
                }
                format!("array[{n}]")
            }
            _ => panic!("bad value type {t}"),
        }
    }
    assert_eq!(&b[..4], b"GGUF");
    p += 4;
    assert_eq!(u32_(&mut p), 3);
    let tensors = u64_(&mut p);
    let kvs = u64_(&mut p);
    let mut meta = std::collections::HashMap::new();
    for _ in 0..kvs {
        let k = string(&mut p);
        let t = u32_(&mut p);
        let v = value(b, &mut p, t);
        meta.insert(k, v);
    }
    let mut end = 0u64;
    for _ in 0..tensors {
        let _name = string(&mut p);
        let nd = u32_(&mut p);
        let elems: u64 = (0..nd).map(|_| u64_(&mut p)).product();
        let ty = u32_(&mut p);
        let off = u64_(&mut p);
        assert_eq!(off % 32, 0);
        let (be, bb) = match ty {
            0 => (1, 4),
            1 => (1, 2),
            2 => (32, 18),
            8 => (32, 34),
            10 => (256, 84),
            11 => (256, 110),
            12 => (256, 144),
            13 => (256, 176),
            14 => (256, 210),
            23 => (256, 136),
            _ => panic!("type {ty} not expected in the demo"),
        };
        assert_eq!(elems % be, 0);
        end = end.max(off + (elems / be * bb).next_multiple_of(32));
    }
    let data_start = (p as u64).next_multiple_of(32);
    (meta, data_start + end)
}

#[tokio::test(flavor = "multi_thread")]
async fn served_gguf_files_parse_and_match_their_names() {
    let (emu, _d) = start().await;
    let c = client();
    for (file, ftype) in [
        ("tiny-model-Q2_K.gguf", Some("10")),
        ("tiny-model-Q4_K_M.gguf", Some("15")),
        ("tiny-model-Q6_K.gguf", Some("18")),
        ("tiny-model-F16.gguf", Some("1")),
        ("IQ4_XS/tiny-model-IQ4_XS.gguf", Some("30")),
        ("tiny-model-Q8_0-00001-of-00003.gguf", Some("7")),
        ("tiny-model-Q8_0-00003-of-00003.gguf", None),
        ("mmproj-tiny-model-f16.gguf", Some("1")),
    ] {
        let loc = cdn_location(&emu, "demo/tiny-gguf", file).await;
        let b = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
        let (meta, expected_size) = parse_gguf(&b);
        assert_eq!(expected_size, b.len() as u64, "{file}");
        assert_eq!(
            meta.get("general.file_type").map(String::as_str),
            ftype,
            "{file}"
        );
        if file.contains("-of-") {
            assert_eq!(meta["split.count"], "3");
        }
        let arch = if file.starts_with("mmproj") {
            "clip"
        } else {
            "llama"
        };
        assert_eq!(meta["general.architecture"], arch);
        if file.contains("F16.gguf") {
            assert_eq!(meta["tokenizer.ggml.tokens"], "array[32000]");
        }
    }
    // safetensors shards agree with the index.
    let idx: serde_json::Value = c
        .get(format!(
            "{}/demo/tiny-safetensors/resolve/main/model.safetensors.index.json",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut total = 0u64;
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let loc = cdn_location(&emu, "demo/tiny-safetensors", shard).await;
        let b = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        let mut last = 0;
        for (name, t) in header.as_object().unwrap() {
            if name == "__metadata__" {
                continue;
            }
            assert_eq!(idx["weight_map"][name], shard);
            let end = t["data_offsets"][1].as_u64().unwrap();
            last = last.max(end);
        }
        assert_eq!((8 + n) as u64 + last, b.len() as u64);
        total += last;
    }
    assert_eq!(idx["metadata"]["total_size"], total);
}

#[tokio::test(flavor = "multi_thread")]
async fn repos_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("acme/real-model");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("config.json"), b"{}\n").unwrap();
    std::fs::write(root.join("sub/weights.bin"), vec![7u8; 5000]).unwrap();
    std::fs::create_dir_all(dir.path().join("datasets/acme/data")).unwrap();
    std::fs::write(dir.path().join("datasets/acme/data/a.csv"), b"x\n1\n").unwrap();
    let config = EmulatorConfig {
        repos: hub_emulator::catalog::repos_from_dir(dir.path()).unwrap(),
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await.unwrap();
    let c = client();
    let r = c
        .get(format!(
            "{}/acme/real-model/resolve/main/config.json",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"{}\n");
    let loc = cdn_location(&emu, "acme/real-model", "sub/weights.bin").await;
    assert_eq!(
        c.get(&loc)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        &vec![7u8; 5000][..]
    );
    let r = c
        .get(format!(
            "{}/datasets/acme/data/resolve/main/a.csv",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(hub_emulator::catalog::repos_from_dir(&dir.path().join("missing")).is_err());
}

#[test]
fn the_binary_prints_its_url_first() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hub-emulator"))
        .args([
            "serve",
            "--demo",
            "--big-repo-size",
            "8MB",
            "--page-size",
            "2",
            "--fault",
            "error=503@/api/models/demo/gated#1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        let r = c
            .get(format!("{url}/api/models/demo/tiny-gguf/tree/main"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("link"));
        let r = c
            .get(format!("{url}/api/models/demo/gated"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = c
            .get(format!("{url}/api/models/demo/gated"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hub-emulator"))
        .args(["serve", "--fault", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid fault `bogus`"));
}

#[test]
fn start_blocking_serves_from_sync_code() {
    let emu = Emulator::start_blocking(EmulatorConfig::demo_with_big_size(1 << 20)).unwrap();
    let etag = emu
        .file_etag(
            RepoKind::Model,
            "demo/tiny-safetensors",
            "main",
            "config.json",
        )
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = emu.url();
    let body = rt.block_on(async move {
        client()
            .get(format!(
                "{url}/demo/tiny-safetensors/resolve/main/config.json"
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert_eq!(git_sha1(&body), etag);
    assert!(emu.bytes_served() >= body.len() as u64);
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn model_search_filters_sorts_expands_and_pages() {
    let (emu, _d) = start().await;
    let c = client();
    let get = |query: String| {
        let c = c.clone();
        let url = format!("{}/api/models?{query}", emu.url());
        async move { c.get(url).send().await.unwrap() }
    };
    // Words match repo ids case-insensitively; private repos stay hidden without a token.
    let r = get("search=TINY&sort=downloads".into()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        ids(&v),
        ["demo/tiny-gguf", "demo/tiny-safetensors", "tiny-legacy"]
    );
    // Without `expand`, the Hub's default fields; no sizes.
    assert_eq!(v[0]["downloads"], 52_000);
    assert!(v[0].get("gguf").is_none() && v[0].get("lastModified").is_none());
    let all: serde_json::Value = get("sort=likes".into()).await.json().await.unwrap();
    assert_eq!(ids(&all)[0], "demo/tiny-safetensors");
    assert!(!ids(&all).contains(&"demo/private".to_string()));
    assert!(!ids(&all).contains(&"demo/tiny-dataset".to_string()));
    let private: serde_json::Value = c
        .get(format!("{}/api/models?search=private", emu.url()))
        .bearer_auth(hub_emulator::auth::DEMO_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&private), ["demo/private"]);
    // Filters are tags; `expand` sends only the fields named.
    let v: serde_json::Value =
        get("filter=safetensors&expand=safetensors&expand=downloads&expand=lastModified".into())
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(ids(&v), ["demo/tiny-safetensors"]);
    let m = v[0].as_object().unwrap();
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["_id", "downloads", "id", "lastModified", "safetensors"]
    );
    assert!(m["safetensors"]["parameters"]["BF16"].as_u64().unwrap() > 1_000_000);
    let v: serde_json::Value = get("search=tiny-gguf&expand=gguf".into())
        .await
        .json()
        .await
        .unwrap();
    // The Q4_K_M file's size at 4.89 bits per weight: a few million parameters.
    let params = v[0]["gguf"]["total"].as_u64().unwrap();
    assert!((2_000_000..5_000_000).contains(&params), "{params}");
    // Pages of 2 with an absolute `Link` to the next; the last page has none.
    let r = get("sort=downloads&limit=2".into()).await;
    let link = h(r.headers(), "link").to_string();
    let first: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ids(&first), ["demo/tiny-gguf", "demo/tiny-safetensors"]);
    assert!(
        link.starts_with(&format!("<{}/api/models?", emu.url())),
        "{link}"
    );
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let mut seen = ids(&first);
    let mut url = Some(next);
    while let Some(u) = url {
        let r = c.get(&u).send().await.unwrap();
        url = r.headers().get("link").map(|l| {
            l.to_str()
                .unwrap()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_string()
        });
        let page: serde_json::Value = r.json().await.unwrap();
        assert!(ids(&page).len() <= 2);
        seen.extend(ids(&page));
    }
    assert_eq!(
        seen,
        ids(&get("sort=downloads".into()).await.json().await.unwrap())
    );
    // Bad parameters are the Hub's 400.
    assert_eq!(
        get("sort=stars".into()).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get("limit=0".into()).await.status(),
        StatusCode::BAD_REQUEST
    );
}
