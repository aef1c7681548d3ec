//! The stages of the request path, in order. Each takes what the previous produced.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::OwnedSemaphorePermit;

use crate::api::params::Form;
use crate::api::{ApiError, Endpoint, QueryRequest};
use crate::config::QueryMode;
use crate::metrics::{AnsweredByLabels, DownstreamErrorLabels, HandlerLabels, Metrics, RequestLabels};
use crate::promql::eval::value::{Labels, Matrix, Point, Series};
use crate::promql::eval::{Answer, Range, Sketches};
use crate::promql::sketch_plan;
use crate::query::{self, QueryLimits};
use crate::sketches::StoreSketches;
use crate::state::{Proxy, Runtime};

/// Stage `observe`: counts and times every request and logs it.
pub async fn observe(State(proxy): State<Arc<Proxy>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let handler = handler_label(&proxy, req.uri().path());
    let method = req.method().clone();
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status();
    proxy
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            handler,
            method: method.to_string(),
            code: status.as_str().to_owned(),
        })
        .inc();
    proxy
        .metrics
        .request_duration
        .get_or_create(&HandlerLabels { handler })
        .observe(elapsed.as_secs_f64());
    count_answer(&proxy, &response, elapsed.as_secs_f64());
    tracing::debug!(handler, %method, status = status.as_u16(), duration_ms = elapsed.as_secs_f64() * 1e3, "served");
    response
}

/// Counts which paths answered a query (one count per path named in the answer's
/// path header), and records it in the status page's history.
fn count_answer(proxy: &Proxy, response: &Response, seconds: f64) {
    use crate::status::history::{Answered, CacheOutcome};
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(paths) = header(PATH_HEADER) {
        let named = |path: Path| paths.split(',').any(|p| p == path.name());
        let answered = if named(Path::Sketch) {
            Answered::Sketch
        } else if named(Path::Engine) {
            Answered::Engine
        } else {
            Answered::Downstream
        };
        let cache = match header(super::cached::CACHE_HEADER) {
            Some("hit") => Some(CacheOutcome::Hit),
            Some("partial") => Some(CacheOutcome::Partial),
            Some("miss") => Some(CacheOutcome::Miss),
            _ => None,
        };
        proxy
            .history
            .record(crate::clock::now_ms() / 1000, answered, seconds, cache);
        for path in [Path::Downstream, Path::Engine, Path::Sketch] {
            if paths.split(',').any(|p| p == path.name()) {
                proxy
                    .metrics
                    .queries
                    .get_or_create(&AnsweredByLabels {
                        answered_by: path.name(),
                    })
                    .inc();
            }
        }
    }
}

/// The route a path belongs to, as a bounded metric label.
pub fn handler_label(proxy: &Proxy, path: &str) -> &'static str {
    let runtime = proxy.runtime();
    let prefix = runtime.config.web.route_prefix.trim_end_matches('/');
    let path = path.strip_prefix(prefix).unwrap_or(path);
    if path == "/api/v1/write" && proxy.ingest.is_some() {
        return "/api/v1/write";
    }
    let Some(api_path) = path.strip_prefix("/api/v1") else {
        return match path {
            "/-/healthy" => "/-/healthy",
            "/-/ready" => "/-/ready",
            "/-/reload" => "/-/reload",
            "/metrics" => "/metrics",
            _ => "other",
        };
    };
    Endpoint::from_api_path(api_path).label()
}

/// Stage `read_body`: the whole body, refused with 413 past `limit` bytes.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the bounded read: the body is wrapped in Limited"
    )]
    let collected = limited.collect().await;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::BodyTooLarge { limit }),
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
    }
}

/// Stage `read_body` for remote write: like [`read_body`], but a body over `limit` is
/// read to its end (discarded, up to 16 × `limit`) before the 413. A sender still
/// writing when the answer comes sees a reset instead, and Prometheus' sender retries
/// a reset for ever, where it gives up on a 413.
pub async fn read_body_draining(mut body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let mut kept = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    let cap = limit.saturating_mul(16);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len() as u64;
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > cap {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(kept.freeze())
}

/// Stage `decode`: the parameters, merged the way Go's `r.FormValue` sees them.
pub fn decode(parts: &Parts, body: &Bytes) -> Form {
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    // Go reads form bodies of POST, PUT and PATCH only.
    let body_has_form = is_form && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    Form::new(parts.uri.query(), body_has_form.then_some(body.as_ref()))
}

/// A concurrency slot, released (and counted down) on drop.
#[derive(Debug)]
pub struct QuerySlot {
    _permit: OwnedSemaphorePermit,
    proxy: Arc<Proxy>,
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        self.proxy.metrics.queries_in_flight.dec();
    }
}

