//! The facade's LAN peers: this machine's identity, sharing on or off, pairing (both sides),
//! the peers paired and seen, and what the peer listener asks (is this certificate paired,
//! count what it served, a peer's "a ref moved" notice).
//!
//! The listener and discovery themselves are the local API's (`local_api::peers`); the
//! downloader reads the paired peers from the index when it resolves a file's sources.

use std::net::IpAddr;

use serde::Serialize;

use super::{Engine, EngineError};
use crate::index::now_ms;
use crate::index::peers::{PairedPeer, SeenPeer, StaleRef};
use crate::peers::client::{PairAnswer, PairConfirm, PairRequest, PeerRef};
use crate::peers::pairing::{self, Role};
use crate::peers::{PAIRING_ATTEMPTS, PAIRING_CODE_LIFETIME, PeerError, PeerIdentity};
use crate::repo::RepoId;

/// A peer discovery saw this recently is shown as online.
const ONLINE_WITHIN_MS: i64 = 30_000;

/// The LAN peers as the CLI and the UI show them.
#[derive(Debug, Clone, Serialize)]
pub struct PeersView {
    /// Whether this machine shares (listens and announces itself while the app or `mcache
    /// serve` runs, and uses paired peers as sources).
    pub sharing: bool,
    /// Whether downloads ask paired peers for compressed transfers of F16/BF16 safetensors
    /// files (`Engine::set_peer_compression`).
    pub compress: bool,
    /// This machine as peers see it.
    pub this: ThisPeer,
    /// The paired peers.
    pub paired: Vec<PeerView>,
    /// Peers discovery sees that are not paired.
    pub unpaired: Vec<SeenPeer>,
}

/// This machine as peers see it.
#[derive(Debug, Clone, Serialize)]
pub struct ThisPeer {
    pub peer_id: String,
    pub name: String,
    pub fingerprint: String,
}

/// A paired peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub peer_id: String,
    pub name: String,
    pub fingerprint: String,
    pub address: Option<String>,
    /// Discovery saw it (or it made a request) in the last 30 seconds.
    pub online: bool,
    pub paired_at: i64,
    pub last_seen: Option<i64>,
    pub bytes_served: u64,
    pub bytes_received: u64,
}

impl From<PairedPeer> for PeerView {
    fn from(peer: PairedPeer) -> PeerView {
        PeerView {
            online: peer
                .last_seen
                .is_some_and(|seen| now_ms() - seen < ONLINE_WITHIN_MS),
            peer_id: peer.peer_id,
            name: peer.name,
            fingerprint: peer.fingerprint,
            address: peer.address,
            paired_at: peer.paired_at,
            last_seen: peer.last_seen,
            bytes_served: peer.bytes_served,
            bytes_received: peer.bytes_received,
        }
    }
}

/// A pairing code this machine shows.
#[derive(Debug, Clone, Serialize)]
pub struct PairingCode {
    /// As shown: `ABCD-EFGH`.
    pub code: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// Why a pairing request was refused (said to the joiner).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingRefused {
    #[error("No pairing code is shown on this machine")]
    NoCode,
    #[error("The pairing code expired; show a new one")]
    Expired,
    #[error("Wrong pairing code")]
    WrongCode,
    #[error("Sharing is off on this machine")]
    SharingOff,
    #[error("This machine cannot pair now (its peer identity or index could not be read)")]
    Unavailable,
    #[error("Too many pairing attempts: the code is withdrawn; show a new one")]
    TooManyAttempts,
    #[error("Not a pairing request")]
    BadRequest,
}

/// A joiner's key exchange the accepter ran, waiting for the joiner's proof.
pub(crate) struct PairingSession {
    key: Vec<u8>,
    name: String,
    address: Option<String>,
    /// The code's expiry (unix ms).
    expires_at: i64,
}

const SHARING: &str = "sharing";
const PORT: &str = "listen_port";
const CODE: &str = "pairing_code";
const EXPIRES: &str = "pairing_expires";
const ATTEMPTS: &str = "pairing_attempts";

impl Engine {
    /// This machine's peer identity (made on first use).
    pub fn peer_identity(&self) -> Result<PeerIdentity, EngineError> {
        Ok(PeerIdentity::load_or_create(&self.inner.settings.data_dir)?)
    }

    /// The name peers see: the setting, else the host name.
    pub fn peer_name(&self) -> String {
        self.inner
            .settings
            .peer_name
            .clone()
            .or_else(|| sysinfo::System::host_name().ok())
            .unwrap_or_else(|| "model-cache".to_string())
    }

