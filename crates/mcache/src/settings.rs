//! Builds the engine's [`Settings`] for this process: the environment (through the engine's
//! `env` module, the one place the Hub variables are named), then the command-line flags on top.

use std::path::PathBuf;

use model_cache::Settings;
use model_cache::hub::proxy::ProxyUrl;
use model_cache::secret::Token;
use model_cache::settings::CacheOrigin;

use crate::cli::GlobalArgs;
use crate::exit::CliError;

/// The app-data folder for Model Cache, shared with the desktop app.
pub(crate) fn default_data_dir() -> PathBuf {
    let os = model_cache::env::Os::current();
    let lookup = |name: &str| std::env::var(name).ok();
    model_cache::env::app_data_dir(
        model_cache::env::platform_data_dir(os, &lookup, home_dir().as_deref()).as_deref(),
    )
}

pub(crate) fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf())
}

/// Environment, then the preferences saved in the data folder (`mcache config set`, the app's
/// settings), then flags: the order the engine's `Preferences` documents.
pub(crate) fn resolve(global: &GlobalArgs) -> anyhow::Result<Settings> {
    let mut settings = model_cache::env::settings_from_env(
        |name| std::env::var(name).ok(),
        home_dir(),
        default_data_dir(),
    );
    if let Some(dir) = &global.data_dir {
        settings.data_dir = absolute(dir);
    }
    // A bad saved file or setting is logged (a warning on stderr) and shown by the engine's
    // health alerts; it never stops the start.
    model_cache::engine::Preferences::load_checked(&settings.data_dir)
        .0
        .apply(&mut settings);
    apply_flags(&mut settings, global)?;
    Ok(settings)
}

/// Applies the command-line flags over `settings`.
pub(crate) fn apply_flags(settings: &mut Settings, global: &GlobalArgs) -> Result<(), CliError> {
    if let Some(dir) = &global.cache_dir {
        settings.hub_cache = absolute(dir);
        settings.hub_cache_origin = CacheOrigin::Flag;
    }
    if let Some(dir) = &global.data_dir {
        settings.data_dir = absolute(dir);
    }
    if let Some(proxy) = &global.proxy {
        let proxy = ProxyUrl::new(proxy.clone()).ok_or_else(|| {
            CliError::usage("`--proxy` is empty").hint("pass a proxy such as `http://proxy:3128`")
        })?;
        if let Err(reason) = proxy.parse() {
            return Err(
                CliError::usage(format!("`--proxy {proxy}` cannot be used: {reason}"))
                    .hint("pass a proxy such as `http://proxy:3128`"),
            );
        }
        settings.proxy.set_all(Some(proxy));
    }
    if let Some(bundle) = &global.ca_bundle {
        settings.ca_bundle = Some(absolute(bundle));
    }
    if let Some(endpoint) = &global.endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(
                CliError::usage(format!("`--endpoint {endpoint}` is not an http(s) URL"))
                    .hint("pass a base URL such as `https://huggingface.co`"),
            );
        }
        settings.endpoint = endpoint.to_string();
    }
    if let Some(token) = &global.token {
        settings.token = Some(Token::new(token.clone()).ok_or_else(|| {
            CliError::usage("`--token` is empty").hint("pass a token such as `hf_...`")
        })?);
    }
    if global.offline {
        settings.offline = true;
    }
    if let Some(connections) = global.connections {
        settings.limits.connections = usize::from(connections);
        settings.limits.connections_per_host = settings
            .limits
            .connections_per_host
            .min(usize::from(connections));
    }
    if let Some(size) = global.chunk_size {
        if size.0 < 64 * 1024 {
            return Err(
                CliError::usage(format!("`--chunk-size {size}` is too small"))
                    .hint("use at least 64KiB; the default is 5MiB"),
            );
        }
        settings.limits.chunk_size = size.0;
    }
    if let Some(rate) = global.max_rate {
        settings.limits.max_bytes_per_second = rate.0;
    }
    settings.user_agent = format!("mcache/{}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

/// Relative folders are taken relative to the current directory, so a path printed later is
/// usable from anywhere.
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_cache::units::{Rate, Size};

    #[test]
    fn flags_override_the_environment() {
        let mut settings = Settings::new("/env/hub".into(), "/env/data".into());
        let global = GlobalArgs {
            cache_dir: Some("/flag/hub".into()),
            endpoint: Some("http://127.0.0.1:9/".into()),
            token: Some("hf_flag".into()),
            offline: true,
            connections: Some(4),
            chunk_size: Some(Size(8 << 20)),
            max_rate: Some(Rate(Some(20_000_000))),
            ..GlobalArgs::default()
        };
        apply_flags(&mut settings, &global).unwrap();
        assert_eq!(settings.hub_cache, PathBuf::from("/flag/hub"));
        assert_eq!(settings.data_dir, PathBuf::from("/env/data"));
        assert_eq!(settings.endpoint, "http://127.0.0.1:9");
        assert_eq!(settings.token.as_ref().unwrap().expose(), "hf_flag");
        assert!(settings.offline);
        assert_eq!(settings.limits.connections, 4);
        assert!(settings.limits.connections_per_host <= 4);
        assert_eq!(settings.limits.chunk_size, 8 << 20);
        assert_eq!(settings.limits.max_bytes_per_second, Some(20_000_000));
        assert_eq!(settings.hub_cache_origin, CacheOrigin::Flag);
    }

    #[test]
    fn proxy_and_ca_bundle_flags_replace_the_environment() {
        let mut settings = Settings::new("/h".into(), "/d".into());
        settings.proxy.https = ProxyUrl::new("http://env-proxy:1");
        settings.proxy.no_proxy = Some("corp.example".into());
        let global = GlobalArgs {
            proxy: Some("alice:s3cret@flag-proxy:3128".into()),
            ca_bundle: Some("/etc/corp.pem".into()),
            ..GlobalArgs::default()
        };
        apply_flags(&mut settings, &global).unwrap();
        let https = settings.proxy.https.as_ref().unwrap();
        assert_eq!(https.expose(), "alice:s3cret@flag-proxy:3128");
        assert_eq!(settings.proxy.http, settings.proxy.https);
        assert_eq!(settings.proxy.no_proxy.as_deref(), Some("corp.example"));
        assert_eq!(settings.ca_bundle, Some(PathBuf::from("/etc/corp.pem")));
        let global = GlobalArgs {
            proxy: Some("socks5://alice:s3cret@p:1080".into()),
            ..GlobalArgs::default()
        };
        let error = apply_flags(&mut settings, &global).unwrap_err();
        assert_eq!(error.kind, crate::exit::CliKind::Usage);
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let mut settings = Settings::new("/h".into(), "/d".into());
        let global = GlobalArgs {
            endpoint: Some("ftp://x".into()),
            ..GlobalArgs::default()
        };
        assert_eq!(
            apply_flags(&mut settings, &global).unwrap_err().kind,
            crate::exit::CliKind::Usage
        );
        let global = GlobalArgs {
            chunk_size: Some(Size(10)),
            ..GlobalArgs::default()
        };
        assert_eq!(
            apply_flags(&mut settings, &global).unwrap_err().kind,
            crate::exit::CliKind::Usage
        );
    }
}
