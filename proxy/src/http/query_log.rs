//! `query.log_file`: one JSON line per `query` and `query_range`, in the shape of
//! Prometheus' query log (`httpRequest`, `params`, `stats.timings`, `ts`), with what the
//! proxy adds: the path that answered, the samples read, the status and the trace id.
//!
//! Lines go through a bounded queue to a writer thread, so a slow or full disk never
//! holds up a query; past [`QUEUE_LINES`] waiting lines, new ones are dropped and
//! counted.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::promql::eval::Stats;

/// Lines waiting for the writer at most.
pub const QUEUE_LINES: usize = 10_000;

/// The open log: a queue to its writer thread.
#[derive(Debug)]
pub struct QueryLog {
    path: PathBuf,
    lines: SyncSender<Vec<u8>>,
    dropped: Counter,
}

impl QueryLog {
    /// Opens `path` for appending (created if missing) and starts its writer; lines
    /// that find the queue full are counted in `dropped`.
    pub fn open(path: &Path, dropped: Counter) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (lines, queue) = sync_channel::<Vec<u8>>(QUEUE_LINES);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("query-log".to_owned())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                let mut failing = false;
                while let Ok(line) = queue.recv() {
                    let mut result = out.write_all(&line);
                    // Write what is queued, then flush once: a line is on disk soon.
                    while let Ok(more) = queue.try_recv() {
                        result = result.and_then(|()| out.write_all(&more));
                    }
                    result = result.and_then(|()| out.flush());
                    match result {
                        Err(error) if !failing => {
                            tracing::error!(file = %shown, %error, "cannot write the query log; its lines are lost until it can");
                            failing = true;
                        }
                        Ok(()) if failing => {
                            tracing::info!(file = %shown, "the query log is written again");
                            failing = false;
                        }
                        _ => {}
                    }
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
            lines,
            dropped,
        })
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `entry` as one line.
    pub fn write(&self, entry: &Entry<'_>) {
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// What the request path notes about one query while it runs.
#[derive(Debug)]
pub struct Trail {
    started: Instant,
    last: Instant,
    /// `query`, `start`, `end`, `step` as the client sent them.
    pub params: Option<Params>,
    /// Seconds per stage, in order.
    pub stages: Vec<(&'static str, f64)>,
}

impl Trail {
    /// A trail starting now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            params: None,
            stages: Vec::new(),
        }
    }

    /// Ends stage `name` now (it began when the previous one ended).
    pub fn stage(&mut self, name: &'static str) {
        let now = Instant::now();
        self.stages.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }

    /// Seconds since the start.
    pub fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The query's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// The PromQL text.
    pub query: String,
    /// `start` (or `time`), as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `end`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// `step`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// One line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<'a> {
    /// The client.
    pub http_request: HttpRequest<'a>,
    /// The query.
    pub params: &'a Params,
    /// Timings and samples.
    pub stats: EntryStats,
    /// `sketch`, `engine`, `downstream` or several, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<&'a str>,
    /// The HTTP status answered.
    pub status: u16,
    /// The W3C trace id of the request's trace, when traces are on.
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When it ended, RFC 3339.
    pub ts: String,
}

/// `httpRequest`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest<'a> {
    /// The peer's address, without port.
    #[serde(rename = "clientIP")]
    pub client_ip: Option<String>,
    /// GET or POST.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
}

/// `stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryStats {
    /// Seconds per stage, and in total.
    pub timings: serde_json::Map<String, serde_json::Value>,
    /// Samples read.
    pub samples: serde_json::Value,
}

impl EntryStats {
    /// The timings of `trail`, then those of the evaluation if the proxy evaluated.
    pub fn of(trail: &Trail, stats: Option<&Stats>) -> Self {
        let mut timings = serde_json::Map::new();
        for (name, seconds) in &trail.stages {
            timings.insert(format!("{name}Time"), (*seconds).into());
        }
        if let Some(s) = stats {
            timings.insert("sketchPlanTime".to_owned(), s.sketch_seconds.into());
            timings.insert("fetchTime".to_owned(), s.fetch_seconds.into());
            timings.insert("evalTotalTime".to_owned(), s.eval_seconds.into());
        }
        timings.insert("execTotalTime".to_owned(), trail.total().into());
        let samples = match stats {
            Some(s) => serde_json::json!({ "totalQueryableSamples": s.samples_read }),
            None => serde_json::json!({}),
        };
        Self { timings, samples }
    }
}

/// The client's address without its port.
pub fn client_ip(peer: Option<SocketAddr>) -> Option<String> {
    peer.map(|p| p.ip().to_string())
}

/// `ms` since the epoch as RFC 3339 with milliseconds, as Prometheus' `ts`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
