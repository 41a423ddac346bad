//! LAN peers: the paired ones (with the fingerprint pinned at pairing, their last known address
//! and the bytes exchanged), the ones discovery saw, whether sharing is on, the pending pairing
//! code, and the refs a peer said moved (stale here until the Hub confirms).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Index, IndexError, now_ms};

/// The migration of the LAN peers issue (appended to the index's list).
pub(crate) const MIGRATION: &str = "
CREATE TABLE peers (
    fingerprint    TEXT PRIMARY KEY,   -- SHA-256 of its certificate, hex: pinned at pairing
    peer_id        TEXT NOT NULL,      -- the fingerprint's first 16 hex digits
    name           TEXT NOT NULL,      -- the name it gave (its host name)
    address        TEXT,               -- `host:port` of its peer listener, last known
    paired_at      INTEGER NOT NULL,   -- unix ms
    last_seen      INTEGER,            -- unix ms, by discovery or a request
    bytes_served   INTEGER NOT NULL DEFAULT 0,  -- bytes this machine served it
    bytes_received INTEGER NOT NULL DEFAULT 0   -- bytes this machine's downloads got from it
) WITHOUT ROWID;
CREATE TABLE peers_seen (
    peer_id     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,         -- as announced (TXT `fp`); only pairing makes it trusted
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    last_seen   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE peer_state (
    key   TEXT PRIMARY KEY,            -- `sharing`, `pairing_code`, `pairing_expires`, `pairing_attempts`
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE peer_stale_refs (
    repo        TEXT NOT NULL,         -- folder name, `models--org--name`
    ref_name    TEXT NOT NULL,
    commit_hash TEXT NOT NULL,         -- the commit the peer says the ref moved to
    peer_id     TEXT NOT NULL,         -- who said so
    noted_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, ref_name)
) WITHOUT ROWID;
";

/// A paired peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedPeer {
    pub fingerprint: String,
    pub peer_id: String,
    pub name: String,
    pub address: Option<String>,
    pub paired_at: i64,
    pub last_seen: Option<i64>,
    pub bytes_served: u64,
    pub bytes_received: u64,
}

/// A peer discovery saw (paired or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenPeer {
    pub peer_id: String,
    pub fingerprint: String,
    pub name: String,
    pub address: String,
    pub last_seen: i64,
}

/// A ref a peer said moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRef {
    pub repo: String,
    pub ref_name: String,
    pub commit: String,
    pub peer_id: String,
    pub noted_at: i64,
}

fn paired_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PairedPeer> {
    Ok(PairedPeer {
        fingerprint: row.get(0)?,
        peer_id: row.get(1)?,
        name: row.get(2)?,
        address: row.get(3)?,
        paired_at: row.get(4)?,
        last_seen: row.get(5)?,
        bytes_served: row.get::<_, i64>(6)? as u64,
        bytes_received: row.get::<_, i64>(7)? as u64,
    })
}

const PAIRED_COLUMNS: &str =
    "fingerprint, peer_id, name, address, paired_at, last_seen, bytes_served, bytes_received";

