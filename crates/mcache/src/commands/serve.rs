//! `mcache serve`: the local API (and web UI) without the desktop app, as a thin call into
//! `local_api::serve`. The first stdout line is the UI's URL with the secret in its fragment
//! (`http://127.0.0.1:PORT/#token=...`) so scripts and tests can read it. Runs until Ctrl-C,
//! then shuts down cleanly (the discovery file `api.json` is removed, running downloads pause
//! in place). With `--demo`, the built-in demo hub is started first and used as the endpoint.
//! The local mirror (the cache as a Hub, `local_api::mirror`) runs beside it on its own port
//! unless `--no-mirror`, and the peer listener while sharing is on (`local_api::peers`).

use std::net::SocketAddr;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::exit::ExitStatus;
use crate::printer::Printer;

pub(super) async fn serve(
    global: GlobalArgs,
    args: ServeArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut interrupt = super::Interrupt::install()?;
    // A second server on the same folder would run the same queue: refuse before the engine
    // starts it.
    let mut settings = crate::settings::resolve(&global)?;
    let demo = if args.demo {
        let config = match &args.demo_big_size {
            Some(size) => hub_emulator::EmulatorConfig::demo_with_big_size(
                model_cache::units::parse_size(size)
                    .map_err(|error| anyhow::anyhow!("Invalid `--demo-big-size`: {error}"))?,
            ),
            None => hub_emulator::EmulatorConfig::demo(),
        };
        let emulator = hub_emulator::Emulator::start(config)
            .await
            .map_err(|error| anyhow::Error::new(error).context("Cannot start the demo hub"))?;
        // The demo's own cache, index, preferences, secret and token under `<data>/demo/`.
        settings = settings.into_demo(emulator.url());
        Some(emulator)
    } else {
        None
    };
    local_api::check_no_server_running(&settings.data_dir)?;
    let engine = super::open_engine_from(settings.clone(), true)?;
    // Like the app: which cached models have a newer commit, checked rarely in the background.
    drop(engine.spawn_update_checks(
        model_cache::engine::UpdateCheckPolicy::default(),
        std::sync::Arc::new(model_cache::engine::UnknownMetering),
    ));
    let mirror = if args.no_mirror {
        None
    } else {
        let mut mirror = local_api::MirrorConfig::new(settings.data_dir.clone());
        mirror.bind = SocketAddr::new(args.mirror_bind, args.mirror_port);
        mirror.allow_lan = args.mirror_lan;
        Some(local_api::serve_mirror(engine.clone(), mirror).await?)
    };
    // Paired LAN peers, served while sharing is on (`mcache peers share on`).
    let peers = local_api::peers::follow_sharing(
        engine.clone(),
        local_api::peers::PeerConfig {
            bind: SocketAddr::new(args.peers_bind, args.peers_port),
            fall_back_to_free_port: true,
            discovery: match args.peers_discovery.as_str() {
                "loopback" => local_api::peers::PeerDiscovery::Loopback,
                "off" => local_api::peers::PeerDiscovery::Off,
                _ => local_api::peers::PeerDiscovery::Lan,
            },
        },
    );
    let mut config = local_api::ApiConfig::new(settings.data_dir.clone());
    config.mirror_url = mirror.as_ref().map(|m| m.url().to_string());
    config.bind = SocketAddr::new(args.bind, args.port);
    config.allow_non_loopback = args.allow_remote;
    let server = local_api::serve(engine.clone(), config).await?;
    if printer.json {
        printer.json_line(&serde_json::json!({
            "url": server.ui_url(),
            "api": server.url(),
            "mirror": mirror.as_ref().map(|m| m.url()),
            "mirror_token_file": mirror.as_ref().map(|_| settings.data_dir.join(local_api::mirror::MIRROR_TOKEN_FILE)),
        }))?;
    } else {
        println!("{}", server.ui_url());
    }
    if let Some(mirror) = &mirror {
        printer.message(format!(
            "Mirror (the cache as a Hub) at {url}: HF_ENDPOINT={url}; its token (for private repos and downloads through it) is in {}",
            settings
                .data_dir
                .join(local_api::mirror::MIRROR_TOKEN_FILE)
                .display(),
            url = mirror.url()
        ));
    }
    if let Some(emulator) = &demo {
        printer.message(format!(
            "Demo hub at {} (repos: demo/tiny-gguf, demo/tiny-safetensors, demo/gated, demo/private, demo/big)",
            emulator.url()
        ));
    }
    printer.message("Open the URL above in a browser; press Ctrl-C to stop");
    interrupt.wait().await;
    server.shutdown().await?;
    peers.stop().await;
    if let Some(mirror) = mirror {
        mirror.shutdown().await;
    }
    engine.shutdown();
    if let Some(emulator) = demo {
        emulator.shutdown().await;
    }
    printer.message("Stopped");
    Ok(ExitStatus::Success)
}
