//! The paths one command reads and writes, checked before it does any work.
//!
//! Input: every path a command reads (the model, the weights file it names, `--inputs`, ...)
//! and every path it writes (`-o`, the weights beside it, `--report`, per-output files, ...).
//! Output: `Ok` or one message for the user. Invariants, once [`check_paths`] has passed:
//! - no output names the same file as an input, and no two outputs name the same file, however
//!   they are spelled (`a`, `./a`, `dir/../a`, a symlink to `a`, a hard link to `a`);
//! - no output names something other than a regular file or a file still to be made: a path
//!   ending in `/`, a directory, a symlink, a FIFO, a socket or a device is refused (replacing
//!   its directory entry, as an atomic write does, would destroy it).
//!
//! The file system may change between the check and the write: [`crate::tensor_io::Outputs`]
//! looks at each target again when it stages it.

use std::path::{Component, Path, PathBuf};

/// `Ok` if the outputs clash with nothing (see the module note); otherwise why not.
///
/// ```
/// use std::path::Path;
/// let dir = tempfile::tempdir().unwrap();
/// let a = dir.path().join("a.nnir");
/// std::fs::write(&a, "").unwrap();
/// let alias = dir.path().join("sub/../a.nnir");
/// std::fs::create_dir(dir.path().join("sub")).unwrap();
/// assert!(nnirc::paths::check_paths(&[&a], &[&alias]).is_err());
/// let b = dir.path().join("b.nnir");
/// let c = dir.path().join("c.nnir");
/// assert!(nnirc::paths::check_paths(&[&a], &[&b, &c]).is_ok());
/// assert!(nnirc::paths::check_paths(&[&a], &[&b, &b]).is_err());
/// assert!(nnirc::paths::check_paths(&[&a], &[dir.path()]).is_err());
/// ```
pub fn check_paths(inputs: &[&Path], outputs: &[&Path]) -> Result<(), String> {
    for (i, out) in outputs.iter().enumerate() {
        if let Some(input) = inputs.iter().find(|input| same_file(input, out)) {
            return Err(format!(
                "refusing to write {} over the input {}",
                out.display(),
                input.display()
            ));
        }
        if let Some(other) = outputs[..i].iter().find(|o| same_file(o, out)) {
            return Err(format!(
                "{} and {} name the same file",
                other.display(),
                out.display()
            ));
        }
        check_target(out)?;
    }
    Ok(())
}

/// `Ok` if `out` may be written: it does not exist, or it is a regular file (not a symlink).
pub fn check_target(out: &Path) -> Result<(), String> {
    let text = out.as_os_str().as_encoded_bytes();
    if text.is_empty() {
        return Err("an output path is empty".to_string());
    }
    if text.ends_with(b"/") || (cfg!(windows) && text.ends_with(b"\\")) {
        return Err(format!(
            "{} names a directory; an output must be a file",
            out.display()
        ));
    }
    let Ok(meta) = std::fs::symlink_metadata(out) else {
        return Ok(()); // made by the command
    };
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else {
        "not a regular file (a device, FIFO or socket)"
    };
    Err(format!(
        "{} is {what}; refusing to replace it with an output file",
        out.display()
    ))
}

/// Whether `a` and `b` name the same file: the same [`resolved`] path, or (on Unix) the same
/// existing inode.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if resolved(a) == resolved(b) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    false
}

/// `path` made absolute with every symlink and `..` resolved as far as it exists; the part
/// that does not exist yet is normalized by its text. Two spellings of one file, existing or
/// not, give the same result.
pub fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => out.push(c),
            Component::CurDir => continue,
            // `out` is canonical wherever it exists, so its parent is the real `..`.
            Component::ParentDir => {
                out.pop();
            }
        }
        if let Ok(canonical) = std::fs::canonicalize(&out) {
            out = canonical;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_file_resolve_alike() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        for name in ["a", "missing"] {
            if name == "a" {
                std::fs::write(d.join("a"), b"").unwrap();
            }
            let want = resolved(&d.join(name));
            for alias in [
                format!("./{name}"),
                format!("sub/../{name}"),
                format!("sub/./../sub/../{name}"),
                format!("nope/../{name}"),
            ] {
                assert_eq!(resolved(&d.join(&alias)), want, "{alias}");
            }
        }
        assert_ne!(resolved(&d.join("a")), resolved(&d.join("sub/a")));
    }

    #[cfg(unix)]
    #[test]
    fn links_name_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), b"").unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("sym")).unwrap();
        std::fs::hard_link(d.join("a"), d.join("hard")).unwrap();
        assert!(same_file(&d.join("a"), &d.join("sym")));
        assert!(same_file(&d.join("a"), &d.join("hard")));
        // A symlink is refused as an output even when it points nowhere else.
        let e = check_paths(&[], &[&d.join("sym")]).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        assert!(check_paths(&[], &[&d.join("dangling")]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "/dev/null".into(),
            dir.path().to_path_buf(),
            dir.path().join("x/"),
        ] {
            assert!(check_target(&bad).is_err(), "{}", bad.display());
        }
        assert!(check_target(&dir.path().join("x")).is_ok());
    }
}
