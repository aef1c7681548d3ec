//! The retained raw samples: whole blocks compressed with pco, the newest (open) block
//! plain.
//!
//! A block of [`BLOCK_SAMPLES`] lognormal latencies compresses to about 7.2 B per sample
//! and one of small integer ids to about 1.3 B (16 B plain), and decompresses at about
//! 10 ns per sample, so queries decompress the blocks they read instead of keeping a
//! plain copy. Timestamps and values are separate pco streams: scrape timestamps are
//! nearly regular and take a fraction of a byte each.

use std::collections::{HashMap, VecDeque};

use crate::plugin::Error;
use crate::series::BLOCK_SAMPLES;

/// pco's compression level for blocks: level 1 compresses within 1% of the default (8)
/// on scrape data at about a third of the time per sample.
const COMPRESSION_LEVEL: usize = 1;

/// One closed block: its time span and the compressed streams.
#[derive(Debug)]
struct Block {
    last: i64,
    /// Length of the compressed timestamps, which come first in `bytes`.
    split: u32,
    bytes: Box<[u8]>,
}

/// A block's samples, decompressed.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) timestamps: Vec<i64>,
    pub(crate) values: Vec<f64>,
}

/// The samples of one sketch, indexed globally: sample `g` counts from the first sample
/// the sketch ever held.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    /// Global index of the oldest retained sample; a multiple of `BLOCK_SAMPLES`.
    base: u64,
    closed: VecDeque<Block>,
    open: Decoded,
    /// Blocks decompressed for the query under way; emptied when it ends.
    cache: HashMap<u64, Decoded>,
}

impl Samples {
    /// Starts the store at global index `base` (a block boundary).
    pub(crate) fn starting_at(base: u64) -> Self {
        Self {
            base,
            ..Self::default()
        }
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// One past the newest sample's global index.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.closed.len() as u64 * BLOCK_SAMPLES + self.open.timestamps.len() as u64
    }

    pub(crate) fn newest(&self) -> Option<i64> {
        self.open
            .timestamps
            .last()
            .copied()
            .or_else(|| self.closed.back().map(|b| b.last))
    }

    /// Appends one sample; when it completes a block, compresses the block and returns
    /// its values (for the block's summary).
    pub(crate) fn push(&mut self, t: i64, v: f64) -> Result<Option<Vec<f64>>, Error> {
        self.open.timestamps.push(t);
        self.open.values.push(v);
        if (self.open.timestamps.len() as u64) < BLOCK_SAMPLES {
            return Ok(None);
        }
        let open = std::mem::take(&mut self.open);
        self.closed.push_back(compress(&open)?);
        Ok(Some(open.values))
    }

    /// Drops the oldest block while its newest sample is older than `cutoff` and a
    /// newer block exists; returns how many were dropped.
    pub(crate) fn expire(&mut self, cutoff: i64) -> u64 {
        let mut dropped = 0;
        while self.closed.len() > 1 || (self.closed.len() == 1 && !self.open.timestamps.is_empty()) {
            match self.closed.front() {
                Some(block) if block.last < cutoff => {
                    self.closed.pop_front();
                    self.base += BLOCK_SAMPLES;
                    dropped += 1;
                }
                _ => break,
            }
        }
        dropped
    }

    /// Global index of the first sample with timestamp `≥ t` (`strict`: `> t`).
    pub(crate) fn position(&mut self, t: i64, strict: bool) -> u64 {
        let after = |x: i64| if strict { x > t } else { x >= t };
        // The first closed block holding a sample past `t`.
        let block = self.closed.partition_point(|b| !after(b.last));
        if block < self.closed.len() {
            let global = self.block_index(block);
            let decoded = self.decoded(global);
            let within = decoded.timestamps.partition_point(|&x| !after(x));
            return global * BLOCK_SAMPLES + within as u64;
        }
        let within = self.open.timestamps.partition_point(|&x| !after(x));
        self.base + self.closed.len() as u64 * BLOCK_SAMPLES + within as u64
    }

