//! The test harness: an emulator with the demo catalog, temp folders, and `mcache` runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hub_emulator::{Emulator, EmulatorConfig};

/// Size of `demo/big` in these tests: big enough to interrupt a rate-limited pull, small enough
/// to hash quickly.
pub(crate) const BIG_SIZE: u64 = 24 << 20;

/// One isolated world: emulator, cache, `HF_HOME`, data folder.
pub(crate) struct World {
    pub emulator: Emulator,
    pub dir: tempfile::TempDir,
}

/// The outcome of one run.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts the exit code.
    #[track_caller]
    pub(crate) fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The JSON values printed on stdout, one per line.
    #[track_caller]
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "stdout line is not JSON ({e}): {line}\nstderr:\n{}",
                        self.stderr
                    )
                })
            })
            .collect()
    }

    /// The single JSON value printed on stdout.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        let mut lines = self.json_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected one JSON line, got:\n{}",
            self.stdout
        );
        lines.remove(0)
    }
}

impl World {
    pub(crate) fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = EmulatorConfig {
            hash_cache_dir: Some(std::env::temp_dir().join("mcache-tests-hash-cache")),
            ..EmulatorConfig::demo_with_big_size(BIG_SIZE)
        };
        let emulator = Emulator::start_blocking(config).expect("emulator starts");
        World { emulator, dir }
    }

    pub(crate) fn hub_cache(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    pub(crate) fn hf_home(&self) -> PathBuf {
        self.dir.path().join("hf-home")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `mcache` with a clean environment pointing at this world. The data folder is passed as
    /// `--data-dir`, the rest through the variables `huggingface_hub` reads.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(mcache_bin());
        for (name, _) in model_cache::env::VARIABLES {
            command.env_remove(name);
        }
        command
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("HF_HOME", self.hf_home())
            .env("HF_HUB_CACHE", self.hub_cache())
            .env("HF_ENDPOINT", self.emulator.url())
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let output = self.command().args(args).output().expect("mcache runs");
        Run::from_output(output)
    }

    pub(crate) fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command();
        for (name, value) in env {
            command.env(name, value);
        }
        Run::from_output(command.args(args).output().expect("mcache runs"))
    }

    pub(crate) fn bytes_served(&self) -> u64 {
        self.emulator.log().bytes_served()
    }

    /// Body bytes the CDN listener served: file contents, not metadata.
    pub(crate) fn cdn_bytes(&self) -> u64 {
        self.emulator
            .log()
            .records()
            .iter()
            .filter(|record| record.listener == hub_emulator::Listener::Cdn)
            .map(|record| record.bytes_sent)
            .sum()
    }

    /// The sha256 the emulator publishes for a file of a model repo at `main`.
    pub(crate) fn sha256(&self, repo: &str, path: &str) -> String {
        self.emulator
            .file_hashes(hub_emulator::RepoKind::Model, repo, "main", path)
            .unwrap_or_else(|| panic!("`{path}` exists in `{repo}`"))
            .sha256
    }
}

/// `mcache` with no world at all (help, completions, usage errors).
pub(crate) fn bare(args: &[&str]) -> Run {
    let output = Command::new(mcache_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("mcache runs");
    Run::from_output(output)
}

/// Sends SIGINT to a child, as Ctrl-C in a terminal does.
pub(crate) fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT {pid}");
}

/// The sha256 of a file's content, in hex.
pub(crate) fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read `{}`: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Every regular file under `dir` (following nothing), for "nothing was left behind" checks.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `mcache` binary under test: the one cargo built for this test binary, or the one
/// `MCACHE_TEST_BIN` names (when several checkouts share one target folder, the binary at
/// cargo's path may be another checkout's).
pub(crate) fn mcache_bin() -> PathBuf {
    std::env::var_os("MCACHE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mcache")))
}
