//! Sockets: creation, options and addresses through `socket2` (one-off and cheap, so plain system
//! calls rather than ring ops), and a few helpers that loop the ring ops (send all, connect).
//!
//! Sockets are made in blocking mode with CLOEXEC, as `socket2::Socket::new` makes them on Linux: the
//! ring does the waiting.
//!
//! Raw `libc` calls remain only where socket2 has no call for the job:
//! - `recv(2)` with `MSG_PEEK`/`MSG_DONTWAIT` into an initialised buffer in [`peek_now`] and
//!   [`recv_now`] (socket2 wants `MaybeUninit` buffers);
//! - `setsockopt(IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT)` in [`connect`]: socket2 has no setter for
//!   this Linux option.
//! - `poll(2)` with a zero timeout in [`drain_accept_queue`]: socket2 does not poll, and the
//!   listener stays in blocking mode (the ring waits on it), so only a poll can say without blocking
//!   whether a connection is queued.
//!
//! The functions that take a `RawFd` reach socket2 through a `SockRef` over a `BorrowedFd` made
//! with `BorrowedFd::borrow_raw`, the one other `unsafe` call here (in `with_sock`).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use socket2::{Domain, SockRef, Socket, Type};

use super::fd::SharedFd;
use super::op;

/// Re-exported so `engine::net::SockAddr` keeps working; the type lives in [`super::sockaddr`].
pub use super::sockaddr::SockAddr;

/// Runs `f` on a socket2 view of `fd`, which the caller owns. A negative `fd` fails with EBADF, as
/// the system call itself would.
fn with_sock<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> io::Result<R> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: every function here that takes a `RawFd` is handed a descriptor that its caller keeps
    // open for the call, and the borrow ends when `f` returns.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}

/// A new TCP socket of the address's family: blocking mode, CLOEXEC.
fn new_tcp(addr: &SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(*addr), Type::STREAM, None)
}

/// A new TCP socket of the address's family (blocking mode: the ring does the waiting).
pub fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    new_tcp(addr).map(OwnedFd::from)
}

/// Disables Nagle: FTP replies are small and a client waits for each; without this a reply can sit
/// behind a delayed ACK for ~40 ms.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    with_sock(fd, |s| s.set_tcp_nodelay(true))
}

/// Makes `fd` non-blocking (O_NONBLOCK) for direct system calls (io_uring ops on it are
/// unaffected: they wait for readiness themselves).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    with_sock(fd, |s| s.set_nonblocking(true))
}

/// Accepts and closes every connection already queued on listening socket `fd`, without
/// blocking (a zero-timeout poll says whether one is there); returns how many.
pub fn drain_accept_queue(fd: RawFd) -> io::Result<usize> {
    let mut closed = 0;
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd; zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(closed);
        }
        if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Err(io::Error::other("listening socket in error"));
        }
        match with_sock(fd, |s| s.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)) {
            // Dropping the accepted socket closes it.
            Ok(_) => closed += 1,
            // Gone between poll and accept (reset by the peer), or a signal: look again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Enables keepalive so dead peers of idle sessions are eventually noticed.
pub fn set_keepalive(fd: RawFd) -> io::Result<()> {
    with_sock(fd, |s| s.set_keepalive(true))
}

/// Keeps urgent (out-of-band) bytes in the normal stream (SO_OOBINLINE). FTP clients send ABOR, or
/// the Telnet Synch before it, as TCP urgent data (RFC 959 4.1.3; Python's `ftplib.abort()`,
/// tnftp's Ctrl-C): without this the kernel takes the urgent byte out of the stream, and the command
/// line loses its final byte (`ABOR\r` waits forever for its LF).
pub fn set_oobinline(fd: RawFd) -> io::Result<()> {
    with_sock(fd, |s| s.set_out_of_band_inline(true))
}

/// Sets SO_RCVBUF (0 leaves the kernel's autotuning alone).
pub fn set_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // socket2 narrows the size to the kernel's int with `as`: clamp first so it cannot wrap.
    with_sock(fd, |s| s.set_recv_buffer_size(bytes.min(i32::MAX as usize)))
}

/// A listening socket on `addr` that shares its port with the other cores' listeners (SO_REUSEPORT)
/// and prefers connections whose packets arrive on `cpu` (SO_INCOMING_CPU), so each core accepts its
/// own connections.
pub fn listen_reuseport(addr: SocketAddr, cpu: Option<usize>, backlog: i32) -> io::Result<OwnedFd> {
    let sock = new_tcp(&addr)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if let Some(cpu) = cpu {
        sock.set_cpu_affinity(cpu)?;
    }
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    bind_listen(&sock, addr, backlog)?;
    Ok(sock.into())
}

