//! The per-block statistics and how they merge.

use sketch_plugin_sdk::Summary;

/// Statistics of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Values, NaN and infinities included.
    count: u64,
    /// NaNs, +Inf and -Inf among them.
    nans: u32,
    positive_infinities: u32,
    negative_infinities: u32,
    /// Finite values: how many, their compensated sum (Neumaier), and their mean and
    /// sum of squared deviations from it, each with its compensation (Prometheus'
    /// compensated Welford update within a block, Chan's merge between blocks).
    finite: u64,
    sum: f64,
    compensation: f64,
    mean: f64,
    mean_c: f64,
    squares: f64,
    squares_c: f64,
    /// Smallest and largest non-NaN value (`+Inf`/`-Inf` when there is none).
    min: f64,
    max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            count: 0,
            nans: 0,
            positive_infinities: 0,
            negative_infinities: 0,
            finite: 0,
            sum: 0.0,
            compensation: 0.0,
            mean: 0.0,
            mean_c: 0.0,
            squares: 0.0,
            squares_c: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Stats {
    /// Function `function` (an index of [`crate::FUNCTIONS`]) of the values.
    pub fn answer(&self, function: usize) -> f64 {
        // Prometheus: a NaN, or infinities of both signs, make sums and means NaN; one
        // sign of infinity makes them that infinity; any of them makes a variance NaN.
        let special = if self.nans > 0 || (self.positive_infinities > 0 && self.negative_infinities > 0) {
            Some(f64::NAN)
        } else if self.positive_infinities > 0 {
            Some(f64::INFINITY)
        } else if self.negative_infinities > 0 {
            Some(f64::NEG_INFINITY)
        } else {
            None
        };
        let variance = || {
            if special.is_some() {
                f64::NAN
            } else {
                (self.squares + self.squares_c) / self.finite as f64
            }
        };
        // As Prometheus' Kahan sums: a sum that overflowed stays an infinity (its
        // compensation would make it NaN).
        let compensated = |value: f64, compensation: f64| {
            if value.is_infinite() {
                value
            } else {
                value + compensation
            }
        };
        match function {
            0 => special.unwrap_or(compensated(self.mean, self.mean_c)),
            1 => special.unwrap_or(compensated(self.sum, self.compensation)),
            2 => self.count as f64,
            3 => self.extreme(self.min),
            4 => self.extreme(self.max),
            5 => variance().sqrt(),
            6 => variance(),
            _ => 1.0,
        }
    }

    /// `value` (the min or max), or NaN when every value is NaN.
    fn extreme(&self, value: f64) -> f64 {
        if self.nans as u64 == self.count {
            f64::NAN
        } else {
            value
        }
    }
}

/// Neumaier's compensated addition: (sum, compensation) with `value` added.
pub(crate) fn neumaier(sum: f64, compensation: f64, value: f64) -> (f64, f64) {
    let t = sum + value;
    let c = if sum.abs() >= value.abs() {
        (sum - t) + value
    } else {
        (value - t) + sum
    };
    (t, compensation + c)
}

impl Summary for Stats {
    fn add(&mut self, value: f64) {
        self.count += 1;
        if value.is_nan() {
            self.nans += 1;
            return;
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value == f64::INFINITY {
            self.positive_infinities += 1;
        } else if value == f64::NEG_INFINITY {
            self.negative_infinities += 1;
        } else {
            self.finite += 1;
            (self.sum, self.compensation) = neumaier(self.sum, self.compensation, value);
            // The mean moves by delta/n (Welford: exact for constant values), or by
            // v/n − mean/n where delta overflows (values near the largest floats), as
            // Prometheus' avg_over_time does.
            let n = self.finite as f64;
            let old = self.mean + self.mean_c;
            let delta = value - old;
            let moved = if delta.is_finite() {
                delta / n
            } else {
                value / n - old / n
            };
            (self.mean, self.mean_c) = neumaier(self.mean, self.mean_c, moved);
            let step = delta * (value - (self.mean + self.mean_c));
            (self.squares, self.squares_c) = neumaier(self.squares, self.squares_c, step);
        }
    }

    fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.nans += other.nans;
        self.positive_infinities += other.positive_infinities;
        self.negative_infinities += other.negative_infinities;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.finite == 0 {
            return;
        }
        if self.finite == 0 {
            let (count, nans, positive, negative, min, max) = (
                self.count,
                self.nans,
                self.positive_infinities,
                self.negative_infinities,
                self.min,
                self.max,
            );
            *self = Self {
                count,
                nans,
                positive_infinities: positive,
                negative_infinities: negative,
                min,
                max,
                ..*other
            };
            return;
        }
        (self.sum, self.compensation) = neumaier(self.sum, self.compensation + other.compensation, other.sum);
        let n = (self.finite + other.finite) as f64;
        let (a, b) = (self.finite as f64, other.finite as f64);
        let delta = (other.mean - self.mean) + (other.mean_c - self.mean_c);
        if delta.is_finite() {
            (self.mean, self.mean_c) = neumaier(self.mean, self.mean_c, delta * (b / n));
        } else {
            // The means' difference overflowed: weighted instead.
            let (wa, wb) = (a / n, b / n);
            (self.mean, self.mean_c) = neumaier(self.mean * wa, self.mean_c * wa, other.mean * wb);
            self.mean_c += other.mean_c * wb;
        }
        (self.squares, self.squares_c) =
            neumaier(self.squares, self.squares_c + other.squares_c, other.squares);
        (self.squares, self.squares_c) = neumaier(self.squares, self.squares_c, delta * delta * (a * b / n));
        self.finite += other.finite;
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
    }
}
