//! The HTTP server. [`router`] assembles the whole request path in one place:
//!
//! ```text
//! door ─▶ gzip ─▶ observe ─▶ route ─▶ read_body ─▶ decode ─▶ check ─▶ collapse ─▶ cache ─▶ admit ─▶ forward
//!   │          │                                                                     └─▶ evaluate (query, query_range
//!   │          │                                                                           answered locally)
//!   │          │                              └─ errors ─▶ rescue (the one error → HTTP mapping)
//!   │          └─ ops: /-/healthy /-/ready /-/reload /metrics /api/v1/status/sketches
//!   │     └─ metrics and a log line for every request
//!   └─ TLS (in the server) and basic auth from --web.config.file
//! ```

mod cached;
pub mod collapse;
pub mod door;
pub mod fanout;
mod ops;
pub mod query_log;
mod rescue;
mod server;
mod stages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawPathParams, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, get};
use http::{Method, StatusCode};
use tracing::Instrument as _;

use crate::api::{self, ApiError, Checked, Endpoint};
use crate::ingest::IngestError;
use crate::promql;
use crate::state::Proxy;
pub use rescue::rescue;
pub use server::serve;
pub use stages::PATH_HEADER;

/// Builds the service: every route below `web.route_prefix`, wrapped in `observe`,
/// behind the door (`web.config_file`).
pub fn router(proxy: Arc<Proxy>) -> Router {
    inside(proxy.clone()).layer(axum::middleware::from_fn_with_state(proxy, door::door))
}

/// [`router`] past its door: for requests the proxy makes of itself on behalf of one
/// that came through it (the status page's Compare).
pub fn inside(proxy: Arc<Proxy>) -> Router {
    let prefix = proxy.runtime().config.web.route_prefix.clone();
    let base = prefix.trim_end_matches('/');
    let mut app = Router::new();
    if proxy.ingest.is_some() {
        app = app.route(
            &format!("{base}/api/v1/write"),
            axum::routing::post(remote_write).fallback(|req: Request| async move {
                rescue(ApiError::MethodNotAllowed {
                    method: req.method().clone(),
                    path: req.uri().path().to_owned(),
                    allowed: vec![Method::POST],
                })
            }),
        );
    }
    for endpoint in Endpoint::ROUTED {
        app = app.route(
            &format!("{base}/api/v1{}", endpoint.route()),
            endpoint_router(endpoint),
        );
    }
    app.route(
        &format!("{base}/api/v1{}", Endpoint::Other.route()),
        any(
            move |state: State<Arc<Proxy>>, params: RawPathParams, req: Request| {
                api_request(state, Endpoint::Other, params, req)
            },
        ),
    )
    .route(&format!("{base}/api/v1/admin/{{*rest}}"), any(admin))
    .route(&format!("{base}/api/v1/status/sketches"), get(ops::sketches))
    .route(&format!("{base}/-/healthy"), get(ops::healthy))
    .route(&format!("{base}/-/ready"), get(ops::ready))
    .route(&format!("{base}/-/reload"), any(ops::reload))
    .route(&format!("{base}/metrics"), get(ops::metrics))
    .route(&format!("{base}/"), get(crate::status::page))
    .route(&format!("{base}/ui/{{file}}"), get(crate::status::asset))
    .route(
        &format!("{base}/api/v1/status/compare"),
        get(crate::status::compare),
    )
    .fallback(not_found)
    .layer(axum::middleware::from_fn_with_state(
        proxy.clone(),
        stages::observe,
    ))
    // Downstream's answers come compressed already when the client asked (its
    // Accept-Encoding is passed on); this compresses the proxy's own.
    .layer(
        tower_http::compression::CompressionLayer::new()
            .no_br()
            .no_deflate()
            .no_zstd()
            .quality(tower_http::CompressionLevel::Fastest),
    )
    .with_state(proxy)
}

fn endpoint_router(endpoint: Endpoint) -> MethodRouter<Arc<Proxy>> {
    let handler = move |state: State<Arc<Proxy>>, params: RawPathParams, req: Request| {
        api_request(state, endpoint, params, req)
    };
    let mut router = MethodRouter::new();
    for method in endpoint.methods().iter().chain([&Method::OPTIONS]) {
        if let Ok(filter) = MethodFilter::try_from(method.clone()) {
            router = router.on(filter, handler);
        }
    }
    router.fallback(move |req: Request| async move {
        rescue(ApiError::MethodNotAllowed {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            allowed: endpoint.methods().to_vec(),
        })
    })
}

