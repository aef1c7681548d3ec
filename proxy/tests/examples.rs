//! The configuration files of examples/ are the ones a user copies: each passes the
//! checker its program has (`sketch-proxy check-config`, `promtool check config`), and
//! every Kubernetes manifest is well-formed YAML naming its kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use sketch_proxy_testkit::prometheus::require;

fn kubernetes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes")
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
    let out = Command::new(program).args(args).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} {name}: {}{}",
        program.display(),
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
