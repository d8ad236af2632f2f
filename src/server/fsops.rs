//! Filesystem operations confined to the user's root.
//!
//! Every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT) relative to the root directory,
//! so `..` and symlinks (absolute or relative) can never lead outside it. Operations that take a name
//! (mkdir, unlink, rename) first open the parent directory that way, then act on the single final
//! component relative to it: the final component is never followed as a symlink.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::engine::op::statx::FileStat;
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome};

use super::core::CoreCtx;

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

/// Opens the directory containing `path` (O_PATH) and returns it with the final name.
pub async fn open_parent<'a>(root: &SharedFd, path: &'a VPath) -> io::Result<(SharedFd, &'a str)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EEXIST))?;
    let parent = path.parent().unwrap_or_else(VPath::root);
    let dir = open(root, &parent, libc::O_PATH | libc::O_DIRECTORY, 0).await?;
    Ok((Rc::new(dir), name))
}

/// Stats `path` (following symlinks, within the root).
pub async fn stat(root: &SharedFd, path: &VPath) -> io::Result<FileStat> {
    let fd = Rc::new(open(root, path, libc::O_PATH, 0).await?);
    op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await
}

fn to_fs_error(e: &io::Error) -> FsError {
    e.raw_os_error()
        .map(FsError::from_errno)
        .unwrap_or_else(|| FsError::Other(e.to_string()))
}

/// Maps an I/O error to the session's view of it.
pub fn fs_error(e: io::Error) -> FsError {
    to_fs_error(&e)
}

/// Performs a session's filesystem operation.
pub async fn run(ctx: &CoreCtx, fsop: &FsOp) -> Result<FsOutcome, FsError> {
    let root = &ctx.root;
    let r: io::Result<FsOutcome> = async {
        match fsop {
            FsOp::ChangeDir(p) => {
                let st = stat(root, p).await?;
                if !st.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                Ok(FsOutcome::Done)
            }
            FsOp::MakeDir(p) => {
                let (dir, name) = open_parent(root, p).await?;
                op::mkdir::mkdirat(&dir, cstr(name)?, 0o755).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Delete(p) => {
                let (dir, name) = open_parent(root, p).await?;
                op::unlink::unlinkat(&dir, cstr(name)?, 0).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Size(p) => {
                let st = stat(root, p).await?;
                if st.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                Ok(FsOutcome::Size(st.size))
            }
        }
    }
    .await;
    r.map_err(fs_error)
}
