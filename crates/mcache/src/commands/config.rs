//! `mcache config get/set`: the engine's persisted `Preferences` (the same file the app's
//! settings page writes), addressed by dotted keys such as `max_rate_bps` or `cache.budget`.

use model_cache::engine::{Engine, Preferences};
use serde_json::Value;

use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;
use crate::units::{parse_rate, parse_size};

fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |value, part| value.get(part))
}

fn keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        for (name, child) in map {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            if child.is_object() && !is_duration(child) {
                keys(child, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

fn is_duration(value: &Value) -> bool {
    value.get("secs").is_some() && value.get("nanos").is_some()
}

fn unknown_key(key: &str, all: &[String]) -> CliError {
    CliError::new("usage", format!("Unknown setting `{key}`"))
        .hint(format!("settings: {}", all.join(", ")))
}

pub fn get(engine: &Engine, key: Option<&str>, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let prefs = serde_json::to_value(engine.preferences())?;
    let mut all = Vec::new();
    keys(&prefs, "", &mut all);
    match key {
        None => printer.output(&prefs, |_| {
            for key in &all {
                let value = lookup(&prefs, key).cloned().unwrap_or(Value::Null);
                printer.data(format!("{key} = {value}"));
            }
        })?,
        Some(key) => {
            let value = lookup(&prefs, key).ok_or_else(|| unknown_key(key, &all))?;
            printer.output(value, |value| match value {
                Value::String(text) => printer.data(text),
                other => printer.data(other.to_string()),
            })?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Reads a value the way a person types it: units for sizes and rates, `none` to unset, JSON
/// for everything else, and a bare word as a string.
fn parse_value(key: &str, text: &str) -> Result<Value, CliError> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    if matches!(
        text.to_ascii_lowercase().as_str(),
        "none" | "null" | "unset"
    ) {
        return Ok(Value::Null);
    }
    let invalid = |error: crate::units::UnitError| CliError::new("usage", error.to_string());
    if leaf.contains("rate") {
        // Preferences store "explicitly unlimited" as 0.
        return Ok(Value::from(parse_rate(text).map_err(invalid)?.unwrap_or(0)));
    }
    if leaf == "budget" || leaf.ends_with("_bytes") || leaf.contains("reserve") {
        if let Ok(number) = text.parse::<u64>() {
            return Ok(Value::from(number));
        }
        return Ok(Value::from(parse_size(text).map_err(invalid)?));
    }
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
}

pub fn set(
    engine: &Engine,
    key: &str,
    text: &str,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut current = serde_json::to_value(engine.preferences())?;
    let mut all = Vec::new();
    keys(&current, "", &mut all);
    let top = key.split('.').next().unwrap_or(key).to_string();
    let known = all
        .iter()
        .any(|k| k == key || k.starts_with(&format!("{key}.")))
        || current
            .get(&top)
            .is_some_and(|v| v.is_null() && !key.contains('.'));
    if !known {
        return Err(unknown_key(key, &all).into());
    }
    let value = parse_value(key, text)?;
    // Write the value into a copy of the current preferences, then send only the top-level
    // field as the patch: nested settings (`cache.budget`) keep their siblings.
    let mut slot = &mut current;
    for part in key.split('.') {
        slot = slot.get_mut(part).ok_or_else(|| unknown_key(key, &all))?;
    }
    *slot = value;
    let patch = serde_json::json!({ top.clone(): current[&top].clone() });
    let patch: Preferences = serde_json::from_value(patch).map_err(|error| {
        CliError::new(
            "usage",
            format!("Invalid value `{text}` for `{key}`: {error}"),
        )
    })?;
    let updated = serde_json::to_value(engine.update_preferences(patch)?)?;
    let shown = lookup(&updated, key).cloned().unwrap_or(Value::Null);
    printer.output(&updated, |_| printer.message(format!("{key} = {shown}")))?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_units() {
        assert_eq!(
            parse_value("max_rate_bps", "20MB/s").unwrap(),
            Value::from(20_000_000u64)
        );
        assert_eq!(
            parse_value("max_rate_bps", "unlimited").unwrap(),
            Value::from(0u64)
        );
        assert_eq!(
            parse_value("cache.budget", "50GiB").unwrap(),
            Value::from(50u64 << 30)
        );
        assert_eq!(parse_value("cache.budget", "none").unwrap(), Value::Null);
        assert_eq!(parse_value("offline", "true").unwrap(), Value::Bool(true));
        assert_eq!(parse_value("connections", "8").unwrap(), Value::from(8));
        assert_eq!(
            parse_value("endpoint", "http://127.0.0.1:1").unwrap(),
            Value::String("http://127.0.0.1:1".into())
        );
        assert!(parse_value("max_rate_bps", "fast").is_err());
    }
}
