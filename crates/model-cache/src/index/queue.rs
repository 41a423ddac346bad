//! The persistent job queue and the scheduler's metrics tables.
//!
//! One queue job is one user request: a repo at a revision with a selection of files (a variant,
//! include/exclude patterns). Its transfers (one per blob) live in [`super::transfers`]; the queue
//! only records what the user asked for, where it stands and why it waits. Ordering: higher
//! `priority` first, then lower `position`. Timestamps are unix milliseconds.
//!
//! **Architecture Invariant:** a job in state `running` only exists while a scheduler runs it;
//! [`requeue_interrupted`] turns leftovers of a dead process back into `queued` at start.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Hint};
use crate::policy::DeferReason;
use crate::repo::{RepoId, RepoType};

/// The migration that creates the queue and metrics tables (appended to the index's list).
pub const MIGRATION: &str = "
CREATE TABLE queue_jobs (
    id             INTEGER PRIMARY KEY,
    repo_type      TEXT NOT NULL,
    repo_id        TEXT NOT NULL,
    revision       TEXT NOT NULL,
    selection      TEXT NOT NULL,          -- JSON: {include, exclude, variant}
    priority       INTEGER NOT NULL DEFAULT 0,
    position       INTEGER NOT NULL,
    state          TEXT NOT NULL,          -- queued | running | paused | deferred | done | failed | cancelled
    defer_reason   TEXT,                   -- JSON DeferReason while paused or deferred
    deferred_since INTEGER,
    bytes_total    INTEGER,
    bytes_done     INTEGER NOT NULL DEFAULT 0,
    bytes_saved    INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER
);
CREATE INDEX queue_jobs_state ON queue_jobs(state, priority, position);
CREATE TABLE deferred_time (
    reason   TEXT PRIMARY KEY,             -- DeferReason::kind
    total_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE speed_samples (
    id               INTEGER PRIMARY KEY,
    job_id           INTEGER NOT NULL REFERENCES queue_jobs(id) ON DELETE CASCADE,
    at               INTEGER NOT NULL,
    bytes_done       INTEGER NOT NULL,
    bytes_per_second INTEGER NOT NULL
);
CREATE INDEX speed_samples_job ON speed_samples(job_id, at);
CREATE TABLE scheduler_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// The migration that lets a job be a conversion (appended to the index's list): its
/// [`crate::convert::ConvertRequest`] as JSON; `NULL` for a download.
pub const CONVERT_MIGRATION: &str = "
ALTER TABLE queue_jobs ADD COLUMN convert TEXT;
";

/// Where a queue job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Queued,
    Running,
    /// Paused by the user (this job only).
    Paused,
    /// Waiting for a condition to clear; see the job's `defer_reason`.
    Deferred,
    Done,
    Failed,
    Cancelled,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Running => "running",
            QueueState::Paused => "paused",
            QueueState::Deferred => "deferred",
            QueueState::Done => "done",
            QueueState::Failed => "failed",
            QueueState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => QueueState::Queued,
            "running" => QueueState::Running,
            "paused" => QueueState::Paused,
            "deferred" => QueueState::Deferred,
            "done" => QueueState::Done,
            "failed" => QueueState::Failed,
            "cancelled" => QueueState::Cancelled,
            _ => return None,
        })
    }

    /// Done, failed or cancelled: the job will not run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            QueueState::Done | QueueState::Failed | QueueState::Cancelled
        )
    }
}

pub use crate::selection::Selection;

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueJob {
    pub id: i64,
    pub repo: RepoId,
    pub revision: String,
    pub selection: Selection,
    pub priority: i64,
    pub position: i64,
    pub state: QueueState,
    pub defer_reason: Option<DeferReason>,
    /// `defer_reason` as the user reads it ("On battery (23%, policy: below 30%)"), so clients
    /// need not format reasons themselves.
    #[serde(default)]
    pub defer_message: Option<String>,
    pub deferred_since: Option<i64>,
    /// Bytes the selection needs, when known from the listing.
    pub bytes_total: Option<u64>,
    pub bytes_done: u64,
    /// Bytes not downloaded because they were in the cache already.
    pub bytes_saved: u64,
    /// Why a failed job failed, for a person.
    pub error: Option<String>,
    /// The failure's kind (`None` for rows written before kinds were kept).
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    /// What the user can do about the failure.
    #[serde(default)]
    pub error_hints: Vec<Hint>,
    /// A conversion of the cached snapshot at `revision` (the job downloads nothing); `None`
    /// for a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<crate::convert::ConvertRequest>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl QueueJob {
    /// Bytes still to write, when the total is known.
    pub fn bytes_remaining(&self) -> Option<u64> {
        self.bytes_total
            .map(|t| t.saturating_sub(self.bytes_done + self.bytes_saved))
    }
}

