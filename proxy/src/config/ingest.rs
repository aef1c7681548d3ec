//! `ingest:`: the remote-write receiver and where it forwards.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::{ConfigError, DownstreamConfig, HttpClientConfig, duration, error};
use crate::ingest;

/// `ingest:` section. Ingest changes take effect on restart only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Serve `POST /api/v1/write` (Prometheus remote write 1.0) instead of forwarding
    /// it unchanged. Also turned on by `--web.enable-remote-write-receiver` and by
    /// `--remote-write.url`.
    pub enabled: bool,
    /// Where samples are forwarded. Empty: the downstream's own `/api/v1/write`.
    /// `--remote-write.url` (repeatable) replaces this list.
    pub destinations: Vec<DestinationConfig>,
    /// Destinations each series is written to (1 = sharding only). Each series goes to
    /// the same destinations every time (rendezvous hashing of its labels).
    pub replication_factor: usize,
    /// Directory holding one durable queue per destination (like Prometheus' `data/`,
    /// relative to the working directory unless absolute).
    pub queue_dir: PathBuf,
    /// Bytes a destination's queue may hold (compressed); past it writes get 503 so
    /// senders back off. Default 1 GiB.
    pub max_queue_bytes: u64,
    /// Size at which a queue segment file is closed and the next one started (default
    /// 64 MiB). Delivered data is deleted a whole segment at a time, so on a small
    /// disk smaller segments give space back sooner.
    pub segment_bytes: u64,
    /// Largest compressed request body; larger ones get 413. Default 64 MiB.
    pub max_body_bytes: u64,
    /// Largest decompressed request body; larger ones get 413. Default 512 MiB.
    pub max_decompressed_bytes: u64,
    /// Decompressed bytes of all remote-write bodies being handled at once (default
    /// 1 GiB, at least `max_decompressed_bytes`); a body past it gets 503 with
    /// Retry-After, which senders retry. Bounds the memory concurrent writes take.
    pub max_inflight_decompressed_bytes: u64,
    /// Samples further ahead of the proxy's clock are refused (400): one such sample
    /// makes Prometheus refuse every later sample as out of bounds. Default `10m`.
    #[serde(with = "duration::prometheus")]
    pub max_future: Duration,
    /// A request holding a sample this much older than the newest sample already
    /// queued for a destination is refused (400) before it is acknowledged: Prometheus
    /// 2.42 accepts samples down to 1 h before its newest (half its 2 h block range) and
    /// would refuse the whole request as out of bounds after the 204. Default `1h`;
    /// raise it by the `out_of_order_time_window` of a downstream that has one; `0s`
    /// turns the check off. Nothing is known before the first write after a start.
    #[serde(with = "duration::prometheus_or_zero")]
    pub max_past: Duration,
    /// Timeout of one send to a destination (Prometheus' `remote_timeout`, default `30s`).
    #[serde(with = "duration::prometheus")]
    pub send_timeout: Duration,
    /// First retry delay after a failed send (default `30ms`, as Prometheus).
    #[serde(with = "duration::prometheus")]
    pub min_backoff: Duration,
    /// Longest retry delay (default `5s`, as Prometheus).
    #[serde(with = "duration::prometheus")]
    pub max_backoff: Duration,
    /// Most uncompressed bytes one send carries; queued requests are joined up to it.
    /// Default 16 MiB.
    pub max_send_bytes: u64,
    /// Requests in flight to one destination at once (1–64, default 4). A batch's series
    /// are split among them by hash, so each series' samples still arrive in order;
    /// Prometheus appends concurrent requests in parallel.
    pub send_concurrency: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            destinations: Vec::new(),
            replication_factor: 1,
            queue_dir: PathBuf::from("data/queue"),
            max_queue_bytes: 1 << 30,
            max_body_bytes: 64 << 20,
            max_decompressed_bytes: 512 << 20,
            max_future: Duration::from_secs(600),
            max_past: Duration::from_secs(3600),
            segment_bytes: 64 << 20,
            max_inflight_decompressed_bytes: 1 << 30,
            send_timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            max_send_bytes: 16 << 20,
            send_concurrency: 4,
        }
    }
}

/// One remote-write destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Full URL of the receiver, e.g. `http://prometheus-a:9090/api/v1/write`.
    #[serde(with = "duration::uri")]
    pub url: Uri,
    /// How to connect to `url`, as for `downstream.url`.
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// Names its queue directory and its metrics; also what the series hashing uses, so
    /// renaming a destination moves series. Default: `host:port` of the URL.
    #[serde(default)]
    pub name: Option<String>,
}