    /// The timestamps around global index `i`: of sample `i - 1` (`i64::MIN` when it is
    /// not retained) and of sample `i`. Every `t` in `(before, at]` has
    /// `position(t, false) == i`. `None` past the newest sample.
    pub(crate) fn bracket(&mut self, i: u64) -> Option<(i64, i64)> {
        let at = self.timestamp_at(i)?;
        let before = if i == self.base {
            i64::MIN
        } else if i.is_multiple_of(BLOCK_SAMPLES) {
            // The previous block's last sample, without decompressing it.
            let previous = self.position_of(i / BLOCK_SAMPLES - 1);
            self.closed.get(previous).map_or(i64::MIN, |b| b.last)
        } else {
            self.timestamp_at(i - 1)?
        };
        Some((before, at))
    }

    /// The timestamp of the first sample at or after global index `i`, if any.
    pub(crate) fn timestamp_at(&mut self, i: u64) -> Option<i64> {
        if i >= self.end() {
            return None;
        }
        let block = i / BLOCK_SAMPLES;
        let offset = (i % BLOCK_SAMPLES) as usize;
        if block < self.open_block() {
            self.decoded(block).timestamps.get(offset).copied()
        } else {
            self.open.timestamps.get(offset).copied()
        }
    }

    /// Calls `f` with the values of global indices `[from, to)`, in runs.
    pub(crate) fn values(&mut self, from: u64, to: u64, mut f: impl FnMut(&[f64])) {
        let mut i = from.max(self.base);
        let to = to.min(self.end());
        while i < to {
            let block = i / BLOCK_SAMPLES;
            let lo = (i % BLOCK_SAMPLES) as usize;
            let hi = ((to - block * BLOCK_SAMPLES).min(BLOCK_SAMPLES)) as usize;
            if block < self.open_block() {
                f(&self.decoded(block).values[lo..hi]);
            } else {
                f(&self.open.values[lo..hi]);
            }
            i = block * BLOCK_SAMPLES + hi as u64;
        }
    }

    /// The values of `[from, to)` in one vector.
    pub(crate) fn collect(&mut self, from: u64, to: u64) -> Vec<f64> {
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
        self.values(from, to, |run| out.extend_from_slice(run));
        out
    }

    /// Forgets the blocks decompressed for the last query.
    pub(crate) fn end_query(&mut self) {
        self.cache = HashMap::new();
    }

    /// The oldest retained timestamp not older than `cutoff`.
    pub(crate) fn oldest_from(&mut self, cutoff: i64) -> Option<i64> {
        let i = self.position(cutoff, false);
        self.timestamp_at(i)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        let closed: usize = self
            .closed
            .iter()
            .map(|b| size_of::<Block>() + b.bytes.len())
            .sum();
        let spare = (self.closed.capacity() - self.closed.len()) * size_of::<Block>();
        let open = (self.open.timestamps.capacity() + self.open.values.capacity()) * 8;
        closed + spare + open
    }

