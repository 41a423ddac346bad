//! What the app is asked to open: a repo id or Hub URL on its command line, or a
//! `modelcache://` link.
//!
//! A link is `modelcache://open_from_hf?model=org/name`, optionally with `&file=path/in/repo`
//! and `&quant=Q4_K_M` (the shape LM Studio's links have). The OS hands it to the app: on Linux
//! and Windows as the only argument of a new process (the desktop entry's `Exec=… %u`), which
//! the single-instance plugin forwards to the running one; on macOS as an event. Every way in
//! ends in [`Opening`]: a checked request, or the reason the link was refused, which the window
//! shows instead of a crash or a silent nothing.
//!
//! A link comes from any web page, so it is checked as hostile input: the model must be a valid
//! repo id ([`model_cache::RepoId`]), the file a safe relative path
//! ([`model_cache::store::SafeRelPath`]), the quant a short name, the whole link short. Opening
//! only shows the repo's variants; nothing is downloaded until the person clicks Download.

use serde::Serialize;

/// The URL scheme the app registers (`MimeType=x-scheme-handler/modelcache;`).
pub const SCHEME: &str = "modelcache";
/// The one action a link names: show a repo of the Hub.
pub const OPEN_FROM_HF: &str = "open_from_hf";
/// Longer links are refused before they are parsed.
pub const MAX_LINK_LEN: usize = 4096;
const MAX_QUANT_LEN: usize = 40;
const EXAMPLE: &str = "modelcache://open_from_hf?model=org/name";

/// A repo to show in the window, with the file or quantization to select in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenRequest {
    /// A repo id (`org/name`), or, from the command line, anything the search box accepts (an
    /// id with `@revision`, a Hub URL): the UI parses it as if it had been typed.
    pub repo: String,
    /// A file to select (the variant that holds it).
    pub file: Option<String>,
    /// A quantization or variant name to select (`Q4_K_M`).
    pub quant: Option<String>,
}

/// Why a link was refused, worded for the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedLink {
    /// Always `invalid_input`, like a bad entry in the search box.
    pub kind: &'static str,
    pub message: String,
    pub hint: String,
}

/// What the window is asked to open: `{repo, file, quant}` or `{error: {kind, message, hint}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Opening {
    Repo(OpenRequest),
    Refused { error: RefusedLink },
}

impl Opening {
    /// A repo id or Hub URL given on the command line; the UI checks it as typed input.
    pub fn from_argument(text: &str) -> Self {
        Opening::Repo(OpenRequest {
            repo: text.to_string(),
            file: None,
            quant: None,
        })
    }

    /// A `modelcache://` link, checked.
    pub fn from_link(link: &str) -> Self {
        match parse_link(link) {
            Ok(request) => Opening::Repo(request),
            Err(error) => Opening::Refused {
                error: RefusedLink {
                    kind: "invalid_input",
                    message: error.to_string(),
                    hint: format!(
                        "A Model Cache link looks like {EXAMPLE}, optionally with &file=… or &quant=…"
                    ),
                },
            },
        }
    }
}

/// Whether a command-line argument is a link for [`Opening::from_link`] (any letter case of the
/// scheme, as URLs have).
pub fn is_link(argument: &str) -> bool {
    argument
        .get(..SCHEME.len() + 1)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(&format!("{SCHEME}:")))
}

/// Why a link cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("This link is longer than {MAX_LINK_LEN} characters")]
    TooLong,
    #[error("This is not a valid link: {0}")]
    NotAUrl(String),
    #[error("Model Cache opens `{SCHEME}://` links, not `{0}:` ones")]
    OtherScheme(String),
    #[error("Model Cache cannot open `{0}` links: only `{OPEN_FROM_HF}`")]
    UnknownAction(String),
    #[error("The link names no model (`model=org/name`)")]
    NoModel,
    #[error("The link's model `{model}` is not a repository id: {reason}")]
    BadModel { model: String, reason: &'static str },
    #[error("The link's file `{file}` is not a file of a repository: {reason}")]
    BadFile { file: String, reason: String },
    #[error("The link's quantization `{0}` is not a quantization name")]
    BadQuant(String),
}

