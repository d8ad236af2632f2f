//! MODE B (block mode, RFC 959 section 3.4.2) codec: zero-copy and sans-IO.
//!
//! Each block is a 3-byte header (descriptor, 16-bit big-endian count) followed by `count` bytes. The
//! end of a file is in-band (descriptor bit 64), so one data connection carries file after file; this
//! is what lets ringest ingest small files without a TCP connection each.
//!
//! The [`Decoder`] never copies payload: [`Event::Data`] borrows from the caller's receive buffer, and
//! its position there is `*pos - data.len() .. *pos` after the call, so the server can write payload
//! runs straight from registered buffers. The only state it keeps is a partial header (at most 2
//! bytes) and a partial restart marker (at most [`MAX_MARKER`] bytes), so memory is bounded whatever
//! the peer sends.

/// Descriptor bit: end of record.
pub const DESC_EOR: u8 = 0x80;
/// Descriptor bit: end of file.
pub const DESC_EOF: u8 = 0x40;
/// Descriptor bit: the block's data may contain errors.
pub const DESC_ERRORS: u8 = 0x20;
/// Descriptor bit: the block carries a restart marker, not file data.
pub const DESC_RESTART: u8 = 0x10;
/// Largest payload of one block (the count is 16 bits).
pub const MAX_BLOCK: usize = 65535;
/// Largest restart marker accepted. RFC 959 markers are short printable strings (a byte offset for
/// us); a bound keeps the reassembly buffer small.
pub const MAX_MARKER: usize = 256;

/// Bits RFC 959 leaves undefined; a header using them is not MODE B (often it is MODE S data sent
/// by a client that ignored our MODE reply), so we fail early instead of storing garbage.
const DESC_UNDEFINED: u8 = 0x0F;

/// A malformed block stream. Errors are sticky: once returned, every later call returns the same
/// error, because the framing is lost and nothing after it can be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum DecodeError {
    /// A restart-marker block longer than [`MAX_MARKER`].
    #[error("restart marker longer than {MAX_MARKER} bytes")]
    MarkerTooLong,
    /// A descriptor with bits RFC 959 does not define.
    #[error("invalid block descriptor {0:#04x}")]
    InvalidDescriptor(u8),
}

/// Why a block cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum EncodeError {
    /// A restart marker longer than [`MAX_MARKER`]: our own decoder (and likely the peer's) would
    /// reject it.
    #[error("restart marker longer than {MAX_MARKER} bytes")]
    MarkerTooLong,
}

/// What the decoder found in the stream.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Event<'a> {
    /// A run of file payload borrowed from the input. One block's payload arrives as several runs
    /// when it is split across inputs; runs of consecutive blocks are never merged.
    Data(&'a [u8]),
    /// The block just consumed had the end-of-record bit.
    EndOfRecord,
    /// A complete restart marker, reassembled if it was split across inputs.
    Restart(Vec<u8>),
    /// The block with the end-of-file bit has been fully consumed; the decoder is ready for the next
    /// file on the same connection.
    EndOfFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a header; `have` bytes of `buf` are filled.
    Header {
        buf: [u8; 3],
        have: u8,
    },
    /// Inside a data block's payload.
    Payload {
        desc: u8,
        remaining: u16,
    },
    /// Inside a restart marker block.
    Marker {
        desc: u8,
        remaining: u16,
        buf: Vec<u8>,
    },
    /// The block's payload is consumed; its EOR/EOF events are still to be reported.
    Trailer {
        eor: bool,
        eof: bool,
    },
    Failed(DecodeError),
}

const FRESH: State = State::Header {
    buf: [0; 3],
    have: 0,
};

/// Incremental MODE B decoder. Feed it each received buffer with a position, and take events until
/// it returns `None`.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    in_file: bool,
    suspect: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: FRESH,
            in_file: false,
            suspect: false,
        }
    }
}

