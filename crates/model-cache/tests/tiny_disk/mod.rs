//! A real small file system for disk-full tests: a tmpfs mounted for one test and unmounted on
//! drop. Mounting needs root, as CI runs; without it the test fails and says why.

use std::path::PathBuf;
use std::process::Command;

pub struct TinyDisk {
    pub path: PathBuf,
}

impl TinyDisk {
    /// Mounts a tmpfs of `size` (e.g. `3m`) at `path`.
    pub fn mount(path: PathBuf, size: &str) -> TinyDisk {
        std::fs::create_dir_all(&path).unwrap();
        let output = Command::new("mount")
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
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
