//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a layer-4 load balancer sends first
//! on a connection it forwards, naming the client it came from. Behind a balancer every connection
//! would otherwise come from the balancer's address, and per-IP limits, the data connection's peer
//! check, logs and the xferlog would all see that one address.
//!
//! Sans-IO like the rest of `proto`: [`Parser`] is fed the first bytes of a connection, in whatever
//! pieces they arrive, and answers when it has a whole header: the addresses it carries (or none,
//! for a balancer's own health check, the v2 LOCAL command and v1 `UNKNOWN`) and how many bytes the
//! header took (the rest belongs to the protocol behind it). It never reads past the header, never
//! buffers more than the largest valid header, and never panics on any input.
//!
//! The server (`server::balancer`) accepts headers only from the balancers' addresses ([`Cidr`],
//! `proxy_from`) and bounds the wait for one; TLVs are skipped (their framing is checked).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, CRLF included (the specification's limit).
pub const V1_MAX: usize = 107;

/// The longest v2 header accepted: 16 bytes of fixed part plus the largest address block with TLVs
/// that a balancer sends in practice. The format allows 65,535; a peer that announces more is
/// refused rather than buffered.
pub const V2_MAX: usize = 16 + 1024;

/// What a complete header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The client's and the balancer-side destination address; `None` for LOCAL / UNKNOWN (a
    /// health check, or a family that is not TCP over IPv4/IPv6): use the connection's own.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Bytes the header occupied at the start of the stream.
    pub len: usize,
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 header: {0}")]
    BadV1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
}

/// Incremental parser of one connection's PROXY header.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds received bytes and tries to parse. `Ok(None)`: more bytes are needed. `Ok(Some(h))`:
    /// the header is complete; the stream's bytes after `h.len` (counted from the very first byte
    /// pushed) are the protocol's, and the caller keeps them (see [`Parser::rest`]).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Header>, ProxyError> {
        // Never hold more than the largest header, whatever the peer sends.
        let room = V2_MAX.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        parse(&self.buf)
    }

    /// The bytes buffered after the header (the first bytes of the protocol behind it), once
    /// [`Parser::push`] returned a header. Bytes beyond the parser's buffer limit were never kept,
    /// so a caller must feed only what it has not yet handed over, or read the socket again.
    pub fn rest(&self, header: &Header) -> &[u8] {
        self.buf.get(header.len..).unwrap_or(&[])
    }
}

