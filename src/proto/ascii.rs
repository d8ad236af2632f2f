//! TYPE A line-ending conversion. The wire form of a text file is CRLF-terminated lines (RFC 959
//! 3.1.1.1); the stored form is Unix LF. Both converters keep one byte of state so a CR and its LF may
//! arrive in different buffers.

/// Wire -> disk: CRLF becomes LF; a CR not followed by LF is kept.
#[derive(Debug, Default, Clone)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    /// Converts `input`, appending to `out`. Copies the runs between CRs whole: a byte-at-a-time
    /// push loop was half of a TYPE A upload's CPU, and its speed swung with how the compiler
    /// happened to lay it out.
    pub fn convert(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        if self.pending_cr {
            let Some(&first) = input.first() else {
                return;
            };
            self.pending_cr = false;
            if first != b'\n' {
                out.push(b'\r');
            }
        }
        while let Some(i) = input.iter().position(|&b| b == b'\r') {
            out.extend_from_slice(&input[..i]);
            match input.get(i + 1) {
                None => {
                    self.pending_cr = true;
                    return;
                }
                // CRLF: the CR goes, the LF is copied with the next run.
                Some(b'\n') => {}
                Some(_) => out.push(b'\r'),
            }
            input = &input[i + 1..];
        }
        out.extend_from_slice(input);
    }

    /// Flushes a CR held back at the very end of the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// Disk -> wire: a LF not already preceded by CR becomes CRLF.
#[derive(Debug, Default, Clone)]
pub struct LfToCrlf {
    prev_cr: bool,
}

impl LfToCrlf {
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16 + 1);
        for &b in input {
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_lf(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = CrlfToLf::default();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn crlf_split_across_buffers() {
        assert_eq!(to_lf(&[b"a\r", b"\nb\r\n"]), b"a\nb\n");
        assert_eq!(to_lf(&[b"a\rb"]), b"a\rb");
        assert_eq!(to_lf(&[b"end\r"]), b"end\r");
    }

    #[test]
    fn lf_to_crlf_once() {
        let mut c = LfToCrlf::default();
        let mut out = Vec::new();
        c.convert(b"a\nb\r", &mut out);
        c.convert(b"\nc", &mut out);
        assert_eq!(out, b"a\r\nb\r\nc");
    }

    /// The byte-at-a-time conversion `convert` must match on any input.
    fn to_lf_bytewise(input: &[u8]) -> Vec<u8> {
        let (mut out, mut pending) = (Vec::new(), false);
        for &b in input {
            if std::mem::take(&mut pending) && b != b'\n' {
                out.push(b'\r');
            }
            if b == b'\r' {
                pending = true;
            } else {
                out.push(b);
            }
        }
        if pending {
            out.push(b'\r');
        }
        out
    }

    proptest! {
        /// Any bytes (CRs alone, CRLFs, CRCRLF), cut into any three pieces.
        #[test]
        fn crlf_to_lf_matches_the_bytewise_rule(
            input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()], 0..300),
            a in 0usize..300,
            b in 0usize..300,
        ) {
            let (a, b) = (a.min(input.len()), b.min(input.len()));
            let (a, b) = (a.min(b), a.max(b));
            let got = to_lf(&[&input[..a], &input[a..b], &input[b..], &[]]);
            prop_assert_eq!(got, to_lf_bytewise(&input));
        }

        /// Text with LF line ends survives disk -> wire -> disk under any split.
        #[test]
        fn round_trip(text in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b' ')], 0..200), cut in 0usize..200) {
            let mut wire = Vec::new();
            let mut enc = LfToCrlf::default();
            enc.convert(&text, &mut wire);
            let cut = cut.min(wire.len());
            prop_assert_eq!(to_lf(&[&wire[..cut], &wire[cut..]]), text);
        }
    }
}
