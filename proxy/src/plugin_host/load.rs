//! Loading: compile (or reuse) each component, check the contract and the metadata,
//! and reject clashes — each rejection names the file and the reason.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::bindings::{PluginInfo, SketchPluginPre};
use super::error::{LoadError, LoadFailure, Source};
use super::sandbox::{self, HostState};
use super::{CONTRACT, Observer, Plugin, Settings, SharedEngine, ticks};

/// The built-in plugins, compiled for wasm32-wasip2 by the build script.
const BUILT_INS: [(&str, &[u8]); 3] = [
    (
        "quantile",
        include_bytes!(concat!(env!("OUT_DIR"), "/quantile.wasm")),
    ),
    (
        "frequency",
        include_bytes!(concat!(env!("OUT_DIR"), "/frequency.wasm")),
    ),
    ("stats", include_bytes!(concat!(env!("OUT_DIR"), "/stats.wasm"))),
];

/// Names of the built-in plugins.
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    BUILT_INS.iter().map(|(name, _)| *name)
}

/// The engine, the sandboxed linker and the compiled-component cache. One per process
/// ([`Host::global`]), as wasmtime recommends; every (re)load goes through it, so an
/// unchanged plugin is compiled once per process.
pub struct Host {
    engine: SharedEngine,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    pub(super) pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("compiled", &self.compiled.lock().len())
            .finish_non_exhaustive()
    }
}

/// The plugins one configuration loaded, and the files it rejected.
#[derive(Debug, Default)]
pub struct PluginSet {
    plugins: Vec<Arc<Plugin>>,
    rejected: Vec<LoadError>,
}

impl PluginSet {
    /// Loaded plugins: built-ins first, then custom ones by file name.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Files that were not loaded, with the reason.
    pub fn rejected(&self) -> &[LoadError] {
        &self.rejected
    }

    /// The plugin serving PromQL function `name`.
    pub fn for_function(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins
            .iter()
            .find(|p| p.info.functions.iter().any(|f| f.name == name))
    }

    /// The plugin called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.iter().find(|p| p.info.name == name)
    }
}

