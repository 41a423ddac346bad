//! The paired LAN peers a download may read from: those the index knows an address for, while
//! sharing is on, each with a client pinned to its certificate (made once per peer and address).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::source::PeerSource;
use crate::index::Index;
use crate::peers::PeerIdentity;
use crate::peers::client::PeerRef;
use crate::settings::Settings;

/// The index's peer state key of the compression setting (`Engine::set_peer_compression`).
pub(crate) const COMPRESS: &str = "compress";

/// How long a peer that could not be reached is left out of new files' sources.
const UNREACHABLE_FOR: Duration = Duration::from_secs(60);

pub(crate) struct PeerClients {
    settings: Settings,
    identity: OnceLock<Option<PeerIdentity>>,
    clients: Mutex<HashMap<(String, String), PeerSource>>,
    /// Peers (fingerprint, address) that did not answer, and until when they are left out: a
    /// paired machine that is switched off costs one wait, not one per file.
    down: Mutex<HashMap<(String, String), Instant>>,
}

impl PeerClients {
    pub(crate) fn new(settings: &Settings) -> PeerClients {
        PeerClients {
            settings: settings.clone(),
            identity: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        }
    }

    /// `peer` did not answer: left out of new files' sources for a minute.
    pub(crate) fn unreachable(&self, peer: &PeerSource) {
        let key = (peer.fingerprint.clone(), peer.base.clone());
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now() + UNREACHABLE_FOR);
    }

    fn is_down(&self, fingerprint: &str, base: &str) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let key = (fingerprint.to_string(), base.to_string());
        match down.get(&key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                down.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Tells every paired peer with a known address that a ref moved here (in the background;
    /// a peer that does not get it catches up when it comes back, `Engine::catch_up_refs`).
    pub(crate) fn notify_ref_moved(&self, index: &Index, notice: PeerRef) {
        let peers = self.current(index);
        let Some(Some(identity)) = self.identity.get().cloned() else {
            return;
        };
        for peer in peers {
            let identity = identity.clone();
            let notice = notice.clone();
            let Some(address) = peer.base.strip_prefix("https://").map(str::to_string) else {
                continue;
            };
            tokio::spawn(async move {
                let sent = crate::peers::client::send_ref_moved(
                    &identity,
                    &peer.fingerprint,
                    &address,
                    &notice,
                )
                .await;
                if let Err(error) = sent {
                    tracing::debug!(peer = %crate::peers::peer_id(&peer.fingerprint), %error, "A peer did not get the notice that a ref moved");
                }
            });
        }
    }

    /// The paired peers with a known address, when sharing is on and the engine is online.
    pub(crate) fn current(&self, index: &Index) -> Vec<PeerSource> {
        if self.settings.offline
            || index.peer_state("sharing").ok().flatten().as_deref() != Some("on")
        {
            return Vec::new();
        }
        let paired = match index.paired_peers() {
            Ok(paired) => paired,
            Err(error) => {
                tracing::debug!(%error, "Cannot read the paired peers");
                return Vec::new();
            }
        };
        if paired.iter().all(|p| p.address.is_none()) {
            return Vec::new();
        }
        let identity = self.identity.get_or_init(|| {
            PeerIdentity::load_or_create(&self.settings.data_dir)
                .inspect_err(|error| tracing::warn!(%error, "No peer identity; peers are not used"))
                .ok()
        });
        let Some(identity) = identity else {
            return Vec::new();
        };
        let compress = index.peer_state(COMPRESS).ok().flatten().as_deref() == Some("on");
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut sources = Vec::new();
        for peer in paired {
            let Some(address) = peer.address else {
                continue;
            };
            if self.is_down(&peer.fingerprint, &format!("https://{address}")) {
                continue;
            }
            let key = (peer.fingerprint.clone(), address.clone());
            if let Some(known) = clients.get(&key) {
                sources.push(PeerSource {
                    compress,
                    ..known.clone()
                });
                continue;
            }
            match crate::peers::client::peer_hub_client(
                &self.settings,
                identity,
                &peer.fingerprint,
                &address,
            ) {
                Ok(client) => {
                    let source = PeerSource {
                        fingerprint: peer.fingerprint.clone(),
                        base: format!("https://{address}"),
                        client,
                        compress,
                        fast_link: Default::default(),
                    };
                    clients.insert(key, source.clone());
                    sources.push(source);
                }
                Err(error) => {
                    tracing::warn!(peer = %peer.peer_id, %error, "Cannot make a client for a peer")
                }
            }
        }
        sources
    }
}
