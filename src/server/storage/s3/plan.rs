//! How an upload of unknown length is cut into multipart parts.
//!
//! An FTP STOR does not say how long the file is (ALLO may hint, and may lie), yet S3 fixes the
//! part count at 10,000, every part but the last at 5 MiB to 5 GiB, and an object at 5 TiB. Parts
//! are also what an upload buffers (one being filled, one in flight), so they should stay small for
//! the files that are common and grow only for the few that need it. Hence: parts start at the
//! configured minimum and double every `group` parts, `group` being the largest count for which
//! 10,000 parts still hold [`MAX_OBJECT`]. With an 8 MiB minimum, the first 1,089 parts (8.5 GiB)
//! are 8 MiB, and parts reach 64 MiB only past 59 GiB.
//!
//! A file that ends inside the first part never becomes a multipart upload: it goes as one PUT
//! (one request instead of three, and no upload to abort).

/// S3's smallest part, except the last.
pub const MIN_PART: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART: u64 = 5 << 30;
/// S3's largest part number.
pub const MAX_PARTS: u16 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT: u64 = 5 << 40;

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("part size {0} bytes is outside S3's limits (5 MiB to 5 GiB)")]
    PartSize(u64),
    #[error("{0} bytes is more than an S3 object can hold (5 TiB)")]
    TooLarge(u64),
}

/// The part sizes of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of the first parts.
    min_part: u64,
    /// Parts per doubling.
    group: u16,
}

impl PartPlan {
    /// A plan whose parts start at `min_part`. With `size_hint` (ALLO), parts start large enough
    /// for that size to fit in 10,000 of them; a client that then sends more is still covered,
    /// since the parts keep growing.
    pub fn new(min_part: u64, size_hint: Option<u64>) -> Result<PartPlan, PlanError> {
        if !(MIN_PART..=MAX_PART).contains(&min_part) {
            return Err(PlanError::PartSize(min_part));
        }
        let mut min_part = min_part;
        if let Some(size) = size_hint {
            if size > MAX_OBJECT {
                return Err(PlanError::TooLarge(size));
            }
            // Rounded up to a MiB: round part sizes keep buffers reusable between uploads.
            let even = size.div_ceil(u64::from(MAX_PARTS)).div_ceil(1 << 20) << 20;
            min_part = min_part.max(even);
        }
        // The largest group that still holds MAX_OBJECT, by bisection: a larger group never
        // holds more. `group = 1` always holds it (parts reach 5 GiB within 11 doublings).
        let (mut lo, mut hi) = (1u16, MAX_PARTS);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if capacity_of(min_part, mid) >= MAX_OBJECT {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(PartPlan {
            min_part,
            group: lo,
        })
    }

    /// The size of part `number` (1 to 10,000).
    pub fn part_size(&self, number: u16) -> u64 {
        debug_assert!((1..=MAX_PARTS).contains(&number));
        size_of(self.min_part, self.group, number)
    }

    /// Largest upload sent as one PUT: one that ends before its first part is full.
    pub fn single_put_max(&self) -> u64 {
        self.part_size(1)
    }

    /// Bytes that all 10,000 parts hold: at least [`MAX_OBJECT`].
    pub fn capacity(&self) -> u64 {
        capacity_of(self.min_part, self.group)
    }

    /// Parts per doubling.
    pub fn group(&self) -> u16 {
        self.group
    }
}

fn size_of(min_part: u64, group: u16, number: u16) -> u64 {
    let doublings = u32::from((number - 1) / group);
    // Past 5 GiB every part is 5 GiB, so large shifts need no care beyond not overflowing.
    if doublings >= 40 {
        return MAX_PART;
    }
    (min_part << doublings).min(MAX_PART)
}

/// The sum of all 10,000 part sizes, a group at a time (at most about 40 steps, since sizes reach
/// 5 GiB after 10 doublings from 5 MiB).
fn capacity_of(min_part: u64, group: u16) -> u64 {
    let (mut total, mut first, mut size) = (0u64, 1u64, min_part);
    let (group, last) = (u64::from(group), u64::from(MAX_PARTS));
    while first <= last {
        if size >= MAX_PART {
            return total + (last - first + 1) * MAX_PART;
        }
        total += group.min(last - first + 1) * size;
        first += group;
        size = (size * 2).min(MAX_PART);
    }
    total
}

/// Where an upload stands in its plan: which part is being filled and how full it is. Pure
/// bookkeeping; the caller owns the buffers and the requests.
#[derive(Debug, Clone)]
pub struct PartCursor {
    plan: PartPlan,
    /// The part being filled (from 1).
    number: u16,
    /// Bytes in it so far.
    filled: u64,
    /// Bytes in the parts already handed off.
    sent: u64,
}

/// What to send when the data connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The whole file (`len` bytes) in one PutObject; no multipart upload was started.
    SinglePut { len: u64 },
    /// Part `number` of `len` bytes (possibly 0 bytes only if it is part 1 of an empty file,
    /// which is a `SinglePut` instead), then CompleteMultipartUpload with `number` parts.
    LastPart { number: u16, len: u64 },
    /// The last part handed off was full and the file ended there: complete with `parts` parts.
    Complete { parts: u16 },
}

