//! What the index keeps of Xet files (see `download::xet`): for each blob whose reconstruction
//! is known, its terms with their place in the file and, where the chunks were decoded, each
//! chunk's length. A later download finds in it the cached blobs that hold chunks it needs
//! (other revisions, other quantizations, a base model) and copies them instead of fetching.
//!
//! The chunk index is bounded: when its rows pass the limit, the blobs used longest ago are
//! forgotten. A forgotten blob is only a blob whose chunks are fetched again.

use rusqlite::{OptionalExtension, params};

use super::{BlobStamp, Index, IndexError, now_ms};

/// The migration that adds the tables (appended to `schema::MIGRATIONS`).
pub(crate) const MIGRATION: &str = "
CREATE TABLE xet_blobs (
    etag     TEXT PRIMARY KEY,   -- the blob (its sha256)
    xet_hash TEXT NOT NULL,      -- the file's Xet hash
    size     INTEGER NOT NULL,
    terms    BLOB NOT NULL,      -- the terms, encoded by `encode_terms`
    bytes    INTEGER NOT NULL,   -- what the row weighs against the limit
    used_at  INTEGER NOT NULL    -- unix ms: recorded, or last copied from
) WITHOUT ROWID;
CREATE TABLE xet_xorbs (
    xorb TEXT NOT NULL,          -- a xorb some term of the blob reads
    etag TEXT NOT NULL,
    PRIMARY KEY (xorb, etag)
) WITHOUT ROWID;
CREATE INDEX xet_xorbs_by_etag ON xet_xorbs (etag);
CREATE TABLE xet_job_chunks (
    job_id      INTEGER NOT NULL, -- download_jobs.id
    xorb        TEXT NOT NULL,
    chunk_start INTEGER NOT NULL, -- the first chunk of a run of decoded chunks
    lens        BLOB NOT NULL,    -- their lengths, u32 little-endian each
    PRIMARY KEY (job_id, xorb, chunk_start)
) WITHOUT ROWID;
";

/// One term of a recorded blob: chunks `[chunk_start, chunk_end)` of `xorb` hold the file's
/// bytes `[file_offset, file_offset + length)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XetTermRecord {
    pub xorb: String,
    pub chunk_start: u32,
    pub chunk_end: u32,
    pub file_offset: u64,
    pub length: u64,
    /// Each chunk's length, when known (the chunks were decoded or copied from a blob that
    /// knew them). Without them only the whole term can be copied.
    pub chunk_lens: Option<Vec<u32>>,
}

/// A recorded blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XetBlobRecord {
    pub etag: String,
    pub xet_hash: String,
    pub size: u64,
    pub terms: Vec<XetTermRecord>,
}

/// A run of decoded chunks of a download in progress: chunk lengths from `chunk_start` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XetChunkRun {
    pub xorb: String,
    pub chunk_start: u32,
    pub lens: Vec<u32>,
}

/// The bytes of a term's xorb hash once decoded from hex (32), or the text as is.
fn xorb_bytes(xorb: &str) -> Vec<u8> {
    hex::decode(xorb)
        .ok()
        .filter(|b| b.len() == 32)
        .unwrap_or_else(|| xorb.as_bytes().to_vec())
}

