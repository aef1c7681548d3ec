//! Configuration: a YAML file (every field documented here; unknown keys rejected),
//! overridden by command-line flags, validated with every error reported at once.
//!
//! Loading goes raw file → per-section deserialization (errors collected) → flag
//! overrides → validation (errors collected) → [`Config`].

mod cache;
pub mod duration;
mod http_client;
mod ingest;
mod query;
mod sketches;
mod telemetry;
pub mod web_file;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde_yaml_ng::Value;

pub use cache::CacheConfig;
pub use http_client::{
    AuthorizationConfig, BasicAuthConfig, HttpClientConfig, Secret, TlsClientConfig, redacted,
};
pub use ingest::{DestinationConfig, IngestConfig};
pub use query::{QueryConfig, QueryMode, RawSource};
pub use sketches::{SketchRule, SketchesConfig};
pub use telemetry::TracingConfig;

use crate::plugin_host::{self, Grant};

/// The default listen address: loopback, on a port no common Prometheus-ecosystem
/// component uses by default (Prometheus 9090, Alertmanager 9093, Pushgateway 9091,
/// Thanos 10901/10902/19291, Grafana 3000, VictoriaMetrics 8428, Mimir 8080/9009).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19090";

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the HTTP server binds to. Not reloadable.
    pub listen: SocketAddr,
    /// The Prometheus or Thanos Querier the proxy sits in front of.
    pub downstream: DownstreamConfig,
    /// HTTP serving options.
    pub web: WebConfig,
    /// Limits on what one request or all requests may use.
    pub limits: LimitsConfig,
    /// Logging. Not reloadable.
    pub log: LogConfig,
    /// Sketch plugins: where custom ones live and how all are confined.
    pub plugins: PluginsConfig,
    /// The remote-write receiver and its forwarding. Not reloadable.
    pub ingest: IngestConfig,
    /// Which ingested series are sketched.
    pub sketches: SketchesConfig,
    /// How queries are answered, and local evaluation's limits.
    pub query: QueryConfig,
    /// The results cache.
    pub cache: CacheConfig,
    /// OpenTelemetry traces. Not reloadable.
    pub tracing: TracingConfig,
}

/// `downstream:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownstreamConfig {
    /// Base URL of the Prometheus or Thanos Querier, `http[s]://host:port[/prefix]`.
    #[serde(with = "duration::uri")]
    pub url: Uri,
    /// How to connect to `url`: `tls_config`, `authorization`, `basic_auth`,
    /// `headers`, `proxy_url` (see [`HttpClientConfig`]).
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// How long to wait for downstream's response headers (Prometheus duration,
    /// e.g. `2m`). Past it the client gets 503 `timeout`.
    #[serde(with = "duration::prometheus")]
    pub timeout: Duration,
    /// Several Prometheus-API servers read as one (shards, replicas); the flag
    /// `--endpoint URL` (repeatable) replaces the list. Empty: `url` is the one
    /// endpoint. With one entry the proxy behaves as with `url` set to it. With more,
    /// every `query` and `query_range` is evaluated by the proxy over all of them.
    pub endpoints: Vec<EndpointConfig>,
}

impl Config {
    /// Whether reads fan out over `downstream.endpoints` (merged by the proxy) rather
    /// than go to one downstream as they are: several endpoints, or one whose series
    /// need external labels added or replicas deduplicated.
    pub fn fans_out(&self) -> bool {
        let endpoints = &self.downstream.endpoints;
        endpoints.len() > 1
            || endpoints.len() == 1
                && (!endpoints[0].external_labels.is_empty() || !self.query.replica_labels.is_empty())
    }
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            url: Uri::from_static("http://127.0.0.1:9090"),
            http: HttpClientConfig::default(),
            // Prometheus' own --query.timeout default, plus headroom to answer it.
            timeout: Duration::from_secs(125),
            endpoints: Vec::new(),
        }
    }
}

