//! The backfill's passes, forced: a source during each of whose reads a sender resends
//! an old sample, so that every check after a read finds one buffered for a span
//! already read. The job reads its span as often as it may; after the last read its
//! sketches must hold the whole history, not start again with nothing read into them.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::config::{PluginsConfig, SketchRule, SketchesConfig};
use crate::metrics::SketchMetrics;
use crate::plugin_host::{Host, Observer, TrapKind};
use crate::prompb::{Sample, TimeSeries, WriteRequest};
use crate::source::{Fetch, RawSeries, ReadScope, SeriesFetch};

const STEP_MS: i64 = 10_000;
const SERIES: usize = 3;
const FUNCTION: &str = "distinct_over_time";

#[derive(Debug)]
struct Quiet;

impl Observer for Quiet {
    fn quarantined(&self, _: &str, _: TrapKind) {}
}

fn labels(i: usize) -> Vec<Label> {
    crate::prompb::test_series(i)
}

/// Downstream's history; every read also has each series' first sample resent.
#[derive(Debug)]
struct Resending {
    history: Vec<RawSeries>,
    store: Arc<SketchStore>,
    rules: Arc<Rules>,
    plugins: Arc<PluginSet>,
    reads: AtomicUsize,
}

impl Resending {
    fn resend(&self) -> WriteRequest {
        WriteRequest {
            timeseries: self
                .history
                .iter()
                .map(|s| TimeSeries {
                    labels: s.labels.clone(),
                    samples: s.samples[..1].to_vec(),
                    ..TimeSeries::default()
                })
                .collect(),
            metadata: Vec::new(),
        }
    }
}

impl Source for Resending {
    fn select<'a>(&'a self, selections: &'a [Selection], _: &'a ReadScope) -> Fetch<'a> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.store
                .feed(&self.resend(), &self.rules, &self.plugins)
                .finish()
                .await;
            Ok(selections
                .iter()
                .map(|selection| {
                    self.history
                        .iter()
                        .map(|s| RawSeries {
                            labels: s.labels.clone(),
                            samples: s
                                .samples
                                .iter()
                                .filter(|p| (selection.start_ms..=selection.end_ms).contains(&p.timestamp))
                                .copied()
                                .collect(),
                        })
                        .filter(|s| !s.samples.is_empty())
                        .collect()
                })
                .collect())
        })
    }

    fn series<'a>(&'a self, _: &'a Selection, _: &'a ReadScope) -> SeriesFetch<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_read_every_sketch_holds_the_whole_history() {
    let observer: Arc<dyn Observer> = Arc::new(Quiet);
    let plugins = Arc::new(
        Host::global()
            .unwrap()
            .load(&PluginsConfig::default().settings(), &observer),
    );
    let config = SketchesConfig {
        rules: vec![SketchRule {
            selector: "m".into(),
            functions: vec![FUNCTION.into()],
            retain: Duration::from_secs(7200),
            complete: false,
        }],
        ..SketchesConfig::default()
    };
    let rules = Arc::new(Rules::new(&config, &plugins));
    let store = Arc::new(SketchStore::new(SketchMetrics::default()));
    let jobs = store.plan_backfills(&rules);
    assert_eq!(jobs.len(), 1);
    // An hour of history, ending 15 minutes ago: in both slices of the 2 h span.
    let first_ms = (now_ms() - 75 * 60_000) / STEP_MS * STEP_MS;
    let count = 360;
    let history: Vec<RawSeries> = (0..SERIES)
        .map(|i| RawSeries {
            labels: labels(i),
            samples: (0..count)
                .map(|k| Sample {
                    value: (i * 1000 + k) as f64,
                    timestamp: first_ms + k as i64 * STEP_MS,
                })
                .collect(),
        })
        .collect();
    let source = Arc::new(Resending {
        history,
        store: Arc::clone(&store),
        rules: Arc::clone(&rules),
        plugins: Arc::clone(&plugins),
        reads: AtomicUsize::new(0),
    });
    let env_source: Arc<dyn Source> = source.clone();
    run(Arc::clone(&store), Arc::clone(&jobs[0]), || {
        Some(Env {
            rules: Arc::clone(&rules),
            plugins: Arc::clone(&plugins),
            source: Arc::clone(&env_source),
            ingest: None,
        })
    })
    .await;

    assert!(!jobs[0].running());
    assert_eq!(
        source.reads.load(Ordering::SeqCst),
        3 * 2,
        "three reads of the span's two slices: the first and two again"
    );
    let last_ms = first_ms + (count as i64 - 1) * STEP_MS;
    for i in 0..SERIES {
        let sketch = store.get(&labels(i), FUNCTION).unwrap();
        let coverage = sketch.serving(|s| s.coverage().unwrap()).flatten();
        assert_eq!(coverage, Some((first_ms, last_ms)), "series {i}");
    }
}