/// Terms as one blob: per term, the xorb (length-prefixed), chunk start and end (u32), file
/// offset and length (u64), then the count of chunk lengths (u32, 0 for unknown) and the
/// lengths (u32 each). All little-endian.
pub(crate) fn encode_terms(terms: &[XetTermRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(terms.len() * 64);
    for t in terms {
        let xorb = xorb_bytes(&t.xorb);
        out.push(xorb.len() as u8);
        out.extend_from_slice(&xorb);
        out.extend_from_slice(&t.chunk_start.to_le_bytes());
        out.extend_from_slice(&t.chunk_end.to_le_bytes());
        out.extend_from_slice(&t.file_offset.to_le_bytes());
        out.extend_from_slice(&t.length.to_le_bytes());
        let lens = t.chunk_lens.as_deref().unwrap_or_default();
        out.extend_from_slice(&(lens.len() as u32).to_le_bytes());
        for len in lens {
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    out
}

/// The inverse of [`encode_terms`]; `None` for bytes it did not write.
pub(crate) fn decode_terms(mut bytes: &[u8]) -> Option<Vec<XetTermRecord>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn u32_of(bytes: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    fn u64_of(bytes: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    let mut terms = Vec::new();
    while !bytes.is_empty() {
        let n = *take(&mut bytes, 1)?.first()? as usize;
        let raw = take(&mut bytes, n)?;
        let xorb = if n == 32 {
            hex::encode(raw)
        } else {
            String::from_utf8(raw.to_vec()).ok()?
        };
        let chunk_start = u32_of(&mut bytes)?;
        let chunk_end = u32_of(&mut bytes)?;
        let file_offset = u64_of(&mut bytes)?;
        let length = u64_of(&mut bytes)?;
        let count = u32_of(&mut bytes)? as usize;
        let chunk_lens = if count == 0 {
            None
        } else {
            let raw = take(&mut bytes, count.checked_mul(4)?)?;
            Some(
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            )
        };
        terms.push(XetTermRecord {
            xorb,
            chunk_start,
            chunk_end,
            file_offset,
            length,
            chunk_lens,
        });
    }
    Some(terms)
}

fn encode_lens(lens: &[u32]) -> Vec<u8> {
    lens.iter().flat_map(|l| l.to_le_bytes()).collect()
}

fn decode_lens(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

impl Index {
    /// Records (or replaces) the reconstruction of blob `etag`, then forgets the blobs used
    /// longest ago while the chunk index weighs more than `limit` bytes.
    pub fn record_xet_blob(&self, blob: &XetBlobRecord, limit: u64) -> Result<(), IndexError> {
        let action = "record a Xet reconstruction";
        let terms = encode_terms(&blob.terms);
        let bytes = (terms.len() + 64 * blob.terms.len() + 128) as i64;
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = super::write_tx(&conn).map_err(IndexError::sql(action))?;
        forget_blob(&tx, &blob.etag).map_err(IndexError::sql(action))?;
        tx.execute(
            "INSERT INTO xet_blobs (etag, xet_hash, size, terms, bytes, used_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                blob.etag,
                blob.xet_hash,
                blob.size as i64,
                terms,
                bytes,
                now_ms()
            ],
        )
        .map_err(IndexError::sql(action))?;
        {
            let mut put = tx
                .prepare_cached("INSERT OR IGNORE INTO xet_xorbs (xorb, etag) VALUES (?1, ?2)")
                .map_err(IndexError::sql(action))?;
            for term in &blob.terms {
                put.execute(params![term.xorb, blob.etag])
                    .map_err(IndexError::sql(action))?;
            }
        }
        loop {
            let total: i64 = tx
                .query_row("SELECT COALESCE(SUM(bytes), 0) FROM xet_blobs", [], |r| {
                    r.get(0)
                })
                .map_err(IndexError::sql(action))?;
            if total as u64 <= limit {
                break;
            }
            let oldest: Option<String> = tx
                .query_row(
                    "SELECT etag FROM xet_blobs ORDER BY used_at, etag LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(IndexError::sql(action))?;
            let Some(oldest) = oldest else { break };
            tracing::debug!(etag = %oldest, "The Xet chunk index is full; forgetting the blob used longest ago");
            forget_blob(&tx, &oldest).map_err(IndexError::sql(action))?;
        }
        tx.commit().map_err(IndexError::sql(action))
    }

    /// The recorded blobs that read any of `xorbs`, marked used now.
    pub fn xet_blobs_reading(&self, xorbs: &[String]) -> Result<Vec<XetBlobRecord>, IndexError> {
        self.with_conn("read the Xet chunk index", |c| {
            let mut etags = std::collections::BTreeSet::new();
            {
                let mut find = c.prepare_cached("SELECT etag FROM xet_xorbs WHERE xorb = ?1")?;
                for xorb in xorbs {
                    for etag in find.query_map(params![xorb], |r| r.get::<_, String>(0))? {
                        etags.insert(etag?);
                    }
                }
            }
            let mut read = c.prepare_cached(
                "SELECT etag, xet_hash, size, terms FROM xet_blobs WHERE etag = ?1",
            )?;
            let mut touch = c.prepare_cached("UPDATE xet_blobs SET used_at = ?2 WHERE etag = ?1")?;
            let mut found = Vec::new();
            for etag in etags {
                let row = read
                    .query_row(params![etag], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                        ))
                    })
                    .optional()?;
                let Some((etag, xet_hash, size, terms)) = row else {
                    continue;
                };
                let Some(terms) = decode_terms(&terms) else {
                    tracing::warn!(%etag, "A Xet reconstruction in the index cannot be read; it is not used");
                    continue;
                };
                touch.execute(params![etag, now_ms()])?;
                found.push(XetBlobRecord {
                    etag,
                    xet_hash,
                    size: size as u64,
                    terms,
                });
            }
            Ok(found)
        })
    }

    /// The recorded reconstruction of blob `etag`.
    pub fn xet_blob(&self, etag: &str) -> Result<Option<XetBlobRecord>, IndexError> {
        self.with_conn("read a Xet reconstruction", |c| {
            let row = c
                .prepare_cached("SELECT xet_hash, size, terms FROM xet_blobs WHERE etag = ?1")?
                .query_row(params![etag], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(xet_hash, size, terms)| {
                Some(XetBlobRecord {
                    etag: etag.to_string(),
                    xet_hash,
                    size: size as u64,
                    terms: decode_terms(&terms)?,
                })
            }))
        })
    }

    /// Forgets the reconstruction of blob `etag` (its last copy left the cache).
    pub fn forget_xet_blob(&self, etag: &str) -> Result<(), IndexError> {
        self.with_conn("forget a Xet reconstruction", |c| forget_blob(c, etag))
    }

    /// The repo folders holding a verified copy of blob `etag`, with the stamp it was verified
    /// with.
    pub fn verified_copies(&self, etag: &str) -> Result<Vec<(String, BlobStamp)>, IndexError> {
        self.with_conn("find a blob's verified copies", |c| {
            c.prepare_cached(
                "SELECT r.folder, b.size, b.mtime_ns, b.dev, b.ino FROM blobs b
                 JOIN repos r ON r.id = b.repo
                 WHERE b.etag = ?1 AND b.verified_at IS NOT NULL AND b.mtime_ns IS NOT NULL",
            )?
            .query_map(params![etag], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    BlobStamp {
                        size: row.get::<_, i64>(1)? as u64,
                        mtime_ns: row.get(2)?,
                        dev: row.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                        ino: row.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
                    },
                ))
            })?
            .collect()
        })
    }

    /// Keeps the chunk lengths a download in progress decoded (read back when it resumes).
    pub fn record_xet_job_chunks(
        &self,
        job_id: i64,
        runs: &[XetChunkRun],
    ) -> Result<(), IndexError> {
        if runs.is_empty() {
            return Ok(());
        }
        self.with_conn("record decoded Xet chunks", |c| {
            let mut put = c.prepare_cached(
                "INSERT OR REPLACE INTO xet_job_chunks (job_id, xorb, chunk_start, lens)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for run in runs {
                put.execute(params![
                    job_id,
                    run.xorb,
                    run.chunk_start,
                    encode_lens(&run.lens)
                ])?;
            }
            Ok(())
        })
    }

    /// The chunk lengths a download decoded so far.
    pub fn xet_job_chunks(&self, job_id: i64) -> Result<Vec<XetChunkRun>, IndexError> {
        self.with_conn("read decoded Xet chunks", |c| {
            c.prepare_cached(
                "SELECT xorb, chunk_start, lens FROM xet_job_chunks WHERE job_id = ?1",
            )?
            .query_map(params![job_id], |r| {
                Ok(XetChunkRun {
                    xorb: r.get(0)?,
                    chunk_start: r.get(1)?,
                    lens: decode_lens(&r.get::<_, Vec<u8>>(2)?),
                })
            })?
            .collect()
        })
    }

    /// Forgets what a download decoded (it finished or was dropped).
    pub fn forget_xet_job(&self, job_id: i64) -> Result<(), IndexError> {
        self.with_conn("forget decoded Xet chunks", |c| {
            c.prepare_cached("DELETE FROM xet_job_chunks WHERE job_id = ?1")?
                .execute(params![job_id])
                .map(|_| ())
        })
    }
}

