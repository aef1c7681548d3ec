//! The configuration files of examples/ are the ones a user copies: each passes the
//! checker its program has (`sketch-proxy check-config`, `promtool check config` and
//! `check rules`), every Kubernetes manifest is well-formed YAML naming its kind, every
//! query of the Grafana dashboards parses, and the Dockerfile builds as the README says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use sketch_proxy_testkit::prometheus::require;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubernetes() -> PathBuf {
    root().join("examples/kubernetes")
}

/// The documents of a multi-document YAML file.
fn documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Runs `program args… file`, `file` holding `text`; panics with its output unless it
/// succeeds.
fn passes(program: &Path, args: &[&str], name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    checked(program, args, &file);
}

/// Runs `program args… path`; panics with its output unless it succeeds.
fn checked(program: &Path, args: &[&str], path: &Path) {
    let out = Command::new(program).args(args).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} {}: {}{}",
        program.display(),
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_tier_configurations_pass_their_checkers() {
    let configmap = &documents(&kubernetes().join("configmap.yaml"))[0];
    let data = configmap["data"].as_mapping().expect("a ConfigMap with data");
    let promtool = require("promtool").unwrap();
    let proxy = Path::new(env!("CARGO_BIN_EXE_sketch-proxy"));
    // (file in the ConfigMap, its checker)
    let checked = [
        ("leaf.yml", proxy),
        ("top.yml", proxy),
        ("front.yml", proxy),
        ("prometheus-storage.yml", promtool.as_path()),
    ];
    assert_eq!(
        data.len(),
        checked.len(),
        "every file of the ConfigMap is checked"
    );
    for (name, checker) in checked {
        let text = data[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in the ConfigMap"));
        let args: &[&str] = if checker == proxy {
            &["check-config"]
        } else {
            &["check", "config"]
        };
        passes(checker, args, name, text);
    }
    let prometheus = std::fs::read_to_string(kubernetes().join("prometheus.yml")).unwrap();
    passes(&promtool, &["check", "config"], "prometheus.yml", &prometheus);
}

#[test]
fn the_kubernetes_manifests_are_what_kustomization_lists() {
    let kustomization = &documents(&kubernetes().join("kustomization.yaml"))[0];
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut kinds = Vec::new();
    for resource in &resources {
        for document in documents(&kubernetes().join(resource)) {
            let kind = document["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{resource}: a document without kind"));
            let name = document["metadata"]["name"].as_str().unwrap();
            kinds.push(format!("{kind}/{name}"));
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap/sketch-proxy",
            "Deployment/sketch-proxy-top",
            "Service/sketch-proxy",
            "Service/sketch-proxy-front",
            "Service/sketch-proxy-leaf",
            "StatefulSet/sketch-proxy-front",
            "StatefulSet/sketch-proxy-leaf",
        ]
    );
}

/// [`checked`] on a file of the repository, where it lies (`rule_files` are relative
/// to it).
fn file_passes(program: &Path, args: &[&str], file: &str) {
    checked(program, args, &root().join(file));
}

#[test]
fn the_sample_configuration_compose_and_alert_rules_pass_their_checkers() {
    let proxy = Path::new(env!("CARGO_BIN_EXE_sketch-proxy"));
    let promtool = require("promtool").unwrap();
    for file in ["examples/sketch-proxy.yml", "examples/compose/sketch-proxy.yml"] {
        file_passes(proxy, &["check-config"], file);
    }
    file_passes(
        &promtool,
        &["check", "rules"],
        "examples/grafana/alerts/sketch-proxy.rules.yml",
    );
    // It loads the alert rules too.
    file_passes(&promtool, &["check", "config"], "examples/compose/prometheus.yml");
    file_passes(
        &promtool,
        &["check", "config", "--agent"],
        "examples/compose/prometheus-agent.yml",
    );
    for file in [
        "examples/compose/compose.yaml",
        "examples/grafana/provisioning/datasources/sketch-proxy.yml",
        "examples/grafana/provisioning/dashboards/sketch-proxy.yml",
    ] {
        assert!(!documents(&root().join(file)).is_empty(), "{file}");
    }
}

/// Every panel of `panels`, rows' panels included.
fn all_panels(panels: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    panels
        .iter()
        .flat_map(|p| {
            let mut all = vec![p];
            all.extend(all_panels(p["panels"].as_array().map_or(&[][..], Vec::as_slice)));
            all
        })
        .collect()
}

#[test]
fn every_dashboard_query_parses() {
    for (file, at_least) in [
        ("examples/grafana/dashboards/sketch-functions.json", 8),
        ("examples/grafana/dashboards/sketch-proxy-health.json", 10),
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let panels = dashboard["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no panels"));
        let mut parsed = 0;
        for panel in all_panels(panels) {
            for target in panel["targets"].as_array().map_or(&[][..], Vec::as_slice) {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: a target without expr"));
                // As Grafana fills in its variables.
                let query = expr
                    .replace("$__rate_interval", "5m")
                    .replace("$__interval", "1m")
                    .replace("$metric", "demo_latency_seconds");
                if let Err(e) = sketch_proxy::promql::parse(&query) {
                    panic!("{file}: {query}: {e}");
                }
                parsed += 1;
            }
        }
        assert!(parsed >= at_least, "{file}: {parsed} queries");
    }
}

/// The image builds with the README's two build commands, and nothing else.
#[test]
fn the_dockerfile_builds_as_the_readme_says() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("RUN "))
        .filter(|l| l.contains("cargo") || l.contains("rustup"))
        .collect();
    assert_eq!(
        builds,
        [
            "rustup target add wasm32-wasip2",
            "cargo build --release -p sketch-proxy"
        ]
    );
    for command in builds {
        assert!(readme.contains(command), "README lacks `{command}`");
    }
}