/// Why a job failed: what the edges show and switch on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub kind: ErrorKind,
    pub message: String,
    pub hints: Vec<Hint>,
}

/// What a new job is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewQueueJob {
    pub repo: RepoId,
    pub revision: String,
    pub selection: Selection,
    pub priority: i64,
    pub bytes_total: Option<u64>,
    /// A conversion instead of a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<crate::convert::ConvertRequest>,
}

const COLUMNS: &str = "id, repo_type, repo_id, revision, selection, priority, position, state, \
    defer_reason, deferred_since, bytes_total, bytes_done, bytes_saved, error, created_at, \
    updated_at, started_at, finished_at, error_kind, error_hints, convert";

fn repo_type_name(kind: RepoType) -> &'static str {
    match kind {
        RepoType::Model => "model",
        RepoType::Dataset => "dataset",
        RepoType::Space => "space",
    }
}

fn parse_repo_type(kind: &str) -> RepoType {
    match kind {
        "dataset" => RepoType::Dataset,
        "space" => RepoType::Space,
        _ => RepoType::Model,
    }
}

fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueueJob> {
    let selection: String = row.get(4)?;
    let state: String = row.get(7)?;
    let reason: Option<String> = row.get(8)?;
    let defer_reason: Option<DeferReason> = reason.and_then(|r| serde_json::from_str(&r).ok());
    Ok(QueueJob {
        id: row.get(0)?,
        repo: RepoId {
            repo_type: parse_repo_type(&row.get::<_, String>(1)?),
            id: row.get(2)?,
        },
        revision: row.get(3)?,
        // A row this build cannot read is shown with an empty selection rather than hidden.
        selection: serde_json::from_str(&selection).unwrap_or_default(),
        priority: row.get(5)?,
        position: row.get(6)?,
        state: QueueState::parse(&state).unwrap_or(QueueState::Failed),
        defer_reason: defer_reason.clone(),
        defer_message: defer_reason.as_ref().map(ToString::to_string),
        deferred_since: row.get(9)?,
        bytes_total: row.get::<_, Option<i64>>(10)?.map(|b| b as u64),
        bytes_done: row.get::<_, i64>(11)? as u64,
        bytes_saved: row.get::<_, i64>(12)? as u64,
        error: row.get(13)?,
        created_at: row.get(14)?,
        updated_at: row.get(15)?,
        started_at: row.get(16)?,
        finished_at: row.get(17)?,
        error_kind: row
            .get::<_, Option<String>>(18)?
            .and_then(|k| k.parse().ok()),
        error_hints: row
            .get::<_, Option<String>>(19)?
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        convert: row
            .get::<_, Option<String>>(20)?
            .and_then(|c| serde_json::from_str(&c).ok()),
    })
}

/// Adds a job at the end of the queue; returns its id.
pub fn enqueue(conn: &Connection, job: &NewQueueJob, now: i64) -> rusqlite::Result<i64> {
    let selection = serde_json::to_string(&job.selection).map_err(json_error)?;
    let convert = job
        .convert
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(json_error)?;
    let position: i64 = conn.query_row(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM queue_jobs",
        [],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO queue_jobs (repo_type, repo_id, revision, selection, priority, position,
             state, bytes_total, created_at, updated_at, convert)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?8, ?9)",
        params![
            repo_type_name(job.repo.repo_type),
            job.repo.id,
            job.revision,
            selection,
            job.priority,
            position,
            job.bytes_total.map(|b| b as i64),
            now,
            convert
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One job.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<QueueJob>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM queue_jobs WHERE id = ?1"),
        params![id],
        job_from_row,
    )
    .optional()
}

