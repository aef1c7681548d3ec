//! The one downstream Prometheus or Thanos Querier: forwards requests unchanged and
//! probes readiness.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::config::HttpClientConfig;
use crate::outbound::Outbound;

/// Why downstream gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// No response headers within `downstream.timeout`.
    #[error("downstream {url} did not answer within {timeout:?} (downstream.timeout)")]
    Timeout {
        /// The downstream base URL.
        url: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// Connecting or talking to downstream failed.
    #[error("downstream {url} is unreachable: {reason}")]
    Unreachable {
        /// The downstream base URL.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
}

impl DownstreamError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DownstreamError::Timeout { .. } => "timeout",
            DownstreamError::Unreachable { .. } => "unreachable",
        }
    }
}

/// A client bound to one downstream base URL.
#[derive(Debug, Clone)]
pub struct Downstream {
    client: Outbound,
    base: Uri,
    timeout: Duration,
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl Downstream {
    /// A client for `base` (an `http://` or `https://` URL, possibly with a path
    /// prefix, without credentials: those are in `http`).
    pub fn new(base: Uri, http: &HttpClientConfig, timeout: Duration) -> Self {
        Self {
            client: Outbound::new(http, base.scheme_str() == Some("https"), Some(timeout)),
            base,
            timeout,
        }
    }

    /// The base URL, for messages.
    pub fn url(&self) -> String {
        self.base.to_string().trim_end_matches('/').to_owned()
    }

    /// Sends `path_and_query` (which starts with `/`) below the base URL with the
    /// client's method, headers and body, and returns downstream's answer as is.
    pub async fn forward(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, DownstreamError> {
        let uri = self.join(path_and_query)?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| self.unreachable(&e))?;
        let forwarded = request.headers_mut();
        forwarded.clone_from(headers);
        // The client sets Host from the URI and Content-Length from the body.
        forwarded.remove(header::HOST);
        forwarded.remove(header::CONTENT_LENGTH);
        // Downstream gets the credentials configured for it, not the client's. (The
        // proxy's own door takes out the credentials it checked.)
        if self.client.authenticates() {
            forwarded.remove(header::AUTHORIZATION);
        }
        strip_hop_by_hop(forwarded);
        let mut response = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => {
                return Err(DownstreamError::Timeout {
                    url: self.url(),
                    timeout: self.timeout,
                });
            }
            Ok(Err(e)) => return Err(self.unreachable(&e)),
            Ok(Ok(response)) => response,
        };
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }

    /// Whether downstream's `/-/ready` answers 200.
    pub async fn ready(&self) -> Result<(), String> {
        let response = self
            .forward(http::Method::GET, "/-/ready", &HeaderMap::new(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "downstream {} answered /-/ready with {}",
                self.url(),
                response.status()
            ))
        }
    }

    fn join(&self, path_and_query: &str) -> Result<Uri, DownstreamError> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            format!("{prefix}{path_and_query}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| self.unreachable(&e))?,
        );
        Uri::from_parts(parts).map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> DownstreamError {
        DownstreamError::Unreachable {
            url: self.url(),
            reason: error_chain(error),
        }
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names; used
/// on requests and responses alike.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// An error and its causes, `outer: inner: innermost`: hyper's own message alone
/// ("client error (Connect)") hides why.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
