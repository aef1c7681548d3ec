//! What an instant window at a moving now reuses from the query before. Its complete
//! blocks' merged summary is kept: it changes only when the window's start crosses a
//! block boundary or a block closes, once every `BLOCK_SAMPLES` scrapes, and merging it
//! is one pass over its counts instead of one over each tree node's.
//!
//! A window's two partial edge blocks: read raw, each costs up to a block of samples
//! (decompressed, then added one by one). When the summary can take values out, an edge
//! is instead its block's whole summary less the samples outside the window, whichever
//! touches fewer samples: a window ending at the newest sample takes the open block's
//! summary, kept between queries, and adds nothing raw.

use super::{BLOCK_SAMPLES, Series, merge_blocks};
use crate::plugin::{Plugin, Summary};

/// The summary of the open block's first `covered` samples.
#[derive(Debug)]
pub(super) struct OpenSummary<S> {
    pub(super) block: u64,
    covered: u64,
    summary: S,
}

impl<S: Summary> OpenSummary<S> {
    pub(super) fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.summary.memory_bytes()
    }
}

impl<P: Plugin> Series<P> {
    /// Merges the summary of blocks `[first, end)` into `into`, from the one kept when
    /// the last instant window had the same complete blocks.
    pub(super) fn merge_interior(&mut self, into: &mut P::Summary, first: u64, end: u64) {
        match &self.interior {
            Some((f, e, kept)) if (*f, *e) == (first, end) => into.merge(kept),
            _ => {
                let mut kept = self.plugin.summary();
                merge_blocks(&self.tree, &mut self.samples, &mut kept, first, end);
                into.merge(&kept);
                self.interior = Some((first, end, kept));
            }
        }
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
