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
    /// A detached 150×30 session running `script` with this world's environment.
    fn start(world: &World, name: &str, script: &str) -> Tmux {
        Tmux::start_with(world, name, script, &["NO_COLOR=1"])
    }

    fn start_with(world: &World, name: &str, script: &str, env: &[&str]) -> Tmux {
        let tmux = Tmux {
            socket: format!("mcache-test-{name}-{}", std::process::id()),
        };
        let path = world.dir.path().join(format!("{name}.sh"));
        std::fs::write(&path, script).unwrap();
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "mcache", "-x", "150", "-y", "30"])
            .args([
                "-e",
                &format!("HF_HUB_CACHE={}", world.hub_cache().display()),
            ])
            .args(["-e", &format!("HF_HOME={}", world.hf_home().display())])
            .args(["-e", &format!("HF_ENDPOINT={}", world.emulator.url())])
            .args(env.iter().flat_map(|pair| ["-e", pair]))
            .arg(format!("sh {}", path.display()))
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session");
        tmux
    }

    /// Waits until the screen contains `text`.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "`{text}` on screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send_keys(&self, keys: &[&str]) {
        let status = self
            .command()
            .args(["send-keys", "-t", "mcache"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

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
        self.capture(&[])
    }

    /// The screen, with `-e`: escape sequences kept, to see colours.
    fn capture(&self, extra: &[&str]) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "mcache"])
            .args(extra)
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
    let exe = env!("CARGO_BIN_EXE_mcache");
    // The pull is slowed down so the bars are on screen for a few seconds; after it ends the
    // shell prints a marker and keeps the pane open for the final capture.
    let tmux = Tmux::start(
        &world,
        "bars",
        &format!(
            "#!/bin/sh\n{exe} --data-dir '{data}' --max-rate 6MiB/s pull demo/big\necho \"EXIT=$?\"\nsleep 600\n",
            data = world.data_dir().display()
        ),
    );

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

#[test]
fn a_terminal_user_without_a_choice_gets_a_numbered_picker() {
    let world = World::new();
    let report = world.run(&["--json", "variants", "demo/tiny-gguf"]).json();
    let variants = report["variants"].as_array().unwrap();
    let third = &variants[2];
    let exe = env!("CARGO_BIN_EXE_mcache");
    let tmux = Tmux::start(
        &world,
        "picker",
        &format!(
            "#!/bin/sh\n{exe} --data-dir '{data}' pull demo/tiny-gguf\necho \"EXIT=$?\"\nsleep 600\n",
            data = world.data_dir().display()
        ),
    );
    let screen = tmux.wait_for("Variant to pull [");
    assert!(
        screen.contains(&format!("has {} variants", variants.len())),
        "{screen}"
    );
    let recommended = variants
        .iter()
        .position(|v| v["recommended"] == true)
        .unwrap();
    // The default is the mid quant, not the largest variant.
    assert_eq!(variants[recommended]["name"], "Q4_K_M");
    assert!(
        screen.contains(&format!("Variant to pull [{}]", recommended + 1)),
        "the recommended variant is the default:\n{screen}"
    );
    tmux.send_keys(&["3", "Enter"]);
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    let name = third["name"].as_str().unwrap();
    assert!(screen.contains(&format!("variant `{name}`")), "{screen}");
    let snapshot = screen
        .lines()
        .find(|line| line.contains("/snapshots/"))
        .map(|line| std::path::PathBuf::from(line.trim()))
        .unwrap_or_else(|| panic!("the snapshot path is printed:\n{screen}"));
    for file in third["files"].as_array().unwrap() {
        assert!(
            snapshot.join(file["path"].as_str().unwrap()).is_file(),
            "{file}"
        );
    }
}

#[test]
fn errors_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let world = World::new();
    let exe = env!("CARGO_BIN_EXE_mcache");
    let script = format!(
        "#!/bin/sh\n{exe} --data-dir '{data}' path demo/tiny-gguf config.json\necho \"EXIT=$?\"\nsleep 600\n",
        data = world.data_dir().display()
    );
    let coloured = Tmux::start_with(&world, "colour", &script, &["TERM=xterm-256color"]);
    coloured.wait_for("EXIT=");
    let screen = coloured.capture(&["-e"]);
    assert!(screen.contains("EXIT=5"), "{screen}");
    assert!(
        screen.contains("\x1b[31merror"),
        "a red `error`: {screen:?}"
    );
    drop(coloured);

    let plain = Tmux::start(&world, "plain", &script);
    plain.wait_for("EXIT=");
    let screen = plain.capture(&["-e"]);
    assert!(screen.contains("error: "), "{screen}");
    assert!(
        !screen.contains("\x1b[31m"),
        "no colour with NO_COLOR: {screen:?}"
    );
}

#[test]
fn ctrl_c_in_a_terminal_clears_the_bars_and_says_how_to_resume() {
    let world = World::new();
    let exe = env!("CARGO_BIN_EXE_mcache");
    let tmux = Tmux::start(
        &world,
        "ctrlc",
        &format!(
            // Ctrl-C reaches the whole foreground group: the shell traps it (a handler, which
            // children do not inherit) so it survives to print the exit code.
            "#!/bin/sh\ntrap ':' INT\n{exe} --data-dir '{data}' --max-rate 2MiB/s pull demo/big\ncode=$?\nstty -a | tr ' ;' '\\n\\n' | grep -qx echoctl && echo ECHOCTL=on\necho \"EXIT=$code\"\nsleep 600\n",
            data = world.data_dir().display()
        ),
    );
    // Wait for the file bar with some bytes on it, then press Ctrl-C.
    let start = Instant::now();
    loop {
        let screen = tmux.screen();
        if screen
            .lines()
            .any(|line| line.contains("big-model-Q4_K_M.gguf") && line.contains("MiB/"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a bar is drawn:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.send_keys(&["C-c"]);
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(
        screen.contains("ECHOCTL=on"),
        "the terminal's `^C` echo is restored:\n{screen}"
    );
    assert!(
        screen.contains("; run the same command to resume"),
        "{screen}"
    );
    assert!(
        !screen.lines().any(|line| line.starts_with("total")),
        "no bar is left behind:\n{screen}"
    );
    assert!(
        !screen
            .lines()
            .any(|line| line.contains("big-model-Q4_K_M.gguf")),
        "no file bar is left behind:\n{screen}"
    );
}

#[test]
fn login_at_a_terminal_prompts_without_echoing_the_token() {
    let world = World::new();
    let exe = env!("CARGO_BIN_EXE_mcache");
    let tmux = Tmux::start(
        &world,
        "login",
        &format!(
            "#!/bin/sh\n{exe} --data-dir '{data}' login\necho \"EXIT=$?\"\nsleep 600\n",
            data = world.data_dir().display()
        ),
    );
    tmux.wait_for("Hub token (input hidden):");
    tmux.send_keys(&["hf_typed_at_the_tty", "Enter"]);
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains("hf_typed_at_the_tty"),
        "the token is not echoed:\n{screen}"
    );
    assert_eq!(
        std::fs::read_to_string(world.hf_home().join("token")).unwrap(),
        "hf_typed_at_the_tty"
    );
}
