//! [`RemoteRead`]: raw series from a Prometheus over `POST /api/v1/read`, asking for
//! STREAMED_XOR_CHUNKS first (Prometheus sends its stored chunks as they are, several
//! times cheaper for it; see [`streamed`]) and taking SAMPLES (snappy protobuf, what
//! Prometheus' own remote-read client uses) from servers without it.
//!
//! Traps handled (docs of the wire contract: `remote-protocols.md` in the project's
//! research): no hints are sent, since 2.42 lets them override the range; the status is
//! checked before decompressing, since errors come as plain text marked snappy; labels
//! are read as bytes; `or` selectors become one query per group; and every returned
//! series is checked against the matchers again, since external labels are only half
//! handled by the server.

use crate::outbound::Outbound;
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Request, Uri};
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;

use super::client::{Gathered, Http, or_groups};
use super::{Fetch, RawSeries, ReadScope, Selection, SeriesFetch, Source, SourceError, client, streamed};
use crate::prompb::{Label, LabelMatcher, Query, ReadRequest, ReadResponse, ReadSeries};

/// `ResponseType` SAMPLES: decoded samples, snappy protobuf.
const SAMPLES: i32 = 0;
/// `ResponseType` STREAMED_XOR_CHUNKS: raw chunks in CRC'd frames.
const STREAMED_XOR_CHUNKS: i32 = 1;

/// A Prometheus read over remote read.
#[derive(Debug, Clone)]
pub struct RemoteRead {
    http: Http,
    /// Downstream's `/api/v1/series`.
    series: Http,
    max_samples: u64,
    /// Response types asked for, best first.
    modes: Vec<i32>,
}

impl RemoteRead {
    /// A client for the Prometheus at `base` (its `/api/v1/read`), giving up after
    /// `timeout`, refusing answers over `max_samples` samples or `max_bytes` bytes.
    pub fn new(
        base: &Uri,
        client: &Outbound,
        timeout: Duration,
        max_samples: u64,
        max_bytes: u64,
    ) -> Result<Self, SourceError> {
        let text = format!("{}/api/v1/read", base.to_string().trim_end_matches('/'));
        text.parse::<Uri>().map_err(|e| SourceError::Unreachable {
            url: text.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let base = base.to_string();
        let series = format!("{}/api/v1/series", base.trim_end_matches('/'));
        Ok(Self {
            http: Http::new(text, client.clone(), timeout, max_bytes),
            series: Http::new(series, client.clone(), timeout, max_bytes),
            max_samples,
            modes: vec![STREAMED_XOR_CHUNKS, SAMPLES],
        })
    }

    /// Asks for SAMPLES only, as a server without streamed read answers.
    pub fn samples_only(mut self) -> Self {
        self.modes = vec![SAMPLES];
        self
    }

    async fn fetch(&self, selections: &[Selection]) -> Result<Vec<Vec<RawSeries>>, SourceError> {
        // One query per `or` group; `owners[i]` is the selection query i serves.
        let mut queries = Vec::new();
        let mut owners = Vec::new();
        for (i, selection) in selections.iter().enumerate() {
            for group in or_groups(&selection.matchers) {
                queries.push(Query {
                    start_timestamp_ms: selection.start_ms,
                    end_timestamp_ms: selection.end_ms,
                    matchers: group.into_iter().map(wire_matcher).collect(),
                });
                owners.push(i);
            }
        }
        let ranges: Vec<(i64, i64)> = queries
            .iter()
            .map(|q| (q.start_timestamp_ms, q.end_timestamp_ms))
            .collect();
        let request = ReadRequest {
            queries,
            accepted_response_types: self.modes.clone(),
        };
        let mut gathered = Gathered::new(selections.len(), self.max_samples);
        for (query, series) in self.exchange(request, &ranges).await? {
            let owner = owners[query];
            gathered.add(owner, &selections[owner], raw_series(series))?;
        }
        Ok(gathered.finish())
    }

    /// Sends `request` and decodes the answer in whichever mode the server chose: the
    /// series with the index of the query each answers.
    async fn exchange(
        &self,
        request: ReadRequest,
        ranges: &[(i64, i64)],
    ) -> Result<Vec<(usize, ReadSeries)>, SourceError> {
        let http = &self.http;
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| http.malformed(format!("cannot compress the request: {e}")))?;
        let builder = Request::post("/")
            .header(CONTENT_ENCODING, "snappy")
            .header(ACCEPT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0");
        let (status, headers, body) = http.exchange(builder, body).await?;
        // Errors are plain text even when marked snappy: look at the status first.
        if !status.is_success() {
            return Err(http.refused(status, String::from_utf8_lossy(&body).trim().to_owned()));
        }
        let streamed = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-streamed-protobuf"));
        if streamed {
            return streamed::decode(&body, ranges).map_err(|e| http.malformed(e));
        }
        let length = snap::raw::decompress_len(&body).map_err(|e| http.malformed(format!("snappy: {e}")))?;
        if length as u64 > http.max_bytes() {
            return Err(http.too_many_bytes());
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| http.malformed(format!("snappy: {e}")))?;
        let response =
            ReadResponse::decode(raw.as_slice()).map_err(|e| http.malformed(format!("protobuf: {e}")))?;
        if response.results.len() != ranges.len() {
            return Err(http.malformed(format!(
                "{} results for {} queries",
                response.results.len(),
                ranges.len()
            )));
        }
        Ok(response
            .results
            .into_iter()
            .enumerate()
            .flat_map(|(i, r)| r.timeseries.into_iter().map(move |s| (i, s)))
            .collect())
    }
}

impl Source for RemoteRead {
    fn select<'a>(&'a self, selections: &'a [Selection], _: &'a ReadScope) -> Fetch<'a> {
        Box::pin(self.fetch(selections))
    }

    fn series<'a>(&'a self, selection: &'a Selection, _: &'a ReadScope) -> SeriesFetch<'a> {
        Box::pin(client::series(&self.series, selection))
    }
}

fn wire_matcher(m: &Matcher) -> LabelMatcher {
    let r#type = match &m.op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Re(_) => 2,
        MatchOp::NotRe(_) => 3,
    };
    LabelMatcher {
        r#type,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// Labels as text; bytes that are not UTF-8 are replaced, as Go prints them.
fn raw_series(series: ReadSeries) -> RawSeries {
    RawSeries {
        labels: series
            .labels
            .into_iter()
            .map(|l| Label {
                name: String::from_utf8_lossy(&l.name).into_owned(),
                value: String::from_utf8_lossy(&l.value).into_owned(),
            })
            .collect(),
        samples: series.samples,
    }
}
