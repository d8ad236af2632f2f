//! Client side of the control connection, sans-IO: a reply parser and the PASV/EPSV address parsers.
//!
//! Used by the load generator (and by tests that drive the server as a client). Nothing here touches a
//! socket: bytes go in with [`ReplyParser::push`], complete [`Reply`]s come out of
//! [`ReplyParser::next_reply`]. Like the server-side parser it is bounded and never panics, whatever
//! the peer sends: a reply longer than the configured maximum is an error, not an allocation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::reply::Reply;

/// Default bound on one reply (all of its lines, with their line ends).
pub const DEFAULT_MAX_REPLY: usize = 64 * 1024;

/// Why a reply could not be parsed or did not say what the client needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A reply (or an unterminated line) grew past the parser's bound.
    #[error("reply longer than {max} bytes")]
    ReplyTooLong {
        /// The bound in force.
        max: usize,
    },
    /// A line that should start a reply does not begin with a three-digit code 100..=599.
    #[error("malformed reply line {line:?}")]
    Malformed {
        /// The offending line (lossily decoded, truncated to 80 bytes).
        line: String,
    },
    /// The reply's code is not the one the parser was asked to interpret.
    #[error("expected a {expected} reply, got {code}")]
    UnexpectedCode {
        /// The code the parser handles (227 for PASV, 229 for EPSV).
        expected: u16,
        /// The code received.
        code: u16,
    },
    /// A 227 reply without a usable `h1,h2,h3,h4,p1,p2` address.
    #[error("no host-port address in PASV reply {text:?}")]
    BadPasv {
        /// The reply text.
        text: String,
    },
    /// A 229 reply without a usable `(|||port|)`.
    #[error("no port in EPSV reply {text:?}")]
    BadEpsv {
        /// The reply text.
        text: String,
    },
}

/// Incremental parser of server replies (RFC 959 section 4.2).
///
/// Accepts CRLF or bare LF line ends. A multi-line reply starts with `"123-"` and ends at the first line
/// that starts with the same code followed by a space (or that is the bare code); middle lines lose one
/// leading space, so a reply written by [`Reply::encode`] parses back to the same [`Reply`].
///
/// Memory: the parser holds at most the unparsed input plus one reply in progress; a reply (or a line
/// without its end) longer than `max_reply` is [`ClientError::ReplyTooLong`]. So with a caller that
/// pushes bounded chunks and drains replies after each push, memory stays below `max_reply` plus one
/// chunk. Errors are sticky: the framing is lost after one, so every later call returns it again.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    pos: usize,
    /// Multi-line reply in progress: its code, the lines so far and their wire size.
    partial: Option<(u16, Vec<String>, usize)>,
    max_reply: usize,
    failed: Option<ClientError>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyParser {
    /// A parser with the [`DEFAULT_MAX_REPLY`] bound.
    pub fn new() -> Self {
        Self::with_max(DEFAULT_MAX_REPLY)
    }

    /// A parser that rejects replies longer than `max_reply` bytes (at least 8).
    pub fn with_max(max_reply: usize) -> Self {
        ReplyParser {
            buf: Vec::new(),
            pos: 0,
            partial: None,
            max_reply: max_reply.max(8),
            failed: None,
        }
    }

    /// Adds received bytes. Ignored once the parser has failed.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a returned reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.partial.as_ref().map_or(0, |p| p.2)
    }

    /// Whether nothing is buffered: no partial line and no multi-line reply in progress.
    pub fn is_idle(&self) -> bool {
        self.buffered() == 0
    }

    /// The next complete reply, `None` if more input is needed, or the (sticky) error.
    pub fn next_reply(&mut self) -> Option<Result<Reply, ClientError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let out = self.parse();
        // Compact so consumed bytes do not accumulate across calls.
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 4096) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if let Some(Err(e)) = &out {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
            self.pos = 0;
            self.partial = None;
        }
        out
    }

    fn parse(&mut self) -> Option<Result<Reply, ClientError>> {
        loop {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            let in_progress = self.partial.as_ref().map_or(0, |p| p.2);
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if in_progress + rest.len() > self.max_reply {
                    return Some(Err(ClientError::ReplyTooLong {
                        max: self.max_reply,
                    }));
                }
                return None;
            };
            let wire_len = nl + 1;
            if in_progress + wire_len > self.max_reply {
                return Some(Err(ClientError::ReplyTooLong {
                    max: self.max_reply,
                }));
            }
            let raw = rest.get(..nl).unwrap_or_default();
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = String::from_utf8_lossy(raw).into_owned();
            self.pos += wire_len;
            match self.partial.take() {
                None => {
                    let (code, sep) = match line_code(&line) {
                        Some(c) => c,
                        None => return Some(Err(malformed(&line))),
                    };
                    let text = line.get(4..).unwrap_or_default().to_owned();
                    if sep == Some(b'-') {
                        self.partial = Some((code, vec![text], wire_len));
                    } else {
                        return Some(Ok(Reply {
                            code,
                            lines: vec![text],
                        }));
                    }
                }
                Some((code, mut lines, size)) => {
                    let ends =
                        matches!(line_code(&line), Some((c, s)) if c == code && s != Some(b'-'));
                    if ends {
                        lines.push(line.get(4..).unwrap_or_default().to_owned());
                        return Some(Ok(Reply { code, lines }));
                    }
                    let text = line.strip_prefix(' ').unwrap_or(&line).to_owned();
                    lines.push(text);
                    self.partial = Some((code, lines, size + wire_len));
                }
            }
        }
    }
}

