//! `docs/local-api.md` lists the fields of every body the API sends or takes; this test builds
//! each type, serialises it, and checks the document names exactly its fields. A field added to
//! a type without the document (or the other way round) fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use local_api::contract::{
    Affected, CheckBody, CompressionBody, ContractEvent, DeleteBody, ExtraRef, FileProgressBody,
    FileRef, FitBody, Freed, Health, HoldBody, Job, JobCounts, MachineBody, Notification, PairBody,
    PinBody, Progress, PullBody, Queued, RevealBody, Revealed, SearchParams, SearchResult,
    SearchResults, SharingBody, StatsBody, Storage, TokenBody, TokenState, UnpairBody, UpdateBody,
    VariantBody, Variants,
};
use local_api::error::ErrorBody;
use model_cache::RepoType;
use model_cache::engine::{
    AppSettings, BatteryMode, BatterySetting, CachedRepoView, CachedRevisionView, FinishedDownload,
    HeldView, HoursSetting, Span, UpdateCheckReport, UpdateView,
};
use model_cache::fit::FitTier;
use model_cache::variants::VariantFormat;
use serde::Serialize;
use serde_json::Value;

/// The field lists of the document's "Shapes" section, by type name.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/local-api.md"
    ))
    .unwrap();
    let shapes = text
        .split("## Shapes")
        .nth(1)
        .expect("a Shapes section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut out = BTreeMap::new();
    for line in shapes.lines() {
        let Some(rest) = line.strip_prefix("- `") else {
            continue;
        };
        let (name, rest) = rest.split_once("`: ").expect("`- `Type`: fields`");
        // Fields come before the notes (after " — ").
        let fields = rest.split(" — ").next().unwrap();
        let fields = fields
            .split(", ")
            .map(|f| f.trim().trim_matches('`').to_string())
            .collect();
        out.insert(name.to_string(), fields);
    }
    out
}