/// One read endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URL, `http[s]://host:port[/prefix]`.
    #[serde(with = "duration::uri")]
    pub url: Uri,
    /// How to connect to `url`, as for `downstream.url`.
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// How raw data is read from it: `auto` (remote read, the query API once it
    /// answers 404/405/501), `remote_read` (a Prometheus), `query_api` (any other
    /// Prometheus-API server, e.g. a Thanos Querier) or `sketch_proxy` (another
    /// sketch-proxy, a leaf of a tier: read as `auto`, and sent the proxy's own
    /// functions with `query.push_down`). Default `auto`.
    #[serde(default)]
    pub kind: RawSource,
    /// Labels every series of this endpoint carries, as Thanos' external labels: added
    /// to its series where missing; a query whose matchers on them fail skips it.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// The oldest data it holds, as Thanos' `--min-time`: RFC 3339 or a duration
    /// before now (`-15d` for a 15-day retention). Reads that end before it skip this
    /// endpoint. Default: no bound.
    #[serde(default, with = "duration::time_bound")]
    pub min_time: Option<duration::time_bound::TimeBound>,
    /// The newest data it holds (same syntax); reads that start after it skip this
    /// endpoint. Default: no bound.
    #[serde(default, with = "duration::time_bound")]
    pub max_time: Option<duration::time_bound::TimeBound>,
}

/// `web:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Path prefix every route is served under (for an ingress), like Prometheus'
    /// `--web.route-prefix`: `/` or `/something` without a trailing slash.
    pub route_prefix: String,
    /// Most connections open at once, like Prometheus' `--web.max-connections`
    /// (default 512). Past it, new connections wait in the kernel's backlog until one
    /// closes. Read at start.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and how long a
    /// kept-alive connection may sit idle before its next request (default 30s). A
    /// client that sends half a request, or nothing, is disconnected then. Read at start.
    #[serde(with = "duration::prometheus")]
    pub read_header_timeout: Duration,
    /// Longest time to read a request's body, like Prometheus' `--web.read-timeout`
    /// (default 5m); past it, 408.
    #[serde(with = "duration::prometheus")]
    pub read_timeout: Duration,
    /// On shutdown, how long requests in flight may take to finish (default 30s);
    /// connections still open then are closed. Read at start.
    #[serde(with = "duration::prometheus")]
    pub shutdown_timeout: Duration,
    /// The proxy's own TLS and basic auth, a file in Prometheus' `--web.config.file`
    /// format (flag `--web.config.file`). The file is watched; its path is read at start.
    pub config_file: Option<PathBuf>,
    /// Serve `POST`/`PUT /-/reload` (flag `--web.enable-lifecycle`); without it they
    /// answer 403, as Prometheus. SIGHUP reloads either way.
    pub enable_lifecycle: bool,
    /// Forward `/api/v1/admin/*` (flag `--web.enable-admin-api`); without it they answer
    /// as Prometheus with its admin API off, and never reach downstream.
    pub enable_admin_api: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            route_prefix: "/".to_owned(),
            max_connections: 512,
            read_header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
            config_file: None,
            enable_lifecycle: false,
            enable_admin_api: false,
        }
    }
}

