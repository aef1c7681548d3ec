//! The proxy's own metrics, served at `/metrics` in the Prometheus text format, or in
//! OpenMetrics when the scraper asks for it. Every family is created here so the set
//! of names is visible in one place.

mod classic;
mod process;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::plugin_host::{self, TrapKind};

/// Latency buckets in seconds: from sub-millisecond proxy overhead to Prometheus' 2 m
/// query timeout.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Labels of a served request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route, e.g. `/api/v1/query`.
    pub handler: &'static str,
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels naming the path that answered a query.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnsweredByLabels {
    /// `downstream`, `engine` or `sketch`.
    pub answered_by: &'static str,
}

/// Labels of a results-cache lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `partial` or `miss`.
    pub result: &'static str,
}

/// Labels of `sketch_proxy_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: &'static str,
}

/// Labels naming a read endpoint.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Its URL.
    pub endpoint: String,
}

/// Labels naming a route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    /// Route, e.g. `/api/v1/query`.
    pub handler: &'static str,
}

/// Labels of a downstream failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DownstreamErrorLabels {
    /// Route, e.g. `/api/v1/query`.
    pub handler: &'static str,
    /// `timeout` or `unreachable`.
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests served, by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to serve a request (to response headers), by route.
    pub request_duration: HistogramFamily<HandlerLabels>,
    /// Time downstream took to answer (to response headers), by route.
    pub downstream_duration: HistogramFamily<HandlerLabels>,
    /// Downstream requests that got no answer, by route and reason.
    pub downstream_errors: Family<DownstreamErrorLabels, Counter>,
    /// Queries holding a concurrency slot.
    pub queries_in_flight: Gauge,
    /// Queries answered, by path (`downstream`, `engine`, `sketch`; an answer from
    /// sketches and the engine counts once for each).
    pub queries: Family<AnsweredByLabels, Counter>,
    /// Cacheable queries by how the results cache answered (`hit`, `partial`, `miss`).
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Bytes the results cache holds (set at each scrape).
    pub cache_bytes: Gauge,
    /// Entries (query keys) in the results cache (set at each scrape).
    pub cache_entries: Gauge,
    /// Results-cache entries dropped because a late sample changed them.
    pub cache_invalidations: Counter,
    /// Queries refused because every slot was taken.
    pub queries_rejected: Counter,
    /// Queries waiting for a concurrency slot.
    pub queries_waiting: Gauge,
    /// Time to answer a query locally: fetch, evaluation and encoding.
    pub local_query_duration: Histogram,
    /// Local evaluations stopped because the client went away.
    pub local_queries_canceled: Counter,
    /// 1 if the last configuration reload worked, else 0.
    pub reload_success: Gauge,
    /// When the configuration was last loaded successfully (Unix seconds).
    pub reload_success_time: Gauge<f64, AtomicU64>,
    /// Plugins loaded by the running configuration.
    pub plugins_loaded: Gauge,
    /// Plugin files the running configuration could not load.
    pub plugins_rejected: Gauge,
    /// Plugins quarantined after a trap, by plugin and reason.
    pub plugin_quarantines: Family<QuarantineLabels, Counter>,
    /// Queries answered with the answer of an identical one in flight.
    pub collapsed_requests: Counter,
    /// Queries answering, or waiting for, an identical one.
    pub collapsible_in_flight: Gauge,
    /// Query-log lines dropped because the writer fell behind.
    pub query_log_dropped: Counter,
    /// Plugin call latency, by plugin and call.
    pub plugin_calls: Family<PluginCallLabels, Histogram>,
    /// Over several endpoints: whether each answered its last read or probe.
    pub endpoint_up: Family<EndpointLabels, Gauge>,
    /// Remote-write ingest and forwarding.
    pub ingest: IngestMetrics,
    /// Sketches of ingested series.
    pub sketches: SketchMetrics,
}

