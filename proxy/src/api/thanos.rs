//! The Thanos Querier's own request parameters, which Prometheus ignores:
//! `partial_response`, `dedup`, `replicaLabels[]`, `storeMatch[]`, `lookback_delta`,
//! and `max_source_resolution` and `engine`, which only Thanos endpoints act on and
//! are passed on to them.

use std::time::Duration;

use promql_parser::label::Matchers;

use super::params::{Form, go_quote, parse_duration};
use super::{ApiError, invalid_param};
use crate::promql;

/// Parameters passed unchanged to endpoints that read through the query API.
const PASSED_ON: [&str; 2] = ["max_source_resolution", "engine"];

/// What a request asked of Thanos' parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thanos {
    /// `partial_response`, if given.
    pub partial_response: Option<bool>,
    /// Replica labels the request chose: `dedup=false` (none), or `replicaLabels[]`.
    pub replica_labels: Option<Vec<String>>,
    /// `storeMatch[]`: only endpoints one of these selects (by `__address__` and
    /// external labels) are asked.
    pub store_match: Vec<Matchers>,
    /// `lookback_delta`, for local evaluation.
    pub lookback_delta: Option<Duration>,
    /// `max_source_resolution` and `engine`, as given.
    pub passed_on: Vec<(String, String)>,
}

impl Thanos {
    /// Reads them from `form`; a bad `storeMatch[]` or `lookback_delta` is an error.
    pub fn from_form(form: &Form) -> Result<Self, ApiError> {
        let mut store_match = Vec::new();
        for selector in form.all("storeMatch[]") {
            store_match.push(promql::parse_selector(selector).map_err(|e| invalid_param("storeMatch[]", e))?);
        }
        let lookback = form.get("lookback_delta");
        let lookback_delta = if lookback.is_empty() {
            None
        } else {
            let nanos = parse_duration(lookback).map_err(|e| invalid_param("lookback_delta", e))?;
            if nanos <= 0 {
                return Err(invalid_param(
                    "lookback_delta",
                    format!("{} is not a positive duration", go_quote(lookback)),
                ));
            }
            Some(Duration::from_nanos(nanos.unsigned_abs()))
        };
        Ok(Self {
            partial_response: partial_response(form),
            replica_labels: replica_labels(form),
            store_match,
            lookback_delta,
            passed_on: PASSED_ON
                .iter()
                .filter(|name| !form.get(name).is_empty())
                .map(|name| ((*name).to_owned(), form.get(name).to_owned()))
                .collect(),
        })
    }

    /// Whether the answer may differ from the default one (so it is not kept).
    pub fn changes_answer(&self) -> bool {
        self.replica_labels.is_some()
            || !self.store_match.is_empty()
            || self.lookback_delta.is_some()
            || !self.passed_on.is_empty()
    }
}

/// The `partial_response` parameter: `true`/`1` or `false`/`0`; anything else, or
/// none, leaves the configured default.
fn partial_response(form: &Form) -> Option<bool> {
    match form.get("partial_response") {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `dedup=false` (no replica labels: replicas stay apart) or `replicaLabels[]` (these
/// instead of the configured ones); `None` for neither.
fn replica_labels(form: &Form) -> Option<Vec<String>> {
    if matches!(form.get("dedup"), "false" | "0") {
        return Some(Vec::new());
    }
    let chosen: Vec<String> = form
        .all("replicaLabels[]")
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    (!chosen.is_empty()).then_some(chosen)
}
