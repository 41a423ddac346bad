//! The one place where environment variables are named.
//!
//! The edges (CLI, app, local API) call [`settings_from_env`] with a lookup function (usually
//! `|name| std::env::var(name).ok()`), the user's home folder and the platform's app-data folder,
//! and pass the resulting [`Settings`] to the engine. The function itself never reads the process
//! environment, which keeps it testable with a plain map.
//!
//! Resolution follows `huggingface_hub`'s `constants.py` exactly:
//!
//! ```text
//! HF_HOME      = expandvars(expanduser(HF_HOME or (XDG_CACHE_HOME or "~/.cache") + "/huggingface"))
//! HF_HUB_CACHE = expandvars(expanduser(HF_HUB_CACHE or HUGGINGFACE_HUB_CACHE or HF_HOME + "/hub"))
//! ```
//!
//! The token is taken from `HF_TOKEN`, then `HUGGING_FACE_HUB_TOKEN`, then the file named by
//! `HF_TOKEN_PATH` (default `$HF_HOME/token`). Reading that one small file is the only I/O this
//! module does: the edges would otherwise each have to repeat the precedence rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hub::proxy::{ProxySettings, ProxyUrl};
use crate::secret::Token;
use crate::settings::{CacheOrigin, DEFAULT_ENDPOINT, Settings};

/// Cache root override (highest precedence).
pub const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
/// Legacy cache root override.
pub const HUGGINGFACE_HUB_CACHE: &str = "HUGGINGFACE_HUB_CACHE";
/// Root of everything `huggingface_hub` keeps (cache, token).
pub const HF_HOME: &str = "HF_HOME";
/// XDG base directory for caches.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Base URL of the Hub.
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// Access token.
pub const HF_TOKEN: &str = "HF_TOKEN";
/// Legacy access token variable.
pub const HUGGING_FACE_HUB_TOKEN: &str = "HUGGING_FACE_HUB_TOKEN";
/// Path of the token file (default `$HF_HOME/token`).
pub const HF_TOKEN_PATH: &str = "HF_TOKEN_PATH";
/// Offline mode.
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
/// `1`/`ON`/`YES`/`TRUE`: never read files as Xet chunks; always download them whole over HTTP.
pub const HF_HUB_DISABLE_XET: &str = "HF_HUB_DISABLE_XET";
/// Offline mode, as transformers spells it.
pub const TRANSFORMERS_OFFLINE: &str = "TRANSFORMERS_OFFLINE";
/// Timeout of metadata requests, in seconds.
pub const HF_HUB_ETAG_TIMEOUT: &str = "HF_HUB_ETAG_TIMEOUT";
/// Timeout of transfers (no bytes for this long), in seconds.
pub const HF_HUB_DOWNLOAD_TIMEOUT: &str = "HF_HUB_DOWNLOAD_TIMEOUT";
/// llama.cpp's `convert_hf_to_gguf.py` for conversions the native converter does not support
/// (else it is looked for on `PATH`).
pub const MODEL_CACHE_CONVERT_HF_TO_GGUF: &str = "MODEL_CACHE_CONVERT_HF_TO_GGUF";
/// The folders searched for programs.
pub const PATH: &str = "PATH";
/// Model Cache's own app-data folder (index, settings, logs).
pub const MODEL_CACHE_DATA_DIR: &str = "MODEL_CACHE_DATA_DIR";
/// Proxy for `https://` URLs (`https_proxy` wins when both are set).
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
/// Proxy for `http://` URLs (`http_proxy` wins; ignored in a CGI request, see [`proxies`]).
pub const HTTP_PROXY: &str = "HTTP_PROXY";
/// Proxy for both schemes when the scheme's own variable is not set.
pub const ALL_PROXY: &str = "ALL_PROXY";
/// Hosts that bypass the proxy.
pub const NO_PROXY: &str = "NO_PROXY";
/// CA bundle `requests` (so `huggingface_hub` 0.x) uses instead of its own.
pub const REQUESTS_CA_BUNDLE: &str = "REQUESTS_CA_BUNDLE";
/// CA bundle curl uses; `requests` reads it after `REQUESTS_CA_BUNDLE`.
pub const CURL_CA_BUNDLE: &str = "CURL_CA_BUNDLE";
/// CA bundle OpenSSL and `httpx` (so `huggingface_hub` 1.x) read.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Set by a web server running a CGI program; `HTTP_PROXY` is then ignored (the "httpoxy"
/// rule of Python's `urllib`).
pub const REQUEST_METHOD: &str = "REQUEST_METHOD";

/// The team bucket: `s3://bucket/prefix`, an S3-compatible store used as a download source.
pub const MODEL_CACHE_BUCKET: &str = "MODEL_CACHE_BUCKET";
/// `1`/`true`: push verified downloads to the team bucket.
pub const MODEL_CACHE_BUCKET_PUSH: &str = "MODEL_CACHE_BUCKET_PUSH";
/// An S3-compatible endpoint (MinIO, R2, a local server) instead of AWS.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// The bucket's region (`AWS_DEFAULT_REGION` when not set; default `us-east-1`).
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// Credentials; without them, the profile's from the shared credentials file.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The profile of the shared credentials file (default `default`).
pub const AWS_PROFILE: &str = "AWS_PROFILE";
/// The shared credentials file (default `~/.aws/credentials`).
pub const AWS_SHARED_CREDENTIALS_FILE: &str = "AWS_SHARED_CREDENTIALS_FILE";

