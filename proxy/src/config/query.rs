//! `query:`: how `query` and `query_range` requests are answered, and the limits of
//! local evaluation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration, error};

/// Which path answers `query` and `query_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    /// Forward to downstream unless the query uses a function only the proxy knows.
    #[default]
    Auto,
    /// Always evaluate in the proxy, over raw data read from downstream.
    Local,
}

/// Where local evaluation reads raw data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawSource {
    /// Remote read; the query API once downstream answers remote read with 404, 405
    /// or 501 (a Thanos Querier).
    #[default]
    Auto,
    /// `/api/v1/read` only.
    RemoteRead,
    /// `/api/v1/query` with range-vector selectors only, as promxy reads. Stale markers
    /// are invisible this way.
    QueryApi,
    /// Another sketch-proxy (an entry of `downstream.endpoints` only): read as `auto`,
    /// and with `query.push_down` the proxy's own functions (the sketch functions and
    /// those of custom plugins, which it must load too) are pushed to it, so a tier of
    /// leaf proxies answers them from their sketches.
    SketchProxy,
}

/// `query:` section. Reloadable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// `auto` (default) or `local`; the flag `--query.mode` overrides it.
    pub mode: QueryMode,
    /// Where local evaluation reads raw data: `auto` (default), `remote_read` or
    /// `query_api` (not `sketch_proxy`, which only endpoints are).
    pub source: RawSource,
    /// How far back an instant vector looks for a sample, like Prometheus'
    /// `--query.lookback-delta` (default 5m). Must match downstream's for answers to agree.
    #[serde(with = "duration::prometheus")]
    pub lookback_delta: Duration,
    /// Longest local evaluation, fetch included, like `--query.timeout` (default 2m).
    /// A request's own `timeout` parameter can only shorten it.
    #[serde(with = "duration::prometheus")]
    pub timeout: Duration,
    /// Most samples a local evaluation may hold at once, like `--query.max-samples`
    /// (default 50,000,000); past it, 422 `execution`.
    pub max_samples: usize,
    /// Most series all selectors of one query may select together (default 500,000);
    /// past it, 422 `execution`.
    pub max_series: usize,
    /// Most bytes one remote-read answer may hold, compressed or not (default 1 GiB).
    pub max_read_bytes: u64,
    /// Labels that tell replicas apart (`--query.replica-label`, repeatable): read
    /// over several endpoints, series that differ only in them are one series, their
    /// samples deduplicated.
    pub replica_labels: Vec<String>,
    /// Over several endpoints: leave out the ones that fail or do not answer within
    /// `endpoint_timeout`, answering from the rest with a warning (default true, as
    /// Thanos' `--query.partial-response`). A request's `partial_response` parameter
    /// overrides it.
    pub partial_response: bool,
    /// How long one endpoint may take over several (default 30s).
    #[serde(with = "duration::prometheus")]
    pub endpoint_timeout: Duration,
    /// How many endpoints one read asks at once (default 16); the others wait their
    /// turn. Bounds the connections and memory one request takes over many shards.
    pub endpoint_concurrency: usize,
    /// A file to append one JSON line per `query` and `query_range` to, as Prometheus'
    /// `query_log_file`: the query, its parameters, the path that answered, seconds per
    /// stage, samples read, the client and the trace id. Unset (default): no query log.
    pub log_file: Option<PathBuf>,
    /// Over several endpoints that all have a query API and hold disjoint series
    /// (told apart by external labels, no replicas): send each endpoint the parts of a
    /// query it can answer alone (per-series subtrees, partial aggregates) and merge
    /// the answers, instead of reading all raw data into the proxy (default false).
    pub push_down: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            mode: QueryMode::Auto,
            source: RawSource::Auto,
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_series: 500_000,
            max_read_bytes: 1 << 30,
            replica_labels: Vec::new(),
            partial_response: true,
            endpoint_timeout: Duration::from_secs(30),
            endpoint_concurrency: 16,
            log_file: None,
            push_down: false,
        }
    }
}

impl QueryConfig {
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.lookback_delta.is_zero() {
            errors.push(error("query.lookback_delta", "must be greater than 0"));
        }
        if self.timeout.is_zero() {
            errors.push(error("query.timeout", "must be greater than 0"));
        }
        if self.max_samples == 0 {
            errors.push(error("query.max_samples", "must be greater than 0"));
        }
        if self.max_series == 0 {
            errors.push(error("query.max_series", "must be greater than 0"));
        }
        if self.endpoint_timeout.is_zero() {
            errors.push(error("query.endpoint_timeout", "must be greater than 0"));
        }
        if self.endpoint_concurrency == 0 {
            errors.push(error("query.endpoint_concurrency", "must be greater than 0"));
        }
        if self.max_read_bytes == 0 {
            errors.push(error("query.max_read_bytes", "must be greater than 0"));
        }
        if self.source == RawSource::SketchProxy {
            errors.push(error(
                "query.source",
                "sketch_proxy is a kind of downstream.endpoints entry; downstream.url is read as auto, remote_read or query_api",
            ));
        }
        if let Some(file) = &self.log_file {
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                errors.push(error(
                    "query.log_file",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        for name in &self.replica_labels {
            if !crate::api::params::is_valid_label_name(name) || name == "__name__" {
                errors.push(error(
                    "query.replica_labels",
                    format!("{name:?} is not a label name that can tell replicas apart"),
                ));
            }
        }
    }
}
