//! The Prometheus HTTP API as the proxy serves it: which endpoints exist, which methods
//! each accepts, and the checks the proxy makes before anything reaches downstream.

pub mod error;
pub mod params;
pub mod thanos;
pub mod wire;

use http::Method;

pub use error::ApiError;
use params::{Form, MAX_TIME, MIN_TIME, parse_duration, parse_time, parse_time_param};
pub use thanos::Thanos;

use promql_parser::parser::value::ValueType;

use crate::promql::eval::Range;
use crate::promql::{self, Grammar};

/// An endpoint of the Prometheus query API (paths relative to `/api/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/query`: instant query.
    Query,
    /// `/query_range`: range query.
    QueryRange,
    /// `/query_exemplars`.
    QueryExemplars,
    /// `/format_query`.
    FormatQuery,
    /// `/series`.
    Series,
    /// `/labels`.
    Labels,
    /// `/label/<name>/values`.
    LabelValues,
    /// `/metadata`.
    Metadata,
    /// `/rules`.
    Rules,
    /// `/alerts`.
    Alerts,
    /// `/status/buildinfo`.
    BuildInfo,
    /// Any other `/api/v1/...` path: forwarded untouched, any method.
    Other,
}

impl Endpoint {
    /// Every endpoint with a fixed route.
    pub const ROUTED: [Endpoint; 11] = [
        Endpoint::Query,
        Endpoint::QueryRange,
        Endpoint::QueryExemplars,
        Endpoint::FormatQuery,
        Endpoint::Series,
        Endpoint::Labels,
        Endpoint::LabelValues,
        Endpoint::Metadata,
        Endpoint::Rules,
        Endpoint::Alerts,
        Endpoint::BuildInfo,
    ];

    /// Route below `/api/v1`, in the router's syntax; also the `handler` metric label.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Query => "/query",
            Endpoint::QueryRange => "/query_range",
            Endpoint::QueryExemplars => "/query_exemplars",
            Endpoint::FormatQuery => "/format_query",
            Endpoint::Series => "/series",
            Endpoint::Labels => "/labels",
            Endpoint::LabelValues => "/label/{name}/values",
            Endpoint::Metadata => "/metadata",
            Endpoint::Rules => "/rules",
            Endpoint::Alerts => "/alerts",
            Endpoint::BuildInfo => "/status/buildinfo",
            Endpoint::Other => "/{*rest}",
        }
    }

    /// The full path pattern, as Prometheus names its handlers; the `handler` label
    /// of the proxy's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Query => "/api/v1/query",
            Endpoint::QueryRange => "/api/v1/query_range",
            Endpoint::QueryExemplars => "/api/v1/query_exemplars",
            Endpoint::FormatQuery => "/api/v1/format_query",
            Endpoint::Series => "/api/v1/series",
            Endpoint::Labels => "/api/v1/labels",
            Endpoint::LabelValues => "/api/v1/label/:name/values",
            Endpoint::Metadata => "/api/v1/metadata",
            Endpoint::Rules => "/api/v1/rules",
            Endpoint::Alerts => "/api/v1/alerts",
            Endpoint::BuildInfo => "/api/v1/status/buildinfo",
            Endpoint::Other => "/api/v1/*",
        }
    }

    /// The endpoint serving `path` (relative to `/api/v1`).
    pub fn from_api_path(path: &str) -> Endpoint {
        if path.starts_with("/label/") && path.ends_with("/values") && path.matches('/').count() == 3 {
            return Endpoint::LabelValues;
        }
        Endpoint::ROUTED
            .into_iter()
            .find(|e| e.route() == path)
            .unwrap_or(Endpoint::Other)
    }

    /// Methods Prometheus 2.42 registers for the endpoint (OPTIONS, which it answers on
    /// every path for CORS, is forwarded separately).
    pub fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const GET_POST: &[Method] = &[Method::GET, Method::POST];
        match self {
            Endpoint::Query
            | Endpoint::QueryRange
            | Endpoint::QueryExemplars
            | Endpoint::FormatQuery
            | Endpoint::Labels => GET_POST,
            // DELETE reaches Prometheus' "not implemented" answer, as it would directly.
            Endpoint::Series => &[Method::GET, Method::POST, Method::DELETE],
            Endpoint::LabelValues
            | Endpoint::Metadata
            | Endpoint::Rules
            | Endpoint::Alerts
            | Endpoint::BuildInfo => GET,
            Endpoint::Other => &[],
        }
    }

    /// Whether the endpoint runs a PromQL evaluation downstream, and so counts against
    /// the concurrent-query limit.
    pub fn is_query(self) -> bool {
        matches!(self, Endpoint::Query | Endpoint::QueryRange)
    }
}

