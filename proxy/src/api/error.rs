//! The errors an API request can end in. `http::rescue` turns each into a response.

use http::Method;

use crate::downstream::DownstreamError;
use crate::ingest::IngestError;
use crate::query::QueryError;

/// Why a request to the Prometheus API was not answered with data.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter Prometheus would reject (400 `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query cannot be evaluated (422 `execution`).
    #[error("{0}")]
    Execution(String),
    /// No such endpoint (404 `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists but not for this method (405).
    #[error(
        "method {method} is not allowed for {path}; allowed: {}",
        allowed_list(allowed)
    )]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The path requested.
        path: String,
        /// The methods the path accepts.
        allowed: Vec<Method>,
    },
    /// The body is over `limits.max_request_body_bytes` (413).
    #[error("request body is larger than the limit of {limit} bytes (limits.max_request_body_bytes)")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The body could not be read from the client.
    #[error("reading the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive within `web.read_timeout` (408).
    #[error("the request body did not arrive within {timeout:?} (web.read_timeout)")]
    BodyTimeout {
        /// The configured timeout.
        timeout: std::time::Duration,
    },
    /// `limits.max_concurrent_queries` queries are running and no slot came free in
    /// time, or the wait queue is full (503 `unavailable`).
    #[error(
        "too many concurrent queries: {limit} are running, the limit (limits.max_concurrent_queries), \
         and {why}; retry later"
    )]
    TooManyQueries {
        /// The configured limit.
        limit: usize,
        /// Why this one did not wait for a slot.
        why: String,
    },
    /// A path that describes one server, not merged over several endpoints.
    #[error("{path} describes one server and is not answered over several endpoints (downstream.endpoints)")]
    NotFannedOut {
        /// The request path.
        path: String,
    },
    /// `/api/v1/admin/*` without `--web.enable-admin-api`.
    #[error("admin APIs disabled")]
    AdminDisabled,
    /// Downstream did not answer.
    #[error(transparent)]
    Downstream(#[from] DownstreamError),
    /// A remote-write request was refused.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A query evaluated locally failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

fn allowed_list(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}
