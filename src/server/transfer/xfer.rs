//! Running one transfer: prepare the file, make the data connection, send the 150/125, move the
//! bytes, land the upload, and report the outcome for the session's final reply.
//!
//! Files are opened before the data connection is made, so a missing file or a forbidden name is
//! answered with 550/553 without the client ever connecting. The control connection is watched by
//! the caller while this runs (ABOR, STAT, a vanished client).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use crate::engine::net;
use crate::proto::ascii::LfToCrlf;
use crate::proto::command::{TransferMode, TransferType};
use crate::proto::listing::{self, FactPerms, FactSet};
use crate::proto::modeb;
use crate::proto::path::VPath;
use crate::proto::reply::Reply;
use crate::proto::session::{DataEndpoint, FsError, Transfer, TransferKind, TransferOutcome};
use crate::server::context::CoreCtx;
use crate::server::storage::{self, fs_error, Opened, Storage};
use crate::tls::stream::Channel;

use super::block::{BlockReceiver, CopyBlockReceiver};
use super::data::{self, DataConn};
use super::extended;
use super::failure::StoreError;
use super::passive::PassiveListener;
use super::receive;
use super::secure::{self, DataTls};

/// What a transfer needs from its session besides the transfer itself.
pub struct XferEnv<'a> {
    pub ctx: &'a CoreCtx,
    /// The user's storage.
    pub storage: &'a Storage,
    /// The control connection, for the preliminary reply.
    pub ctl: &'a Channel,
    /// The session's data-connection TLS, when this transfer is protected (PROT P).
    pub tls: Option<DataTls>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub perms: FactPerms,
    /// MLSD facts selected with OPTS MLST.
    pub facts: FactSet,
    /// Replies queued before this transfer and not sent yet (the last file's 250 when the client
    /// pipelined this command behind it): they go out in one send with the 150/125.
    pub preface: Preface,
}

/// Replies held back to go out with the next one sent during a transfer (its 150/125, or a STAT
/// answered meanwhile), so that nothing overtakes them.
pub struct Preface(RefCell<Vec<u8>>);

impl Preface {
    pub fn new(held: Vec<u8>) -> Preface {
        Preface(RefCell::new(held))
    }

    /// The held replies followed by `reply`, for one send; nothing is held afterwards.
    pub fn then(&self, reply: &Reply) -> Vec<u8> {
        let mut out = self.0.take();
        reply.encode(&mut out);
        out
    }

