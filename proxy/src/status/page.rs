//! What the status page shows, gathered from the proxy's state and rendered by the
//! `status.html` template (askama: every value is HTML-escaped).

use std::sync::Arc;

use askama::Template;

use super::history::Series;
use crate::sketches::status::Status;
use crate::state::Proxy;

/// The page.
#[derive(Debug, Template)]
#[template(path = "status.html")]
pub struct Page {
    /// The proxy's version.
    pub version: &'static str,
    /// Every route's prefix, without a trailing `/`.
    pub base: String,
    /// The same as a JavaScript string (made [`script_safe`]).
    pub base_json: String,
    /// Read endpoints and their health.
    pub endpoints: Vec<EndpointRow>,
    /// Sketch rules.
    pub rules: Vec<RuleRow>,
    /// The sketches as a whole, and the snapshot restore.
    pub sketches: Status,
    /// What the sketches hold, in words.
    pub sketch_memory: String,
    /// Rule queries, each with a Compare button.
    pub rule_queries: Vec<String>,
    /// Loaded plugins, and those refused at load.
    pub plugins: Vec<PluginRow>,
    /// Why plugins were refused.
    pub rejected: Vec<String>,
    /// Remote-write destinations.
    pub queues: Vec<QueueRow>,
    /// The last hour, as JSON for the plots (made [`script_safe`]).
    pub history_json: String,
    /// The effective configuration, secrets redacted.
    pub config: String,
}

/// One read endpoint.
#[derive(Debug)]
pub struct EndpointRow {
    /// Its URL, credentials redacted.
    pub url: String,
    /// How it is read.
    pub kind: String,
    /// Its external labels, `name="value"` joined.
    pub external: String,
    /// Whether it answered its last readiness probe (`None`: not probed yet).
    pub up: Option<bool>,
}

/// One sketch rule.
#[derive(Debug)]
pub struct RuleRow {
    /// Its selector.
    pub selector: String,
    /// Its functions, joined.
    pub functions: String,
    /// Where it came from.
    pub origin: String,
    /// History kept, as a duration.
    pub retain: String,
    /// Series with sketches.
    pub series: u64,
    /// The covered span as shares of the retained window: (left %, width %).
    pub coverage: Option<(f64, f64)>,
    /// The covered span, in words.
    pub coverage_text: String,
    /// The backfill's state and progress, in words.
    pub backfill: String,
}

/// One plugin.
#[derive(Debug)]
pub struct PluginRow {
    /// Its name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Each function with its bound.
    pub functions: Vec<String>,
    /// Instances.
    pub instances: usize,
    /// `serving`, or `quarantined: why`.
    pub state: String,
    /// Whether it is quarantined.
    pub quarantined: bool,
    /// Linear memory its instances hold, in words.
    pub memory: String,
}

/// One remote-write destination.
#[derive(Debug)]
pub struct QueueRow {
    /// Its name.
    pub name: String,
    /// Bytes waiting.
    pub bytes: i64,
    /// Age of the oldest waiting sample, s.
    pub age_seconds: f64,
    /// Samples sent since start.
    pub sent: u64,
    /// Samples per second sent over the last 15 s, in words.
    pub rate: String,
}

