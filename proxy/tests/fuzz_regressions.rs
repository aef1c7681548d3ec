//! Every input the fuzz targets (and issue reports) found crashing the proxy, replayed
//! through the same entry points: `tests/data/fuzz/<target>/<case>`. Each must return.
//! New crashes found by `cargo fuzz` are added there (docs/fuzzing.md).

#![allow(clippy::unwrap_used, reason = "test")]

use sketch_proxy::fuzzing::{TARGETS, run};

#[test]
fn every_recorded_crash_input_returns() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut replayed = 0;
    for target in TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut cases: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        cases.sort();
        for case in cases {
            let data = std::fs::read(&case).unwrap();
            // On the proxy's thread stacks, as the inputs would arrive.
            std::thread::Builder::new()
                .stack_size(sketch_proxy::THREAD_STACK_BYTES)
                .spawn(move || run(target, &data))
                .unwrap()
                .join()
                .unwrap_or_else(|_| panic!("{} panicked", case.display()));
            replayed += 1;
        }
    }
    assert!(
        replayed >= 7,
        "only {replayed} recorded inputs found under {}",
        root.display()
    );
}
