//! The command line: Prometheus' and Thanos' flag names (the older names kept as
//! aliases), each also read from a `SKETCH_PROXY_…` environment variable.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// A Prometheus-API reverse proxy that answers range functions from sketches.
///
/// Flags carry Prometheus' and Thanos' names; the older names still work. Every flag
/// can also be set by an environment variable, SKETCH_PROXY_ and the flag's name in
/// capitals with `.` and `-` as `_` (e.g. SKETCH_PROXY_WEB_LISTEN_ADDRESS).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// YAML configuration file (see docs/configuration.md); flags override it.
    #[arg(
        long = "config.file",
        alias = "config",
        value_name = "FILE",
        env = "SKETCH_PROXY_CONFIG_FILE"
    )]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:19090; 0.0.0.0:19090 for every interface].
    #[arg(
        long = "web.listen-address",
        alias = "listen",
        value_name = "ADDR",
        env = "SKETCH_PROXY_WEB_LISTEN_ADDRESS"
    )]
    listen: Option<String>,
    /// Base URL of the Prometheus or Thanos Querier behind the proxy
    /// [default: http://127.0.0.1:9090]. Credentials in it (user:password@) are sent as
    /// basic auth and never logged.
    #[arg(long, value_name = "URL", env = "SKETCH_PROXY_UPSTREAM")]
    upstream: Option<String>,
    /// Path prefix to serve every route under, e.g. /prometheus.
    #[arg(
        long = "web.route-prefix",
        value_name = "PATH",
        env = "SKETCH_PROXY_WEB_ROUTE_PREFIX"
    )]
    route_prefix: Option<String>,
    /// The proxy's own TLS and basic auth, in Prometheus' web configuration format.
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        env = "SKETCH_PROXY_WEB_CONFIG_FILE"
    )]
    web_config_file: Option<PathBuf>,
    /// Serve POST/PUT /-/reload (403 without, as Prometheus); SIGHUP reloads either way.
    #[arg(long = "web.enable-lifecycle", env = "SKETCH_PROXY_WEB_ENABLE_LIFECYCLE")]
    enable_lifecycle: bool,
    /// Forward /api/v1/admin/* to downstream (refused without, as Prometheus).
    #[arg(long = "web.enable-admin-api", env = "SKETCH_PROXY_WEB_ENABLE_ADMIN_API")]
    enable_admin_api: bool,
    /// Log level of the proxy's own lines (debug, info, warn, error; dependencies stay
    /// at warn), or a tracing filter such as sketch_proxy=debug,hyper=info.
    #[arg(long = "log.level", value_name = "LEVEL", env = "SKETCH_PROXY_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log line format: logfmt or json.
    #[arg(long = "log.format", value_name = "FORMAT", env = "SKETCH_PROXY_LOG_FORMAT")]
    log_format: Option<String>,
    /// Serve remote write at /api/v1/write: queue durably, then forward to the
    /// downstream (or to ingest.destinations).
    #[arg(
        long = "web.enable-remote-write-receiver",
        env = "SKETCH_PROXY_WEB_ENABLE_REMOTE_WRITE_RECEIVER"
    )]
    enable_remote_write_receiver: bool,
    /// Remote-write destination (repeatable; replaces ingest.destinations and turns the
    /// receiver on). Several destinations shard series by a hash of their labels.
    #[arg(
        long = "remote-write.url",
        value_name = "URL",
        env = "SKETCH_PROXY_REMOTE_WRITE_URL",
        value_delimiter = ','
    )]
    remote_write_url: Vec<String>,
    /// How query and query_range are answered: auto (forward unless the query uses a
    /// function only the proxy knows) or local (always evaluate in the proxy over raw
    /// data read from downstream) [default: auto, or query.mode].
    #[arg(long = "query.mode", value_name = "MODE", env = "SKETCH_PROXY_QUERY_MODE")]
    query_mode: Option<String>,
    /// Longest local evaluation, fetch included [default: 2m, or query.timeout].
    #[arg(
        long = "query.timeout",
        value_name = "DURATION",
        env = "SKETCH_PROXY_QUERY_TIMEOUT"
    )]
    query_timeout: Option<String>,
    /// Most queries served at once [default: 20, or limits.max_concurrent_queries].
    #[arg(
        long = "query.max-concurrency",
        value_name = "N",
        env = "SKETCH_PROXY_QUERY_MAX_CONCURRENCY"
    )]
    max_concurrency: Option<usize>,
    /// How far back an instant vector looks [default: 5m, or query.lookback_delta].
    #[arg(
        long = "query.lookback-delta",
        value_name = "DURATION",
        env = "SKETCH_PROXY_QUERY_LOOKBACK_DELTA"
    )]
    lookback_delta: Option<String>,
    /// A rule query to keep warm as sketches (repeatable), e.g.
    /// 'quantile_over_time(0.99, http_latency_ms[1h])'; added to sketches.queries.
    #[arg(long = "sketch.rule", value_name = "QUERY", env = "SKETCH_PROXY_SKETCH_RULE")]
    sketch_rule: Vec<String>,
    /// A Prometheus-API server to read from (repeatable; shards and replicas are read
    /// as one); replaces downstream.endpoints. One endpoint is the same as --upstream.
    #[arg(
        long = "endpoint",
        value_name = "URL",
        env = "SKETCH_PROXY_ENDPOINT",
        value_delimiter = ','
    )]
    endpoint: Vec<String>,
    /// Labels that tell replicas apart (repeatable or comma-separated); added to
    /// query.replica_labels.
    #[arg(
        long = "query.replica-label",
        value_name = "NAME",
        env = "SKETCH_PROXY_QUERY_REPLICA_LABEL",
        value_delimiter = ','
    )]
    replica_label: Vec<String>,
    /// Over several endpoints, answer from those that answer, with a warning, when
    /// some fail [default: on, or query.partial_response]. `=false` or
    /// --no-query.partial-response turns it off.
    #[arg(
        long = "query.partial-response",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        env = "SKETCH_PROXY_QUERY_PARTIAL_RESPONSE"
    )]
    partial_response: Option<bool>,
    /// Fail a request when any endpoint fails.
    #[arg(long = "no-query.partial-response", conflicts_with = "partial_response")]
    no_partial_response: bool,
    /// Keep query answers in the results cache [default: on, or cache.enabled].
    /// `=false` or --no-query.cache turns it off.
    #[arg(
        long = "query.cache",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        env = "SKETCH_PROXY_QUERY_CACHE"
    )]
    cache: Option<bool>,
    /// Keep no query answers.
    #[arg(long = "no-query.cache", conflicts_with = "cache")]
    no_cache: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks a configuration file and prints every error in it.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Sketch plugins: list the loaded ones, or check a component file.
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Lists the plugins the configuration loads: functions, error bounds and source.
    List,
    /// Validates a plugin component and prints what it serves, or why it is rejected.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

impl Cli {
    /// What the flags override in the configuration file.
    pub fn overrides(self) -> Overrides {
        Overrides {
            listen: self.listen,
            upstream: self.upstream,
            route_prefix: self.route_prefix,
            log_level: self.log_level,
            remote_write_urls: self.remote_write_url,
            enable_remote_write_receiver: self.enable_remote_write_receiver,
            query_mode: self.query_mode,
            sketch_rules: self.sketch_rule,
            endpoints: self.endpoint,
            replica_labels: self.replica_label,
            partial_response: if self.no_partial_response {
                Some(false)
            } else {
                self.partial_response
            },
            cache: if self.no_cache { Some(false) } else { self.cache },
            web_config_file: self.web_config_file,
            enable_lifecycle: self.enable_lifecycle,
            enable_admin_api: self.enable_admin_api,
            query_timeout: self.query_timeout,
            max_concurrency: self.max_concurrency,
            lookback_delta: self.lookback_delta,
            log_format: self.log_format,
        }
    }
}

#[cfg(test)]
mod tests;