impl Page {
    /// The page as the proxy stands now (`sketches` asked off the async threads).
    pub async fn gather(proxy: &Arc<Proxy>, history: Series) -> Result<Self, String> {
        let runtime = proxy.runtime();
        let config = &runtime.config;
        let rules = runtime.sketch_rules.clone();
        let store = proxy.sketches.clone();
        // Coverage is a plugin call per sketch.
        let sketches = tokio::task::spawn_blocking(move || store.status(&rules))
            .await
            .map_err(|e| format!("sketch status failed: {e}"))?;
        let now_s = crate::clock::now_ms() as f64 / 1000.0;
        let endpoints = endpoints(proxy, &runtime).await;
        let plugins = runtime
            .plugins
            .plugins()
            .iter()
            .map(|p| {
                let info = p.info();
                let reason = p.quarantine_reason();
                PluginRow {
                    name: info.name.clone(),
                    version: info.version.clone(),
                    functions: info
                        .functions
                        .iter()
                        .map(|f| {
                            let bound = crate::plugin_host::bound_text(&f.bound);
                            if f.bound.relative == 0.0 {
                                format!("{}: {bound}", f.name)
                            } else {
                                format!("{}: within {bound}", f.name)
                            }
                        })
                        .collect(),
                    instances: p.instances(),
                    quarantined: p.is_quarantined(),
                    state: match (p.is_quarantined(), reason) {
                        (false, _) => "serving".to_owned(),
                        (true, Some(why)) => format!("quarantined: {why}"),
                        (true, None) => "quarantined".to_owned(),
                    },
                    memory: bytes(p.linear_memory_bytes() as u64),
                }
            })
            .collect();
        let rejected = runtime
            .plugins
            .rejected()
            .iter()
            .map(ToString::to_string)
            .collect();
        let queues = if config.ingest.enabled {
            config
                .ingest
                .named_destinations(&config.downstream)
                .into_iter()
                .map(|d| {
                    let labels = crate::metrics::DestinationLabels {
                        destination: d.name.clone(),
                    };
                    let m = &proxy.metrics;
                    QueueRow {
                        bytes: m.ingest.queue_bytes.get(&labels).map_or(0, |g| g.get()),
                        age_seconds: m.ingest.queue_age_seconds.get(&labels).map_or(0.0, |g| g.get()),
                        sent: m.ingest.samples_sent.get(&labels).map_or(0, |c| c.get()),
                        rate: proxy
                            .history
                            .send_rate(&d.name)
                            .map_or_else(|| "not counted yet".to_owned(), |r| format!("{r:.1}/s")),
                        name: d.name,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let rule_rows = sketches.rules.iter().map(|r| rule_row(r, now_s)).collect();
        let sketch_memory = bytes(sketches.memory_bytes);
        let base = config.web.route_prefix.trim_end_matches('/').to_owned();
        Ok(Self {
            version: env!("CARGO_PKG_VERSION"),
            base_json: script_safe(&serde_json::to_string(&base).unwrap_or_else(|_| "\"\"".to_owned())),
            base,
            endpoints,
            rules: rule_rows,
            sketches,
            sketch_memory,
            rule_queries: config.sketches.queries.clone(),
            plugins,
            rejected,
            queues,
            history_json: script_safe(&serde_json::to_string(&history).unwrap_or_else(|_| "{}".to_owned())),
            config: redact(&format!("{config:#?}")),
        })
    }
}

/// The read endpoints: each of several with its last probe, or the one downstream
/// probed now.
async fn endpoints(proxy: &Proxy, runtime: &crate::state::Runtime) -> Vec<EndpointRow> {
    let config = &runtime.config;
    if runtime.targets.is_empty() {
        let up = runtime.downstream.ready().await.is_ok();
        return vec![EndpointRow {
            url: redact(&config.downstream.url.to_string()),
            kind: format!("{:?}", config.query.source),
            external: String::new(),
            up: Some(up),
        }];
    }
    runtime
        .targets
        .iter()
        .zip(&config.downstream.endpoints)
        .map(|(target, configured)| {
            let labels = crate::metrics::EndpointLabels {
                endpoint: target.client.url(),
            };
            EndpointRow {
                url: redact(&configured.url.to_string()),
                kind: format!("{:?}", configured.kind),
                external: target
                    .endpoint
                    .external
                    .iter()
                    .map(|(n, v)| format!("{n}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                up: proxy.metrics.endpoint_up.get(&labels).map(|g| g.get() == 1),
            }
        })
        .collect()
}

fn rule_row(rule: &crate::sketches::status::RuleStatus, now_s: f64) -> RuleRow {
    let window = rule.retain_seconds.max(1) as f64;
    let oldest = now_s - window;
    let coverage = rule.coverage.map(|span| {
        let left = ((span.from - oldest) / window).clamp(0.0, 1.0);
        let right = ((span.to - oldest) / window).clamp(0.0, 1.0);
        (left * 100.0, (right - left).max(0.0) * 100.0)
    });
    let coverage_text = match rule.coverage {
        Some(span) => format!(
            "{} to {} ago",
            ago(now_s - span.from),
            ago((now_s - span.to).max(0.0))
        ),
        None => "nothing yet".to_owned(),
    };
    let backfill = match &rule.backfill {
        None => "none".to_owned(),
        Some(b) if b.state == "done" => format!("done in {:.1} s, {} samples", b.seconds, b.samples),
        Some(b) => format!(
            "{:.0}% read, {} failures{}",
            b.progress * 100.0,
            b.failures,
            b.last_error
                .as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        ),
    };
    RuleRow {
        selector: rule.selector.clone(),
        functions: rule.functions.join(", "),
        origin: rule.origin.clone(),
        retain: ago(window),
        series: rule.series,
        coverage,
        coverage_text,
        backfill,
    }
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` as JSON escapes, so no
/// text in it can close the element or open a comment.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `n` bytes as `512 B`, `12.3 KiB`, `4.5 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    if value < 1024.0 {
        return format!("{n} B");
    }
    let mut unit = "B";
    for u in units {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// `seconds` as `3h12m`, `45s`.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, _) => format!("{m}m"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// `text` with every URL's `user:password@` replaced by `<secret>@` and its query
/// string by `?<secret>` (the configuration's own secrets print as `<secret>` already).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ')')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        let authority_end = url.find(['/', '?']).unwrap_or(url.len());
        match url[..authority_end].rfind('@') {
            Some(userinfo) => {
                out.push_str("<secret>");
                out.push_str(&url[userinfo..authority_end]);
            }
            None => out.push_str(&url[..authority_end]),
        }
        let path = &url[authority_end..];
        match path.find('?') {
            Some(query) => {
                out.push_str(&path[..query]);
                out.push_str("?<secret>");
            }
            None => out.push_str(path),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