fn forget_blob(c: &rusqlite::Connection, etag: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM xet_xorbs WHERE etag = ?1")?
        .execute(params![etag])?;
    c.prepare_cached("DELETE FROM xet_blobs WHERE etag = ?1")?
        .execute(params![etag])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(xorb: &str, start: u32, lens: Option<Vec<u32>>, offset: u64) -> XetTermRecord {
        let length = lens
            .as_ref()
            .map_or(1000, |l| l.iter().map(|&x| x as u64).sum());
        XetTermRecord {
            xorb: xorb.to_string(),
            chunk_start: start,
            chunk_end: start + lens.as_ref().map_or(3, |l| l.len() as u32),
            file_offset: offset,
            length,
            chunk_lens: lens,
        }
    }

    fn blob(etag: &str, xorbs: &[&str]) -> XetBlobRecord {
        XetBlobRecord {
            etag: etag.to_string(),
            xet_hash: "f".repeat(64),
            size: 2000,
            terms: xorbs
                .iter()
                .enumerate()
                .map(|(i, x)| term(x, i as u32, Some(vec![400, 600]), i as u64 * 1000))
                .collect(),
        }
    }

    #[test]
    fn terms_round_trip() {
        let terms = vec![
            term(&"a1".repeat(32), 0, Some(vec![65536, 70000, 12]), 0),
            term("not-hex", 7, None, 135548),
        ];
        assert_eq!(decode_terms(&encode_terms(&terms)).unwrap(), terms);
        assert!(decode_terms(&encode_terms(&terms)[..10]).is_none());
    }

    #[test]
    fn blobs_are_found_by_xorb_and_the_oldest_go_past_the_limit() {
        let index = Index::in_memory().unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        index.record_xet_blob(&blob("e1", &[&a]), u64::MAX).unwrap();
        index
            .record_xet_blob(&blob("e2", &[&a, &b]), u64::MAX)
            .unwrap();
        let found = index.xet_blobs_reading(std::slice::from_ref(&b)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].etag, "e2");
        assert_eq!(found[0].terms[1].chunk_lens, Some(vec![400, 600]));
        assert_eq!(
            index
                .xet_blobs_reading(std::slice::from_ref(&a))
                .unwrap()
                .len(),
            2
        );

        // A limit that holds one blob keeps the one recorded last.
        std::thread::sleep(std::time::Duration::from_millis(5));
        index.record_xet_blob(&blob("e3", &[&b]), 400).unwrap();
        assert!(index.xet_blob("e1").unwrap().is_none());
        assert!(index.xet_blob("e2").unwrap().is_none());
        assert!(index.xet_blob("e3").unwrap().is_some());
        assert!(
            index
                .xet_blobs_reading(std::slice::from_ref(&a))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn decoded_chunks_of_a_job_are_kept_until_forgotten() {
        let index = Index::in_memory().unwrap();
        let run = XetChunkRun {
            xorb: "x".repeat(64),
            chunk_start: 12,
            lens: vec![1, 2, 3],
        };
        index
            .record_xet_job_chunks(7, std::slice::from_ref(&run))
            .unwrap();
        assert_eq!(index.xet_job_chunks(7).unwrap(), vec![run]);
        index.forget_xet_job(7).unwrap();
        assert!(index.xet_job_chunks(7).unwrap().is_empty());
    }
}
