//! [`DistinctSketch`]: the exact set of value keys while it is small, then a HyperLogLog
//! (Apache DataSketches' HLL).

use datasketches::hll::{HllType, HllUnion};

use crate::plugin::Summary;

/// log2 of the register count: 2^16 registers give a relative standard error of
/// 1.04/√65,536 ≈ 0.41%, so a 2% bound sits about five standard errors out.
pub const LG_REGISTERS: u8 = 16;
/// Keys held exactly before switching to registers: 8,192 keys take as much memory as
/// the 2^16 one-byte registers.
pub const EXACT_KEYS: usize = 8192;

/// A mergeable distinct-value count: exact (a sorted key set) up to [`EXACT_KEYS`]
/// values, which covers a day of samples at a 10 s scrape, then a HyperLogLog whose
/// register maxima merge losslessly, so a union of tree nodes has the error of one
/// sketch.
#[derive(Debug, Clone)]
pub enum DistinctSketch {
    /// Every key seen, sorted and unique.
    Exact(Vec<u64>),
    /// Past [`EXACT_KEYS`] values.
    Registers(Box<HllUnion>),
}

impl Default for DistinctSketch {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl DistinctSketch {
    /// The number of distinct values: exact while the set is held, estimated after.
    pub fn estimate(&self) -> f64 {
        match self {
            Self::Exact(keys) => keys.len() as f64,
            Self::Registers(hll) => hll.estimate(),
        }
    }

    #[allow(clippy::expect_used, reason = "constant argument inside DataSketches' 4..=21")]
    fn registers(keys: &[u64]) -> Box<HllUnion> {
        let mut hll = Box::new(HllUnion::new(LG_REGISTERS).expect("lg_k 16 is valid"));
        for &k in keys {
            hll.update_value(k);
        }
        hll
    }

    fn merge_keys(&mut self, sorted: &[u64]) {
        match self {
            Self::Exact(keys) => {
                let mut merged = Vec::with_capacity(keys.len() + sorted.len());
                let (mut i, mut j) = (0, 0);
                while i < keys.len() && j < sorted.len() {
                    let (a, b) = (keys[i], sorted[j]);
                    merged.push(a.min(b));
                    i += usize::from(a <= b);
                    j += usize::from(b <= a);
                }
                merged.extend_from_slice(&keys[i..]);
                merged.extend_from_slice(&sorted[j..]);
                if merged.len() > EXACT_KEYS {
                    *self = Self::Registers(Self::registers(&merged));
                } else {
                    *keys = merged;
                }
            }
            Self::Registers(hll) => sorted.iter().for_each(|&k| hll.update_value(k)),
        }
    }
}

impl Summary for DistinctSketch {
    fn add(&mut self, value: f64) {
        self.extend(&[value]);
    }

    fn extend(&mut self, values: &[f64]) {
        let mut keys = super::sorted_keys(values);
        keys.dedup();
        self.merge_keys(&keys);
    }

    fn merge(&mut self, other: &Self) {
        match other {
            Self::Exact(keys) => self.merge_keys(keys),
            Self::Registers(theirs) => {
                if let Self::Exact(keys) = self {
                    let mine = Self::registers(keys);
                    *self = Self::Registers(mine);
                }
                if let Self::Registers(hll) = self {
                    hll.update(&theirs.to_sketch(HllType::Hll8));
                }
            }
        }
    }

    fn shrink(&mut self) {
        if let Self::Exact(keys) = self {
            keys.shrink_to_fit();
        }
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + match self {
                Self::Exact(keys) => keys.capacity() * 8,
                Self::Registers(hll) => hll.estimated_size(),
            }
    }
}
