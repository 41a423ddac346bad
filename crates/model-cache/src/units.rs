//! Human units for sizes, rates and spans of time: parsing what users type and printing what they
//! read. The engine's settings ([`crate::engine::PreferencesPatch`]) and every edge use these.
//!
//! Both decimal (`KB`, `MB`, `GB`, `TB`: powers of 1000, as the Hub and disk vendors count) and
//! binary (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024, as operating systems count) units are
//! accepted, case-insensitively, with or without a space and a trailing `B`. A bare number is a
//! byte count. Rates are sizes per second, written `20MB/s`, `20MB`, or `20 MiB/s`.
//!
//! Printing always uses binary units with a precision that keeps three significant digits, so
//! that `mcache` output matches what `du -h` and file managers show.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a size or rate could not be parsed. The messages quote the input and show an example,
/// because clap prints them verbatim after `invalid value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("`{0}` is empty; expected a size such as `500MB` or `1.5GiB`")]
    Empty(String),
    #[error(
        "`{input}` is not a number followed by a unit; expected a size such as `500MB` or `1.5GiB`"
    )]
    NotANumber { input: String },
    #[error(
        "`{input}` has an unknown unit `{unit}`; use B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("`{input}` is negative")]
    Negative { input: String },
    #[error("`{input}` is too large")]
    TooLarge { input: String },
    #[error("`{input}` is not a rate; expected a rate such as `20MB/s` or `unlimited`")]
    NotARate { input: String },
    #[error(
        "`{input}` is not a span of time; expected a number and a unit such as `7d`, `12h`, `30m` or `45s`"
    )]
    NotASpan { input: String },
}

/// The multiplier of a unit suffix (already trimmed), or `None` if unknown.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("bytes")
        .or_else(|| unit.strip_suffix("byte"))
        .unwrap_or(&unit);
    let multiplier = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    Some(multiplier)
}

/// Parses a size such as `500`, `64KiB`, `1.5 GB` into bytes. Fractions are rounded to the
/// nearest byte.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(UnitError::Empty(input.to_string()));
    }
    if text.starts_with('-') {
        return Err(UnitError::Negative {
            input: input.to_string(),
        });
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.replace('_', "");
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return Err(UnitError::NotANumber {
            input: input.to_string(),
        });
    }
    let value: f64 = number.parse().map_err(|_| UnitError::NotANumber {
        input: input.to_string(),
    })?;
    let unit = unit.trim();
    let multiplier = unit_multiplier(unit).ok_or_else(|| UnitError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
    })?;
    // Integers are multiplied exactly so `18446744073709551615` and `16EiB`-style edge cases do
    // not lose precision through f64; fractions go through f64, which is exact enough for sizes
    // people type.
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| UnitError::TooLarge {
                input: input.to_string(),
            });
    }
    let bytes = (value * multiplier as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError::TooLarge {
            input: input.to_string(),
        });
    }
    Ok(bytes as u64)
}

/// Parses a rate such as `20MB/s`, `512KiB/s` or `10M` into bytes per second. `unlimited`,
/// `none`, `off` and `0` mean no limit and give `None`.
pub fn parse_rate(input: &str) -> Result<Option<u64>, UnitError> {
    let text = input.trim();
    if matches!(
        text.to_ascii_lowercase().as_str(),
        "unlimited" | "none" | "off"
    ) {
        return Ok(None);
    }
    let lower = text.to_ascii_lowercase();
    let size = if let Some(stripped) = lower.strip_suffix("/s") {
        stripped.to_string()
    } else if lower.contains('/') {
        return Err(UnitError::NotARate {
            input: input.to_string(),
        });
    } else {
        lower
    };
    match parse_size(&size) {
        Ok(0) => Ok(None),
        Ok(bytes) => Ok(Some(bytes)),
        Err(UnitError::UnknownUnit { unit, .. }) => Err(UnitError::UnknownUnit {
            input: input.to_string(),
            unit,
        }),
        Err(UnitError::Empty(_)) | Err(UnitError::NotANumber { .. }) => Err(UnitError::NotARate {
            input: input.to_string(),
        }),
        Err(UnitError::Negative { .. }) => Err(UnitError::Negative {
            input: input.to_string(),
        }),
        Err(_) => Err(UnitError::TooLarge {
            input: input.to_string(),
        }),
    }
}

/// A byte count, for clap: `--chunk-size 8MiB`, `--max-size 20GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