impl Host {
    /// The process's host, created (engine, deadline ticker) on first use.
    pub fn global() -> Result<&'static Host, String> {
        static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
        HOST.get_or_init(Host::new).as_ref().map_err(Clone::clone)
    }

    fn new() -> Result<Self, String> {
        let engine =
            Arc::new(sandbox::engine().map_err(|e| format!("cannot create the WebAssembly engine: {e:#}"))?);
        sandbox::start_ticker(Arc::downgrade(&engine));
        let linker = sandbox::linker(&engine).map_err(|e| format!("cannot link WASI: {e:#}"))?;
        Ok(Self {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            pool: Arc::new(sandbox::call_pool()?),
        })
    }

    /// Loads the built-ins and every `*.wasm` in `settings.dir`. Never fails as a whole:
    /// a bad file is reported in [`PluginSet::rejected`] and the rest load. Quarantines
    /// are reported to `observer`.
    pub fn load(&self, settings: &Settings, observer: &Arc<dyn Observer>) -> PluginSet {
        let mut set = PluginSet::default();
        for (_, bytes) in BUILT_INS {
            self.admit(&mut set, Source::BuiltIn, bytes, settings, observer);
        }
        if let Some(dir) = &settings.dir {
            match wasm_files(dir) {
                Ok(files) => {
                    for file in files {
                        match std::fs::read(&file) {
                            Ok(bytes) => self.admit(&mut set, Source::File(file), &bytes, settings, observer),
                            Err(e) => set.rejected.push(LoadError {
                                origin: Source::File(file),
                                reason: LoadFailure::Read(e.to_string()),
                            }),
                        }
                    }
                }
                Err(e) => set.rejected.push(LoadError {
                    origin: Source::File(dir.clone()),
                    reason: LoadFailure::Read(e.to_string()),
                }),
            }
        }
        for e in &set.rejected {
            tracing::error!(source = %e.origin, reason = %e.reason, "plugin not loaded");
        }
        set
    }

    /// Validates one component file as loading it next to the built-ins would
    /// (`plugins check`): contract, metadata, clashes with the built-ins.
    pub fn check_file(&self, path: &Path, settings: &Settings) -> Result<PluginInfo, LoadError> {
        let source = Source::File(path.to_owned());
        let bytes = std::fs::read(path).map_err(|e| LoadError {
            origin: source.clone(),
            reason: LoadFailure::Read(e.to_string()),
        })?;
        let only_built_ins = Settings {
            dir: None,
            ..settings.clone()
        };
        let observer: Arc<dyn Observer> = Arc::new(Unobserved);
        let mut set = self.load(&only_built_ins, &observer);
        self.admit(&mut set, source, &bytes, settings, &observer);
        if let Some(rejected) = set.rejected.pop() {
            return Err(rejected);
        }
        set.plugins
            .pop()
            .map(|p| p.info.clone())
            .ok_or_else(|| LoadError {
                origin: Source::File(path.to_owned()),
                reason: LoadFailure::Metadata("not loaded".to_owned()),
            })
    }

    fn admit(
        &self,
        set: &mut PluginSet,
        source: Source,
        bytes: &[u8],
        settings: &Settings,
        observer: &Arc<dyn Observer>,
    ) {
        let reject = |set: &mut PluginSet, reason| {
            set.rejected.push(LoadError {
                origin: source.clone(),
                reason,
            })
        };
        let (info, pre) = match self.pool.install(|| self.prepare(bytes, settings)) {
            Ok(ok) => ok,
            Err(reason) => return reject(set, reason),
        };
        if let Some(owner) = set.by_name(&info.name) {
            let reason = LoadFailure::DuplicateName {
                name: info.name.clone(),
                owner_source: owner.source.clone(),
            };
            return reject(set, reason);
        }
        for f in &info.functions {
            if let Some(owner) = set.for_function(&f.name) {
                let reason = LoadFailure::Clash {
                    function: f.name.clone(),
                    owner: owner.info.name.clone(),
                    owner_source: owner.source.clone(),
                };
                return reject(set, reason);
            }
        }
        let grants = settings.grants.get(&info.name).cloned().unwrap_or_default();
        tracing::info!(plugin = %info.name, version = %info.version, %source,
            functions = ?info.functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), "plugin loaded");
        set.plugins.push(Arc::new(Plugin {
            info,
            source,
            pre,
            slots: (0..settings.instances.max(1)).map(|_| Mutex::default()).collect(),
            quarantined: AtomicBool::new(false),
            quarantine_reason: Mutex::default(),
            memory_limit: settings.memory_limit_bytes,
            deadline_ticks: ticks(settings.call_timeout),
            grants,
            observer: Arc::clone(observer),
            pool: Arc::clone(&self.pool),
        }));
    }

    /// Compile, check the contract, instantiate once and read the metadata.
    fn prepare(
        &self,
        bytes: &[u8],
        settings: &Settings,
    ) -> Result<(PluginInfo, SketchPluginPre<HostState>), LoadFailure> {
        let component = self.compile(bytes, settings)?;
        check_contract(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadFailure::Instantiate(format!("{e:#}")))?;
        let pre = SketchPluginPre::new(pre).map_err(|e| LoadFailure::Contract(format!("{e:#}")))?;
        let mut store = Store::new(&self.engine, HostState::new(settings.memory_limit_bytes, &[]));
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(ticks(settings.call_timeout));
        let api = pre
            .instantiate(&mut store)
            .map_err(|e| LoadFailure::Instantiate(format!("{e:#}")))?;
        let info = api
            .sketch_proxy_sketch_plugin()
            .call_info(&mut store)
            .map_err(|e| LoadFailure::Metadata(format!("info() trapped: {e:#}")))?;
        validate(&info).map_err(LoadFailure::Metadata)?;
        Ok((info, pre))
    }

    fn compile(&self, bytes: &[u8], settings: &Settings) -> Result<Component, LoadFailure> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.compiled.lock().get(&digest) {
            return Ok(c.clone());
        }
        let component = match &settings.cache_dir {
            Some(dir) => self.compile_cached(bytes, &digest, dir),
            None => {
                Component::new(&self.engine, bytes).map_err(|e| LoadFailure::NotAComponent(format!("{e:#}")))
            }
        }?;
        self.compiled.lock().insert(digest, component.clone());
        Ok(component)
    }

    /// Reuses `<dir>/<digest>-<engine>.cwasm` when present; otherwise compiles and writes it.
    fn compile_cached(&self, bytes: &[u8], digest: &[u8; 32], dir: &Path) -> Result<Component, LoadFailure> {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{name}-{:016x}.cwasm", engine_hash.finish()));
        if let Ok(precompiled) = std::fs::read(&path) {
            match self.load_precompiled(&precompiled) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "precompiled plugin unusable; recompiling")
                }
            }
        }
        let precompiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| LoadFailure::NotAComponent(format!("{e:#}")))?;
        let written = std::fs::create_dir_all(dir).and_then(|()| write_atomically(&path, &precompiled));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot cache the precompiled plugin");
        }
        self.load_precompiled(&precompiled)
            .map_err(|e| LoadFailure::NotAComponent(format!("{e:#}")))
    }

    /// Loads code made by `precompile_component`: ours, either just now or in the cache
    /// directory under a name made of the source's SHA-256 and the engine's hash.
    fn load_precompiled(&self, precompiled: &[u8]) -> wasmtime::Result<Component> {
        #[allow(
            unsafe_code,
            reason = "wasmtime must trust precompiled code; we only pass bytes this host produced"
        )]
        // SAFETY: the bytes come from `Engine::precompile_component` of an engine with the
        // same compatibility hash (it is part of the file name); wasmtime checks the header too.
        unsafe {
            Component::deserialize(&self.engine, precompiled)
        }
    }
}

