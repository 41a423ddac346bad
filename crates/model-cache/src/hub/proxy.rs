//! Which proxy a request goes through, decided the way `huggingface_hub` (through Python's
//! `urllib` proxy rules) and curl decide it.
//!
//! The edges fill in [`ProxySettings`] (from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY` in [`crate::env`], or from the `proxy` preference and `--proxy`); the Hub client
//! turns them into one `reqwest` proxy rule that [`ProxyRule::proxy_for`] decides, for every
//! request it makes: the Hub, the CDN it redirects to, and the mirrors. `reqwest`'s own reading of
//! the environment is switched off, so the engine never reads a variable itself.
//!
//! **Architecture Invariant:** a request to loopback (`localhost`, `*.localhost`, `127.0.0.0/8`,
//! `::1`) never goes through a proxy, whatever the settings say: the local mirror, the demo hub
//! and the emulator stay reachable, and nothing meant for this machine leaves it.
//!
//! A proxy URL may carry a user name and password (`http://user:secret@proxy:3128`); they are a
//! secret: [`ProxyUrl`]'s `Debug` and `Display` show the URL without them, and errors name the
//! proxy only through [`super::redact_url`].

use std::net::IpAddr;

use url::Url;

use super::error::redact_url;

/// A proxy as the user wrote it (`http://proxy:3128`, `proxy:3128`, with or without
/// `user:password@`). Shown without its user info; saved (in the preferences) as written.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// A proxy from its text; `None` when empty. Checked when the client is built
    /// ([`ProxyUrl::parse`]).
    pub fn new(text: impl Into<String>) -> Option<ProxyUrl> {
        let text = text.into().trim().to_string();
        (!text.is_empty()).then_some(ProxyUrl(text))
    }

    /// The text as given, password included: for saving the preference, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL, with `http://` assumed when no scheme is given (as curl and `requests` do).
    /// Only `http` and `https` proxies are supported.
    pub fn parse(&self) -> Result<Url, String> {
        let text = if self.0.contains("://") {
            self.0.clone()
        } else {
            format!("http://{}", self.0)
        };
        let url = Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "`{other}` proxies are not supported; use an `http://` or `https://` proxy"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("no host".into());
        }
        Ok(url)
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({:?})", redact_url(&self.0))
    }
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// The proxies in force: one for `http://` URLs, one for `https://` URLs, and the hosts that
/// bypass them. Empty by default (no proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `http://` URLs (`http_proxy`, else `all_proxy`).
    pub http: Option<ProxyUrl>,
    /// For `https://` URLs (`https_proxy`, else `all_proxy`).
    pub https: Option<ProxyUrl>,
    /// `NO_PROXY`, as written: comma-separated host names, domains, IP addresses and CIDR
    /// ranges; `*` for every host.
    pub no_proxy: Option<String>,
}

impl ProxySettings {
    /// One proxy for every scheme (the `proxy` preference, `--proxy`), keeping `no_proxy`.
    pub fn set_all(&mut self, proxy: Option<ProxyUrl>) {
        self.http = proxy.clone();
        self.https = proxy;
    }

    /// Whether any proxy is configured.
    pub fn is_set(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }
}

/// [`ProxySettings`] parsed: what the client decides with.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyRule {
    http: Option<Url>,
    https: Option<Url>,
    bypass: NoProxy,
}

impl ProxyRule {
    /// Parses the settings; the error names the proxy (without its password) and the reason.
    pub(crate) fn new(settings: &ProxySettings) -> Result<ProxyRule, (String, String)> {
        let parse = |proxy: &Option<ProxyUrl>| {
            proxy
                .as_ref()
                .map(|p| p.parse().map_err(|reason| (p.to_string(), reason)))
                .transpose()
        };
        Ok(ProxyRule {
            http: parse(&settings.http)?,
            https: parse(&settings.https)?,
            bypass: NoProxy::parse(settings.no_proxy.as_deref().unwrap_or("")),
        })
    }

    /// Whether any request may go through a proxy.
    pub(crate) fn is_set(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }

    /// The proxy a request to `url` goes through, if any: none to loopback, none to a host
    /// `NO_PROXY` names, else the proxy of the URL's scheme.
    pub(crate) fn proxy_for(&self, url: &Url) -> Option<&Url> {
        let proxy = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        }?;
        let host = url.host()?;
        if is_loopback(&host) || self.bypass.matches(&host, url.port_or_known_default()) {
            return None;
        }
        Some(proxy)
    }
}

/// Whether a host is this machine's loopback.
pub(crate) fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default)]
struct NoProxy {
    everything: bool,
    entries: Vec<(NoProxyHost, Option<u16>)>,
}

#[derive(Debug, Clone)]
enum NoProxyHost {
    /// A name and every name under it (`example.com` and `.example.com` both match
    /// `example.com` and `a.example.com`, as in curl and `requests`).
    Domain(String),
    Ip(IpAddr),
    Range(IpAddr, u8),
}