/// The team bucket's settings from the environment, `None` without `MODEL_CACHE_BUCKET`; how
/// it is reached comes from [`bucket_access`].
pub fn bucket(
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<crate::bucket::BucketSettings> {
    let url = set_value(lookup, MODEL_CACHE_BUCKET)?;
    let access = bucket_access(lookup, home);
    Some(crate::bucket::BucketSettings {
        url,
        endpoint: access.endpoint,
        region: access.region,
        credentials: access.credentials,
        push: set_value(lookup, MODEL_CACHE_BUCKET_PUSH).is_some_and(|v| is_true(&v)),
    })
}

/// How a team bucket is reached, from the environment (whether or not one is named there: a
/// bucket chosen in the settings is reached the same way). Credentials: `AWS_ACCESS_KEY_ID`
/// and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the `AWS_PROFILE` section
/// (default `default`) of the shared credentials file; else none (unsigned requests, for a
/// public bucket). Reading that one file is this function's only I/O.
pub fn bucket_access(
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> crate::bucket::BucketAccess {
    let set = |name: &str| set_value(lookup, name);
    let key_pair = |id: Option<String>, secret: Option<String>, token: Option<String>| {
        Some(crate::bucket::BucketCredentials {
            access_key_id: id?,
            secret_access_key: Token::new(secret?)?,
            session_token: token.and_then(Token::new),
        })
    };
    let credentials = key_pair(
        set(AWS_ACCESS_KEY_ID),
        set(AWS_SECRET_ACCESS_KEY),
        set(AWS_SESSION_TOKEN),
    )
    .or_else(|| {
        let file = set(AWS_SHARED_CREDENTIALS_FILE)
            .map(|f| PathBuf::from(expand_user(&f, home)))
            .or_else(|| home.map(|h| h.join(".aws/credentials")))?;
        let text = std::fs::read_to_string(file).ok()?;
        let profile = set(AWS_PROFILE).unwrap_or_else(|| "default".into());
        let section = ini_section(&text, &profile);
        key_pair(
            section.get("aws_access_key_id").cloned(),
            section.get("aws_secret_access_key").cloned(),
            section.get("aws_session_token").cloned(),
        )
    });
    crate::bucket::BucketAccess {
        endpoint: set(AWS_ENDPOINT_URL),
        region: set(AWS_REGION).or_else(|| set(AWS_DEFAULT_REGION)),
        credentials,
    }
}

/// A variable's value, trimmed; `None` when unset or blank.
fn set_value(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The `key = value` lines of `[name]` in an INI text (the AWS credentials file).
fn ini_section(text: &str, name: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
        } else if inside && let Some((key, value)) = line.split_once('=') {
            out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    out
}

/// Ollama's models folder (default `~/.ollama/models`), read to adopt its models.
pub const OLLAMA_MODELS: &str = "OLLAMA_MODELS";
/// llama.cpp's download cache (default `$XDG_CACHE_HOME/llama.cpp` or `~/.cache/llama.cpp`).
pub const LLAMA_CACHE: &str = "LLAMA_CACHE";

/// Where another app keeps its models by default, for adopting them: Ollama's store, LM
/// Studio's models folder (`~/.lmstudio/models`, or the older `~/.cache/lm-studio/models` when
/// only that exists), llama.cpp's cache. `None` for plain files, or without a home folder.
pub fn app_models_folder(
    origin: crate::import::ImportOrigin,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    use crate::import::ImportOrigin;
    let set = |name: &str| {
        lookup(name)
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(expand_user(&v, home)))
    };
    let xdg_cache = set(XDG_CACHE_HOME).or_else(|| home.map(|h| h.join(".cache")));
    match origin {
        ImportOrigin::Files => None,
        ImportOrigin::Ollama => {
            set(OLLAMA_MODELS).or_else(|| home.map(|h| h.join(".ollama/models")))
        }
        ImportOrigin::LmStudio => {
            let home = home?;
            let current = home.join(".lmstudio/models");
            let older = home.join(".cache/lm-studio/models");
            Some(if !current.exists() && older.exists() {
                older
            } else {
                current
            })
        }
        ImportOrigin::LlamaCpp => {
            set(LLAMA_CACHE).or_else(|| xdg_cache.map(|c| c.join("llama.cpp")))
        }
    }
}

/// Every variable this module reads, with what it does, for `--help` texts and docs.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        HF_HUB_CACHE,
        "Hub cache folder (default `$HF_HOME/hub`), shared with `huggingface_hub`",
    ),
    (HUGGINGFACE_HUB_CACHE, "Legacy name of `HF_HUB_CACHE`"),
    (
        HF_HOME,
        "Root of the Hugging Face files (default `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`)",
    ),
    (
        XDG_CACHE_HOME,
        "Base cache folder used when `HF_HOME` is not set",
    ),
    (
        HF_ENDPOINT,
        "Base URL of the Hub (default `https://huggingface.co`)",
    ),
    (HF_TOKEN, "Hub access token"),
    (HUGGING_FACE_HUB_TOKEN, "Legacy name of `HF_TOKEN`"),
    (HF_TOKEN_PATH, "Token file (default `$HF_HOME/token`)"),
    (
        HF_HUB_OFFLINE,
        "`1`/`ON`/`YES`/`TRUE`: no network, serve everything from the cache",
    ),
    (TRANSFORMERS_OFFLINE, "Alias of `HF_HUB_OFFLINE`"),
    (
        HF_HUB_DISABLE_XET,
        "`1`/`ON`/`YES`/`TRUE`: download Xet-stored files whole over HTTP, without delta updates",
    ),
    (
        HF_HUB_ETAG_TIMEOUT,
        "Timeout of metadata requests in seconds (default 10)",
    ),
    (
        HF_HUB_DOWNLOAD_TIMEOUT,
        "Seconds without a byte before a transfer is considered stalled",
    ),
    (
        MODEL_CACHE_CONVERT_HF_TO_GGUF,
        "llama.cpp's convert_hf_to_gguf.py, for conversions the native converter does not support (else looked for on `PATH`)",
    ),
    (
        MODEL_CACHE_DATA_DIR,
        "Model Cache's app-data folder (index database, settings, logs)",
    ),
    (
        MODEL_CACHE_BUCKET,
        "Team bucket `s3://bucket/prefix`: a download source (see docs/sources.md)",
    ),
    (
        MODEL_CACHE_BUCKET_PUSH,
        "`1`/`true`: push verified downloads to the team bucket",
    ),
    (
        AWS_ENDPOINT_URL,
        "S3-compatible endpoint of the team bucket",
    ),
    (
        AWS_REGION,
        "Region of the team bucket (default `us-east-1`)",
    ),
    (AWS_DEFAULT_REGION, "Region, when `AWS_REGION` is not set"),
    (AWS_ACCESS_KEY_ID, "Team bucket credentials: key id"),
    (
        AWS_SECRET_ACCESS_KEY,
        "Team bucket credentials: secret key (never logged)",
    ),
    (
        AWS_SESSION_TOKEN,
        "Team bucket credentials: session token (never logged)",
    ),
    (
        AWS_PROFILE,
        "Profile of the AWS credentials file (default `default`)",
    ),
    (
        AWS_SHARED_CREDENTIALS_FILE,
        "AWS credentials file (default `~/.aws/credentials`)",
    ),
    (
        OLLAMA_MODELS,
        "Ollama's models folder, for `mcache import --from ollama`",
    ),
    (
        LLAMA_CACHE,
        "llama.cpp's cache, for `mcache import --from llama.cpp`",
    ),
    (
        HTTPS_PROXY,
        "Proxy for https requests (also `https_proxy`, which wins), e.g. `http://proxy:3128`",
    ),
    (
        HTTP_PROXY,
        "Proxy for plain http requests (also `http_proxy`, which wins)",
    ),
    (
        ALL_PROXY,
        "Proxy for requests whose scheme's variable is not set (also `all_proxy`)",
    ),
    (
        REQUESTS_CA_BUNDLE,
        "PEM file of certificate authorities trusted besides the built-in and system ones (a company CA)",
    ),
    (CURL_CA_BUNDLE, "Read when `REQUESTS_CA_BUNDLE` is not set"),
    (
        SSL_CERT_FILE,
        "Read when neither `REQUESTS_CA_BUNDLE` nor `CURL_CA_BUNDLE` is set",
    ),
    (
        NO_PROXY,
        "Hosts, domains, IP addresses and CIDR ranges that bypass the proxy, comma-separated; `*` for all (also `no_proxy`)",
    ),
];

