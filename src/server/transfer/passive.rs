//! Passive listeners: a port of the configured range, bound on the control connection's local
//! address by the session's core, so the data connection it accepts is served on that core too.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::net;
use crate::server::context::CoreCtx;

/// A bound, listening passive port.
///
/// A session keeps its listener after a transfer that used it and offers the same port again on its
/// next PASV/EPSV (see `session::serve`): a stream-mode client opens one data connection per file, and a
/// new listener each time (socket, bind with a port search, listen, close) was ~8% of the server's
/// CPU per 4 KiB file. Before the port is offered again, [`PassiveListener::drain_stale`] closes any
/// connection that arrived in between, so only a connection made after the new 227/229 reply can
/// become the data connection, as with a fresh listener.
pub struct PassiveListener {
    pub(super) fd: SharedFd,
    port: u16,
    ip: IpAddr,
}

impl PassiveListener {
    /// Binds the next free port of the passive range on `ip` (the control connection's local
    /// address). Each core starts its search in its own slice of the range, so cores rarely try the
    /// same port, but any free port of the whole range serves any session: a core whose sessions
    /// outnumber its slice borrows the others' free ports. The listener belongs to the session's
    /// core whatever its port, so the data connection is still served there.
    pub fn open(ctx: &CoreCtx, ip: IpAddr) -> io::Result<PassiveListener> {
        let (lo, hi) = ctx.passive;
        if lo > hi {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no passive ports configured",
            ));
        }
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = ctx.passive_next.get().clamp(lo, hi);
            ctx.passive_next.set(if port >= hi { lo } else { port + 1 });
            // A MODE E client may open all its parallel connections (up to the decoder's limit)
            // before ringest accepts any: a smaller backlog drops their SYNs and stalls them.
            let backlog = crate::proto::modee::Limits::default().max_connections as i32;
            match net::listen_exclusive(SocketAddr::new(ip, port), backlog) {
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
            "every passive port is in use",
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
