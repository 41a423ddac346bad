//! `mcache serve`: the local API (and web UI) without the desktop app, as a thin call into
//! `local_api::serve`. Runs until Ctrl-C, then shuts down cleanly (the discovery file
//! `api.json` is removed, running downloads pause in place).

use crate::cli::ServeArgs;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

pub async fn serve(
    engine: model_cache::engine::Engine,
    args: ServeArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let _ = (engine, args, printer);
    Err(CliError::new(
        "unsupported",
        "`mcache serve` needs the local API crate, which does not serve routes yet",
    )
    .hint("run the desktop app for now")
    .into())
}
