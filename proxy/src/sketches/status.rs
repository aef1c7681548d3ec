//! What `/api/v1/status/sketches` shows: every rule with its series, the span its
//! sketches cover, and its backfill.

use std::sync::Arc;

use serde::Serialize;

use super::backfill::{Job, JobKey, Progress};
use super::{Rules, SketchStore};

/// The sketches as a whole.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Series with sketches.
    pub series: u64,
    /// Bytes all sketches hold, as the plugins report.
    pub memory_bytes: u64,
    /// The current rules, configured ones first.
    pub rules: Vec<RuleStatus>,
    /// Backfills of rules a reload removed, still running.
    pub orphan_backfills: Vec<BackfillStatus>,
    /// Reading the sketches back from the snapshot at start.
    pub restore: super::RestoreStatus,
}

/// One rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// The selector.
    pub selector: String,
    /// Functions it sketches.
    pub functions: Vec<String>,
    /// History kept, s.
    pub retain_seconds: i64,
    /// `config`, or the rule query it came from.
    pub origin: String,
    /// Series it selects that have sketches.
    pub series: u64,
    /// The span every one of those sketches covers (Unix seconds), if they do.
    pub coverage: Option<Span>,
    /// Its backfill, when one was run.
    pub backfill: Option<BackfillStatus>,
}

/// A time span, Unix seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Span {
    /// Start.
    pub from: f64,
    /// End.
    pub to: f64,
}

/// One backfill.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The rule it fills (selector, functions, retention).
    pub rule: String,
    /// `running` or `done`.
    pub state: &'static str,
    /// Share of the span read, 0 to 1.
    pub progress: f64,
    /// The span read back (Unix seconds).
    pub span: Span,
    /// Series in the largest slice read.
    pub series: u64,
    /// Samples read back.
    pub samples: u64,
    /// Failed reads (each retried).
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Time it took, s (when done).
    pub seconds: f64,
}

impl BackfillStatus {
    fn of(key: &JobKey, p: &Progress) -> Self {
        Self {
            rule: key.to_string(),
            state: if p.done { "done" } else { "running" },
            progress: p.ratio(),
            span: Span {
                from: p.from_ms as f64 / 1000.0,
                to: p.to_ms as f64 / 1000.0,
            },
            series: p.series,
            samples: p.samples,
            failures: p.failures,
            last_error: p.last_error.clone(),
            seconds: p.seconds,
        }
    }
}

impl SketchStore {
    /// The status of every rule in `rules`. Asks each sketch its coverage: a call per
    /// sketch, so run it off the async threads.
    pub fn status(&self, rules: &Rules) -> Status {
        let jobs = self.backfills();
        let job_of = |key: &JobKey| jobs.iter().find(|j| &j.key == key).cloned();
        let series = self.sketched_series(|_| true);
        let statuses = rules
            .rules()
            .iter()
            .filter(|r| !r.functions.is_empty())
            .map(|rule| {
                let mut count = 0;
                let mut span: Option<(i64, i64)> = None;
                let mut uncovered = false;
                for s in series.iter().filter(|s| rule.selects(&s.labels)) {
                    count += 1;
                    for f in s
                        .functions
                        .read()
                        .iter()
                        .filter(|f| f.serves_any(&rule.functions))
                    {
                        match f.serving(|sketch| sketch.coverage().ok().flatten()).flatten() {
                            Some((oldest, newest)) => {
                                let (from, to) = span.unwrap_or((i64::MIN, i64::MAX));
                                span = Some((from.max(oldest), to.min(newest)));
                            }
                            None => uncovered = true,
                        }
                    }
                }
                let key = JobKey::of(rule);
                RuleStatus {
                    selector: rule.selector.clone(),
                    functions: rule.functions.clone(),
                    retain_seconds: rule.retain_ms / 1000,
                    origin: rule.origin.clone(),
                    series: count,
                    coverage: span
                        .filter(|(from, to)| !uncovered && from <= to)
                        .map(|(from, to)| Span {
                            from: from as f64 / 1000.0,
                            to: to as f64 / 1000.0,
                        }),
                    backfill: job_of(&key).map(|j: Arc<Job>| BackfillStatus::of(&j.key, &j.progress())),
                }
            })
            .collect();
        let current: Vec<JobKey> = rules.rules().iter().map(JobKey::of).collect();
        Status {
            series: self.series_count(),
            memory_bytes: self.memory.load(std::sync::atomic::Ordering::Relaxed),
            rules: statuses,
            orphan_backfills: jobs
                .iter()
                .filter(|j| j.running() && !current.contains(&j.key))
                .map(|j| BackfillStatus::of(&j.key, &j.progress()))
                .collect(),
            restore: self.restore_status(),
        }
    }
}
