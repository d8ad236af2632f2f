//! Direct (blocking) file-system calls on the core thread, for the small metadata operations that
//! io_uring always hands to an io-wq worker (create, link, rename) and for small page-cache writes.
//!
//! Each such punt costs a worker wake-up and two context switches; for a 4 KiB upload that is most of
//! the server's work. The calls here usually finish in microseconds from the page and dentry caches,
//! but they can block (a cold directory block, writeback throttling), which stalls every session of
//! the core meanwhile. The server uses them with `fs_ops = "inline"` (the default, chosen by
//! measurement); `fs_ops = "ring"` keeps every file-system call on the ring.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::fd::SharedFd;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// openat2(2) with the same arguments as the ring op.
pub fn openat2(
    dir: &SharedFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    // struct open_how as the kernel defines it (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if creates { u64::from(mode) } else { 0 },
        resolve,
    };
    // SAFETY: `path` is NUL-terminated and `how` is a live open_how of the size passed.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The (device, inode) of `path` under `dir` (of `dir` itself with an empty path and
/// `AT_EMPTY_PATH`), by statx(2): what tells two names of one file apart from two files.
pub fn file_id(dir: &SharedFd, path: &CStr, flags: i32) -> io::Result<(u64, u64)> {
    // SAFETY: statx is plain old data that the call fills; the path is NUL-terminated and the
    // descriptor alive.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `sx` outlives the call.
    check(unsafe {
        libc::statx(
            dir.as_raw_fd(),
            path.as_ptr(),
            flags,
            libc::STATX_INO,
            &mut sx,
        )
    } as libc::c_long)?;
    let dev = (u64::from(sx.stx_dev_major) << 32) | u64::from(sx.stx_dev_minor);
    Ok((dev, sx.stx_ino))
}

/// linkat(2).
pub fn linkat(
    olddir: &SharedFd,
    old: &CStr,
    newdir: &SharedFd,
    new: &CStr,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated; the descriptors are alive.
    check(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            old.as_ptr(),
            newdir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    } as libc::c_long)
    .map(drop)
}

/// renameat2(2).
pub fn renameat(
    olddir: &SharedFd,
    old: &CStr,
    newdir: &SharedFd,
    new: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated; the descriptors are alive.
    check(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            old.as_ptr(),
            newdir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    } as libc::c_long)
    .map(drop)
}

/// pwrite(2) of all of `buf` at `offset` (loops over short writes).
pub fn pwrite_all(fd: &SharedFd, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice of the given length.
        let n = check(unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                offset as i64,
            )
        } as libc::c_long)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
        offset += n as u64;
    }
    Ok(())
}

/// splice(2) of up to `len` bytes; `off_out` is the file offset to write at (`None` for a pipe or
/// socket). Returns the bytes moved, 0 at the input's end of file.
pub fn splice(
    fd_in: &SharedFd,
    fd_out: &SharedFd,
    off_out: Option<u64>,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let mut off = off_out.map(|o| o as libc::loff_t);
    let off_ptr = match off.as_mut() {
        Some(o) => o as *mut libc::loff_t,
        None => std::ptr::null_mut(),
    };
    // SAFETY: the descriptors are alive; `off_ptr` is null or points at `off`, which outlives the
    // call.
    check(unsafe {
        libc::splice(
            fd_in.as_raw_fd(),
            std::ptr::null_mut(),
            fd_out.as_raw_fd(),
            off_ptr,
            len,
            flags,
        )
    } as libc::c_long)
    .map(|n| n as usize)
}

/// Turns O_DIRECT on or off for `fd` (fcntl F_SETFL; Linux lets O_DIRECT change on an open file).
/// EINVAL means the file system does not support direct I/O (tmpfs before 6.6, some FUSE mounts).
pub fn set_direct(fd: &SharedFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL on a live descriptor reads nothing from us.
    let flags =
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } as libc::c_long)? as i32;
    let want = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    if want == flags {
        return Ok(());
    }
    // SAFETY: fcntl F_SETFL with an int argument on a live descriptor.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want) } as libc::c_long).map(drop)
}

/// ftruncate(2): the fallback for kernels whose io_uring has no FTRUNCATE (before 6.9). Cutting a
/// file back frees its blocks past `len`, which for a large resumed upload can take a while; it
/// runs only on REST/APPE, where the client waits for the reply anyway.
pub fn ftruncate(fd: &SharedFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain ftruncate on a live descriptor; no pointers.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) } as libc::c_long).map(drop)
}

/// fsetxattr(2) on the core thread: an inode update, like the metadata calls above.
pub fn fsetxattr(fd: &impl AsRawFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and `value` valid for `value.len()` bytes; the kernel only
    // reads both during the call, and `fd` is open.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// fgetxattr(2) into `buf` (its length is the most read); the value's length.
pub fn fgetxattr(fd: &impl AsRawFd, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `name` is NUL-terminated and `buf` writable for `buf.len()` bytes during the call.
    let ret = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    check(ret as libc::c_long).map(|n| n as usize)
}
