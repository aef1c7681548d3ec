//! Remote write in: checked, fed to sketches, split over the destinations by series,
//! queued durably, then acknowledged; one sender per destination drains its queue.
//!
//! ```text
//! POST /api/v1/write ─▶ check_headers ─▶ decode ─▶ normalize ─▶ split ─▶ reserve ─▶ append+sync ─▶ 204
//!                          415            400/413     400                 503         500
//! queue ─▶ sender ─▶ destination   (retry with backoff on network errors, 5xx, 429)
//! ```

mod decode;
pub mod queue;
mod sender;
pub mod shard;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use parking_lot::Mutex;
use prost::Message;

use decode::Normalized;
pub use decode::describe;
use queue::{Queue, QueueError, Reader, record_bytes};
use shard::Ring;

use crate::clock::now_ms;
use crate::metrics::IngestMetrics;
use crate::prompb::{WriteRequest, series_hash};

/// Why a remote-write request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not snappy-compressed remote write 1.0 protobuf (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A sample the destination is certain to refuse as out of bounds (400).
    #[error(
        "sample at {sample_ms} ms is more than ingest.max_past older than the newest sample \
         already queued for {destination} ({newest_ms} ms): Prometheus would refuse the \
         request as out of bounds"
    )]
    TooOld {
        /// The oldest sample of the request for that destination.
        sample_ms: i64,
        /// The destination.
        destination: String,
        /// Its newest queued sample.
        newest_ms: i64,
    },
    /// The body cannot be decoded (400).
    #[error("{0}")]
    BadBody(String),
    /// A series Prometheus would refuse; the whole request is refused, as in 2.42 (400).
    #[error("series {series}: {reason}{}", if *others > 0 { format!(" (and {others} more bad series)") } else { String::new() })]
    BadSeries {
        /// The first bad series.
        series: String,
        /// What is wrong with it.
        reason: String,
        /// How many other series are bad.
        others: usize,
    },
    /// Decompressed bodies in flight would pass `ingest.max_inflight_decompressed_bytes`
    /// (503, the sender retries).
    #[error(
        "the body decompresses to {bytes} bytes, and the bodies being handled already hold \
         most of the {limit} allowed at once (ingest.max_inflight_decompressed_bytes); retry later"
    )]
    Busy {
        /// This body's decompressed size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A destination's queue is full: the sender should back off (503).
    #[error("{0}; retry later")]
    Backpressure(QueueError),
    /// The queue could not store the request (500, so the sender retries).
    #[error("{0}")]
    Queue(QueueError),
}

impl IngestError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge(_) => "too_large",
            Self::TooOld { .. } => "too_old",
            Self::Busy { .. } => "busy",
            Self::BadBody(_) => "bad_body",
            Self::BadSeries { .. } => "bad_series",
            Self::Backpressure(_) => "queue_full",
            Self::Queue(_) => "queue_error",
        }
    }
}

/// One destination.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSettings {
    /// The name its queue and metrics use.
    pub name: String,
    /// Its receiver's URL.
    pub url: Uri,
    /// How to connect to it.
    pub http: crate::config::HttpClientConfig,
}

/// What ingest needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where to forward.
    pub destinations: Vec<DestinationSettings>,
    /// Destinations per series.
    pub replication_factor: usize,
    /// Parent of the per-destination queue directories.
    pub queue_dir: std::path::PathBuf,
    /// Byte limit of each queue.
    pub max_queue_bytes: u64,
    /// Limit of a decompressed body.
    pub max_decompressed_bytes: u64,
    /// Samples further ahead of the proxy's clock are refused.
    pub max_future: Duration,
    /// Size at which a queue segment is closed.
    pub segment_bytes: u64,
    /// Decompressed bytes of the bodies handled at once.
    pub max_inflight_bytes: u64,
    /// Samples this much older than the newest one already queued for a destination
    /// are refused (zero: none).
    pub max_past: Duration,
    /// Timeout of one send to a destination.
    pub send_timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Most uncompressed bytes one send carries.
    pub max_send_bytes: u64,
    /// Requests in flight to one destination (series split among them).
    pub send_concurrency: usize,
}