/// The migration that lets the Downloads list forget finished jobs ("Clear finished") while
/// the statistics keep them: a cleared job's id is recorded; a job that runs again (a retry)
/// shows whatever the record says, since only finished jobs are hidden.
pub const CLEARED_MIGRATION: &str = "
CREATE TABLE cleared_jobs (
    job_id     INTEGER PRIMARY KEY REFERENCES queue_jobs(id) ON DELETE CASCADE,
    cleared_at INTEGER NOT NULL          -- unix ms
);
";

/// Marks every finished job (done, failed, cancelled) cleared from the Downloads list; returns
/// how many were newly cleared.
pub fn clear_finished(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO cleared_jobs (job_id, cleared_at)
         SELECT id, ?1 FROM queue_jobs WHERE state IN ('done', 'failed', 'cancelled')",
        params![now_ms],
    )
}

/// The ids of cleared jobs.
pub fn cleared(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<i64>> {
    let mut statement = conn.prepare("SELECT job_id FROM cleared_jobs")?;
    let rows = statement.query_map([], |row| row.get(0))?;
    rows.collect()
}

/// Every job in queue order: live ones by priority then position, then finished ones.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<QueueJob>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM queue_jobs
         ORDER BY state IN ('done', 'failed', 'cancelled'), priority DESC, position, id"
    ))?;
    let rows = statement.query_map([], job_from_row)?;
    rows.collect()
}

/// Jobs that may still run, in the order the scheduler considers them.
pub fn pending(conn: &Connection) -> rusqlite::Result<Vec<QueueJob>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM queue_jobs
         WHERE state NOT IN ('done', 'failed', 'cancelled')
         ORDER BY priority DESC, position, id"
    ))?;
    let rows = statement.query_map([], job_from_row)?;
    rows.collect()
}

/// At start: jobs a dead process left `running` go back to `queued`; returns how many.
pub fn requeue_interrupted(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE queue_jobs SET state = 'queued', defer_reason = NULL, deferred_since = NULL,
             updated_at = ?1
         WHERE state = 'running'",
        params![now],
    )
}

/// Sets a job's state. `reason` is kept for `paused`/`deferred` and cleared otherwise; the time
/// a job spent deferred is added to [`deferred_time`] when it leaves that state.
pub fn set_state(
    conn: &Connection,
    id: i64,
    state: QueueState,
    reason: Option<&DeferReason>,
    error: Option<&JobError>,
    now: i64,
) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    let before = get(&tx, id)?;
    let Some(before) = before else {
        return Ok(());
    };
    let reason_json = match reason {
        Some(r) => Some(serde_json::to_string(r).map_err(json_error)?),
        None => None,
    };
    let waiting = matches!(state, QueueState::Deferred | QueueState::Paused);
    let same_reason = before.defer_reason.as_ref() == reason;
    // The deferral clock keeps running while the reason stays the same.
    let deferred_since = if waiting {
        if same_reason && before.deferred_since.is_some() {
            before.deferred_since
        } else {
            Some(now)
        }
    } else {
        None
    };
    if let (Some(since), Some(old_reason)) = (before.deferred_since, &before.defer_reason)
        && (!waiting || !same_reason)
    {
        tx.execute(
            "INSERT INTO deferred_time (reason, total_ms) VALUES (?1, ?2)
             ON CONFLICT (reason) DO UPDATE SET total_ms = total_ms + ?2",
            params![old_reason.kind(), (now - since).max(0)],
        )?;
    }
    tx.execute(
        "UPDATE queue_jobs SET state = ?2, defer_reason = ?3, deferred_since = ?4,
             error = COALESCE(?5, CASE WHEN ?2 = 'failed' THEN error ELSE NULL END),
             error_kind = COALESCE(?7, CASE WHEN ?2 = 'failed' THEN error_kind ELSE NULL END),
             error_hints = COALESCE(?8, CASE WHEN ?2 = 'failed' THEN error_hints ELSE NULL END),
             updated_at = ?6,
             started_at = CASE WHEN ?2 = 'running' THEN COALESCE(started_at, ?6) ELSE started_at END,
             finished_at = CASE WHEN ?2 IN ('done', 'failed', 'cancelled') THEN ?6 ELSE NULL END
         WHERE id = ?1",
        params![
            id,
            state.as_str(),
            if waiting { reason_json } else { None },
            deferred_since,
            error.map(|e| e.message.as_str()),
            now,
            error.map(|e| e.kind.as_str()),
            error
                .map(|e| serde_json::to_string(&e.hints))
                .transpose()
                .map_err(json_error)?,
        ],
    )?;
    tx.commit()
}

