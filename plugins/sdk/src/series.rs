//! Time windowing: compressed raw samples in blocks plus a tree of block summaries.
//!
//! Sample `g` (counting from the first sample the sketch ever held) belongs to block
//! `g / BLOCK_SAMPLES`. Level `L` node `j` summarizes blocks `[j·2^L, (j+1)·2^L)` and is
//! built when its right child completes. A range `[t0, t1]` is the samples `[i0, i1)`;
//! its complete blocks decompose into at most two nodes per level, and the rest (at most
//! two partial blocks) is read raw. A query therefore merges `O(log n)` summaries and at
//! most `2·BLOCK_SAMPLES` raw values, whatever the window length.
//!
//! Layout of a sketch in memory (see `samples` for the raw part):
//! - every retained sample once, in pco-compressed blocks of [`BLOCK_SAMPLES`] (the
//!   newest block plain);
//! - a node's summary is *kept* only when it takes at most
//!   [`NODE_BYTES_PER_SAMPLE`] per sample it covers. Others are recomputed from their
//!   children, down to the raw samples, when a query needs them. A histogram of a few
//!   hundred buckets is kept from a few thousand samples up; a frequency summary of
//!   values that never repeat is never kept, since it is as large as the samples;
//! - while a left child that is not kept waits for its sibling it is carried (at most
//!   one per level), so its parent is built, unless the child is so large that the
//!   parent cannot be kept either.
//!
//! Retention drops whole blocks once their newest sample is older than
//! `newest - retention`, and with them every node that starts in a dropped block.

mod edges;

use std::collections::VecDeque;

use edges::{KeptStart, OpenSummary};

use crate::plugin::{Bound, Call, Error, Plugin, Span, Summary, Window};
use crate::samples::Samples;

/// Samples per leaf block. Also the most raw samples a query reads at each edge.
pub const BLOCK_SAMPLES: u64 = 512;
/// A node's summary is kept when it takes at most this many bytes per sample it
/// covers; one raw sample takes 16 B plain and 1-8 B compressed.
pub const NODE_BYTES_PER_SAMPLE: f64 = 1.5;
const MAX_LEVELS: usize = 40;
/// Levels whose nodes are built (and carried) whatever their size.
const ALWAYS_CARRIED: usize = 2;
/// Most evaluation times one `query-range` answers (Prometheus allows 11,000 points).
pub const MAX_RANGE_STEPS: i64 = 1_000_000;
const SNAPSHOT_MAGIC: &[u8; 8] = b"SPSKv002";

/// One series' sketch: retained samples and the summary tree.
#[derive(Debug)]
pub struct Series<P: Plugin> {
    plugin: P,
    retention_ms: i64,
    samples: Samples,
    tree: Tree<P::Summary>,
    /// Exact state reused across the steps of one `query_range`.
    scratch: Option<P::Window>,
    /// Values leaving and entering the slide at one step, reused across steps (a
    /// 1,441-step panel would otherwise allocate two vectors per step).
    leaving: Vec<f64>,
    entering: Vec<f64>,
    /// Whether the plugin's summary can take values out ([`Summary::remove`]).
    removable: bool,
    /// The open block's summary, kept between queries (see `edges`).
    open: Option<OpenSummary<P::Summary>>,
    /// The last instant window's summary up to its right edge block (see `edges`).
    kept_start: Option<KeptStart<P::Summary>>,
    /// Where the last window started: `(before, at, i)`, the timestamps of samples
    /// `i - 1` and `i` (see [`Samples::bracket`]).
    start_hint: Option<(i64, i64, u64)>,
}

/// The block summaries: kept nodes per level, and the left children waiting.
#[derive(Debug)]
struct Tree<S> {
    levels: Vec<Level<S>>,
    /// Per level, the newest left child not kept, until its sibling completes.
    carry: Vec<Option<(u64, S)>>,
}

