//! `mcache convert`: converts a cached model in this process with progress, prints the output's
//! path (or its provenance record with `--json`). Ctrl-C cancels: the temporary file is removed
//! and nothing is left under the output's name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use model_cache::convert::{Backend, ConvertRequest, Format};
use model_cache::download::{DownloadEvent, JobControl, Reporter};
use model_cache::engine::Engine;
use model_cache::units::format_size;

use crate::cli::{ConvertArgs, ConvertBackend, ConvertTo};
use crate::commands::{Interrupt, parse_repo};
use crate::exit::ExitStatus;
use crate::printer::Printer;

/// Draws progress on stderr, at most twice a second.
struct Progress {
    printer: Printer,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Reporter for Progress {
    fn report(&self, event: DownloadEvent) {
        let DownloadEvent::Bytes { done, total, .. } = event else {
            return;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) && done < total {
            return;
        }
        *last = Some(Instant::now());
        if self.printer.progress_bars() {
            let percent = (done * 100).checked_div(total).unwrap_or(0);
            eprint!(
                "\r  {percent:>3}%  {} of {}   ",
                format_size(done),
                format_size(total)
            );
            if done >= total {
                eprintln!();
            }
        }
    }
}

pub(super) async fn convert(
    engine: &Engine,
    args: ConvertArgs,
    interrupt: &mut Interrupt,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(&args.repo)?;
    let request = ConvertRequest {
        to: match args.to {
            ConvertTo::Gguf => Format::Gguf,
        },
        gguf_type: args.gguf_type,
        out: args.out.clone(),
        backend: match args.backend {
            ConvertBackend::Auto => Backend::Auto,
            ConvertBackend::Native => Backend::Native,
            ConvertBackend::LlamaCpp => Backend::LlamaCpp,
        },
    };
    let plan = engine.plan_convert(&repo, args.revision.as_deref(), &request)?;
    let converter = match plan.backend {
        Backend::LlamaCpp => "llama.cpp's convert_hf_to_gguf.py",
        _ => "the native converter",
    };
    printer.message(format!(
        "Converting {repo} at {} to GGUF {} with {converter} (about {})",
        &plan.commit[..plan.commit.len().min(12)],
        args.gguf_type.label(),
        format_size(plan.estimated_bytes)
    ));
    let control = JobControl::new();
    let reporter: Arc<dyn Reporter> = Arc::new(Progress {
        printer: *printer,
        last: std::sync::Mutex::new(None),
    });
    let run = engine.convert(plan, request, reporter, control.clone());
    tokio::pin!(run);
    let provenance = tokio::select! {
        result = &mut run => result?,
        _ = interrupt.wait() => {
            control.cancel();
            // The converter stops at its next check and removes its temporary file.
            let _ = run.await;
            eprintln!("interrupted: the conversion was cancelled");
            return Ok(ExitStatus::Interrupted);
        }
    };
    for warning in &provenance.warnings {
        printer.warning(warning);
    }
    printer.output(&provenance, |p| {
        printer.data(p.output.display().to_string());
    })?;
    Ok(ExitStatus::Success)
}
