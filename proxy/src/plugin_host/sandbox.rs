//! Sandbox policy in one place: the engine configuration, what a store may use, and the
//! epoch ticker that enforces call deadlines.

use std::sync::Weak;
use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::Grant;

/// One epoch tick; call deadlines are whole numbers of ticks.
pub(super) const TICK: Duration = Duration::from_millis(5);
/// Most guest stderr kept per instance (panic messages end up here).
const STDERR_BYTES: usize = 16 << 10;

/// The engine every plugin runs on: components on, deadlines by epoch interruption.
pub(super) fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Guests get a bounded native stack; deep recursion traps instead of crashing us.
    config.max_wasm_stack(1 << 20);
    Engine::new(&config)
}

/// The threads every plugin call runs on: one per core, so plugins never take more
/// of the machine than that, whoever calls. They are plain threads, outside any tokio
/// runtime: wasmtime-wasi's synchronous WASI (a guest writing to stderr, as every Rust
/// panic message does) blocks on a runtime of its own, which panics on a thread that
/// is running async tasks. A guest's stack lives on the calling thread
/// (`max_wasm_stack`), so they get the proxy's large stacks.
pub(super) fn call_pool() -> Result<rayon::ThreadPool, String> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("plugin-{i}"))
        .stack_size(crate::THREAD_STACK_BYTES)
        .build()
        .map_err(|e| format!("cannot start the plugin call threads: {e}"))
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
pub(super) fn start_ticker(engine: Weak<Engine>) {
    let spawned = std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the plugin deadline ticker; plugin calls will time out");
    }
}

/// The WASI imports every plugin may link against. What they can reach is decided per
/// instance by [`HostState::new`].
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // Epoch deadlines interrupt wasm, not a host call blocked in a sleep, so a guest
    // that could wait on a clock could hold its instance forever. Waiting is denied.
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_new(name, move |_, _, _, _| {
            Err(wasmtime::Error::msg(format!(
                "plugins may not sleep or wait: {name} is denied"
            )))
        })?;
    }
    Ok(linker)
}

/// Per-instance state: the locked-down WASI context and the memory cap.
pub(super) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MemoryCap,
    pub(super) stderr: MemoryOutputPipe,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").finish_non_exhaustive()
    }
}

impl HostState {
    /// No preopened directories, no sockets, no environment, a frozen clock and fixed
    /// randomness, unless `grants` says otherwise. Stdout is discarded; stderr is kept
    /// (bounded) so a panic message can be logged.
    pub(super) fn new(memory_limit: usize, grants: &[Grant]) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Sketches must be reproducible: same samples, same answers.
            .secure_random(Deterministic::new(vec![0x5e, 0x7c, 0x11, 0x3a]))
            .insecure_random(Deterministic::new(vec![0x2b, 0x9d, 0x40, 0xe6]))
            .insecure_random_seed(0x005c_e7c4_9a0b);
        if !grants.contains(&Grant::Clock) {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if grants.contains(&Grant::Environment) {
            wasi.inherit_env();
        }
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                limit: memory_limit,
                hit: false,
                size: 0,
            },
            stderr,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always says the epoch start: plugins must not depend on time.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The per-instance memory cap. Growing past it traps (rather than letting `memory.grow`
/// fail and the guest allocator abort), and `hit` tells the host why the call trapped.
#[derive(Debug)]
pub(super) struct MemoryCap {
    limit: usize,
    pub(super) hit: bool,
    /// Bytes of linear memory the instance holds (it never shrinks).
    pub(super) size: usize,
}

/// The trap raised when a guest grows past [`MemoryCap`].
#[derive(Debug, thiserror::Error)]
#[error("memory would grow to {desired} bytes, over the {limit}-byte limit")]
pub(super) struct MemoryLimitExceeded {
    desired: usize,
    limit: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.limit,
            }
            .into());
        }
        self.size = self.size.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any honest plugin.
        Ok(desired <= 1_000_000)
    }
}
