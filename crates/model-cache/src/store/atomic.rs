//! Atomic writes: every file and link we replace goes through here.
//!
//! A reader (Model Cache, `huggingface_hub`, a tool reading the token) sees either the old
//! content or the new one, never half of it, and a crash never leaves a truncated ref, link,
//! marker, preference file or secret. Each write:
//!
//! 1. creates a temp entry in the destination's own folder (a rename across file systems is a
//!    copy), under a name no other writer uses ([`temp_path`]: pid and 64 random bits);
//! 2. for a file, opens it with `create_new` and, on Unix, `O_NOFOLLOW`, so a symlink or file
//!    planted at the temp name is refused rather than written through; a mode such as 0o600 is
//!    applied at creation (then set exactly, whatever the umask), so a secret is never readable
//!    by others, not even for a moment;
//! 3. writes, then fsyncs the file;
//! 4. renames it over the destination (which replaces a symlink there, never follows it);
//! 5. on Unix, fsyncs the folder so the new directory entry survives a power cut.
//!
//! On any error the temp entry is removed. A crash between 1 and 4 still leaves one behind;
//! its name is recognisable ([`leftover_pid`]) and [`remove_leftovers`] deletes it once it is
//! older than [`LEFTOVER_GRACE`] and its writer is gone, so that `huggingface_hub`'s
//! `scan_cache_dir` never reports it as a ref or a file.
//!
//! The functions return `std::io::Error`; callers wrap it in their own error with the path
//! and what they were doing, as before.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The part of a temp name that says it is ours: `.{name}.model-cache-{pid}-{random}.tmp`.
const TEMP_MARKER: &str = ".model-cache-";
/// The suffix of every temp name.
const TEMP_SUFFIX: &str = ".tmp";
/// How much of the destination's name a temp name keeps, in bytes, so that the temp name of a
/// 255-byte file name still fits in `NAME_MAX`. The rest of the name is not needed to clean up.
const TEMP_NAME_KEEP: usize = 200;

/// How old a leftover temp file must be before [`remove_leftovers`] removes it. Writes take
/// milliseconds; an hour leaves room for a slow disk and for clocks that disagree.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(60 * 60);

/// Writes `bytes` to `path` atomically, with the mode a new file gets (0o666 less the umask,
/// as `huggingface_hub` writes refs).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, None, |file| file.write_all(bytes))
}

/// Writes `bytes` to `path` atomically, readable and writable by the owner only (0o600 on
/// Unix from the moment the temp file exists): for tokens and secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, Some(0o600), |file| file.write_all(bytes))
}

/// Copies the file `from` to `to` atomically (with the mode a new file gets); returns the
/// number of bytes copied.
pub fn copy(from: &Path, to: &Path) -> io::Result<u64> {
    let mut source = File::open(from)?;
    let mut copied = 0;
    write_file(to, None, |file| {
        copied = io::copy(&mut source, file)?;
        Ok(())
    })?;
    Ok(copied)
}

/// Points `link` at `target` atomically: a symlink under a temp name, renamed over `link`
/// (replacing a file or link there). `target` is stored as given (relative stays relative).
/// On Windows this is a file symlink.
pub fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    place(link, |temp| os_symlink(target, temp))
}

/// Makes `link` a hard link to `original` atomically, replacing a file or link there.
pub fn hard_link(original: &Path, link: &Path) -> io::Result<()> {
    place(link, |temp| std::fs::hard_link(original, temp))
}

/// Makes `link` a copy-on-write clone of `original` (a reflink) atomically, replacing a file or
/// link there. Fails where the file system cannot clone (and on other OSes than Linux).
pub fn reflink(original: &Path, link: &Path) -> io::Result<()> {
    place(link, |temp| clone_into_new(original, temp))
}

