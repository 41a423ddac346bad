//! The real Python client for fidelity and interoperability tests: a virtual environment with
//! `huggingface_hub` from PyPI, created on first use under the build folder.
//!
//! Several test binaries (and processes) may ask at once: a file lock serialises them, and an
//! environment that already has the right version is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `huggingface_hub` release the tests run against.
pub const HF_HUB_VERSION: &str = "2.4.0";

/// The older release the tests also run against: what transformers 4.x installs (its non-Xet
/// download path resumes `<etag>.incomplete` files by appending to them).
pub const HF_HUB_LEGACY_VERSION: &str = "0.36.0";

/// Returns the Python interpreter of `<target_dir>/py-venv`, creating the environment and
/// installing `huggingface_hub` [`HF_HUB_VERSION`] when needed. The error carries the failing
/// command's output.
pub fn python_with_huggingface_hub(target_dir: &Path) -> Result<PathBuf, String> {
    python_with(target_dir, "py-venv", HF_HUB_VERSION)
}

/// The `hf_transfer` release installed beside [`HF_HUB_LEGACY_VERSION`] (0.x uses it when
/// `HF_HUB_ENABLE_HF_TRANSFER=1`; 1.x and later ignore it).
pub const HF_TRANSFER_VERSION: &str = "0.1.9";

/// Like [`python_with_huggingface_hub`], with [`HF_HUB_LEGACY_VERSION`] and `hf_transfer`
/// [`HF_TRANSFER_VERSION`] in `<target_dir>/py-venv-legacy`.
pub fn python_with_legacy_huggingface_hub(target_dir: &Path) -> Result<PathBuf, String> {
    python_with(target_dir, "py-venv-legacy", HF_HUB_LEGACY_VERSION).and_then(|python| {
        let has = |python: &Path| {
            Command::new(python)
                .args(["-c", "import hf_transfer"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !has(&python) {
            pip_install(&python, &format!("hf_transfer=={HF_TRANSFER_VERSION}"))?;
        }
        Ok(python)
    })
}

/// The `hf_xet` release installed beside [`HF_HUB_VERSION`] (`huggingface_hub` uses it for
/// files the Hub stores with Xet).
pub const HF_XET_VERSION: &str = "1.8.0";

/// Returns the Python interpreter of `<target_dir>/py-venv` with `hf_xet` [`HF_XET_VERSION`]
/// installed (it comes with `huggingface_hub`; installed on its own when missing).
pub fn python_with_hf_xet(target_dir: &Path) -> Result<PathBuf, String> {
    let python = python_with_huggingface_hub(target_dir)?;
    let has = || {
        Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m, hf_xet, sys; sys.stdout.write(m.version('hf_xet'))",
            ])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == HF_XET_VERSION.as_bytes())
    };
    if !has() {
        let _lock = lock_file(&target_dir.join("py-venv.lock"))?;
        if !has() {
            pip_install(&python, &format!("hf_xet=={HF_XET_VERSION}"))?;
        }
    }
    Ok(python)
}

/// The `moto` release whose S3 server the team-bucket tests run against.
pub const MOTO_VERSION: &str = "5.2.1";

/// Returns the `moto_server` program of `<target_dir>/py-venv` (a real S3 API on loopback),
/// installing `moto[server]` [`MOTO_VERSION`] into the environment when needed.
pub fn moto_server(target_dir: &Path) -> Result<PathBuf, String> {
    let python = python_with_huggingface_hub(target_dir)?;
    let program = python.with_file_name("moto_server");
    let has = || {
        Command::new(&python)
            .args([
                "-c",
                "import moto, flask, sys; sys.stdout.write(moto.__version__)",
            ])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == MOTO_VERSION.as_bytes())
    };
    if !has() || !program.exists() {
        let _lock = lock_file(&target_dir.join("py-venv.lock"))?;
        if !has() || !program.exists() {
            pip_install(&python, &format!("moto[server]=={MOTO_VERSION}"))?;
        }
    }
    Ok(program)
}

fn python_with(target_dir: &Path, name: &str, version: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(target_dir)
        .map_err(|e| format!("Cannot create `{}`: {e}", target_dir.display()))?;
    let venv = target_dir.join(name);
    let python = venv.join("bin/python");
    let _lock = lock_file(&target_dir.join(format!("{name}.lock")))?;
    let ready = || {
        Command::new(&python)
            .args([
                "-c",
                "import huggingface_hub,sys; sys.stdout.write(huggingface_hub.__version__)",
            ])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == version.as_bytes())
    };
    if !ready() {
        if !python.exists() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 -m venv",
            )?;
        }
        pip_install(&python, &format!("huggingface_hub=={version}"))?;
        if !ready() {
            return Err(format!(
                "huggingface_hub {version} is not importable after pip install"
            ));
        }
    }
    Ok(python)
}

/// Takes the lock file at `path` (created if need be): one process at a time sets up a
/// virtual environment; the lock is released when the file is dropped.
fn lock_file(path: &Path) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("Cannot open `{}`: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("Cannot lock `{}`: {e}", path.display()))?;
    Ok(file)
}

/// `pip install --quiet SPEC` into the environment of `python`.
fn pip_install(python: &Path, spec: &str) -> Result<(), String> {
    run(
        Command::new(python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            spec,
        ]),
        &format!("pip install {spec}"),
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("Cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The `gguf` release (llama.cpp's gguf-py, from PyPI) the conversion tests read GGUF files
/// with; it brings numpy.
pub const GGUF_VERSION: &str = "0.19.0";

/// Returns the Python interpreter of `<target_dir>/py-venv` with `gguf` [`GGUF_VERSION`]
/// installed (and numpy with it).
pub fn python_with_gguf(target_dir: &Path) -> Result<PathBuf, String> {
    let python = python_with_huggingface_hub(target_dir)?;
    let has = || {
        Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m, numpy, sys; sys.stdout.write(m.version('gguf'))",
            ])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == GGUF_VERSION.as_bytes())
    };
    if !has() {
        let _lock = lock_file(&target_dir.join("py-venv.lock"))?;
        if !has() {
            pip_install(&python, &format!("gguf=={GGUF_VERSION}"))?;
        }
    }
    Ok(python)
}