/// Records progress.
pub fn set_progress(
    conn: &Connection,
    id: i64,
    bytes_total: Option<u64>,
    bytes_done: u64,
    bytes_saved: u64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE queue_jobs SET bytes_total = COALESCE(?2, bytes_total), bytes_done = ?3,
             bytes_saved = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            id,
            bytes_total.map(|b| b as i64),
            bytes_done as i64,
            bytes_saved as i64,
            now
        ],
    )?;
    Ok(())
}

/// Sets a job's priority.
pub fn set_priority(conn: &Connection, id: i64, priority: i64, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE queue_jobs SET priority = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, priority, now],
    )? == 1)
}

/// Moves a job to `position` (0 = first) among the jobs that may still run; the others keep
/// their relative order. Returns `false` when the job does not exist or is finished.
pub fn move_to(conn: &Connection, id: i64, position: usize, now: i64) -> rusqlite::Result<bool> {
    let tx = super::write_tx(conn)?;
    let mut ids: Vec<i64> = {
        let mut statement = tx.prepare(
            "SELECT id FROM queue_jobs WHERE state NOT IN ('done', 'failed', 'cancelled')
             ORDER BY position, id",
        )?;
        let rows = statement.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let Some(from) = ids.iter().position(|&j| j == id) else {
        return Ok(false);
    };
    ids.remove(from);
    ids.insert(position.min(ids.len()), id);
    for (pos, job) in ids.iter().enumerate() {
        tx.execute(
            "UPDATE queue_jobs SET position = ?2, updated_at = ?3 WHERE id = ?1",
            params![job, pos as i64, now],
        )?;
    }
    tx.commit()?;
    Ok(true)
}

/// Appends a speed sample of a job.
pub fn record_speed(
    conn: &Connection,
    job_id: i64,
    at: i64,
    bytes_done: u64,
    bytes_per_second: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO speed_samples (job_id, at, bytes_done, bytes_per_second) VALUES (?1, ?2, ?3, ?4)",
        params![job_id, at, bytes_done as i64, bytes_per_second as i64],
    )?;
    Ok(())
}

/// One speed sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedSample {
    pub at: i64,
    pub bytes_done: u64,
    pub bytes_per_second: u64,
}

/// A job's speed history, oldest first.
pub fn speed_history(conn: &Connection, job_id: i64) -> rusqlite::Result<Vec<SpeedSample>> {
    let mut statement = conn.prepare(
        "SELECT at, bytes_done, bytes_per_second FROM speed_samples WHERE job_id = ?1 ORDER BY at, id",
    )?;
    let rows = statement.query_map(params![job_id], |r| {
        Ok(SpeedSample {
            at: r.get(0)?,
            bytes_done: r.get::<_, i64>(1)? as u64,
            bytes_per_second: r.get::<_, i64>(2)? as u64,
        })
    })?;
    rows.collect()
}

/// Total time jobs spent deferred, per reason kind, including jobs deferred right now.
pub fn deferred_time(conn: &Connection, now: i64) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut totals: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    {
        let mut statement = conn.prepare("SELECT reason, total_ms FROM deferred_time")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (reason, ms) = row?;
            *totals.entry(reason).or_default() += ms;
        }
    }
    for job in pending(conn)? {
        if let (Some(since), Some(reason)) = (job.deferred_since, &job.defer_reason) {
            *totals.entry(reason.kind().to_string()).or_default() += (now - since).max(0);
        }
    }
    Ok(totals.into_iter().collect())
}

/// Reads a scheduler setting (e.g. the global pause).
pub fn state_value(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM scheduler_state WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
}