/// An upload that outgrew 10,000 parts (more than [`MAX_OBJECT`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upload exceeds S3's 10,000 parts")]
pub struct TooManyParts;

impl PartCursor {
    pub fn new(plan: PartPlan) -> PartCursor {
        PartCursor {
            plan,
            number: 1,
            filled: 0,
            sent: 0,
        }
    }

    /// The part being filled.
    pub fn number(&self) -> u16 {
        self.number
    }

    /// Its planned size (the buffer to have ready for it).
    pub fn target(&self) -> u64 {
        self.plan.part_size(self.number)
    }

    /// Room left in it.
    pub fn room(&self) -> u64 {
        self.target() - self.filled
    }

    /// Records `n` bytes copied into the part (at most [`PartCursor::room`]). Returns whether the
    /// part is now full, i.e. must be handed off with [`PartCursor::hand_off`] before more bytes
    /// come.
    pub fn fill(&mut self, n: u64) -> bool {
        assert!(n <= self.room(), "{n} bytes overflow part {}", self.number);
        self.filled += n;
        self.filled == self.target()
    }

    /// The full part leaves (UploadPart); the next one starts empty. Before the first hand-off
    /// the caller starts the multipart upload: from then on, the file is not a single PUT.
    pub fn hand_off(&mut self) -> Result<(u16, u64), TooManyParts> {
        debug_assert_eq!(
            self.filled,
            self.target(),
            "handing off a part that is not full"
        );
        if self.number == MAX_PARTS {
            return Err(TooManyParts);
        }
        let out = (self.number, self.filled);
        self.sent += self.filled;
        self.number += 1;
        self.filled = 0;
        Ok(out)
    }

    /// Bytes received so far.
    pub fn total(&self) -> u64 {
        self.sent + self.filled
    }

