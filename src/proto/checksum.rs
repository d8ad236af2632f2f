//! File checksums, sans-IO: the algorithms and their names in each protocol (GridFTP `CKSM`, the
//! IETF `HASH` draft, ProFTPD's `XCRC`/`XMD5`/`XSHA*`), the running digest state an upload feeds
//! while its bytes pass through user-space buffers, the in-order gate that lets MODE E's
//! out-of-order blocks feed it, and the stored-value format that ties a digest to the file's size
//! and modification time so a value for other contents is never served.
//!
//! No files or syscalls here: the server reads and writes the stored values (as extended
//! attributes) and the file's bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use md5::Digest as _;

/// A checksum or hash algorithm the server can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    /// CRC-32 (IEEE 802.3, zlib's `crc32`): ProFTPD's `XCRC` and the HASH draft's `CRC32`.
    Crc32,
    /// CRC-32C (Castagnoli, iSCSI): hardware-accelerated, the cheapest integrity check inline.
    Crc32c,
    /// Adler-32 (zlib): what dCache and many GridFTP sites verify with.
    Adler32,
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    /// Every algorithm, in the order FEAT lists them.
    pub const ALL: [Algo; 7] = [
        Algo::Md5,
        Algo::Adler32,
        Algo::Sha1,
        Algo::Sha256,
        Algo::Sha512,
        Algo::Crc32c,
        Algo::Crc32,
    ];

    /// The algorithms the HASH draft names (and FileZilla asks for).
    pub const HASH: [Algo; 5] = [
        Algo::Sha1,
        Algo::Sha256,
        Algo::Sha512,
        Algo::Md5,
        Algo::Crc32,
    ];

    /// Any of the names used for the algorithm: the configuration's (`sha256`), GridFTP's
    /// (`SHA256`) and the HASH draft's (`SHA-256`), case-insensitive.
    pub fn parse(name: &str) -> Option<Algo> {
        let n: String = name
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match n.as_str() {
            "crc32" => Algo::Crc32,
            "crc32c" => Algo::Crc32c,
            "adler32" => Algo::Adler32,
            "md5" => Algo::Md5,
            "sha1" => Algo::Sha1,
            "sha256" => Algo::Sha256,
            "sha512" => Algo::Sha512,
            _ => return None,
        })
    }

    /// The name in the configuration and in the stored attribute's name (`user.ringest.<name>`).
    pub fn key(self) -> &'static str {
        match self {
            Algo::Crc32 => "crc32",
            Algo::Crc32c => "crc32c",
            Algo::Adler32 => "adler32",
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    /// GridFTP's name (`CKSM SHA256 ...`, FEAT `CKSM MD5:10;...`).
    pub fn cksm_name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Adler32 => "ADLER32",
            Algo::Md5 => "MD5",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
            Algo::Sha512 => "SHA512",
        }
    }

    /// The HASH draft's name (IANA hash function textual names, plus `CRC32`).
    pub fn hash_name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Adler32 => "ADLER32",
            Algo::Md5 => "MD5",
            Algo::Sha1 => "SHA-1",
            Algo::Sha256 => "SHA-256",
            Algo::Sha512 => "SHA-512",
        }
    }

    /// Length of the hex form.
    pub fn hex_len(self) -> usize {
        match self {
            Algo::Crc32 | Algo::Crc32c | Algo::Adler32 => 8,
            Algo::Md5 => 32,
            Algo::Sha1 => 40,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

impl std::fmt::Display for Algo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a configured list of algorithms is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlgoError {
    #[error("unknown checksum algorithm {0:?} (known: crc32, crc32c, adler32, md5, sha1, sha256, sha512)")]
    Unknown(String),
}

/// Parses the configured list (`["sha256", "crc32c"]`), dropping repeats.
pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Algo>, AlgoError> {
    let mut out = Vec::new();
    for n in names {
        let a = Algo::parse(n.as_ref()).ok_or_else(|| AlgoError::Unknown(n.as_ref().into()))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Adler32(adler2::Adler32),
    Md5(md5::Md5),
    /// SHA-1/256/512 through aws-lc (SHA-NI / ARMv8 crypto extensions where present).
    Sha(aws_lc_rs::digest::Context),
}

/// One algorithm's running state.
pub struct Digest {
    algo: Algo,
    state: State,
}

impl Digest {
    pub fn new(algo: Algo) -> Digest {
        use aws_lc_rs::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY, SHA256, SHA512};
        let state = match algo {
            Algo::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            Algo::Crc32c => State::Crc32c(0),
            Algo::Adler32 => State::Adler32(adler2::Adler32::new()),
            Algo::Md5 => State::Md5(md5::Md5::new()),
            Algo::Sha1 => State::Sha(Context::new(&SHA1_FOR_LEGACY_USE_ONLY)),
            Algo::Sha256 => State::Sha(Context::new(&SHA256)),
            Algo::Sha512 => State::Sha(Context::new(&SHA512)),
        };
        Digest { algo, state }
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(bytes),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, bytes),
            State::Adler32(a) => a.write_slice(bytes),
            State::Md5(m) => m.update(bytes),
            State::Sha(c) => c.update(bytes),
        }
    }

    /// The digest in lowercase hex (checksums as 8 digits, big-endian, as zlib and GridFTP print
    /// them).
    pub fn finish(self) -> String {
        match self.state {
            State::Crc32(h) => format!("{:08x}", h.finalize()),
            State::Crc32c(c) => format!("{c:08x}"),
            State::Adler32(a) => format!("{:08x}", a.checksum()),
            State::Md5(m) => hex(&m.finalize()),
            State::Sha(c) => hex(c.finish().as_ref()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Several algorithms over the same bytes, and how many there were.
pub struct MultiDigest {
    parts: Vec<Digest>,
    len: u64,
}

impl MultiDigest {
    pub fn new(algos: &[Algo]) -> MultiDigest {
        MultiDigest {
            parts: algos.iter().map(|&a| Digest::new(a)).collect(),
            len: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for d in &mut self.parts {
            d.update(bytes);
        }
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Vec<(Algo, String)> {
        self.parts
            .into_iter()
            .map(|d| (d.algo(), d.finish()))
            .collect()
    }
}

/// Feeds a [`MultiDigest`] pieces of a file that arrive at arbitrary offsets (MODE E blocks over
/// parallel connections), in file order: a piece that starts where the digest stands is hashed at
/// once, later ones are held until the gap before them is filled. Holding is bounded by `cap`
/// bytes; past it, or when a piece overlaps bytes already hashed (a rewrite the digest cannot
/// undo), the inline digest is given up and [`finish`](Self::finish) yields nothing, so the value
/// is computed by reading the file when it is asked for.
pub struct InOrder {
    digest: MultiDigest,
    /// Held pieces by offset; none starts at or before `digest.len()`.
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
    cap: usize,
    broken: bool,
}

impl InOrder {
    pub fn new(algos: &[Algo], cap: usize) -> InOrder {
        InOrder {
            digest: MultiDigest::new(algos),
            held: BTreeMap::new(),
            held_bytes: 0,
            cap,
            broken: false,
        }
    }

    /// Whether the inline digest was given up.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bytes held out of order now.
    pub fn held(&self) -> usize {
        self.held_bytes
    }

    /// Feeds the bytes of the file at `offset..offset + bytes.len()`.
    pub fn feed(&mut self, offset: u64, bytes: &[u8]) {
        if self.broken || bytes.is_empty() {
            return;
        }
        let next = self.digest.len();
        if offset < next {
            return self.give_up();
        }
        if offset > next {
            if self.held_bytes + bytes.len() > self.cap || self.held.contains_key(&offset) {
                return self.give_up();
            }
            self.held_bytes += bytes.len();
            self.held.insert(offset, bytes.to_vec());
            return;
        }
        self.digest.update(bytes);
        while let Some(entry) = self.held.first_entry() {
            let at = *entry.key();
            let next = self.digest.len();
            if at > next {
                break;
            }
            let piece = entry.remove();
            self.held_bytes -= piece.len();
            if at < next {
                return self.give_up();
            }
            self.digest.update(&piece);
        }
    }

    fn give_up(&mut self) {
        self.broken = true;
        self.held = BTreeMap::new();
        self.held_bytes = 0;
    }

    /// The digests of the file's first `size` bytes, if every one of them, and no other, was fed.
    pub fn finish(self, size: u64) -> Option<Vec<(Algo, String)>> {
        if self.broken || !self.held.is_empty() || self.digest.len() != size {
            return None;
        }
        Some(self.digest.finish())
    }
}

/// A digest as stored with a file: of the contents the file had when its size and modification
/// time were these. Serialised as `v1 <size> <mtime secs>.<nanos> <hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub hex: String,
}

impl Stored {
    pub fn encode(&self) -> String {
        format!(
            "v1 {} {}.{:09} {}",
            self.size, self.mtime_sec, self.mtime_nsec, self.hex
        )
    }

    /// Parses a stored value of `algo`; `None` for anything garbled, of another version, or whose
    /// hex does not have the algorithm's length.
    pub fn parse(algo: Algo, raw: &[u8]) -> Option<Stored> {
        let s = std::str::from_utf8(raw).ok()?;
        let mut f = s.split(' ');
        let (Some("v1"), Some(size), Some(mtime), Some(hex), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return None;
        };
        let size = digits(size)?.parse().ok()?;
        let (sec, nsec) = mtime.split_once('.')?;
        let (neg, sec_digits) = match sec.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, sec),
        };
        let mut mtime_sec: i64 = digits(sec_digits)?.parse().ok()?;
        if neg {
            mtime_sec = -mtime_sec;
        }
        if nsec.len() != 9 {
            return None;
        }
        let mtime_nsec: u32 = digits(nsec)?.parse().ok()?;
        if hex.len() != algo.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        Some(Stored {
            size,
            mtime_sec,
            mtime_nsec,
            hex: hex.to_owned(),
        })
    }

    /// The hex digest if it was taken of a file of this size and modification time.
    pub fn fresh_for(&self, size: u64, mtime_sec: i64, mtime_nsec: u32) -> Option<&str> {
        (self.size == size && self.mtime_sec == mtime_sec && self.mtime_nsec == mtime_nsec)
            .then_some(self.hex.as_str())
    }
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// The extended attribute a digest of `algo` is stored under.
pub fn attr_name(algo: Algo) -> String {
    format!("user.ringest.{}", algo.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_shot(algo: Algo, data: &[u8]) -> String {
        let mut d = Digest::new(algo);
        d.update(data);
        d.finish()
    }

    #[test]
    fn known_vectors() {
        let abc = b"abc";
        assert_eq!(one_shot(Algo::Md5, abc), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            one_shot(Algo::Sha1, abc),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            one_shot(Algo::Sha256, abc),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(one_shot(Algo::Sha512, abc).starts_with("ddaf35a193617aba"));
        // The check values of the CRC catalogue ("123456789").
        assert_eq!(one_shot(Algo::Crc32, b"123456789"), "cbf43926");
        assert_eq!(one_shot(Algo::Crc32c, b"123456789"), "e3069283");
        assert_eq!(one_shot(Algo::Adler32, b"Wikipedia"), "11e60398");
        assert_eq!(one_shot(Algo::Adler32, b""), "00000001");
        assert_eq!(one_shot(Algo::Crc32c, b""), "00000000");
    }

    #[test]
    fn names() {
        for a in Algo::ALL {
            assert_eq!(Algo::parse(a.key()), Some(a));
            assert_eq!(Algo::parse(a.cksm_name()), Some(a));
            assert_eq!(Algo::parse(a.hash_name()), Some(a));
            assert_eq!(one_shot(a, b"x").len(), a.hex_len());
        }
        assert_eq!(Algo::parse("sha-256"), Some(Algo::Sha256));
        assert_eq!(Algo::parse("whirlpool"), None);
        assert_eq!(
            parse_list(&["sha256", "CRC32C", "sha-256"]),
            Ok(vec![Algo::Sha256, Algo::Crc32c])
        );
        assert!(parse_list(&["sha3"]).is_err());
    }

    #[test]
    fn stored_round_trip_and_rejects() {
        let s = Stored {
            size: 42,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 5,
            hex: one_shot(Algo::Crc32c, b"x"),
        };
        let enc = s.encode();
        assert_eq!(Stored::parse(Algo::Crc32c, enc.as_bytes()), Some(s.clone()));
        assert_eq!(s.fresh_for(42, 1_700_000_000, 5), Some(s.hex.as_str()));
        assert_eq!(s.fresh_for(43, 1_700_000_000, 5), None);
        assert_eq!(s.fresh_for(42, 1_700_000_000, 6), None);
        // The hex of one algorithm is not taken for another's.
        assert_eq!(Stored::parse(Algo::Sha256, enc.as_bytes()), None);
        for bad in [
            "",
            "v2 42 1.000000000 00000000",
            "v1 42 1.0 00000000",
            "v1 -42 1.000000000 00000000",
            "v1 42 1.000000000 0000000G",
            "v1 42 1.000000000 00000000 extra",
            "v1 42 1.000000000 ABCDEF00",
        ] {
            assert_eq!(Stored::parse(Algo::Crc32, bad.as_bytes()), None, "{bad:?}");
        }
        let neg = Stored { mtime_sec: -3, ..s };
        assert_eq!(
            Stored::parse(Algo::Crc32c, neg.encode().as_bytes()),
            Some(neg)
        );
    }

    #[test]
    fn gate_gives_up_past_its_cap_or_on_overlap() {
        let mut g = InOrder::new(&[Algo::Sha256], 4);
        g.feed(4, b"efgh");
        assert_eq!(g.held(), 4);
        g.feed(9, b"j");
        assert!(g.is_broken());
        assert_eq!(g.finish(10), None);

        let mut g = InOrder::new(&[Algo::Sha256], 100);
        g.feed(0, b"abcd");
        g.feed(2, b"cd");
        assert!(g.is_broken());

        // A gap never filled, or bytes past the size, is no digest of the file.
        let mut g = InOrder::new(&[Algo::Sha256], 100);
        g.feed(0, b"ab");
        g.feed(3, b"d");
        assert_eq!(g.finish(4), None);
        let mut g = InOrder::new(&[Algo::Sha256], 100);
        g.feed(0, b"abcd");
        assert_eq!(g.finish(3), None);
    }

    fn pieces_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<usize>)> {
        (
            proptest::collection::vec(any::<u8>(), 0..4096),
            proptest::collection::vec(1usize..600, 0..20),
            proptest::collection::vec(any::<usize>(), 0..40),
        )
    }

    proptest! {
        /// Any split of the bytes, fed in any order, gives the one-shot digest of every algorithm
        /// while the gate's cap holds everything out of order.
        #[test]
        fn any_split_any_order_matches_one_shot((data, cuts, swaps) in pieces_strategy()) {
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                if at >= data.len() { break; }
                let end = (at + c).min(data.len());
                pieces.push((at as u64, &data[at..end]));
                at = end;
            }
            if at < data.len() {
                pieces.push((at as u64, &data[at..]));
            }
            let n = pieces.len();
            for (i, s) in swaps.into_iter().enumerate() {
                if n > 1 {
                    pieces.swap(i % n, s % n);
                }
            }
            let mut gate = InOrder::new(&Algo::ALL, data.len());
            for (off, p) in &pieces {
                gate.feed(*off, p);
            }
            let got = gate.finish(data.len() as u64);
            prop_assert!(got.is_some());
            for (algo, hex) in got.unwrap_or_default() {
                prop_assert_eq!(hex, one_shot(algo, &data), "{}", algo);
            }
        }

        #[test]
        fn stored_parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Stored::parse(Algo::Sha256, &raw);
        }
    }
}