/// One Prometheus API request through the stages.
async fn api_request(
    State(proxy): State<Arc<Proxy>>,
    endpoint: Endpoint,
    params: RawPathParams,
    req: Request,
) -> Response {
    let label_name = params
        .iter()
        .find(|(k, _)| *k == "name")
        .map(|(_, v)| v.to_owned());
    let mut trail = query_log::Trail::start();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let response = match run(&proxy, endpoint, label_name.as_deref(), req, &mut trail).await {
        Ok(response) => response,
        Err(error) => rescue(error),
    };
    if let (Some(log), Some(params)) = (&proxy.runtime().query_log, &trail.params) {
        let header = response.headers().get(PATH_HEADER).and_then(|v| v.to_str().ok());
        log.write(&query_log::Entry {
            http_request: query_log::HttpRequest {
                client_ip: query_log::client_ip(peer),
                method: method.as_str(),
                path: &path,
            },
            params,
            stats: query_log::EntryStats::of(&trail, response.extensions().get()),
            answered_by: header,
            status: response.status().as_u16(),
            trace_id: crate::telemetry::trace_id(),
            ts: query_log::rfc3339(crate::clock::now_ms()),
        });
    }
    response
}

async fn run(
    proxy: &Arc<Proxy>,
    endpoint: Endpoint,
    label_name: Option<&str>,
    req: Request,
    trail: &mut query_log::Trail,
) -> Result<Response, ApiError> {
    let runtime = proxy.runtime();
    let (parts, body) = req.into_parts();
    let read_timeout = runtime.config.web.read_timeout;
    let body = tokio::time::timeout(
        read_timeout,
        stages::read_body(body, &parts.headers, runtime.config.limits.max_request_body_bytes),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout {
        timeout: read_timeout,
    })??;
    trail.stage("readBody");
    // Prometheus checks parameters on GET and POST only (DELETE /series, OPTIONS answer
    // without looking at them).
    let mut query = None;
    let mut asked = fanout::Asked {
        partial: runtime.config.query.partial_response,
        ..fanout::Asked::default()
    };
    let mut limit = None;
    let mut collapse_key = None;
    let mut cache_plan = None;
    let mut pairs = Vec::new();
    let checking = tracing::info_span!("check").entered();
    if matches!(parts.method, Method::GET | Method::POST) {
        let form = stages::decode(&parts, &body);
        // Copied only for a query log: most configurations have none.
        if runtime.query_log.is_some() && matches!(endpoint, Endpoint::Query | Endpoint::QueryRange) {
            let param = |name: &str| Some(form.get(name).to_owned()).filter(|v| !v.is_empty());
            trail.params = Some(query_log::Params {
                query: form.get("query").to_owned(),
                start: param("start").or_else(|| param("time")),
                end: param("end"),
                step: param("step"),
            });
        }
        // Checked below (api::check) where Prometheus checks it.
        limit = form.get("limit").parse::<usize>().ok();
        let checked = api::check(endpoint, &form, label_name, &runtime.grammar)?;
        let shape = runtime.grammar.shape;
        // Prometheus ignores Thanos' parameters: they are checked after its own.
        asked.thanos = api::Thanos::from_form(&form)?;
        asked.partial = asked.thanos.partial_response.unwrap_or(asked.partial);
        asked.range_ms = api::time_bounds_ms(&form);
        // The selectors that pick series (Prometheus ignores match[] elsewhere), for a
        // fan-out only.
        let fans_out = stages::fans_out(&runtime);
        asked.selectors = match endpoint {
            _ if !fans_out => Vec::new(),
            Endpoint::QueryExemplars => promql::parse_within(form.get("query"), &shape)
                .map(|expr| promql::selector_matchers(&expr))
                .unwrap_or_default(),
            Endpoint::Series | Endpoint::Labels | Endpoint::LabelValues => form
                .all("match[]")
                .iter()
                .filter_map(|m| promql::parse_selector_within(m, &shape).ok())
                .collect(),
            _ => Vec::new(),
        };
        match checked {
            Checked::Formatted(text) => return Ok(stages::json(StatusCode::OK, api::wire::success(text))),
            Checked::Query(mut request) => {
                request.thanos = asked.thanos.clone();
                request.compact = api::wire::compact::accepted(&parts.headers);
                // `X-Sketch: off` is `sketch=off`, for what is passed on too.
                request.sketch_off |= parts
                    .headers
                    .get("x-sketch")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"));
                collapse_key = Some(collapse::key(endpoint, form.pairs(), &parts.headers));
                cache_plan = cached::plan(runtime.cache.as_ref(), &request, &parts.headers);
                if cache_plan.is_some() {
                    pairs = form.pairs().to_vec();
                }
                query = Some(*request);
            }
            Checked::Forward => {}
        }
    }
    drop(checking);
    trail.stage("check");
    let answering = async {
        let Some(plan) = cache_plan else {
            return answer(
                proxy, &runtime, endpoint, label_name, limit, &asked, query, parts, body, trail,
            )
            .await;
        };
        let compute = match plan.lookup(&proxy.metrics) {
            cached::Lookup::Hit(response) => return Ok(response),
            cached::Lookup::Compute(compute) => compute,
        };
        let (mut parts, mut body, mut query) = (parts, body, query);
        if let Some(request) = query.as_mut() {
            compute.narrow(request, &mut parts, &mut body, &pairs);
        }
        let response = answer(
            proxy, &runtime, endpoint, label_name, limit, &asked, query, parts, body, trail,
        )
        .await?;
        Ok(compute.finish(response, &proxy.metrics).await)
    };
    match collapse_key {
        Some(key) => Ok(proxy
            .collapser
            .share(key, async { answering.await.unwrap_or_else(rescue) })
            .await),
        None => answering.await,
    }
}