/// Stage `admit`: a slot for query endpoints. When all are taken the query waits, as
/// in Prometheus' query gate, up to `limits.max_query_wait` and with at most
/// `limits.max_queued_queries` others; past either, 503.
pub async fn admit(
    proxy: &Arc<Proxy>,
    runtime: &Runtime,
    endpoint: Endpoint,
) -> Result<Option<QuerySlot>, ApiError> {
    if !endpoint.is_query() {
        return Ok(None);
    }
    let limits = &runtime.config.limits;
    let refused = |why: String| {
        proxy.metrics.queries_rejected.inc();
        ApiError::TooManyQueries {
            limit: limits.max_concurrent_queries,
            why,
        }
    };
    let permit = match runtime.query_slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let waiting = Waiting::join(proxy, &runtime.queries_waiting);
            if waiting.ahead >= limits.max_queued_queries {
                return Err(refused(format!(
                    "{} are waiting, the limit (limits.max_queued_queries)",
                    waiting.ahead
                )));
            }
            let slot = runtime.query_slots.clone().acquire_owned();
            match tokio::time::timeout(limits.max_query_wait, slot).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(refused(format!(
                        "none came free within {:?} (limits.max_query_wait)",
                        limits.max_query_wait
                    )));
                }
            }
        }
    };
    proxy.metrics.queries_in_flight.inc();
    Ok(Some(QuerySlot {
        _permit: permit,
        proxy: proxy.clone(),
    }))
}

/// A query's place in the wait for a slot, left on drop (also when its client goes).
struct Waiting<'a> {
    proxy: &'a Proxy,
    count: &'a std::sync::atomic::AtomicUsize,
    /// How many were waiting before it.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn join(proxy: &'a Proxy, count: &'a std::sync::atomic::AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        proxy.metrics.queries_waiting.inc();
        Self { proxy, count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.proxy.metrics.queries_waiting.dec();
    }
}

/// Stage `forward`: the request, unchanged, to downstream; its answer, unchanged, back.
pub async fn forward(
    proxy: &Proxy,
    runtime: &Runtime,
    endpoint: Endpoint,
    parts: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path_and_query = path_and_query(runtime, &parts);
    let handler = endpoint.label();
    let started = Instant::now();
    let result = runtime
        .downstream
        .forward(parts.method, &path_and_query, &parts.headers, body)
        .await;
    record_downstream(&proxy.metrics, handler, started, result.as_ref().err());
    Ok(result?.map(Body::new))
}

/// The request's path below the route prefix, with its query string: what goes
/// downstream.
pub fn path_and_query(runtime: &Runtime, parts: &Parts) -> String {
    let prefix = runtime.config.web.route_prefix.trim_end_matches('/');
    let path = parts.uri.path();
    let path = path.strip_prefix(prefix).unwrap_or(path);
    match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

fn record_downstream(
    metrics: &Metrics,
    handler: &'static str,
    started: Instant,
    error: Option<&crate::downstream::DownstreamError>,
) {
    metrics
        .downstream_duration
        .get_or_create(&HandlerLabels { handler })
        .observe(started.elapsed().as_secs_f64());
    if let Some(e) = error {
        metrics
            .downstream_errors
            .get_or_create(&DownstreamErrorLabels {
                handler,
                reason: e.reason(),
            })
            .inc();
    }
}

/// A JSON response with Prometheus' content type.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Which path answered a query: the `X-Answered-By` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Forwarded unchanged to downstream.
    Downstream,
    /// Evaluated by the proxy's engine over raw data from downstream.
    Engine,
    /// Range functions answered from sketches.
    Sketch,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Downstream => "downstream",
            Path::Engine => "engine",
            Path::Sketch => "sketch",
        }
    }
}

/// The response header naming the path that answered a query.
pub const PATH_HEADER: &str = "x-answered-by";