/// `limits:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes; larger ones get 413. The default is
    /// the 10 MiB Go's form parser (and so Prometheus) accepts.
    pub max_request_body_bytes: u64,
    /// Most `query` and `query_range` requests evaluated or forwarded at once
    /// (Prometheus' `--query.max-concurrency`, default 20); more wait for a slot, as in
    /// Prometheus' query gate.
    pub max_concurrent_queries: usize,
    /// Most queries waiting for a slot (default 1,000); more get 503 at once.
    pub max_queued_queries: usize,
    /// Longest a query waits for a slot (default 2m, Prometheus' query timeout); then 503.
    #[serde(with = "duration::prometheus")]
    pub max_query_wait: Duration,
    /// Longest PromQL query or `match[]` selector, in bytes (default 131,072); longer
    /// ones get 400 `bad_data` before they are parsed, in every mode.
    pub max_query_bytes: usize,
    /// Deepest nesting of a PromQL query or selector (default 256): every parenthesis,
    /// bracket, function call, aggregation and operator of a chain like `a + b + c`
    /// adds a level. Deeper ones get 400 `bad_data` before they are parsed, in every
    /// mode, because parsing and evaluating them recurses once per level.
    pub max_query_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_body_bytes: 10 << 20,
            max_concurrent_queries: 20,
            max_queued_queries: 1000,
            max_query_wait: Duration::from_secs(120),
            max_query_bytes: crate::promql::shape::DEFAULT_SHAPE.max_bytes,
            max_query_depth: crate::promql::shape::DEFAULT_SHAPE.max_depth,
        }
    }
}

impl LimitsConfig {
    /// The query shape these limits allow.
    pub fn shape(&self) -> crate::promql::ShapeLimits {
        crate::promql::ShapeLimits {
            max_bytes: self.max_query_bytes,
            max_depth: self.max_query_depth,
        }
    }
}

/// `plugins:` section. The built-in plugins (`quantile`, `frequency`) are always loaded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory whose `*.wasm` components are loaded as custom plugins, at start and on
    /// every reload. A bad file is logged with its reason and skipped.
    pub dir: Option<PathBuf>,
    /// Directory for precompiled plugins, so restarts skip compilation. Unset: plugins
    /// are compiled at start (and kept compiled in memory across reloads).
    pub cache_dir: Option<PathBuf>,
    /// Instances per plugin; each runs one call at a time, so this is the parallelism
    /// per plugin. Default: the number of CPUs.
    pub instances: usize,
    /// Linear-memory cap per instance in bytes (default 1 GiB, at most 4 GiB). A plugin
    /// that grows past it is quarantined.
    pub memory_limit_bytes: u64,
    /// Longest one call into a plugin may run (Prometheus duration, default `5s`). A
    /// plugin that runs past it is quarantined.
    #[serde(with = "duration::prometheus")]
    pub call_timeout: Duration,
    /// Capabilities granted, by plugin name: `clock` (real clocks instead of a frozen
    /// one) and `environment` (the proxy's variables). Files and network are never
    /// granted.
    pub grants: BTreeMap<String, Vec<Grant>>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            cache_dir: None,
            instances: std::thread::available_parallelism().map_or(2, usize::from),
            memory_limit_bytes: 1 << 30,
            call_timeout: Duration::from_secs(5),
            grants: BTreeMap::new(),
        }
    }
}

impl PluginsConfig {
    /// What the plugin host needs.
    pub fn settings(&self) -> plugin_host::Settings {
        plugin_host::Settings {
            dir: self.dir.clone(),
            cache_dir: self.cache_dir.clone(),
            instances: self.instances,
            memory_limit_bytes: usize::try_from(self.memory_limit_bytes).unwrap_or(usize::MAX),
            call_timeout: self.call_timeout,
            grants: self.grants.clone(),
        }
    }
}

