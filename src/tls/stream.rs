//! Driving a [`TlsConn`] over an engine socket: the handshake, reads that tell a clean end
//! (close_notify) from a cut connection, writes, and [`Channel`], a control connection that may or
//! may not have TLS on it.
//!
//! Every send is bounded by a stall deadline (a peer that stops reading is cut), every read by the
//! caller's. A kTLS seam would sit here: after the handshake, `TlsConn` would hand its traffic keys
//! to the socket and `TlsStream` would fall back to plain reads and writes; this kernel has no
//! `tls` ULP, so that path is not built.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, time};

use super::conn::{TlsConn, TlsError};

fn tls_io(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Sends everything `tls` has queued.
async fn flush_conn(
    fd: &SharedFd,
    tls: &mut TlsConn,
    spare: &mut Vec<u8>,
    stall: Duration,
) -> io::Result<()> {
    if tls.outgoing().is_empty() {
        return Ok(());
    }
    let out = tls.take_outgoing(std::mem::take(spare));
    let (res, buf) = net::send_all(fd, out, stall).await;
    *spare = buf;
    res
}

/// How a read ended when it brought no more data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// close_notify: the peer ended its data on purpose.
    Clean,
    /// The connection closed without close_notify: whatever was sent may be cut short.
    Cut,
}

/// A TLS connection on a data socket.
pub struct TlsStream {
    pub fd: SharedFd,
    pub tls: TlsConn,
    spare: Vec<u8>,
    /// The socket reached end of stream.
    eof: bool,
}

impl TlsStream {
    /// The server's handshake; the whole of it must finish within `limit`.
    pub async fn accept(
        fd: SharedFd,
        config: Arc<ServerConfig>,
        limit: Duration,
    ) -> io::Result<TlsStream> {
        let tls = TlsConn::server(config).map_err(tls_io)?;
        Self::handshake(fd, tls, limit).await
    }

    /// The client's handshake (loadgen).
    pub async fn connect(
        fd: SharedFd,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> io::Result<TlsStream> {
        let tls = TlsConn::client(config, name).map_err(tls_io)?;
        Self::handshake(fd, tls, limit).await
    }

    async fn handshake(fd: SharedFd, tls: TlsConn, limit: Duration) -> io::Result<TlsStream> {
        let mut s = TlsStream {
            fd,
            tls,
            spare: Vec::new(),
            eof: false,
        };
        let run = async {
            loop {
                s.flush(limit).await?;
                if !s.tls.is_handshaking() {
                    return Ok(());
                }
                if s.recv_more().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    ));
                }
            }
        };
        match time::timeout(limit, run).await {
            Ok(Ok(())) => Ok(s),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Sends what the TLS state has queued (handshake records, encrypted data, alerts).
    pub async fn flush(&mut self, stall: Duration) -> io::Result<()> {
        flush_conn(&self.fd, &mut self.tls, &mut self.spare, stall).await
    }

    /// One recv of ciphertext, processed; returns the bytes received (0: end of stream).
    async fn recv_more(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let buf = self.tls.incoming_buf();
        let (res, buf) = op::recv::recv(&self.fd, buf).await;
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                self.tls.received(buf).map_err(tls_io)?;
                return Err(e);
            }
        };
        self.tls.received(buf).map_err(tls_io)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Waits until there is plaintext to take ([`TlsConn::plaintext`]), or the data ended. `stall`
    /// bounds the wait for each recv. Any queued TLS output (a post-handshake message) is sent first.
    pub async fn fill(&mut self, stall: Duration) -> io::Result<Option<End>> {
        loop {
            if !self.tls.plaintext().is_empty() {
                return Ok(None);
            }
            if self.tls.peer_closed() {
                return Ok(Some(End::Clean));
            }
            self.flush(stall).await?;
            let n = match time::timeout(stall, self.recv_more()).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no data within the data timeout",
                    ))
                }
            };
            if n == 0 && self.tls.plaintext().is_empty() {
                return Ok(Some(if self.tls.peer_closed() {
                    End::Clean
                } else {
                    End::Cut
                }));
            }
        }
    }

    /// Encrypts and sends `data`.
    pub async fn write_all(&mut self, data: &[u8], stall: Duration) -> io::Result<()> {
        self.tls.encrypt(data).map_err(tls_io)?;
        self.flush(stall).await
    }

    /// Sends close_notify: the end of our data.
    pub async fn shutdown(&mut self, stall: Duration) -> io::Result<()> {
        self.tls.close_notify().map_err(tls_io)?;
        self.flush(stall).await
    }
}

