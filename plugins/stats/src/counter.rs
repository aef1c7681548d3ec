//! What `last_over_time`, `changes`, `resets`, `delta`, `increase` and `rate` need of
//! a run of samples in time order; Prometheus 2.42's extrapolation is `promql-math`'s.

use sketch_plugin_sdk::{Span, Summary};

use crate::stats::neumaier;

/// Runs with at most this many counter resets list the value before each, so that
/// `increase` adds them one by one in Prometheus' order, to the bit. Longer runs keep
/// only their compensated sum.
pub const LISTED_RESETS: usize = 16;

/// The first and last values of a run and what happens between neighbours in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counter {
    count: u64,
    first: f64,
    last: f64,
    /// Neighbours that differ (two NaNs do not), as Prometheus' `changes`.
    changes: u64,
    /// Neighbours where the value drops, as `resets`; NaNs never drop.
    resets: u64,
    /// The value before each reset, oldest first, while `resets <= LISTED_RESETS`;
    /// empty otherwise.
    before_resets: Vec<f64>,
    /// Their sum (Neumaier: value and compensation).
    correction: f64,
    correction_c: f64,
}

impl Counter {
    /// The value of the newest sample; NaN for an empty run.
    pub fn last(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.last }
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// `delta` (`counter` false) or `increase` and `rate` (true) before extrapolation:
    /// last less first, plus for a counter the value before each reset.
    pub fn raw_increase(&self, counter: bool) -> f64 {
        let mut result = self.last - self.first;
        if !counter || self.resets == 0 {
            return result;
        }
        if self.resets as usize <= LISTED_RESETS {
            for &before in &self.before_resets {
                result += before;
            }
            return result;
        }
        let correction = if self.correction.is_infinite() {
            self.correction
        } else {
            self.correction + self.correction_c
        };
        result + correction
    }

    /// Extrapolated `delta`, `increase` or `rate` over `span`; `None` below two samples.
    pub fn extrapolated(&self, span: Span, counter: bool, per_second: bool) -> Option<f64> {
        let result = self.raw_increase(counter);
        promql_math::extrapolate(result, self.first, self.count, sampled(span), counter, per_second)
    }

    /// Counts the step from `before` to `value`.
    fn step(&mut self, before: f64, value: f64) {
        if value != before && !(value.is_nan() && before.is_nan()) {
            self.changes += 1;
        }
        if value < before {
            self.resets += 1;
            (self.correction, self.correction_c) = neumaier(self.correction, self.correction_c, before);
            if self.resets as usize <= LISTED_RESETS {
                self.before_resets.push(before);
            } else {
                self.before_resets = Vec::new();
            }
        }
    }
}

impl Summary for Counter {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.first = value;
        } else {
            self.step(self.last, value);
        }
        self.last = value;
        self.count += 1;
    }

    fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.clone_from(other);
            return;
        }
        self.step(self.last, other.first);
        self.changes += other.changes;
        self.resets += other.resets;
        (self.correction, self.correction_c) = neumaier(
            self.correction,
            self.correction_c + other.correction_c,
            other.correction,
        );
        if self.resets as usize <= LISTED_RESETS {
            self.before_resets.extend_from_slice(&other.before_resets);
        } else {
            self.before_resets = Vec::new();
        }
        self.last = other.last;
        self.count += other.count;
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.before_resets.capacity() * size_of::<f64>()
    }

    fn shrink(&mut self) {
        self.before_resets.shrink_to_fit();
    }
}

/// The SDK's span as Prometheus' arithmetic takes it.
pub fn sampled(span: Span) -> promql_math::Sampled {
    promql_math::Sampled {
        start_ms: span.start_ms,
        end_ms: span.end_ms,
        first_ms: span.first_ms,
        last_ms: span.last_ms,
    }
}
