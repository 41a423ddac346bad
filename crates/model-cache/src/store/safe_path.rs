//! [`SafeRelPath`]: the only way a file name from a repo listing becomes a path on disk.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Longest accepted repo path, in bytes (Linux `PATH_MAX` is 4096; the cache prefix needs room).
const MAX_LEN: usize = 1024;

/// Longest name of one file or folder, in bytes: `NAME_MAX` on Linux and macOS file systems.
/// (NTFS counts 255 UTF-16 units, which a name of at most 255 UTF-8 bytes never exceeds.)
pub const MAX_SEGMENT_BYTES: usize = 255;

/// The most bytes the store adds to a file's name while writing it. An atomic write (a link in
/// a snapshot, a ref, a `.no_exist` marker) first creates `.{name}.{pid}.{random:016x}.tmp`:
/// 1 + 1 + 10 (a `u32` process id) + 1 + 16 + 4 bytes around the name. Blobs are named by etag
/// (at most 128 bytes, see [`super::is_valid_etag`]) plus `.incomplete` or `.lock`, far below.
///
/// Whoever changes how the store names its temporary files keeps this constant in step:
/// `tests/store_layout.rs` writes a name of [`MAX_FILE_NAME_BYTES`] through every writing
/// method of the store on a real file system.
pub const LONGEST_NAME_SUFFIX_BYTES: usize = 33;

/// Longest accepted file name (the last segment of a [`SafeRelPath`]), in bytes: with the
/// store's longest suffix it still fits in [`MAX_SEGMENT_BYTES`]. An over-long name is refused
/// when the path is checked, before a download starts, not with `ENAMETOOLONG` once the whole
/// file has been fetched. Folders get no suffix, so a folder name may use all
/// [`MAX_SEGMENT_BYTES`].
pub const MAX_FILE_NAME_BYTES: usize = MAX_SEGMENT_BYTES - LONGEST_NAME_SUFFIX_BYTES;

/// A relative, `/`-separated path inside a snapshot that cannot escape it: no absolute paths, no
/// `..` or `.` segments, no empty segments (`a//b`, a trailing `/`), no backslashes, no NUL or
/// other control characters, nothing over-long (see [`MAX_FILE_NAME_BYTES`]), and no segment
/// that Windows reads as something other than a plain name: a drive (`C:x`), an alternate data
/// stream (`file:stream`), a device (`CON`, `nul.txt`), or a name it trims (`a.`, `a `).
///
/// **Architecture Invariant:** the store joins repo file names onto cache paths only through
/// this type; combined with the symlink check at link time, nothing is written outside the cache.
/// The Windows rules hold on every OS: one cache may be used from Linux today and from Windows
/// (or a Windows machine reading a shared drive) tomorrow, so a name that is harmless here must
/// not already be in the cache, in the index or in a queued job when Windows reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeRelPath(String);

impl SafeRelPath {
    /// Validates a name from a repo listing (or a user).
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let reject = |reason: Cow<'static, str>| StoreError::UnsafePath {
            name: name.escape_debug().to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(reject("empty path".into()));
        }
        if name.len() > MAX_LEN {
            return Err(reject(
                format!(
                    "the path is {} bytes, over the limit of {MAX_LEN} bytes",
                    name.len()
                )
                .into(),
            ));
        }
        if name.starts_with('/') {
            return Err(reject("absolute path".into()));
        }
        if name.contains('\\') {
            return Err(reject("backslash in path".into()));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(reject("NUL or control character in path".into()));
        }
        let count = name.split('/').count();
        for (position, segment) in name.split('/').enumerate() {
            check_segment(segment, position + 1 == count).map_err(reject)?;
        }
        Ok(SafeRelPath(name.to_string()))
    }

    /// The path as given (with `/` separators).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of segments (`a/b/c` has 3).
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The path, joined with the platform's separator.
    pub fn to_path_buf(&self) -> PathBuf {
        self.segments().collect()
    }

    /// `base` joined with this path.
    pub fn join_to(&self, base: &Path) -> PathBuf {
        let mut path = base.to_path_buf();
        for segment in self.segments() {
            path.push(segment);
        }
        path
    }
}

