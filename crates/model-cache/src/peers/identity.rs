//! This machine's peer identity: a self-signed certificate and its key, made once with `rcgen`
//! and kept owner-only in the app-data folder (`peer-identity.json`, DER bytes as hex). Peers pin
//! its fingerprint at pairing, so it is never rotated silently: a new identity means pairing
//! again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PeerError;
use crate::store::atomic;

/// The identity's file in the app-data folder.
pub const IDENTITY_FILE: &str = "peer-identity.json";

/// A certificate and its private key. `Debug` never shows the key.
#[derive(Clone)]
pub struct PeerIdentity {
    pub certificate_der: Vec<u8>,
    key_der: Vec<u8>,
    fingerprint: String,
}

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    certificate: String,
    key: String,
}

impl PeerIdentity {
    /// The identity kept in `data_dir`, made on first use. A file that does not parse is
    /// replaced (peers paired with the old one must pair again).
    pub fn load_or_create(data_dir: &Path) -> Result<PeerIdentity, PeerError> {
        let path = data_dir.join(IDENTITY_FILE);
        if let Some(identity) = read(&path) {
            return Ok(identity);
        }
        let made = rcgen::generate_simple_self_signed(vec!["model-cache-peer".to_string()])
            .map_err(|error| PeerError::Certificate(error.to_string()))?;
        let identity = PeerIdentity::new(made.cert.der().to_vec(), made.key_pair.serialize_der());
        let stored = Stored {
            certificate: hex::encode(&identity.certificate_der),
            key: hex::encode(&identity.key_der),
        };
        let bytes = serde_json::to_vec(&stored).expect("strings serialize");
        write(&path, &bytes)?;
        Ok(identity)
    }

    fn new(certificate_der: Vec<u8>, key_der: Vec<u8>) -> PeerIdentity {
        let fingerprint = super::fingerprint(&certificate_der);
        PeerIdentity {
            certificate_der,
            key_der,
            fingerprint,
        }
    }

    /// The SHA-256 of the certificate, hex: what peers pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The short id peers and discovery know this machine by.
    pub fn peer_id(&self) -> String {
        super::peer_id(&self.fingerprint)
    }

    pub(crate) fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

fn read(path: &PathBuf) -> Option<PeerIdentity> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read(path).ok()?;
    let stored: Stored = serde_json::from_slice(&text).ok()?;
    Some(PeerIdentity::new(
        hex::decode(stored.certificate).ok()?,
        hex::decode(stored.key).ok()?,
    ))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PeerError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PeerError::Identity {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    atomic::write_private(path, bytes).map_err(|source| PeerError::Identity {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerIdentity::load_or_create(dir.path()).unwrap();
        let again = PeerIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        assert!(!format!("{first:?}").contains(&hex::encode(first.key_der())));
    }
}
