//! Prometheus 2.42's own arithmetic over a window's values in time order
//! (`promql/functions.go`): Kahan-compensated sums, the running mean that keeps an
//! infinity, and the compensated Welford update.

use std::collections::VecDeque;

use sketch_plugin_sdk::Window;

/// The window's values, oldest first.
#[derive(Debug, Clone, Default)]
pub struct OrderedWindow {
    values: VecDeque<f64>,
}

impl Window for OrderedWindow {
    fn push(&mut self, value: f64) {
        self.values.push_back(value);
    }

    fn pop(&mut self, _value: f64) {
        self.values.pop_front();
    }

    fn clear(&mut self) {
        self.values.clear();
    }
}

impl OrderedWindow {
    /// Function `function` (an index of [`crate::FUNCTIONS`]) over the values.
    pub fn answer(&self, function: usize) -> f64 {
        let values = self.values.iter().copied();
        match function {
            0 => avg(values),
            1 => kahan(values),
            2 => self.values.len() as f64,
            3 => extreme(values, |a, b| a < b),
            4 => extreme(values, |a, b| a > b),
            5 => variance(values).sqrt(),
            6 => variance(values),
            _ => 1.0,
        }
    }
}

/// Prometheus' `kahanSumInc`.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn kahan(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count, mut c) = (0.0_f64, 0.0, 0.0);
    for v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `better(a, b)` when `a` replaces `b`; a NaN is replaced by anything.
fn extreme(mut values: impl Iterator<Item = f64>, better: fn(f64, f64) -> bool) -> f64 {
    let mut best = values.next().unwrap_or(f64::NAN);
    for v in values {
        if better(v, best) || best.is_nan() {
            best = v;
        }
    }
    best
}

fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}
