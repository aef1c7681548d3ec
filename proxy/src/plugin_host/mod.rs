//! The plugin host: loads sketch plugins (WebAssembly components speaking
//! `wit/sketch.wit`), runs them sandboxed, and hands out [`Sketch`] handles.
//!
//! Invariant: this is the only module that depends on wasmtime. Everything it exports is
//! plain data, [`Plugin`]/[`Sketch`] handles and typed errors.
//!
//! Each plugin runs in `settings.instances` instances (a sketch lives in one, chosen by
//! the caller's key), so calls for different series run in parallel. A call that traps
//! or breaks the contract quarantines the whole plugin: every instance and sketch is
//! dropped, the error says why, and the next reload loads it afresh.
//!
//! Calls are synchronous and CPU-bound: call them from a blocking thread
//! (`tokio::task::spawn_blocking`), never from an async task. WASI's host side enters
//! tokio itself, and doing that inside a runtime panics.

mod bindings;
mod error;
mod load;
mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, Trap};

pub use bindings::{ErrorBound, Estimate, FunctionInfo, PluginInfo, RangeRequest, SketchConfig};
pub use error::{GuestError, LoadError, LoadFailure, PluginError, Source, TrapKind};
pub use load::{Host, PluginSet, built_in_names};

use bindings::{SketchPlugin, SketchPluginPre, WitError};
use sandbox::HostState;

/// The contract this host speaks: the interface every plugin must export.
pub const CONTRACT: &str = "sketch-proxy:sketch/plugin@0.1.0";

/// A capability a plugin may be granted in `plugins.grants`; everything else is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// The real wall and monotonic clocks (otherwise a clock frozen at 0).
    Clock,
    /// The proxy's environment variables (otherwise none).
    Environment,
}

/// How plugins are loaded and confined.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Directory whose `*.wasm` files are loaded as custom plugins.
    pub dir: Option<PathBuf>,
    /// Directory for precompiled plugins, so a restart skips compilation.
    pub cache_dir: Option<PathBuf>,
    /// Instances per plugin (parallel calls).
    pub instances: usize,
    /// Linear-memory cap per instance, in bytes.
    pub memory_limit_bytes: usize,
    /// Longest a single call may run.
    pub call_timeout: Duration,
    /// Capabilities granted, by plugin name.
    pub grants: BTreeMap<String, Vec<Grant>>,
}

/// Counters the host updates; shared with `/metrics`.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `plugin` was quarantined for `kind`.
    fn quarantined(&self, plugin: &str, kind: TrapKind);
    /// A `call` (`insert`, `query`, ...) into `plugin` took `seconds`, waiting for an
    /// instance included.
    fn called(&self, plugin: &str, call: &'static str, seconds: f64) {
        let _ = (plugin, call, seconds);
    }
}

