//! Sketches across restarts (issue 17), through the binary: snapshotted on SIGTERM and
//! periodically, restored at start, and only the span after the snapshot read back
//! from downstream; a damaged or foreign snapshot record is replaced by a backfill.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sketch_proxy::sketches::durable::{self, Next, Reader, Writer};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Answer, Binary, send, start_binary};

const METRIC: &str = "restart_values";
const SERIES: usize = 3;
const STEP_MS: i64 = 10_000;
/// Samples written through the first proxy.
const BEFORE: usize = 240;
/// Samples written straight to Prometheus while the proxy is down (the gap).
const GAP: usize = 60;
/// Samples written through the restarted proxy.
const AFTER: usize = 60;
const TOTAL: usize = BEFORE + GAP + AFTER;
/// Prometheus' count of the remote reads it answered.
const REMOTE_READS: &str = "prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/read\"}";

/// Every value different, so `distinct_over_time` counts samples: a sample lost or
/// counted twice at a seam changes the answer.
fn data(start_ms: i64) -> Stored {
    (0..SERIES)
        .map(|i| {
            let labels = vec![
                ("__name__".to_owned(), METRIC.to_owned()),
                ("instance".to_owned(), format!("host-{i}")),
            ];
            let points = (0..TOTAL)
                .map(|j| (start_ms + j as i64 * STEP_MS, (i * 100_000 + j) as f64))
                .collect();
            (labels, points)
        })
        .collect()
}

fn config(dir: &Path, snapshot_interval: &str) -> std::path::PathBuf {
    let file = dir.join("sketch-proxy.yml");
    std::fs::write(
        &file,
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  snapshot_interval: {snapshot_interval}\n  rules:\n    - match: '{METRIC}'\n      functions: [distinct_over_time, quantile_over_time]\n      retain: 2h\n",
            dir.join("queue").display()
        ),
    )
    .unwrap();
    file
}

fn start(file: &Path, prometheus: &Prometheus) -> (Binary, String) {
    start_binary(&[
        format!("--config={}", file.display()),
        format!("--upstream={}", prometheus.url()),
    ])
}