impl fmt::Display for SafeRelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SafeRelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks one segment of a path; `last` is the file name, the others are folders.
fn check_segment(segment: &str, last: bool) -> Result<(), Cow<'static, str>> {
    match segment {
        "" => return Err("empty path segment".into()),
        "." | ".." => return Err("`.` or `..` segment".into()),
        _ => {}
    }
    if let Some(hazard) = windows_hazard(segment) {
        return Err(format!("`{}` {hazard}", abbreviate(segment)).into());
    }
    let (what, limit) = if last {
        ("file name", MAX_FILE_NAME_BYTES)
    } else {
        ("folder name", MAX_SEGMENT_BYTES)
    };
    if segment.len() > limit {
        return Err(format!(
            "the {what} `{}` is {} bytes, over the limit of {limit} bytes (file systems allow {MAX_SEGMENT_BYTES}; the cache adds up to {LONGEST_NAME_SUFFIX_BYTES} to a file name while writing it)",
            abbreviate(segment),
            segment.len(),
        )
        .into());
    }
    Ok(())
}

/// What Windows would do with `segment` other than name a plain file or folder, if anything.
///
/// These names are refused on every OS, not only on Windows: the same cache folder (and its
/// index, and its queued jobs) can be used from Windows later, through a shared drive or a
/// dual boot, and a repo listing that is harmless on Linux must not turn into a write outside
/// the snapshot there. On Windows:
/// - `C:x` pushed onto a path replaces it (a path relative to drive C's current folder), and
///   any other `:` opens an NTFS alternate data stream (`file:stream` writes into `file`);
/// - a device name (`CON`, `NUL`, `COM1`, …, also with an extension, `nul.txt`, in any case)
///   opens the device instead of a file;
/// - a trailing dot or space is stripped, so `a.` and `a ` are the file `a`, another one than
///   the listing names.
fn windows_hazard(segment: &str) -> Option<&'static str> {
    let bytes = segment.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Some("starts with a drive prefix, which replaces the whole path on Windows");
    }
    if segment.contains(':') {
        return Some("contains `:`, which names an alternate data stream on Windows");
    }
    if segment.ends_with(['.', ' ']) {
        return Some("ends with a dot or a space, which Windows strips (naming another file)");
    }
    if is_windows_device_name(segment) {
        return Some(
            "is a Windows device name (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9 and the like, also with an extension)",
        );
    }
    None
}

/// Whether Windows opens a device for `segment`: its part before the first dot, without
/// trailing spaces, is a DOS device name in any case (`con`, `NUL.txt`, `Com1 .tar.gz`). The
/// rule and the list are those of Python's `ntpath.isreserved`, which errs on the side of
/// caution where Windows versions differ (Windows 11 no longer reserves `nul.txt`).
fn is_windows_device_name(segment: &str) -> bool {
    let stem = segment
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ')
        .to_ascii_uppercase();
    match stem.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let Some(number) = stem
                .strip_prefix("COM")
                .or_else(|| stem.strip_prefix("LPT"))
            else {
                return false;
            };
            let mut chars = number.chars();
            matches!(
                (chars.next(), chars.next()),
                (Some('1'..='9' | '\u{b9}' | '\u{b2}' | '\u{b3}'), None)
            )
        }
    }
}

/// `segment` for a message: whole if short, else its start and end around an ellipsis.
fn abbreviate(segment: &str) -> String {
    const KEEP: usize = 24;
    let chars: Vec<char> = segment.chars().collect();
    if chars.len() <= 2 * KEEP + 1 {
        return segment.escape_debug().to_string();
    }
    let start: String = chars[..KEEP].iter().collect();
    let end: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{}…{}", start.escape_debug(), end.escape_debug())
}

