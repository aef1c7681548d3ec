use super::*;

fn custom(name: &str, scalar_args: usize) -> CustomFunction {
    CustomFunction {
        name: name.to_owned(),
        scalar_args,
    }
}

#[test]
fn custom_functions_parse_only_in_the_grammar_that_has_them() {
    let with = Grammar::new(ShapeLimits::default(), &[custom("grammar_test_over_time", 1)]);
    let without = Grammar::new(ShapeLimits::default(), &[]);
    let query = "grammar_test_over_time(0.5, m[10m])";
    let expr = with.parse(query).unwrap();
    assert_eq!(with.proxy_functions_used(&expr), vec!["grammar_test_over_time"]);
    assert_eq!(
        without.parse(query).unwrap_err().to_string(),
        "parse error: unknown function with name 'grammar_test_over_time'"
    );
    // The declared arguments: scalars, then the range vector.
    let wrong = with.parse("grammar_test_over_time(m[10m])").unwrap_err();
    assert!(wrong.to_string().contains("expected 2 argument"), "{wrong}");
}

#[test]
fn names_promql_or_the_proxy_has_are_not_custom() {
    let grammar = Grammar::new(
        ShapeLimits::default(),
        &[
            custom("rate", 0),
            custom("entropy_over_time", 0),
            custom("quantile_over_time", 1),
        ],
    );
    assert_eq!(grammar.custom().count(), 0);
    let expr = grammar.parse("rate(m[5m]) + entropy_over_time(m[5m])").unwrap();
    assert_eq!(grammar.proxy_functions_used(&expr), vec!["entropy_over_time"]);
}

#[test]
fn a_grammar_keeps_the_shape_limits() {
    let grammar = Grammar::new(
        ShapeLimits {
            max_bytes: 100,
            max_depth: 2,
        },
        &[],
    );
    assert!(matches!(grammar.parse("1 + 1 + 1"), Err(ParseError::Shape(_))));
}
