use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;

use super::Cli;
use crate::config::{self, LogFormat};

fn config_of(args: &[&str]) -> config::Config {
    let cli = Cli::try_parse_from(std::iter::once("sketch-proxy").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    config::load_str("", &cli.overrides()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn new_and_old_flag_names_set_the_same_settings() {
    // (flags, what they must have set)
    type Check = fn(&config::Config) -> bool;
    let table: &[(&[&str], Check)] = &[
        (&["--web.listen-address=0.0.0.0:9999"], |c| {
            c.listen.to_string() == "0.0.0.0:9999"
        }),
        (&["--listen=0.0.0.0:9999"], |c| {
            c.listen.to_string() == "0.0.0.0:9999"
        }),
        (&["--listen", "127.0.0.1:1"], |c| {
            c.listen.to_string() == "127.0.0.1:1"
        }),
        (&["--upstream=https://q:10902"], |c| {
            c.downstream.url == "https://q:10902"
        }),
        (&["--query.timeout=30s"], |c| {
            c.query.timeout == Duration::from_secs(30)
        }),
        (&["--query.max-concurrency=3"], |c| {
            c.limits.max_concurrent_queries == 3
        }),
        (&["--query.lookback-delta=1m"], |c| {
            c.query.lookback_delta == Duration::from_secs(60)
        }),
        (&["--log.format=json"], |c| c.log.format == LogFormat::Json),
        (&["--log.format=logfmt"], |c| c.log.format == LogFormat::Logfmt),
        (&["--log.level=debug"], |c| c.log.level == "debug"),
        (&["--query.partial-response"], |c| c.query.partial_response),
        (&["--query.partial-response=false"], |c| !c.query.partial_response),
        (&["--query.partial-response", "false"], |c| {
            !c.query.partial_response
        }),
        (&["--no-query.partial-response"], |c| !c.query.partial_response),
        (&[], |c| c.cache.enabled),
        (&["--no-query.cache"], |c| !c.cache.enabled),
        (&["--query.cache=false"], |c| !c.cache.enabled),
        (&["--query.cache"], |c| c.cache.enabled),
        (&["--query.replica-label=replica,rule_replica"], |c| {
            c.query.replica_labels == ["replica", "rule_replica"]
        }),
        (&["--query.replica-label=a", "--query.replica-label", "b"], |c| {
            c.query.replica_labels == ["a", "b"]
        }),
        (&["--web.enable-lifecycle"], |c| c.web.enable_lifecycle),
        (&[], |c| !c.web.enable_lifecycle && !c.web.enable_admin_api),
        (&["--web.enable-admin-api"], |c| c.web.enable_admin_api),
        (&["--web.route-prefix=/prom"], |c| c.web.route_prefix == "/prom"),
        (&["--query.mode=local"], |c| {
            c.query.mode == config::QueryMode::Local
        }),
        (&["--web.enable-remote-write-receiver"], |c| c.ingest.enabled),
        (&["--remote-write.url=http://a:1/w,http://b:1/w"], |c| {
            c.ingest.destinations.len() == 2
        }),
        (&["--endpoint=http://a:1", "--endpoint=http://b:1"], |c| {
            c.downstream.endpoints.len() == 2
        }),
        (&["--sketch.rule=quantile_over_time(0.5, m[1h])"], |c| {
            c.sketches.queries.len() == 1
        }),
    ];
    for (args, check) in table {
        assert!(check(&config_of(args)), "{args:?}");
    }
}

#[test]
fn config_file_flag_has_both_names() {
    for flag in ["--config.file", "--config"] {
        let cli = Cli::try_parse_from(["sketch-proxy", flag, "/etc/x.yml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/etc/x.yml")), "{flag}");
    }
}

#[test]
fn bad_flag_values_are_reported_with_the_flag() {
    let cli = Cli::try_parse_from(["sketch-proxy", "--query.timeout=soon", "--log.format=xml"]).unwrap();
    let errors = config::load_str("", &cli.overrides()).unwrap_err().to_string();
    assert!(
        errors.contains("--query.timeout: \"soon\" is not a duration"),
        "{errors}"
    );
    assert!(
        errors.contains("--log.format: \"xml\" is neither logfmt nor json"),
        "{errors}"
    );
    assert!(
        Cli::try_parse_from([
            "sketch-proxy",
            "--query.partial-response",
            "--no-query.partial-response"
        ])
        .is_err(),
        "contradicting flags"
    );
}
