//! Landing uploads: a file is invisible under its final name until it is complete.
//!
//! The upload is written to a hidden temporary name in the target directory and renamed over the final
//! name only after the last byte is in, before the success reply; an aborted transfer unlinks it. A
//! rename within one directory is atomic, so a reader sees either the old file or the whole new one.
//! (O_TMPFILE + linkat would also hide the data, but linking it over an existing name still needs a
//! rename, and an unprivileged linkat of an O_TMPFILE needs /proc; one mechanism serves both cases.)
//!
//! Two kinds of resume exist. A MODE B upload that fails after restart markers keeps the data up to the
//! last marker under a hidden per-name "partial" file; `REST <offset>` + STOR continues it and lands it
//! under the final name when complete. A stream-mode `REST` + STOR (or APPE) continues the visible file
//! itself, as FTP clients expect.

use std::ffi::CString;
use std::io;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::path::VPath;

use super::fsops::{self, RESOLVE_HERE};

/// Prefix and suffix of our hidden upload names; listings hide them.
pub const TEMP_PREFIX: &str = ".ringest-";
pub const TEMP_SUFFIX: &str = ".part";

/// Prefix of the resumable MODE B partials, which survive restarts (the crash sweep keeps them).
pub const PARTIAL_PREFIX: &str = ".ringest-partial-";

/// Whether `name` is one of our hidden upload names.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// The hidden name holding the resumable part of an interrupted MODE B upload of `name`. A hash keeps
/// it within NAME_MAX whatever the name's length (FNV-1a: stable across restarts).
pub fn partial_name(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{PARTIAL_PREFIX}{h:016x}{TEMP_SUFFIX}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Writing a hidden file that is renamed over the final name at the end.
    Hidden,
    /// Writing the visible file itself (stream-mode resume / append).
    InPlace,
}

/// An upload in progress: its directory, temporary name, final name and open file.
pub struct Upload {
    dir: SharedFd,
    temp: CString,
    name: CString,
    pub file: SharedFd,
    kind: Kind,
    finished: bool,
}

fn random_temp() -> io::Result<CString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
    fsops::cstr(&format!(
        "{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}",
        u64::from_le_bytes(r)
    ))
}

impl Upload {
    /// Creates a new hidden file in the directory of `path`.
    pub async fn create(root: &SharedFd, path: &VPath) -> io::Result<Upload> {
        let (dir, name) = fsops::open_parent(root, path).await?;
        let name = fsops::cstr(name)?;
        let mut last = io::Error::from_raw_os_error(libc::EEXIST);
        for _ in 0..8 {
            let temp = random_temp()?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
            match op::open::openat2(&dir, temp.clone(), flags, 0o644, RESOLVE_HERE).await {
                Ok(fd) => {
                    return Ok(Upload {
                        dir,
                        temp,
                        name,
                        file: Rc::new(fd),
                        kind: Kind::Hidden,
                        finished: false,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Continues the hidden partial file of an interrupted MODE B upload of `path` at `offset`.
    /// Fails with ENOENT when there is none, or ERANGE when it is shorter than `offset`.
    pub async fn resume_partial(root: &SharedFd, path: &VPath, offset: u64) -> io::Result<Upload> {
        let (dir, name) = fsops::open_parent(root, path).await?;
        let partial = fsops::cstr(&partial_name(name))?;
        let name = fsops::cstr(name)?;
        let fd = Rc::new(
            op::open::openat2(&dir, partial.clone(), libc::O_WRONLY, 0, RESOLVE_HERE).await?,
        );
        let st = op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await?;
        if st.size < offset {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        op::ftruncate::ftruncate(&fd, offset).await?;
        Ok(Upload {
            dir,
            temp: partial,
            name,
            file: fd,
            kind: Kind::Hidden,
            finished: false,
        })
    }

    /// Opens the visible file at `path` to continue it at `offset` (stream REST+STOR, APPE with
    /// `offset` = its size); `create` allows a new file (APPE).
    pub async fn in_place(
        root: &SharedFd,
        path: &VPath,
        offset: Option<u64>,
        create: bool,
    ) -> io::Result<(Upload, u64)> {
        let (dir, name) = fsops::open_parent(root, path).await?;
        let name = fsops::cstr(name)?;
        let flags = libc::O_WRONLY | if create { libc::O_CREAT } else { 0 };
        let fd = Rc::new(op::open::openat2(&dir, name.clone(), flags, 0o644, RESOLVE_HERE).await?);
        let st = op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await?;
        if !st.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let at = match offset {
            Some(o) if o > st.size => return Err(io::Error::from_raw_os_error(libc::ERANGE)),
            Some(o) => {
                op::ftruncate::ftruncate(&fd, o).await?;
                o
            }
            None => st.size,
        };
        let up = Upload {
            dir,
            temp: name.clone(),
            name,
            file: fd,
            kind: Kind::InPlace,
            finished: false,
        };
        Ok((up, at))
    }

    /// The directory the file lands in.
    pub fn dir(&self) -> &SharedFd {
        &self.dir
    }

    /// Makes the complete file visible under its final name, atomically replacing an existing file,
    /// or failing with EEXIST when `noreplace` is set.
    pub async fn land(mut self, noreplace: bool) -> io::Result<()> {
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
        if self.kind != Kind::Hidden {
            self.finished = true;
            return Ok(());
        }
        op::ftruncate::ftruncate(&self.file, upto).await?;
        let name = self
            .name
            .to_str()
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let partial = fsops::cstr(&partial_name(name))?;
        if partial != self.temp {
            op::rename::renameat(&self.dir, self.temp.clone(), &self.dir, partial, 0).await?;
        }
        self.finished = true;
        Ok(())
    }

    /// Removes the hidden file (abort, error). A file written in place stays as far as it got.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_are_hidden_and_bounded() {
        let long = "x".repeat(255);
        for n in ["a", "file with spaces.bin", long.as_str()] {
            let p = partial_name(n);
            assert!(is_temp_name(&p));
            assert!(p.len() < 64);
        }
        assert_ne!(partial_name("a"), partial_name("b"));
    }
}
