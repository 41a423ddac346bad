//! `mcache import`: local files and other apps' models into the cache, or a dry run saying
//! how each file would be placed and what adopting saves. Nothing is copied without `--copy`.

use model_cache::engine::Engine;
use model_cache::error::ErrorKind;
use model_cache::import::{ImportOrigin, ImportReport, ImportRequest, ImportState, Placement};
use model_cache::store::share::ShareMethod;
use model_cache::units::format_size;

use crate::cli::{ImportArgs, ImportFrom};
use crate::commands::parse_repo;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

pub(super) async fn import(
    engine: &Engine,
    args: ImportArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    if args.list {
        let models = engine.imported_models().await?;
        printer.output(&models, |models| {
            if models.is_empty() {
                printer.message("No model imported into Model Cache's own folder");
            }
            for model in models {
                let variants: Vec<&str> = model.variants.iter().map(|v| v.name.as_str()).collect();
                printer.data(format!(
                    "{:<40} {:>10}  {:<9} {}  {}",
                    model.record.name,
                    format_size(model.bytes),
                    model.record.origin.as_str(),
                    variants.join(","),
                    model.dir.display()
                ));
            }
        })?;
        return Ok(ExitStatus::Success);
    }
    let from = match args.from {
        ImportFrom::Files => ImportOrigin::Files,
        ImportFrom::Ollama => ImportOrigin::Ollama,
        ImportFrom::Lmstudio => ImportOrigin::LmStudio,
        ImportFrom::LlamaCpp => ImportOrigin::LlamaCpp,
    };
    let mut paths = args.paths;
    if paths.is_empty() {
        let lookup = |name: &str| std::env::var(name).ok();
        let home = crate::settings::home_dir();
        match model_cache::env::app_models_folder(from, &lookup, home.as_deref()) {
            Some(folder) => paths.push(folder),
            None => {
                return Err(CliError::usage("Nothing to import")
                    .hint("name files or folders, or pick an app with --from")
                    .into());
            }
        }
    }
    let request = ImportRequest {
        from,
        paths,
        repo: args.repo.as_deref().map(parse_repo).transpose()?,
        use_suggested_repos: args.suggested_repos,
        revision: args.revision,
        allow_copy: args.copy,
        dry_run: args.dry_run,
    };
    let report = engine.import(&request).await?;
    printer.output(&report, |report| print_report(printer, report))?;
    let failed = report
        .items
        .iter()
        .filter(|i| i.state == ImportState::Failed)
        .count();
    let needs_copy = report
        .items
        .iter()
        .filter(|i| i.state == ImportState::NeedsCopy)
        .count();
    if failed > 0 {
        return Err(CliError::new(
            ErrorKind::InvalidInput,
            format!(
                "{failed} of {} model(s) could not be imported",
                report.items.len()
            ),
        )
        .into());
    }
    if needs_copy > 0 {
        return Err(CliError::new(
            ErrorKind::InvalidInput,
            format!(
                "{needs_copy} model(s) can be neither hard-linked nor cloned here: nothing of them was imported"
            ),
        )
        .hint(format!(
            "pass --copy to copy them ({} of new disk)",
            format_size(report.copy_bytes)
        ))
        .into());
    }
    Ok(ExitStatus::Success)
}

fn method_word(method: ShareMethod) -> &'static str {
    match method {
        ShareMethod::AlreadyThere => "already there",
        ShareMethod::HardLink => "hard link",
        ShareMethod::Reflink => "reflink",
        ShareMethod::Copy => "copy",
        ShareMethod::NeedsCopy => "needs a copy",
    }
}

fn print_report(printer: &Printer, report: &ImportReport) {
    if report.items.is_empty() {
        printer.message("No model found to import");
        return;
    }
    for item in &report.items {
        let state = match item.state {
            ImportState::Planned => "would import",
            ImportState::Imported => "imported",
            ImportState::NeedsCopy => "needs a copy",
            ImportState::Failed => "failed",
        };
        let place = match &item.placement {
            Some(Placement::Hub { repo, commit, .. }) => {
                format!("as {repo} @ {}", &commit[..commit.len().min(12)])
            }
            Some(Placement::Local { dir }) => format!("into {}", dir.display()),
            None => String::new(),
        };
        printer.data(format!(
            "{state:<13} {} ({}, {}) {place}",
            item.name,
            item.origin.as_str(),
            format_size(item.bytes)
        ));
        for file in &item.files {
            printer.data(format!(
                "    {:<48} {:>10}  {}",
                file.path,
                format_size(file.size),
                method_word(file.method)
            ));
        }
        if let Some(variant) = item.variants.first() {
            printer.data(format!("    variant: {}", variant.name));
        }
        if let Some(repo) = item.suggested_repo.as_deref()
            && item
                .placement
                .as_ref()
                .is_some_and(|p| matches!(p, Placement::Local { .. }))
        {
            printer.data(format!(
                "    its app names the Hub repo {repo} (--suggested-repos places it there if the hashes match)"
            ));
        }
        if let Some(error) = &item.error {
            printer.data(format!("    error: {error}"));
        }
    }
    let verb = if report.dry_run {
        "would save"
    } else {
        "saved"
    };
    printer.data(format!(
        "{} in {} model(s); {verb} {} of disk and download{}",
        format_size(report.bytes),
        report.items.len(),
        format_size(report.saved_bytes),
        if report.copy_bytes > 0 {
            format!("; {} needs a copy", format_size(report.copy_bytes))
        } else {
            String::new()
        }
    ));
}
