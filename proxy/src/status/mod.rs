//! The status page (`GET /` under the route prefix): what the proxy knows about itself
//! for people to look at. Server-rendered HTML (`page`, an askama template) with the
//! vendored uPlot for plots of the last hour (`history`, kept in memory), and a
//! Compare of a rule query from sketches against exact (`compare`). Everything is
//! behind the proxy's own door (basic auth, TLS) like every other route.

pub mod compare;
pub mod history;
pub mod page;

use std::sync::Arc;

use askama::Template as _;
use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

pub use history::History;

use crate::state::Proxy;

/// `GET /`: the page.
pub async fn page(State(proxy): State<Arc<Proxy>>) -> Response {
    let history = proxy.history.series(crate::clock::now_ms() / 1000);
    match page::Page::gather(&proxy, history)
        .await
        .and_then(|p| p.render().map_err(|e| e.to_string()))
    {
        Ok(html) => with_type(html.into_response(), "text/html; charset=utf-8"),
        Err(error) => crate::http::rescue(crate::api::ApiError::Execution(format!(
            "status page failed: {error}"
        ))),
    }
}

/// `GET /ui/{file}`: the vendored chart library.
pub async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "uPlot.iife.min.js" => (
            include_bytes!("assets/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (include_bytes!("assets/uPlot.min.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    };
    let mut response = with_type(body.into_response(), content_type);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// The parameters of `GET /api/v1/status/compare`.
#[derive(Debug, serde::Deserialize)]
pub struct CompareParams {
    /// The query to compare.
    query: String,
}

/// `GET /api/v1/status/compare?query=…`: [`compare::compare`] in Prometheus' envelope.
pub async fn compare(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    Query(params): Query<CompareParams>,
) -> Response {
    match compare::compare(&proxy, &params.query, &headers).await {
        Ok(comparison) => with_type(
            crate::api::wire::success(comparison).into_response(),
            "application/json",
        ),
        Err(error) => crate::http::rescue(crate::api::ApiError::Execution(error.to_string())),
    }
}

fn with_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
