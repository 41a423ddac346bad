//! `mcache peers`: the LAN peers (list, pair, unpair, sharing on or off), each a call into the
//! engine. The listener itself runs in the app or `mcache serve` while sharing is on.

use std::time::Duration;

use model_cache::engine::{Engine, PeersView};
use model_cache::units::format_size;

use crate::cli::PeersAction;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

pub(super) async fn peers(
    engine: &Engine,
    action: Option<PeersAction>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    match action.unwrap_or(PeersAction::List) {
        PeersAction::List => {
            let view = engine.peers()?;
            printer.output(&view, |view| list(view, printer))?;
        }
        PeersAction::Share { state } => {
            let on = state == "on";
            engine.set_sharing(on)?;
            printer.output(&serde_json::json!({ "sharing": on }), |_| {
                printer.message(if on {
                    "Sharing is on: the app or `mcache serve` serves paired peers and announces this machine on the LAN"
                } else {
                    "Sharing is off: nothing is served to or announced on the LAN"
                });
            })?;
        }
        PeersAction::Compress { state } => {
            let on = state == "on";
            engine.set_peer_compression(on)?;
            printer.output(&serde_json::json!({ "compress": on }), |_| {
                printer.message(if on {
                    "Compression is on: downloads ask paired peers to compress F16/BF16 safetensors files (skipped on links faster than 1 Gbit/s)"
                } else {
                    "Compression is off: paired peers send files as they are"
                });
            })?;
        }
        PeersAction::Unpair { peer } => {
            engine.unpair(&peer)?;
            printer.output(&serde_json::json!({ "unpaired": peer }), |_| {
                printer.message(format!(
                    "Unpaired `{peer}`: it is neither served nor used again"
                ));
            })?;
        }
        PeersAction::Pair {
            address: Some(address),
            code: Some(code),
        } => {
            if !engine.sharing() {
                return Err(CliError::usage("Sharing is off on this machine")
                    .hint("run `mcache peers share on` first")
                    .into());
            }
            // A peer id discovery saw stands for its address.
            let view = engine.peers()?;
            let address = view
                .unpaired
                .iter()
                .find(|seen| seen.peer_id == address)
                .map(|seen| seen.address.clone())
                .unwrap_or(address);
            let peer = engine
                .pair_with(&address, &code, engine.peer_port())
                .await?;
            printer.output(&peer, |peer| {
                printer.message(format!(
                    "Paired with {} ({}) at {}",
                    peer.name,
                    peer.peer_id,
                    peer.address.as_deref().unwrap_or("?")
                ));
            })?;
        }
        PeersAction::Pair { .. } => return show_code(engine, printer).await,
    }
    Ok(ExitStatus::Success)
}

/// Shows a pairing code and waits until a peer uses it, it expires, or Ctrl-C.
async fn show_code(engine: &Engine, printer: &Printer) -> anyhow::Result<ExitStatus> {
    if !engine.sharing() {
        return Err(CliError::usage("Sharing is off on this machine")
            .hint("run `mcache peers share on` first")
            .into());
    }
    if engine.peer_port().is_none() {
        printer.warning(
            "no peer listener runs: start the app or `mcache serve` so the other machine can reach this one",
        );
    }
    let before: Vec<String> = engine
        .peers()?
        .paired
        .into_iter()
        .map(|p| p.fingerprint)
        .collect();
    let code = engine.start_pairing()?;
    let this = engine.peers()?.this;
    printer.output(&code, |code| {
        printer.data(&code.code);
        printer.message(format!(
            "On the other machine: mcache peers pair {} {}  (or its LAN address, port {}, instead of the id; valid for two minutes; this machine is {})",
            this.peer_id,
            code.code,
            engine
                .peer_port()
                .unwrap_or(model_cache::peers::DEFAULT_PEER_PORT),
            this.name,
        ));
    })?;
    let mut interrupt = super::Interrupt::install()?;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = interrupt.wait() => {
                engine.cancel_pairing()?;
                printer.message("Pairing cancelled");
                return Ok(ExitStatus::Interrupted);
            }
        }
        if engine.pairing_pending() {
            continue;
        }
        let view = engine.peers()?;
        return match view
            .paired
            .iter()
            .find(|p| !before.contains(&p.fingerprint))
        {
            Some(peer) => {
                printer.message(format!("Paired with {} ({})", peer.name, peer.peer_id));
                Ok(ExitStatus::Success)
            }
            None => Err(CliError::usage("The pairing code expired or was withdrawn")
                .hint("run `mcache peers pair` again")
                .into()),
        };
    }
}

fn list(view: &PeersView, printer: &Printer) {
    printer.message(format!(
        "This machine: {} ({}), sharing {}, compression {}",
        view.this.name,
        view.this.peer_id,
        if view.sharing { "on" } else { "off" },
        if view.compress { "on" } else { "off" }
    ));
    if view.paired.is_empty() {
        printer.message(
            "No paired peer: `mcache peers pair` shows a code to type on the other machine",
        );
    }
    for peer in &view.paired {
        printer.data(format!(
            "paired  {:<16} {:<20} {:<22} {:<7} served {:>10}  received {:>10}",
            peer.peer_id,
            peer.name,
            peer.address.as_deref().unwrap_or("-"),
            if peer.online { "online" } else { "-" },
            format_size(peer.bytes_served),
            format_size(peer.bytes_received)
        ));
    }
    for seen in &view.unpaired {
        printer.data(format!(
            "seen    {:<16} {:<20} {:<22}",
            seen.peer_id, seen.name, seen.address
        ));
    }
}