/// What the checks decided about a request that may go on.
#[derive(Debug, PartialEq)]
pub enum Checked {
    /// Forward it downstream unchanged.
    Forward,
    /// Answer with this `format_query` result; Prometheus cannot parse the query.
    Formatted(String),
    /// A `query` or `query_range`: forward it or evaluate it locally.
    Query(Box<QueryRequest>),
}

/// A checked `query` or `query_range` request.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// The parsed query.
    pub expr: promql_parser::parser::Expr,
    /// Its evaluation range (`start == end`, step 1 for an instant query).
    pub range: Range,
    /// The request's `timeout`, if any.
    pub timeout: Option<std::time::Duration>,
    /// Functions it uses that only the proxy knows (its own, and custom plugins').
    pub proxy_functions: Vec<String>,
    /// `sketch=off`: answer exactly, for side-by-side checks.
    pub sketch_off: bool,
    /// A `query_range` (an instant query answers a vector).
    pub is_range: bool,
    /// The asker (a top sketch-proxy) takes a compact answer (`wire::compact`; set
    /// after the checks, by the caller).
    pub compact: bool,
    /// Thanos' parameters (set after the checks, by the caller).
    pub thanos: Thanos,
}

/// Validates a request the way Prometheus 2.42 would, in the same order, up to and
/// including its PromQL, so that bad PromQL never reaches downstream and the first
/// error reported is the one Prometheus would report.
pub fn check(
    endpoint: Endpoint,
    form: &Form,
    label_name: Option<&str>,
    grammar: &Grammar,
) -> Result<Checked, ApiError> {
    let parse = |query: &str| grammar.parse(query);
    let shape = &grammar.shape;
    match endpoint {
        Endpoint::Query => {
            let now = params::now_nanos();
            let time = parse_time_param(form, "time", now).map_err(|e| invalid_param("time", e))?;
            let timeout = check_timeout(form)?;
            let expr = parse(form.get("query")).map_err(|e| invalid_param("query", e))?;
            return Ok(Checked::Query(Box::new(QueryRequest {
                proxy_functions: grammar.proxy_functions_used(&expr),
                expr,
                range: Range::instant(nanos_to_ms(time)),
                timeout,
                sketch_off: form.get("sketch") == "off",
                compact: false,
                is_range: false,
                thanos: Thanos::default(),
            })));
        }
        Endpoint::QueryRange => {
            let start = parse_time(form.get("start")).map_err(|e| invalid_param("start", e))?;
            let end = parse_time(form.get("end")).map_err(|e| invalid_param("end", e))?;
            if end < start {
                return Err(invalid_param(
                    "end",
                    "end timestamp must not be before start time",
                ));
            }
            let step = parse_duration(form.get("step")).map_err(|e| invalid_param("step", e))?;
            if step <= 0 {
                return Err(invalid_param(
                    "step",
                    "zero or negative query resolution step widths are not accepted. Try a positive integer",
                ));
            }
            if (end - start) / i128::from(step) > 11_000 {
                return Err(ApiError::BadData(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".to_owned(),
                ));
            }
            let timeout = check_timeout(form)?;
            let expr = parse(form.get("query")).map_err(bad_data)?;
            if !matches!(expr.value_type(), ValueType::Scalar | ValueType::Vector) {
                return Err(ApiError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(expr.value_type())
                )));
            }
            return Ok(Checked::Query(Box::new(QueryRequest {
                proxy_functions: grammar.proxy_functions_used(&expr),
                expr,
                range: Range {
                    start_ms: nanos_to_ms(start),
                    end_ms: nanos_to_ms(end),
                    step_ms: (step / 1_000_000).max(1),
                },
                timeout,
                sketch_off: form.get("sketch") == "off",
                compact: false,
                is_range: true,
                thanos: Thanos::default(),
            })));
        }
        Endpoint::QueryExemplars => {
            let (start, end) = check_time_range(form)?;
            if end < start {
                return Err(ApiError::BadData(
                    "end timestamp must not be before start timestamp".to_owned(),
                ));
            }
            let expr = parse(form.get("query")).map_err(bad_data)?;
            refuse_proxy_functions(grammar, &expr)?;
        }
        Endpoint::FormatQuery => {
            let expr = parse(form.get("query")).map_err(|e| invalid_param("query", e))?;
            if !grammar.proxy_functions_used(&expr).is_empty() {
                return Ok(Checked::Formatted(expr.prettify()));
            }
        }
        Endpoint::Series => {
            let matches = form.all("match[]");
            if matches.is_empty() {
                return Err(ApiError::BadData("no match[] parameter provided".to_owned()));
            }
            check_time_range(form)?;
            for m in matches {
                promql::parse_selector_within(m, shape).map_err(|e| invalid_param("match[]", e))?;
            }
        }
        Endpoint::Labels | Endpoint::LabelValues => {
            if let Some(name) = label_name
                && !params::is_valid_label_name(name)
            {
                return Err(ApiError::BadData(format!(
                    "invalid label name: {}",
                    params::go_quote(name)
                )));
            }
            check_time_range(form)?;
            for m in form.all("match[]") {
                promql::parse_selector_within(m, shape).map_err(bad_data)?;
            }
        }
        Endpoint::Metadata | Endpoint::Rules | Endpoint::Alerts | Endpoint::BuildInfo | Endpoint::Other => {}
    }
    Ok(Checked::Forward)
}