/// One loaded plugin.
pub struct Plugin {
    info: PluginInfo,
    source: Source,
    pre: SketchPluginPre<HostState>,
    slots: Vec<Mutex<Slot>>,
    quarantined: AtomicBool,
    /// Why it was quarantined: the trap's kind and detail.
    quarantine_reason: Mutex<Option<String>>,
    memory_limit: usize,
    deadline_ticks: u64,
    grants: Vec<Grant>,
    observer: Arc<dyn Observer>,
    /// Where its calls run ([`sandbox::call_pool`]).
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("source", &self.source)
            .field("quarantined", &self.is_quarantined())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot {
    live: Option<Live>,
    /// Bumped whenever the instance is replaced, so old sketch handles are recognised.
    generation: u64,
}

struct Live {
    store: Store<HostState>,
    api: SketchPlugin,
}

impl Plugin {
    /// What the plugin said about itself at load time.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Linear-memory cap of each instance, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Linear memory its live instances hold, in bytes: what its sketches take of the
    /// proxy's memory, allocator overhead and free space included.
    pub fn linear_memory_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| {
                slot.lock()
                    .live
                    .as_ref()
                    .map_or(0, |l| l.store.data().limits.size)
            })
            .sum()
    }

    /// Whether a trap took it out of service.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Why it was taken out of service, if it was.
    pub fn quarantine_reason(&self) -> Option<String> {
        self.quarantine_reason.lock().clone()
    }

    /// How many instances it runs (each holding a share of its sketches).
    pub fn instances(&self) -> usize {
        self.slots.len()
    }

    /// Creates a sketch in the instance chosen by `key` (e.g. a series hash).
    pub fn create(self: &Arc<Self>, key: u64, config: &SketchConfig) -> Result<Sketch, PluginError> {
        self.new_sketch("create", key, |store, api| {
            api.sketch_proxy_sketch_plugin()
                .sketch()
                .call_create(store, config)
        })
    }

    /// Rebuilds a sketch from [`Sketch::snapshot`] bytes.
    pub fn restore(
        self: &Arc<Self>,
        key: u64,
        config: &SketchConfig,
        snapshot: &[u8],
    ) -> Result<Sketch, PluginError> {
        self.new_sketch("restore", key, |store, api| {
            api.sketch_proxy_sketch_plugin()
                .sketch()
                .call_restore(store, config, snapshot)
        })
    }

    /// The instance that holds the sketches created with `key`.
    pub fn instance_for(&self, key: u64) -> usize {
        (key % self.slots.len().max(1) as u64) as usize
    }

    fn new_sketch(
        self: &Arc<Self>,
        name: &'static str,
        key: u64,
        f: impl FnOnce(&mut Store<HostState>, &SketchPlugin) -> wasmtime::Result<Result<ResourceAny, WitError>>
        + Send,
    ) -> Result<Sketch, PluginError> {
        let slot = self.instance_for(key);
        let (made, generation) = self.call(name, slot, None, f)?;
        let handle = self.guest(made)?;
        Ok(Sketch {
            plugin: Arc::clone(self),
            slot,
            generation,
            handle,
        })
    }

    fn guest<T>(&self, result: Result<T, WitError>) -> Result<T, PluginError> {
        result.map_err(|e| PluginError::Guest {
            plugin: self.info.name.clone(),
            error: guest_error(e),
        })
    }

    /// Runs `f` in instance `slot` under the deadline, on the call pool (the caller
    /// waits); a trap quarantines the plugin. `generation` is the sketch's instance
    /// generation (`None` to create one).
    fn call<R: Send>(
        &self,
        name: &'static str,
        slot: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Store<HostState>, &SketchPlugin) -> wasmtime::Result<R> + Send,
    ) -> Result<(R, u64), PluginError> {
        let started = std::time::Instant::now();
        // Debug level: only traces record one span per plugin call (see telemetry).
        let span = tracing::debug_span!("plugin_call", plugin = %self.info.name, call = name);
        let result = self
            .pool
            .install(|| span.in_scope(|| self.call_here(slot, generation, f)));
        self.observer
            .called(&self.info.name, name, started.elapsed().as_secs_f64());
        result
    }

    fn call_here<R>(
        &self,
        slot: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Store<HostState>, &SketchPlugin) -> wasmtime::Result<R>,
    ) -> Result<(R, u64), PluginError> {
        let quarantined = || PluginError::Quarantined {
            plugin: self.info.name.clone(),
        };
        if self.is_quarantined() {
            return Err(quarantined());
        }
        let mut guard = self.slots[slot].lock();
        // Again under the lock: a trap elsewhere may have emptied the slots meanwhile,
        // and a fresh instance must not be made for a quarantined plugin.
        if self.is_quarantined() || generation.is_some_and(|g| g != guard.generation) {
            return Err(quarantined());
        }
        if guard.live.is_none() {
            if generation.is_some() {
                return Err(quarantined());
            }
            match self.instantiate() {
                Ok(live) => guard.live = Some(live),
                Err(e) => {
                    drop(guard);
                    return Err(self.trapped(TrapKind::Other, format!("cannot instantiate: {e:#}")));
                }
            }
        }
        let generation = guard.generation;
        let Some(live) = guard.live.as_mut() else {
            return Err(quarantined());
        };
        live.store.set_epoch_deadline(self.deadline_ticks);
        match f(&mut live.store, &live.api) {
            Ok(r) => Ok((r, generation)),
            Err(e) => {
                let kind = classify(&e, &live.store);
                let mut detail = format!("{e:#}");
                let stderr = live.store.data().stderr.contents();
                if !stderr.is_empty() {
                    detail.push_str("; guest stderr: ");
                    detail.push_str(String::from_utf8_lossy(&stderr).trim());
                }
                guard.live = None;
                guard.generation += 1;
                drop(guard);
                Err(self.trapped(kind, detail))
            }
        }
    }

    fn instantiate(&self) -> wasmtime::Result<Live> {
        let mut store = Store::new(self.pre.engine(), HostState::new(self.memory_limit, &self.grants));
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(self.deadline_ticks);
        let api = self.pre.instantiate(&mut store)?;
        Ok(Live { store, api })
    }

    /// Takes the plugin out of service: drops every instance (and so every sketch).
    fn trapped(&self, kind: TrapKind, detail: String) -> PluginError {
        if !self.quarantined.swap(true, Ordering::AcqRel) {
            tracing::error!(plugin = %self.info.name, source = %self.source, %kind, %detail,
                "plugin quarantined; its sketches are dropped until the next reload");
            *self.quarantine_reason.lock() = Some(format!("{kind}: {detail}"));
            self.observer.quarantined(&self.info.name, kind);
        }
        for slot in &self.slots {
            let mut guard = slot.lock();
            if guard.live.take().is_some() {
                guard.generation += 1;
            }
        }
        PluginError::Trapped {
            plugin: self.info.name.clone(),
            kind,
            detail,
        }
    }

    /// A contract violation found in a guest's answer; treated like a trap.
    fn bad_output(&self, detail: String) -> PluginError {
        self.trapped(TrapKind::BadOutput, detail)
    }
}

