//! LAN peers: other Model Cache machines the user paired with, which serve what they hold
//! through the local mirror's routes over TLS and are one more download source.
//!
//! - [`identity`]: this machine's peer identity, a self-signed certificate (`rcgen`) and its
//!   key, kept owner-only in the app-data folder. Its SHA-256 fingerprint is what peers pin.
//! - [`tls`]: the `rustls` configurations: a server that asks every client for its certificate
//!   (the routes then check that the fingerprint belongs to a paired peer), and a client that
//!   accepts exactly one pinned server certificate and presents this machine's own.
//! - [`pairing`]: the short code shown on one machine and typed on the other, run as a SPAKE2
//!   key exchange over the (not yet pinned) TLS connection with the two certificates'
//!   fingerprints as identities, and the proofs of the key both sides exchange.
//! - [`planes`]: the compressed encoding of a range of an F16/BF16 safetensors file (byte
//!   planes, then zstd), asked for by a download when the user turned it on.
//! - [`client`]: requests to a paired peer (pairing, the "a ref moved" notice) and the
//!   `HubClient` a download uses to read a peer's copy of a file.
//!
//! The index keeps the paired peers (fingerprint, name, last known address, bytes each way),
//! the peers discovery sees, the pending pairing code and the refs peers said moved
//! (`index/peers.rs`). Listening and discovery are the edges' (the local API's peer listener);
//! the engine never opens a socket for peers while sharing is off.
//!
//! **Architecture Invariant (peers):** a peer is trusted for nothing but being the machine that
//! was paired: every byte it serves is checked against the Hub's hash like any other source's,
//! and a peer is served or used only while its certificate's fingerprint is the one pinned at
//! pairing.

pub mod client;
pub mod identity;
pub mod pairing;
pub mod planes;
pub mod tls;

use sha2::{Digest, Sha256};

pub use identity::PeerIdentity;

/// The DNS-SD service type peers announce and browse.
pub const SERVICE_TYPE: &str = "_model-cache._tcp.local.";

/// The port the peer listener asks for first (a free one is taken when it is in use).
pub const DEFAULT_PEER_PORT: u16 = 7871;

/// How long a pairing code is valid.
pub const PAIRING_CODE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);

/// Wrong codes a pending pairing tolerates before it is cancelled.
pub const PAIRING_ATTEMPTS: u32 = 3;

/// The SHA-256 of a certificate's DER bytes, lowercase hex: what pairing pins.
pub fn fingerprint(certificate_der: &[u8]) -> String {
    hex::encode(Sha256::digest(certificate_der))
}

/// A peer's short id: the first 16 hex digits of its fingerprint (what discovery announces as
/// the instance name and what the CLI and UI show).
pub fn peer_id(fingerprint: &str) -> String {
    fingerprint.chars().take(16).collect()
}

/// Errors of peer identity, pairing and peer requests.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("Cannot read or write the peer identity `{}`: {source}", path.display())]
    Identity {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot make a peer certificate: {0}")]
    Certificate(String),
    #[error("Cannot set up TLS for peers: {0}")]
    Tls(String),
    #[error("`{address}` is not a peer address (`host:port`)")]
    BadAddress { address: String },
    #[error("`{code}` is not a pairing code (8 letters and digits, as the other machine shows it)")]
    BadCode { code: String },
    #[error("The peer at `{address}` did not answer: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("The peer at `{address}` refused to pair: {reason}")]
    Refused { address: String, reason: String },
    #[error(
        "Wrong pairing code, or the connection to `{address}` was intercepted: the keys do not match; nothing was paired"
    )]
    BadProof { address: String },
    #[error("A peer's notice names no branch of a known repo, or no commit")]
    BadNotice,
    #[error("No paired peer `{peer}`")]
    UnknownPeer { peer: String },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

impl crate::error::Diagnostic for PeerError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            PeerError::Identity { .. } => ErrorKind::Io,
            PeerError::Certificate(_) | PeerError::Tls(_) => ErrorKind::Protocol,
            PeerError::BadAddress { .. }
            | PeerError::BadCode { .. }
            | PeerError::BadNotice
            | PeerError::UnknownPeer { .. } => ErrorKind::InvalidInput,
            PeerError::Unreachable { .. } => ErrorKind::Network,
            PeerError::Refused { .. } | PeerError::BadProof { .. } => ErrorKind::Forbidden,
            PeerError::Index(error) => error.kind(),
        }
    }
}
