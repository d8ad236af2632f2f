//! The control connection's I/O halves: [`Reader`] keeps one recv in flight across every phase of a
//! session (so no pipelined byte is ever lost to a cancelled recv), and [`Control`] batches replies
//! into one send. Both go through the connection's [`Channel`], which decrypts and encrypts once
//! TLS is on.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op::recv::Recv;
use crate::engine::op::{self, Op};
use crate::proto::command::{LineBuffer, LineError};
use crate::proto::reply::Reply;
use crate::server::observe::metrics::CoreMetrics;
use crate::tls::stream::Channel;

/// Bytes of one control-connection read; commands are short, so this bounds idle memory per session.
const READ_CHUNK: usize = 1024;

pub type Line = Result<Vec<u8>, LineError>;

/// The control connection's reading half: one recv kept in flight across every phase of the session.
pub struct Reader {
    fd: SharedFd,
    chan: Rc<Channel>,
    pending: Option<Op<Recv>>,
    spare: Vec<u8>,
    plain: Vec<u8>,
    /// Raw bytes after an `AUTH` line, held back from the line buffer until the session has
    /// answered it: after `234` they are the start of the TLS handshake, not commands.
    held: Option<Vec<u8>>,
}

impl Reader {
    pub fn new(chan: Rc<Channel>) -> Reader {
        Reader {
            fd: chan.fd.clone(),
            chan,
            pending: None,
            spare: Vec::new(),
            plain: Vec::new(),
            held: None,
        }
    }

    /// Feeds clear bytes to `lines`, stopping after a line that starts with `AUTH` (the rest is
    /// held until [`Reader::take_held`] or [`Reader::release`]).
    fn feed_clear(&mut self, mut data: &[u8], lines: &mut LineBuffer) {
        if let Some(h) = self.held.as_mut() {
            h.extend_from_slice(data);
            return;
        }
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(end + 1);
            lines.push(line);
            data = rest;
            if is_auth_line(line) {
                self.held = Some(data.to_vec());
                return;
            }
        }
        lines.push(data);
    }

    /// Bytes held after an AUTH line (the client's TLS hello, if it did not wait for `234`).
    pub fn take_held(&mut self) -> Vec<u8> {
        self.held.take().unwrap_or_default()
    }

    /// The AUTH was refused: the held bytes are commands after all.
    pub fn release(&mut self, lines: &mut LineBuffer) {
        if let Some(h) = self.held.take() {
            self.feed_clear(&h, lines);
        }
    }

    pub fn holding(&self) -> bool {
        self.held.is_some()
    }
}

/// Whether a raw control line is an AUTH command (the tail of the line may still be a partial
/// line; only the verb matters).
fn is_auth_line(line: &[u8]) -> bool {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let verb = &line[start..];
    verb.len() >= 5
        && verb[..4].eq_ignore_ascii_case(b"AUTH")
        && matches!(verb[4], b' ' | b'\r' | b'\n')
}

impl Reader {
    /// Received bytes (empty at end of stream), appended to `lines`.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        lines: &mut LineBuffer,
    ) -> Poll<io::Result<usize>> {
        let op = self.pending.get_or_insert_with(|| {
            let mut buf = std::mem::take(&mut self.spare);
            buf.clear();
            buf.reserve(READ_CHUNK);
            op::recv::recv(&self.fd, buf)
        });
        let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) else {
            return Poll::Pending;
        };
        self.pending = None;
        let n = res?;
        if !self.chan.is_tls() {
            self.feed_clear(&buf, lines);
            self.spare = buf;
            return Poll::Ready(Ok(n));
        }
        self.plain.clear();
        let decoded = self.chan.on_received(&buf, &mut self.plain);
        self.spare = buf;
        if let Err(e) = decoded {
            tracing::info!(error = %e, "TLS error on the control connection; closing");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        lines.push(&self.plain);
        // A TLS control connection that ends without close_notify ends the same way: the session
        // is over either way, and nothing is stored on a control connection's word.
        Poll::Ready(Ok(n))
    }
}

/// The I/O half of a control connection.
pub struct Control {
    pub chan: Rc<Channel>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    out: Vec<u8>,
    metrics: Arc<CoreMetrics>,
}

impl Control {
    pub fn new(
        fd: SharedFd,
        peer: SocketAddr,
        local: SocketAddr,
        metrics: Arc<CoreMetrics>,
        send_timeout: Duration,
    ) -> Control {
        Control {
            chan: Channel::new(fd, send_timeout),
            peer,
            local,
            out: Vec::with_capacity(256),
            metrics,
        }
    }

    pub fn queue(&mut self, reply: &Reply) {
        self.metrics.reply(reply.wire_code());
        reply.encode(&mut self.out);
    }

    /// Sends the queued replies (and, during a TLS handshake, the handshake's records).
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() && !self.chan.is_tls() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let (res, mut buf) = self.chan.send(buf).await;
        buf.clear();
        self.out = buf;
        res
    }

    /// Bytes of replies queued and not sent.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// The queued replies, taken to go out with a later send (see `XferEnv::preface`).
    pub fn take_queued(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Queues again, ahead of anything queued since, replies taken and not sent.
    pub fn requeue(&mut self, mut taken: Vec<u8>) {
        if !taken.is_empty() {
            taken.extend_from_slice(&self.out);
            self.out = taken;
        }
    }

    pub async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.queue(reply);
        self.flush().await
    }
}
