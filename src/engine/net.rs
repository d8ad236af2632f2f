//! Sockets: creation and options through plain syscalls (they are one-off and cheap), addresses, and
//! a few helpers that loop the ring ops (send all, connect).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::fd::SharedFd;
use super::op;

/// A socket address in the kernel's layout.
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
    pub fn len(&self) -> libc::socklen_t {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn to_std(&self) -> io::Result<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unsupported address family",
            )),
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> SockAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new TCP socket of the address's family (blocking mode: the ring does the waiting).
pub fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as _,
        )
    })
    .map(drop)
}

/// Disables Nagle: FTP replies are small and a client waits for each; without this a reply can sit
/// behind a delayed ACK for ~40 ms.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Makes `fd` non-blocking for direct system calls (io_uring ops on it are unaffected: they wait
/// for readiness themselves).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from the pointer, which is live for the call.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
        // SAFETY: null address pointers are allowed; the new descriptor is closed right away.
        let c = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Gone between poll and accept (reset by the peer), or a signal: look again.
                Some(libc::EAGAIN) | Some(libc::ECONNABORTED) | Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        // SAFETY: `c` is a descriptor we just got and nobody else owns.
        unsafe { libc::close(c) };
        closed += 1;
    }
}

/// Enables keepalive so dead peers of idle sessions are eventually noticed.
pub fn set_keepalive(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
}

/// Sets SO_RCVBUF (0 leaves the kernel's autotuning alone).
pub fn set_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        bytes.min(i32::MAX as usize) as i32,
    )
}

/// A listening socket on `addr` that shares its port with the other cores' listeners (SO_REUSEPORT)
/// and prefers connections whose packets arrive on `cpu` (SO_INCOMING_CPU), so each core accepts its
/// own connections.
pub fn listen_reuseport(addr: SocketAddr, cpu: Option<usize>, backlog: i32) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&addr)?;
    let raw = fd.as_raw_fd();
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    if let Some(cpu) = cpu {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, cpu as i32)?;
    }
    if addr.is_ipv6() {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    bind_listen(&fd, addr, backlog)?;
    Ok(fd)
}

/// A listening socket bound to exactly `addr` (passive data connections); EADDRINUSE tells the caller
/// to try the next port.
pub fn listen_exclusive(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&addr)?;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    bind_listen(&fd, addr, backlog)?;
    Ok(fd)
}

fn bind_listen(fd: &OwnedFd, addr: SocketAddr, backlog: i32) -> io::Result<()> {
    let sa = SockAddr::from(addr);
    // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes.
    check(unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr(), sa.len()) })?;
    // SAFETY: plain listen(2).
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

fn name_of(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: zeroed storage is valid; the kernel fills up to `len` bytes.
    let mut sa = SockAddr {
        storage: unsafe { zeroed() },
        len: size_of::<libc::sockaddr_storage>() as _,
    };
    let ptr = (&mut sa.storage as *mut libc::sockaddr_storage).cast();
    // SAFETY: pointer and length describe `sa.storage`.
    check(unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut sa.len)
        } else {
            libc::getsockname(fd, ptr, &mut sa.len)
        }
    })?;
    sa.to_std()
}

pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name_of(fd, false)
}

pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name_of(fd, true)
}

/// The CPU whose softirq handled the socket's last packets (SO_INCOMING_CPU), if known.
pub fn incoming_cpu(fd: RawFd) -> Option<usize> {
    let mut v: libc::c_int = -1;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: pointer and length describe `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (r == 0 && v >= 0).then_some(v as usize)
}

/// Sends all of `buf`, looping over short sends; hands the buffer back for reuse.
pub async fn send_all(fd: &SharedFd, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let mut start = 0;
    let mut buf = buf;
    while start < buf.len() {
        let (res, b) = op::send::send(fd, buf, start).await;
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
    let fd = tcp_socket(&addr)?;
    if let Some(local) = local {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if local.port() == 0 {
            // Choose the port at connect time, from the whole 4-tuple: a port bound up front must be
            // unique per local address, which exhausts ports and costs a search per bind. Best
            // effort: without it the bind still works.
            let _ = setsockopt_int(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                1,
            );
        }
        let sa = SockAddr::from(local);
        // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes.
        check(unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr(), sa.len()) })?;
    }
    let fd = Rc::new(fd);
    op::connect::connect(&fd, addr).await?;
    Ok(fd)
}

/// Whether `ip` is a loopback or unspecified address (for advertising a passive address).
pub fn is_local_wildcard(ip: IpAddr) -> bool {
    ip.is_unspecified()
}
