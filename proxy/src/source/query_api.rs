//! [`QueryApi`]: raw series from a downstream without remote read (the Thanos Querier),
//! read as promxy reads them: an instant query of a range-vector selector,
//! `{matchers}[<end − start>]` at `end`, whose answer holds the raw samples of
//! `[start, end]` (closed at both ends in Prometheus 2.x).
//!
//! What this cannot see: stale markers. The query API leaves them out of range vectors,
//! so a series that ended still counts as present for the lookback delta after its last
//! sample. Remote read has no such gap; it is preferred whenever the downstream serves it.

use crate::outbound::Outbound;
use std::time::Duration;

use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE};
use http::{Request, Uri};
use promql_parser::label::Matcher;
use serde::Deserialize;

use super::client::{Gathered, Http, or_groups, selector};
use super::{EvalFetch, Fetch, RawSeries, ReadScope, Selection, SeriesFetch, Source, SourceError, client};
use crate::api::wire::compact;
use crate::prompb::{Label, Sample};

/// A downstream read through `/api/v1/query`.
#[derive(Debug, Clone)]
pub struct QueryApi {
    http: Http,
    /// Downstream's `/api/v1/query_range`, for queries pushed down.
    range: Http,
    /// Downstream's `/api/v1/series`.
    series: Http,
    max_samples: u64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Read once its type is known: a scalar's is no list of series.
    result: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    /// An instant vector's one value.
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl QueryApi {
    /// A client for the downstream at `base`, with the same limits as [`super::RemoteRead`].
    pub fn new(base: &Uri, client: &Outbound, timeout: Duration, max_samples: u64, max_bytes: u64) -> Self {
        let base = base.to_string();
        let base = base.trim_end_matches('/');
        Self {
            http: Http::new(format!("{base}/api/v1/query"), client.clone(), timeout, max_bytes),
            range: Http::new(
                format!("{base}/api/v1/query_range"),
                client.clone(),
                timeout,
                max_bytes,
            ),
            series: Http::new(
                format!("{base}/api/v1/series"),
                client.clone(),
                timeout,
                max_bytes,
            ),
            max_samples,
        }
    }

    async fn fetch(
        &self,
        selections: &[Selection],
        scope: &ReadScope,
    ) -> Result<Vec<Vec<RawSeries>>, SourceError> {
        let mut gathered = Gathered::new(selections.len(), self.max_samples);
        for (i, selection) in selections.iter().enumerate() {
            for group in or_groups(&selection.matchers) {
                let read = self.read(&group, selection.start_ms, selection.end_ms, scope.passed_on());
                for series in read.await? {
                    gathered.add(i, selection, series)?;
                }
            }
        }
        Ok(gathered.finish())
    }

    /// The raw samples in `[start, end]` of the series `matchers` select.
    /// `passed_on` are Thanos' parameters for the downstream (`max_source_resolution`,
    /// `engine`).
    async fn read(
        &self,
        matchers: &[&Matcher],
        start: i64,
        end: i64,
        passed_on: &[(String, String)],
    ) -> Result<Vec<RawSeries>, SourceError> {
        let http = &self.http;
        let range_ms = (end - start).max(1);
        let query = format!("{}[{range_ms}ms]", selector(matchers));
        let time = (end as f64 / 1000.0).to_string();
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("query", &query).append_pair("time", &time);
            for (name, value) in passed_on {
                form.append_pair(name, value);
            }
            form.finish()
        };
        let (series, _) = answered(http, body, &["matrix"]).await?;
        Ok(series)
    }

    /// `query` evaluated by the downstream itself (a subtree pushed down): at every
    /// step of `[start_ms, end_ms]` (`/api/v1/query_range`), or at `end_ms` when they
    /// are equal (`/api/v1/query`). Its series with their points, as raw series; more
    /// than the sample limit is an error.
    pub async fn evaluate(
        &self,
        query: &str,
        range: (i64, i64, i64),
        passed_on: &[(String, String)],
    ) -> Result<Vec<RawSeries>, SourceError> {
        Ok(self.evaluate_warned(query, range, passed_on).await?.0)
    }

