//! Download jobs and chunk states in the index: what makes a download resumable after the process
//! dies.
//!
//! One job is one blob being fetched into `blobs/{etag}.incomplete` of one repo folder. A chunk
//! row exists only for a chunk whose bytes were written *and flushed to disk* before the row was
//! inserted, with the CRC-32 of those bytes, so after a crash every recorded chunk is really on
//! disk and a chunk torn later (the disk lied, another program wrote there) is found by comparing
//! checksums. No row ever holds a token or a URL with credentials.
//!
//! **Architecture Invariant:** the index is not the truth; the `.incomplete` file is. A job is
//! resumed only if its file exists with the expected length; otherwise its rows are dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// The migration that creates the tables (appended to the index's migration list).
pub const MIGRATION: &str = "
CREATE TABLE download_jobs (
    id          INTEGER PRIMARY KEY,
    repo        TEXT NOT NULL,    -- cache folder name: models--org--name
    revision    TEXT NOT NULL,
    commit_hash TEXT NOT NULL,
    path        TEXT NOT NULL,    -- file path in the repo
    etag        TEXT NOT NULL,    -- blob name
    size        INTEGER NOT NULL,
    chunk_size  INTEGER NOT NULL,
    validator   TEXT NOT NULL,    -- If-Range value in use
    state       TEXT NOT NULL,    -- running | paused | verifying | done | failed
    error       TEXT,
    created_at  INTEGER NOT NULL, -- unix seconds
    updated_at  INTEGER NOT NULL
);
CREATE INDEX download_jobs_blob ON download_jobs(repo, etag);
CREATE TABLE download_chunks (
    job_id   INTEGER NOT NULL REFERENCES download_jobs(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    state    TEXT NOT NULL,       -- done
    checksum INTEGER NOT NULL,    -- CRC-32 of the chunk's bytes as written
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
";

/// State of a download job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Paused,
    Verifying,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Verifying => "verifying",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => JobState::Running,
            "paused" => JobState::Paused,
            "verifying" => JobState::Verifying,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// A download job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferJob {
    pub id: i64,
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub chunk_size: u64,
    pub validator: String,
    pub state: JobState,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a new job is about.
#[derive(Debug, Clone)]
pub struct NewTransferJob<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub commit: &'a str,
    pub path: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub chunk_size: u64,
    pub validator: &'a str,
}

/// A chunk recorded as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneChunk {
    pub index: u64,
    pub checksum: u32,
}

/// The written prefix of a chunk in flight, recorded after an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialChunk {
    pub index: u64,
    /// Bytes from the chunk's start.
    pub written: u64,
    /// CRC-32 of those bytes as written.
    pub checksum: u32,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const JOB_COLUMNS: &str = "id, repo, revision, commit_hash, path, etag, size, chunk_size, validator, state, error, created_at, updated_at";

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TransferJob> {
    let state: String = row.get(9)?;
    Ok(TransferJob {
        id: row.get(0)?,
        repo: row.get(1)?,
        revision: row.get(2)?,
        commit: row.get(3)?,
        path: row.get(4)?,
        etag: row.get(5)?,
        size: row.get::<_, i64>(6)? as u64,
        chunk_size: row.get::<_, i64>(7)? as u64,
        validator: row.get(8)?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        error: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
    })
}

/// The unfinished job for blob `etag` of repo folder `repo`, if any (newest first). A failed
/// job counts: its recorded chunks were kept (the failure's handler drops those that are worth
/// nothing), so the next attempt resumes them.
pub fn find_unfinished(
    conn: &Connection,
    repo: &str,
    etag: &str,
) -> rusqlite::Result<Option<TransferJob>> {
    conn.query_row(
        &format!(
            "SELECT {JOB_COLUMNS} FROM download_jobs
             WHERE repo = ?1 AND etag = ?2 AND state IN ('running', 'paused', 'verifying', 'failed')
             ORDER BY id DESC LIMIT 1"
        ),
        params![repo, etag],
        job_from_row,
    )
    .optional()
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<TransferJob>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM download_jobs WHERE id = ?1"),
        params![id],
        job_from_row,
    )
    .optional()
}

/// Every job, oldest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<TransferJob>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM download_jobs ORDER BY id"
    ))?;
    let rows = statement.query_map([], job_from_row)?;
    rows.collect()
}

/// Creates a running job.
pub fn create(conn: &Connection, job: &NewTransferJob<'_>) -> rusqlite::Result<i64> {
    let now = now();
    conn.prepare_cached("INSERT INTO download_jobs
         (repo, revision, commit_hash, path, etag, size, chunk_size, validator, state, error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', NULL, ?9, ?9)")?.execute(
        params![
            job.repo,
            job.revision,
            job.commit,
            job.path,
            job.etag,
            job.size as i64,
            job.chunk_size as i64,
            job.validator,
            now
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn set_state(
    conn: &Connection,
    id: i64,
    state: JobState,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE download_jobs SET state = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), error, now()])?;
    Ok(())
}

pub fn set_validator(conn: &Connection, id: i64, validator: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE download_jobs SET validator = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, validator, now()])?;
    Ok(())
}

/// Records chunks as done, all in one transaction. Call only after their bytes are flushed.
pub fn record_done(conn: &Connection, id: i64, chunks: &[DoneChunk]) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO download_chunks (job_id, idx, state, checksum)
             VALUES (?1, ?2, 'done', ?3)",
        )?;
        for chunk in chunks {
            insert.execute(params![id, chunk.index as i64, chunk.checksum as i64])?;
        }
        tx.prepare_cached("UPDATE download_jobs SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now()])?;
    }
    tx.commit()
}

