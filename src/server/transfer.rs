//! Running one transfer: prepare the file, make the data connection, send the 150, move the bytes,
//! land the upload, and report the outcome for the session's final reply.
//!
//! Files are opened before the data connection is made, so a missing file or a forbidden name is
//! answered with 550/553 without the client ever connecting.

use std::io;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::fd::SharedFd;
use crate::engine::{blocking, dir, net, op};
use crate::proto::command::TransferType;
use crate::proto::listing::{self, Entry, EntryKind};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, Session, Transfer, TransferKind, TransferOutcome};

use super::control::Control;
use super::core::CoreCtx;
use super::data::{self, PassiveListener};
use super::fsops::{self, fs_error};
use super::landing::{self, Upload};
use super::store::{self, StoreError};

/// Runs `t`. The outer error is a failure of the control connection itself (the session ends); the
/// outcome is what the final reply reports.
pub async fn run(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
) -> io::Result<TransferOutcome> {
    match t.kind {
        TransferKind::Store => store(ctx, ctl, session, t, passive).await,
        TransferKind::Retrieve => retrieve(ctx, ctl, session, t, passive).await,
        TransferKind::List | TransferKind::NameList => list(ctx, ctl, session, t, passive).await,
    }
}

async fn open_data(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
) -> io::Result<Option<SharedFd>> {
    match data::connect(ctx, t.endpoint, passive, ctl.peer, ctl.local).await {
        Ok(fd) => {
            ctl.send(&session.transfer_opening()).await?;
            Ok(Some(fd))
        }
        Err(e) => {
            tracing::debug!(error = %e, "data connection failed");
            Ok(None)
        }
    }
}

async fn store(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
) -> io::Result<TransferOutcome> {
    let upload = match Upload::create(&ctx.root, &t.path).await {
        Ok(u) => u,
        Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
    };
    let Some(data) = open_data(ctx, ctl, session, t, passive).await? else {
        upload.discard().await;
        return Ok(TransferOutcome::NoConnection);
    };
    let started = std::time::Instant::now();
    let res = store::receive(ctx.cfg.data_path, &data, &upload.file, 0, ctx.cfg.data_timeout).await;
    drop(data);
    match res {
        Ok(bytes) => match upload.land().await {
            Ok(()) => {
                tracing::debug!(path = %t.path, bytes, elapsed_us = started.elapsed().as_micros() as u64, "stored");
                Ok(TransferOutcome::Complete { bytes })
            }
            Err(e) => Ok(TransferOutcome::Local(fs_error(e))),
        },
        Err(StoreError::Net(e)) => {
            tracing::info!(path = %t.path, error = %e, "upload aborted");
            upload.discard().await;
            Ok(TransferOutcome::ConnectionLost)
        }
        Err(StoreError::File(e)) => {
            tracing::warn!(path = %t.path, error = %e, "upload failed writing the file");
            upload.discard().await;
            Ok(TransferOutcome::Local(fs_error(e)))
        }
    }
}

async fn retrieve(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
) -> io::Result<TransferOutcome> {
    let file = match fsops::open(&ctx.root, &t.path, libc::O_RDONLY, 0).await {
        Ok(f) => Rc::new(f),
        Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
    };
    match op::statx::statx(&file, Default::default(), libc::AT_EMPTY_PATH).await {
        Ok(st) if st.is_dir() => return Ok(TransferOutcome::Local(FsError::IsADirectory)),
        Ok(_) => {}
        Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
    }
    let Some(data) = open_data(ctx, ctl, session, t, passive).await? else {
        return Ok(TransferOutcome::NoConnection);
    };
    let mut offset = 0u64;
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        buf.clear();
        let (res, b) = op::read::read(&file, buf, offset).await;
        buf = b;
        let n = match res {
            Ok(n) => n,
            Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
        };
        if n == 0 {
            return Ok(TransferOutcome::Complete { bytes: offset });
        }
        if t.ttype == TransferType::Ascii {
            buf = to_crlf(&buf);
        }
        let (res, b) = net::send_all(&data, buf).await;
        buf = b;
        if res.is_err() {
            return Ok(TransferOutcome::ConnectionLost);
        }
        offset += n as u64;
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

async fn list(
    ctx: &CoreCtx,
    ctl: &mut Control,
    session: &Session,
    t: &Transfer,
    passive: Option<PassiveListener>,
) -> io::Result<TransferOutcome> {
    let entries = match read_entries(ctx, &t.path).await {
        Ok(e) => e,
        Err(e) => return Ok(TransferOutcome::Local(fs_error(e))),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut out = Vec::with_capacity(entries.len() * 64);
    for e in &entries {
        match t.kind {
            TransferKind::NameList => listing::name_line(e, &mut out),
            _ => listing::list_line(e, now, &mut out),
        }
    }
    let Some(data) = open_data(ctx, ctl, session, t, passive).await? else {
        return Ok(TransferOutcome::NoConnection);
    };
    let bytes = out.len() as u64;
    let (res, _) = net::send_all(&data, out).await;
    Ok(match res {
        Ok(()) => TransferOutcome::Complete { bytes },
        Err(_) => TransferOutcome::ConnectionLost,
    })
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
            Some(Entry { name, kind: kind_of(r.mode), size: r.size, mtime: r.mtime, perm: r.mode & 0o7777, nlink: r.nlink })
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
