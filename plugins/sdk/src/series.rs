//! Time windowing: raw samples in blocks plus a tree of block summaries.
//!
//! Sample `g` (counting from the first sample the sketch ever held) belongs to block
//! `g / BLOCK_SAMPLES`. Level 0 holds one summary per complete block; level `L` node `j`
//! summarizes blocks `[j·2^L, (j+1)·2^L)` and is built when its right child completes. A
//! range `[t0, t1]` is the samples `[i0, i1)`; its complete blocks decompose into at most
//! two nodes per level, and the rest (at most two partial blocks) is read raw. A query
//! therefore merges `O(log n)` summaries and at most `2·BLOCK_SAMPLES` raw values,
//! whatever the window length.
//!
//! Retention drops whole blocks once their newest sample is older than
//! `newest - retention`, and with them every node that starts in a dropped block.

use std::collections::VecDeque;

use crate::plugin::{Bound, Call, Error, Plugin, Summary, Window};

/// Samples per leaf block. Also the most raw samples a query reads at each edge.
pub const BLOCK_SAMPLES: u64 = 512;
const MAX_LEVELS: usize = 40;
/// Most evaluation times one `query-range` answers (Prometheus allows 11,000 points).
pub const MAX_RANGE_STEPS: i64 = 1_000_000;
const SNAPSHOT_MAGIC: &[u8; 8] = b"SPSKv001";

/// One series' sketch: retained samples and the summary tree.
#[derive(Debug)]
pub struct Series<P: Plugin> {
    plugin: P,
    retention_ms: i64,
    /// Global index of `timestamps[0]`; always a multiple of `BLOCK_SAMPLES`.
    base: u64,
    timestamps: VecDeque<i64>,
    values: VecDeque<f64>,
    levels: Vec<Level<P::Summary>>,
    /// Exact state reused across the steps of one `query_range`.
    scratch: Option<P::Window>,
}

#[derive(Debug)]
struct Level<S> {
    /// Global node index of `nodes[0]`.
    first: u64,
    nodes: VecDeque<S>,
}

impl<S> Level<S> {
    fn get(&self, node: u64) -> Option<&S> {
        let offset = usize::try_from(node.checked_sub(self.first)?).ok()?;
        self.nodes.get(offset)
    }
}

impl<P: Plugin> Series<P> {
    /// An empty sketch keeping `retention_ms` of history.
    pub fn new(plugin: P, retention_ms: i64) -> Result<Self, Error> {
        if retention_ms <= 0 {
            return Err(Error::InvalidConfig(format!(
                "retention-ms must be positive, got {retention_ms}"
            )));
        }
        Ok(Self {
            plugin,
            retention_ms,
            base: 0,
            timestamps: VecDeque::new(),
            values: VecDeque::new(),
            levels: (0..MAX_LEVELS)
                .map(|_| Level {
                    first: 0,
                    nodes: VecDeque::new(),
                })
                .collect(),
            scratch: None,
        })
    }

    /// The plugin parameters this sketch was configured with.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// Adds samples; all or nothing.
    pub fn insert(&mut self, timestamps: &[i64], values: &[f64]) -> Result<(), Error> {
        if timestamps.len() != values.len() {
            return Err(Error::InvalidArgument(format!(
                "{} timestamps but {} values",
                timestamps.len(),
                values.len()
            )));
        }
        let mut last = self.timestamps.back().copied();
        for &t in timestamps {
            if last.is_some_and(|l| t <= l) {
                return Err(Error::OutOfOrder(t));
            }
            last = Some(t);
        }
        for (&t, &v) in timestamps.iter().zip(values) {
            self.timestamps.push_back(t);
            self.values.push_back(v);
            if self.end().is_multiple_of(BLOCK_SAMPLES) {
                self.close_block(self.end() / BLOCK_SAMPLES - 1);
            }
        }
        self.expire();
        Ok(())
    }

    /// Oldest and newest retained timestamps.
    pub fn coverage(&self) -> Option<(i64, i64)> {
        let cutoff = self.cutoff();
        let oldest = self.timestamps.iter().find(|&&t| t >= cutoff)?;
        Some((*oldest, *self.timestamps.back()?))
    }

    /// The oldest timestamp retention still covers. Older samples may linger until their
    /// whole block expires, but no answer uses them.
    fn cutoff(&self) -> i64 {
        self.timestamps
            .back()
            .map_or(i64::MIN, |&newest| newest.saturating_sub(self.retention_ms))
    }

    /// Bytes held by samples, summaries and scratch state.
    pub fn memory_bytes(&self) -> usize {
        let samples = (self.timestamps.capacity() + self.values.capacity()) * 8;
        let nodes: usize = self
            .levels
            .iter()
            .map(|l| {
                l.nodes.iter().map(Summary::memory_bytes).sum::<usize>()
                    + (l.nodes.capacity() - l.nodes.len()) * size_of::<P::Summary>()
            })
            .sum();
        size_of::<Self>() + samples + nodes
    }

