//! Prometheus 2.42's own arithmetic over a window's values in time order
//! (`promql/functions.go`): Kahan-compensated sums, the running mean that keeps an
//! infinity, the compensated Welford update, and the sequential counter correction.

use std::collections::VecDeque;

use promql_math as math;
use sketch_plugin_sdk::{Span, Window};

use crate::counter::sampled;

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
            0 => math::avg(values),
            1 => math::sum(values),
            2 => self.values.len() as f64,
            3 => math::extreme(values, |a, b| a < b),
            4 => math::extreme(values, |a, b| a > b),
            5 => math::variance(values).sqrt(),
            6 => math::variance(values),
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
                return math::extrapolate(result, first, n, sampled(span), counter, function == 13);
            }
            _ => 1.0,
        })
    }
}