/// Creates the new file `to` as a clone of `from` (`FICLONE`), removing it again on failure.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "FICLONE has no safe wrapper in the standard library; two owned descriptors"
)]
pub fn clone_into_new(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = File::open(from)?;
    let target = create_temp(to, None)?;
    // FICLONE = _IOW(0x94, 9, int): the whole source, shared extents, no bytes copied.
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open for the duration of the call; the ioctl reads an int.
    let result = unsafe { libc::ioctl(target.as_raw_fd(), FICLONE as _, source.as_raw_fd()) };
    if result == 0 {
        return target.sync_all();
    }
    let error = io::Error::last_os_error();
    drop(target);
    let _ = std::fs::remove_file(to);
    Err(error)
}

/// Creates the new file `to` as a clone of `from`: not available on this OS.
#[cfg(not(target_os = "linux"))]
pub fn clone_into_new(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reflinks are only made on Linux",
    ))
}

/// A fresh temp name next to `path`: `.{name}.model-cache-{pid}-{random:016x}.tmp`, the name
/// cut to its first 200 bytes. The leading dot hides it from listings; the marker, pid and
/// random part make it ours alone and tell [`remove_leftovers`] who wrote it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut keep = name.len().min(TEMP_NAME_KEEP);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let random: u64 = rand::random();
    path.with_file_name(format!(
        ".{}{TEMP_MARKER}{}-{random:016x}{TEMP_SUFFIX}",
        &name[..keep],
        std::process::id()
    ))
}

/// The pid of the process that wrote a temp entry named `name`, or `None` when the name is not
/// one of our temp names. Recognises [`temp_path`]'s names and the names earlier versions used
/// in the hub cache (`.{name}.{pid}.{random:016x}.tmp`).
pub fn leftover_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    if let Some((_, tag)) = inner.rsplit_once(TEMP_MARKER) {
        let (pid, random) = tag.split_once('-')?;
        return parse_tag(pid, random);
    }
    let (rest, random) = inner.rsplit_once('.')?;
    let (stem, pid) = rest.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    parse_tag(pid, random)
}

fn parse_tag(pid: &str, random: &str) -> Option<u32> {
    let is_random = random.len() == 16
        && random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let is_pid = (1..=10).contains(&pid.len()) && pid.bytes().all(|b| b.is_ascii_digit());
    if !is_random || !is_pid {
        return None;
    }
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Removes the temp entries interrupted writes left in `dir` (and its subfolders when
/// `recursive`; symlinked folders are not followed): names [`leftover_pid`] recognises, last
/// modified at least `grace` before `now`, whose writing process is no longer running. Returns
/// what was removed (with `dry_run`, what would be). Best effort: an entry that cannot be read
/// or removed is logged and skipped; a missing `dir` is nothing to do.
pub fn remove_leftovers(
    dir: &Path,
    recursive: bool,
    grace: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    remove_leftovers_into(dir, recursive, grace, now, dry_run, &mut removed);
    removed
}

fn remove_leftovers_into(
    dir: &Path,
    recursive: bool,
    grace: Duration,
    now: SystemTime,
    dry_run: bool,
    removed: &mut Vec<PathBuf>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "Cannot look for leftover temp files");
            return;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        // `DirEntry::file_type` does not follow symlinks.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if recursive {
                remove_leftovers_into(&path, recursive, grace, now, dry_run, removed);
            }
            continue;
        }
        let Some(pid) = leftover_pid(&entry.file_name()) else {
            continue;
        };
        let old_enough = std::fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age >= grace));
        if !old_enough || process_is_alive(pid) {
            continue;
        }
        if dry_run {
            removed.push(path);
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "Removed a temp file left by an interrupted write");
                removed.push(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Cannot remove a temp file left by an interrupted write");
            }
        }
    }
}

/// Whether a process with this pid is running, on every OS. Unknown counts as running, and so
/// does a pid reused by another process (its leftovers wait for a later pass; a discovery
/// record naming it is then found out by its first request).
pub fn process_is_alive(pid: u32) -> bool {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    if pid == std::process::id() {
        return true;
    }
    let Ok(mut system) = System::new() else {
        return true;
    };
    let pid = Pid::from_u32(pid);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    system.process(pid).is_some()
}