/// Writes a scheduler setting.
pub fn set_state_value(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO scheduler_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn new_job(name: &str, priority: i64) -> NewQueueJob {
        NewQueueJob {
            repo: RepoId::model(name).unwrap(),
            revision: "main".into(),
            selection: Selection {
                include: vec!["*.gguf".into()],
                exclude: vec![],
                variant: Some("Q4_K_M".into()),
                ..Selection::default()
            },
            priority,
            bytes_total: Some(100),
            convert: None,
        }
    }

    #[test]
    fn two_writers_wait_for_each_other_instead_of_failing() {
        // Two processes (two connections to one file) change job states and order at once: each
        // read-then-write waits its turn under the busy timeout, none answers "busy".
        let dir = tempfile::tempdir().unwrap();
        let first = Index::open(dir.path()).unwrap();
        let second = Index::open(dir.path()).unwrap();
        let ids: Vec<i64> = (0..4)
            .map(|i| {
                first
                    .with_conn("enqueue", |c| {
                        enqueue(c, &new_job(&format!("o/m{i}"), 0), i)
                    })
                    .unwrap()
            })
            .collect();
        let writers: Vec<_> = [first, second]
            .into_iter()
            .enumerate()
            .map(|(n, index)| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    for round in 0..150i64 {
                        let id = ids[(n + round as usize) % ids.len()];
                        let state = if round % 2 == 0 {
                            QueueState::Paused
                        } else {
                            QueueState::Queued
                        };
                        index
                            .with_conn("change a state", |c| {
                                set_state(c, id, state, None, None, round)
                            })
                            .unwrap();
                        index
                            .with_conn("reorder", |c| move_to(c, id, n, round))
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("no writer saw `database is busy`");
        }
    }

    #[test]
    fn order_priority_reorder_and_requeue() {
        let index = Index::in_memory().unwrap();
        index
            .with_conn("test", |c| {
                let a = enqueue(c, &new_job("o/a", 0), 1)?;
                let b = enqueue(c, &new_job("o/b", 0), 2)?;
                let cc = enqueue(c, &new_job("o/c", 0), 3)?;
                let ids = |c: &Connection| -> Vec<i64> {
                    pending(c).unwrap().iter().map(|j| j.id).collect()
                };
                assert_eq!(ids(c), [a, b, cc]);
                assert!(move_to(c, cc, 0, 4)?);
                assert_eq!(ids(c), [cc, a, b]);
                assert!(set_priority(c, b, 5, 5)?);
                assert_eq!(ids(c), [b, cc, a]);
                set_state(c, a, QueueState::Running, None, None, 6)?;
                assert_eq!(requeue_interrupted(c, 7)?, 1);
                assert_eq!(get(c, a)?.unwrap().state, QueueState::Queued);
                set_state(c, cc, QueueState::Done, None, None, 8)?;
                assert_eq!(ids(c), [b, a]);
                assert!(!move_to(c, cc, 0, 9)?, "finished jobs do not move");
                let job = get(c, a)?.unwrap();
                assert_eq!(job.selection.variant.as_deref(), Some("Q4_K_M"));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn deferral_time_is_counted_per_reason() {
        let index = Index::in_memory().unwrap();
        index
            .with_conn("test", |c| {
                let a = enqueue(c, &new_job("o/a", 0), 0)?;
                let battery = DeferReason::OnBattery {
                    percent: Some(20),
                    policy: crate::policy::BatteryPolicy::Always,
                };
                set_state(c, a, QueueState::Deferred, Some(&battery), None, 1000)?;
                // Same reason again: the clock keeps running from the first deferral.
                set_state(c, a, QueueState::Deferred, Some(&battery), None, 1500)?;
                assert_eq!(get(c, a)?.unwrap().defer_reason, Some(battery.clone()));
                assert_eq!(deferred_time(c, 2000)?, [("on_battery".to_string(), 1000)]);
                set_state(
                    c,
                    a,
                    QueueState::Deferred,
                    Some(&DeferReason::PausedByUser),
                    None,
                    3000,
                )?;
                set_state(c, a, QueueState::Running, None, None, 3500)?;
                let job = get(c, a)?.unwrap();
                assert_eq!(job.defer_reason, None);
                assert_eq!(job.started_at, Some(3500));
                assert_eq!(
                    deferred_time(c, 9999)?,
                    [
                        ("on_battery".to_string(), 2000),
                        ("paused_by_user".to_string(), 500)
                    ]
                );
                record_speed(c, a, 10, 50, 5)?;
                assert_eq!(speed_history(c, a)?.len(), 1);
                Ok(())
            })
            .unwrap();
    }
}
