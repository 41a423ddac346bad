//! `mcache variants REPO`: the engine's `VariantsReport` as a table (or as JSON).

use model_cache::engine::{Engine, VariantView, VariantsReport};

use crate::commands::parse_repo;
use crate::exit::ExitStatus;
use crate::printer::Printer;
use model_cache::units::format_size;

pub(super) async fn variants(
    engine: &Engine,
    repo: &str,
    revision: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let repo = parse_repo(repo)?;
    let report = engine.variants(&repo, revision).await?;
    printer.output(&report, |report| print_table(printer, report))?;
    Ok(ExitStatus::Success)
}

/// The fit tier as the user reads it.
pub(super) fn tier_label(view: &VariantView) -> String {
    serde_json::to_value(view.fit.tier)
        .ok()
        .and_then(|value| value.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| "unknown".into())
}

pub(super) fn format_label(view: &VariantView) -> String {
    serde_json::to_value(view.variant.format)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One row per variant; `*` in the first column marks the recommended one.
pub(super) fn print_table(printer: &Printer, report: &VariantsReport) {
    if report.variants.is_empty() {
        printer.message(format!("`{}` has no model files", report.repo));
        return;
    }
    printer.data(format!(
        "  {:<28} {:<12} {:<10} {:>10} {:>5}  {:<8} {}",
        "NAME", "FORMAT", "QUANT", "SIZE", "FILES", "FIT", "NOTES"
    ));
    for view in &report.variants {
        let variant = &view.variant;
        let mut notes = Vec::new();
        if !variant.complete {
            notes.push("incomplete".to_string());
        }
        if !variant.projectors.is_empty() {
            notes.push("+mmproj".to_string());
        }
        notes.extend(variant.warnings.iter().map(|w| w.message.clone()));
        printer.data(format!(
            "{} {:<28} {:<12} {:<10} {:>10} {:>5}  {:<8} {}",
            if view.recommended { "*" } else { " " },
            variant.name,
            format_label(view),
            variant.quant.as_deref().unwrap_or("-"),
            format_size(variant.total_size),
            variant.files.len(),
            tier_label(view),
            notes.join("; ")
        ));
    }
    let machine = &report.machine;
    let mut footer = format!(
        "{} variant(s) at {}; this machine: {} RAM, {} available",
        report.variants.len(),
        report
            .commit
            .as_deref()
            .map(|c| &c[..c.len().min(12)])
            .unwrap_or(&report.revision),
        format_size(machine.total_ram),
        format_size(machine.available_ram)
    );
    if let Some(vram) = machine.vram_total {
        footer.push_str(&format!(", {} VRAM", format_size(vram)));
    }
    if report.from_cache {
        footer.push_str(" (offline: listed from the cache)");
    }
    printer.message(footer);
    if let Some(name) = report
        .variants
        .iter()
        .find(|v| v.recommended)
        .map(|v| v.variant.name.clone())
    {
        printer.message(format!(
            "* recommended: `{name}` (the best quality that fits)"
        ));
    }
}
