//! `mcache native-host`: the browser's native-messaging host on stdin and stdout (glue over the
//! `native-host` crate), and `native-host install`, which writes the host manifest and its
//! launcher where a browser looks for them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use native_host::manifest::{self, Browser, Os};
use serde::Serialize;

use crate::cli::{NativeHostAction, NativeHostArgs};
use crate::exit::{CliError, ExitStatus};
use crate::printer::Printer;

/// What `install --json` prints.
#[derive(Debug, Serialize)]
struct Installed {
    browser: &'static str,
    manifest: PathBuf,
    launcher: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_key: Option<String>,
}

pub(super) async fn native_host(
    data_dir: PathBuf,
    args: NativeHostArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    match args.action {
        None => {
            // stdout carries only frames; logs go to stderr, which the browser drops or logs.
            let host = native_host::Host::new(data_dir);
            native_host::serve(host, tokio::io::stdin(), tokio::io::stdout())
                .await
                .context("The native-messaging pipe failed")?;
            Ok(ExitStatus::Success)
        }
        Some(NativeHostAction::Install {
            browser,
            user_data_dir,
            allow_origin,
        }) => install(
            &data_dir,
            &browser,
            user_data_dir.as_deref(),
            &allow_origin,
            printer,
        ),
    }
}

fn install(
    data_dir: &Path,
    browser: &str,
    user_data_dir: Option<&Path>,
    allowed: &[String],
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let usage = |error: manifest::ManifestError| CliError::usage(error.to_string());
    let browser: Browser = browser.parse().map_err(usage)?;
    let home = crate::settings::home_dir().context("Cannot find the home folder")?;
    let os = Os::current();
    let host_dir = data_dir.join("native-host");
    let user_data_dir = user_data_dir.map(|dir| std::path::absolute(dir).unwrap_or(dir.into()));
    let manifest_dir =
        manifest::manifest_dir(browser, os, &home, user_data_dir.as_deref(), &host_dir)
            .map_err(usage)?;
    let mcache = std::env::current_exe().context("Cannot find the path of this program")?;
    let (launcher, script) = if os == Os::Windows {
        (
            host_dir.join(format!("{}.bat", native_host::HOST_NAME)),
            manifest::launcher_batch(&mcache, data_dir),
        )
    } else {
        (
            host_dir.join(native_host::HOST_NAME),
            manifest::launcher_script(&mcache, data_dir),
        )
    };
    let manifest = manifest::manifest(browser, &launcher, allowed).map_err(usage)?;

    for dir in [&host_dir, &manifest_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Cannot create `{}`", dir.display()))?;
    }
    model_cache::store::atomic::write(&launcher, script.as_bytes())
        .with_context(|| format!("Cannot write `{}`", launcher.display()))?;
    make_executable(&launcher)?;
    let manifest_path = manifest_dir.join(manifest::manifest_file_name());
    let text = serde_json::to_string_pretty(&manifest)?;
    model_cache::store::atomic::write(&manifest_path, text.as_bytes())
        .with_context(|| format!("Cannot write `{}`", manifest_path.display()))?;
    let registry_key = register(browser, &manifest_path)?;

    printer.output(
        &Installed {
            browser: browser.name(),
            manifest: manifest_path.clone(),
            launcher: launcher.clone(),
            registry_key,
        },
        |installed| {
            printer.message(format!(
                "{} will start `{}` for extensions {}",
                installed.browser,
                installed.launcher.display(),
                allowed.join(", ")
            ));
            printer.data(installed.manifest.display().to_string());
        },
    )?;
    Ok(ExitStatus::Success)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("Cannot make `{}` executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// On Windows the browser reads the manifest's path from a registry key of the user's.
#[cfg(windows)]
fn register(browser: Browser, manifest_path: &Path) -> anyhow::Result<Option<String>> {
    let key = manifest::windows_registry_key(browser);
    let status = std::process::Command::new("reg")
        .args(["add", &key, "/ve", "/t", "REG_SZ", "/d"])
        .arg(manifest_path)
        .arg("/f")
        .status()
        .context("Cannot run `reg add`")?;
    if !status.success() {
        anyhow::bail!("`reg add {key}` failed ({status})");
    }
    Ok(Some(key))
}

#[cfg(not(windows))]
fn register(_browser: Browser, _manifest_path: &Path) -> anyhow::Result<Option<String>> {
    Ok(None)
}
