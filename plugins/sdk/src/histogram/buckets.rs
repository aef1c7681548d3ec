//! The bucket counts of a [`super::LogHistogram`], in two forms:
//!
//! - **dense** while values are added and summaries merged: one count per slot over a
//!   span of slots, so adding is an index and merging a pass of additions, with no
//!   sorting and no allocation per merge. Slots the span cannot reach within
//!   [`MAX_DENSE_SPAN`] (NaN, infinities, zero, the other sign's values when the first
//!   were of one sign) are kept aside, sorted;
//! - **packed** once stored in the tree: each bucket's distance from the previous one and
//!   its count as LEB128 varints, about 2 B per bucket against 4 per slot of the span.

use std::cmp::Ordering;

/// Most slots a dense span covers: 64 Ki counts (256 KiB), about 450 decades of one sign
/// at the quantile plugin's 0.8% buckets. A span grows only as far as the values reach.
const MAX_DENSE_SPAN: i64 = 1 << 16;

/// Counts per slot of `low..low + counts.len()`, and the slots outside, sorted.
#[derive(Debug, Clone, Default)]
pub(super) struct Dense {
    low: i32,
    counts: Vec<u32>,
    outside: Vec<(i32, u32)>,
}

/// Bucket counts by slot, ordered by slot: dense while `dense` is there, else packed.
#[derive(Debug, Clone, Default)]
pub(super) struct Buckets {
    /// Boxed: a stored histogram is packed, and stays small.
    dense: Option<Box<Dense>>,
    packed: Box<[u8]>,
}

impl Buckets {
    /// The non-empty buckets in slot order.
    pub(super) fn iter(&self) -> BucketIter<'_> {
        match &self.dense {
            Some(dense) => {
                let Dense { low, counts, outside } = &**dense;
                let split = outside.partition_point(|&(s, _)| s < *low);
                BucketIter::Dense {
                    below: outside[..split].iter(),
                    low: *low,
                    counts: counts.iter().enumerate(),
                    above: outside[split..].iter(),
                }
            }
            None => BucketIter::Packed {
                bytes: &self.packed,
                at: 0,
                previous: i64::from(i32::MIN),
            },
        }
    }

    /// Adds `count` to `slot`.
    pub(super) fn add(&mut self, slot: i32, count: u32) {
        self.dense().add(slot, count);
    }

    /// The dense form, unpacking first if packed.
    fn dense(&mut self) -> &mut Dense {
        let packed = std::mem::take(&mut self.packed);
        self.dense.get_or_insert_with(|| {
            let mut dense = Box::<Dense>::default();
            let unpacked = Buckets { dense: None, packed };
            for (slot, count) in unpacked.iter() {
                dense.add(slot, count);
            }
            dense
        })
    }

    /// Takes one count from `slot`, which holds at least one.
    pub(super) fn remove(&mut self, slot: i32) {
        let Dense { low, counts, outside } = self.dense();
        if let Some(i) = index(*low, counts, slot) {
            counts[i] = counts[i].saturating_sub(1);
        } else if let Ok(i) = outside.binary_search_by_key(&slot, |&(s, _)| s) {
            outside[i].1 = outside[i].1.saturating_sub(1);
            if outside[i].1 == 0 {
                outside.remove(i);
            }
        }
    }

    /// Adds every bucket of `other`: the hot loop of a query, which merges the packed
    /// summaries of a window's tree nodes into one dense count.
    pub(super) fn merge(&mut self, other: &Buckets) {
        let dense = self.dense();
        if let Some(theirs) = &other.dense
            && dense.add_span(theirs)
        {
            for &(slot, count) in &theirs.outside {
                dense.add(slot, count);
            }
            return;
        }
        for (slot, count) in other.iter() {
            match index(dense.low, &dense.counts, slot) {
                Some(i) => dense.counts[i] += count,
                None => dense.add(slot, count),
            }
        }
    }

    /// Packs the buckets for storage.
    pub(super) fn pack(&mut self) {
        if self.dense.is_some() {
            let mut out = Vec::new();
            let mut previous = i64::from(i32::MIN);
            for (slot, count) in self.iter() {
                write_varint(&mut out, (i64::from(slot) - previous).unsigned_abs());
                write_varint(&mut out, u64::from(count));
                previous = i64::from(slot);
            }
            self.dense = None;
            self.packed = out.into_boxed_slice();
        }
    }

    /// Heap bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.packed.len()
            + self.dense.as_ref().map_or(0, |dense| {
                size_of::<Dense>()
                    + dense.counts.capacity() * size_of::<u32>()
                    + dense.outside.capacity() * size_of::<(i32, u32)>()
            })
    }
}

