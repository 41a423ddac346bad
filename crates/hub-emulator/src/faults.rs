//! Fault injection, global or per path glob, switchable at run time.
//!
//! A [`FaultRule`] pairs a [`Fault`] with an optional path glob (matched against the
//! percent-decoded request path of either listener; `*` matches any run of characters,
//! including `/`, and `?` one character) and an optional budget of requests ("the next K
//! requests"). Faults that shape a response body (bandwidth, drop, stall, ignored `Range`,
//! corruption) only count requests that send a file body; the others count every matching
//! request.
//!
//! Rules can also be written as text, as the binary's `--fault` flag takes them:
//! `KIND[=ARG][@GLOB][#COUNT]`, for example `latency=200ms`, `drop-after=1048576@/cdn/*#2`,
//! `error=503#3`, `rate-limit=2#1`, `stall=5s`, `stall=5s+65536`, `ignore-range`,
//! `corrupt=100-200`, `conn-bandwidth=1MB`, `total-bandwidth=50MB`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One kind of fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Delay before answering.
    Latency(Duration),
    /// Bytes per second for each response body (one request at a time per HTTP/1.1
    /// connection, so this is a per-connection cap).
    ConnectionBandwidth(u64),
    /// Bytes per second shared by all matching response bodies.
    TotalBandwidth(u64),
    /// Close the connection after this many body bytes.
    DropAfter(u64),
    /// Answer with this status (500, 502, 503, 504) instead.
    ServerError(u16),
    /// Answer 429 with `Retry-After` (seconds) and `RateLimit` headers.
    RateLimit {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Send the headers (and `after_bytes` body bytes), then nothing for `duration`.
    Stall {
        /// Body bytes sent before the stall.
        after_bytes: u64,
        /// How long to stay silent.
        duration: Duration,
    },
    /// Ignore `Range` and send 200 with the full body.
    IgnoreRange,
    /// Flip the bits of file bytes `start..end` in responses, while the headers still
    /// announce the original hashes.
    Corrupt {
        /// First corrupted file offset.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
}

impl Fault {
    fn shapes_body(&self) -> bool {
        matches!(
            self,
            Self::ConnectionBandwidth(_)
                | Self::TotalBandwidth(_)
                | Self::DropAfter(_)
                | Self::Stall { .. }
                | Self::IgnoreRange
                | Self::Corrupt { .. }
        )
    }
}

/// A fault, where it applies and for how many requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// Glob on the decoded path; `None` applies everywhere.
    pub path_glob: Option<String>,
    /// Number of matching requests it applies to; `None` for all of them.
    pub requests: Option<u32>,
    /// Matching requests it lets pass before it applies (see [`FaultRule::after`]).
    pub skip: u32,
}

impl FaultRule {
    /// A rule for every request.
    pub fn global(fault: Fault) -> Self {
        Self {
            fault,
            path_glob: None,
            requests: None,
            skip: 0,
        }
    }

    /// Lets the first `n` matching requests pass untouched: the rule applies from the next one
    /// (a fault on a reconnect only, say).
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Restricts the rule to paths matching `glob`.
    pub fn on(mut self, glob: impl Into<String>) -> Self {
        self.path_glob = Some(glob.into());
        self
    }

    /// Limits the rule to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.requests = Some(n);
        self
    }
}

/// A rule that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "Invalid fault `{spec}`: {reason}; hint: use KIND[=ARG][@GLOB][#COUNT], e.g. `error=503#2`"
)]
pub struct FaultParseError {
    spec: String,
    reason: String,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("ms") {
        return v.parse().ok().map(Duration::from_millis);
    }
    if let Some(v) = s.strip_suffix('s') {
        return v.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    s.parse().ok().map(Duration::from_millis)
}

/// Parses `123`, `64KB`, `1.5MB`, `2GiB`, ... into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1048576.0,
        "gib" => 1073741824.0,
        _ => return None,
    };
    Some((num * mult) as u64)
}

