use super::*;

#[test]
fn depth_follows_nesting_and_chains() {
    let table: &[(&str, usize)] = &[
        ("up", 1),
        ("(up)", 2),
        ("((up))", 3),
        ("up + 1", 2),
        ("up + 1 + 1 + 1", 4),
        ("-up", 2),
        ("up or up or up", 3),
        ("up and on(job) up", 3),
        ("sum by (job) (rate(up[5m]))", 4),
        ("rate(up[5m:1m])", 3),
        // Arguments are siblings: the deeper one counts.
        ("label_replace(up + 1, \"a\", \"b\", \"c\", \"d\")", 3),
        ("clamp(up, 1 + 1 + 1, 2)", 4),
        // Strings, comments and matchers add nothing.
        ("up{job=\"(((+-\"}", 1),
        ("up{job=~'a|b|c'} # ((((( +++", 1),
        ("up{job=`\\`}", 1),
        ("1e-3 + 2E+4", 2),
        ("up == bool 1", 2),
        ("up >= 1", 2),
        ("up atan2 up", 2),
        // Identifiers that contain operator keywords are not operators.
        ("order_total + android", 2),
        // Unbalanced text is the parser's to reject; measuring it must not fail.
        (")))up(((", 4),
        ("\"unterminated", 1),
    ];
    for (query, expected) in table {
        assert_eq!(depth(query), *expected, "{query}");
    }
}

#[test]
fn long_inputs_from_the_reports_are_measured_deep() {
    let chain = format!("entropy_over_time(up[5m]){}", "+1".repeat(2000));
    assert_eq!(depth(&chain), 2001);
    let parens = format!("{}up{}", "(".repeat(40_000), ")".repeat(40_000));
    assert_eq!(depth(&parens), 40_001);
    let calls = format!("{}up{}", "abs(".repeat(2000), ")".repeat(2000));
    assert_eq!(depth(&calls), 2001);
    let or = vec!["up"; 2000].join(" or ");
    assert_eq!(depth(&or), 2000);
}

#[test]
fn check_reports_length_before_depth() {
    let limits = ShapeLimits {
        max_bytes: 10,
        max_depth: 3,
    };
    assert_eq!(check("up + up", &limits), Ok(()));
    assert_eq!(
        check("up + up + up + up", &limits),
        Err(ShapeError::TooLong { len: 17, max: 10 })
    );
    assert_eq!(check("up+up+up+1", &limits), Err(ShapeError::TooDeep { max: 3 }));
}

#[test]
fn bare_seconds_past_what_a_duration_holds_are_refused() {
    let table: &[(&str, Option<&str>)] = &[
        ("up[5m]", None),
        ("up[300]", None),
        ("rate(up[5m:30])", None),
        ("up offset 3600", None),
        ("up @ 1700000000", None),
        ("up offset -5m", None),
        (
            "up[11111111111111111111111111111111:1m]",
            Some("11111111111111111111111111111111"),
        ),
        (
            "sum(x[1m:577777777777777777777777777777])",
            Some("577777777777777777777777777777"),
        ),
        ("up offset 1e30", Some("1e30")),
        ("up offset -1e30", Some("1e30")),
        ("up @ 1e300", Some("1e300")),
        ("up @ Inf", Some("Inf")),
        ("up[0xfffffffffffffffffffff]", Some("0xfffffffffffffffffffff")),
        // Numbers elsewhere are values, not durations.
        ("up > 1e300", None),
        ("up{a=\"[1e300]\"}", None),
    ];
    for (query, refused) in table {
        assert_eq!(out_of_range_seconds(query).as_deref(), *refused, "{query}");
    }
}
