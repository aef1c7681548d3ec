use super::*;

/// (query, parses?) — what Prometheus 2.42 accepts must parse here too.
const PARSE_CASES: &[(&str, bool)] = &[
    ("up", true),
    ("sum by (job) (rate(http_requests_total[5m]))", true),
    ("quantile_over_time(0.99, m[1h])", true),
    ("entropy_over_time(m[1h])", true),
    ("l2_over_time(m[1h])", true),
    ("distinct_over_time(m{a=\"b\"}[30m] offset 1h)", true),
    ("holt_winters(m[1h], 0.1, 0.5)", true),
    ("m @ 100 offset -5m", true),
    ("rate(m[5m:1m])", true),
    ("sum(", false),
    ("foo{", false),
    ("rate(foo)", false),
    ("entropy_over_time(m)", false),
    ("no_such_function(m[5m])", false),
    ("", false),
    ("   ", false),
];

#[test]
fn parse_accepts_what_prometheus_accepts() {
    for (query, ok) in PARSE_CASES {
        assert_eq!(parse(query).is_ok(), *ok, "{query:?}: {:?}", parse(query));
    }
}

#[test]
fn empty_query_says_so() {
    assert_eq!(
        parse("").unwrap_err().to_string(),
        "parse error: no expression found in input"
    );
}

#[test]
fn proxy_functions_are_found_once_each_in_order() {
    let cases: &[(&str, &[&str])] = &[
        ("up", &[]),
        ("quantile_over_time(0.5, m[5m])", &[]),
        (
            "l2_over_time(a[5m]) / entropy_over_time(b[5m])",
            &["l2_over_time", "entropy_over_time"],
        ),
        (
            "sum(distinct_over_time(a[5m])) + distinct_over_time(b[1m])",
            &["distinct_over_time"],
        ),
        (
            "max_over_time(rate(x[1m])[5m:]) > bool l2_over_time(y[1h])",
            &["l2_over_time"],
        ),
    ];
    for (query, want) in cases {
        let expr = parse(query).unwrap();
        assert_eq!(Grammar::default().proxy_functions_used(&expr), *want, "{query}");
    }
}

#[test]
fn selectors_accept_only_bare_vector_selectors() {
    let cases: &[(&str, bool)] = &[
        ("up", true),
        ("{job=\"a\"}", true),
        ("{__name__=~\"demo_.*\"}", true),
        ("up{job=\"a\"}", true),
        ("rate(up[5m])", false),
        ("up[5m]", false),
        ("up offset 5m", false),
        ("1", false),
        ("{}", false),
        ("up{", false),
    ];
    for (selector, ok) in cases {
        assert_eq!(
            parse_selector(selector).is_ok(),
            *ok,
            "{selector}: {:?}",
            parse_selector(selector)
        );
    }
    let m = parse_selector("up{job=\"a\"}").unwrap();
    assert_eq!(m.matchers.len(), 2);
}

#[test]
fn selectors_select_as_prometheus_does() {
    let labels = [("__name__", "http_latency_ms"), ("job", "api"), ("code", "200")];
    let value_of = |name: &str| labels.iter().find(|l| l.0 == name).map_or("", |l| l.1);
    for (selector, selected) in [
        ("http_latency_ms", true),
        ("http_latency_ms{job=\"api\"}", true),
        ("http_latency_ms{job!=\"api\"}", false),
        ("{job=~\"a.*\", code=~\"2..\"}", true),
        ("{job=~\"a\"}", false),
        ("http_latency_ms{missing=\"\"}", true),
        ("http_latency_ms{missing!=\"\"}", false),
    ] {
        let matchers = parse_selector(selector).unwrap();
        assert_eq!(selects(&matchers, value_of), selected, "{selector}");
    }
    // `or` groups (which only promql-parser's own syntax produces): one whole group must hold.
    let eq =
        |n: &str, v: &str| promql_parser::label::Matcher::new(promql_parser::label::MatchOp::Equal, n, v);
    for (name, groups, selected) in [
        ("http_latency_ms", [("job", "web"), ("code", "200")], true),
        ("other", [("job", "web"), ("code", "200")], false),
        ("http_latency_ms", [("job", "web"), ("code", "500")], false),
    ] {
        let matchers = Matchers::new(vec![eq("__name__", name)])
            .with_or_matchers(groups.iter().map(|(n, v)| vec![eq(n, v)]).collect());
        assert_eq!(selects(&matchers, value_of), selected, "{name} {groups:?}");
    }
}

#[test]
fn or_inside_braces_is_refused_as_prometheus_2_42_refuses_it() {
    for query in ["up{a=\"1\" or b=\"2\"}", "rate(up{a=\"1\" or b=\"2\"}[5m])"] {
        let error = parse(query).unwrap_err();
        assert!(
            error.detail().contains("unexpected identifier \"or\""),
            "{query}: {}",
            error.detail()
        );
    }
}
