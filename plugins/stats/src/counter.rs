//! What `last_over_time`, `changes`, `resets`, `delta`, `increase` and `rate` need of
//! a run of samples in time order, and Prometheus 2.42's extrapolation
//! (`extrapolatedRate` in `promql/functions.go`).

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
        extrapolate(
            self.raw_increase(counter),
            self.first,
            self.count,
            span,
            counter,
            per_second,
        )
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

/// Prometheus' extrapolation of `result` (the run's raw increase) from the samples to
/// the ends of `span`: `samples` samples, the first of value `first`.
pub fn extrapolate(
    result: f64,
    first: f64,
    samples: u64,
    span: Span,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if samples < 2 {
        return None;
    }
    let mut to_start = (span.first_ms - span.start_ms) as f64 / 1000.0;
    let to_end = (span.end_ms - span.last_ms) as f64 / 1000.0;
    let sampled = (span.last_ms - span.first_ms) as f64 / 1000.0;
    let average = sampled / (samples - 1) as f64;
    if counter && result > 0.0 && first >= 0.0 {
        // A counter is not extrapolated below zero.
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold { to_end } else { average / 2.0 };
    let mut factor = interval / sampled;
    if per_second {
        factor /= go_seconds(span.end_ms - span.start_ms);
    }
    Some(result * factor)
}

/// Go's `time.Duration.Seconds()` of `ms` milliseconds: whole seconds plus the
/// nanoseconds over 1e9, rounded as Go rounds them.
fn go_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}
