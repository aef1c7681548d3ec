//! The plugin host against real components: hostile guests are contained, custom plugins
//! are validated on load, and sketches answer through the wasm boundary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod guest_support;

use guest_support::{config, guest, guest_path, load, plugin_dir, sketch};
use sketch_proxy::plugin_host::{GuestError, LoadFailure, PluginError, RangeRequest, Source, TrapKind};

/// Feeds `n` samples at 1 s spacing with values 1..=n.
fn feed(s: &sketch_proxy::plugin_host::Sketch, n: i64) {
    let ts: Vec<i64> = (0..n).map(|i| i * 1000).collect();
    let vs: Vec<f64> = (1..=n).map(|i| i as f64).collect();
    s.insert(&ts, &vs).unwrap();
}

/// A healthy plugin still answers (the median of 1..=101 is 51).
fn assert_quantile_healthy(set: &sketch_proxy::plugin_host::PluginSet) {
    let quantile = set.for_function("quantile_over_time").unwrap();
    let s = sketch(quantile);
    feed(&s, 101);
    let answer = s
        .query("quantile_over_time", &[0.5], 0, 100_000)
        .unwrap()
        .unwrap();
    assert_eq!((answer.value, answer.bound, answer.samples), (51.0, 0.0, 101));
}

#[test]
fn hostile_guests_are_quarantined_and_the_host_keeps_serving() {
    // (mode, use a range query, expected trap kind, text the error detail must contain)
    let cases = [
        ("spin", false, TrapKind::Deadline, "interrupt"),
        ("bomb", false, TrapKind::MemoryLimit, "limit"),
        ("panic", false, TrapKind::Panic, "hostile guest panics on purpose"),
        ("sleep", false, TrapKind::Other, "plugins may not sleep or wait"),
        ("bad-bound", false, TrapKind::BadOutput, "declared bound"),
        (
            "short",
            true,
            TrapKind::BadOutput,
            "answers for 10 evaluation times",
        ),
    ];
    for (mode, range, kind, detail) in cases {
        let dir = plugin_dir(&["hostile"]);
        let (set, recorder) = load(Some(dir.path().to_owned()));
        let hostile = set.by_name("hostile").unwrap();
        let s = hostile.create(7, &config(3_600_000, &[("mode", mode)])).unwrap();
        feed(&s, 10);
        let err = if range {
            let r = RangeRequest {
                start_ms: 0,
                end_ms: 9_000,
                step_ms: 1_000,
                window_ms: 5_000,
            };
            s.query_range("hostile_over_time", &[], r).unwrap_err()
        } else {
            s.query("hostile_over_time", &[], 0, 10_000).unwrap_err()
        };
        match &err {
            PluginError::Trapped {
                plugin,
                kind: got,
                detail: text,
            } => {
                assert_eq!((plugin.as_str(), *got), ("hostile", kind), "{mode}: {err}");
                assert!(
                    text.to_lowercase().contains(detail),
                    "{mode}: {text:?} lacks {detail:?}"
                );
            }
            other => panic!("{mode}: expected a trap, got {other:?}"),
        }
        assert!(hostile.is_quarantined(), "{mode}");
        assert_eq!(*recorder.0.lock(), vec![("hostile".to_owned(), kind)], "{mode}");
        // Every sketch of the plugin is gone, and new ones are refused.
        assert!(matches!(
            s.query("hostile_over_time", &[], 0, 1),
            Err(PluginError::Quarantined { .. })
        ));
        let again = hostile.create(8, &config(1000, &[("mode", "ok")]));
        assert!(matches!(again, Err(PluginError::Quarantined { .. })), "{mode}");
        assert_quantile_healthy(&set);
    }
}

#[test]
fn guest_errors_are_passed_on_without_quarantine() {
    let dir = plugin_dir(&["hostile"]);
    let (set, recorder) = load(Some(dir.path().to_owned()));
    let hostile = set.by_name("hostile").unwrap();
    let s = hostile.create(1, &config(1000, &[("mode", "refuse")])).unwrap();
    let err = s.query("hostile_over_time", &[], 0, 1).unwrap_err();
    assert_eq!(
        err,
        PluginError::Guest {
            plugin: "hostile".into(),
            error: GuestError::Other("refused on purpose".into())
        }
    );
    assert!(!hostile.is_quarantined());
    assert!(recorder.0.lock().is_empty());

    let quantile = set.for_function("quantile_over_time").unwrap();
    let bad = quantile
        .create(1, &config(1000, &[("alpha", "0.1")]))
        .unwrap_err();
    assert!(
        matches!(&bad, PluginError::Guest { error: GuestError::InvalidConfig(m), .. } if m.contains("alpha"))
    );
    let s = sketch(quantile);
    feed(&s, 5);
    let late = s.insert(&[1000], &[1.0]).unwrap_err();
    assert!(
        matches!(
            late,
            PluginError::Guest {
                error: GuestError::OutOfOrder(1000),
                ..
            }
        ),
        "{late:?}"
    );
    let wrong_args = s.query("quantile_over_time", &[], 0, 1).unwrap_err();
    assert!(matches!(
        wrong_args,
        PluginError::Guest {
            error: GuestError::InvalidArgument(_),
            ..
        }
    ));
    let not_served = s.query("l2_over_time", &[], 0, 1).unwrap_err();
    assert!(matches!(
        not_served,
        PluginError::Guest {
            error: GuestError::InvalidArgument(_),
            ..
        }
    ));
    assert!(!quantile.is_quarantined());
}

