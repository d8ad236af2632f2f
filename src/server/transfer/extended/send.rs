//! MODE E sends: RETR, and listings, in GridFTP extended block mode.
//!
//! The sender is the active side: after `OPTS RETR Parallelism=n` and `PORT`, the server opens n
//! connections to the client (globus-url-copy listens and waits for them, `docs/gridftp/`). The
//! file's blocks go to whichever connection is free to take one, each ends its part with EOD, and
//! the last one with EOF | EOD announcing all of them, as globus-gridftp-server does. No
//! will-close bit, so the connections stay for the session's next transfer in either direction
//! (`125 ... reusing existing data connection`). A client that asked for MODE E over PASV gets the
//! one connection it opens.
//!
//! Blocks are read from the file straight behind their header in one buffer per connection, so a
//! block costs one read and one send and nothing is copied in user space.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::net;
use crate::proto::modee::{header, Blocks, Encoder, HEADER_LEN};
use crate::proto::session::DataEndpoint;
use crate::server::context::CoreCtx;
use crate::server::storage::Download;

use super::super::data;
use super::super::failure::StoreError;
use super::super::passive::PassiveListener;
use super::Extended;

/// Payload bytes per block: what globus-gridftp-server sends (256 KiB), large enough that the
/// 17-byte header is noise and small enough to spread a file over the connections.
const BLOCK: usize = 256 * 1024;

/// One of several operations that run side by side (a connection's part of a send, a connect).
type Pending<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + 'a>>;

/// Runs `futs` side by side until all succeed (their results, in order) or one fails (its error;
/// the others are dropped, which cancels their ring operations).
async fn all<T, E>(futs: Vec<Pending<'_, T, E>>) -> Result<Vec<T>, E> {
    let mut slots: Vec<Option<Pending<'_, T, E>>> = futs.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = slots.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut running = false;
        for (slot, out) in slots.iter_mut().zip(done.iter_mut()) {
            let Some(f) = slot.as_mut() else { continue };
            match f.as_mut().poll(cx) {
                Poll::Ready(Ok(v)) => {
                    *out = Some(v);
                    *slot = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => running = true,
            }
        }
        if running {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(done.into_iter().flatten().collect())
}

/// What a send carries.
pub enum Source<'a> {
    /// A file up to `end`, except the ranges the client `have`s (from `REST`); block offsets
    /// count from `base` (`ERET P`: from its offset).
    File {
        file: &'a Download,
        end: u64,
        have: &'a [(u64, u64)],
        base: u64,
    },
    /// A listing, built in memory.
    Bytes(&'a [u8]),
}

/// Where the transfer's connections come from: the kept ones, n new ones to a PORT address, or
/// the one the client opens to the PASV listener. Fails when there is none.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    ext: &mut Extended,
    ctx: &CoreCtx,
    endpoint: DataEndpoint,
    listener: Option<&PassiveListener>,
    peer: SocketAddr,
    local: SocketAddr,
    parallelism: u16,
) -> io::Result<()> {
    match endpoint {
        DataEndpoint::Open => {}
        DataEndpoint::Passive => {
            ext.conns.clear();
            let fd = data::connect(ctx, endpoint, listener, peer, local).await?;
            ctx.metrics.data_connection();
            ext.adopt(fd, ctx.cfg.data_timeout);
        }
        DataEndpoint::Active(_) => {
            ext.conns.clear();
            // All at once: each `data::connect` is bounded by the data timeout, so the whole set
            // is too, and a far client pays one round trip for them, not n.
            let connects = (0..parallelism.max(1))
                .map(|_| -> Pending<'_, SharedFd, io::Error> {
                    Box::pin(data::connect(ctx, endpoint, None, peer, local))
                })
                .collect();
            for fd in all(connects).await? {
                let _ = net::set_nodelay(std::os::fd::AsRawFd::as_raw_fd(&*fd));
                ctx.metrics.data_connection();
                ext.adopt(fd, ctx.cfg.data_timeout);
            }
        }
    }
    if ext.usable().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "no MODE E data connection",
        ));
    }
    Ok(())
}

/// Sends `src` over the connections [`connect`] made; returns the payload bytes sent. On an error
/// the caller drops the connections: the client cannot know where the stream stopped.
pub async fn send(ext: &mut Extended, src: Source<'_>, stall: Duration) -> Result<u64, StoreError> {
    let fds = ext.usable();
    let blocks = RefCell::new(match &src {
        Source::File { end, have, .. } => Blocks::missing(*end, BLOCK as u64, have),
        Source::Bytes(b) => Blocks::new(0, b.len() as u64, BLOCK as u64),
    });
    let conns = fds.len() as u64;
    let parts = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| -> Pending<'_, u64, StoreError> {
            let last = i + 1 == fds.len();
            Box::pin(part(fd, &blocks, &src, last, conns, stall))
        })
        .collect();
    Ok(all(parts).await?.into_iter().sum())
}

/// One connection's part: blocks until none are left, then its EOD (the last connection's with
/// EOF). A file that turns out shorter than it was is an error, not a short EOF: the client would
/// take the short file for the whole one.
async fn part(
    fd: &SharedFd,
    blocks: &RefCell<Blocks>,
    src: &Source<'_>,
    last: bool,
    conns: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let base = match src {
        Source::File { base, .. } => *base,
        Source::Bytes(_) => 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut sent = 0;
    loop {
        let claim = blocks.borrow_mut().claim();
        let Some((at, len)) = claim else { break };
        buf.clear();
        buf.reserve(HEADER_LEN + len);
        buf.extend_from_slice(&[0; HEADER_LEN]);
        match src {
            Source::Bytes(b) => buf.extend_from_slice(&b[at as usize..at as usize + len]),
            Source::File { file, .. } => {
                while buf.len() < HEADER_LEN + len {
                    let got = (buf.len() - HEADER_LEN) as u64;
                    let (res, b) = file.read(buf, at + got).await;
                    buf = b;
                    match res {
                        Ok(0) => {
                            return Err(StoreError::File(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the file got shorter while it was being sent",
                            )))
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(StoreError::File(e)),
                    }
                }
                // The read may run past this block into the buffer's spare room.
                buf.truncate(HEADER_LEN + len);
            }
        }
        buf[..HEADER_LEN].copy_from_slice(&header(0, len as u64, at - base));
        let (res, b) = net::send_all(fd, buf, stall).await;
        buf = b;
        res.map_err(StoreError::Net)?;
        sent += len as u64;
    }
    buf.clear();
    Encoder::end_of_part(last, conns, &mut buf);
    let (res, _) = net::send_all(fd, buf, stall).await;
    res.map_err(StoreError::Net)?;
    Ok(sent)
}
