//! The architecture invariants of docs/ARCHITECTURE.md that a search of the source can
//! check: which modules may name what.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::path::{Path, PathBuf};

/// (what, a string that marks a breach, the paths under `proxy/src` allowed to contain it)
const RULES: &[(&str, &str, &[&str])] = &[
    (
        "only plugin_host depends on wasmtime",
        "wasmtime",
        &["plugin_host/"],
    ),
    (
        "only clock reads the wall clock",
        "SystemTime::now",
        &["clock.rs"],
    ),
    ("the PromQL analysis does no IO", "tokio::", &["!promql/"]),
    ("the PromQL analysis does no IO", "std::fs", &["!promql/"]),
    ("the PromQL analysis does no IO", "std::net", &["!promql/"]),
    ("only main uses anyhow", "anyhow", &["main.rs"]),
    (
        "only outbound builds HTTP clients",
        "Client::builder",
        &["outbound/"],
    ),
    (
        "only outbound and http::door use TLS",
        "rustls",
        &["outbound/", "http/door.rs"],
    ),
    (
        "only telemetry knows OpenTelemetry",
        "opentelemetry",
        &["telemetry.rs"],
    ),
    (
        "only http::rescue makes error responses",
        "StatusCode::INTERNAL_SERVER_ERROR",
        &["http/rescue.rs", "!http/"],
    ),
    (
        "only http::rescue makes error responses",
        "StatusCode::SERVICE_UNAVAILABLE",
        &["http/rescue.rs", "!http/"],
    ),
    (
        "only http::rescue makes error responses",
        "StatusCode::METHOD_NOT_ALLOWED",
        &["http/rescue.rs", "!http/"],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `relative` may contain the marker: it is under an allowed prefix, or (for
/// a `!prefix`) outside the forbidden one.
fn allowed(relative: &str, allowed: &[&str]) -> bool {
    let forbidden: Vec<&str> = allowed.iter().filter_map(|a| a.strip_prefix('!')).collect();
    let permitted: Vec<&str> = allowed.iter().filter(|a| !a.starts_with('!')).copied().collect();
    if permitted.iter().any(|p| relative.starts_with(p)) {
        return true;
    }
    if !forbidden.is_empty() {
        return !forbidden.iter().any(|f| relative.starts_with(f));
    }
    false
}

#[test]
fn the_source_keeps_the_architecture_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut breaches = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        for (line_no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for &(what, marker, paths) in RULES {
                if code.contains(marker) && !allowed(&relative, paths) {
                    breaches.push(format!("{relative}:{}: {what}: {}", line_no + 1, line.trim()));
                }
            }
        }
    }
    assert!(breaches.is_empty(), "invariants broken:\n{}", breaches.join("\n"));
}

#[test]
fn the_check_finds_a_breach() {
    assert!(!allowed("state.rs", &["clock.rs"]));
    assert!(allowed("clock.rs", &["clock.rs"]));
    assert!(!allowed("promql/eval/mod.rs", &["!promql/"]));
    assert!(allowed("http/server.rs", &["!promql/"]));
    assert!(!allowed("http/ops.rs", &["http/rescue.rs", "!http/"]));
    assert!(allowed("ingest/mod.rs", &["http/rescue.rs", "!http/"]));
}
