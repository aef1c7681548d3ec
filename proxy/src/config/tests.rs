use super::*;

fn errors_of(yaml: &str) -> Vec<String> {
    match load_str(yaml, &Overrides::default()) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(errors)) => errors
            .into_iter()
            .map(|e| format!("{}: {}", e.at, e.message))
            .collect(),
    }
}

#[test]
fn empty_file_gives_defaults() {
    let config = load_str("", &Overrides::default()).unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.downstream, DownstreamConfig::default());
    assert_eq!(config.web.route_prefix, "/");
    assert_eq!(config.limits, LimitsConfig::default());
}

#[test]
fn full_file_is_read() {
    let yaml = "
listen: 127.0.0.1:8000
downstream:
  url: http://prom:9090/sub
  timeout: 30s
web:
  route_prefix: /proxy/
limits:
  max_request_body_bytes: 2048
  max_concurrent_queries: 4
log:
  level: debug
  format: json
";
    let c = load_str(yaml, &Overrides::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.downstream.url, "http://prom:9090/sub");
    assert_eq!(c.downstream.timeout, Duration::from_secs(30));
    assert_eq!(c.web.route_prefix, "/proxy");
    assert_eq!(c.limits.max_request_body_bytes, 2048);
    assert_eq!(c.limits.max_concurrent_queries, 4);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = "
listen: nowhere
downstream:
  url: ftp://x
  timeout: soon
  retries: 3
web:
  route_prefix: proxy
limits:
  max_concurrent_queries: 0
log:
  level: \"sketch_proxy=loud\"
query:
  source: sketch_proxy
shards: 2
";
    let errors = errors_of(yaml);
    let want_prefixes = [
        "downstream.timeout: \"soon\" is not a duration",
        "downstream.retries: unknown field `retries`",
        "shards: unknown field",
        "listen: \"nowhere\" is not an IP:port address",
        "downstream.url: ftp://x/ must be an http:// or https:// URL",
        "web.route_prefix: \"proxy\" must be a path",
        "limits.max_concurrent_queries: must be greater than 0",
        "log.level: \"sketch_proxy=loud\" is not a level or filter",
        "query.source: sketch_proxy is a kind of downstream.endpoints entry",
    ];
    assert_eq!(errors.len(), want_prefixes.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(want_prefixes) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn section_errors_keep_defaults_and_later_errors_still_show() {
    let errors = errors_of("downstream:\n  timeout: soon\nlimits:\n  max_request_body_bytes: 0\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("\"soon\" is not a duration"), "{errors:#?}");
    assert!(
        errors[1].starts_with("limits.max_request_body_bytes"),
        "{errors:#?}"
    );
}

#[test]
fn flags_override_the_file() {
    let overrides = Overrides {
        listen: Some("127.0.0.1:1234".to_owned()),
        upstream: Some("http://other:9090".to_owned()),
        route_prefix: Some("/p".to_owned()),
        log_level: Some("warn".to_owned()),
        remote_write_urls: vec![
            "http://a:9090/api/v1/write".to_owned(),
            "http://b:9090/api/v1/write".to_owned(),
        ],
        enable_remote_write_receiver: false,
        query_mode: Some("local".to_owned()),
        sketch_rules: vec!["quantile_over_time(0.9, m[1h])".to_owned()],
        ..Overrides::default()
    };
    let c = load_str(
        "listen: 127.0.0.1:8000\nquery:\n  mode: auto\ndownstream:\n  url: http://prom:9090\ningest:\n  destinations:\n    - url: http://c:9090/api/v1/write\n",
        &overrides,
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:1234");
    assert_eq!(c.downstream.url, "http://other:9090");
    assert_eq!(c.web.route_prefix, "/p");
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.query.mode, QueryMode::Local);
    assert_eq!(c.sketches.queries, ["quantile_over_time(0.9, m[1h])"]);
    assert!(c.ingest.enabled, "--remote-write.url turns the receiver on");
    let names: Vec<String> = c
        .ingest
        .named_destinations(&c.downstream)
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["a:9090", "b:9090"], "the flags replace the file's list");
}

