use super::*;

enum Want {
    Forward,
    /// A query request using these proxy-only functions.
    Query(&'static [&'static str]),
    Formatted,
    BadData(&'static str),
    Execution(&'static str),
}

/// (endpoint, label name, URL query, outcome): the checks Prometheus 2.42 makes, in
/// its order, with its wording (parse messages excepted: they come from promql-parser).
const CASES: &[(Endpoint, Option<&str>, &str, Want)] = &[
    (Endpoint::Query, None, "query=up", Want::Query(&[])),
    (
        Endpoint::Query,
        None,
        "query=up&time=abc",
        Want::BadData(
            "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp",
        ),
    ),
    (
        Endpoint::Query,
        None,
        "query=sum(&time=abc",
        Want::BadData("invalid parameter \"time\""),
    ),
    (
        Endpoint::Query,
        None,
        "query=up&timeout=soon",
        Want::BadData("invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration"),
    ),
    (
        Endpoint::Query,
        None,
        "query=sum(",
        Want::BadData("invalid parameter \"query\": parse error: "),
    ),
    (
        Endpoint::Query,
        None,
        "",
        Want::BadData("invalid parameter \"query\": parse error: no expression found in input"),
    ),
    (
        Endpoint::Query,
        None,
        "query=entropy_over_time(x[5m])",
        Want::Query(&["entropy_over_time"]),
    ),
    (
        Endpoint::Query,
        None,
        "query=l2_over_time(x[5m])%2Bdistinct_over_time(x[5m])",
        Want::Query(&["l2_over_time", "distinct_over_time"]),
    ),
    (
        Endpoint::Query,
        None,
        "query=quantile_over_time(0.9,x[5m])",
        Want::Query(&[]),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=1&end=2&step=1",
        Want::Query(&[]),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up[5m]&start=1&end=2&step=1",
        Want::BadData(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ),
    ),
    (
        Endpoint::QueryExemplars,
        None,
        "query=entropy_over_time(x[5m])&start=1&end=2",
        Want::Execution("entropy_over_time is known only to sketch-proxy"),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=sum(&start=x&end=2&step=1",
        Want::BadData("invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=1&step=1",
        Want::BadData("invalid parameter \"end\": cannot parse \"\" to a valid timestamp"),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=2&end=1&step=1",
        Want::BadData("invalid parameter \"end\": end timestamp must not be before start time"),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=1&end=2&step=0",
        Want::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=0&end=11001&step=1",
        Want::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=up&start=0&end=11000&step=1",
        Want::Query(&[]),
    ),
    (
        Endpoint::QueryRange,
        None,
        "query=sum(&start=1&end=2&step=1",
        Want::BadData("parse error: "),
    ),
    (
        Endpoint::QueryExemplars,
        None,
        "query=test&start=1700000000000&end=1700001800000",
        Want::Forward,
    ),
    (
        Endpoint::QueryExemplars,
        None,
        "query=test&start=2&end=1",
        Want::BadData("end timestamp must not be before start timestamp"),
    ),
    (
        Endpoint::FormatQuery,
        None,
        "query=sum(rate(x[5m]))by(job)",
        Want::Forward,
    ),
    (
        Endpoint::FormatQuery,
        None,
        "query=l2_over_time(x[5m])",
        Want::Formatted,
    ),
    (
        Endpoint::FormatQuery,
        None,
        "query=(",
        Want::BadData("invalid parameter \"query\": parse error: "),
    ),
    (
        Endpoint::Series,
        None,
        "start=1",
        Want::BadData("no match[] parameter provided"),
    ),
    (
        Endpoint::Series,
        None,
        "match[]=up&match[]=rate(x[5m])",
        Want::BadData("invalid parameter \"match[]\": parse error: "),
    ),
    (
        Endpoint::Series,
        None,
        "match[]=up&start=x",
        Want::BadData("invalid parameter \"start\": Invalid time value for 'start'"),
    ),
    (Endpoint::Series, None, "match[]={job=\"a\"}", Want::Forward),
    (Endpoint::Labels, None, "", Want::Forward),
    (
        Endpoint::Labels,
        None,
        "match[]={",
        Want::BadData("parse error: "),
    ),
    (Endpoint::LabelValues, Some("job"), "match[]=up", Want::Forward),
    (
        Endpoint::LabelValues,
        Some("a-b"),
        "match[]={",
        Want::BadData("invalid label name: \"a-b\""),
    ),
    (
        Endpoint::LabelValues,
        Some("job"),
        "end=never",
        Want::BadData("invalid parameter \"end\""),
    ),
    (Endpoint::Metadata, None, "metric=anything{", Want::Forward),
    (Endpoint::Other, None, "query=(", Want::Forward),
];

#[test]
fn checks_follow_prometheus() {
    for (endpoint, label, query, want) in CASES {
        let form = Form::new(Some(query), None);
        let got = check(*endpoint, &form, *label, &Grammar::default());
        let ok = match (want, &got) {
            (Want::Forward, Ok(Checked::Forward)) => true,
            (Want::Query(names), Ok(Checked::Query(q))) => q.proxy_functions == *names,
            (Want::Formatted, Ok(Checked::Formatted(_))) => true,
            (Want::BadData(prefix), Err(ApiError::BadData(msg))) => msg.starts_with(prefix),
            (Want::Execution(prefix), Err(ApiError::Execution(msg))) => msg.starts_with(prefix),
            _ => false,
        };
        assert!(ok, "{endpoint:?} {query:?}: got {got:?}");
    }
}

#[test]
fn endpoints_round_trip_through_their_paths() {
    for endpoint in Endpoint::ROUTED {
        let path = endpoint.route().replace("{name}", "job");
        assert_eq!(Endpoint::from_api_path(&path), endpoint, "{path}");
    }
    assert_eq!(Endpoint::from_api_path("/targets"), Endpoint::Other);
    assert_eq!(Endpoint::from_api_path("/label/a/b/values"), Endpoint::Other);
}

#[test]
fn thanos_parameters_are_read_and_checked() {
    use super::Thanos;
    // (query string, Ok: (replica labels, storeMatch[] count, lookback, passed on) | Err: message start)
    type Read = (
        Option<Vec<&'static str>>,
        usize,
        Option<u64>,
        Vec<(&'static str, &'static str)>,
    );
    let cases: &[(&str, Result<Read, &str>)] = &[
        ("", Ok((None, 0, None, vec![]))),
        ("dedup=false", Ok((Some(vec![]), 0, None, vec![]))),
        (
            "replicaLabels[]=r&replicaLabels[]=s",
            Ok((Some(vec!["r", "s"]), 0, None, vec![])),
        ),
        (
            "storeMatch[]={a=\"1\"}&storeMatch[]={b=\"2\"}",
            Ok((None, 2, None, vec![])),
        ),
        ("lookback_delta=1m", Ok((None, 0, Some(60), vec![]))),
        ("lookback_delta=30", Ok((None, 0, Some(30), vec![]))),
        (
            "max_source_resolution=5m&engine=thanos",
            Ok((
                None,
                0,
                None,
                vec![("max_source_resolution", "5m"), ("engine", "thanos")],
            )),
        ),
        ("storeMatch[]={", Err("invalid parameter \"storeMatch[]\"")),
        ("lookback_delta=-1m", Err("invalid parameter \"lookback_delta\"")),
        ("lookback_delta=0", Err("invalid parameter \"lookback_delta\"")),
        ("lookback_delta=soon", Err("invalid parameter \"lookback_delta\"")),
    ];
    for (query, want) in cases {
        let got = Thanos::from_form(&Form::new(Some(query), None));
        match (want, got) {
            (Ok((replicas, store, lookback, passed)), Ok(t)) => {
                let replicas: Option<Vec<String>> = replicas
                    .as_ref()
                    .map(|r| r.iter().map(|s| (*s).to_owned()).collect());
                assert_eq!(t.replica_labels, replicas, "{query}");
                assert_eq!(t.store_match.len(), *store, "{query}");
                assert_eq!(t.lookback_delta.map(|d| d.as_secs()), *lookback, "{query}");
                let passed: Vec<(String, String)> = passed
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                assert_eq!(t.passed_on, passed, "{query}");
            }
            (Err(prefix), Err(ApiError::BadData(msg))) => assert!(msg.starts_with(prefix), "{query}: {msg}"),
            (want, got) => panic!("{query}: want {want:?}, got {got:?}"),
        }
    }
}