/// The response header naming what endpoints answered of a query (push-down): each
/// subtree with the endpoints asked, `; `-separated.
pub const PUSHED_HEADER: &str = "x-pushed-down";

/// Adds the path header to a query's response.
pub fn mark_path(response: Response, path: Path) -> Response {
    mark_paths(response, &[path])
}

/// Adds the path header naming every path that answered, comma-separated.
fn mark_paths(mut response: Response, paths: &[Path]) -> Response {
    let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
    if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
        response.headers_mut().insert(PATH_HEADER, value);
    }
    response
}

/// The sketches a query may be answered from: none with `sketch=off` or
/// `X-Sketch: off`, nor when no call of it is a sketch candidate or nothing is sketched.
pub fn sketches_for(
    proxy: &Proxy,
    runtime: &Runtime,
    request: &QueryRequest,
    headers: &HeaderMap,
) -> Option<Arc<dyn Sketches>> {
    let off = request.sketch_off
        || headers
            .get("x-sketch")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"));
    // Functions only a plugin knows are computed by their plugin whatever the store.
    let plugin_only = request
        .proxy_functions
        .iter()
        .any(|f| runtime.grammar.is_custom(f));
    let use_store = !off && proxy.sketches.series_count() > 0;
    let min_window_ms = i64::try_from(runtime.config.sketches.min_window.as_millis()).unwrap_or(i64::MAX);
    let plugins = runtime.plugins.clone();
    let served = |f: &str| plugins.for_function(f).is_some();
    let candidates = use_store && {
        let (calls, _) = sketch_plan::sketch_calls(&request.expr, &served, min_window_ms);
        !calls.is_empty()
    };
    (candidates || plugin_only).then(|| {
        Arc::new(StoreSketches {
            store: proxy.sketches.clone(),
            plugins,
            use_store,
            rules: runtime.sketch_rules.clone(),
            min_window_ms,
        }) as Arc<dyn Sketches>
    })
}

/// Whether the proxy evaluates `request` itself: always in `local` mode, and in `auto`
/// when it uses a function downstream does not know or sketches may answer it.
pub fn answers_locally(runtime: &Runtime, request: &QueryRequest, sketches: bool) -> bool {
    runtime.config.query.mode == QueryMode::Local
        || !request.proxy_functions.is_empty()
        || sketches
        || fans_out(runtime)
}

/// Whether reads go to several endpoints: no single downstream can answer a query.
pub fn fans_out(runtime: &Runtime) -> bool {
    runtime.config.fans_out()
}

