//! Pairing: a short code shown on one machine (the one that accepts) and typed on the other
//! (the one that joins).
//!
//! The joiner connects to the accepter's peer listener over TLS, each side presenting its own
//! self-signed certificate and neither pinning yet. The code is never sent: both sides run
//! SPAKE2 (a password-authenticated key exchange, `spake2` over Ed25519) with the code as the
//! password and the two certificates' fingerprints, as that connection saw them, as the
//! identities. Each side then proves it holds the resulting key with an HMAC-SHA256 over both
//! fingerprints (the accepter first, then the joiner), and only then records the other's
//! fingerprint.
//!
//! What this gives: a passive observer learns nothing (TLS, and the exchange itself); a machine
//! in the middle presents other certificates, so the identities differ and the keys do not
//! match; and whoever does not know the code gets one guess per exchange, with no way to test
//! guesses offline. The accepter allows three exchanges per code, so an attacker's chance is
//! 3 in 31^8 (about 2^-38).

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// Symbols of a code: no 0/O, 1/I/L confusion.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Symbols in a code.
pub const CODE_LENGTH: usize = 8;

/// Who a proof is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The machine that typed the code.
    Joiner,
    /// The machine that showed it.
    Accepter,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Joiner => "model-cache pairing v1: joiner",
            Role::Accepter => "model-cache pairing v1: accepter",
        }
    }
}

/// A new code, as stored and compared (no separator).
pub fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LENGTH)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A code as shown: `ABCD-EFGH`.
pub fn display_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

/// A code as the user typed it (any case, dashes and spaces anywhere), or `None` when it
/// cannot be one.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// One side of the key exchange, started.
pub struct Exchange(Spake2<Ed25519Group>);

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exchange(<secret>)")
    }
}

/// Starts `role`'s side of the exchange for `code` between the accepter's and the joiner's
/// certificates; the message to send (hex).
pub fn start(code: &str, role: Role, accepter: &str, joiner: &str) -> (Exchange, String) {
    let password = Password::new(code.as_bytes());
    let (joiner_id, accepter_id) = (
        Identity::new(joiner.as_bytes()),
        Identity::new(accepter.as_bytes()),
    );
    let (state, message) = match role {
        Role::Joiner => Spake2::<Ed25519Group>::start_a(&password, &joiner_id, &accepter_id),
        Role::Accepter => Spake2::<Ed25519Group>::start_b(&password, &joiner_id, &accepter_id),
    };
    (Exchange(state), hex::encode(message))
}

/// The shared key from the other side's message (hex); `None` for a message that is not one.
/// Both sides get the same key only when both used the same code and saw the same certificates.
pub fn finish(exchange: Exchange, theirs: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(theirs).ok()?;
    exchange.0.finish(&bytes).ok()
}

fn mac(key: &[u8], role: Role, accepter: &str, joiner: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(role.label().as_bytes());
    mac.update(b"\n");
    mac.update(accepter.as_bytes());
    mac.update(b"\n");
    mac.update(joiner.as_bytes());
    mac
}

/// The proof `role` sends: that it holds `key`, bound to both fingerprints.
pub fn proof(key: &[u8], role: Role, accepter: &str, joiner: &str) -> String {
    hex::encode(mac(key, role, accepter, joiner).finalize().into_bytes())
}

/// Whether `presented` is `role`'s proof of `key` for these fingerprints (constant time).
pub fn check(key: &[u8], role: Role, accepter: &str, joiner: &str, presented: &str) -> bool {
    let Ok(bytes) = hex::decode(presented) else {
        return false;
    };
    mac(key, role, accepter, joiner)
        .verify_slice(&bytes)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back_however_they_are_typed() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LENGTH);
        let shown = display_code(&code);
        assert_eq!(normalize_code(&shown).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_code(&shown.to_lowercase().replace('-', " ")).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(normalize_code("ABCD-EFG0"), None, "no zero");
        assert_eq!(normalize_code("ABC"), None);
    }

    fn exchange(
        joiner_code: &str,
        accepter_code: &str,
        seen_by_joiner: &str,
    ) -> (Vec<u8>, Vec<u8>) {
        let (joiner, to_accepter) = start(joiner_code, Role::Joiner, seen_by_joiner, "bb");
        let (accepter, to_joiner) = start(accepter_code, Role::Accepter, "aa", "bb");
        (
            finish(joiner, &to_joiner).unwrap(),
            finish(accepter, &to_accepter).unwrap(),
        )
    }

    #[test]
    fn the_same_code_and_certificates_give_one_key_and_proofs_that_check() {
        let (joiner, accepter) = exchange("ABCDEFGH", "ABCDEFGH", "aa");
        assert_eq!(joiner, accepter);
        let good = proof(&accepter, Role::Accepter, "aa", "bb");
        assert!(check(&joiner, Role::Accepter, "aa", "bb", &good));
        assert!(
            !check(&joiner, Role::Joiner, "aa", "bb", &good),
            "roles differ"
        );
        assert!(!check(&joiner, Role::Accepter, "ac", "bb", &good));
        assert!(!check(&joiner, Role::Accepter, "aa", "bb", "zz"));
    }

    #[test]
    fn another_code_or_another_certificate_gives_another_key() {
        let (joiner, accepter) = exchange("ABCDEFGJ", "ABCDEFGH", "aa");
        assert_ne!(joiner, accepter);
        // A machine in the middle: the joiner saw another certificate than the accepter's.
        let (joiner, accepter) = exchange("ABCDEFGH", "ABCDEFGH", "mitm");
        assert_ne!(joiner, accepter);
    }
}
