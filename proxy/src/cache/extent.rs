//! Extents: a range query's answer over a span of its steps, series by series, as
//! JSON text in [`Piece`]s of at most [`PIECE_POINTS`] points, so a request whose
//! window cuts an extent re-encodes only the piece at each edge.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::gzip::{Piece, Sink};
use crate::promql::eval::value::Labels;

/// Most points in a piece: its edge is what a moving window re-encodes.
pub const PIECE_POINTS: usize = 240;

/// A piece of points text with the times of its first and last point.
#[derive(Debug, Clone)]
pub struct Points {
    pub first_ms: i64,
    pub last_ms: i64,
    pub piece: Piece,
}

/// One series' points in an extent, in time order.
#[derive(Debug, Clone)]
pub struct Run {
    pub labels: Labels,
    /// The `"metric"` object as JSON.
    pub metric: Bytes,
    pub points: Vec<Points>,
}

/// The answer over the steps `start_ms..=end_ms` (on the key's step grid).
#[derive(Debug)]
pub struct Extent {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Sorted by labels.
    pub runs: Vec<Run>,
    pub warnings: Vec<String>,
    /// The paths that answered (`X-Answered-By`).
    pub paths: Vec<String>,
    /// When its oldest part was computed.
    pub stored_at: Instant,
}

impl Extent {
    /// Bytes held.
    pub fn weight(&self) -> usize {
        self.runs
            .iter()
            .map(|r| r.metric.len() + 64 + r.points.iter().map(|p| p.piece.weight() + 32).sum::<usize>())
            .sum::<usize>()
            + 128
    }

    /// `self` followed by `next`, which starts a step after `self` ends.
    pub fn join(&self, next: &Extent) -> Extent {
        let mut runs = Vec::with_capacity(self.runs.len().max(next.runs.len()));
        let (mut a, mut b) = (self.runs.iter().peekable(), next.runs.iter().peekable());
        loop {
            let run = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.labels == y.labels => {
                    let mut run = (*x).clone();
                    run.points.extend(y.points.iter().cloned());
                    compact(&mut run.points);
                    a.next();
                    b.next();
                    Some(run)
                }
                (Some(x), Some(y)) if x.labels < y.labels => a.next().cloned(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next().cloned(),
                (Some(_), None) => a.next().cloned(),
                (None, None) => None,
            };
            let Some(run) = run else { break };
            runs.push(run);
        }
        Extent {
            start_ms: self.start_ms,
            end_ms: next.end_ms,
            runs,
            warnings: union(&self.warnings, &next.warnings),
            paths: union(&self.paths, &next.paths),
            stored_at: self.stored_at.min(next.stored_at),
        }
    }
}

/// Merges runs of small pieces (a refreshed panel adds one step at a time) into pieces
/// of up to [`PIECE_POINTS`].
fn compact(points: &mut Vec<Points>) {
    let small = |p: &Points| count(p.piece.text()) < PIECE_POINTS / 2;
    if points.len() < 2 || !points.windows(2).any(|w| small(&w[0]) && small(&w[1])) {
        return;
    }
    let mut out: Vec<Points> = Vec::with_capacity(points.len());
    let mut pending: Vec<Points> = Vec::new();
    let mut pending_points = 0;
    let flush = |pending: &mut Vec<Points>, out: &mut Vec<Points>| match pending.len() {
        0 => {}
        1 => out.append(pending),
        _ => {
            let texts: Vec<&[u8]> = pending.iter().map(|p| &p.piece.text()[..]).collect();
            out.push(Points {
                first_ms: pending[0].first_ms,
                last_ms: pending[pending.len() - 1].last_ms,
                piece: Piece::new(Bytes::from(texts.join(&b","[..]))),
            });
            pending.clear();
        }
    };
    for p in points.drain(..) {
        let n = count(p.piece.text());
        if pending_points + n > PIECE_POINTS {
            flush(&mut pending, &mut out);
            pending_points = 0;
        }
        pending_points += n;
        pending.push(p);
    }
    flush(&mut pending, &mut out);
    *points = out;
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|w| !a.contains(w)).cloned());
    out
}

/// Points in a piece's text.
fn count(text: &[u8]) -> usize {
    text.iter().filter(|&&b| b == b'[').count()
}

/// The points of `text` (`[t,"v"],[t,"v"]`) with their times and byte ranges.
pub fn points(text: &[u8]) -> impl Iterator<Item = (i64, std::ops::Range<usize>)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + text.get(at..)?.iter().position(|&b| b == b'[')?;
        let comma = start + text[start..].iter().position(|&b| b == b',')?;
        let end = comma + text[comma..].iter().position(|&b| b == b']')? + 1;
        at = end;
        let t = std::str::from_utf8(&text[start + 1..comma]).ok()?;
        Some((seconds_to_ms(t)?, start..end))
    })
}

fn seconds_to_ms(t: &str) -> Option<i64> {
    let seconds: f64 = t.parse().ok()?;
    // Prometheus writes times with at most three decimals: exact in milliseconds.
    Some((seconds * 1000.0).round() as i64)
}

/// A range answer parsed from Prometheus' JSON.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Sorted by labels.
    pub series: Vec<ParsedSeries>,
    pub warnings: Vec<String>,
}

