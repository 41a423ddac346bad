//! `mcache config get/set`: the settings the app's settings page and the local API show
//! (`AppSettings`), in the same vocabulary: `max_rate_bps 20MB/s`, `size_budget_bytes 50GiB`,
//! `keep_partial_files_for 3d`, `schedule none`. Values are parsed and validated by the engine.

use model_cache::engine::{AppSettings, Engine, PreferencesPatch, SETTING_NAMES};
use model_cache::units::{format_rate, format_size};
use serde_json::Value;

use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

fn unknown_key(key: &str) -> CliError {
    CliError::usage(format!("Unknown setting `{key}`"))
        .hint(format!("settings: {}", SETTING_NAMES.join(", ")))
}

/// A setting's value as a person reads it: sizes and rates with units, spans as `7d`, nothing
/// as `none`.
fn shown(key: &str, value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::Number(n) if key.ends_with("_bytes") => {
            n.as_u64().map_or_else(|| n.to_string(), format_size)
        }
        Value::Number(n) if key.ends_with("_bps") => {
            n.as_u64().map_or_else(|| n.to_string(), format_rate)
        }
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn lookup<'a>(settings: &'a Value, key: &str) -> Result<&'a Value, CliError> {
    settings.get(key).ok_or_else(|| unknown_key(key))
}

pub(super) fn get(
    engine: &Engine,
    key: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let settings = serde_json::to_value(engine.app_settings())?;
    match key {
        None => printer.output(&settings, |_| {
            for key in SETTING_NAMES {
                if let Ok(value) = lookup(&settings, key) {
                    printer.data(format!("{key} = {}", shown(key, value)));
                }
            }
        })?,
        Some(key) => {
            let value = lookup(&settings, key)?;
            printer.output(value, |value| printer.data(shown(key, value)))?;
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) fn set(
    engine: &Engine,
    key: &str,
    text: &str,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    if !SETTING_NAMES.contains(&key) {
        return Err(unknown_key(key).into());
    }
    let patch = PreferencesPatch::parse_entry(key, text)?;
    let updated: AppSettings = engine.update_preferences(&patch)?;
    let updated = serde_json::to_value(updated)?;
    let value = lookup(&updated, key)?;
    printer.output(&updated, |_| {
        printer.message(format!("{key} = {}", shown(key, value)))
    })?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_with_units() {
        assert_eq!(
            shown("size_budget_bytes", &Value::from(50u64 << 30)),
            "50.0 GiB"
        );
        assert_eq!(
            shown("max_rate_bps", &Value::from(20u64 << 20)),
            "20.0 MiB/s"
        );
        assert_eq!(shown("max_rate_bps", &Value::Null), "none");
        assert_eq!(shown("keep_partial_files_for", &Value::from("1w")), "1w");
        assert_eq!(shown("offline", &Value::Bool(true)), "true");
    }
}
