//! Requests to peers: pairing, the "a ref moved" notice, and the [`HubClient`] a download reads
//! a peer's copy of a file through (the peer serves the mirror's `/resolve/` route, so a peer is
//! read exactly as a mirror is, over a TLS connection pinned to its certificate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pairing::{self, Role};
use super::{PeerError, PeerIdentity, tls};
use crate::hub::{HubClient, HubError};
use crate::settings::Settings;

/// The pairing route on a peer's listener: the key exchange.
pub const PAIR_PATH: &str = "/api/peers/pair";
/// The second pairing route: the joiner's proof that it holds the key.
pub const PAIR_CONFIRM_PATH: &str = "/api/peers/pair/confirm";
/// The route a paired peer posts [`PeerRef`] to.
pub const REF_MOVED_PATH: &str = "/api/peers/ref-moved";
/// The route that lists a peer's refs (as [`PeerRef`] records).
pub const REFS_PATH: &str = "/api/peers/refs";

/// How long a peer has to answer a pairing or a notice.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the joiner sends to pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRequest {
    /// The joiner's name (its host name).
    pub name: String,
    /// The port of the joiner's own peer listener, when it runs (the accepter reaches it on the
    /// address the request came from).
    pub port: Option<u16>,
    /// The joiner's SPAKE2 message ([`pairing::start`]), hex.
    pub spake: String,
}

/// The accepter's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairAnswer {
    pub name: String,
    /// The accepter's SPAKE2 message, hex.
    pub spake: String,
    /// [`pairing::proof`] of the key as the accepter.
    pub proof: String,
}

/// The joiner's last word: its proof of the key. The accepter records the pairing only then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairConfirm {
    pub proof: String,
}

/// A branch or tag of a repo and the commit it names: what a paired peer's notice says moved
/// (`POST /api/peers/ref-moved`), and each entry of what a peer holds (`GET /api/peers/refs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRef {
    /// The repo's folder name (`models--org--name`).
    pub repo: String,
    pub ref_name: String,
    pub commit: String,
}

/// The peer that was paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    pub fingerprint: String,
    pub name: String,
    pub address: String,
}

fn http_client(
    identity: &PeerIdentity,
    pinned: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<reqwest::Client, PeerError> {
    let config = tls::client_config(identity, pinned, seen)?;
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| PeerError::Tls(error.to_string()))
}

/// Checks `address` is `host:port`.
pub fn check_address(address: &str) -> Result<(), PeerError> {
    let bad = || PeerError::BadAddress {
        address: address.to_string(),
    };
    let url = url::Url::parse(&format!("https://{address}/")).map_err(|_| bad())?;
    if url.port().is_none() || url.host_str().is_none() || url.path() != "/" {
        return Err(bad());
    }
    Ok(())
}