fn status(url: &str) -> Value {
    let answer = send(url, "GET", "/api/v1/status/sketches", "", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["data"].clone()
}

/// A counter or gauge of `/metrics`, 0 when absent.
fn metric(url: &str, name: &str) -> f64 {
    let body = send(url, "GET", "/metrics", "", "").body;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_covered_to(url: &str, last_ms: i64) {
    wait_until(
        Duration::from_secs(60),
        "the sketches to reach the last sample",
        || status(url)["rules"][0]["coverage"]["to"].as_f64() == Some(last_ms as f64 / 1000.0),
    )
    .unwrap();
}

/// Waits until Prometheus holds exactly the first `samples` samples of each series.
fn wait_stored(prometheus: &Prometheus, start_ms: i64, samples: usize) {
    let last_ms = start_ms + (samples - 1) as i64 * STEP_MS;
    wait_until(Duration::from_secs(60), "Prometheus to hold the samples", || {
        write::samples(&write::stored(&prometheus.url(), METRIC, last_ms, "3h")) == SERIES * samples
    })
    .unwrap();
}

fn wait_backfill_done(url: &str) {
    wait_until(Duration::from_secs(60), "the backfill to end", || {
        status(url)["rules"][0]["backfill"]["state"] == "done"
    })
    .unwrap();
}

/// SIGTERM, and waits for the process to end.
fn terminate(mut proxy: Binary) {
    let pid = proxy.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = proxy.0.wait().unwrap();
    assert!(exit.success(), "the proxy exits cleanly on SIGTERM: {exit:?}");
}

fn range(url: &str, query: &str, from_ms: i64, to_ms: i64, extra: &str) -> Answer {
    support::range_query(url, query, (from_ms, to_ms, STEP_MS), extra)
}

/// Every 10-minute window to the last sample is answered from sketches and equals
/// the exact answer: windows of 61 samples are answered exactly by the plugin, so a
/// sample missing or counted twice at either seam shows.
fn check_every_window(url: &str, start_ms: i64) {
    let last_ms = start_ms + (TOTAL - 1) as i64 * STEP_MS;
    wait_covered_to(url, last_ms);
    let query = format!("distinct_over_time({METRIC}[10m])");
    let from_ms = start_ms + 600_000;
    let sketched = range(url, &query, from_ms, last_ms, "");
    assert_eq!(sketched.status, 200, "{}", sketched.body);
    assert_eq!(sketched.path.as_deref(), Some("sketch"));
    let exact = range(url, &query, from_ms, last_ms, "&sketch=off");
    assert_eq!(exact.path.as_deref(), Some("engine"));
    let (got, want) = (sketched.range_values(), exact.range_values());
    assert_eq!(got.len(), SERIES * (TOTAL - 60));
    assert_eq!(got, want);
}

/// The first proxy sketches [`BEFORE`] samples per series and stops (`stop`); the gap
/// goes straight to Prometheus; the second proxy restores, reads the gap back, and
/// takes the rest live. Returns the second proxy's URL, the process, and the data start.
fn restart_run(
    snapshot_interval: &str,
    stop: impl FnOnce(Binary, &str),
) -> (Prometheus, Binary, String, i64, tempfile::TempDir) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let start_ms = (write::now_ms() - 70 * 60_000) / STEP_MS * STEP_MS;
    let all = data(start_ms);
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), snapshot_interval);
    let (proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    for from in (0..BEFORE).step_by(60) {
        assert_eq!(write::post(&url, &write::part(&all, from, from + 60)).status, 204);
    }
    wait_covered_to(&url, start_ms + (BEFORE - 1) as i64 * STEP_MS);
    // Delivered before the stop, so the second proxy's read finds them in one pass.
    wait_stored(&prometheus, start_ms, BEFORE);
    stop(proxy, &url);
    assert!(dir.path().join("sketches").join(durable::FILE_NAME).is_file());
    assert_eq!(
        write::post(&prometheus.url(), &write::part(&all, BEFORE, BEFORE + GAP)).status,
        204
    );
    wait_stored(&prometheus, start_ms, BEFORE + GAP);

    let reads_before = metric(&prometheus.url(), REMOTE_READS);
    let (proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    assert_eq!(
        metric(&prometheus.url(), REMOTE_READS) - reads_before,
        1.0,
        "downstream served one remote read: the gap, in one slice"
    );
    for from in (BEFORE + GAP..TOTAL).step_by(30) {
        assert_eq!(write::post(&url, &write::part(&all, from, from + 30)).status, 204);
    }
    (prometheus, proxy, url, start_ms, dir)
}

#[test]
fn after_sigterm_the_sketches_are_restored_and_only_the_gap_is_read_back() {
    let (_prometheus, _proxy, url, start_ms, _dir) = restart_run("1h", |proxy, _| terminate(proxy));
    let restore = &status(&url)["restore"];
    assert_eq!(restore["state"], "done");
    // A quantile and a frequency sketch per series.
    assert_eq!(restore["restored"], 2 * SERIES, "{restore}");
    assert_eq!(
        metric(&url, "sketch_proxy_sketch_restored_total"),
        (2 * SERIES) as f64
    );
    // The read starts at each sketch's newest sample (the last of BEFORE), held
    // already and dropped: the gap plus that one, not the whole retention.
    assert_eq!(
        metric(&url, "sketch_proxy_sketch_backfill_samples_total"),
        (SERIES * (GAP + 1)) as f64
    );
    check_every_window(&url, start_ms);
}

#[test]
fn after_sigkill_the_last_periodic_snapshot_is_restored() {
    let (_prometheus, _proxy, url, start_ms, _dir) = restart_run("1s", |proxy, url| {
        let written = write::now_ms() as f64 / 1000.0;
        wait_until(
            Duration::from_secs(30),
            "a snapshot of the samples written",
            || metric(url, "sketch_proxy_sketch_snapshot_time_seconds") > written,
        )
        .unwrap();
        drop(proxy); // SIGKILL
    });
    assert_eq!(status(&url)["restore"]["restored"], 2 * SERIES);
    let read_back = metric(&url, "sketch_proxy_sketch_backfill_samples_total");
    assert!(
        read_back <= (SERIES * (GAP + 1)) as f64,
        "read back {read_back} samples: more than the gap"
    );
    check_every_window(&url, start_ms);
}

#[test]
fn damaged_and_foreign_snapshot_records_are_replaced_by_a_backfill() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let start_ms = (write::now_ms() - 70 * 60_000) / STEP_MS * STEP_MS;
    let all = data(start_ms);
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "1h");
    let (proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    assert_eq!(write::post(&url, &write::part(&all, 0, TOTAL)).status, 204);
    wait_covered_to(&url, start_ms + (TOTAL - 1) as i64 * STEP_MS);
    wait_stored(&prometheus, start_ms, TOTAL);
    terminate(proxy);

    // One sketch claims another plugin version; the last record's bytes are damaged.
    let data_dir = dir.path().join("sketches");
    let mut reader = Reader::open(&data_dir).unwrap().unwrap();
    let mut records = Vec::new();
    while let Next::Record(r) = reader.next_record() {
        records.push(r);
    }
    drop(reader);
    assert_eq!(
        records.len(),
        SERIES * 2,
        "a quantile and a frequency sketch per series"
    );
    records[0].version = "0.0.0-elsewhere".into();
    let mut writer = Writer::create(&data_dir).unwrap();
    for r in &records {
        writer.add(r).unwrap();
    }
    writer.finish().unwrap();
    let path = data_dir.join(durable::FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let reads_before = metric(&prometheus.url(), REMOTE_READS);
    let (_proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    assert!(
        metric(&prometheus.url(), REMOTE_READS) - reads_before >= 2.0,
        "the 2 h retention is read in 1 h slices"
    );
    let restore = &status(&url)["restore"];
    assert_eq!(
        (&restore["restored"], &restore["foreign"], &restore["damaged"]),
        (&Value::from(SERIES * 2 - 2), &Value::from(1), &Value::from(1)),
        "{restore}"
    );
    for result in ["foreign", "damaged"] {
        assert_eq!(
            metric(
                &url,
                &format!("sketch_proxy_sketch_restored_total{{result=\"{result}\"}}")
            ),
            1.0
        );
    }
    assert_eq!(
        metric(&url, "sketch_proxy_sketch_backfill_samples_total"),
        (SERIES * TOTAL) as f64,
        "the whole retention is read back"
    );
    check_every_window(&url, start_ms);
}

/// Every record of the snapshot in `data_dir` reads back whole.
fn intact_records(data_dir: &Path) -> usize {
    let mut reader = Reader::open(data_dir).unwrap().expect("a snapshot");
    let mut records = 0;
    loop {
        match reader.next_record() {
            Next::Record(_) => records += 1,
            Next::End(None) => return records,
            other => panic!("the snapshot is damaged: {other:?}"),
        }
    }
}

/// A full disk: the snapshot's temporary file is made `/dev/full`, where every write
/// fails with ENOSPC. Snapshots fail, counted as errors; the last good snapshot stays
/// whole; the proxy keeps ingesting and answering; once there is room the next
/// snapshot succeeds, and a restart after SIGKILL restores it.
#[test]
fn a_full_disk_fails_snapshots_without_harm_and_they_resume_with_room() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let start_ms = (write::now_ms() - 70 * 60_000) / STEP_MS * STEP_MS;
    let all = data(start_ms);
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "1s");
    let (proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    assert_eq!(write::post(&url, &write::part(&all, 0, BEFORE)).status, 204);
    wait_covered_to(&url, start_ms + (BEFORE - 1) as i64 * STEP_MS);
    let ok = "sketch_proxy_sketch_snapshots_total{result=\"ok\"}";
    let failed = "sketch_proxy_sketch_snapshots_total{result=\"error\"}";
    wait_until(Duration::from_secs(30), "a snapshot", || metric(&url, ok) >= 1.0).unwrap();

    let data_dir = dir.path().join("sketches");
    let temporary = data_dir.join(format!("{}.tmp", durable::FILE_NAME));
    // A snapshot under way holds the temporary name for a moment: try until it is free.
    wait_until(Duration::from_secs(30), "/dev/full in place", || {
        std::os::unix::fs::symlink("/dev/full", &temporary).is_ok()
    })
    .unwrap();
    wait_until(Duration::from_secs(30), "a failed snapshot", || {
        metric(&url, failed) >= 1.0
    })
    .unwrap();
    assert_eq!(
        intact_records(&data_dir),
        2 * SERIES,
        "the last good snapshot stays whole"
    );
    // Ingest and queries carry on.
    assert_eq!(
        write::post(&url, &write::part(&all, BEFORE, BEFORE + GAP)).status,
        204
    );
    wait_covered_to(&url, start_ms + (BEFORE + GAP - 1) as i64 * STEP_MS);
    let query = format!("distinct_over_time({METRIC}[10m])");
    let last_ms = start_ms + (BEFORE + GAP - 1) as i64 * STEP_MS;
    let answer = range(&url, &query, last_ms - 600_000, last_ms, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.path.as_deref(), Some("sketch"));

    // Room again: the next snapshot succeeds and is what a restart finds.
    let _ = std::fs::remove_file(&temporary);
    let before = metric(&url, ok);
    wait_until(Duration::from_secs(30), "a snapshot with room", || {
        metric(&url, ok) > before
    })
    .unwrap();
    wait_stored(&prometheus, start_ms, BEFORE + GAP);
    drop(proxy); // SIGKILL
    let (_proxy, url) = start(&file, &prometheus);
    wait_backfill_done(&url);
    assert_eq!(status(&url)["restore"]["restored"], 2 * SERIES);
    for from in (BEFORE + GAP..TOTAL).step_by(30) {
        assert_eq!(write::post(&url, &write::part(&all, from, from + 30)).status, 204);
    }
    check_every_window(&url, start_ms);
}
