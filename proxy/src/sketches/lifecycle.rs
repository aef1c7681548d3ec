//! When sketches go: a series idle for longer than a sketch's retention loses it, a
//! reload drops the sketches its rules no longer want and the ones whose plugin was
//! quarantined (the next write of the series, or the rule's backfill, creates them
//! afresh), and a series left with no sketch leaves the store, making room under
//! `sketches.max_series` and `sketches.max_memory_bytes` again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Entry, FunctionSketch, Rules, SketchStore, instance_key, signed};

/// What a sweep dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Sketches dropped.
    pub sketches: u64,
    /// Series left with none, removed from the store.
    pub series: u64,
}

impl SketchStore {
    /// Drops every sketch whose newest sample is older than `now_ms` minus its
    /// retention (sketches a backfill is filling are left alone).
    pub fn evict_idle(&self, now_ms: i64) -> Dropped {
        let dropped = self.sweep_series(|_, sketch| {
            let state = sketch.state.lock();
            let idle = state.pending.is_none()
                && state.newest != i64::MIN
                && now_ms.saturating_sub(state.newest) > state.config.retention_ms;
            !idle
        });
        if dropped.sketches > 0 {
            tracing::info!(
                sketches = dropped.sketches,
                series = dropped.series,
                "idle sketches dropped"
            );
        }
        dropped
    }

    /// After a reload to `rules`: drops each sketch's functions the rules no longer
    /// want, sketches left with none, and sketches whose plugin is out of service. The
    /// finished backfills of functions whose sketches were out of service are
    /// forgotten, so planning the reload's backfills fills their new sketches.
    pub fn prune(&self, rules: &Rules) -> Dropped {
        let mut dead_functions: HashSet<String> = HashSet::new();
        let dropped = self.sweep_series(|labels, sketch| {
            let alive = sketch.with(|s| !s.plugin().is_quarantined()).unwrap_or(false);
            if !alive {
                dead_functions.extend(sketch.functions());
                return false;
            }
            let wanted = rules.wanted(labels);
            let mut functions = sketch.functions.write();
            functions.retain(|f| wanted.iter().any(|(w, _)| w == f));
            !functions.is_empty()
        });
        if !dead_functions.is_empty() {
            self.backfills
                .lock()
                .retain(|j| j.running() || !j.key.functions.iter().any(|f| dead_functions.contains(f)));
        }
        if dropped.sketches > 0 {
            tracing::info!(
                sketches = dropped.sketches,
                series = dropped.series,
                "sketches the new rules do not want, or whose plugin was quarantined, dropped"
            );
        }
        dropped
    }

    /// Keeps the sketches `keep` says to keep; series left with none leave the store.
    /// The dropped sketches are released after the locks, since releasing one is a
    /// plugin call.
    fn sweep_series(
        &self,
        mut keep: impl FnMut(&[crate::prompb::Label], &FunctionSketch) -> bool,
    ) -> Dropped {
        let mut released: Vec<Arc<FunctionSketch>> = Vec::new();
        let mut dropped = Dropped::default();
        {
            let mut map = self.series.write();
            map.retain(|_, entry| {
                let Entry::Sketched(series) = entry else {
                    return true;
                };
                let mut sketches = series.functions.write();
                sketches.retain(|sketch| {
                    if keep(&series.labels, sketch) {
                        return true;
                    }
                    released.push(sketch.clone());
                    false
                });
                if sketches.is_empty() {
                    dropped.series += 1;
                    false
                } else {
                    true
                }
            });
            if dropped.series > 0 {
                // Series a limit refused may fit now: their next write asks again.
                map.retain(|_, entry| !matches!(entry, Entry::Refused(_)));
            }
        }
        for sketch in &released {
            let mut state = sketch.state.lock();
            let memory = signed(std::mem::take(&mut state.memory));
            match state.sketch.take() {
                Some(handle) => self.add_memory(instance_key(&handle), -memory),
                // Its instance went with the quarantine.
                None => self.add_total_memory(-memory),
            }
        }
        dropped.sketches = released.len() as u64;
        self.metrics.dropped.inc_by(dropped.sketches);
        if dropped.series > 0 {
            let now = self.sketched.fetch_sub(dropped.series, Ordering::Relaxed) - dropped.series;
            self.metrics.series.set(i64::try_from(now).unwrap_or(i64::MAX));
        }
        dropped
    }
}