impl Index {
    /// Every paired peer, by name.
    pub fn paired_peers(&self) -> Result<Vec<PairedPeer>, IndexError> {
        self.with_conn("list paired peers", |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {PAIRED_COLUMNS} FROM peers ORDER BY name, peer_id"
            ))?;
            let rows = statement.query_map([], paired_row)?;
            rows.collect()
        })
    }

    /// The paired peer with this fingerprint.
    pub fn paired_peer(&self, fingerprint: &str) -> Result<Option<PairedPeer>, IndexError> {
        self.with_conn("read a paired peer", |c| {
            c.query_row(
                &format!("SELECT {PAIRED_COLUMNS} FROM peers WHERE fingerprint = ?1"),
                params![fingerprint],
                paired_row,
            )
            .optional()
        })
    }

    /// Records a pairing (or renews one: the name and address are replaced).
    pub fn pair_peer(
        &self,
        fingerprint: &str,
        peer_id: &str,
        name: &str,
        address: Option<&str>,
    ) -> Result<(), IndexError> {
        self.with_conn("record a paired peer", |c| {
            c.prepare_cached(
                "INSERT INTO peers (fingerprint, peer_id, name, address, paired_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (fingerprint) DO UPDATE SET name = ?3,
                     address = COALESCE(?4, address), last_seen = ?5",
            )?
            .execute(params![fingerprint, peer_id, name, address, now_ms()])?;
            Ok(())
        })
    }

    /// Forgets a paired peer (by its id or its fingerprint); whether there was one.
    pub fn unpair_peer(&self, peer: &str) -> Result<bool, IndexError> {
        self.with_conn("forget a paired peer", |c| {
            Ok(
                c.prepare_cached("DELETE FROM peers WHERE peer_id = ?1 OR fingerprint = ?1")?
                    .execute(params![peer])?
                    > 0,
            )
        })
    }

    /// Where a paired peer listens now (from discovery, or a test's proxy).
    pub fn set_peer_address(&self, fingerprint: &str, address: &str) -> Result<(), IndexError> {
        self.with_conn("record a peer's address", |c| {
            c.prepare_cached(
                "UPDATE peers SET address = ?2, last_seen = ?3 WHERE fingerprint = ?1",
            )?
            .execute(params![fingerprint, address, now_ms()])?;
            Ok(())
        })
    }

    /// Adds to the bytes served to (`served`) and received from (`received`) a paired peer.
    pub fn count_peer_bytes(
        &self,
        fingerprint: &str,
        served: u64,
        received: u64,
    ) -> Result<(), IndexError> {
        self.with_conn("count a peer's bytes", |c| {
            c.prepare_cached(
                "UPDATE peers SET bytes_served = bytes_served + ?2,
                     bytes_received = bytes_received + ?3 WHERE fingerprint = ?1",
            )?
            .execute(params![fingerprint, served as i64, received as i64])?;
            Ok(())
        })
    }

    /// Records a peer discovery saw; a paired one's address follows.
    pub fn saw_peer(&self, peer: &SeenPeer) -> Result<(), IndexError> {
        self.with_conn("record a peer seen", |c| {
            c.prepare_cached(
                "INSERT INTO peers_seen (peer_id, fingerprint, name, address, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (peer_id) DO UPDATE SET fingerprint = ?2, name = ?3, address = ?4,
                     last_seen = ?5",
            )?
            .execute(params![
                peer.peer_id,
                peer.fingerprint,
                peer.name,
                peer.address,
                peer.last_seen
            ])?;
            c.prepare_cached(
                "UPDATE peers SET address = ?2, last_seen = ?3 WHERE fingerprint = ?1",
            )?
            .execute(params![peer.fingerprint, peer.address, peer.last_seen])?;
            Ok(())
        })
    }

    /// A peer discovery no longer sees.
    pub fn lost_peer(&self, peer_id: &str) -> Result<(), IndexError> {
        self.with_conn("forget a peer seen", |c| {
            c.prepare_cached("DELETE FROM peers_seen WHERE peer_id = ?1")?
                .execute(params![peer_id])?;
            Ok(())
        })
    }

    /// The peers discovery saw since `since` (unix ms).
    pub fn seen_peers(&self, since: i64) -> Result<Vec<SeenPeer>, IndexError> {
        self.with_conn("list peers seen", |c| {
            let mut statement = c.prepare(
                "SELECT peer_id, fingerprint, name, address, last_seen FROM peers_seen
                 WHERE last_seen >= ?1 ORDER BY name, peer_id",
            )?;
            let rows = statement.query_map(params![since], |row| {
                Ok(SeenPeer {
                    peer_id: row.get(0)?,
                    fingerprint: row.get(1)?,
                    name: row.get(2)?,
                    address: row.get(3)?,
                    last_seen: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// A value of the peers' state (`sharing`, the pending pairing).
    pub fn peer_state(&self, key: &str) -> Result<Option<String>, IndexError> {
        self.with_conn("read the peers' state", |c| {
            c.prepare_cached("SELECT value FROM peer_state WHERE key = ?1")?
                .query_row(params![key], |row| row.get(0))
                .optional()
        })
    }

    /// Sets (or with `None` removes) a value of the peers' state.
    pub fn set_peer_state(&self, key: &str, value: Option<&str>) -> Result<(), IndexError> {
        self.with_conn("write the peers' state", |c| {
            match value {
                Some(value) => c
                    .prepare_cached(
                        "INSERT INTO peer_state (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = ?2",
                    )?
                    .execute(params![key, value])?,
                None => c
                    .prepare_cached("DELETE FROM peer_state WHERE key = ?1")?
                    .execute(params![key])?,
            };
            Ok(())
        })
    }

    /// Records that a peer said `repo`'s `ref_name` moved to `commit`.
    pub fn note_stale_ref(
        &self,
        repo: &str,
        ref_name: &str,
        commit: &str,
        peer_id: &str,
    ) -> Result<(), IndexError> {
        self.with_conn("record a stale ref", |c| {
            c.prepare_cached(
                "INSERT INTO peer_stale_refs (repo, ref_name, commit_hash, peer_id, noted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (repo, ref_name) DO UPDATE SET commit_hash = ?3, peer_id = ?4,
                     noted_at = ?5",
            )?
            .execute(params![repo, ref_name, commit, peer_id, now_ms()])?;
            Ok(())
        })
    }

    /// The stale mark of `repo`'s `ref_name`, if a peer left one.
    pub fn stale_ref(&self, repo: &str, ref_name: &str) -> Result<Option<StaleRef>, IndexError> {
        self.with_conn("read a stale ref", |c| {
            c.prepare_cached(
                "SELECT repo, ref_name, commit_hash, peer_id, noted_at FROM peer_stale_refs
                 WHERE repo = ?1 AND ref_name = ?2",
            )?
            .query_row(params![repo, ref_name], stale_row)
            .optional()
        })
    }

    /// Every stale mark.
    pub fn stale_refs(&self) -> Result<Vec<StaleRef>, IndexError> {
        self.with_conn("list stale refs", |c| {
            let mut statement = c.prepare(
                "SELECT repo, ref_name, commit_hash, peer_id, noted_at FROM peer_stale_refs
                 ORDER BY repo, ref_name",
            )?;
            let rows = statement.query_map([], stale_row)?;
            rows.collect()
        })
    }

    /// Clears a stale mark (the ref moved, or the Hub says it did not).
    pub fn clear_stale_ref(&self, repo: &str, ref_name: &str) -> Result<(), IndexError> {
        self.with_conn("clear a stale ref", |c| {
            c.prepare_cached("DELETE FROM peer_stale_refs WHERE repo = ?1 AND ref_name = ?2")?
                .execute(params![repo, ref_name])?;
            Ok(())
        })
    }
}

fn stale_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StaleRef> {
    Ok(StaleRef {
        repo: row.get(0)?,
        ref_name: row.get(1)?,
        commit: row.get(2)?,
        peer_id: row.get(3)?,
        noted_at: row.get(4)?,
    })
}