/// Metrics of the sketch store.
#[derive(Debug, Clone, Default)]
pub struct SketchMetrics {
    /// Samples inserted into sketches (once per sketch).
    pub samples_sketched: Counter,
    /// Samples not inserted, by reason (`out_of_order`, `plugin_error`).
    pub samples_dropped: Family<ReasonLabels, Counter>,
    /// Series with sketches.
    pub series: Gauge,
    /// Bytes all sketches hold, as their plugins last reported.
    pub memory_bytes: Gauge,
    /// Series a limit kept from getting sketches, by limit.
    pub series_refused: Family<ReasonLabels, Counter>,
    /// Backfills under way.
    pub backfills_running: Gauge,
    /// Samples read back from downstream by backfills.
    pub backfill_samples: Counter,
    /// Failed backfill reads (each is retried).
    pub backfill_failures: Counter,
    /// Share of its span each rule's backfill has read, 0 to 1.
    pub backfill_progress: Family<RuleLabels, Gauge<f64, AtomicU64>>,
    /// Sketches dropped: idle past their retention, unwanted after a reload, or their
    /// plugin quarantined.
    pub dropped: Counter,
    /// Snapshots written, by result (`ok`, `error`).
    pub snapshots: Family<ResultLabels, Counter>,
    /// Bytes of the last snapshot written.
    pub snapshot_bytes: Gauge,
    /// When the last snapshot was written, Unix seconds.
    pub snapshot_time: Gauge<f64, AtomicU64>,
    /// Sketches read back from the snapshot at start, by result (`restored`,
    /// `damaged`, `foreign`, `dropped`).
    pub restored: Family<ResultLabels, Counter>,
    /// Share of the snapshot file read back, 0 to 1.
    pub restore_progress: Gauge<f64, AtomicU64>,
}

/// A `result` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// What happened.
    pub result: String,
}

impl From<&str> for ResultLabels {
    fn from(result: &str) -> Self {
        Self {
            result: result.to_owned(),
        }
    }
}

/// Labels naming a sketch rule.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Selector, functions and retention.
    pub rule: String,
}

impl From<&str> for RuleLabels {
    fn from(rule: &str) -> Self {
        Self {
            rule: rule.to_owned(),
        }
    }
}

impl SketchMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sketch");
        r.register(
            "samples",
            "Samples inserted into sketches, once per sketch",
            self.samples_sketched.clone(),
        );
        r.register(
            "samples_dropped",
            "Samples not inserted into a sketch, by reason",
            self.samples_dropped.clone(),
        );
        r.register("series", "Series with sketches", self.series.clone());
        r.register(
            "memory_bytes",
            "Bytes all sketches hold, as their plugins report",
            self.memory_bytes.clone(),
        );
        r.register(
            "series_refused",
            "Series a limit (sketches.max_series, sketches.max_memory_bytes) kept from getting sketches",
            self.series_refused.clone(),
        );
        r.register(
            "backfills_running",
            "Sketch rules whose history is being read back from downstream",
            self.backfills_running.clone(),
        );
        r.register(
            "backfill_samples",
            "Samples read back from downstream to backfill sketches",
            self.backfill_samples.clone(),
        );
        r.register(
            "backfill_failures",
            "Failed backfill reads; each is retried",
            self.backfill_failures.clone(),
        );
        r.register(
            "backfill_progress_ratio",
            "Share of its retained span each sketch rule's backfill has read",
            self.backfill_progress.clone(),
        );
        r.register(
            "dropped",
            "Sketches dropped: idle past their retention, unwanted after a reload, or their plugin quarantined",
            self.dropped.clone(),
        );
        r.register(
            "snapshots",
            "Sketch snapshots written to sketches.data_dir, by result",
            self.snapshots.clone(),
        );
        r.register(
            "snapshot_bytes",
            "Size of the last sketch snapshot written",
            self.snapshot_bytes.clone(),
        );
        r.register(
            "snapshot_time_seconds",
            "When the last sketch snapshot was written, Unix seconds",
            self.snapshot_time.clone(),
        );
        r.register(
            "restored",
            "Sketches read back from the snapshot at start, by result (restored, damaged, foreign, dropped)",
            self.restored.clone(),
        );
        r.register(
            "restore_progress_ratio",
            "Share of the sketch snapshot read back at start",
            self.restore_progress.clone(),
        );
    }
}

/// A `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

impl From<&str> for ReasonLabels {
    fn from(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
        }
    }
}

/// A `destination` label: a remote-write destination's name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// Destination name.
    pub destination: String,
}

impl From<&str> for DestinationLabels {
    fn from(destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
        }
    }
}

/// A destination and a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationReasonLabels {
    /// Destination name.
    pub destination: String,
    /// Why: the HTTP status the destination answered, or `corrupt`.
    pub reason: String,
}

