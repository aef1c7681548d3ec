//! Which subtrees are pushed to endpoints, for representative queries: per-series
//! subtrees whole, decomposable aggregations as partial aggregates, and what must stay
//! in the proxy.

use promql_parser::parser::token::{
    T_BOTTOMK, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};

use super::*;

const C: Merge = Merge::Concat;

/// (query, endpoints know the proxy's functions, [(subtree, queries sent, merge)])
type Case = (
    &'static str,
    bool,
    &'static [(&'static str, &'static [&'static str], Merge)],
);

const CASES: &[Case] = &[
    // Per-series subtrees, whole.
    ("rate(x[5m])", false, &[("rate(x[5m])", &["rate(x[5m])"], C)]),
    ("x", false, &[("x", &["x"], C)]),
    (
        "rate(x[5m]) * 2",
        false,
        &[("rate(x[5m]) * 2", &["rate(x[5m]) * 2"], C)],
    ),
    ("-rate(x[5m])", false, &[("-rate(x[5m])", &["-rate(x[5m])"], C)]),
    ("x > 10", false, &[("x > 10", &["x > 10"], C)]),
    (
        "rate(x[5m] offset 1h)",
        false,
        &[("rate(x[5m] offset 1h)", &["rate(x[5m] offset 1h)"], C)],
    ),
    (
        "label_replace(x, \"dst\", \"$1\", \"src\", \"(.*)\")",
        false,
        &[(
            "label_replace(x, \"dst\", \"$1\", \"src\", \"(.*)\")",
            &["label_replace(x, \"dst\", \"$1\", \"src\", \"(.*)\")"],
            C,
        )],
    ),
    (
        "max_over_time(rate(x[5m])[1h:1m])",
        false,
        &[(
            "max_over_time(rate(x[5m])[1h:1m])",
            &["max_over_time(rate(x[5m])[1h:1m])"],
            C,
        )],
    ),
    (
        "time() - timestamp(x)",
        false,
        &[("timestamp(x)", &["timestamp(x)"], C)],
    ),
    // Decomposable aggregations, as partial aggregates.
    (
        "sum by (job) (rate(x[5m]))",
        false,
        &[(
            "sum by (job) (rate(x[5m]))",
            &["sum by (job) (rate(x[5m]))"],
            Merge::Again(T_SUM),
        )],
    ),
    (
        "count by (job) (up)",
        false,
        &[(
            "count by (job) (up)",
            &["count by (job) (up)"],
            Merge::Again(T_COUNT),
        )],
    ),
    ("min(x)", false, &[("min(x)", &["min(x)"], Merge::Again(T_MIN))]),
    (
        "max without (instance) (x)",
        false,
        &[(
            "max without (instance) (x)",
            &["max without (instance) (x)"],
            Merge::Again(T_MAX),
        )],
    ),
    (
        "group by (job) (x)",
        false,
        &[(
            "group by (job) (x)",
            &["group by (job) (x)"],
            Merge::Again(T_GROUP),
        )],
    ),
    (
        "sum by (cluster) (rate(x[5m]))",
        false,
        &[(
            "sum by (cluster) (rate(x[5m]))",
            &["sum by (cluster) (rate(x[5m]))"],
            Merge::Again(T_SUM),
        )],
    ),
    (
        "topk(3, rate(x[5m]))",
        false,
        &[(
            "topk(3, rate(x[5m]))",
            &["topk(3, rate(x[5m]))"],
            Merge::Rank(T_TOPK),
        )],
    ),
    (
        "bottomk by (job) (2, x)",
        false,
        &[(
            "bottomk by (job) (2, x)",
            &["bottomk by (job) (2, x)"],
            Merge::Rank(T_BOTTOMK),
        )],
    ),
    (
        "avg by (job) (rate(x[5m]))",
        false,
        &[(
            "avg by (job) (rate(x[5m]))",
            &["avg by (job) (rate(x[5m]))", "count by (job) (rate(x[5m]))"],
            Merge::Avg,
        )],
    ),
    (
        "stddev(x)",
        false,
        &[(
            "stddev(x)",
            &["count(x)", "avg(x)", "stdvar(x)"],
            Merge::Moments(T_STDDEV),
        )],
    ),
    (
        "stdvar by (job) (x)",
        false,
        &[(
            "stdvar by (job) (x)",
            &["count by (job) (x)", "avg by (job) (x)", "stdvar by (job) (x)"],
            Merge::Moments(T_STDVAR),
        )],
    ),
    // An operand whose series may differ in the metric name alone once it is dropped:
    // the aggregation would hide Prometheus' duplicate label set error, so only the
    // per-series part is pushed (its merge finds the duplicates).
    (
        "sum(rate({job=\"j\"}[5m]))",
        false,
        &[("rate({job=\"j\"}[5m])", &["rate({job=\"j\"}[5m])"], C)],
    ),
    (
        "max(ceil({__name__=~\"a|b\"}))",
        false,
        &[("ceil({__name__=~\"a|b\"})", &["ceil({__name__=~\"a|b\"})"], C)],
    ),
    (
        "sum({job=\"j\"})",
        false,
        &[("sum({job=\"j\"})", &["sum({job=\"j\"})"], Merge::Again(T_SUM))],
    ),
    (
        "sum(rate({__name__=\"x\", job=\"j\"}[5m]))",
        false,
        &[(
            "sum(rate({__name__=\"x\",job=\"j\"}[5m]))",
            &["sum(rate({__name__=\"x\",job=\"j\"}[5m]))"],
            Merge::Again(T_SUM),
        )],
    ),
    // Computed in the proxy; their per-series parts pushed.
    (
        "quantile(0.9, rate(x[5m]))",
        false,
        &[("rate(x[5m])", &["rate(x[5m])"], C)],
    ),
    ("count_values(\"v\", x)", false, &[("x", &["x"], C)]),
    (
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
        false,
        &[(
            "sum by (le) (rate(h_bucket[5m]))",
            &["sum by (le) (rate(h_bucket[5m]))"],
            Merge::Again(T_SUM),
        )],
    ),
    (
        "rate(x[5m]) / rate(y[5m])",
        false,
        &[
            ("rate(x[5m])", &["rate(x[5m])"], C),
            ("rate(y[5m])", &["rate(y[5m])"], C),
        ],
    ),
    ("x and y", false, &[("x", &["x"], C), ("y", &["y"], C)]),
    (
        "sum(x) / sum(y)",
        false,
        &[
            ("sum(x)", &["sum(x)"], Merge::Again(T_SUM)),
            ("sum(y)", &["sum(y)"], Merge::Again(T_SUM)),
        ],
    ),
    (
        "count(count by (job) (x))",
        false,
        &[(
            "count by (job) (x)",
            &["count by (job) (x)"],
            Merge::Again(T_COUNT),
        )],
    ),
    ("absent(x)", false, &[("x", &["x"], C)]),
    ("absent_over_time(x[5m])", false, &[]),
    (
        "sort_desc(rate(x[5m]))",
        false,
        &[("rate(x[5m])", &["rate(x[5m])"], C)],
    ),
    ("vector(1)", false, &[]),
    // An external label written or read: the endpoint does not store it.
    (
        "label_replace(x, \"cluster\", \"$1\", \"src\", \"(.*)\")",
        false,
        &[("x", &["x"], C)],
    ),
    (
        "label_join(x, \"dst\", \",\", \"cluster\", \"instance\")",
        false,
        &[("x", &["x"], C)],
    ),
    // A matcher on an external label: the selector is read, checked in the proxy.
    ("sum(rate(x{cluster=\"a\"}[5m]))", false, &[]),
    (
        "rate(x{job=\"j\"}[5m]) + on () group_left sum(y{cluster!=\"b\"})",
        false,
        &[("rate(x{job=\"j\"}[5m])", &["rate(x{job=\"j\"}[5m])"], C)],
    ),
    // A computed scalar argument.
    (
        "clamp(x, 0, scalar(y))",
        false,
        &[("x", &["x"], C), ("y", &["y"], C)],
    ),
    ("topk(scalar(z), x)", false, &[("z", &["z"], C), ("x", &["x"], C)]),
    // The proxy's own functions, only to endpoints that know them.
    ("entropy_over_time(x[1h])", false, &[]),
    (
        "entropy_over_time(x[1h])",
        true,
        &[("entropy_over_time(x[1h])", &["entropy_over_time(x[1h])"], C)],
    ),
    (
        "sum(distinct_over_time(x[1h]))",
        true,
        &[(
            "sum(distinct_over_time(x[1h]))",
            &["sum(distinct_over_time(x[1h]))"],
            Merge::Again(T_SUM),
        )],
    ),
];

