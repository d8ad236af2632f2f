//! A socket address in the kernel's layout, for the ops and raw calls that hand the kernel a
//! `sockaddr` pointer (CONNECT's SQE, a caller's own bind). It lives apart from [`super::net`] so
//! that the ops ([`super::op::connect`]) need not import the socket helpers that are built on them.
//!
//! A thin wrapper over [`socket2::SockAddr`], which does the layout work; the wrapper keeps the
//! pointer typed as `libc::sockaddr`, which is what io_uring's opcodes and libc's calls take.

use std::net::SocketAddr;

/// A socket address in the kernel's layout. Its bytes are stored inline: box it where the kernel
/// reads it after the call that built the SQE returns.
pub struct SockAddr(socket2::SockAddr);

impl SockAddr {
    /// The address as the kernel reads it, valid for [`len`](Self::len) bytes while `self` lives.
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        self.0.as_ptr().cast()
    }
    pub fn len(&self) -> libc::socklen_t {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> SockAddr {
        SockAddr(socket2::SockAddr::from(addr))
    }
}
