#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::Write as _;
use std::time::Duration;

use super::*;

fn payload(i: u32) -> Vec<u8> {
    format!("record {i} ").repeat(1 + i as usize % 7).into_bytes()
}

async fn append(queue: &Queue, range: std::ops::Range<u32>) {
    for i in range {
        let p = payload(i);
        let reserved = queue.reserve(record_bytes(p.len())).unwrap();
        queue.submit(reserved, vec![(i, p)]).unwrap().await.unwrap();
    }
}

/// Reads until `n` records came back; returns their sample fields and the end.
async fn take(reader: &Reader, n: usize) -> (Vec<u32>, Position) {
    let mut got = Vec::new();
    let mut end = None;
    while got.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(10), reader.next_batch(100))
            .await
            .expect("records arrive");
        let batch = batch.unwrap();
        for r in &batch.records {
            assert_eq!(r.payload, payload(r.samples), "payload of record {}", r.samples);
        }
        got.extend(batch.records.iter().map(|r| r.samples));
        end = Some(batch.end);
    }
    (got, end.unwrap())
}

#[tokio::test]
async fn records_come_back_in_order_and_committed_ones_not_again() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments, so the queue rotates and deletes segment files.
    let (queue, reader) = Queue::open_with_segments(dir.path(), "d", 1 << 20, 256).unwrap();
    append(&queue, 0..40).await;
    let (first, end) = take(&reader, 10).await;
    assert_eq!(first, (0..first.len() as u32).collect::<Vec<_>>());
    reader.commit(end).await.unwrap();
    let delivered = first.len() as u32;
    drop((queue, reader));

    let segments = || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let before = segments();
    let (queue, reader) = Queue::open_with_segments(dir.path(), "d", 1 << 20, 256).unwrap();
    let (rest, end) = take(&reader, 40 - delivered as usize).await;
    assert_eq!(
        rest,
        (delivered..40).collect::<Vec<_>>(),
        "uncommitted records come back, committed ones do not"
    );
    reader.commit(end).await.unwrap();
    assert!(segments() < before, "fully delivered segments are deleted");
    assert_eq!(queue.queued_bytes(), 0);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, reader) = Queue::open(dir.path(), "d", 1 << 20).unwrap();
    append(&queue, 0..5).await;
    drop((queue, reader));
    // A crash in the middle of a record: a header promising more than was written.
    let last = segment::path(dir.path(), 1);
    let mut file = fs::OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);

    let (queue, reader) = Queue::open(dir.path(), "d", 1 << 20).unwrap();
    append(&queue, 5..8).await;
    let (got, _) = take(&reader, 8).await;
    assert_eq!(got, (0..8).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_byte_limit_refuses_appends_until_records_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 10 * record_bytes(100);
    let (queue, reader) = Queue::open(dir.path(), "d", limit).unwrap();
    for i in 0..10 {
        let reserved = queue.reserve(record_bytes(100)).unwrap();
        queue
            .submit(reserved, vec![(i, vec![7; 100])])
            .unwrap()
            .await
            .unwrap();
    }
    let full = queue.reserve(record_bytes(100)).unwrap_err();
    assert!(matches!(full, QueueError::Full { .. }), "{full}");
    assert!(full.to_string().contains("ingest.max_queue_bytes"), "{full}");
    let batch = reader.next_batch(1 << 20).await.unwrap();
    assert_eq!(batch.records.len(), 10);
    reader.commit(batch.end).await.unwrap();
    assert!(queue.reserve(record_bytes(100)).is_ok());
}

#[tokio::test]
async fn a_second_process_cannot_open_a_queue_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Queue::open(dir.path(), "d", 1 << 20).unwrap();
    let error = Queue::open(dir.path(), "d", 1 << 20).unwrap_err();
    assert!(matches!(error, QueueError::Locked { .. }), "{error}");
}

#[tokio::test]
async fn delivery_is_known_up_to_a_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, reader) = Queue::open_with_segments(dir.path(), "d", 1 << 20, 256).unwrap();
    append(&queue, 0..5).await;
    let mark = queue.durable_end();
    append(&queue, 5..10).await;
    assert!(!queue.delivered_through(mark), "nothing was delivered yet");
    for delivered in 1..=6 {
        // One byte at most: one record per batch.
        let batch = reader.next_batch(1).await.unwrap();
        assert_eq!(batch.records.len(), 1);
        reader.commit(batch.end).await.unwrap();
        assert_eq!(
            queue.delivered_through(mark),
            delivered >= 5,
            "{delivered} records delivered, 5 before the mark"
        );
    }
}
