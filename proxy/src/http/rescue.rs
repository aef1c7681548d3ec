//! The one place errors become HTTP responses, in Prometheus' JSON error form.

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::stages::json;
use crate::api::ApiError;
use crate::api::wire;
use crate::downstream::DownstreamError;
use crate::ingest::IngestError;
use crate::promql::eval::EvalError;
use crate::query::QueryError;
use crate::source::SourceError;

/// nginx's "client closed request", which Prometheus answers a cancelled query with.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Longest error message in a response body: messages quote what the client sent
/// (a series' labels, a query), and a client's megabytes must not come back multiplied.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `message`, cut at [`MAX_MESSAGE_BYTES`] on a character boundary, saying so.
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &message[..end], message.len() - end)
}

/// Failures of the lifecycle endpoints.
#[derive(Debug)]
pub enum Lifecycle {
    /// `/-/ready`: no endpoint is ready (the text says which is not, and why).
    NotReady(String),
    /// `/-/reload` with a method other than POST or PUT.
    MethodNotAllowed,
    /// `/-/reload`: the configuration did not load (the errors).
    ReloadFailed(String),
    /// `/-/reload` without `--web.enable-lifecycle`.
    NotEnabled,
}

/// A lifecycle failure in plain text, as Prometheus answers it.
pub fn lifecycle(error: Lifecycle) -> Response {
    let (status, message) = match error {
        Lifecycle::NotReady(detail) => (StatusCode::SERVICE_UNAVAILABLE, detail),
        Lifecycle::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST or PUT requests allowed\n".to_owned(),
        ),
        Lifecycle::NotEnabled => (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.".to_owned()),
        Lifecycle::ReloadFailed(errors) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {errors}\n"),
        ),
    };
    let mut response = Response::new(axum::body::Body::from(bounded(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An endpoint's own error answer, passed on as it gave it (Prometheus' JSON error).
pub fn relay(status: StatusCode, body: Vec<u8>) -> Response {
    json(status, body)
}

/// Maps an error to its status and `errorType` (Prometheus' pairs where it has one)
/// and logs the ones that are the proxy's or downstream's fault.
pub fn rescue(error: ApiError) -> Response {
    let (status, error_type) = match &error {
        ApiError::BadData(_) | ApiError::BodyRead(_) => (StatusCode::BAD_REQUEST, "bad_data"),
        ApiError::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
        ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "bad_data"),
        ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data"),
        ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "timeout"),
        ApiError::TooManyQueries { .. } | ApiError::AdminDisabled => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        ApiError::NotFannedOut { .. } => (StatusCode::NOT_IMPLEMENTED, "unavailable"),
        ApiError::Downstream(DownstreamError::Timeout { .. }) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        ApiError::Downstream(DownstreamError::Unreachable { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        ApiError::Ingest(e) => match e {
            IngestError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_data"),
            IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data"),
            IngestError::BadBody(_) | IngestError::BadSeries { .. } | IngestError::TooOld { .. } => {
                (StatusCode::BAD_REQUEST, "bad_data")
            }
            // 503, not 429: Prometheus 2.42 senders drop a batch on 429 unless
            // retry_on_http_429 is set, and retry every 5xx.
            IngestError::Backpressure(_) | IngestError::Busy { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            IngestError::Queue(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        },
        // Prometheus' pairs (`web/api/v1/api.go`): 499 when the client went away.
        ApiError::Query(e) => match e {
            QueryError::Eval(EvalError::Timeout) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            QueryError::Eval(EvalError::Canceled) => (CLIENT_CLOSED, "canceled"),
            QueryError::Eval(_) | QueryError::TooManySeries { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            QueryError::Source(SourceError::TooMuch { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            QueryError::Source(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            QueryError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        },
    };
    if status.is_server_error() && !matches!(error, ApiError::AdminDisabled) {
        tracing::warn!(%error, error_type, "request failed");
    }
    let mut response = json(status, wire::error(error_type, &bounded(error.to_string())));
    if matches!(
        error,
        ApiError::Ingest(IngestError::Backpressure(_) | IngestError::Busy { .. })
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let ApiError::MethodNotAllowed { allowed, .. } = &error {
        let allow = allowed
            .iter()
            .map(http::Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let table = [
            ("short".to_owned(), "short".to_owned()),
            ("a".repeat(4096), "a".repeat(4096)),
            (
                "a".repeat(5000),
                format!("{}… (904 more bytes cut)", "a".repeat(4096)),
            ),
            (
                format!("{}é{}", "a".repeat(4095), "b".repeat(10)),
                format!("{}… (12 more bytes cut)", "a".repeat(4095)),
            ),
        ];
        for (message, want) in table {
            assert_eq!(bounded(message.clone()), want, "{}", message.len());
        }
    }
}