/// `log:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Level or `tracing` filter directive, e.g. `info` or `sketch_proxy=debug,info`.
    pub level: String,
    /// `logfmt` (default; `text` is an alias) or `json` (one object per line). Colour
    /// only when standard error is a terminal.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Logfmt,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` pairs, as Prometheus' default format.
    #[serde(alias = "text")]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Command-line values that override the file (`None` leaves the file's value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--web.route-prefix`.
    pub route_prefix: Option<String>,
    /// `--log.level`.
    pub log_level: Option<String>,
    /// `--remote-write.url` (repeatable): replaces `ingest.destinations` and turns
    /// ingest on.
    pub remote_write_urls: Vec<String>,
    /// `--web.enable-remote-write-receiver`: turns ingest on.
    pub enable_remote_write_receiver: bool,
    /// `--query.mode`: `auto` or `local`.
    pub query_mode: Option<String>,
    /// `--sketch.rule` (repeatable): rule queries added to `sketches.queries`.
    pub sketch_rules: Vec<String>,
    /// `--endpoint` (repeatable): replaces `downstream.endpoints`.
    pub endpoints: Vec<String>,
    /// `--query.replica-label` (repeatable): added to `query.replica_labels`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response` / `--no-query.partial-response`.
    pub partial_response: Option<bool>,
    /// `--query.cache` / `--no-query.cache`.
    pub cache: Option<bool>,
    /// `--web.config.file`.
    pub web_config_file: Option<PathBuf>,
    /// `--web.enable-lifecycle`.
    pub enable_lifecycle: bool,
    /// `--web.enable-admin-api`.
    pub enable_admin_api: bool,
    /// `--query.timeout`.
    pub query_timeout: Option<String>,
    /// `--query.max-concurrency`.
    pub max_concurrency: Option<usize>,
    /// `--query.lookback-delta`.
    pub lookback_delta: Option<String>,
    /// `--log.format`.
    pub log_format: Option<String>,
}

/// One problem in the configuration, located by its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `limits.max_concurrent_queries`, `--upstream`, or the file name.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {}: {}", e.at, e.message)?;
        }
        Ok(())
    }
}

/// Reads and validates a configuration file, then applies `overrides`.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            at: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(&text, overrides)
}

/// Builds the configuration from YAML text (empty text means all defaults).
pub fn load_str(text: &str, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut raw = RawConfig::default();
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(ConfigErrors(vec![error("(file)", e)])),
    };
    match root {
        Value::Null => {}
        Value::Mapping(map) => {
            for (key, value) in map {
                let key = match key {
                    Value::String(k) => k,
                    other => {
                        errors.push(error("(file)", format!("keys must be strings, got {other:?}")));
                        continue;
                    }
                };
                match key.as_str() {
                    "listen" => section(&key, value, &mut raw.listen, &mut errors),
                    "downstream" => section(&key, value, &mut raw.downstream, &mut errors),
                    "web" => section(&key, value, &mut raw.web, &mut errors),
                    "limits" => section(&key, value, &mut raw.limits, &mut errors),
                    "log" => section(&key, value, &mut raw.log, &mut errors),
                    "plugins" => section(&key, value, &mut raw.plugins, &mut errors),
                    "ingest" => section(&key, value, &mut raw.ingest, &mut errors),
                    "sketches" => section(&key, value, &mut raw.sketches, &mut errors),
                    "query" => section(&key, value, &mut raw.query, &mut errors),
                    "cache" => section(&key, value, &mut raw.cache, &mut errors),
                    "tracing" => section(&key, value, &mut raw.tracing, &mut errors),
                    _ => errors.push(error(
                        &key,
                        "unknown field, expected one of `listen`, `downstream`, `web`, `limits`, `log`, `plugins`, `ingest`, `sketches`, `query`, `cache`, `tracing`",
                    )),
                }
            }
        }
        _ => errors.push(error("(file)", "the configuration must be a YAML mapping")),
    }
    raw.apply(overrides, &mut errors);
    let config = raw.validate(&mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[derive(Debug, Default)]
struct RawConfig {
    listen: Option<String>,
    downstream: DownstreamConfig,
    web: WebConfig,
    limits: LimitsConfig,
    log: LogConfig,
    plugins: PluginsConfig,
    ingest: IngestConfig,
    sketches: SketchesConfig,
    query: QueryConfig,
    cache: CacheConfig,
    tracing: TracingConfig,
}

/// Deserializes one section, reporting every bad field: after each error the offending
/// key is dropped (keeping its default) and the rest is tried again.
fn section<T: serde::de::DeserializeOwned>(
    key: &str,
    mut value: Value,
    slot: &mut T,
    errors: &mut Vec<ConfigError>,
) {
    loop {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => {
                *slot = v;
                return;
            }
            Err(e) => {
                let message = e.inner().to_string();
                let field = e
                    .path()
                    .iter()
                    .next()
                    .map(|s| s.to_string())
                    .or_else(|| unknown_field(&message));
                let at = match &field {
                    Some(f) if f != "?" => format!("{key}.{f}"),
                    _ => key.to_owned(),
                };
                errors.push(error(&at, message));
                let removed = match (&mut value, field) {
                    (Value::Mapping(map), Some(f)) => map.remove(f.as_str()).is_some(),
                    _ => false,
                };
                if !removed {
                    return;
                }
            }
        }
    }
}

