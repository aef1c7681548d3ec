//! Collapsed requests: identical `query` and `query_range` requests in flight at once
//! share one evaluation or one downstream request. Fifty dashboards opening together
//! cost downstream one query.
//!
//! Identical means the same endpoint, the same parameters (in any order, GET or POST)
//! and the same values of the headers that can change an answer ([`KEY_HEADERS`]).
//! Nothing is kept once the shared answer is out: this is not a cache.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OnceCell;

use crate::api::Endpoint;
use crate::promql::eval::Stats;

/// Largest answer shared; a larger one goes to its own client only (streamed as it
/// comes), and the requests that waited for it are sent on their own.
pub const MAX_SHARED_BYTES: usize = 64 << 20;

/// Request headers that can change an answer, so they are part of what "identical"
/// means: the encoding asked for, credentials passed on to downstream, a tenant, and
/// the proxy's own switches.
pub const KEY_HEADERS: [&str; 7] = [
    "accept",
    "accept-encoding",
    "authorization",
    "cookie",
    "x-scope-orgid",
    "x-sketch",
    "cache-control",
];

/// An answer as the requests that waited for it get it.
#[derive(Debug, Clone)]
struct Shared {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The evaluation's figures, for each request's query-log line.
    stats: Option<Stats>,
}

type Cell = Arc<OnceCell<Option<Shared>>>;

/// The requests in flight, by key.
#[derive(Debug)]
pub struct Collapser {
    in_flight: Mutex<HashMap<u128, Cell>>,
    /// Requests answered with another's answer.
    collapsed: Counter,
    /// Requests answering or waiting for an identical one.
    in_flight_count: Gauge,
}

/// The key of a request: its endpoint, its parameters sorted, and [`KEY_HEADERS`].
pub fn key(endpoint: Endpoint, pairs: &[(String, String)], headers: &HeaderMap) -> u128 {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let mut text = Vec::new();
    text.extend_from_slice(endpoint.label().as_bytes());
    for (name, value) in sorted {
        for part in [name.as_bytes(), b"=", value.as_bytes(), b"\0"] {
            text.extend_from_slice(part);
        }
    }
    for name in KEY_HEADERS {
        for value in headers.get_all(name) {
            for part in [name.as_bytes(), b":", value.as_bytes(), b"\0"] {
                text.extend_from_slice(part);
            }
        }
    }
    xxhash_rust::xxh3::xxh3_128(&text)
}

impl Collapser {
    /// A collapser counting the requests it answers with another's answer in
    /// `collapsed`, and those in it in `in_flight`.
    pub fn new(collapsed: Counter, in_flight: Gauge) -> Self {
        Self {
            in_flight: Mutex::default(),
            collapsed,
            in_flight_count: in_flight,
        }
    }

    /// The answer of `answering`, or of an identical request already in flight. If the
    /// request answering for all goes away, a waiting one takes over.
    pub async fn share(&self, key: u128, answering: impl Future<Output = Response>) -> Response {
        let cell = self.in_flight.lock().entry(key).or_default().clone();
        self.in_flight_count.inc();
        let _counted = scopeguard(&self.in_flight_count);
        let mut answering = std::pin::pin!(answering);
        let mut own = None;
        let mut led = false;
        let shared = cell
            .get_or_init(|| async {
                led = true;
                match shared((&mut answering).await).await {
                    Ok(shared) => Some(shared),
                    Err(streaming) => {
                        own = Some(streaming);
                        None
                    }
                }
            })
            .await
            .clone();
        {
            let mut in_flight = self.in_flight.lock();
            if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                in_flight.remove(&key);
            }
        }
        if let Some(response) = own {
            return response;
        }
        match shared {
            Some(shared) => {
                if !led {
                    self.collapsed.inc();
                }
                let mut response = Response::new(Body::from(shared.body));
                *response.status_mut() = shared.status;
                *response.headers_mut() = shared.headers;
                if let Some(stats) = shared.stats {
                    response.extensions_mut().insert(stats);
                }
                response
            }
            // Too large to share: this request is sent on its own.
            None => answering.await,
        }
    }
}

/// Decrements `gauge` when dropped (the request ended or went away).
fn scopeguard(gauge: &Gauge) -> impl Drop + '_ {
    struct Guard<'a>(&'a Gauge);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    Guard(gauge)
}

/// The whole answer, when it is at most [`MAX_SHARED_BYTES`]; otherwise the answer as
/// it comes (what was read, then the rest).
async fn shared(response: Response) -> Result<Shared, Response> {
    let (parts, body) = buffered(response, MAX_SHARED_BYTES).await?;
    Ok(Shared {
        status: parts.status,
        stats: parts.extensions.get::<Stats>().copied(),
        headers: parts.headers,
        body,
    })
}

/// The whole body, when it is at most `limit` bytes; otherwise the response as it
/// comes (what was read, then the rest).
pub async fn buffered(response: Response, limit: usize) -> Result<(http::response::Parts, Bytes), Response> {
    let (parts, mut body) = response.into_parts();
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: not expected from these endpoints; keep it unshared.
                Err(_) => continue,
            },
            Err(error) => {
                // A broken body is that request's own: pass on what came, then the error.
                let rest = futures_util::stream::once(async move { Err::<Bytes, _>(error) });
                let prefix = futures_util::stream::once(async move { Ok(read.freeze()) });
                return Err(Response::from_parts(parts, Body::from_stream(prefix.chain(rest))));
            }
        };
        read.extend_from_slice(&data);
        if read.len() > limit {
            let prefix = futures_util::stream::once(async move { Ok::<Bytes, axum::Error>(read.freeze()) });
            let rest = body.into_data_stream();
            return Err(Response::from_parts(parts, Body::from_stream(prefix.chain(rest))));
        }
    }
    Ok((parts, read.freeze()))
}

#[cfg(test)]
mod tests;