    /// What is still held (nothing was sent during the transfer).
    pub fn take(&self) -> Vec<u8> {
        self.0.take()
    }
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
///
/// This future is moved into the session's watch once per file, so its size is a copy per file:
/// the futures of paths a clear-text upload never takes (TLS, MODE E, object storage, a new data
/// connection's set-up) are boxed where they are awaited, which keeps it at a few KB.
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
    /// The data connection: the kept MODE B one, or a new one; then the 150/125 reply, then (PROT
    /// P) the TLS handshake, as vsftpd orders them: a client may start its handshake before or
    /// after it reads the 150. `Err` is the outcome when there is no usable connection.
    async fn open_data(&mut self) -> io::Result<Result<DataConn, TransferOutcome>> {
        let env = self.env;
        let kept = if self.t.endpoint == DataEndpoint::Open {
            self.kept.take()
        } else {
            *self.kept = None;
            None
        };
        let mut conn = match kept {
            Some(c) => c,
            None if self.t.endpoint == DataEndpoint::Open => {
                return Ok(Err(TransferOutcome::NoConnection))
            }
            None => {
                let passive = self.passive.take();
                match Box::pin(data::connect(
                    env.ctx,
                    self.t.endpoint,
                    passive,
                    env.peer,
                    env.local,
                ))
                .await
                {
                    Ok(fd) => {
                        env.ctx.metrics.data_connection();
                        DataConn::new(fd)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "data connection failed");
                        return Ok(Err(TransferOutcome::NoConnection));
                    }
                }
            }
        };
        let (res, _) = env.ctl.send(env.preface.then(&self.opening)).await;
        res?;
        if let (Some(tls), None) = (&env.tls, &conn.tls) {
            match Box::pin(secure::accept(
                conn.fd.clone(),
                tls,
                env.ctx.cfg.data_timeout,
            ))
            .await
            {
                Ok(s) => conn.tls = Some(Box::new(s)),
                Err(outcome) => return Ok(Err(outcome)),
            }
        }
        Ok(Ok(conn))
    }

    /// Ends a successful transfer: MODE B keeps the connection for the next one.
    fn finish(&mut self, conn: DataConn, bytes: u64) -> TransferOutcome {
        let kept_open = self.t.mode == TransferMode::Block;
        if kept_open {
            *self.kept = Some(conn);
        }
        TransferOutcome::Complete { bytes, kept_open }
    }

    async fn store(&mut self) -> io::Result<Finished> {
        let env = self.env;
        let Opened {
            upload,
            offset,
            unique,
        } = match env.storage.open_upload(self.t).await {
            Ok(u) => u,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e)).into()),
        };
        if let Some(u) = &unique {
            self.opening = Reply::new(150, format!("FILE: {}", u.file_name().unwrap_or("")));
        }
        if let Some(n) = self
            .announced_end(offset)
            .map(|n| n.saturating_sub(offset))
            .filter(|&n| n > 0)
        {
            if let Err(e) = upload.reserve(offset, n).await {
                upload.discard().await;
                return Ok(TransferOutcome::Local(fs_error(e)).into());
            }
        }
        if self.t.mode == TransferMode::Extended {
            return Box::pin(self.store_extended(upload, offset, unique)).await;
        }
        let mut conn = match self.open_data().await? {
            Ok(c) => c,
            Err(outcome) => {
                upload.discard().await;
                return Ok(outcome.into());
            }
        };
        if let storage::Target::Parts(_) = upload.target() {
            let bytes = env.ctx.cfg.s3.socket_buffer;
            if bytes > 0 {
                if let Err(e) = net::set_recv_buffer(conn.fd.as_raw_fd(), bytes) {
                    tracing::debug!(error = %e, "could not set the data connection's receive buffer");
                }
            }
        }
        let started = std::time::Instant::now();
        let stall = env.ctx.cfg.data_timeout;
        let ascii = self.t.ttype == TransferType::Ascii;
        let (res, markers) = match (self.t.mode, conn.tls.as_mut()) {
            // The stream's end is the connection's: its TLS state is handed to the receive path.
            (TransferMode::Stream, Some(_)) => {
                let target = upload.target();
                let r = match conn.tls.take() {
                    Some(s) => {
                        Box::pin(secure::receive_stream(*s, target, offset, stall, ascii)).await
                    }
                    None => Err(StoreError::Net(io::ErrorKind::NotConnected.into())),
                };
                (r, Vec::new())
            }
            (TransferMode::Block, Some(s)) => {
                let target = upload.target();
                match Box::pin(secure::receive_block(
                    s,
                    &mut conn.tls_block,
                    target,
                    offset,
                    stall,
                ))
                .await
                {
                    Ok(f) => (Ok(f.bytes), f.markers),
                    Err(e) => (Err(e), Vec::new()),
                }
            }
            (TransferMode::Stream, None) => {
                let stored =
                    receive::receive(ascii, &conn.fd, upload.target(), offset, stall).await;
                if let Ok(s) = &stored {
                    env.ctx.metrics.direct_bytes(s.direct);
                }
                (stored.map(|s| s.bytes), Vec::new())
            }
            (TransferMode::Block, None) => {
                let fd = conn.fd.clone();
                match upload.target() {
                    storage::Target::File(sink) => {
                        let rx = conn
                            .block
                            .get_or_insert_with(|| BlockReceiver::new(&fd, stall));
                        match rx.receive(sink, offset).await {
                            Ok(f) => (Ok(f.bytes), f.markers),
                            Err(e) => (Err(e), rx.markers_of_failed().to_vec()),
                        }
                    }
                    // An object cannot be continued from a marker: a failed one keeps nothing.
                    storage::Target::Parts(up) => {
                        let rx = conn
                            .copy_block
                            .get_or_insert_with(|| CopyBlockReceiver::new(&fd, stall));
                        match Box::pin(rx.receive(up)).await {
                            Ok(f) => (Ok(f.bytes), f.markers),
                            Err(e) => (Err(e), Vec::new()),
                        }
                    }
                }
            }
            // Taken by `store_extended` before any data connection is made.
            (TransferMode::Extended, _) => (
                Err(StoreError::Net(io::ErrorKind::Unsupported.into())),
                Vec::new(),
            ),
        };
        // RFC 959 3.5: the receiver reports each marker with its own position, which REST takes.
        let marks = markers
            .iter()
            .map(|(m, at)| Reply::new(110, format!("MARK {} = {at}", String::from_utf8_lossy(m))))
            .collect();
        // In MODE S the end of the file is the close of the data connection, so a cut connection
        // looks complete; an ALLO size tells the two apart. TYPE A changes the size in transit and
        // MODE B marks the end in-band, so neither is checked.
        let announced = self
            .announced_end(offset)
            .filter(|_| env.ctx.cfg.allo_check && self.t.mode == TransferMode::Stream && !ascii);
        let outcome = match res {
            Ok(bytes) if announced.is_some_and(|n| offset + bytes < n) => {
                drop(conn);
                upload.abandon(offset).await;
                let (received, announced) = (offset + bytes, announced.unwrap_or(0));
                tracing::info!(path = %self.t.path, received, announced, "upload shorter than its ALLO; discarded");
                TransferOutcome::Short {
                    received,
                    announced,
                }
            }
            Ok(bytes) => match self.land(upload, unique.is_some()).await {
                Ok(()) => {
                    let us = started.elapsed().as_micros() as u64;
                    tracing::debug!(path = %self.t.path, bytes, elapsed_us = us, "stored");
                    self.finish(conn, bytes)
                }
                Err(e) => TransferOutcome::Local(fs_error(e)),
            },
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
                self.failed(err)
            }
        };
        Ok(Finished {
            outcome,
            marks,
            unique,
        })
    }

    /// Where the file ends by the ALLO size: ALLO announces the whole file (lftp sends it with
    /// REST, so a resumed upload needs only the rest), except before ESTO, where it is the length
    /// of the data written from the offset.
    fn announced_end(&self, offset: u64) -> Option<u64> {
        let n = self.t.allocate?;
        Some(if self.t.adjusted {
            offset.saturating_add(n)
        } else {
            n
        })
    }

    /// Lands a complete upload; never over an existing file for a drop box, under the
    /// `overwrite = "refuse"` policy, or for a name STOU picked (`unique`).
    async fn land(&self, upload: storage::Upload, unique: bool) -> io::Result<()> {
        let env = self.env;
        let noreplace = env.storage.refuses_overwrite() || self.t.no_overwrite || unique;
        env.storage.land(upload, noreplace).await
    }

    /// The session's kept MODE E connections (none if the kept connection is not MODE E's).
    fn take_extended(&mut self) -> extended::Extended {
        self.kept.take().and_then(|c| c.ext).unwrap_or_default()
    }

    /// Keeps a MODE E transfer's connections for the session's next one.
    fn keep_extended(&mut self, ext: extended::Extended) {
        if let Some(fd) = ext.first_fd() {
            let mut conn = DataConn::new(fd);
            conn.ext = Some(ext);
            *self.kept = Some(conn);
        }
    }

    /// The outcome of an upload whose receive failed (the upload already discarded), logged.
    fn failed(&self, err: StoreError) -> TransferOutcome {
        match err {
            StoreError::Net(e) => {
                tracing::info!(path = %self.t.path, error = %e, "upload aborted");
                TransferOutcome::ConnectionLost
            }
            StoreError::File(e) => {
                tracing::warn!(path = %self.t.path, error = %e, "upload failed writing the file");
                TransferOutcome::Local(fs_error(e))
            }
            StoreError::Truncated { received } => {
                tracing::warn!(path = %self.t.path, received, "protected upload ended without TLS close_notify (truncated); discarded");
                TransferOutcome::Truncated { received }
            }
        }
    }

    /// MODE E: the file over the session's parallel data connections (new ones accepted from the
    /// PASV listener while it arrives), which stay open for the next file.
    async fn store_extended(
        &mut self,
        upload: storage::Upload,
        offset: u64,
        unique: Option<VPath>,
    ) -> io::Result<Finished> {
        let env = self.env;
        let mut ext = self.take_extended();
        let listener = self.passive.take();
        if ext.is_empty() && listener.is_none() {
            upload.discard().await;
            return Ok(TransferOutcome::NoConnection.into());
        }
        let (res, _) = env.ctl.send(self.opening.to_bytes()).await;
        res?;
        let stall = env.ctx.cfg.data_timeout;
        let storage::Target::File(sink) = upload.target() else {
            // The object store refuses MODE E uploads when they are opened.
            upload.discard().await;
            return Ok(TransferOutcome::Local(fs_error(io::ErrorKind::Unsupported.into())).into());
        };
        let got = extended::receive(
            &mut ext,
            env.ctx,
            listener,
            env.peer,
            sink,
            offset,
            self.announced_end(offset),
            stall,
        )
        .await;
        let outcome = match got {
            Ok(len) => match self.land(upload, unique.is_some()).await {
                Ok(()) => {
                    self.keep_extended(ext);
                    TransferOutcome::Complete {
                        bytes: len,
                        kept_open: true,
                    }
                }
                Err(e) => TransferOutcome::Local(fs_error(e)),
            },
            Err(err) => {
                upload.discard().await;
                self.failed(err)
            }
        };
        Ok(Finished {
            outcome,
            marks: Vec::new(),
            unique,
        })
    }

    /// MODE E sends: the connections first (n to a PORT address, or the kept ones), then the
    /// 150/125, then the blocks. The connections are kept after a complete send.
    async fn send_extended(
        &mut self,
        src: extended::send::Source<'_>,
    ) -> io::Result<TransferOutcome> {
        let env = self.env;
        let mut ext = self.take_extended();
        let listener = self.passive.take();
        if let Err(e) = extended::send::connect(
            &mut ext,
            env.ctx,
            self.t.endpoint,
            listener,
            env.peer,
            env.local,
            self.t.parallelism,
        )
        .await
        {
            tracing::debug!(error = %e, "MODE E data connections failed");
            return Ok(TransferOutcome::NoConnection);
        }
        let (res, _) = env.ctl.send(self.opening.to_bytes()).await;
        res?;
        Ok(
            match extended::send::send(&mut ext, src, env.ctx.cfg.data_timeout).await {
                Ok(bytes) => {
                    self.keep_extended(ext);
                    TransferOutcome::Complete {
                        bytes,
                        kept_open: true,
                    }
                }
                Err(StoreError::File(e)) => {
                    tracing::warn!(path = %self.t.path, error = %e, "MODE E send failed reading the file");
                    TransferOutcome::Local(fs_error(e))
                }
                Err(e) => {
                    tracing::info!(path = %self.t.path, error = ?e, "MODE E send aborted");
                    TransferOutcome::ConnectionLost
                }
            },
        )
    }

    async fn retrieve(&mut self) -> io::Result<TransferOutcome> {
        let file = match self.env.storage.open_download(&self.t.path).await {
            Ok(f) => f,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        if self.t.mode == TransferMode::Extended {
            let end = file.size();
            // REST n is the range 0-n. After ERET P the blocks' offsets count from its offset.
            let mut have = self.t.have.clone();
            have.push((0, self.t.offset));
            let (end, base) = match self.t.partial {
                Some(len) => (end.min(self.t.offset.saturating_add(len)), self.t.offset),
                None => (end, 0),
            };
            return self
                .send_extended(extended::send::Source::File {
                    file: &file,
                    end,
                    have: &have,
                    base,
                })
                .await;
        }
        let mut conn = match self.open_data().await? {
            Ok(c) => c,
            Err(outcome) => return Ok(outcome),
        };
        let block = self.t.mode == TransferMode::Block;
        // A client that stops reading the data connection is cut after this long without progress.
        let stall = self.env.ctx.cfg.data_timeout;
        let mut ascii = (self.t.ttype == TransferType::Ascii).then(LfToCrlf::default);
        let mut offset = self.t.offset;
        // ERET P: the bytes up to here only.
        let end = self.t.partial.map(|len| offset.saturating_add(len));
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut out = Vec::new();
        loop {
            buf.clear();
            let (res, b) = file.read(buf, offset).await;
            buf = b;
            let n = match (res, end) {
                (Ok(n), Some(end)) => {
                    let n = n.min((end - offset) as usize);
                    buf.truncate(n);
                    n
                }
                (Ok(n), None) => n,
                (Err(e), _) => return Ok(TransferOutcome::Local(fs_error(e))),
            };
            out.clear();
            if n == 0 {
                if block {
                    modeb::Encoder::eof(&mut out);
                    let (res, _) = secure::send(&mut conn, std::mem::take(&mut out), stall).await;
                    if res.is_err() {
                        return Ok(TransferOutcome::ConnectionLost);
                    }
                } else if secure::finish_stream(&mut conn, stall).await.is_err() {
                    return Ok(TransferOutcome::ConnectionLost);
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
            let (res, w) = secure::send(&mut conn, wire, stall).await;
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
        let pattern = self.t.pattern.as_deref();
        let (entries, is_dir) = match self.env.storage.list(&self.t.path, pattern).await {
            Ok(e) => e,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        if self.t.kind == TransferKind::MachineList && !is_dir {
            return Ok(TransferOutcome::Local(FsError::NotADirectory));
        }
        let now = storage::now_secs();
        let prefix = listing::nlst_prefix(self.t.arg.as_deref(), pattern.is_some(), is_dir);
        let mut out = Vec::with_capacity(entries.len() * 64);
        for e in &entries {
            match self.t.kind {
                TransferKind::NameList => listing::name_line(&prefix, e, &mut out),
                TransferKind::MachineList => {
                    if let Some(f) = listing::facts(e, self.env.perms, false, self.env.facts) {
                        out.extend_from_slice(f.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                _ => listing::list_line(e, now, &mut out),
            }
        }
        if self.t.mode == TransferMode::Extended {
            return self
                .send_extended(extended::send::Source::Bytes(&out))
                .await;
        }
        let mut conn = match self.open_data().await? {
            Ok(c) => c,
            Err(outcome) => return Ok(outcome),
        };
        let bytes = out.len() as u64;
        if self.t.mode == TransferMode::Block {
            let mut framed = Vec::with_capacity(out.len() + 16);
            modeb::Encoder::file(&out, &mut framed);
            out = framed;
        }
        let stall = self.env.ctx.cfg.data_timeout;
        let (mut res, _) = secure::send(&mut conn, out, stall).await;
        if res.is_ok() && self.t.mode != TransferMode::Block {
            res = secure::finish_stream(&mut conn, stall).await;
        }
        Ok(match res {
            Ok(()) => self.finish(conn, bytes),
            Err(_) => TransferOutcome::ConnectionLost,
        })
    }
}
