//! Running one transfer: prepare the file, make the data connection, send the 150/125, move the
//! bytes, land the upload, and report the outcome for the session's final reply.
//!
//! Files are opened before the data connection is made, so a missing file or a forbidden name is
//! answered with 550/553 without the client ever connecting. The control connection is watched by
//! the caller while this runs (ABOR, STAT, a vanished client).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op};
use crate::proto::ascii::LfToCrlf;
use crate::proto::command::{TransferMode, TransferType};
use crate::proto::listing::{self, FactPerms, FactSet};
use crate::proto::modeb;
use crate::proto::path::VPath;
use crate::proto::reply::Reply;
use crate::proto::session::{DataEndpoint, FsError, Transfer, TransferKind, TransferOutcome};

use super::config::FsyncPolicy;
use super::core::CoreCtx;
use super::data::{self, DataConn, PassiveListener};
use super::fsops::{self, fs_error};
use super::landing::Upload;
use super::store::{self, BlockReceiver, StoreError};

/// What a transfer needs from its session besides the transfer itself.
pub struct XferEnv<'a> {
    pub ctx: &'a CoreCtx,
    /// The user's root.
    pub root: &'a SharedFd,
    /// The control connection, for the preliminary reply.
    pub ctl: &'a SharedFd,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub perms: FactPerms,
    /// MLSD facts selected with OPTS MLST.
    pub facts: FactSet,
    /// Refuse to replace existing files (server policy or a drop box).
    pub refuse_overwrite: bool,
}

/// How a transfer ended, with the replies that must precede the final one.
pub struct Finished {
    pub outcome: TransferOutcome,
    /// `110 MARK` replies for MODE B restart markers.
    pub marks: Vec<Reply>,
    /// The name STOU picked.
    pub unique: Option<VPath>,
}

impl From<TransferOutcome> for Finished {
    fn from(outcome: TransferOutcome) -> Finished {
        Finished {
            outcome,
            marks: Vec::new(),
            unique: None,
        }
    }
}

/// Runs `t`. The error is a failure of the control connection itself (the session ends).
/// `kept` holds a MODE B data connection between transfers.
pub async fn run(
    env: &XferEnv<'_>,
    opening: Reply,
    t: &Transfer,
    passive: Option<&PassiveListener>,
    kept: &mut Option<DataConn>,
) -> io::Result<Finished> {
    let mut x = Xfer {
        env,
        opening,
        t,
        passive,
        kept,
    };
    match t.kind {
        TransferKind::Store | TransferKind::Append | TransferKind::StoreUnique => x.store().await,
        TransferKind::Retrieve => x.retrieve().await.map(Finished::from),
        TransferKind::List | TransferKind::NameList | TransferKind::MachineList => {
            x.list().await.map(Finished::from)
        }
    }
}

struct Xfer<'a> {
    env: &'a XferEnv<'a>,
    opening: Reply,
    t: &'a Transfer,
    passive: Option<&'a PassiveListener>,
    kept: &'a mut Option<DataConn>,
}

