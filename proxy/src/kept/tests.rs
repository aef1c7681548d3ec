#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use super::*;
use crate::promql;

const RULE: &str = "quantile_over_time(0.9, m[1h])";
const MINUTE: i64 = 60_000;

fn range(start_min: i64, end_min: i64) -> Range {
    Range {
        start_ms: start_min * MINUTE,
        end_ms: end_min * MINUTE,
        step_ms: MINUTE,
    }
}

/// Three series with a value at every step that depends on the series and the time
/// only, as a rule query's answer does.
fn answer(range: Range) -> Answer {
    let mut matrix: Matrix = (0..3)
        .map(|i| {
            let name = format!("s{i}");
            Series {
                labels: Labels::from_pairs([("__name__", "m"), ("series", name.as_str())]),
                points: steps(range)
                    .map(|t| Point {
                        t,
                        v: (i * 1_000_000 + t / 1000) as f64,
                    })
                    .collect(),
            }
        })
        .collect();
    matrix.sort_by(|a, b| a.labels.cmp(&b.labels));
    Answer::Matrix(matrix)
}

fn sketched(exact_series: usize) -> Served {
    Served {
        sketched: BTreeMap::from([("quantile_over_time".to_owned(), 0.01)]),
        exact_series,
        ..Served::default()
    }
}

fn kept() -> (KeptResults, Arc<str>) {
    let kept = KeptResults::new(&[RULE.to_owned()], 1_000_000);
    let key = kept.key(&promql::parse(RULE).unwrap()).unwrap();
    (kept, key)
}

#[test]
fn rule_queries_are_recognised_however_they_are_spelled() {
    let rules = [RULE.to_owned(), "quantile_over_time(0.9, m[1h] @ 100)".to_owned()];
    let kept = KeptResults::new(&rules, 1000);
    let cases = [
        ("quantile_over_time(0.9, m[1h])", true),
        ("quantile_over_time( 0.9 ,m[ 1h ])", true),
        ("quantile_over_time(0.5, m[1h])", false),
        // `@` ties a step's value to the range.
        ("quantile_over_time(0.9, m[1h] @ 100)", false),
    ];
    for (query, keyed) in cases {
        let expr = promql::parse(query).unwrap();
        assert_eq!(kept.key(&expr).is_some(), keyed, "{query}");
    }
}

#[test]
fn only_final_steps_of_whole_sketch_answers_are_kept() {
    let (kept, key) = kept();
    let r = range(0, 10);
    // Steps at or after now - INGEST_LAG_MS may still get samples.
    let now = 9 * MINUTE + INGEST_LAG_MS + 1;
    kept.keep(&key, r, &answer(r), &sketched(0), now);
    let found = kept.lookup(&key, r);
    let present: Vec<bool> = found.iter().map(Option::is_some).collect();
    assert_eq!(
        present,
        [true, true, true, true, true, true, true, true, true, true, false]
    );
    assert_eq!(missing(r, &found), Some(range(10, 10)));

    // Some series answered exactly: nothing of that answer is kept.
    let later = range(20, 30);
    kept.keep(&key, later, &answer(later), &sketched(1), i64::MAX);
    assert!(kept.lookup(&key, later).iter().all(Option::is_none));
}

#[test]
fn kept_and_computed_steps_assemble_into_the_whole_answer() {
    // (kept range, requested range): the panel moved on, moved back, widened, or is
    // answered from kept steps alone.
    let cases = [
        (range(0, 60), range(5, 65)),
        (range(10, 60), range(0, 50)),
        (range(10, 20), range(0, 30)),
        (range(0, 60), range(10, 40)),
    ];
    for (before, request) in cases {
        let (kept, key) = kept();
        kept.keep(&key, before, &answer(before), &sketched(0), i64::MAX);
        let found = kept.lookup(&key, request);
        let computed = missing(request, &found).map(|m| (m, answer(m), sketched(0)));
        let (got, served) = assemble(request, found, computed);
        assert_eq!(got, answer(request), "kept {before:?}, asked {request:?}");
        assert_eq!(served, sketched(0));
    }
}
