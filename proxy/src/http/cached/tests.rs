use std::io::Read as _;

use http_body_util::BodyExt as _;

use super::*;
use crate::cache::Settings;
use crate::promql::eval::Answer;
use crate::promql::eval::value::{Labels, Point, Series};

/// The answer a server gives over `range`: four series with gaps; `k="3"` exists only
/// in the middle of time.
fn answer(range: Range) -> Vec<u8> {
    let series = (0..4)
        .map(|k| Series {
            labels: Labels::from_pairs([("__name__", "m"), ("k", ["0", "1", "2", "3"][k])]),
            points: (range.start_ms..=range.end_ms)
                .step_by(usize::try_from(range.step_ms).unwrap_or(1))
                .filter(|t| (t / range.step_ms + k as i64) % 7 != 3)
                .filter(|t| k != 3 || (1_700_000_600_000..1_700_001_800_000).contains(t))
                .map(|t| Point {
                    t,
                    v: (t % 100_003) as f64 * (k + 1) as f64 / 3.0,
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    crate::api::wire::query_success(&Answer::Matrix(series), range.start_ms, &[])
}

fn cache() -> Arc<ResultsCache> {
    Arc::new(ResultsCache::new(
        Settings {
            max_bytes: 64 << 20,
            max_freshness: std::time::Duration::ZERO,
            max_ttl: std::time::Duration::from_secs(3600),
            longest_query: std::time::Duration::from_secs(120),
        },
        prometheus_client::metrics::counter::Counter::default(),
    ))
}

fn request(query: &str, range: Range) -> QueryRequest {
    QueryRequest {
        expr: crate::promql::parse(query).expect("parses"),
        range,
        timeout: None,
        proxy_functions: Vec::new(),
        sketch_off: false,
        compact: false,
        is_range: true,
        thanos: crate::api::Thanos::default(),
    }
}

fn plan_for(cache: &Arc<ResultsCache>, range: Range, gzip: bool) -> Plan {
    let request = request("m", range);
    let mut headers = HeaderMap::new();
    if gzip {
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
    }
    plan(Some(cache), &request, &headers).expect("cacheable")
}

#[expect(clippy::disallowed_methods, reason = "read through Limited")]
async fn body_of(response: Response) -> Vec<u8> {
    let gzip = response.headers().get(header::CONTENT_ENCODING).is_some();
    let bytes = http_body_util::Limited::new(response.into_body(), 64 << 20)
        .collect()
        .await
        .expect("body")
        .to_bytes();
    if !gzip {
        return bytes.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn steps(start_ms: i64, first: i64, last: i64, step_ms: i64) -> Range {
    Range {
        start_ms: start_ms + first * step_ms,
        end_ms: start_ms + last * step_ms,
        step_ms,
    }
}

#[tokio::test]
async fn joined_answers_equal_the_whole_answer() {
    // (case, step ms, request steps, stored extents in steps relative to the
    // request's start, expected outcome)
    type Case = (&'static str, i64, (i64, i64), &'static [(i64, i64)], &'static str);
    let cases: &[Case] = &[
        ("nothing stored", 15_000, (0, 40), &[], "miss"),
        ("all stored", 15_000, (0, 40), &[(0, 40)], "hit"),
        ("stored wider", 15_000, (0, 40), &[(-20, 60)], "hit"),
        ("a panel moved on", 15_000, (0, 40), &[(-10, 37)], "partial"),
        ("head missing", 60_000, (0, 40), &[(5, 40)], "partial"),
        ("gap between", 7_000, (0, 40), &[(0, 3), (10, 40)], "partial"),
        ("inside only", 15_000, (0, 40), &[(2, 4)], "partial"),
        ("two joined", 1_000, (3, 900), &[(0, 100), (101, 898)], "partial"),
        ("pieces cut both ends", 1_000, (37, 1_500), &[(0, 2_000)], "hit"),
        ("one step", 30_000, (7, 7), &[(0, 6)], "partial"),
    ];
    // An odd start: not on a whole second, not on the step.
    let origin = 1_700_000_000_123;
    for &(name, step, (first, last), stored, expected) in cases {
        for gzip in [false, true] {
            let cache = cache();
            let range = steps(origin, first, last, step);
            let key = plan_for(&cache, range, gzip).key;
            for &(a, b) in stored {
                let r = steps(origin, a, b, step);
                let parsed = extent::parse(&answer(r)).expect("matrix");
                let selectors: Arc<[Matchers]> = Vec::new().into();
                cache.store_extent(
                    key,
                    selectors,
                    step,
                    parsed.extent(r.start_ms, r.end_ms, vec!["engine".into()]),
                    std::time::Instant::now(),
                );
            }
            let (response, outcome) = match plan_for(&cache, range, gzip).lookup(&Metrics::new()) {
                Lookup::Hit(response) => (response, "hit"),
                Lookup::Compute(compute) => {
                    let parsed = extent::parse(&answer(compute.missing)).expect("matrix");
                    let outcome = if compute.found.is_empty() {
                        "miss"
                    } else {
                        "partial"
                    };
                    let found = compute.found.clone();
                    let response =
                        compute
                            .plan
                            .respond(&found, Some((&parsed, compute.missing, "engine")), None);
                    (response, outcome)
                }
            };
            assert_eq!(outcome, expected, "{name}");
            let body = body_of(response).await;
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&answer(range)),
                "{name}, gzip {gzip}"
            );
        }
    }
}

#[test]
fn keys_separate_what_changes_an_answer() {
    let cache = cache();
    let base = steps(1_700_000_000_000, 0, 10, 15_000);
    let key = |range: Range, query: &str, header: Option<(&'static str, &'static str)>| {
        let request = request(query, range);
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = header {
            headers.insert(name, HeaderValue::from_static(value));
        }
        plan(Some(&cache), &request, &headers).map(|p| p.key)
    };
    let first = key(base, "sum(rate(m[5m]))", None);
    let moved = Range {
        start_ms: base.start_ms + 45_000,
        end_ms: base.end_ms + 90_000,
        ..base
    };
    let off_grid = Range {
        start_ms: base.start_ms + 1_000,
        ..base
    };
    type Case = (
        &'static str,
        Range,
        &'static str,
        Option<(&'static str, &'static str)>,
        bool,
    );
    let table: &[Case] = &[
        ("same grid, later window", moved, "sum(rate(m[5m]))", None, true),
        ("spelled differently", base, "sum( rate(m[5m]) )", None, true),
        (
            "encoding is not the answer",
            base,
            "sum(rate(m[5m]))",
            Some(("accept-encoding", "gzip")),
            true,
        ),
        ("another step grid", off_grid, "sum(rate(m[5m]))", None, false),
        ("another query", base, "sum(rate(m[1m]))", None, false),
        (
            "another tenant",
            base,
            "sum(rate(m[5m]))",
            Some(("x-scope-orgid", "b")),
            false,
        ),
        (
            "other credentials",
            base,
            "sum(rate(m[5m]))",
            Some(("authorization", "Basic eDp5")),
            false,
        ),
    ];
    for &(why, range, query, header, same) in table {
        assert_eq!(key(range, query, header) == first, same, "{why}");
    }
    assert_eq!(key(base, "m @ 1700000000", None), None, "@ ties steps to a time");
    assert_eq!(
        key(base, "rate(m[5m] offset -1m)", None),
        None,
        "a negative offset reads ahead"
    );
}
