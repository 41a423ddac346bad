//! `mcache completions SHELL`: completion scripts generated from the same grammar as `--help`.

use crate::cli::CompletionShell;
use crate::exit::ExitStatus;

pub(super) fn completions(shell: CompletionShell) -> anyhow::Result<ExitStatus> {
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Elvish => Shell::Elvish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut command = crate::cli::command();
    clap_complete::generate(shell, &mut command, "mcache", &mut std::io::stdout());
    Ok(ExitStatus::Success)
}