    /// The answer over the samples with timestamps in `[t0, t1]`, or `None` when there are
    /// none. Returns `(value, bound, samples)`.
    pub fn query(&mut self, call: Call<'_>, bound: Bound, t0: i64, t1: i64) -> Option<(f64, f64, u64)> {
        let (i0, i1) = self.range(t0, t1);
        self.scratch = None;
        self.answer(call, bound, i0, i1)
    }

    /// One answer per time `start, start+step, ..., ≤ end`, each over `[t - window, t]`.
    pub fn query_range(
        &mut self,
        call: Call<'_>,
        bound: Bound,
        (start, end, step, window): (i64, i64, i64, i64),
    ) -> Vec<Option<(f64, f64, u64)>> {
        let steps = end
            .checked_sub(start)
            .and_then(|span| span.checked_div(step))
            .map_or(0, |n| {
                usize::try_from(n.saturating_add(1).min(MAX_RANGE_STEPS)).unwrap_or(0)
            });
        let mut out = Vec::with_capacity(steps);
        self.scratch = None;
        let mut held = (0, 0);
        let mut t = start;
        while t <= end {
            let (i0, i1) = self.range(t.saturating_sub(window), t);
            let from_summary = if i1 - i0 >= bound.min_samples {
                self.summarize(call, bound, i0, i1)
            } else {
                None
            };
            if i1 == i0 {
                out.push(None);
            } else if let Some(answer) = from_summary {
                self.scratch = None;
                out.push(Some(answer));
            } else {
                // Small windows, and windows the summary declines, slide one exact window
                // across the steps: each sample enters and leaves once.
                out.push(Some(self.slide(call, &mut held, i0, i1)));
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        self.scratch = None;
        out
    }

    /// Serializes the retained samples; the tree is rebuilt on restore, so answers match.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.timestamps.len() * 16);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&(self.timestamps.len() as u64).to_le_bytes());
        for (t, v) in self.timestamps.iter().zip(&self.values) {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        out
    }

    /// Rebuilds a sketch from [`Series::snapshot`] bytes.
    pub fn restore(plugin: P, retention_ms: i64, bytes: &[u8]) -> Result<Self, Error> {
        let mut series = Self::new(plugin, retention_ms)?;
        let bad = |why: &str| Error::BadSnapshot(why.to_owned());
        let rest = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or_else(|| bad("not a sketch-plugin-sdk v1 snapshot"))?;
        let word = |i: usize| -> Result<u64, Error> {
            let chunk = rest.get(i * 8..i * 8 + 8).ok_or_else(|| bad("truncated"))?;
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            Ok(u64::from_le_bytes(b))
        };
        let base = word(0)?;
        let count = usize::try_from(word(1)?).map_err(|_| bad("sample count too large"))?;
        if !base.is_multiple_of(BLOCK_SAMPLES) || base > u64::MAX / 4 {
            return Err(bad("first sample index is not a plausible block boundary"));
        }
        if count.checked_mul(16).and_then(|b| b.checked_add(16)) != Some(rest.len()) {
            return Err(bad("length does not match the sample count"));
        }
        let mut timestamps = Vec::with_capacity(count);
        let mut values = Vec::with_capacity(count);
        for i in 0..count {
            timestamps.push(word(2 + 2 * i)? as i64);
            values.push(f64::from_bits(word(3 + 2 * i)?));
        }
        series.base = base;
        series
            .insert(&timestamps, &values)
            .map_err(|e| bad(&format!("the samples do not replay: {e:?}")))?;
        Ok(series)
    }

    // === internals ===

    fn end(&self) -> u64 {
        self.base + self.timestamps.len() as u64
    }

    /// Global sample indices `[i0, i1)` with timestamps in `[t0, t1]`.
    fn range(&self, t0: i64, t1: i64) -> (u64, u64) {
        let t0 = t0.max(self.cutoff());
        let i0 = self.timestamps.partition_point(|&t| t < t0) as u64;
        let i1 = self.timestamps.partition_point(|&t| t <= t1) as u64;
        (self.base + i0, self.base + i1.max(i0))
    }

    fn raw(&self, from: u64, to: u64) -> impl Iterator<Item = f64> + '_ {
        let lo = (from - self.base) as usize;
        let hi = (to - self.base) as usize;
        self.values.range(lo..hi).copied()
    }

    fn answer(&mut self, call: Call<'_>, bound: Bound, i0: u64, i1: u64) -> Option<(f64, f64, u64)> {
        let n = i1.checked_sub(i0).filter(|&n| n > 0)?;
        if n >= bound.min_samples
            && let Some(answer) = self.summarize(call, bound, i0, i1)
        {
            return Some(answer);
        }
        Some((self.exact(call, i0, i1), 0.0, n))
    }

    /// The answer from merged summaries, or `None` when the plugin's estimate declines.
    fn summarize(&self, call: Call<'_>, bound: Bound, i0: u64, i1: u64) -> Option<(f64, f64, u64)> {
        let n = i1 - i0;
        let mut summary = self.plugin.summary();
        let first_block = i0.div_ceil(BLOCK_SAMPLES);
        let end_block = i1 / BLOCK_SAMPLES;
        if first_block < end_block {
            self.merge_blocks(&mut summary, first_block, end_block);
            add_all(&mut summary, self.raw(i0, first_block * BLOCK_SAMPLES));
            add_all(&mut summary, self.raw(end_block * BLOCK_SAMPLES, i1));
        } else {
            add_all(&mut summary, self.raw(i0, i1));
        }
        let value = self.plugin.estimate(call, &summary, n)?;
        Some((value, bound.relative, n))
    }

    fn exact(&self, call: Call<'_>, i0: u64, i1: u64) -> f64 {
        let mut window = self.plugin.window();
        let values: Vec<f64> = self.raw(i0, i1).collect();
        window.fill(&values);
        self.plugin.exact(call, &window, i1 - i0)
    }

    /// Merges the canonical tree cover of blocks `[lo, hi)` into `into`.
    fn merge_blocks(&self, into: &mut P::Summary, mut lo: u64, mut hi: u64) {
        let mut level = 0;
        while lo < hi {
            if level + 1 == self.levels.len() {
                for node in lo..hi {
                    self.merge_node(into, level, node);
                }
                return;
            }
            if lo & 1 == 1 {
                self.merge_node(into, level, lo);
                lo += 1;
            }
            if hi & 1 == 1 {
                hi -= 1;
                self.merge_node(into, level, hi);
            }
            lo >>= 1;
            hi >>= 1;
            level += 1;
        }
    }

    fn merge_node(&self, into: &mut P::Summary, level: usize, node: u64) {
        match self.levels.get(level).and_then(|l| l.get(node)) {
            Some(summary) => into.merge(summary),
            // A node exists for every complete block range inside the retained span; if it
            // is missing anyway, read its samples raw rather than answer wrongly.
            None => {
                let span = BLOCK_SAMPLES << level;
                let from = (node * span).max(self.base);
                let to = ((node + 1) * span).min(self.end());
                add_all(into, self.raw(from, to));
            }
        }
    }

    /// Moves the exact scratch window to `[i0, i1)` and answers from it.
    fn slide(&mut self, call: Call<'_>, held: &mut (u64, u64), i0: u64, i1: u64) -> (f64, f64, u64) {
        let mut window = self.scratch.take().unwrap_or_else(|| {
            *held = (i0, i0);
            self.plugin.window()
        });
        if i0 < held.0 || i0 > held.1 {
            window.clear();
            *held = (i0, i0);
        }
        {
            let mut leaving = self.raw(held.0, i0);
            let mut entering = self.raw(held.1.max(i0), i1);
            loop {
                match (leaving.next(), entering.next()) {
                    (Some(old), Some(new)) => window.replace(old, new),
                    (Some(old), None) => window.pop(old),
                    (None, Some(new)) => window.push(new),
                    (None, None) => break,
                }
            }
        }
        *held = (i0, i1);
        let n = i1 - i0;
        let answer = (self.plugin.exact(call, &window, n), 0.0, n);
        self.scratch = Some(window);
        answer
    }

    fn close_block(&mut self, block: u64) {
        let mut summary = self.plugin.summary();
        add_all(
            &mut summary,
            self.raw(block * BLOCK_SAMPLES, (block + 1) * BLOCK_SAMPLES),
        );
        let mut node = block;
        for level in 0..MAX_LEVELS {
            let parent = if node & 1 == 1 {
                self.levels[level].get(node - 1).map(|left| left.merged(&summary))
            } else {
                None
            };
            let slot = &mut self.levels[level];
            if slot.first + slot.nodes.len() as u64 != node {
                // Expiry left a gap before this node; the level restarts here.
                slot.nodes.clear();
                slot.first = node;
            }
            summary.shrink();
            slot.nodes.push_back(summary);
            match parent {
                Some(p) => {
                    summary = p;
                    node /= 2;
                }
                None => break,
            }
        }
    }

    fn expire(&mut self) {
        let Some(&newest) = self.timestamps.back() else {
            return;
        };
        let cutoff = newest.saturating_sub(self.retention_ms);
        let block = BLOCK_SAMPLES as usize;
        while self.timestamps.len() > block && self.timestamps[block - 1] < cutoff {
            self.timestamps.drain(..block);
            self.values.drain(..block);
            self.base += BLOCK_SAMPLES;
            let first_block = self.base / BLOCK_SAMPLES;
            for (level, slot) in self.levels.iter_mut().enumerate() {
                while slot.first << level < first_block && !slot.nodes.is_empty() {
                    slot.nodes.pop_front();
                    slot.first += 1;
                }
            }
        }
    }
}

/// Adds a run of raw values in one call, so summaries can batch (sort once, merge once).
fn add_all<S: Summary>(summary: &mut S, values: impl Iterator<Item = f64>) {
    let values: Vec<f64> = values.collect();
    summary.extend(&values);
}