fn classify(error: &wasmtime::Error, store: &Store<HostState>) -> TrapKind {
    if store.data().limits.hit {
        return TrapKind::MemoryLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => TrapKind::Deadline,
        Some(Trap::UnreachableCodeReached) => TrapKind::Panic,
        _ => TrapKind::Other,
    }
}

fn guest_error(e: WitError) -> GuestError {
    match e {
        WitError::InvalidConfig(s) => GuestError::InvalidConfig(s),
        WitError::InvalidArgument(s) => GuestError::InvalidArgument(s),
        WitError::OutOfOrder(t) => GuestError::OutOfOrder(t),
        WitError::BadSnapshot(s) => GuestError::BadSnapshot(s),
        WitError::Other(s) => GuestError::Other(s),
    }
}

/// One series' sketch inside a plugin instance. Dropping it frees it in the guest.
pub struct Sketch {
    plugin: Arc<Plugin>,
    slot: usize,
    generation: u64,
    handle: ResourceAny,
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("plugin", &self.plugin.info.name)
            .field("slot", &self.slot)
            .finish()
    }
}

impl Sketch {
    /// The plugin holding this sketch.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The plugin instance holding it: calls on sketches of one instance run one at a
    /// time, calls on different instances in parallel.
    pub fn instance(&self) -> usize {
        self.slot
    }

