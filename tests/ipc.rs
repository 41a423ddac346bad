//! Every IPC command of the desktop shell, through Tauri's mock runtime (no display, no D-Bus),
//! against a real engine and the hub emulator.

use std::time::Duration;

use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::engine::{Engine, EngineOptions};
use model_cache_app::AppState;
use serde_json::{Value, json};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow};

const GIB: u64 = 1 << 30;

struct Rig {
    _emulator: Emulator,
    _dir: tempfile::TempDir,
    _app: tauri::App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    runtime: tokio::runtime::Runtime,
}

fn rig() -> Rig {
    rig_confirming(None)
}

/// A rig whose confirmation dialog answers `answer` (and records the questions), or, with
/// `None`, has no dialog at all.
fn rig_confirming(answer: Option<(bool, std::sync::Arc<std::sync::Mutex<Vec<String>>>)>) -> Rig {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (emulator, engine) = runtime.block_on(async {
        let emulator = Emulator::start(EmulatorConfig::demo()).await.unwrap();
        let mut settings =
            model_cache::Settings::new(dir.path().join("hub"), dir.path().join("data"));
        settings.endpoint = emulator.url();
        settings.retry = model_cache::hub::retry::RetryPolicy::immediate();
        settings.token_file = Some(dir.path().join("hf-home/token"));
        let engine = Engine::open(settings, EngineOptions::fake(64 * GIB)).unwrap();
        (emulator, engine)
    });
    let app = model_cache_app::app_builder(mock_builder())
        .build(tauri::generate_context!())
        .expect("build the mock app");
    let api = {
        let _guard = runtime.enter();
        local_api::Api::new(engine)
    };
    app.manage(AppState {
        api,
        demo: None,
        api_url: "http://127.0.0.1:0".into(),
        server: None,
        mirror: None,
        pending_open: std::sync::Mutex::new(Some(model_cache_app::links::Opening::from_link(
            "modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q4_K_M",
        ))),
        confirm: answer.map(|(yes, asked)| -> model_cache_app::startup::Confirm {
            std::sync::Arc::new(move |question: String| {
                asked.lock().unwrap().push(question);
                Box::pin(async move { yes })
            })
        }),
    });
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("build the mock window");
    Rig {
        _emulator: emulator,
        _dir: dir,
        _app: app,
        webview,
        runtime,
    }
}

impl Rig {
    fn invoke(&self, cmd: &str, body: Value) -> Result<Value, Value> {
        let _guard = self.runtime.enter();
        get_ipc_response(
            &self.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: tauri::ipc::CallbackFn(0),
                error: tauri::ipc::CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: tauri::ipc::InvokeBody::Json(body),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<Value>().unwrap())
    }

