//! What an instant window at a moving now reuses from the query before: the summary of
//! its samples up to its right edge block. It changes only when the window's start
//! passes a sample (once a scrape interval: the samples passed are taken out, when the
//! summary can) or when a block closes (once every `BLOCK_SAMPLES` scrapes: it is
//! merged again from the tree). Merging it is one pass over its counts instead of one
//! over each tree node's and a left edge block's raw samples.
//!
//! A window's two partial edge blocks: read raw, each costs up to a block of samples
//! (decompressed, then added one by one). A window ending at the newest sample takes
//! the open block's summary instead, kept between queries and brought up to date with
//! the samples since. When the summary can take values out, any edge is its block's
//! whole summary less the samples outside the window, whichever touches fewer samples.

use super::{BLOCK_SAMPLES, Series, merge_blocks};
use crate::plugin::{Plugin, Summary};

/// The summary of the open block's first `covered` samples.
#[derive(Debug)]
pub(super) struct OpenSummary<S> {
    pub(super) block: u64,
    covered: u64,
    summary: S,
}

/// The summary of samples `[from, end_block · BLOCK_SAMPLES)`.
#[derive(Debug)]
pub(super) struct KeptStart<S> {
    from: u64,
    end_block: u64,
    summary: S,
}

impl<S: Summary> KeptStart<S> {
    pub(super) fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.summary.memory_bytes()
    }
}

impl<S: Summary> OpenSummary<S> {
    pub(super) fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.summary.memory_bytes()
    }
}

impl<P: Plugin> Series<P> {
    /// Merges the summary of samples `[i0, end_block · BLOCK_SAMPLES)` into `into`, from
    /// the one kept for the last instant window when it can. `false` as for
    /// [`Series::add_edge`].
    pub(super) fn merge_start(&mut self, into: &mut P::Summary, i0: u64, end_block: u64) -> bool {
        let Series {
            kept_start,
            samples,
            removable,
            ..
        } = self;
        if let Some(kept) = kept_start
            && kept.end_block == end_block
            && kept.from <= i0
            && (kept.from == i0 || (*removable && i0 - kept.from <= BLOCK_SAMPLES / 2))
        {
            let mut ok = true;
            samples.values(kept.from, i0, |run| ok &= kept.summary.remove(run));
            if ok {
                kept.from = i0;
                into.merge(&kept.summary);
                return true;
            }
            *removable = false;
        }
        self.kept_start = None;
        let mut summary = self.plugin.summary();
        if !self.merge_up_to(&mut summary, i0, end_block) {
            return false;
        }
        into.merge(&summary);
        self.kept_start = Some(KeptStart {
            from: i0,
            end_block,
            summary,
        });
        true
    }

    /// Merges the summary of samples `[i0, end_block · BLOCK_SAMPLES)` into `into`: the
    /// tree's nodes for the complete blocks, and the left edge. `false` as for
    /// [`Series::add_edge`].
    pub(super) fn merge_up_to(&mut self, into: &mut P::Summary, i0: u64, end_block: u64) -> bool {
        let first_block = i0.div_ceil(BLOCK_SAMPLES);
        let edge = self.add_edge(into, i0 / BLOCK_SAMPLES, i0, first_block * BLOCK_SAMPLES);
        merge_blocks(&self.tree, &mut self.samples, into, first_block, end_block);
        edge
    }

    /// Adds the values of `[lo, hi)`, all within block `block`, to `into`. `false` when
    /// a summary that said it could take values out did not: `into` is then wrong, and
    /// the SDK stops asking it.
    pub(super) fn add_edge(&mut self, into: &mut P::Summary, block: u64, lo: u64, hi: u64) -> bool {
        if lo >= hi {
            return true;
        }
        let start = block * BLOCK_SAMPLES;
        let end = (start + BLOCK_SAMPLES).min(self.samples.end());
        let outside = (end - start) - (hi - lo);
        if outside == 0 && self.merge_block(into, block) {
            return true;
        }
        if self.removable && outside < hi - lo && self.merge_block(into, block) {
            let mut ok = true;
            self.samples.values(start, lo, |run| ok &= into.remove(run));
            self.samples.values(hi, end, |run| ok &= into.remove(run));
            self.removable = ok;
            return ok;
        }
        self.samples.values(lo, hi, |run| into.extend(run));
        true
    }

    /// Merges the summary of all of block `block` into `into`: its kept tree node, or
    /// for the open block the summary kept between queries, brought up to date. `false`
    /// when there is none.
    fn merge_block(&mut self, into: &mut P::Summary, block: u64) -> bool {
        let open = self.samples.end() / BLOCK_SAMPLES;
        if block < open {
            return match self.tree.levels[0].get(block) {
                Some(summary) => {
                    into.merge(summary);
                    true
                }
                None => false,
            };
        }
        let end = self.samples.end();
        let mut kept = match self.open.take() {
            Some(kept) if kept.block == block => kept,
            _ => OpenSummary {
                block,
                covered: 0,
                summary: self.plugin.summary(),
            },
        };
        let from = block * BLOCK_SAMPLES + kept.covered;
        self.samples.values(from, end, |run| kept.summary.extend(run));
        kept.covered = end - block * BLOCK_SAMPLES;
        into.merge(&kept.summary);
        self.open = Some(kept);
        true
    }
}
