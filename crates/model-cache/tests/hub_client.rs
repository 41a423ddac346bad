//! The Hub client against the hub emulator: listings, metadata, error mapping, retries, token
//! handling, offline mode and mirror failover. Hermetic: everything is on 127.0.0.1.

use model_cache::error::{ErrorKind, Hint};
use std::collections::BTreeSet;

use hub_emulator::auth::{DEMO_TOKEN, OTHER_TOKEN};
use hub_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Listener, RepoKind};
use model_cache::hub::retry::RetryPolicy;
use model_cache::hub::{EntryKind, Gating, HubClient, HubError};
use model_cache::{RepoId, Settings, Token};

const GGUF_REPO: &str = "demo/tiny-gguf";

fn settings(endpoint: &str, token: Option<&str>) -> Settings {
    let mut settings = Settings::new("/nonexistent/hub".into(), "/nonexistent/data".into());
    settings.endpoint = endpoint.to_string();
    settings.token = token.and_then(Token::new);
    settings.retry = RetryPolicy::immediate();
    settings
}

fn client(emulator: &Emulator, token: Option<&str>) -> HubClient {
    HubClient::new(&settings(&emulator.url(), token)).unwrap()
}

fn repo(id: &str) -> RepoId {
    RepoId::model(id).unwrap()
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::demo_with_big_size(1 << 20))
        .await
        .unwrap()
}

#[tokio::test]
async fn repo_info_reports_commit_files_and_access() {
    let emulator = emulator().await;
    let hub = client(&emulator, None);
    let info = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap();
    assert_eq!(info.sha.len(), 40);
    assert!(!info.private);
    assert_eq!(info.gated, Gating::Open);
    let names: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    assert!(names.contains("config.json"), "{names:?}");
    let gguf = info
        .siblings
        .iter()
        .find(|s| s.rfilename.ends_with(".gguf"))
        .unwrap();
    assert!(gguf.lfs.is_some(), "blobs=true returns LFS info");
    assert_eq!(gguf.size, gguf.lfs.as_ref().map(|l| l.size));

    let at_tag = hub.repo_info(&repo(GGUF_REPO), Some("v1.0")).await.unwrap();
    assert_ne!(at_tag.sha, info.sha, "the tag is on the first commit");

    let gated = hub.repo_info(&repo("demo/gated"), None).await.unwrap();
    assert_eq!(gated.gated, Gating::Manual);
    let private = client(&emulator, Some(DEMO_TOKEN))
        .repo_info(&repo("demo/private"), None)
        .await
        .unwrap();
    assert!(private.private);
}

#[tokio::test]
async fn tree_listing_follows_pagination_to_the_end() {
    let emulator = emulator().await;
    let hub = client(&emulator, None);
    let full = hub
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap();
    assert!(full.len() > 8, "{} entries", full.len());
    emulator.log().clear();
    emulator.set_page_size(3);
    let paged = hub
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap();
    let pages = emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("/tree/"))
        .count();
    assert!(
        pages >= full.len() / 3,
        "{pages} pages for {} entries",
        full.len()
    );
    let key = |entries: &[model_cache::hub::TreeEntry]| -> BTreeSet<(String, u64, String)> {
        entries
            .iter()
            .map(|e| (e.path.clone(), e.size, e.oid.clone()))
            .collect()
    };
    assert_eq!(key(&full), key(&paged));
    assert_eq!(full.len(), paged.len(), "no entry twice");

    let gguf = paged
        .iter()
        .find(|e| e.path.ends_with("Q2_K.gguf"))
        .expect("a Q2_K file");
    assert_eq!(gguf.kind, EntryKind::File);
    let hashes = emulator
        .file_hashes(RepoKind::Model, GGUF_REPO, "main", &gguf.path)
        .unwrap();
    assert_eq!(gguf.lfs.as_ref().unwrap().sha256, hashes.sha256);
    assert_eq!(gguf.etag(), hashes.sha256);
    assert!(paged.iter().any(|e| e.kind == EntryKind::Directory));

    let top = hub
        .list_tree(&repo(GGUF_REPO), "main", None, false)
        .await
        .unwrap();
    assert!(
        top.len() < full.len(),
        "non-recursive lists only the top level"
    );
    let missing = hub
        .list_tree(&repo(GGUF_REPO), "main", Some("no/such/dir"), true)
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::EntryNotFound, "{missing}");
}