impl IngestConfig {
    /// The destinations with their names, the downstream's receiver when none is listed.
    pub fn named_destinations(&self, downstream: &DownstreamConfig) -> Vec<ingest::DestinationSettings> {
        if self.destinations.is_empty() {
            let base = downstream.url.to_string();
            let url = format!("{}/api/v1/write", base.trim_end_matches('/'));
            let url = url.parse().unwrap_or_else(|_| downstream.url.clone());
            return vec![ingest::DestinationSettings {
                name: default_name(&url),
                url,
                http: downstream.http.clone(),
            }];
        }
        self.destinations
            .iter()
            .map(|d| ingest::DestinationSettings {
                name: d.name.clone().unwrap_or_else(|| default_name(&d.url)),
                url: d.url.clone(),
                http: d.http.clone(),
            })
            .collect()
    }

    /// What the ingest module needs.
    pub fn settings(&self, downstream: &DownstreamConfig) -> ingest::Settings {
        ingest::Settings {
            destinations: self.named_destinations(downstream),
            replication_factor: self.replication_factor,
            queue_dir: self.queue_dir.clone(),
            max_queue_bytes: self.max_queue_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_future: self.max_future,
            max_past: self.max_past,
            segment_bytes: self.segment_bytes,
            max_inflight_bytes: self.max_inflight_decompressed_bytes,
            send_timeout: self.send_timeout,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            max_send_bytes: self.max_send_bytes,
            send_concurrency: self.send_concurrency,
        }
    }

    /// Every problem, added to `errors`.
    pub fn validate(&mut self, downstream: &DownstreamConfig, errors: &mut Vec<ConfigError>) {
        for (i, d) in self.destinations.iter_mut().enumerate() {
            let at = format!("ingest.destinations[{i}]");
            d.http
                .take_url_credentials(&mut d.url, &format!("{at}.url"), errors);
            d.http.validate(&at, errors);
            let url = &d.url;
            if !matches!(url.scheme_str(), Some("http" | "https")) || url.authority().is_none() {
                errors.push(error(
                    &format!("{at}.url"),
                    format!("{url} must be an http:// or https:// URL with a host"),
                ));
            }
        }
        let named = self.named_destinations(downstream);
        let mut seen = BTreeSet::new();
        for (i, ingest::DestinationSettings { name, .. }) in named.iter().enumerate() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
            {
                errors.push(error(
                    &format!("ingest.destinations[{i}].name"),
                    format!("{name:?} must be letters, digits, '.', '_', ':' or '-'"),
                ));
            }
            if !seen.insert(name) {
                errors.push(error(
                    &format!("ingest.destinations[{i}].name"),
                    format!("{name:?} is used twice; give each destination its own name"),
                ));
            }
        }
        if self.replication_factor == 0 || self.replication_factor > named.len().max(1) {
            errors.push(error(
                "ingest.replication_factor",
                format!(
                    "{} is not between 1 and the {} destinations",
                    self.replication_factor,
                    named.len()
                ),
            ));
        }
        if self.max_queue_bytes < 1 << 20 {
            errors.push(error("ingest.max_queue_bytes", "must be at least 1 MiB"));
        }
        if self.max_body_bytes == 0 {
            errors.push(error("ingest.max_body_bytes", "must be greater than 0"));
        }
        if self.max_inflight_decompressed_bytes < self.max_decompressed_bytes {
            errors.push(error(
                "ingest.max_inflight_decompressed_bytes",
                "must be at least ingest.max_decompressed_bytes, or the largest body could never be taken",
            ));
        }
        if !((64 << 10)..=(1 << 30)).contains(&self.segment_bytes) {
            errors.push(error("ingest.segment_bytes", "must be between 64 KiB and 1 GiB"));
        }
        // Snappy's block format encodes lengths in 32 bits.
        if !(1..=(2u64 << 30)).contains(&self.max_decompressed_bytes) {
            errors.push(error(
                "ingest.max_decompressed_bytes",
                "must be between 1 byte and 2 GiB",
            ));
        }
        for (field, value) in [
            ("max_future", self.max_future),
            ("send_timeout", self.send_timeout),
            ("min_backoff", self.min_backoff),
            ("max_backoff", self.max_backoff),
        ] {
            if value.is_zero() {
                errors.push(error(&format!("ingest.{field}"), "must be greater than 0"));
            }
        }
        if self.min_backoff > self.max_backoff {
            errors.push(error(
                "ingest.min_backoff",
                "must not be longer than ingest.max_backoff",
            ));
        }
        if !(1..=64).contains(&self.send_concurrency) {
            errors.push(error(
                "ingest.send_concurrency",
                format!("{} is not between 1 and 64", self.send_concurrency),
            ));
        }
        if self.max_send_bytes == 0 {
            errors.push(error("ingest.max_send_bytes", "must be greater than 0"));
        }
    }
}

/// `host:port` of a URL (port 80 when absent).
fn default_name(url: &Uri) -> String {
    let host = url.host().unwrap_or("destination");
    format!("{host}:{}", url.port_u16().unwrap_or(80))
}
