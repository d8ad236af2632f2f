//! The local file system as a storage backend: [`LocalFs`] holds one core's settings and state
//! (how calls run, the fsync policy and its batcher, the overwrite policy, the listing limit), and
//! [`LocalRoot`] is one session's view of it, beneath that user's root directory.
//!
//! Every decision a transfer used to make about files lives here: which file an upload is written
//! into (new, append, stream resume, MODE B partial, STOU's unique name), how it is made durable
//! and landed, and how a download is opened.

use std::io;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::checksum::Algo;
use crate::proto::command::{TransferMode, TransferType};
use crate::proto::glob::Glob;
use crate::proto::listing::{Entry, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome, Transfer, TransferKind};
use crate::server::config::policies::{FsyncPolicy, Overwrite};
use crate::server::config::server::ServerConfig;

use super::calls::FsCalls;
use super::durability::SyncBatcher;
use super::jail::{open, stat};
use super::landing::{InPlaceAt, Upload};
use super::ops::{self, FsContext};

/// One core's local storage.
pub struct LocalFs {
    calls: Rc<FsCalls>,
    fsync: FsyncPolicy,
    syncs: Rc<SyncBatcher>,
    refuse_overwrite: bool,
    list_limit: usize,
    chmod_mask: u32,
    /// Digests computed inline for uploads that start at offset 0 in binary (`checksums`).
    checksums: Vec<Algo>,
}

impl LocalFs {
    pub fn new(cfg: &ServerConfig) -> LocalFs {
        LocalFs {
            calls: Rc::new(FsCalls::new(cfg)),
            fsync: cfg.policies.fsync,
            syncs: SyncBatcher::new(),
            refuse_overwrite: cfg.policies.overwrite == Overwrite::Refuse,
            list_limit: cfg.max_list_entries,
            chmod_mask: cfg.chmod_mask,
            checksums: cfg.checksums.clone(),
        }
    }
}

/// One session's local storage: the core's [`LocalFs`] and the user's root directory, beneath
/// which every path resolves (`RESOLVE_IN_ROOT`).
#[derive(Clone)]
pub struct LocalRoot {
    fs: Rc<LocalFs>,
    root: SharedFd,
}

impl LocalRoot {
    pub fn new(fs: Rc<LocalFs>, root: SharedFd) -> LocalRoot {
        LocalRoot { fs, root }
    }

    /// Opens the file an upload is written into and the offset it starts at, and for STOU the
    /// name it picked.
    pub async fn open_upload(&self, t: &Transfer) -> io::Result<(Upload, u64, Option<VPath>)> {
        let (up, at, unique) = self.open_upload_file(t).await?;
        // Only a whole file can be digested while it arrives: a resumed or appended one (`at` >
        // 0) and TYPE A (converted in transit) are digested by reading when asked for.
        let up = if at == 0 && t.ttype == TransferType::Image {
            up.with_digests(&self.fs.checksums)
        } else {
            up
        };
        Ok((up, at, unique))
    }

    async fn open_upload_file(&self, t: &Transfer) -> io::Result<(Upload, u64, Option<VPath>)> {
        let (calls, root, path) = (&self.fs.calls, &self.root, &t.path);
        match t.kind {
            TransferKind::Append => {
                let (up, at) = Upload::in_place(calls, root, path, InPlaceAt::End, true).await?;
                return Ok((up, at, None));
            }
            TransferKind::StoreUnique => {
                let unique = self.unique_name(path).await?;
                let up = Upload::create(calls, root, &unique).await?;
                return Ok((up, 0, Some(unique)));
            }
            _ => {}
        }
        if t.adjusted {
            let over = InPlaceAt::Over(t.offset);
            let (up, at) = Upload::in_place(calls, root, path, over, true).await?;
            return Ok((up, at, None));
        }
        match (t.offset, t.mode) {
            (0, _) => Ok((Upload::create(calls, root, path).await?, 0, None)),
            (o, TransferMode::Block | TransferMode::Extended) => {
                Ok((Upload::resume_partial(calls, root, path, o).await?, o, None))
            }
            (o, TransferMode::Stream) => {
                let (up, at) =
                    Upload::in_place(calls, root, path, InPlaceAt::Cut(o), false).await?;
                Ok((up, at, None))
            }
        }
    }

    /// Whether uploads must never replace an existing file (the `overwrite = "refuse"` policy).
    pub fn refuses_overwrite(&self) -> bool {
        self.fs.refuse_overwrite
    }

    /// Lands a complete upload under the fsync policy (see `durability`); EEXIST when `noreplace`
    /// and the name is taken.
    pub async fn land(&self, mut upload: Upload, noreplace: bool) -> io::Result<()> {
        // Before the name appears: a client that asks for the checksum after the 226 finds it.
        upload.store_digests().await;
        match self.fs.fsync {
            FsyncPolicy::None => upload.land(noreplace).await,
            FsyncPolicy::File => {
                op::fsync::fsync(&upload.file, false).await?;
                let dir = upload.dir().clone();
                upload.land(noreplace).await?;
                op::fsync::fsync(&dir, false).await
            }
            FsyncPolicy::Batch => {
                upload.land(noreplace).await?;
                self.fs.syncs.sync(&self.root).await
            }
        }
    }

    /// Opens `path` for reading, with its size at opening; EISDIR for a directory.
    pub async fn open_download(&self, path: &VPath) -> io::Result<(SharedFd, u64)> {
        let file = Rc::new(open(&self.root, path, libc::O_RDONLY, 0).await?);
        let st = op::statx::statx(&file, Default::default(), libc::AT_EMPTY_PATH).await?;
        if st.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok((file, st.size))
    }

    /// The entries of the directory at `path` (those matching `pattern`, if given), or the
    /// single entry of a file (`false`).
    pub async fn list(
        &self,
        path: &VPath,
        pattern: Option<&Glob>,
    ) -> io::Result<(Vec<Entry>, bool)> {
        ops::read_entries(&self.root, path, pattern, self.fs.list_limit).await
    }

    /// Performs a session's file-system command.
    pub async fn run(
        &self,
        fsop: &FsOp,
        perms: FactPerms,
        facts: FactSet,
    ) -> Result<FsOutcome, FsError> {
        let fx = FsContext {
            root: &self.root,
            perms,
            facts,
            refuse_overwrite: self.fs.refuse_overwrite,
            list_limit: self.fs.list_limit,
            chmod_mask: self.fs.chmod_mask,
        };
        ops::run(&fx, fsop).await
    }

    /// STOU's name: in a directory argument, `stou-<random>`; otherwise the given name, or
    /// `name.N` with the first N that does not exist yet. Landing with RENAME_NOREPLACE settles
    /// any race.
    async fn unique_name(&self, path: &VPath) -> io::Result<VPath> {
        let root = &self.root;
        let is_dir = stat(root, path).await.map(|st| st.is_dir());
        let bad = |_| io::Error::from_raw_os_error(libc::EINVAL);
        if matches!(is_dir, Ok(true)) {
            let mut r = [0u8; 6];
            getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
            let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
            return path.join(&format!("stou-{name}")).map_err(bad);
        }
        if matches!(is_dir, Err(ref e) if e.raw_os_error() == Some(libc::ENOENT)) {
            return Ok(path.clone());
        }
        let parent = path.parent().unwrap_or_else(VPath::root);
        let base = path.file_name().unwrap_or("file");
        for n in 1..1000 {
            let candidate = parent.join(&format!("{base}.{n}")).map_err(bad)?;
            if let Err(e) = stat(root, &candidate).await {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    return Ok(candidate);
                }
            }
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }
}
