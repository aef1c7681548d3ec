//! Sketches across restarts: the store written to a snapshot file (`durable`) and read
//! back at start.
//!
//! Restoring runs once, in the background, before any backfill reads: each backfill
//! waits for it, then reads only from the oldest newest sample among its restored
//! sketches (`resume_from`), since a sketch drops the samples it already holds; after
//! a damaged or foreign record, every backfill reads its whole retention. A series
//! first seen downstream while the proxy was down gets the span read only: its
//! coverage says so, and older windows are answered exactly. A
//! restored sketch waits (buffers remote-written samples) for its rule's backfill
//! like a new one, so the seam between snapshot, backfill and live samples is the
//! backfill's seam. Snapshots are taken only once restoring is done, so a snapshot is
//! never replaced by a partial one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::backfill::Job;
use super::durable::{DurableError, Next, Reader, Record, Writer};
use super::{
    Entry, FunctionSketch, MEASURE_EVERY, Rules, SeriesSketches, SketchStore, State, instance_key, signed,
};
use crate::plugin_host::{GuestError, PluginError, PluginSet, SketchConfig};
use crate::prompb::series_hash;

/// Where restoring is, for `/api/v1/status/sketches`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// `waiting`, `restoring` or `done`.
    pub state: &'static str,
    /// Share of the snapshot file read, 0 to 1.
    pub progress: f64,
    /// Sketches restored.
    pub restored: u64,
    /// Records whose bytes were damaged.
    pub damaged: u64,
    /// Sketches from another plugin or plugin version, or that it could not read.
    pub foreign: u64,
    /// Sketches no rule (or no loaded plugin) wants any more, or over a limit.
    pub dropped: u64,
    /// Time spent, s.
    pub seconds: f64,
    /// The snapshot's problem, when it could not be read at all.
    pub error: Option<String>,
}

/// How one record ended.
enum Outcome {
    Restored,
    Foreign,
    Dropped,
}

impl SketchStore {
    /// Writes every serving sketch to `dir` (blocking: a plugin call per sketch).
    /// Sketches still filled by a backfill are left out: the backfill at the next start
    /// reads their span. Returns (sketches, bytes).
    pub fn snapshot_to(&self, dir: &Path) -> Result<(u64, u64), DurableError> {
        let started = Instant::now();
        let result = self.write_snapshot(dir);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.snapshots.get_or_create(&outcome.into()).inc();
        match &result {
            Ok((records, bytes)) => {
                self.metrics
                    .snapshot_bytes
                    .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
                self.metrics
                    .snapshot_time
                    .set(crate::clock::since_epoch().as_secs_f64());
                tracing::debug!(
                    sketches = records,
                    bytes,
                    seconds = started.elapsed().as_secs_f64(),
                    "sketches snapshotted"
                );
            }
            Err(error) => tracing::error!(%error, "sketch snapshot failed; the previous one stays"),
        }
        result
    }

    fn write_snapshot(&self, dir: &Path) -> Result<(u64, u64), DurableError> {
        let mut writer = Writer::create(dir)?;
        let series = self.sketched_series(|_| true);
        for s in series {
            let sketches = s.functions.read().clone();
            for sketch in sketches {
                let state = sketch.state.lock();
                let Some(handle) = &state.sketch else { continue };
                if state.pending.is_some() || state.newest == i64::MIN {
                    continue;
                }
                let Ok(bytes) = handle.snapshot() else { continue };
                let info = handle.plugin().info();
                let record = Record {
                    labels: s.labels.clone(),
                    function: sketch.functions().join(","),
                    plugin: info.name.clone(),
                    version: info.version.clone(),
                    retention_ms: state.config.retention_ms,
                    newest: state.newest,
                    bytes,
                };
                drop(state);
                writer.add(&record)?;
            }
        }
        writer.finish()
    }

    /// Whether restoring ended (or there was nothing to restore).
    pub fn restore_finished(&self) -> bool {
        self.restore_done.load(Ordering::SeqCst)
    }

    /// Waits until restoring ended.
    pub async fn wait_restored(&self) {
        loop {
            let notified = self.restore_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.restore_finished() {
                return;
            }
            notified.await;
        }
    }

    /// Where restoring is.
    pub fn restore_status(&self) -> RestoreStatus {
        self.restore.lock().clone()
    }

