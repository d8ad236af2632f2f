//! Making a transfer's data connection: accepting on the session's passive listener (only from the
//! control connection's peer) or connecting to the PORT/EPRT address, bounded by the data timeout.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, time};
use crate::proto::session::DataEndpoint;
use crate::server::balancer;
use crate::server::context::CoreCtx;

use super::block::BlockReceiver;
use super::passive::PassiveListener;

/// A data connection, with its MODE B receive state once a MODE B upload has used it, and its TLS
/// when protected.
pub struct DataConn {
    pub fd: SharedFd,
    pub block: Option<BlockReceiver>,
    /// MODE B into an object store: its receive state between files.
    pub copy_block: Option<super::block::CopyBlockReceiver>,
    /// Boxed: a TLS connection is large (rustls state), and every transfer future holds a
    /// `DataConn`, so keeping it inline would grow and slow the clear-text ones that never use it.
    pub tls: Option<Box<crate::tls::stream::TlsStream>>,
    /// MODE B over TLS: the decoder's state between files.
    pub tls_block: crate::proto::modeb::Decoder,
    /// MODE E: every data connection of the session (`fd` is the first of them).
    pub ext: Option<super::extended::Extended>,
}

impl DataConn {
    pub fn new(fd: SharedFd) -> DataConn {
        DataConn {
            fd,
            block: None,
            copy_block: None,
            tls: None,
            tls_block: crate::proto::modeb::Decoder::new(),
            ext: None,
        }
    }
}

/// Takes an accepted passive data connection if it comes from the session's client `peer`: its
/// PROXY header is read first behind a balancer, which names the client. Refused ones are logged
/// and closed. A third party racing the client for the port could otherwise steal or inject a
/// file.
pub async fn admit(ctx: &CoreCtx, fd: OwnedFd, peer: SocketAddr) -> Option<SharedFd> {
    let raw = fd.as_raw_fd();
    let tcp_peer = net::peer_addr(raw).ok()?;
    let fd = Rc::new(fd);
    let client = match balancer::origin(&fd, tcp_peer, &ctx.cfg.proxy).await {
        Ok(o) => o.client,
        Err(why) => {
            tracing::warn!(%tcp_peer, error = %why, "refused passive data connection");
            return None;
        }
    };
    if client.ip().to_canonical() != peer.ip().to_canonical() {
        tracing::warn!(from = %client, expected = %peer.ip(), "refused passive data connection");
        return None;
    }
    let _ = net::set_nodelay(raw);
    Some(fd)
}

/// Makes the data connection for a transfer: accepts on the passive listener (only from the control
/// connection's peer address) or connects to the PORT/EPRT address. Bounded by the data timeout.
pub async fn connect(
    ctx: &CoreCtx,
    endpoint: DataEndpoint,
    passive: Option<&PassiveListener>,
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<SharedFd> {
    let dur = ctx.cfg.data_timeout;
    let fut = async {
        match endpoint {
            DataEndpoint::Passive => {
                let l = passive.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotConnected, "no passive listener")
                })?;
                let mut accepts = op::accept::accept_multi(&l.fd);
                loop {
                    let fd = match accepts.next().await {
                        Some(r) => r?,
                        None => {
                            accepts = op::accept::accept_multi(&l.fd);
                            continue;
                        }
                    };
                    if let Some(fd) = admit(ctx, fd, peer).await {
                        return Ok(fd);
                    }
                }
            }
            DataEndpoint::Active(addr) => {
                net::connect(addr, Some(SocketAddr::new(local.ip(), 0))).await
            }
            DataEndpoint::Open => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no open data connection",
            )),
        }
    };
    match time::timeout(dur, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "data connection timed out",
        )),
    }
}