#[test]
fn ingest_defaults_to_the_downstreams_receiver_and_checks_every_field() {
    let c = load_str(
        "downstream:\n  url: http://prom:9090/prefix\ningest:\n  enabled: true\n",
        &Overrides::default(),
    )
    .unwrap();
    let named: Vec<_> = c
        .ingest
        .named_destinations(&c.downstream)
        .into_iter()
        .map(|d| (d.name, d.url.to_string()))
        .collect();
    assert_eq!(
        named,
        [(
            "prom:9090".to_owned(),
            "http://prom:9090/prefix/api/v1/write".to_owned()
        )]
    );
    let errors = errors_of(
        "ingest:\n  destinations:\n    - url: ftp://x/\n    - url: http://a:1/w\n      name: a\n    - url: http://b:1/w\n      name: a\n  replication_factor: 4\n  max_queue_bytes: 10\n  min_backoff: 10s\n  max_backoff: 1s\n",
    );
    assert_eq!(
        errors,
        [
            "ingest.destinations[0].url: ftp://x/ must be an http:// or https:// URL with a host",
            "ingest.destinations[2].name: \"a\" is used twice; give each destination its own name",
            "ingest.replication_factor: 4 is not between 1 and the 3 destinations",
            "ingest.max_queue_bytes: must be at least 1 MiB",
            "ingest.min_backoff: must not be longer than ingest.max_backoff",
        ]
    );
}

#[test]
fn bad_flag_is_reported_with_its_name() {
    let overrides = Overrides {
        upstream: Some("http://a b".to_owned()),
        ..Overrides::default()
    };
    let errors = load_str("", &overrides).unwrap_err().0;
    assert_eq!(errors[0].at, "--upstream");
}

#[test]
fn query_section_reports_every_bad_field() {
    let errors = load_str(
        "query:\n  mode: remote\n  lookback_delta: 0s\n  max_samples: 0\n  timeout: soon\n",
        &Overrides::default(),
    )
    .unwrap_err()
    .0;
    let at: Vec<&str> = errors.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "query.mode",
            "query.timeout",
            "query.lookback_delta",
            "query.max_samples"
        ],
        "{errors:?}"
    );
    let bad_flag = Overrides {
        query_mode: Some("remote".to_owned()),
        ..Overrides::default()
    };
    assert_eq!(load_str("", &bad_flag).unwrap_err().0[0].at, "--query.mode");
}

#[test]
fn rule_queries_are_checked() {
    let errors = errors_of(
        "sketches:\n  queries:\n    - 'quantile_over_time(0.9, m[1h])'\n    - 'sum(rate(m[5m]))'\n    - 'quantile_over_time(0.9, m[1h'\n  query_retain: 0s\n",
    );
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(
        fields,
        [
            "sketches.query_retain",
            "sketches.queries[1]",
            "sketches.queries[2]"
        ],
        "{errors:?}"
    );
    assert!(errors[1].contains("calls no *_over_time function"), "{errors:?}");
}

#[test]
fn the_cache_section_is_read_and_checked() {
    let config = load_str(
        "cache:\n  max_bytes: 2097152\n  max_freshness: 30s\n  max_ttl: 10m\nsketches:\n  kept_points: 5\n",
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        (
            config.cache.max_bytes,
            config.cache.max_freshness,
            config.cache.max_ttl
        ),
        (2 << 20, Duration::from_secs(30), Duration::from_secs(600))
    );
    assert_eq!(config.sketches.kept_points, Some(5), "the old field still loads");
    let errors = errors_of("cache:\n  max_bytes: 10\n  max_ttl: 0s\n  max_age: 1h\n");
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(
        fields,
        ["cache.max_ttl", "cache.max_age", "cache.max_bytes"],
        "{errors:?}"
    );
}

#[test]
fn non_mapping_file_is_rejected() {
    assert_eq!(
        errors_of("- a\n- b\n"),
        ["(file): the configuration must be a YAML mapping"]
    );
    assert_eq!(errors_of("a: [").len(), 1);
}