/// A control connection's socket with optional TLS: sends encrypt when TLS is on. Shared (by `Rc`)
/// between the session's reader, its replies, and a running transfer's preliminary replies.
pub struct Channel {
    pub fd: SharedFd,
    tls: RefCell<Option<TlsConn>>,
    spare: RefCell<Vec<u8>>,
    pub send_timeout: Duration,
}

impl Channel {
    pub fn new(fd: SharedFd, send_timeout: Duration) -> Rc<Channel> {
        Rc::new(Channel {
            fd,
            tls: RefCell::new(None),
            spare: RefCell::new(Vec::new()),
            send_timeout,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.borrow().is_some()
    }

    /// The handshake is still running (nothing may be sent but its records).
    pub fn handshaking(&self) -> bool {
        self.tls
            .borrow()
            .as_ref()
            .is_some_and(|t| t.is_handshaking())
    }

    /// Turns TLS on (after `234`, or at once on an implicit-TLS listener); `early` are bytes that
    /// arrived after the AUTH line (a client may send its hello without waiting for the reply).
    pub fn start_tls(&self, config: Arc<ServerConfig>, early: &[u8]) -> Result<(), TlsError> {
        let mut tls = TlsConn::server(config)?;
        if !early.is_empty() {
            tls.received_bytes(early)?;
        }
        *self.tls.borrow_mut() = Some(tls);
        Ok(())
    }

    /// Received bytes from the socket: with TLS, processed and the plaintext appended to `plain`;
    /// without, appended as they are.
    pub fn on_received(&self, bytes: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut guard = self.tls.borrow_mut();
        match guard.as_mut() {
            None => plain.extend_from_slice(bytes),
            Some(t) => {
                t.received_bytes(bytes)?;
                plain.extend_from_slice(t.plaintext());
                let n = t.plaintext().len();
                t.consume(n);
            }
        }
        Ok(())
    }

    /// Whether the TLS peer sent close_notify on the control connection.
    pub fn peer_closed(&self) -> bool {
        self.tls.borrow().as_ref().is_some_and(|t| t.peer_closed())
    }

    /// Sends `bytes` (a batch of replies; may be empty to push pending handshake records). Returns
    /// the buffer for reuse.
    pub async fn send(&self, mut bytes: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let out = {
            let mut guard = self.tls.borrow_mut();
            match guard.as_mut() {
                None => bytes,
                Some(t) => {
                    if !bytes.is_empty() {
                        if let Err(e) = t.encrypt(&bytes) {
                            return (Err(tls_io(e)), bytes);
                        }
                    }
                    bytes.clear();
                    let spare = std::mem::take(&mut *self.spare.borrow_mut());
                    let out = t.take_outgoing(spare);
                    *self.spare.borrow_mut() = bytes;
                    out
                }
            }
        };
        if out.is_empty() {
            return (Ok(()), out);
        }
        net::send_all(&self.fd, out, self.send_timeout).await
    }

    /// Queues close_notify and sends it (the end of a TLS control connection).
    pub async fn close_notify(&self) {
        let queued = self
            .tls
            .borrow_mut()
            .as_mut()
            .is_some_and(|t| t.close_notify().is_ok());
        if queued {
            let _ = self.send(Vec::new()).await;
        }
    }

    /// The session's TLS configuration is needed for its data connections; the resumption check
    /// needs nothing else from the control connection.
    pub fn describe(&self) -> Option<String> {
        self.tls.borrow().as_ref().map(|t| t.describe())
    }
}
