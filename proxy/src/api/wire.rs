//! The JSON wire format of the Prometheus API, byte-compatible with Prometheus 2.42:
//! envelope field order, Go's HTML-safe string escaping, and the float and timestamp
//! spellings of `util/jsonutil`.

pub mod compact;

use std::fmt::Write as _;
use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// The response envelope. Field order is Prometheus'.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T: Serialize> {
    /// `success` or `error`.
    pub status: &'a str,
    /// The payload; absent on most errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// The error class on errors.
    #[serde(rename = "errorType", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'a str>,
    /// The error message on errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Warnings, if any.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
}

/// `{"status":"success","data":…}`.
pub fn success<T: Serialize>(data: T) -> Vec<u8> {
    to_go_json(&Envelope {
        status: "success",
        data: Some(data),
        error_type: None,
        error: None,
        warnings: &[],
    })
}

/// `{"status":"error","errorType":…,"error":…}`.
pub fn error(error_type: &str, message: &str) -> Vec<u8> {
    to_go_json(&Envelope::<()> {
        status: "error",
        data: None,
        error_type: Some(error_type),
        error: Some(message),
        warnings: &[],
    })
}

/// Serializes like Go's `encoding/json` (and jsoniter's std-compatible mode).
pub fn to_go_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = Serializer::with_formatter(&mut out, GoFormatter);
    // Only maps with non-string keys fail to serialize; none of our types have them.
    if value.serialize(&mut ser).is_err() {
        return br#"{"status":"error","errorType":"internal","error":"response encoding failed"}"#.to_vec();
    }
    out
}

/// Escapes `<`, `>`, `&`, U+2028 and U+2029 as Go does, and spells `\b` and `\f` as
/// `\u0008` and `\u000c`.
#[derive(Debug, Clone, Copy)]
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\u0008",
            CharEscape::FormFeed => b"\\u000c",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let buf = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ];
                return writer.write_all(&buf);
            }
        };
        writer.write_all(s)
    }
}

/// A sample timestamp (ms) as Prometheus writes it: seconds, with exactly three
/// decimals when the milliseconds are not zero (`jsonutil.MarshalTimestamp`).
pub fn format_timestamp(ms: i64) -> String {
    let mut out = String::new();
    write_timestamp(&mut out, ms);
    out
}

/// [`format_timestamp`] appended to `out`: a panel's answer holds a hundred thousand.
fn write_timestamp(out: &mut String, ms: i64) {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    // Writing to a String cannot fail.
    let _ = match abs % 1000 {
        0 => write!(out, "{sign}{}", abs / 1000),
        frac => write!(out, "{sign}{}.{frac:03}", abs / 1000),
    };
}

/// A sample value as Prometheus writes it (`jsonutil.MarshalFloat`): Go's shortest
/// `'f'` format, or `'e'` with a two-digit exponent below 1e-6 and from 1e21.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// [`format_float`] appended to `out`.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust: "1e-7" / "1.5e21"; Go: "1e-07" / "1.5e+21".
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `[<seconds>,"<value>"]` for a number, appended to `out`.
fn push_number_point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t_ms);
    out.push_str(",\"");
    write_float(out, v);
    out.push_str("\"]");
}

#[cfg(test)]
mod tests;

/// `{"status":"success","data":{"resultType":…,"result":…}}` for a query answered
/// locally, byte for byte as Prometheus 2.42 writes it, with `"warnings"` after the
/// data when there are any; `at_ms` is the evaluation time of an instant query.
pub fn query_success(answer: &crate::promql::eval::Answer, at_ms: i64, warnings: &[String]) -> Vec<u8> {
    use crate::promql::eval::Answer;
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"status":"success","data":{"resultType":"#);
    match answer {
        Answer::Scalar(v) => {
            out.push_str(r#""scalar","result":"#);
            push_point(&mut out, at_ms, &format_float(*v));
        }
        Answer::String(s) => {
            out.push_str(r#""string","result":"#);
            push_point(&mut out, at_ms, &go_string(s));
        }
        Answer::Vector(samples) => {
            out.push_str(r#""vector","result":["#);
            for (i, (labels, v)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                push_labels(&mut out, labels);
                out.push_str(r#","value":"#);
                push_number_point(&mut out, at_ms, *v);
                out.push('}');
            }
            out.push(']');
        }
        Answer::Matrix(series) => {
            out.push_str(r#""matrix","result":["#);
            // Large answers (a day's panel) are encoded on every core, series split
            // evenly, then joined.
            let points: usize = series.iter().map(|s| s.points.len()).sum();
            let parts = if points < PARALLEL_POINTS {
                1
            } else {
                std::thread::available_parallelism().map_or(1, usize::from)
            };
            let chunk = series.len().div_ceil(parts).max(1);
            let encoded: Vec<String> = std::thread::scope(|scope| {
                let handles: Vec<_> = series
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || push_series(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            out.reserve(encoded.iter().map(String::len).sum::<usize>() + encoded.len());
            for (i, part) in encoded.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(part);
            }
            out.push(']');
        }
    }
    out.push('}');
    if !warnings.is_empty() {
        let list: Vec<String> = warnings.iter().map(|w| go_string(w)).collect();
        out.push_str(r#","warnings":["#);
        out.push_str(&list.join(","));
        out.push(']');
    }
    out.push('}');
    out.into_bytes()
}

/// Answers with fewer points are encoded on one thread.
const PARALLEL_POINTS: usize = 20_000;

/// Series of a matrix, comma-separated.
fn push_series(series: &[crate::promql::eval::value::Series]) -> String {
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    // About 36 bytes a point.
    let mut out = String::with_capacity(points * 36 + series.len() * 64);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        push_labels(&mut out, &s.labels);
        out.push_str(r#","values":["#);
        for (j, p) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_number_point(&mut out, p.t, p.v);
        }
        out.push_str("]}");
    }
    out
}

/// `[<seconds>,"<value>"]`; `value` is already a quoted-or-bare JSON fragment for strings.
fn push_point(out: &mut String, t_ms: i64, value: &str) {
    out.push('[');
    write_timestamp(out, t_ms);
    out.push(',');
    if value.starts_with('"') {
        out.push_str(value);
    } else {
        out.push('"');
        out.push_str(value);
        out.push('"');
    }
    out.push(']');
}

fn push_labels(out: &mut String, labels: &crate::promql::eval::value::Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&go_string(&l.name));
        out.push(':');
        out.push_str(&go_string(&l.value));
    }
    out.push('}');
}

/// A JSON string escaped as Go escapes it.
pub fn go_string(s: &str) -> String {
    String::from_utf8(to_go_json(&s)).unwrap_or_default()
}