/// Stage `evaluate`: the query answered by the proxy's engine, from sketches where
/// they cover. An answer that used sketches says so in its warnings, with the bound.
pub async fn evaluate(
    proxy: &Proxy,
    runtime: &Runtime,
    request: QueryRequest,
    sketches: Option<Arc<dyn Sketches>>,
    slot: Option<Arc<QuerySlot>>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let q = &runtime.config.query;
    let limits = QueryLimits {
        max_samples: q.max_samples,
        max_series: q.max_series,
        lookback: request.thanos.lookback_delta.unwrap_or(q.lookback_delta),
        timeout: q.timeout,
        push_down: q.push_down,
        own_functions: if q.push_down {
            crate::promql::PROXY_FUNCTIONS
                .iter()
                .map(ToString::to_string)
                .chain(runtime.grammar.custom().map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        },
    };
    let timeout = request.timeout.map_or(q.timeout, |t| t.min(q.timeout));
    let at_ms = request.range.start_ms;
    let range = request.range;
    let is_range = request.is_range;
    let compact = request.compact;
    let allowed = request
        .thanos
        .partial_response
        .unwrap_or(runtime.config.query.partial_response);
    let partial = crate::source::ReadScope::new(allowed)
        .with_replica_labels(request.thanos.replica_labels.clone())
        .with_store_match(request.thanos.store_match.clone())
        .with_passed_on(passed_on(&request, limits.lookback, allowed));
    let expr = Arc::new(request.expr);
    let run = |range| {
        query::evaluate(
            query::Reader {
                source: runtime.source.as_ref(),
                partial: &partial,
            },
            expr.clone(),
            range,
            &limits,
            timeout,
            proxy.metrics.local_queries_canceled.clone(),
            sketches.clone(),
            slot.clone().map(|s| s as query::Held),
        )
    };
    let result = run(range).await;
    proxy
        .metrics
        .local_query_duration
        .observe(started.elapsed().as_secs_f64());
    let (mut answer, served) = result.map_err(ApiError::Query)?;
    if is_range && !matches!(answer, Answer::Matrix(_)) {
        // Prometheus answers every range query with a matrix, one step or more.
        answer = Answer::Matrix(as_matrix(range, answer));
    }
    let warnings: Vec<String> = served
        .sketched
        .iter()
        .map(|(function, bound)| {
            if *bound == 0.0 {
                // Every window was small enough for the plugin to hold its samples.
                format!("{function} answered from sketches: exact (every window small enough to keep whole)")
            } else {
                format!(
                    "{function} answered from sketches: values within {} relative error of the exact answer",
                    format_bound(*bound)
                )
            }
        })
        .collect();
    let missing = partial.missing();
    let mut warnings = warnings;
    warnings.extend(served.computed.iter().map(|(function, bound)| {
        let accuracy = if *bound == 0.0 {
            "exact".to_owned()
        } else {
            format!("values within {} relative error", format_bound(*bound))
        };
        format!("{function} computed from raw samples by its plugin (no sketch covers it): {accuracy}")
    }));
    warnings.extend(missing.iter().map(|m| partial_warning(m)));
    warnings.extend(partial.passed_on_warnings());
    let encoding = tracing::info_span!("encode").entered();
    let compact = compact
        .then(|| crate::api::wire::compact::encode(&answer, at_ms, &warnings))
        .flatten();
    let is_compact = compact.is_some();
    let body = compact.unwrap_or_else(|| crate::api::wire::query_success(&answer, at_ms, &warnings));
    drop(encoding);
    let paths: &[Path] = match (served.sketched.is_empty(), served.exact_series) {
        (true, _) => &[Path::Engine],
        (false, 0) => &[Path::Sketch],
        (false, _) => &[Path::Sketch, Path::Engine],
    };
    let mut response = json(StatusCode::OK, body);
    // The answer's form follows Accept (wire::compact): caches must key on it.
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept"));
    if is_compact {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::api::wire::compact::MEDIA_TYPE),
        );
    }
    let mut response = mark_paths(response, paths);
    if !served.pushed.is_empty()
        && let Ok(value) = HeaderValue::from_str(&served.pushed.join("; "))
    {
        response.headers_mut().insert(PUSHED_HEADER, value);
    }
    response.extensions_mut().insert(served.stats);
    if !missing.is_empty() || partial.passed_on_doubt() {
        // As Thanos: a partial answer must not be cached by anyone; nor one built from
        // an endpoint's partial answer.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// What endpoints asked through their query API get besides the query: the request's
/// Thanos parameters, and what makes another proxy's (or a Thanos Querier's) answer
/// the one this evaluation would give: `sketch=off`, the lookback, whether a partial
/// answer is acceptable.
fn passed_on(request: &QueryRequest, lookback: std::time::Duration, partial: bool) -> Vec<(String, String)> {
    let mut pairs = request.thanos.passed_on.clone();
    if request.sketch_off {
        pairs.push(("sketch".to_owned(), "off".to_owned()));
    }
    pairs.push(("lookback_delta".to_owned(), format!("{}ms", lookback.as_millis())));
    pairs.push(("partial_response".to_owned(), partial.to_string()));
    pairs
}

/// The warning of an answer that lacks an endpoint's data.
pub fn partial_warning(missing: &str) -> String {
    format!("partial response: endpoint {missing} did not answer; the answer lacks its data")
}

/// `0.01` as `1%`.
fn format_bound(bound: f64) -> String {
    crate::plugin_host::percent(bound)
}

/// A range answer as series, sorted by labels: the engine answers a one-step range
/// (`start == end`) in an instant query's shape.
fn as_matrix(range: Range, answer: Answer) -> Matrix {
    match answer {
        Answer::Matrix(m) => m,
        Answer::Vector(v) => {
            let mut m: Matrix = v
                .into_iter()
                .map(|(labels, v)| Series {
                    labels,
                    points: vec![Point { t: range.start_ms, v }],
                })
                .collect();
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            m
        }
        Answer::Scalar(v) => vec![Series {
            labels: Labels::default(),
            points: vec![Point { t: range.start_ms, v }],
        }],
        Answer::String(_) => Matrix::new(),
    }
}