impl std::str::FromStr for FaultRule {
    type Err = FaultParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| FaultParseError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (rest, count) = match spec.rsplit_once('#') {
            Some((r, c)) => (
                r,
                Some(c.parse().map_err(|_| err("COUNT is not a number"))?),
            ),
            None => (spec, None),
        };
        let (rest, glob) = match rest.split_once('@') {
            Some((r, g)) => (r, Some(g.to_string())),
            None => (rest, None),
        };
        let (kind, arg) = rest.split_once('=').unwrap_or((rest, ""));
        let need = |what: &str| err(&format!("`{kind}` needs {what}"));
        let fault = match kind {
            "latency" => Fault::Latency(parse_duration(arg).ok_or_else(|| need("a duration"))?),
            "conn-bandwidth" => {
                Fault::ConnectionBandwidth(parse_size(arg).ok_or_else(|| need("bytes per second"))?)
            }
            "total-bandwidth" => {
                Fault::TotalBandwidth(parse_size(arg).ok_or_else(|| need("bytes per second"))?)
            }
            "drop-after" => Fault::DropAfter(parse_size(arg).ok_or_else(|| need("a byte count"))?),
            "error" => {
                let status = if arg.is_empty() {
                    500
                } else {
                    arg.parse().map_err(|_| need("a status"))?
                };
                if !(500..600).contains(&status) {
                    return Err(err("the status must be 5xx"));
                }
                Fault::ServerError(status)
            }
            "rate-limit" => Fault::RateLimit {
                retry_after: if arg.is_empty() {
                    1
                } else {
                    arg.parse().map_err(|_| need("seconds"))?
                },
            },
            "stall" => {
                let (d, after) = arg.split_once('+').unwrap_or((arg, "0"));
                Fault::Stall {
                    duration: parse_duration(d).ok_or_else(|| need("a duration"))?,
                    after_bytes: parse_size(after).ok_or_else(|| need("a byte count after `+`"))?,
                }
            }
            "ignore-range" => Fault::IgnoreRange,
            "corrupt" => {
                let (a, b) = arg.split_once('-').ok_or_else(|| need("START-END"))?;
                let start = parse_size(a).ok_or_else(|| need("START-END"))?;
                let end = parse_size(b).ok_or_else(|| need("START-END"))?;
                if end <= start {
                    return Err(err("END must be greater than START"));
                }
                Fault::Corrupt { start, end }
            }
            _ => return Err(err("unknown kind")),
        };
        Ok(Self {
            fault,
            path_glob: glob,
            requests: count,
            skip: 0,
        })
    }
}

/// Matches `text` against a glob where `*` is any run of characters and `?` one character.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut gi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == '*' {
        gi += 1;
    }
    gi == g.len()
}

/// An identifier of an installed rule, to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

#[derive(Debug)]
struct Installed {
    id: FaultId,
    rule: FaultRule,
    remaining: Option<u32>,
    skip: u32,
}

/// Faults that apply before answering a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RequestFaults {
    pub(crate) latency: Duration,
    pub(crate) error: Option<Fault>,
}

/// Faults that shape one response body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BodyFaults {
    pub(crate) conn_bandwidth: Option<u64>,
    pub(crate) total_bandwidth: Option<u64>,
    pub(crate) drop_after: Option<u64>,
    pub(crate) stall: Option<(u64, Duration)>,
    pub(crate) ignore_range: bool,
    pub(crate) corrupt: Vec<(u64, u64)>,
}

/// The installed rules; get it with `Emulator::faults()`.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Installed>>,
    next_id: Mutex<u64>,
    total_clock: Mutex<Option<Instant>>,
}