/// One series of a parsed answer.
#[derive(Debug)]
pub struct ParsedSeries {
    pub labels: Labels,
    pub metric: Bytes,
    /// Its points, comma-separated.
    pub text: Bytes,
    /// Each point's time and place in `text`.
    pub points: Vec<(i64, std::ops::Range<usize>)>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    status: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType")]
    result_type: Cow<'a, str>,
    #[serde(borrow)]
    result: Vec<SeriesJson<'a>>,
}

#[derive(Deserialize)]
struct SeriesJson<'a> {
    #[serde(borrow)]
    metric: &'a RawValue,
    #[serde(borrow, default)]
    values: Vec<(&'a RawValue, Cow<'a, str>)>,
}

/// The series of a successful matrix answer; `None` for anything else.
pub fn parse(body: &[u8]) -> Option<Parsed> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
    let data = envelope.data?;
    if envelope.status != "success" || data.result_type != "matrix" {
        return None;
    }
    let mut series = Vec::with_capacity(data.result.len());
    for s in data.result {
        let labels: BTreeMap<String, String> = serde_json::from_str(s.metric.get()).ok()?;
        let mut text = Vec::with_capacity(s.values.len() * 24);
        let mut points = Vec::with_capacity(s.values.len());
        for (t, v) in &s.values {
            if !text.is_empty() {
                text.push(b',');
            }
            let start = text.len();
            for part in [b"[", t.get().as_bytes(), b",\"", v.as_bytes(), b"\"]"] {
                text.extend_from_slice(part);
            }
            points.push((seconds_to_ms(t.get())?, start..text.len()));
        }
        series.push(ParsedSeries {
            labels: Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            metric: Bytes::copy_from_slice(s.metric.get().as_bytes()),
            text: text.into(),
            points,
        });
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Some(Parsed {
        series,
        warnings: envelope.warnings,
    })
}

impl ParsedSeries {
    /// Its points in `from_ms..=to_ms`, as text.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> Option<Bytes> {
        let first = self.points.iter().position(|(t, _)| *t >= from_ms)?;
        let last = self.points.iter().rposition(|(t, _)| *t <= to_ms)?;
        (first <= last).then(|| {
            self.text
                .slice(self.points[first].1.start..self.points[last].1.end)
        })
    }
}

impl Parsed {
    /// The steps `start_ms..=end_ms` of this answer as an extent, in pieces.
    pub fn extent(&self, start_ms: i64, end_ms: i64, paths: Vec<String>) -> Extent {
        use rayon::prelude::*;
        // Compressing the pieces is most of the work of keeping an answer: on every core.
        let runs = self
            .series
            .par_iter()
            .filter_map(|s| {
                let in_range: Vec<&(i64, std::ops::Range<usize>)> = s
                    .points
                    .iter()
                    .filter(|(t, _)| (start_ms..=end_ms).contains(t))
                    .collect();
                let points = in_range
                    .chunks(PIECE_POINTS)
                    .map(|chunk| {
                        let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
                        Points {
                            first_ms: first.0,
                            last_ms: last.0,
                            piece: Piece::new(s.text.slice(first.1.start..last.1.end)),
                        }
                    })
                    .collect::<Vec<_>>();
                (!points.is_empty()).then(|| Run {
                    labels: s.labels.clone(),
                    metric: s.metric.clone(),
                    points,
                })
            })
            .collect();
        Extent {
            start_ms,
            end_ms,
            runs,
            warnings: self.warnings.clone(),
            paths,
            stored_at: Instant::now(),
        }
    }
}

/// Writes one series' `"values"` items within `from_ms..=to_ms`: whole pieces as they
/// are stored, a piece cut by the window as text. Returns whether any was written.
pub fn write_points(
    sink: &mut dyn Sink,
    points: &[Points],
    from_ms: i64,
    to_ms: i64,
    mut wrote: bool,
) -> bool {
    for p in points {
        if p.last_ms < from_ms || p.first_ms > to_ms {
            continue;
        }
        if p.first_ms >= from_ms && p.last_ms <= to_ms {
            if wrote {
                sink.literal(b",");
            }
            sink.piece(&p.piece);
            wrote = true;
            continue;
        }
        let text = p.piece.text();
        let inside = points_in(text, from_ms, to_ms);
        if let (Some(first), Some(last)) = (inside.first(), inside.last()) {
            if wrote {
                sink.literal(b",");
            }
            sink.literal(&text[first.start..last.end]);
            wrote = true;
        }
    }
    wrote
}

/// Whether any point of `points` lies in `from_ms..=to_ms`.
pub fn has_points(points: &[Points], from_ms: i64, to_ms: i64) -> bool {
    points.iter().any(|p| {
        p.last_ms >= from_ms
            && p.first_ms <= to_ms
            && ((p.first_ms >= from_ms && p.last_ms <= to_ms)
                || !points_in(p.piece.text(), from_ms, to_ms).is_empty())
    })
}

fn points_in(text: &[u8], from_ms: i64, to_ms: i64) -> Vec<std::ops::Range<usize>> {
    points(text)
        .filter(|(t, _)| (from_ms..=to_ms).contains(t))
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests;
