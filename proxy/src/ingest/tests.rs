use super::*;

fn ingest(dir: &Path, max_inflight_bytes: u64) -> Ingest {
    let settings = Settings {
        destinations: vec![DestinationSettings {
            name: "d".to_owned(),
            url: Uri::from_static("http://127.0.0.1:9/api/v1/write"),
            http: Default::default(),
        }],
        replication_factor: 1,
        queue_dir: dir.to_owned(),
        max_queue_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 20,
        max_future: Duration::from_secs(600),
        max_past: Duration::from_secs(3600),
        segment_bytes: 1 << 20,
        max_inflight_bytes,
        send_timeout: Duration::from_secs(1),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_send_bytes: 1 << 20,
        send_concurrency: 1,
    };
    Ingest::open(settings, IngestMetrics::default()).unwrap()
}

/// A snappy body that decompresses to `bytes` zeros.
fn body(bytes: usize) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&vec![0; bytes]).unwrap()
}

#[test]
fn bodies_in_flight_share_the_decompressed_budget() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = ingest(dir.path(), 100 << 10);
    let first = ingest.admit(&body(60 << 10)).unwrap();
    let refused = ingest.admit(&body(60 << 10)).unwrap_err();
    assert!(
        matches!(
            refused,
            IngestError::Busy {
                bytes: 61_440,
                limit: 102_400
            }
        ),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("ingest.max_inflight_decompressed_bytes")
    );
    let small = ingest.admit(&body(30 << 10)).unwrap();
    drop((first, small));
    assert!(ingest.admit(&body(60 << 10)).is_ok(), "given back once handled");
}
