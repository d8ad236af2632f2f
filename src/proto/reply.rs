//! FTP replies (RFC 959 section 4.2) and their wire encoding.
//!
//! The encoder is the last line of defence against reply injection: reply text often echoes
//! client-controlled data (file names, arguments), so every CR, LF and NUL in a line is replaced by a
//! space and a line can never end early or forge another reply. Every other control character (a
//! file name may hold ESC, BEL, backspace...) is written as `\xNN`, so a name cannot drive the
//! terminal of someone reading the reply or a log of it. Codes outside `100..=599` are clamped to 500
//! instead of panicking, so a bug upstream degrades into a visible error, not a broken stream.

/// One reply: a 3-digit code and one or more text lines.
///
/// A single line encodes as `"CODE text\r\n"`. Several lines encode as a multi-line reply: the first
/// line as `"CODE-text"`, middle lines each prefixed with one space and the last as `"CODE text"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Reply code; anything outside `100..=599` is sent as 500.
    pub code: u16,
    /// Text lines, without CRLF. Middle lines of a multi-line reply are given without their leading
    /// space (the encoder adds it), so FEAT lines are written as `"SIZE"`, not `" SIZE"`.
    pub lines: Vec<String>,
}

/// Code used when a reply carries a code that cannot be sent as three digits.
const FALLBACK_CODE: u16 = 500;

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply: the first and last lines carry the code. With one line it is the same as
    /// [`Reply::new`]; with none it encodes as `"CODE \r\n"`.
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Reply { code, lines }
    }

    /// The code that goes on the wire: always three digits, so clients can parse it.
    pub fn wire_code(&self) -> u16 {
        if (100..=599).contains(&self.code) {
            self.code
        } else {
            FALLBACK_CODE
        }
    }

    /// Appends the wire form (every line ending in CRLF) to `out`.
    ///
    /// Appending to a caller-owned buffer lets a session batch several replies (pipelined commands)
    /// into one send without intermediate allocations.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = code_digits(self.wire_code());
        let n = self.lines.len();
        out.reserve(self.lines.iter().map(|l| l.len() + 6).sum::<usize>() + 6);
        match self.lines.as_slice() {
            [] => {
                out.extend_from_slice(&code);
                out.extend_from_slice(b" \r\n");
            }
            [only] => {
                out.extend_from_slice(&code);
                out.push(b' ');
                push_sanitized(only, out);
                out.extend_from_slice(b"\r\n");
            }
            _ => {
                for (i, line) in self.lines.iter().enumerate() {
                    if i == 0 {
                        out.extend_from_slice(&code);
                        out.push(b'-');
                    } else if i + 1 == n {
                        out.extend_from_slice(&code);
                        out.push(b' ');
                    } else {
                        // Always indent middle lines: a middle line starting with "226 " would
                        // otherwise end the reply early in the client's parser.
                        out.push(b' ');
                    }
                    push_sanitized(line, out);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// 1xx: the reply announces that another reply follows (e.g. 150 before a transfer's 226).
    pub fn is_positive_preliminary(&self) -> bool {
        (100..200).contains(&self.wire_code())
    }
}

/// RFC 959 appendix II quoting for 257 replies: the path is surrounded by double quotes and any
/// embedded double quote is doubled, so clients can extract names that contain quotes.
pub fn quote_path(path: &str) -> String {
    let mut s = String::with_capacity(path.len() + 2);
    s.push('"');
    for c in path.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// ASCII digits of a code already known to be in `100..=599`.
fn code_digits(code: u16) -> [u8; 3] {
    // Each digit is < 10 by construction, so the narrowing cannot lose information.
    let d = |v: u16| b'0' + (v % 10) as u8;
    [d(code / 100), d(code / 10), d(code)]
}

/// Appends `text`, replacing CR, LF and NUL by spaces and escaping every other control character
/// (C0, DEL and the C1 range U+0080..U+009F) as `\xNN`. Only whole characters are replaced, so the
/// result stays valid UTF-8.
fn push_sanitized(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    // Fast path: C1 controls are encoded as 0xC2 0x80..=0x9F, so no byte < 0x20, no DEL and no
    // 0xC2 means nothing to replace.
    if !bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == 0xc2) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\0' => out.push(b' '),
            c if c.is_control() => {
                out.extend_from_slice(format!("\\x{:02x}", u32::from(c)).as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_line() {
        assert_eq!(
            Reply::new(226, "Transfer complete").to_bytes(),
            b"226 Transfer complete\r\n"
        );
    }

    #[test]
    fn multi_line_indents_middle_lines() {
        let r = Reply::multi(
            211,
            vec![
                "Features:".into(),
                "SIZE".into(),
                "226 not the end".into(),
                "End".into(),
            ],
        );
        assert_eq!(
            r.to_bytes(),
            b"211-Features:\r\n SIZE\r\n 226 not the end\r\n211 End\r\n"
        );
    }

    #[test]
    fn two_lines() {
        let r = Reply::multi(230, vec!["a".into(), "b".into()]);
        assert_eq!(r.to_bytes(), b"230-a\r\n230 b\r\n");
    }

    #[test]
    fn empty_and_one_line_multi() {
        assert_eq!(Reply::multi(200, vec![]).to_bytes(), b"200 \r\n");
        assert_eq!(Reply::multi(200, vec!["x".into()]).to_bytes(), b"200 x\r\n");
    }

    #[test]
    fn injection_is_neutralized() {
        let r = Reply::new(550, "evil\r\n230 Logged in\0");
        assert_eq!(r.to_bytes(), b"550 evil  230 Logged in \r\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let r = Reply::new(257, "\"/a\x1b[31mred\x07\t\u{85}\x7f\u{e9}\" created.");
        assert_eq!(
            r.to_bytes(),
            "257 \"/a\\x1b[31mred\\x07\\x09\\x85\\x7f\u{e9}\" created.\r\n".as_bytes()
        );
    }

    #[test]
    fn bad_codes_clamp() {
        assert_eq!(Reply::new(0, "x").to_bytes(), b"500 x\r\n");
        assert_eq!(Reply::new(99, "x").to_bytes(), b"500 x\r\n");
        assert_eq!(Reply::new(600, "x").to_bytes(), b"500 x\r\n");
        assert_eq!(Reply::new(u16::MAX, "x").to_bytes(), b"500 x\r\n");
        assert_eq!(Reply::new(100, "x").to_bytes(), b"100 x\r\n");
        assert_eq!(Reply::new(599, "x").to_bytes(), b"599 x\r\n");
    }

    #[test]
    fn preliminary() {
        assert!(Reply::new(150, "ok").is_positive_preliminary());
        assert!(Reply::new(125, "ok").is_positive_preliminary());
        assert!(!Reply::new(226, "ok").is_positive_preliminary());
        assert!(!Reply::new(5, "ok").is_positive_preliminary());
    }

    #[test]
    fn encode_appends() {
        let mut out = b"x".to_vec();
        Reply::new(200, "a").encode(&mut out);
        Reply::new(200, "b").encode(&mut out);
        assert_eq!(out, b"x200 a\r\n200 b\r\n");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_path("/a/b"), "\"/a/b\"");
        assert_eq!(quote_path("/say \"hi\""), "\"/say \"\"hi\"\"\"");
        assert_eq!(quote_path(""), "\"\"");
    }

    /// Checks the framing invariants of an encoded reply.
    fn check_wire(code: u16, lines: &[String], wire: &[u8]) {
        let wire_code = if (100..=599).contains(&code) {
            code
        } else {
            500
        };
        let prefix = format!("{wire_code} ");
        assert!(wire.ends_with(b"\r\n"));
        let body = &wire[..wire.len() - 2];
        let parts: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let expected = lines.len().max(1);
        assert_eq!(parts.len(), expected);
        for (i, p) in parts.iter().enumerate() {
            // All but the last part still carry the CR of their CRLF.
            let line = if i + 1 < parts.len() {
                assert!(p.ends_with(b"\r"));
                &p[..p.len() - 1]
            } else {
                p
            };
            assert!(!line.contains(&b'\r') && !line.contains(&b'\n') && !line.contains(&0));
            let text = std::str::from_utf8(line).expect("replies stay UTF-8");
            assert!(
                !text.chars().any(char::is_control),
                "control character in {text:?}"
            );
            if i + 1 == parts.len() {
                assert!(line.starts_with(prefix.as_bytes()));
            } else if i == 0 {
                assert!(line.starts_with(format!("{wire_code}-").as_bytes()));
            } else {
                assert!(line.starts_with(b" "));
            }
        }
    }

    proptest! {
        #[test]
        fn prop_single_line_framing(code in any::<u16>(), text in any::<String>()) {
            let r = Reply::new(code, text.clone());
            check_wire(code, &[text], &r.to_bytes());
        }

        #[test]
        fn prop_multi_line_framing(
            code in any::<u16>(),
            lines in proptest::collection::vec(any::<String>(), 0..6),
        ) {
            let r = Reply::multi(code, lines.clone());
            check_wire(code, &lines, &r.to_bytes());
        }

        #[test]
        fn prop_quote_roundtrip(path in any::<String>()) {
            let q = quote_path(&path);
            prop_assert!(q.starts_with('"') && q.ends_with('"') && q.len() >= 2);
            let inner = &q[1..q.len() - 1];
            prop_assert_eq!(inner.replace("\"\"", "\""), path);
        }
    }
}