/// Values `huggingface_hub` treats as true (`_is_true`), compared case-insensitively.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// Reads a variable, treating an empty value like Python's `os.getenv` does: as set. Only the
/// token variables ignore empty values, as `huggingface_hub` does.
fn get(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
}

/// `os.path.expanduser`: a leading `~` or `~/` becomes the home folder. `~user` is left alone.
pub fn expand_user(path: &str, home: Option<&Path>) -> String {
    let Some(home) = home else {
        return path.to_string();
    };
    if path == "~" {
        return home.to_string_lossy().into_owned();
    }
    if let Some(rest) = path.strip_prefix("~/") {
        let mut out = home.to_string_lossy().trim_end_matches('/').to_string();
        out.push('/');
        out.push_str(rest);
        return out;
    }
    path.to_string()
}

/// `os.path.expandvars` (POSIX flavour): `$NAME` and `${NAME}` are replaced by their values;
/// unknown variables and malformed references are left unchanged.
pub fn expand_vars(path: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let ch = path[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if bytes.get(i + 1) == Some(&b'{') {
            if let Some(close) = path[i + 2..].find('}') {
                let name = &path[i + 2..i + 2 + close];
                let end = i + 2 + close + 1;
                match (!name.is_empty()).then(|| lookup(name)).flatten() {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&path[i..end]),
                }
                i = end;
                continue;
            }
            out.push('$');
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && is_name(bytes[end]) {
            end += 1;
        }
        if end == start {
            out.push('$');
            i += 1;
            continue;
        }
        match lookup(&path[start..end]) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&path[i..end]),
        }
        i = end;
    }
    out
}

