//! Every connection the proxy opens (downstream, endpoints, remote-write destinations)
//! goes through an [`Outbound`] client, set up like Prometheus' `http_config`: http or
//! https (rustls), credentials, extra headers, and an optional `CONNECT` proxy.

mod credentials;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::{HttpClientConfig, TlsClientConfig};
use credentials::Credentials;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The TLS settings or credentials could not be loaded.
    #[error("{0}")]
    Setup(String),
    /// Connecting or talking failed (the cause chain is in the source).
    #[error(transparent)]
    Transport(#[from] hyper_util::client::legacy::Error),
}

/// A client for one configured URL; cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Outbound {
    /// An error when the TLS files could not be loaded (they were, when the
    /// configuration was checked): every request fails with it rather than go out
    /// unprotected.
    client: Result<Client<HttpsConnector<Route>, Full<Bytes>>, String>,
    credentials: Option<Arc<Credentials>>,
    headers: Arc<HeaderMap>,
}

/// Checks that `tls` loads, for configuration validation.
pub fn check_tls(tls: &TlsClientConfig) -> Result<(), String> {
    tls::client_config(tls, true).map(|_| ())
}

impl Outbound {
    /// A client as `config` says, for URLs of `scheme`'s kind; `connect_timeout`
    /// bounds each TCP connect.
    pub fn new(config: &HttpClientConfig, https: bool, connect_timeout: Option<Duration>) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            // Validated with the configuration.
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                headers.insert(name, value);
            }
        }
        let client = Self::client(config, https, connect_timeout).map_err(|e| {
            tracing::error!(error = %e, "cannot load the TLS settings; requests will fail");
            e
        });
        Self {
            client,
            credentials: Credentials::of(config).map(Arc::new),
            headers: Arc::new(headers),
        }
    }

    fn client(
        config: &HttpClientConfig,
        https: bool,
        connect_timeout: Option<Duration>,
    ) -> Result<Client<HttpsConnector<Route>, Full<Bytes>>, String> {
        let tls_settings = config.tls_config.clone().unwrap_or_default();
        let tls = tls::client_config(&tls_settings, https)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(connect_timeout);
        // The TLS layer above decides the scheme.
        http.enforce_http(false);
        let route = match &config.proxy_url {
            Some(proxy) => Route::Tunnel(Tunnel::new(proxy.clone(), http)),
            None => Route::Direct(http),
        };
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let builder = match tls_settings
            .server_name
            .as_deref()
            .and_then(|n| rustls_pki_types::ServerName::try_from(n.to_owned()).ok())
        {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(route);
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector))
    }

    /// Sends `request` with the configured headers and credentials (replacing any the
    /// request carries: a client's own token is for the proxy, not for downstream).
    pub async fn request(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, OutboundError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| OutboundError::Setup(e.clone()))?;
        let headers = request.headers_mut();
        crate::telemetry::inject(headers);
        for (name, value) in self.headers.iter() {
            headers.insert(name, value.clone());
        }
        if let Some(credentials) = &self.credentials {
            headers.insert(AUTHORIZATION, credentials.header().map_err(OutboundError::Setup)?);
        }
        Ok(client.request(request).await?)
    }

    /// Whether requests carry credentials of their own configuration.
    pub fn authenticates(&self) -> bool {
        self.credentials.is_some()
    }
}

/// A TCP connection straight to the host, or through a proxy's `CONNECT`.
#[derive(Debug, Clone)]
pub enum Route {
    /// Straight.
    Direct(HttpConnector),
    /// Through `proxy_url`.
    Tunnel(Tunnel<HttpConnector>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for Route {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Route::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            Route::Tunnel(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Route::Direct(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Route::Tunnel(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}
