//! Start-up: settings from the environment and the saved preferences, demo mode, the engine and
//! the local API.

use std::net::ToSocketAddrs;
use std::time::Duration;

use model_cache::engine::{Engine, EngineOptions, Preferences};
use model_cache::{Settings, Token};

use crate::args::AppArgs;

/// The token the demo hub accepts for its gated and private repos.
pub const DEMO_TOKEN: &str = "hf_demo_token";

/// What the running app holds.
pub struct AppState {
    /// The engine behind the local API's operations, shared by the IPC commands and the server.
    pub api: local_api::Api,
    /// The in-process demo hub, when running in demo mode.
    pub demo: Option<hub_emulator::Emulator>,
    /// Base URL of the local API (`http://127.0.0.1:PORT`).
    pub api_url: String,
    pub server: Option<local_api::ApiServer>,
    /// The local mirror (the cache as a Hub), when it could start.
    pub mirror: Option<local_api::MirrorServer>,
    /// What the window is asked to open (the command line, a link, a second launch), kept until
    /// the UI takes it (`open_request`).
    pub pending_open: std::sync::Mutex<Option<crate::links::Opening>>,
    /// Asks the person to confirm a change of where requests and the Hub token go (a native
    /// dialog in the app); `None` refuses every such change.
    pub confirm: Option<Confirm>,
}

/// Asks a yes/no question and resolves to the answer.
pub type Confirm =
    std::sync::Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Engine(#[from] model_cache::engine::EngineError),
    #[error(transparent)]
    Preferences(#[from] model_cache::engine::PreferencesError),
    #[error("Could not start the demo hub: {0}")]
    Demo(#[source] std::io::Error),
    #[error(transparent)]
    Api(#[from] local_api::ServeError),
}

/// The settings of this process: the environment (through the engine's `env` module), then the
/// saved preferences.
pub fn settings() -> Result<Settings, StartupError> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let lookup = |name: &str| std::env::var(name).ok();
    let platform = model_cache::env::platform_data_dir(
        model_cache::env::Os::current(),
        &lookup,
        home.as_deref(),
    );
    let data_dir = model_cache::env::app_data_dir(platform.as_deref());
    let mut settings = model_cache::env::settings_from_env(lookup, home, data_dir);
    settings.user_agent = concat!("model-cache-app/", env!("CARGO_PKG_VERSION")).to_string();
    // A bad saved file or setting is logged and shown in the window's alerts (the engine's
    // health); it never stops the start.
    Preferences::load_checked(&settings.data_dir)
        .0
        .apply(&mut settings);
    Ok(settings)
}

/// What the window shows while the app waits for its cache folder (`startup_state`); `None`
/// once the app has started.
#[derive(Default)]
pub struct Waiting(std::sync::Mutex<Option<WaitingView>>);

impl Waiting {
    pub fn set(&self, view: Option<WaitingView>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }

    pub fn get(&self) -> Option<WaitingView> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why the app is not running yet, in the window's words.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitingView {
    pub message: String,
    pub hint: String,
}

pub fn waiting_view(reason: &str) -> WaitingView {
    WaitingView {
        message: reason.to_string(),
        hint: "Connect the drive (or mount the share) that holds it: Model Cache starts as soon \
               as the folder is back. To use another folder, run: mcache config set cache_dir \
               PATH, then start the app again."
            .to_string(),
    }
}

/// Returns once the chosen cache folder is there (checked every `every`).
pub fn wait_for_cache_folder(every: Duration) {
    loop {
        std::thread::sleep(every);
        if let Ok(settings) = settings()
            && model_cache::engine::check_cache_folder(&settings).is_ok()
        {
            tracing::info!(cache = %settings.hub_cache.display(), "the cache folder is back");
            return;
        }
    }
}

/// Whether the endpoint's host answers a TCP connection within a short time. Used to fall back
/// to the demo hub on a machine with no network.
pub fn endpoint_reachable(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

/// Starts the engine (with the demo hub when asked or when the Hub is unreachable) and the local
/// API.
pub async fn start(args: &AppArgs) -> Result<AppState, StartupError> {
    let mut settings = settings()?;
    let demo_wanted = args.demo || {
        let endpoint = settings.endpoint.clone();
        let offline = settings.offline;
        !offline
            && !tokio::task::spawn_blocking(move || endpoint_reachable(&endpoint))
                .await
                .unwrap_or(false)
    };
    let demo = if demo_wanted {
        if !args.demo {
            tracing::warn!(
                endpoint = %settings.endpoint,
                "the Hub is unreachable: using the built-in demo hub"
            );
        }
        let emulator = hub_emulator::Emulator::start(hub_emulator::EmulatorConfig::demo())
            .await
            .map_err(StartupError::Demo)?;
        // The demo keeps state of its own (`<data dir>/demo/`: cache, index, preferences,
        // secret, token file): a demo session never touches the real ones.
        settings = settings.into_demo(emulator.url());
        // Gated demo repos open with the demo token out of the box.
        if settings.token.is_none() {
            settings.token = Token::new(DEMO_TOKEN);
        }
        Some(emulator)
    } else {
        None
    };
    let data_dir = settings.data_dir.clone();
    // `mcache serve` (or another copy of the app) running on this folder runs its queue: refuse
    // before this engine starts a second one.
    local_api::check_no_server_running(&data_dir)?;
    let engine = Engine::open(settings, EngineOptions::system())?;
    // The index is an index, not the truth: bring it in line with the disk (other tools may have
    // added or removed models while the app was closed). In the background: start-up stays fast.
    let checked = engine.clone();
    drop(tokio::task::spawn_blocking(move || {
        match checked.doctor(false) {
            Ok(report) if !report.is_healthy() => {
                tracing::warn!(?report, "the cache needs attention: run `mcache doctor`")
            }
            Ok(_) => tracing::debug!("index matches the cache"),
            Err(error) => tracing::warn!(%error, "could not check the index against the cache"),
        }
    }));
    // "A newer commit is available": checked in the background, rarely, never offline or on a
    // metered connection.
    drop(engine.spawn_update_checks(
        model_cache::engine::UpdateCheckPolicy::default(),
        std::sync::Arc::new(crate::metered::SystemMetering),
    ));
    // Downloads wait on a metered connection when the policy says so.
    drop(engine.watch_metering(std::sync::Arc::new(crate::metered::SystemMetering)));
    // The mirror is a convenience beside the app: when it cannot start (its port and every other
    // refused), the app runs without it and says why.
    let mirror = match local_api::serve_mirror(
        engine.clone(),
        local_api::MirrorConfig::new(data_dir.clone()),
    )
    .await
    {
        Ok(mirror) => Some(mirror),
        Err(error) => {
            tracing::warn!(%error, "the local mirror did not start");
            None
        }
    };
    // Paired LAN peers are served while sharing is on (turned on in the Peers panel or with
    // `mcache peers share on`); nothing listens on the LAN while it is off. The listener ends
    // with the app.
    drop(local_api::peers::follow_sharing(
        engine.clone(),
        local_api::peers::PeerConfig::default(),
    ));
    let api = local_api::Api::new(engine);
    let mut config = local_api::ApiConfig::new(data_dir);
    config.mirror_url = mirror.as_ref().map(|m| m.url().to_string());
    let server = local_api::serve_api(api.clone(), config).await?;
    Ok(AppState {
        api_url: server.url().to_string(),
        server: Some(server),
        mirror,
        api,
        demo,
        pending_open: std::sync::Mutex::new(args.opening()),
        confirm: None,
    })
}