impl From<(&str, &str)> for DestinationReasonLabels {
    fn from((destination, reason): (&str, &str)) -> Self {
        Self {
            destination: destination.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Remote-write metrics, shared with the ingest path and the senders.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Samples in accepted remote-write requests.
    pub samples_received: Counter,
    /// Samples in refused requests (when the body could be read), by reason.
    pub samples_rejected: Family<ReasonLabels, Counter>,
    /// Refused requests, by reason.
    pub requests_rejected: Family<ReasonLabels, Counter>,
    /// Samples written to a destination's queue.
    pub samples_queued: Family<DestinationLabels, Counter>,
    /// Samples a destination accepted.
    pub samples_sent: Family<DestinationLabels, Counter>,
    /// Samples in sends that are retried (counted once per retry).
    pub samples_retried: Family<DestinationLabels, Counter>,
    /// Refused requests sent again as two halves, to find the records refused.
    pub requests_split: Family<DestinationLabels, Counter>,
    /// Samples a destination refused for good, by status.
    pub samples_failed: Family<DestinationReasonLabels, Counter>,
    /// Bytes waiting in a destination's queue.
    pub queue_bytes: Family<DestinationLabels, Gauge>,
    /// Age of the oldest record being sent to a destination (0 when idle).
    pub queue_age_seconds: Family<DestinationLabels, Gauge<f64, AtomicU64>>,
}

impl IngestMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("remote_write");
        r.register(
            "samples_received",
            "Samples in accepted remote-write requests",
            self.samples_received.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples in refused remote-write requests, by reason",
            self.samples_rejected.clone(),
        );
        r.register(
            "requests_rejected",
            "Refused remote-write requests, by reason",
            self.requests_rejected.clone(),
        );
        r.register(
            "samples_queued",
            "Samples durably queued for a destination",
            self.samples_queued.clone(),
        );
        r.register(
            "samples_sent",
            "Samples a destination accepted",
            self.samples_sent.clone(),
        );
        r.register(
            "samples_retried",
            "Samples in sends that failed and are retried",
            self.samples_retried.clone(),
        );
        r.register(
            "requests_split",
            "Requests a destination refused that were sent again as two halves, to leave out only the refused records",
            self.requests_split.clone(),
        );
        r.register(
            "samples_failed",
            "Samples a destination refused for good (not retried), by status",
            self.samples_failed.clone(),
        );
        r.register(
            "queue_bytes",
            "Bytes waiting in a destination's queue",
            self.queue_bytes.clone(),
        );
        r.register(
            "queue_age_seconds",
            "Age of the oldest record being sent to a destination",
            self.queue_age_seconds.clone(),
        );
    }
}

/// Labels of a plugin quarantine.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuarantineLabels {
    /// The plugin's name.
    pub plugin: String,
    /// Why: `deadline`, `memory`, `panic`, `bad_output` or `trap`.
    pub reason: &'static str,
}

/// Labels of a plugin call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    /// The plugin's name.
    pub plugin: String,
    /// `create`, `restore`, `insert`, `query`, `query_range`, `coverage`,
    /// `memory_bytes` or `snapshot`.
    pub call: &'static str,
}