/// Parses a complete header at the start of `buf`, if there is one yet.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if buf.len() < 6 {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::TooLong(V1_MAX));
        }
        return Ok(None);
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyError::TooLong(V1_MAX));
    }
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| ProxyError::BadV1("not ASCII"))?;
    let mut parts = line.split(' ');
    let proto = parts.next().ok_or(ProxyError::BadV1("no protocol"))?;
    if proto == "UNKNOWN" {
        // The rest of the line is ignored by definition.
        return Ok(Some(Header {
            addresses: None,
            len,
        }));
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::BadV1("expected 4 fields after the protocol"));
    };
    let port = |p: &str| -> Result<u16, ProxyError> {
        // No sign, no leading zeros (the specification's form), at most 5 digits.
        if p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return Err(ProxyError::BadV1("bad port"));
        }
        p.parse().map_err(|_| ProxyError::BadV1("bad port"))
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>()
                .map_err(|_| ProxyError::BadV1("bad IPv4 source"))?
                .into(),
            dst.parse::<Ipv4Addr>()
                .map_err(|_| ProxyError::BadV1("bad IPv4 destination"))?
                .into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>()
                .map_err(|_| ProxyError::BadV1("bad IPv6 source"))?
                .into(),
            dst.parse::<Ipv6Addr>()
                .map_err(|_| ProxyError::BadV1("bad IPv6 destination"))?
                .into(),
        ),
        _ => return Err(ProxyError::BadV1("unknown protocol")),
    };
    Ok(Some(Header {
        addresses: Some((
            SocketAddr::new(src, port(sport)?),
            SocketAddr::new(dst, port(dport)?),
        )),
        len,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadV2("version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::BadV2("unknown command")),
    };
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(ProxyError::TooLong(V2_MAX));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let b = &buf[16..len];
    if local {
        // Health checks from the balancer itself: the connection's own addresses hold.
        return Ok(Some(Header {
            addresses: None,
            len,
        }));
    }
    let addresses = match fam {
        // TCP over IPv4: 4 + 4 + 2 + 2 bytes, then TLVs.
        0x11 => {
            if b.len() < 12 {
                return Err(ProxyError::BadV2("IPv4 address block too short"));
            }
            let src = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let dst = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            let sport = u16::from_be_bytes([b[8], b[9]]);
            let dport = u16::from_be_bytes([b[10], b[11]]);
            check_tlvs(&b[12..])?;
            Some((
                SocketAddr::new(src.into(), sport),
                SocketAddr::new(dst.into(), dport),
            ))
        }
        // TCP over IPv6: 16 + 16 + 2 + 2 bytes, then TLVs.
        0x21 => {
            if b.len() < 36 {
                return Err(ProxyError::BadV2("IPv6 address block too short"));
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&b[0..16]);
            d.copy_from_slice(&b[16..32]);
            let sport = u16::from_be_bytes([b[32], b[33]]);
            let dport = u16::from_be_bytes([b[34], b[35]]);
            check_tlvs(&b[36..])?;
            Some((
                SocketAddr::new(Ipv6Addr::from(s).into(), sport),
                SocketAddr::new(Ipv6Addr::from(d).into(), dport),
            ))
        }
        // UNSPEC, UDP or UNIX sockets: nothing an FTP server can use; keep the connection's own.
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => None,
        _ => return Err(ProxyError::BadV2("unknown address family")),
    };
    Ok(Some(Header { addresses, len }))
}

/// Walks the TLVs after the addresses: each is type (1), length (2, big-endian), value. Only their
/// framing is checked; none is needed yet.
fn check_tlvs(mut t: &[u8]) -> Result<(), ProxyError> {
    while !t.is_empty() {
        if t.len() < 3 {
            return Err(ProxyError::BadV2("truncated TLV"));
        }
        let n = usize::from(u16::from_be_bytes([t[1], t[2]]));
        t = t
            .get(3 + n..)
            .ok_or(ProxyError::BadV2("TLV longer than the header"))?;
    }
    Ok(())
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address): where balancers connect from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("expected an address or ADDRESS/PREFIX, got {s:?}");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Encodes a v2 header (for tests and for a client side that forwards connections).
pub fn encode_v2(
    addresses: Option<(SocketAddr, SocketAddr)>,
    tlvs: &[(u8, &[u8])],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&V2_SIGNATURE);
    let mut body = Vec::new();
    let (cmd, fam) = match addresses {
        None => (0x20, 0x00),
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x11)
        }
        Some((s, d)) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x21)
        }
    };
    for (t, v) in tlvs {
        body.push(*t);
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    out.push(cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().unwrap()),
            "mapped IPv4"
        );
        let one: Cidr = "127.0.0.2".parse().unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.3".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()), "families never mix");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(c.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn v1_tcp4_and_tcp6_and_unknown() {
        let h = parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 21\r\nUSER x\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h.addresses,
            Some((sa("192.0.2.1:56324"), sa("198.51.100.2:21")))
        );
        assert_eq!(h.len, 44);
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1024 21\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h.addresses,
            Some((sa("[2001:db8::1]:1024"), sa("[2001:db8::2]:21")))
        );
        let h = parse(b"PROXY UNKNOWN whatever follows\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn v1_refuses_what_the_specification_does_not_allow() {
        for bad in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.2 056324 21\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 70000 21\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY TCP4 {}", "1".repeat(200));
        assert_eq!(parse(long.as_bytes()), Err(ProxyError::TooLong(V1_MAX)));
        assert_eq!(parse(b"USER anonymous\r\n"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2_tcp4_with_tlvs_local_and_bad_versions() {
        let mut h = Vec::new();
        let addrs = (sa("203.0.113.9:40000"), sa("10.0.0.1:21"));
        encode_v2(Some(addrs), &[(0x01, b"ftp"), (0x04, b"")], &mut h);
        h.extend_from_slice(b"USER x\r\n");
        let got = parse(&h).unwrap().unwrap();
        assert_eq!(got.addresses, Some(addrs));
        assert_eq!(&h[got.len..], b"USER x\r\n");
        let mut l = Vec::new();
        encode_v2(None, &[], &mut l);
        assert_eq!(parse(&l).unwrap().unwrap().addresses, None);
        let mut v1 = l.clone();
        v1[12] = 0x11;
        assert!(parse(&v1).is_err());
        let mut cmd = l.clone();
        cmd[12] = 0x2f;
        assert!(parse(&cmd).is_err());
        // A TLV that claims more bytes than the header holds.
        let mut t = Vec::new();
        encode_v2(Some(addrs), &[(0x01, b"abc")], &mut t);
        // The TLV is the last 6 bytes: type, 2 length bytes, "abc". Claim 16 bytes of value.
        let tlv = t.len() - 6;
        t[tlv + 2] = 0x10;
        assert!(parse(&t).is_err());
    }

    #[test]
    fn v2_announcing_too_much_is_refused_not_buffered() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&h), Err(ProxyError::TooLong(V2_MAX)));
    }

    fn any_addrs() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>()
            )
                .prop_map(|(s, sp, d, dp)| (
                    SocketAddr::new(Ipv4Addr::from(s).into(), sp),
                    SocketAddr::new(Ipv4Addr::from(d).into(), dp)
                )),
            (
                any::<[u8; 16]>(),
                any::<u16>(),
                any::<[u8; 16]>(),
                any::<u16>()
            )
                .prop_map(|(s, sp, d, dp)| (
                    SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                    SocketAddr::new(Ipv6Addr::from(d).into(), dp)
                )),
        ]
    }

    proptest! {
        /// A v2 header with any addresses and TLVs, fed in any two pieces, parses to what was
        /// encoded, and the bytes after it are untouched.
        #[test]
        fn v2_round_trips_in_any_pieces(
            addrs in any_addrs(),
            tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..5),
            tail in proptest::collection::vec(any::<u8>(), 0..30),
            cut in any::<prop::sample::Index>(),
        ) {
            let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
            let mut bytes = Vec::new();
            encode_v2(Some(addrs), &tlvs, &mut bytes);
            let hlen = bytes.len();
            bytes.extend_from_slice(&tail);
            let at = cut.index(hlen);
            let mut p = Parser::new();
            prop_assert_eq!(p.push(&bytes[..at]).unwrap(), None);
            let h = p.push(&bytes[at..]).unwrap().unwrap();
            prop_assert_eq!(h.len, hlen);
            prop_assert_eq!(h.addresses, Some(addrs));
            prop_assert_eq!(p.rest(&h), &tail[..]);
        }

        /// A v1 header of any TCP4 addresses, cut anywhere, parses once complete.
        #[test]
        fn v1_parses_in_any_pieces(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), sp: u16, dp: u16, cut in any::<prop::sample::Index>()) {
            let line = format!("PROXY TCP4 {} {} {sp} {dp}\r\n", Ipv4Addr::from(s), Ipv4Addr::from(d));
            let b = line.as_bytes();
            let at = cut.index(b.len());
            let mut p = Parser::new();
            prop_assert_eq!(p.push(&b[..at]).unwrap(), None);
            let h = p.push(&b[at..]).unwrap().unwrap();
            prop_assert_eq!(h.len, b.len());
            prop_assert_eq!(h.addresses, Some((SocketAddr::new(Ipv4Addr::from(s).into(), sp), SocketAddr::new(Ipv4Addr::from(d).into(), dp))));
        }

        /// Arbitrary bytes never panic, and the parser never holds more than the largest header.
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6)) {
            let mut p = Parser::new();
            for c in &chunks {
                match p.push(c) {
                    Ok(Some(h)) => prop_assert!(h.len <= V2_MAX),
                    Ok(None) => {}
                    Err(_) => break,
                }
                prop_assert!(p.buf.len() <= V2_MAX);
            }
        }
    }
}
