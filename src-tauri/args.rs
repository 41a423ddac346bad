//! The desktop app's command line.
//!
//! `model-cache-app [--demo] [--minimized] [REPO]`: `--demo` runs against the built-in demo hub,
//! `--minimized` starts in the tray (used by start-at-login), and a repo id or Hub URL opens that
//! repo in the window. A second launch hands its arguments to the running instance.

/// Parsed command-line arguments of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArgs {
    pub demo: bool,
    pub minimized: bool,
    pub repo: Option<String>,
}

impl AppArgs {
    /// Parses the arguments after the program name; unknown flags are ignored so that options
    /// added by desktop environments do not stop the app from starting.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Self {
        let mut parsed = AppArgs::default();
        for arg in args {
            match arg.as_str() {
                "--demo" => parsed.demo = true,
                "--minimized" => parsed.minimized = true,
                other if other.starts_with('-') => {}
                other => parsed.repo = Some(other.to_string()),
            }
        }
        parsed
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
                minimized: false,
                repo: Some("demo/tiny-gguf".into())
            }
        );
    }
}
