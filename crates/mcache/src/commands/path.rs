//! `mcache path REPO FILE`: the snapshot path of a cached file, from the cache alone (like
//! `try_to_load_from_cache`); it never uses the network.

use model_cache::RepoId;
use model_cache::store::{CachedLookup, HubCache};

use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

pub fn path(
    settings: &model_cache::Settings,
    repo: &str,
    file: &str,
    revision: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = RepoId::parse_user_input(repo)
        .map_err(|error| CliError::new("invalid_input", error.to_string()))?;
    let revision = revision.unwrap_or("main");
    let cache = HubCache::new(settings.hub_cache.clone());
    match cache.repo(&repo).lookup_cached(revision, file) {
        CachedLookup::Found(path) => {
            printer.output(
                &serde_json::json!({ "repo": repo.to_string(), "revision": revision, "file": file, "path": path }),
                |_| printer.data(path.display().to_string()),
            )?;
            Ok(ExitStatus::Success)
        }
        CachedLookup::KnownMissing { commit } => Err(CliError::new(
            "entry_not_found",
            format!("File `{file}` does not exist in `{repo}` at `{revision}` (commit {commit})"),
        )
        .hint(format!("list what is cached with `mcache ls {repo}`"))
        .into()),
        CachedLookup::NotCached => Err(CliError::new(
            "offline_miss",
            format!(
                "`{file}` of `{repo}` at `{revision}` is not in the cache `{}`",
                settings.hub_cache.display()
            ),
        )
        .hint(format!(
            "download it with `mcache pull {repo} --include '{file}'`"
        ))
        .into()),
    }
}
