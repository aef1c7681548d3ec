//! The last hour of answered queries, for the status page's plots: per 15-second slot,
//! how many queries each path answered and how long they took, and how the results
//! cache answered; and each remote-write destination's send rate over the last slot.
//! Kept in memory only; a restart starts it empty.

use parking_lot::Mutex;
use serde::Serialize;

/// Seconds per slot.
pub const SLOT_SECONDS: i64 = 15;
/// Slots kept: an hour.
pub const SLOTS: usize = 240;

/// Which path answered a query, as the history counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Forwarded to downstream.
    Downstream,
    /// The proxy's engine over raw data.
    Engine,
    /// Sketches (alone or with the engine).
    Sketch,
}

/// How the results cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Every step kept.
    Hit,
    /// Some steps kept.
    Partial,
    /// None kept.
    Miss,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Its start, Unix seconds; slots of another time are stale.
    start: i64,
    /// Queries per path (downstream, engine, sketch) and their seconds.
    count: [u64; 3],
    seconds: [f64; 3],
    /// Cache hits, partial hits, misses.
    cache: [u64; 3],
}

/// The ring of slots.
#[derive(Debug)]
pub struct History {
    slots: Mutex<Vec<Slot>>,
    /// Per destination: when its sent samples were last counted, how many, and the
    /// rate since the count before (samples/s).
    sent: Mutex<std::collections::BTreeMap<String, SentCount>>,
}

/// When a destination's sent samples were counted (Unix seconds), how many, and the
/// rate since the count before.
type SentCount = (i64, u64, Option<f64>);

impl Default for History {
    fn default() -> Self {
        Self {
            slots: Mutex::new(vec![Slot::default(); SLOTS]),
            sent: Mutex::default(),
        }
    }
}

/// The history as the page plots it: one entry per slot, oldest first.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// Slot starts, Unix seconds.
    pub times: Vec<i64>,
    /// Queries answered per second, by path.
    pub downstream: Vec<f64>,
    /// The engine's.
    pub engine: Vec<f64>,
    /// The sketches'.
    pub sketch: Vec<f64>,
    /// Share of cacheable queries answered wholly from the cache (`null`: none asked).
    pub cache_hit_ratio: Vec<Option<f64>>,
    /// Mean seconds of an answer from sketches (`null`: none).
    pub sketch_seconds: Vec<Option<f64>>,
    /// Mean seconds of an exact answer (engine or downstream).
    pub exact_seconds: Vec<Option<f64>>,
}

impl History {
    /// Records a query answered at `now` (Unix seconds) by `path` in `seconds`, and how
    /// the cache answered it, if it was asked.
    pub fn record(&self, now: i64, path: Answered, seconds: f64, cache: Option<CacheOutcome>) {
        let mut slots = self.slots.lock();
        let slot = current(&mut slots, now);
        let i = path as usize;
        slot.count[i] += 1;
        slot.seconds[i] += seconds;
        if let Some(outcome) = cache {
            slot.cache[outcome as usize] += 1;
        }
    }

    /// Counts `total` samples sent to `destination` by `now` (Unix seconds; called
    /// every slot).
    pub fn count_sent(&self, destination: &str, now: i64, total: u64) {
        let mut sent = self.sent.lock();
        let rate = sent
            .get(destination)
            .filter(|(t, _, _)| now > *t)
            .map(|(t, before, _)| total.saturating_sub(*before) as f64 / (now - t) as f64);
        sent.insert(destination.to_owned(), (now, total, rate));
    }

    /// Samples per second sent to `destination` between its last two counts.
    pub fn send_rate(&self, destination: &str) -> Option<f64> {
        self.sent.lock().get(destination).and_then(|(_, _, rate)| *rate)
    }

    /// The hour up to `now` (Unix seconds).
    pub fn series(&self, now: i64) -> Series {
        let slots = self.slots.lock().clone();
        let newest = now - now.rem_euclid(SLOT_SECONDS);
        let mut out = Series {
            times: Vec::with_capacity(SLOTS),
            downstream: Vec::with_capacity(SLOTS),
            engine: Vec::with_capacity(SLOTS),
            sketch: Vec::with_capacity(SLOTS),
            cache_hit_ratio: Vec::with_capacity(SLOTS),
            sketch_seconds: Vec::with_capacity(SLOTS),
            exact_seconds: Vec::with_capacity(SLOTS),
        };
        for k in (0..SLOTS as i64).rev() {
            let start = newest - k * SLOT_SECONDS;
            let slot = slots[index(start)];
            let slot = if slot.start == start {
                slot
            } else {
                Slot::default()
            };
            let per_second = |n: u64| n as f64 / SLOT_SECONDS as f64;
            let mean = |n: u64, s: f64| (n > 0).then(|| s / n as f64);
            out.times.push(start);
            out.downstream.push(per_second(slot.count[0]));
            out.engine.push(per_second(slot.count[1]));
            out.sketch.push(per_second(slot.count[2]));
            let asked: u64 = slot.cache.iter().sum();
            out.cache_hit_ratio
                .push((asked > 0).then(|| slot.cache[0] as f64 / asked as f64));
            out.sketch_seconds.push(mean(slot.count[2], slot.seconds[2]));
            out.exact_seconds.push(mean(
                slot.count[0] + slot.count[1],
                slot.seconds[0] + slot.seconds[1],
            ));
        }
        out
    }
}

fn index(start: i64) -> usize {
    (start / SLOT_SECONDS).rem_euclid(SLOTS as i64) as usize
}

/// The slot of `now`, emptied first if it held an older time.
fn current(slots: &mut [Slot], now: i64) -> &mut Slot {
    let start = now - now.rem_euclid(SLOT_SECONDS);
    let slot = &mut slots[index(start)];
    if slot.start != start {
        *slot = Slot {
            start,
            ..Slot::default()
        };
    }
    slot
}

#[cfg(test)]
mod tests;
