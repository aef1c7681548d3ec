//! Stage `fan_out`: `series`, `labels`, `label/<name>/values` and `metadata` over several endpoints
//! (`downstream.endpoints`). The request goes unchanged to every endpoint in parallel;
//! the answers' `data` are merged as one Prometheus holding everything would answer:
//! external labels added, replica labels dropped, the union deduplicated and sorted
//! (series by their labels, names and values as strings), `warnings` joined. Any
//! endpoint failing fails the request (partial responses are the next step); a
//! `match[]` with a matcher on an external label is refused (501), since endpoints do
//! not store those labels and would wrongly answer nothing.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use bytes::Bytes;
use futures_util::future::join_all;
use http::StatusCode;
use http::request::Parts;
use http_body_util::BodyExt as _;
use serde_json::Value;

use super::stages::json;
use crate::api::{ApiError, Endpoint};
use crate::downstream::Downstream;
use crate::state::Runtime;

/// Answers bigger than this from one endpoint fail the request.
const MAX_PART_BYTES: usize = 256 << 20;

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
}

impl Merge {
    /// The merge for `endpoint`, if it is one that fans out.
    pub fn of(endpoint: Endpoint, label_name: Option<&str>, limit: Option<usize>) -> Option<Self> {
        match endpoint {
            Endpoint::Series => Some(Self::Series),
            Endpoint::Labels => Some(Self::Labels),
            Endpoint::LabelValues => label_name.map(|n| Self::Values(n.to_owned())),
            Endpoint::Metadata => Some(Self::Metadata(limit)),
            _ => None,
        }
    }
}

/// One endpoint's client and external labels.
#[derive(Debug)]
pub struct Target {
    /// Its client.
    pub client: Downstream,
    /// Its external labels.
    pub external: BTreeMap<String, String>,
}

/// What the request's parameters ask of a fan-out.
#[derive(Debug, Default)]
pub struct Asked {
    /// Its `match[]` selectors.
    pub matchers: Vec<String>,
    /// `partial_response`, resolved against the configuration.
    pub partial: bool,
    /// `dedup=false` (none) or `replicaLabels[]`, if given.
    pub replica_labels: Option<Vec<String>>,
}

