//! One destination's sender: drains its queue in order, one request at a time, and
//! moves the cursor only past what was delivered or refused for good.
//!
//! Network errors, timeouts, 5xx and 429 are retried with exponential backoff and
//! jitter, forever: the queue's byte limit, not the sender, decides when the receiver
//! pushes back. Other 4xx answers mean the data can never be stored there (out of
//! order, out of bounds). Prometheus refuses a whole request for one such sample, and
//! a request joins the records of many acknowledged writes, so a refused request is
//! split in halves by record and each half sent again, until the refused records stand
//! alone. Only those are dropped: counted as failed by reason, and logged once per
//! batch with a few of their series.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use prost::encoding::WireType;

use super::Settings;
use super::queue::{Queue, Reader, Record};
use crate::downstream::error_chain;
use crate::metrics::IngestMetrics;
use crate::outbound::Outbound;
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
    client: Outbound,
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
        http: &crate::config::HttpClientConfig,
        queue: Queue,
        reader: Reader,
        settings: &Settings,
        metrics: IngestMetrics,
    ) -> Self {
        Self {
            client: Outbound::new(http, url.scheme_str() == Some("https"), None),
            name,
            url,
            queue,
            reader,
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
    /// delivered or refused for good, a refused one halved until the refused records
    /// stand alone.
    async fn deliver(&self, records: &[Record]) {
        let samples: u64 = records.iter().map(|r| u64::from(r.samples)).sum();
        let split_up = self.lanes > 1 && samples >= MIN_SPLIT_SAMPLES;
        if let [only] = records
            && !split_up
        {
            // One record goes as it was queued: it is decompressed only if refused.
            let body = Bytes::from(only.payload.clone());
            if let Some((status, message)) = self.deliver_one(body, samples).await {
                let refused: Vec<Refusal> = pieces(records)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|piece| Refusal {
                        status,
                        message: message.clone(),
                        piece,
                    })
                    .collect();
                self.report_refused(&refused);
            }
            return;
        }
        let lanes = if split_up {
            split(records, self.lanes)
        } else {
            pieces(records).map(|p| vec![p])
        };
        match lanes {
            Ok(lanes) => {
                let sends = lanes.into_iter().map(|pieces| self.deliver_lane(pieces));
                let refused: Vec<Refusal> = join_all(sends).await.into_iter().flatten().collect();
                self.report_refused(&refused);
            }
            Err(reason) => {
                tracing::error!(destination = %self.name, %reason, samples, "unreadable queued data dropped");
                self.count_failed("corrupt", samples);
            }
        }
    }

    /// Sends `pieces` as one request; a refused request is sent again as two halves,
    /// in order, down to single pieces. Returns the pieces refused on their own.
    async fn deliver_lane(&self, pieces: Vec<Piece>) -> Vec<Refusal> {
        let mut refused = Vec::new();
        // Halves waiting, the next one last: order within a lane is kept.
        let mut pending = vec![pieces];
        while let Some(pieces) = pending.pop() {
            let samples = pieces.iter().map(|p| p.samples).sum();
            let raw: Vec<&[u8]> = pieces.iter().map(|p| p.raw.as_slice()).collect();
            let body = match compress(&raw.concat()) {
                Ok(body) => body,
                Err(reason) => {
                    tracing::error!(destination = %self.name, %reason, samples, "cannot compress queued data; dropped");
                    self.count_failed("corrupt", samples);
                    continue;
                }
            };
            if let Some((status, message)) = self.deliver_one(body, samples).await {
                if pieces.len() == 1 {
                    refused.extend(pieces.into_iter().map(|piece| Refusal {
                        status,
                        message: message.clone(),
                        piece,
                    }));
                } else {
                    let mut first = pieces;
                    let second = first.split_off(first.len() / 2);
                    self.metrics
                        .requests_split
                        .get_or_create(&self.name.as_str().into())
                        .inc();
                    pending.push(second);
                    pending.push(first);
                }
            }
        }
        refused
    }

    /// Counts refused records by reason and logs them once, with a few of their series.
    fn report_refused(&self, refused: &[Refusal]) {
        if refused.is_empty() {
            return;
        }
        let mut reasons: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for r in refused {
            let reason = refusal_reason(r.status, &r.message);
            self.count_failed(&reason, r.piece.samples);
            *reasons.entry(reason).or_default() += r.piece.samples;
        }
        let series: Vec<String> = refused
            .iter()
            .flat_map(|r| series_names(&r.piece.raw))
            .take(REPORTED_SERIES)
            .collect();
        let first = &refused[0];
        tracing::warn!(
            destination = %self.name,
            records = refused.len(),
            ?reasons,
            status = %first.status,
            message = %first.message,
            ?series,
            "destination refused records on their own; dropped, the rest of the batch delivered"
        );
    }

    /// Sends `body` until it is delivered (`None`) or refused for good (its status and
    /// the destination's message).
    async fn deliver_one(&self, body: Bytes, samples: u64) -> Option<(StatusCode, String)> {
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
                    return None;
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
                Outcome::Refused(status, message) => return Some((status, message)),
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

/// Series names logged for one batch's refused records.
const REPORTED_SERIES: usize = 5;

/// One record's share of a request: its encoded fields, uncompressed. Concatenated
/// shares are the protobuf message holding all their series.
#[derive(Debug)]
struct Piece {
    raw: Vec<u8>,
    samples: u64,
}

/// A piece the destination refused on its own.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    piece: Piece,
}

/// Each record as one piece.
fn pieces(records: &[Record]) -> Result<Vec<Piece>, String> {
    let mut decoder = snap::raw::Decoder::new();
    records
        .iter()
        .map(|record| {
            Ok(Piece {
                raw: decoder
                    .decompress_vec(&record.payload)
                    .map_err(|e| e.to_string())?,
                samples: u64::from(record.samples),
            })
        })
        .collect()
}

/// The metric value of `samples_failed{reason}`: Prometheus' reason for the common
/// refusals, the status otherwise.
fn refusal_reason(status: StatusCode, message: &str) -> String {
    const KNOWN: [&str; 3] = [
        "out of order sample",
        "out of bounds",
        "duplicate sample for timestamp",
    ];
    KNOWN
        .iter()
        .find(|k| message.contains(*k))
        .map_or_else(|| status.as_str().to_owned(), |k| (*k).to_owned())
}

/// The names of the series in encoded `WriteRequest` fields (unreadable ones skipped).
fn series_names(mut raw: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while !raw.is_empty() && names.len() < REPORTED_SERIES {
        let Ok((tag, body)) = next_field(&mut raw) else {
            break;
        };
        if let (1, Some(series)) = (tag, body)
            && let Ok(series) = crate::prompb::TimeSeries::decode(series)
        {
            names.push(super::decode::describe(&series.labels));
        }
    }
    names
}

fn compress(raw: &[u8]) -> Result<Bytes, String> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// The records' series in `lanes` requests by series hash (labels sorted first, so one
/// series always lands in one lane), each a list of the records' shares in order;
/// metadata rides in the first lane. Fields are copied as encoded: only labels are
/// read, never samples.
fn split(records: &[Record], lanes: usize) -> Result<Vec<Vec<Piece>>, String> {
    let mut parts: Vec<Vec<Piece>> = (0..lanes).map(|_| Vec::new()).collect();
    for record in pieces(records)? {
        let mut shares: Vec<Piece> = (0..lanes)
            .map(|_| Piece {
                raw: Vec::new(),
                samples: 0,
            })
            .collect();
        let mut rest = record.raw.as_slice();
        while !rest.is_empty() {
            let before = rest;
            let (tag, body) = next_field(&mut rest)?;
            let field = &before[..before.len() - rest.len()];
            let lane = match (tag, body) {
                (1, Some(series)) => {
                    let (hash, samples) = scan_series(series)?;
                    let lane = (hash % lanes as u64) as usize;
                    shares[lane].samples += samples;
                    lane
                }
                _ => 0,
            };
            shares[lane].raw.extend_from_slice(field);
        }
        for (lane, share) in shares.into_iter().enumerate() {
            if !share.raw.is_empty() {
                parts[lane].push(share);
            }
        }
    }
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect())
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
        let parts: Vec<(u64, Vec<u8>)> = split(std::slice::from_ref(&record), 4)
            .unwrap()
            .into_iter()
            .map(|pieces| {
                let samples = pieces.iter().map(|p| p.samples).sum();
                (samples, pieces.into_iter().flat_map(|p| p.raw).collect())
            })
            .collect();
        assert_eq!(parts.len(), 4, "50 series fill every lane");
        let mut seen = Vec::new();
        for (lane, (samples, body)) in parts.iter().enumerate() {
            let part = WriteRequest::decode(body.as_slice()).unwrap();
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
            .map(|(_, b)| WriteRequest::decode(b.as_slice()).unwrap().metadata.len())
            .sum();
        assert_eq!(metadata, 1);
        seen.sort_by_key(|s| s.samples.len());
        assert_eq!(seen, request.timeseries, "every series once, whole, as sent");
    }

    #[test]
    fn refusals_are_counted_by_prometheus_reason() {
        let table = [
            (400, "out of order sample", "out of order sample"),
            (400, "out of bounds", "out of bounds"),
            (
                400,
                "duplicate sample for timestamp",
                "duplicate sample for timestamp",
            ),
            (400, "snappy: corrupt input", "400"),
            (404, "", "404"),
        ];
        for (status, message, reason) in table {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(refusal_reason(status, message), reason, "{message}");
        }
    }
}
