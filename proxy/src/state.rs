//! What every request shares: the reloadable runtime (configuration and the clients
//! built from it) and the metrics.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::config::RawSource;
use crate::config::{self, Config, ConfigErrors, Overrides};
use crate::downstream::Downstream;
use crate::endpoints::Endpoint;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::plugin_host::{Host, Observer, PluginSet};
use crate::sketches::backfill::{self, Job};
use crate::sketches::{Rules, SketchStore};
use crate::source::{Fanout, Member, QueryApi, ReadOrQuery, RemoteRead, Source};

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
    /// Queries waiting for a slot (`limits.max_queued_queries`).
    pub queries_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// The sketch plugins this configuration loaded.
    pub plugins: Arc<PluginSet>,
    /// Which ingested series get sketches.
    pub sketch_rules: Arc<Rules>,
    /// Raw data for local evaluation (`query.source`).
    pub source: Arc<dyn Source>,
    /// The results cache (`cache.enabled`).
    pub cache: Option<Arc<crate::cache::ResultsCache>>,
    /// Every read endpoint, when there are several (`downstream.endpoints`).
    pub targets: Vec<crate::http::fanout::Target>,
    /// The PromQL requests may use: the shape limits and the loaded plugins' functions.
    pub grammar: crate::promql::Grammar,
    /// `query.log_file`, open.
    pub query_log: Option<Arc<crate::http::query_log::QueryLog>>,
}

