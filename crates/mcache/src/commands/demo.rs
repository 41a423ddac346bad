//! `mcache demo`: the built-in demo hub (the hub emulator's demo catalog) on 127.0.0.1, so every
//! other command can be tried without a network (`--endpoint URL` or `HF_ENDPOINT=URL`).

use hub_emulator::{Emulator, EmulatorConfig, auth::DEMO_TOKEN};

use crate::exit::ExitStatus;
use crate::printer::Printer;

pub(super) async fn demo(port: u16, printer: &Printer) -> anyhow::Result<ExitStatus> {
    // Catch Ctrl-C before the URL is out: a script may interrupt as soon as it has read it.
    let mut interrupt = crate::commands::Interrupt::install()?;
    let config = EmulatorConfig {
        hub_port: port,
        ..EmulatorConfig::demo()
    };
    let emulator = Emulator::start(config)
        .await
        .map_err(|error| anyhow::Error::new(error).context("Cannot start the demo hub"))?;
    let url = emulator.url();
    // The URL is the first line of stdout, alone, so scripts can read it (`read url`).
    if printer.json {
        printer.json_line(&serde_json::json!({ "url": url, "token": DEMO_TOKEN }))?;
    } else {
        println!("{url}");
    }
    printer.message(format!(
        "Demo hub running at {url} (repos: demo/tiny-gguf, demo/tiny-safetensors, demo/gated, demo/private, demo/big)"
    ));
    printer.message(format!(
        "Try: mcache --endpoint {url} variants demo/tiny-gguf   (token for gated/private repos: {DEMO_TOKEN})"
    ));
    printer.message("Press Ctrl-C to stop");
    interrupt.wait().await;
    emulator.shutdown().await;
    printer.message("Demo hub stopped");
    Ok(ExitStatus::Success)
}
