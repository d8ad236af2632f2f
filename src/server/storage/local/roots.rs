//! Checking a user's root before anyone logs in: it exists, it is a directory, and the server's
//! user can write into it. An operator who points a root at a missing path, at a file, or at a
//! directory the service user cannot write learns it from `check-config` or from a warning at
//! start, not from a client's failed upload hours later.
//!
//! Writability is judged from the mode bits (owner, group, other; ACLs are not read), either for
//! this process (its effective ids) or for the user the server will run as.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who must be able to write into a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// This process, with its effective ids (`faccessat(AT_EACCESS)`).
    ThisProcess,
    /// A user the server will switch to: their uid, primary gid and supplementary groups.
    User {
        name: String,
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
}

/// What is wrong with a root.
#[derive(Debug, thiserror::Error)]
pub enum RootProblem {
    #[error("root {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("root {} is a file, not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("root {} is not writable by {who}: uploads into it will fail", path.display())]
    NotWritable { path: PathBuf, who: String },
    #[error("root {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks that `path` exists, is a directory (following symlinks) and can be written by `writer`.
pub fn check_root(path: &Path, writer: &Writer) -> Result<(), RootProblem> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RootProblem::Missing(path.to_owned()))
        }
        // A path component that is a file: ENOTDIR.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(RootProblem::NotADirectory(path.to_owned()))
        }
        Err(source) => {
            return Err(RootProblem::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.is_dir() {
        return Err(RootProblem::NotADirectory(path.to_owned()));
    }
    let writable = match writer {
        Writer::ThisProcess => {
            let dir = fs::File::open(path).map_err(|source| RootProblem::Unreadable {
                path: path.to_owned(),
                source,
            })?;
            process_can_write(&dir)
        }
        Writer::User {
            uid, gid, groups, ..
        } => mode_allows_write(meta.mode(), meta.uid(), meta.gid(), *uid, *gid, groups),
    };
    if writable {
        return Ok(());
    }
    let who = match writer {
        Writer::ThisProcess => {
            // SAFETY: geteuid has no arguments and cannot fail.
            let euid = unsafe { libc::geteuid() };
            format!("this process (uid {euid})")
        }
        Writer::User { name, uid, .. } => format!("user {name} (uid {uid})"),
    };
    Err(RootProblem::NotWritable {
        path: path.to_owned(),
        who,
    })
}

/// Whether this process may create files in the open directory `dir` (write and search
/// permission, judged with the effective ids).
pub fn process_can_write(dir: &impl AsRawFd) -> bool {
    // SAFETY: `dir` is an open directory descriptor and "." a NUL-terminated path relative to it.
    let r = unsafe {
        libc::faccessat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    r == 0
}

/// Whether a directory with `mode` owned by `owner:group` lets `uid` (primary group `gid`, member
/// of `groups`) create files in it: write and search in the class that applies. uid 0 may always.
pub fn mode_allows_write(
    mode: u32,
    owner: u32,
    group: u32,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> bool {
    if uid == 0 {
        return true;
    }
    let bits = if uid == owner {
        mode >> 6
    } else if gid == group || groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o3 == 0o3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_classes() {
        // Owner class decides for the owner, even when "other" would allow.
        assert!(mode_allows_write(0o700, 10, 20, 10, 99, &[]));
        assert!(!mode_allows_write(0o577, 10, 20, 10, 99, &[]));
        assert!(mode_allows_write(0o070, 10, 20, 11, 20, &[]));
        assert!(mode_allows_write(0o070, 10, 20, 11, 21, &[20]));
        assert!(!mode_allows_write(0o050, 10, 20, 11, 20, &[]));
        assert!(mode_allows_write(0o003, 10, 20, 11, 21, &[]));
        assert!(!mode_allows_write(0o775, 10, 20, 11, 21, &[]));
        assert!(mode_allows_write(0o000, 10, 20, 0, 0, &[]));
    }

    #[test]
    fn missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = check_root(&file, &Writer::ThisProcess).unwrap_err();
        assert!(e.to_string().ends_with("is a file, not a directory"), "{e}");
        let e = check_root(&file.join("below"), &Writer::ThisProcess).unwrap_err();
        assert!(matches!(e, RootProblem::NotADirectory(_)), "{e}");
        let e = check_root(&dir.path().join("nope"), &Writer::ThisProcess).unwrap_err();
        assert!(e.to_string().ends_with("does not exist"), "{e}");
        check_root(dir.path(), &Writer::ThisProcess).unwrap();
        let nobody = Writer::User {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        // A fresh temporary directory is 0700 and owned by us (unless we are nobody).
        // SAFETY: geteuid has no arguments and cannot fail.
        let us = unsafe { libc::geteuid() };
        if us != 65534 {
            let e = check_root(dir.path(), &nobody).unwrap_err();
            assert!(
                e.to_string()
                    .contains("not writable by user nobody (uid 65534)"),
                "{e}"
            );
        }
    }
}