    /// Reads the snapshot in `dir` back into the store (blocking: a plugin call per
    /// sketch), then lets the backfills start. Problems are logged and counted; none
    /// stops the proxy.
    pub fn restore_from(&self, dir: &Path, rules: &Rules, plugins: &PluginSet) {
        let started = Instant::now();
        self.restore.lock().state = "restoring";
        match Reader::open(dir) {
            Ok(None) => tracing::info!(dir = %dir.display(), "no sketch snapshot to restore"),
            Ok(Some(mut reader)) => {
                tracing::info!(file = %reader.path().display(), bytes = reader.size, "restoring sketches");
                self.read_records(&mut reader, rules, plugins, started);
            }
            Err(error) => {
                tracing::error!(%error, "sketch snapshot unreadable; the backfills read the whole retention");
                self.metrics.restored.get_or_create(&"damaged".into()).inc();
                let mut status = self.restore.lock();
                status.damaged += 1;
                status.error = Some(error.to_string());
            }
        }
        let status = {
            let mut status = self.restore.lock();
            status.state = "done";
            status.progress = 1.0;
            status.seconds = started.elapsed().as_secs_f64();
            status.clone()
        };
        self.metrics.restore_progress.set(1.0);
        tracing::info!(
            restored = status.restored,
            damaged = status.damaged,
            foreign = status.foreign,
            dropped = status.dropped,
            seconds = status.seconds,
            "sketch restore done"
        );
        self.finish_restore();
    }

    /// Marks restoring as ended, waking the backfills waiting for it.
    pub fn finish_restore(&self) {
        self.restore_done.store(true, Ordering::SeqCst);
        self.restore_notify.notify_waiters();
    }

