//! The emulator's Xet side (feature `xet`): the hub's Xet metadata and token route, the CAS
//! listener's guards, reconstructions that reassemble to the file's bytes, dedup between the
//! versions of a file, and the real `huggingface_hub` + `hf_xet` downloading through it all.
#![cfg(feature = "xet")]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hub_emulator::auth::{DEMO_TOKEN, OTHER_TOKEN};
use hub_emulator::faults::{Fault, FaultRule};
use hub_emulator::generate::fill_generated;
use hub_emulator::{Emulator, EmulatorConfig, FileChange, Listener, Repo, RepoKind};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

const WEIGHTS: &str = "model.safetensors";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn generated(seed: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    fill_generated(seed, 0, &mut v);
    v
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A model repo with one LFS file and a README (a git file), marked Xet or not.
fn repo(id: &str, body: Vec<u8>, xet: bool) -> Repo {
    let mut r = Repo::new(RepoKind::Model, id);
    if xet {
        r = r.with_xet();
    }
    r.commit(
        "main",
        "Upload",
        vec![
            FileChange::put(WEIGHTS, body),
            FileChange::put("README.md", "# A model\n"),
        ],
    );
    r
}

/// `org/xet` (public, Xet), `org/private-xet` (private, Xet) and `org/plain` (not Xet).
async fn start() -> Emulator {
    let mut private = repo("org/private-xet", generated(3, 300_000), true);
    private.private = true;
    let config = EmulatorConfig {
        repos: vec![
            repo("org/xet", generated(1, 3 << 20), true),
            private,
            repo("org/plain", generated(2, 2 << 20), false),
        ],
        hash_cache_dir: None,
        ..EmulatorConfig::default()
    };
    Emulator::start(config).await.unwrap()
}

async fn read_token(emu: &Emulator, repo: &str) -> String {
    let r = client()
        .get(format!(
            "{}/api/models/{repo}/xet-read-token/main",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    header(&r, "x-xet-access-token").unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_token_route_answers_json_and_headers() {
    let emu = start().await;
    let cas_url = emu.xet().unwrap().cas_url();
    let route =
        |repo: &str, rev: &str| format!("{}/api/models/{repo}/xet-read-token/{rev}", emu.url());
    let r = client().get(route("org/xet", "main")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = header(&r, "x-xet-access-token").unwrap().to_string();
    let exp = header(&r, "x-xet-token-expiration").unwrap().to_string();
    assert_eq!(header(&r, "x-xet-cas-url"), Some(cas_url.as_str()));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accessToken"], token.as_str());
    assert_eq!(body["exp"].as_u64().unwrap().to_string(), exp);
    assert_eq!(body["casUrl"], cas_url.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp: u64 = exp.parse().unwrap();
    assert!(
        exp > now + 3000 && exp <= now + 3601,
        "default TTL is 1 h: {exp} vs {now}"
    );

    // Also at a commit, as the resolve answer's link names it.
    let commit = emu
        .catalog()
        .resolve(RepoKind::Model, "org/xet", "main")
        .unwrap();
    let r = client()
        .get(route("org/xet", &commit.sha))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Access as for files: anonymous on a private repo 401, a token without access 404.
    let r = client()
        .get(route("org/private-xet", "main"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client()
        .get(route("org/private-xet", "main"))
        .bearer_auth(OTHER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client()
        .get(route("org/private-xet", "main"))
        .bearer_auth(DEMO_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "x-xet-access-token").is_some());

    // An unknown revision, and a repo that is not stored with Xet.
    let r = client().get(route("org/xet", "nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, "x-error-code"), Some("RevisionNotFound"));
    let r = client()
        .get(route("org/plain", "main"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(&r, "x-xet-access-token").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn xet_metadata_is_sent_for_the_lfs_files_of_xet_repos_only() {
    let emu = start().await;
    let xet = emu.xet().unwrap();
    let commit = emu
        .catalog()
        .resolve(RepoKind::Model, "org/xet", "main")
        .unwrap();
    let hash = xet
        .xet_hash(RepoKind::Model, "org/xet", "main", WEIGHTS)
        .unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));

    for method in [reqwest::Method::HEAD, reqwest::Method::GET] {
        let r = client()
            .request(
                method.clone(),
                format!("{}/org/xet/resolve/main/{WEIGHTS}", emu.url()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{method}");
        assert_eq!(header(&r, "x-xet-hash"), Some(hash.as_str()));
        let link = format!(
            "<{}/api/models/org/xet/xet-read-token/{}>; rel=\"xet-auth\"",
            emu.url(),
            commit.sha
        );
        assert_eq!(header(&r, "link"), Some(link.as_str()));
        // The LFS answer is unchanged: a redirect to the CDN with the linked etag and size.
        assert!(header(&r, "location").unwrap().starts_with(&emu.cdn_url()));
        assert!(header(&r, "x-linked-etag").is_some());
        assert_eq!(
            header(&r, "x-linked-size"),
            Some((3u64 << 20).to_string().as_str())
        );
        let expose = header(&r, "access-control-expose-headers").unwrap();
        assert!(expose.contains("X-Xet-Hash") && expose.contains("Link"));
    }
    // A git file of the Xet repo, and the LFS file of the other repo: no Xet metadata.
    for url in [
        format!("{}/org/xet/resolve/main/README.md", emu.url()),
        format!("{}/org/plain/resolve/main/{WEIGHTS}", emu.url()),
    ] {
        let r = client().head(&url).send().await.unwrap();
        assert!(
            r.status().is_success() || r.status() == StatusCode::FOUND,
            "{url}"
        );
        assert!(header(&r, "x-xet-hash").is_none(), "{url}");
        assert!(header(&r, "link").is_none(), "{url}");
        assert!(
            !header(&r, "access-control-expose-headers")
                .unwrap()
                .contains("Xet")
        );
    }

    // Tree listings and paths-info.
    let tree = |repo: &str| {
        let url = format!("{}/api/models/{repo}/tree/main?recursive=true", emu.url());
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    };
    let entries = tree("org/xet").await;
    let by_path =
        |entries: &[Value], p: &str| entries.iter().find(|e| e["path"] == p).cloned().unwrap();
    assert_eq!(by_path(&entries, WEIGHTS)["xetHash"], hash.as_str());
    assert!(by_path(&entries, "README.md").get("xetHash").is_none());
    let plain = tree("org/plain").await;
    assert!(plain.iter().all(|e| e.get("xetHash").is_none()));
    let info: Vec<Value> = client()
        .post(format!("{}/api/models/org/xet/paths-info/main", emu.url()))
        .form(&[("paths", WEIGHTS), ("paths", "README.md")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_path(&info, WEIGHTS)["xetHash"], hash.as_str());
    assert!(by_path(&info, "README.md").get("xetHash").is_none());
    // Nothing went to the CAS yet.
    assert_eq!(emu.log().bytes_served_by(Listener::Cas), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cas_listener_guards_its_routes() {
    let emu = start().await;
    let xet = emu.xet().unwrap();
    let cas = xet.cas_url();
    let hash = xet
        .xet_hash(RepoKind::Model, "org/xet", "main", WEIGHTS)
        .unwrap();
    let token = read_token(&emu, "org/xet").await;

    // Control and upload routes are out of reach.
    for path in [
        "/simulation/ping",
        "/simulation/xorbs",
        "/v1/get_xorb/default/x/",
    ] {
        let r = client().get(format!("{cas}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = client()
        .post(format!(
            "{cas}/simulation/set_config?config=url_expiration&value=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for path in [
        "/v1/shards",
        "/v2/shards",
        &format!("/v1/xorbs/default/{hash}"),
    ] {
        let r = client()
            .post(format!("{cas}{path}"))
            .bearer_auth(&token)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }

    // Reconstructions need the token: none, a wrong one, the Hub token, an expired one.
    let recon = format!("{cas}/v2/reconstructions/{hash}");
    let r = client().get(&recon).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for bad in ["xet_read_99999999999_00", DEMO_TOKEN] {
        let r = client().get(&recon).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    xet.set_token_ttl(Duration::ZERO);
    let (expired, _) = xet.read_token();
    xet.set_token_ttl(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = client()
        .get(&recon)
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client()
        .get(&recon)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();

    // Fetch URLs are presigned: they need no token, and an altered one is refused.
    let fetch = v["xorbs"].as_object().unwrap().values().next().unwrap()[0].clone();
    let url = fetch["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{cas}/v1/fetch_term?")), "{url}");
    let bytes = &fetch["ranges"][0]["bytes"];
    let (a, b) = (
        bytes["start"].as_u64().unwrap(),
        bytes["end"].as_u64().unwrap(),
    );
    let r = client()
        .get(&url)
        .header("range", format!("bytes={a}-{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().len() as u64, b - a + 1);
    // Range is honoured: a sub-range of a signed range.
    let r = client()
        .get(&url)
        .header("range", format!("bytes={a}-{}", a + 99))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let expected = format!("bytes {a}-{}/*", a + 99);
    assert_eq!(header(&r, "content-range"), Some(expected.as_str()));
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    let tampered = url.replace("X-Xet-Signature=", "X-Xet-Signature=0");
    let r = client().get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let unsigned = url.split("&X-Xet-Expires").next().unwrap();
    let r = client().get(unsigned).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Expired fetch URLs get 403; a new reconstruction gives fresh ones.
    xet.set_fetch_term_url_expiration(Duration::from_millis(200));
    let v: Value = client()
        .get(&recon)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short = v["xorbs"].as_object().unwrap().values().next().unwrap()[0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client()
        .get(&short)
        .header("range", format!("bytes={a}-{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("expired"));

    // Faults apply on the CAS listener as on the others.
    emu.faults().set(
        FaultRule::global(Fault::ServerError(503))
            .on("/v2/reconstructions/*")
            .times(1),
    );
    let r = client()
        .get(&recon)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = client()
        .get(&recon)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Body faults too: the next xorb range is cut after 1000 bytes, and counted as sent.
    xet.set_fetch_term_url_expiration(Duration::from_secs(3600));
    let v: Value = client()
        .get(&recon)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = v["xorbs"].as_object().unwrap().values().next().unwrap()[0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    emu.faults().set(
        FaultRule::global(Fault::DropAfter(1000))
            .on("/v1/fetch_term*")
            .times(1),
    );
    let r = client()
        .get(&url)
        .header("range", format!("bytes={a}-{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.is_err(), "the body was not cut");
    let last = emu
        .requests()
        .into_iter()
        .rfind(|r| r.listener == Listener::Cas && r.path == "/v1/fetch_term")
        .unwrap();
    assert_eq!(last.bytes_sent, 1000);
}

/// One fetch a reconstruction asks for: chunks `chunks` of `xorb`, bytes `bytes` (inclusive)
/// at `url`.
#[derive(Clone, Debug)]
struct Fetch {
    xorb: String,
    chunks: (u64, u64),
    url: String,
    bytes: (u64, u64),
}

/// The fetches of a V1 (`fetch_info`) or V2 (`xorbs`) reconstruction.
fn fetches(v: &Value) -> Vec<Fetch> {
    let mut out = Vec::new();
    let range = |r: &Value| (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap());
    if let Some(map) = v.get("xorbs").and_then(Value::as_object) {
        for (xorb, list) in map {
            for f in list.as_array().unwrap() {
                for r in f["ranges"].as_array().unwrap() {
                    out.push(Fetch {
                        xorb: xorb.clone(),
                        chunks: range(&r["chunks"]),
                        url: f["url"].as_str().unwrap().to_string(),
                        bytes: range(&r["bytes"]),
                    });
                }
            }
        }
    }
    if let Some(map) = v.get("fetch_info").and_then(Value::as_object) {
        for (xorb, list) in map {
            for f in list.as_array().unwrap() {
                out.push(Fetch {
                    xorb: xorb.clone(),
                    chunks: range(&f["range"]),
                    url: f["url"].as_str().unwrap().to_string(),
                    bytes: range(&f["url_range"]),
                });
            }
        }
    }
    out
}

/// Reassembles the bytes a reconstruction describes, fetching each range it names once
/// through the CAS listener and decoding it with xet-core's chunk deserializer.
async fn reassemble(v: &Value) -> (Vec<u8>, u64) {
    let fetches = fetches(v);
    let mut decoded: HashMap<(String, u64), (Vec<u8>, Vec<u32>)> = HashMap::new();
    let mut wire = 0u64;
    let mut out = Vec::new();
    for term in v["terms"].as_array().unwrap() {
        let xorb = term["hash"].as_str().unwrap();
        let (c0, c1) = (
            term["range"]["start"].as_u64().unwrap(),
            term["range"]["end"].as_u64().unwrap(),
        );
        let f = fetches
            .iter()
            .find(|f| f.xorb == xorb && f.chunks.0 <= c0 && c1 <= f.chunks.1)
            .unwrap_or_else(|| panic!("no fetch covers {xorb} {c0}..{c1}"))
            .clone();
        let key = (f.xorb.clone(), f.bytes.0);
        if !decoded.contains_key(&key) {
            let r = client()
                .get(&f.url)
                .header("range", format!("bytes={}-{}", f.bytes.0, f.bytes.1))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{}", f.url);
            let raw = r.bytes().await.unwrap();
            assert_eq!(raw.len() as u64, f.bytes.1 - f.bytes.0 + 1);
            wire += raw.len() as u64;
            let (data, idx) =
                xet_core_structures::xorb_object::deserialize_chunks(&mut &raw[..]).unwrap();
            decoded.insert(key.clone(), (data, idx));
        }
        let (data, idx) = &decoded[&key];
        let a = idx[(c0 - f.chunks.0) as usize] as usize;
        let b = idx[(c1 - f.chunks.0) as usize] as usize;
        assert_eq!((b - a) as u64, term["unpacked_length"].as_u64().unwrap());
        out.extend_from_slice(&data[a..b]);
    }
    let skip = v["offset_into_first_range"].as_u64().unwrap_or(0) as usize;
    out.drain(..skip);
    (out, wire)
}

async fn reconstruction(
    cas: &str,
    version: u8,
    hash: &str,
    token: &str,
    range: Option<(u64, u64)>,
) -> reqwest::Response {
    let mut req = client()
        .get(format!("{cas}/v{version}/reconstructions/{hash}"))
        .bearer_auth(token);
    if let Some((a, b)) = range {
        req = req.header("range", format!("bytes={a}-{b}"));
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_reassembled_from_its_reconstruction_equals_its_body() {
    let emu = start().await;
    let xet = emu.xet().unwrap();
    let cas = xet.cas_url();
    let body = generated(1, 3 << 20);
    let hash = xet
        .xet_hash(RepoKind::Model, "org/xet", "main", WEIGHTS)
        .unwrap();
    assert_eq!(
        xet.file_data(&hash).await.unwrap(),
        Bytes::from(body.clone())
    );
    let token = read_token(&emu, "org/xet").await;

    // V2, the whole file.
    let r = reconstruction(&cas, 2, &hash, &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let (bytes, wire) = reassemble(&v).await;
    assert_eq!(bytes.len(), body.len());
    assert!(bytes == body, "V2 reassembly differs from the file");
    // Counted on the CAS listener: the fetched ranges plus the JSON.
    let served = emu.log().bytes_served_by(Listener::Cas);
    assert!(
        served >= wire && served < wire + 64 * 1024,
        "{served} vs {wire}"
    );
    assert_eq!(emu.log().bytes_served_by(Listener::Cdn), 0);

    // V2, a range of it: the answer covers just that range.
    let (a, b) = (1_000_000u64, 1_500_000u64);
    let v: Value = reconstruction(&cas, 2, &hash, &token, Some((a, b)))
        .await
        .json()
        .await
        .unwrap();
    let (mut part, part_wire) = reassemble(&v).await;
    part.truncate((b - a + 1) as usize);
    assert!(
        part == body[a as usize..=b as usize],
        "ranged reassembly differs"
    );
    assert!(
        part_wire < wire / 2,
        "a range fetches part of the file: {part_wire} of {wire}"
    );

    // With V2 off, the client falls back to V1, which reassembles the same.
    xet.disable_v2(404);
    let r = reconstruction(&cas, 2, &hash, &token, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reconstruction(&cas, 1, &hash, &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("fetch_info").is_some());
    let (bytes, _) = reassemble(&v).await;
    assert!(bytes == body, "V1 reassembly differs from the file");
    xet.disable_v2(0);
    assert_eq!(
        reconstruction(&cas, 2, &hash, &token, None).await.status(),
        StatusCode::OK
    );

    // The CAS knows the file's size.
    let r = client()
        .head(format!("{cas}/v1/files/{hash}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let expected = (3u64 << 20).to_string();
    assert_eq!(header(&r, "content-length"), Some(expected.as_str()));
}

/// Chunk ranges of `v`'s terms, by xorb.
fn term_ranges(v: &Value) -> Vec<(String, u64, u64, u64)> {
    v["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["hash"].as_str().unwrap().to_string(),
                t["range"]["start"].as_u64().unwrap(),
                t["range"]["end"].as_u64().unwrap(),
                t["unpacked_length"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Bytes of `newer`'s terms made of the very chunks `older`'s terms use (a chunk range of the
/// same xorb within one of `older`'s), and all of `newer`'s bytes. Sharing a xorb is not
/// enough: a xorb can hold both files' chunks side by side without any dedup.
fn reused_bytes(older: &Value, newer: &Value) -> (u64, u64) {
    let old = term_ranges(older);
    let mut reused = 0;
    let mut total = 0;
    for (xorb, a, b, n) in term_ranges(newer) {
        total += n;
        if old
            .iter()
            .any(|(x, c, d, _)| *x == xorb && *c <= a && b <= *d)
        {
            reused += n;
        }
    }
    (reused, total)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_512_kib_edit_of_a_64_mib_file_reuses_the_older_chunks() {
    const SIZE: usize = 64 << 20;
    const EDIT_AT: usize = 32 << 20;
    const EDIT: usize = 512 << 10;
    let v1 = generated(11, SIZE);
    let mut v2 = v1.clone();
    v2[EDIT_AT..EDIT_AT + EDIT].copy_from_slice(&generated(12, EDIT));

    let started = Instant::now();
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![repo("org/big", v1.clone(), true)],
        hash_cache_dir: None,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let start_time = started.elapsed();
    let xet = emu.xet().unwrap();
    let h1 = xet
        .xet_hash(RepoKind::Model, "org/big", "main", WEIGHTS)
        .unwrap();

    // v2 is committed later: stored in another upload session, which must dedup against
    // the shards of the first one.
    let started = Instant::now();
    let c2 = emu
        .move_branch(
            RepoKind::Model,
            "org/big",
            "main",
            "Edit 512 KiB",
            vec![FileChange::put(WEIGHTS, v2.clone())],
        )
        .unwrap();
    let update_time = started.elapsed();
    let f2 = emu
        .catalog()
        .file(RepoKind::Model, "org/big", &c2, WEIGHTS)
        .unwrap();
    let h2 = f2
        .xet_hash()
        .expect("stored before move_branch returns")
        .to_string();
    assert_ne!(h1, h2);

    let r1 = xet.reconstruction_v2(&h1, None).await.unwrap().unwrap();
    let r2 = xet.reconstruction_v2(&h2, None).await.unwrap().unwrap();
    let v1_xorbs: HashSet<String> = term_ranges(&r1).into_iter().map(|t| t.0).collect();
    let (reused, total) = reused_bytes(&r1, &r2);
    assert_eq!(total, SIZE as u64);
    // What a client holding v1 still has to fetch: the ranges of the xorbs v1 does not use.
    let new_wire: u64 = fetches(&r2)
        .iter()
        .filter(|f| !v1_xorbs.contains(&f.xorb))
        .map(|f| f.bytes.1 - f.bytes.0 + 1)
        .sum();
    let pct = reused as f64 * 100.0 / total as f64;
    println!(
        "64 MiB ingest (emulator start): {:.2} s; v2 ingest (move_branch): {:.2} s; \
         v2 terms: {}; bytes in chunks v1 uses: {reused} of {total} ({pct:.2} %); \
         new xorb bytes on the wire: {new_wire}",
        start_time.as_secs_f64(),
        update_time.as_secs_f64(),
        r2["terms"].as_array().unwrap().len(),
    );
    assert!(pct >= 90.0, "only {pct:.2} % of v2 reuses v1's xorbs");
    assert!(
        new_wire <= 2 << 20,
        "{new_wire} new bytes for a 512 KiB edit"
    );

    // v2 reassembles through the CAS listener.
    let token = read_token(&emu, "org/big").await;
    let v: Value = reconstruction(&xet.cas_url(), 2, &h2, &token, None)
        .await
        .json()
        .await
        .unwrap();
    let (bytes, wire) = reassemble(&v).await;
    assert!(bytes == v2, "v2 reassembly differs");
    assert!(emu.log().bytes_served_by(Listener::Cas) >= wire);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fine_tune_stored_with_its_base_at_start_reuses_the_base_chunks() {
    const SIZE: usize = 32 << 20;
    const REGION: usize = 400 << 10;
    let base = generated(31, SIZE);
    let mut ft = base.clone();
    // 8 regions of 400 KiB (10 %) replaced, the first MiB unchanged.
    for i in 0..8 {
        let at = (1 << 20) + i * (SIZE - (2 << 20)) / 8;
        ft[at..at + REGION].copy_from_slice(&generated(40 + i as u64, REGION));
    }
    // Both in the catalog from the start: stored by the same `start`.
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![
            repo("org/base", base, true),
            repo("org/ft", ft.clone(), true),
        ],
        hash_cache_dir: None,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let xet = emu.xet().unwrap();
    let hb = xet
        .xet_hash(RepoKind::Model, "org/base", "main", WEIGHTS)
        .unwrap();
    let hf = xet
        .xet_hash(RepoKind::Model, "org/ft", "main", WEIGHTS)
        .unwrap();
    let rb = xet.reconstruction_v2(&hb, None).await.unwrap().unwrap();
    let rf = xet.reconstruction_v2(&hf, None).await.unwrap().unwrap();
    let (reused, total) = reused_bytes(&rb, &rf);
    let pct = reused as f64 * 100.0 / total as f64;
    println!(
        "fine-tune stored with its base: {reused} of {total} bytes in chunks the base uses ({pct:.2} %)"
    );
    assert!(
        pct >= 85.0,
        "only {pct:.2} % of the fine-tune reuses the base's xorbs"
    );
    assert_eq!(xet.file_data(&hf).await.unwrap(), Bytes::from(ft));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_xet_repos_the_cas_costs_little_and_serves_nothing() {
    let started = Instant::now();
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![repo("org/plain", generated(2, 2 << 20), false)],
        hash_cache_dir: None,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    println!(
        "emulator start with the CAS and no Xet repo: {} ms",
        started.elapsed().as_millis()
    );
    let xet = emu.xet().unwrap();
    assert_eq!(
        xet.xet_hash(RepoKind::Model, "org/plain", "main", WEIGHTS),
        None
    );
    let r = client()
        .head(format!("{}/org/plain/resolve/main/{WEIGHTS}", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(header(&r, "x-xet-hash").is_none());
    // Nothing was stored.
    let stored = std::fs::read_dir(xet.data_dir().join("cas/xorbs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// `huggingface_hub` 2.4 with `hf_xet` 1.8, the client whose Xet path the emulator must match.
#[test]
fn huggingface_hub_downloads_a_xet_file_through_the_cas() {
    let python =
        hub_emulator::python::python_with_hf_xet(&target_dir()).unwrap_or_else(|e| panic!("{e}"));
    let emu = Emulator::start_blocking(EmulatorConfig {
        repos: vec![repo("org/plain", generated(2, 2 << 20), false)],
        hash_cache_dir: None,
        ..EmulatorConfig::default()
    })
    .unwrap();
    // Added after start, from this plain thread: stored before `add_repo` returns.
    let body = generated(21, 5 << 20);
    emu.add_repo(repo("org/xet", body.clone(), true));
    let hash = emu
        .xet()
        .unwrap()
        .xet_hash(RepoKind::Model, "org/xet", "main", WEIGHTS)
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let script = r#"
import sys, hashlib
from huggingface_hub import hf_hub_download
import huggingface_hub.file_download as fd
for repo in ("org/xet", "org/plain"):
    path = hf_hub_download(repo, "model.safetensors")
    with open(path, "rb") as f:
        print(repo, hashlib.sha256(f.read()).hexdigest())
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("HF_ENDPOINT", emu.url())
        .env("HF_HOME", home.path())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_XET_CACHE", home.path().join("xet"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_DISABLE_XET")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("org/xet {}", sha256_hex(&body))),
        "wrong bytes for the Xet file:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("org/plain {}", sha256_hex(&generated(2, 2 << 20)))),
        "wrong bytes for the plain file:\n{stdout}\n{stderr}"
    );
    let records = emu.requests();
    let cas: Vec<_> = records
        .iter()
        .filter(|r| r.listener == Listener::Cas)
        .collect();
    let recon = cas
        .iter()
        .filter(|r| r.path.contains(&format!("/reconstructions/{hash}")) && r.status == 200)
        .count();
    let fetched: u64 = cas
        .iter()
        .filter(|r| r.path == "/v1/fetch_term")
        .map(|r| r.bytes_sent)
        .sum();
    println!(
        "hf_xet through the CAS: {} requests, {recon} reconstructions, {fetched} xorb bytes; \
         CDN bytes {}",
        cas.len(),
        emu.log().bytes_served_by(Listener::Cdn)
    );
    assert!(recon >= 1, "hf_xet asked for no reconstruction: {cas:#?}");
    assert!(fetched > 0, "hf_xet fetched no xorb range: {cas:#?}");
    let commit = emu
        .catalog()
        .resolve(RepoKind::Model, "org/xet", "main")
        .unwrap()
        .sha
        .clone();
    let token_route = format!("/api/models/org/xet/xet-read-token/{commit}");
    assert!(
        records
            .iter()
            .any(|r| r.path == token_route && r.status == 200),
        "the token route was not used"
    );
    // The Xet file came from the CAS, the plain one from the CDN.
    assert!(
        !records
            .iter()
            .any(|r| r.listener == Listener::Cdn && r.path.contains(&sha256_hex(&body))),
        "the Xet file was fetched from the CDN"
    );
    assert!(emu.log().bytes_served_by(Listener::Cdn) >= 2 << 20);
}
