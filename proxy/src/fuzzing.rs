//! Entry points for the fuzz targets (`proxy/fuzz`, run with `cargo fuzz`) and for the
//! regression tests that replay what they found (`tests/fuzz_regressions.rs`). Each
//! takes untrusted bytes the way the proxy receives them and must return, never panic
//! or abort, whatever they hold. Not part of the proxy's API.

use crate::api::{self, Endpoint};
use crate::promql::{self, Grammar};

/// The inputs the fuzz targets feed, by target name.
pub const TARGETS: [&str; 6] = [
    "remote_write",
    "form_checks",
    "promql",
    "remote_read",
    "config",
    "compact_answer",
];

/// Runs target `name` on `data`; unknown names do nothing.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "remote_write" => remote_write(data),
        "form_checks" => form_checks(data),
        "promql" => promql(data),
        "remote_read" => remote_read(data),
        "config" => config(data),
        "compact_answer" => compact_answer(data),
        _ => {}
    }
}

/// A remote-write body: snappy, protobuf, then the checks Prometheus makes of series.
pub fn remote_write(data: &[u8]) {
    if let Ok(mut request) = crate::ingest::decode_body(data, 16 << 20) {
        let _ = crate::ingest::normalize_request(&mut request, i64::MAX);
    }
}

/// A request's URL query and form body (split at the first NUL byte), decoded as Go
/// does and checked as Prometheus checks it, for every endpoint.
pub fn form_checks(data: &[u8]) {
    let (query, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let query = String::from_utf8_lossy(query);
    let form = api::params::Form::new(Some(&query), body);
    let grammar = Grammar::default();
    for endpoint in Endpoint::ROUTED {
        let _ = api::check(endpoint, &form, Some("job"), &grammar);
    }
    let _ = api::thanos::Thanos::from_form(&form);
}

/// A PromQL query: shape limits, parsing, planning what raw data it needs, which
/// calls sketches could answer, and printing it back.
pub fn promql(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = Grammar::default().parse(query) else {
        return;
    };
    let range = promql::eval::Range {
        start_ms: 0,
        end_ms: 3_600_000,
        step_ms: 60_000,
    };
    let _ = promql::eval::plan::needs(&expr, &range, 300_000);
    let served = |f: &str| promql::SKETCH_FUNCTIONS.contains(&f);
    let _ = promql::sketch_plan::sketch_calls(&expr, &served, promql::sketch_plan::MIN_WINDOW_MS);
    let _ = expr.prettify();
}

/// A streamed remote-read answer: frames of raw TSDB chunks.
pub fn remote_read(data: &[u8]) {
    let _ = crate::source::decode_streamed(data, &[(i64::MIN, i64::MAX), (0, 1_000_000)]);
}

/// A configuration file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::load_str(text, &crate::config::Overrides::default());
}

/// A leaf proxy's compact answer (`api::wire::compact`), as a top proxy decodes it.
pub fn compact_answer(data: &[u8]) {
    let _ = api::wire::compact::decode(data, 64 << 20);
}
