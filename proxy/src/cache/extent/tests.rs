use super::*;

#[test]
fn parses_only_successful_matrices() {
    let table: &[(&str, &[u8], Option<usize>)] = &[
        (
            "matrix",
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"b":"2","a":"1"},"values":[[1,"1"],[2.5,"NaN"]]},{"metric":{},"values":[[3,"+Inf"]]}]}}"#,
            Some(2),
        ),
        ("empty", br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#, Some(0)),
        (
            "vector",
            br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            None,
        ),
        ("error", br#"{"status":"error","errorType":"timeout","error":"x"}"#, None),
        ("not json", b"<html>", None),
        ("cut short", br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}"#, None),
    ];
    for (name, body, series) in table {
        assert_eq!(parse(body).map(|p| p.series.len()), *series, "{name}");
    }
}

#[test]
fn parsed_series_keep_their_text_and_sort_by_labels() {
    let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"2"},"values":[[1700000000.5,"1.25"],[1700000001,"-3e-07"]]},{"metric":{"a":"1"},"values":[[1,"7"]]}]},"warnings":["w"]}"#;
    let parsed = parse(body).expect("matrix");
    assert_eq!(parsed.warnings, ["w"]);
    assert_eq!(&parsed.series[0].metric[..], br#"{"a":"1"}"#);
    let second = &parsed.series[1];
    assert_eq!(
        &second.text[..],
        br#"[1700000000.5,"1.25"],[1700000001,"-3e-07"]"#
    );
    let times: Vec<i64> = second.points.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [1_700_000_000_500, 1_700_000_001_000]);
    assert_eq!(
        second.between(1_700_000_001_000, i64::MAX).as_deref(),
        Some(&br#"[1700000001,"-3e-07"]"#[..])
    );
    assert_eq!(second.between(0, 1), None);
    let found: Vec<(i64, &[u8])> = points(&second.text).map(|(t, r)| (t, &second.text[r])).collect();
    assert_eq!(found[1], (1_700_000_001_000, &br#"[1700000001,"-3e-07"]"#[..]));
}

#[test]
fn joined_extents_compact_small_pieces() {
    let step = 1_000;
    let make = |from: i64, to: i64| {
        let values: Vec<String> = (from..=to).map(|s| format!("[{s},\"{s}\"]")).collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"1"}},"values":[{}]}}]}}}}"#,
            values.join(",")
        );
        parse(body.as_bytes())
            .expect("matrix")
            .extent(from * step, to * step, vec!["engine".into()])
    };
    // A panel refreshed step by step: one long extent, then one-step ones.
    let mut joined = make(0, 999);
    for s in 1_000..1_100 {
        joined = joined.join(&make(s, s));
    }
    let run = &joined.runs[0];
    assert!(
        run.points.len() <= 1_100usize.div_ceil(PIECE_POINTS / 2),
        "{} pieces",
        run.points.len()
    );
    let text: Vec<&[u8]> = run.points.iter().map(|p| &p.piece.text()[..]).collect();
    let expected: Vec<String> = (0..1_100).map(|s| format!("[{s},\"{s}\"]")).collect();
    assert_eq!(String::from_utf8_lossy(&text.join(&b","[..])), expected.join(","));
    for p in &run.points {
        let times: Vec<i64> = points(p.piece.text()).map(|(t, _)| t).collect();
        assert_eq!((times[0], times[times.len() - 1]), (p.first_ms, p.last_ms));
    }
}
