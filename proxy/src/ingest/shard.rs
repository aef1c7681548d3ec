//! Which destinations get a series: rendezvous (highest-random-weight) hashing.
//!
//! Every destination scores every series with a hash of (destination name, series);
//! the series goes to the `replicas` highest scores. The choice depends only on the
//! labels and the set of names, so a series never splits across shards, and adding a
//! shard moves exactly the series that now score highest on it: about 1/(n+1) of them,
//! the fewest any scheme can move. Removing one moves only its own series.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The destinations by name, and how many each series goes to.
#[derive(Debug, Clone)]
pub struct Ring {
    seeds: Vec<u64>,
    replicas: usize,
}

impl Ring {
    /// A ring over `names` (in the order destinations are numbered) sending each series
    /// to `replicas` of them (clamped to 1..=names).
    pub fn new<S: AsRef<str>>(names: &[S], replicas: usize) -> Self {
        Self {
            seeds: names.iter().map(|n| xxh3_64(n.as_ref().as_bytes())).collect(),
            replicas: replicas.clamp(1, names.len().max(1)),
        }
    }

    /// Number of destinations.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// Whether there are no destinations.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// Whether every series goes to every destination (nothing to choose).
    pub fn is_trivial(&self) -> bool {
        self.replicas >= self.seeds.len()
    }

    /// Indices of the destinations for a series with hash `series`, best first.
    pub fn pick(&self, series: u64, out: &mut Vec<usize>) {
        out.clear();
        if self.is_trivial() {
            out.extend(0..self.seeds.len());
            return;
        }
        let mut scored: Vec<(u64, usize)> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| (xxh3_64_with_seed(&series.to_le_bytes(), seed), i))
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        out.extend(scored.iter().take(self.replicas).map(|&(_, i)| i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::series_hash;

    fn series(i: usize) -> u64 {
        series_hash(&crate::prompb::test_series(i))
    }

    #[test]
    fn shards_get_even_shares_and_adding_one_moves_only_its_share() {
        let n = 30_000;
        let three = Ring::new(&["a", "b", "c"], 1);
        let four = Ring::new(&["a", "b", "c", "d"], 1);
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut counts = [0usize; 4];
        let mut moved = 0;
        for i in 0..n {
            three.pick(series(i), &mut before);
            four.pick(series(i), &mut after);
            counts[after[0]] += 1;
            if before[0] != after[0] {
                assert_eq!(after[0], 3, "a series only ever moves to the new shard");
                moved += 1;
            }
        }
        for c in counts {
            assert!((c as f64 - n as f64 / 4.0).abs() < n as f64 * 0.02, "{counts:?}");
        }
        assert_eq!(moved, counts[3]);
    }

    #[test]
    fn replicas_are_distinct_and_the_first_choice_is_the_unreplicated_one() {
        let one = Ring::new(&["a", "b", "c", "d"], 1);
        let two = Ring::new(&["a", "b", "c", "d"], 2);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            one.pick(series(i), &mut a);
            two.pick(series(i), &mut b);
            assert_eq!(b.len(), 2);
            assert_ne!(b[0], b[1]);
            assert_eq!(a[0], b[0]);
        }
        let all = Ring::new(&["a", "b"], 5);
        all.pick(series(0), &mut a);
        assert_eq!(a, [0, 1]);
    }
}
