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