/// Pairs with the peer listening at `address`, whose user shows `code`: sends this machine's
/// proof, checks the peer's, and returns who it is. Nothing is recorded here.
pub async fn pair_with(
    identity: &PeerIdentity,
    name: &str,
    own_port: Option<u16>,
    address: &str,
    code: &str,
) -> Result<Paired, PeerError> {
    check_address(address)?;
    let code = pairing::normalize_code(code).ok_or_else(|| PeerError::BadCode {
        code: code.to_string(),
    })?;
    let seen = Arc::new(Mutex::new(None));
    let client = http_client(identity, None, Arc::clone(&seen))?;
    let unreachable = |reason: String| PeerError::Unreachable {
        address: address.to_string(),
        reason,
    };
    // The first request only learns the accepter's certificate (any route answers the
    // handshake); the proof needs its fingerprint before it is sent.
    let probe = client
        .get(format!("https://{address}/api/peers/hello"))
        .send()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    drop(probe);
    let accepter = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| unreachable("no certificate".into()))?;
    let (exchange, spake) = pairing::start(&code, Role::Joiner, &accepter, identity.fingerprint());
    let request = PairRequest {
        name: name.to_string(),
        port: own_port,
        spake,
    };
    let response = client
        .post(format!("https://{address}{PAIR_PATH}"))
        .json(&request)
        .send()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    // The pairing connection must be the one the exchange named.
    let now = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if now.as_deref() != Some(accepter.as_str()) {
        return Err(PeerError::BadProof {
            address: address.to_string(),
        });
    }
    let refused = |status: reqwest::StatusCode, body: String| {
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        PeerError::Refused {
            address: address.to_string(),
            reason,
        }
    };
    if !response.status().is_success() {
        let status = response.status();
        return Err(refused(status, response.text().await.unwrap_or_default()));
    }
    let answer: PairAnswer = response
        .json()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    let bad_proof = || PeerError::BadProof {
        address: address.to_string(),
    };
    let key = pairing::finish(exchange, &answer.spake).ok_or_else(bad_proof)?;
    if !pairing::check(
        &key,
        Role::Accepter,
        &accepter,
        identity.fingerprint(),
        &answer.proof,
    ) {
        return Err(bad_proof());
    }
    let confirm = PairConfirm {
        proof: pairing::proof(&key, Role::Joiner, &accepter, identity.fingerprint()),
    };
    let response = client
        .post(format!("https://{address}{PAIR_CONFIRM_PATH}"))
        .json(&confirm)
        .send()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(refused(status, response.text().await.unwrap_or_default()));
    }
    Ok(Paired {
        fingerprint: accepter,
        name: answer.name,
        address: address.to_string(),
    })
}

/// Tells the paired peer at `address` (pinned to `fingerprint`) that a ref moved.
pub async fn send_ref_moved(
    identity: &PeerIdentity,
    fingerprint: &str,
    address: &str,
    notice: &PeerRef,
) -> Result<(), PeerError> {
    let client = http_client(
        identity,
        Some(fingerprint.to_string()),
        Arc::new(Mutex::new(None)),
    )?;
    let response = client
        .post(format!("https://{address}{REF_MOVED_PATH}"))
        .json(notice)
        .send()
        .await
        .map_err(|error| PeerError::Unreachable {
            address: address.to_string(),
            reason: error_chain(&error),
        })?;
    if !response.status().is_success() {
        return Err(PeerError::Refused {
            address: address.to_string(),
            reason: format!("HTTP {}", response.status()),
        });
    }
    Ok(())
}

/// The refs the paired peer at `address` holds (see `Engine::shared_refs`).
pub async fn fetch_refs(
    identity: &PeerIdentity,
    fingerprint: &str,
    address: &str,
) -> Result<Vec<PeerRef>, PeerError> {
    let client = http_client(
        identity,
        Some(fingerprint.to_string()),
        Arc::new(Mutex::new(None)),
    )?;
    let unreachable = |reason: String| PeerError::Unreachable {
        address: address.to_string(),
        reason,
    };
    let response = client
        .get(format!("https://{address}{REFS_PATH}"))
        .send()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    if !response.status().is_success() {
        return Err(PeerError::Refused {
            address: address.to_string(),
            reason: format!("HTTP {}", response.status()),
        });
    }
    response
        .json()
        .await
        .map_err(|error| unreachable(error_chain(&error)))
}

/// A Hub client whose endpoint is the paired peer at `address`: TLS pinned to `fingerprint`,
/// this machine's certificate presented, no token, no proxy, no mirrors; timeouts and limits
/// from `settings`.
pub fn peer_hub_client(
    settings: &Settings,
    identity: &PeerIdentity,
    fingerprint: &str,
    address: &str,
) -> Result<HubClient, HubError> {
    let config = tls::client_config(
        identity,
        Some(fingerprint.to_string()),
        Arc::new(Mutex::new(None)),
    )
    .map_err(|error| HubError::InvalidEndpoint {
        url: format!("https://{address}"),
        reason: error.to_string(),
    })?;
    let mut peer = settings.clone();
    peer.endpoint = format!("https://{address}");
    peer.mirrors = Vec::new();
    peer.token = None;
    peer.token_file = None;
    peer.proxy = Default::default();
    peer.ca_bundle = None;
    peer.bucket = None;
    HubClient::with_tls(&peer, config)
}

/// An error and its causes, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