/// The key named by serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn error(at: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        at: at.to_owned(),
        message: message.to_string(),
    }
}

impl RawConfig {
    fn apply(&mut self, o: &Overrides, errors: &mut Vec<ConfigError>) {
        if let Some(listen) = &o.listen {
            self.listen = Some(listen.clone());
        }
        if let Some(upstream) = &o.upstream {
            match upstream.parse() {
                Ok(uri) => self.downstream.url = uri,
                Err(e) => errors.push(error("--upstream", format!("{upstream:?} is not a URL: {e}"))),
            }
        }
        if !o.endpoints.is_empty() {
            self.downstream.endpoints.clear();
            for url in &o.endpoints {
                match url.parse() {
                    Ok(url) => self.downstream.endpoints.push(EndpointConfig {
                        url,
                        http: HttpClientConfig::default(),
                        kind: RawSource::Auto,
                        external_labels: Default::default(),
                        min_time: None,
                        max_time: None,
                    }),
                    Err(e) => errors.push(error("--endpoint", format!("{url:?} is not a URL: {e}"))),
                }
            }
        }
        self.query.replica_labels.extend(o.replica_labels.iter().cloned());
        if let Some(partial) = o.partial_response {
            self.query.partial_response = partial;
        }
        if let Some(cache) = o.cache {
            self.cache.enabled = cache;
        }
        if let Some(prefix) = &o.route_prefix {
            self.web.route_prefix = prefix.clone();
        }
        if let Some(level) = &o.log_level {
            self.log.level = level.clone();
        }
        match o.log_format.as_deref() {
            None => {}
            Some("logfmt" | "text") => self.log.format = LogFormat::Logfmt,
            Some("json") => self.log.format = LogFormat::Json,
            Some(other) => errors.push(error(
                "--log.format",
                format!("{other:?} is neither logfmt nor json"),
            )),
        }
        if let Some(file) = &o.web_config_file {
            self.web.config_file = Some(file.clone());
        }
        self.web.enable_lifecycle |= o.enable_lifecycle;
        self.web.enable_admin_api |= o.enable_admin_api;
        if let Some(n) = o.max_concurrency {
            self.limits.max_concurrent_queries = n;
        }
        for (flag, text, slot) in [
            ("--query.timeout", &o.query_timeout, &mut self.query.timeout),
            (
                "--query.lookback-delta",
                &o.lookback_delta,
                &mut self.query.lookback_delta,
            ),
        ] {
            if let Some(text) = text {
                match duration::parse(text) {
                    Ok(d) => *slot = d,
                    Err(e) => errors.push(error(
                        flag,
                        format!("{text:?} is not a duration such as 30s or 2m: {e}"),
                    )),
                }
            }
        }
        if !o.remote_write_urls.is_empty() {
            self.ingest.enabled = true;
            self.ingest.destinations.clear();
            for url in &o.remote_write_urls {
                match url.parse() {
                    Ok(url) => self.ingest.destinations.push(DestinationConfig {
                        url,
                        name: None,
                        http: HttpClientConfig::default(),
                    }),
                    Err(e) => errors.push(error("--remote-write.url", format!("{url:?} is not a URL: {e}"))),
                }
            }
        }
        if o.enable_remote_write_receiver {
            self.ingest.enabled = true;
        }
        self.sketches.queries.extend(o.sketch_rules.iter().cloned());
        if let Some(mode) = &o.query_mode {
            match mode.as_str() {
                "auto" => self.query.mode = QueryMode::Auto,
                "local" => self.query.mode = QueryMode::Local,
                other => errors.push(error(
                    "--query.mode",
                    format!("{other:?} is neither auto nor local"),
                )),
            }
        }
    }