/// Creates a temp file next to `path`, lets `fill` write it, fsyncs it, renames it over `path`
/// and fsyncs the folder. The temp file is removed on any error.
fn write_file(
    path: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let mut file = create_temp(&temp, mode)?;
    let written = fill(&mut file).and_then(|()| file.sync_all());
    // Closed before the rename or the removal (Windows refuses both on an open file).
    drop(file);
    finish(
        written.and_then(|()| std::fs::rename(&temp, path)),
        &temp,
        path,
    )
}

/// Creates a temp entry with `create` (which must fail rather than replace an existing entry,
/// as `symlink` and `hard_link` do), renames it over `path` and fsyncs the folder.
fn place(path: &Path, create: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let temp = temp_path(path);
    create(&temp)?;
    finish(std::fs::rename(&temp, path), &temp, path)
}

/// Removes the temp entry after a failure; makes the rename durable after a success.
fn finish(result: io::Result<()>, temp: &Path, path: &Path) -> io::Result<()> {
    if let Err(e) = result {
        if let Err(remove) = std::fs::remove_file(temp)
            && remove.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %temp.display(), error = %remove, "Cannot remove a temp file after a failed write");
        }
        return Err(e);
    }
    sync_parent(path);
    Ok(())
}

/// Opens a new temp file: never an existing entry, never through a symlink, with `mode` from
/// the start and then exactly (the umask could only have narrowed it).
fn create_temp(temp: &Path, mode: Option<u32>) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
        if let Some(mode) = mode {
            options.mode(mode);
        }
    }
    let file = options.open(temp)?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        // `fchmod` on the open file: nothing else can be reached through the name meanwhile.
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(mode)) {
            drop(file);
            let _ = std::fs::remove_file(temp);
            return Err(e);
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(file)
}

/// Fsyncs the folder of `path` so that a completed rename survives a crash of the machine.
/// The rename has happened by then, so a failure (some file systems refuse to sync a folder)
/// is logged, not returned: the caller's write did take place.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Err(e) = File::open(dir).and_then(|dir| dir.sync_all()) {
            tracing::debug!(path = %dir.display(), error = %e, "Cannot sync the folder after a rename");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(unix)]
