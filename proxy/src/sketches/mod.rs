//! The sketches of ingested series: which series get them (rules and limits), and
//! feeding them the samples of each remote-write request.
//!
//! The store outlives reloads. A series is looked up by its label hash; the decision
//! (sketched, or not) is remembered per rule generation, so rules are evaluated once
//! per series and again after a reload. Inserts are grouped by plugin instance: one
//! blocking task per instance, the instances in parallel. New rules are backfilled
//! from downstream first (`backfill`).

mod ask;
pub mod backfill;
pub mod durable;
mod lifecycle;
mod persist;
mod rules;
mod serve;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use promql_parser::label::Matchers;

use backfill::Job;
pub use lifecycle::Dropped;
pub use persist::RestoreStatus;
pub use rules::{Rule, Rules, selects};
pub use serve::{INGEST_LAG_MS, StoreSketches};
pub use status::Status;

use crate::metrics::SketchMetrics;
use crate::plugin_host::{PluginError, PluginSet, Sketch, SketchConfig};
use crate::prompb::{Label, STALE_NAN_BITS, WriteRequest, series_hash};

/// New sketches go only into plugin instances below this share of their memory cap: a
/// sketch growing past the cap traps, and a trap quarantines the whole plugin.
const INSTANCE_FILL_LIMIT: f64 = 0.75;

/// Remote-written samples a backfilling sketch holds until its backfill ends; more are
/// dropped (counted as `backfill_buffer_full`). At a 10 s scrape interval this is 11
/// days of samples, far more than a backfill takes.
const BACKFILL_BUFFER_SAMPLES: usize = 100_000;

/// A plugin instance: the plugin's address and the instance index.
type InstanceKey = (usize, usize);