fn check_time_range(form: &Form) -> Result<(params::UnixNanos, params::UnixNanos), ApiError> {
    let start = parse_time_param(form, "start", MIN_TIME).map_err(|e| invalid_param("start", e))?;
    let end = parse_time_param(form, "end", MAX_TIME).map_err(|e| invalid_param("end", e))?;
    Ok((start, end))
}

fn check_timeout(form: &Form) -> Result<Option<std::time::Duration>, ApiError> {
    let timeout = form.get("timeout");
    if timeout.is_empty() {
        return Ok(None);
    }
    let nanos = parse_duration(timeout).map_err(|e| invalid_param("timeout", e))?;
    Ok(Some(std::time::Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(0),
    )))
}

/// The request's `start` and `end` in ms, the widest range where absent (or invalid:
/// [`check`] reports those).
pub fn time_bounds_ms(form: &Form) -> (i64, i64) {
    let start = parse_time_param(form, "start", MIN_TIME).unwrap_or(MIN_TIME);
    let end = parse_time_param(form, "end", MAX_TIME).unwrap_or(MAX_TIME);
    (nanos_to_ms(start), nanos_to_ms(end))
}

/// Unix nanoseconds to milliseconds, rounding down like Go's `timestamp.FromTime`.
fn nanos_to_ms(nanos: params::UnixNanos) -> i64 {
    i64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// Prometheus' names of value types in messages.
fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

fn refuse_proxy_functions(grammar: &Grammar, expr: &promql_parser::parser::Expr) -> Result<(), ApiError> {
    match grammar.proxy_functions_used(expr).as_slice() {
        [] => Ok(()),
        names => Err(ApiError::Execution(format!(
            "{} {} known only to sketch-proxy, and exemplar queries are answered by downstream",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
        ))),
    }
}

/// Prometheus' `invalidParamError`: `invalid parameter "<name>": <cause>`.
fn invalid_param(name: &str, cause: impl std::fmt::Display) -> ApiError {
    ApiError::BadData(format!("invalid parameter {}: {cause}", params::go_quote(name)))
}

fn bad_data(cause: impl std::fmt::Display) -> ApiError {
    ApiError::BadData(cause.to_string())
}

#[cfg(test)]
mod tests;
