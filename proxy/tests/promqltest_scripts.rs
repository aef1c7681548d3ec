//! Prometheus 2.42's PromQL test scripts (`tests/data/promqltest-v2.42.0`, Apache-2.0)
//! parse into the commands the conformance runner replays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod promqltest;

use promqltest::{Command, EvalKind, Expected};

#[test]
fn every_upstream_script_parses_into_its_566_cases() {
    let files = promqltest::script_files();
    assert_eq!(files.len(), 11);
    let (mut loads, mut clears, mut samples) = (0, 0, 0);
    let mut evals = [0; 3];
    for file in &files {
        let script = std::fs::read_to_string(file).unwrap();
        let commands = promqltest::parse(&script).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for command in commands {
            match command {
                Command::Load { series, step_ms } => {
                    assert!(step_ms > 0);
                    loads += 1;
                    samples += series.iter().map(|s| s.1.iter().flatten().count()).sum::<usize>();
                }
                Command::Clear => clears += 1,
                Command::Eval {
                    kind,
                    query,
                    expected,
                    ..
                } => {
                    assert!(!query.is_empty());
                    if kind == EvalKind::Fail {
                        assert_eq!(expected, Expected::Vector(Vec::new()), "{query}");
                    }
                    evals[kind as usize] += 1;
                }
            }
        }
    }
    assert_eq!((loads, clears), (75, 57));
    assert_eq!(evals, [546, 7, 13], "instant, fail, ordered");
    assert!(samples > 10_000, "{samples} samples loaded in all");
}
