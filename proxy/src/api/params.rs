//! Request parameters as Prometheus 2.42 reads them (`web/api/v1/api.go`): the form
//! merge of `r.FormValue`, and `parseTime` / `parseDuration` with their messages.

use chrono::DateTime;

/// Parameters of one request: form body values first, then URL query values, the order
/// in which Go's `r.Form` holds them (so `get` matches `r.FormValue`).
#[derive(Debug, Clone, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Merges an `application/x-www-form-urlencoded` body (if any) with the URL query.
    pub fn new(url_query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(body) = form_body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(query) = url_query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Self { pairs }
    }

    /// The first value of `key`, or "" when absent (Go's `FormValue`).
    /// Every name and value, in the order sent (body first, then URL).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of `key`, or `""`.
    pub fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A point in time with nanosecond precision, as Go's `time.Time` holds it.
pub type UnixNanos = i128;

/// Prometheus' `minTime` and `maxTime`, the defaults of optional time parameters.
pub const MIN_TIME: UnixNanos = ((i64::MIN / 1000 + 62_135_596_801) as i128) * 1_000_000_000;
/// See [`MIN_TIME`].
pub const MAX_TIME: UnixNanos = ((i64::MAX / 1000 - 62_135_596_801) as i128) * 1_000_000_000 + 999_999_999;

const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// A parameter value Prometheus would reject, with Prometheus' wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// `parseTime`: float Unix seconds (rounded to ms) or RFC 3339.
pub fn parse_time(s: &str) -> Result<UnixNanos, InvalidValue> {
    if let Some(t) = go_parse_float(s) {
        let secs = t.trunc();
        let frac = ((t - secs) * 1000.0).round() / 1000.0;
        // Go converts with int64(); Rust's `as` saturates where Go wraps, both far
        // outside any real time range.
        return Ok(i128::from(secs as i64) * 1_000_000_000 + i128::from((frac * 1e9) as i64));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos()));
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME),
        MAX_TIME_FORMATTED => Ok(MAX_TIME),
        _ => Err(InvalidValue(format!(
            "cannot parse {} to a valid timestamp",
            go_quote(s)
        ))),
    }
}

/// `parseTimeParam`: an optional time parameter with a default.
pub fn parse_time_param(form: &Form, name: &str, default: UnixNanos) -> Result<UnixNanos, InvalidValue> {
    let value = form.get(name);
    if value.is_empty() {
        return Ok(default);
    }
    parse_time(value).map_err(|e| InvalidValue(format!("Invalid time value for '{name}': {e}")))
}

/// `parseDuration`: float seconds or a Prometheus duration (`1h30m`), in nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, InvalidValue> {
    if let Some(d) = go_parse_float(s) {
        let nanos = d * 1e9;
        if nanos > i64::MAX as f64 || nanos < i64::MIN as f64 {
            return Err(InvalidValue(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            )));
        }
        return Ok(nanos as i64);
    }
    if is_prometheus_duration(s)
        && let Ok(d) = promql_parser::util::parse_duration(s)
        && let Ok(nanos) = i64::try_from(d.as_nanos())
    {
        return Ok(nanos);
    }
    Err(InvalidValue(format!(
        "cannot parse {} to a valid duration",
        go_quote(s)
    )))
}

/// `model.ParseDuration` accepts only unit-suffixed integers in descending unit order;
/// promql-parser's parser is the same grammar but also takes a bare "0".
fn is_prometheus_duration(s: &str) -> bool {
    !s.is_empty() && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Now, in Unix nanoseconds: the default `time` of an instant query.
pub fn now_nanos() -> UnixNanos {
    let now = crate::clock::since_epoch();
    UnixNanos::try_from(now.as_nanos()).unwrap_or(0)
}

/// Go's `strconv.ParseFloat(s, 64)` succeeds on decimal and special spellings; hex
/// floats and underscores are left out because no client sends them as times.
fn go_parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    let special = matches!(unsigned, "inf" | "infinity" | "nan");
    let plain = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
        && unsigned.bytes().any(|b| b.is_ascii_digit());
    if special || plain {
        s.parse::<f64>().ok().or_else(|| lower.parse().ok())
    } else {
        None
    }
}

/// Go's `%q`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `model.LabelNameRE`: `^[a-zA-Z_][a-zA-Z0-9_]*$`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
