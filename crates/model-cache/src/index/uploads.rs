//! Multipart uploads to a team bucket in progress: the bucket's upload id and the ETag of every
//! part it acknowledged, so an upload killed halfway resumes at the next part instead of
//! sending the whole blob again.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, now_ms};

/// The migration that adds the table (appended to `schema::MIGRATIONS`).
pub(crate) const MIGRATION: &str = "
CREATE TABLE bucket_uploads (
    key        TEXT PRIMARY KEY,   -- the object key in the bucket (bucket URL + key)
    etag       TEXT NOT NULL,      -- the blob being uploaded (the Hub's etag)
    upload_id  TEXT NOT NULL,      -- the bucket's multipart upload id
    part_size  INTEGER NOT NULL,   -- bytes per part (the last one shorter)
    parts      TEXT NOT NULL,      -- JSON array of the acknowledged parts' ETags, in order
    started_at INTEGER NOT NULL    -- unix ms
) WITHOUT ROWID;
";

/// One multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUpload {
    pub key: String,
    pub etag: String,
    pub upload_id: String,
    pub part_size: u64,
    pub parts: Vec<String>,
}

impl Index {
    /// The upload in progress to `key`, if one was recorded.
    pub fn bucket_upload(&self, key: &str) -> Result<Option<BucketUpload>, IndexError> {
        self.with_conn("read a bucket upload", |c| {
            c.query_row(
                "SELECT key, etag, upload_id, part_size, parts FROM bucket_uploads WHERE key = ?1",
                params![key],
                |row| {
                    let parts: String = row.get(4)?;
                    Ok(BucketUpload {
                        key: row.get(0)?,
                        etag: row.get(1)?,
                        upload_id: row.get(2)?,
                        part_size: row.get::<_, i64>(3)? as u64,
                        parts: serde_json::from_str(&parts).unwrap_or_default(),
                    })
                },
            )
            .optional()
        })
    }

    /// Records an upload and the parts acknowledged so far (after each part).
    pub fn save_bucket_upload(&self, upload: &BucketUpload) -> Result<(), IndexError> {
        let parts = serde_json::to_string(&upload.parts).expect("strings serialize");
        self.with_conn("record a bucket upload", |c| {
            c.execute(
                "INSERT INTO bucket_uploads (key, etag, upload_id, part_size, parts, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET etag = ?2, upload_id = ?3, part_size = ?4,
                     parts = ?5",
                params![
                    upload.key,
                    upload.etag,
                    upload.upload_id,
                    upload.part_size as i64,
                    parts,
                    now_ms()
                ],
            )?;
            Ok(())
        })
    }

    /// Forgets an upload (completed, or abandoned).
    pub fn forget_bucket_upload(&self, key: &str) -> Result<(), IndexError> {
        self.with_conn("forget a bucket upload", |c| {
            c.execute("DELETE FROM bucket_uploads WHERE key = ?1", params![key])?;
            Ok(())
        })
    }
}