    fn run<R: Send>(
        &self,
        name: &'static str,
        f: impl FnOnce(&mut Store<HostState>, &SketchPlugin, ResourceAny) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginError> {
        let handle = self.handle;
        self.plugin
            .call(name, self.slot, Some(self.generation), |store, api| {
                f(store, api, handle)
            })
            .map(|(r, _)| r)
    }

    /// Adds samples (timestamps in ms, strictly increasing, newer than what it holds).
    pub fn insert(&self, timestamps: &[i64], values: &[f64]) -> Result<(), PluginError> {
        let r = self.run("insert", |s, api, h| {
            api.sketch_proxy_sketch_plugin()
                .sketch()
                .call_insert(s, h, timestamps, values)
        })?;
        self.plugin.guest(r)
    }

    /// `function(args..., v)` over the samples in `[t0, t1]`.
    pub fn query(
        &self,
        function: &str,
        args: &[f64],
        t0: i64,
        t1: i64,
    ) -> Result<Option<Estimate>, PluginError> {
        let r = self.run("query", |s, api, h| {
            api.sketch_proxy_sketch_plugin()
                .sketch()
                .call_query(s, h, function, args, t0, t1)
        })?;
        let answer = self.plugin.guest(r)?;
        self.check(function, answer.iter())?;
        Ok(answer)
    }

    /// One answer per evaluation time of `range`.
    pub fn query_range(
        &self,
        function: &str,
        args: &[f64],
        range: RangeRequest,
    ) -> Result<Vec<Option<Estimate>>, PluginError> {
        let r = self.run("query_range", |s, api, h| {
            api.sketch_proxy_sketch_plugin()
                .sketch()
                .call_query_range(s, h, function, args, range)
        })?;
        let answers = self.plugin.guest(r)?;
        let expected = range_steps(range);
        if answers.len() as u64 != expected {
            return Err(self.plugin.bad_output(format!(
                "query-range returned {} answers for {expected} evaluation times",
                answers.len()
            )));
        }
        self.check(function, answers.iter().flatten())?;
        Ok(answers)
    }

    /// The retained span (oldest, newest sample timestamps).
    pub fn coverage(&self) -> Result<Option<(i64, i64)>, PluginError> {
        let span = self.run("coverage", |s, api, h| {
            api.sketch_proxy_sketch_plugin().sketch().call_coverage(s, h)
        })?;
        if let Some((a, b)) = span
            && a > b
        {
            return Err(self
                .plugin
                .bad_output(format!("coverage ({a}, {b}) ends before it starts")));
        }
        Ok(span)
    }

    /// Bytes the sketch holds, as the plugin counts them.
    pub fn memory_bytes(&self) -> Result<u64, PluginError> {
        self.run("memory_bytes", |s, api, h| {
            api.sketch_proxy_sketch_plugin().sketch().call_memory_bytes(s, h)
        })
    }

    /// The sketch as bytes, for [`Plugin::restore`].
    pub fn snapshot(&self) -> Result<Vec<u8>, PluginError> {
        self.run("snapshot", |s, api, h| {
            api.sketch_proxy_sketch_plugin().sketch().call_snapshot(s, h)
        })
    }

    /// Every estimate must carry a bound within what the function declared, over at
    /// least one sample.
    fn check<'a>(
        &self,
        function: &str,
        answers: impl Iterator<Item = &'a Estimate>,
    ) -> Result<(), PluginError> {
        let declared = self
            .plugin
            .info
            .functions
            .iter()
            .find(|f| f.name == function)
            .map(|f| f.bound.relative);
        let within =
            |e: &Estimate| declared.is_some_and(|d| e.bound.is_finite() && e.bound >= 0.0 && e.bound <= d);
        for e in answers {
            if !within(e) || e.samples == 0 {
                return Err(self.plugin.bad_output(format!(
                    "{function} answered with bound {} over {} samples; declared bound {declared:?}",
                    e.bound, e.samples
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Sketch {
    fn drop(&mut self) {
        // The guest's destructor is a plugin call like any other: on the pool.
        let plugin = Arc::clone(&self.plugin);
        plugin.pool.install(|| self.drop_here());
    }
}

impl Sketch {
    fn drop_here(&self) {
        let mut guard = self.plugin.slots[self.slot].lock();
        if guard.generation != self.generation {
            return;
        }
        let Some(live) = guard.live.as_mut() else { return };
        // The guest's destructor runs under a deadline like any other call.
        live.store.set_epoch_deadline(self.plugin.deadline_ticks);
        if let Err(e) = self.handle.resource_drop(&mut live.store) {
            let kind = classify(&e, &live.store);
            guard.live = None;
            guard.generation += 1;
            drop(guard);
            self.plugin.trapped(kind, format!("dropping a sketch: {e:#}"));
        }
    }
}

/// Starts `f` on a plugin call thread, so that the plugin calls it makes run there
/// directly instead of each waiting for a thread (many small calls in a row, a remote
/// write's inserts, cost a thread switch each otherwise), and an async caller switches
/// threads once. `f` must not wait for anything that itself waits for a plugin call
/// (such as a lock held across one), or the call threads can all end up waiting. Runs
/// `f` here when there is no host.
pub fn spawn_on_call_pool(f: impl FnOnce() + Send + 'static) {
    match Host::global() {
        Ok(host) => host.pool.spawn(f),
        Err(_) => f(),
    }
}

/// Runs `f` on a plugin call thread and waits for it (runs it here when this is one, or
/// when there is no host), so that the plugin calls `f` makes run where they are instead
/// of each switching threads. `f` must not wait for anything that itself waits for a
/// plugin call, such as a sketch's lock (see [`spawn_on_call_pool`]).
pub fn on_call_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match Host::global() {
        Ok(host) => host.pool.install(f),
        Err(_) => f(),
    }
}

/// Evaluation times in a range request: `start, start+step, ... ≤ end`.
pub fn range_steps(range: RangeRequest) -> u64 {
    if range.step_ms <= 0 || range.end_ms < range.start_ms {
        return 0;
    }
    // i128: `end - start` overflows i64 for extreme timestamps.
    let steps = (i128::from(range.end_ms) - i128::from(range.start_ms)) / i128::from(range.step_ms) + 1;
    u64::try_from(steps).unwrap_or(u64::MAX)
}

/// Deadline ticks for a call timeout (at least one).
fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / sandbox::TICK.as_nanos()).max(1) as u64
}

/// Shared by the loader: the engine plugins run on.
pub(crate) type SharedEngine = Arc<Engine>;

/// A function's bound as people read it: `exact`, `1% (exact below 1000 samples)`,
/// `1e-7%`.
pub fn bound_text(bound: &ErrorBound) -> String {
    match (bound.relative, bound.min_samples) {
        (0.0, _) => "exact".to_owned(),
        (relative, 0) => percent(relative),
        (relative, below) => format!("{} (exact below {below} samples)", percent(relative)),
    }
}

/// A relative error bound as people read it: `1%`, `0.25%`, `1e-7%`.
pub fn percent(relative: f64) -> String {
    let percent = relative * 100.0;
    if percent >= 0.01 {
        // Rounded to what the claim means, not to the float that holds it.
        format!("{}%", (percent * 1e4).round() / 1e4)
    } else {
        format!("{:e}%", (percent * 1e12).round() / 1e12)
    }
}