/// A bandwidth limit, for clap: `--max-rate 20MB/s`; `Rate(None)` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

impl FromStr for Rate {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rate(s).map(Rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bps) => f.write_str(&format_rate(bps)),
            None => f.write_str("unlimited"),
        }
    }
}

/// `1536` → `1.50 KiB`; below 1 KiB, whole bytes (`512 B`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // Three significant digits: 1.50 KiB, 15.0 MiB, 150 GiB. A value that rounds up to 1024
    // (e.g. 1023.99 MiB) is shown in the next unit so widths stay at most four digits.
    let text = if value >= 1023.995 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
        format!("{value:.2}")
    } else if value < 9.995 {
        format!("{value:.2}")
    } else if value < 99.95 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    };
    format!("{text} {}", UNITS[unit])
}

/// Bytes per second → `12.3 MiB/s`.
pub fn format_rate(bytes_per_second: u64) -> String {
    format!("{}/s", format_size(bytes_per_second))
}

/// A duration for ETAs and elapsed times: `45s`, `3m05s`, `2h07m`, `3 days` (48 hours and
/// more). The app formats the same way.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 48 * 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{} days", (secs + 43_200) / 86_400)
    }
}

/// Transfer speed and time left: the one estimate every edge shows (the local API and so the
/// app, and `mcache pull`), so a download reads the same speed and ETA everywhere. Bytes
/// transferred over time, smoothed: each sample of at least [`Throughput::SAMPLE`] weighs
/// 30 %. Bytes that appear without being transferred (a cached file, the part of a resumed
/// file already on disk) move the baseline ([`Throughput::skip`]) instead of counting as speed.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    bytes_per_second: f64,
    last: Option<(std::time::Instant, u64)>,
}

impl Throughput {
    /// The shortest span a speed sample covers.
    pub const SAMPLE: Duration = Duration::from_millis(200);

    /// `done` bytes (transferred and skipped) at `now`.
    pub fn observe(&mut self, now: std::time::Instant, done: u64) {
        let Some((at, before)) = self.last else {
            self.last = Some((now, done));
            return;
        };
        let span = now.saturating_duration_since(at);
        if span < Self::SAMPLE {
            return;
        }
        let sample = done.saturating_sub(before) as f64 / span.as_secs_f64();
        self.bytes_per_second = if self.bytes_per_second == 0.0 {
            sample
        } else {
            0.7 * self.bytes_per_second + 0.3 * sample
        };
        self.last = Some((now, done));
    }

    /// `bytes` counted in `done` from now on that were not transferred.
    pub fn skip(&mut self, bytes: u64) {
        if let Some((_, before)) = &mut self.last {
            *before = before.saturating_add(bytes);
        }
    }

    /// Stopped (paused): the speed starts again from the next bytes.
    pub fn stop(&mut self) {
        *self = Throughput::default();
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.bytes_per_second
    }

    /// Time left for `remaining` bytes at the current speed; `None` before any speed is known.
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        (self.bytes_per_second > 0.0)
            .then(|| Duration::from_secs((remaining as f64 / self.bytes_per_second).ceil() as u64))
    }
}

