//! The index schema, as an ordered list of migrations.
//!
//! **Append only.** The index records how many migrations it has applied (`schema_migrations`);
//! opening it applies the missing ones in order, each in a transaction. Never edit, reorder or
//! remove a migration that has shipped: add a new one at the end. An index written by a newer
//! Model Cache (more migrations than this build knows) is refused rather than misread.

use super::{in_flight, queue, transfers, updates};

/// Base tables: repos, revisions, files, blobs, access times, pins, metrics, events.
const BASE: &str = "
CREATE TABLE repos (
    id            INTEGER PRIMARY KEY,
    repo_type     TEXT NOT NULL,           -- model | dataset | space
    repo_id       TEXT NOT NULL,           -- org/name
    folder        TEXT NOT NULL UNIQUE,    -- cache folder name: models--org--name
    private       INTEGER,
    gated         TEXT,
    last_modified TEXT,                    -- as sent by the Hub
    first_seen    INTEGER NOT NULL,        -- unix ms
    UNIQUE (repo_type, repo_id)
);
CREATE TABLE revisions (
    repo        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    revision    TEXT NOT NULL,             -- branch, tag or commit
    commit_hash TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,          -- unix ms
    PRIMARY KEY (repo, revision)
) WITHOUT ROWID;
CREATE TABLE files (
    repo        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    commit_hash TEXT NOT NULL,
    path        TEXT NOT NULL,
    etag        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    is_lfs      INTEGER NOT NULL,
    sha256      TEXT,
    PRIMARY KEY (repo, commit_hash, path)
) WITHOUT ROWID;
CREATE INDEX files_etag ON files(repo, etag);
CREATE TABLE blobs (
    repo        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    etag        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    verified_at INTEGER,                   -- unix ms; NULL when found on disk, not verified
    PRIMARY KEY (repo, etag)
) WITHOUT ROWID;
CREATE INDEX blobs_etag ON blobs(etag);
CREATE TABLE access (
    repo      INTEGER PRIMARY KEY REFERENCES repos(id) ON DELETE CASCADE,
    last_used INTEGER NOT NULL             -- unix ms, through the app, CLI or API
);
CREATE TABLE pins (
    repo     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    revision TEXT NOT NULL DEFAULT '',     -- '' pins the whole repo
    pinned_at INTEGER NOT NULL,
    PRIMARY KEY (repo, revision)
) WITHOUT ROWID;
CREATE TABLE metrics (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,               -- unix ms
    kind   TEXT NOT NULL,
    repo   TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
";

/// The typed-contracts migration. Last use per variant (one quant's files, a safetensors set):
/// the unit of LRU eviction when a revision holds several. A variant is named by its id
/// (`gguf:model-Q4_K_M`), which depends only on its file names, so it is the same in every
/// listing of the repo. And a failed job keeps its error kind and hints beside its message.
const TYPED_CONTRACTS: &str = "
ALTER TABLE queue_jobs ADD COLUMN error_kind TEXT;   -- ErrorKind, snake_case
ALTER TABLE queue_jobs ADD COLUMN error_hints TEXT;  -- JSON [Hint]
CREATE TABLE variant_access (
    repo      INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    variant   TEXT NOT NULL,               -- variant id: format and weight-file stem
    last_used INTEGER NOT NULL,            -- unix ms, through the app, CLI or API
    PRIMARY KEY (repo, variant)
) WITHOUT ROWID;
";

/// The resume-safety issue: a chunk in flight records the prefix it has written (state
/// `partial`, `written` bytes from the chunk's start, `checksum` of them); a verified blob
/// records the file it was verified as (modification time, device and inode, with its size),
/// so it is linked again without hashing only while it is still that file.
const RESUME_SAFETY: &str = "
ALTER TABLE download_chunks ADD COLUMN written INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN mtime_ns INTEGER;
ALTER TABLE blobs ADD COLUMN dev INTEGER;
ALTER TABLE blobs ADD COLUMN ino INTEGER;
";

/// The many-sources issue: what downloads learned about each place bytes come from (`hub`, or a
/// mirror's base URL), so a restart starts from the measured throughput.
const SOURCES: &str = "
CREATE TABLE source_history (
    name       TEXT PRIMARY KEY,   -- `hub`, or a mirror's base URL (no query, no user info)
    bytes      INTEGER NOT NULL,   -- body bytes it served into files, in all
    errors     INTEGER NOT NULL,   -- failed attempts on it, in all
    throughput REAL,               -- bytes per second, the last transfer's measure
    updated_at INTEGER NOT NULL    -- unix ms
) WITHOUT ROWID;
";

/// The web-pages issue: when each allowed web origin last used the mirror.
const ORIGINS: &str = "
CREATE TABLE origin_use (
    origin    TEXT PRIMARY KEY,    -- `https://example.com`
    last_used INTEGER NOT NULL     -- unix ms
) WITHOUT ROWID;
";

/// Every migration, in order. Append only (see the module docs).
pub(crate) const MIGRATIONS: &[&str] = &[
    BASE,
    transfers::MIGRATION,
    queue::MIGRATION,
    TYPED_CONTRACTS,
    in_flight::MIGRATION,
    RESUME_SAFETY,
    SOURCES,
    ORIGINS,
    updates::MIGRATION,
    super::uploads::MIGRATION,
    queue::CONVERT_MIGRATION,
    queue::CLEARED_MIGRATION,
    super::peers::MIGRATION,
    super::listings::MIGRATION,
    super::xet::MIGRATION,
];
