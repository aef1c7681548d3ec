use super::merge;
use crate::prompb::Sample;

fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
    points
        .iter()
        .map(|&(timestamp, value)| Sample { value, timestamp })
        .collect()
}

fn times(merged: &[Sample]) -> Vec<i64> {
    merged.iter().map(|s| s.timestamp).collect()
}

#[test]
fn merges_follow_the_stated_rules() {
    // (lists, replicas, timestamps kept)
    type Case = (&'static [&'static [i64]], bool, &'static [i64]);
    let cases: &[Case] = &[
        // Shards holding different times of one series: the union.
        (&[&[0, 10, 20], &[30, 40]], false, &[0, 10, 20, 30, 40]),
        // The same samples twice: once.
        (&[&[0, 10, 20], &[0, 10, 20]], false, &[0, 10, 20]),
        // Aligned replicas each missing a different sample: the whole series.
        (&[&[0, 20, 30, 40], &[0, 10, 20, 40]], true, &[0, 10, 20, 30, 40]),
        // Replicas scraping 3 apart: one replica's rate, not twice it.
        (&[&[0, 10, 20, 30], &[3, 13, 23, 33]], true, &[0, 10, 20, 30]),
        // ...and a gap in one is filled from the other.
        (&[&[0, 10, 30], &[3, 13, 23, 33]], true, &[0, 10, 23, 30]),
        // Without replica labels the same data is a union.
        (&[&[0, 10], &[3, 13]], false, &[0, 3, 10, 13]),
    ];
    for (lists, replicas, want) in cases {
        let input: Vec<Vec<Sample>> = lists
            .iter()
            .enumerate()
            .map(|(i, ts)| samples(&ts.iter().map(|&t| (t, i as f64)).collect::<Vec<_>>()))
            .collect();
        let got = merge(input, *replicas);
        assert_eq!(times(&got), *want, "{lists:?} replicas={replicas}");
    }
}

#[test]
fn at_equal_timestamps_the_first_endpoint_wins() {
    let merged = merge(vec![samples(&[(0, 1.0)]), samples(&[(0, 2.0)])], true);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].value, 1.0);
}

#[test]
fn a_failed_endpoint_misses_a_shard_unless_a_replica_answered() {
    use super::{shard_key, uncovered};
    let replicas = ["replica".to_owned()];
    // (each endpoint's external labels, outcome: answered, failed or not asked; missing)
    type Case<'a> = (&'a [&'a [(&'a str, &'a str)]], &'a [Option<bool>], &'a [usize]);
    let cases: &[Case<'_>] = &[
        // Two replicas of one shard, one down: whole.
        (
            &[&[("replica", "a")], &[("replica", "b")]],
            &[Some(true), Some(false)],
            &[],
        ),
        // Both down: both missing.
        (
            &[&[("replica", "a")], &[("replica", "b")]],
            &[Some(false), Some(false)],
            &[0, 1],
        ),
        // Shards without external labels are not replicas of each other.
        (&[&[], &[]], &[Some(true), Some(false)], &[1]),
        // Replica pairs of two shards: shard y's pair down.
        (
            &[
                &[("replica", "a"), ("shard", "x")],
                &[("replica", "b"), ("shard", "x")],
                &[("replica", "a"), ("shard", "y")],
                &[("replica", "b"), ("shard", "y")],
            ],
            &[Some(false), Some(true), Some(false), Some(false)],
            &[2, 3],
        ),
        // A replica not asked (storeMatch[], time range) answers for nobody.
        (
            &[&[("replica", "a")], &[("replica", "b")]],
            &[None, Some(false)],
            &[1],
        ),
    ];
    for (external, outcome, missing) in cases {
        let keys: Vec<_> = external
            .iter()
            .enumerate()
            .map(|(i, labels)| shard_key(i, labels.iter().copied(), (None, None), &replicas))
            .collect();
        assert_eq!(uncovered(&keys, outcome), *missing, "{external:?} {outcome:?}");
    }
}

#[test]
fn replicas_holding_different_time_ranges_do_not_answer_for_each_other() {
    use super::{shard_key, uncovered};
    use crate::config::duration::time_bound::TimeBound;
    let replicas = ["replica".to_owned()];
    let month = (
        Some(TimeBound::Ago(std::time::Duration::from_secs(30 * 86_400))),
        None,
    );
    let days = (
        Some(TimeBound::Ago(std::time::Duration::from_secs(2 * 86_400))),
        None,
    );
    let key = |i, range| {
        shard_key(
            i,
            [("replica", if i == 0 { "a" } else { "b" })].into_iter(),
            range,
            &replicas,
        )
    };
    let outcome = [Some(false), Some(true)];
    assert_eq!(uncovered(&[key(0, month), key(1, days)], &outcome), [0]);
    assert_eq!(
        uncovered(&[key(0, days), key(1, days)], &outcome),
        Vec::<usize>::new()
    );
}

#[test]
fn store_match_selects_by_address_and_external_labels() {
    use super::store_selected;
    let external = |name: &str| (name == "zone").then_some("eu");
    let parse = |s: &str| crate::promql::parse_selector(s).unwrap();
    // (storeMatch[] selectors, selected)
    let cases: &[(&[&str], bool)] = &[
        (&[], true),
        (&[r#"{__address__="127.0.0.1:9090"}"#], true),
        (&[r#"{__address__=~"127.0.0.1:909."}"#], true),
        (&[r#"{__address__="127.0.0.1:9091"}"#], false),
        (&[r#"{__address__="127.0.0.1:9091"}"#, r#"{zone="eu"}"#], true),
        (&[r#"{zone="us"}"#], false),
        (&[r#"{shard="", zone="eu"}"#], true),
    ];
    for (selectors, want) in cases {
        let parsed: Vec<_> = selectors.iter().map(|s| parse(s)).collect();
        assert_eq!(
            store_selected("127.0.0.1:9090", external, &parsed),
            *want,
            "{selectors:?}"
        );
    }
}

#[tokio::test]
async fn bounded_asks_run_at_most_the_limit_at_once_and_answer_in_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    for limit in [1, 3, 16] {
        most.store(0, Ordering::SeqCst);
        let asks: Vec<_> = (0..10)
            .map(|i| {
                let (running, most) = (&running, &most);
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Later asks finish first, so the order is the ask order, not theirs.
                    tokio::task::yield_now().await;
                    for _ in 0..(10 - i) {
                        tokio::task::yield_now().await;
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            })
            .collect();
        let answers = super::bounded(asks, limit).await;
        assert_eq!(answers, (0..10).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), limit.min(10), "limit {limit}");
    }
}
