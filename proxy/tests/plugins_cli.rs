//! Plugins from the operator's side: `sketch-proxy plugins list|check` on the real
//! binary, and custom plugins swapped by `/-/reload`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod guest_support;
mod support;

use std::process::Command;

use guest_support::{guest, guest_path};
use sketch_proxy_testkit::net::free_port;
use support::{TestProxy, send};

/// Runs the binary; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn plugins_list_shows_the_built_ins_and_the_custom_ones() {
    let (ok, stdout, stderr) = run(&["plugins", "list"]);
    assert!(ok, "{stderr}");
    for want in [
        "quantile_over_time(phi, v[range])",
        "distinct_over_time(v[range])",
        "entropy_over_time(v[range])",
        "l2_over_time(v[range])",
        "1% (exact below 1000 samples)",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    assert_eq!(stdout.matches("built-in").count(), 18, "{stdout}");
    for want in [
        "avg_over_time(v[range])            1e-7% (exact below 256 samples)",
        "rate(v[range])                     1e-7% (exact below 4096 samples)",
        "changes(v[range])                  exact",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest_path("spread"), dir.path().join("spread.wasm")).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm garbage").unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, format!("plugins:\n  dir: {}\n", dir.path().display())).unwrap();
    let (ok, stdout, stderr) = run(&["--config", config.to_str().unwrap(), "plugins", "list"]);
    assert!(!ok, "a rejected file makes `plugins list` fail");
    assert!(
        stdout.contains("spread_over_time(v[range])") && stdout.contains("exact"),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken.wasm: not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn plugins_check_accepts_the_example_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    let bytes = guest("spread");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.path().join("missing.wasm");
    let (spread, wrong, impostor) = (
        guest_path("spread"),
        guest_path("wrong-version"),
        guest_path("impostor"),
    );
    // (file, accepted, text on stdout when accepted or stderr when rejected)
    let cases = [
        (&spread, true, "spread_over_time(v[range])"),
        (&corrupt, false, "corrupt.wasm: not a valid WebAssembly component"),
        (&missing, false, "missing.wasm: cannot read"),
        (
            &wrong,
            false,
            "exports sketch-proxy:sketch/plugin@9.0.0, but this proxy speaks sketch-proxy:sketch/plugin@0.1.0",
        ),
        (
            &impostor,
            false,
            "function quantile_over_time is already served by plugin quantile (built-in)",
        ),
    ];
    for (file, accepted, text) in cases {
        let (ok, stdout, stderr) = run(&["plugins", "check", file.to_str().unwrap()]);
        assert_eq!(ok, accepted, "{}: {stdout}{stderr}", file.display());
        let shown = if accepted { &stdout } else { &stderr };
        assert!(
            shown.contains(text),
            "{}: expected {text:?} in {shown:?}",
            file.display()
        );
    }
}

#[test]
fn reload_swaps_custom_plugins_and_reports_bad_files() {
    let plugins = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    let proxy = TestProxy::start(&format!("plugins:\n  dir: {}\n", plugins.path().display()), &dead);
    let metrics = || send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(
        metrics().contains("sketch_proxy_plugins_loaded 3\n"),
        "{}",
        metrics()
    );

    std::fs::copy(guest_path("spread"), plugins.path().join("spread.wasm")).unwrap();
    assert_eq!(send(&proxy.url(), "POST", "/-/reload", "", "").status, 200);
    let text = metrics();
    assert!(
        text.contains("sketch_proxy_plugins_loaded 4\n")
            && text.contains("sketch_proxy_plugins_rejected 0\n"),
        "{text}"
    );

    std::fs::write(plugins.path().join("zz-corrupt.wasm"), b"not a component").unwrap();
    std::fs::remove_file(plugins.path().join("spread.wasm")).unwrap();
    std::fs::copy(guest_path("wrong-version"), plugins.path().join("future.wasm")).unwrap();
    assert_eq!(send(&proxy.url(), "POST", "/-/reload", "", "").status, 200);
    let text = metrics();
    assert!(
        text.contains("sketch_proxy_plugins_loaded 3\n")
            && text.contains("sketch_proxy_plugins_rejected 2\n"),
        "{text}"
    );
}
