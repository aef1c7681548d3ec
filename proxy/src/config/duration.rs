//! Serde adapters for configuration values with their own syntax.

/// Durations in Prometheus syntax (`30s`, `2m`, `1h30m`).
pub mod prometheus {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a Prometheus duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        promql_parser::util::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("{text:?} is not a duration such as 30s or 2m: {e}")))
    }
}

/// URLs.
pub mod uri {
    use http::Uri;
    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a URL.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| D::Error::custom(format!("{text:?} is not a URL: {e}")))
    }
}