impl NoProxy {
    /// Parses a comma-separated list; entries that are not understood are skipped (curl
    /// ignores them too).
    fn parse(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                no_proxy.everything = true;
                continue;
            }
            let entry = entry.strip_prefix("*.").unwrap_or(entry);
            let entry = entry.strip_prefix('.').unwrap_or(entry);
            if let Some((net, bits)) = entry.split_once('/') {
                if let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    no_proxy.entries.push((NoProxyHost::Range(net, bits), None));
                }
                continue;
            }
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                no_proxy.entries.push((NoProxyHost::Ip(ip), None));
                continue;
            }
            // `host:port` (an IPv6 address in brackets: `[::1]:8080`).
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => (host, port.parse().ok()),
                _ => (entry, None),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host_entry = match host.parse::<IpAddr>() {
                Ok(ip) => NoProxyHost::Ip(ip),
                Err(_) => NoProxyHost::Domain(host.trim_end_matches('.').to_ascii_lowercase()),
            };
            no_proxy.entries.push((host_entry, port));
        }
        no_proxy
    }

    fn matches(&self, host: &url::Host<&str>, port: Option<u16>) -> bool {
        if self.everything {
            return true;
        }
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            url::Host::Domain(_) => None,
        };
        let name = match host {
            url::Host::Domain(name) => Some(name.trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        };
        self.entries.iter().any(|(entry, entry_port)| {
            if entry_port.is_some_and(|p| Some(p) != port) {
                return false;
            }
            match (entry, ip, &name) {
                (NoProxyHost::Domain(domain), _, Some(name)) => {
                    name == domain
                        || name
                            .strip_suffix(domain.as_str())
                            .is_some_and(|rest| rest.ends_with('.'))
                }
                (NoProxyHost::Ip(entry), Some(ip), _) => *entry == ip,
                (NoProxyHost::Range(net, bits), Some(ip), _) => in_range(ip, *net, *bits),
                _ => false,
            }
        })
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(http: Option<&str>, https: Option<&str>, no_proxy: Option<&str>) -> ProxyRule {
        ProxyRule::new(&ProxySettings {
            http: http.and_then(ProxyUrl::new),
            https: https.and_then(ProxyUrl::new),
            no_proxy: no_proxy.map(str::to_string),
        })
        .unwrap()
    }

    fn via(rule: &ProxyRule, url: &str) -> Option<String> {
        rule.proxy_for(&Url::parse(url).unwrap())
            .map(|u| u.to_string())
    }

    #[test]
    fn each_scheme_uses_its_own_proxy_and_a_bare_host_port_is_http() {
        let r = rule(
            Some("proxy.corp:3128"),
            Some("https://secure.corp:443"),
            None,
        );
        assert_eq!(
            via(&r, "http://hub.example/x").as_deref(),
            Some("http://proxy.corp:3128/")
        );
        assert_eq!(
            via(&r, "https://huggingface.co/api").as_deref(),
            Some("https://secure.corp/")
        );
        let only_https = rule(None, Some("http://p:1"), None);
        assert_eq!(via(&only_https, "http://hub.example/"), None);
    }

    #[test]
    fn loopback_is_never_proxied() {
        let r = rule(Some("http://p:1"), Some("http://p:1"), None);
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.3.2.1/",
            "https://localhost/",
            "http://LOCALHOST./",
            "http://mirror.localhost:9/",
            "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert_eq!(via(&r, url), None, "{url}");
        }
        assert!(via(&r, "http://10.0.0.1/").is_some());
        assert!(via(&r, "http://localhost.example/").is_some());
    }

    #[test]
    fn no_proxy_matches_like_curl_and_requests() {
        let r = rule(
            None,
            Some("http://p:1"),
            Some(
                " .corp.example, hf.co ,10.0.0.0/8,192.168.1.5, [fd00::1], cdn.test:8443,*.wild.example",
            ),
        );
        for (url, bypassed) in [
            ("https://corp.example/", true),
            ("https://a.b.corp.example/", true),
            ("https://notcorp.example/", false),
            ("https://hf.co/", true),
            ("https://cdn.hf.co/", true),
            ("https://xhf.co/", false),
            ("https://10.2.3.4/", true),
            ("https://11.2.3.4/", false),
            ("https://192.168.1.5/", true),
            ("https://192.168.1.6/", false),
            ("https://[fd00::1]/", true),
            ("https://cdn.test:8443/", true),
            ("https://cdn.test/", false),
            ("https://x.wild.example/", true),
            ("https://huggingface.co/", false),
        ] {
            assert_eq!(via(&r, url).is_none(), bypassed, "{url}");
        }
        let all = rule(
            Some("http://p:1"),
            Some("http://p:1"),
            Some("example.com, *"),
        );
        assert_eq!(via(&all, "https://huggingface.co/"), None);
    }

    #[test]
    fn a_proxy_password_is_never_shown() {
        let proxy = ProxyUrl::new("http://alice:s3cret@proxy.corp:3128").unwrap();
        assert!(!format!("{proxy}").contains("s3cret"));
        assert!(!format!("{proxy:?}").contains("s3cret"));
        let settings = ProxySettings {
            https: Some(proxy.clone()),
            ..ProxySettings::default()
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert_eq!(proxy.expose(), "http://alice:s3cret@proxy.corp:3128");
        let bad = ProxySettings {
            https: ProxyUrl::new("socks5://alice:s3cret@proxy.corp:1080"),
            ..ProxySettings::default()
        };
        let (shown, reason) = ProxyRule::new(&bad).unwrap_err();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(reason.contains("socks5"), "{reason}");
    }
}
