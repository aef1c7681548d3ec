//! Prometheus' remote-write 1.0 messages (`prompb/remote.proto`, `prompb/types.proto` at
//! v2.42.0), declared with prost's derive instead of generated, so no `protoc` is needed.
//! Field numbers and types follow the upstream files; fields the proxy has no use for
//! are kept as opaque messages so they survive a decode → encode round trip.

use prost::Message;
use xxhash_rust::xxh3::xxh3_64;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit), forwarded as is.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Label pairs; sorted by name in a valid request.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars, forwarded as is.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms. Only counted: Prometheus 2.42 rejects them unless a feature
    /// flag is on, and the proxy rejects them too.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Opaque>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    /// The value; Prometheus' stale marker is one particular NaN.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Exemplar labels (e.g. a trace ID).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// `MetricType` enum value.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// A message whose content is not read (prost skips its fields).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Opaque {}

/// The bits of Prometheus' stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A stable hash of a label set given sorted by name: names and values separated by
/// 0xff, a byte UTF-8 never contains, so distinct sets never join to the same bytes.
pub fn series_hash(labels: &[Label]) -> u64 {
    let mut bytes = Vec::with_capacity(labels.iter().map(|l| l.name.len() + l.value.len() + 2).sum());
    for label in labels {
        bytes.extend_from_slice(label.name.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(label.value.as_bytes());
        bytes.push(0xff);
    }
    xxh3_64(&bytes)
}

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadRequest {
    /// Answered independently, in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ResponseType` values the client takes, best first (0 = SAMPLES).
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.Query`. Hints (field 4) are never sent: 2.42 lets them override the range.
#[derive(Clone, PartialEq, Message)]
pub struct Query {
    /// Inclusive start, ms.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// Inclusive end, ms.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// ANDed matchers.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct LabelMatcher {
    /// 0 EQ, 1 NEQ, 2 RE, 3 NRE (regexes fully anchored).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regex.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadResponse` (SAMPLES mode).
#[derive(Clone, PartialEq, Message)]
pub struct ReadResponse {
    /// One per query, in order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryResult {
    /// The series, in no promised order.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<ReadSeries>,
}

/// `prometheus.TimeSeries` as read back: labels as bytes, because 2.42 stores invalid
/// UTF-8 that a strict string decoder would refuse for the whole answer.
#[derive(Clone, PartialEq, Message)]
pub struct ReadSeries {
    /// Label pairs, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<ByteLabel>,
    /// Samples in time order, stale markers included.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label` with byte strings.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ByteLabel {
    /// Label name.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// Label value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `prometheus.ChunkedReadResponse`: one frame of a STREAMED_XOR_CHUNKS answer.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedReadResponse {
    /// The series (2.42 sends one per frame; a series may continue in the next frame).
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Which query of the request the series answer.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedSeries {
    /// Label pairs, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<ByteLabel>,
    /// Chunks in time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, Message)]
pub struct Chunk {
    /// First sample's time, ms.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's time, ms.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// 1 XOR (floats); others are native histograms.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// The chunk's bytes as stored.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// The labels of the test series `m{i="<i>"}`, sorted.
#[cfg(test)]
pub(crate) fn test_series(i: usize) -> Vec<Label> {
    vec![
        Label {
            name: "__name__".into(),
            value: "m".into(),
        },
        Label {
            name: "i".into(),
            value: i.to_string(),
        },
    ]
}