#[derive(Debug)]
struct Level<S> {
    /// Global node index of `nodes[0]`.
    first: u64,
    /// `None` where the node was not kept.
    nodes: VecDeque<Option<S>>,
}

impl<S> Level<S> {
    fn get(&self, node: u64) -> Option<&S> {
        let offset = usize::try_from(node.checked_sub(self.first)?).ok()?;
        self.nodes.get(offset)?.as_ref()
    }
}

impl<S: Summary> Tree<S> {
    fn new() -> Self {
        Self {
            levels: (0..MAX_LEVELS)
                .map(|_| Level {
                    first: 0,
                    nodes: VecDeque::new(),
                })
                .collect(),
            carry: (0..MAX_LEVELS).map(|_| None).collect(),
        }
    }

    /// Adds the summary of complete block `block` (of `values`) and every node it
    /// completes. `first_block` is the oldest retained block.
    fn close_block(&mut self, mut summary: S, block: u64, first_block: u64) {
        let mut node = block;
        for level in 0..MAX_LEVELS {
            let parent = if node & 1 == 1 && (node - 1) << level >= first_block {
                let carried = match &self.carry[level] {
                    Some((n, _)) if *n == node - 1 => self.carry[level].take().map(|(_, s)| s),
                    _ => None,
                };
                match carried {
                    Some(left) => Some(left.merged(&summary)),
                    None => self.levels[level].get(node - 1).map(|left| left.merged(&summary)),
                }
            } else {
                None
            };
            summary.shrink();
            let keep =
                summary.memory_bytes() as f64 <= (BLOCK_SAMPLES << level) as f64 * NODE_BYTES_PER_SAMPLE;
            let slot = &mut self.levels[level];
            if slot.first + slot.nodes.len() as u64 != node {
                // Expiry left a gap before this node; the level restarts here.
                slot.nodes.clear();
                slot.first = node;
            }
            if keep {
                slot.nodes.push_back(Some(summary));
            } else {
                slot.nodes.push_back(None);
                // A parent is at least as large as its larger child (capped summaries
                // aside), so a child over twice the budget has a parent over it too:
                // neither it nor any node above it is built. The lowest levels are
                // always carried: a small summary (a histogram of a few hundred
                // buckets) takes more per sample than the larger ones above it.
                let parent_may_fit = level < ALWAYS_CARRIED
                    || summary.memory_bytes() as f64
                        <= (BLOCK_SAMPLES << (level + 1)) as f64 * NODE_BYTES_PER_SAMPLE;
                if node & 1 == 0 && parent_may_fit {
                    self.carry[level] = Some((node, summary));
                }
            }
            match parent {
                Some(p) => {
                    summary = p;
                    node /= 2;
                }
                None => break,
            }
        }
    }

