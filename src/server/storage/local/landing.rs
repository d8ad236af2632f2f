//! Landing uploads: a file is invisible under its final name until it is complete.
//!
//! An upload is written into an anonymous `O_TMPFILE` in the target directory: it has no name at all
//! while the bytes arrive, and a crash or an abort leaves nothing behind. When the last byte is in,
//! `linkat` gives it its final name in one directory operation, before the success reply. That is half
//! the directory work of the classic "hidden temporary name, then rename" (create + rename both lock
//! and search the directory; a profile of 4 KiB uploads on ext4 spent most server time there). An
//! existing file is replaced atomically by linking under a temporary name and renaming over it.
//! Filesystems without O_TMPFILE, or a linkat the kernel refuses (an unprivileged server without
//! /proc), fall back to the hidden-name scheme.
//!
//! Two kinds of resume exist. A MODE B upload that fails after restart markers keeps the data up to the
//! last marker under a hidden per-name "partial" file; `REST <offset>` + STOR continues it and lands it
//! under the final name when complete. A stream-mode `REST` + STOR (or APPE) continues the visible file
//! itself, as FTP clients expect.

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::checksum::{Algo, InOrder};
use crate::proto::path::VPath;

use super::calls::{FsCalls, LinkMode};
use super::jail::{cstr, open_parent_with, RESOLVE_HERE};
use super::names::{partial_name, random_temp};

/// A local upload's file as the receive paths see it: written at explicit offsets, by direct
/// calls or ring ops (`inline`), for binary stream uploads by splice (`splice`), and past
/// `direct_after` bytes with O_DIRECT from the registered buffers.
#[derive(Clone, Copy)]
pub struct FileSink<'a> {
    pub file: &'a SharedFd,
    pub inline: bool,
    pub splice: bool,
    /// Bytes after which the upload bypasses the page cache; `None` for files written in place
    /// (APPE, stream REST), which keep the page cache's view of the existing bytes.
    pub direct_after: Option<u64>,
    /// The inline checksums of this upload, fed by every receive path as it writes
    /// ([`FileSink::observe`]). With them, `splice` is off: its bytes never reach user space.
    pub digest: Option<&'a RefCell<InOrder>>,
}

impl FileSink<'_> {
    /// Tells the inline checksums (if any) that `bytes` are being written at `offset`. Called
    /// once per piece of the file, before or as it is written, never for a retried short write.
    pub fn observe(&self, offset: u64, bytes: &[u8]) {
        if let Some(d) = self.digest {
            d.borrow_mut().feed(offset, bytes);
        }
    }
}

/// Where an in-place upload starts writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InPlaceAt {
    /// At the end of the file (APPE).
    End,
    /// At this offset, the file cut there first (REST + STOR: what follows is replaced).
    Cut(u64),
    /// At this offset, over what is there and past the end (ESTO A: a hole below it if the file
    /// is shorter), nothing cut.
    Over(u64),
}

/// Bytes of MODE E blocks held out of order for one upload's inline checksums; past this (a lost
/// or much delayed block) the digest is given up and computed by reading when asked for.
pub const DIGEST_HOLD_CAP: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Writing an unnamed O_TMPFILE that is linked under the final name at the end.
    Anonymous,
    /// Writing a hidden file that is renamed over the final name at the end.
    Hidden,
    /// Writing the visible file itself (stream-mode resume / append).
    InPlace,
}

/// An upload in progress: its directory, temporary name, final name and open file.
pub struct Upload {
    calls: Rc<FsCalls>,
    dir: SharedFd,
    temp: CString,
    name: CString,
    pub file: SharedFd,
    kind: Kind,
    finished: bool,
    /// Inline checksums, for uploads that start at offset 0 with checksums configured.
    digest: Option<RefCell<InOrder>>,
}