impl Decoder {
    /// A decoder at a file boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes from `input` starting at `*pos`. Returns the next event and advances `*pos` past the
    /// bytes it consumed, or `None` once `input[*pos..]` is exhausted (a partial header or marker is
    /// kept for the next input). A `*pos` beyond the input counts as exhausted.
    pub fn next<'a>(
        &mut self,
        input: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Event<'a>>, DecodeError> {
        loop {
            let avail = input.get(*pos..).unwrap_or_default();
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::Trailer { eor, eof } => {
                    if *eor {
                        *eor = false;
                        return Ok(Some(Event::EndOfRecord));
                    }
                    let eof = *eof;
                    self.state = FRESH;
                    if eof {
                        self.in_file = false;
                        return Ok(Some(Event::EndOfFile));
                    }
                }
                State::Header { buf, have } => {
                    let mut filled = usize::from(*have);
                    let mut rest = avail.iter();
                    while let Some(slot) = buf.get_mut(filled) {
                        let Some(&b) = rest.next() else { break };
                        *slot = b;
                        filled += 1;
                        *pos += 1;
                    }
                    if filled < buf.len() {
                        // `filled` is at most 2 here.
                        *have = u8::try_from(filled).unwrap_or(0);
                        return Ok(None);
                    }
                    let [desc, hi, lo] = *buf;
                    self.start_block(desc, u16::from_be_bytes([hi, lo]))?;
                }
                State::Payload { desc, remaining } => {
                    if *remaining == 0 {
                        self.state = trailer(*desc);
                        continue;
                    }
                    let n = usize::from(*remaining).min(avail.len());
                    let Some((data, _)) = avail.split_at_checked(n) else {
                        return Ok(None);
                    };
                    if data.is_empty() {
                        return Ok(None);
                    }
                    // n <= remaining, which is a u16.
                    *remaining -= u16::try_from(n).unwrap_or(*remaining);
                    *pos += n;
                    return Ok(Some(Event::Data(data)));
                }
                State::Marker {
                    desc,
                    remaining,
                    buf,
                } => {
                    let n = usize::from(*remaining).min(avail.len());
                    if let Some((part, _)) = avail.split_at_checked(n) {
                        buf.extend_from_slice(part);
                        *remaining -= u16::try_from(n).unwrap_or(*remaining);
                        *pos += n;
                    }
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    let marker = std::mem::take(buf);
                    self.state = trailer(*desc);
                    return Ok(Some(Event::Restart(marker)));
                }
            }
        }
    }

    /// Whether any block of the current file (or, right after [`Event::EndOfFile`], of the file just
    /// finished) was flagged with suspected errors. Reset when the next file's first block arrives,
    /// so the server can still read it when handling `EndOfFile`.
    pub fn suspect_errors(&self) -> bool {
        self.suspect
    }

    /// True when no block is half-read and no file is in progress: the peer closing the connection
    /// here is a clean end, anywhere else it truncated a file.
    pub fn at_file_boundary(&self) -> bool {
        !self.in_file && self.state == FRESH
    }

    /// Whether some block of a file has been seen since the last end of file.
    pub fn in_file(&self) -> bool {
        self.in_file
    }

    /// Bytes held in internal buffers (for tests of the memory bound).
    #[cfg(test)]
    fn held(&self) -> usize {
        match &self.state {
            State::Marker { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }

    fn start_block(&mut self, desc: u8, count: u16) -> Result<(), DecodeError> {
        let err = if desc & DESC_UNDEFINED != 0 {
            Some(DecodeError::InvalidDescriptor(desc))
        } else if desc & DESC_RESTART != 0 && usize::from(count) > MAX_MARKER {
            Some(DecodeError::MarkerTooLong)
        } else {
            None
        };
        if let Some(e) = err {
            self.state = State::Failed(e);
            return Err(e);
        }
        if !self.in_file {
            self.in_file = true;
            self.suspect = false;
        }
        if desc & DESC_ERRORS != 0 {
            self.suspect = true;
        }
        self.state = if desc & DESC_RESTART != 0 {
            State::Marker {
                desc,
                remaining: count,
                buf: Vec::with_capacity(usize::from(count)),
            }
        } else {
            State::Payload {
                desc,
                remaining: count,
            }
        };
        Ok(())
    }
}

fn trailer(desc: u8) -> State {
    State::Trailer {
        eor: desc & DESC_EOR != 0,
        eof: desc & DESC_EOF != 0,
    }
}

/// The 3-byte block header.
pub fn header(descriptor: u8, count: u16) -> [u8; 3] {
    let [hi, lo] = count.to_be_bytes();
    [descriptor, hi, lo]
}

/// How many payload bytes the next block of a file with `remaining` bytes left should carry. Lets
/// the server interleave [`header`]s with payload it sends straight from the file, without copying.
pub fn next_block_len(remaining: u64) -> u16 {
    u16::try_from(remaining).unwrap_or(u16::MAX)
}

/// Builds blocks into a buffer, for senders that copy anyway (tests, the load generator, small files).
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder;

impl Encoder {
    /// Splits `data` into blocks of at most [`MAX_BLOCK`] bytes and appends them to `out`. Empty
    /// `data` appends nothing.
    pub fn data(data: &[u8], out: &mut Vec<u8>) {
        Self::blocks(data, 0, out);
    }

    /// Appends a whole file: its data blocks with the end-of-file bit on the last one (a lone EOF
    /// block for an empty file), saving one header per file over `data` + `eof`.
    pub fn file(data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            Self::eof(out);
        } else {
            Self::blocks(data, DESC_EOF, out);
        }
    }

    /// Appends an empty block with the end-of-file bit.
    pub fn eof(out: &mut Vec<u8>) {
        out.extend_from_slice(&header(DESC_EOF, 0));
    }

    /// Appends a restart-marker block.
    pub fn restart_marker(marker: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let count = u16::try_from(marker.len())
            .ok()
            .filter(|&c| usize::from(c) <= MAX_MARKER)
            .ok_or(EncodeError::MarkerTooLong)?;
        out.extend_from_slice(&header(DESC_RESTART, count));
        out.extend_from_slice(marker);
        Ok(())
    }

    /// Data blocks, with `last_desc` on the final one.
    fn blocks(data: &[u8], last_desc: u8, out: &mut Vec<u8>) {
        let n = data.len().div_ceil(MAX_BLOCK);
        out.reserve(data.len() + 3 * n);
        for (i, chunk) in data.chunks(MAX_BLOCK).enumerate() {
            let desc = if i + 1 == n { last_desc } else { 0 };
            // chunks() yields at most MAX_BLOCK (= u16::MAX) bytes.
            let count = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&header(desc, count));
            out.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decoder output with payload runs merged, for comparing against a model.
    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Item {
        Data(Vec<u8>),
        Eor,
        Marker(Vec<u8>),
        /// End of file, with the decoder's suspected-errors flag at that point.
        Eof(bool),
    }

    fn push_item(items: &mut Vec<Item>, item: Item) {
        match (items.last_mut(), item) {
            (_, Item::Data(d)) if d.is_empty() => {}
            (Some(Item::Data(prev)), Item::Data(d)) => prev.extend_from_slice(&d),
            (_, item) => items.push(item),
        }
    }

    fn decode_chunks(dec: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<Item>, DecodeError> {
        let mut items = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while let Some(ev) = dec.next(chunk, &mut pos)? {
                let item = match ev {
                    Event::Data(d) => {
                        assert!(!d.is_empty());
                        // The run sits right before the new position in the input.
                        assert_eq!(&chunk[pos - d.len()..pos], d);
                        Item::Data(d.to_vec())
                    }
                    Event::EndOfRecord => Item::Eor,
                    Event::Restart(m) => Item::Marker(m),
                    Event::EndOfFile => Item::Eof(dec.suspect_errors()),
                };
                push_item(&mut items, item);
                assert!(dec.held() <= MAX_MARKER);
            }
            assert_eq!(pos, chunk.len());
        }
        Ok(items)
    }

    fn decode_all(stream: &[u8]) -> Vec<Item> {
        let mut dec = Decoder::new();
        let items = decode_chunks(&mut dec, &[stream]).expect("valid stream");
        assert!(dec.at_file_boundary());
        items
    }

    #[test]
    fn header_layout() {
        assert_eq!(header(DESC_EOF, 0x1234), [0x40, 0x12, 0x34]);
        assert_eq!(header(0, 65535), [0, 0xFF, 0xFF]);
    }

    #[test]
    fn next_block_len_caps() {
        assert_eq!(next_block_len(0), 0);
        assert_eq!(next_block_len(10), 10);
        assert_eq!(next_block_len(65535), 65535);
        assert_eq!(next_block_len(65536), 65535);
        assert_eq!(next_block_len(u64::MAX), 65535);
    }

    #[test]
    fn zero_length_file() {
        let mut s = Vec::new();
        Encoder::eof(&mut s);
        assert_eq!(s, [0x40, 0, 0]);
        assert_eq!(decode_all(&s), [Item::Eof(false)]);
        let mut t = Vec::new();
        Encoder::file(b"", &mut t);
        assert_eq!(s, t);
    }

    #[test]
    fn data_then_eof_and_combined() {
        let mut s = Vec::new();
        Encoder::data(b"hello", &mut s);
        Encoder::eof(&mut s);
        Encoder::file(b"world", &mut s);
        assert_eq!(s.len(), 3 + 5 + 3 + 3 + 5);
        assert_eq!(
            decode_all(&s),
            [
                Item::Data(b"hello".to_vec()),
                Item::Eof(false),
                Item::Data(b"world".to_vec()),
                Item::Eof(false)
            ]
        );
    }

    #[test]
    fn max_blocks_and_beyond() {
        for len in [MAX_BLOCK - 1, MAX_BLOCK, MAX_BLOCK + 1, 3 * MAX_BLOCK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut s = Vec::new();
            Encoder::file(&data, &mut s);
            assert_eq!(s.len(), len + 3 * len.div_ceil(MAX_BLOCK));
            assert_eq!(decode_all(&s), [Item::Data(data.clone()), Item::Eof(false)]);
            // Byte by byte as well.
            let chunks: Vec<&[u8]> = s.chunks(1).collect();
            let mut dec = Decoder::new();
            assert_eq!(
                decode_chunks(&mut dec, &chunks).unwrap(),
                [Item::Data(data), Item::Eof(false)]
            );
        }
    }

    #[test]
    fn eor_eof_order_and_markers() {
        let mut s = Vec::new();
        s.extend_from_slice(&header(DESC_EOR, 2));
        s.extend_from_slice(b"ab");
        Encoder::restart_marker(b"1024", &mut s).unwrap();
        s.extend_from_slice(&header(DESC_EOR | DESC_EOF, 1));
        s.extend_from_slice(b"c");
        assert_eq!(
            decode_all(&s),
            [
                Item::Data(b"ab".to_vec()),
                Item::Eor,
                Item::Marker(b"1024".to_vec()),
                Item::Data(b"c".to_vec()),
                Item::Eor,
                Item::Eof(false)
            ]
        );
    }

    #[test]
    fn empty_marker_and_marker_limits() {
        let mut s = Vec::new();
        Encoder::restart_marker(b"", &mut s).unwrap();
        Encoder::restart_marker(&[b'9'; MAX_MARKER], &mut s).unwrap();
        Encoder::eof(&mut s);
        assert_eq!(
            decode_all(&s),
            [
                Item::Marker(vec![]),
                Item::Marker(vec![b'9'; MAX_MARKER]),
                Item::Eof(false)
            ]
        );
        assert_eq!(
            Encoder::restart_marker(&[0; MAX_MARKER + 1], &mut s),
            Err(EncodeError::MarkerTooLong)
        );
        let bad = header(DESC_RESTART, (MAX_MARKER + 1) as u16);
        let mut dec = Decoder::new();
        let mut pos = 0;
        assert_eq!(dec.next(&bad, &mut pos), Err(DecodeError::MarkerTooLong));
        // Sticky.
        assert_eq!(dec.next(b"", &mut 0), Err(DecodeError::MarkerTooLong));
        assert!(!dec.at_file_boundary());
    }

    #[test]
    fn invalid_descriptor() {
        let mut dec = Decoder::new();
        let mut pos = 0;
        assert_eq!(
            dec.next(b"STOR", &mut pos),
            Err(DecodeError::InvalidDescriptor(b'S'))
        );
    }

    #[test]
    fn boundaries_and_split_header() {
        let mut dec = Decoder::new();
        assert!(dec.at_file_boundary() && !dec.in_file());
        let mut pos = 0;
        assert_eq!(dec.next(&[0], &mut pos), Ok(None));
        assert_eq!(pos, 1);
        assert!(!dec.at_file_boundary());
        let mut pos = 0;
        assert_eq!(dec.next(&[0], &mut pos), Ok(None));
        let mut pos = 0;
        assert_eq!(dec.next(&[2, b'x'], &mut pos), Ok(Some(Event::Data(b"x"))));
        assert!(dec.in_file() && !dec.at_file_boundary());
        let mut pos = 0;
        assert_eq!(dec.next(b"y", &mut pos), Ok(Some(Event::Data(b"y"))));
        assert_eq!(dec.next(b"y", &mut pos), Ok(None));
        // Block complete, file still open: a close here truncates the file.
        assert!(dec.in_file() && !dec.at_file_boundary());
        let eof = header(DESC_EOF, 0);
        let mut pos = 0;
        assert_eq!(dec.next(&eof, &mut pos), Ok(Some(Event::EndOfFile)));
        assert!(dec.at_file_boundary() && !dec.in_file());
        assert_eq!(dec.next(&eof, &mut pos), Ok(None));
        // A position past the end is just "exhausted".
        assert_eq!(dec.next(&eof, &mut 99), Ok(None));
    }

    #[test]
    fn suspect_errors_per_file() {
        let mut s = Vec::new();
        s.extend_from_slice(&header(DESC_ERRORS, 1));
        s.push(b'a');
        Encoder::file(b"b", &mut s);
        Encoder::file(b"c", &mut s);
        assert_eq!(
            decode_all(&s),
            [
                Item::Data(b"ab".to_vec()),
                Item::Eof(true),
                Item::Data(b"c".to_vec()),
                Item::Eof(false)
            ]
        );
    }

    /// One block of a generated file.
    #[derive(Debug, Clone)]
    enum Block {
        Data { data: Vec<u8>, eor: bool },
        Marker(Vec<u8>),
    }

    #[derive(Debug, Clone)]
    struct FileSpec {
        blocks: Vec<Block>,
        /// Put the EOF bit on the last block instead of a separate empty block.
        eof_on_last: bool,
        errors: bool,
    }

    fn block() -> impl Strategy<Value = Block> {
        prop_oneof![
            4 => (proptest::collection::vec(any::<u8>(), 0..300), prop::bool::weighted(0.1))
                .prop_map(|(data, eor)| Block::Data { data, eor }),
            1 => proptest::collection::vec(any::<u8>(), 0..=MAX_MARKER).prop_map(Block::Marker),
        ]
    }

    fn file_spec() -> impl Strategy<Value = FileSpec> {
        (
            proptest::collection::vec(block(), 0..6),
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(blocks, eof_on_last, errors)| FileSpec {
                blocks,
                eof_on_last,
                errors,
            })
    }

    /// Encodes `files` and returns the stream with the items a correct decoder must produce.
    fn encode(files: &[FileSpec]) -> (Vec<u8>, Vec<Item>) {
        let mut out = Vec::new();
        let mut want = Vec::new();
        for f in files {
            let n = f.blocks.len();
            let separate_eof = !f.eof_on_last || n == 0;
            for (i, b) in f.blocks.iter().enumerate() {
                let mut desc = 0;
                if i == 0 && f.errors {
                    desc |= DESC_ERRORS;
                }
                if i + 1 == n && !separate_eof {
                    desc |= DESC_EOF;
                }
                let (payload, flags) = match b {
                    Block::Data { data, eor } => {
                        push_item(&mut want, Item::Data(data.clone()));
                        (data, if *eor { DESC_EOR } else { 0 })
                    }
                    Block::Marker(m) => {
                        push_item(&mut want, Item::Marker(m.clone()));
                        (m, DESC_RESTART)
                    }
                };
                if flags & DESC_EOR != 0 {
                    push_item(&mut want, Item::Eor);
                }
                out.extend_from_slice(&header(desc | flags, payload.len() as u16));
                out.extend_from_slice(payload);
            }
            if separate_eof {
                let desc = if n == 0 && f.errors {
                    DESC_EOF | DESC_ERRORS
                } else {
                    DESC_EOF
                };
                out.extend_from_slice(&header(desc, 0));
            }
            push_item(&mut want, Item::Eof(f.errors));
        }
        (out, want)
    }

    fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn prop_roundtrip_any_split(
            files in proptest::collection::vec(file_spec(), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let (stream, want) = encode(&files);
            let chunks = split(&stream, &cuts);
            let mut dec = Decoder::new();
            let got = decode_chunks(&mut dec, &chunks).expect("valid stream");
            prop_assert_eq!(got, want);
            prop_assert!(dec.at_file_boundary());
        }

        #[test]
        fn prop_roundtrip_one_byte_chunks(files in proptest::collection::vec(file_spec(), 0..3)) {
            let (stream, want) = encode(&files);
            let chunks: Vec<&[u8]> = stream.chunks(1).collect();
            let mut dec = Decoder::new();
            prop_assert_eq!(decode_chunks(&mut dec, &chunks).expect("valid stream"), want);
        }

        #[test]
        fn prop_truncated_stream_is_not_a_boundary(
            files in proptest::collection::vec(file_spec(), 1..4),
            cut in any::<usize>(),
        ) {
            let (stream, _) = encode(&files);
            let cut = cut % stream.len();
            let mut dec = Decoder::new();
            let items = decode_chunks(&mut dec, &[&stream[..cut]]).expect("valid prefix");
            // A clean boundary exactly where a file ended, never inside one.
            if dec.at_file_boundary() {
                prop_assert!(cut == 0 || matches!(items.last(), Some(Item::Eof(_))));
            }
        }

        #[test]
        fn prop_encoder_roundtrip(
            files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (i, f) in files.iter().enumerate() {
                if i % 2 == 0 {
                    Encoder::file(f, &mut stream);
                } else {
                    Encoder::data(f, &mut stream);
                    Encoder::eof(&mut stream);
                }
                push_item(&mut want, Item::Data(f.clone()));
                push_item(&mut want, Item::Eof(false));
            }
            let mut dec = Decoder::new();
            prop_assert_eq!(decode_chunks(&mut dec, &split(&stream, &cuts)).unwrap(), want);
        }

        #[test]
        fn prop_garbage_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut dec = Decoder::new();
            // decode_chunks asserts the memory bound after every event.
            if decode_chunks(&mut dec, &split(&data, &cuts)).is_err() {
                prop_assert!(dec.next(&data, &mut 0).is_err());
            }
        }
    }
}
