use super::*;

const SEC: i128 = 1_000_000_000;

#[test]
fn times_parse_like_prometheus() {
    let cases: &[(&str, Result<i128, &str>)] = &[
        ("1700000000", Ok(1_700_000_000 * SEC)),
        ("1700000000.123", Ok(1_700_000_000 * SEC + 123_000_000)),
        ("1700000000.1234", Ok(1_700_000_000 * SEC + 123_000_000)),
        ("1700000000.9996", Ok(1_700_000_001 * SEC)),
        ("4", Ok(4 * SEC)),
        ("-1.5", Ok(-SEC - 500_000_000)),
        ("1e3", Ok(1000 * SEC)),
        ("2023-11-14T22:13:20Z", Ok(1_700_000_000 * SEC)),
        (
            "2023-11-14T22:13:20.5+01:00",
            Ok((1_700_000_000 - 3600) * SEC + 500_000_000),
        ),
        (MAX_TIME_FORMATTED, Ok(MAX_TIME)),
        (MIN_TIME_FORMATTED, Ok(MIN_TIME)),
        ("abc", Err("cannot parse \"abc\" to a valid timestamp")),
        ("", Err("cannot parse \"\" to a valid timestamp")),
        ("1h", Err("cannot parse \"1h\" to a valid timestamp")),
        ("0x10", Err("cannot parse \"0x10\" to a valid timestamp")),
    ];
    for (input, want) in cases {
        let got = parse_time(input).map_err(|e| e.0);
        assert_eq!(got, want.map_err(str::to_owned), "{input:?}");
    }
}

#[test]
fn durations_parse_like_prometheus() {
    let cases: &[(&str, Result<i64, &str>)] = &[
        ("15", Ok(15_000_000_000)),
        ("0.5", Ok(500_000_000)),
        ("1m", Ok(60_000_000_000)),
        ("1h30m", Ok(5_400_000_000_000)),
        ("100ms", Ok(100_000_000)),
        ("0", Ok(0)),
        ("-1", Ok(-1_000_000_000)),
        (
            "1e300",
            Err("cannot parse \"1e300\" to a valid duration. It overflows int64"),
        ),
        ("1x", Err("cannot parse \"1x\" to a valid duration")),
        ("30m1h", Err("cannot parse \"30m1h\" to a valid duration")),
        ("", Err("cannot parse \"\" to a valid duration")),
    ];
    for (input, want) in cases {
        let got = parse_duration(input).map_err(|e| e.0);
        assert_eq!(got, want.map_err(str::to_owned), "{input:?}");
    }
}

#[test]
fn form_body_values_come_before_url_values() {
    let form = Form::new(Some("query=b&match[]=2"), Some(b"query=a&match%5B%5D=1"));
    assert_eq!(form.get("query"), "a");
    assert_eq!(form.all("match[]"), ["1", "2"]);
    assert_eq!(form.get("missing"), "");
}

#[test]
fn go_quote_escapes_like_go() {
    let cases = [
        ("abc", r#""abc""#),
        ("a\"b", r#""a\"b""#),
        ("tab\there", r#""tab\there""#),
        ("\u{1}", r#""\x01""#),
        ("ünï", r#""ünï""#),
    ];
    for (input, want) in cases {
        assert_eq!(go_quote(input), want);
    }
}

#[test]
fn label_names_follow_the_prometheus_pattern() {
    for (name, ok) in [
        ("job", true),
        ("__name__", true),
        ("_1", true),
        ("1a", false),
        ("a-b", false),
        ("", false),
    ] {
        assert_eq!(is_valid_label_name(name), ok, "{name}");
    }
}
