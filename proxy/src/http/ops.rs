//! Operational endpoints: health, readiness, reload, metrics, and the sketches' status.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::rescue::Lifecycle;
use crate::state::Proxy;

/// `/-/healthy`: the process serves.
pub async fn healthy() -> Response {
    text(StatusCode::OK, "Sketch Proxy is Healthy.\n".to_owned())
}

/// `/-/ready`: downstream answers its own `/-/ready`. Over several endpoints: each
/// is probed and listed; ready while at least one is (the others are left out of
/// partial answers).
pub async fn ready(State(proxy): State<Arc<Proxy>>) -> Response {
    let runtime = proxy.runtime();
    if !runtime.targets.is_empty() {
        let probes = runtime.targets.iter().map(|t| t.client.ready());
        let mut lines = Vec::new();
        let mut any = false;
        for (target, probe) in runtime
            .targets
            .iter()
            .zip(futures_util::future::join_all(probes).await)
        {
            let endpoint = target.client.url();
            let up = probe.is_ok();
            any |= up;
            proxy
                .metrics
                .endpoint_up
                .get_or_create(&crate::metrics::EndpointLabels {
                    endpoint: endpoint.clone(),
                })
                .set(i64::from(up));
            lines.push(match probe {
                Ok(()) => format!("{endpoint}: ready"),
                Err(reason) => format!("{endpoint}: not ready: {reason}"),
            });
        }
        let detail = lines.join("\n");
        return if any {
            text(StatusCode::OK, format!("Sketch Proxy is Ready.\n{detail}\n"))
        } else {
            super::rescue::lifecycle(Lifecycle::NotReady(format!(
                "Sketch Proxy is not ready: no endpoint is.\n{detail}\n"
            )))
        };
    }
    match runtime.downstream.ready().await {
        Ok(()) => text(StatusCode::OK, "Sketch Proxy is Ready.\n".to_owned()),
        Err(reason) => super::rescue::lifecycle(Lifecycle::NotReady(format!(
            "Sketch Proxy is not ready: {reason}\n"
        ))),
    }
}

/// `/-/reload` (POST or PUT, with `--web.enable-lifecycle`, as in Prometheus): reads
/// the configuration again.
pub async fn reload(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    if req.method() != Method::POST && req.method() != Method::PUT {
        return super::rescue::lifecycle(Lifecycle::MethodNotAllowed);
    }
    if !proxy.runtime().config.web.enable_lifecycle {
        return super::rescue::lifecycle(Lifecycle::NotEnabled);
    }
    match proxy.reload() {
        Ok(()) => text(StatusCode::OK, String::new()),
        Err(errors) => super::rescue::lifecycle(Lifecycle::ReloadFailed(errors.to_string())),
    }
}

/// `/api/v1/status/sketches`: the sketch rules, their series, coverage and backfill,
/// in Prometheus' envelope.
pub async fn sketches(State(proxy): State<Arc<Proxy>>) -> Response {
    let rules = proxy.runtime().sketch_rules.clone();
    let store = proxy.sketches.clone();
    // Coverage is a plugin call per sketch.
    let body = match tokio::task::spawn_blocking(move || store.status(&rules)).await {
        Ok(status) => crate::api::wire::success(status),
        Err(error) => {
            return crate::http::rescue(crate::api::ApiError::Execution(format!(
                "sketch status failed: {error}"
            )));
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `/metrics`: the proxy's metrics in the OpenMetrics text format.
pub async fn metrics(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    // As Prometheus' own handler: OpenMetrics only for a scraper that asks for it.
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (bytes, entries) = proxy.runtime().cache.as_ref().map_or((0, 0), |c| c.usage());
    proxy
        .metrics
        .cache_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    proxy
        .metrics
        .cache_entries
        .set(i64::try_from(entries).unwrap_or(i64::MAX));
    let (body, content_type) = if openmetrics {
        (
            proxy.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            proxy.metrics.encode_classic(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A plain-text success answer; failures go through `rescue::lifecycle`.
fn text(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}
