//! Logs and OpenTelemetry traces: the subscriber the binary installs, W3C trace context
//! taken from clients and passed on to every outgoing request, and the trace id for the
//! query log.
//!
//! Spans are `tracing` spans; when traces are on, the proxy's own spans (any level)
//! become OpenTelemetry spans exported over OTLP/HTTP by a batch processor. Log lines
//! are filtered by `log.level` on their own layer, so traces never depend on it.

use std::io::IsTerminal as _;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{self, LogConfig, LogFormat, TracingConfig};

/// Why traces cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP trace exporter: {0}")]
pub struct TelemetryError(String);

/// Flushes and stops the trace exporter when dropped (at the end of `main`).
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "traces not all exported at shutdown");
        }
    }
}

/// Whether traces are asked for: by the configuration or the standard variables.
fn endpoint_set(config: &TracingConfig) -> bool {
    config.endpoint.is_some()
        || [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Installs the log layer (and the trace layer when traces are asked for) as the
/// process' subscriber.
pub fn init(log: &LogConfig, traces: &TracingConfig) -> Result<Telemetry, TelemetryError> {
    // The level was validated with the configuration.
    let filter = tracing_subscriber::EnvFilter::try_new(config::log_filter(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sketch_proxy=info"));
    let logs = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_ansi_color(std::io::stderr().is_terminal())
            .layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs);
    if !endpoint_set(traces) {
        registry.init();
        return Ok(Telemetry { provider: None });
    }
    let provider = provider(traces)?;
    let tracer = provider.tracer("sketch-proxy");
    let spans = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(
        tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("sketch_proxy")
        }),
    );
    registry.with(spans).init();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Telemetry {
        provider: Some(provider),
    })
}

fn provider(traces: &TracingConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = &traces.endpoint {
        let base = endpoint.to_string();
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter.build().map_err(|e| TelemetryError(e.to_string()))?;
    let service = traces
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .unwrap_or_else(|| "sketch-proxy".to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes the client's W3C trace context (`traceparent`, `tracestate`) the parent of
/// `span`. Without traces on, nothing.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's trace context into `headers`, replacing any the client
/// sent, so downstream's spans join the proxy's trace.
pub fn inject(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The current trace's id, in hex, when traces are on.
pub fn trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| ids.trace_id().to_string())
}
