//! The status page's Compare: a query run over the last hour once from sketches and once
//! exactly (`X-Sketch: off`), both through the proxy's own query API as a client would
//! ask (results cache bypassed; past the door, which the caller passed), and the relative
//! error of every point against the bound the plugins state. PromSketch's comparison,
//! built in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{HeaderMap, Request, header};
use http_body_util::BodyExt as _;
use serde::Serialize;
use tower::ServiceExt as _;

use crate::state::Proxy;

/// The largest answer read back: an hour at a minute's step is 61 points a series, so
/// this is some 100,000 series; a larger query is refused rather than held twice.
const ANSWER_LIMIT: usize = 16 << 20;

/// The comparison.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// The query.
    pub query: String,
    /// The labels of the series plotted (the first of the exact answer).
    pub shown: String,
    /// Steps, Unix seconds.
    pub times: Vec<f64>,
    /// The shown series from sketches, per step (`null`: no point).
    pub sketch_values: Vec<Option<f64>>,
    /// The shown series exactly.
    pub exact_values: Vec<Option<f64>>,
    /// Per step, the largest relative error over every series.
    pub relative_errors: Vec<Option<f64>>,
    /// The largest relative error of all (an exact 0 answered otherwise counts as the
    /// sketch's value against 1).
    pub max_relative_error: f64,
    /// Series of the exact answer the sketch answer lacks, and the other way round.
    pub missing_series: usize,
    /// The bound the plugins state for the query's functions, in words.
    pub bound: String,
    /// That bound as a number (0: exact).
    pub bound_value: f64,
    /// How the sketch request went.
    pub sketch: Run,
    /// How the exact request went.
    pub exact: Run,
}

/// One of the two requests.
#[derive(Debug, Serialize)]
pub struct Run {
    /// Seconds to the whole answer.
    pub seconds: f64,
    /// The path that answered (`X-Answered-By`).
    pub path: String,
}

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// One of the two requests failed.
    #[error("the {which} request answered {status}: {body}")]
    Failed {
        /// `sketch` or `exact`.
        which: &'static str,
        /// Its status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// An answer was not a range answer.
    #[error("unreadable {which} answer: {reason}")]
    Unreadable {
        /// `sketch` or `exact`.
        which: &'static str,
        /// Why.
        reason: String,
    },
}

