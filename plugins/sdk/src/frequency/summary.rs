//! [`FrequencySummary`]: one summary for all three frequency functions.

use datasketches::hll::{HllType, HllUnion};

use super::sample::FrequencySample;
use crate::plugin::Summary;

/// log2 of the register count: 2^16 registers give a relative standard error of
/// 1.04/√65,536 ≈ 0.41%, so a 2% bound sits about five standard errors out.
pub const LG_REGISTERS: u8 = 16;

/// Registers holding every key of an exact sample.
#[allow(clippy::expect_used, reason = "constant argument inside DataSketches' 4..=21")]
fn self_registers(sample: &FrequencySample) -> HllUnion {
    let mut union = HllUnion::new(LG_REGISTERS).expect("lg_k 16 is valid");
    sample.keys().iter().for_each(|&k| union.update_value(k));
    union
}

/// A [`FrequencySample`] for L2 and entropy, plus, once the sample no longer holds
/// every value, HyperLogLog registers for the distinct count. While the sample is exact
/// it counts distinct values itself, so small summaries carry no registers (64 KiB).
#[derive(Debug, Clone, Default)]
pub struct FrequencySummary {
    sample: FrequencySample,
    /// Present exactly when `sample` is no longer exact.
    registers: Option<Box<HllUnion>>,
}

impl FrequencySummary {
    /// The value frequencies' sample.
    pub fn sample(&self) -> &FrequencySample {
        &self.sample
    }

    /// The number of distinct values: exact while the sample holds them all.
    pub fn distinct(&self) -> f64 {
        match &self.registers {
            Some(hll) => hll.estimate(),
            None => self.sample.keys().len() as f64,
        }
    }
}

impl Summary for FrequencySummary {
    fn add(&mut self, value: f64) {
        self.extend(&[value]);
    }

    fn extend(&mut self, values: &[f64]) {
        // Every value of the run, exactly: the merge cuts it to the sample and counts
        // the distinct values into registers from the whole set.
        let part = Self {
            sample: FrequencySample::of(values),
            registers: None,
        };
        self.merge(&part);
    }

    /// In place: a summary absorbing run after run (a query over raw samples) updates
    /// its registers instead of building them again each time.
    fn merge(&mut self, other: &Self) {
        let sample = self.sample.merged(&other.sample);
        if sample.is_exact() {
            self.sample = sample;
            self.registers = None;
            return;
        }
        // Built from the keys `self` still holds, before the sample is cut.
        let registers = self
            .registers
            .get_or_insert_with(|| Box::new(self_registers(&self.sample)));
        match &other.registers {
            Some(theirs) => registers.update(&theirs.to_sketch(HllType::Hll8)),
            None => other
                .sample
                .keys()
                .iter()
                .for_each(|&k| registers.update_value(k)),
        }
        self.sample = sample;
    }

    fn shrink(&mut self) {
        self.sample.shrink();
    }

    fn memory_bytes(&self) -> usize {
        self.sample.memory_bytes() - size_of::<FrequencySample>()
            + size_of::<Self>()
            + self.registers.as_ref().map_or(0, |hll| hll.estimated_size())
    }
}
