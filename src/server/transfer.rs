//! Running one transfer: prepare the file, make the data connection, send the 150, move the bytes,
//! land the upload, and report the outcome for the session's final reply.
//!
//! Files are opened before the data connection is made, so a missing file or a forbidden name is
//! answered with 550/553 without the client ever connecting.

use std::io;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::{blocking, dir, net, op};
use crate::proto::command::{TransferMode, TransferType};
use crate::proto::listing::{self, Entry, EntryKind};
use crate::proto::modeb;
use crate::proto::path::VPath;
use crate::proto::reply::Reply;
use crate::proto::session::{
    DataEndpoint, FsError, Session, Transfer, TransferKind, TransferOutcome,
};

use super::control::Control;
use super::core::CoreCtx;
use super::data::{self, DataConn, PassiveListener};
use super::fsops::{self, fs_error};
use super::landing::{self, Upload};
use super::store::{self, BlockReceiver, StoreError};

/// Runs `t`. The outer error is a failure of the control connection itself (the session ends); the
/// outcome is what the final reply reports. `kept` holds a MODE B data connection between transfers.
pub async fn run(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
    kept: &mut Option<DataConn>,
) -> io::Result<TransferOutcome> {
    let mut xfer = Xfer {
        ctx,
        ctl,
        session,
        t,
        passive,
        kept,
    };
    match t.kind {
        TransferKind::Store => xfer.store().await,
        TransferKind::Retrieve => xfer.retrieve().await,
        TransferKind::List | TransferKind::NameList => xfer.list().await,
    }
}

struct Xfer<'a> {
    ctx: &'a CoreCtx,
    ctl: &'a mut Control,
    session: &'a Session,
    t: &'a Transfer,
    passive: Option<PassiveListener>,
    kept: &'a mut Option<DataConn>,
}

impl Xfer<'_> {
    /// The data connection: the kept MODE B one, or a new one; then the 150/125 reply.
    async fn open_data(&mut self) -> io::Result<Option<DataConn>> {
        let conn = if self.t.endpoint == DataEndpoint::Open {
            self.kept.take()
        } else {
            *self.kept = None;
            let passive = self.passive.take();
            match data::connect(
                self.ctx,
                self.t.endpoint,
                passive,
                self.ctl.peer,
                self.ctl.local,
            )
            .await
            {
                Ok(fd) => Some(DataConn { fd, block: None }),
                Err(e) => {
                    tracing::debug!(error = %e, "data connection failed");
                    None
                }
            }
        };
        if conn.is_some() {
            self.ctl.send(&self.session.transfer_opening()).await?;
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

    async fn prepare_upload(&self) -> io::Result<(Upload, u64)> {
        let (root, path, offset) = (&self.ctx.root, &self.t.path, self.t.offset);
        match (offset, self.t.mode) {
            (0, _) => Ok((Upload::create(root, path).await?, 0)),
            (o, TransferMode::Block) => Ok((Upload::resume_partial(root, path, o).await?, o)),
            (o, TransferMode::Stream) => Upload::in_place(root, path, Some(o), false).await,
        }
    }

    async fn store(&mut self) -> io::Result<TransferOutcome> {
        let (upload, offset) = match self.prepare_upload().await {
            Ok(u) => u,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        let Some(mut conn) = self.open_data().await? else {
            upload.discard().await;
            return Ok(TransferOutcome::NoConnection);
        };
        let started = std::time::Instant::now();
        let stall = self.ctx.cfg.data_timeout;
        let (res, markers) = match self.t.mode {
            TransferMode::Stream => (
                store::receive(
                    self.ctx.cfg.data_path,
                    &conn.fd,
                    &upload.file,
                    offset,
                    stall,
                )
                .await,
                Vec::new(),
            ),
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
        for (marker, at) in &markers {
            // RFC 959 3.5: the receiver reports each marker with its own position, which REST takes.
            let m = String::from_utf8_lossy(marker);
            self.ctl.queue(&Reply::new(110, format!("MARK {m} = {at}")));
        }
        match res {
            Ok(bytes) => match upload.land().await {
                Ok(()) => {
                    let us = started.elapsed().as_micros() as u64;
                    tracing::debug!(path = %self.t.path, bytes, elapsed_us = us, "stored");
                    Ok(self.finish(conn, bytes))
                }
                Err(e) => Ok(TransferOutcome::Local(fs_error(e))),
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
                Ok(match err {
                    StoreError::Net(e) => {
                        tracing::info!(path = %self.t.path, error = %e, "upload aborted");
                        TransferOutcome::ConnectionLost
                    }
                    StoreError::File(e) => {
                        tracing::warn!(path = %self.t.path, error = %e, "upload failed writing the file");
                        TransferOutcome::Local(fs_error(e))
                    }
                })
            }
        }
    }

    async fn retrieve(&mut self) -> io::Result<TransferOutcome> {
        let file = match fsops::open(&self.ctx.root, &self.t.path, libc::O_RDONLY, 0).await {
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
            if n == 0 {
                if block {
                    out.clear();
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
            if self.t.ttype == TransferType::Ascii {
                buf = to_crlf(&buf);
            }
            let res = if block {
                out.clear();
                modeb::Encoder::data(&buf, &mut out);
                let (res, o) = net::send_all(&conn.fd, std::mem::take(&mut out)).await;
                out = o;
                res
            } else {
                let (res, b) = net::send_all(&conn.fd, buf).await;
                buf = b;
                res
            };
            if res.is_err() {
                return Ok(TransferOutcome::ConnectionLost);
            }
        }
    }

    async fn list(&mut self) -> io::Result<TransferOutcome> {
        let entries = match read_entries(self.ctx, &self.t.path).await {
            Ok(e) => e,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut out = Vec::with_capacity(entries.len() * 64);
        for e in &entries {
            match self.t.kind {
                TransferKind::NameList => listing::name_line(e, &mut out),
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

/// LF -> CRLF for ASCII type (lone LF only; an existing CRLF stays as it is).
fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Entries of the directory at `path`, or the single entry if it names a file. Temporary upload files
/// are hidden: they are not files yet.
async fn read_entries(ctx: &CoreCtx, path: &VPath) -> io::Result<Vec<Entry>> {
    let st = fsops::stat(&ctx.root, path).await?;
    if !st.is_dir() {
        let name = path.file_name().unwrap_or("").to_string();
        return Ok(vec![Entry {
            name,
            kind: kind_of(st.mode),
            size: st.size,
            mtime: st.mtime,
            perm: st.mode & 0o7777,
            nlink: u64::from(st.nlink),
        }]);
    }
    let fd = fsops::open(&ctx.root, path, libc::O_RDONLY | libc::O_DIRECTORY, 0).await?;
    let limit = ctx.cfg.max_list_entries;
    let raw = blocking::spawn_blocking(move || dir::read_dir(fd, limit)).await??;
    let mut entries: Vec<Entry> = raw
        .into_iter()
        .filter_map(|r| {
            let name = String::from_utf8(r.name).ok()?;
            if landing::is_temp_name(&name) {
                return None;
            }
            Some(Entry {
                name,
                kind: kind_of(r.mode),
                size: r.size,
                mtime: r.mtime,
                perm: r.mode & 0o7777,
                nlink: r.nlink,
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn kind_of(mode: u32) -> EntryKind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}