#[test]
fn custom_plugins_are_validated_on_load() {
    let dir = plugin_dir(&["spread", "wrong-version", "impostor"]);
    let bytes = guest("spread");
    std::fs::write(dir.path().join("corrupt.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.path().join("text.wasm"), b"not wasm at all").unwrap();
    std::fs::copy(guest_path("spread"), dir.path().join("spread2.wasm")).unwrap();
    std::fs::write(dir.path().join("ignored.txt"), b"not a plugin").unwrap();
    let (set, _) = load(Some(dir.path().to_owned()));

    let names: Vec<&str> = set.plugins().iter().map(|p| p.info().name.as_str()).collect();
    assert_eq!(names, ["quantile", "frequency", "stats", "spread"]);
    assert_eq!(
        set.by_name("spread").unwrap().source(),
        &Source::File(dir.path().join("spread.wasm"))
    );
    assert_eq!(
        set.for_function("quantile_over_time").unwrap().source(),
        &Source::BuiltIn
    );

    // (file, check on the reason) in file-name order
    let rejected: Vec<(String, &LoadFailure)> = set
        .rejected()
        .iter()
        .map(|e| match &e.origin {
            Source::File(p) => (p.file_name().unwrap().to_string_lossy().into_owned(), &e.reason),
            Source::BuiltIn => panic!("a built-in was rejected: {e}"),
        })
        .collect();
    let files: Vec<&str> = rejected.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        [
            "corrupt.wasm",
            "impostor.wasm",
            "spread2.wasm",
            "text.wasm",
            "wrong-version.wasm"
        ]
    );
    assert!(matches!(rejected[0].1, LoadFailure::NotAComponent(_)));
    assert!(
        matches!(rejected[1].1, LoadFailure::Clash { function, owner, owner_source: Source::BuiltIn }
            if function == "quantile_over_time" && owner == "quantile")
    );
    assert!(matches!(rejected[2].1, LoadFailure::DuplicateName { name, .. } if name == "spread"));
    assert!(matches!(rejected[3].1, LoadFailure::NotAComponent(_)));
    assert!(
        matches!(rejected[4].1, LoadFailure::Contract(m) if m.contains("@9.0.0") && m.contains("@0.1.0"))
    );
    for e in set.rejected() {
        assert!(
            e.to_string().starts_with(&dir.path().display().to_string()),
            "{e} names its file"
        );
    }

    // The custom plugin that loaded works: spread of 1..=3000 is 2999, also from the tree.
    let s = sketch(set.by_name("spread").unwrap());
    feed(&s, 3000);
    for (t0, t1, want) in [
        (0, 2_999_000, 2999.0),
        (500, 9_500, 8.0),
        (1_000_000, 2_000_000, 1000.0),
    ] {
        let got = s.query("spread_over_time", &[], t0, t1).unwrap().unwrap();
        assert_eq!((got.value, got.bound), (want, 0.0), "[{t0}, {t1}]");
    }
}

#[test]
fn retention_forgets_old_samples_and_coverage_says_so() {
    let (set, _) = load(None);
    let quantile = set.for_function("quantile_over_time").unwrap();
    let s = quantile.create(3, &config(600_000, &[])).unwrap();
    assert_eq!(s.coverage().unwrap(), None);
    feed(&s, 5000);
    let (oldest, newest) = s.coverage().unwrap().unwrap();
    assert_eq!(newest, 4_999_000);
    assert_eq!(oldest, newest - 600_000);
    assert!(
        s.query("quantile_over_time", &[0.5], 0, oldest - 1)
            .unwrap()
            .is_none()
    );
    // Samples older than the retention are not used even before their block is dropped.
    let all = s.query("quantile_over_time", &[0.5], 0, newest).unwrap().unwrap();
    assert_eq!(all.samples, 601);
    let short = quantile.create(4, &config(60_000, &[])).unwrap();
    feed(&short, 500);
    assert_eq!(short.coverage().unwrap(), Some((439_000, 499_000)));
    assert_eq!(
        short
            .query("quantile_over_time", &[0.5], 0, 499_000)
            .unwrap()
            .unwrap()
            .samples,
        61
    );
    assert!(s.memory_bytes().unwrap() > 0);
}

#[test]
fn extreme_range_requests_are_refused_not_trapped() {
    let (set, _) = load(None);
    let quantile = set.for_function("quantile_over_time").unwrap();
    let s = sketch(quantile);
    feed(&s, 100);
    // (start, end, step, window)
    let cases = [
        (i64::MIN, i64::MAX, 1, 1000),
        (0, 10_000_000_000, 1, 1000),
        (0, 1000, 0, 1000),
        (0, 1000, 1, -1),
        (5000, 1000, 1, 1000),
    ];
    for (start_ms, end_ms, step_ms, window_ms) in cases {
        let r = RangeRequest {
            start_ms,
            end_ms,
            step_ms,
            window_ms,
        };
        let err = s.query_range("quantile_over_time", &[0.5], r).unwrap_err();
        assert!(
            matches!(
                err,
                PluginError::Guest {
                    error: GuestError::InvalidArgument(_),
                    ..
                }
            ),
            "{r:?}: {err:?}"
        );
    }
    let edge = s
        .query("quantile_over_time", &[0.5], i64::MIN, i64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!((edge.value, edge.samples), (50.5, 100));
    assert!(!quantile.is_quarantined());
}
