//! One destination's sender: drains its queue in order, one request at a time, and
//! moves the cursor only past what was delivered or refused for good.
//!
//! Network errors, timeouts, 5xx and 429 are retried with exponential backoff and
//! jitter, forever: the queue's byte limit, not the sender, decides when the receiver
//! pushes back. Other 4xx answers mean the data can never be stored there (out of
//! order, out of bounds); those samples are counted as failed with the status and
//! logged with the destination's message, and the sender moves on.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use prost::encoding::WireType;

use super::Settings;
use super::queue::{Queue, Reader, Record};
use crate::downstream::error_chain;
use crate::metrics::IngestMetrics;
use crate::prompb::{Label, series_hash};

/// Batches smaller than this go as one request: splitting buys nothing there.
const MIN_SPLIT_SAMPLES: u64 = 10_000;

/// Everything one destination's sender needs.
#[derive(Debug)]
pub struct Sender {
    name: String,
    url: Uri,
    queue: Queue,
    reader: Reader,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    backoff: ExponentialBuilder,
    max_send_bytes: usize,
    lanes: usize,
    metrics: IngestMetrics,
}

enum Outcome {
    Delivered,
    Retry(String),
    Refused(StatusCode, String),
}

impl Sender {
    /// A sender for `queue`, reading with `reader`.
    pub fn new(
        name: String,
        url: Uri,
        queue: Queue,
        reader: Reader,
        settings: &Settings,
        metrics: IngestMetrics,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            name,
            url,
            queue,
            reader,
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: settings.send_timeout,
            backoff: ExponentialBuilder::default()
                .with_min_delay(settings.min_backoff)
                .with_max_delay(settings.max_backoff)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
            max_send_bytes: usize::try_from(settings.max_send_bytes).unwrap_or(usize::MAX),
            lanes: settings.send_concurrency,
            metrics,
        }
    }

    async fn send(&self, body: Bytes) -> Outcome {
        let request = Request::post(self.url.clone())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(USER_AGENT, concat!("sketch-proxy/", env!("CARGO_PKG_VERSION")))
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Refused(StatusCode::BAD_REQUEST, format!("cannot build the request: {e}"));
            }
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            // The first KiB of an error body is the destination's reason.
            #[expect(
                clippy::disallowed_methods,
                reason = "bounded: the body is wrapped in Limited"
            )]
            let collected = Limited::new(response.into_body(), 1024).collect().await;
            let text = collected
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                .unwrap_or_default();
            Ok::<_, String>((status, text))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::Retry(format!(
                "no answer within {:?} (ingest.send_timeout)",
                self.timeout
            )),
            Ok(Err(e)) => Outcome::Retry(e),
            Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered,
            Ok(Ok((status, text))) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                Outcome::Retry(format!("{status}: {text}"))
            }
            Ok(Ok((status, text))) => Outcome::Refused(status, text),
        }
    }

    /// Delivers one batch: split by series into up to `lanes` requests sent at once
    /// (each series in one of them, so its samples stay in order), each retried until
    /// delivered or refused for good.
    async fn deliver(&self, records: &[Record]) {
        let samples: u64 = records.iter().map(|r| u64::from(r.samples)).sum();
        let parts = if self.lanes > 1 && samples >= MIN_SPLIT_SAMPLES {
            split(records, self.lanes)
        } else {
            join(records).map(|body| vec![(samples, body)])
        };
        match parts {
            Ok(parts) => {
                let sends = parts.into_iter().map(|(n, body)| self.deliver_one(body, n));
                join_all(sends).await;
            }
            Err(reason) => {
                tracing::error!(destination = %self.name, %reason, samples, "unreadable queued data dropped");
                self.count_failed("corrupt", samples);
            }
        }
    }

    async fn deliver_one(&self, body: Bytes, samples: u64) {
        let mut delays = self.backoff.build();
        let mut attempts = 0u64;
        loop {
            match self.send(body.clone()).await {
                Outcome::Delivered => {
                    self.metrics
                        .samples_sent
                        .get_or_create(&self.name.as_str().into())
                        .inc_by(samples);
                    if attempts > 0 {
                        tracing::info!(destination = %self.name, attempts, "delivered after retries");
                    }
                    return;
                }
                Outcome::Retry(reason) => {
                    attempts += 1;
                    self.metrics
                        .samples_retried
                        .get_or_create(&self.name.as_str().into())
                        .inc_by(samples);
                    let delay = delays.next().unwrap_or(self.timeout);
                    if attempts == 1 || attempts.is_multiple_of(20) {
                        tracing::warn!(destination = %self.name, %reason, attempts, ?delay, "send failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
                Outcome::Refused(status, message) => {
                    tracing::warn!(destination = %self.name, %status, %message, samples, "destination refused samples; not retried");
                    self.count_failed(status.as_str(), samples);
                    return;
                }
            }
        }
    }

    fn count_failed(&self, reason: &str, samples: u64) {
        self.metrics
            .samples_failed
            .get_or_create(&(self.name.as_str(), reason).into())
            .inc_by(samples);
    }

    fn observe_queue(&self, oldest_ms: Option<i64>) {
        let labels = self.name.as_str().into();
        self.metrics
            .queue_bytes
            .get_or_create(&labels)
            .set(i64::try_from(self.queue.queued_bytes()).unwrap_or(i64::MAX));
        let age = oldest_ms.map_or(0.0, |ms| (super::now_ms() - ms).max(0) as f64 / 1000.0);
        self.metrics.queue_age_seconds.get_or_create(&labels).set(age);
    }
}

/// Drains the queue for ever.
pub async fn run(sender: Sender) {
    loop {
        sender.observe_queue(None);
        let batch = match sender.reader.next_batch(sender.max_send_bytes).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(destination = %sender.name, %error, "cannot read the queue; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        sender.observe_queue(batch.records.first().map(|r| r.appended_ms));
        if !batch.records.is_empty() {
            sender.deliver(&batch.records).await;
        }
        while let Err(error) = sender.reader.commit(batch.end).await {
            tracing::error!(destination = %sender.name, %error, "cannot move the queue cursor; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One request body for the records: a single record goes as stored; several are
/// concatenated, which for protobuf is the message holding all their series.
fn join(records: &[Record]) -> Result<Bytes, String> {
    if let [only] = records {
        return Ok(Bytes::from(only.payload.clone()));
    }
    compress(&decompress(records)?)
}

fn decompress(records: &[Record]) -> Result<Vec<u8>, String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut raw = Vec::new();
    for record in records {
        raw.extend(
            decoder
                .decompress_vec(&record.payload)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(raw)
}

fn compress(raw: &[u8]) -> Result<Bytes, String> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// The records' series in `lanes` requests by series hash (labels sorted first, so one
/// series always lands in one lane), with their sample counts; metadata rides in the
/// first. Fields are copied as encoded: only labels are read, never samples.
fn split(records: &[Record], lanes: usize) -> Result<Vec<(u64, Bytes)>, String> {
    let raw = decompress(records)?;
    let mut parts: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new()); lanes];
    let mut rest = raw.as_slice();
    while !rest.is_empty() {
        let before = rest;
        let (tag, body) = next_field(&mut rest)?;
        let field = &before[..before.len() - rest.len()];
        let lane = match (tag, body) {
            (1, Some(series)) => {
                let (hash, samples) = scan_series(series)?;
                let lane = (hash % lanes as u64) as usize;
                parts[lane].0 += samples;
                lane
            }
            _ => 0,
        };
        parts[lane].1.extend_from_slice(field);
    }
    parts
        .into_iter()
        .filter(|p| !p.1.is_empty())
        .map(|(samples, raw)| Ok((samples, compress(&raw)?)))
        .collect()
}

/// Reads one field: its number, and its bytes when length-delimited.
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u32, Option<&'a [u8]>), String> {
    let (tag, wire_type) = prost::encoding::decode_key(buf).map_err(|e| e.to_string())?;
    let skip = |buf: &mut &'a [u8], n: usize| -> Result<&'a [u8], String> {
        let (taken, left) = buf.split_at_checked(n).ok_or("truncated protobuf field")?;
        *buf = left;
        Ok(taken)
    };
    match wire_type {
        WireType::LengthDelimited => {
            let len = prost::encoding::decode_varint(buf).map_err(|e| e.to_string())?;
            Ok((
                tag,
                Some(skip(buf, usize::try_from(len).map_err(|e| e.to_string())?)?),
            ))
        }
        WireType::Varint => prost::encoding::decode_varint(buf)
            .map(|_| (tag, None))
            .map_err(|e| e.to_string()),
        WireType::SixtyFourBit => skip(buf, 8).map(|_| (tag, None)),
        WireType::ThirtyTwoBit => skip(buf, 4).map(|_| (tag, None)),
        WireType::StartGroup | WireType::EndGroup => {
            Err("protobuf groups are not used by remote write".into())
        }
    }
}

/// A `TimeSeries`' label hash (labels sorted by name) and sample count.
fn scan_series(mut series: &[u8]) -> Result<(u64, u64), String> {
    let mut labels: Vec<Label> = Vec::new();
    let mut samples = 0;
    while !series.is_empty() {
        match next_field(&mut series)? {
            (1, Some(label)) => labels.push(Label::decode(label).map_err(|e| e.to_string())?),
            (2, Some(_)) => samples += 1,
            _ => {}
        }
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((series_hash(&labels), samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::{MetricMetadata, Sample, TimeSeries, WriteRequest};

    #[test]
    fn splitting_keeps_every_series_whole_in_the_lane_of_its_sorted_labels() {
        let label = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        let request = WriteRequest {
            timeseries: (0..50)
                .map(|i| TimeSeries {
                    // Unsorted on purpose: the lane must not depend on the order sent.
                    labels: vec![label("i", &i.to_string()), label("__name__", "m")],
                    samples: (0..i)
                        .map(|t| Sample {
                            value: f64::from(t),
                            timestamp: i64::from(t),
                        })
                        .collect(),
                    ..TimeSeries::default()
                })
                .collect(),
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "m".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        };
        let record = Record {
            appended_ms: 0,
            samples: 0,
            payload: snap::raw::Encoder::new()
                .compress_vec(&request.encode_to_vec())
                .unwrap(),
        };
        let parts = split(std::slice::from_ref(&record), 4).unwrap();
        assert_eq!(parts.len(), 4, "50 series fill every lane");
        let mut seen = Vec::new();
        for (lane, (samples, body)) in parts.iter().enumerate() {
            let part = WriteRequest::decode(decompress_one(body).as_slice()).unwrap();
            assert_eq!(
                *samples,
                part.timeseries
                    .iter()
                    .map(|s| s.samples.len() as u64)
                    .sum::<u64>()
            );
            for series in part.timeseries {
                let mut sorted = series.labels.clone();
                sorted.sort_by(|a, b| a.name.cmp(&b.name));
                assert_eq!((series_hash(&sorted) % 4) as usize, lane, "{sorted:?}");
                seen.push(series);
            }
        }
        let metadata: usize = parts
            .iter()
            .map(|(_, b)| {
                WriteRequest::decode(decompress_one(b).as_slice())
                    .unwrap()
                    .metadata
                    .len()
            })
            .sum();
        assert_eq!(metadata, 1);
        seen.sort_by_key(|s| s.samples.len());
        assert_eq!(seen, request.timeseries, "every series once, whole, as sent");
    }

    fn decompress_one(body: &Bytes) -> Vec<u8> {
        snap::raw::Decoder::new().decompress_vec(body).unwrap()
    }
}