/// Sends the request to every target and merges the answers.
pub async fn fan_out(
    runtime: &Runtime,
    merge: Merge,
    parts: &Parts,
    path_and_query: &str,
    asked: &Asked,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (matchers, partial) = (&asked.matchers, asked.partial);
    let targets = &runtime.targets;
    if let Some(name) = external_matcher(targets, matchers) {
        return Err(ApiError::NotFannedOut {
            path: format!(
                "{} with a matcher on the external label {name:?}",
                parts.uri.path()
            ),
        });
    }
    let body = &body;
    let asks = targets.iter().map(|t| async move {
        let response = t
            .client
            .forward(parts.method.clone(), path_and_query, &parts.headers, body.clone())
            .await?;
        let status = response.status();
        #[allow(
            clippy::disallowed_methods,
            reason = "bounded: the body is wrapped in Limited (MAX_PART_BYTES)"
        )]
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_PART_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| ApiError::Execution(format!("{}: reading the answer: {e}", t.client.url())))?;
        Ok::<_, ApiError>((status, bytes))
    });
    let mut data: Vec<(&Target, Value)> = Vec::new();
    let mut warnings: BTreeSet<String> = BTreeSet::new();
    let mut failed: Vec<(String, Response)> = Vec::new();
    for (target, answer) in targets.iter().zip(join_all(asks).await) {
        let bytes = match answer {
            Ok((StatusCode::OK, bytes)) => bytes,
            // The endpoint's own error, as it gave it.
            Ok((status, bytes)) => {
                failed.push((
                    format!("{} (status {status})", target.client.url()),
                    json(status, bytes.to_vec()),
                ));
                continue;
            }
            Err(error) => {
                failed.push((
                    format!("{} ({error})", target.client.url()),
                    crate::http::rescue(error),
                ));
                continue;
            }
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Execution(format!("{}: unreadable answer: {e}", target.client.url())))?;
        if let Some(w) = value["warnings"].as_array() {
            warnings.extend(w.iter().filter_map(|w| w.as_str().map(str::to_owned)));
        }
        data.push((target, value["data"].clone()));
    }
    if !failed.is_empty() && (!partial || failed.len() == targets.len()) {
        return Ok(failed.swap_remove(0).1);
    }
    let partial_answer = !failed.is_empty();
    warnings.extend(
        failed
            .iter()
            .map(|(name, _)| super::stages::partial_warning(name)),
    );
    let replicas = asked
        .replica_labels
        .as_ref()
        .unwrap_or(&runtime.config.query.replica_labels);
    let warnings: Vec<String> = warnings.into_iter().collect();
    let body = match merge {
        Merge::Series => envelope(merge_series(&data, replicas), &warnings),
        Merge::Labels => envelope(merge_names(&data, replicas), &warnings),
        Merge::Values(name) => envelope(merge_values(&data, &name), &warnings),
        Merge::Metadata(limit) => envelope(merge_metadata(&data, limit), &warnings),
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

/// The first external label name a `match[]` selector matches on.
fn external_matcher(targets: &[Target], matchers: &[String]) -> Option<String> {
    let names: BTreeSet<&String> = targets.iter().flat_map(|t| t.external.keys()).collect();
    for selector in matchers {
        let Ok(parsed) = crate::promql::parse_selector(selector) else {
            continue;
        };
        let all = parsed.matchers.iter().chain(parsed.or_matchers.iter().flatten());
        for m in all {
            if names.contains(&m.name) {
                return Some(m.name.clone());
            }
        }
    }
    None
}

fn merge_series(data: &[(&Target, Value)], replicas: &[String]) -> Vec<BTreeMap<String, String>> {
    let mut all: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
    for (target, value) in data {
        for series in value.as_array().into_iter().flatten() {
            let Some(object) = series.as_object() else {
                continue;
            };
            let mut labels: BTreeMap<String, String> = object
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            for (name, value) in &target.external {
                labels.entry(name.clone()).or_insert_with(|| value.clone());
            }
            labels.retain(|name, _| !replicas.contains(name));
            all.insert(labels);
        }
    }
    all.into_iter().collect()
}

fn merge_names(data: &[(&Target, Value)], replicas: &[String]) -> Vec<String> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for (target, value) in data {
        let names = value.as_array().into_iter().flatten().filter_map(|v| v.as_str());
        let answered = names.clone().next().is_some();
        all.extend(names.map(str::to_owned));
        if answered {
            all.extend(target.external.keys().cloned());
        }
    }
    all.retain(|n| !replicas.contains(n));
    all.into_iter().collect()
}

/// One metadata entry, fields in Prometheus' order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct MetricMetadata {
    #[serde(rename = "type")]
    kind: String,
    help: String,
    unit: String,
}

fn merge_metadata(data: &[(&Target, Value)], limit: Option<usize>) -> BTreeMap<String, Vec<MetricMetadata>> {
    let mut all: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
    for (_, value) in data {
        for (metric, entries) in value.as_object().into_iter().flatten() {
            let kept = all.entry(metric.clone()).or_default();
            for entry in entries.as_array().into_iter().flatten() {
                let Ok(entry) = serde_json::from_value::<MetricMetadata>(entry.clone()) else {
                    continue;
                };
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
    all
}

fn merge_values(data: &[(&Target, Value)], name: &str) -> Vec<String> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for (target, value) in data {
        match target.external.get(name) {
            // Its series all carry the external value.
            Some(external) => {
                all.insert(external.clone());
            }
            None => all.extend(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned)),
            ),
        }
    }
    all.into_iter().collect()
}
