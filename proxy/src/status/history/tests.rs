use super::*;

#[test]
fn an_hour_of_slots_counts_per_path_and_forgets_older_ones() {
    let history = History::default();
    let now = 1_700_000_000 - 1_700_000_000 % SLOT_SECONDS + 7;
    // (seconds before now, path, seconds taken, cache)
    let events = [
        (0, Answered::Sketch, 0.02, Some(CacheOutcome::Miss)),
        (1, Answered::Sketch, 0.04, Some(CacheOutcome::Hit)),
        (2, Answered::Engine, 1.0, Some(CacheOutcome::Hit)),
        (3, Answered::Downstream, 3.0, None),
        (SLOT_SECONDS, Answered::Engine, 0.5, Some(CacheOutcome::Partial)),
        // An hour and more ago: its slot is the newest's, reused.
        (
            SLOTS as i64 * SLOT_SECONDS,
            Answered::Downstream,
            9.0,
            Some(CacheOutcome::Miss),
        ),
    ];
    // Oldest first, as time goes.
    for (ago, path, seconds, cache) in events.iter().rev() {
        history.record(now - ago, *path, *seconds, *cache);
    }
    let series = history.series(now);
    assert_eq!(series.times.len(), SLOTS);
    let last = SLOTS - 1;
    assert_eq!(series.times[last], now - 7);
    let per_second = |n: f64| n / SLOT_SECONDS as f64;
    assert_eq!(series.sketch[last], per_second(2.0));
    assert_eq!(series.engine[last], per_second(1.0));
    assert_eq!(
        series.downstream[last],
        per_second(1.0),
        "the hour-old query is gone"
    );
    assert_eq!(series.cache_hit_ratio[last], Some(2.0 / 3.0));
    assert_eq!(series.sketch_seconds[last], Some(0.03));
    assert_eq!(series.exact_seconds[last], Some(2.0));
    assert_eq!(series.engine[last - 1], per_second(1.0));
    assert_eq!(series.cache_hit_ratio[last - 1], Some(0.0));
    assert_eq!(series.sketch_seconds[last - 1], None);
    assert!(series.downstream[..last].iter().all(|v| *v == 0.0));
}

#[test]
fn a_send_rate_is_the_last_two_counts_apart() {
    let history = History::default();
    assert_eq!(history.send_rate("a"), None);
    history.count_sent("a", 100, 1_000);
    assert_eq!(history.send_rate("a"), None, "one count is no rate");
    history.count_sent("a", 115, 4_000);
    assert_eq!(history.send_rate("a"), Some(200.0));
    history.count_sent("b", 115, 7);
    assert_eq!(history.send_rate("a"), Some(200.0));
    assert_eq!(history.send_rate("b"), None);
}