    /// Appends the store to `out`: compressed blocks as they are, the open block plain.
    pub(crate) fn snapshot_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&(self.closed.len() as u64).to_le_bytes());
        for block in &self.closed {
            out.extend_from_slice(&block.split.to_le_bytes());
            out.extend_from_slice(&(block.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&block.bytes);
        }
        out.extend_from_slice(&(self.open.timestamps.len() as u64).to_le_bytes());
        for (t, v) in self.open.timestamps.iter().zip(&self.open.values) {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }

    /// Reads what [`Samples::snapshot_into`] wrote, calling `closed` with the values of
    /// each closed block in order (to rebuild summaries). Checks that every block holds
    /// [`BLOCK_SAMPLES`] samples and that timestamps strictly increase throughout.
    pub(crate) fn restore(bytes: &[u8], mut closed: impl FnMut(u64, u64, &[f64])) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadSnapshot(why.to_owned());
        let mut reader = Reader(bytes);
        let base = reader.u64()?;
        if !base.is_multiple_of(BLOCK_SAMPLES) || base > u64::MAX / 4 {
            return Err(bad("first sample index is not a plausible block boundary"));
        }
        let mut samples = Self::starting_at(base);
        let blocks = reader.u64()?;
        let mut newest = i64::MIN;
        let check = |newest: &mut i64, timestamps: &[i64]| -> Result<(), Error> {
            for &t in timestamps {
                if t <= *newest {
                    return Err(bad("timestamps do not increase"));
                }
                *newest = t;
            }
            Ok(())
        };
        for i in 0..blocks {
            let split = reader.u32()?;
            let len = reader.u32()? as usize;
            let block = Block {
                last: i64::MIN,
                split,
                bytes: reader.take(len)?.into(),
            };
            if split as usize > len {
                return Err(bad("block streams overlap"));
            }
            let decoded = decompress(&block).map_err(|e| bad(&format!("block {i}: {e}")))?;
            if decoded.timestamps.len() as u64 != BLOCK_SAMPLES
                || decoded.values.len() as u64 != BLOCK_SAMPLES
            {
                return Err(bad("a closed block does not hold a whole block of samples"));
            }
            check(&mut newest, &decoded.timestamps)?;
            closed(base, base / BLOCK_SAMPLES + i, &decoded.values);
            samples.closed.push_back(Block {
                last: newest,
                ..block
            });
        }
        let open = reader.u64()?;
        if open >= BLOCK_SAMPLES {
            return Err(bad("the open block is too long"));
        }
        for _ in 0..open {
            samples.open.timestamps.push(reader.u64()? as i64);
            samples.open.values.push(f64::from_bits(reader.u64()?));
        }
        check(&mut newest, &samples.open.timestamps)?;
        if !reader.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(samples)
    }

    fn open_block(&self) -> u64 {
        self.base / BLOCK_SAMPLES + self.closed.len() as u64
    }

    fn block_index(&self, position: usize) -> u64 {
        self.base / BLOCK_SAMPLES + position as u64
    }

    fn position_of(&self, block: u64) -> usize {
        (block - self.base / BLOCK_SAMPLES) as usize
    }

    fn decoded(&mut self, block: u64) -> &Decoded {
        let position = self.position_of(block);
        let closed = &self.closed;
        self.cache
            .entry(block)
            // The bytes were made by `compress` in this process; a failure would be a
            // pco bug, and an empty block then answers as missing samples.
            .or_insert_with(|| decompress(&closed[position]).unwrap_or_default())
    }
}

fn compress(block: &Decoded) -> Result<Block, Error> {
    // Told what to expect, pco skips most of its search (about 6× faster per sample):
    // timestamps are nearly regular, so their deltas are binned plainly; values are
    // not deltas of each other (latencies, ids), but may be integers or decimals,
    // which pco's mode detection still finds.
    let timestamps_config = pco::ChunkConfig::default()
        .with_compression_level(COMPRESSION_LEVEL)
        .with_mode_spec(pco::ModeSpec::Classic)
        .with_delta_spec(pco::DeltaSpec::TryConsecutive(1));
    let values_config = pco::ChunkConfig::default()
        .with_compression_level(COMPRESSION_LEVEL)
        .with_delta_spec(pco::DeltaSpec::NoOp);
    let failed = |e: pco::errors::PcoError| Error::Other(format!("cannot compress a block: {e}"));
    let timestamps =
        pco::standalone::simple_compress(&block.timestamps, &timestamps_config).map_err(failed)?;
    let values = pco::standalone::simple_compress(&block.values, &values_config).map_err(failed)?;
    let mut bytes = timestamps;
    let split = u32::try_from(bytes.len()).map_err(|_| Error::Other("compressed block too large".into()))?;
    bytes.extend_from_slice(&values);
    Ok(Block {
        last: block.timestamps.last().copied().unwrap_or(i64::MIN),
        split,
        bytes: bytes.into_boxed_slice(),
    })
}

fn decompress(block: &Block) -> Result<Decoded, pco::errors::PcoError> {
    let (timestamps, values) = block.bytes.split_at(block.split as usize);
    Ok(Decoded {
        timestamps: pco::standalone::simple_decompress(timestamps)?,
        values: pco::standalone::simple_decompress(values)?,
    })
}

/// Little-endian fields of a snapshot.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::BadSnapshot("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
}
