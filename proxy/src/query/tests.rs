//! No silent gaps: when the sketches were found to cover every series of a selector
//! (so its raw data was skipped) and then do not answer one, the raw data is read and
//! the answer holds every series, equal to the exact one. Each cause of such a miss
//! is forced through the real evaluation path; only the source and the sketches are
//! stand-ins at their trait boundaries.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::prompb::{Label, Sample};
use crate::promql::eval::SketchValue;
use crate::source::{Fetch, RawSeries, SeriesFetch};

const STEP_MS: i64 = 10_000;
const SAMPLES: i64 = 400;

fn labels(i: usize) -> Vec<Label> {
    crate::prompb::test_series(i)
}

/// Three series of `m`, a sample every 10 s.
#[derive(Debug)]
struct Memory(Vec<RawSeries>);

impl Memory {
    fn new() -> Self {
        Self(
            (0..3)
                .map(|i| RawSeries {
                    labels: labels(i),
                    samples: (0..SAMPLES)
                        .map(|k| Sample {
                            value: ((k * 7 + i as i64) % 13) as f64,
                            timestamp: k * STEP_MS,
                        })
                        .collect(),
                })
                .collect(),
        )
    }

    fn pick(&self, selection: &Selection) -> Vec<RawSeries> {
        self.0
            .iter()
            .filter(|s| {
                crate::promql::selects(&selection.matchers, |name| {
                    s.labels
                        .iter()
                        .find(|l| l.name == name)
                        .map_or("", |l| l.value.as_str())
                })
            })
            .map(|s| RawSeries {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|p| p.timestamp >= selection.start_ms && p.timestamp <= selection.end_ms)
                    .copied()
                    .collect(),
            })
            .collect()
    }
}

impl Source for Memory {
    fn select<'a>(&'a self, selections: &'a [Selection], _: &'a ReadScope) -> Fetch<'a> {
        let out = selections.iter().map(|s| self.pick(s)).collect();
        Box::pin(async move { Ok(out) })
    }

    fn series<'a>(&'a self, selection: &'a Selection, _: &'a ReadScope) -> SeriesFetch<'a> {
        let out = self.pick(selection).into_iter().map(|s| s.labels).collect();
        Box::pin(async move { Ok(out) })
    }
}

/// Why the second ask misses.
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// Retention moved the oldest sample past the first window between the two asks.
    RetentionMoved,
    /// The plugin was quarantined between the two asks.
    Quarantined,
    /// The guest returned an error for one series.
    GuestError,
    /// The call for one series panicked.
    Panicked,
}

/// Sketches that answer `max_over_time`-like counts exactly from the same data, until
/// their cause strikes after the coverage check.
#[derive(Debug)]
struct Flaky {
    cause: Cause,
    data: Memory,
    /// Coverage checks made so far.
    checked: AtomicUsize,
    oldest_ms: std::sync::atomic::AtomicI64,
}

impl Sketches for Flaky {
    fn serves(&self, function: &str) -> bool {
        function == "distinct_over_time"
    }

    fn covers(&self, _: &str, _: &Labels, ends: Range, window_ms: i64) -> bool {
        self.checked.fetch_add(1, Ordering::Relaxed);
        ends.start_ms - window_ms >= self.oldest_ms.load(Ordering::Relaxed)
    }

    fn answer(
        &self,
        _: &str,
        labels: &Labels,
        _: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Option<Vec<Option<SketchValue>>> {
        let second_series = labels.iter().any(|l| l.name == "i" && l.value == "1");
        match self.cause {
            Cause::RetentionMoved => {
                self.oldest_ms.store(i64::MAX, Ordering::Relaxed);
                if ends.start_ms - window_ms < self.oldest_ms.load(Ordering::Relaxed) {
                    return None;
                }
            }
            Cause::Quarantined => return None,
            Cause::GuestError if second_series => return None,
            Cause::Panicked if second_series => panic!("a sketch call panics"),
            Cause::GuestError | Cause::Panicked => {}
        }
        let series = self.data.0.iter().find(|s| {
            let want: Vec<Label> = labels.iter().cloned().collect();
            s.labels == want
        })?;
        let steps = (ends.end_ms - ends.start_ms) / ends.step_ms + 1;
        Some(
            (0..steps)
                .map(|k| {
                    let end = ends.start_ms + k * ends.step_ms;
                    let mut seen: Vec<u64> = series
                        .samples
                        .iter()
                        .filter(|p| p.timestamp >= end - window_ms && p.timestamp <= end)
                        .map(|p| p.value.to_bits())
                        .collect();
                    seen.sort_unstable();
                    seen.dedup();
                    (!seen.is_empty()).then_some(SketchValue {
                        value: seen.len() as f64,
                        bound: 0.0,
                    })
                })
                .collect(),
        )
    }

    fn compute(
        &self,
        _: &str,
        _: &[f64],
        _: &[Point],
        _: Range,
        _: i64,
    ) -> Result<Vec<Option<SketchValue>>, String> {
        Err("not a plugin-only function".into())
    }
}

async fn run(source: &Memory, sketches: Option<Arc<dyn Sketches>>) -> Answer {
    let expr = Arc::new(crate::promql::parse("distinct_over_time(m[1h])").unwrap());
    let range = Range {
        start_ms: 3_600_000,
        end_ms: 3_900_000,
        step_ms: 60_000,
    };
    let limits = QueryLimits {
        max_samples: 1_000_000,
        max_series: 1000,
        lookback: Duration::from_secs(300),
        timeout: Duration::from_secs(60),
        push_down: false,
        own_functions: Vec::new(),
    };
    let scope = ReadScope::new(false);
    let reader = Reader {
        source,
        partial: &scope,
    };
    let (answer, _) = evaluate(
        reader,
        expr,
        range,
        &limits,
        limits.timeout,
        Counter::default(),
        sketches,
        None,
    )
    .await
    .unwrap();
    answer
}

#[tokio::test]
async fn a_series_the_sketches_miss_after_covering_is_read_raw_and_answered() {
    let source = Memory::new();
    let exact = run(&source, None).await;
    let Answer::Matrix(exact_series) = &exact else {
        panic!("a range answer: {exact:?}")
    };
    assert_eq!(exact_series.len(), 3);
    for cause in [
        Cause::RetentionMoved,
        Cause::Quarantined,
        Cause::GuestError,
        Cause::Panicked,
    ] {
        let sketches = Arc::new(Flaky {
            cause,
            data: Memory::new(),
            checked: AtomicUsize::new(0),
            oldest_ms: std::sync::atomic::AtomicI64::new(0),
        });
        let answer = run(&source, Some(sketches.clone())).await;
        assert!(
            sketches.checked.load(Ordering::Relaxed) >= 3,
            "{cause:?}: the selector was found covered, so its raw data was skipped"
        );
        assert_eq!(answer, exact, "{cause:?}");
    }
}
