//! One function per command; each resolves settings, calls the engine, prints the result.

mod completions;
mod login;
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
