//! Serde adapters for configuration values with their own syntax.

/// `promql-parser`'s duration parsing, after refusing bare numbers of seconds that no
/// `Duration` holds (the parser panics on them; found by fuzzing).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    parse(text)
}

/// Parses a Prometheus duration (`30s`, `2m`, `1h30m`), for flags.
pub fn parse(text: &str) -> Result<std::time::Duration, String> {
    if !crate::promql::shape::seconds_in_range(text) {
        return Err("out of range".to_owned());
    }
    promql_parser::util::parse_duration(text)
}

/// Durations in Prometheus syntax (`30s`, `2m`, `1h30m`).
pub mod prometheus {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a Prometheus duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("{text:?} is not a duration such as 30s or 2m: {e}")))
    }
}

/// [`prometheus`] durations, and `0s` for "off" (Prometheus' parser refuses zero).
pub mod prometheus_or_zero {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a Prometheus duration string, or `0s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        if text == "0s" {
            return Ok(Duration::ZERO);
        }
        super::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "{text:?} is not a duration such as 30s or 2m, or 0s: {e}"
            ))
        })
    }
}

/// URLs.
pub mod uri {
    use http::Uri;
    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a URL.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// Parses a URL; the message quotes it unless it may hold credentials.
    pub fn parse(text: &str) -> Result<Uri, String> {
        text.parse().map_err(|e| {
            if text.contains('@') {
                format!("the URL (not shown: it may hold credentials) is not a URL: {e}")
            } else {
                format!("{text:?} is not a URL: {e}")
            }
        })
    }
}

/// Optional URLs.
pub mod uri_opt {
    use http::Uri;
    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses a URL.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
        let text = String::deserialize(d)?;
        super::uri::parse(&text).map(Some).map_err(D::Error::custom)
    }
}

/// A point in time as Thanos' `--min-time`/`--max-time` take it: RFC 3339
/// (`2026-01-02T00:00:00Z`) or a duration before now (`-2w`, `-36h`).
pub mod time_bound {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// A fixed or moving point in time.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TimeBound {
        /// Milliseconds since the epoch.
        At(i64),
        /// This long before now.
        Ago(Duration),
    }

    impl TimeBound {
        /// Milliseconds since the epoch, `now_ms` being now.
        pub fn ms(self, now_ms: i64) -> i64 {
            match self {
                TimeBound::At(ms) => ms,
                TimeBound::Ago(d) => now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            }
        }
    }

    /// Parses an optional time bound.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TimeBound>, D::Error> {
        let text = String::deserialize(d)?;
        if let Some(ago) = text.strip_prefix('-') {
            return super::parse_duration(ago)
                .map(|d| Some(TimeBound::Ago(d)))
                .map_err(|e| {
                    D::Error::custom(format!("{text:?} is not a duration before now such as -2w: {e}"))
                });
        }
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(TimeBound::At(t.timestamp_millis())))
            .map_err(|e| {
                D::Error::custom(format!(
                    "{text:?} is neither an RFC 3339 time nor a duration before now such as -2w: {e}"
                ))
            })
    }
}