/// A destination and its queue.
#[derive(Debug)]
struct Destination {
    name: String,
    url: Uri,
    http: crate::config::HttpClientConfig,
    queue: Queue,
    /// The newest sample timestamp queued for it since start (`i64::MIN`: none yet).
    /// Its head is at least that new once the queue delivered it, and everything
    /// queued after is delivered after.
    newest_ms: AtomicI64,
}

/// Snappy and protobuf decoding of a remote-write body (for the fuzz targets).
#[doc(hidden)]
pub fn decode_body(body: &[u8], max_decompressed: u64) -> Result<WriteRequest, IngestError> {
    decode::decode(body, max_decompressed)
}

/// The series checks of a decoded request (for the fuzz targets).
#[doc(hidden)]
pub fn normalize_request(request: &mut WriteRequest, newest_allowed_ms: i64) -> Result<(), IngestError> {
    decode::normalize(request, newest_allowed_ms).map(|_| ())
}

/// The remote-write receiver and the forwarding queues.
#[derive(Debug)]
pub struct Ingest {
    settings: Settings,
    /// KiB of decompressed bodies in flight (`ingest.max_inflight_decompressed_bytes`).
    inflight: Arc<Semaphore>,
    destinations: Vec<Destination>,
    ring: Ring,
    readers: Mutex<Vec<Reader>>,
    started: AtomicBool,
    metrics: IngestMetrics,
}