fn expand(path: &str, lookup: &impl Fn(&str) -> Option<String>, home: Option<&Path>) -> PathBuf {
    PathBuf::from(expand_for(Os::current(), path, lookup, home))
}

/// `expandvars(expanduser(path))` as Python does it on `os`: on Windows (`ntpath`) the home
/// folder is `USERPROFILE` (else `HOMEDRIVE` + `HOMEPATH`), `~\` works like `~/`, and
/// `%NAME%` is expanded besides `$NAME` and `${NAME}`.
fn expand_for(
    os: Os,
    path: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> String {
    match os {
        Os::Windows => {
            let home = windows_home(lookup, home);
            let user = expand_user_windows(path, home.as_deref());
            expand_vars(&expand_percent_vars(&user, lookup), lookup)
        }
        Os::Linux | Os::MacOs => expand_vars(&expand_user(path, home), lookup),
    }
}

/// The home folder `ntpath.expanduser` uses: `USERPROFILE`, else `HOMEDRIVE` + `HOMEPATH`,
/// else the one the edge found.
fn windows_home(lookup: &impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<String> {
    get(lookup, "USERPROFILE")
        .or_else(|| {
            let drive = get(lookup, "HOMEDRIVE").unwrap_or_default();
            get(lookup, "HOMEPATH").map(|path| format!("{drive}{path}"))
        })
        .or_else(|| home.map(|h| h.to_string_lossy().into_owned()))
}

/// `ntpath.expanduser`: a leading `~` followed by nothing, `\\` or `/` becomes the home folder.
fn expand_user_windows(path: &str, home: Option<&str>) -> String {
    let Some(home) = home else {
        return path.to_string();
    };
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with(['\\', '/']) => {
            format!("{}{rest}", home.trim_end_matches(['\\', '/']))
        }
        _ => path.to_string(),
    }
}

/// `ntpath.expandvars`' `%NAME%` form: replaced when set, left as is when not; `%%` is `%`.
fn expand_percent_vars(path: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
            continue;
        }
        match after.find('%') {
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `os.path.join(base, name)` on `os`: one separator between them unless `base` ends with one.
fn join_for(os: Os, base: &str, name: &str) -> String {
    let ends_with_separator = match os {
        Os::Windows => base.ends_with(['\\', '/']) || base.ends_with(':'),
        Os::Linux | Os::MacOs => base.ends_with('/'),
    };
    if base.is_empty() || ends_with_separator {
        format!("{base}{name}")
    } else {
        let separator = if os == Os::Windows { '\\' } else { '/' };
        format!("{base}{separator}{name}")
    }
}

/// `HF_HOME` as `huggingface_hub` resolves it on this OS ([`hf_home_for`]).
pub fn hf_home(lookup: &impl Fn(&str) -> Option<String>, home: Option<&Path>) -> PathBuf {
    hf_home_for(Os::current(), lookup, home)
}

/// `HF_HOME` as `huggingface_hub` resolves it on `os`: `HF_HOME`, else `XDG_CACHE_HOME` (on
/// every OS, Windows included) or the home folder's `.cache`, with `huggingface` added. On
/// Windows that is `%USERPROFILE%\.cache\huggingface`, not an `AppData` folder.
pub fn hf_home_for(
    os: Os,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> PathBuf {
    let raw = match get(lookup, HF_HOME) {
        Some(value) => value,
        None => {
            let default_home = match os {
                Os::Windows => windows_home(lookup, home),
                Os::Linux | Os::MacOs => home.map(|h| h.to_string_lossy().into_owned()),
            }
            .map(|h| join_for(os, &h, ".cache"))
            .unwrap_or_else(|| join_for(os, "~", ".cache"));
            let cache = get(lookup, XDG_CACHE_HOME).unwrap_or(default_home);
            join_for(os, &cache, "huggingface")
        }
    };
    PathBuf::from(expand_for(os, &raw, lookup, home))
}

/// The hub-cache root as `huggingface_hub` resolves it on this OS ([`hub_cache_for`]).
pub fn hub_cache(lookup: &impl Fn(&str) -> Option<String>, home: Option<&Path>) -> PathBuf {
    hub_cache_for(Os::current(), lookup, home)
}

/// The hub-cache root as `huggingface_hub` resolves it on `os`: `HF_HUB_CACHE`, else
/// `HUGGINGFACE_HUB_CACHE`, else `hub` in [`hf_home_for`].
pub fn hub_cache_for(
    os: Os,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> PathBuf {
    let raw = get(lookup, HF_HUB_CACHE)
        .or_else(|| get(lookup, HUGGINGFACE_HUB_CACHE))
        .unwrap_or_else(|| join_for(os, &hf_home_for(os, lookup, home).to_string_lossy(), "hub"));
    PathBuf::from(expand_for(os, &raw, lookup, home))
}

/// Where the token comes from, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Variable(&'static str),
    File(PathBuf),
}

/// The token and where it came from, with `huggingface_hub`'s precedence. An unreadable token
/// file counts as no token (like Python); an empty value is skipped.
pub fn token(
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<(Token, TokenSource)> {
    for name in [HF_TOKEN, HUGGING_FACE_HUB_TOKEN] {
        if let Some(token) = get(lookup, name).and_then(Token::new) {
            return Some((token, TokenSource::Variable(name)));
        }
    }
    let path = token_path(lookup, home);
    let text = std::fs::read_to_string(&path).ok()?;
    Token::new(text).map(|token| (token, TokenSource::File(path)))
}

/// The token file on this OS ([`token_path_for`]). `mcache login` writes here.
pub fn token_path(lookup: &impl Fn(&str) -> Option<String>, home: Option<&Path>) -> PathBuf {
    token_path_for(Os::current(), lookup, home)
}

/// The token file as `huggingface_hub` resolves it on `os`: `HF_TOKEN_PATH`, else `token` in
/// [`hf_home_for`].
pub fn token_path_for(
    os: Os,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> PathBuf {
    match get(lookup, HF_TOKEN_PATH) {
        Some(path) => PathBuf::from(expand_for(os, &path, lookup, home)),
        None => PathBuf::from(join_for(
            os,
            &hf_home_for(os, lookup, home).to_string_lossy(),
            "token",
        )),
    }
}

/// A proxy variable as Python's `urllib.request.getproxies_environment` reads it (which
/// `huggingface_hub`, through `requests` or `httpx`, uses): the lowercase name wins, and a
/// lowercase name set to the empty string unsets the uppercase one. `None` when unset or empty.
fn proxy_variable(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    let value = match get(lookup, &name.to_ascii_lowercase()) {
        Some(lower) => lower,
        None => get(lookup, name)?,
    };
    let value = value.trim().to_string();
    (!value.is_empty()).then_some(value)
}

/// The proxies the environment names: `https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY`
/// (ignored when `REQUEST_METHOD` is set, as `urllib` does inside a CGI request, where a client
/// can set it through a `Proxy:` header), `all_proxy`/`ALL_PROXY` for a scheme without its own,
/// and `no_proxy`/`NO_PROXY`. Loopback is never proxied whatever they say
/// ([`crate::hub::proxy`]).
pub fn proxies(lookup: &impl Fn(&str) -> Option<String>) -> ProxySettings {
    let all = proxy_variable(lookup, ALL_PROXY);
    let http = if get(lookup, REQUEST_METHOD).is_some() {
        get(lookup, "http_proxy").filter(|v| !v.trim().is_empty())
    } else {
        proxy_variable(lookup, HTTP_PROXY)
    };
    ProxySettings {
        http: http.or_else(|| all.clone()).and_then(ProxyUrl::new),
        https: proxy_variable(lookup, HTTPS_PROXY)
            .or(all)
            .and_then(ProxyUrl::new),
        no_proxy: proxy_variable(lookup, NO_PROXY),
    }
}

fn seconds(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<Duration> {
    let value = get(lookup, name)?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The Tauri identifier of the desktop app. Its app-data folder (index, preferences, the local
/// API's secret) is shared by the app and `mcache`, so both see one index and `mcache queue`
/// finds the app's local API.
pub const APP_IDENTIFIER: &str = "dev.modelcache.app";

/// The operating systems whose folder conventions [`platform_data_dir`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
    Windows,
}

impl Os {
    /// The system this build runs on (other Unixes follow the XDG rules, as Linux).
    pub fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// The platform's folder for application data, as the OS's own rules (and Tauri's `data_dir`)
/// place it, from the environment and the home folder only, so every OS's rule is tested on
/// every OS:
///
/// - Linux: `$XDG_DATA_HOME` when it is an absolute path, else `~/.local/share`;
/// - macOS: `~/Library/Application Support`;
/// - Windows: `%APPDATA%` (the roaming profile), else `~\AppData\Roaming`.
///
/// `None` without a home folder (and, on Windows, without `APPDATA`).
pub fn platform_data_dir(
    os: Os,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    match os {
        Os::Linux => get(lookup, "XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| home.map(|h| h.join(".local").join("share"))),
        Os::MacOs => home.map(|h| h.join("Library").join("Application Support")),
        Os::Windows => get(lookup, "APPDATA")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join("AppData").join("Roaming"))),
    }
}

/// The app-data folder inside the platform's data folder (`$XDG_DATA_HOME`, `~/Library/Application
/// Support`, `%APPDATA%`), as Tauri's `app_data_dir` names it; `.model-cache` in the current
/// folder when the platform has none.
pub fn app_data_dir(platform_data_dir: Option<&Path>) -> PathBuf {
    platform_data_dir
        .map(|dir| dir.join(APP_IDENTIFIER))
        .unwrap_or_else(|| PathBuf::from(".model-cache"))
}

/// Builds the engine's settings from the environment.
///
/// `default_data_dir` is the platform app-data folder chosen by the edge (`directories`); it is
/// used unless `MODEL_CACHE_DATA_DIR` is set. `HF_HUB_ETAG_TIMEOUT` sets the metadata timeout and
/// `HF_HUB_DOWNLOAD_TIMEOUT` the stall timeout (Python uses it as the httpx read timeout: no byte
/// for that long fails the transfer; we reconnect instead). Unparseable numbers are ignored.
pub fn settings_from_env(
    lookup: impl Fn(&str) -> Option<String>,
    home: Option<PathBuf>,
    default_data_dir: PathBuf,
) -> Settings {
    let home = home.as_deref();
    let data_dir = get(&lookup, MODEL_CACHE_DATA_DIR)
        .filter(|value| !value.is_empty())
        .map(|value| expand(&value, &lookup, home))
        .unwrap_or(default_data_dir);
    let mut settings = Settings::new(hub_cache(&lookup, home), data_dir);
    if [HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME]
        .iter()
        .any(|name| get(&lookup, name).is_some())
    {
        settings.hub_cache_origin = CacheOrigin::Environment;
    }
    settings.endpoint = get(&lookup, HF_ENDPOINT)
        .map(|value| value.trim_end_matches('/').to_string())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    settings.token = token(&lookup, home).map(|(token, _)| token);
    settings.token_file = Some(token_path(&lookup, home));
    settings.offline = [HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE]
        .iter()
        .any(|name| get(&lookup, name).is_some_and(|value| is_true(&value)));
    if get(&lookup, HF_HUB_DISABLE_XET).is_some_and(|value| is_true(&value)) {
        settings.xet.enabled = false;
    }
    if let Some(timeout) = seconds(&lookup, HF_HUB_ETAG_TIMEOUT) {
        settings.timeouts.metadata = timeout;
    }
    if let Some(timeout) = seconds(&lookup, HF_HUB_DOWNLOAD_TIMEOUT) {
        settings.timeouts.stall = timeout;
    }
    settings.proxy = proxies(&lookup);
    settings.ca_bundle = [REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE]
        .iter()
        .filter_map(|name| get(&lookup, name))
        .find(|value| !value.trim().is_empty())
        .map(|value| expand(value.trim(), &lookup, home));
    settings.bucket = bucket(&lookup, home);
    settings.llama_cpp_converter = match lookup(MODEL_CACHE_CONVERT_HF_TO_GGUF) {
        Some(path) if !path.trim().is_empty() => Some(PathBuf::from(path)),
        _ => lookup(PATH).and_then(|path| crate::convert::external::find_on_path(&path)),
    };
    settings.bucket_access = bucket_access(&lookup, home);
    settings
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn each_platform_has_its_data_folder() {
        let none = |_: &str| None;
        let home = Path::new("/home/ana");
        assert_eq!(
            platform_data_dir(Os::Linux, &none, Some(home)),
            Some(home.join(".local/share"))
        );
        let xdg = |k: &str| (k == "XDG_DATA_HOME").then(|| "/data/xdg".to_string());
        assert_eq!(
            platform_data_dir(Os::Linux, &xdg, Some(home)),
            Some(PathBuf::from("/data/xdg"))
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG rules say.
        let relative = |k: &str| (k == "XDG_DATA_HOME").then(|| "xdg".to_string());
        assert_eq!(
            platform_data_dir(Os::Linux, &relative, Some(home)),
            Some(home.join(".local/share"))
        );
        assert_eq!(
            platform_data_dir(Os::MacOs, &xdg, Some(Path::new("/Users/ana"))),
            Some(PathBuf::from("/Users/ana/Library/Application Support"))
        );
        let appdata =
            |k: &str| (k == "APPDATA").then(|| r"C:\Users\ana\AppData\Roaming".to_string());
        assert_eq!(
            platform_data_dir(Os::Windows, &appdata, None),
            Some(PathBuf::from(r"C:\Users\ana\AppData\Roaming"))
        );
        let win_home = Path::new("C:/Users/ana");
        assert_eq!(
            platform_data_dir(Os::Windows, &none, Some(win_home)),
            Some(win_home.join("AppData").join("Roaming"))
        );
        assert_eq!(platform_data_dir(Os::MacOs, &none, None), None);
        // The app's folder in it is the Tauri identifier's.
        assert_eq!(
            app_data_dir(
                platform_data_dir(Os::MacOs, &none, Some(Path::new("/Users/ana"))).as_deref()
            ),
            PathBuf::from("/Users/ana/Library/Application Support/dev.modelcache.app")
        );
        // The Hugging Face folders follow huggingface_hub's one rule on every OS: under the home
        // folder's `.cache`, whatever the platform's data folder.
        assert_eq!(
            hub_cache(&none, Some(Path::new("/Users/ana"))),
            PathBuf::from("/Users/ana/.cache/huggingface/hub")
        );
        assert_eq!(
            token_path(&none, Some(Path::new("/Users/ana"))),
            PathBuf::from("/Users/ana/.cache/huggingface/token")
        );
    }

    /// The Hugging Face folders of each OS, as `huggingface_hub`'s `constants.py` computes them
    /// there (`ntpath` on Windows), checked on every OS.
    #[test]
    fn each_platform_has_its_hugging_face_folders() {
        let none = |_: &str| None;
        let mac = Some(Path::new("/Users/ana"));
        assert_eq!(
            hub_cache_for(Os::MacOs, &none, mac),
            PathBuf::from("/Users/ana/.cache/huggingface/hub")
        );
        assert_eq!(
            token_path_for(Os::MacOs, &none, mac),
            PathBuf::from("/Users/ana/.cache/huggingface/token")
        );
        let linux = Some(Path::new("/home/ana"));
        let xdg = env(&[("XDG_CACHE_HOME", "/xdg")]);
        assert_eq!(
            hub_cache_for(Os::Linux, &xdg, linux),
            PathBuf::from("/xdg/huggingface/hub")
        );
        assert_eq!(
            token_path_for(Os::Linux, &xdg, linux),
            PathBuf::from("/xdg/huggingface/token")
        );
        let hf_home = env(&[("HF_HOME", "~/hf"), ("HF_TOKEN_PATH", "$HOME/t")]);
        assert_eq!(
            hub_cache_for(Os::Linux, &hf_home, linux),
            PathBuf::from("/home/ana/hf/hub")
        );
        // An unset variable stays as written, as `os.path.expandvars` leaves it.
        assert_eq!(
            token_path_for(Os::Linux, &hf_home, linux),
            PathBuf::from("$HOME/t")
        );

        // Windows: the home folder is USERPROFILE, the separator a backslash.
        let profile = env(&[("USERPROFILE", r"C:\Users\ana")]);
        assert_eq!(
            hf_home_for(Os::Windows, &profile, None),
            PathBuf::from(r"C:\Users\ana\.cache\huggingface")
        );
        assert_eq!(
            hub_cache_for(Os::Windows, &profile, None),
            PathBuf::from(r"C:\Users\ana\.cache\huggingface\hub")
        );
        assert_eq!(
            token_path_for(Os::Windows, &profile, None),
            PathBuf::from(r"C:\Users\ana\.cache\huggingface\token")
        );
        // Without USERPROFILE: HOMEDRIVE + HOMEPATH, then the home folder the edge found.
        let drive = env(&[("HOMEDRIVE", "D:"), ("HOMEPATH", r"\Users\bo")]);
        assert_eq!(
            hub_cache_for(Os::Windows, &drive, None),
            PathBuf::from(r"D:\Users\bo\.cache\huggingface\hub")
        );
        assert_eq!(
            hub_cache_for(Os::Windows, &none, Some(Path::new(r"E:\home"))),
            PathBuf::from(r"E:\home\.cache\huggingface\hub")
        );
        // %NAME% and ~\ are expanded; XDG_CACHE_HOME counts on Windows too.
        let vars = env(&[
            ("USERPROFILE", r"C:\Users\ana"),
            ("LOCALAPPDATA", r"C:\Users\ana\AppData\Local"),
            ("HF_HOME", r"%LOCALAPPDATA%\hf"),
            ("HF_TOKEN_PATH", r"~\secrets\hf-token"),
        ]);
        assert_eq!(
            hub_cache_for(Os::Windows, &vars, None),
            PathBuf::from(r"C:\Users\ana\AppData\Local\hf\hub")
        );
        assert_eq!(
            token_path_for(Os::Windows, &vars, None),
            PathBuf::from(r"C:\Users\ana\secrets\hf-token")
        );
        let xdg_win = env(&[
            ("USERPROFILE", r"C:\Users\ana"),
            ("XDG_CACHE_HOME", r"D:\xdg\"),
        ]);
        assert_eq!(
            hub_cache_for(Os::Windows, &xdg_win, None),
            PathBuf::from(r"D:\xdg\huggingface\hub")
        );
        let cache = env(&[
            ("HF_HUB_CACHE", r"%MISSING%\m"),
            ("HUGGINGFACE_HUB_CACHE", r"C:\legacy"),
        ]);
        assert_eq!(
            hub_cache_for(Os::Windows, &cache, None),
            PathBuf::from(r"%MISSING%\m")
        );
        assert_eq!(
            expand_percent_vars("100%% %A%", &env(&[("A", "x")])),
            "100% x"
        );
        // This OS's rule is the one the edges get.
        assert_eq!(
            hub_cache(&profile, linux),
            hub_cache_for(Os::current(), &profile, linux)
        );
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn resolve(pairs: &[(&str, &str)]) -> Settings {
        settings_from_env(
            env(pairs),
            Some(PathBuf::from("/home/u")),
            PathBuf::from("/data"),
        )
    }

    #[test]
    fn cache_location_follows_huggingface_hub() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "/home/u/.cache/huggingface/hub"),
            (&[("XDG_CACHE_HOME", "/xdg")], "/xdg/huggingface/hub"),
            (
                &[("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", "~/hf")],
                "/home/u/hf/hub",
            ),
            (
                &[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")],
                "/legacy",
            ),
            (
                &[
                    ("HUGGINGFACE_HUB_CACHE", "/legacy"),
                    ("HF_HUB_CACHE", "/new"),
                ],
                "/new",
            ),
            (
                &[
                    ("HF_HUB_CACHE", "$ROOT/x/${SUB}/$MISSING"),
                    ("ROOT", "/r"),
                    ("SUB", "s"),
                ],
                "/r/x/s/$MISSING",
            ),
            (&[("HF_HUB_CACHE", "~/c")], "/home/u/c"),
            (&[("HF_HUB_CACHE", "~other/c")], "~other/c"),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                resolve(pairs).hub_cache,
                PathBuf::from(expected),
                "for {pairs:?}"
            );
        }
    }

    #[test]
    fn endpoint_offline_timeouts_and_data_dir() {
        let s = resolve(&[]);
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert!(!s.offline);
        assert_eq!(s.data_dir, PathBuf::from("/data"));
        assert_eq!(s.hub_cache_origin, CacheOrigin::Default);
        assert_eq!(
            resolve(&[("HF_HOME", "/hf")]).hub_cache_origin,
            CacheOrigin::Environment
        );
        let s = resolve(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9000//"),
            ("HF_HUB_OFFLINE", "yes"),
            ("HF_HUB_ETAG_TIMEOUT", "2.5"),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "30"),
            ("MODEL_CACHE_DATA_DIR", "~/mc"),
        ]);
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert!(s.offline);
        assert_eq!(s.timeouts.metadata, Duration::from_millis(2500));
        assert_eq!(s.timeouts.stall, Duration::from_secs(30));
        assert_eq!(s.data_dir, PathBuf::from("/home/u/mc"));
        for (value, expected) in [("1", true), ("ON", true), ("0", false), ("no", false)] {
            assert_eq!(
                resolve(&[("TRANSFORMERS_OFFLINE", value)]).offline,
                expected
            );
        }
        assert_eq!(
            resolve(&[("HF_HUB_ETAG_TIMEOUT", "soon")])
                .timeouts
                .metadata,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn token_precedence_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let hf_home = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
        let s = resolve(&[("HF_HOME", hf_home)]);
        assert_eq!(s.token.unwrap().expose(), "hf_from_file");
        let s = resolve(&[
            ("HF_HOME", hf_home),
            ("HUGGING_FACE_HUB_TOKEN", "hf_legacy"),
        ]);
        assert_eq!(s.token.unwrap().expose(), "hf_legacy");
        let s = resolve(&[
            ("HF_HOME", hf_home),
            ("HUGGING_FACE_HUB_TOKEN", "hf_legacy"),
            ("HF_TOKEN", "hf_new"),
        ]);
        assert_eq!(s.token.unwrap().expose(), "hf_new");
        let other = dir.path().join("other");
        std::fs::write(&other, "hf_other").unwrap();
        let s = resolve(&[
            ("HF_HOME", hf_home),
            ("HF_TOKEN_PATH", other.to_str().unwrap()),
        ]);
        assert_eq!(s.token.unwrap().expose(), "hf_other");
        let s = resolve(&[("HF_HOME", "/nonexistent")]);
        assert!(s.token.is_none());
        assert!(!format!("{:?}", resolve(&[("HF_TOKEN", "hf_secret")])).contains("hf_secret"));
    }

    #[test]
    fn proxies_are_read_like_urllib_reads_them() {
        let shown = |s: &Settings| {
            (
                s.proxy.http.as_ref().map(|p| p.expose().to_string()),
                s.proxy.https.as_ref().map(|p| p.expose().to_string()),
                s.proxy.no_proxy.clone(),
            )
        };
        let some = |v: &str| Some(v.to_string());
        assert_eq!(shown(&resolve(&[])), (None, None, None));
        assert_eq!(
            shown(&resolve(&[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:1"),
                ("HTTP_PROXY", "http://plain:2"),
                ("NO_PROXY", "corp.example"),
            ])),
            (
                some("http://plain:2"),
                some("http://lower:1"),
                some("corp.example")
            )
        );
        // `all_proxy` fills in a scheme without its own variable.
        assert_eq!(
            shown(&resolve(&[
                ("ALL_PROXY", "http://all:3"),
                ("https_proxy", "http://s:4")
            ])),
            (some("http://all:3"), some("http://s:4"), None)
        );
        // An empty lowercase variable unsets the uppercase one.
        assert_eq!(
            shown(&resolve(&[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "")
            ])),
            (None, None, None)
        );
        // Inside a CGI request `HTTP_PROXY` may come from a client's header: ignored.
        assert_eq!(
            shown(&resolve(&[
                ("HTTP_PROXY", "http://evil:1"),
                ("REQUEST_METHOD", "GET")
            ])),
            (None, None, None)
        );
    }

    #[test]
    fn the_ca_bundle_is_read_in_the_order_requests_reads_it() {
        assert_eq!(resolve(&[]).ca_bundle, None);
        let s = resolve(&[
            ("SSL_CERT_FILE", "/ssl.pem"),
            ("CURL_CA_BUNDLE", "/curl.pem"),
            ("REQUESTS_CA_BUNDLE", "~/corp.pem"),
        ]);
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/home/u/corp.pem")));
        let s = resolve(&[("SSL_CERT_FILE", "/ssl.pem"), ("CURL_CA_BUNDLE", "")]);
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/ssl.pem")));
    }

    #[test]
    fn every_variable_is_documented() {
        let names: Vec<&str> = VARIABLES.iter().map(|(name, _)| *name).collect();
        for name in [HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE, MODEL_CACHE_DATA_DIR] {
            assert!(names.contains(&name));
        }
    }
}
