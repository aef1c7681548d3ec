//! Compact query answers between sketch-proxies (issue 20): a top proxy asks its leaves
//! for pushed subqueries with `Accept:` [`MEDIA_TYPE`] (and gzip), and a leaf that
//! evaluates the query itself answers a matrix or vector as protobuf, each series'
//! timestamps as deltas and its values as packed doubles. A day's panel repeats most
//! values from one step to the next, which gzip then all but removes: about 1 byte a
//! point, against 33 for Prometheus' JSON. Values travel bit for bit (NaN payloads
//! included). Anything else (an error, a scalar, an answer forwarded from Prometheus)
//! stays JSON, so the asker looks at the content type.

use http::HeaderMap;
use prost::Message;

use crate::prompb::{Label, Sample};
use crate::promql::eval::Answer;
use crate::source::RawSeries;

/// The media type of a compact answer.
pub const MEDIA_TYPE: &str = "application/vnd.sketch-proxy.matrix.v1+protobuf";

/// A compact answer.
#[derive(Clone, PartialEq, Message)]
pub struct CompactAnswer {
    /// Its series.
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<CompactSeries>,
    /// The answer's warnings.
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

/// One series of a compact answer.
#[derive(Clone, PartialEq, Message)]
pub struct CompactSeries {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The first timestamp (ms), then each one's distance from the one before.
    #[prost(sint64, repeated, tag = "2")]
    pub time_deltas: Vec<i64>,
    /// One value per timestamp.
    #[prost(double, repeated, tag = "3")]
    pub values: Vec<f64>,
}

/// Whether a request's `Accept` names the compact type.
pub fn accepted(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.split(';').next().is_some_and(|t| t.trim() == MEDIA_TYPE))
}

/// `answer` (a vector's samples at `at_ms`) encoded, or `None` for a scalar or string.
pub fn encode(answer: &Answer, at_ms: i64, warnings: &[String]) -> Option<Vec<u8>> {
    let series = match answer {
        Answer::Matrix(series) => series
            .iter()
            .map(|s| CompactSeries {
                labels: s.labels.iter().cloned().collect(),
                time_deltas: deltas(s.points.iter().map(|p| p.t)),
                values: s.points.iter().map(|p| p.v).collect(),
            })
            .collect(),
        Answer::Vector(samples) => samples
            .iter()
            .map(|(labels, v)| CompactSeries {
                labels: labels.iter().cloned().collect(),
                time_deltas: vec![at_ms],
                values: vec![*v],
            })
            .collect(),
        Answer::Scalar(_) | Answer::String(_) => return None,
    };
    Some(
        CompactAnswer {
            series,
            warnings: warnings.to_vec(),
        }
        .encode_to_vec(),
    )
}

/// The series and warnings of a compact answer.
pub fn decode(bytes: &[u8]) -> Result<(Vec<RawSeries>, Vec<String>), String> {
    let answer = CompactAnswer::decode(bytes).map_err(|e| e.to_string())?;
    let series = answer
        .series
        .into_iter()
        .map(|s| {
            if s.time_deltas.len() != s.values.len() {
                return Err(format!(
                    "a series with {} timestamps and {} values",
                    s.time_deltas.len(),
                    s.values.len()
                ));
            }
            let mut t = 0i64;
            let samples = s
                .time_deltas
                .iter()
                .zip(s.values)
                .map(|(d, value)| {
                    t = t.wrapping_add(*d);
                    Sample { value, timestamp: t }
                })
                .collect();
            Ok(RawSeries {
                labels: s.labels,
                samples,
            })
        })
        .collect::<Result<Vec<RawSeries>, String>>()?;
    Ok((series, answer.warnings))
}

fn deltas(times: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut previous = 0i64;
    times
        .map(|t| {
            let d = t.wrapping_sub(previous);
            previous = t;
            d
        })
        .collect()
}

#[cfg(test)]
mod tests;
