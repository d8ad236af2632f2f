//! Where the local file system's calls run, chosen once per core from `fs_ops`: as direct system
//! calls on the core thread (`Inline`, the default: no io-wq hand-off per call) or as io_uring ops
//! (`Ring`: the core never waits on the file system). Every call that has both forms is here, side
//! by side, so the rest of storage (and the receive paths, through [`FsCalls::is_inline`] and
//! [`FsCalls::splices`]) asks this value instead of a process-wide flag.
//!
//! It also remembers how a finished O_TMPFILE gets its name on this core, learned at the first
//! refusal: `linkat(AT_EMPTY_PATH)` needs CAP_DAC_READ_SEARCH, the `/proc/self/fd` form needs
//! /proc; without either, uploads fall back to hidden names (see `landing`).

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::OwnedFd;

use crate::engine::direct;
use crate::engine::fd::{self, SharedFd};
use crate::engine::op;
use crate::proto::checksum::{attr_name, Algo, Stored};
use crate::server::config::policies::DirectIo;
use crate::server::config::server::{DataPathKind, FsOps, ServerConfig};

/// How an anonymous O_TMPFILE is linked under a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// `linkat(fd, "", dir, name, AT_EMPTY_PATH)`.
    EmptyPath,
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)`.
    Proc,
    /// Neither works here: create hidden named files instead of O_TMPFILE.
    None,
}

/// One core's way of making file-system calls.
#[derive(Debug)]
pub struct FsCalls {
    inline: bool,
    splice: bool,
    /// Bytes after which new uploads switch to O_DIRECT (`None`: never).
    direct_after: Option<u64>,
    link: Cell<LinkMode>,
}

impl FsCalls {
    /// `data_path` and `direct_io` are resolved here too (`Auto` depends on `fs_ops`), so a
    /// receive path never decides them again.
    pub fn new(cfg: &ServerConfig) -> FsCalls {
        let ops = cfg.fs_ops;
        FsCalls {
            inline: ops == FsOps::Inline,
            splice: cfg.data_path.resolve(ops) == DataPathKind::Splice,
            direct_after: match cfg.direct_io {
                DirectIo::Off => None,
                DirectIo::On => Some(0),
                DirectIo::Auto => Some(cfg.direct_io_threshold),
            },
            link: Cell::new(LinkMode::EmptyPath),
        }
    }

    /// Bytes after which a new upload switches to O_DIRECT writes, if it does.
    pub fn direct_after(&self) -> Option<u64> {
        self.direct_after
    }

    /// Whether calls run directly on the core (the receive paths write and splice accordingly).
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Whether binary stream-mode uploads go socket -> pipe -> file (`data_path`, resolved).
    pub fn splices(&self) -> bool {
        self.splice
    }

    /// How O_TMPFILEs are linked on this core, as far as it has learned.
    pub fn link_mode(&self) -> LinkMode {
        self.link.get()
    }

    /// Records that `failed` was refused, and returns the next mode to try.
    pub fn link_refused(&self, failed: LinkMode, why: &io::Error) -> LinkMode {
        let next = match failed {
            LinkMode::EmptyPath => LinkMode::Proc,
            _ => LinkMode::None,
        };
        if self.link.get() == failed {
            self.link.set(next);
            tracing::info!(error = %why, "linkat of O_TMPFILE refused; trying the next landing method");
        }
        next
    }

    /// Stores a checksum with the open file (an extended attribute; see `digests`).
    pub async fn set_checksum(
        &self,
        file: &SharedFd,
        algo: Algo,
        value: &Stored,
    ) -> io::Result<()> {
        let name = CString::new(attr_name(algo))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let value = value.encode().into_bytes();
        if self.inline {
            direct::fsetxattr(file, &name, &value)
        } else {
            op::xattr::fsetxattr(file, name, value, 0).await
        }
    }

    /// `openat2` of `path` relative to `dir`.
    pub async fn openat2(
        &self,
        dir: &SharedFd,
        path: &CStr,
        flags: i32,
        mode: u32,
        resolve: u64,
    ) -> io::Result<OwnedFd> {
        if self.inline {
            direct::openat2(dir, path, flags, mode, resolve)
        } else {
            op::open::openat2(dir, path.to_owned(), flags, mode, resolve).await
        }
    }

    /// Links the anonymous `file` as `to` in `dir` in `mode` (not `LinkMode::None`).
    pub async fn link_anonymous(
        &self,
        mode: LinkMode,
        file: &SharedFd,
        dir: &SharedFd,
        to: &CString,
    ) -> io::Result<()> {
        match mode {
            LinkMode::EmptyPath if self.inline => {
                direct::linkat(file, c"", dir, to, libc::AT_EMPTY_PATH)
            }
            LinkMode::EmptyPath => {
                op::link::linkat(
                    file,
                    CString::default(),
                    dir,
                    to.clone(),
                    libc::AT_EMPTY_PATH,
                )
                .await
            }
            LinkMode::Proc => {
                let proc = CString::new(format!("/proc/self/fd/{}", fd::raw(file)))
                    .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                op::link::linkat(dir, proc, dir, to.clone(), libc::AT_SYMLINK_FOLLOW).await
            }
            LinkMode::None => Err(io::Error::from_raw_os_error(libc::EPERM)),
        }
    }
}