#[tokio::test]
async fn metadata_of_lfs_and_regular_files() {
    let emulator = emulator().await;
    let hub = client(&emulator, None);
    let tree = hub
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap();
    let lfs_path = &tree
        .iter()
        .find(|e| e.path.ends_with("Q2_K.gguf"))
        .unwrap()
        .path;
    let info = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap();

    let lfs = hub
        .file_metadata(&repo(GGUF_REPO), "main", lfs_path)
        .await
        .unwrap();
    let hashes = emulator
        .file_hashes(RepoKind::Model, GGUF_REPO, "main", lfs_path)
        .unwrap();
    assert_eq!(lfs.commit, info.sha);
    assert!(lfs.is_lfs);
    assert_eq!(lfs.etag, hashes.sha256);
    assert_eq!(lfs.sha256.as_deref(), Some(hashes.sha256.as_str()));
    assert_eq!(lfs.git_sha1, None);
    assert!(
        lfs.download_url.starts_with(&emulator.cdn_url()),
        "{} should be on the CDN {}",
        lfs.download_url,
        emulator.cdn_url()
    );
    let size = tree.iter().find(|e| &e.path == lfs_path).unwrap().size;
    assert_eq!(lfs.size, size);
    let cdn_requests = emulator
        .requests()
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .count();
    assert_eq!(cdn_requests, 0, "HEAD does not follow the foreign redirect");

    let regular = hub
        .file_metadata(&repo(GGUF_REPO), "main", "config.json")
        .await
        .unwrap();
    let hashes = emulator
        .file_hashes(RepoKind::Model, GGUF_REPO, "main", "config.json")
        .unwrap();
    assert!(!regular.is_lfs);
    assert_eq!(regular.etag, hashes.git_oid);
    assert_eq!(regular.git_sha1.as_deref(), Some(hashes.git_oid.as_str()));
    assert_eq!(
        regular.download_url,
        hub.resolve_url(&repo(GGUF_REPO), "main", "config.json")
    );
    let body = hub
        .get_range(&regular.download_url, None, None)
        .await
        .unwrap()
        .body
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, regular.size);
}

#[tokio::test]
async fn range_gets_report_partial_content_validators_and_416() {
    let emulator = emulator().await;
    let hub = client(&emulator, None);
    let path = hub
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.path.ends_with("Q2_K.gguf"))
        .unwrap()
        .path;
    let meta = hub
        .file_metadata(&repo(GGUF_REPO), "main", &path)
        .await
        .unwrap();
    let whole = hub.get_range(&meta.download_url, None, None).await.unwrap();
    assert_eq!(whole.status, 200);
    assert!(!whole.partial);
    let whole = whole.body.bytes().await.unwrap();
    assert_eq!(whole.len() as u64, meta.size);
    assert_eq!(&whole[..4], b"GGUF");

    let part = hub
        .get_range(
            &meta.download_url,
            Some(100..1100),
            Some(&format!("\"{}\"", meta.etag)),
        )
        .await
        .unwrap();
    assert_eq!(part.status, 206);
    assert!(part.partial);
    assert_eq!(part.content_range, Some((100, 1099, Some(meta.size))));
    let bytes = part.body.bytes().await.unwrap();
    assert_eq!(&bytes[..], &whole[100..1100]);

    let stale = hub
        .get_range(&meta.download_url, Some(100..200), Some("\"not-the-etag\""))
        .await
        .unwrap();
    assert!(
        !stale.partial,
        "a changed validator gets the whole file (status {})",
        stale.status
    );

    let err = hub
        .get_range(
            &meta.download_url,
            Some(meta.size + 10..meta.size + 20),
            None,
        )
        .await
        .unwrap_err();
    match err {
        HubError::RangeNotSatisfiable { total, .. } => assert_eq!(total, Some(meta.size)),
        other => panic!("expected RangeNotSatisfiable, got {other}"),
    }
}