impl Xfer<'_> {
    /// The data connection: the kept MODE B one, or a new one; then the 150/125 reply.
    async fn open_data(&mut self) -> io::Result<Option<DataConn>> {
        let env = self.env;
        let conn = if self.t.endpoint == DataEndpoint::Open {
            self.kept.take()
        } else {
            *self.kept = None;
            let passive = self.passive.take();
            match data::connect(env.ctx, self.t.endpoint, passive, env.peer, env.local).await {
                Ok(fd) => {
                    env.ctx.metrics.data_connection();
                    Some(DataConn { fd, block: None })
                }
                Err(e) => {
                    tracing::debug!(error = %e, "data connection failed");
                    None
                }
            }
        };
        if conn.is_some() {
            let (res, _) = net::send_all(env.ctl, self.opening.to_bytes()).await;
            res?;
        }
        Ok(conn)
    }

    /// Ends a successful transfer: MODE B keeps the connection for the next one.
    fn finish(&mut self, conn: DataConn, bytes: u64) -> TransferOutcome {
        let kept_open = self.t.mode == TransferMode::Block;
        if kept_open {
            *self.kept = Some(conn);
        }
        TransferOutcome::Complete { bytes, kept_open }
    }

    /// Opens where the upload goes and the offset it starts at.
    async fn prepare_upload(&mut self) -> io::Result<(Upload, u64, Option<VPath>)> {
        let (root, path, offset) = (self.env.root, &self.t.path, self.t.offset);
        match self.t.kind {
            TransferKind::Append => {
                let (up, at) = Upload::in_place(root, path, None, true).await?;
                return Ok((up, at, None));
            }
            TransferKind::StoreUnique => {
                let unique = unique_name(root, path).await?;
                self.opening =
                    Reply::new(150, format!("FILE: {}", unique.file_name().unwrap_or("")));
                return Ok((Upload::create(root, &unique).await?, 0, Some(unique)));
            }
            _ => {}
        }
        match (offset, self.t.mode) {
            (0, _) => Ok((Upload::create(root, path).await?, 0, None)),
            (o, TransferMode::Block) => Ok((Upload::resume_partial(root, path, o).await?, o, None)),
            (o, TransferMode::Stream) => {
                let (up, at) = Upload::in_place(root, path, Some(o), false).await?;
                Ok((up, at, None))
            }
        }
    }

    async fn store(&mut self) -> io::Result<Finished> {
        let env = self.env;
        let (upload, offset, unique) = match self.prepare_upload().await {
            Ok(u) => u,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e)).into()),
        };
        if let Some(n) = self.t.allocate {
            // ALLO: reserve the blocks now so a full disk shows before the data arrives; KEEP_SIZE so
            // a shorter upload does not end in zeros.
            if let Err(e) =
                op::fallocate::fallocate(&upload.file, offset, n, libc::FALLOC_FL_KEEP_SIZE).await
            {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    upload.discard().await;
                    return Ok(TransferOutcome::Local(fs_error(e)).into());
                }
            }
        }
        let Some(mut conn) = self.open_data().await? else {
            upload.discard().await;
            return Ok(TransferOutcome::NoConnection.into());
        };
        let started = std::time::Instant::now();
        let stall = env.ctx.cfg.data_timeout;
        let ascii = self.t.ttype == TransferType::Ascii;
        let (res, markers) = match self.t.mode {
            TransferMode::Stream => {
                let kind = env.ctx.cfg.data_path;
                (
                    store::receive(kind, ascii, &conn.fd, &upload.file, offset, stall).await,
                    Vec::new(),
                )
            }
            TransferMode::Block => {
                let fd = conn.fd.clone();
                let rx = conn
                    .block
                    .get_or_insert_with(|| BlockReceiver::new(&fd, stall));
                match rx.receive(&upload.file, offset).await {
                    Ok(f) => (Ok(f.bytes), f.markers),
                    Err(e) => (Err(e), rx.markers_of_failed().to_vec()),
                }
            }
        };
        // RFC 959 3.5: the receiver reports each marker with its own position, which REST takes.
        let marks = markers
            .iter()
            .map(|(m, at)| Reply::new(110, format!("MARK {} = {at}", String::from_utf8_lossy(m))))
            .collect();
        let outcome = match res {
            Ok(bytes) => {
                let noreplace = env.refuse_overwrite || self.t.no_overwrite || unique.is_some();
                match land(env, upload, noreplace).await {
                    Ok(()) => {
                        let us = started.elapsed().as_micros() as u64;
                        tracing::debug!(path = %self.t.path, bytes, elapsed_us = us, "stored");
                        self.finish(conn, bytes)
                    }
                    Err(e) => TransferOutcome::Local(fs_error(e)),
                }
            }
            Err(err) => {
                drop(conn);
                match markers.last() {
                    Some((_, at)) => {
                        if let Err(e) = upload.keep_partial(*at).await {
                            tracing::warn!(error = %e, "could not keep the partial upload");
                        }
                    }
                    None => upload.discard().await,
                }
                match err {
                    StoreError::Net(e) => {
                        tracing::info!(path = %self.t.path, error = %e, "upload aborted");
                        TransferOutcome::ConnectionLost
                    }
                    StoreError::File(e) => {
                        tracing::warn!(path = %self.t.path, error = %e, "upload failed writing the file");
                        TransferOutcome::Local(fs_error(e))
                    }
                }
            }
        };
        Ok(Finished {
            outcome,
            marks,
            unique,
        })
    }

    async fn retrieve(&mut self) -> io::Result<TransferOutcome> {
        let file = match fsops::open(self.env.root, &self.t.path, libc::O_RDONLY, 0).await {
            Ok(f) => Rc::new(f),
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        match op::statx::statx(&file, Default::default(), libc::AT_EMPTY_PATH).await {
            Ok(st) if st.is_dir() => return Ok(TransferOutcome::Local(FsError::IsADirectory)),
            Ok(_) => {}
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        }
        let Some(conn) = self.open_data().await? else {
            return Ok(TransferOutcome::NoConnection);
        };
        let block = self.t.mode == TransferMode::Block;
        let mut ascii = (self.t.ttype == TransferType::Ascii).then(LfToCrlf::default);
        let mut offset = self.t.offset;
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut out = Vec::new();
        loop {
            buf.clear();
            let (res, b) = op::read::read(&file, buf, offset).await;
            buf = b;
            let n = match res {
                Ok(n) => n,
                Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
            };
            out.clear();
            if n == 0 {
                if block {
                    modeb::Encoder::eof(&mut out);
                    let (res, _) = net::send_all(&conn.fd, std::mem::take(&mut out)).await;
                    if res.is_err() {
                        return Ok(TransferOutcome::ConnectionLost);
                    }
                }
                let sent = offset - self.t.offset;
                return Ok(self.finish(conn, sent));
            }
            offset += n as u64;
            let payload = match ascii.as_mut() {
                Some(conv) => {
                    let mut converted = Vec::with_capacity(n + n / 16);
                    conv.convert(&buf, &mut converted);
                    converted
                }
                None => std::mem::take(&mut buf),
            };
            let wire = if block {
                modeb::Encoder::data(&payload, &mut out);
                std::mem::take(&mut out)
            } else {
                payload
            };
            let (res, w) = net::send_all(&conn.fd, wire).await;
            if res.is_err() {
                return Ok(TransferOutcome::ConnectionLost);
            }
            // Reuse whichever buffer came back for the next read.
            if buf.capacity() == 0 {
                buf = w;
            } else {
                out = w;
            }
        }
    }

    async fn list(&mut self) -> io::Result<TransferOutcome> {
        let limit = self.env.ctx.cfg.max_list_entries;
        let (entries, is_dir) = match fsops::read_entries(self.env.root, &self.t.path, limit).await
        {
            Ok(e) => e,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        if self.t.kind == TransferKind::MachineList && !is_dir {
            return Ok(TransferOutcome::Local(FsError::NotADirectory));
        }
        let now = fsops::now_secs();
        let mut out = Vec::with_capacity(entries.len() * 64);
        for e in &entries {
            match self.t.kind {
                TransferKind::NameList => listing::name_line(e, &mut out),
                TransferKind::MachineList => {
                    if let Some(f) = listing::facts(e, self.env.perms, false, self.env.facts) {
                        out.extend_from_slice(f.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                _ => listing::list_line(e, now, &mut out),
            }
        }
        let Some(conn) = self.open_data().await? else {
            return Ok(TransferOutcome::NoConnection);
        };
        let bytes = out.len() as u64;
        if self.t.mode == TransferMode::Block {
            let mut framed = Vec::with_capacity(out.len() + 16);
            modeb::Encoder::file(&out, &mut framed);
            out = framed;
        }
        let (res, _) = net::send_all(&conn.fd, out).await;
        Ok(match res {
            Ok(()) => self.finish(conn, bytes),
            Err(_) => TransferOutcome::ConnectionLost,
        })
    }
}

/// Lands a complete upload under the session's fsync policy (see `durability`).
async fn land(env: &XferEnv<'_>, upload: Upload, noreplace: bool) -> io::Result<()> {
    match env.ctx.cfg.policies.fsync {
        FsyncPolicy::None => upload.land(noreplace).await,
        FsyncPolicy::File => {
            op::fsync::fsync(&upload.file, false).await?;
            let dir = upload.dir().clone();
            upload.land(noreplace).await?;
            op::fsync::fsync(&dir, false).await
        }
        FsyncPolicy::Batch => {
            upload.land(noreplace).await?;
            env.ctx.syncs.sync(env.root).await
        }
    }
}

/// STOU's name: in a directory argument, `stou-<random>`; otherwise the given name, or `name.N` with
/// the first N that does not exist yet. Landing with RENAME_NOREPLACE settles any race.
async fn unique_name(root: &SharedFd, path: &VPath) -> io::Result<VPath> {
    let is_dir = fsops::stat(root, path).await.map(|st| st.is_dir());
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
        if let Err(e) = fsops::stat(root, &candidate).await {
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}
