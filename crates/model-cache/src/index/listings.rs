//! The kept listings of repo folders (see `store::listing`): what the library showed of each
//! folder and the stamp of the folder when it was read. A lost or deleted index only costs one
//! full read of the cache.

use rusqlite::params;

use super::{Index, IndexError};

/// The migration that adds the table (appended to `schema::MIGRATIONS`).
pub(crate) const MIGRATION: &str = "
CREATE TABLE folder_listings (
    folder  TEXT PRIMARY KEY,   -- the repo folder's path
    stamp   TEXT NOT NULL,      -- JSON: the folder times when it was read
    listing TEXT NOT NULL       -- JSON: the listing, or null for a folder not listed
) WITHOUT ROWID;
";

/// One kept listing, as stored (JSON texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderListing {
    pub folder: String,
    pub stamp: String,
    pub listing: String,
}

impl Index {
    /// Every kept listing.
    pub fn folder_listings(&self) -> Result<Vec<FolderListing>, IndexError> {
        self.with_conn("read the kept listings", |c| {
            let mut statement = c.prepare("SELECT folder, stamp, listing FROM folder_listings")?;
            statement
                .query_map([], |row| {
                    Ok(FolderListing {
                        folder: row.get(0)?,
                        stamp: row.get(1)?,
                        listing: row.get(2)?,
                    })
                })?
                .collect()
        })
    }

    /// Keeps `fresh` (replacing what was kept for those folders) and forgets `gone`, in one
    /// transaction.
    pub fn keep_folder_listings(
        &self,
        fresh: &[FolderListing],
        gone: &[String],
    ) -> Result<(), IndexError> {
        if fresh.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let action = "keep the listings";
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = super::write_tx(&conn).map_err(IndexError::sql(action))?;
        {
            let mut put = tx
                .prepare(
                    "INSERT INTO folder_listings (folder, stamp, listing) VALUES (?1, ?2, ?3)
                     ON CONFLICT (folder) DO UPDATE SET stamp = ?2, listing = ?3",
                )
                .map_err(IndexError::sql(action))?;
            for f in fresh {
                put.execute(params![f.folder, f.stamp, f.listing])
                    .map_err(IndexError::sql(action))?;
            }
            let mut forget = tx
                .prepare("DELETE FROM folder_listings WHERE folder = ?1")
                .map_err(IndexError::sql(action))?;
            for folder in gone {
                forget
                    .execute(params![folder])
                    .map_err(IndexError::sql(action))?;
            }
        }
        tx.commit().map_err(IndexError::sql(action))
    }
}