#[test]
fn pushed_subtrees_of_representative_queries() {
    for (query, proxy_functions, want) in CASES {
        let topology = Topology {
            external_labels: vec!["cluster".into(), "replica".into()],
            proxy_functions: if *proxy_functions {
                crate::promql::PROXY_FUNCTIONS
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            } else {
                Vec::new()
            },
            per_series_parts: true,
        };
        let expr = crate::promql::parse(query).unwrap();
        let got: Vec<(String, Vec<String>, Merge)> = plan(&expr, &topology)
            .into_iter()
            .map(|p| (p.subtree, p.queries, p.merge))
            .collect();
        let want: Vec<(String, Vec<String>, Merge)> = want
            .iter()
            .map(|(s, q, m)| (s.to_string(), q.iter().map(|q| q.to_string()).collect(), *m))
            .collect();
        assert_eq!(got, want, "{query}");
        // What is sent parses, and is what an endpoint can answer alone.
        for (_, queries, _) in &got {
            for q in queries {
                crate::promql::parse(q).unwrap_or_else(|e| panic!("{query}: {q} does not parse: {e}"));
            }
        }
    }
}

/// A subtree inside a subquery is asked at the subquery's steps.
#[test]
fn pushed_subtrees_inside_a_subquery_say_so() {
    let expr = crate::promql::parse("quantile_over_time(0.9, sum(rate(x[5m]))[1h:]) + sum(y)").unwrap();
    let inside: Vec<(String, bool)> = plan(&expr, &Topology::default())
        .into_iter()
        .map(|p| (p.subtree, p.in_subquery))
        .collect();
    assert_eq!(
        inside,
        [
            ("sum(rate(x[5m]))".to_owned(), true),
            ("sum(y)".to_owned(), false)
        ]
    );
}

