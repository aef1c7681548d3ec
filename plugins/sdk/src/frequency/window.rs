//! The exact sliding window of value frequencies.

use std::collections::HashMap;

use nohash_hasher::BuildNoHashHasher;

use super::{Moments, f_log_f, key};
use crate::plugin::Window;

/// Exact window: a count per key plus running moments, updated in O(1) per sample.
#[derive(Debug, Default, Clone)]
pub struct FrequencyWindow {
    counts: HashMap<u64, u32, BuildNoHashHasher<u64>>,
    sum_squares: u64,
    sum_f_log_f: f64,
}

impl FrequencyWindow {
    /// The exact moments of the window.
    pub fn moments(&self) -> Moments {
        Moments {
            distinct: self.counts.len() as f64,
            sum_squares: self.sum_squares as f64,
            sum_f_log_f: self.sum_f_log_f.max(0.0),
        }
    }
}

impl Window for FrequencyWindow {
    fn push(&mut self, value: f64) {
        let count = self.counts.entry(key(value)).or_insert(0);
        self.sum_squares += 2 * u64::from(*count) + 1;
        self.sum_f_log_f += f_log_f(*count + 1) - f_log_f(*count);
        *count += 1;
    }

    fn pop(&mut self, value: f64) {
        let k = key(value);
        let Some(count) = self.counts.get_mut(&k) else {
            return;
        };
        self.sum_squares -= 2 * u64::from(*count) - 1;
        self.sum_f_log_f -= f_log_f(*count) - f_log_f(*count - 1);
        *count -= 1;
        if *count == 0 {
            self.counts.remove(&k);
        }
        if self.counts.is_empty() {
            // Drop the rounding residue the running sum collected.
            self.sum_f_log_f = 0.0;
        }
    }

    fn replace(&mut self, old: f64, new: f64) {
        // Discrete series often repeat a value; then the window does not change.
        if key(old) != key(new) {
            self.pop(old);
            self.push(new);
        }
    }

    fn clear(&mut self) {
        self.counts.clear();
        self.sum_squares = 0;
        self.sum_f_log_f = 0.0;
    }
}
