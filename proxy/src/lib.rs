//! sketch-proxy: a reverse proxy in front of Prometheus or a Thanos Querier that speaks
//! the Prometheus HTTP query API unchanged.
//!
//! # Code map
//! - [`config`]: the YAML file and flag overrides, validated with every error at once.
//! - [`http`]: the server; `http::router` assembles the request path's stages and
//!   `http::rescue` is the one place errors become responses.
//! - [`api`]: the Prometheus API surface: endpoints, parameter checks as Prometheus
//!   2.42 makes them, the JSON wire format.
//! - [`promql`]: parsing, analysis and evaluation of PromQL. Pure: no IO.
//! - [`query`]: local evaluation: fetch what a query needs from the [`source`], evaluate.
//! - [`downstream`]: the client for the Prometheus or Thanos behind the proxy.
//! - [`ingest`]: the remote-write receiver, its durable per-destination queues and
//!   senders; [`prompb`] holds the remote-write messages.
//! - [`sketches`]: which ingested series get sketches, and feeding them.
//! - [`source`]: raw series for local evaluation (remote read).
//! - [`state`]: the reloadable runtime shared by requests.
//! - [`metrics`]: the proxy's own metrics.
//! - [`plugin_host`]: loads and sandboxes the WebAssembly sketch plugins; the only
//!   module that depends on wasmtime.
//!
//! See `docs/ARCHITECTURE.md` for the invariants.

pub mod api;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod downstream;
pub mod endpoints;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod outbound;
pub mod plugin_host;
pub mod prompb;
pub mod promql;
pub mod query;
pub mod sketches;
pub mod source;
pub mod state;
pub mod status;
pub mod telemetry;

/// The stack of every thread the proxy runs requests, evaluations and plugin calls on.
/// Parsing and evaluating a query recurse once per level of nesting, up to
/// `limits.max_query_depth` (at most [`promql::shape::MAX_DEPTH`]); an unoptimized build
/// needs about 3 KiB a level to parse (measured: 2,048 nested calls overflow 4 MiB, 3,000
/// fit in 8 MiB), and `tests/query_shape.rs` evaluates the deepest queries on it.
/// Only the pages a thread touches are ever backed by memory.
pub const THREAD_STACK_BYTES: usize = 16 << 20;

/// The multi-threaded tokio runtime the proxy runs on: its workers and its blocking
/// threads get [`THREAD_STACK_BYTES`]. `workers` defaults to one per core.
pub fn tokio_runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.thread_stack_size(THREAD_STACK_BYTES).enable_all().build()
}