/// The code of a line that starts a reply and the byte after it (`None` for a bare code): the line must
/// begin with three digits forming 100..=599 followed by a space, a dash or nothing.
fn line_code(line: &str) -> Option<(u16, Option<u8>)> {
    let b = line.as_bytes();
    let digits = b.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return None;
    }
    match b.get(3) {
        None => Some((code, None)),
        Some(&s @ (b' ' | b'-')) => Some((code, Some(s))),
        Some(_) => None,
    }
}

fn malformed(line: &str) -> ClientError {
    let mut end = line.len().min(80);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    ClientError::Malformed {
        line: line.get(..end).unwrap_or_default().to_owned(),
    }
}

fn reply_text(reply: &Reply) -> String {
    reply.lines.join("\n")
}

/// The data address of a `227` reply: the first `h1,h2,h3,h4,p1,p2` (numbers 0..=255, optional spaces
/// after the commas) anywhere in its text, parenthesised or not.
pub fn parse_pasv(reply: &Reply) -> Result<SocketAddrV4, ClientError> {
    if reply.code != 227 {
        return Err(ClientError::UnexpectedCode {
            expected: 227,
            code: reply.code,
        });
    }
    let text = reply_text(reply);
    let b = text.as_bytes();
    // A candidate starts a number that does not continue a list: the byte before it is not a digit,
    // and the last byte other than a space before it is not a comma.
    let mut prev: Option<u8> = None;
    let mut prev_non_space: Option<u8> = None;
    for (start, &c) in b.iter().enumerate() {
        let candidate = c.is_ascii_digit()
            && !prev.is_some_and(|p| p.is_ascii_digit())
            && prev_non_space != Some(b',');
        if candidate {
            if let Some(n) = six_numbers(b.get(start..).unwrap_or_default()) {
                let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
                let port = u16::from_be_bytes([n[4], n[5]]);
                return Ok(SocketAddrV4::new(ip, port));
            }
        }
        prev = Some(c);
        if c != b' ' {
            prev_non_space = Some(c);
        }
    }
    Err(ClientError::BadPasv { text })
}

/// Parses `d,d,d,d,d,d` (each 0..=255, at most 3 digits) at the start of `s`.
fn six_numbers(s: &[u8]) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut i = 0;
    for (k, slot) in out.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
            while s.get(i) == Some(&b' ') {
                i += 1;
            }
        }
        let digits = s
            .get(i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 3 {
            return None;
        }
        let v = s
            .get(i..i + digits)?
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        *slot = u8::try_from(v).ok()?;
        i += digits;
    }
    // A seventh number would mean this was not the address.
    if s.get(i) == Some(&b',') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some(out)
}

/// The data address of a `229` reply (RFC 2428): the port from `(<d><d><d>port<d>)` with any printable
/// delimiter `d` (usually `|`), on the control connection's peer address.
pub fn parse_epsv(reply: &Reply, control_peer: IpAddr) -> Result<SocketAddr, ClientError> {
    if reply.code != 229 {
        return Err(ClientError::UnexpectedCode {
            expected: 229,
            code: reply.code,
        });
    }
    let text = reply_text(reply);
    let b = text.as_bytes();
    for (open, _) in b.iter().enumerate().filter(|(_, &c)| c == b'(') {
        if let Some(port) = epsv_port(b.get(open + 1..).unwrap_or_default()) {
            return Ok(SocketAddr::new(control_peer, port));
        }
    }
    Err(ClientError::BadEpsv { text })
}