    /// Whether sharing is on (off until the user turns it on).
    pub fn sharing(&self) -> bool {
        self.inner
            .index
            .peer_state(SHARING)
            .ok()
            .flatten()
            .as_deref()
            == Some("on")
    }

    /// Turns sharing on or off. The listener follows in the process that serves (the app,
    /// `mcache serve`).
    pub fn set_sharing(&self, on: bool) -> Result<(), EngineError> {
        self.inner
            .index
            .set_peer_state(SHARING, Some(if on { "on" } else { "off" }))?;
        Ok(())
    }

    /// Whether downloads ask paired peers for compressed transfers of F16/BF16 safetensors
    /// files (off until the user turns it on: it saves time only on links of about 1 Gbit/s
    /// or less, `docs/peers.md`).
    pub fn peer_compression(&self) -> bool {
        self.inner
            .index
            .peer_state(crate::download::peers::COMPRESS)
            .ok()
            .flatten()
            .as_deref()
            == Some("on")
    }

    /// Turns compressed peer transfers on or off (for downloads that start afterwards).
    pub fn set_peer_compression(&self, on: bool) -> Result<(), EngineError> {
        self.inner.index.set_peer_state(
            crate::download::peers::COMPRESS,
            Some(if on { "on" } else { "off" }),
        )?;
        Ok(())
    }

    /// Records the port this machine's peer listener has (`None` when it stops), so a pairing
    /// started from another process (the CLI beside the app) can tell the peer where it listens.
    pub fn note_peer_port(&self, port: Option<u16>) {
        let port = port.map(|p| p.to_string());
        let _ = self.inner.index.set_peer_state(PORT, port.as_deref());
    }

    /// The port [`Engine::note_peer_port`] recorded.
    pub fn peer_port(&self) -> Option<u16> {
        self.inner
            .index
            .peer_state(PORT)
            .ok()
            .flatten()
            .and_then(|p| p.parse().ok())
    }

    /// The peers: paired, and seen by discovery in the last 30 seconds but not paired.
    pub fn peers(&self) -> Result<PeersView, EngineError> {
        let identity = self.peer_identity()?;
        let paired = self.inner.index.paired_peers()?;
        let unpaired = self
            .inner
            .index
            .seen_peers(now_ms() - ONLINE_WITHIN_MS)?
            .into_iter()
            .filter(|seen| {
                seen.fingerprint != identity.fingerprint()
                    && paired.iter().all(|p| p.fingerprint != seen.fingerprint)
            })
            .collect();
        Ok(PeersView {
            sharing: self.sharing(),
            compress: self.peer_compression(),
            this: ThisPeer {
                peer_id: identity.peer_id(),
                name: self.peer_name(),
                fingerprint: identity.fingerprint().to_string(),
            },
            paired: paired.into_iter().map(PeerView::from).collect(),
            unpaired,
        })
    }

    /// A new pairing code to show (it replaces any pending one), valid for two minutes and for
    /// one pairing.
    pub fn start_pairing(&self) -> Result<PairingCode, EngineError> {
        let code = pairing::new_code();
        let expires_at = now_ms() + PAIRING_CODE_LIFETIME.as_millis() as i64;
        let index = &self.inner.index;
        index.set_peer_state(CODE, Some(&code))?;
        index.set_peer_state(EXPIRES, Some(&expires_at.to_string()))?;
        index.set_peer_state(ATTEMPTS, Some("0"))?;
        Ok(PairingCode {
            code: pairing::display_code(&code),
            expires_at,
        })
    }

    /// Whether the code shown is still waiting for its peer.
    pub fn pairing_pending(&self) -> bool {
        let index = &self.inner.index;
        let live = index
            .peer_state(EXPIRES)
            .ok()
            .flatten()
            .and_then(|e| e.parse::<i64>().ok())
            .is_some_and(|expires| expires > now_ms());
        live && index.peer_state(CODE).ok().flatten().is_some()
    }

    /// Withdraws the code shown.
    pub fn cancel_pairing(&self) -> Result<(), EngineError> {
        for key in [CODE, EXPIRES, ATTEMPTS] {
            self.inner.index.set_peer_state(key, None)?;
        }
        Ok(())
    }