/// Parses and checks `modelcache://open_from_hf?model=org/name[&file=…][&quant=…]`. Parameters
/// other than these are ignored (newer links may carry more); a repeated one counts once, the
/// first time.
pub fn parse_link(link: &str) -> Result<OpenRequest, LinkError> {
    if link.len() > MAX_LINK_LEN {
        return Err(LinkError::TooLong);
    }
    let url = url::Url::parse(link.trim()).map_err(|e| LinkError::NotAUrl(e.to_string()))?;
    if url.scheme() != SCHEME {
        return Err(LinkError::OtherScheme(url.scheme().to_string()));
    }
    // `modelcache://open_from_hf?…` carries the action as the host; `modelcache:open_from_hf?…`
    // and `modelcache:///open_from_hf?…` as the path. All three mean the same.
    let path = url.path().trim_matches('/');
    let action = match url.host_str().filter(|host| !host.is_empty()) {
        Some(host) if path.is_empty() => host.to_string(),
        Some(host) => format!("{host}/{path}"),
        None => path.to_string(),
    };
    if !action.eq_ignore_ascii_case(OPEN_FROM_HF) {
        return Err(LinkError::UnknownAction(action.chars().take(60).collect()));
    }
    let first = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    let model = first("model").ok_or(LinkError::NoModel)?;
    let repo = model_cache::RepoId::model(&model).map_err(|e| LinkError::BadModel {
        model: model.clone(),
        reason: e.reason,
    })?;
    let file = first("file")
        .map(|file| {
            model_cache::store::SafeRelPath::new(&file)
                .map(|path| path.as_str().to_string())
                .map_err(|e| LinkError::BadFile {
                    reason: match e {
                        model_cache::store::StoreError::UnsafePath { reason, .. } => {
                            reason.into_owned()
                        }
                        other => other.to_string(),
                    },
                    file,
                })
        })
        .transpose()?;
    let quant = first("quant")
        .map(|quant| {
            let valid = quant.len() <= MAX_QUANT_LEN
                && quant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if valid {
                Ok(quant)
            } else {
                Err(LinkError::BadQuant(quant))
            }
        })
        .transpose()?;
    Ok(OpenRequest {
        repo: repo.id,
        file,
        quant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(repo: &str, file: Option<&str>, quant: Option<&str>) -> OpenRequest {
        OpenRequest {
            repo: repo.into(),
            file: file.map(Into::into),
            quant: quant.map(Into::into),
        }
    }

    #[test]
    fn reads_the_model_file_and_quant() {
        assert_eq!(
            parse_link("modelcache://open_from_hf?model=demo/tiny-gguf"),
            Ok(open("demo/tiny-gguf", None, None))
        );
        assert_eq!(
            parse_link(
                "modelcache://open_from_hf?model=demo%2Ftiny-gguf&file=tiny-model-Q4_K_M.gguf&quant=Q4_K_M&source=hub"
            ),
            Ok(open(
                "demo/tiny-gguf",
                Some("tiny-model-Q4_K_M.gguf"),
                Some("Q4_K_M")
            ))
        );
        // The other spellings of the same link, and a repeated parameter counting once.
        for link in [
            "modelcache:open_from_hf?model=org/name",
            "modelcache:///open_from_hf?model=org/name",
            "MODELCACHE://OPEN_FROM_HF/?model=org/name&model=other/repo",
        ] {
            assert_eq!(parse_link(link), Ok(open("org/name", None, None)), "{link}");
        }
        assert_eq!(
            parse_link("modelcache://open_from_hf?model=org/name&file=sub/dir/a%20b.gguf"),
            Ok(open("org/name", Some("sub/dir/a b.gguf"), None))
        );
    }

    #[test]
    fn refuses_what_is_not_a_model_link() {
        let refused = |link: &str| parse_link(link).unwrap_err();
        assert_eq!(
            refused("https://huggingface.co/org/name"),
            LinkError::OtherScheme("https".into())
        );
        assert!(matches!(
            refused("modelcache://"),
            LinkError::UnknownAction(_)
        ));
        assert!(
            matches!(refused("modelcache://delete_all?model=org/name"), LinkError::UnknownAction(a) if a == "delete_all")
        );
        assert!(matches!(
            refused("modelcache://open_from_hf/extra?model=org/name"),
            LinkError::UnknownAction(_)
        ));
        assert_eq!(refused("modelcache://open_from_hf"), LinkError::NoModel);
        assert_eq!(
            refused("modelcache://open_from_hf?model="),
            LinkError::NoModel
        );
        assert!(matches!(refused("not a link"), LinkError::NotAUrl(_)));
        for model in [
            "../../etc",
            "a/b/c",
            "org/na me",
            "org/-x",
            "org--x/y",
            "<script>/x",
        ] {
            let link = format!("modelcache://open_from_hf?model={}", urlencode(model));
            assert!(
                matches!(refused(&link), LinkError::BadModel { .. }),
                "{model}"
            );
        }
        for file in [
            "/etc/passwd",
            "../x.gguf",
            "a/../../x",
            "a\\b",
            "nul.txt",
            "x\u{0}y",
        ] {
            let link = format!(
                "modelcache://open_from_hf?model=org/name&file={}",
                urlencode(file)
            );
            assert!(
                matches!(refused(&link), LinkError::BadFile { .. }),
                "{file:?}"
            );
        }
        for quant in ["Q4 K", "Q4;rm", &"Q".repeat(41)] {
            let link = format!(
                "modelcache://open_from_hf?model=org/name&quant={}",
                urlencode(quant)
            );
            assert!(matches!(refused(&link), LinkError::BadQuant(_)), "{quant}");
        }
        let long = format!(
            "modelcache://open_from_hf?model=org/name&x={}",
            "a".repeat(MAX_LINK_LEN)
        );
        assert_eq!(refused(&long), LinkError::TooLong);
    }

    #[test]
    fn a_refused_link_becomes_a_message_for_the_window() {
        let opening = Opening::from_link("modelcache://open_from_hf?model=..%2F..%2Fetc");
        let json = serde_json::to_value(&opening).unwrap();
        assert_eq!(json["error"]["kind"], "invalid_input");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a repository id")
        );
        assert!(json["error"]["hint"].as_str().unwrap().contains(EXAMPLE));
        let opening =
            Opening::from_link("modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q4_K_M");
        assert_eq!(
            serde_json::to_value(&opening).unwrap(),
            serde_json::json!({"repo": "demo/tiny-gguf", "file": null, "quant": "Q4_K_M"})
        );
    }

    #[test]
    fn recognises_links_among_arguments() {
        assert!(is_link("modelcache://open_from_hf?model=a/b"));
        assert!(is_link("ModelCache:open_from_hf"));
        assert!(!is_link("demo/tiny-gguf"));
        assert!(!is_link("https://huggingface.co/a/b"));
        assert!(!is_link("modelcach"));
    }

    fn urlencode(text: &str) -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