/// Two clusters' series of `x`: three instances of two jobs each.
fn two_clusters() -> Vec<crate::promql::eval::value::Series> {
    let mut all = Vec::new();
    for (c, cluster) in ["a", "b"].iter().enumerate() {
        for (j, job) in ["j1", "j2"].iter().enumerate() {
            for (i, instance) in ["i1", "i2", "i3"].iter().enumerate() {
                let values: Vec<Option<f64>> = (0..40)
                    .map(|n| {
                        let seed = (c * 7 + j * 3 + i) as f64;
                        Some((n as f64 * (1.0 + seed)).sin() * 10.0 + n as f64 * seed)
                    })
                    .collect();
                let labels = [
                    ("__name__", "x"),
                    ("cluster", *cluster),
                    ("job", *job),
                    ("instance", *instance),
                ];
                all.push(crate::promql::eval::testing::series(&labels, &values));
            }
        }
    }
    all
}

/// The series of one cluster as its endpoint holds them: without the external label.
fn endpoint_of(
    all: &[crate::promql::eval::value::Series],
    cluster: &str,
) -> Vec<crate::promql::eval::value::Series> {
    all.iter()
        .filter(|s| s.labels.get("cluster") == cluster)
        .map(|s| crate::promql::eval::value::Series {
            labels: s.labels.retain(|n| n != "cluster"),
            points: s.points.clone(),
        })
        .collect()
}

const RANGE: crate::promql::eval::Range = crate::promql::eval::Range {
    start_ms: 60_000,
    end_ms: 390_000,
    step_ms: 30_000,
};