    /// Forgets nodes that start before `first_block`.
    fn expire(&mut self, first_block: u64) {
        for (level, slot) in self.levels.iter_mut().enumerate() {
            while slot.first << level < first_block && !slot.nodes.is_empty() {
                slot.nodes.pop_front();
                slot.first += 1;
            }
            if slot.nodes.is_empty() {
                slot.nodes = VecDeque::new();
            }
        }
        for (level, carry) in self.carry.iter_mut().enumerate() {
            if carry
                .as_ref()
                .is_some_and(|(node, _)| node << level < first_block)
            {
                *carry = None;
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        let kept: usize = self
            .levels
            .iter()
            .map(|l| {
                l.nodes.iter().flatten().map(Summary::memory_bytes).sum::<usize>()
                    + l.nodes.capacity() * size_of::<Option<S>>()
            })
            .sum();
        let carried: usize = self.carry.iter().flatten().map(|(_, s)| s.memory_bytes()).sum();
        size_of::<Self>() + kept + carried
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
        let removable = plugin.summary().remove(&[]);
        Ok(Self {
            plugin,
            retention_ms,
            samples: Samples::default(),
            tree: Tree::new(),
            scratch: None,
            leaving: Vec::new(),
            entering: Vec::new(),
            removable,
            open: None,
            kept_start: None,
            start_hint: None,
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
        let mut last = self.samples.newest();
        for &t in timestamps {
            if last.is_some_and(|l| t <= l) {
                return Err(Error::OutOfOrder(t));
            }
            last = Some(t);
        }
        for (&t, &v) in timestamps.iter().zip(values) {
            if let Some(block_values) = self.samples.push(t, v)? {
                let block = self.samples.end() / BLOCK_SAMPLES - 1;
                let mut summary = self.plugin.summary();
                summary.extend(&block_values);
                self.tree
                    .close_block(summary, block, self.samples.base() / BLOCK_SAMPLES);
            }
        }
        if self
            .open
            .as_ref()
            .is_some_and(|kept| kept.block < self.samples.end() / BLOCK_SAMPLES)
        {
            self.open = None;
        }
        self.expire();
        Ok(())
    }

    /// Oldest and newest retained timestamps.
    pub fn coverage(&mut self) -> Option<(i64, i64)> {
        let newest = self.samples.newest()?;
        let oldest = self.samples.oldest_from(self.cutoff());
        self.samples.end_query();
        Some((oldest?, newest))
    }

    /// The oldest timestamp retention still covers. Older samples may linger until their
    /// whole block expires, but no answer uses them.
    fn cutoff(&self) -> i64 {
        self.samples
            .newest()
            .map_or(i64::MIN, |newest| newest.saturating_sub(self.retention_ms))
    }

    /// Bytes held by samples, summaries and scratch state.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.samples.memory_bytes()
            + self.tree.memory_bytes()
            + self.open.as_ref().map_or(0, OpenSummary::memory_bytes)
            + self.kept_start.as_ref().map_or(0, KeptStart::memory_bytes)
    }

    /// The answer over the samples with timestamps in `[t0, t1]`, or `None` when there are
    /// none. Returns `(value, bound, samples)`.
    pub fn query(&mut self, call: Call<'_>, bound: Bound, t0: i64, t1: i64) -> Option<(f64, f64, u64)> {
        let (i0, i1) = self.range(t0, t1);
        self.scratch = None;
        let call = self.spanned(call, (t0, t1), i0, i1);
        let answer = self.answer(call, bound, i0, i1);
        self.samples.end_query();
        answer
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
            let call = self.spanned(call, (t.saturating_sub(window), t), i0, i1);
            let from_summary = if i1 - i0 >= bound.min_samples {
                self.summarize(call, bound, i0, i1, steps == 1)
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
                out.push(self.slide(call, &mut held, i0, i1));
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        self.scratch = None;
        self.leaving = Vec::new();
        self.entering = Vec::new();
        self.samples.end_query();
        out
    }

    /// Serializes the retained samples as stored (compressed); the tree is rebuilt on
    /// restore, so answers match.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.samples.memory_bytes() + 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        self.samples.snapshot_into(&mut out);
        out
    }

    /// Rebuilds a sketch from [`Series::snapshot`] bytes.
    pub fn restore(plugin: P, retention_ms: i64, bytes: &[u8]) -> Result<Self, Error> {
        let mut series = Self::new(plugin, retention_ms)?;
        let rest = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or_else(|| Error::BadSnapshot("not a sketch-plugin-sdk v2 snapshot".into()))?;
        let (plugin, tree) = (&series.plugin, &mut series.tree);
        series.samples = Samples::restore(rest, |base, block, values| {
            let mut summary = plugin.summary();
            summary.extend(values);
            tree.close_block(summary, block, base / BLOCK_SAMPLES);
        })?;
        series.expire();
        Ok(series)
    }

    // === internals ===

    /// Global sample indices `[i0, i1)` with timestamps in `[t0, t1]`.
    fn range(&mut self, t0: i64, t1: i64) -> (u64, u64) {
        let t0 = t0.max(self.cutoff());
        // A window at a moving now starts between the same two samples for a scrape
        // interval: no block to decompress to find where.
        let i0 = match self.start_hint {
            Some((before, at, i)) if before < t0 && t0 <= at => i,
            _ => {
                let i = self.samples.position(t0, false);
                self.start_hint = self.samples.bracket(i).map(|(before, at)| (before, at, i));
                i
            }
        };
        let i1 = self.samples.position(t1, true);
        (i0, i1.max(i0))
    }

    /// `call` with its span: the range `[t0, t1]` asked, and where samples `[i0, i1)`
    /// lie when the plugin wants to know.
    fn spanned<'a>(&mut self, call: Call<'a>, (t0, t1): (i64, i64), i0: u64, i1: u64) -> Call<'a> {
        let mut span = Span {
            start_ms: t0,
            end_ms: t1,
            ..Span::default()
        };
        if P::SAMPLE_TIMES && i1 > i0 {
            // Known without decompressing a block in the usual cases: the window's start
            // was just found (`range` keeps it as the hint), and it ends at the newest
            // sample.
            span.first_ms = match self.start_hint {
                Some((_, at, i)) if i == i0 => at,
                _ => self.samples.timestamp_at(i0).unwrap_or_default(),
            };
            span.last_ms = if i1 == self.samples.end() {
                self.samples.newest().unwrap_or_default()
            } else {
                self.samples.timestamp_at(i1 - 1).unwrap_or_default()
            };
        }
        Call { span, ..call }
    }

    fn answer(&mut self, call: Call<'_>, bound: Bound, i0: u64, i1: u64) -> Option<(f64, f64, u64)> {
        let n = i1.checked_sub(i0).filter(|&n| n > 0)?;
        if n >= bound.min_samples
            && let Some(answer) = self.summarize(call, bound, i0, i1, true)
        {
            return Some(answer);
        }
        Some((self.exact(call, i0, i1)?, 0.0, n))
    }

    /// The answer from merged summaries, or `None` when the plugin's estimate declines
    /// or when most of the window has no kept summary: summing raw samples into a
    /// summary costs as much as the exact answer, which is better.
    /// `again`: the same window, or one starting a little later, may be asked again
    /// soon (an instant query at a moving now), so what it can reuse is kept (see
    /// `edges`).
    fn summarize(
        &mut self,
        call: Call<'_>,
        bound: Bound,
        i0: u64,
        i1: u64,
        again: bool,
    ) -> Option<(f64, f64, u64)> {
        let n = i1 - i0;
        let mut summary = self.plugin.summary();
        let first_block = i0.div_ceil(BLOCK_SAMPLES);
        let end_block = i1 / BLOCK_SAMPLES;
        let unkept = if first_block < end_block {
            unkept_blocks(&self.tree, first_block, end_block)
        } else {
            0
        };
        if unkept * BLOCK_SAMPLES > n / 2 {
            return None;
        }
        if first_block < end_block {
            let left = if again {
                self.merge_start(&mut summary, i0, end_block)
            } else {
                self.merge_up_to(&mut summary, i0, end_block)
            };
            let right = self.add_edge(&mut summary, end_block, end_block * BLOCK_SAMPLES, i1);
            if !(left && right) {
                return None;
            }
        } else {
            self.samples.values(i0, i1, |run| summary.extend(run));
        }
        let value = self.plugin.estimate(call, &summary, n)?;
        Some((value, bound.relative, n))
    }

    fn exact(&mut self, call: Call<'_>, i0: u64, i1: u64) -> Option<f64> {
        let mut window = self.plugin.window();
        window.fill(&self.samples.collect(i0, i1));
        self.plugin.exact(call, &window, i1 - i0)
    }

    /// Moves the exact scratch window to `[i0, i1)` and answers from it.
    fn slide(&mut self, call: Call<'_>, held: &mut (u64, u64), i0: u64, i1: u64) -> Option<(f64, f64, u64)> {
        let mut window = self.scratch.take().unwrap_or_else(|| {
            *held = (i0, i0);
            self.plugin.window()
        });
        if i0 < held.0 || i0 > held.1 {
            window.clear();
            *held = (i0, i0);
        }
        self.leaving.clear();
        self.entering.clear();
        let (leaving, entering) = (&mut self.leaving, &mut self.entering);
        self.samples
            .values(held.0, i0, |run| leaving.extend_from_slice(run));
        self.samples
            .values(held.1.max(i0), i1, |run| entering.extend_from_slice(run));
        let mut leaving = self.leaving.iter().copied();
        let mut entering = self.entering.iter().copied();
        loop {
            match (leaving.next(), entering.next()) {
                (Some(old), Some(new)) => window.replace(old, new),
                (Some(old), None) => window.pop(old),
                (None, Some(new)) => window.push(new),
                (None, None) => break,
            }
        }
        *held = (i0, i1);
        let n = i1 - i0;
        let answer = self.plugin.exact(call, &window, n).map(|value| (value, 0.0, n));
        self.scratch = Some(window);
        answer
    }

    fn expire(&mut self) {
        if self.samples.expire(self.cutoff()) > 0 {
            self.tree.expire(self.samples.base() / BLOCK_SAMPLES);
        }
    }
}

/// Merges the canonical tree cover of blocks `[lo, hi)` into `into`, in time order: the
/// nodes climbing from `lo`, then those descending to `hi` (found climbing, so merged
/// after, newest last).
fn merge_blocks<S: Summary>(tree: &Tree<S>, samples: &mut Samples, into: &mut S, mut lo: u64, mut hi: u64) {
    let mut right = [(0, 0); MAX_LEVELS];
    let mut found = 0;
    let mut level = 0;
    while lo < hi {
        if level + 1 == tree.levels.len() {
            for node in lo..hi {
                merge_node(tree, samples, into, level, node);
            }
            break;
        }
        if lo & 1 == 1 {
            merge_node(tree, samples, into, level, lo);
            lo += 1;
        }
        if hi & 1 == 1 {
            hi -= 1;
            right[found] = (level, hi);
            found += 1;
        }
        lo >>= 1;
        hi >>= 1;
        level += 1;
    }
    for &(level, node) in right[..found].iter().rev() {
        merge_node(tree, samples, into, level, node);
    }
}

/// Blocks of `[lo, hi)` whose samples no kept node covers.
fn unkept_blocks<S: Summary>(tree: &Tree<S>, mut lo: u64, mut hi: u64) -> u64 {
    fn node_unkept<S: Summary>(tree: &Tree<S>, level: usize, node: u64) -> u64 {
        if tree.levels.get(level).and_then(|l| l.get(node)).is_some() {
            0
        } else if level > 0 {
            node_unkept(tree, level - 1, 2 * node) + node_unkept(tree, level - 1, 2 * node + 1)
        } else {
            1
        }
    }
    let mut level = 0;
    let mut total = 0;
    while lo < hi {
        if level + 1 == tree.levels.len() {
            return total + (lo..hi).map(|node| node_unkept(tree, level, node)).sum::<u64>();
        }
        if lo & 1 == 1 {
            total += node_unkept(tree, level, lo);
            lo += 1;
        }
        if hi & 1 == 1 {
            hi -= 1;
            total += node_unkept(tree, level, hi);
        }
        lo >>= 1;
        hi >>= 1;
        level += 1;
    }
    total
}

/// Merges one node: its kept summary, else its children's, else its raw samples.
fn merge_node<S: Summary>(tree: &Tree<S>, samples: &mut Samples, into: &mut S, level: usize, node: u64) {
    if let Some(summary) = tree.levels.get(level).and_then(|l| l.get(node)) {
        into.merge(summary);
    } else if level > 0 {
        merge_node(tree, samples, into, level - 1, 2 * node);
        merge_node(tree, samples, into, level - 1, 2 * node + 1);
    } else {
        samples.values(node * BLOCK_SAMPLES, (node + 1) * BLOCK_SAMPLES, |run| {
            into.extend(run)
        });
    }
}