/// Parses `<d><d><d>port<d>)` at the start of `s`.
fn epsv_port(s: &[u8]) -> Option<u16> {
    let d = *s.first()?;
    if !(33..=126).contains(&d) || d.is_ascii_digit() {
        return None;
    }
    if s.get(1) != Some(&d) || s.get(2) != Some(&d) {
        return None;
    }
    let rest = s.get(3..)?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 5 {
        return None;
    }
    if rest.get(digits) != Some(&d) || rest.get(digits + 1) != Some(&b')') {
        return None;
    }
    let v = rest
        .get(..digits)?
        .iter()
        .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    u16::try_from(v).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(p: &mut ReplyParser) -> Vec<Result<Reply, ClientError>> {
        let mut out = Vec::new();
        while let Some(r) = p.next_reply() {
            let err = r.is_err();
            out.push(r);
            if err {
                break;
            }
        }
        out
    }

    #[test]
    fn single_and_pipelined() {
        let mut p = ReplyParser::new();
        p.push(b"220 ready\r\n331 pass\r\n230 in");
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(220, "ready"))));
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(331, "pass"))));
        assert_eq!(p.next_reply(), None);
        assert!(!p.is_idle());
        p.push(b"\r\n");
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(230, "in"))));
        assert_eq!(p.next_reply(), None);
        assert!(p.is_idle());
    }

    #[test]
    fn bare_lf_and_bare_code() {
        let mut p = ReplyParser::new();
        p.push(b"200 ok\n226\r\n");
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(200, "ok"))));
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(226, ""))));
    }

    #[test]
    fn multi_line() {
        let mut p = ReplyParser::new();
        p.push(b"211-Features:\r\n SIZE\r\n 226 not the end\r\n211-still middle\r\n211 End\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(
            r.lines,
            vec![
                "Features:",
                "SIZE",
                "226 not the end",
                "211-still middle",
                "End"
            ]
        );
        assert_eq!(p.next_reply(), None);
    }

    #[test]
    fn multi_line_split_bytewise() {
        let wire = b"230-a\r\n230 b\r\n150 go\r\n";
        let mut p = ReplyParser::new();
        let mut got = Vec::new();
        for b in wire {
            p.push(std::slice::from_ref(b));
            got.extend(all(&mut p));
        }
        assert_eq!(
            got,
            vec![
                Ok(Reply::multi(230, vec!["a".into(), "b".into()])),
                Ok(Reply::new(150, "go"))
            ]
        );
    }

    #[test]
    fn malformed_is_sticky() {
        let mut p = ReplyParser::new();
        p.push(b"hello\r\n200 ok\r\n");
        assert!(matches!(
            p.next_reply(),
            Some(Err(ClientError::Malformed { .. }))
        ));
        assert!(matches!(
            p.next_reply(),
            Some(Err(ClientError::Malformed { .. }))
        ));
        p.push(b"200 ok\r\n");
        assert!(matches!(p.next_reply(), Some(Err(_))));
        for bad in [
            &b"99 x\r\n"[..],
            b"600 x\r\n",
            b"2000 x\r\n",
            b"20a x\r\n",
            b"\r\n",
        ] {
            let mut p = ReplyParser::new();
            p.push(bad);
            assert!(matches!(p.next_reply(), Some(Err(_))), "{bad:?}");
        }
    }

    #[test]
    fn too_long() {
        let mut p = ReplyParser::with_max(100);
        p.push(&[b'2'; 101]);
        assert_eq!(
            p.next_reply(),
            Some(Err(ClientError::ReplyTooLong { max: 100 }))
        );
        // A multi-line reply whose lines are each short but whose total is too long.
        let mut p = ReplyParser::with_max(100);
        p.push(b"211-start\r\n");
        for _ in 0..20 {
            p.push(b" middle\r\n");
        }
        assert_eq!(
            p.next_reply(),
            Some(Err(ClientError::ReplyTooLong { max: 100 }))
        );
        // Exactly at the bound is fine.
        let mut p = ReplyParser::with_max(10);
        p.push(b"200 abcd\r\n");
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(200, "abcd"))));
    }

    #[test]
    fn pasv() {
        let r = Reply::new(227, "Entering Passive Mode (127,0,0,1,156,64).");
        assert_eq!(
            parse_pasv(&r),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 156 * 256 + 64))
        );
        let r = Reply::new(227, "Entering Passive Mode 10,1,2,3,0,21");
        assert_eq!(
            parse_pasv(&r),
            Ok(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 21))
        );
        let r = Reply::new(227, "Entering Passive Mode (127, 0, 0, 1, 4, 1)");
        assert_eq!(
            parse_pasv(&r),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1025))
        );
        // Numbers before the address that do not form one are skipped.
        let r = Reply::new(227, "Mode 1,2 ok (192,168,0,9,1,0)");
        assert_eq!(
            parse_pasv(&r),
            Ok(SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 9), 256))
        );
        for bad in [
            "no address",
            "(256,0,0,1,1,1)",
            "(1,2,3,4,5)",
            "(1,2,3,4,5,6,7)",
            "(1,2,3,4,5,0006)",
        ] {
            assert!(
                matches!(
                    parse_pasv(&Reply::new(227, bad)),
                    Err(ClientError::BadPasv { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_pasv(&Reply::new(425, "(1,2,3,4,5,6)")),
            Err(ClientError::UnexpectedCode {
                expected: 227,
                code: 425
            })
        );
    }

    #[test]
    fn epsv() {
        let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 5).into();
        let r = Reply::new(229, "Entering Extended Passive Mode (|||40001|)");
        assert_eq!(parse_epsv(&r, peer), Ok(SocketAddr::new(peer, 40001)));
        let r = Reply::new(229, "ok (!!!21!)");
        assert_eq!(parse_epsv(&r, peer), Ok(SocketAddr::new(peer, 21)));
        for bad in [
            "(|||0|)",
            "(|||65536|)",
            "(||1|)",
            "(|||1|",
            "(|||x|)",
            "()",
            "(",
            "(111111)",
        ] {
            assert!(
                matches!(
                    parse_epsv(&Reply::new(229, bad), peer),
                    Err(ClientError::BadEpsv { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_epsv(&Reply::new(227, "(|||1|)"), peer),
            Err(ClientError::UnexpectedCode { .. })
        ));
    }

    fn line_text() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|s| s.replace(['\r', '\n', '\0'], " "))
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            max in 0usize..200,
        ) {
            let mut p = ReplyParser::with_max(max);
            for c in &chunks {
                p.push(c);
                let _ = all(&mut p);
                prop_assert!(p.buffered() <= p.max_reply);
            }
        }

        #[test]
        fn prop_chunking_does_not_matter(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'-'), b'0'..=b'9', any::<u8>()],
                0..200,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut whole = ReplyParser::with_max(64);
            whole.push(&data);
            let expected = all(&mut whole);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut p = ReplyParser::with_max(64);
            let mut got = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                p.push(&data[start..c]);
                start = c;
                got.extend(all(&mut p));
                if got.last().is_some_and(|r| r.is_err()) {
                    break;
                }
            }
            prop_assert_eq!(expected, got);
        }

        #[test]
        fn prop_encode_roundtrip(
            replies in proptest::collection::vec(
                (100u16..=599, proptest::collection::vec(line_text(), 1..5)),
                1..6,
            ),
            cut in any::<usize>(),
        ) {
            let mut wire = Vec::new();
            let replies: Vec<Reply> = replies.into_iter().map(|(c, l)| Reply::multi(c, l)).collect();
            for r in &replies {
                r.encode(&mut wire);
            }
            let cut = cut % (wire.len() + 1);
            let mut p = ReplyParser::with_max(1 << 20);
            p.push(&wire[..cut]);
            let mut got = all(&mut p);
            p.push(&wire[cut..]);
            got.extend(all(&mut p));
            let want: Vec<Result<Reply, ClientError>> = replies.into_iter().map(Ok).collect();
            prop_assert_eq!(got, want);
            prop_assert!(p.is_idle());
        }

        #[test]
        fn prop_pasv_roundtrip(ip in any::<[u8; 4]>(), port in any::<u16>(), pre in "[a-zA-Z ,=(]{0,20}") {
            let [p1, p2] = port.to_be_bytes();
            let text = format!("{pre}({},{},{},{},{p1},{p2}).", ip[0], ip[1], ip[2], ip[3]);
            prop_assert_eq!(
                parse_pasv(&Reply::new(227, text)),
                Ok(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            );
        }

        #[test]
        fn prop_pasv_epsv_never_panic(text in any::<String>()) {
            let _ = parse_pasv(&Reply::new(227, text.clone()));
            let _ = parse_epsv(&Reply::new(229, text), Ipv4Addr::LOCALHOST.into());
        }
    }
}