impl Runtime {
    fn new(config: Config, host: &Host, metrics: &Metrics, observer: &Arc<dyn Observer>) -> Self {
        let plugins = host.load(&config.plugins.settings(), observer);
        metrics.plugins_loaded.set(plugins.plugins().len() as i64);
        metrics.plugins_rejected.set(plugins.rejected().len() as i64);
        // One per configured endpoint, shared by both fan-outs.
        let endpoints: Vec<Arc<Endpoint>> = config
            .downstream
            .endpoints
            .iter()
            .map(|e| {
                let mut endpoint = Endpoint::new(
                    &e.url.to_string(),
                    e.external_labels.clone(),
                    (e.min_time, e.max_time),
                );
                endpoint.sketch_proxy = e.kind == RawSource::SketchProxy;
                Arc::new(endpoint)
            })
            .collect();
        let source = raw_source(&config, metrics, &endpoints);
        if config.sketches.kept_points.is_some() {
            tracing::warn!(
                "sketches.kept_points is no longer used and is ignored: the results cache (cache.max_bytes) keeps rule queries' steps with every other query's"
            );
        }
        let custom: Vec<crate::promql::CustomFunction> = plugins
            .plugins()
            .iter()
            .flat_map(|p| p.info().functions.iter())
            .map(|f| crate::promql::CustomFunction {
                name: f.name.clone(),
                scalar_args: f.scalar_args.len(),
            })
            .collect();
        let query_log = config.query.log_file.as_deref().and_then(|path| {
            crate::http::query_log::QueryLog::open(path, metrics.query_log_dropped.clone())
                .map_err(|error| tracing::error!(file = %path.display(), %error, "cannot open the query log"))
                .ok()
                .map(Arc::new)
        });
        Self {
            query_log,
            grammar: crate::promql::Grammar::new(config.limits.shape(), &custom),
            source,
            cache: config.cache.enabled.then(|| {
                Arc::new(crate::cache::ResultsCache::new(
                    crate::cache::Settings {
                        max_bytes: config.cache.max_bytes,
                        max_freshness: config.cache.max_freshness,
                        max_ttl: config.cache.max_ttl,
                        longest_query: config.query.timeout,
                    },
                    metrics.cache_invalidations.clone(),
                ))
            }),
            targets: if config.fans_out() {
                config
                    .downstream
                    .endpoints
                    .iter()
                    .zip(&endpoints)
                    .map(|(e, endpoint)| crate::http::fanout::Target {
                        endpoint: Arc::clone(endpoint),
                        client: Downstream::new(e.url.clone(), &e.http, config.downstream.timeout),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            sketch_rules: Arc::new(Rules::new(&config.sketches, &plugins)),
            downstream: Downstream::new(
                config.downstream.url.clone(),
                &config.downstream.http,
                config.downstream.timeout,
            ),
            query_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_queries)),
            queries_waiting: Arc::default(),
            plugins: Arc::new(plugins),
            config,
        }
    }
}

/// The source local evaluation reads raw data from: `downstream.url` as
/// `query.source` says, or every endpoint of `downstream.endpoints` (`shared`) read as
/// one.
fn raw_source(config: &Config, metrics: &Metrics, shared: &[Arc<Endpoint>]) -> Arc<dyn Source> {
    let endpoints = &config.downstream.endpoints;
    if !config.fans_out() {
        let kind = endpoints.first().map_or(config.query.source, |e| e.kind);
        return endpoint_source(config, &config.downstream.url, &config.downstream.http, kind);
    }
    let members = endpoints
        .iter()
        .zip(shared)
        .map(|(e, endpoint)| Member {
            endpoint: Arc::clone(endpoint),
            source: endpoint_source(config, &e.url, &e.http, e.kind),
        })
        .collect();
    Arc::new(Fanout::new(
        members,
        config.query.replica_labels.clone(),
        config.query.endpoint_timeout,
        config.query.endpoint_concurrency,
        metrics.endpoint_up.clone(),
    ))
}

/// The source of one endpoint.
fn endpoint_source(
    config: &Config,
    url: &http::Uri,
    http: &config::HttpClientConfig,
    kind: RawSource,
) -> Arc<dyn Source> {
    let q = &config.query;
    let max_samples = u64::try_from(q.max_samples).unwrap_or(u64::MAX);
    // Each query's deadline ends its fetch (a 503 timeout); the sources' own timeout
    // is only a backstop, later so that it never wins the race.
    let backstop = q.timeout + std::time::Duration::from_secs(1);
    let client = crate::outbound::Outbound::new(http, url.scheme_str() == Some("https"), None);
    let query_api = QueryApi::new(url, &client, backstop, max_samples, q.max_read_bytes);
    let remote_read = match RemoteRead::new(url, &client, backstop, max_samples, q.max_read_bytes) {
        Ok(r) => r,
        // The URL was validated with the configuration; this cannot happen.
        Err(e) => return Arc::new(crate::source::Unavailable(e.to_string())),
    };
    match kind {
        RawSource::Auto | RawSource::SketchProxy => Arc::new(ReadOrQuery::new(remote_read, query_api)),
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
    /// TLS and basic auth of the proxy's own door (`web.config_file`).
    pub door: crate::http::door::Door,
    /// Identical queries in flight, answered once.
    pub collapser: crate::http::collapse::Collapser,
    /// The last hour of answered queries, for the status page.
    pub history: crate::status::History,
    /// The tokio runtime background work runs on, once started.
    background: OnceLock<tokio::runtime::Handle>,
    /// Backfills planned before the background work started.
    unstarted: Mutex<Vec<Arc<Job>>>,
}

impl Proxy {
    /// State for `config`, which was loaded from `source`. Fails when the WebAssembly
    /// engine cannot be created or an ingest queue cannot be opened.
    pub fn new(config: Config, source: ConfigSource) -> Result<Arc<Self>, String> {
        let metrics = Metrics::new();
        let door =
            crate::http::door::Door::open(config.web.config_file.as_deref()).map_err(|e| e.to_string())?;
        let host = Host::global()?;
        let ingest = if config.ingest.enabled {
            let settings = config.ingest.settings(&config.downstream);
            let ingest = Ingest::open(settings, metrics.ingest.clone()).map_err(|e| e.to_string())?;
            Some(Arc::new(ingest))
        } else {
            None
        };
        let observer: Arc<dyn Observer> = Arc::new(metrics.plugin_observer());
        mark_reload(&metrics, true);
        // Sketches come only from remote write; with it on, a snapshot may wait.
        let sketches = Arc::new(if config.ingest.enabled {
            SketchStore::restoring(metrics.sketches.clone())
        } else {
            SketchStore::new(metrics.sketches.clone())
        });
        let runtime = Runtime::new(config, host, &metrics, &observer);
        let unstarted = Mutex::new(plan_backfills(&sketches, &runtime));
        Ok(Arc::new(Self {
            history: crate::status::History::default(),
            collapser: crate::http::collapse::Collapser::new(
                metrics.collapsed_requests.clone(),
                metrics.collapsible_in_flight.clone(),
            ),
            runtime: ArcSwap::from_pointee(runtime),
            source,
            host,
            observer,
            sketches,
            metrics,
            ingest,
            door,
            background: OnceLock::new(),
            unstarted,
        }))
    }

    /// Starts the background work (remote-write senders, backfills). Call inside the
    /// tokio runtime that serves; later calls do nothing.
    pub fn start_background(self: &Arc<Self>) {
        if self.background.set(tokio::runtime::Handle::current()).is_err() {
            return;
        }
        if let Some(ingest) = &self.ingest {
            ingest.start();
            self.start_snapshots();
            self.start_send_rates();
        }
        for job in std::mem::take(&mut *self.unstarted.lock()) {
            self.spawn_backfill(job);
        }
    }

    /// Counts every destination's sent samples each history slot, for the status page's
    /// send rates.
    fn start_send_rates(self: &Arc<Self>) {
        let proxy = Arc::downgrade(self);
        tokio::spawn(async move {
            let slot = std::time::Duration::from_secs(crate::status::history::SLOT_SECONDS as u64);
            loop {
                {
                    let Some(proxy) = proxy.upgrade() else { return };
                    let config = &proxy.runtime().config;
                    let now = crate::clock::now_ms() / 1000;
                    for destination in config.ingest.named_destinations(&config.downstream) {
                        let labels = crate::metrics::DestinationLabels {
                            destination: destination.name.clone(),
                        };
                        let sent = proxy
                            .metrics
                            .ingest
                            .samples_sent
                            .get(&labels)
                            .map_or(0, |c| c.get());
                        proxy.history.count_sent(&destination.name, now, sent);
                    }
                }
                tokio::time::sleep(slot).await;
            }
        });
    }

    /// Restores the sketches from the snapshot, then every `sketches.snapshot_interval`
    /// (read again each time: reloadable) drops idle sketches and snapshots the rest.
    fn start_snapshots(self: &Arc<Self>) {
        let proxy = Arc::downgrade(self);
        tokio::spawn(async move {
            {
                let Some(proxy) = proxy.upgrade() else { return };
                let runtime = proxy.runtime();
                let dir = proxy.sketch_dir();
                let (store, rules, plugins) = (
                    proxy.sketches.clone(),
                    runtime.sketch_rules.clone(),
                    runtime.plugins.clone(),
                );
                drop(proxy);
                if tokio::task::spawn_blocking(move || store.restore_from(&dir, &rules, &plugins))
                    .await
                    .is_err()
                {
                    tracing::error!("sketch restore stopped; the backfills read the whole retention");
                }
            }
            loop {
                let Some(interval) = proxy
                    .upgrade()
                    .map(|p| p.runtime().config.sketches.snapshot_interval)
                else {
                    return;
                };
                tokio::time::sleep(interval).await;
                let Some(proxy) = proxy.upgrade() else { return };
                // A panic in it is logged by the runtime; the next one tries again.
                let _ = tokio::task::spawn_blocking(move || {
                    proxy.sketches.evict_idle(crate::clock::now_ms());
                    proxy.save_sketches();
                })
                .await;
            }
        });
    }

    /// Where the sketches are snapshotted.
    fn sketch_dir(&self) -> PathBuf {
        let config = &self.runtime().config;
        config.sketches.data_dir(&config.ingest.queue_dir)
    }

    /// Snapshots the sketches now (blocking: a plugin call per sketch): periodically,
    /// and on shutdown. Does nothing before the restore ended (a partial store must not
    /// replace the snapshot) or when nothing is sketched.
    pub fn save_sketches(&self) {
        if self.ingest.is_none() || !self.sketches.restore_finished() || self.sketches.series_count() == 0 {
            return;
        }
        // Errors are logged and counted inside.
        let _ = self.sketches.snapshot_to(&self.sketch_dir());
    }

    /// Runs `job` in the background, or queues it until the background work starts.
    fn spawn_backfill(self: &Arc<Self>, job: Arc<Job>) {
        let Some(handle) = self.background.get() else {
            self.unstarted.lock().push(job);
            return;
        };
        let proxy = Arc::downgrade(self);
        let env = move || {
            let proxy = proxy.upgrade()?;
            let runtime = proxy.runtime();
            Some(backfill::Env {
                rules: runtime.sketch_rules.clone(),
                plugins: runtime.plugins.clone(),
                source: runtime.source.clone(),
                ingest: proxy.ingest.clone(),
            })
        };
        handle.spawn(backfill::run(self.sketches.clone(), job, env));
    }

    /// The current runtime; a request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Reads the configuration again and swaps it in; on error the old one stays.
    /// `listen`, `web.route_prefix` and `log` need a restart and are kept as they are.
    pub fn reload(self: &Arc<Self>) -> Result<(), ConfigErrors> {
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
        let runtime = Runtime::new(config, self.host, &self.metrics, &self.observer);
        // Sketches the new rules do not want, or whose plugin was quarantined, go; the
        // rules' next writes (and backfills) create what is missing.
        self.sketches.prune(&runtime.sketch_rules);
        // Before the swap, so that sketches the new rules create wait for their backfill.
        let jobs = plan_backfills(&self.sketches, &runtime);
        self.runtime.store(Arc::new(runtime));
        for job in jobs {
            self.spawn_backfill(job);
        }
        mark_reload(&self.metrics, true);
        tracing::info!(downstream = %self.runtime().downstream.url(), "configuration reloaded");
        Ok(())
    }
}

/// The backfills `runtime`'s rules need (none when `sketches.backfill` is off).
fn plan_backfills(sketches: &SketchStore, runtime: &Runtime) -> Vec<Arc<Job>> {
    if runtime.config.sketches.backfill {
        sketches.plan_backfills(&runtime.sketch_rules)
    } else {
        Vec::new()
    }
}

fn mark_reload(metrics: &Metrics, ok: bool) {
    metrics.reload_success.set(i64::from(ok));
    if ok {
        let now = crate::clock::since_epoch();
        metrics.reload_success_time.set(now.as_secs_f64());
    }
}
