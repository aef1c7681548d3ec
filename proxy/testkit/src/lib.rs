//! Test support shared by sketch-proxy's integration tests, load tests and quickstart:
//! a real Prometheus (and, for comparisons, VictoriaMetrics) started on loopback (free
//! port, temporary directory, always stopped), deterministic demo data, and network
//! helpers.

pub mod demo;
pub mod net;
pub mod prometheus;
pub mod tls;
pub mod victoria;

pub use net::{BlackHole, ConnectProxy, Recorded, Recorder, free_port, http_agent, wait_until};
pub use prometheus::{Prometheus, PrometheusOptions, WebDoor};
pub use victoria::VictoriaMetrics;
