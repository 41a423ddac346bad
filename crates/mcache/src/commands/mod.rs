//! One function per command; each resolves settings, calls the engine, prints the result.

mod completions;
mod demo;
mod inspect;
mod login;
mod path;
mod queue;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

pub async fn run(cli: Cli, printer: Printer) -> anyhow::Result<ExitStatus> {
    let global = cli.global;
    match cli.command {
        Command::Completions { shell } => completions::completions(shell),
        Command::Login { stdin } => login::login(&global, stdin, &printer),
        Command::Logout => login::logout(&printer),
        Command::Demo { port } => demo::demo(port, &printer).await,
        Command::Inspect {
            target,
            file,
            revision,
        } => {
            let settings = crate::settings::resolve(&global)?;
            inspect::inspect(
                &settings,
                &target,
                file.as_deref(),
                revision.as_deref(),
                &printer,
            )
            .await
        }
        Command::Path {
            repo,
            file,
            revision,
        } => {
            let settings = crate::settings::resolve(&global)?;
            path::path(&settings, &repo, &file, revision.as_deref(), &printer)
        }
        Command::Queue { action } => {
            let settings = crate::settings::resolve(&global)?;
            queue::queue(settings.data_dir, action, &printer).await
        }
        other => Err(CliError::new(
            "internal",
            format!("`{other:?}` waits for the engine facade"),
        )
        .into()),
    }
}
