//! Backfill: when a sketch rule appears (start, reload), its sketches are filled from
//! downstream's history before they serve queries.
//!
//! A job reads the rule's selector over its retained span, oldest first, in slices
//! (remote read through the query source), and inserts each slice into the sketches.
//! Sketches created while a job that wants them runs are *backfilling*: they serve no
//! query, and remote-written samples for them wait in a buffer. When the job ends, each
//! buffer is inserted after the history, keeping only samples newer than the newest one
//! backfilled. So at the seam nothing is counted twice (a sample both read back and
//! buffered is inserted once) and nothing is missed: before the last slice is read, the
//! job waits until every ingest destination has delivered what it had queued, so every
//! sample the proxy acknowledged before its sketch started buffering is read back.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use promql_parser::label::Matchers;

use super::{Rule, Rules, SketchStore};
use crate::clock::now_ms;
use crate::ingest::Ingest;
use crate::plugin_host::PluginSet;
use crate::prompb::Label;
use crate::source::{Selection, Source, SourceError};

/// History read per remote-read request: bounded memory, and progress to report.
pub const SLICE_MS: i64 = 3_600_000;
/// A slice over `query.max_samples` is halved down to this.
const MIN_SLICE_MS: i64 = 60_000;
/// The longest wait for the ingest queues to deliver before the last slice; past it
/// the job goes on (a destination is down) and says the seam may miss samples.
const FLUSH_WAIT: Duration = Duration::from_secs(120);
/// Retries after a failed read back off from this to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What a job reads from the running configuration, again at every slice, so a reload
/// applies.
#[derive(Debug)]
pub struct Env {
    /// The current rules.
    pub rules: Arc<Rules>,
    /// The loaded plugins.
    pub plugins: Arc<PluginSet>,
    /// Where history comes from (`query.source`).
    pub source: Arc<dyn Source>,
    /// The remote-write queues, waited for before the last slice.
    pub ingest: Option<Arc<Ingest>>,
}

/// A rule's identity: a job runs once per key, and a reload keeping the key keeps its
/// sketches and its finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    /// The selector.
    pub selector: String,
    /// Its functions, sorted.
    pub functions: Vec<String>,
    /// History, ms.
    pub retain_ms: i64,
}

impl JobKey {
    /// The key of `rule`.
    pub fn of(rule: &Rule) -> Self {
        Self {
            selector: rule.selector.clone(),
            functions: rule.functions.clone(),
            retain_ms: rule.retain_ms,
        }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}s",
            self.selector,
            self.functions.join(","),
            self.retain_ms / 1000
        )
    }
}

/// One rule's backfill.
#[derive(Debug)]
pub struct Job {
    /// Which rule.
    pub key: JobKey,
    matchers: Matchers,
    /// Sketches created while set wait for this job; cleared (under the store's series
    /// lock) before their buffers are inserted, which is before the job is done.
    filling: AtomicBool,
    progress: Mutex<Progress>,
}

/// Where a job is.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Whether it finished.
    pub done: bool,
    /// Start of the history read, ms.
    pub from_ms: i64,
    /// End of the history read, ms (moves to the present at the last slice).
    pub to_ms: i64,
    /// History read so far ends here, ms.
    pub reached_ms: i64,
    /// Series in the largest slice.
    pub series: u64,
    /// Samples read back (every pass).
    pub samples: u64,
    /// Failed reads.
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Time spent, s.
    pub seconds: f64,
}

impl Progress {
    /// Share of the span read, 0 to 1.
    pub fn ratio(&self) -> f64 {
        if self.done {
            return 1.0;
        }
        let span = (self.to_ms - self.from_ms).max(1) as f64;
        ((self.reached_ms - self.from_ms) as f64 / span).clamp(0.0, 1.0)
    }
}

impl Job {
    /// A job for `rule`, not started.
    pub fn new(rule: &Rule) -> Self {
        Self {
            key: JobKey::of(rule),
            matchers: rule.matchers.clone(),
            filling: AtomicBool::new(true),
            progress: Mutex::new(Progress::default()),
        }
    }

    /// Whether it still runs: once it does not, its sketches serve.
    pub fn running(&self) -> bool {
        !self.progress.lock().done
    }

    /// Whether it still fills `function` for the series with `labels` (new sketches
    /// for them wait for it).
    pub fn fills(&self, labels: &[Label], function: &str) -> bool {
        self.filling.load(Ordering::SeqCst)
            && self.key.functions.iter().any(|f| f == function)
            && self.selects(labels)
    }

    /// Whether its selector selects `labels`.
    pub fn selects(&self, labels: &[Label]) -> bool {
        super::rules::selects(&self.matchers, labels)
    }

    /// A copy of its progress.
    pub fn progress(&self) -> Progress {
        self.progress.lock().clone()
    }

    pub(super) fn stop_filling(&self) {
        self.filling.store(false, Ordering::SeqCst);
    }

    fn mark_done(&self) {
        self.progress.lock().done = true;
    }
}