#[test]
fn plugin_settings_are_read_and_checked() {
    let dir = std::env::temp_dir();
    let yaml = format!(
        "plugins:\n  dir: {}\n  instances: 3\n  memory_limit_bytes: 33554432\n  call_timeout: 250ms\n  grants:\n    spread: [clock, environment]\n",
        dir.display()
    );
    let p = load_str(&yaml, &Overrides::default()).unwrap().plugins;
    assert_eq!(p.dir.as_deref(), Some(dir.as_path()));
    assert_eq!((p.instances, p.memory_limit_bytes), (3, 32 << 20));
    assert_eq!(p.call_timeout, Duration::from_millis(250));
    assert_eq!(p.grants["spread"], [Grant::Clock, Grant::Environment]);

    // (plugins section, expected error prefix)
    let cases = [
        (
            "dir: /no/such/dir",
            "plugins.dir: /no/such/dir is not a directory",
        ),
        ("instances: 0", "plugins.instances: 0 is not between 1 and 256"),
        (
            "memory_limit_bytes: 1024",
            "plugins.memory_limit_bytes: 1024 is not between 16 MiB and 4 GiB",
        ),
        (
            "call_timeout: 0s",
            "plugins.call_timeout: \"0s\" is not a duration such as 30s or 2m: duration must be greater than 0",
        ),
        (
            "grants: {spread: [network]}",
            "plugins.grants: unknown variant `network`",
        ),
        ("sandbox: off", "plugins.sandbox: unknown field `sandbox`"),
    ];
    for (section, want) in cases {
        let errors = errors_of(&format!("plugins:\n  {section}\n"));
        assert_eq!(errors.len(), 1, "{section}: {errors:#?}");
        assert!(
            errors[0].starts_with(want),
            "{section}: {:?} should start with {want:?}",
            errors[0]
        );
    }
}

#[test]
fn endpoints_come_from_the_file_or_the_flags_and_are_checked() {
    let yaml = "downstream:\n  endpoints:\n    - url: http://a:9090\n      external_labels: {region: eu}\n    - url: http://b:9090\n      kind: query_api\n";
    let c = load_str(yaml, &Overrides::default()).unwrap();
    assert_eq!(c.downstream.endpoints.len(), 2);
    assert_eq!(c.downstream.url, "http://a:9090", "forwarding goes to the first");
    assert!(
        c.query.partial_response,
        "partial responses by default, as Thanos"
    );
    let flags = Overrides {
        endpoints: vec!["http://c:9090".to_owned()],
        replica_labels: vec!["replica".to_owned()],
        partial_response: Some(false),
        ..Overrides::default()
    };
    let c = load_str(yaml, &flags).unwrap();
    assert!(!c.query.partial_response);
    assert_eq!(
        c.downstream.url, "http://c:9090",
        "one --endpoint replaces the list"
    );
    assert_eq!(c.query.replica_labels, ["replica"]);
    // Every problem at once.
    let bad = "downstream:\n  endpoints:\n    - url: http://a:9090\n    - url: http://a:9090\n      external_labels: {0bad: x}\nquery:\n  replica_labels: [__name__]\n";
    let errors = load_str(bad, &Overrides::default()).unwrap_err().0;
    let at: Vec<&str> = errors.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "downstream.endpoints[1].url",
            "downstream.endpoints[1].external_labels",
            "query.replica_labels"
        ],
        "{errors:?}"
    );
}

#[test]
fn endpoint_time_ranges_are_rfc3339_or_durations_before_now() {
    use super::duration::time_bound::TimeBound;
    let config = load_str(
        "downstream:\n  endpoints:\n    - url: http://a:9090\n      min_time: -2w\n      max_time: 2026-01-02T00:00:00Z\n    - url: http://b:9090\n",
        &Overrides::default(),
    )
    .unwrap();
    let a = &config.downstream.endpoints[0];
    assert_eq!(a.min_time, Some(TimeBound::Ago(Duration::from_secs(14 * 86_400))));
    assert_eq!(a.max_time, Some(TimeBound::At(1_767_312_000_000)));
    assert_eq!(
        a.min_time.unwrap().ms(2_000_000_000_000),
        2_000_000_000_000 - 14 * 86_400_000
    );
    assert_eq!(config.downstream.endpoints[1].min_time, None);
    let errors =
        errors_of("downstream:\n  endpoints:\n    - url: http://a:9090\n      min_time: yesterday\n");
    assert!(
        errors[0].contains("neither an RFC 3339 time nor a duration"),
        "{errors:?}"
    );
}

