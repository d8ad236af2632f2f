//! Landing uploads: a file is invisible under its final name until it is complete.
//!
//! The upload is written to a hidden temporary name in the target directory and renamed over the final
//! name only after the last byte is in, before the success reply; an aborted transfer unlinks it. A
//! rename within one directory is atomic, so a reader sees either the old file or the whole new one.
//! (O_TMPFILE + linkat would also hide the data, but linking it over an existing name still needs a
//! rename, and an unprivileged linkat of an O_TMPFILE needs /proc; one mechanism serves both cases.)

use std::ffi::CString;
use std::io;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::path::VPath;

use super::fsops::{self, RESOLVE_HERE};

/// Prefix of temporary upload names; listings hide them.
pub const TEMP_PREFIX: &str = ".ringest-";
pub const TEMP_SUFFIX: &str = ".part";

/// Whether `name` is one of our temporary upload names.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// An upload in progress: its directory, temporary name, final name and open file.
pub struct Upload {
    dir: SharedFd,
    temp: CString,
    name: CString,
    pub file: SharedFd,
    landed: bool,
}

impl Upload {
    /// Creates the temporary file in the directory of `path`.
    pub async fn create(root: &SharedFd, path: &VPath) -> io::Result<Upload> {
        let (dir, name) = fsops::open_parent(root, path).await?;
        let name = fsops::cstr(name)?;
        let mut last = io::Error::from_raw_os_error(libc::EEXIST);
        for _ in 0..8 {
            let mut r = [0u8; 8];
            getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
            let temp = fsops::cstr(&format!("{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}", u64::from_le_bytes(r)))?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
            match op::open::openat2(&dir, temp.clone(), flags, 0o644, RESOLVE_HERE).await {
                Ok(fd) => return Ok(Upload { dir, temp, name, file: Rc::new(fd), landed: false }),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Moves the complete file under its final name, replacing any existing file atomically.
    pub async fn land(mut self) -> io::Result<()> {
        op::rename::renameat(&self.dir, self.temp.clone(), &self.dir, self.name.clone(), 0).await?;
        self.landed = true;
        Ok(())
    }

    /// Removes the temporary file (abort, error).
    pub async fn discard(mut self) {
        self.landed = true;
        if let Err(e) = op::unlink::unlinkat(&self.dir, self.temp.clone(), 0).await {
            tracing::warn!(error = %e, "could not remove temporary upload file");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.landed {
            // Dropped without land/discard (the session died mid-transfer): remove the temporary file
            // in the background so nothing partial is left behind.
            let dir = self.dir.clone();
            let temp = std::mem::take(&mut self.temp);
            crate::engine::spawn(async move {
                let _ = op::unlink::unlinkat(&dir, temp, 0).await;
            })
            .detach();
        }
    }
}
