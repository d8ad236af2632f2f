//! MODE E (GridFTP extended block mode) uploads: one file over one or more parallel data
//! connections, each block written at its own offset as it arrives, the connections kept open for
//! the next file (`globus-url-copy -fast`, `-p N`, `-pp`).
//!
//! The file is complete when the EOF block has come and as many connections as it announced have
//! sent EOD, with no gap in the bytes (`proto::modee::Transfer`); only then is it landed. A
//! connection that closes before its EOD, a stalled transfer, or a bad block fails the upload and
//! nothing lands. Bytes a connection sends after its EOD wait for the next file.
//!
//! Not yet: MODE E downloads (RETR, `OPTS RETR Parallelism`), restart markers and range REST, TLS
//! on MODE E data connections, and the registered-buffer receive path (payload is received into a
//! Vec per connection and written inline).

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::engine::direct;
use crate::engine::fd::SharedFd;
use crate::engine::op::recv::Recv;
use crate::engine::op::{self, Op};
use crate::engine::timer::Sleep;
use crate::proto::modee::{Decoder, Event, Limits, Transfer};
use crate::server::context::CoreCtx;
use crate::server::storage::FileSink;

use super::failure::{stalled, StoreError};
use super::passive::PassiveListener;

/// Bytes one receive on a MODE E connection may take.
const RECV_CHUNK: usize = 256 * 1024;

/// One data connection of a MODE E session, kept across files.
struct Conn {
    fd: SharedFd,
    decoder: Decoder,
    /// Received bytes after this connection's EOD: the next file's first blocks.
    leftover: Vec<u8>,
    pending: Option<Op<Recv>>,
    spare: Vec<u8>,
    closed: bool,
}

/// A session's MODE E data connections, kept between files.
#[derive(Default)]
pub struct Extended {
    conns: Vec<Conn>,
}

impl Extended {
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The first connection's socket (for the session's kept-connection slot).
    pub fn first_fd(&self) -> Option<SharedFd> {
        self.conns.first().map(|c| c.fd.clone())
    }
}

enum Wake {
    Accepted(Option<io::Result<std::os::fd::OwnedFd>>),
    Received(usize, io::Result<usize>, Vec<u8>),
    Tick,
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad MODE E stream: {e}"),
    ))
}

/// Decodes `data` from connection `i`, writing payload at `start` + its offset; keeps what
/// follows an EOD as the connection's leftover.
fn feed(
    conn: &mut Conn,
    id: u32,
    t: &mut Transfer,
    data: &[u8],
    sink: FileSink<'_>,
    start: u64,
) -> Result<(), StoreError> {
    let mut pos = 0;
    while let Some(ev) = conn.decoder.next(data, &mut pos).map_err(bad)? {
        t.on_event(id, &ev).map_err(bad)?;
        match ev {
            Event::Data { offset, bytes } => {
                // Blocks arrive in any order over the parallel connections: the digest's gate
                // puts them back in file order.
                sink.observe(start + offset, bytes);
                direct::pwrite_all(sink.file, bytes, start + offset).map_err(StoreError::File)?;
            }
            // Without a will-close to come, the decoder stands at the end of this file and what
            // follows is the next file's; with one, the block's last event is still to come.
            Event::Eod if conn.decoder.at_eod() => {
                conn.leftover = data[pos..].to_vec();
                return Ok(());
            }
            Event::Eod => {}
            Event::Eof { .. } | Event::WillClose => {}
        }
    }
    Ok(())
}

/// Receives one file. `listener`: the PASV listener of this transfer (new connections are
/// accepted from the control connection's client while the file arrives); `announced`: the ALLO
/// size, checked against what arrives. Returns the file's length.
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    ext: &mut Extended,
    ctx: &CoreCtx,
    listener: Option<&PassiveListener>,
    peer: SocketAddr,
    sink: FileSink<'_>,
    start: u64,
    announced: Option<u64>,
    stall: Duration,
) -> Result<u64, StoreError> {
    let mut t = Transfer::new(Limits::default());
    if let Some(n) = announced.and_then(|n| n.checked_sub(start)) {
        t.expect_len(n);
    }
    // Connections that ended the last file cleanly carry on; the others are gone.
    ext.conns
        .retain_mut(|c| !c.closed && c.decoder.next_transfer());
    for id in 0..ext.conns.len() {
        let leftover = std::mem::take(&mut ext.conns[id].leftover);
        if !leftover.is_empty() {
            feed(
                &mut ext.conns[id],
                id as u32,
                &mut t,
                &leftover,
                sink,
                start,
            )?;
        }
    }
    let mut accepts = listener.map(|l| op::accept::accept_multi(&l.fd));
    let mut last = Instant::now();
    let mut tick = Sleep::until(last + stall);
    loop {
        if t.is_complete() {
            return Ok(t.len());
        }
        let conns = &mut ext.conns;
        let wake = poll_fn(|cx| {
            if let Some(a) = accepts.as_mut() {
                if let Poll::Ready(item) = a.poll_next(cx) {
                    return Poll::Ready(Wake::Accepted(item));
                }
            }
            for (i, c) in conns.iter_mut().enumerate() {
                if c.closed || c.decoder.at_eod() {
                    continue;
                }
                let op = c.pending.get_or_insert_with(|| {
                    let mut buf = std::mem::take(&mut c.spare);
                    buf.clear();
                    buf.reserve(RECV_CHUNK);
                    op::recv::recv(&c.fd, buf)
                });
                if let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) {
                    c.pending = None;
                    return Poll::Ready(Wake::Received(i, res, buf));
                }
            }
            if Pin::new(&mut tick).poll(cx).is_ready() {
                return Poll::Ready(Wake::Tick);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Accepted(None) => accepts = listener.map(|l| op::accept::accept_multi(&l.fd)),
            Wake::Accepted(Some(Err(e))) => return Err(StoreError::Net(e)),
            Wake::Accepted(Some(Ok(fd))) => {
                let Some(fd) = super::data::admit(ctx, fd, peer).await else {
                    continue;
                };
                if ext.conns.len() >= Limits::default().max_connections {
                    return Err(bad("too many data connections"));
                }
                ctx.metrics.data_connection();
                ext.conns.push(Conn {
                    fd,
                    decoder: Decoder::default(),
                    leftover: Vec::new(),
                    pending: None,
                    spare: Vec::new(),
                    closed: false,
                });
            }
            Wake::Received(i, res, buf) => {
                let n = res.map_err(StoreError::Net)?;
                let c = &mut ext.conns[i];
                if n == 0 {
                    c.closed = true;
                    if !c.decoder.at_eod() {
                        return Err(StoreError::Net(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "a MODE E data connection closed before its EOD",
                        )));
                    }
                    continue;
                }
                last = Instant::now();
                feed(c, i as u32, &mut t, &buf, sink, start)?;
                c.spare = buf;
            }
            Wake::Tick => {
                if Instant::now() >= last + stall {
                    return Err(stalled());
                }
                tick = Sleep::until(last + stall);
            }
        }
    }
}
