//! MODE E (GridFTP extended block mode) uploads: one file over one or more parallel data
//! connections, each block written at its own offset as it arrives, the connections kept open for
//! the next file (`globus-url-copy -fast`, `-p N`, `-pp`).
//!
//! The file is complete when the EOF block has come and as many connections as it announced have
//! sent EOD, with no gap in the bytes (`proto::modee::Transfer`); only then is it landed. A
//! connection that closes before its EOD, a stalled transfer, or a bad block fails the upload and
//! nothing lands. Bytes a connection sends after its EOD wait for the next file.
//!
//! Sends (RETR and listings in MODE E) are in [`send`]; they share the session's kept connections
//! with uploads.
//!
//! Payload is received into the core's registered buffers (a multishot recv per connection) and
//! written from them at its offsets with fixed writes, as MODE B does; a connection stops taking
//! buffers at its EOD, so a client that sends the next file early fills only its socket buffer.
//!
//! Not yet: 111 range markers for uploads (a failed upload keeps nothing, so there is nothing a
//! restart could skip), and TLS on MODE E data connections (534).

pub mod send;

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::engine::op::recv_multi::Received;
use crate::engine::timer::Sleep;
use crate::proto::modee::{Decoder, Event, Limits, Transfer};
use crate::server::context::CoreCtx;
use crate::server::storage::FileSink;

use super::failure::{stalled, StoreError};
use super::fixed::{self, Receiver, WriteSet};
use super::passive::PassiveListener;

/// One data connection of a MODE E session, kept across files.
struct Conn {
    fd: SharedFd,
    /// Multishot recv into the core's registered buffers; paused between files.
    rx: Receiver,
    decoder: Decoder,
    /// A received buffer not decoded to its end: after an EOD, the next file's first blocks.
    leftover: Option<(Rc<PoolBuf>, usize)>,
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

    /// Takes a new connection (accepted for an upload, or opened for a send); it carries the next
    /// transfer either way.
    fn adopt(&mut self, fd: SharedFd, stall: Duration) {
        self.conns.push(Conn {
            rx: Receiver::new(&fd, stall),
            fd,
            decoder: Decoder::default(),
            leftover: None,
        });
    }

    /// The open connections' sockets, for a send. Connections an upload left mid-file are gone.
    fn usable(&mut self) -> Vec<SharedFd> {
        self.conns
            .retain(|c| !c.rx.closed && (c.decoder.is_fresh() || c.decoder.at_eod()));
        self.conns.iter().map(|c| c.fd.clone()).collect()
    }
}

enum Wake {
    Accepted(Option<io::Result<std::os::fd::OwnedFd>>),
    Wrote,
    Received(usize, Option<io::Result<Received>>),
    Tick,
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad MODE E stream: {e}"),
    ))
}

/// Decodes what connection `id` has received, queueing each payload run as a write from the
/// registered buffer it arrived in at `start` + its offset. At this connection's EOD the rest of
/// the buffer is kept for the next file and the connection stops taking data.
fn feed(
    conn: &mut Conn,
    id: u32,
    t: &mut Transfer,
    writes: &mut WriteSet,
    start: u64,
) -> Result<(), StoreError> {
    let Some((buf, mut pos)) = conn.leftover.take() else {
        return Ok(());
    };
    let base = buf.as_slice().as_ptr() as usize;
    while let Some(ev) = conn.decoder.next(buf.as_slice(), &mut pos).map_err(bad)? {
        t.on_event(id, &ev).map_err(bad)?;
        match ev {
            Event::Data { offset, bytes } => {
                // Blocks arrive in any order over the parallel connections: the write set feeds
                // the upload's inline checksums, whose gate puts them back in file order.
                let at = bytes.as_ptr() as usize - base;
                writes.push(buf.clone(), at..at + bytes.len(), start + offset)?;
            }
            // Without a will-close to come, the decoder stands at the end of this file and what
            // follows is the next file's; with one, the block's last event is still to come.
            Event::Eod if conn.decoder.at_eod() => break,
            Event::Eod => {}
            Event::Eof { .. } | Event::WillClose => {}
        }
    }
    if pos < buf.len() {
        conn.leftover = Some((buf, pos));
    }
    if conn.decoder.at_eod() {
        conn.rx.pause();
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
    let mut writes = WriteSet::new(sink);
    // Connections that ended the last file cleanly carry on; the others are gone.
    ext.conns
        .retain_mut(|c| !c.rx.closed && (c.decoder.is_fresh() || c.decoder.next_transfer()));
    for (id, c) in ext.conns.iter_mut().enumerate() {
        feed(c, id as u32, &mut t, &mut writes, start)?;
    }
    let mut accepts = listener.map(|l| op::accept::accept_multi(&l.fd));
    let mut last = Instant::now();
    let mut tick = Sleep::until(last + stall);
    loop {
        if t.is_complete() && writes.is_empty() {
            return Ok(t.len());
        }
        // Every connection still sending this file takes data into the core's buffers; when the
        // pool is dry and no write will return one, wait (bounded) for another session's.
        let mut armed = false;
        for c in ext.conns.iter_mut() {
            if !c.decoder.at_eod() {
                armed |= c.rx.try_arm();
            }
        }
        let receiving = ext
            .conns
            .iter()
            .any(|c| !c.decoder.at_eod() && !c.rx.closed);
        if receiving && !armed && writes.is_empty() {
            fixed::wait_for_buffer(stall).await?;
            continue;
        }
        let conns = &mut ext.conns;
        let writes_ref = &mut writes;
        let wake = poll_fn(|cx| {
            if let Poll::Ready(r) = writes_ref.poll_completions(cx) {
                return Poll::Ready(r.map(|()| Wake::Wrote));
            }
            if let Some(a) = accepts.as_mut() {
                if let Poll::Ready(item) = a.poll_next(cx) {
                    return Poll::Ready(Ok(Wake::Accepted(item)));
                }
            }
            for (i, c) in conns.iter_mut().enumerate() {
                if c.decoder.at_eod() {
                    continue;
                }
                if let Poll::Ready(item) = c.rx.poll_recv(cx) {
                    return Poll::Ready(Ok(Wake::Received(i, item)));
                }
            }
            if Pin::new(&mut tick).poll(cx).is_ready() {
                return Poll::Ready(Ok(Wake::Tick));
            }
            Poll::Pending
        })
        .await?;
        match wake {
            Wake::Wrote => last = Instant::now(),
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
                ext.adopt(fd, stall);
            }
            Wake::Received(i, item) => {
                let c = &mut ext.conns[i];
                if let Some(buf) = c.rx.on_recv(item)? {
                    last = Instant::now();
                    c.leftover = Some((Rc::new(buf), 0));
                    feed(c, i as u32, &mut t, &mut writes, start)?;
                } else if c.rx.closed && !c.decoder.at_eod() {
                    return Err(StoreError::Net(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a MODE E data connection closed before its EOD",
                    )));
                }
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
