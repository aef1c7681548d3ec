//! From an HTTP request to a checked `WriteRequest`: headers, snappy, protobuf, and the
//! series checks Prometheus 2.42's receiver makes (answered 400 here, where 2.42
//! answers some with 500 and its senders then retry them forever).

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use prost::Message;

use super::IngestError;
use crate::prompb::{Label, TimeSeries, WriteRequest};

/// Checks `Content-Encoding: snappy` and a remote-write 1.0 `Content-Type`. Prometheus
/// 2.42 checks neither, but a body that is not snappy protobuf cannot be read anyway,
/// and 415 tells a misconfigured sender what is wrong.
pub fn check_headers(headers: &HeaderMap) -> Result<(), IngestError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = text(CONTENT_ENCODING);
    if !encoding.eq_ignore_ascii_case("snappy") {
        return Err(IngestError::UnsupportedMediaType(format!(
            "Content-Encoding must be snappy, got {encoding:?}"
        )));
    }
    let content_type = text(CONTENT_TYPE);
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let proto = parts.find_map(|p| p.strip_prefix("proto="));
    if !media.eq_ignore_ascii_case("application/x-protobuf")
        || proto.is_some_and(|p| p != "prometheus.WriteRequest")
    {
        return Err(IngestError::UnsupportedMediaType(format!(
            "Content-Type must be application/x-protobuf (remote write 1.0), got {content_type:?}"
        )));
    }
    Ok(())
}

/// Decompresses (snappy block format) and decodes the body.
pub fn decode(body: &[u8], max_decompressed: u64) -> Result<WriteRequest, IngestError> {
    let length = snap::raw::decompress_len(body)
        .map_err(|e| IngestError::BadBody(format!("snappy: {e} (the block format is expected)")))?;
    if length as u64 > max_decompressed {
        return Err(IngestError::TooLarge(format!(
            "the body decompresses to {length} bytes, the limit (ingest.max_decompressed_bytes) is {max_decompressed}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::BadBody(format!("snappy: {e}")))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| IngestError::BadBody(format!("protobuf: {e}")))
}

/// What [`normalize`] did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalized {
    /// Nothing: the request is forwarded byte for byte.
    Unchanged,
    /// Labels were sorted or empty ones dropped.
    Changed,
}

/// Drops labels with empty values and sorts labels by name (what Prometheus does on
/// ingest, so hashing sees the stored label set), then checks every series. The first
/// bad series is named in the error, with the number of others.
pub fn normalize(request: &mut WriteRequest, newest_allowed_ms: i64) -> Result<Normalized, IngestError> {
    let mut changed = Normalized::Unchanged;
    let mut first: Option<(String, String)> = None;
    let mut bad = 0;
    for series in &mut request.timeseries {
        let before = series.labels.len();
        series.labels.retain(|l| !l.value.is_empty());
        if series.labels.len() != before || !series.labels.is_sorted_by(|a, b| a.name <= b.name) {
            series.labels.sort_by(|a, b| a.name.cmp(&b.name));
            changed = Normalized::Changed;
        }
        if let Some(reason) = problem(series, newest_allowed_ms) {
            bad += 1;
            first.get_or_insert_with(|| (describe(&series.labels), reason));
        }
    }
    match first {
        None => Ok(changed),
        Some((series, reason)) => Err(IngestError::BadSeries {
            series,
            reason,
            others: bad - 1,
        }),
    }
}

fn problem(series: &TimeSeries, newest_allowed_ms: i64) -> Option<String> {
    if series.labels.is_empty() {
        return Some("empty label set".to_owned());
    }
    if let Some(pair) = series.labels.windows(2).find(|w| w[0].name == w[1].name) {
        return Some(format!("label name {:?} is not unique", pair[0].name));
    }
    if !series.histograms.is_empty() {
        return Some("native histograms are not supported".to_owned());
    }
    if let Some(s) = series.samples.iter().find(|s| s.timestamp > newest_allowed_ms) {
        return Some(format!(
            "sample at {} ms is more than ingest.max_future ahead of the proxy's clock \
             (a future sample would make Prometheus refuse every later sample)",
            s.timestamp
        ));
    }
    None
}

/// `name{a="1", b="2"}`, the way Prometheus prints a series.
pub fn describe(labels: &[Label]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value.as_str());
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}
