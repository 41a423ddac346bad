//! A real small file system for disk-full tests: a tmpfs mounted for one test and unmounted on
//! drop. Mounting needs root: as root (CI) it mounts directly, otherwise through `sudo -n`;
//! without either the test fails and says why.

use std::path::PathBuf;
use std::process::Command;

pub(crate) struct TinyDisk {
    pub path: PathBuf,
}

impl TinyDisk {
    /// Mounts a tmpfs of `size` (e.g. `3m`) at `path`.
    pub(crate) fn mount(path: PathBuf, size: &str) -> TinyDisk {
        std::fs::create_dir_all(&path).unwrap();
        let output = privileged("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("`mount` runs");
        assert!(
            output.status.success(),
            "Mounting a {size} tmpfs at `{}` failed (this test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        TinyDisk { path }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = privileged("umount").arg(&self.path).status();
    }
}

/// `program` as root: directly when we are root, else through `sudo -n` (never prompts).
fn privileged(program: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if is_root {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}
