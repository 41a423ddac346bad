//! What the update checks learned: for each cached repo followed on a branch, the commit the
//! Hub last named for that branch, and the branches the user chose to keep at their current
//! commit ("held").
//!
//! A row says what was true at `checked_at`; whether an update is available is decided against
//! the cache's own ref when it is read (`engine::updates`), so a pull by another tool that moved
//! the ref clears the mark without a new check.

use rusqlite::{OptionalExtension, params};

use super::{Index, IndexError, now_ms, repo_row};
use crate::repo::RepoId;

/// The migration of the update-checks issue (appended to the index's list).
pub(crate) const MIGRATION: &str = "
CREATE TABLE ref_checks (
    repo        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    ref_name    TEXT NOT NULL,          -- the branch (or tag) the cache follows: `main`
    local       TEXT NOT NULL,          -- the commit the cache's ref named at the check
    remote      TEXT,                   -- the commit the Hub named; NULL when the check failed
    error       TEXT,                   -- why the check failed (kind), when it did
    checked_at  INTEGER NOT NULL,       -- unix ms
    PRIMARY KEY (repo, ref_name)
) WITHOUT ROWID;
CREATE TABLE held_refs (
    repo        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    ref_name    TEXT NOT NULL,
    commit_hash TEXT NOT NULL,          -- the commit the user keeps
    held_at     INTEGER NOT NULL,       -- unix ms
    PRIMARY KEY (repo, ref_name)
) WITHOUT ROWID;
";

/// The last check of one followed ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefCheck {
    pub ref_name: String,
    pub local: String,
    pub remote: Option<String>,
    pub error: Option<String>,
    pub checked_at: i64,
}

/// A ref the user keeps at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRef {
    pub ref_name: String,
    pub commit: String,
    pub held_at: i64,
}

impl Index {
    /// Records the outcome of a check: `remote` is what the Hub named, or `Err(kind)`.
    pub fn record_ref_check(
        &self,
        repo: &RepoId,
        ref_name: &str,
        local: &str,
        remote: Result<&str, &str>,
    ) -> Result<(), IndexError> {
        let (remote, error) = match remote {
            Ok(commit) => (Some(commit), None),
            Err(kind) => (None, Some(kind)),
        };
        self.with_conn("record an update check", |c| {
            let id = repo_row(c, repo)?;
            c.execute(
                "INSERT INTO ref_checks (repo, ref_name, local, remote, error, checked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (repo, ref_name) DO UPDATE SET
                     local = excluded.local, remote = excluded.remote,
                     error = excluded.error, checked_at = excluded.checked_at",
                params![id, ref_name, local, remote, error, now_ms()],
            )?;
            Ok(())
        })
    }

    /// The last check of each ref of a repo.
    pub fn ref_checks(&self, repo: &RepoId) -> Result<Vec<RefCheck>, IndexError> {
        self.with_conn("read update checks", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT ref_name, local, remote, error, checked_at FROM ref_checks
                 WHERE repo = (SELECT id FROM repos WHERE folder = ?1) ORDER BY ref_name",
            )?;
            let rows = stmt.query_map(params![repo.folder_name()], |row| {
                Ok(RefCheck {
                    ref_name: row.get(0)?,
                    local: row.get(1)?,
                    remote: row.get(2)?,
                    error: row.get(3)?,
                    checked_at: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// When a ref was last checked (unix ms).
    pub fn ref_checked_at(&self, repo: &RepoId, ref_name: &str) -> Result<Option<i64>, IndexError> {
        self.with_conn("read an update check", |c| {
            c.query_row(
                "SELECT checked_at FROM ref_checks
                 WHERE repo = (SELECT id FROM repos WHERE folder = ?1) AND ref_name = ?2",
                params![repo.folder_name(), ref_name],
                |row| row.get(0),
            )
            .optional()
        })
    }

    /// Keeps `ref_name` of a repo at `commit`: update checks skip it.
    pub fn hold_ref(&self, repo: &RepoId, ref_name: &str, commit: &str) -> Result<(), IndexError> {
        self.with_conn("hold a revision", |c| {
            let id = repo_row(c, repo)?;
            c.execute(
                "INSERT INTO held_refs (repo, ref_name, commit_hash, held_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo, ref_name) DO UPDATE SET
                     commit_hash = excluded.commit_hash, held_at = excluded.held_at",
                params![id, ref_name, commit, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Follows `ref_name` again. Returns whether it was held.
    pub fn release_ref(&self, repo: &RepoId, ref_name: &str) -> Result<bool, IndexError> {
        self.with_conn("follow a branch again", |c| {
            let n = c.execute(
                "DELETE FROM held_refs
                 WHERE repo = (SELECT id FROM repos WHERE folder = ?1) AND ref_name = ?2",
                params![repo.folder_name(), ref_name],
            )?;
            Ok(n > 0)
        })
    }

    /// The refs of a repo the user keeps where they are.
    pub fn held_refs(&self, repo: &RepoId) -> Result<Vec<HeldRef>, IndexError> {
        self.with_conn("read held revisions", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT ref_name, commit_hash, held_at FROM held_refs
                 WHERE repo = (SELECT id FROM repos WHERE folder = ?1) ORDER BY ref_name",
            )?;
            let rows = stmt.query_map(params![repo.folder_name()], |row| {
                Ok(HeldRef {
                    ref_name: row.get(0)?,
                    commit: row.get(1)?,
                    held_at: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_holds_are_kept_per_ref() {
        let index = Index::in_memory().unwrap();
        let repo = RepoId::model("org/model").unwrap();
        assert!(index.ref_checks(&repo).unwrap().is_empty());
        index
            .record_ref_check(&repo, "main", &"a".repeat(40), Ok(&"b".repeat(40)))
            .unwrap();
        index
            .record_ref_check(&repo, "dev", &"a".repeat(40), Err("unauthorized"))
            .unwrap();
        // A second check replaces the first.
        index
            .record_ref_check(&repo, "main", &"b".repeat(40), Ok(&"b".repeat(40)))
            .unwrap();
        let checks = index.ref_checks(&repo).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].ref_name, "dev");
        assert_eq!(checks[0].remote, None);
        assert_eq!(checks[0].error.as_deref(), Some("unauthorized"));
        assert_eq!(checks[1].local, "b".repeat(40));
        assert!(index.ref_checked_at(&repo, "main").unwrap().is_some());
        assert!(index.ref_checked_at(&repo, "v1").unwrap().is_none());

        index.hold_ref(&repo, "main", &"a".repeat(40)).unwrap();
        assert_eq!(index.held_refs(&repo).unwrap()[0].commit, "a".repeat(40));
        assert!(index.release_ref(&repo, "main").unwrap());
        assert!(!index.release_ref(&repo, "main").unwrap());
        assert!(index.held_refs(&repo).unwrap().is_empty());
    }
}