impl Ingest {
    /// Opens every destination's queue (recovering what a previous run left).
    pub fn open(settings: Settings, metrics: IngestMetrics) -> Result<Self, IngestError> {
        let mut destinations = Vec::new();
        let mut readers = Vec::new();
        for DestinationSettings { name, url, http } in &settings.destinations {
            let (queue, reader) = Queue::open_with_segments(
                &queue_path(&settings.queue_dir, name),
                name,
                settings.max_queue_bytes,
                settings.segment_bytes,
            )
            .map_err(IngestError::Queue)?;
            destinations.push(Destination {
                newest_ms: AtomicI64::new(i64::MIN),
                name: name.clone(),
                url: url.clone(),
                http: http.clone(),
                queue,
            });
            readers.push(reader);
        }
        let names: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        let inflight_kib = usize::try_from(settings.max_inflight_bytes / 1024)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            ring: Ring::new(&names, settings.replication_factor),
            inflight: Arc::new(Semaphore::new(inflight_kib)),
            settings,
            destinations,
            readers: Mutex::new(readers),
            started: AtomicBool::new(false),
            metrics,
        })
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts one sender task per destination (once; later calls do nothing). Must be
    /// called inside a tokio runtime.
    pub fn start(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let readers = std::mem::take(&mut *self.readers.lock());
        for (destination, reader) in self.destinations.iter().zip(readers) {
            tokio::spawn(sender::run(sender::Sender::new(
                destination.name.clone(),
                destination.url.clone(),
                &destination.http,
                destination.queue.clone(),
                reader,
                &self.settings,
                self.metrics.clone(),
            )));
        }
    }

    /// Says, when called, whether every destination has delivered what was on disk when
    /// this was called (the samples of every acknowledged request).
    pub fn delivery(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let marks: Vec<(Queue, _)> = self
            .destinations
            .iter()
            .map(|d| (d.queue.clone(), d.queue.durable_end()))
            .collect();
        move || marks.iter().all(|(queue, mark)| queue.delivered_through(*mark))
    }

    /// Waits until every destination has delivered what was on disk when called (the
    /// samples of every acknowledged request), or until `within` passed; says which.
    pub async fn flushed(&self, within: Duration) -> bool {
        let marks: Vec<_> = self.destinations.iter().map(|d| d.queue.durable_end()).collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let done = self
                .destinations
                .iter()
                .zip(&marks)
                .all(|(d, mark)| d.queue.delivered_through(*mark));
            if done {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Delivery takes a network round trip; polling costs nothing beside it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stages `check_headers`, `decode` and `normalize`: the request, ready to feed
    /// sketches and to queue.
    pub fn decode(&self, headers: &HeaderMap, body: Bytes) -> Result<Decoded, IngestError> {
        let result = (|| {
            decode::check_headers(headers)?;
            let inflight = self.admit(&body)?;
            let mut request = decode::decode(&body, self.settings.max_decompressed_bytes)?;
            let samples: u64 = request.timeseries.iter().map(|s| s.samples.len() as u64).sum();
            let max_future = i64::try_from(self.settings.max_future.as_millis()).unwrap_or(i64::MAX);
            match decode::normalize(&mut request, now_ms().saturating_add(max_future)) {
                Ok(normalized) => Ok(Decoded {
                    request,
                    normalized,
                    body,
                    samples,
                    _inflight: inflight,
                }),
                Err(e) => {
                    self.metrics
                        .samples_rejected
                        .get_or_create(&e.reason().into())
                        .inc_by(samples);
                    Err(e)
                }
            }
        })();
        result.inspect_err(|e| self.rejected(e))
    }

    /// The body's decompressed size taken from `ingest.max_inflight_decompressed_bytes`
    /// (counted in KiB), or 503 when that much is not free now. An unreadable length is
    /// left for `decode` to report.
    fn admit(&self, body: &[u8]) -> Result<OwnedSemaphorePermit, IngestError> {
        let bytes = snap::raw::decompress_len(body).unwrap_or(0) as u64;
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.inflight
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| IngestError::Busy {
                bytes,
                limit: self.settings.max_inflight_bytes,
            })
    }

    /// Stages `split`, `reserve` and `append`: returns once every destination's share
    /// is on disk.
    pub async fn enqueue(&self, decoded: Decoded) -> Result<(), IngestError> {
        self.metrics.samples_received.inc_by(decoded.samples);
        self.append(decoded).await.inspect_err(|e| self.rejected(e))
    }

    fn rejected(&self, error: &IngestError) {
        self.metrics
            .requests_rejected
            .get_or_create(&error.reason().into())
            .inc();
        if matches!(error, IngestError::Queue(_)) {
            tracing::error!(%error, "remote write could not be queued");
        }
    }

    async fn append(&self, decoded: Decoded) -> Result<(), IngestError> {
        let shares = self.split(decoded.request, decoded.normalized, decoded.body)?;
        self.check_age(&shares)?;
        let mut reservations = Vec::with_capacity(shares.len());
        for (destination, share) in self.destinations.iter().zip(&shares) {
            let reservation = destination
                .queue
                .reserve(record_bytes(share.payload.len()))
                .map_err(IngestError::Backpressure)?;
            reservations.push(reservation);
        }
        let mut pending = Vec::with_capacity(shares.len());
        for ((destination, share), reservation) in self.destinations.iter().zip(shares).zip(reservations) {
            if share.is_empty {
                continue;
            }
            let samples = u32::try_from(share.samples).unwrap_or(u32::MAX);
            let wait = destination
                .queue
                .submit(reservation, vec![(samples, share.payload)])
                .map_err(IngestError::Queue)?;
            pending.push((destination, share.samples, share.span, wait));
        }
        for (destination, samples, newest, wait) in pending {
            wait.await.map_err(IngestError::Queue)?;
            if let Some((_, newest)) = newest {
                destination.newest_ms.fetch_max(newest, Ordering::Relaxed);
            }
            let labels = destination.name.as_str().into();
            self.metrics.samples_queued.get_or_create(&labels).inc_by(samples);
            self.metrics
                .queue_bytes
                .get_or_create(&labels)
                .set(i64::try_from(destination.queue.queued_bytes()).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Refuses a request holding a sample `ingest.max_past` older than the newest one
    /// queued for a destination it goes to: Prometheus accepts samples down to 1 h
    /// before its newest (2.42, 2 h blocks), and refuses the whole request otherwise.
    fn check_age(&self, shares: &[Share]) -> Result<(), IngestError> {
        let Ok(max_past) = i64::try_from(self.settings.max_past.as_millis()) else {
            return Ok(());
        };
        if max_past == 0 {
            return Ok(());
        }
        for (destination, share) in self.destinations.iter().zip(shares) {
            let newest = destination.newest_ms.load(Ordering::Relaxed);
            if let Some((oldest, _)) = share.span
                && newest != i64::MIN
                && oldest < newest.saturating_sub(max_past)
            {
                return Err(IngestError::TooOld {
                    sample_ms: oldest,
                    destination: destination.name.clone(),
                    newest_ms: newest,
                });
            }
        }
        Ok(())
    }

    /// Each destination's share of the request, snappy-compressed.
    fn split(
        &self,
        request: WriteRequest,
        normalized: Normalized,
        body: Bytes,
    ) -> Result<Vec<Share>, IngestError> {
        let whole = |payload: Vec<u8>, request: &WriteRequest| Share {
            is_empty: request.timeseries.is_empty() && request.metadata.is_empty(),
            samples: request.timeseries.iter().map(|s| s.samples.len() as u64).sum(),
            span: span(request.timeseries.iter()),
            payload,
        };
        if self.ring.is_trivial() {
            // Every destination gets everything; untouched requests go on byte for byte.
            let payload = match normalized {
                Normalized::Unchanged => body.to_vec(),
                Normalized::Changed => compress(&request)?,
            };
            return Ok((0..self.destinations.len())
                .map(|_| whole(payload.clone(), &request))
                .collect());
        }
        let mut parts: Vec<WriteRequest> = (0..self.destinations.len())
            .map(|_| WriteRequest {
                timeseries: Vec::new(),
                metadata: request.metadata.clone(),
            })
            .collect();
        let mut picked = Vec::new();
        for series in request.timeseries {
            self.ring.pick(series_hash(&series.labels), &mut picked);
            if let Some((&last, rest)) = picked.split_last() {
                for &i in rest {
                    parts[i].timeseries.push(series.clone());
                }
                parts[last].timeseries.push(series);
            }
        }
        parts
            .into_iter()
            .map(|part| Ok(whole(compress(&part)?, &part)))
            .collect()
    }
}

/// A checked request on its way to the sketches and the queues.
#[derive(Debug)]
pub struct Decoded {
    /// The request, labels normalized.
    pub request: WriteRequest,
    normalized: Normalized,
    body: Bytes,
    samples: u64,
    /// Its share of `ingest.max_inflight_decompressed_bytes`, given back on drop.
    _inflight: OwnedSemaphorePermit,
}

struct Share {
    /// No series and no metadata: nothing to forward.
    is_empty: bool,
    samples: u64,
    /// Its oldest and newest sample timestamps (`None` without samples).
    span: Option<(i64, i64)>,
    payload: Vec<u8>,
}

/// The oldest and newest sample timestamps of `series`.
fn span<'a>(series: impl Iterator<Item = &'a crate::prompb::TimeSeries>) -> Option<(i64, i64)> {
    series
        .flat_map(|s| s.samples.iter().map(|p| p.timestamp))
        .fold(None, |span, t| match span {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
}

fn compress(request: &WriteRequest) -> Result<Vec<u8>, IngestError> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .map_err(|e| IngestError::TooLarge(format!("snappy cannot compress the request: {e}")))
}

/// The queue directory of a destination.
fn queue_path(parent: &Path, name: &str) -> std::path::PathBuf {
    parent.join(name)
}

#[cfg(test)]
mod tests;