    /// [`QueryApi::evaluate`], with the warnings the answer carried (a sketch-proxy's
    /// bound, another's partial answer).
    pub async fn evaluate_warned(
        &self,
        query: &str,
        (start_ms, end_ms, step_ms): (i64, i64, i64),
        passed_on: &[(String, String)],
    ) -> Result<(Vec<RawSeries>, Vec<String>), SourceError> {
        let seconds = |ms: i64| (ms as f64 / 1000.0).to_string();
        let instant = start_ms == end_ms;
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("query", query);
            if instant {
                form.append_pair("time", &seconds(end_ms));
            } else {
                form.append_pair("start", &seconds(start_ms))
                    .append_pair("end", &seconds(end_ms))
                    .append_pair("step", &seconds(step_ms));
            }
            for (name, value) in passed_on {
                form.append_pair(name, value);
            }
            form.finish()
        };
        let http = if instant { &self.http } else { &self.range };
        let (series, warnings) = answered(http, body, &["matrix", "vector"]).await?;
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        if samples as u64 > self.max_samples {
            return Err(http.malformed(format!(
                "{samples} samples answer the pushed query, over the limit of {}",
                self.max_samples
            )));
        }
        Ok((series, warnings))
    }
}

/// The series of a query API answer to the form `body`, whose result must be one of
/// `types`, and its warnings.
async fn answered(
    http: &Http,
    body: String,
    types: &[&str],
) -> Result<(Vec<RawSeries>, Vec<String>), SourceError> {
    // Another sketch-proxy answers compactly, and anything may gzip its answer: a
    // day's panel moves as a thirtieth of its JSON.
    let builder = Request::post("/")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, format!("{}, application/json;q=0.5", compact::MEDIA_TYPE))
        .header(ACCEPT_ENCODING, "gzip");
    let (status, headers, bytes) = http.exchange(builder, body.into_bytes()).await?;
    let bytes = http.inflate(&headers, bytes)?;
    let compact = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(compact::MEDIA_TYPE.as_bytes()));
    if compact && status.is_success() {
        return compact::decode(&bytes, usize::try_from(http.max_bytes()).unwrap_or(usize::MAX))
            .map_err(|e| http.malformed(format!("compact answer: {e}")));
    }
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
        if status.is_success() {
            http.malformed(format!("JSON: {e}"))
        } else {
            http.refused(status, String::from_utf8_lossy(&bytes).trim().to_owned())
        }
    })?;
    if answer.status != "success" || !status.is_success() {
        return Err(http.refused(status, answer.error.unwrap_or_default()));
    }
    let data = answer.data.ok_or_else(|| http.malformed("no data".to_owned()))?;
    if !types.contains(&data.result_type.as_str()) {
        return Err(http.malformed(format!(
            "a {} instead of a {}",
            data.result_type,
            types.join(" or ")
        )));
    }
    let result: Vec<MatrixSeries> =
        serde_json::from_str(data.result.get()).map_err(|e| http.malformed(format!("JSON: {e}")))?;
    let series = result
        .into_iter()
        .map(|s| {
            let samples = s
                .values
                .into_iter()
                .chain(s.value)
                .map(|(t, v)| {
                    let value = parse_value(&v).ok_or_else(|| http.malformed(format!("value {v:?}")))?;
                    Ok(Sample {
                        value,
                        timestamp: (t * 1000.0).round() as i64,
                    })
                })
                .collect::<Result<Vec<Sample>, SourceError>>()?;
            Ok(RawSeries {
                labels: s
                    .metric
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples,
            })
        })
        .collect::<Result<Vec<RawSeries>, SourceError>>()?;
    Ok((series, answer.warnings))
}

impl Source for QueryApi {
    fn select<'a>(&'a self, selections: &'a [Selection], scope: &'a ReadScope) -> Fetch<'a> {
        Box::pin(self.fetch(selections, scope))
    }

    fn series<'a>(&'a self, selection: &'a Selection, _: &'a ReadScope) -> SeriesFetch<'a> {
        Box::pin(client::series(&self.series, selection))
    }

    fn evaluate_query<'a>(
        &'a self,
        query: &'a str,
        range: (i64, i64, i64),
        scope: &'a ReadScope,
    ) -> Option<EvalFetch<'a>> {
        Some(Box::pin(async move {
            let (series, warnings) = self.evaluate_warned(query, range, scope.passed_on()).await?;
            for warning in warnings {
                scope.pass_on_warning(warning);
            }
            Ok(series)
        }))
    }

    fn answers_queries(&self) -> bool {
        true
    }

    fn reads_remotely(&self) -> bool {
        false
    }
}

/// A sample value as Prometheus writes it.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}