    /// The accepting side of pairing, first step: `joiner` is the fingerprint of the certificate
    /// the request came with, `from` its address. Runs this side of the key exchange for the
    /// code shown and answers with its message and the proof of the key; the joiner is paired
    /// only once it proves the same key ([`Engine::confirm_pairing`]). Each exchange counts as
    /// one of the code's three attempts.
    pub fn accept_pairing(
        &self,
        joiner: &str,
        from: IpAddr,
        request: &PairRequest,
    ) -> Result<PairAnswer, PairingRefused> {
        if !self.sharing() {
            return Err(PairingRefused::SharingOff);
        }
        let index = &self.inner.index;
        let Some(code) = index.peer_state(CODE).ok().flatten() else {
            return Err(PairingRefused::NoCode);
        };
        let expires = index
            .peer_state(EXPIRES)
            .ok()
            .flatten()
            .and_then(|e| e.parse::<i64>().ok())
            .unwrap_or(0);
        if expires <= now_ms() {
            let _ = self.cancel_pairing();
            return Err(PairingRefused::Expired);
        }
        let attempts = index
            .peer_state(ATTEMPTS)
            .ok()
            .flatten()
            .and_then(|a| a.parse::<u32>().ok())
            .unwrap_or(0);
        if attempts >= PAIRING_ATTEMPTS {
            tracing::warn!("Too many pairing attempts; the code shown is withdrawn");
            let _ = self.cancel_pairing();
            return Err(PairingRefused::TooManyAttempts);
        }
        let _ = index.set_peer_state(ATTEMPTS, Some(&(attempts + 1).to_string()));
        let identity = self
            .peer_identity()
            .map_err(|_| PairingRefused::Unavailable)?;
        let accepter = identity.fingerprint();
        let (exchange, spake) = pairing::start(&code, Role::Accepter, accepter, joiner);
        let key = pairing::finish(exchange, &request.spake).ok_or(PairingRefused::BadRequest)?;
        let address = request.port.map(|port| match from {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            IpAddr::V4(v4) => format!("{v4}:{port}"),
        });
        let proof = pairing::proof(&key, Role::Accepter, accepter, joiner);
        self.inner
            .pairing_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                joiner.to_string(),
                PairingSession {
                    key,
                    name: clean_name(&request.name),
                    address,
                    expires_at: expires,
                },
            );
        Ok(PairAnswer {
            name: self.peer_name(),
            spake,
            proof,
        })
    }

    /// The accepting side of pairing, last step: the joiner proves it holds the key of its
    /// exchange. Then it is paired, and the code is used up.
    pub fn confirm_pairing(
        &self,
        joiner: &str,
        confirm: &PairConfirm,
    ) -> Result<(), PairingRefused> {
        let session = self
            .inner
            .pairing_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(joiner)
            .ok_or(PairingRefused::NoCode)?;
        if session.expires_at <= now_ms() {
            return Err(PairingRefused::Expired);
        }
        let identity = self
            .peer_identity()
            .map_err(|_| PairingRefused::Unavailable)?;
        if !pairing::check(
            &session.key,
            Role::Joiner,
            identity.fingerprint(),
            joiner,
            &confirm.proof,
        ) {
            return Err(PairingRefused::WrongCode);
        }
        let _ = self.cancel_pairing();
        let peer_id = crate::peers::peer_id(joiner);
        if let Err(error) =
            self.inner
                .index
                .pair_peer(joiner, &peer_id, &session.name, session.address.as_deref())
        {
            tracing::warn!(%error, "Cannot record a paired peer");
            return Err(PairingRefused::Unavailable);
        }
        tracing::info!(peer = %peer_id, name = %session.name, "Paired with a peer");
        Ok(())
    }

    /// The joining side of pairing: the peer at `address` shows `code`. `own_port` is this
    /// machine's peer listener, when it runs, so the peer can reach it back.
    pub async fn pair_with(
        &self,
        address: &str,
        code: &str,
        own_port: Option<u16>,
    ) -> Result<PeerView, EngineError> {
        let identity = self.peer_identity()?;
        let paired =
            crate::peers::client::pair_with(&identity, &self.peer_name(), own_port, address, code)
                .await?;
        let peer_id = crate::peers::peer_id(&paired.fingerprint);
        let name = clean_name(&paired.name);
        self.inner
            .index
            .pair_peer(&paired.fingerprint, &peer_id, &name, Some(&paired.address))?;
        let peer = self
            .inner
            .index
            .paired_peer(&paired.fingerprint)?
            .ok_or(PeerError::UnknownPeer { peer: peer_id })?;
        Ok(peer.into())
    }

    /// Forgets a paired peer (by id or fingerprint): it is neither served nor used again.
    pub fn unpair(&self, peer: &str) -> Result<(), EngineError> {
        if !self.inner.index.unpair_peer(peer)? {
            return Err(PeerError::UnknownPeer {
                peer: peer.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// The paired peer whose certificate has this fingerprint (the listener asks for every
    /// request).
    pub fn paired_peer(&self, fingerprint: &str) -> Option<PairedPeer> {
        self.inner.index.paired_peer(fingerprint).ok().flatten()
    }

    /// Sets where a paired peer listens (the edges' discovery, or a test).
    pub fn set_peer_address(&self, fingerprint: &str, address: &str) -> Result<(), EngineError> {
        crate::peers::client::check_address(address)?;
        self.inner.index.set_peer_address(fingerprint, address)?;
        Ok(())
    }

    /// Records a peer discovery resolved (a paired one's address follows it).
    pub fn saw_peer(&self, peer: &SeenPeer) {
        if let Err(error) = self.inner.index.saw_peer(peer) {
            tracing::debug!(%error, "Cannot record a peer seen");
        }
    }

    /// A peer discovery no longer sees.
    pub fn lost_peer(&self, peer_id: &str) {
        let _ = self.inner.index.lost_peer(peer_id);
    }

    /// Counts bytes the listener served to a paired peer.
    pub fn peer_served(&self, fingerprint: &str, bytes: u64) {
        let _ = self.inner.index.count_peer_bytes(fingerprint, bytes, 0);
    }

    /// A paired peer's notice that a ref moved: kept as a stale mark on the ref (the mirror and
    /// the peer listener do not answer for it from the cache) until the Hub settles it (see
    /// [`Engine::settle_stale_refs`]). Commits are never marked (only branch and tag names
    /// move), nor refs the user holds.
    pub fn peer_ref_moved(&self, fingerprint: &str, notice: &PeerRef) -> Result<(), EngineError> {
        if crate::store::is_commit_hash(&notice.ref_name)
            || !crate::store::is_commit_hash(&notice.commit)
            || crate::repo::RepoId::from_folder_name(&notice.repo).is_none()
        {
            return Err(PeerError::BadNotice.into());
        }
        let peer_id = crate::peers::peer_id(fingerprint);
        let repo = crate::repo::RepoId::from_folder_name(&notice.repo).expect("checked");
        let current = self.inner.cache.repo(&repo).read_ref(&notice.ref_name);
        // A ref this cache does not have, or has at that commit, has nothing to go stale; a
        // ref the user holds at its commit is theirs (`mcache hold`).
        if current.is_none() || current.as_deref() == Some(notice.commit.as_str()) {
            return Ok(());
        }
        let held = self
            .inner
            .index
            .held_refs(&repo)?
            .iter()
            .any(|held| held.ref_name == notice.ref_name);
        if held {
            return Ok(());
        }
        self.inner.index.note_stale_ref(
            &notice.repo,
            &notice.ref_name,
            &notice.commit,
            &peer_id,
        )?;
        tracing::info!(repo = %notice.repo, r#ref = %notice.ref_name, peer = %peer_id, "A peer says a ref moved; marked stale until the Hub confirms");
        Ok(())
    }
}

impl Engine {
    /// Whether a peer marked `revision` of `repo` stale (see [`Engine::peer_ref_moved`]): the
    /// mirror and the peer listener then do not answer for the branch from the cache.
    pub fn stale_ref(&self, repo: &RepoId, revision: &str) -> Option<StaleRef> {
        if crate::store::is_commit_hash(revision) {
            return None;
        }
        self.inner
            .index
            .stale_ref(&repo.folder_name(), revision)
            .ok()
            .flatten()
    }

    /// Every stale mark.
    pub fn stale_refs(&self) -> Result<Vec<StaleRef>, EngineError> {
        Ok(self.inner.index.stale_refs()?)
    }

    /// The branches and tags this cache holds of public repos, each with its commit: what a
    /// paired peer compares its own with when it comes back (`GET /api/peers/refs`).
    pub fn shared_refs(&self) -> Result<Vec<PeerRef>, EngineError> {
        let scan = self.inner.cache.scan()?;
        let mut refs = Vec::new();
        for repo in scan.repos {
            if self.access(&repo.repo) != crate::serve::Access::Public {
                continue;
            }
            for (ref_name, commit) in repo.refs {
                let commit = commit.trim().to_string();
                if crate::store::is_commit_hash(&commit) {
                    refs.push(PeerRef {
                        repo: repo.repo.folder_name(),
                        ref_name,
                        commit,
                    });
                }
            }
        }
        Ok(refs)
    }

    /// Asks every paired peer with a known address for its refs and marks those of this cache
    /// that differ stale: a peer that was away catches up with the moves it missed. The Hub then
    /// settles each mark ([`Engine::settle_stale_refs`]), whichever side was behind.
    pub async fn catch_up_refs(&self) -> Result<usize, EngineError> {
        let identity = self.peer_identity()?;
        let index = self.inner.index.clone();
        let paired = tokio::task::spawn_blocking(move || index.paired_peers())
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))?;
        let mut marked = 0;
        for peer in paired {
            let Some(address) = &peer.address else {
                continue;
            };
            let theirs =
                match crate::peers::client::fetch_refs(&identity, &peer.fingerprint, address).await
                {
                    Ok(theirs) => theirs,
                    Err(error) => {
                        tracing::debug!(peer = %peer.peer_id, %error, "Cannot read a peer's refs");
                        continue;
                    }
                };
            for notice in theirs {
                let before = self.stale_ref_of(&notice);
                if self.peer_ref_moved(&peer.fingerprint, &notice).is_ok()
                    && self.stale_ref_of(&notice) != before
                {
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }

    /// What a paired peer holds (its refs of public repos, as it lists them), asked now.
    pub async fn peer_holdings(&self, peer: &str) -> Result<Vec<PeerRef>, EngineError> {
        let identity = self.peer_identity()?;
        let index = self.inner.index.clone();
        let paired = tokio::task::spawn_blocking(move || index.paired_peers())
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))?;
        let unknown = || PeerError::UnknownPeer {
            peer: peer.to_string(),
        };
        let found = paired
            .into_iter()
            .find(|p| p.peer_id == peer || p.fingerprint == peer)
            .ok_or_else(unknown)?;
        let address = found.address.ok_or_else(unknown)?;
        Ok(crate::peers::client::fetch_refs(&identity, &found.fingerprint, &address).await?)
    }

    fn stale_ref_of(&self, notice: &PeerRef) -> Option<String> {
        self.inner
            .index
            .stale_ref(&notice.repo, &notice.ref_name)
            .ok()
            .flatten()
            .map(|s| s.commit)
    }

    /// Asks the Hub (the team bucket's ref when the Hub cannot be reached) about every stale
    /// mark. The Hub names the cache's own commit: the mark goes
    /// (the peer was behind). It names another: that is recorded as an available update (what
    /// `mcache outdated` and the app show) and the mark stays, now with the Hub's commit, until
    /// the ref moves here, which it does when the new commit's files are downloaded (`mcache
    /// update`, from the peers that hold them): a ref never points at a commit whose files the
    /// cache does not hold. Neither can be reached: the mark stays.
    pub async fn settle_stale_refs(&self) -> Result<usize, EngineError> {
        let mut settled = 0;
        for stale in self.stale_refs()? {
            let Some(repo) = RepoId::from_folder_name(&stale.repo) else {
                continue;
            };
            let local = self.inner.cache.repo(&repo).read_ref(&stale.ref_name);
            if local.as_deref() == Some(stale.commit.as_str()) {
                self.inner
                    .index
                    .clear_stale_ref(&stale.repo, &stale.ref_name)?;
                settled += 1;
                continue;
            }
            let upstream = match self.inner.hub.revision_commit(&repo, &stale.ref_name).await {
                Ok(commit) => commit,
                Err(error) => {
                    // The team bucket's ref stands in for the Hub's when the Hub is out of
                    // reach (a team pushes what it verified).
                    let team = match self.inner.downloader.bucket() {
                        Some(bucket) => {
                            bucket.read_ref(&repo, &stale.ref_name).await.ok().flatten()
                        }
                        None => None,
                    };
                    match team {
                        Some(commit) => commit,
                        None => {
                            tracing::debug!(repo = %stale.repo, %error, "Neither the Hub nor the team bucket can settle a stale ref yet");
                            continue;
                        }
                    }
                }
            };
            if local.as_deref() == Some(upstream.as_str()) {
                self.inner
                    .index
                    .clear_stale_ref(&stale.repo, &stale.ref_name)?;
            } else {
                if let Some(local) = &local {
                    self.inner.index.record_ref_check(
                        &repo,
                        &stale.ref_name,
                        local,
                        Ok(&upstream),
                    )?;
                }
                self.inner
                    .index
                    .note_stale_ref(&stale.repo, &stale.ref_name, &upstream, "hub")?;
            }
            settled += 1;
        }
        Ok(settled)
    }
}

/// A peer's name as shown: printable, at most 64 characters.
fn clean_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    if name.trim().is_empty() {
        "peer".to_string()
    } else {
        name
    }
}
