use super::*;

#[test]
fn timestamps_match_jsonutil() {
    let cases = [
        (1_435_781_451_781, "1435781451.781"),
        (1_435_781_451_050, "1435781451.050"),
        (1_435_781_451_500, "1435781451.500"),
        (1_435_781_451_000, "1435781451"),
        (0, "0"),
        (4_000, "4"),
        (-1_500, "-1.500"),
        (-1_000, "-1"),
    ];
    for (ms, want) in cases {
        assert_eq!(format_timestamp(ms), want, "{ms}");
    }
}

#[test]
fn floats_match_jsonutil() {
    let cases = [
        (1.0, "1"),
        (0.5, "0.5"),
        (2.0, "2"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e-7, "1e-07"),
        (1e-6, "0.000001"),
        (1.5e-10, "1.5e-10"),
        (1e21, "1e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (-2.5e300, "-2.5e+300"),
        (0.1 + 0.2, "0.30000000000000004"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for (v, want) in cases {
        assert_eq!(format_float(v), want, "{v:?}");
    }
}

#[test]
fn errors_escape_like_go() {
    let body = error("bad_data", "unexpected <group_left> & \"x\"\n\u{8}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"status":"error","errorType":"bad_data","error":"unexpected \u003cgroup_left\u003e \u0026 \"x\"\n\u0008"}"#
    );
}

#[test]
fn success_envelope_has_prometheus_field_order() {
    assert_eq!(
        String::from_utf8(success("sum by (job) (x)")).unwrap(),
        r#"{"status":"success","data":"sum by (job) (x)"}"#
    );
}

#[test]
fn a_large_matrix_encodes_like_a_small_one_series_by_series() {
    use crate::promql::eval::Answer;
    use crate::promql::eval::value::{Labels, Point, Series};
    // 7 × 5,000 points: encoded in parallel parts.
    let series: Vec<Series> = (0..7)
        .map(|i| {
            let name = format!("s{i}");
            Series {
                labels: Labels::from_pairs([("series", name.as_str())]),
                points: (0..5000)
                    .map(|j| Point {
                        t: 1_700_000_000_000 + j * 15_000 + i,
                        v: (j as f64).sqrt() * if i % 2 == 0 { 1e-7 } else { 1e6 },
                    })
                    .collect(),
            }
        })
        .collect();
    let whole = String::from_utf8(query_success(&Answer::Matrix(series.clone()), 0, &[])).unwrap();
    // Each series alone is below the parallel threshold.
    let alone: Vec<String> = series
        .iter()
        .map(|s| {
            let one = String::from_utf8(query_success(&Answer::Matrix(vec![s.clone()]), 0, &[])).unwrap();
            one.strip_prefix(r#"{"status":"success","data":{"resultType":"matrix","result":["#)
                .and_then(|rest| rest.strip_suffix("]}}"))
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
        alone.join(",")
    );
    assert_eq!(whole, expected);
}
