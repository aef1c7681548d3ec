//! The values the evaluator passes around: label sets, points, series and the samples
//! of one step.

use std::sync::Arc;

use crate::prompb::Label;

/// The label name holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A label set, sorted by name; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Arc<[Label]>);

impl Labels {
    /// From labels sorted by name.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        Self(labels.into())
    }

    /// From `(name, value)` pairs in any order; empty values are dropped, as
    /// Prometheus' label builder does.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label {
                name: n.to_owned(),
                value: v.to_owned(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self(labels.into())
    }

    /// Identifies this label set's allocation (clones share it): a cheap first key
    /// before comparing labels.
    pub fn addr(&self) -> usize {
        self.0.as_ptr().cast::<u8>() as usize
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// The labels, sorted by name, as a slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .map_or("", |i| self.0[i].value.as_str())
    }

    /// Without the metric name.
    pub fn without_name(&self) -> Labels {
        if self.get(METRIC_NAME).is_empty() {
            return self.clone();
        }
        self.retain(|n| n != METRIC_NAME)
    }

    /// Only the labels for which `keep` holds.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Self(self.0.iter().filter(|l| keep(&l.name)).cloned().collect())
    }

    /// With `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut labels: Vec<Label> = self.0.iter().filter(|l| l.name != name).cloned().collect();
        if !value.is_empty() {
            let at = labels.partition_point(|l| l.name.as_str() < name);
            labels.insert(
                at,
                Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            );
        }
        Self(labels.into())
    }

    /// A key identifying the labels `on` (when `include`) or all but them: equal keys,
    /// equal selected label values. Names and values are separated by bytes that cannot
    /// occur in valid UTF-8.
    pub fn key(&self, names: &[String], include: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        for l in self.0.iter() {
            if names.contains(&l.name) == include {
                key.extend_from_slice(l.name.as_bytes());
                key.push(0xfe);
                key.extend_from_slice(l.value.as_bytes());
                key.push(0xff);
            }
        }
        key
    }

    /// Prometheus' `labels.String()`: `{a="1", b="2"}`.
    pub fn display(&self) -> String {
        let inner: Vec<String> = self
            .0
            .iter()
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

/// One value at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// A labelled series of points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Labels,
    /// Its points.
    pub points: Vec<Point>,
}

/// Series; also how instant vectors and scalars travel between steps of a range
/// evaluation (a scalar is one series without labels and a point at every step).
pub type Matrix = Vec<Series>;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: Labels,
    /// The time of the underlying raw sample (only `timestamp()` looks at it).
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// An instant vector.
pub type Vector = Vec<Sample>;