/// Every sketched series.
#[derive(Debug, Default)]
pub struct SketchStore {
    series: RwLock<HashMap<u64, Entry>>,
    sketched: AtomicU64,
    memory: AtomicU64,
    /// Bytes held per plugin instance, as the sketches last reported.
    instance_memory: Mutex<HashMap<InstanceKey, i64>>,
    /// Backfills running, and finished ones of the current rules.
    backfills: Mutex<Vec<Arc<Job>>>,
    metrics: SketchMetrics,
    /// Restoring from the snapshot: where it is, whether it ended, and the backfills
    /// waiting for that.
    restore: Mutex<RestoreStatus>,
    restore_done: AtomicBool,
    restore_notify: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
enum Entry {
    /// No rule matched (as of this rule generation).
    Unmatched(u64),
    /// A rule matched but a limit refused it (as of this rule generation).
    Refused(u64),
    Sketched(Arc<SeriesSketches>),
}

/// One series' sketches, one per plugin serving a function its rules name.
#[derive(Debug)]
pub struct SeriesSketches {
    /// The series' labels, sorted by name.
    pub labels: Vec<Label>,
    generation: AtomicU64,
    functions: RwLock<Vec<Arc<FunctionSketch>>>,
}

/// The sketch of one plugin over one series. It answers every function of that
/// plugin the series' rules name (the three frequency functions share one sketch, so
/// the series' samples and summaries are held once for them).
#[derive(Debug)]
pub struct FunctionSketch {
    /// The plugin that holds it.
    pub plugin: String,
    /// The PromQL functions it answers; a reload may add one.
    functions: RwLock<Vec<String>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` once its plugin was quarantined.
    sketch: Option<Sketch>,
    newest: i64,
    /// As the plugin last reported it.
    memory: u64,
    /// Samples inserted since the plugin last reported its memory: asked again every
    /// [`MEASURE_EVERY`] samples, not after every insert, since a remote write
    /// typically brings one sample per series and the question would double the calls.
    unmeasured: usize,
    /// While a backfill fills the sketch: remote-written samples, inserted after it.
    pending: Option<Vec<(i64, f64)>>,
    /// Emptied because samples arrived for a span the backfill had already read; the
    /// backfill reads its whole span again into it.
    refill: bool,
    /// Buffered samples before this index were checked for holes already.
    pending_checked: usize,
    /// Restored from a snapshot (its backfill reads only what came after it).
    restored: bool,
    /// Its configuration, to start it again.
    config: SketchConfig,
    /// The plugin's last answer to `coverage`, with `newest` when it was asked: every
    /// insert moves `newest`, so a query between two inserts asks no plugin.
    coverage: Option<(i64, Option<(i64, i64)>)>,
}

impl FunctionSketch {
    /// The span of samples it holds (`None`: none), if it may answer queries (see
    /// [`FunctionSketch::serving`]).
    pub fn serving_coverage(&self) -> Option<Option<(i64, i64)>> {
        serving_locked(&mut self.state.lock()).map(|(_, span)| span)
    }

    /// Runs `f` on the sketch and its coverage, as [`FunctionSketch::serving`] and
    /// [`FunctionSketch::serving_coverage`] in one, but never waits for the sketch's
    /// lock: [`Busy`] when an insert, a snapshot or another query holds it. For the
    /// plugin call threads, which must never wait for a sketch's lock, since its holder
    /// may be waiting for them.
    pub fn try_serving<R>(
        &self,
        f: impl FnOnce(&Sketch, Option<(i64, i64)>) -> R,
    ) -> Result<Option<R>, Busy> {
        let mut state = self.state.try_lock().ok_or(Busy)?;
        Ok(serving_locked(&mut state).map(|(sketch, span)| f(sketch, span)))
    }

    /// Whether it answers `function`.
    pub fn serves(&self, function: &str) -> bool {
        self.functions.read().iter().any(|f| f == function)
    }

    /// Whether it answers any of `functions`.
    fn serves_any(&self, functions: &[String]) -> bool {
        functions.iter().any(|f| self.serves(f))
    }

    /// The functions it answers.
    pub fn functions(&self) -> Vec<String> {
        self.functions.read().clone()
    }

    /// Runs `f` on the sketch, if its plugin is still in service.
    pub fn with<R>(&self, f: impl FnOnce(&Sketch) -> R) -> Option<R> {
        self.state.lock().sketch.as_ref().map(f)
    }

    /// Runs `f` on the sketch if it may answer queries: its plugin is in service and no
    /// backfill is filling it.
    pub fn serving<R>(&self, f: impl FnOnce(&Sketch) -> R) -> Option<R> {
        let state = self.state.lock();
        if state.pending.is_some() {
            return None;
        }
        state.sketch.as_ref().map(f)
    }

    /// Whether a backfill is filling it.
    pub fn backfilling(&self) -> bool {
        self.state.lock().pending.is_some()
    }
}

/// A sketch's lock was held elsewhere; ask again off the plugin call threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The sketch of a locked state and its coverage, if it may answer queries; the
/// plugin's coverage is asked only when a sample came since it last was.
fn serving_locked(state: &mut State) -> Option<(&Sketch, Option<(i64, i64)>)> {
    if state.pending.is_some() {
        return None;
    }
    let newest = state.newest;
    let span = match state.coverage {
        Some((asked_at, span)) if asked_at == newest => span,
        _ => {
            let span = state.sketch.as_ref()?.coverage().ok()?;
            state.coverage = Some((newest, span));
            span
        }
    };
    state.sketch.as_ref().map(|sketch| (sketch, span))
}

/// A sketch a series lacks: its plugin, the functions it is to answer, the longest
/// retention they ask for, and whether a backfill fills it.
#[derive(Debug)]
struct Missing {
    plugin: Arc<crate::plugin_host::Plugin>,
    functions: Vec<String>,
    retain_ms: i64,
    backfilling: bool,
}

/// Samples inserted into a sketch between two questions about its memory; the first
/// insert is always measured.
const MEASURE_EVERY: usize = 64;

/// How [`insert_all`] treats a sketch being backfilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Remote-written samples: buffered while backfilling.
    Live,
    /// History read back: inserted.
    History,
    /// The backfill ended: the buffer is inserted and the sketch serves.
    Release,
}

/// Inserts under way, one task on the plugin call threads per plugin instance.
#[derive(Debug)]
pub struct Feeding<'a> {
    store: &'a SketchStore,
    tasks: Vec<tokio::sync::oneshot::Receiver<Inserted>>,
}

/// What one instance's task did: the change in memory, and the batches whose sketch
/// was busy, left to insert off the call threads.
#[derive(Debug)]
struct Inserted {
    instance: InstanceKey,
    memory_delta: i64,
    busy: Vec<Batch>,
    mode: Mode,
}

impl Feeding<'_> {
    fn start(store: &SketchStore, groups: HashMap<InstanceKey, Vec<Batch>>, mode: Mode) -> Feeding<'_> {
        let tasks = groups
            .into_iter()
            .map(|(instance, batches)| {
                let metrics = store.metrics.clone();
                let (done, wait) = tokio::sync::oneshot::channel();
                crate::plugin_host::spawn_on_call_pool(move || {
                    let (memory_delta, busy) = insert_ready(batches, &metrics, mode);
                    let _ = done.send(Inserted {
                        instance,
                        memory_delta,
                        busy,
                        mode,
                    });
                });
                wait
            })
            .collect();
        Feeding { store, tasks }
    }

    /// Waits until every insert is done.
    pub async fn finish(self) {
        for task in self.tasks {
            let Ok(inserted) = task.await else { continue };
            let mut memory_delta = inserted.memory_delta;
            if !inserted.busy.is_empty() {
                let metrics = self.store.metrics.clone();
                let (busy, mode) = (inserted.busy, inserted.mode);
                if let Ok(delta) =
                    tokio::task::spawn_blocking(move || insert_waiting(&busy, &metrics, mode)).await
                {
                    memory_delta += delta;
                }
            }
            self.store.add_memory(inserted.instance, memory_delta);
        }
    }
}

/// One sketch's share of a request.
#[derive(Debug)]
struct Batch {
    sketch: Arc<FunctionSketch>,
    samples: Arc<(Vec<i64>, Vec<f64>)>,
}

impl SketchStore {
    /// An empty store reporting to `metrics`, with nothing to restore.
    pub fn new(metrics: SketchMetrics) -> Self {
        let store = Self {
            metrics,
            ..Self::default()
        };
        store.restore.lock().state = "done";
        store.restore_done.store(true, Ordering::SeqCst);
        store
    }

    /// An empty store that [`SketchStore::restore_from`] fills before any backfill
    /// reads.
    pub fn restoring(metrics: SketchMetrics) -> Self {
        let store = Self {
            metrics,
            ..Self::default()
        };
        store.restore.lock().state = "waiting";
        store
    }

    /// The sketch of `function` over the series with exactly `labels` (sorted by name).
    pub fn get(&self, labels: &[Label], function: &str) -> Option<Arc<FunctionSketch>> {
        let series = match self.series.read().get(&series_hash(labels))? {
            Entry::Sketched(s) if s.labels == labels => s.clone(),
            _ => return None,
        };
        let functions = series.functions.read();
        functions.iter().find(|f| f.serves(function)).cloned()
    }

    /// The sketched series whose labels `select` takes, at this moment.
    fn sketched_series(&self, select: impl Fn(&[Label]) -> bool) -> Vec<Arc<SeriesSketches>> {
        self.series
            .read()
            .values()
            .filter_map(|e| match e {
                Entry::Sketched(s) if select(&s.labels) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// The series `matchers` select with a sample of `function`'s sketch at or after
    /// `from_ms`, when the sketches know them all: a `complete` rule covers the
    /// selector, no series was refused a sketch, and none of them is being backfilled.
    /// `None` otherwise (downstream is asked).
    pub fn listing(
        &self,
        rules: &Rules,
        function: &str,
        matchers: &Matchers,
        from_ms: i64,
    ) -> Option<Vec<Vec<Label>>> {
        if !rules.complete_for(function, matchers) {
            return None;
        }
        let mut listed = Vec::new();
        for entry in self.series.read().values() {
            let series = match entry {
                Entry::Sketched(s) => s,
                // A series past a limit has no sketch: only downstream knows it.
                Entry::Refused(_) => return None,
                Entry::Unmatched(_) => continue,
            };
            if !selects(matchers, &series.labels) {
                continue;
            }
            let functions = series.functions.read();
            let sketch = functions.iter().find(|f| f.serves(function))?;
            let state = sketch.state.lock();
            if state.pending.is_some() || state.sketch.is_none() {
                return None;
            }
            if state.newest >= from_ms {
                listed.push(series.labels.clone());
            }
        }
        Some(listed)
    }

    /// Bytes the sketches hold, as their plugins last reported.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// Number of sketched series.
    pub fn series_count(&self) -> u64 {
        self.sketched.load(Ordering::Relaxed)
    }

    /// Starts inserting the samples of `request` (labels normalized) into the sketches
    /// of every series the rules select, creating sketches for series seen for the first
    /// time; [`Feeding::finish`] waits for the inserts. Stale markers are not samples to
    /// a range function and are skipped, as are samples not newer than what a sketch
    /// holds. Failures are counted and logged; they never fail the write.
    pub fn feed(&self, request: &WriteRequest, rules: &Rules, plugins: &PluginSet) -> Feeding<'_> {
        let mut groups: HashMap<InstanceKey, Vec<Batch>> = HashMap::new();
        if !rules.is_empty() {
            for series in &request.timeseries {
                let Some(sketched) = self.lookup(&series.labels, rules, plugins) else {
                    continue;
                };
                group(&mut groups, &sketched, &series.samples, |_| true);
            }
        }
        Feeding::start(self, groups, Mode::Live)
    }

    /// Registers a backfill for every rule that has none (a job per rule key; finished
    /// jobs of rules still present are kept, so a reload backfills only new rules), and
    /// forgets finished jobs of rules gone. Returns the new jobs, to be run with
    /// [`backfill::run`]. Call before the rules take effect, so that every sketch they
    /// create while their job runs waits for it.
    pub fn plan_backfills(&self, rules: &Rules) -> Vec<Arc<Job>> {
        let wanted: Vec<&Rule> = rules.rules().iter().filter(|r| !r.functions.is_empty()).collect();
        let mut jobs = self.backfills.lock();
        jobs.retain(|j| j.running() || wanted.iter().any(|r| backfill::JobKey::of(r) == j.key));
        let mut new = Vec::new();
        for rule in wanted {
            let key = backfill::JobKey::of(rule);
            if jobs.iter().any(|j| j.key == key) {
                continue;
            }
            let job = Arc::new(Job::new(rule));
            jobs.push(job.clone());
            new.push(job);
        }
        new
    }

    /// Every backfill job known.
    pub fn backfills(&self) -> Vec<Arc<Job>> {
        self.backfills.lock().clone()
    }

    /// Reads one slice of `job`'s history and inserts it; returns the series and
    /// samples read.
    async fn backfill_slice(
        &self,
        job: &Job,
        env: &backfill::Env,
        start_ms: i64,
        end_ms: i64,
        refill_only: bool,
    ) -> Result<(u64, u64), crate::source::SourceError> {
        let series = backfill::read_slice(job, env.source.as_ref(), start_ms, end_ms).await?;
        let mut groups: HashMap<InstanceKey, Vec<Batch>> = HashMap::new();
        let mut samples = 0;
        for s in &series {
            samples += s.samples.len() as u64;
            let Some(sketched) = self.lookup(&s.labels, &env.rules, &env.plugins) else {
                continue;
            };
            group(&mut groups, &sketched, &s.samples, |f| {
                f.serves_any(&job.key.functions) && (!refill_only || f.state.lock().refill)
            });
        }
        Feeding::start(self, groups, Mode::History).finish().await;
        Ok((series.len() as u64, samples))
    }

    /// Starts again, empty, each sketch of `job` that buffered (since the last check) a
    /// sample older than `cut_ms` (the start of the last span read after the ingest
    /// queues delivered) and not newer than what it holds: that sample arrived after
    /// its span was read, so the span may lack samples the sketch can no longer take in
    /// order. Returns how many; the job then reads its span again into them. With
    /// `restart` false (no read follows) such sketches are only counted: they keep what
    /// the last read found.
    fn restart_overlapped(&self, job: &Job, cut_ms: i64, plugins: &PluginSet, restart: bool) -> usize {
        let mut restarted = 0;
        let series = self.sketched_series(|labels| job.selects(labels));
        for s in series {
            let hash = series_hash(&s.labels);
            for sketch in s
                .functions
                .read()
                .iter()
                .filter(|f| f.serves_any(&job.key.functions))
            {
                let mut state = sketch.state.lock();
                // Samples buffered before an earlier check were delivered before the
                // read that followed it.
                let checked = state.pending_checked;
                let Some(pending) = &state.pending else { continue };
                let oldest_buffered = pending.iter().skip(checked).map(|(t, _)| *t).min();
                state.pending_checked = pending.len();
                let Some(oldest) = oldest_buffered else { continue };
                if oldest >= cut_ms || oldest > state.newest {
                    continue;
                }
                if !restart {
                    restarted += 1;
                    continue;
                }
                let Some(plugin) = plugins.by_name(&sketch.plugin) else {
                    continue;
                };
                match plugin.create(hash, &state.config) {
                    Ok(fresh) => {
                        let instance = instance_key(&fresh);
                        let memory = fresh.memory_bytes().unwrap_or(0);
                        self.add_memory(instance, signed(memory) - signed(state.memory));
                        state.sketch = Some(fresh);
                        state.coverage = None;
                        state.memory = memory;
                        state.unmeasured = MEASURE_EVERY;
                        state.newest = i64::MIN;
                        state.refill = true;
                        state.restored = false;
                        restarted += 1;
                    }
                    Err(error) => {
                        tracing::error!(%error, plugin = %sketch.plugin, "cannot start a sketch again")
                    }
                }
            }
        }
        restarted
    }

    /// Ends `job`: each of its sketches no other running job fills gets its buffered
    /// samples and starts serving.
    async fn finish_backfill(&self, job: &Job) {
        let mut groups: HashMap<InstanceKey, Vec<Batch>> = HashMap::new();
        {
            // Under the series lock, so no sketch is created as backfilling by this
            // job after its release.
            let map = self.series.write();
            let jobs = self.backfills.lock();
            job.stop_filling();
            for entry in map.values() {
                let Entry::Sketched(series) = entry else { continue };
                if !job.selects(&series.labels) {
                    continue;
                }
                for sketch in series.functions.read().iter() {
                    let ours = sketch.serves_any(&job.key.functions);
                    let others = jobs
                        .iter()
                        .any(|j| sketch.functions().iter().any(|f| j.fills(&series.labels, f)));
                    if ours && !others && sketch.backfilling() {
                        let key = sketch.with(instance_key).unwrap_or_default();
                        groups.entry(key).or_default().push(Batch {
                            sketch: sketch.clone(),
                            samples: Arc::new((Vec::new(), Vec::new())),
                        });
                    }
                }
            }
        }
        Feeding::start(self, groups, Mode::Release).finish().await;
    }

    /// The series' sketches, creating them when the rules ask for them and the limits
    /// allow; `None` when the series is not sketched.
    fn lookup(&self, labels: &[Label], rules: &Rules, plugins: &PluginSet) -> Option<Arc<SeriesSketches>> {
        let hash = series_hash(labels);
        let generation = rules.generation();
        match self.series.read().get(&hash) {
            Some(Entry::Unmatched(g) | Entry::Refused(g)) if *g == generation => return None,
            Some(Entry::Sketched(s)) if s.generation.load(Ordering::Relaxed) == generation => {
                return (s.labels == labels).then(|| s.clone());
            }
            _ => {}
        }
        let mut map = self.series.write();
        let entry = map.get(&hash).cloned();
        let wanted = rules.wanted(labels);
        let existing = match entry {
            Some(Entry::Sketched(s)) if s.labels != labels => {
                tracing::warn!(series = %crate::ingest::describe(labels), "label hash collision; series not sketched");
                return None;
            }
            Some(Entry::Sketched(s)) => Some(s),
            _ => None,
        };
        if wanted.is_empty() && existing.is_none() {
            map.insert(hash, Entry::Unmatched(generation));
            return None;
        }
        let series = match existing {
            Some(s) => s,
            None => {
                if let Some(reason) = self.refusal(rules) {
                    map.insert(hash, Entry::Refused(generation));
                    let refused = self.metrics.series_refused.get_or_create(&reason.into());
                    refused.inc();
                    if refused.get() == 1 || refused.get().is_multiple_of(1000) {
                        tracing::warn!(series = %crate::ingest::describe(labels), reason, refused = refused.get(), "series not sketched: limit reached");
                    }
                    return None;
                }
                self.sketched.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .series
                    .set(i64::try_from(self.sketched.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
                Arc::new(SeriesSketches {
                    labels: labels.to_vec(),
                    generation: AtomicU64::new(generation),
                    functions: RwLock::new(Vec::new()),
                })
            }
        };
        // Functions a reload added; existing sketches are kept. The series' own lock is
        // taken before the map is released and held while its sketches are made (plugin
        // calls), so a concurrent write of the series, or `finish_backfill`, waits for
        // them, and writes of other series do not. Lock order: map, series, backfills;
        // nothing here waits for the backfill list while holding only the series.
        // Whether each new sketch starts buffering for a backfill is decided under the
        // map lock, as `finish_backfill` decides what it releases: a sketch created after
        // its job ended cannot wait for that job.
        let mut functions = series.functions.write();
        let mut missing: Vec<Missing> = Vec::new();
        {
            let jobs = self.backfills.lock();
            for (function, retain_ms) in wanted {
                if functions.iter().any(|f| f.serves(&function)) {
                    continue;
                }
                let Some(plugin) = plugins.for_function(&function) else {
                    continue;
                };
                let name = &plugin.info().name;
                if let Some(existing) = functions.iter().find(|f| f.plugin == *name) {
                    // The plugin's sketch of this series answers the function too, from
                    // the history it holds.
                    existing.functions.write().push(function);
                    continue;
                }
                let backfilling = jobs.iter().any(|j| j.fills(labels, &function));
                match missing.iter_mut().find(|m| Arc::ptr_eq(&m.plugin, plugin)) {
                    Some(m) => {
                        m.functions.push(function);
                        m.retain_ms = m.retain_ms.max(retain_ms);
                        m.backfilling |= backfilling;
                    }
                    None => missing.push(Missing {
                        plugin: plugin.clone(),
                        functions: vec![function],
                        retain_ms,
                        backfilling,
                    }),
                }
            }
        }
        series.generation.store(generation, Ordering::Relaxed);
        map.insert(hash, Entry::Sketched(series.clone()));
        drop(map);
        for m in missing {
            if let Some(sketch) = self.create(hash, m) {
                functions.push(sketch);
            }
        }
        drop(functions);
        Some(series)
    }

    fn refusal(&self, rules: &Rules) -> Option<&'static str> {
        if self.sketched.load(Ordering::Relaxed) >= rules.max_series as u64 {
            Some("max_series")
        } else if self.memory.load(Ordering::Relaxed) >= rules.max_memory_bytes {
            Some("max_memory_bytes")
        } else {
            None
        }
    }

    fn create(&self, hash: u64, missing: Missing) -> Option<Arc<FunctionSketch>> {
        let Missing {
            plugin,
            functions,
            retain_ms,
            backfilling,
        } = missing;
        let config = SketchConfig {
            retention_ms: retain_ms,
            options: Vec::new(),
        };
        match plugin.create(hash, &config) {
            Ok(sketch) => {
                let instance = instance_key(&sketch);
                let held = self.instance_memory.lock().get(&instance).copied().unwrap_or(0);
                if held as f64 >= plugin.memory_limit() as f64 * INSTANCE_FILL_LIMIT {
                    let refused = self.metrics.series_refused.get_or_create(&"plugin_memory".into());
                    refused.inc();
                    if refused.get() == 1 || refused.get().is_multiple_of(1000) {
                        tracing::warn!(
                            plugin = %plugin.info().name,
                            held,
                            limit = plugin.memory_limit(),
                            "plugin instance near plugins.memory_limit_bytes; new sketch not created"
                        );
                    }
                    return None;
                }
                let memory = sketch.memory_bytes().unwrap_or(0);
                self.add_memory(instance, signed(memory));
                Some(Arc::new(FunctionSketch {
                    plugin: plugin.info().name.clone(),
                    functions: RwLock::new(functions),
                    state: Mutex::new(State {
                        sketch: Some(sketch),
                        newest: i64::MIN,
                        memory,
                        pending: backfilling.then(Vec::new),
                        refill: false,
                        pending_checked: 0,
                        unmeasured: MEASURE_EVERY,
                        restored: false,
                        config,
                        coverage: None,
                    }),
                }))
            }
            Err(error) => {
                tracing::error!(%error, plugin = %plugin.info().name, "cannot create a sketch");
                None
            }
        }
    }

    fn add_memory(&self, instance: InstanceKey, delta: i64) {
        *self.instance_memory.lock().entry(instance).or_default() += delta;
        self.add_total_memory(delta);
    }

    fn add_total_memory(&self, delta: i64) {
        let now = if delta >= 0 {
            self.memory.fetch_add(delta.unsigned_abs(), Ordering::Relaxed) + delta.unsigned_abs()
        } else {
            self.memory.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed) - delta.unsigned_abs()
        };
        self.metrics
            .memory_bytes
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }
}

/// Adds a series' samples (stale markers left out: they are not samples to a range
/// function) to `groups`, once for each of its sketches whose function `wanted` takes.
fn group(
    groups: &mut HashMap<InstanceKey, Vec<Batch>>,
    sketched: &SeriesSketches,
    samples: &[crate::prompb::Sample],
    wanted: impl Fn(&FunctionSketch) -> bool,
) {
    let samples: (Vec<i64>, Vec<f64>) = samples
        .iter()
        .filter(|s| s.value.to_bits() != STALE_NAN_BITS)
        .map(|s| (s.timestamp, s.value))
        .unzip();
    if samples.0.is_empty() {
        return;
    }
    let samples = Arc::new(samples);
    for sketch in sketched.functions.read().iter().filter(|f| wanted(f)) {
        let Some(key) = sketch.with(instance_key) else {
            continue;
        };
        groups.entry(key).or_default().push(Batch {
            sketch: sketch.clone(),
            samples: samples.clone(),
        });
    }
}

/// Inserts every batch (all in one plugin instance) whose sketch is free; returns the
/// change in memory and the batches whose sketch's lock was taken. Runs on a plugin
/// call thread, so its calls do not each switch threads; it never waits for a sketch's
/// lock there, since a query may hold one while it waits for a call thread.
fn insert_ready(batches: Vec<Batch>, metrics: &SketchMetrics, mode: Mode) -> (i64, Vec<Batch>) {
    let mut delta = 0;
    let mut busy = Vec::new();
    for batch in batches {
        let inserted = batch
            .sketch
            .state
            .try_lock()
            .map(|mut state| insert_batch(&mut state, &batch, metrics, mode));
        match inserted {
            Some(d) => delta += d,
            None => busy.push(batch),
        }
    }
    (delta, busy)
}

/// Inserts every batch, waiting for each sketch's lock (off the call threads); returns
/// the change in memory.
fn insert_waiting(batches: &[Batch], metrics: &SketchMetrics, mode: Mode) -> i64 {
    batches
        .iter()
        .map(|batch| insert_batch(&mut batch.sketch.state.lock(), batch, metrics, mode))
        .sum()
}

/// Inserts one batch into its sketch (`state` is the sketch's, locked).
fn insert_batch(state: &mut State, batch: &Batch, metrics: &SketchMetrics, mode: Mode) -> i64 {
    let (timestamps, values) = &*batch.samples;
    match (mode, &mut state.pending) {
        (Mode::Live, Some(pending)) => {
            let room = BACKFILL_BUFFER_SAMPLES.saturating_sub(pending.len());
            pending.extend(timestamps.iter().copied().zip(values.iter().copied()).take(room));
            let dropped = timestamps.len().saturating_sub(room);
            if dropped > 0 {
                metrics
                    .samples_dropped
                    .get_or_create(&"backfill_buffer_full".into())
                    .inc_by(dropped as u64);
            }
            0
        }
        (Mode::Release, pending) => {
            state.refill = false;
            let Some(buffered) = pending.take() else { return 0 };
            let (t, v): (Vec<i64>, Vec<f64>) = buffered.into_iter().unzip();
            insert(state, &batch.sketch.plugin, &t, &v, metrics)
        }
        _ => insert(state, &batch.sketch.plugin, timestamps, values, metrics),
    }
}

/// Inserts the samples newer than the sketch's newest (in increasing order); returns
/// the change in memory.
fn insert(
    state: &mut State,
    plugin: &str,
    timestamps: &[i64],
    values: &[f64],
    metrics: &SketchMetrics,
) -> i64 {
    let mut newest = state.newest;
    let (keep_t, keep_v): (Vec<i64>, Vec<f64>) = timestamps
        .iter()
        .zip(values)
        .filter(|(t, _)| {
            let newer = **t > newest;
            newest = newest.max(**t);
            newer
        })
        .map(|(t, v)| (*t, *v))
        .unzip();
    let skipped = timestamps.len() - keep_t.len();
    if skipped > 0 {
        metrics
            .samples_dropped
            .get_or_create(&"out_of_order".into())
            .inc_by(skipped as u64);
    }
    let Some(sketch) = &state.sketch else { return 0 };
    if keep_t.is_empty() {
        return 0;
    }
    match sketch.insert(&keep_t, &keep_v) {
        Ok(()) => {
            metrics.samples_sketched.inc_by(keep_t.len() as u64);
            state.newest = newest;
            state.unmeasured += keep_t.len();
            if state.unmeasured < MEASURE_EVERY {
                return 0;
            }
            state.unmeasured = 0;
            let memory = sketch.memory_bytes().unwrap_or(state.memory);
            let delta = signed(memory) - signed(state.memory);
            state.memory = memory;
            delta
        }
        Err(error) => {
            metrics
                .samples_dropped
                .get_or_create(&"plugin_error".into())
                .inc_by(keep_t.len() as u64);
            if matches!(
                error,
                PluginError::Trapped { .. } | PluginError::Quarantined { .. }
            ) {
                tracing::error!(%error, plugin, "sketch dropped: its plugin is out of service");
                let delta = -signed(state.memory);
                state.sketch = None;
                state.memory = 0;
                delta
            } else {
                tracing::warn!(%error, plugin, "samples not sketched");
                0
            }
        }
    }
}

fn instance_key(sketch: &Sketch) -> InstanceKey {
    (Arc::as_ptr(sketch.plugin()) as usize, sketch.instance())
}

fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
