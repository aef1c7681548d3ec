//! Prometheus 2.42's own arithmetic over a window's values in time order
//! (`promql/functions.go`): Kahan-compensated sums, the running mean that keeps an
//! infinity, the compensated Welford update, and the sequential counter correction.

use std::collections::VecDeque;

use sketch_plugin_sdk::{Span, Window};

use crate::counter::extrapolate;

/// The window's values, oldest first, and what happens between neighbours, kept as
/// the window slides so that a panel's step costs the samples it moves by, not the
/// window.
#[derive(Debug, Clone, Default)]
pub struct OrderedWindow {
    values: VecDeque<f64>,
    /// Neighbours that differ (two NaNs do not).
    changes: u64,
    /// The value before each drop, oldest first.
    before_resets: VecDeque<f64>,
}

/// Whether the step from `before` to `value` is a change.
fn changed(before: f64, value: f64) -> bool {
    value != before && !(value.is_nan() && before.is_nan())
}

impl Window for OrderedWindow {
    fn push(&mut self, value: f64) {
        if let Some(&before) = self.values.back() {
            self.changes += u64::from(changed(before, value));
            if value < before {
                self.before_resets.push_back(before);
            }
        }
        self.values.push_back(value);
    }

    fn pop(&mut self, _value: f64) {
        let Some(gone) = self.values.pop_front() else {
            return;
        };
        if let Some(&next) = self.values.front() {
            self.changes -= u64::from(changed(gone, next));
            if next < gone {
                // The oldest drop in the window is this one.
                self.before_resets.pop_front();
            }
        }
    }

    fn clear(&mut self) {
        self.values.clear();
        self.changes = 0;
        self.before_resets.clear();
    }
}

impl OrderedWindow {
    /// Function `function` (an index of [`crate::FUNCTIONS`]) over the values, whose
    /// range and first and last timestamps `span` gives; `None` where Prometheus has no
    /// value (`delta`, `increase` and `rate` of fewer than two samples).
    pub fn answer(&self, function: usize, span: Span) -> Option<f64> {
        let values = self.values.iter().copied();
        Some(match function {
            0 => avg(values),
            1 => kahan(values),
            2 => self.values.len() as f64,
            3 => extreme(values, |a, b| a < b),
            4 => extreme(values, |a, b| a > b),
            5 => variance(values).sqrt(),
            6 => variance(values),
            8 => *self.values.back()?,
            9 => self.changes as f64,
            10 => self.before_resets.len() as f64,
            11..=13 => {
                let counter = function != 11;
                let (first, last) = (*self.values.front()?, *self.values.back()?);
                let mut result = last - first;
                if counter {
                    // Prometheus' order: one reset after another, oldest first.
                    for &before in &self.before_resets {
                        result += before;
                    }
                }
                let n = self.values.len() as u64;
                return extrapolate(result, first, n, span, counter, function == 13);
            }
            _ => 1.0,
        })
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