/// Found by fuzzing: a 600-byte `log.level` with field filters took seconds to check.
#[test]
fn log_level_refuses_span_and_field_filters() {
    for level in [
        "x[{a=1}]=debug",
        "sketch_proxy[span]=info",
        &"a".repeat(1025),
        "om*tg 0\u{202a}=x",
    ] {
        let errors = errors_of(&format!("log:\n  level: '{level}'\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("in ASCII, without span or field filters"),
            "{errors:?}"
        );
    }
}

/// Found by fuzzing: promql-parser panicked on bare seconds no `Duration` holds.
#[test]
fn durations_of_bare_seconds_out_of_range_are_errors() {
    for value in ["00000100000000000000000000", "1e30", "inf"] {
        let errors = errors_of(&format!("downstream:\n  timeout: '{value}'\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("out of range"), "{errors:?}");
    }
}

#[test]
fn connection_settings_sit_next_to_every_url_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    let c = load_str(
        &format!(
            "downstream:\n  url: https://querier:10902\n  authorization:\n    credentials_file: {}\n  headers:\n    X-Scope-OrgID: team-a\n  tls_config:\n    insecure_skip_verify: true\n    server_name: querier.internal\n\
             ingest:\n  destinations:\n    - url: https://u:p%40ss@recv:19291/api/v1/receive\n      proxy_url: http://proxy:3128\n",
            token.display()
        ),
        &Overrides::default(),
    )
    .unwrap();
    let auth = c.downstream.http.authorization.as_ref().unwrap();
    assert_eq!(
        (auth.kind.as_str(), auth.credentials_file.as_deref()),
        ("Bearer", Some(token.as_path()))
    );
    assert_eq!(c.downstream.http.headers["X-Scope-OrgID"], "team-a");
    let destination = &c.ingest.destinations[0];
    assert_eq!(destination.url.to_string(), "https://recv:19291/api/v1/receive");
    let basic = destination.http.basic_auth.as_ref().unwrap();
    assert_eq!(
        (basic.username.as_str(), basic.password.as_ref().unwrap().expose()),
        ("u", "p@ss")
    );
    assert!(
        !format!("{c:?}").contains("p@ss"),
        "no secret in the configuration's Debug"
    );

    // (yaml, expected error) — each alone in a file.
    let table = [
        (
            "downstream:\n  url: http://a:1\n  tls_confg: {}\n",
            "downstream.tls_confg: unknown field `tls_confg`",
        ),
        (
            "downstream:\n  url: http://a:1\n  authorization:\n    type: Basic\n    credentials: x\n",
            "type Basic is basic_auth's job",
        ),
        (
            "downstream:\n  url: http://a:1\n  authorization:\n    credentials_file: /nonexistent/token\n",
            "downstream.authorization.credentials_file: cannot read /nonexistent/token",
        ),
        (
            "downstream:\n  url: http://u:secret-pw@a:1\n  basic_auth:\n    username: v\n",
            "downstream.url: the URL carries credentials",
        ),
        (
            "downstream:\n  url: http://a:1\n  headers:\n    Authorization: x\n",
            "Authorization is set by the proxy itself",
        ),
        (
            "downstream:\n  url: http://a:1\n  proxy_url: socks5://p:1\n",
            "downstream.proxy_url: socks5://p:1/ must be an http:// URL",
        ),
        (
            "downstream:\n  url: http://a:1\n  tls_config:\n    cert_file: /etc/hostname\n",
            "cert_file and key_file go together",
        ),
        (
            "downstream:\n  url: http://a:1\n  tls_config:\n    ca_file: /etc/hostname\n",
            "no PEM certificate",
        ),
        (
            "downstream:\n  url: ftp://a:1\n",
            "must be an http:// or https:// URL",
        ),
        (
            "ingest:\n  destinations:\n    - url: http://a:1/w\n      basic_auth:\n        username: ''\n",
            "ingest.destinations[0].basic_auth: username is empty",
        ),
        (
            "downstream:\n  endpoints:\n    - url: http://a:1\n      authorization:\n        credentials: x\n      basic_auth:\n        username: u\n",
            "downstream.endpoints[0]: authorization and basic_auth are both set",
        ),
    ];
    for (yaml, expected) in table {
        let errors = errors_of(yaml);
        assert!(errors.iter().any(|e| e.contains(expected)), "{yaml}: {errors:?}");
        assert!(errors.iter().all(|e| !e.contains("secret-pw")), "{errors:?}");
    }
}