#[tokio::test]
async fn errors_are_mapped_to_typed_variants() {
    let emulator = emulator().await;
    let anonymous = client(&emulator, None);
    let demo = client(&emulator, Some(DEMO_TOKEN));
    let other = client(&emulator, Some(OTHER_TOKEN));

    // The Hub answers 401 `RepoNotFound` to anyone without a token: as `huggingface_hub` does,
    // that is "not found", with a hint that a private repo needs a login.
    let err = anonymous
        .repo_info(&repo("nobody/nothing"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::RepoNotFound);
    assert_eq!(err.hints(), [Hint::CheckRepoId, Hint::LogIn]);
    let err = demo
        .repo_info(&repo("nobody/nothing"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::RepoNotFound);
    assert_eq!(err.hints(), [Hint::CheckRepoId], "a token was sent");

    let err = demo
        .repo_info(&repo(GGUF_REPO), Some("no-such-branch"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::RevisionNotFound { revision, .. } if revision == "no-such-branch"),
        "{err}"
    );
    let err = demo
        .file_metadata(&repo(GGUF_REPO), "no-such-branch", "config.json")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionNotFound, "{err}");

    let main = demo.repo_info(&repo(GGUF_REPO), None).await.unwrap().sha;
    let err = demo
        .file_metadata(&repo(GGUF_REPO), "main", "missing.bin")
        .await
        .unwrap_err();
    match &err {
        HubError::EntryNotFound { path, commit, .. } => {
            assert_eq!(path, "missing.bin");
            assert_eq!(commit.as_deref(), Some(main.as_str()));
        }
        other => panic!("expected EntryNotFound, got {other}"),
    }

    let err = anonymous
        .file_metadata(&repo("demo/gated"), "main", "config.json")
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Gated { .. }), "{err}");
    assert!(
        !err.to_string().contains("hint"),
        "hints are data, not text: {err}"
    );
    assert!(
        matches!(&err.hints()[..], [Hint::RequestAccess { url }, Hint::LogIn] if url.ends_with("/demo/gated")),
        "{:?}",
        err.hints()
    );
    let err = other
        .file_metadata(&repo("demo/gated"), "main", "config.json")
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Gated { .. }), "{err}");
    assert!(
        matches!(&err.hints()[..], [Hint::RequestAccess { .. }]),
        "a token was sent: {:?}",
        err.hints()
    );
    demo.file_metadata(&repo("demo/gated"), "main", "config.json")
        .await
        .expect("the demo token has access to the gated repo");

    let err = anonymous
        .repo_info(&repo("demo/private"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HubError::RepoNotFound {
                token_sent: false,
                ..
            }
        ),
        "{err}"
    );
    let err = other
        .repo_info(&repo("demo/private"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");

    let bad = client(&emulator, Some("hf_supersecret_invalid"));
    let err = bad.repo_info(&repo(GGUF_REPO), None).await.unwrap_err();
    assert!(matches!(err, HubError::BadToken), "{err}");
    let shown = format!("{err} {err:?} {bad:?}");
    assert!(!shown.contains("hf_supersecret_invalid"), "{shown}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn rate_limit_is_honoured_then_succeeds() {
    let emulator = emulator().await;
    emulator.faults().set(
        FaultRule::global(Fault::RateLimit { retry_after: 1 })
            .on("/api/*")
            .times(1),
    );
    let hub = client(&emulator, None);
    hub.repo_info(&repo(GGUF_REPO), None).await.unwrap();
    let statuses: Vec<u16> = emulator
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![429, 200]);
}

#[tokio::test]
async fn server_error_burst_is_retried_then_succeeds() {
    let emulator = emulator().await;
    emulator.faults().set(
        FaultRule::global(Fault::ServerError(503))
            .on("*/resolve/*")
            .times(3),
    );
    let hub = client(&emulator, None);
    hub.file_metadata(&repo(GGUF_REPO), "main", "config.json")
        .await
        .unwrap();
    let statuses: Vec<u16> = emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 503, 200]);
}

#[tokio::test]
async fn exhausted_retries_say_how_many_attempts_and_why() {
    let emulator = emulator().await;
    emulator
        .faults()
        .set(FaultRule::global(Fault::ServerError(502)).on("*/resolve/*"));
    let hub = client(&emulator, None);
    let err = hub
        .file_metadata(&repo(GGUF_REPO), "main", "config.json")
        .await
        .unwrap_err();
    let attempts = RetryPolicy::immediate().max_attempts;
    match &err {
        HubError::RetriesExhausted {
            attempts: n, last, ..
        } => {
            assert_eq!(*n, attempts);
            assert!(
                matches!(**last, HubError::Http { status: 502, .. }),
                "{last}"
            );
        }
        other => panic!("expected RetriesExhausted, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("after {attempts} attempt(s)")) && message.contains("502"),
        "{message}"
    );
    let served = emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .count();
    assert_eq!(served, attempts as usize);
}

#[tokio::test]
async fn token_goes_to_the_hub_but_never_to_the_cdn() {
    let emulator = emulator().await;
    let hub = client(&emulator, Some(DEMO_TOKEN));
    let tree = hub
        .list_tree(&repo("demo/gated"), "main", None, true)
        .await
        .unwrap();
    let lfs = tree.iter().find(|e| e.lfs.is_some()).expect("an LFS file");
    let meta = hub
        .file_metadata(&repo("demo/gated"), "main", &lfs.path)
        .await
        .unwrap();
    assert!(meta.download_url.starts_with(&emulator.cdn_url()));
    let bytes = hub
        .get_range(&meta.download_url, Some(0..16), None)
        .await
        .unwrap()
        .body
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len(), 16);
    // Through the resolve URL too: the client follows the redirect itself and drops the token.
    hub.get_range(
        &hub.resolve_url(&repo("demo/gated"), "main", &lfs.path),
        Some(0..16),
        None,
    )
    .await
    .unwrap();
    let records = emulator.requests();
    let cdn: Vec<_> = records
        .iter()
        .filter(|r| r.listener == Listener::Cdn)
        .collect();
    assert_eq!(cdn.len(), 2);
    assert!(cdn.iter().all(|r| r.authorization.is_none()));
    assert!(!emulator.log().cdn_saw_authorization());
    let hub_requests: Vec<_> = records
        .iter()
        .filter(|r| r.listener == Listener::Hub)
        .collect();
    assert!(!hub_requests.is_empty());
    assert!(
        hub_requests.iter().all(|r| r.authorization.is_some()),
        "every hub request carries the token"
    );
}

