//! Stage `fan_out`: the read endpoints other than `query` and `query_range` over
//! several endpoints (`downstream.endpoints`): series, labels, label values,
//! metadata, exemplars, rules and alerts. The request goes to every endpoint
//! `storeMatch[]` selects, in parallel, within `query.endpoint_timeout`, unchanged but
//! for `storeMatch[]`, `Accept-Encoding` and the rewrites of `rewrite`; the answers'
//! `data` are merged as one Prometheus holding everything would answer: external labels
//! added, replica labels dropped, the union deduplicated and sorted as Prometheus sorts
//! (series by their labels, names and values as strings), `warnings` joined.
//! `buildinfo` is the first endpoint's that answers.
//!
//! An endpoint that fails is left out when a replica of it answered (the answer is
//! whole); else, with `partial_response`, the answer is partial (a warning names it,
//! `Cache-Control: no-store`), and without, its error is the answer. A matcher on an
//! external label (in `match[]` or an exemplar query) is checked in the proxy
//! (`rewrite`): endpoints do not store those labels and would wrongly answer nothing.

mod exemplars;
mod rewrite;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use http_body_util::BodyExt as _;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use promql_parser::label::Matchers;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::stages::json;
use crate::api::{ApiError, Endpoint, Thanos};
use crate::downstream::{Downstream, DownstreamError};
use crate::endpoints::{self, bounded, uncovered};
use crate::metrics::EndpointLabels;
use crate::prompb::Label;
use crate::state::Runtime;

/// What is merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// `/api/v1/series`: label sets.
    Series,
    /// `/api/v1/labels`: label names.
    Labels,
    /// `/api/v1/label/<name>/values`.
    Values(String),
    /// `/api/v1/metadata`: per metric, its distinct metadata entries; `limit` metrics
    /// at most.
    Metadata(Option<usize>),
    /// `/api/v1/query_exemplars`: per series, its exemplars.
    Exemplars,
    /// `/api/v1/rules`: rule groups.
    Rules,
    /// `/api/v1/alerts`.
    Alerts,
    /// `/api/v1/status/buildinfo`: the first answer.
    First,
}

impl Merge {
    /// The merge for `endpoint`, if it is one that fans out.
    pub fn of(endpoint: Endpoint, label_name: Option<&str>, limit: Option<usize>) -> Option<Self> {
        match endpoint {
            Endpoint::Series => Some(Self::Series),
            Endpoint::Labels => Some(Self::Labels),
            Endpoint::LabelValues => label_name.map(|n| Self::Values(n.to_owned())),
            Endpoint::Metadata => Some(Self::Metadata(limit)),
            Endpoint::QueryExemplars => Some(Self::Exemplars),
            Endpoint::Rules => Some(Self::Rules),
            Endpoint::Alerts => Some(Self::Alerts),
            Endpoint::BuildInfo => Some(Self::First),
            _ => None,
        }
    }
}

impl Merge {
    /// Whether the answer does not depend on the data's time range (rules, alerts,
    /// metadata, build information): every endpoint is asked.
    fn is_timeless(&self) -> bool {
        matches!(self, Self::Metadata(_) | Self::Rules | Self::Alerts | Self::First)
    }
}

/// One endpoint and its client.
#[derive(Debug)]
pub struct Target {
    /// The endpoint.
    pub endpoint: Arc<endpoints::Endpoint>,
    /// Its client.
    pub client: Downstream,
}

/// What the request's parameters ask of a fan-out.
#[derive(Debug)]
pub struct Asked {
    /// The matchers of its selectors (`match[]`, or the exemplar query's).
    pub selectors: Vec<Matchers>,
    /// `partial_response`, resolved against the configuration.
    pub partial: bool,
    /// Thanos' parameters.
    pub thanos: Thanos,
    /// Its `start` and `end`, ms.
    pub range_ms: (i64, i64),
}

impl Default for Asked {
    fn default() -> Self {
        Self {
            selectors: Vec::new(),
            partial: true,
            thanos: Thanos::default(),
            range_ms: (i64::MIN, i64::MAX),
        }
    }
}

