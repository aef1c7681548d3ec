//! Accepting connections (TLS ones when the door says so) within bounds: at most `web.max_connections` at once, each
//! closed when its headers (or its next request, on a kept-alive connection) take
//! longer than `web.read_header_timeout`, and a shutdown that waits for requests in
//! flight at most `web.shutdown_timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::state::Proxy;

/// After a failed `accept` (out of file descriptors): a pause instead of a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the proxy on `listener` until `shutdown` completes, then lets requests in
/// flight finish within `web.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    proxy.start_background();
    let web = proxy.runtime().config.web.clone();
    let door = proxy.clone();
    let door = &door.door;
    let app = super::router(proxy);
    let slots = Arc::new(Semaphore::new(web.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: past the limit, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Without TCP_NODELAY the tail of a response written in pieces waits for the
        // client's delayed ACK: about 40 ms on every large answer over a kept-alive
        // connection (docs/benchmarks.md).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let acceptor = door.acceptor();
        // The client's address, for the query log.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let watcher = graceful.watcher();
        let header_timeout = web.read_header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let http = {
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
                http
            };
            let result = match acceptor {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), service))
                        .await
                }
                Some(acceptor) => {
                    // A client that stalls its handshake is dropped like one that stalls
                    // its headers.
                    let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake took longer than web.read_header_timeout");
                            return;
                        }
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tls), service))
                        .await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(web.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?web.shutdown_timeout,
            "requests still in flight at web.shutdown_timeout; their connections are closed"
        );
    }
    Ok(())
}