    fn validate(self, errors: &mut Vec<ConfigError>) -> Config {
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().unwrap_or_else(|e| {
            errors.push(error(
                "listen",
                format!("{listen_text:?} is not an IP:port address: {e}"),
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let mut downstream = self.downstream;
        downstream
            .http
            .take_url_credentials(&mut downstream.url, "downstream.url", errors);
        downstream.http.validate("downstream", errors);
        for (i, e) in downstream.endpoints.iter_mut().enumerate() {
            let at = format!("downstream.endpoints[{i}]");
            e.http
                .take_url_credentials(&mut e.url, &format!("{at}.url"), errors);
            e.http.validate(&at, errors);
        }
        if let Some(first) = downstream.endpoints.first() {
            // Forwarding goes to the first endpoint; with one, it is the downstream.
            downstream.url = first.url.clone();
            downstream.http = first.http.clone();
        }
        let urls = std::iter::once(("downstream.url".to_owned(), &downstream.url)).chain(
            downstream
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("downstream.endpoints[{i}].url"), &e.url)),
        );
        for (at, url) in urls {
            if !matches!(url.scheme_str(), Some("http" | "https"))
                || url.authority().is_none()
                || url.query().is_some()
            {
                errors.push(error(
                    &at,
                    format!("{url} must be an http:// or https:// URL with a host and no query"),
                ));
            }
        }
        for (i, e) in downstream.endpoints.iter().enumerate() {
            if downstream.endpoints[..i].iter().any(|o| o.url == e.url) {
                errors.push(error(
                    &format!("downstream.endpoints[{i}].url"),
                    format!("{} is listed twice", e.url),
                ));
            }
            for name in e.external_labels.keys() {
                if !crate::api::params::is_valid_label_name(name) {
                    errors.push(error(
                        &format!("downstream.endpoints[{i}].external_labels"),
                        format!("{name:?} is not a label name"),
                    ));
                }
            }
        }
        let self_downstream = downstream;
        if self_downstream.timeout.is_zero() {
            errors.push(error("downstream.timeout", "must be greater than 0"));
        }
        if self.web.max_connections == 0 {
            errors.push(error("web.max_connections", "must be greater than 0"));
        }
        for (field, value) in [
            ("read_header_timeout", self.web.read_header_timeout),
            ("read_timeout", self.web.read_timeout),
            ("shutdown_timeout", self.web.shutdown_timeout),
        ] {
            if value.is_zero() {
                errors.push(error(&format!("web.{field}"), "must be greater than 0"));
            }
        }
        let prefix = normalize_prefix(&self.web.route_prefix);
        if !prefix.starts_with('/') || prefix.contains(['?', '#', '{', '}', '*']) {
            errors.push(error(
                "web.route_prefix",
                format!("{:?} must be a path such as /prometheus", self.web.route_prefix),
            ));
        }
        if self.limits.max_request_body_bytes == 0 {
            errors.push(error("limits.max_request_body_bytes", "must be greater than 0"));
        }
        if self.limits.max_concurrent_queries == 0 {
            errors.push(error("limits.max_concurrent_queries", "must be greater than 0"));
        }
        if self.limits.max_query_wait.is_zero() {
            errors.push(error("limits.max_query_wait", "must be greater than 0"));
        }
        if self.limits.max_query_bytes == 0 {
            errors.push(error("limits.max_query_bytes", "must be greater than 0"));
        }
        // Past this, a deep query could overflow a 2 MiB stack before the limit stops it.
        if !(1..=crate::promql::shape::MAX_DEPTH).contains(&self.limits.max_query_depth) {
            errors.push(error(
                "limits.max_query_depth",
                format!("must be between 1 and {}", crate::promql::shape::MAX_DEPTH),
            ));
        }
        // Span and field filters (`[...]`, `{...}`) compile to regexes whose building
        // took seconds on a 600-byte value (found by fuzzing); targets and levels are
        // what an operator needs.
        // tracing-subscriber's directive parser also panics on some non-ASCII text.
        let level = &self.log.level;
        if level.contains(['[', ']', '{', '}']) || level.len() > 1024 || !level.is_ascii() {
            errors.push(error(
                "log.level",
                "must be a level or `target=level` directives separated by commas, in ASCII, \
                 without span or field filters, at most 1,024 bytes",
            ));
        } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(error(
                "log.level",
                format!("{:?} is not a level or filter: {e}", self.log.level),
            ));
        }
        validate_plugins(&self.plugins, errors);
        let mut ingest = self.ingest;
        if ingest.destinations.is_empty() && self_downstream.endpoints.len() > 1 {
            // What is written through the proxy goes where it reads: each read endpoint's
            // receiver, series sharded over them.
            ingest.destinations = self_downstream
                .endpoints
                .iter()
                .enumerate()
                // A URL listed twice is reported above, once.
                .filter(|(i, e)| !self_downstream.endpoints[..*i].iter().any(|o| o.url == e.url))
                .filter_map(|(_, e)| {
                    let url = format!("{}/api/v1/write", e.url.to_string().trim_end_matches('/'));
                    Some(DestinationConfig {
                        url: url.parse().ok()?,
                        name: None,
                        http: e.http.clone(),
                    })
                })
                .collect();
        }
        ingest.validate(&self_downstream, errors);
        self.sketches.validate(errors);
        self.query.validate(errors);
        self.cache.validate(errors);
        self.tracing.validate(errors);
        Config {
            listen,
            downstream: self_downstream,
            web: WebConfig {
                route_prefix: prefix,
                ..self.web
            },
            limits: self.limits,
            log: self.log,
            plugins: self.plugins,
            ingest,
            sketches: self.sketches,
            query: self.query,
            cache: self.cache,
            tracing: self.tracing,
        }
    }
}

fn validate_plugins(p: &PluginsConfig, errors: &mut Vec<ConfigError>) {
    if let Some(dir) = &p.dir
        && !dir.is_dir()
    {
        errors.push(error(
            "plugins.dir",
            format!("{} is not a directory", dir.display()),
        ));
    }
    if !(1..=256).contains(&p.instances) {
        errors.push(error(
            "plugins.instances",
            format!("{} is not between 1 and 256", p.instances),
        ));
    }
    if !((16 << 20)..=(4 << 30)).contains(&p.memory_limit_bytes) {
        errors.push(error(
            "plugins.memory_limit_bytes",
            format!(
                "{} is not between 16 MiB and 4 GiB (the wasm32 limit)",
                p.memory_limit_bytes
            ),
        ));
    }
    if p.call_timeout.is_zero() {
        errors.push(error("plugins.call_timeout", "must be greater than 0"));
    }
}

/// The tracing filter for `log.level`: a bare level applies to the proxy's own lines
/// and dependencies stay at warn (at debug, wasmtime and cranelift write tens of
/// thousands of lines a second); directives naming targets are used as written.
pub fn log_filter(level: &str) -> String {
    let bare = level.trim().to_ascii_lowercase();
    match bare.as_str() {
        "trace" | "debug" | "info" => format!("warn,sketch_proxy={bare}"),
        _ => level.to_owned(),
    }
}

/// `""` and `"/"` mean no prefix; `"/x/"` means `"/x"`.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests;