/// Parses a span of time: a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`7d`, `12h`,
/// `90 m`); a bare number is seconds.
pub fn parse_span(input: &str) -> Result<Duration, UnitError> {
    let text = input.trim();
    let invalid = || UnitError::NotASpan {
        input: input.to_string(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| UnitError::TooLarge {
            input: input.to_string(),
        })
}

/// A span of time in the largest unit that divides it exactly: `7d`, `36h`, `90s`; what
/// [`parse_span`] reads back.
pub fn format_span(span: Duration) -> String {
    let secs = span.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {

    #[test]
    fn throughput_smooths_and_skipped_bytes_are_not_speed() {
        use std::time::{Duration, Instant};
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut t = Throughput::default();
        assert_eq!(t.eta(100), None, "no speed before two samples");
        t.observe(at(0), 0);
        t.observe(at(1000), 1000);
        assert_eq!(t.bytes_per_second(), 1000.0);
        assert_eq!(t.eta(5000), Some(Duration::from_secs(5)));
        // A sample shorter than SAMPLE is not taken.
        t.observe(at(1100), 1_000_000);
        assert_eq!(t.bytes_per_second(), 1000.0);
        // A cached file of 1 MB appears: the baseline moves, the speed does not jump.
        t.skip(1_000_000);
        t.observe(at(2000), 1_003_000);
        assert_eq!(t.bytes_per_second(), 0.7 * 1000.0 + 0.3 * 2000.0);
        t.stop();
        assert_eq!(t.eta(1), None);
    }

    #[test]
    fn durations_read_the_same_in_every_edge() {
        use std::time::Duration;
        let read = |s| format_duration(Duration::from_secs(s));
        assert_eq!(read(45), "45s");
        assert_eq!(read(185), "3m05s");
        assert_eq!(read(2 * 3600 + 7 * 60), "2h07m");
        assert_eq!(read(72 * 3600), "3 days");
    }

    use super::*;

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        let cases = [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("1KB", 1_000),
            ("1kb", 1_000),
            ("1K", 1_000),
            ("1KiB", 1_024),
            ("1 kib", 1_024),
            ("20MB", 20_000_000),
            ("20MiB", 20 * 1_048_576),
            ("1.5GiB", 1_610_612_736),
            ("1.5GB", 1_500_000_000),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("  3 GB  ", 3_000_000_000),
            ("1_000", 1_000),
            ("0.5KiB", 512),
            ("10 bytes", 10),
            ("5mi", 5 << 20),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_size(input), Ok(expected), "parsing {input:?}");
        }
    }

    #[test]
    fn bad_sizes_are_rejected_with_the_input_quoted() {
        assert!(matches!(parse_size(""), Err(UnitError::Empty(_))));
        assert!(matches!(
            parse_size("GB"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(parse_size("."), Err(UnitError::NotANumber { .. })));
        assert!(matches!(
            parse_size("1.2.3MB"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("-1MB"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_size("99999999999TB"),
            Err(UnitError::TooLarge { .. })
        ));
        let error = parse_size("10 parsecs").unwrap_err();
        assert!(matches!(&error, UnitError::UnknownUnit { unit, .. } if unit == "parsecs"));
        assert!(error.to_string().contains("`10 parsecs`"), "{error}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20MB/s"), Ok(Some(20_000_000)));
        assert_eq!(parse_rate("20MiB/s"), Ok(Some(20 << 20)));
        assert_eq!(parse_rate("512 KiB/s"), Ok(Some(512 << 10)));
        assert_eq!(parse_rate("10M"), Ok(Some(10_000_000)));
        assert_eq!(parse_rate("1.5GB/s"), Ok(Some(1_500_000_000)));
        assert_eq!(parse_rate("unlimited"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("OFF"), Ok(None));
        assert!(matches!(
            parse_rate("fast"),
            Err(UnitError::NotARate { .. })
        ));
        assert!(matches!(
            parse_rate("20MB/h"),
            Err(UnitError::NotARate { .. })
        ));
        assert!(matches!(
            parse_rate("20XB/s"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert_eq!("20MB/s".parse::<Rate>(), Ok(Rate(Some(20_000_000))));
    }

    #[test]
    fn printing_keeps_three_significant_digits() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (15 * 1024 * 1024 + 512 * 1024, "15.5 MiB"),
            (150 << 30, "150 GiB"),
            ((1 << 20) - 1, "1.00 MiB"),
            (1_610_612_736, "1.50 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(format_size(bytes), expected, "printing {bytes}");
        }
        assert_eq!(format_rate(20 << 20), "20.0 MiB/s");
        assert_eq!(Rate(None).to_string(), "unlimited");
    }

    #[test]
    fn printed_sizes_parse_back_to_within_rounding() {
        for bytes in [1u64, 999, 1024, 123_456, 9_876_543_210, 1 << 40] {
            let printed = format_size(bytes);
            let parsed = parse_size(&printed).unwrap();
            let error = parsed.abs_diff(bytes) as f64 / bytes as f64;
            assert!(error < 0.01, "{bytes} → {printed} → {parsed}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn spans_round_trip() {
        for (text, secs) in [
            ("7d", 7 * 86_400),
            ("36h", 36 * 3600),
            ("90s", 90),
            ("2w", 14 * 86_400),
            ("45", 45),
            ("30 m", 1800),
        ] {
            assert_eq!(parse_span(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(format_span(Duration::from_secs(7 * 86_400)), "1w");
        assert_eq!(format_span(Duration::from_secs(6 * 86_400)), "6d");
        assert_eq!(format_span(Duration::from_secs(90)), "90s");
        assert_eq!(format_span(Duration::from_secs(3600)), "1h");
        for bad in ["", "d", "7 fortnights", "-1d", "1.5h"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
