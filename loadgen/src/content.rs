//! Deterministic file content and sizes: a pure function of (run seed, file id, offset), so the
//! uploader never stores what it sent and the verifier regenerates it.
//!
//! Content is a stream of little-endian 64-bit words, word `w` of file `id` being a splitmix64
//! finalisation of `key(seed, id) + (w + 1) * GOLDEN`: about one nanosecond per 8 bytes, so the
//! generator stays far ahead of loopback TCP.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-file key.
#[inline]
fn key(seed: u64, id: u64) -> u64 {
    mix(seed ^ mix(id.wrapping_add(1).wrapping_mul(GOLDEN)))
}

#[inline]
fn word(key: u64, w: u64) -> [u8; 8] {
    mix(key.wrapping_add(w.wrapping_add(1).wrapping_mul(GOLDEN))).to_le_bytes()
}

/// Fills `out` with bytes `offset..offset + out.len()` of file `id`.
pub fn fill(seed: u64, id: u64, offset: u64, out: &mut [u8]) {
    let k = key(seed, id);
    let mut w = offset / 8;
    let skip = (offset % 8) as usize;
    let mut rest = out;
    if skip != 0 {
        let bytes = word(k, w);
        let n = (8 - skip).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&bytes[skip..skip + n]);
        rest = tail;
        w += 1;
    }
    let mut chunks = rest.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&word(k, w));
        w += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&word(k, w)[..n]);
    }
}

/// Appends `len` bytes of file `id` starting at `offset` to `out`.
pub fn append(seed: u64, id: u64, offset: u64, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + len, 0);
    fill(seed, id, offset, &mut out[start..]);
}

/// Compares `data` with bytes `offset..` of file `id`; returns the index of the first difference.
pub fn first_mismatch(
    seed: u64,
    id: u64,
    offset: u64,
    data: &[u8],
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    scratch.clear();
    append(seed, id, offset, data.len(), scratch);
    data.iter().zip(scratch.iter()).position(|(a, b)| a != b)
}

/// File sizes: a fixed size or a uniform inclusive range, chosen per file from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeSpec {
    pub min: u64,
    pub max: u64,
}

impl SizeSpec {
    /// The size of file `id`.
    pub fn size_of(&self, seed: u64, id: u64) -> u64 {
        if self.max <= self.min {
            return self.min;
        }
        let span = self.max - self.min;
        let r = mix(seed ^ 0x5eed_5eed_0000_0000 ^ mix(id.wrapping_mul(GOLDEN) ^ 0xa5a5));
        match span.checked_add(1) {
            Some(m) => self.min + r % m,
            None => r,
        }
    }

    /// Parses `4096`, `4K`, `1M`, `2G` (binary units, optional `B`/`iB`) or a range `4K..1M`.
    pub fn parse(s: &str) -> Result<SizeSpec, String> {
        let s = s.trim();
        if let Some((lo, hi)) = s.split_once("..") {
            let (min, max) = (parse_size(lo)?, parse_size(hi.trim_start_matches('='))?);
            if min > max {
                return Err(format!("size range {s}: low end is above high end"));
            }
            return Ok(SizeSpec { min, max });
        }
        let v = parse_size(s)?;
        Ok(SizeSpec { min: v, max: v })
    }
}

/// Parses one size with an optional K/M/G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?}: expected e.g. 4096, 4K, 1M, 4K..1M"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_offset_consistent() {
        let mut whole = vec![0u8; 1000];
        fill(7, 3, 0, &mut whole);
        for off in [0usize, 1, 5, 7, 8, 9, 63, 500, 999] {
            for len in [0usize, 1, 3, 8, 17, 1000 - off] {
                let len = len.min(1000 - off);
                let mut part = vec![0u8; len];
                fill(7, 3, off as u64, &mut part);
                assert_eq!(part, whole[off..off + len], "off {off} len {len}");
            }
        }
        let mut other = vec![0u8; 1000];
        fill(7, 4, 0, &mut other);
        assert_ne!(whole, other);
        fill(8, 3, 0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn mismatch_found() {
        let mut data = Vec::new();
        append(1, 2, 10, 100, &mut data);
        let mut scratch = Vec::new();
        assert_eq!(first_mismatch(1, 2, 10, &data, &mut scratch), None);
        data[42] ^= 1;
        assert_eq!(first_mismatch(1, 2, 10, &data, &mut scratch), Some(42));
    }

    #[test]
    fn sizes() {
        assert_eq!(
            SizeSpec::parse("4K"),
            Ok(SizeSpec {
                min: 4096,
                max: 4096
            })
        );
        assert_eq!(
            SizeSpec::parse("1m"),
            Ok(SizeSpec {
                min: 1 << 20,
                max: 1 << 20
            })
        );
        assert_eq!(
            SizeSpec::parse("0..64K"),
            Ok(SizeSpec { min: 0, max: 65536 })
        );
        assert_eq!(
            SizeSpec::parse("4KiB..1MB"),
            Ok(SizeSpec {
                min: 4096,
                max: 1 << 20
            })
        );
        assert_eq!(SizeSpec::parse("123"), Ok(SizeSpec { min: 123, max: 123 }));
        assert!(SizeSpec::parse("1M..4K").is_err());
        assert!(SizeSpec::parse("x").is_err());
        assert!(SizeSpec::parse("").is_err());
        let r = SizeSpec { min: 10, max: 20 };
        let mut seen = [false; 11];
        for id in 0..1000 {
            let s = r.size_of(5, id);
            assert!((10..=20).contains(&s));
            assert_eq!(s, r.size_of(5, id));
            seen[(s - 10) as usize] = true;
        }
        assert!(seen.iter().all(|&b| b));
        let full = SizeSpec {
            min: 0,
            max: u64::MAX,
        };
        let _ = full.size_of(1, 1);
    }
}
