//! Reading files the user names, safely: only regular files (never a FIFO, a device such as
//! `/dev/zero`, or a directory), only as many bytes as the caller allows, and, for files a model
//! names relative to itself, only inside the model's folder.
//!
//! Invariants, each making a class of hostile input impossible rather than one instance:
//! - [`open_regular`] looks at the file's type *before* opening it (opening a FIFO for reading
//!   blocks until a writer comes) and again on the open handle, so whatever the caller reads is
//!   a regular file with a known size; its size is compared with what the caller needs before
//!   a byte is read or a buffer allocated.
//! - [`resolve_inside`] rejects a relative path that climbs out of its folder by its text
//!   (`..` past the top, an absolute path, a drive prefix) before the file system is asked
//!   anything, then canonicalizes (following every symlink) and requires the result to stay
//!   under the canonical folder. A path outside is refused with one message that says nothing
//!   of what is there (whether it exists, its size).
//! - Messages name the path as the caller gave it.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Why a file could not be read: a message for the user, naming the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError(pub String);

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileError {}

/// `rel` resolved against `base`, canonical, and inside the canonical `base`; symlinks are
/// followed, and must not lead out either.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("w.bin"), b"1234").unwrap();
/// let inside = nnirc::files::resolve_inside(dir.path(), "w.bin".as_ref()).unwrap();
/// assert!(inside.ends_with("w.bin"));
/// let err = nnirc::files::resolve_inside(dir.path(), "../w.bin".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("outside"));
/// ```
pub fn resolve_inside(base: &Path, rel: &Path) -> Result<PathBuf, FileError> {
    let outside = || {
        FileError(format!(
            "`{}` is outside the folder {} (only files inside it may be read)",
            rel.display(),
            base.display()
        ))
    };
    // By its text first: nothing outside is looked at.
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(outside)?,
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if depth == 0 {
        return Err(FileError(format!("`{}` names no file", rel.display())));
    }
    let base_c = std::fs::canonicalize(base)
        .map_err(|e| FileError(format!("cannot open the folder {}: {e}", base.display())))?;
    let joined = base_c.join(rel);
    let resolved = match std::fs::canonicalize(&joined) {
        Ok(p) => p,
        // A dangling link (or a missing file) inside: say it is missing, not where it points.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FileError(format!(
                "cannot open `{}` in {}: no such file",
                rel.display(),
                base.display()
            )))
        }
        Err(_) => return Err(outside()),
    };
    if resolved.starts_with(&base_c) && resolved != base_c {
        Ok(resolved)
    } else {
        Err(outside())
    }
}

/// Opens `path` if it is a regular file (after following symlinks), with its size in bytes.
/// A FIFO, socket, device or directory is refused without being opened.
pub fn open_regular(path: &Path) -> Result<(File, u64), FileError> {
    let cannot = |e: std::io::Error| FileError(format!("cannot read {}: {e}", path.display()));
    let not_regular = || {
        FileError(format!(
            "{} is not a regular file (a FIFO, device or directory cannot be read)",
            path.display()
        ))
    };
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(cannot)?;
    // Again on the handle: the path may have been replaced between the two looks.
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((file, meta.len()))
}

/// The whole of the regular file `path`, refused (before reading) if it holds more than
/// `max_len` bytes.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.txt");
/// std::fs::write(&p, b"hello").unwrap();
/// assert_eq!(nnirc::files::read_regular(&p, 5).unwrap(), b"hello");
/// assert!(nnirc::files::read_regular(&p, 4).is_err());
/// assert!(nnirc::files::read_regular("/dev/zero".as_ref(), 4).is_err());
/// ```
pub fn read_regular(path: &Path, max_len: u64) -> Result<Vec<u8>, FileError> {
    let (file, size) = open_regular(path)?;
    if size > max_len {
        return Err(FileError(format!(
            "{} holds {size} bytes, over the limit of {max_len}",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // `take`: a file that grows while it is read still yields at most `max_len + 1` bytes.
    file.take(max_len + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > max_len {
        return Err(FileError(format!(
            "{} grew past the limit of {max_len} bytes while it was read",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Bytes `offset..offset + len` of the regular file `path` (the rest of the file when `len` is
/// `None`), refused before reading when the file is too short or the range is over `max_len`.
pub fn read_range(
    path: &Path,
    offset: u64,
    len: Option<u64>,
    max_len: u64,
) -> Result<Vec<u8>, FileError> {
    let (mut file, size) = open_regular(path)?;
    let end = match len {
        Some(l) => offset.checked_add(l),
        None => Some(size.max(offset)),
    };
    let end = end.filter(|&e| e <= size).ok_or_else(|| {
        FileError(format!(
            "{}: the range {offset}..{} is past its end ({size} bytes)",
            path.display(),
            len.map_or("end".to_string(), |l| offset.saturating_add(l).to_string())
        ))
    })?;
    let n = end - offset;
    if n > max_len {
        return Err(FileError(format!(
            "{}: the range {offset}..{end} holds {n} bytes, over the limit of {max_len}",
            path.display()
        )));
    }
    let cannot = |e: std::io::Error| FileError(format!("cannot read {}: {e}", path.display()));
    file.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    let mut bytes = vec![0; n as usize];
    file.read_exact(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbing_out_by_text_is_refused_before_looking() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["../x", "a/../../x", "/etc/passwd", "..", ".", ""] {
            assert!(resolve_inside(dir.path(), rel.as_ref()).is_err(), "{rel}");
        }
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("x"), b"1").unwrap();
        assert!(resolve_inside(dir.path(), "a/../x".as_ref()).is_ok());
        assert!(resolve_inside(dir.path(), "./x".as_ref()).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_are_refused_and_say_nothing_of_the_target() {
        let outer = tempfile::tempdir().unwrap();
        let secret = outer.path().join("secret");
        std::fs::write(&secret, vec![7u8; 12345]).unwrap();
        let model = outer.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::os::unix::fs::symlink(&secret, model.join("link")).unwrap();
        std::os::unix::fs::symlink(outer.path(), model.join("up")).unwrap();
        for rel in ["link", "up/secret"] {
            let e = resolve_inside(&model, rel.as_ref()).unwrap_err().0;
            assert!(e.contains("outside") && !e.contains("12345"), "{e}");
        }
        // A link that stays inside is fine.
        std::fs::write(model.join("w"), b"12").unwrap();
        std::os::unix::fs::symlink(model.join("w"), model.join("inner")).unwrap();
        assert!(resolve_inside(&model, "inner".as_ref()).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(read_regular(&fifo, 10)
                .unwrap_err()
                .0
                .contains("not a regular file"));
        }
        for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            if Path::new(dev).exists() {
                assert!(read_regular(dev.as_ref(), 10).is_err(), "{dev}");
                assert!(read_range(dev.as_ref(), 0, Some(4), 10).is_err(), "{dev}");
            }
        }
        assert!(read_regular(dir.path(), 10).is_err());
    }

    #[test]
    fn sizes_are_checked_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_range(&p, 2, Some(3), 10).unwrap(), b"234");
        assert_eq!(read_range(&p, 8, None, 10).unwrap(), b"89");
        assert!(read_range(&p, 8, Some(3), 10).is_err());
        assert!(read_range(&p, u64::MAX, Some(3), 10).is_err());
        assert!(read_range(&p, 11, None, 10).is_err());
        assert!(read_range(&p, 0, Some(10), 9).is_err());
        assert!(read_regular(&p, 9).is_err());
        assert_eq!(read_regular(&p, 10).unwrap().len(), 10);
    }
}
