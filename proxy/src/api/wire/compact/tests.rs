use super::*;
use crate::promql::eval::value::{Labels, Point, Series};

/// A series as decoded: labels, and (timestamp, value bits) per sample.
type Decoded = (Labels, Vec<(i64, u64)>);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// (case, answer, the series it decodes to as (labels, [(t, value bits)]))
#[test]
fn answers_decode_to_their_series_bit_for_bit() {
    let stale = f64::from_bits(crate::prompb::STALE_NAN_BITS);
    let points = |p: &[(i64, f64)]| p.iter().map(|&(t, v)| Point { t, v }).collect::<Vec<_>>();
    let cases: Vec<(&str, Answer, Vec<Decoded>)> = vec![
        (
            "a matrix with gaps, odd values and a negative timestamp",
            Answer::Matrix(vec![
                Series {
                    labels: labels(&[("__name__", "m"), ("job", "a")]),
                    points: points(&[
                        (-60_000, -0.0),
                        (0, f64::NAN),
                        (120_000, stale),
                        (180_000, f64::INFINITY),
                    ]),
                },
                Series {
                    labels: labels(&[("job", "b")]),
                    points: points(&[(1_700_000_000_000, 1e-300), (1_700_000_060_000, f64::MAX)]),
                },
            ]),
            vec![
                (
                    labels(&[("__name__", "m"), ("job", "a")]),
                    vec![
                        (-60_000, (-0.0f64).to_bits()),
                        (0, f64::NAN.to_bits()),
                        (120_000, stale.to_bits()),
                        (180_000, f64::INFINITY.to_bits()),
                    ],
                ),
                (
                    labels(&[("job", "b")]),
                    vec![
                        (1_700_000_000_000, 1e-300f64.to_bits()),
                        (1_700_000_060_000, f64::MAX.to_bits()),
                    ],
                ),
            ],
        ),
        (
            "a vector, at the query's time",
            Answer::Vector(vec![(labels(&[("a", "1")]), 2.5), (labels(&[]), -1.0)]),
            vec![
                (labels(&[("a", "1")]), vec![(42_000, 2.5f64.to_bits())]),
                (labels(&[]), vec![(42_000, (-1.0f64).to_bits())]),
            ],
        ),
        ("nothing", Answer::Matrix(Vec::new()), Vec::new()),
    ];
    for (case, answer, want) in cases {
        let warnings = vec![format!("warning of {case}")];
        let bytes = encode(&answer, 42_000, &warnings).expect("encodable");
        let (series, got_warnings) = decode(&bytes, 1 << 30).unwrap();
        let got: Vec<Decoded> = series
            .into_iter()
            .map(|s| {
                (
                    Labels::from_sorted(s.labels),
                    s.samples
                        .iter()
                        .map(|p| (p.timestamp, p.value.to_bits()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got, want, "{case}");
        assert_eq!(got_warnings, warnings, "{case}");
    }
}

#[test]
fn scalars_and_strings_stay_json() {
    assert_eq!(encode(&Answer::Scalar(1.0), 0, &[]), None);
    assert_eq!(encode(&Answer::String("s".into()), 0, &[]), None);
}

#[test]
fn damaged_answers_are_errors() {
    let uneven = CompactAnswer {
        series: vec![CompactSeries {
            labels: Vec::new(),
            time_deltas: vec![1, 2],
            values: vec![1.0],
        }],
        warnings: Vec::new(),
    }
    .encode_to_vec();
    let one = |labels: &[(&str, &str)], deltas: Vec<i64>| {
        let values = vec![1.0; deltas.len()];
        CompactAnswer {
            series: vec![CompactSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect(),
                time_deltas: deltas,
                values,
            }],
            warnings: Vec::new(),
        }
        .encode_to_vec()
    };
    // A hundred thousand empty series: 200 KB sent, 20 MB to hold.
    let many = CompactAnswer {
        series: vec![CompactSeries::default(); 100_000],
        warnings: Vec::new(),
    }
    .encode_to_vec();
    for (case, bytes) in [
        ("uneven", uneven),
        ("not protobuf", vec![0xff; 7]),
        ("no samples", one(&[("a", "1")], Vec::new())),
        ("labels out of order", one(&[("b", "1"), ("a", "1")], vec![5])),
        ("a name twice", one(&[("a", "1"), ("a", "2")], vec![5])),
        ("time going back", one(&[("a", "1")], vec![5, 10, -3])),
        ("time standing still", one(&[("a", "1")], vec![5, 0])),
        ("more than the limit decoded", many),
    ] {
        assert!(decode(&bytes, 1 << 20).is_err(), "{case}");
    }
    assert!(decode(&one(&[("a", "1"), ("b", "2")], vec![5, 1, 1]), 1 << 20).is_ok());
}

#[test]
fn the_type_is_accepted_only_when_named() {
    for (accept, want) in [
        (Some(format!("{MEDIA_TYPE}, application/json;q=0.5")), true),
        (Some(format!("application/json, {MEDIA_TYPE};q=0.9")), true),
        (Some("application/json".to_owned()), false),
        (Some(MEDIA_TYPE.to_uppercase()), true),
        (Some(format!("{MEDIA_TYPE};q=0, application/json")), false),
        (None, false),
    ] {
        let mut headers = HeaderMap::new();
        if let Some(a) = &accept {
            headers.insert(http::header::ACCEPT, a.parse().unwrap());
        }
        assert_eq!(accepted(&headers), want, "{accept:?}");
    }
}