/// Fails with EADDRINUSE when something already listens on `addr`, even another process's
/// SO_REUSEPORT group: the kernel lets any socket of the same user with SO_REUSEPORT join a group,
/// so a second server on the same port would start silently and share the connections. The check
/// is a connect (to loopback for a wildcard address), bounded by a second: a bind probe would also
/// be refused by the TIME_WAIT connections a server leaves behind when it stops, and a restart on
/// the same port must work at once. Port 0 needs no check.
pub fn ensure_unused(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = SocketAddr::new(ip, addr.port());
    // A server that has just exited can leave its listener open for a few milliseconds while the
    // kernel tears its io_uring down (the multishot accept holds the socket): look again for up to
    // two seconds before calling the port taken. A connect that succeeds is accepted and closed by
    // the other server like any client that leaves at once.
    for _ in 0..20 {
        let probe = new_tcp(&target)?;
        let timeout = std::time::Duration::from_secs(1);
        if probe
            .connect_timeout(&socket2::SockAddr::from(target), timeout)
            .is_err()
        {
            return Ok(());
        }
        drop(probe);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("address already in use: something is listening on {target}"),
    ))
}

/// A listening socket bound to exactly `addr` (passive data connections); EADDRINUSE tells the caller
/// to try the next port.
pub fn listen_exclusive(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let sock = new_tcp(&addr)?;
    sock.set_reuse_address(true)?;
    bind_listen(&sock, addr, backlog)?;
    Ok(sock.into())
}

fn bind_listen(sock: &Socket, addr: SocketAddr, backlog: i32) -> io::Result<()> {
    sock.bind(&socket2::SockAddr::from(addr))?;
    sock.listen(backlog)
}

fn to_std(sa: socket2::SockAddr) -> io::Result<SocketAddr> {
    sa.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unsupported address family"))
}

pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    with_sock(fd, |s| to_std(s.local_addr()?))
}

pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    with_sock(fd, |s| to_std(s.peer_addr()?))
}

/// The CPU whose softirq handled the socket's last packets (SO_INCOMING_CPU), if known.
pub fn incoming_cpu(fd: RawFd) -> Option<usize> {
    let cpu = with_sock(fd, |s| s.cpu_affinity()).ok()?;
    // socket2 widens the kernel's int with `as`, so "not known" (-1) comes back far above any int.
    i32::try_from(cpu).is_ok().then_some(cpu)
}

/// Sends all of `buf`, looping over short sends; hands the buffer back for reuse. A peer that
/// stops reading (its receive window stays closed) makes no send progress for `stall`: then this
/// gives up with `TimedOut`, so a client that never reads cannot hold its session, its buffers or a
/// core's slot forever. The deadline restarts with every byte sent, so a slow but reading client is
/// never cut.
pub async fn send_all(
    fd: &SharedFd,
    buf: Vec<u8>,
    stall: std::time::Duration,
) -> (io::Result<()>, Vec<u8>) {
    let mut start = 0;
    let mut buf = buf;
    while start < buf.len() {
        let (res, b) = match super::time::timeout(stall, op::send::send(fd, buf, start)).await {
            Ok(r) => r,
            // The dropped op keeps the buffer until the kernel lets go of it.
            Err(_) => {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "peer stopped reading: send stalled",
                    )),
                    Vec::new(),
                )
            }
        };
        buf = b;
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => start += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Connects a new socket to `addr`, optionally from `local` (bound first).
pub async fn connect(addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<SharedFd> {
    let sock = new_tcp(&addr)?;
    if let Some(local) = local {
        sock.set_reuse_address(true)?;
        if local.port() == 0 {
            // Choose the port at connect time, from the whole 4-tuple: a port bound up front must be
            // unique per local address, which exhausts ports and costs a search per bind. Best
            // effort: without it the bind still works.
            let _ = set_bind_address_no_port(&sock);
        }
        sock.bind(&socket2::SockAddr::from(local))?;
    }
    let fd = Rc::new(OwnedFd::from(sock));
    op::connect::connect(&fd, addr).await?;
    Ok(fd)
}

/// Sets IP_BIND_ADDRESS_NO_PORT, which socket2 has no setter for.
fn set_bind_address_no_port(sock: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `ip` is a loopback or unspecified address (for advertising a passive address).
pub fn is_local_wildcard(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

/// Copies what is queued on `fd` into `buf` without taking it (`MSG_PEEK`) and without waiting
/// (`MSG_DONTWAIT`): EAGAIN when nothing is queued. For looking at a connection's first bytes (a
/// PROXY header) without consuming what follows them.
pub fn peek_now(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, libc::MSG_PEEK | libc::MSG_DONTWAIT)
}

/// Takes up to `buf.len()` queued bytes without waiting (after [`peek_now`] saw them).
pub fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, libc::MSG_DONTWAIT)
}

fn recv_flags(fd: RawFd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: recv(2) writes at most `buf.len()` bytes into the live, exclusively borrowed `buf`.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