/// The stages after the checks: admit, then evaluate, forward or fan out.
#[expect(
    clippy::too_many_arguments,
    reason = "the stage's inputs, each made by an earlier stage"
)]
async fn answer(
    proxy: &Arc<Proxy>,
    runtime: &crate::state::Runtime,
    endpoint: Endpoint,
    label_name: Option<&str>,
    limit: Option<usize>,
    asked: &fanout::Asked,
    query: Option<api::QueryRequest>,
    parts: http::request::Parts,
    body: bytes::Bytes,
    trail: &mut query_log::Trail,
) -> Result<Response, ApiError> {
    // Shared with the evaluation thread: an evaluation outliving its client (until it
    // sees the cancellation) still counts against the limit.
    let slot = stages::admit(proxy, runtime, endpoint)
        .instrument(tracing::info_span!("queue"))
        .await?
        .map(Arc::new);
    trail.stage("execQueue");
    let sketches = tracing::info_span!("plan").in_scope(|| {
        query
            .as_ref()
            .and_then(|r| stages::sketches_for(proxy, runtime, r, &parts.headers))
    });
    match query {
        Some(request) if stages::answers_locally(runtime, &request, sketches.is_some()) => {
            stages::evaluate(proxy, runtime, request, sketches, slot)
                .instrument(tracing::info_span!("evaluate"))
                .await
        }
        Some(_) => Ok(stages::mark_path(
            stages::forward(proxy, runtime, endpoint, parts, body)
                .instrument(tracing::info_span!("forward"))
                .await?,
            stages::Path::Downstream,
        )),
        None if stages::fans_out(runtime) => match fanout::Merge::of(endpoint, label_name, limit) {
            Some(merge) => {
                let path_and_query = stages::path_and_query(runtime, &parts);
                fanout::fan_out(
                    runtime,
                    &proxy.metrics.endpoint_up,
                    merge,
                    &parts,
                    &path_and_query,
                    asked,
                    body,
                )
                .await
            }
            None => Err(ApiError::NotFannedOut {
                path: parts.uri.path().to_owned(),
            }),
        },
        None => {
            stages::forward(proxy, runtime, endpoint, parts, body)
                .instrument(tracing::info_span!("forward"))
                .await
        }
    }
}

/// `POST /api/v1/write`: read_body (draining) ─▶ decode ─▶ (feed sketches ‖ enqueue) ─▶ 204.
async fn remote_write(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let Some(ingest) = proxy.ingest.clone() else {
        return not_found(req).await;
    };
    let runtime = proxy.runtime();
    let limit = runtime.config.ingest.max_body_bytes;
    let (parts, body) = req.into_parts();
    let result = async {
        let read_timeout = runtime.config.web.read_timeout;
        let body = tokio::time::timeout(read_timeout, stages::read_body_draining(body, limit))
            .await
            .map_err(|_| ApiError::BodyTimeout {
                timeout: read_timeout,
            })?
            .map_err(|e| match e {
                ApiError::BodyTooLarge { limit } => ApiError::Ingest(IngestError::TooLarge(format!(
                    "request body is larger than the limit of {limit} bytes (ingest.max_body_bytes)"
                ))),
                other => other,
            })?;
        let decoded = ingest.decode(&parts.headers, body)?;
        let late = runtime
            .cache
            .as_ref()
            .map(|c| c.late(&decoded.request, crate::clock::now_ms()))
            .unwrap_or_default();
        let feeding = proxy
            .sketches
            .feed(&decoded.request, &runtime.sketch_rules, &runtime.plugins);
        let (queued, ()) = tokio::join!(ingest.enqueue(decoded), feeding.finish());
        queued?;
        if let Some(cache) = &runtime.cache {
            cache.saw_late(late, Arc::new(ingest.delivery()));
        }
        Ok::<_, ApiError>(())
    };
    match result.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => rescue(error),
    }
}

/// `/api/v1/admin/*`: forwarded with `--web.enable-admin-api`; without it answered as
/// Prometheus answers with its admin API off, and never sent downstream (where the
/// admin API may be on).
async fn admin(state: State<Arc<Proxy>>, params: RawPathParams, req: Request) -> Response {
    if state.runtime().config.web.enable_admin_api {
        return api_request(state, Endpoint::Other, params, req).await;
    }
    let path = req.uri().path().to_owned();
    let known = ["tsdb/delete_series", "tsdb/clean_tombstones", "tsdb/snapshot"]
        .iter()
        .any(|p| path.ends_with(&format!("/api/v1/admin/{p}")));
    match req.method() {
        _ if !known => not_found(req).await,
        &Method::POST | &Method::PUT => rescue(ApiError::AdminDisabled),
        method => rescue(ApiError::MethodNotAllowed {
            method: method.clone(),
            path,
            allowed: vec![Method::POST, Method::PUT],
        }),
    }
}

async fn not_found(req: Request) -> Response {
    rescue(ApiError::NotFound(format!(
        "{} is not served by sketch-proxy",
        req.uri().path()
    )))
    .into_response()
}