impl Dense {
    /// Adds the dense counts of `other` slot by slot when its span fits in this one's
    /// (grown to hold it); `false`, with nothing added, when it cannot.
    fn add_span(&mut self, other: &Dense) -> bool {
        let Some(last) = other.counts.len().checked_sub(1) else {
            return true;
        };
        let Ok(high) = i32::try_from(i64::from(other.low) + last as i64) else {
            return false;
        };
        for edge in [other.low, high] {
            if index(self.low, &self.counts, edge).is_none() && !grow(&mut self.low, &mut self.counts, edge) {
                return false;
            }
        }
        let Some(start) = index(self.low, &self.counts, other.low) else {
            return false;
        };
        for (mine, theirs) in self.counts[start..].iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        true
    }

    fn add(&mut self, slot: i32, count: u32) {
        let Dense { low, counts, outside } = self;
        if index(*low, counts, slot).is_none() && !grow(low, counts, slot) {
            match outside.binary_search_by_key(&slot, |&(s, _)| s) {
                Ok(i) => outside[i].1 += count,
                Err(i) => outside.insert(i, (slot, count)),
            }
        } else if let Some(i) = index(*low, counts, slot) {
            counts[i] += count;
        }
    }
}

/// Where `slot` is in a span of `counts` starting at `low`.
fn index(low: i32, counts: &[u32], slot: i32) -> Option<usize> {
    usize::try_from(i64::from(slot) - i64::from(low))
        .ok()
        .filter(|&i| i < counts.len())
}

/// Whether a finite, non-zero value's slot: NaN, the infinities and zero sit at the
/// slot space's ends and middle, and would stretch a span to nothing useful.
fn spans(slot: i32) -> bool {
    slot != 0 && slot.unsigned_abs() < (i32::MAX - 1).unsigned_abs()
}

/// Extends the span of `counts` (starting at `low`) to hold `slot`, with slack on the
/// side it grows so that a run of growing values reallocates rarely. `false` when the
/// slot cannot join the span.
fn grow(low: &mut i32, counts: &mut Vec<u32>, slot: i32) -> bool {
    if !spans(slot) {
        return false;
    }
    if counts.is_empty() {
        *low = slot.saturating_sub(32);
        counts.resize(64, 0);
        return true;
    }
    let (lo, hi) = (i64::from(*low), i64::from(*low) + counts.len() as i64);
    let s = i64::from(slot);
    if (s < 0) != (lo < 0) || hi.max(s + 1) - lo.min(s) > MAX_DENSE_SPAN {
        return false;
    }
    let slack = (counts.len() as i64 / 2).max(16);
    match s.cmp(&lo) {
        Ordering::Less => {
            let new_lo = (s - slack).max(hi - MAX_DENSE_SPAN).min(s);
            let Ok(added) = usize::try_from(lo - new_lo) else {
                return false;
            };
            counts.splice(0..0, std::iter::repeat_n(0, added));
            let Ok(new_low) = i32::try_from(new_lo) else {
                return false;
            };
            *low = new_low;
        }
        _ => {
            let new_hi = (s + 1 + slack).min(lo + MAX_DENSE_SPAN).max(s + 1);
            let Ok(len) = usize::try_from(new_hi - lo) else {
                return false;
            };
            counts.resize(len, 0);
        }
    }
    true
}

/// The buckets of [`Buckets::iter`].
pub(super) enum BucketIter<'a> {
    Dense {
        below: std::slice::Iter<'a, (i32, u32)>,
        low: i32,
        counts: std::iter::Enumerate<std::slice::Iter<'a, u32>>,
        above: std::slice::Iter<'a, (i32, u32)>,
    },
    Packed {
        bytes: &'a [u8],
        at: usize,
        previous: i64,
    },
}

impl Iterator for BucketIter<'_> {
    type Item = (i32, u32);

    fn next(&mut self) -> Option<(i32, u32)> {
        match self {
            BucketIter::Dense {
                below,
                low,
                counts,
                above,
            } => {
                if let Some(&b) = below.next() {
                    return Some(b);
                }
                for (i, &c) in counts.by_ref() {
                    if c > 0 {
                        let slot = i64::from(*low) + i as i64;
                        return Some((i32::try_from(slot).ok()?, c));
                    }
                }
                above.next().copied()
            }
            BucketIter::Packed { bytes, at, previous } => {
                // Most gaps and counts take one byte each.
                let (gap, count) = match bytes.get(*at..*at + 2) {
                    Some(&[g, c]) if g < 0x80 && c < 0x80 => {
                        *at += 2;
                        (u64::from(g), u64::from(c))
                    }
                    _ => (read_varint(bytes, at)?, read_varint(bytes, at)?),
                };
                *previous += i64::try_from(gap).ok()?;
                Some((i32::try_from(*previous).ok()?, u32::try_from(count).ok()?))
            }
        }
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}