fn os_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn os_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temp_names_are_ours_and_name_their_writer() {
        let temp = temp_path(Path::new("/cache/refs/main"));
        let name = temp.file_name().unwrap();
        assert!(name.to_str().unwrap().starts_with(".main.model-cache-"));
        assert_eq!(temp.parent(), Some(Path::new("/cache/refs")));
        assert_eq!(leftover_pid(name), Some(std::process::id()));
        assert_ne!(temp, temp_path(Path::new("/cache/refs/main")), "random");

        // A 255-byte name (the longest a repo file may have) still gives a valid temp name.
        let long = "é".repeat(127) + "x";
        let temp = temp_path(&Path::new("/s").join(&long));
        let name = temp.file_name().unwrap();
        assert!(name.len() <= 255, "{}", name.len());
        assert_eq!(leftover_pid(name), Some(std::process::id()));

        for (name, pid) in [
            (".main.model-cache-42-0123456789abcdef.tmp", Some(42)),
            (
                ".a.model-cache-b.model-cache-7-0123456789abcdef.tmp",
                Some(7),
            ),
            // The names earlier versions wrote in the cache.
            (".config.json.1234.00000000deadbeef.tmp", Some(1234)),
            (".x.y.1.fedcba9876543210.tmp", Some(1)),
            // Not ours.
            ("main", None),
            (".main.tmp", None),
            ("main.model-cache-42-0123456789abcdef.tmp", None),
            (".main.model-cache-42-0123456789ABCDEF.tmp", None),
            (".main.model-cache-42-0123456789abcde.tmp", None),
            (".main.model-cache-0-0123456789abcdef.tmp", None),
            (".main.model-cache--0123456789abcdef.tmp", None),
            (".main.model-cache-x-0123456789abcdef.tmp", None),
            (".main.model-cache-42-0123456789abcdef.tmp.bak", None),
            ("..42.0123456789abcdef.tmp", None),
            (".token.42.tmp", None),
            (".api-token.tmp-42", None),
        ] {
            assert_eq!(leftover_pid(OsStr::new(name)), pid, "{name}");
        }
    }

    #[test]
    fn writes_replace_files_and_links_and_leave_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");

        // A symlink at the destination is replaced, not written through.
        let other = dir.path().join("other");
        std::fs::write(&other, b"other").unwrap();
        let link = dir.path().join("link");
        symlink(Path::new("other"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("other"));
        write(&link, b"own").unwrap();
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&other).unwrap(), b"other");

        symlink(Path::new("file"), &link).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"two");
        hard_link(&other, &link).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"other");
        assert_eq!(copy(&path, &link).unwrap(), 3);
        assert_eq!(std::fs::read(&link).unwrap(), b"two");
        assert_eq!(
            std::fs::read(&other).unwrap(),
            b"other",
            "not through the hard link"
        );
        assert_eq!(names(dir.path()), ["file", "link", "other"]);
    }

    #[test]
    fn failed_writes_remove_their_temp_entry() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write(&blocked, b"x").is_err());
        assert!(write_private(&blocked, b"x").is_err());
        assert!(symlink(Path::new("x"), &blocked).is_err());
        assert!(copy(&dir.path().join("absent"), &dir.path().join("copy")).is_err());
        let failing = write_file(&dir.path().join("f"), None, |_| {
            Err(io::Error::other("the disk is on fire"))
        });
        assert_eq!(failing.unwrap_err().to_string(), "the disk is on fire");
        assert_eq!(names(dir.path()), ["blocked"]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut seen = None;
        write_file(&path, Some(0o600), |file| {
            seen = Some(file.metadata()?.permissions().mode() & 0o777);
            file.write_all(b"new")
        })
        .unwrap();
        assert_eq!(seen, Some(0o600), "before a byte is written");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn an_entry_planted_at_the_temp_name_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let temp = temp_path(&dir.path().join("file"));
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        let err = create_temp(&temp, Some(0o600)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(temp.is_symlink(), "someone else's entry is left alone");
    }

    #[cfg(unix)]
    #[test]
    fn leftovers_go_once_old_and_orphaned() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let orphan_link = dir
            .path()
            .join(format!(".f.model-cache-{dead}-0123456789abcdef.tmp"));
        std::os::unix::fs::symlink("../blobs/x", &orphan_link).unwrap();
        let orphan_nested = sub.join(format!(".g.{dead}.0123456789abcdef.tmp"));
        std::fs::write(&orphan_nested, b"").unwrap();
        let live_one = dir
            .path()
            .join(format!(".h.model-cache-{live}-0123456789abcdef.tmp"));
        std::fs::write(&live_one, b"").unwrap();
        let not_ours = dir.path().join(".h.tmp");
        std::fs::write(&not_ours, b"").unwrap();

        let now = SystemTime::now();
        let later = now + LEFTOVER_GRACE + Duration::from_secs(1);
        assert!(remove_leftovers(dir.path(), true, LEFTOVER_GRACE, now, false).is_empty());
        assert_eq!(
            remove_leftovers(dir.path(), false, LEFTOVER_GRACE, later, true),
            std::slice::from_ref(&orphan_link)
        );
        assert!(orphan_link.is_symlink(), "a dry run removes nothing");
        let mut removed = remove_leftovers(dir.path(), true, LEFTOVER_GRACE, later, false);
        removed.sort();
        assert_eq!(removed, [orphan_link.clone(), orphan_nested.clone()]);
        assert!(!orphan_link.is_symlink() && !orphan_nested.exists());
        assert!(live_one.exists() && not_ours.exists());
        assert!(
            remove_leftovers(
                &dir.path().join("absent"),
                true,
                LEFTOVER_GRACE,
                later,
                false
            )
            .is_empty()
        );
    }
}