    /// What the end of the data means for the store.
    pub fn finish(&self) -> Finish {
        if self.number == 1 {
            Finish::SinglePut { len: self.filled }
        } else if self.filled == 0 {
            Finish::Complete {
                parts: self.number - 1,
            }
        } else {
            Finish::LastPart {
                number: self.number,
                len: self.filled,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn limits_are_refused() {
        assert_eq!(
            PartPlan::new(MIN_PART - 1, None),
            Err(PlanError::PartSize(MIN_PART - 1))
        );
        assert_eq!(
            PartPlan::new(MAX_PART + 1, None),
            Err(PlanError::PartSize(MAX_PART + 1))
        );
        assert_eq!(
            PartPlan::new(MIN_PART, Some(MAX_OBJECT + 1)),
            Err(PlanError::TooLarge(MAX_OBJECT + 1))
        );
    }

    #[test]
    fn capacity_by_groups_matches_the_sum_of_parts() {
        for (min, group) in [
            (MIN_PART, 1),
            (MIN_PART, 999),
            (8 * MIB, 1089),
            (MAX_PART, 10_000),
        ] {
            let sum: u64 = (1..=MAX_PARTS).map(|n| size_of(min, group, n)).sum();
            assert_eq!(capacity_of(min, group), sum, "{min} {group}");
        }
    }

    #[test]
    fn five_mib_parts_double_often_enough_for_five_tib() {
        // 1,000 parts per doubling would hold only 4.88 TiB at 5 MiB.
        let p = PartPlan::new(MIN_PART, None).unwrap();
        assert_eq!(p.group(), 997);
        assert!(p.capacity() >= MAX_OBJECT);
        assert_eq!(p.part_size(1), MIN_PART);
        assert_eq!(p.part_size(p.group()), MIN_PART);
        assert_eq!(p.part_size(p.group() + 1), 2 * MIN_PART);
    }

    #[test]
    fn eight_mib_parts_stay_small_for_common_files() {
        let p = PartPlan::new(8 * MIB, None).unwrap();
        assert_eq!(p.group(), 1089);
        assert_eq!(p.single_put_max(), 8 * MIB);
        assert_eq!(p.part_size(1089), 8 * MIB);
        assert_eq!(p.part_size(1090), 16 * MIB);
        // 64 MiB parts start after 1,089 parts each of 8, 16 and 32 MiB: 59.6 GiB.
        assert_eq!(p.part_size(3 * 1089), 32 * MIB);
        assert_eq!(p.part_size(3 * 1089 + 1), 64 * MIB);
    }

    #[test]
    fn a_hint_sets_the_first_part_size() {
        // 1 TiB in 10,000 parts: 104.9 MiB each, rounded up to 105 MiB.
        let p = PartPlan::new(8 * MIB, Some(1 << 40)).unwrap();
        assert_eq!(p.part_size(1), 105 * MIB);
        assert!(p.part_size(1) * u64::from(MAX_PARTS) >= 1 << 40);
        // A small hint changes nothing.
        assert_eq!(
            PartPlan::new(8 * MIB, Some(100)).unwrap(),
            PartPlan::new(8 * MIB, None).unwrap()
        );
    }

    #[test]
    fn cursor_finishes_as_put_part_or_complete() {
        let p = PartPlan::new(MIN_PART, None).unwrap();
        let mut c = PartCursor::new(p);
        assert_eq!(c.finish(), Finish::SinglePut { len: 0 });
        assert!(!c.fill(MIN_PART - 1));
        assert_eq!(c.finish(), Finish::SinglePut { len: MIN_PART - 1 });
        assert!(c.fill(1));
        assert_eq!(c.hand_off(), Ok((1, MIN_PART)));
        assert_eq!(c.finish(), Finish::Complete { parts: 1 });
        c.fill(1);
        assert_eq!(c.finish(), Finish::LastPart { number: 2, len: 1 });
        assert_eq!(c.total(), MIN_PART + 1);
    }

    #[test]
    fn cursor_refuses_part_10001() {
        let p = PartPlan::new(MAX_PART, None).unwrap();
        let mut c = PartCursor::new(p);
        c.number = MAX_PARTS;
        c.fill(c.room());
        assert_eq!(c.hand_off(), Err(TooManyParts));
    }

    proptest! {
        #[test]
        fn every_plan_is_within_s3_limits(
            min in MIN_PART..=MAX_PART,
            hint in proptest::option::of(0..=MAX_OBJECT),
            n in 1..=MAX_PARTS,
        ) {
            let p = PartPlan::new(min, hint).unwrap();
            let size = p.part_size(n);
            prop_assert!((MIN_PART..=MAX_PART).contains(&size));
            prop_assert!(size >= min.min(MAX_PART));
            if n > 1 {
                prop_assert!(size >= p.part_size(n - 1));
            }
            prop_assert!(p.capacity() >= MAX_OBJECT);
            if let Some(h) = hint {
                prop_assert!(p.part_size(1) * u64::from(MAX_PARTS) >= h);
            }
        }

        /// Feeding a file in arbitrary chunks hands off only full parts, in order, and the
        /// finish accounts for every byte.
        #[test]
        fn cursor_accounts_for_every_byte(
            chunks in proptest::collection::vec(0u64..(3 * MIN_PART), 0..12),
        ) {
            let p = PartPlan::new(MIN_PART, None).unwrap();
            let mut c = PartCursor::new(p);
            let mut handed = Vec::new();
            let mut total = 0;
            for mut chunk in chunks {
                total += chunk;
                while chunk > 0 {
                    let n = chunk.min(c.room());
                    chunk -= n;
                    if c.fill(n) {
                        handed.push(c.hand_off().unwrap());
                    }
                }
            }
            prop_assert_eq!(c.total(), total);
            for (i, &(number, len)) in handed.iter().enumerate() {
                prop_assert_eq!(usize::from(number), i + 1);
                prop_assert_eq!(len, p.part_size(number));
            }
            let sent: u64 = handed.iter().map(|h| h.1).sum();
            match c.finish() {
                Finish::SinglePut { len } => {
                    prop_assert!(handed.is_empty());
                    prop_assert_eq!(len, total);
                    prop_assert!(len < p.single_put_max());
                }
                Finish::LastPart { number, len } => {
                    prop_assert_eq!(usize::from(number), handed.len() + 1);
                    prop_assert_eq!(sent + len, total);
                }
                Finish::Complete { parts } => {
                    prop_assert_eq!(usize::from(parts), handed.len());
                    prop_assert_eq!(sent, total);
                }
            }
        }
    }
}