    /// Reads the records on this thread and restores them on one worker per core, so
    /// the plugin instances rebuild sketches in parallel.
    fn read_records(&self, reader: &mut Reader, rules: &Rules, plugins: &PluginSet, started: Instant) {
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let (send, receive) = std::sync::mpsc::sync_channel::<Record>(4 * workers);
        let receive = Mutex::new(receive);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let next = receive.lock().recv();
                        let Ok(record) = next else { return };
                        let result = match self.restore_record(record, rules, plugins) {
                            Outcome::Restored => "restored",
                            Outcome::Foreign => "foreign",
                            Outcome::Dropped => "dropped",
                        };
                        self.count_restored(result);
                    }
                });
            }
            let mut logged_tenth = 0;
            loop {
                match reader.next_record() {
                    Next::Record(record) => {
                        if send.send(record).is_err() {
                            break;
                        }
                    }
                    Next::Damaged(why) => {
                        tracing::warn!(file = %reader.path().display(), why, "damaged sketch record skipped; its series is backfilled");
                        self.count_restored("damaged");
                    }
                    Next::End(None) => break,
                    Next::End(Some(why)) => {
                        tracing::warn!(file = %reader.path().display(), why, "the rest of the sketch snapshot is unreadable; those series are backfilled");
                        self.count_restored("damaged");
                        break;
                    }
                }
                let ratio = reader.read as f64 / reader.size.max(1) as f64;
                {
                    let mut status = self.restore.lock();
                    status.progress = ratio;
                    status.seconds = started.elapsed().as_secs_f64();
                }
                self.metrics.restore_progress.set(ratio);
                let tenth = (ratio * 10.0) as u32;
                if tenth > logged_tenth && tenth < 10 {
                    logged_tenth = tenth;
                    tracing::info!(progress = format!("{:.0}%", ratio * 100.0), "restoring sketches");
                }
            }
            // The workers end once the channel is empty and closed.
            drop(send);
        });
    }

    fn count_restored(&self, result: &'static str) {
        self.metrics.restored.get_or_create(&result.into()).inc();
        let mut status = self.restore.lock();
        match result {
            "restored" => status.restored += 1,
            "foreign" => status.foreign += 1,
            "dropped" => status.dropped += 1,
            _ => status.damaged += 1,
        }
    }

    /// Puts one record's sketch in the store, unless the rules no longer want it, its
    /// plugin changed, or the series already has a sketch with samples of its own.
    fn restore_record(&self, record: Record, rules: &Rules, plugins: &PluginSet) -> Outcome {
        let functions: Vec<String> = record.function.split(',').map(str::to_owned).collect();
        let wanted = rules.wanted(&record.labels);
        let still_wanted: Vec<String> = functions
            .iter()
            .filter(|f| {
                wanted
                    .iter()
                    .any(|(w, retain)| w == *f && *retain <= record.retention_ms)
            })
            .cloned()
            .collect();
        if still_wanted.is_empty() {
            return Outcome::Dropped;
        }
        let plugin = match plugins.by_name(&record.plugin) {
            Some(p) if p.info().version == record.version => p,
            _ => return Outcome::Foreign,
        };
        if still_wanted.iter().any(|f| {
            plugins
                .for_function(f)
                .is_none_or(|p| p.info().name != record.plugin)
        }) {
            return Outcome::Foreign;
        }
        let hash = series_hash(&record.labels);
        let config = SketchConfig {
            retention_ms: record.retention_ms,
            options: Vec::new(),
        };
        let sketch = match plugin.restore(hash, &config, &record.bytes) {
            Ok(sketch) => sketch,
            Err(PluginError::Guest {
                error: GuestError::BadSnapshot(why),
                ..
            }) => {
                tracing::warn!(plugin = %record.plugin, why, "plugin refused a snapshot; its series is backfilled");
                return Outcome::Foreign;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot restore a sketch; its series is backfilled");
                return Outcome::Foreign;
            }
        };
        let memory = sketch.memory_bytes().unwrap_or(0);
        let mut map = self.series.write();
        let series = match map.get(&hash) {
            Some(Entry::Sketched(s)) if s.labels == record.labels => s.clone(),
            Some(Entry::Sketched(_)) => return Outcome::Dropped,
            _ => {
                if self.refusal(rules).is_some() {
                    return Outcome::Dropped;
                }
                self.sketched.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .series
                    .set(i64::try_from(self.sketched.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
                // Generation unknown: the first write of the series asks the rules
                // again and adds the sketches they want that the snapshot lacked.
                let s = Arc::new(SeriesSketches {
                    labels: record.labels.clone(),
                    generation: AtomicU64::new(u64::MAX),
                    functions: RwLock::new(Vec::new()),
                });
                map.insert(hash, Entry::Sketched(s.clone()));
                s
            }
        };
        let mut sketches = series.functions.write();
        let backfilling = {
            let jobs = self.backfills.lock();
            jobs.iter()
                .any(|j| still_wanted.iter().any(|f| j.fills(&record.labels, f)))
        };
        drop(map);
        let instance = instance_key(&sketch);
        if let Some(existing) = sketches.iter().find(|s| s.plugin == record.plugin) {
            let mut state = existing.state.lock();
            if state.newest != i64::MIN || state.sketch.is_none() {
                return Outcome::Dropped;
            }
            // Made by a write during the restore, holding no sample yet: it takes the
            // restored history and keeps what it buffered.
            self.add_memory(instance, signed(memory) - signed(state.memory));
            state.sketch = Some(sketch);
            state.coverage = None;
            state.memory = memory;
            state.newest = record.newest;
            state.restored = true;
            return Outcome::Restored;
        }
        self.add_memory(instance, signed(memory));
        sketches.push(Arc::new(FunctionSketch {
            plugin: record.plugin,
            functions: RwLock::new(still_wanted),
            state: Mutex::new(State {
                sketch: Some(sketch),
                newest: record.newest,
                memory,
                unmeasured: MEASURE_EVERY,
                pending: backfilling.then(Vec::new),
                refill: false,
                pending_checked: 0,
                restored: true,
                config,
                coverage: None,
            }),
        }));
        Outcome::Restored
    }

    /// Where `job` need read from: the oldest newest sample of the restored sketches it
    /// fills, or `None` (its whole retention) when it fills none, or when a record was
    /// damaged or foreign: a damaged record's series is unknown, and each such series
    /// needs its whole retention.
    pub(super) fn resume_from(&self, job: &Job) -> Option<i64> {
        {
            let status = self.restore.lock();
            if status.damaged > 0 || status.foreign > 0 {
                return None;
            }
        }
        let series = self.sketched_series(|labels| job.selects(labels));
        series
            .iter()
            .flat_map(|s| s.functions.read().clone())
            .filter(|f| f.serves_any(&job.key.functions))
            .filter_map(|f| {
                let state = f.state.lock();
                (state.restored && state.newest != i64::MIN).then_some(state.newest)
            })
            .min()
    }
}