/// Runs `job` to its end: reads the history, then lets its sketches serve. `env`
/// gives the running configuration, or `None` once the proxy is gone.
pub async fn run(store: Arc<SketchStore>, job: Arc<Job>, env: impl Fn() -> Option<Env>) {
    // Restored sketches already hold history: read only what came after them.
    store.wait_restored().await;
    let started = Instant::now();
    let now = now_ms();
    let from = match store.resume_from(&job) {
        Some(newest) => newest.max(now - job.key.retain_ms),
        None => now - job.key.retain_ms,
    };
    {
        let mut p = job.progress.lock();
        p.from_ms = from;
        p.to_ms = now;
        p.reached_ms = from;
    }
    let rule = job.key.to_string();
    tracing::info!(%rule, "backfill started");
    store.metrics.backfills_running.inc();
    let mut pass = Pass::First;
    loop {
        let Some(cut) = read_span(&store, &job, &env, (from, now), pass).await else {
            store.metrics.backfills_running.dec();
            return;
        };
        let Some(env) = env() else {
            store.metrics.backfills_running.dec();
            return;
        };
        // A sender catching up (or any sample delayed past its span's read) leaves a
        // sketch with a hole it cannot fill in order; such sketches start again, as
        // long as another read follows to fill them.
        let again = pass != Pass::Last;
        let overlapped = store.restart_overlapped(&job, cut, &env.plugins, again);
        if overlapped == 0 {
            break;
        }
        if !again {
            tracing::warn!(%rule, sketches = overlapped, "samples keep arriving for spans already read; serving what the last read found");
            break;
        }
        tracing::info!(%rule, sketches = overlapped, "samples arrived for spans already read; reading the span again for those sketches");
        pass = if pass == Pass::First {
            Pass::Again
        } else {
            Pass::Last
        };
    }
    store.finish_backfill(&job).await;
    let progress = {
        let mut p = job.progress.lock();
        p.seconds = started.elapsed().as_secs_f64();
        p.clone()
    };
    job.mark_done();
    store
        .metrics
        .backfill_progress
        .get_or_create(&rule.as_str().into())
        .set(1.0);
    store.metrics.backfills_running.dec();
    tracing::info!(
        %rule,
        series = progress.series,
        samples = progress.samples,
        seconds = progress.seconds,
        "backfill done; its sketches serve queries"
    );
}

/// Which read of a job's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Into every sketch; reports progress.
    First,
    /// Into the sketches started again only.
    Again,
    /// The last such read.
    Last,
}

/// Reads `span` (from, planned end) slice by slice, waiting for the ingest queues before
/// the last slice, which reaches the present; returns where the last slice started, or
/// `None` once the proxy is gone.
async fn read_span(
    store: &SketchStore,
    job: &Job,
    env: &impl Fn() -> Option<Env>,
    span: (i64, i64),
    pass: Pass,
) -> Option<i64> {
    let (from, planned_end) = span;
    let rule = job.key.to_string();
    let mut at = from;
    let mut slice = SLICE_MS;
    let mut retry = RETRY_MIN;
    let mut logged_tenth = 0;
    loop {
        let env = env()?;
        // Judged against the end planned at the start, not the moving present: the
        // slice holding the newest history is the last one, read after the queues
        // delivered, rather than a sliver of the present after it.
        let last = planned_end - at <= slice;
        if last
            && let Some(ingest) = &env.ingest
            && !ingest.flushed(FLUSH_WAIT).await
        {
            tracing::warn!(%rule, "the ingest queues did not deliver within 2 minutes; the sketches may miss samples still queued");
        }
        let end = if last { now_ms() } else { at + slice - 1 };
        match store
            .backfill_slice(job, &env, at, end, pass != Pass::First)
            .await
        {
            Ok((series, samples)) => {
                let start = at;
                at = end + 1;
                retry = RETRY_MIN;
                store.metrics.backfill_samples.inc_by(samples);
                {
                    // Every pass counts, as in the metric.
                    let mut p = job.progress.lock();
                    p.series = p.series.max(series);
                    p.samples += samples;
                }
                if pass == Pass::First {
                    let ratio = {
                        let mut p = job.progress.lock();
                        p.reached_ms = at;
                        p.to_ms = p.to_ms.max(end);
                        p.ratio()
                    };
                    store
                        .metrics
                        .backfill_progress
                        .get_or_create(&rule.as_str().into())
                        .set(ratio);
                    let tenth = (ratio * 10.0) as u32;
                    if tenth > logged_tenth && !last {
                        logged_tenth = tenth;
                        tracing::info!(%rule, progress = format!("{:.0}%", ratio * 100.0), "backfill");
                    }
                }
                if last {
                    return Some(start);
                }
            }
            Err(SourceError::TooMuch { .. }) if slice > MIN_SLICE_MS => slice = (slice / 2).max(MIN_SLICE_MS),
            Err(error) => {
                {
                    let mut p = job.progress.lock();
                    p.failures += 1;
                    p.last_error = Some(error.to_string());
                }
                store.metrics.backfill_failures.inc();
                tracing::warn!(%rule, %error, retry_in = ?retry, "backfill read failed");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Reads one slice of history, `[start_ms, end_ms]`.
pub(super) async fn read_slice(
    job: &Job,
    source: &dyn Source,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<crate::source::RawSeries>, SourceError> {
    let selections = [Selection {
        matchers: job.matchers.clone(),
        start_ms,
        end_ms,
    }];
    // Never partial: a missing endpoint would leave holes no later sample can fill.
    let whole = crate::source::ReadScope::new(false);
    Ok(source
        .select(&selections, &whole)
        .await?
        .pop()
        .unwrap_or_default())
}

#[cfg(test)]
mod tests;
