//! Progress bars in a real terminal: `mcache pull` runs inside a detached tmux session, the test
//! reads the screen while it runs and after it ends, and checks that the bars rendered and that
//! the finished screen holds a `100% ... done` line and no partial bar.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::World;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null");
        command
    }

    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "mcache"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

#[test]
fn progress_bars_render_and_finish_cleanly_in_a_terminal() {
    let world = World::new();
    let tmux = Tmux {
        socket: format!("mcache-test-{}", std::process::id()),
    };
    let script = world.dir.path().join("run.sh");
    let exe = env!("CARGO_BIN_EXE_mcache");
    // The pull is slowed down so the bars are on screen for a few seconds; after it ends the
    // shell prints a marker and keeps the pane open for the final capture.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{exe} --data-dir '{data}' --max-rate 6MiB/s pull demo/big\necho \"EXIT=$?\"\nsleep 600\n",
            data = world.data_dir().display()
        ),
    )
    .unwrap();
    let status = tmux
        .command()
        .args(["new-session", "-d", "-s", "mcache", "-x", "150", "-y", "30"])
        .args([
            "-e",
            &format!("HF_HUB_CACHE={}", world.hub_cache().display()),
        ])
        .args(["-e", &format!("HF_HOME={}", world.hf_home().display())])
        .args(["-e", &format!("HF_ENDPOINT={}", world.emulator.url())])
        .args(["-e", "NO_COLOR=1"])
        .arg(format!("sh {}", script.display()))
        .status()
        .expect("tmux runs");
    assert!(status.success(), "tmux new-session");

    let start = Instant::now();
    let mut saw_bar = None;
    let finished = loop {
        let screen = tmux.screen();
        if screen.contains("EXIT=") {
            break screen;
        }
        if saw_bar.is_none()
            && screen.contains("big-model-Q4_K_M.gguf")
            && screen
                .lines()
                .any(|line| line.starts_with("total") && line.contains('%'))
        {
            saw_bar = Some(screen.clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "pull finishes:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let during = saw_bar.unwrap_or_else(|| {
        panic!("a file bar and the total bar were drawn; final screen:\n{finished}")
    });
    assert!(during.contains("MiB"), "bytes are shown:\n{during}");

    assert!(finished.contains("EXIT=0"), "{finished}");
    let lines: Vec<&str> = finished.lines().filter(|l| !l.trim().is_empty()).collect();
    let done = lines
        .iter()
        .filter(|line| line.starts_with("total"))
        .collect::<Vec<_>>();
    assert_eq!(done.len(), 1, "one total line remains:\n{finished}");
    assert!(
        done[0].contains("100%") && done[0].contains("done"),
        "{finished}"
    );
    for line in &lines {
        if let Some(percent) = line.split_whitespace().find(|w| w.ends_with('%')) {
            assert_eq!(percent, "100%", "no partial bar left: `{line}`\n{finished}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("✓ big-model-Q4_K_M.gguf")),
        "the finished file is listed:\n{finished}"
    );
    let snapshot_line = lines
        .iter()
        .find(|line| line.contains("models--demo--big/snapshots/"))
        .unwrap_or_else(|| panic!("the snapshot path is printed:\n{finished}"));
    assert!(!snapshot_line.contains('%'));
}
