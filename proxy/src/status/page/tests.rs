use super::*;

#[test]
fn credentials_in_urls_are_redacted() {
    for (text, want) in [
        (
            "url: http://user:pw@host:9090/x",
            "url: http://<secret>@host:9090/x",
        ),
        (
            "a http://host:1 b https://u@h/p",
            "a http://host:1 b https://<secret>@h/p",
        ),
        ("\"http://a:b@c\", x", "\"http://<secret>@c\", x"),
        (
            "http://h:1/api?token=abc&x=1 next",
            "http://h:1/api?<secret> next",
        ),
        ("https://u:p@h?k=v", "https://<secret>@h?<secret>"),
        ("no url here", "no url here"),
    ] {
        assert_eq!(redact(text), want, "{text}");
    }
}

#[test]
fn durations_read_as_people_write_them() {
    for (seconds, want) in [
        (0.0, "0s"),
        (45.9, "45s"),
        (600.0, "10m"),
        (7200.0, "2h"),
        (11_520.0, "3h12m"),
    ] {
        assert_eq!(ago(seconds), want);
    }
}

#[test]
fn sizes_read_as_people_write_them() {
    for (n, want) in [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1_572_864, "1.5 MiB"),
        (3 << 30, "3.0 GiB"),
    ] {
        assert_eq!(bytes(n), want);
    }
}

#[test]
fn bounds_read_as_claimed() {
    for (relative, want) in [
        (0.01, "1%"),
        (0.02, "2%"),
        (0.0025, "0.25%"),
        (1e-9, "1e-7%"),
        (0.008, "0.8%"),
    ] {
        assert_eq!(crate::plugin_host::percent(relative), want);
    }
}

#[test]
fn json_in_a_script_element_cannot_end_it() {
    assert_eq!(
        script_safe(r#""</script><!--<script>&""#),
        r#""\u003c/script\u003e\u003c!--\u003cscript\u003e\u0026""#
    );
}
