//! The desktop app's command line.
//!
//! `model-cache-app [--demo] [--hidden] [REPO | LINK]`: `--demo` runs against the built-in demo
//! hub, `--hidden` starts in the tray with no window shown (what start-at-login runs;
//! `--minimized`, which earlier versions wrote into the login entry, means the same), and a repo
//! id, a Hub URL or a `modelcache://` link (what the desktop entry passes, see `links`) opens that
//! repo in the window. A second launch hands its arguments to the running instance.

use crate::links::{self, Opening};

/// The flag start-at-login passes: the app starts in the tray, no window shown.
pub const HIDDEN: &str = "--hidden";

/// Parsed command-line arguments of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArgs {
    pub demo: bool,
    /// Start in the tray, the window not shown (`--hidden`).
    pub hidden: bool,
    pub repo: Option<String>,
    /// A `modelcache://` link, unchecked (see [`AppArgs::opening`]).
    pub link: Option<String>,
}

impl AppArgs {
    /// Parses the arguments after the program name; unknown flags are ignored so that options
    /// added by desktop environments do not stop the app from starting.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Self {
        let mut parsed = AppArgs::default();
        for arg in args {
            match arg.as_str() {
                "--demo" => parsed.demo = true,
                HIDDEN | "--minimized" => parsed.hidden = true,
                other if other.starts_with('-') => {}
                other if links::is_link(other) => parsed.link = Some(other.to_string()),
                other => parsed.repo = Some(other.to_string()),
            }
        }
        parsed
    }

    /// What these arguments ask the window to open: the link (checked), else the repo.
    pub fn opening(&self) -> Option<Opening> {
        match (&self.link, &self.repo) {
            (Some(link), _) => Some(Opening::from_link(link)),
            (None, Some(repo)) => Some(Opening::from_argument(repo)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AppArgs;

    #[test]
    fn parses_flags_and_repo() {
        let args = AppArgs::parse(["--demo", "demo/tiny-gguf", "--unknown"].map(String::from));
        assert_eq!(
            args,
            AppArgs {
                demo: true,
                hidden: false,
                repo: Some("demo/tiny-gguf".into()),
                link: None,
            }
        );
    }

    #[test]
    fn a_link_is_not_taken_for_a_repo() {
        let link = "modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q4_K_M";
        let args = AppArgs::parse(["--demo", link].map(String::from));
        assert_eq!(args.repo, None);
        assert_eq!(args.link.as_deref(), Some(link));
        let json = serde_json::to_value(args.opening()).unwrap();
        assert_eq!(json["repo"], "demo/tiny-gguf");
        assert_eq!(json["quant"], "Q4_K_M");
        let refused = AppArgs::parse(["modelcache://open_from_hf?model=../x".into()]).opening();
        let json = serde_json::to_value(refused).unwrap();
        assert_eq!(json["error"]["kind"], "invalid_input");
        assert_eq!(AppArgs::parse(["--hidden".into()]).opening(), None);
    }

    #[test]
    fn hidden_starts_in_the_tray_and_the_old_flag_still_works() {
        assert!(AppArgs::parse(["--hidden".into()]).hidden);
        assert!(AppArgs::parse(["--minimized".into()]).hidden);
        assert!(!AppArgs::parse(["--demo".into()]).hidden);
    }
}
