//! `mcache path REPO FILE`: the snapshot path of a cached file, from the cache alone (like
//! `try_to_load_from_cache`); it never uses the network.

use model_cache::engine::Engine;

use crate::commands::parse_repo;
use crate::exit::ExitStatus;
use crate::printer::Printer;

pub(super) fn path(
    engine: &Engine,
    repo: &str,
    file: &str,
    revision: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    let revision = revision.unwrap_or("main");
    let path = engine.path(&repo, revision, file)?;
    printer.output(
        &serde_json::json!({ "repo": repo.to_string(), "revision": revision, "file": file, "path": path }),
        |_| printer.data(path.display().to_string()),
    )?;
    Ok(ExitStatus::Success)
}
