//! The routes of `docs/local-api.md` over the real engine and the hub emulator's demo catalog.

use std::time::Duration;

#[path = "../../model-cache/tests/convert_support/mod.rs"]
mod convert_support;

use futures::StreamExt;
use hub_emulator::{Emulator, EmulatorConfig};
use local_api::{ApiConfig, ApiServer};
use model_cache::Settings;
use model_cache::engine::{Engine, EngineOptions};
use serde_json::{Value, json};

/// The real machine but fake probes (mains power, 900 GiB free): what these tests check must
/// not depend on the free space of the machine that runs them.
fn test_options() -> EngineOptions {
    EngineOptions {
        probes: model_cache::scheduler::Probes::fake(),
        ..EngineOptions::system()
    }
}

struct Fixture {
    server: ApiServer,
    client: reqwest::Client,
    _emulator: Emulator,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
        let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
        settings.endpoint = emulator.url();
        settings.token_file = Some(dir.path().join("token"));
        let engine = Engine::open(settings, test_options()).unwrap();
        let server = local_api::serve(engine, ApiConfig::new(dir.path().join("data")))
            .await
            .unwrap();
        Fixture {
            server,
            client: reqwest::Client::new(),
            _emulator: emulator,
            _dir: dir,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.server.url()))
            .bearer_auth(self.server.token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn wait_done(&self, id: i64) -> Value {
        for _ in 0..600 {
            let (_, jobs) = self.get("/api/jobs").await;
            let job = jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["id"] == id)
                .cloned()
                .unwrap();
            match job["state"].as_str().unwrap() {
                "done" => return job,
                "failed" | "cancelled" => panic!("job ended: {job}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("job {id} did not finish within 60 s");
    }
}

#[tokio::test]
async fn health_variants_and_errors_have_the_contract_shapes() {
    let f = Fixture::start().await;
    let (status, health) = f.get("/api/health").await;
    assert_eq!(status, 200, "{health}");
    assert!(["ok", "degraded"].contains(&health["status"].as_str().unwrap()));
    for key in [
        "version",
        "offline",
        "endpoint",
        "cache_dir",
        "jobs",
        "storage",
        "alerts",
    ] {
        assert!(health.get(key).is_some(), "health has `{key}`: {health}");
    }

    let (status, report) = f.get("/api/variants?repo=demo/tiny-gguf").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["repo"], "demo/tiny-gguf");
    let variants = report["variants"].as_array().unwrap();
    let quants: Vec<&str> = variants
        .iter()
        .filter_map(|v| v["quant"].as_str())
        .collect();
    for q in ["Q2_K", "Q4_K_M", "Q8_0", "F16"] {
        assert!(quants.contains(&q), "{q} in {quants:?}");
    }
    let recommended = report["recommended"].as_str().expect("a recommendation");
    let marked: Vec<&Value> = variants
        .iter()
        .filter(|v| v["recommended"] == true)
        .collect();
    assert_eq!(marked.len(), 1);
    assert_eq!(
        marked[0]["name"], recommended,
        "`recommended` is the variant's name"
    );
    for v in variants {
        assert!(
            ["fits", "tight", "too_big", "unknown"].contains(&v["fit"]["tier"].as_str().unwrap())
        );
        assert!(v["size_bytes"].as_u64().unwrap() > 0);
        assert!(v["warnings"].is_array());
    }

    let (status, gated) = f.get("/api/variants?repo=demo/gated").await;
    assert_eq!(status, 403, "{gated}");
    assert_eq!(gated["error"]["kind"], "gated");
    assert!(
        gated["error"]["hint"].is_string(),
        "a gated repo comes with a hint: {gated}"
    );

    // Like the Hub, the emulator cannot tell a missing repo from a private one without a token.
    let (status, missing) = f.get("/api/variants?repo=demo/does-not-exist").await;
    let kind = missing["error"]["kind"].as_str().unwrap();
    assert!(
        ["repo_not_found", "unauthorized"].contains(&kind),
        "{missing}"
    );
    assert_ne!(status, 401, "401 is kept for the API secret: {missing}");
    assert!(status == 404 || status == 403, "{status} {missing}");

    let (status, bad) = f.get("/api/variants?repo=not%20a%20repo!").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["kind"], "invalid_input");

    let (status, bad) = f.post("/api/jobs/1/explode", json!({})).await;
    assert_eq!(status, 400, "{bad}");
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn pull_streams_progress_then_cache_pin_and_delete() {
    let f = Fixture::start().await;
    let events = f
        .client
        .get(format!("{}/api/events", f.server.url()))
        .bearer_auth(f.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();

    let (status, pulled) = f
        .post(
            "/api/pulls",
            json!({"repo": "demo/tiny-gguf", "variant": "Q2_K"}),
        )
        .await;
    assert_eq!(status, 200, "{pulled}");
    let id = pulled["job_id"].as_i64().unwrap();
    let job = f.wait_done(id).await;
    assert_eq!(job["bytes_done"], job["bytes_total"]);
    assert!(job["bytes_total"].as_u64().unwrap() >= 1_000_000);
    assert_eq!(job["variant"], "Q2_K");
    let files = job["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["path"] == "tiny-model-Q2_K.gguf"),
        "{job}"
    );
    assert!(files.iter().all(|f| f["done"] == f["size"]), "{job}");
    assert!(job["snapshot_path"].is_string(), "{job}");
    // The variants list ticks the downloaded variant, and only it.
    let (_, report) = f.get("/api/variants?repo=demo/tiny-gguf").await;
    let cached: Vec<&str> = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["cached"] == true)
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(cached, ["Q2_K"], "{report}");
    let (_, found) = f.get("/api/search?q=tiny-gguf").await;
    assert_eq!(found["results"][0]["cached"], true, "{found}");
    // A variant can be removed alone; an unknown one is named.
    let (status, missing) = f
        .post(
            "/api/cache/delete",
            json!({"repo": "demo/tiny-gguf", "variant": "Q9_Z"}),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Q9_Z"),
        "{missing}"
    );

    // The event stream carried this job's progress and its completion.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(text.contains("\"type\":\"progress\"") && text.contains("\"state\":\"done\"")) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("progress and done events")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let progress: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap())
        .find(|e| e["type"] == "progress")
        .unwrap();
    assert_eq!(progress["job_id"], id);
    for key in ["path", "done", "total", "speed_bps"] {
        assert!(progress.get(key).is_some(), "progress has `{key}`");
    }

    let (_, cache) = f.get("/api/cache").await;
    let repo = cache
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "demo/tiny-gguf")
        .unwrap()
        .clone();
    assert!(repo["size_bytes"].as_u64().unwrap() >= 1_000_000);
    assert_eq!(repo["pinned"], false);

    let (status, pinned) = f
        .post(
            "/api/cache/pin",
            json!({"repo": "demo/tiny-gguf", "pinned": true}),
        )
        .await;
    assert_eq!(status, 200, "{pinned}");
    assert_eq!(pinned["pinned"], true);
    let (status, _) = f
        .post(
            "/api/cache/pin",
            json!({"repo": "demo/not-cached", "pinned": true}),
        )
        .await;
    assert_eq!(status, 404);

    let (status, reveal) = f
        .post("/api/cache/reveal", json!({"repo": "demo/tiny-gguf"}))
        .await;
    assert_eq!(status, 200);
    assert!(std::path::Path::new(reveal["path"].as_str().unwrap()).is_dir());

    // A pinned repo is protected from deletion; unpinned, it goes and its bytes are freed.
    let (status, refused) = f
        .post("/api/cache/delete", json!({"repo": "demo/tiny-gguf"}))
        .await;
    assert_eq!(status, 409, "{refused}");
    f.post(
        "/api/cache/pin",
        json!({"repo": "demo/tiny-gguf", "pinned": false}),
    )
    .await;
    let (status, freed) = f
        .post("/api/cache/delete", json!({"repo": "demo/tiny-gguf"}))
        .await;
    assert_eq!(status, 200, "{freed}");
    assert!(freed["freed_bytes"].as_u64().unwrap() >= 1_000_000);
    let (_, cache) = f.get("/api/cache").await;
    assert!(
        cache
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["repo"] != "demo/tiny-gguf")
    );
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn settings_and_token_round_trip() {
    let f = Fixture::start().await;
    let put = |body: Value| f.call(reqwest::Method::PUT, "/api/settings", Some(body));
    let (status, settings) = put(json!({
        "max_rate_bps": 2_000_000,
        "battery_policy": {"mode": "below", "percent": 25},
        "schedule": {"start": "01:00", "end": "07:30"},
        "disk_reserve_bytes": 3_000_000_000u64,
        "size_budget_bytes": 50_000_000_000u64,
    }))
    .await;
    assert_eq!(status, 200, "{settings}");
    let (_, settings) = f.get("/api/settings").await;
    assert_eq!(settings["max_rate_bps"], 2_000_000);
    assert_eq!(
        settings["battery_policy"],
        json!({"mode": "below", "percent": 25})
    );
    assert_eq!(
        settings["schedule"],
        json!({"start": "01:00", "end": "07:30"})
    );
    assert_eq!(settings["disk_reserve_bytes"], 3_000_000_000u64);
    assert_eq!(settings["size_budget_bytes"], 50_000_000_000u64);

    let (status, _) = put(json!({"max_rate_bps": null, "schedule": null})).await;
    assert_eq!(status, 200);
    let (_, settings) = f.get("/api/settings").await;
    assert_eq!(settings["max_rate_bps"], Value::Null);
    assert_eq!(settings["schedule"], Value::Null);

    for bad in [
        json!({"nope": 1}),
        json!({"max_rate_bps": 0}),
        json!({"schedule": {"start": "25:00", "end": "01:00"}}),
        json!({"token_set": true}),
    ] {
        let (status, err) = put(bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {err}");
        assert_eq!(err["error"]["kind"], "invalid_input");
    }

    assert_eq!(settings["token_set"], false);
    let (status, set) = f
        .post("/api/token", json!({"token": "hf_demo_token"}))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["token_set"], true);
    let (_, settings) = f.get("/api/settings").await;
    assert_eq!(settings["token_set"], true);
    assert!(!settings.to_string().contains("hf_demo_token"));
    // With the token the gated repo lists its variants.
    let (status, gated) = f.get("/api/variants?repo=demo/gated").await;
    assert_eq!(status, 200, "{gated}");
    let (_, cleared) = f.post("/api/token", json!({"token": null})).await;
    assert_eq!(cleared["token_set"], false);
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_values_are_refused_and_nothing_is_saved() {
    let f = Fixture::start().await;
    let (_, before) = f.get("/api/settings").await;
    for bad in [
        json!({"endpoint": "http://"}),
        json!({"endpoint": "ftp://example.org"}),
        json!({"cache_dir": "relative/folder"}),
        json!({"mirrors": ["not a url"]}),
    ] {
        let (status, err) = f
            .call(reqwest::Method::PUT, "/api/settings", Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad} -> {err}");
        assert_eq!(err["error"]["kind"], "invalid_input");
    }
    let (_, after) = f.get("/api/settings").await;
    assert_eq!(before, after, "a refused change saves nothing");
    // A token `mcache login` refuses is refused here too, and never becomes a header.
    for bad in ["hf_a b", "hf_\u{7f}x", "hf_é", "hf_a\r\nX-Injected: 1"] {
        let (status, err) = f.post("/api/token", json!({"token": bad})).await;
        assert_eq!(status, 400, "{bad:?} -> {err}");
    }
    let (_, settings) = f.get("/api/settings").await;
    assert_eq!(settings["token_set"], false);
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn changes_to_where_the_token_goes_are_refused_over_http_and_made_by_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
    let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
    settings.endpoint = emulator.url();
    let engine = Engine::open(settings, test_options()).unwrap();
    let api = local_api::Api::new(engine);
    let server = local_api::serve_api(api.clone(), ApiConfig::new(dir.path().join("data")))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let put = |body: Value| {
        let request = client
            .put(format!("{}/api/settings", server.url()))
            .bearer_auth(server.token())
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    for (change, field) in [
        (json!({"endpoint": "https://elsewhere.example"}), "endpoint"),
        (json!({"mirrors": ["https://mirror.example"]}), "mirrors"),
        (
            json!({"mirrors": [emulator.url()], "mirrors_receiving_token": [emulator.url()]}),
            "mirrors_receiving_token",
        ),
    ] {
        let (status, body) = put(change.clone()).await;
        assert_eq!(status, 403, "{change} -> {body}");
        assert_eq!(body["error"]["kind"], "forbidden_setting", "{body}");
        let fields: Vec<&str> = body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{change} -> {body}");
    }
    // Nothing of a refused change was applied.
    let shown = api.settings_get().unwrap();
    assert_eq!(shown.endpoint, emulator.url());
    assert!(shown.mirrors.is_empty() && shown.mirrors_receiving_token.is_empty());

    // The values in force are no change: a settings page saving every field still works.
    let (status, body) = put(json!({
        "endpoint": emulator.url(),
        "mirrors": [],
        "mirrors_receiving_token": [],
        "max_rate_bps": 1_000_000,
    }))
    .await;
    assert_eq!(status, 200, "{body}");

    // The app, after the person confirmed them in a native dialog.
    let change = json!({
        "mirrors": ["https://mirror.example", "http://127.0.0.1:9"],
        "mirrors_receiving_token": ["https://mirror.example"],
    });
    let asked = api.settings_trust_changes(&change).await.unwrap();
    let names: Vec<&str> = asked.iter().map(|c| c.setting.as_str()).collect();
    assert_eq!(names, ["mirrors", "mirrors_receiving_token"]);
    let shown = api.settings_set_confirmed(change).await.unwrap();
    assert_eq!(
        shown.mirrors,
        ["https://mirror.example", "http://127.0.0.1:9"]
    );
    assert_eq!(shown.mirrors_receiving_token, ["https://mirror.example"]);
    // A mirror kept keeps its mark; plain http to another host never receives the token.
    let shown = api
        .settings_set_confirmed(json!({"mirrors": ["https://mirror.example"]}))
        .await
        .unwrap();
    assert_eq!(shown.mirrors_receiving_token, ["https://mirror.example"]);
    let refused = api
        .settings_set_confirmed(json!({
            "mirrors": ["http://mirror.example"],
            "mirrors_receiving_token": ["http://mirror.example"],
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, "invalid_input", "{refused:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn search_finds_models_by_word_pages_them_and_refuses_bad_input() {
    let f = Fixture::start().await;
    let (status, found) = f.get("/api/search?q=tiny&filter=gguf").await;
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    let repos: Vec<&str> = results
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect();
    assert_eq!(repos, ["demo/tiny-gguf", "tiny-legacy"]);
    let tiny = &results[0];
    assert_eq!(tiny["formats"], json!(["gguf"]));
    assert_eq!(tiny["size_variant"], "Q4_K_M");
    assert_eq!(tiny["gated"], "open");
    assert_eq!(tiny["cached"], false);
    assert!(tiny["downloads"].as_u64().unwrap() > 0);
    assert!(tiny["last_modified"].as_str().unwrap().starts_with("20"));
    assert!(tiny["fit"]["needed_bytes"].as_u64().unwrap() > tiny["size_bytes"].as_u64().unwrap());
    assert!(found["next"].is_null());
    assert!(found["machine"]["total_ram"].as_u64().unwrap() > 0);

    // A page of one names the next; the cursor brings the second result.
    let (_, first) = f.get("/api/search?q=tiny&sort=likes&limit=1").await;
    assert_eq!(first["results"][0]["repo"], "demo/tiny-safetensors");
    let next = first["next"].as_str().unwrap();
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let (status, second) = f.get(&format!("/api/search?cursor={encoded}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["results"][0]["repo"], "demo/tiny-gguf");

    // A word never becomes a repo id: no match is an empty list, not an error.
    let (status, none) = f.get("/api/search?q=llama").await;
    assert_eq!(status, 200);
    assert_eq!(none["results"], json!([]));

    for (query, words) in [
        ("sort=stars", "Unknown sort order `stars`"),
        ("limit=0", "1 to 100"),
        ("limit=many", "Invalid search"),
        ("colour=red", "Invalid search"),
    ] {
        let (status, bad) = f.get(&format!("/api/search?{query}")).await;
        assert_eq!(status, 400, "{query}: {bad}");
        assert_eq!(bad["error"]["kind"], "invalid_input", "{query}");
        let message = bad["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{query}: {message}");
    }
}

#[tokio::test]
async fn convert_queues_a_conversion_that_writes_a_gguf_beside_the_cache() {
    let f = Fixture::start().await;
    let repos = f._dir.path().join("repos");
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 40);
    let spec = convert_support::ModelSpec {
        architecture: "LlamaForCausalLM",
        hidden: 64,
        intermediate: 128,
        layers: 1,
        heads: 4,
        kv_heads: 2,
        vocab: tokens as u64,
        dtype: convert_support::Dtype::BF16,
        attention_bias: false,
        tied: false,
    };
    convert_support::write_checkpoint(&repos.join("test/tiny-llama"), &spec, &tokenizer, 8);
    for repo in hub_emulator::catalog::repos_from_dir(&repos).unwrap() {
        f._emulator.add_repo(repo);
    }

    // Not downloaded yet: refused, with what to do.
    let (status, body) = f
        .post(
            "/api/convert",
            json!({"repo": "test/tiny-llama", "type": "f16"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["hint"], "Download test/tiny-llama first");

    let (status, queued) = f
        .post("/api/pulls", json!({"repo": "test/tiny-llama"}))
        .await;
    assert_eq!(status, 200, "{queued}");
    f.wait_done(queued["job_id"].as_i64().unwrap()).await;

    let (status, queued) = f
        .post(
            "/api/convert",
            json!({"repo": "test/tiny-llama", "type": "q8_0"}),
        )
        .await;
    assert_eq!(status, 200, "{queued}");
    let job = f.wait_done(queued["job_id"].as_i64().unwrap()).await;
    assert_eq!(job["variant"], "GGUF Q8_0", "{job}");
    assert_eq!(job["bytes_done"], job["bytes_total"], "{job}");
    let converted = f
        ._dir
        .path()
        .join("data/converted/models--test--tiny-llama");
    let outputs: Vec<_> = walk(&converted)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(&std::fs::read(&outputs[0]).unwrap()[..4], b"GGUF");

    let (status, body) = f
        .post(
            "/api/convert",
            json!({"repo": "test/tiny-llama", "to": "onnx", "type": "f16"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