/// Creates the folders of `rel`'s parent under `base`, one component at a time, refusing to go
/// through any existing symlink (or file) that leads outside `base`. Returns the parent folder.
///
/// Creating folders one by one matters: `create_dir_all` on `base/evil/sub` where `evil` is a
/// symlink to `/tmp` would already have written `/tmp/sub` before any check could run.
pub(crate) fn create_parents_inside(base: &Path, rel: &SafeRelPath) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(base).map_err(|e| StoreError::io("create", base, e))?;
    let canonical_base = base
        .canonicalize()
        .map_err(|e| StoreError::io("resolve", base, e))?;
    let segments: Vec<&str> = rel.segments().collect();
    let mut current = base.to_path_buf();
    for segment in &segments[..segments.len() - 1] {
        current.push(segment);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = current.canonicalize().map_err(|_| StoreError::Escape {
                    path: current.clone(),
                })?;
                if !target.starts_with(&canonical_base) || !target.is_dir() {
                    return Err(StoreError::Escape { path: current });
                }
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::io(
                    "create folder",
                    &current,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a file is in the way of a folder",
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&current) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(StoreError::io("create", &current, e)),
                }
            }
            Err(e) => return Err(StoreError::io("inspect", &current, e)),
        }
    }
    // Belt and braces: the final parent, with every link resolved, must be inside `base`.
    let parent = current
        .canonicalize()
        .map_err(|e| StoreError::io("resolve", &current, e))?;
    if !parent.starts_with(&canonical_base) {
        return Err(StoreError::Escape { path: current });
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use proptest::prelude::*;

    use super::*;

    const BASE: [&str; 2] = ["cache", "snapshot"];

    /// Where the segments of a relative path land when `PathBuf::push` (as in
    /// [`SafeRelPath::join_to`]) and then the Win32 path normalisation read them the Windows way,
    /// below the base `C:\cache\snapshot`: `Some(the components below the base)`, or `None` when
    /// the result is not a plain file inside the base. Written from the Windows rules, not from
    /// the checks under test, and cautious where Windows versions differ.
    fn windows_resolve(segments: &[&str]) -> Option<Vec<String>> {
        let mut pushed: Vec<&str> = Vec::new();
        for segment in segments {
            let bytes = segment.as_bytes();
            // A pushed path with a prefix (`C:x`, `C:\x`, `\\server\share`, `\\?\`) replaces
            // the whole path; one with a root (`\x`, `/x`) keeps only the base's drive.
            let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
            if drive || segment.starts_with(['\\', '/']) {
                return None;
            }
            pushed.extend(segment.split(['\\', '/']));
        }
        let mut below: Vec<String> = Vec::new();
        for component in pushed {
            if component.contains(':') {
                // A drive in the middle of a path, or an alternate data stream of a file.
                return None;
            }
            if component.is_empty() || component == "." {
                continue;
            }
            // `..` climbs; cautiously, so does any other run of dots and spaces (`.. `, `...`),
            // which Windows versions trim or read in different ways.
            if component.chars().all(|c| c == '.' || c == ' ') {
                below.pop()?;
                continue;
            }
            // Trailing dots and spaces are stripped from every component.
            let name = component.trim_end_matches(['.', ' ']);
            if windows_device_oracle(name) {
                return None;
            }
            below.push(name.to_string());
        }
        (!below.is_empty()).then_some(below)
    }

    /// The same for Unix: `/` is the only separator, `..` climbs.
    fn unix_resolve(segments: &[&str]) -> Option<Vec<String>> {
        let mut below: Vec<String> = Vec::new();
        for segment in segments {
            if segment.starts_with('/') {
                return None;
            }
            for component in segment.split('/') {
                match component {
                    "" | "." => {}
                    ".." => {
                        below.pop()?;
                    }
                    name => below.push(name.to_string()),
                }
            }
        }
        (!below.is_empty()).then_some(below)
    }

    /// Windows device names, spelled out (the list of Python's `ntpath.isreserved`).
    fn windows_device_oracle(name: &str) -> bool {
        let mut devices: Vec<String> = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        for port in ["COM", "LPT"] {
            for number in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³"] {
                devices.push(format!("{port}{number}"));
            }
        }
        let stem = name
            .split('.')
            .next()
            .unwrap_or_default()
            .trim_end_matches(' ');
        devices.iter().any(|d| d.eq_ignore_ascii_case(stem))
    }

    /// Pieces that names are built from: separators of both systems, drives, streams, dots and
    /// spaces, device names in several cases, unicode look-alikes, and long runs that reach
    /// the length limits.
    const HOSTILE: &[&str] = &[
        "a",
        "b",
        "Z",
        "C:",
        "c:",
        "z:",
        ":",
        "\\",
        "/",
        "//",
        ".",
        "..",
        " ",
        "con",
        "CON",
        "Nul",
        "aux",
        "pRn",
        "com1",
        "COM9",
        "lpt5",
        "com0",
        "com¹",
        "LPT³",
        "conin$",
        "CONOUT$",
        ".txt",
        ".tar.gz",
        "$DATA",
        "é",
        "日本",
        "\u{202e}",
        "\u{a0}",
        "\u{3000}",
        "\u{ff1a}",
        "\u{ff3c}",
        "\u{2215}",
        "\0",
        "\t",
        "~1",
        "\\\\?\\",
        "\\\\.\\",
        "::$DATA",
        "*",
        "?",
        "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
        "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
    ];

    fn hostile_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(HOSTILE), 1..12).prop_map(|p| p.concat()),
            "[aC:./\\\\ nulNUL1é]{1,16}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Every accepted path, joined to a base, names a file inside the base, on Unix and on
        /// Windows alike, under exactly the name the listing gave; and none of its segments is
        /// a device name, holds `:` or `\`, ends with a dot or a space, or is over-long.
        #[test]
        fn accepted_paths_stay_inside_the_base_on_unix_and_on_windows(name in hostile_name()) {
            let Ok(path) = SafeRelPath::new(&name) else {
                return Ok(());
            };
            let segments: Vec<&str> = path.segments().collect();
            let expected: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
            prop_assert_eq!(unix_resolve(&segments), Some(expected.clone()));
            prop_assert_eq!(windows_resolve(&segments), Some(expected));

            // And the real join on this OS.
            let base: PathBuf = BASE.iter().collect();
            let joined = path.join_to(&base);
            let below = joined.strip_prefix(&base).expect("joined under the base");
            prop_assert_eq!(below.components().count(), segments.len());
            prop_assert!(below.components().all(|c| matches!(c, Component::Normal(_))));

            for (position, segment) in segments.iter().enumerate() {
                prop_assert!(!windows_device_oracle(segment), "device name {:?}", segment);
                prop_assert!(!segment.contains([':', '\\']), "{:?}", segment);
                prop_assert!(!segment.ends_with(['.', ' ']), "{:?}", segment);
                let limit = if position + 1 == segments.len() {
                    MAX_FILE_NAME_BYTES
                } else {
                    MAX_SEGMENT_BYTES
                };
                prop_assert!(segment.len() <= limit, "{} bytes", segment.len());
            }
        }
    }

    fn refusal(name: &str) -> String {
        match SafeRelPath::new(name) {
            Ok(_) => panic!("{name:?} must be refused"),
            Err(StoreError::UnsafePath { reason, .. }) => reason.into_owned(),
            Err(other) => panic!("{name:?}: unexpected {other}"),
        }
    }

    #[test]
    fn a_drive_prefix_is_refused_in_any_segment() {
        assert!(refusal("a/C:x").contains("drive prefix"));
        assert!(refusal("C:x").contains("drive prefix"));
        assert!(refusal("a/b/z:").contains("drive prefix"));
    }

    #[test]
    fn a_colon_is_refused_as_an_alternate_data_stream() {
        assert!(refusal("a/file:stream").contains("alternate data stream"));
        assert!(refusal("weights.bin::$DATA").contains("alternate data stream"));
    }

    #[test]
    fn windows_device_names_are_refused_in_any_case_and_with_an_extension() {
        for name in [
            "x/con",
            "x/NUL.txt",
            "CON",
            "aux/readme.md",
            "Prn.tar.gz",
            "com1",
            "LPT9.bin",
            "com¹",
            "conin$",
            "nul .txt",
        ] {
            assert!(
                refusal(name).contains("device name"),
                "{name}: {}",
                refusal(name)
            );
        }
        // Near misses are ordinary names.
        for name in [
            "console.txt",
            "connector/x",
            "nul_/a",
            "com10",
            "com0",
            "lpt",
            "x/aux-data.json",
            " con",
        ] {
            assert!(SafeRelPath::new(name).is_ok(), "{name} must be accepted");
        }
    }

    #[test]
    fn a_trailing_dot_or_space_is_refused() {
        assert!(refusal("a/b.").contains("ends with a dot or a space"));
        assert!(refusal("a/b ").contains("ends with a dot or a space"));
        assert!(refusal("dir./b").contains("ends with a dot or a space"));
        assert!(refusal("a/...").contains("ends with a dot or a space"));
        assert!(SafeRelPath::new("..hidden/.b/c.d").is_ok());
    }

    #[test]
    fn an_over_long_file_name_is_refused_naming_it_and_the_limit() {
        let long = "n".repeat(250);
        let reason = refusal(&format!("dir/{long}"));
        assert!(reason.contains("file name `nnnn"), "{reason}");
        assert!(reason.contains("250 bytes"), "{reason}");
        assert!(
            reason.contains(&format!("limit of {MAX_FILE_NAME_BYTES} bytes")),
            "{reason}"
        );
        let at_limit = "n".repeat(MAX_FILE_NAME_BYTES);
        assert!(SafeRelPath::new(&at_limit).is_ok());
        assert!(SafeRelPath::new(&format!("{at_limit}n")).is_err());
        // A folder gets no temp suffix: it may use the whole `NAME_MAX`.
        let folder = "d".repeat(MAX_SEGMENT_BYTES);
        assert!(SafeRelPath::new(&format!("{folder}/f")).is_ok());
        let reason = refusal(&format!("{folder}d/f"));
        assert!(reason.contains("folder name"), "{reason}");
        assert!(reason.contains(&format!("limit of {MAX_SEGMENT_BYTES} bytes")));
    }

    #[test]
    fn the_file_name_limit_leaves_room_for_the_longest_temp_name() {
        let name = "n".repeat(MAX_FILE_NAME_BYTES);
        let temp = format!(".{name}.{}.{:016x}.tmp", u32::MAX, u64::MAX);
        assert_eq!(temp.len(), MAX_SEGMENT_BYTES);
    }
}