impl Upload {
    /// Creates the file an upload to `path` is written into: an anonymous O_TMPFILE where possible,
    /// else a new hidden file.
    pub async fn create(calls: &Rc<FsCalls>, root: &SharedFd, path: &VPath) -> io::Result<Upload> {
        let (dir, name) = open_parent_with(calls, root, path).await?;
        let name = cstr(name)?;
        if calls.link_mode() != LinkMode::None {
            let flags = libc::O_WRONLY | libc::O_TMPFILE;
            let opened = calls.openat2(&dir, c".", flags, 0o644, RESOLVE_HERE).await;
            match opened {
                Ok(fd) => {
                    let file = Rc::new(fd);
                    return Ok(Upload {
                        calls: calls.clone(),
                        dir,
                        temp: CString::default(),
                        name,
                        file,
                        kind: Kind::Anonymous,
                        finished: false,
                        digest: None,
                    });
                }
                // No O_TMPFILE on this filesystem: use names.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let mut last = io::Error::from_raw_os_error(libc::EEXIST);
        for _ in 0..8 {
            let temp = random_temp()?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
            match op::open::openat2(&dir, temp.clone(), flags, 0o644, RESOLVE_HERE).await {
                Ok(fd) => {
                    return Ok(Upload {
                        calls: calls.clone(),
                        dir,
                        temp,
                        name,
                        file: Rc::new(fd),
                        kind: Kind::Hidden,
                        finished: false,
                        digest: None,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Gives the anonymous file the name `to` in its directory; EEXIST if the name is taken.
    async fn link_anonymous(&self, to: CString) -> io::Result<()> {
        let mut mode = self.calls.link_mode();
        loop {
            let res = self
                .calls
                .link_anonymous(mode, &self.file, &self.dir, &to)
                .await;
            match res {
                // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc may be missing. Try the next way.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::EPERM | libc::EACCES)
                    ) && mode != LinkMode::None =>
                {
                    mode = self.calls.link_refused(mode, &e);
                    if mode == LinkMode::None {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Continues the hidden partial file of an interrupted MODE B upload of `path` at `offset`.
    /// Fails with ENOENT when there is none, or ERANGE when it is shorter than `offset`.
    pub async fn resume_partial(
        calls: &Rc<FsCalls>,
        root: &SharedFd,
        path: &VPath,
        offset: u64,
    ) -> io::Result<Upload> {
        let (dir, name) = open_parent_with(calls, root, path).await?;
        let partial = cstr(&partial_name(name))?;
        let name = cstr(name)?;
        let fd = Rc::new(
            op::open::openat2(&dir, partial.clone(), libc::O_WRONLY, 0, RESOLVE_HERE).await?,
        );
        let st = op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await?;
        if st.size < offset {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        op::ftruncate::ftruncate(&fd, offset).await?;
        Ok(Upload {
            calls: calls.clone(),
            dir,
            temp: partial,
            name,
            file: fd,
            kind: Kind::Hidden,
            finished: false,
            digest: None,
        })
    }

    /// Opens the visible file at `path` to write it from `at` on (stream REST+STOR, APPE at its
    /// size, ESTO at any offset); `create` allows a new file (APPE, ESTO).
    pub async fn in_place(
        calls: &Rc<FsCalls>,
        root: &SharedFd,
        path: &VPath,
        at: InPlaceAt,
        create: bool,
    ) -> io::Result<(Upload, u64)> {
        let (dir, name) = open_parent_with(calls, root, path).await?;
        let name = cstr(name)?;
        let flags = libc::O_WRONLY | if create { libc::O_CREAT } else { 0 };
        let fd = Rc::new(op::open::openat2(&dir, name.clone(), flags, 0o644, RESOLVE_HERE).await?);
        let st = op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await?;
        if !st.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let at = match at {
            InPlaceAt::Cut(o) if o > st.size => {
                return Err(io::Error::from_raw_os_error(libc::ERANGE))
            }
            InPlaceAt::Cut(o) => {
                op::ftruncate::ftruncate(&fd, o).await?;
                o
            }
            InPlaceAt::End => st.size,
            InPlaceAt::Over(o) => o,
        };
        let up = Upload {
            calls: calls.clone(),
            dir,
            temp: name.clone(),
            name,
            file: fd,
            kind: Kind::InPlace,
            finished: false,
            digest: None,
        };
        Ok((up, at))
    }

    /// The directory the file lands in.
    pub fn dir(&self) -> &SharedFd {
        &self.dir
    }

    /// Where the receive paths write this upload's bytes.
    pub fn sink(&self) -> FileSink<'_> {
        FileSink {
            file: &self.file,
            inline: self.calls.is_inline(),
            splice: self.calls.splices() && self.digest.is_none(),
            direct_after: self
                .calls
                .direct_after()
                .filter(|_| self.kind != Kind::InPlace),
            digest: self.digest.as_ref(),
        }
    }

    /// Computes `algos` inline while the bytes arrive (the upload must start at offset 0). Not
    /// for a visible file written in place (APPE of a new file): another session may write it at
    /// the same time, and its bytes would be in the file's size and time but not in the digest.
    pub fn with_digests(mut self, algos: &[Algo]) -> Upload {
        if !algos.is_empty() && self.kind != Kind::InPlace {
            self.digest = Some(RefCell::new(InOrder::new(algos, DIGEST_HOLD_CAP)));
        }
        self
    }

    /// Stores the inline checksums with the file, tied to its final size and modification time,
    /// when every byte from 0 to its end went through them. Failing to store is logged, never an
    /// error of the upload: the value is then computed by reading when asked for.
    pub async fn store_digests(&mut self) {
        let Some(gate) = self.digest.take() else {
            return;
        };
        let st = match op::statx::statx(&self.file, CString::default(), libc::AT_EMPTY_PATH).await {
            Ok(st) => st,
            Err(e) => {
                tracing::debug!(error = %e, "no stat for the inline checksums; not stored");
                return;
            }
        };
        let Some(digests) = gate.into_inner().finish(st.size) else {
            tracing::debug!(
                size = st.size,
                "inline checksums incomplete (out of order past the cap); not stored"
            );
            return;
        };
        for (algo, hex) in digests {
            let value = crate::proto::checksum::Stored {
                size: st.size,
                mtime_sec: st.mtime,
                mtime_nsec: st.mtime_nsec,
                hex,
            };
            if let Err(e) = self.calls.set_checksum(&self.file, algo, &value).await {
                super::digests::store_failed(&e);
                return;
            }
        }
    }

    /// Reserves `len` bytes from `offset` (ALLO) so a full disk shows before the data arrives;
    /// KEEP_SIZE so a shorter upload does not end in zeros. Only ENOSPC is an error: a file system
    /// without fallocate still takes the upload.
    pub async fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        match op::fallocate::fallocate(&self.file, offset, len, libc::FALLOC_FL_KEEP_SIZE).await {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(e),
            _ => Ok(()),
        }
    }

    /// Gives the anonymous file the name `to`, atomically replacing whatever has it: link under a
    /// hidden name, then rename that over `to` (the hidden link is removed if the rename fails).
    async fn link_replacing(&self, to: CString) -> io::Result<()> {
        let temp = random_temp()?;
        self.link_anonymous(temp.clone()).await?;
        if let Err(e) = op::rename::renameat(&self.dir, temp.clone(), &self.dir, to, 0).await {
            let _ = op::unlink::unlinkat(&self.dir, temp, 0).await;
            return Err(e);
        }
        Ok(())
    }

    /// Makes the complete file visible under its final name, atomically replacing an existing file,
    /// or failing with EEXIST when `noreplace` is set.
    pub async fn land(mut self, noreplace: bool) -> io::Result<()> {
        if self.kind == Kind::Anonymous {
            match self.link_anonymous(self.name.clone()).await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !noreplace => {
                    self.link_replacing(self.name.clone()).await?;
                }
                Err(e) => return Err(e),
            }
            self.finished = true;
            return Ok(());
        }
        if self.kind == Kind::Hidden {
            let flags = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
            op::rename::renameat(
                &self.dir,
                self.temp.clone(),
                &self.dir,
                self.name.clone(),
                flags,
            )
            .await?;
        }
        self.finished = true;
        Ok(())
    }

    /// Keeps the first `upto` bytes as the resumable partial of this name (MODE B after a restart
    /// marker); anything beyond the marker is not known to be good and is cut off.
    pub async fn keep_partial(mut self, upto: u64) -> io::Result<()> {
        if self.kind == Kind::InPlace {
            self.finished = true;
            return Ok(());
        }
        op::ftruncate::ftruncate(&self.file, upto).await?;
        let name = self
            .name
            .to_str()
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let partial = cstr(&partial_name(name))?;
        if self.kind == Kind::Anonymous {
            // An older partial of the same name is replaced.
            self.link_replacing(partial).await?;
            self.finished = true;
            return Ok(());
        }
        if partial != self.temp {
            op::rename::renameat(&self.dir, self.temp.clone(), &self.dir, partial, 0).await?;
        }
        self.finished = true;
        Ok(())
    }

    /// Abandons an upload known to be incomplete (it ended short of the size announced with ALLO):
    /// like [`discard`](Self::discard), and a file written in place (REST + STOR, APPE) is cut
    /// back to `len`, its size before this transfer, so nothing of the short upload remains.
    pub async fn abandon(mut self, len: u64) {
        if self.kind != Kind::InPlace {
            return self.discard().await;
        }
        self.finished = true;
        if let Err(e) = op::ftruncate::ftruncate(&self.file, len).await {
            tracing::warn!(error = %e, "could not cut a short upload back to its previous size");
        }
    }

    /// Drops the upload (abort, error): an anonymous file vanishes when closed, a hidden one is
    /// unlinked. A file written in place stays as far as it got.
    pub async fn discard(mut self) {
        self.finished = true;
        if self.kind == Kind::Hidden {
            if let Err(e) = op::unlink::unlinkat(&self.dir, self.temp.clone(), 0).await {
                tracing::warn!(error = %e, "could not remove temporary upload file");
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished && self.kind == Kind::Hidden {
            // Dropped without land/discard (the session died mid-transfer): remove the hidden file in
            // the background so nothing partial is left behind.
            let dir = self.dir.clone();
            let temp = std::mem::take(&mut self.temp);
            crate::engine::spawn(async move {
                let _ = op::unlink::unlinkat(&dir, temp, 0).await;
            })
            .detach();
        }
    }
}
