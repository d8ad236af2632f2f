//! Reading a directory, which io_uring cannot do (there is no getdents op): runs on a blocking worker
//! (see [`super::blocking`]), never on a core thread.

use std::ffi::CStr;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};

/// One directory entry with the stat facts a listing needs (not following symlinks).
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub nlink: u64,
    pub ino: u64,
}

/// Reads all entries of the directory open on `dir` (opened O_RDONLY|O_DIRECTORY), except `.` and
/// `..`, stopping after `limit` entries. Blocking: call it through `spawn_blocking`.
pub fn read_dir(dir: OwnedFd, limit: usize) -> io::Result<Vec<RawEntry>> {
    read_dir_filtered(dir, limit, &|_| true)
}

/// Like [`read_dir`], keeping only the names `keep` accepts; rejected names are never stat'ed and
/// do not count towards `limit`, so a wildcard listing of a large directory costs one pass over
/// its names and a stat per match.
pub fn read_dir_filtered(
    dir: OwnedFd,
    limit: usize,
    keep: &dyn Fn(&[u8]) -> bool,
) -> io::Result<Vec<RawEntry>> {
    let raw = dir.into_raw_fd();
    // SAFETY: `raw` is an owned directory descriptor; fdopendir takes ownership (closedir closes it).
    let dp = unsafe { libc::fdopendir(raw) };
    if dp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so the descriptor is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `dp` is a valid DIR stream until closedir below.
        let ent = unsafe { libc::readdir64(dp) };
        if ent.is_null() || out.len() >= limit {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." || !keep(bytes) {
            continue;
        }
        // SAFETY: stat64 is plain old data; fstatat fills it.
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        // SAFETY: `raw` stays valid while `dp` is open; `name` is NUL-terminated.
        let r = unsafe {
            libc::fstatat64(
                libc::dirfd(dp),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            continue; // vanished meanwhile
        }
        out.push(RawEntry {
            name: bytes.to_vec(),
            mode: st.st_mode,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            nlink: st.st_nlink,
            ino: st.st_ino,
        });
    }
    // SAFETY: closes the stream opened above (and its descriptor).
    unsafe { libc::closedir(dp) };
    Ok(out)
}