/// Records how far a chunk in flight has written; never replaces the chunk's `done` record.
pub fn record_partial(conn: &Connection, id: i64, chunk: &PartialChunk) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO download_chunks (job_id, idx, state, checksum, written)
         VALUES (?1, ?2, 'partial', ?3, ?4)
         ON CONFLICT (job_id, idx) DO UPDATE SET checksum = excluded.checksum,
             written = excluded.written
         WHERE download_chunks.state = 'partial'",
    )?
    .execute(params![
        id,
        chunk.index as i64,
        chunk.checksum as i64,
        chunk.written as i64
    ])?;
    Ok(())
}

/// The written prefixes of chunks in flight, by index.
pub fn partial_chunks(conn: &Connection, id: i64) -> rusqlite::Result<Vec<PartialChunk>> {
    let mut statement = conn.prepare_cached(
        "SELECT idx, written, checksum FROM download_chunks
         WHERE job_id = ?1 AND state = 'partial' ORDER BY idx",
    )?;
    let rows = statement.query_map(params![id], |row| {
        Ok(PartialChunk {
            index: row.get::<_, i64>(0)? as u64,
            written: row.get::<_, i64>(1)? as u64,
            checksum: row.get::<_, i64>(2)? as u32,
        })
    })?;
    rows.collect()
}

/// The chunks recorded as done, by index.
pub fn done_chunks(conn: &Connection, id: i64) -> rusqlite::Result<Vec<DoneChunk>> {
    let mut statement = conn.prepare_cached(
        "SELECT idx, checksum FROM download_chunks WHERE job_id = ?1 AND state = 'done' ORDER BY idx",
    )?;
    let rows = statement.query_map(params![id], |row| {
        Ok(DoneChunk {
            index: row.get::<_, i64>(0)? as u64,
            checksum: row.get::<_, i64>(1)? as u32,
        })
    })?;
    rows.collect()
}

/// Forgets some chunks (they are torn and will be fetched again).
pub fn forget_chunks(conn: &Connection, id: i64, indices: &[u64]) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    {
        let mut delete =
            tx.prepare_cached("DELETE FROM download_chunks WHERE job_id = ?1 AND idx = ?2")?;
        for index in indices {
            delete.execute(params![id, *index as i64])?;
        }
    }
    tx.commit()
}

/// Forgets every chunk of a job.
pub fn clear_chunks(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM download_chunks WHERE job_id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Marks a job done and drops its chunk rows (the blob is complete; they say nothing more).
pub fn finish(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached("DELETE FROM download_chunks WHERE job_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached(
        "UPDATE download_jobs SET state = 'done', error = NULL, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now()])?;
    tx.commit()
}

/// Forgets every recorded download of blob `etag` of repo folder `repo` (its partial file was
/// reclaimed: a later pull starts it over).
pub fn forget(conn: &Connection, repo: &str, etag: &str) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached(
        "DELETE FROM download_chunks WHERE job_id IN
             (SELECT id FROM download_jobs WHERE repo = ?1 AND etag = ?2)",
    )?
    .execute(params![repo, etag])?;
    tx.prepare_cached("DELETE FROM download_jobs WHERE repo = ?1 AND etag = ?2")?
        .execute(params![repo, etag])?;
    tx.commit()
}

/// Deletes a job and its chunks.
pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached("DELETE FROM download_chunks WHERE job_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("DELETE FROM download_jobs WHERE id = ?1")?
        .execute(params![id])?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATION).unwrap();
        conn
    }

    #[test]
    fn jobs_and_chunks_round_trip() {
        let conn = db();
        let new = NewTransferJob {
            repo: "models--org--tiny",
            revision: "main",
            commit: &"a".repeat(40),
            path: "model.gguf",
            etag: &"b".repeat(64),
            size: 100,
            chunk_size: 10,
            validator: &"b".repeat(64),
        };
        let id = create(&conn, &new).unwrap();
        let job = find_unfinished(&conn, "models--org--tiny", &"b".repeat(64))
            .unwrap()
            .unwrap();
        assert_eq!(job.id, id);
        assert_eq!(job.state, JobState::Running);
        record_done(
            &conn,
            id,
            &[
                DoneChunk {
                    index: 3,
                    checksum: u32::MAX,
                },
                DoneChunk {
                    index: 1,
                    checksum: 7,
                },
            ],
        )
        .unwrap();
        let done = done_chunks(&conn, id).unwrap();
        assert_eq!(
            done,
            vec![
                DoneChunk {
                    index: 1,
                    checksum: 7
                },
                DoneChunk {
                    index: 3,
                    checksum: u32::MAX
                }
            ]
        );
        forget_chunks(&conn, id, &[3]).unwrap();
        assert_eq!(done_chunks(&conn, id).unwrap().len(), 1);
        finish(&conn, id).unwrap();
        assert!(done_chunks(&conn, id).unwrap().is_empty());
        assert!(
            find_unfinished(&conn, "models--org--tiny", &"b".repeat(64))
                .unwrap()
                .is_none()
        );
        assert_eq!(get(&conn, id).unwrap().unwrap().state, JobState::Done);
        delete(&conn, id).unwrap();
        assert!(list(&conn).unwrap().is_empty());
    }
}
