//! The storage seam: everything a session does with files goes through these types, and each
//! dispatches to its backend with one `match` (an enum, not a trait object: no allocation or
//! indirect call per operation, and the async methods need no boxing). Two backends: the local
//! file system, and an S3 bucket (`storage = "s3"`, see `s3`).

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

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
use super::s3::client::S3Client;
use super::s3::root::{S3Core, S3Download, S3Root};
use super::s3::upload::S3Upload;
use crate::server::config::policies::StorageKind;
use crate::server::observe::metrics::CoreMetrics;

/// One core's storage backend, made once when the core starts.
pub enum Backend {
    Local(Rc<LocalFs>),
    S3(Rc<S3Core>),
}

/// A session's root and its core's backend of different kinds (a bug, never a user's doing).
fn mismatch() -> io::Error {
    io::Error::other("storage backend and user root differ in kind")
}

impl Backend {
    /// `s3`: the shared client and this core's share of the memory cap, with `storage = "s3"`.
    pub fn new(
        cfg: &ServerConfig,
        s3: Option<(Arc<S3Client>, u64)>,
        metrics: Arc<CoreMetrics>,
    ) -> Backend {
        match s3 {
            Some((client, share)) => Backend::S3(Rc::new(S3Core::new(cfg, client, share, metrics))),
            None => Backend::Local(Rc::new(LocalFs::new(cfg))),
        }
    }

    /// A session's storage beneath `root`.
    pub fn session(&self, root: UserRoot) -> io::Result<Storage> {
        match (self, root) {
            (Backend::Local(fs), UserRoot::Local(dir)) => {
                Ok(Storage::Local(LocalRoot::new(fs.clone(), Rc::new(dir))))
            }
            (Backend::S3(core), UserRoot::S3 { prefix }) => {
                Ok(Storage::S3(S3Root::new(core.clone(), prefix)))
            }
            _ => Err(mismatch()),
        }
    }
}

/// A user's root, opened once per login (or at start-up for the default user). `Send`, so it can
/// be opened on the blocking pool or handed to each core.
pub enum UserRoot {
    /// The root directory, opened for reading (so the batch fsync policy can `syncfs` it).
    Local(OwnedFd),
    /// The user's key prefix in the bucket ("" or ending in '/').
    S3 { prefix: String },
}

impl UserRoot {
    /// Opens the root at `path`. Blocking (a path lookup): call at start-up or on the blocking
    /// pool.
    pub fn open(path: &Path) -> io::Result<UserRoot> {
        Ok(UserRoot::Local(open_root_dir(path)?))
    }

    /// The root of user `name` whose local root is `path`, in the configured storage.
    pub fn for_user(cfg: &ServerConfig, name: &str, path: &Path) -> io::Result<UserRoot> {
        match cfg.storage {
            StorageKind::Local => UserRoot::open(path),
            StorageKind::S3 => Ok(UserRoot::S3 {
                prefix: cfg.s3.prefix_of(name),
            }),
        }
    }

    /// Whether this process can create files in the root (for the start-up warning: an open root
    /// is judged by its descriptor, whatever the directories above it allow). A bucket's
    /// permissions show only when a request is made.
    pub fn is_writable(&self) -> bool {
        match self {
            UserRoot::Local(fd) => process_can_write(fd),
            UserRoot::S3 { .. } => true,
        }
    }

    /// The same root again, for another core.
    pub fn try_clone(&self) -> io::Result<UserRoot> {
        match self {
            UserRoot::Local(fd) => Ok(UserRoot::Local(fd.try_clone()?)),
            UserRoot::S3 { prefix } => Ok(UserRoot::S3 {
                prefix: prefix.clone(),
            }),
        }
    }
}

