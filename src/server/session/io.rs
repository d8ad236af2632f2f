//! The control connection's I/O halves: [`Reader`] keeps one recv in flight across every phase of a
//! session (so no pipelined byte is ever lost to a cancelled recv), and [`Control`] batches replies
//! into one send.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::net;
use crate::engine::op::recv::Recv;
use crate::engine::op::{self, Op};
use crate::proto::command::{LineBuffer, LineError};
use crate::proto::reply::Reply;
use crate::server::observe::metrics::CoreMetrics;

/// Bytes of one control-connection read; commands are short, so this bounds idle memory per session.
const READ_CHUNK: usize = 1024;

pub type Line = Result<Vec<u8>, LineError>;

/// The control connection's reading half: one recv kept in flight across every phase of the session.
pub struct Reader {
    fd: SharedFd,
    pending: Option<Op<Recv>>,
    spare: Vec<u8>,
}

impl Reader {
    pub fn new(fd: SharedFd) -> Reader {
        Reader {
            fd,
            pending: None,
            spare: Vec::new(),
        }
    }
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
        lines.push(&buf);
        self.spare = buf;
        Poll::Ready(Ok(n))
    }
}

/// The I/O half of a control connection.
pub struct Control {
    pub fd: SharedFd,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    out: Vec<u8>,
    metrics: Arc<CoreMetrics>,
    /// How long a reply may wait for a client that reads nothing.
    pub send_timeout: Duration,
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
            fd,
            peer,
            local,
            out: Vec::with_capacity(256),
            metrics,
            send_timeout,
        }
    }

    pub fn queue(&mut self, reply: &Reply) {
        self.metrics.reply(reply.wire_code());
        reply.encode(&mut self.out);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let (res, mut buf) = net::send_all(&self.fd, buf, self.send_timeout).await;
        buf.clear();
        self.out = buf;
        res
    }

    pub async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.queue(reply);
        self.flush().await
    }
}
