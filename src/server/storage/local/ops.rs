//! The session's file-system commands on the local backend (CWD, MKD, DELE, RMD, SIZE, MDTM,
//! RNFR/RNTO, MLST, STAT of a path, and through `attrs` MFMT/SITE UTIME/SITE CHMOD) and directory listings, all confined to the user's root
//! through `jail`. Reserved names (`names`) are hidden from listings and refused as names.

use std::io;

use crate::engine::fd::SharedFd;
use crate::engine::op::statx::FileStat;
use crate::engine::{blocking, dir, op};
use crate::proto::glob::Glob;
use crate::proto::listing::{self, Entry, EntryKind, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome};

use super::attrs;
use super::jail::{cstr, open, open_parent, stat};
use super::names::is_temp_name;

fn to_fs_error(e: &io::Error) -> FsError {
    match e.raw_os_error() {
        Some(errno) => FsError::from_errno(errno),
        None if e.kind() == io::ErrorKind::Unsupported => FsError::Unsupported(e.to_string()),
        None => FsError::Other(e.to_string()),
    }
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
/// With a `pattern`, `path` must be a directory and only its matching entries are read. At most
/// `limit` entries are returned. Temporary upload files are hidden: they are not files yet.
/// Reading runs on a blocking worker.
pub async fn read_entries(
    root: &SharedFd,
    path: &VPath,
    pattern: Option<&Glob>,
    limit: usize,
) -> io::Result<(Vec<Entry>, bool)> {
    let st = stat(root, path).await?;
    if !st.is_dir() {
        if pattern.is_some() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let name = path.file_name().unwrap_or("").to_string();
        return Ok((vec![entry_of(name, &st)], false));
    }
    let fd = open(root, path, libc::O_RDONLY | libc::O_DIRECTORY, 0).await?;
    let pattern = pattern.cloned();
    let raw = blocking::spawn_blocking(move || match &pattern {
        Some(g) => dir::read_dir_filtered(fd, limit, &|name| {
            std::str::from_utf8(name).is_ok_and(|n| g.matches(n))
        }),
        None => dir::read_dir(fd, limit),
    })
    .await??;
    if raw.len() >= limit {
        tracing::info!(path = %path, limit, "listing cut at max_list_entries");
    }
    let mut entries: Vec<Entry> = raw
        .into_iter()
        .filter_map(|r| {
            let name = String::from_utf8(r.name).ok()?;
            if is_temp_name(&name) {
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
    /// SITE CHMOD applies `mode & chmod_mask`.
    pub chmod_mask: u32,
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
                if is_temp_name(name) {
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
                if is_temp_name(name) {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                op::statx::statx(&dir, cstr(name)?, libc::AT_SYMLINK_NOFOLLOW).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Rename { from, to } => {
                let (fdir, fname) = open_parent(root, from).await?;
                let (tdir, tname) = open_parent(root, to).await?;
                if is_temp_name(tname) || is_temp_name(fname) {
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
            FsOp::SetTimes { path, mtime, atime } => {
                attrs::set_times(root, path, *mtime, *atime).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Chmod { path, mode } => {
                let applied = attrs::chmod(root, path, *mode, fx.chmod_mask).await?;
                Ok(FsOutcome::Mode(applied))
            }
            FsOp::Checksum {
                path,
                algo,
                offset,
                length,
            } => super::digests::checksum(root, path, *algo, *offset, *length).await,
            FsOp::StatList(p) => {
                let (entries, _) = read_entries(root, p, None, fx.list_limit).await?;
                Ok(FsOutcome::Lines(listing::stat_lines(&entries, now_secs())))
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
