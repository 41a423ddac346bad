//! `mcache inspect PATH | REPO FILE`: the header of a GGUF or safetensors file.
//!
//! A local path is read directly; a repo file is read from the cache when it is there, else its
//! header alone is fetched with range requests (the engine's `HubSource`), never the whole file.

use std::path::PathBuf;

use anyhow::Context;
use model_cache::formats::{self, Inspection};

use crate::exit::CliKind;
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;
use model_cache::units::format_size;

pub(super) async fn inspect(
    global: &crate::cli::GlobalArgs,
    target: &str,
    file: Option<&str>,
    revision: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let inspection = match file {
        None => {
            let path = PathBuf::from(target);
            if !path.exists() {
                return Err(CliError::new(
                    CliKind::FileNotFound,
                    format!("`{target}` is not a file"),
                )
                .hint("to inspect a file of a repo, pass both: `mcache inspect ORG/NAME FILE`")
                .into());
            }
            formats::inspect_path(&path)
                .await
                .with_context(|| format!("Cannot inspect `{}`", path.display()))?
        }
        Some(file) => {
            let repo = super::parse_repo(target)?;
            let engine = super::open_engine(global).await?;
            let result = engine.inspect(&repo, revision, file).await;
            engine.shutdown();
            result.with_context(|| format!("Cannot inspect `{file}` of `{repo}`"))?
        }
    };
    printer.output(&inspection, |inspection| {
        print_inspection(printer, inspection)
    })?;
    Ok(ExitStatus::Success)
}

fn print_inspection(printer: &Printer, inspection: &Inspection) {
    let row = |name: &str, value: String| printer.data(format!("{name:<20} {value}"));
    row("file", inspection.path.clone());
    row("size", format_size(inspection.size));
    row(
        "format",
        serde_json::to_value(inspection.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    );
    if let Some(gguf) = &inspection.gguf {
        let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
        let number =
            |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        row("gguf version", gguf.version.to_string());
        row("architecture", optional(&gguf.architecture));
        row("name", optional(&gguf.name));
        row("size label", optional(&gguf.size_label));
        row("quant", optional(&gguf.quant));
        row("parameters", gguf.parameter_count.to_string());
        row("context length", number(gguf.context_length));
        row("layers", number(gguf.block_count));
        row(
            "heads (kv)",
            format!(
                "{} ({})",
                number(gguf.head_count),
                number(gguf.head_count_kv)
            ),
        );
        row("vocabulary", number(gguf.vocab_size));
        row(
            "kv cache per token",
            gguf.kv_cache_bytes_per_token
                .map(format_size)
                .unwrap_or_else(|| "-".into()),
        );
        row(
            "chat template",
            if gguf.has_chat_template { "yes" } else { "no" }.into(),
        );
        row("tensors", gguf.tensor_count.to_string());
    }
    if let Some(st) = &inspection.safetensors {
        row("dtype", st.dtype.clone().unwrap_or_else(|| "-".into()));
        row("parameters", st.parameter_count.to_string());
        row("tensors", st.tensor_count.to_string());
        row("tensor data", format_size(st.data_bytes));
        row("header", format_size(st.header_len));
    }
    if !inspection.metadata.is_empty() && printer.verbose > 0 {
        printer.data("metadata:");
        for (key, value) in &inspection.metadata {
            printer.data(format!("  {key} = {value}"));
        }
    }
}