#[tokio::test]
async fn token_never_appears_in_errors_or_debug_output() {
    let secret = "hf_very_secret_value_123";
    let mut s = settings("http://127.0.0.1:9", Some(secret));
    s.mirrors = vec!["http://127.0.0.1:7".into()];
    let hub = HubClient::new(&s).unwrap();
    let err = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap_err();
    assert!(
        err.is_retryable() || err.kind() == ErrorKind::RetriesExhausted,
        "{err}"
    );
    assert!(
        err.to_string().contains("refused"),
        "a network error says why: {err}"
    );
    let shown = format!("{err} | {err:?} | {hub:?} | {s:?}");
    assert!(!shown.contains(secret), "{shown}");
}

#[tokio::test]
async fn offline_mode_makes_no_request() {
    let emulator = emulator().await;
    let mut s = settings(&emulator.url(), Some(DEMO_TOKEN));
    s.offline = true;
    let hub = HubClient::new(&s).unwrap();
    assert!(hub.is_offline());
    let repo = repo(GGUF_REPO);
    let errors = [
        hub.repo_info(&repo, None).await.unwrap_err(),
        hub.list_tree(&repo, "main", None, true).await.unwrap_err(),
        hub.file_metadata(&repo, "main", "config.json")
            .await
            .unwrap_err(),
        hub.get_range(&hub.resolve_url(&repo, "main", "config.json"), None, None)
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, HubError::Offline { .. }), "{err}");
        assert_eq!(err.hints(), [Hint::GoOnline], "{err}");
    }
    assert!(emulator.requests().is_empty(), "{:?}", emulator.requests());
}

#[tokio::test]
async fn mirrors_take_over_when_the_endpoint_is_unreachable_or_failing() {
    let mirror = emulator().await;

    // A closed port: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut s = settings(&closed_url, None);
    s.mirrors = vec![mirror.url().into()];
    let hub = HubClient::new(&s).unwrap();
    let info = hub.repo_info(&repo(GGUF_REPO), None).await.unwrap();
    let meta = hub
        .file_metadata(&repo(GGUF_REPO), "main", "config.json")
        .await
        .unwrap();
    assert_eq!(meta.commit, info.sha);
    assert!(meta.download_url.starts_with(&mirror.url()));

    // An endpoint answering 503 to everything.
    let failing = emulator().await;
    failing
        .faults()
        .set(FaultRule::global(Fault::ServerError(503)));
    let mut s = settings(&failing.url(), None);
    s.mirrors = vec![mirror.url().into()];
    let hub = HubClient::new(&s).unwrap();
    let tree = hub
        .list_tree(&repo(GGUF_REPO), "main", None, true)
        .await
        .unwrap();
    assert!(!tree.is_empty());
    assert!(
        failing.requests().iter().all(|r| r.status == 503),
        "the failing endpoint was tried first"
    );
    assert!(!failing.requests().is_empty());

    // A fatal answer from the endpoint is not hidden by a mirror.
    let mut s = settings(&mirror.url(), None);
    s.mirrors = vec![failing.url().into()];
    let hub = HubClient::new(&s).unwrap();
    let before = failing.requests().len();
    let err = hub
        .file_metadata(&repo(GGUF_REPO), "main", "missing.bin")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryNotFound);
    assert_eq!(failing.requests().len(), before);
}
