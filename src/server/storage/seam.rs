//! The storage seam: everything a session does with files goes through these types, and each
//! dispatches to its backend with one `match` (an enum, not a trait object: no allocation or
//! indirect call per operation, and the async methods need no boxing). Today the only backend is
//! the local file system; see the module docs of `storage` for how an object store fits.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::glob::Glob;
use crate::proto::listing::{Entry, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome, Transfer};
use crate::server::config::server::ServerConfig;

use super::local::fs::{LocalFs, LocalRoot};
use super::local::jail::open_root_dir;
use super::local::landing::{self, FileSink};
use super::local::roots::process_can_write;

/// One core's storage backend, made once when the core starts.
pub enum Backend {
    Local(Rc<LocalFs>),
}

impl Backend {
    pub fn new(cfg: &ServerConfig) -> Backend {
        Backend::Local(Rc::new(LocalFs::new(cfg)))
    }

    /// A session's storage beneath `root`.
    pub fn session(&self, root: UserRoot) -> Storage {
        let (Backend::Local(fs), UserRoot::Local(dir)) = (self, root);
        Storage::Local(LocalRoot::new(fs.clone(), Rc::new(dir)))
    }
}

/// A user's root, opened once per login (or at start-up for the default user). `Send`, so it can
/// be opened on the blocking pool or handed to each core.
pub enum UserRoot {
    /// The root directory, opened for reading (so the batch fsync policy can `syncfs` it).
    Local(OwnedFd),
}

impl UserRoot {
    /// Opens the root at `path`. Blocking (a path lookup): call at start-up or on the blocking
    /// pool.
    pub fn open(path: &Path) -> io::Result<UserRoot> {
        Ok(UserRoot::Local(open_root_dir(path)?))
    }

    /// Whether this process can create files in the root (for the start-up warning: an open root
    /// is judged by its descriptor, whatever the directories above it allow).
    pub fn is_writable(&self) -> bool {
        let UserRoot::Local(fd) = self;
        process_can_write(fd)
    }

    /// The same root again, for another core.
    pub fn try_clone(&self) -> io::Result<UserRoot> {
        let UserRoot::Local(fd) = self;
        Ok(UserRoot::Local(fd.try_clone()?))
    }
}

/// One session's storage (cheap to clone).
#[derive(Clone)]
pub enum Storage {
    Local(LocalRoot),
}

/// An upload opened by [`Storage::open_upload`].
pub struct Opened {
    pub upload: Upload,
    /// Where the upload's first byte goes (the REST offset, or the size of the file APPE extends).
    pub offset: u64,
    /// The name STOU picked.
    pub unique: Option<VPath>,
}

impl Storage {
    /// Opens where `t`'s bytes go: a new invisible file, the file being appended to or resumed,
    /// or a MODE B partial. Nothing is visible under the final name until [`Storage::land`].
    pub async fn open_upload(&self, t: &Transfer) -> io::Result<Opened> {
        let Storage::Local(l) = self;
        let (up, offset, unique) = l.open_upload(t).await?;
        Ok(Opened {
            upload: Upload::Local(up),
            offset,
            unique,
        })
    }

    /// Makes a complete upload visible under its name, durable as the policy says, before the
    /// success reply. `noreplace`: EEXIST instead of replacing an existing file.
    pub async fn land(&self, upload: Upload, noreplace: bool) -> io::Result<()> {
        let (Storage::Local(l), Upload::Local(up)) = (self, upload);
        l.land(up, noreplace).await
    }

    /// Whether uploads must never replace an existing file (server policy).
    pub fn refuses_overwrite(&self) -> bool {
        let Storage::Local(l) = self;
        l.refuses_overwrite()
    }

    pub async fn open_download(&self, path: &VPath) -> io::Result<Download> {
        let Storage::Local(l) = self;
        let (fd, len) = l.open_download(path).await?;
        Ok(Download::Local { fd, len })
    }

    /// Directory entries (sorted by name; with a wildcard `pattern`, only the matching ones), or
    /// the single entry of a file (`false`).
    pub async fn list(
        &self,
        path: &VPath,
        pattern: Option<&Glob>,
    ) -> io::Result<(Vec<Entry>, bool)> {
        let Storage::Local(l) = self;
        l.list(path, pattern).await
    }

    /// Runs a session's file command (CWD, MKD, DELE, RMD, SIZE, MDTM, RNFR/RNTO, MLST, STAT).
    pub async fn run(
        &self,
        fsop: &FsOp,
        perms: FactPerms,
        facts: FactSet,
    ) -> Result<FsOutcome, FsError> {
        let Storage::Local(l) = self;
        l.run(fsop, perms, facts).await
    }
}

/// Where an upload's bytes are going, as the receive paths see it.
pub enum Target<'a> {
    /// A file written at explicit offsets: fixed writes from the registered buffers, or splice.
    File(FileSink<'a>),
}

/// An upload in progress. Dropping it without [`Storage::land`], [`Upload::discard`] or
/// [`Upload::keep_partial`] (a session that died) still leaves nothing visible.
pub enum Upload {
    Local(landing::Upload),
}

impl Upload {
    pub fn target(&self) -> Target<'_> {
        let Upload::Local(up) = self;
        Target::File(up.sink())
    }

    /// ALLO: reserves `len` bytes from `offset`; an error only when the space is not there.
    pub async fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        let Upload::Local(up) = self;
        up.reserve(offset, len).await
    }

    /// Keeps the first `upto` bytes for a later `REST` + STOR (MODE B, after a restart marker).
    pub async fn keep_partial(self, upto: u64) -> io::Result<()> {
        let Upload::Local(up) = self;
        up.keep_partial(upto).await
    }

    /// Drops an upload known to be incomplete (short of its ALLO size): nothing becomes visible,
    /// and a file continued in place is cut back to `len`, its size before the transfer.
    pub async fn abandon(self, len: u64) {
        let Upload::Local(up) = self;
        up.abandon(len).await
    }

    /// Drops the upload (abort, error): nothing becomes visible.
    pub async fn discard(self) {
        let Upload::Local(up) = self;
        up.discard().await
    }
}

/// A file opened for RETR.
pub enum Download {
    /// `len`: the size when it was opened (the open's own statx).
    Local { fd: SharedFd, len: u64 },
}

impl Download {
    /// Reads into `buf`'s spare capacity at `offset`; 0 at the end. Hands `buf` back.
    pub async fn read(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        let Download::Local { fd, .. } = self;
        op::read::read(fd, buf, offset).await
    }

    /// The file's size when it was opened (a MODE E send hands out blocks up to it).
    pub fn size(&self) -> u64 {
        let Download::Local { len, .. } = self;
        *len
    }
}
