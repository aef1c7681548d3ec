//! `sketches:`: which ingested series are sketched, and how much they may use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration, error};
use crate::promql;

/// `sketches:` section. Rules are reloadable; series that start matching after a
/// reload get sketches from then on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SketchesConfig {
    /// Most series with sketches. Past it, new series get none (counted in
    /// `sketch_proxy_sketch_series_refused_total` and logged); ingest carries on.
    pub max_series: usize,
    /// Most bytes all sketches may hold, as the plugins report them. Past it, new series
    /// get no sketches. Default 4 GiB.
    pub max_memory_bytes: u64,
    /// What to sketch. Each remote-written series matching a rule's selector gets one
    /// sketch per function of every rule it matches.
    pub rules: Vec<SketchRule>,
    /// Rule queries to keep warm, as a dashboard asks them
    /// (`quantile_over_time(0.99, http_latency_ms[1h])`); the flag `--sketch.rule` adds
    /// more. Each call a sketch could answer becomes a rule: its selector, its function,
    /// and `query_retain` plus its window and offset of history.
    pub queries: Vec<String>,
    /// How far back dashboards look with the rule queries (default 24h).
    #[serde(with = "duration::prometheus")]
    pub query_retain: Duration,
    /// Fill the sketches of each new rule (at start, and rules a reload adds) from
    /// downstream's history over the rule's retention before they answer queries
    /// (default true). Off, a rule's sketches start empty and serve once they have seen
    /// a whole window.
    pub backfill: bool,
    /// Where sketches are snapshotted. Default: next to `ingest.queue_dir` — `sketches`
    /// beside a directory named `queue` (`data/sketches` for the default `data/queue`),
    /// else the queue directory's name plus `.sketches`. At start the snapshot there is
    /// restored and only the span after each restored sketch's newest sample is
    /// backfilled.
    pub data_dir: Option<PathBuf>,
    /// How often the sketches are snapshotted (default 5m); also on shutdown. A crash
    /// loses at most this much sketching, which the backfill at start reads again.
    #[serde(with = "duration::prometheus")]
    pub snapshot_interval: Duration,
    /// No longer used, and ignored with a warning: the results cache (`cache:`) keeps
    /// the steps of rule queries' answers along with every other query's.
    pub kept_points: Option<u64>,
    /// The cost rule: a call whose window is shorter than this is answered from raw
    /// data (default 10m: forty samples at a 15 s scrape cost the exact path about
    /// one plugin call). Lower it to have sketches answer short windows too.
    #[serde(with = "duration::prometheus_or_zero")]
    pub min_window: Duration,
}

impl Default for SketchesConfig {
    fn default() -> Self {
        Self {
            max_series: 100_000,
            max_memory_bytes: 4 << 30,
            rules: Vec::new(),
            queries: Vec::new(),
            query_retain: Duration::from_secs(24 * 3600),
            min_window: Duration::from_millis(promql::sketch_plan::MIN_WINDOW_MS as u64),
            backfill: true,
            data_dir: None,
            snapshot_interval: Duration::from_secs(300),
            kept_points: None,
        }
    }
}

/// One sketch rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SketchRule {
    /// A series selector, e.g. `http_latency_ms{job="api"}`.
    #[serde(rename = "match")]
    pub selector: String,
    /// Functions to keep sketches for, e.g. `[quantile_over_time, rate]`: `*_over_time`
    /// names and PromQL's `rate`, `increase`, `delta`, `irate`, `idelta`, `changes`,
    /// `resets` and `deriv`; each must be served by a loaded plugin (unknown ones are
    /// logged and skipped).
    pub functions: Vec<String>,
    /// History each sketch keeps, e.g. `26h` for 24 h panels of 1 h windows.
    #[serde(with = "duration::prometheus")]
    pub retain: Duration,
    /// Every sample of every series this selector selects is remote-written through
    /// the proxy (default false). Then which series exist, for a query within the
    /// selector that sketches answer, is read from the sketches instead of asked of
    /// downstream (`/api/v1/series`): no round trip. Series written to downstream some
    /// other way are not in those answers.
    #[serde(default)]
    pub complete: bool,
}

impl SketchesConfig {
    /// The snapshot directory: `data_dir`, or its default next to `queue_dir`.
    pub fn data_dir(&self, queue_dir: &Path) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let name = queue_dir.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some("queue") | None => queue_dir.with_file_name("sketches"),
            Some(name) => queue_dir.with_file_name(format!("{name}.sketches")),
        }
    }

    /// Every problem, added to `errors`.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.max_series == 0 {
            errors.push(error("sketches.max_series", "must be greater than 0"));
        }
        if self.max_memory_bytes == 0 {
            errors.push(error("sketches.max_memory_bytes", "must be greater than 0"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("sketches.rules[{i}].{field}");
            if let Err(e) = promql::parse_selector(&rule.selector) {
                errors.push(error(
                    &at("match"),
                    format!("{:?}: {}", rule.selector, e.detail()),
                ));
            }
            if rule.functions.is_empty() {
                errors.push(error(&at("functions"), "name at least one function"));
            }
            for f in &rule.functions {
                if !f.ends_with("_over_time") && !promql::PROMQL_RANGE_FUNCTIONS.contains(&f.as_str()) {
                    errors.push(error(
                        &at("functions"),
                        format!(
                            "{f:?} is not a range function (*_over_time, or one of {})",
                            promql::PROMQL_RANGE_FUNCTIONS.join(", ")
                        ),
                    ));
                }
            }
            if rule.retain.is_zero() {
                errors.push(error(&at("retain"), "must be greater than 0"));
            }
        }
        for (i, query) in self.queries.iter().enumerate() {
            let at = format!("sketches.queries[{i}]");
            match promql::parse(query) {
                Err(e) => errors.push(error(&at, format!("{query:?}: {}", e.detail()))),
                Ok(expr) => {
                    // Custom plugins are not known yet: any range function could be one.
                    let any = |f: &str| f.ends_with("_over_time");
                    if promql::sketch_plan::sketch_calls(&expr, &any, 0).0.is_empty() {
                        errors.push(error(
                            &at,
                            format!(
                                "{query:?} calls no *_over_time function of a selector with literal arguments"
                            ),
                        ));
                    }
                }
            }
        }
        if self.snapshot_interval < Duration::from_secs(1) {
            errors.push(error("sketches.snapshot_interval", "must be at least 1s"));
        }
        if self.data_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            errors.push(error("sketches.data_dir", "must name a directory"));
        }
        if self.query_retain.is_zero() {
            errors.push(error("sketches.query_retain", "must be greater than 0"));
        }
    }
}
