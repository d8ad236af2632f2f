//! Connections through a layer-4 balancer: reading the PROXY header (v1 or v2) that names the
//! client, before anything else is read from the connection, on control connections and passive
//! data connections alike. The client it names is the client for everything after: per-IP limits,
//! the data connection's peer check, logs, the xferlog and the metrics.
//!
//! Only connections from `proxy_from` may carry a header; one from anywhere else is refused and
//! logged (anyone could otherwise claim any address). The header is looked at with `MSG_PEEK` and
//! only its own bytes are taken, so a data connection's first payload bytes, which may arrive in
//! the same segment, stay in the socket for the receive paths (splice reads straight from it).
//!
//! May use: the engine, `proto::proxy`, `config`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, time};
use crate::proto::proxy::{self, Header, ProxyError, V2_MAX, V2_SIGNATURE};

use super::config::policies::ProxyMode;
use super::config::server::ProxySettings;

/// Where a connection really comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client: from the header, or the TCP peer for a direct connection (or a balancer's
    /// health check, which names no client).
    pub client: SocketAddr,
    /// The address the client connected to (the balancer's), when a header said so.
    pub via: Option<SocketAddr>,
}

/// Why a connection was refused before a word of FTP.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("PROXY header from {0}, which is not in proxy_from")]
    Untrusted(SocketAddr),
    #[error("connection from {0}, which is not in proxy_from (proxy_protocol = required)")]
    NotFromBalancer(SocketAddr),
    #[error("no PROXY header from balancer {0} (proxy_protocol = required)")]
    NoHeader(SocketAddr),
    #[error("bad PROXY header from {0}: {1}")]
    Bad(SocketAddr, ProxyError),
    #[error("no complete PROXY header from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("reading the PROXY header from {0}: {1}")]
    Io(SocketAddr, io::Error),
}

/// Whether `bytes` could be the start of a PROXY header (v1 `PROXY ` or the v2 signature).
fn may_be_header(bytes: &[u8]) -> bool {
    let v1 = b"PROXY ";
    let n = bytes.len();
    n > 0
        && (bytes[..n.min(6)] == v1[..n.min(6)] || bytes[..n.min(12)] == V2_SIGNATURE[..n.min(12)])
}

/// Reads the connection's PROXY header as `settings` require. `peer` is the TCP peer.
pub async fn origin(
    fd: &SharedFd,
    peer: SocketAddr,
    settings: &ProxySettings,
) -> Result<Origin, Refused> {
    let direct = Origin {
        client: peer,
        via: None,
    };
    if settings.mode == ProxyMode::Off {
        return Ok(direct);
    }
    let trusted = settings.from.iter().any(|c| c.contains(peer.ip()));
    let raw = fd.as_raw_fd();
    if !trusted {
        if settings.mode == ProxyMode::Required {
            return Err(Refused::NotFromBalancer(peer));
        }
        // A client that talks first with a header is refused; one that waits for the greeting (as
        // FTP clients do) is served as it is.
        let mut first = [0u8; 12];
        return match net::peek_now(raw, &mut first) {
            Ok(n) if n > 0 && may_be_header(&first[..n]) => Err(Refused::Untrusted(peer)),
            _ => Ok(direct),
        };
    }
    let deadline = Instant::now() + settings.timeout;
    let mut buf = vec![0u8; V2_MAX];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refused::Timeout(peer, settings.timeout));
        }
        // Wait until something is queued, then look without taking it.
        match time::timeout(left, op::poll::poll(fd, libc::POLLIN as u32)).await {
            Err(_) => return Err(Refused::Timeout(peer, settings.timeout)),
            Ok(Err(e)) => return Err(Refused::Io(peer, e)),
            Ok(Ok(_)) => {}
        }
        let n = match net::peek_now(raw, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(Refused::Io(peer, e)),
        };
        if n == 0 {
            return Err(Refused::Io(peer, io::ErrorKind::UnexpectedEof.into()));
        }
        match proxy::parse(&buf[..n]) {
            Ok(Some(h)) => return take(raw, peer, h),
            // A header split across segments (rare): wait for the rest. The peeked bytes stay
            // queued, so POLLIN is ready at once; a short sleep keeps this from spinning.
            Ok(None) => time::sleep(Duration::from_millis(2)).await,
            Err(ProxyError::NotProxy) if settings.mode == ProxyMode::Optional => return Ok(direct),
            Err(ProxyError::NotProxy) => return Err(Refused::NoHeader(peer)),
            Err(e) => return Err(Refused::Bad(peer, e)),
        }
    }
}

/// Takes the header's bytes (exactly those) off the socket.
fn take(raw: i32, peer: SocketAddr, h: Header) -> Result<Origin, Refused> {
    let mut sink = vec![0u8; h.len];
    let mut got = 0;
    while got < h.len {
        match net::recv_now(raw, &mut sink[got..]) {
            Ok(0) => return Err(Refused::Io(peer, io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) => return Err(Refused::Io(peer, e)),
        }
    }
    Ok(match h.addresses {
        Some((client, via)) => Origin {
            client,
            via: Some(via),
        },
        // LOCAL / UNKNOWN: the balancer's own connection (a health check).
        None => Origin {
            client: peer,
            via: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_starts_are_recognised_from_their_first_byte() {
        assert!(may_be_header(b"PROXY TCP4 "));
        assert!(may_be_header(b"PRO"));
        assert!(may_be_header(&V2_SIGNATURE[..5]));
        assert!(!may_be_header(b"USER x\r\n"));
        assert!(!may_be_header(b""));
    }
}
