//! What every request shares: the reloadable runtime (configuration and the clients
//! built from it) and the metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::config::RawSource;
use crate::config::{self, Config, ConfigErrors, Overrides};
use crate::downstream::Downstream;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::plugin_host::{Host, Observer, PluginSet};
use crate::sketches::{Rules, SketchStore};
use crate::source::{QueryApi, ReadOrQuery, RemoteRead, Source};

/// Where the configuration comes from, so a reload can read it again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file, if any (`--config`).
    pub path: Option<PathBuf>,
    /// Command-line values applied over the file.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match &self.path {
            Some(path) => config::load_file(path, &self.overrides),
            None => config::load_str("", &self.overrides),
        }
    }
}

/// Everything built from one configuration; replaced as a whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration it was built from.
    pub config: Config,
    /// The downstream client.
    pub downstream: Downstream,
    /// Slots for concurrent queries (`limits.max_concurrent_queries`).
    pub query_slots: Arc<Semaphore>,
    /// The sketch plugins this configuration loaded.
    pub plugins: Arc<PluginSet>,
    /// Which ingested series get sketches.
    pub sketch_rules: Arc<Rules>,
    /// Raw data for local evaluation (`query.source`).
    pub source: Arc<dyn Source>,
}

impl Runtime {
    fn new(config: Config, host: &Host, metrics: &Metrics, observer: &Arc<dyn Observer>) -> Self {
        let plugins = host.load(&config.plugins.settings(), observer);
        metrics.plugins_loaded.set(plugins.plugins().len() as i64);
        metrics.plugins_rejected.set(plugins.rejected().len() as i64);
        let source = raw_source(&config);
        Self {
            source,
            sketch_rules: Arc::new(Rules::new(&config.sketches, &plugins)),
            downstream: Downstream::new(config.downstream.url.clone(), config.downstream.timeout),
            query_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_queries)),
            plugins: Arc::new(plugins),
            config,
        }
    }
}

/// The source local evaluation reads raw data from (`query.source`).
fn raw_source(config: &Config) -> Arc<dyn Source> {
    let q = &config.query;
    let url = &config.downstream.url;
    let max_samples = u64::try_from(q.max_samples).unwrap_or(u64::MAX);
    // Each query's deadline ends its fetch (a 503 timeout); the sources' own timeout
    // is only a backstop, later so that it never wins the race.
    let backstop = q.timeout + std::time::Duration::from_secs(1);
    let query_api = QueryApi::new(url, backstop, max_samples, q.max_read_bytes);
    let remote_read = match RemoteRead::new(url, backstop, max_samples, q.max_read_bytes) {
        Ok(r) => r,
        // The URL was validated with the configuration; this cannot happen.
        Err(e) => return Arc::new(crate::source::Unavailable(e.to_string())),
    };
    match q.source {
        RawSource::Auto => Arc::new(ReadOrQuery::new(remote_read, query_api)),
        RawSource::RemoteRead => Arc::new(remote_read),
        RawSource::QueryApi => Arc::new(query_api),
    }
}

/// The proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    runtime: ArcSwap<Runtime>,
    source: ConfigSource,
    host: &'static Host,
    observer: Arc<dyn Observer>,
    /// The proxy's own metrics.
    pub metrics: Metrics,
    /// The remote-write receiver, when `ingest.enabled`.
    pub ingest: Option<Arc<Ingest>>,
    /// Sketches of ingested series; kept across reloads.
    pub sketches: Arc<SketchStore>,
}

impl Proxy {
    /// State for `config`, which was loaded from `source`. Fails when the WebAssembly
    /// engine cannot be created or an ingest queue cannot be opened.
    pub fn new(config: Config, source: ConfigSource) -> Result<Arc<Self>, String> {
        let metrics = Metrics::new();
        let host = Host::global()?;
        let ingest = if config.ingest.enabled {
            let settings = config.ingest.settings(&config.downstream.url);
            let ingest = Ingest::open(settings, metrics.ingest.clone()).map_err(|e| e.to_string())?;
            Some(Arc::new(ingest))
        } else {
            None
        };
        let observer: Arc<dyn Observer> = Arc::new(metrics.plugin_observer());
        mark_reload(&metrics, true);
        let runtime = Runtime::new(config, host, &metrics, &observer);
        Ok(Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            source,
            host,
            observer,
            sketches: Arc::new(SketchStore::new(metrics.sketches.clone())),
            metrics,
            ingest,
        }))
    }

    /// Starts the background work (remote-write senders). Call once, inside the tokio
    /// runtime that serves.
    pub fn start_background(&self) {
        if let Some(ingest) = &self.ingest {
            ingest.start();
        }
    }

    /// The current runtime; a request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Reads the configuration again and swaps it in; on error the old one stays.
    /// `listen`, `web.route_prefix` and `log` need a restart and are kept as they are.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let mut config = match self.source.load() {
            Ok(config) => config,
            Err(errors) => {
                mark_reload(&self.metrics, false);
                tracing::error!(%errors, "configuration reload failed; keeping the running configuration");
                return Err(errors);
            }
        };
        let current = self.runtime();
        let old = &current.config;
        if config.listen != old.listen
            || config.web != old.web
            || config.log != old.log
            || config.ingest != old.ingest
        {
            tracing::warn!(
                "listen, web, log and ingest settings change only on restart; keeping the running ones"
            );
            config.listen = old.listen;
            config.web = old.web.clone();
            config.log = old.log.clone();
            config.ingest = old.ingest.clone();
        }
        self.runtime.store(Arc::new(Runtime::new(
            config,
            self.host,
            &self.metrics,
            &self.observer,
        )));
        mark_reload(&self.metrics, true);
        tracing::info!(downstream = %self.runtime().downstream.url(), "configuration reloaded");
        Ok(())
    }
}

fn mark_reload(metrics: &Metrics, ok: bool) {
    metrics.reload_success.set(i64::from(ok));
    if ok {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        metrics.reload_success_time.set(now.as_secs_f64());
    }
}