    fn wait_for_job(&self, id: i64) -> Value {
        for _ in 0..1200 {
            let jobs = self.invoke("jobs", json!({})).unwrap();
            let job = jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["id"] == id)
                .cloned()
                .unwrap();
            if matches!(job["state"].as_str(), Some("done" | "failed" | "cancelled")) {
                return job;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("job {id} did not finish");
    }
}

#[test]
fn every_command_works_through_ipc() {
    let rig = rig();

    let health = rig.invoke("health", json!({})).unwrap();
    assert!(health["status"].is_string());
    assert_eq!(health["demo"], false);

    let variants = rig
        .invoke("variants", json!({ "repo": "demo/tiny-gguf" }))
        .unwrap();
    assert!(variants["variants"].as_array().unwrap().len() >= 6);
    assert!(
        variants["recommended"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let bad = rig
        .invoke("variants", json!({ "repo": "../x" }))
        .unwrap_err();
    assert_eq!(bad["kind"], "invalid_input");

    // The search command takes the API's query fields; a word finds models, it is no repo id.
    let found = rig
        .invoke(
            "search",
            json!({ "q": "tiny", "filter": "gguf", "sort": "likes" }),
        )
        .unwrap();
    let repos: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect();
    assert_eq!(repos, ["demo/tiny-gguf", "tiny-legacy"]);
    let bad_sort = rig
        .invoke("search", json!({ "q": "tiny", "sort": "stars" }))
        .unwrap_err();
    assert_eq!(bad_sort["kind"], "invalid_input");
    let missing = rig
        .invoke("variants", json!({ "repo": "demo/does-not-exist" }))
        .unwrap_err();
    assert!(
        matches!(
            missing["kind"].as_str(),
            Some("repo_not_found" | "unauthorized")
        ),
        "{missing}"
    );
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("demo/does-not-exist")
    );
    let gated = rig
        .invoke("variants", json!({ "repo": "demo/gated" }))
        .unwrap_err();
    assert!(gated["hint"].as_str().unwrap().contains("token"), "{gated}");

    rig.invoke("pause_all", json!({})).unwrap();
    let pulled = rig
        .invoke(
            "pull",
            json!({ "repo": "demo/tiny-gguf", "variant": "Q2_K" }),
        )
        .unwrap();
    let id = pulled["job_id"].as_i64().unwrap();
    let paused = rig
        .invoke("job_action", json!({ "id": id, "action": "pause" }))
        .unwrap();
    assert_eq!(paused["state"], "paused");
    let unknown = rig
        .invoke("job_action", json!({ "id": id, "action": "explode" }))
        .unwrap_err();
    assert_eq!(unknown["kind"], "invalid_input");
    rig.invoke("job_action", json!({ "id": id, "action": "resume" }))
        .unwrap();
    rig.invoke("resume_all", json!({})).unwrap();
    assert_eq!(rig.wait_for_job(id)["state"], "done");

    let cache = rig.invoke("cache_list", json!({})).unwrap();
    assert_eq!(cache[0]["repo"], "demo/tiny-gguf");
    let pinned = rig
        .invoke(
            "cache_pin",
            json!({ "repo": "demo/tiny-gguf", "pinned": true }),
        )
        .unwrap();
    assert_eq!(pinned["pinned"], true);
    let refused = rig
        .invoke("cache_delete", json!({ "repo": "demo/tiny-gguf" }))
        .unwrap_err();
    assert_eq!(refused["kind"], "conflict");
    rig.invoke(
        "cache_pin",
        json!({ "repo": "demo/tiny-gguf", "pinned": false }),
    )
    .unwrap();
    let removed = rig
        .invoke("cache_delete", json!({ "repo": "demo/tiny-gguf" }))
        .unwrap();
    assert!(removed["freed_bytes"].as_u64().unwrap() > 0);
    let reveal = rig
        .invoke("cache_reveal", json!({ "repo": "demo/tiny-gguf" }))
        .unwrap_err();
    assert_eq!(reveal["kind"], "not_found");

    let settings = rig
        .invoke(
            "settings_set",
            json!({ "settings": { "max_rate_bps": 1_000_000 } }),
        )
        .unwrap();
    assert_eq!(settings["max_rate_bps"], 1_000_000);
    assert_eq!(
        rig.invoke("settings_get", json!({})).unwrap()["max_rate_bps"],
        1_000_000
    );
    let invalid = rig
        .invoke(
            "settings_set",
            json!({ "settings": { "max_rate_bps": "fast" } }),
        )
        .unwrap_err();
    assert_eq!(invalid["kind"], "invalid_input");

    let token = rig
        .invoke("set_token", json!({ "token": "hf_demo_token" }))
        .unwrap();
    assert_eq!(token["token_set"], true);
    assert_eq!(
        rig.invoke("settings_get", json!({})).unwrap()["token_set"],
        true
    );
    rig.invoke("variants", json!({ "repo": "demo/gated" }))
        .unwrap();
    rig.invoke("set_token", json!({ "token": null })).unwrap();

    // What the app was asked to open (here a link on its command line) is handed to the UI
    // once.
    assert_eq!(
        rig.invoke("open_request", json!({})).unwrap(),
        json!({"repo": "demo/tiny-gguf", "file": null, "quant": "Q4_K_M"})
    );
    assert_eq!(rig.invoke("open_request", json!({})).unwrap(), Value::Null);

    // Start at login is off on a fresh machine (turning it on is checked in the real app, whose
    // HOME is a temporary folder).
    assert_eq!(
        rig.invoke("autostart_get", json!({})).unwrap(),
        json!(false)
    );

    let stats = rig.invoke("stats", json!({})).unwrap();
    assert!(stats["bytes_downloaded"].as_u64().unwrap() > 0);
    assert_eq!(stats["downloads"][0]["repo"], "demo/tiny-gguf");
    assert_eq!(stats["downloads"][0]["variant"], "Q2_K");
}

/// `mcache` finds the app's index and local API in the app-data folder named after the Tauri
/// identifier: the two must agree.
#[test]
fn the_app_data_folder_is_named_after_the_tauri_identifier() {
    let config: Value =
        serde_json::from_str(include_str!("../tauri.conf.json")).expect("tauri.conf.json parses");
    assert_eq!(config["identifier"], model_cache::env::APP_IDENTIFIER);
}

#[test]
fn a_change_of_where_the_token_goes_is_made_only_once_confirmed() {
    let change = json!({ "settings": { "endpoint": "https://mirror.example.org" } });
    // No dialog: refused.
    let rig = rig();
    let refused = rig.invoke("settings_set", change.clone()).unwrap_err();
    assert_eq!(refused["kind"], "cancelled", "{refused}");
    // Other settings need no confirmation.
    rig.invoke(
        "settings_set",
        json!({ "settings": { "max_rate_bps": "5MB/s" } }),
    )
    .unwrap();

    // The person says no, then yes: the question names the change.
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rig = rig_confirming(Some((false, asked.clone())));
    let refused = rig.invoke("settings_set", change.clone()).unwrap_err();
    assert_eq!(refused["kind"], "cancelled");
    let rig = rig_confirming(Some((true, asked.clone())));
    let saved = rig.invoke("settings_set", change).unwrap();
    assert_eq!(saved["endpoint"], "https://mirror.example.org", "{saved}");
    let questions = asked.lock().unwrap();
    assert_eq!(questions.len(), 2);
    assert!(
        questions[0].contains("endpoint") && questions[0].contains("https://mirror.example.org"),
        "{}",
        questions[0]
    );
}

#[test]
fn import_models_adopts_a_file_through_ipc() {
    let rig = rig();
    let source = tempfile::tempdir().unwrap();
    let file = source.path().join("tiny-Q2_K.gguf");
    let mut gguf = b"GGUF".to_vec();
    gguf.extend_from_slice(&3u32.to_le_bytes());
    gguf.extend_from_slice(&0u64.to_le_bytes());
    gguf.extend_from_slice(&0u64.to_le_bytes());
    gguf.extend_from_slice(&[7u8; 1024]);
    std::fs::write(&file, &gguf).unwrap();
    let body = |dry_run: bool| json!({ "body": { "from": "files", "paths": [file.to_str().unwrap()], "dry_run": dry_run } });
    let dry = rig.invoke("import_models", body(true)).unwrap();
    assert_eq!(dry["items"][0]["state"], "planned", "{dry:#}");
    assert_eq!(dry["saved_bytes"], gguf.len() as u64);
    let done = rig.invoke("import_models", body(false)).unwrap();
    assert_eq!(done["items"][0]["state"], "imported", "{done:#}");
    assert_eq!(done["items"][0]["files"][0]["method"], "hard_link");
    assert_eq!(std::fs::read(&file).unwrap(), gguf);
    let refused = rig
        .invoke(
            "import_models",
            json!({ "body": { "from": "somewhere", "paths": [] } }),
        )
        .unwrap_err();
    assert_eq!(refused["kind"], "invalid_input", "{refused:#}");
}

/// Records the notifications the app would show.
#[derive(Default)]
struct Shown(std::sync::Mutex<Vec<(String, String)>>);

impl model_cache_app::notify::Notifier for Shown {
    fn notify(&self, title: &str, body: &str) -> Result<(), String> {
        self.0.lock().unwrap().push((title.into(), body.into()));
        Ok(())
    }
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The tray's menu through its handler (no tray host needed): Pause all pauses the engine and
/// the status line says so, Quit with a download waiting asks first, Resume all lets it run.
/// The status line follows downloads from the engine's events alone (nobody polls it), and
/// stays untouched while nothing happens; a notification kind turned off is not shown.
#[test]
fn the_tray_menu_drives_the_engine_and_its_status_line_follows_events() {
    use model_cache_app::tray::{self, TrayStatus};
    let rig = rig();
    let app = rig._app.handle().clone();
    app.manage(TrayStatus::<MockRuntime>::new(None));
    let api = app.state::<AppState>().api.clone();
    let shown = std::sync::Arc::new(Shown::default());
    model_cache_app::forward_events(app.clone(), api.clone(), shown.clone());
    let status = || app.state::<TrayStatus<MockRuntime>>().text();
    let paused = || api.engine().scheduler().is_paused().unwrap();

    tray::handle_menu(&app, tray::MENU_PAUSE_ALL);
    wait_until("the pause", || paused() && status() == "Paused");
    let queued = rig
        .invoke(
            "pull",
            json!({ "repo": "demo/tiny-gguf", "variant": "Q2_K" }),
        )
        .unwrap();
    let id = queued["job_id"].as_i64().unwrap();

    // Quit with a download waiting: the question comes first, and "no" keeps the app.
    let jobs = rig.runtime.block_on(api.jobs()).unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = asked.clone();
    let keep: model_cache_app::startup::Confirm = std::sync::Arc::new(move |question: String| {
        recorded.lock().unwrap().push(question);
        Box::pin(async { false })
    });
    assert!(
        !rig.runtime
            .block_on(model_cache_app::actions::confirm_quit(&jobs, &keep))
    );
    let questions = asked.lock().unwrap().clone();
    assert_eq!(questions.len(), 1);
    assert!(
        questions[0].starts_with("A download is not finished."),
        "{}",
        questions[0]
    );
    assert!(
        rig.runtime
            .block_on(model_cache_app::actions::confirm_quit(&[], &keep))
    );
    assert_eq!(
        asked.lock().unwrap().len(),
        1,
        "nothing to stop: no question"
    );

    tray::handle_menu(&app, tray::MENU_RESUME_ALL);
    wait_until("the resume", || !paused());
    assert_eq!(rig.wait_for_job(id)["state"], "done");
    wait_until("the finished notification", || {
        shown.0.lock().unwrap().iter().any(|(title, body)| {
            title == "Download finished" && body == "demo/tiny-gguf Q2_K is ready to use."
        })
    });
    wait_until("an idle status line", || status() == "Idle");
    // A refresh still due from the last events lands within the throttle's period.
    std::thread::sleep(tray::TRAY_REFRESH_EVERY + Duration::from_millis(500));

    // Pushed, not polled: a line nobody refreshes stays as it is while nothing happens...
    app.state::<TrayStatus<MockRuntime>>().set("untouched");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(), "untouched");
    // ...and a download's events alone bring it back to the truth.
    rig.invoke(
        "settings_set",
        json!({ "settings": { "notify_finished": false } }),
    )
    .unwrap();
    let before = shown.0.lock().unwrap().len();
    let next = rig
        .invoke(
            "pull",
            json!({ "repo": "demo/tiny-gguf", "variant": "Q3_K_M" }),
        )
        .unwrap();
    assert_eq!(
        rig.wait_for_job(next["job_id"].as_i64().unwrap())["state"],
        "done"
    );
    wait_until("the status line after the download", || status() == "Idle");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        shown.0.lock().unwrap().len(),
        before,
        "finished notifications are turned off"
    );
}