impl Faults {
    /// Installs a rule; it applies from the next request on.
    pub fn set(&self, rule: FaultRule) -> FaultId {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            FaultId(*n)
        };
        tracing::info!(?rule, "Fault installed");
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Installed {
                id,
                remaining: rule.requests,
                skip: rule.skip,
                rule,
            });
        id
    }

    /// Removes one rule.
    pub fn remove(&self, id: FaultId) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.id != id);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The rules still installed (with budgets left).
    pub fn active(&self) -> Vec<FaultRule> {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| FaultRule {
                requests: r.remaining,
                skip: r.skip,
                ..r.rule.clone()
            })
            .collect()
    }

    fn take<F: FnMut(&Fault)>(&self, path: &str, body: bool, mut apply: F) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for r in rules.iter_mut() {
            if r.rule.fault.shapes_body() != body {
                continue;
            }
            if r.rule
                .path_glob
                .as_deref()
                .is_some_and(|g| !glob_match(g, path))
            {
                continue;
            }
            if r.remaining == Some(0) {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            apply(&r.rule.fault);
        }
        rules.retain(|r| r.remaining != Some(0));
    }

    pub(crate) fn for_request(&self, path: &str) -> RequestFaults {
        let mut out = RequestFaults::default();
        self.take(path, false, |f| match f {
            Fault::Latency(d) => out.latency += *d,
            Fault::ServerError(_) | Fault::RateLimit { .. } if out.error.is_none() => {
                out.error = Some(f.clone());
            }
            _ => {}
        });
        out
    }

    pub(crate) fn for_body(&self, path: &str) -> BodyFaults {
        let mut out = BodyFaults::default();
        self.take(path, true, |f| match f {
            Fault::ConnectionBandwidth(b) => {
                out.conn_bandwidth = Some(out.conn_bandwidth.map_or(*b, |c| c.min(*b)));
            }
            Fault::TotalBandwidth(b) => {
                out.total_bandwidth = Some(out.total_bandwidth.map_or(*b, |c| c.min(*b)));
            }
            Fault::DropAfter(n) => out.drop_after = Some(out.drop_after.map_or(*n, |c| c.min(*n))),
            Fault::Stall {
                after_bytes,
                duration,
            } => out.stall = Some((*after_bytes, *duration)),
            Fault::IgnoreRange => out.ignore_range = true,
            Fault::Corrupt { start, end } => out.corrupt.push((*start, *end)),
            _ => {}
        });
        out
    }

    /// Reserves `n` bytes of the shared bandwidth and returns when they may be sent.
    pub(crate) fn total_slot(&self, n: u64, rate: u64) -> Instant {
        let mut clock = self.total_clock.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = clock.map_or(now, |c| c.max(now));
        let done = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        *clock = Some(done);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "/a/b"));
        assert!(glob_match("/cdn/*", "/cdn/x/y.gguf"));
        assert!(glob_match("*.gguf", "/demo/x/resolve/main/a.gguf"));
        assert!(!glob_match("*.gguf", "/demo/x/resolve/main/a.json"));
        assert!(glob_match("/a?c", "/abc"));
    }

    #[test]
    fn parse_rules() {
        let r: FaultRule = "drop-after=1MB@/cdn/*#2".parse().unwrap();
        assert_eq!(r.fault, Fault::DropAfter(1_000_000));
        assert_eq!(r.path_glob.as_deref(), Some("/cdn/*"));
        assert_eq!(r.requests, Some(2));
        let r: FaultRule = "stall=1.5s+100".parse().unwrap();
        assert_eq!(
            r.fault,
            Fault::Stall {
                after_bytes: 100,
                duration: Duration::from_millis(1500)
            }
        );
        assert!("error=404".parse::<FaultRule>().is_err());
        assert!("bogus".parse::<FaultRule>().is_err());
    }

    #[test]
    fn budgets_are_consumed() {
        let f = Faults::default();
        f.set(FaultRule::global(Fault::ServerError(503)).times(2));
        f.set(FaultRule::global(Fault::IgnoreRange).on("/cdn/*"));
        assert!(f.for_request("/x").error.is_some());
        assert!(f.for_request("/x").error.is_some());
        assert!(f.for_request("/x").error.is_none());
        assert!(!f.for_body("/api").ignore_range);
        assert!(f.for_body("/cdn/a").ignore_range);
        assert_eq!(f.active().len(), 1);
    }
}