/// One endpoint's `data`.
#[derive(Debug)]
pub struct Part<'a> {
    target: &'a Target,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct Answer {
    data: Option<Box<RawValue>>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// `labels` as the merged answer carries them ([`endpoints::Endpoint::relabel`]).
fn relabel(
    target: &Target,
    replicas: &[String],
    labels: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let labels = labels
        .into_iter()
        .map(|(name, value)| Label { name, value })
        .collect();
    target
        .endpoint
        .relabel(replicas, labels)
        .into_iter()
        .map(|l| (l.name, l.value))
        .collect()
}

/// Sends the request to every target and merges the answers; `health` learns which
/// endpoints answered.
pub async fn fan_out(
    runtime: &Runtime,
    health: &Family<EndpointLabels, Gauge>,
    merge: Merge,
    parts: &Parts,
    path_and_query: &str,
    asked: &Asked,
    body: Bytes,
) -> Result<Response, ApiError> {
    let partial = asked.partial;
    let external = external_matcher(&runtime.targets, &asked.selectors);
    // Each target's request: unchanged, or rewritten; `None`: not asked.
    let requests: Vec<(&Target, String, Bytes)> = runtime
        .targets
        .iter()
        .filter(|t| {
            t.endpoint.selected(&asked.thanos.store_match)
                && (merge.is_timeless() || t.endpoint.holds(asked.range_ms.0, asked.range_ms.1))
        })
        .filter_map(|t| {
            // The values of an external label: whether it has a series at all.
            let presence = match &merge {
                Merge::Values(name) if t.endpoint.external.contains_key(name) => Some(name.as_str()),
                _ => None,
            };
            // storeMatch[] names this proxy's endpoints, not an endpoint's own stores.
            let store_match = !asked.thanos.store_match.is_empty();
            if external.is_none() && presence.is_none() && !store_match {
                return Some((t, path_and_query.to_owned(), body.clone()));
            }
            let selectors = match external {
                Some(_) => Some(rewrite::matches_for(t, &asked.selectors)?),
                None => None,
            };
            let set = selectors.map(|selectors| match merge {
                Merge::Exemplars => ("query", vec![rewrite::exemplar_query(&selectors)]),
                _ => ("match[]", selectors),
            });
            let (path_and_query, body) = rewrite::rewritten(
                parts,
                path_and_query,
                &body,
                presence,
                set.as_ref().map(|(name, values)| (*name, values.as_slice())),
            );
            Some((t, path_and_query, body))
        })
        .collect();
    let targets: Vec<&Target> = requests.iter().map(|(t, _, _)| *t).collect();
    if targets.is_empty() && merge == Merge::First {
        return Err(ApiError::BadData("storeMatch[] selects no endpoint".to_owned()));
    }
    let timeout = runtime.config.query.endpoint_timeout;
    // All answers of one request together hold at most `query.max_read_bytes`.
    let budget = runtime.config.query.max_read_bytes;
    let endpoints = targets.len();
    let part_limit = usize::try_from(budget / (endpoints.max(1) as u64)).unwrap_or(usize::MAX);
    // The answers are read here: identity encoding, whatever the client accepts.
    let mut headers = parts.headers.clone();
    headers.remove(http::header::ACCEPT_ENCODING);
    let headers = &headers;
    // Collected first: a stream over a lazy map of borrowing closures is not `Send`.
    let asks: Vec<_> = requests
        .iter()
        .map(|(t, path_and_query, body)| async move {
            let read = async {
                let response = t
                    .client
                    .forward(parts.method.clone(), path_and_query, headers, body.clone())
                    .await?;
                let status = response.status();
                #[allow(
                    clippy::disallowed_methods,
                    reason = "bounded: the body is wrapped in Limited (part_limit)"
                )]
                let bytes = http_body_util::Limited::new(response.into_body(), part_limit)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(|e| {
                        let why = if e.is::<http_body_util::LengthLimitError>() {
                            format!(
                                "the answer is larger than {part_limit} bytes, its share of query.max_read_bytes ({budget}) over {endpoints} endpoints"
                            )
                        } else {
                            e.to_string()
                        };
                        ApiError::Execution(format!("{}: reading the answer: {why}", t.client.url()))
                    })?;
                Ok::<_, ApiError>((status, bytes))
            };
            tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
                Err(ApiError::Downstream(DownstreamError::Timeout {
                    url: format!("{} (query.endpoint_timeout)", t.client.url()),
                    timeout,
                }))
            })
        })
        .collect();
    let mut data: Vec<Part<'_>> = Vec::new();
    let mut warnings: BTreeSet<String> = BTreeSet::new();
    let mut failed: Vec<(usize, String, Response)> = Vec::new();
    let mut answered = vec![Some(false); targets.len()];
    let answers = bounded(asks, runtime.config.query.endpoint_concurrency).await;
    for (i, (target, answer)) in targets.iter().zip(answers).enumerate() {
        health
            .get_or_create(&EndpointLabels {
                endpoint: target.client.url(),
            })
            .set(i64::from(
                answer.as_ref().is_ok_and(|(status, _)| !status.is_server_error()),
            ));
        let bytes = match answer {
            Ok((StatusCode::OK, bytes)) => bytes,
            // Prometheus' answer to nothing to answer (`query_exemplars` without a
            // selector).
            Ok((StatusCode::NO_CONTENT, _)) => {
                answered[i] = Some(true);
                continue;
            }
            // The endpoint's own error, as it gave it.
            Ok((status, bytes)) => {
                failed.push((
                    i,
                    format!("{} (status {status})", target.client.url()),
                    crate::http::rescue::relay(status, bytes.to_vec()),
                ));
                continue;
            }
            Err(error) => {
                failed.push((
                    i,
                    format!("{} ({error})", target.client.url()),
                    crate::http::rescue(error),
                ));
                continue;
            }
        };
        if merge == Merge::First {
            return Ok(json(StatusCode::OK, bytes.to_vec()));
        }
        let answer: Answer = match serde_json::from_slice(&bytes) {
            Ok(answer) => answer,
            Err(e) => {
                let error = ApiError::Execution(format!("{}: unreadable answer: {e}", target.client.url()));
                failed.push((i, error.to_string(), crate::http::rescue(error)));
                continue;
            }
        };
        warnings.extend(answer.warnings);
        answered[i] = Some(true);
        data.push(Part {
            target,
            data: answer
                .data
                .unwrap_or_else(|| RawValue::from_string("null".to_owned()).unwrap_or_default()),
        });
    }
    let replicas = asked
        .thanos
        .replica_labels
        .as_ref()
        .unwrap_or(&runtime.config.query.replica_labels);
    let shards: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| t.endpoint.shard_key(i, replicas))
        .collect();
    let missing = uncovered(&shards, &answered);
    failed.retain(|(i, name, _)| {
        let left_out = missing.contains(i);
        if !left_out {
            tracing::warn!(endpoint = %name, "endpoint failed; a replica answered for it");
        }
        left_out
    });
    if !failed.is_empty() && (!partial || data.is_empty()) {
        return Ok(failed.swap_remove(0).2);
    }
    if data.is_empty() && answered.contains(&Some(true)) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let partial_answer = !failed.is_empty();
    warnings.extend(
        failed
            .iter()
            .map(|(_, name, _)| super::stages::partial_warning(name)),
    );
    let warnings: Vec<String> = warnings.into_iter().collect();
    let unreadable =
        |e: serde_json::Error| ApiError::Execution(format!("unreadable answer from an endpoint: {e}"));
    let body = match merge {
        Merge::Series => envelope(merge_series(&data, replicas).map_err(unreadable)?, &warnings),
        Merge::Labels => envelope(merge_names(&data, replicas).map_err(unreadable)?, &warnings),
        Merge::Values(name) => envelope(
            merge_values(&data, &name, replicas).map_err(unreadable)?,
            &warnings,
        ),
        Merge::Metadata(limit) => envelope(merge_metadata(&data, limit).map_err(unreadable)?, &warnings),
        Merge::Exemplars => envelope(
            exemplars::merge_exemplars(&data, replicas).map_err(unreadable)?,
            &warnings,
        ),
        Merge::Rules => envelope(
            rules::merge_rules(&data, replicas).map_err(unreadable)?,
            &warnings,
        ),
        Merge::Alerts => envelope(
            rules::merge_alerts(&data, replicas).map_err(unreadable)?,
            &warnings,
        ),
        // An answer was returned as it came; none came only when every endpoint failed.
        Merge::First => {
            return match failed.pop() {
                Some((_, _, response)) => Ok(response),
                None => Err(ApiError::Execution("no endpoint answered".to_owned())),
            };
        }
    };
    let mut response = json(StatusCode::OK, body);
    if partial_answer {
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

/// Prometheus' success envelope around `data`, with `warnings`.
fn envelope<T: serde::Serialize>(data: T, warnings: &[String]) -> Vec<u8> {
    crate::api::wire::to_go_json(&crate::api::wire::Envelope {
        status: "success",
        data: Some(data),
        error_type: None,
        error: None,
        warnings,
    })
}

/// The first external label name a selector matches on.
fn external_matcher(targets: &[Target], selectors: &[Matchers]) -> Option<String> {
    let names: BTreeSet<&String> = targets.iter().flat_map(|t| t.endpoint.external.keys()).collect();
    for parsed in selectors {
        let all = parsed.matchers.iter().chain(parsed.or_matchers.iter().flatten());
        for m in all {
            if names.contains(&m.name) {
                return Some(m.name.clone());
            }
        }
    }
    None
}

fn merge_series(
    data: &[Part<'_>],
    replicas: &[String],
) -> Result<Vec<BTreeMap<String, String>>, serde_json::Error> {
    let mut all: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
    for part in data {
        let sets: Option<Vec<BTreeMap<String, String>>> = serde_json::from_str(part.data.get())?;
        all.extend(
            sets.into_iter()
                .flatten()
                .map(|labels| relabel(part.target, replicas, labels)),
        );
    }
    Ok(all.into_iter().collect())
}

fn merge_names(data: &[Part<'_>], replicas: &[String]) -> Result<Vec<String>, serde_json::Error> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for part in data {
        let names: Option<Vec<String>> = serde_json::from_str(part.data.get())?;
        let names = names.unwrap_or_default();
        if !names.is_empty() {
            all.extend(part.target.endpoint.external.keys().cloned());
        }
        all.extend(names);
    }
    all.retain(|n| !replicas.contains(n));
    Ok(all.into_iter().collect())
}

/// One metadata entry, fields in Prometheus' order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct MetricMetadata {
    #[serde(rename = "type")]
    kind: String,
    help: String,
    unit: String,
}

fn merge_metadata(
    data: &[Part<'_>],
    limit: Option<usize>,
) -> Result<BTreeMap<String, Vec<MetricMetadata>>, serde_json::Error> {
    let mut all: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
    for part in data {
        let answer: Option<BTreeMap<String, Vec<MetricMetadata>>> = serde_json::from_str(part.data.get())?;
        for (metric, entries) in answer.into_iter().flatten() {
            let kept = all.entry(metric).or_default();
            for entry in entries {
                if !kept.contains(&entry) {
                    kept.push(entry);
                }
            }
        }
    }
    if let Some(limit) = limit {
        // Prometheus keeps any `limit` metrics; these are the first by name.
        all = all.into_iter().take(limit).collect();
    }
    Ok(all)
}

/// Values of the label `name`. An endpoint with `name` among its external labels was
/// asked for its metric names instead: the external value counts when it has a series
/// (its storage does not hold its external labels). Replica labels have no values.
fn merge_values(
    data: &[Part<'_>],
    name: &str,
    replicas: &[String],
) -> Result<Vec<String>, serde_json::Error> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    if replicas.iter().any(|r| r == name) {
        return Ok(Vec::new());
    }
    for part in data {
        let values: Option<Vec<String>> = serde_json::from_str(part.data.get())?;
        let values = values.unwrap_or_default();
        match part.target.endpoint.external.get(name) {
            Some(external) if !values.is_empty() => {
                all.insert(external.clone());
            }
            Some(_) => {}
            None => all.extend(values),
        }
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests;
