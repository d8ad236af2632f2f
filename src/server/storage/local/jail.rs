//! Paths confined to a user's root: the kernel resolves every path with `openat2(RESOLVE_IN_ROOT)`
//! relative to the root directory, so `..` and symlinks (absolute or relative) can never lead
//! outside it. Operations that take a name (mkdir, unlink, rename, link) first open the parent
//! directory that way, then act on the single final component relative to it: the final component
//! is never followed as a symlink.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::engine::op::statx::FileStat;
use crate::proto::path::VPath;

use super::calls::FsCalls;
use super::dircache;

/// Resolve beneath the root as if it were `/`, and never through /proc-style magic links.
pub const RESOLVE_JAIL: u64 = 0x10 /* RESOLVE_IN_ROOT */ | 0x02 /* RESOLVE_NO_MAGICLINKS */;
/// Resolve one name beneath an already-jailed directory.
pub const RESOLVE_HERE: u64 = 0x08 /* RESOLVE_BENEATH */ | 0x04 /* RESOLVE_NO_SYMLINKS */;

/// A path as a C string; virtual paths never contain NUL, but map the impossible case to an error.
pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens `path` beneath the root with `flags`.
pub async fn open(root: &SharedFd, path: &VPath, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    op::open::openat2(root, cstr(path.relative())?, flags, mode, RESOLVE_JAIL).await
}

/// Opens a user's root directory. O_RDONLY rather than O_PATH so the same descriptor can be
/// `syncfs`'d by the batch fsync policy. Blocking (a path lookup): call at start-up or off-core.
pub fn open_root_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| {
            // Say what the operator has to fix, not just the errno.
            let what = match e.raw_os_error() {
                Some(libc::ENOTDIR) => "is a file, not a directory".to_owned(),
                Some(libc::ENOENT) => "does not exist".to_owned(),
                _ => e.to_string(),
            };
            let path = path.display().to_string();
            io::Error::new(
                e.kind(),
                RootError {
                    path,
                    what,
                    cause: e,
                },
            )
        })?;
    Ok(OwnedFd::from(f))
}

/// Why a root could not be opened: the operator's message, with the system error kept so the
/// login path can tell a client the kind of failure (never the path).
#[derive(Debug, thiserror::Error)]
#[error("opening root {path}: {what}")]
pub struct RootError {
    path: String,
    what: String,
    #[source]
    pub cause: io::Error,
}

/// The errno behind `e`, also when it is a [`RootError`] wrapped in an `io::Error`.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<RootError>())
            .and_then(|r| r.cause.raw_os_error())
    })
}

/// Opens the directory containing `path` and returns it with the final name. Opened for reading (not
/// O_PATH) so it can be fsync'd after a file lands in it.
/// The root itself is not opened again: a name directly in it is taken relative to the root's own
/// descriptor.
pub async fn open_parent<'a>(root: &SharedFd, path: &'a VPath) -> io::Result<(SharedFd, &'a str)> {
    let (parent, name) = split(path)?;
    if parent.is_root() {
        return Ok((root.clone(), name));
    }
    let dir = open(root, &parent, libc::O_RDONLY | libc::O_DIRECTORY, 0).await?;
    Ok((Rc::new(dir), name))
}

/// [`open_parent`] with the directory opened by `calls`: uploads open their directory once per
/// file, and through the ring every such open is a hand-off to an io-wq worker. With inline calls
/// a directory directly in the root is kept open for the next upload into it ([`dircache`]).
pub async fn open_parent_with<'a>(
    calls: &FsCalls,
    root: &SharedFd,
    path: &'a VPath,
) -> io::Result<(SharedFd, &'a str)> {
    let (parent, name) = split(path)?;
    if parent.is_root() {
        return Ok((root.clone(), name));
    }
    let rel = cstr(parent.relative())?;
    let keep = calls.is_inline() && !parent.relative().contains('/');
    if keep {
        if let Some(dir) = dircache::lookup(root, &rel) {
            return Ok((dir, name));
        }
    }
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let dir: SharedFd = Rc::new(calls.openat2(root, &rel, flags, 0, RESOLVE_JAIL).await?);
    if keep {
        dircache::keep(root, &rel, &dir);
    }
    Ok((dir, name))
}

fn split(path: &VPath) -> io::Result<(VPath, &str)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EEXIST))?;
    Ok((path.parent().unwrap_or_else(VPath::root), name))
}

/// Stats `path` (following symlinks, within the root).
pub async fn stat(root: &SharedFd, path: &VPath) -> io::Result<FileStat> {
    let fd = Rc::new(open(root, path, libc::O_PATH, 0).await?);
    op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await
}