/// For loads whose plugins never run (`plugins check`).
#[derive(Debug)]
struct Unobserved;

impl Observer for Unobserved {
    fn quarantined(&self, _plugin: &str, _kind: super::TrapKind) {}
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The component must export exactly our contract's interface (same version).
fn check_contract(engine: &wasmtime::Engine, component: &Component) -> Result<(), LoadFailure> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.iter().any(|e| e == CONTRACT) {
        return Ok(());
    }
    let family = CONTRACT.split('@').next().unwrap_or(CONTRACT);
    match exports.iter().find(|e| e.starts_with(family)) {
        Some(other) => Err(LoadFailure::Contract(format!(
            "the component exports {other}, but this proxy speaks {CONTRACT}; rebuild it against that version of wit/sketch.wit"
        ))),
        None => Err(LoadFailure::Contract(format!(
            "the component does not export {CONTRACT} (it exports: {})",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        ))),
    }
}

/// What a plugin says about itself must be usable: names, versions, bounds.
fn validate(info: &PluginInfo) -> Result<(), String> {
    let name_ok = !info.name.is_empty()
        && info.name.len() <= 64
        && info
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(format!(
            "plugin name {:?} must be 1-64 characters of [a-z0-9-]",
            info.name
        ));
    }
    let version_ok = info
        .version
        .split('.')
        .take(3)
        .filter(|p| p.bytes().take_while(u8::is_ascii_digit).count() > 0)
        .count()
        == 3;
    if !version_ok {
        return Err(format!(
            "plugin {} has version {:?}, expected semver such as 1.2.3",
            info.name, info.version
        ));
    }
    if info.functions.is_empty() || info.functions.len() > 32 {
        return Err(format!(
            "plugin {} declares {} functions; 1 to 32 are allowed",
            info.name,
            info.functions.len()
        ));
    }
    for (i, f) in info.functions.iter().enumerate() {
        let ident = f.name.strip_suffix("_over_time").is_some_and(|stem| {
            !stem.is_empty()
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !stem.starts_with(|c: char| c.is_ascii_digit())
        });
        let promql_range = crate::promql::PROMQL_RANGE_FUNCTIONS.contains(&f.name.as_str());
        if !ident && !promql_range {
            return Err(format!(
                "function name {:?} must look like name_over_time ([a-z0-9_]) or be one of \
                 PromQL's {}",
                f.name,
                crate::promql::PROMQL_RANGE_FUNCTIONS.join(", ")
            ));
        }
        if promql_range && !f.scalar_args.is_empty() {
            return Err(format!("function {} takes no scalar arguments in PromQL", f.name));
        }
        if info.functions[..i].iter().any(|g| g.name == f.name) {
            return Err(format!("function {} is declared twice", f.name));
        }
        if f.scalar_args.len() > 8 || f.scalar_args.iter().any(String::is_empty) {
            return Err(format!(
                "function {} must declare at most 8 named scalar arguments",
                f.name
            ));
        }
        let r = f.bound.relative;
        if !(r.is_finite() && (0.0..1.0).contains(&r)) {
            return Err(format!(
                "function {} declares relative error bound {r}; it must be in [0, 1)",
                f.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