/// Compares `query` over the hour up to now at a 60 s step; `asked` are the caller's
/// headers (credentials are passed on).
pub async fn compare(proxy: &Arc<Proxy>, query: &str, asked: &HeaderMap) -> Result<Comparison, CompareError> {
    let runtime = proxy.runtime();
    let base = runtime.config.web.route_prefix.trim_end_matches('/').to_owned();
    let end = crate::clock::now_ms() / 60_000 * 60;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("start", &(end - 3600).to_string())
        .append_pair("end", &end.to_string())
        .append_pair("step", "60")
        .finish();
    let ask = |sketch_off: bool| {
        let mut request = Request::post(format!("{base}/api/v1/query_range"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CACHE_CONTROL, "no-cache");
        // What tells tenants apart downstream is kept.
        for name in [header::AUTHORIZATION, header::COOKIE] {
            if let Some(value) = asked.get(&name) {
                request = request.header(name, value);
            }
        }
        if let Some(value) = asked.get("x-scope-orgid") {
            request = request.header("x-scope-orgid", value);
        }
        if sketch_off {
            request = request.header("x-sketch", "off");
        }
        let request = request.body(Body::from(form.clone()));
        let proxy = proxy.clone();
        async move {
            let which = if sketch_off { "exact" } else { "sketch" };
            let request = request.map_err(|e| CompareError::Unreadable {
                which,
                reason: e.to_string(),
            })?;
            let started = Instant::now();
            // Past the door: the caller came through it.
            let response = crate::http::inside(proxy)
                .oneshot(request)
                .await
                .unwrap_or_else(|e| match e {});
            let status = response.status();
            let path = response
                .headers()
                .get(crate::http::PATH_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            #[expect(
                clippy::disallowed_methods,
                reason = "bounded: the body is wrapped in Limited (the proxy's own answer)"
            )]
            let collected = http_body_util::Limited::new(response.into_body(), ANSWER_LIMIT)
                .collect()
                .await;
            let bytes = collected
                .map_err(|e| CompareError::Unreadable {
                    which,
                    reason: e.to_string(),
                })?
                .to_bytes();
            let seconds = started.elapsed().as_secs_f64();
            if !status.is_success() {
                return Err(CompareError::Failed {
                    which,
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            let points = points(&bytes).map_err(|reason| CompareError::Unreadable { which, reason })?;
            Ok((Run { seconds, path }, points))
        }
    };
    let (sketch, sketched) = ask(false).await?;
    let (exact, exactly) = ask(true).await?;
    let times: Vec<f64> = (0..=60).map(|i| (end - 3600 + i * 60) as f64).collect();
    let mut relative_errors = vec![None; times.len()];
    let mut max_relative_error: f64 = 0.0;
    let missing_series = exactly.keys().filter(|k| !sketched.contains_key(*k)).count()
        + sketched.keys().filter(|k| !exactly.contains_key(*k)).count();
    for (labels, want) in &exactly {
        let got = sketched.get(labels);
        for (i, t) in times.iter().enumerate() {
            let (Some(e), Some(s)) = (want.get(&key(*t)), got.and_then(|g| g.get(&key(*t)))) else {
                continue;
            };
            let error = if e == s || (e.is_nan() && s.is_nan()) {
                0.0
            } else if e.is_nan() || s.is_nan() || e.is_infinite() || s.is_infinite() {
                // One a number, the other not: as wrong as can be, and JSON has no Inf.
                f64::MAX
            } else {
                // Relative, or against 1 where the exact answer is 0.
                ((s - e) / if *e == 0.0 { 1.0 } else { e.abs() }).abs()
            };
            if error.is_finite() {
                let slot = relative_errors[i].get_or_insert(0.0_f64);
                *slot = slot.max(error);
                max_relative_error = max_relative_error.max(error);
            }
        }
    }
    let shown = exactly.keys().next().cloned().unwrap_or_default();
    let values = |answer: &Answered| -> Vec<Option<f64>> {
        times
            .iter()
            .map(|t| answer.get(&shown).and_then(|s| s.get(&key(*t)).copied()))
            .collect()
    };
    // The largest bound of the plugin functions the query calls (sketches or not).
    let bound_value = runtime
        .grammar
        .parse(query)
        .map(|expr| {
            let served = |f: &str| runtime.plugins.for_function(f).is_some();
            let (sketched, exact) = crate::promql::sketch_plan::sketch_calls(&expr, &served, 0);
            sketched
                .iter()
                .map(|c| c.function)
                .chain(exact.iter().map(|(f, _)| *f))
                .filter_map(|f| {
                    let plugin = runtime.plugins.for_function(f)?;
                    plugin
                        .info()
                        .functions
                        .iter()
                        .find(|i| i.name == f)
                        .map(|i| i.bound.relative)
                })
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    Ok(Comparison {
        query: query.to_owned(),
        sketch_values: values(&sketched),
        exact_values: values(&exactly),
        shown,
        times,
        relative_errors,
        max_relative_error,
        missing_series,
        bound: if bound_value == 0.0 {
            "exact".to_owned()
        } else {
            crate::plugin_host::percent(bound_value)
        },
        bound_value,
        sketch,
        exact,
    })
}

/// A range answer's points: by series labels (as JSON), by step (ms).
type Answered = BTreeMap<String, BTreeMap<i64, f64>>;

fn key(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

fn points(body: &[u8]) -> Result<Answered, String> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let result = json["data"]["result"].as_array().ok_or("no result")?;
    let mut out = Answered::new();
    for series in result {
        let values = series["values"].as_array().ok_or("no values")?;
        let points = out.entry(series["metric"].to_string()).or_default();
        for p in values {
            let t = p[0].as_f64().ok_or("a time")?;
            let v = match p[1].as_str().ok_or("a value")? {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                text => text.parse().map_err(|_| format!("value {text:?}"))?,
            };
            points.insert(key(t), v);
        }
    }
    Ok(out)
}
