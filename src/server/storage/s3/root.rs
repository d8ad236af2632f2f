//! The S3 backend as the seam sees it: [`S3Core`], one core's client handle and memory budget,
//! and [`S3Root`], one user's prefix in the bucket.
//!
//! What an object store cannot do, it refuses with a clear reply rather than imitates badly:
//! - APPE, REST + STOR and ESTO would rewrite an object in place: S3 objects are written whole.
//! - MODE E uploads arrive out of order; parts must be sent in order, so holding the gaps would
//!   break the memory bound.
//! - STOU needs a create-only PUT to pick a name no one else takes.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use crate::proto::command::TransferMode;
use crate::proto::glob::Glob;
use crate::proto::listing::{Entry, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome};
use crate::proto::session::{Transfer, TransferKind};
use crate::server::config::policies::Overwrite;
use crate::server::config::server::ServerConfig;
use crate::server::observe::metrics::CoreMetrics;

use super::client::S3Client;
use super::files::S3Files;
use super::memory::Memory;
use super::upload::S3Upload;

/// One core's object-store state.
pub struct S3Core {
    client: Arc<S3Client>,
    mem: Rc<Memory>,
    part_size: u64,
    max_list: usize,
    refuse_overwrite: bool,
}

impl S3Core {
    /// `share`: this core's part of `s3_memory_cap`.
    pub fn new(
        cfg: &ServerConfig,
        client: Arc<S3Client>,
        share: u64,
        metrics: Arc<CoreMetrics>,
    ) -> S3Core {
        S3Core {
            client,
            mem: Memory::new(share, metrics),
            part_size: cfg.s3.part_size,
            max_list: cfg.max_list_entries,
            refuse_overwrite: cfg.policies.overwrite == Overwrite::Refuse,
        }
    }
}

/// One session's view of the bucket: the keys under its user's prefix.
#[derive(Clone)]
pub struct S3Root {
    core: Rc<S3Core>,
    files: S3Files,
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not possible on object storage"),
    )
}

impl S3Root {
    pub fn new(core: Rc<S3Core>, prefix: String) -> S3Root {
        let files = S3Files::new(core.client.clone(), prefix, core.max_list)
            .refusing_overwrite(core.refuse_overwrite);
        S3Root { core, files }
    }

    pub fn refuses_overwrite(&self) -> bool {
        self.core.refuse_overwrite
    }

    /// A new object for `t`, admitted under the memory cap (see [`S3Upload::admit`]); nothing is
    /// sent until its first part is full or it ends.
    pub async fn open_upload(&self, t: &Transfer) -> io::Result<S3Upload> {
        let up = self.new_upload(t)?;
        up.admit().await?;
        Ok(up)
    }

    fn new_upload(&self, t: &Transfer) -> io::Result<S3Upload> {
        if t.mode == TransferMode::Extended {
            return Err(unsupported("a MODE E upload"));
        }
        if t.kind == TransferKind::Append || t.offset > 0 || t.adjusted {
            return Err(unsupported("writing into an existing file"));
        }
        if t.kind == TransferKind::StoreUnique {
            return Err(unsupported("STOU"));
        }
        if t.path.is_root() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        S3Upload::new(
            self.core.client.clone(),
            self.core.mem.clone(),
            self.files.key(&t.path),
            self.core.part_size,
            t.allocate,
        )
    }

    /// Counts a failure of the store itself (not a missing or denied key) for /metrics.
    fn count<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if r.as_ref().is_err_and(|e| e.raw_os_error().is_none()) {
            self.core.mem.store_failed();
        }
        r
    }

    pub async fn list(
        &self,
        path: &VPath,
        pattern: Option<&Glob>,
    ) -> io::Result<(Vec<Entry>, bool)> {
        self.count(self.files.list(path, pattern).await)
    }

    pub async fn run(
        &self,
        fsop: &FsOp,
        perms: FactPerms,
        facts: FactSet,
    ) -> Result<FsOutcome, FsError> {
        let r = self.files.run(fsop, perms, facts).await;
        if matches!(r, Err(FsError::Other(_))) {
            self.core.mem.store_failed();
        }
        r
    }

    /// RETR: the object's size now, and reads from it.
    pub async fn open_download(&self, path: &VPath) -> io::Result<S3Download> {
        let (key, len) = self.count(self.files.open_download(path).await)?;
        Ok(S3Download {
            files: self.files.clone(),
            key,
            len,
            ahead: RefCell::new((0, Vec::new())),
        })
    }
}

/// Bytes fetched per ranged GET: a RETR reads 256 KiB at a time, and a request per 256 KiB
/// would cost the store (and the client) a round trip each.
const READ_AHEAD: usize = 8 << 20;

/// An object being sent (RETR).
pub struct S3Download {
    files: S3Files,
    key: String,
    pub len: u64,
    /// The bytes fetched last, and the offset they start at.
    ahead: RefCell<(u64, Vec<u8>)>,
}

impl S3Download {
    /// Reads into `buf`'s spare capacity at `offset` from the read-ahead, fetching the next
    /// `READ_AHEAD` (8 MiB) when it is used up; 0 at the end.
    pub async fn read(&self, mut buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        if offset >= self.len {
            return (Ok(0), buf);
        }
        let hit = {
            let ahead = self.ahead.borrow();
            let (start, bytes) = (&ahead.0, &ahead.1);
            offset >= *start && offset < *start + bytes.len() as u64
        };
        if !hit {
            let want = READ_AHEAD.min(usize::try_from(self.len - offset).unwrap_or(READ_AHEAD));
            let fetch = std::mem::take(&mut self.ahead.borrow_mut().1);
            let mut fetch = fetch;
            fetch.clear();
            fetch.reserve(want);
            let (res, got) = self.files.read(&self.key, fetch, offset).await;
            *self.ahead.borrow_mut() = (offset, got);
            match res {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
        let ahead = self.ahead.borrow();
        let from = (offset - ahead.0) as usize;
        let n = (buf.capacity() - buf.len()).min(ahead.1.len() - from);
        buf.extend_from_slice(&ahead.1[from..from + n]);
        (Ok(n), buf)
    }
}
