//! Which endpoints are asked, and which failures a replica makes good.

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