fn matrix(query: &str, store: &[crate::promql::eval::value::Series]) -> crate::promql::eval::value::Matrix {
    match crate::promql::eval::testing::run(query, RANGE, store, 1_000_000).unwrap() {
        crate::promql::eval::Answer::Matrix(m) => m,
        other => panic!("{query}: {other:?}"),
    }
}

/// Every endpoint's answers to `pushed`'s queries.
fn answers(pushed: &Pushed<'_>, all: &[crate::promql::eval::value::Series]) -> Vec<Answers> {
    ["a", "b"]
        .iter()
        .map(|cluster| Answers {
            external: [("cluster".to_owned(), cluster.to_string())].into(),
            results: pushed
                .queries
                .iter()
                .map(|q| matrix(q, &endpoint_of(all, cluster)))
                .collect(),
        })
        .collect()
}

fn assert_same(
    query: &str,
    got: &[crate::promql::eval::value::Series],
    want: &[crate::promql::eval::value::Series],
) {
    assert_eq!(
        got.iter().map(|s| s.labels.clone()).collect::<Vec<_>>(),
        want.iter().map(|s| s.labels.clone()).collect::<Vec<_>>(),
        "{query}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.points.len(), w.points.len(), "{query} {:?}", w.labels);
        for (p, q) in g.points.iter().zip(&w.points) {
            let close = p.v == q.v || (p.v - q.v).abs() <= 1e-9 * q.v.abs().max(1.0);
            assert!(p.t == q.t && close, "{query} {:?}: {p:?} vs {q:?}", w.labels);
        }
    }
}

/// Over endpoints read by remote read, per-series parts are left to raw data: only
/// aggregations of them are pushed.
#[test]
fn without_per_series_parts_only_aggregations_are_pushed() {
    let topology = Topology {
        external_labels: vec!["cluster".into()],
        proxy_functions: Vec::new(),
        per_series_parts: false,
    };
    for (query, want) in [
        ("rate(x[5m])", &[][..]),
        ("quantile(0.9, rate(x[5m]))", &[]),
        ("rate(x[5m]) / rate(y[5m])", &[]),
        ("sum by (job) (rate(x[5m]))", &["sum by (job) (rate(x[5m]))"]),
        (
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
            &["sum by (le) (rate(h_bucket[5m]))"],
        ),
        ("sum(x) / avg(y)", &["sum(x)", "avg(y)"]),
    ] {
        let expr = crate::promql::parse(query).unwrap();
        let got: Vec<String> = plan(&expr, &topology).into_iter().map(|p| p.subtree).collect();
        assert_eq!(got, want, "{query}");
    }
}

/// Whole queries evaluated in the proxy over their pushed subtrees' merged answers
/// (their selectors not read at all) equal the queries over all the data.
#[test]
fn queries_over_pushed_subtrees_equal_the_queries_over_all_the_data() {
    use crate::promql::eval::testing::{LOOKBACK_MS, data_for_except, interrupt};
    use crate::promql::eval::{Answer, Limits, Precomputed, evaluate_pushed};

    let all = two_clusters();
    let topology = Topology {
        external_labels: vec!["cluster".into()],
        proxy_functions: Vec::new(),
        per_series_parts: true,
    };
    // (query, subtrees pushed)
    let cases = [
        ("quantile(0.5, rate(x[1m]))", 1),
        ("sum by (job) (rate(x[1m])) / on (job) count by (job) (x)", 2),
        ("max(sum by (job) (x))", 1),
        ("abs(x) + x", 2),
        ("count_values(\"v\", round(x))", 1),
        ("sort_desc(avg by (cluster) (x))", 1),
        // Inside a subquery: planned, but asked at other steps, so evaluated here.
        ("quantile_over_time(0.5, sum(x)[2m:30s])", 0),
    ];
    for (query, expected) in cases {
        let expr = crate::promql::parse(query).unwrap();
        let mut precomputed = Precomputed::default();
        for pushed in plan(&expr, &topology).iter().filter(|p| !p.in_subquery) {
            precomputed.insert(pushed.node, merge(pushed, &answers(pushed, &all)).unwrap());
        }
        assert_eq!(
            plan(&expr, &topology).iter().filter(|p| !p.in_subquery).count(),
            expected,
            "{query}"
        );
        let data = data_for_except(&expr, &RANGE, &all, &precomputed);
        let limits = Limits {
            max_samples: 1_000_000,
            lookback_ms: LOOKBACK_MS,
        };
        let got = match evaluate_pushed(&expr, RANGE, &data, &limits, &interrupt(), None, &precomputed)
            .unwrap()
            .0
        {
            Answer::Matrix(m) => m,
            other => panic!("{query}: {other:?}"),
        };
        let mut want = matrix(query, &all);
        want.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert!(!want.is_empty(), "{query}");
        assert_same(query, &got, &want);
    }
}

