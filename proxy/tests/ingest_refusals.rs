//! What a destination refuses never takes other records with it: a request that joins
//! records of several acknowledged writes and is refused is halved until the refused
//! records stand alone. Samples Prometheus would refuse as too old are refused before
//! the 204. Each test runs the binary against a real Prometheus 2.42.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::time::Duration;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Binary, start_binary_on};

/// The binary with ingest on, queues in `dir`, downstream `prometheus`.
fn proxy(dir: &std::path::Path, prometheus: &Prometheus, extra: &str) -> (Binary, String, Vec<String>) {
    let file = dir.join("sketch-proxy.yml");
    std::fs::write(
        &file,
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\n  min_backoff: 20ms\n  max_backoff: 200ms\n{extra}",
            dir.join("queue").display()
        ),
    )
    .unwrap();
    let args = vec![
        format!("--config={}", file.display()),
        format!("--upstream={}", prometheus.url()),
    ];
    let port = sketch_proxy_testkit::free_port().unwrap();
    let (binary, url) = start_binary_on(port, &args);
    (binary, url, args)
}

/// Waits until Prometheus holds every sample of `sent` for `selector`.
fn wait_holds(prometheus: &Prometheus, selector: &str, sent: &Stored) {
    let mut have = 0;
    let done = wait_until(Duration::from_secs(60), "the samples to reach Prometheus", || {
        let stored = write::stored(&prometheus.url(), selector, write::now_ms(), "3h");
        have = sent
            .iter()
            .map(|(labels, points)| {
                let got = stored.get(labels).map(Vec::as_slice).unwrap_or_default();
                points.iter().filter(|p| got.contains(p)).count()
            })
            .sum();
        have == write::samples(sent)
    });
    assert!(
        done.is_ok(),
        "Prometheus holds {have} of {} samples",
        write::samples(sent)
    );
}

fn failed_samples(url: &str, prometheus: &Prometheus, reason: &str) -> String {
    let metrics = support::send(url, "GET", "/metrics", "", "").body;
    let line = format!(
        "sketch_proxy_remote_write_samples_failed_total{{destination=\"{}\",reason=\"{reason}\"}} ",
        prometheus.url().trim_start_matches("http://")
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or("none")
        .to_owned()
}

/// Reported: Prometheus refuses a whole request for one sample out of bounds, and the
/// proxy dropped the whole joined batch, good clients' acknowledged samples with it.
#[test]
fn a_record_prometheus_refuses_does_not_drop_other_clients_samples() {
    let mut prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The proxy's own age check is off, so the old sample reaches Prometheus.
    let (_proxy, url, _) = proxy(dir.path(), &prometheus, "  max_past: 0s\n");
    // While downstream is down, both clients' writes wait in one queue and are sent
    // as one request when it is back.
    prometheus.stop();
    let now = write::now_ms();
    let good = write::generate("refusal_good", 50, 100, now - 100_000, 1000, 1);
    assert_eq!(write::post(&url, &good).status, 204);
    let year_old = write::generate("refusal_bad", 1, 1, now - 365 * 86_400_000, 1, 2);
    assert_eq!(write::post(&url, &year_old).status, 204);
    let later = write::generate("refusal_good", 50, 10, now + 1000, 1000, 3);
    assert_eq!(write::post(&url, &later).status, 204);
    prometheus.restart().unwrap();
    let mut expected = good;
    write::extend(&mut expected, later);
    wait_holds(&prometheus, "refusal_good", &expected);
    wait_until(Duration::from_secs(30), "the refusal to be counted", || {
        failed_samples(&url, &prometheus, "out of bounds") == "1"
    })
    .unwrap();
}

/// Reported: after a crash inside the at-least-once window, the resent records were
/// joined with new ones, Prometheus answered `400 out of order sample`, and none of
/// the new samples were stored. The crash is reproduced exactly: the queue's cursor is
/// put back to where it was before the first delivery, as a crash between delivery
/// and the cursor's move leaves it.
#[test]
fn resent_records_after_a_crash_do_not_poison_new_samples() {
    let mut prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first_run, url, args) = proxy(dir.path(), &prometheus, "");
    let queue = dir.path().join("queue");
    let cursor_files = || -> Vec<(std::path::PathBuf, Vec<u8>)> {
        walk(&queue)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("cursor"))
            })
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    };
    let before = cursor_files();
    let now = write::now_ms();
    let delivered = write::generate("resend", 20, 10, now - 60_000, 1000, 1);
    assert_eq!(write::post(&url, &delivered).status, 204);
    wait_holds(&prometheus, "resend", &delivered);
    // New samples wait behind it while downstream is down.
    prometheus.stop();
    let new = write::generate("resend", 20, 250, now - 20_000, 10, 2);
    assert_eq!(write::post(&url, &new).status, 204);
    drop(first_run);
    // The cursor as a crash right after the first delivery leaves it: before the
    // delivered record (no cursor file yet means the start of the queue). The restarted
    // proxy sends the delivered record again, joined with the new one.
    for (path, _) in cursor_files() {
        if !before.iter().any(|(p, _)| *p == path) {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (path, bytes) in &before {
        std::fs::write(path, bytes).unwrap();
    }
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (_second_run, url) = start_binary_on(port, &args);
    prometheus.restart().unwrap();
    let mut expected = delivered;
    write::extend(&mut expected, new);
    wait_holds(&prometheus, "resend", &expected);
    wait_until(
        Duration::from_secs(30),
        "the resend's refusal to be counted",
        || failed_samples(&url, &prometheus, "out of order sample") == "200",
    )
    .unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Prometheus would refuse the request after the 204 (out of bounds): the proxy
/// knows the destination already holds a sample two hours newer, and refuses first.
#[test]
fn samples_older_than_max_past_are_refused_before_the_204() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, url, _) = proxy(dir.path(), &prometheus, "");
    let now = write::now_ms();
    let fresh = write::generate("fresh", 1, 1, now, 1, 1);
    assert_eq!(write::post(&url, &fresh).status, 204);
    let mut mixed = write::generate("too_old", 1, 1, now - 2 * 3_600_000, 1, 2);
    write::extend(&mut mixed, write::generate("fresh", 1, 1, now + 1000, 1, 3));
    let answer = write::post(&url, &mixed);
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("ingest.max_past"), "{}", answer.body);
    // Straight to Prometheus, the same request is refused too.
    let direct = write::post(&prometheus.url(), &mixed);
    assert_eq!(direct.status, 400, "{}", direct.body);
    assert!(direct.body.contains("out of bounds"), "{}", direct.body);
    let later = write::generate("fresh", 1, 1, now + 2000, 1, 4);
    assert_eq!(write::post(&url, &later).status, 204);
}