/// Plugin calls take microseconds (an insert) to seconds (a long range query).
fn plugin_call_histogram() -> Histogram {
    Histogram::new([
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
        0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

/// Feeds plugin-host events into [`Metrics::plugin_quarantines`] and
/// [`Metrics::plugin_calls`].
#[derive(Debug, Clone)]
pub struct PluginObserver {
    quarantines: Family<QuarantineLabels, Counter>,
    calls: Family<PluginCallLabels, Histogram>,
}

impl plugin_host::Observer for PluginObserver {
    fn quarantined(&self, plugin: &str, kind: TrapKind) {
        let reason = match kind {
            TrapKind::Deadline => "deadline",
            TrapKind::MemoryLimit => "memory",
            TrapKind::Panic => "panic",
            TrapKind::BadOutput => "bad_output",
            TrapKind::Other => "trap",
        };
        self.quarantines
            .get_or_create(&QuarantineLabels {
                plugin: plugin.to_owned(),
                reason,
            })
            .inc();
    }

    fn called(&self, plugin: &str, call: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&PluginCallLabels {
                plugin: plugin.to_owned(),
                call,
            })
            .observe(seconds);
    }
}

impl Metrics {
    /// Creates and registers every family under the `sketch_proxy` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("sketch_proxy");
        let m = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            downstream_duration: Family::new_with_constructor(latency_histogram),
            downstream_errors: Family::default(),
            queries_in_flight: Gauge::default(),
            queries: Family::default(),
            cache_requests: Family::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_invalidations: Counter::default(),
            queries_rejected: Counter::default(),
            queries_waiting: Gauge::default(),
            local_query_duration: latency_histogram(),
            local_queries_canceled: Counter::default(),
            reload_success: Gauge::default(),
            reload_success_time: Gauge::default(),
            plugins_loaded: Gauge::default(),
            plugins_rejected: Gauge::default(),
            plugin_quarantines: Family::default(),
            plugin_calls: Family::new_with_constructor(plugin_call_histogram),
            query_log_dropped: Counter::default(),
            collapsed_requests: Counter::default(),
            collapsible_in_flight: Gauge::default(),
            endpoint_up: Family::default(),
            ingest: IngestMetrics::default(),
            sketches: SketchMetrics::default(),
            registry: Registry::default(),
        };
        m.ingest.register(registry);
        m.sketches.register(registry);
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "A metric with a constant 1 labeled by the version sketch-proxy was built from",
            build_info,
        );
        registry.register("http_requests", "HTTP requests served", m.requests.clone());
        registry.register(
            "queries",
            "Queries answered, by the path that answered (downstream, engine, sketch); an answer from sketches and the engine counts for both",
            m.queries.clone(),
        );
        registry.register(
            "results_cache_requests",
            "Cacheable query and query_range requests by how the results cache answered: hit (all of it), partial (some steps computed), miss",
            m.cache_requests.clone(),
        );
        registry.register(
            "results_cache_bytes",
            "Bytes held by the results cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "results_cache_entries",
            "Queries with answers in the results cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "results_cache_invalidations",
            "Results-cache entries dropped because a sample written through the proxy changed them",
            m.cache_invalidations.clone(),
        );
        registry.register(
            "endpoint_up",
            "Over several endpoints: 1 if the endpoint answered its last read or readiness probe, else 0",
            m.endpoint_up.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, up to the response headers",
            m.request_duration.clone(),
        );
        registry.register(
            "downstream_request_duration_seconds",
            "Time downstream took to send response headers",
            m.downstream_duration.clone(),
        );
        registry.register(
            "downstream_errors",
            "Downstream requests that got no answer",
            m.downstream_errors.clone(),
        );
        registry.register(
            "queries_in_flight",
            "Queries holding a concurrency slot",
            m.queries_in_flight.clone(),
        );
        registry.register(
            "queries_rejected",
            "Queries refused because limits.max_concurrent_queries were running and none came free in time",
            m.queries_rejected.clone(),
        );
        registry.register(
            "queries_waiting",
            "Queries waiting for a concurrency slot (limits.max_queued_queries)",
            m.queries_waiting.clone(),
        );
        registry.register(
            "local_query_duration_seconds",
            "Time to answer a query in the proxy: raw-data fetch, evaluation and encoding",
            m.local_query_duration.clone(),
        );
        registry.register(
            "local_queries_canceled",
            "Local evaluations stopped because the client went away",
            m.local_queries_canceled.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload succeeded",
            m.reload_success.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            m.reload_success_time.clone(),
        );
        registry.register(
            "plugins_loaded",
            "Sketch plugins loaded",
            m.plugins_loaded.clone(),
        );
        registry.register(
            "plugins_rejected",
            "Plugin files the running configuration could not load (see the log for why)",
            m.plugins_rejected.clone(),
        );
        registry.register(
            "plugin_quarantines",
            "Plugins taken out of service after a trap, by reason",
            m.plugin_quarantines.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time of calls into plugins, by plugin and call, waiting for a free instance included",
            m.plugin_calls.clone(),
        );
        registry.register(
            "collapsed_queries",
            "query and query_range requests answered with the answer of an identical request in flight",
            m.collapsed_requests.clone(),
        );
        registry.register(
            "collapsible_queries_in_flight",
            "query and query_range requests being answered, alone or with identical ones waiting for their answer",
            m.collapsible_in_flight.clone(),
        );
        registry.register(
            "query_log_dropped_lines",
            "Query-log lines dropped because the file could not be written fast enough",
            m.query_log_dropped.clone(),
        );
        Self { registry: root, ..m }
    }

    /// The observer the plugin host reports to.
    pub fn plugin_observer(&self) -> PluginObserver {
        PluginObserver {
            quarantines: self.plugin_quarantines.clone(),
            calls: self.plugin_calls.clone(),
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn encode_classic(&self) -> String {
        classic::from_openmetrics(&self.encode())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