/// Pushed subtrees merged from two endpoints holding disjoint series (told apart by the
/// external label `cluster`, which their series do not carry) equal the subtree
/// evaluated over all the series, to 1e-9 relative (a mean or a variance from partial
/// sums rounds differently from Prometheus' running mean).
#[test]
fn merged_answers_equal_the_subtree_over_all_the_data() {
    let all = two_clusters();
    let topology = Topology {
        external_labels: vec!["cluster".into()],
        proxy_functions: Vec::new(),
        per_series_parts: true,
    };
    for query in [
        "rate(x[1m])",
        "x * 2 > 3",
        "sum(x)",
        "sum by (job) (rate(x[1m]))",
        "sum by (cluster) (x)",
        "sum without (instance) (x)",
        "count by (job) (x)",
        "count without (cluster, instance) (x)",
        "min(x)",
        "max without (instance) (x)",
        "group by (job) (x)",
        "topk(2, x)",
        "bottomk by (job) (1, x)",
        "topk by (cluster) (2, rate(x[1m]))",
        "avg(x)",
        "avg by (job) (x)",
        "stddev(x)",
        "stdvar by (job) (x)",
        // A large mean and a small spread: a sum of squares would cancel.
        "stddev(x + 1e6)",
        "avg(x * 1e306)",
    ] {
        let expr = crate::promql::parse(query).unwrap();
        let pushed = plan(&expr, &topology);
        assert_eq!(pushed.len(), 1, "{query}: {pushed:?}");
        let mut got = merge(&pushed[0], &answers(&pushed[0], &all)).unwrap();
        // A topk's come in rank order (the conformance suite checks it).
        got.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
        let mut want = matrix(query, &all);
        want.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
        assert_same(query, &got, &want);
    }
}

/// An endpoint whose `count` lacks a step its `avg` has (the parts are asked one after
/// another) is left out at that step; it never lends its mean to another's count.
#[test]
fn partial_aggregates_pair_within_each_endpoint() {
    use crate::promql::eval::value::{Labels, Point, Series};
    let expr = crate::promql::parse("avg(x)").unwrap();
    let topology = Topology {
        external_labels: vec!["cluster".into()],
        proxy_functions: Vec::new(),
        per_series_parts: true,
    };
    let pushed = plan(&expr, &topology);
    let series = |points: &[(i64, f64)]| {
        vec![Series {
            labels: Labels::from_pairs([]),
            points: points.iter().map(|&(t, v)| Point { t, v }).collect(),
        }]
    };
    let endpoint = |cluster: &str, means: &[(i64, f64)], counts: &[(i64, f64)]| Answers {
        external: [("cluster".to_owned(), cluster.to_owned())].into(),
        results: vec![series(means), series(counts)],
    };
    let answers = [
        // a: mean 10 over 1 series at both steps, its count only at the first.
        endpoint("a", &[(0, 10.0), (60, 10.0)], &[(0, 1.0)]),
        // b: mean 40 over 3 series at both.
        endpoint("b", &[(0, 40.0), (60, 40.0)], &[(0, 3.0), (60, 3.0)]),
    ];
    let merged = merge(&pushed[0], &answers).unwrap();
    let points: Vec<(i64, f64)> = merged[0].points.iter().map(|p| (p.t, p.v)).collect();
    assert_eq!(points, [(0, 32.5), (60, 40.0)]);
}
