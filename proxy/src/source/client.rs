//! What both sources share: one bounded HTTP exchange with a timeout, `or` groups, and
//! the checks every returned series passes (matchers again, the sample budget).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use promql_parser::label::{MatchOp, Matcher, Matchers};

use super::{RawSeries, Selection, SourceError};
use crate::downstream::error_chain;
use crate::outbound::Outbound;
use crate::prompb::Label;
use crate::promql;

/// An HTTP client for one URL with a timeout and a body limit.
#[derive(Debug, Clone)]
pub(super) struct Http {
    client: Outbound,
    /// Where requests go.
    pub url: String,
    timeout: Duration,
    max_bytes: u64,
}

impl Http {
    pub(super) fn new(url: String, client: Outbound, timeout: Duration, max_bytes: u64) -> Self {
        Self {
            client,
            url,
            timeout,
            max_bytes,
        }
    }

    /// Sends `request` (its URI is ours) and reads the whole answer, up to the byte
    /// limit, within the timeout.
    pub(super) async fn exchange(
        &self,
        request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), SourceError> {
        let request: Request<Full<Bytes>> = request
            .uri(self.url.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("sketch-proxy/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.malformed(e.to_string()))?;
        let limit = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.unreachable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            #[expect(
                clippy::disallowed_methods,
                reason = "bounded: the body is wrapped in Limited"
            )]
            let collected = Limited::new(body, limit).collect().await;
            let bytes = collected.map_err(|_| self.too_many_bytes())?.to_bytes();
            Ok::<_, SourceError>((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    /// `body` decompressed when `headers` say it is gzip, within the byte limit.
    pub(super) fn inflate(&self, headers: &HeaderMap, body: Bytes) -> Result<Bytes, SourceError> {
        use std::io::Read as _;
        let gzip = headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        if !gzip {
            return Ok(body);
        }
        let limit = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
        flate2::read::GzDecoder::new(&body[..])
            .take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| self.malformed(format!("gzip: {e}")))?;
        if out.len() as u64 > self.max_bytes {
            return Err(self.too_many_bytes());
        }
        Ok(Bytes::from(out))
    }

    pub(super) fn too_many_bytes(&self) -> SourceError {
        SourceError::TooMuch {
            what: "bytes",
            limit: self.max_bytes,
        }
    }

    pub(super) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub(super) fn unreachable(&self, reason: String) -> SourceError {
        SourceError::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }

    pub(super) fn malformed(&self, reason: String) -> SourceError {
        SourceError::Malformed {
            url: self.url.clone(),
            reason,
        }
    }

    pub(super) fn refused(&self, status: StatusCode, message: String) -> SourceError {
        SourceError::Refused {
            url: self.url.clone(),
            status: status.as_u16(),
            message,
        }
    }
}

/// The matcher sets to send for `matchers`: one, or one per `or` group with the common
/// matchers added.
pub(super) fn or_groups(matchers: &Matchers) -> Vec<Vec<&Matcher>> {
    if matchers.or_matchers.is_empty() {
        vec![matchers.matchers.iter().collect()]
    } else {
        matchers
            .or_matchers
            .iter()
            .map(|g| matchers.matchers.iter().chain(g).collect())
            .collect()
    }
}

/// Gathers returned series per selection: each is checked against its selection's
/// matchers again (servers half-handle external labels) and counted against the
/// sample budget; `finish` sorts them and drops repeats (`or` groups can overlap).
#[derive(Debug)]
pub(super) struct Gathered {
    out: Vec<Vec<RawSeries>>,
    samples: u64,
    max_samples: u64,
}

impl Gathered {
    pub(super) fn new(selections: usize, max_samples: u64) -> Self {
        Self {
            out: vec![Vec::new(); selections],
            samples: 0,
            max_samples,
        }
    }

    pub(super) fn add(
        &mut self,
        selection: usize,
        of: &Selection,
        series: RawSeries,
    ) -> Result<(), SourceError> {
        let value_of = |name: &str| {
            series
                .labels
                .iter()
                .find(|l| l.name == name)
                .map_or("", |l| l.value.as_str())
        };
        if !promql::selects(&of.matchers, value_of) {
            return Ok(());
        }
        self.samples += series.samples.len() as u64;
        if self.samples > self.max_samples {
            return Err(SourceError::TooMuch {
                what: "samples",
                limit: self.max_samples,
            });
        }
        self.out[selection].push(series);
        Ok(())
    }

    pub(super) fn finish(mut self) -> Vec<Vec<RawSeries>> {
        for series in &mut self.out {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            series.dedup_by(|a, b| a.labels == b.labels);
        }
        self.out
    }
}

/// The label sets of the series `selection` selects in its range, from downstream's
/// `/api/v1/series` (an index lookup: no samples are read). `http` points at that path.
pub(super) async fn series(http: &Http, selection: &Selection) -> Result<Vec<Vec<Label>>, SourceError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        status: String,
        #[serde(default)]
        data: Vec<std::collections::BTreeMap<String, String>>,
        #[serde(default)]
        error: Option<String>,
    }
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for group in or_groups(&selection.matchers) {
            form.append_pair("match[]", &selector(&group));
        }
        form.append_pair("start", &(selection.start_ms as f64 / 1000.0).to_string());
        form.append_pair("end", &(selection.end_ms as f64 / 1000.0).to_string());
        form.finish().into_bytes()
    };
    let builder = Request::post("/").header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let (status, _, bytes) = http.exchange(builder, body).await?;
    let answer: Answer = serde_json::from_slice(&bytes)
        .map_err(|_| http.refused(status, String::from_utf8_lossy(&bytes).trim().to_owned()))?;
    if answer.status != "success" || !status.is_success() {
        return Err(http.refused(status, answer.error.unwrap_or_default()));
    }
    let mut out: Vec<Vec<Label>> = answer
        .data
        .into_iter()
        .map(|labels| {
            labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect()
        })
        .filter(|labels: &Vec<Label>| {
            promql::selects(&selection.matchers, |name| {
                labels
                    .iter()
                    .find(|l| l.name == name)
                    .map_or("", |l| l.value.as_str())
            })
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// `{name="value", …}` for `matchers`, values quoted for PromQL.
pub(super) fn selector(matchers: &[&Matcher]) -> String {
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Re(_) => "=~",
                MatchOp::NotRe(_) => "!~",
            };
            format!("{}{op}{}", m.name, quote(&m.value))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// A PromQL double-quoted string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