/// A tmpfs of `bytes` mounted on `dir` (the test machine runs as root, as CI does);
/// unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, bytes: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a small tmpfs needs root (CI runs as root)"
        );
        Self(dir.to_owned())
    }

    fn segment_files(&self) -> Vec<(String, u64)> {
        let queue = walk(&self.0);
        queue
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .map(|p| (p.display().to_string(), std::fs::metadata(&p).unwrap().len()))
            .collect()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Reported: a full queue disk never recovered by itself (moving the cursor needed the
/// space only moving it frees), and every failed write left an empty segment behind.
#[test]
fn a_full_queue_disk_recovers_by_itself_when_downstream_drains_it() {
    let mut prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("queue"), 1 << 20);
    let (_proxy, url, _) = proxy(
        dir.path(),
        &prometheus,
        "  segment_bytes: 65536\n  max_queue_bytes: 104857600\n",
    );
    prometheus.stop();
    let now = write::now_ms();
    let mut acked = Stored::new();
    let mut failed = None;
    for batch in 0..400 {
        let data = write::generate("full_disk", 50, 20, now - 60_000 + batch * 20, 1, batch as u64);
        let answer = write::post(&url, &data);
        match answer.status {
            204 => write::extend(&mut acked, data),
            _ => {
                failed = Some(answer);
                break;
            }
        }
    }
    let failed = failed.expect("the 1 MiB disk fills up");
    assert!(failed.status >= 500, "{}", failed.body);
    assert!(failed.body.contains("No space left"), "{}", failed.body);
    // Failed writes leave nothing behind: every segment but the one written holds data.
    // A write may still fit in the space the failed one did not take (its size moves
    // with the clock's digits): it is acknowledged, and the next ones are refused.
    let mut refused = 0;
    for attempt in 0..20 {
        if refused == 3 {
            break;
        }
        let extra = write::generate("full_disk_more", 50, 20, now, 1, 99 + attempt);
        let status = write::post(&url, &extra).status;
        assert!(status == 204 || status >= 500, "{status}");
        refused += usize::from(status >= 500);
    }
    assert_eq!(refused, 3, "the full disk keeps refusing writes");
    let segments = disk.segment_files();
    let empty = segments.iter().filter(|(_, len)| *len == 0).count();
    assert!(empty <= 1, "empty segments left behind: {segments:?}");

    prometheus.restart().unwrap();
    wait_holds(&prometheus, "full_disk", &acked);
    let later = write::generate("full_disk_after", 5, 5, write::now_ms(), 1, 7);
    wait_until(Duration::from_secs(60), "the queue to take writes again", || {
        write::post(&url, &later).status == 204
    })
    .unwrap();
    wait_holds(&prometheus, "full_disk_after", &later);
}