fn keys(value: &impl Serialize) -> BTreeSet<String> {
    match serde_json::to_value(value).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

fn job() -> Job {
    Job {
        id: 1,
        repo: "org/name".into(),
        revision: "main".into(),
        variant: Some("Q4_K_M".into()),
        state: "running".into(),
        reason: None,
        bytes_done: 1,
        bytes_total: 2,
        speed_bps: 3,
        eta_seconds: Some(4),
        files: vec![FileProgressBody {
            path: "a.gguf".into(),
            size: 2,
            done: 1,
            state: "running".into(),
            sources: vec![model_cache::download::SourceUse {
                source: "hub".into(),
                bytes: 1,
                bytes_per_second: Some(1),
                errors: 0,
                dropped: false,
            }],
            reused: 1,
        }],
        error: Some(ErrorBody {
            kind: "network".into(),
            message: "m".into(),
            hint: None,
        }),
        snapshot_path: None,
    }
}

#[test]
fn every_contract_type_matches_the_document() {
    let import_report: model_cache::import::ImportReport = serde_json::from_value(serde_json::json!({
        "dry_run": true, "bytes": 1, "saved_bytes": 1, "copy_bytes": 0,
        "items": [{
            "name": "tiny:latest", "origin": "ollama", "suggested_repo": null, "state": "planned",
            "placement": {"kind": "local", "dir": "/d"}, "bytes": 1, "saved_bytes": 1,
            "copy_bytes": 0, "variants": [], "error": null,
            "files": [{"source": "/s", "path": "tiny.gguf", "size": 1, "sha256": null, "method": "hard_link"}]
        }]
    }))
    .unwrap();
    let file = FileRef {
        path: "a".into(),
        size: 1,
    };
    let peers_view = model_cache::engine::PeersView {
        sharing: true,
        compress: false,
        this: model_cache::engine::ThisPeer {
            peer_id: "0123456789abcdef".into(),
            name: "this".into(),
            fingerprint: "01".repeat(32),
        },
        paired: vec![model_cache::engine::PeerView {
            peer_id: "0123456789abcdef".into(),
            name: "lab-2".into(),
            fingerprint: "01".repeat(32),
            address: Some("10.0.0.2:7871".into()),
            online: true,
            paired_at: 1,
            last_seen: Some(1),
            bytes_served: 1,
            bytes_received: 1,
        }],
        unpaired: vec![model_cache::index::peers::SeenPeer {
            peer_id: "0123456789abcdef".into(),
            fingerprint: "01".repeat(32),
            name: "lab-3".into(),
            address: "10.0.0.3:7871".into(),
            last_seen: 1,
        }],
    };
    let fit = FitBody {
        tier: FitTier::Fits,
        needed_bytes: 1,
        available_bytes: 2,
        in_gpu: false,
        weights_bytes: 1,
        kv_cache_bytes: 0,
        overhead_bytes: 0,
        context: 4096,
    };
    let found = SearchResult {
        repo: "org/name".into(),
        downloads: 1,
        likes: 1,
        last_modified: None,
        formats: vec!["gguf".into()],
        task: None,
        gated: "open".into(),
        parameters: Some(1),
        size_variant: Some("Q4_K_M".into()),
        size_bytes: Some(1),
        fit: Some(fit),
        cached: false,
    };
    let machine = MachineBody {
        total_ram: 1,
        available_ram: 1,
        vram: None,
    };
    let extra = ExtraRef {
        path: "mmproj.gguf".into(),
        size: 1,
        kind: "projector".into(),
    };
    let variant = VariantBody {
        id: "gguf:Q4_K_M".into(),
        name: "Q4_K_M".into(),
        format: VariantFormat::Gguf,
        quant: None,
        bits_per_weight: None,
        size_bytes: 1,
        files: vec![file.clone()],
        companions: vec![],
        extras: vec![extra.clone()],
        complete: true,
        fit,
        recommended: true,
        warnings: vec![],
        header: None,
        cached: false,
    };
    let counts = JobCounts {
        running: 1,
        queued: 0,
        deferred: 0,
    };
    let storage = Storage {
        used_bytes: 1,
        budget_bytes: None,
        free_bytes: None,
    };
    let revision = CachedRevisionView {
        commit: "c".repeat(40),
        refs: vec!["main".into()],
        size_bytes: 1,
        files: 1,
        snapshot_path: PathBuf::from("/s"),
    };
    let update = UpdateView {
        repo: "org/name".into(),
        branch: "main".into(),
        commit: "c".repeat(40),
        latest: "d".repeat(40),
        checked_at: 1,
    };
    let held = HeldView {
        branch: "main".into(),
        commit: "c".repeat(40),
        held_at: 1,
    };
    let battery = BatterySetting {
        mode: BatteryMode::Below,
        percent: 30,
    };
    let hours = HoursSetting {
        start: "22:00".into(),
        end: "06:00".into(),
    };
    let finished = FinishedDownload {
        repo: "org/name".into(),
        variant: None,
        bytes: 1,
        bytes_from_cache: 0,
        seconds: 1.0,
        speed_bps: 1,
        finished_at: 1,
    };
    let progress = Progress {
        job_id: 1,
        path: "a".into(),
        done: 1,
        total: 2,
        speed_bps: 1,
    };
    let notification = Notification {
        level: "info".into(),
        kind: Some(model_cache::engine::NotificationKind::Finished),
        title: "t".into(),
        body: "b".into(),
    };
    let samples: Vec<(&str, BTreeSet<String>)> = vec![
        (
            "Health",
            keys(&Health {
                status: "ok".into(),
                version: "1".into(),
                offline: false,
                endpoint: "https://huggingface.co".into(),
                cache_dir: PathBuf::from("/c"),
                jobs: counts,
                storage,
                alerts: vec![],
            }),
        ),
        ("JobCounts", keys(&counts)),
        ("Storage", keys(&storage)),
        (
            "Variants",
            keys(&Variants {
                repo: "org/name".into(),
                revision: "main".into(),
                commit: None,
                variants: vec![variant.clone()],
                recommended: None,
                machine,
            }),
        ),
        ("VariantBody", keys(&variant)),
        ("FileRef", keys(&file)),
        ("ExtraRef", keys(&extra)),
        ("FitBody", keys(&fit)),
        (
            "SearchParams",
            keys(&SearchParams {
                q: Some("llama".into()),
                ..SearchParams::default()
            }),
        ),
        (
            "SearchResults",
            keys(&SearchResults {
                results: vec![found.clone()],
                next: None,
                machine,
            }),
        ),
        ("SearchResult", keys(&found)),
        ("MachineBody", keys(&machine)),
        (
            "PullBody",
            keys(&PullBody {
                repo: "org/name".into(),
                revision: None,
                variant: None,
                files: None,
                evict: None,
            }),
        ),
        ("Queued", keys(&Queued { job_id: 1 })),
        (
            "Room",
            keys(&model_cache::engine::Room {
                needed: 1,
                free_above_reserve: 1,
                reserve: 1,
                disk_short: 0,
                used: None,
                budget: None,
                over_budget_by: 0,
                fits: true,
                consent: true,
                evictions: Vec::new(),
                evictions_enough: true,
            }),
        ),
        (
            "RoomEviction",
            keys(&model_cache::engine::RoomEviction {
                key: "org/name@abc".into(),
                repo: "org/name".into(),
                commit: "abc".into(),
                variant: None,
                refs: vec!["main".into()],
                bytes_freed: 1,
            }),
        ),
        ("Job", keys(&job())),
        ("FileProgressBody", keys(&job().files[0])),
        ("SourceUse", keys(&job().files[0].sources[0])),
        ("ErrorBody", keys(job().error.as_ref().unwrap())),
        ("Affected", keys(&Affected { affected: 1 })),
        (
            "CachedRepoView",
            keys(&CachedRepoView {
                repo: "org/name".into(),
                repo_type: RepoType::Model,
                size_bytes: 1,
                last_used: None,
                pinned: false,
                path: PathBuf::from("/r"),
                revisions: vec![revision.clone()],
                updates: vec![update.clone()],
                held: vec![held.clone()],
            }),
        ),
        ("UpdateView", keys(&update)),
        ("HeldView", keys(&held)),
        (
            "UpdateBody",
            keys(&UpdateBody {
                repo: "org/name".into(),
                branch: Some("main".into()),
            }),
        ),
        (
            "ConvertBody",
            keys(&local_api::contract::ConvertBody {
                repo: "org/name".into(),
                revision: Some("main".into()),
                to: "gguf".into(),
                gguf_type: "q8_0".into(),
            }),
        ),
        (
            "HoldBody",
            keys(&HoldBody {
                repo: "org/name".into(),
                branch: Some("main".into()),
                held: true,
            }),
        ),
        ("CheckBody", keys(&CheckBody { force: true })),
        ("SharingBody", keys(&SharingBody { on: true })),
        ("CompressionBody", keys(&CompressionBody { on: true })),
        (
            "PairBody",
            keys(&PairBody {
                address: "10.0.0.2:7871".into(),
                code: "ABCD-EFGH".into(),
            }),
        ),
        (
            "UnpairBody",
            keys(&UnpairBody {
                peer: "0123456789abcdef".into(),
            }),
        ),
        (
            "PairingCode",
            keys(&model_cache::engine::PairingCode {
                code: "ABCD-EFGH".into(),
                expires_at: 1,
            }),
        ),
        ("PeersView", keys(&peers_view)),
        ("ThisPeer", keys(&peers_view.this)),
        ("PeerView", keys(&peers_view.paired[0])),
        ("SeenPeer", keys(&peers_view.unpaired[0])),
        (
            "PeerRef",
            keys(&model_cache::peers::client::PeerRef {
                repo: "models--org--name".into(),
                ref_name: "main".into(),
                commit: "0".repeat(40),
            }),
        ),
        (
            "UpdateCheckReport",
            keys(&UpdateCheckReport {
                updates: vec![update.clone()],
                skipped: Some("metered".into()),
                ..UpdateCheckReport::default()
            }),
        ),
        ("CachedRevisionView", keys(&revision)),
        (
            "PinBody",
            keys(&PinBody {
                repo: "org/name".into(),
                pinned: true,
            }),
        ),
        (
            "DeleteBody",
            keys(&DeleteBody {
                repo: "org/name".into(),
                revision: None,
                variant: None,
            }),
        ),
        (
            "ModelPage",
            keys(&model_cache::engine::ModelPage {
                repo: "org/name".into(),
                revision: "main".into(),
                commit: None,
                page_url: "https://huggingface.co/org/name".into(),
                gated: model_cache::hub::Gating::Open,
                access: None,
                license: None,
                license_name: None,
                license_link: None,
                card_html: None,
                from_cache: false,
            }),
        ),
        ("Freed", keys(&Freed { freed_bytes: 1 })),
        (
            "RevealBody",
            keys(&RevealBody {
                repo: "org/name".into(),
            }),
        ),
        (
            "Revealed",
            keys(&Revealed {
                path: PathBuf::from("/r"),
            }),
        ),
        (
            "AppSettings",
            keys(&AppSettings {
                cache_dir: PathBuf::from("/c"),
                size_budget_bytes: None,
                max_rate_bps: None,
                battery_policy: battery,
                on_metered: model_cache::policy::MeteredPolicy::Wait,
                disk_reserve_bytes: 1,
                schedule: Some(hours.clone()),
                mirrors: vec![],
                mirrors_receiving_token: vec![],
                endpoint: "https://huggingface.co".into(),
                token_set: false,
                offline: false,
                proxy: None,
                ca_bundle: None,
                connections: 16,
                auto_cleanup: true,
                evict_to_make_room: false,
                prune_old_revisions: false,
                keep_partial_files_for: Span(Duration::from_secs(7 * 86_400)),
                max_running: 2,
                allowed_origins: vec![],
                origins_without_token: vec![],
                origins_last_used: Default::default(),
                bucket: None,
                bucket_endpoint: None,
                bucket_push: false,
                bucket_credentials: false,
                first_run_done: false,
                notify_finished: true,
                notify_failed: true,
                notify_deferred: true,
                notify_deferred_after: Span(Duration::from_secs(600)),
                notify_storage: true,
                notify_evicted: true,
                notify_updates: true,
            }),
        ),
        ("BatterySetting", keys(&battery)),
        ("HoursSetting", keys(&hours)),
        ("TokenBody", keys(&TokenBody { token: None })),
        ("TokenState", keys(&TokenState { token_set: true })),
        (
            "StatsBody",
            keys(&StatsBody {
                bytes_downloaded: 1,
                bytes_from_cache: 1,
                bytes_reused: 1,
                hits: 1,
                misses: 1,
                storage_used_bytes: 1,
                budget_bytes: None,
                downloads: vec![finished.clone()],
            }),
        ),
        ("FinishedDownload", keys(&finished)),
        ("Progress", keys(&progress)),
        ("Notification", keys(&notification)),
        (
            "ImportBody",
            keys(&local_api::contract::ImportBody {
                from: "ollama".into(),
                paths: vec![],
                repo: None,
                suggested_repos: false,
                revision: None,
                copy: false,
                dry_run: true,
            }),
        ),
        ("ImportReport", keys(&import_report)),
        ("ImportItem", keys(&import_report.items[0])),
        ("ImportedFile", keys(&import_report.items[0].files[0])),
    ];
    let documented = documented();
    let mut problems = Vec::new();
    for (name, fields) in &samples {
        match documented.get(*name) {
            None => problems.push(format!("`{name}` is not in the Shapes section")),
            Some(listed) if listed != fields => problems.push(format!(
                "`{name}`: the document lists {listed:?}, the type has {fields:?}"
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        if !samples.iter().any(|(n, _)| n == name) {
            problems.push(format!("`{name}` is documented but not checked here"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Events are the documented bodies, tagged by `type`.
    let tagged = |event: ContractEvent, body: BTreeSet<String>, tag: &str| {
        let value = serde_json::to_value(event).unwrap();
        assert_eq!(value["type"], tag);
        let mut expected = body;
        expected.insert("type".into());
        assert_eq!(keys(&value), expected);
    };
    tagged(ContractEvent::Job(Box::new(job())), keys(&job()), "job");
    tagged(
        ContractEvent::Progress(progress.clone()),
        keys(&progress),
        "progress",
    );
    tagged(
        ContractEvent::Notification(notification.clone()),
        keys(&notification),
        "notification",
    );
}
