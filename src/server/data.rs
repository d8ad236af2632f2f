//! Data connections: passive listeners on this core's slice of the port range, and active connects.
//! A passive listener lives on the session's core, so its data connection is served there too.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, time};
use crate::proto::session::DataEndpoint;

use super::core::CoreCtx;

/// A bound, listening passive port.
///
/// A session keeps its listener after a transfer that used it and offers the same port again on its
/// next PASV/EPSV (see `control.rs`): a stream-mode client opens one data connection per file, and a
/// new listener each time (socket, bind with a port search, listen, close) was ~8% of the server's
/// CPU per 4 KiB file. Before the port is offered again, [`PassiveListener::drain_stale`] closes any
/// connection that arrived in between, so only a connection made after the new 227/229 reply can
/// become the data connection, as with a fresh listener.
pub struct PassiveListener {
    fd: SharedFd,
    port: u16,
    ip: IpAddr,
}

impl PassiveListener {
    /// Binds the next free port of this core's slice on `ip` (the control connection's local address).
    pub fn open(ctx: &CoreCtx, ip: IpAddr) -> io::Result<PassiveListener> {
        let (lo, hi) = ctx.passive;
        if lo > hi {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "this core has no passive ports",
            ));
        }
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = ctx.passive_next.get();
            ctx.passive_next.set(if port >= hi { lo } else { port + 1 });
            match net::listen_exclusive(SocketAddr::new(ip, port), 8) {
                Ok(fd) => {
                    return Ok(PassiveListener {
                        fd: Rc::new(fd),
                        port,
                        ip,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "every passive port of this core is in use",
        ))
    }

    /// The local address it is bound to.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Closes every connection waiting in the accept queue (none, normally); `Err` when the
    /// listener is broken and must not be offered again.
    pub fn drain_stale(&self) -> io::Result<usize> {
        net::drain_accept_queue(self.fd.as_raw_fd())
    }

    /// The address to tell the client.
    pub fn advertised(&self, ctx: &CoreCtx, local: IpAddr) -> SocketAddr {
        SocketAddr::new(ctx.cfg.passive_address.unwrap_or(local), self.port)
    }
}

/// A data connection, with its MODE B receive state once a MODE B upload has used it.
pub struct DataConn {
    pub fd: SharedFd,
    pub block: Option<crate::server::store::BlockReceiver>,
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
                    let raw = fd.as_raw_fd();
                    // Refuse data connections from anyone but the control connection's peer: otherwise
                    // a third party could race the client for the port and steal or inject a file.
                    match net::peer_addr(raw) {
                        Ok(a) if a.ip().to_canonical() == peer.ip().to_canonical() => {
                            let _ = net::set_nodelay(raw);
                            return Ok(Rc::new(fd));
                        }
                        Ok(a) => {
                            tracing::warn!(from = %a, expected = %peer.ip(), "refused passive data connection")
                        }
                        Err(_) => {}
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