/// One session's storage (cheap to clone).
#[derive(Clone)]
pub enum Storage {
    Local(LocalRoot),
    S3(S3Root),
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
        match self {
            Storage::Local(l) => {
                let (up, offset, unique) = l.open_upload(t).await?;
                Ok(Opened {
                    upload: Upload::Local(up),
                    offset,
                    unique,
                })
            }
            Storage::S3(r) => Ok(Opened {
                upload: Upload::S3(Box::new(r.open_upload(t).await?)),
                offset: 0,
                unique: None,
            }),
        }
    }

    /// Makes a complete upload visible under its name, durable as the policy says, before the
    /// success reply. `noreplace`: EEXIST instead of replacing an existing file.
    pub async fn land(&self, upload: Upload, noreplace: bool) -> io::Result<()> {
        match (self, upload) {
            (Storage::Local(l), Upload::Local(up)) => l.land(up, noreplace).await,
            (Storage::S3(_), Upload::S3(up)) => up.finish(noreplace).await,
            _ => Err(mismatch()),
        }
    }

    /// Whether uploads must never replace an existing file (server policy).
    pub fn refuses_overwrite(&self) -> bool {
        match self {
            Storage::Local(l) => l.refuses_overwrite(),
            Storage::S3(r) => r.refuses_overwrite(),
        }
    }

    pub async fn open_download(&self, path: &VPath) -> io::Result<Download> {
        match self {
            Storage::Local(l) => {
                let (fd, len) = l.open_download(path).await?;
                Ok(Download::Local { fd, len })
            }
            Storage::S3(r) => Ok(Download::S3(r.open_download(path).await?)),
        }
    }

    /// Directory entries (sorted by name; with a wildcard `pattern`, only the matching ones), or
    /// the single entry of a file (`false`).
    pub async fn list(
        &self,
        path: &VPath,
        pattern: Option<&Glob>,
    ) -> io::Result<(Vec<Entry>, bool)> {
        match self {
            Storage::Local(l) => l.list(path, pattern).await,
            Storage::S3(r) => r.list(path, pattern).await,
        }
    }

    /// Runs a session's file command (CWD, MKD, DELE, RMD, SIZE, MDTM, RNFR/RNTO, MLST, STAT).
    pub async fn run(
        &self,
        fsop: &FsOp,
        perms: FactPerms,
        facts: FactSet,
    ) -> Result<FsOutcome, FsError> {
        match self {
            Storage::Local(l) => l.run(fsop, perms, facts).await,
            Storage::S3(r) => r.run(fsop, perms, facts).await,
        }
    }
}

/// Where an upload's bytes are going, as the receive paths see it.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A file written at explicit offsets: fixed writes from the registered buffers, or splice.
    File(FileSink<'a>),
    /// An object's parts: the bytes in order, copied into the part being filled (splice and
    /// fixed writes need a file; these bytes go out over HTTP from user space).
    Parts(&'a S3Upload),
}

/// An upload in progress. Dropping it without [`Storage::land`], [`Upload::discard`] or
/// [`Upload::keep_partial`] (a session that died) still leaves nothing visible.
pub enum Upload {
    Local(landing::Upload),
    S3(Box<S3Upload>),
}

impl Upload {
    pub fn target(&self) -> Target<'_> {
        match self {
            Upload::Local(up) => Target::File(up.sink()),
            Upload::S3(up) => Target::Parts(up),
        }
    }

    /// ALLO: reserves `len` bytes from `offset`; an error only when the space is not there. An
    /// object's parts were already sized for the ALLO when it was opened.
    pub async fn reserve(&self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Upload::Local(up) => up.reserve(offset, len).await,
            Upload::S3(_) => Ok(()),
        }
    }

    /// Keeps the first `upto` bytes for a later `REST` + STOR (MODE B, after a restart marker).
    /// An object cannot be continued, so an S3 upload is dropped instead.
    pub async fn keep_partial(self, upto: u64) -> io::Result<()> {
        match self {
            Upload::Local(up) => up.keep_partial(upto).await,
            Upload::S3(up) => {
                up.discard();
                Ok(())
            }
        }
    }

    /// Drops an upload known to be incomplete (short of its ALLO size): nothing becomes visible,
    /// and a file continued in place is cut back to `len`, its size before the transfer.
    pub async fn abandon(self, len: u64) {
        match self {
            Upload::Local(up) => up.abandon(len).await,
            Upload::S3(up) => up.discard(),
        }
    }

    /// Drops the upload (abort, error): nothing becomes visible.
    pub async fn discard(self) {
        match self {
            Upload::Local(up) => up.discard().await,
            Upload::S3(up) => up.discard(),
        }
    }
}

/// A file opened for RETR.
pub enum Download {
    /// `len`: the size when it was opened (the open's own statx).
    Local {
        fd: SharedFd,
        len: u64,
    },
    S3(S3Download),
}

impl Download {
    /// Reads into `buf`'s spare capacity at `offset`; 0 at the end. Hands `buf` back.
    pub async fn read(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Download::Local { fd, .. } => op::read::read(fd, buf, offset).await,
            Download::S3(d) => d.read(buf, offset).await,
        }
    }

    /// The file's size when it was opened (a MODE E send hands out blocks up to it).
    pub fn size(&self) -> u64 {
        match self {
            Download::Local { len, .. } => *len,
            Download::S3(d) => d.len,
        }
    }
}
