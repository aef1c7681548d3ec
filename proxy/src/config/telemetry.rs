//! `tracing:`: OpenTelemetry traces. The standard `OTEL_*` environment variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_SERVICE_NAME`, `OTEL_BSP_*`) apply; this section can set the endpoint and the
//! service name instead. Read at start.

use http::Uri;
use serde::Deserialize;

use super::{ConfigError, error};

/// `tracing:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP over HTTP (protobuf) base URL, e.g. `http://otel-collector:4318`; spans go
    /// to its `/v1/traces`. Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; none of them set: no traces.
    #[serde(with = "super::duration::uri_opt")]
    pub endpoint: Option<Uri>,
    /// The `service.name` of the spans (default `OTEL_SERVICE_NAME`, else
    /// `sketch-proxy`).
    pub service_name: Option<String>,
}

impl TracingConfig {
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if let Some(url) = &self.endpoint
            && (!matches!(url.scheme_str(), Some("http" | "https")) || url.authority().is_none())
        {
            errors.push(error(
                "tracing.endpoint",
                format!(
                    "{} must be an http:// or https:// URL with a host",
                    super::redacted(url)
                ),
            ));
        }
    }
}
