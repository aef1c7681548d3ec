use std::time::Duration;

use super::*;
use crate::prompb::{Label, Sample, TimeSeries};

/// Far past every sample of these tests: all are late.
const NOW_MS: i64 = 1_000_000;

fn cache(max_ttl: Duration) -> (ResultsCache, Counter) {
    let invalidations = Counter::default();
    let settings = Settings {
        max_bytes: 16 << 20,
        max_freshness: Duration::from_secs(60),
        max_ttl,
        longest_query: Duration::from_secs(120),
    };
    (ResultsCache::new(settings, invalidations.clone()), invalidations)
}

fn extent(from_s: i64, to_s: i64) -> Extent {
    let values: Vec<String> = (from_s..=to_s).map(|s| format!("[{s},\"1\"]")).collect();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"m"}},"values":[{}]}}]}}}}"#,
        values.join(",")
    );
    extent::parse(body.as_bytes())
        .expect("matrix")
        .extent(from_s * 1000, to_s * 1000, Vec::new())
}

fn selectors(selector: &str) -> Arc<[Matchers]> {
    vec![crate::promql::parse_selector(selector).expect("selector")].into()
}

fn spans(cache: &ResultsCache, key: u128) -> Vec<(i64, i64)> {
    cache
        .extents(key)
        .iter()
        .map(|e| (e.start_ms / 1000, e.end_ms / 1000))
        .collect()
}

#[test]
fn stored_extents_join_neighbours_and_replace_overlaps() {
    let (cache, _) = cache(Duration::from_secs(3600));
    let m = selectors("m");
    // (stored now, extents after it)
    type Case = ((i64, i64), &'static [(i64, i64)]);
    let table: &[Case] = &[
        ((10, 20), &[(10, 20)]),
        ((21, 30), &[(10, 30)]),
        ((40, 50), &[(10, 30), (40, 50)]),
        ((5, 9), &[(5, 30), (40, 50)]),
        ((31, 39), &[(5, 50)]),
        ((60, 70), &[(5, 50), (60, 70)]),
        // Overlapping the first: it goes, the new one takes its place.
        ((0, 20), &[(0, 20), (60, 70)]),
    ];
    for &((from, to), expected) in table {
        cache.store_extent(1, m.clone(), 1000, extent(from, to), Instant::now());
        assert_eq!(spans(&cache, 1), expected, "after storing {from}..{to}");
    }
    assert!(spans(&cache, 2).is_empty(), "keys are apart");
}

#[test]
fn extents_older_than_max_ttl_are_not_found() {
    let (cache, _) = cache(Duration::from_millis(1));
    cache.store_extent(1, selectors("m"), 1000, extent(10, 20), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !spans(&cache, 1).is_empty() {
        assert!(Instant::now() < deadline, "never expired");
        std::thread::yield_now();
    }
}

fn write(series: &[(&str, &str, i64)]) -> WriteRequest {
    WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, job, t)| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: (*name).into(),
                    },
                    Label {
                        name: "job".into(),
                        value: (*job).into(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: *t,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        ..WriteRequest::default()
    }
}

#[test]
fn late_samples_drop_the_entries_they_change() {
    // (write, entries left of: 1 = m{job="a"} up to 20 s, 2 = m up to 20 s, 3 = other)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str, i64)],
        &'static [u128],
    );
    let table: &[Case] = &[
        (
            "a new sample changes nothing stored",
            &[("m", "a", 21_000)],
            &[1, 2, 3],
        ),
        (
            "a fresh sample is not even looked at",
            &[("m", "a", NOW_MS - 1)],
            &[1, 2, 3],
        ),
        ("another metric", &[("n", "a", 5_000)], &[1, 2, 3]),
        ("another job", &[("m", "b", 5_000)], &[1, 3]),
        ("a late sample of job a", &[("m", "a", 20_000)], &[3]),
    ];
    for (name, samples, left) in table {
        let (cache, invalidations) = cache(Duration::from_secs(3600));
        let started = Instant::now();
        cache.store_extent(1, selectors(r#"m{job="a"}"#), 1000, extent(10, 20), started);
        cache.store_extent(2, selectors("m"), 1000, extent(10, 20), started);
        cache.store_extent(3, selectors("other"), 1000, extent(10, 20), started);
        saw(&cache, &write(samples), || true);
        let kept: Vec<u128> = (1..=3).filter(|k| !cache.extents(*k).is_empty()).collect();
        assert_eq!(kept, *left, "{name}");
        assert_eq!(invalidations.get(), 3 - left.len() as u64, "{name}");
    }
}

#[test]
fn many_late_series_drop_everything() {
    let (cache, invalidations) = cache(Duration::from_secs(3600));
    cache.store_extent(1, selectors("other"), 1000, extent(10, 20), Instant::now());
    let jobs: Vec<String> = (0..=MATCH_AT_MOST).map(|i| i.to_string()).collect();
    let samples: Vec<(&str, &str, i64)> = jobs.iter().map(|j| ("m", j.as_str(), 1_000)).collect();
    saw(&cache, &write(&samples), || true);
    assert!(cache.extents(1).is_empty());
    assert_eq!(invalidations.get(), 1);
}

#[test]
fn answers_that_may_lack_a_late_sample_are_not_stored() {
    // (query started before the late write arrived, the write delivered, stored)
    let table = [
        (true, false, false),
        (true, true, false),
        (false, false, false),
        (false, true, true),
    ];
    for (before, delivered, stored) in table {
        let (cache, _) = cache(Duration::from_secs(3600));
        let early = Instant::now();
        let arrived = Arc::new(std::sync::atomic::AtomicBool::new(delivered));
        let flag = arrived.clone();
        saw(&cache, &write(&[("m", "a", 15_000)]), move || {
            flag.load(Ordering::Relaxed)
        });
        let started = if before { early } else { Instant::now() };
        cache.store_extent(1, selectors("m"), 1000, extent(10, 20), started);
        // Neither the series' selector nor a step it changes: stored whatever.
        cache.store_extent(2, selectors("other"), 1000, extent(10, 20), early);
        cache.store_extent(3, selectors("m"), 1000, extent(5, 14), early);
        let kept: Vec<u128> = (1..=3).filter(|k| !cache.extents(*k).is_empty()).collect();
        let expected: &[u128] = if stored { &[1, 2, 3] } else { &[2, 3] };
        assert_eq!(kept, expected, "started before: {before}, delivered: {delivered}");
    }
}

fn saw(cache: &ResultsCache, request: &WriteRequest, delivered: impl Fn() -> bool + Send + Sync + 'static) {
    cache.saw_late(cache.late(request, NOW_MS), Arc::new(delivered));
}
