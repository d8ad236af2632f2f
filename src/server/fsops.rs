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
use crate::engine::op::statx::FileStat;
use crate::engine::{blocking, dir, op};
use crate::proto::listing::{self, Entry, EntryKind, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome};

use super::landing;

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
        .map_err(|e| io::Error::new(e.kind(), format!("opening root {}: {e}", path.display())))?;
    Ok(OwnedFd::from(f))
}

/// Opens the directory containing `path` and returns it with the final name. Opened for reading (not
/// O_PATH) so it can be fsync'd after a file lands in it.
pub async fn open_parent<'a>(root: &SharedFd, path: &'a VPath) -> io::Result<(SharedFd, &'a str)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EEXIST))?;
    let parent = path.parent().unwrap_or_else(VPath::root);
    let dir = open(root, &parent, libc::O_RDONLY | libc::O_DIRECTORY, 0).await?;
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

/// Facts of a stat result, for listings.
pub fn entry_of(name: String, st: &FileStat) -> Entry {
    Entry {
        name,
        kind: kind_of(st.mode),
        size: st.size,
        mtime: st.mtime,
        perm: st.mode & 0o7777,
        nlink: u64::from(st.nlink),
        ino: st.ino,
    }
}

pub fn kind_of(mode: u32) -> EntryKind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// Entries of the directory at `path` (sorted by name), or the single entry if it names a file.
/// Temporary upload files are hidden: they are not files yet. Reading runs on a blocking worker.
pub async fn read_entries(
    root: &SharedFd,
    path: &VPath,
    limit: usize,
) -> io::Result<(Vec<Entry>, bool)> {
    let st = stat(root, path).await?;
    if !st.is_dir() {
        let name = path.file_name().unwrap_or("").to_string();
        return Ok((vec![entry_of(name, &st)], false));
    }
    let fd = open(root, path, libc::O_RDONLY | libc::O_DIRECTORY, 0).await?;
    let raw = blocking::spawn_blocking(move || dir::read_dir(fd, limit)).await??;
    let mut entries: Vec<Entry> = raw
        .into_iter()
        .filter_map(|r| {
            let name = String::from_utf8(r.name).ok()?;
            if landing::is_temp_name(&name) {
                return None;
            }
            Some(Entry {
                name,
                kind: kind_of(r.mode),
                size: r.size,
                mtime: r.mtime,
                perm: r.mode & 0o7777,
                nlink: r.nlink,
                ino: r.ino,
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((entries, true))
}

/// What a session's filesystem operation needs besides the op: the user's root, what they may do
/// (for MLST `perm` facts), and whether renames may replace an existing file.
pub struct FsContext<'a> {
    pub root: &'a SharedFd,
    pub perms: FactPerms,
    pub facts: FactSet,
    pub refuse_overwrite: bool,
    pub list_limit: usize,
}

/// Performs a session's filesystem operation.
pub async fn run(fx: &FsContext<'_>, fsop: &FsOp) -> Result<FsOutcome, FsError> {
    let root = fx.root;
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
                if landing::is_temp_name(name) {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                op::unlink::unlinkat(&dir, cstr(name)?, 0).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::RemoveDir(p) => {
                let (dir, name) = open_parent(root, p).await?;
                op::unlink::unlinkat(&dir, cstr(name)?, libc::AT_REMOVEDIR).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Size(p) => {
                let st = stat(root, p).await?;
                if st.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                Ok(FsOutcome::Size(st.size))
            }
            FsOp::ModifyTime(p) => {
                let st = stat(root, p).await?;
                if st.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                Ok(FsOutcome::ModifyTime(st.mtime))
            }
            FsOp::RenameFrom(p) => {
                // The source itself, not what a symlink points to: rename moves the link.
                let (dir, name) = open_parent(root, p).await?;
                if landing::is_temp_name(name) {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                op::statx::statx(&dir, cstr(name)?, libc::AT_SYMLINK_NOFOLLOW).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Rename { from, to } => {
                let (fdir, fname) = open_parent(root, from).await?;
                let (tdir, tname) = open_parent(root, to).await?;
                if landing::is_temp_name(tname) || landing::is_temp_name(fname) {
                    return Err(io::Error::from_raw_os_error(libc::EACCES));
                }
                let flags = if fx.refuse_overwrite {
                    libc::RENAME_NOREPLACE
                } else {
                    0
                };
                op::rename::renameat(&fdir, cstr(fname)?, &tdir, cstr(tname)?, flags).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Facts(p) => {
                let st = stat(root, p).await?;
                let name = if p.is_root() {
                    "/".to_string()
                } else {
                    p.as_str().to_string()
                };
                let line = listing::facts(&entry_of(name, &st), fx.perms, false, fx.facts)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
                Ok(FsOutcome::Lines(vec![line]))
            }
            FsOp::StatList(p) => {
                let (entries, _) = read_entries(root, p, fx.list_limit).await?;
                let now = now_secs();
                let mut out = Vec::new();
                for e in &entries {
                    listing::list_line(e, now, &mut out);
                }
                let text = String::from_utf8_lossy(&out);
                Ok(FsOutcome::Lines(text.lines().map(str::to_string).collect()))
            }
        }
    }
    .await;
    r.map_err(fs_error)
}

/// Seconds since the epoch, for listing dates.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
