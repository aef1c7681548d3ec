//! The endpoints' answers to a pushed subtree, merged into the subtree's answer (see
//! the module above for why each merge is exact).
//!
//! Each endpoint's series first get its external labels, as the merged answer carries
//! them: all of them for per-series subtrees and `topk`/`bottomk` (which keep their
//! series' labels), and for other aggregations those the grouping keeps (named in `by`,
//! not named in `without`). Then series with equal labels are one, their points
//! combined step by step as the merge says.

use std::collections::{BTreeMap, HashMap};

use promql_parser::parser::token::{T_BOTTOMK, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDDEV, T_SUM, TokenId};

use super::{Grouping, Merge, Pushed};
use crate::prompb::Label;
use crate::promql::eval::value::{Labels, Matrix, Point, Series};

/// One endpoint's answers to a pushed subtree's queries, in order.
#[derive(Debug, Clone)]
pub struct Answers {
    /// Its external labels.
    pub external: BTreeMap<String, String>,
    /// One answer per query of [`Pushed::queries`].
    pub results: Vec<Matrix>,
}

/// The subtree's answer from every endpoint's, series sorted by labels.
pub fn merge(pushed: &Pushed<'_>, answers: &[Answers]) -> Matrix {
    let keeps = |name: &str| match (&pushed.merge, &pushed.grouping) {
        (Merge::Concat | Merge::Rank(_), _) | (_, None) => true,
        (_, Some(Grouping::By(kept))) => kept.iter().any(|k| k == name),
        (_, Some(Grouping::Without(dropped))) => !dropped.iter().any(|d| d == name),
    };
    // Per query, every endpoint's series with their external labels.
    let labelled: Vec<Vec<Series>> = (0..pushed.queries.len())
        .map(|q| {
            answers
                .iter()
                .flat_map(|a| {
                    a.results.get(q).into_iter().flatten().map(|s| Series {
                        labels: with_external(&s.labels, &a.external, keeps),
                        points: s.points.clone(),
                    })
                })
                .collect()
        })
        .collect();
    let mut merged = match pushed.merge {
        Merge::Concat => labelled.into_iter().next().unwrap_or_default(),
        Merge::Again(op) => {
            let again = if op == T_COUNT { T_SUM } else { op };
            combine(labelled.first().map_or(&[][..], Vec::as_slice), again)
        }
        Merge::Avg => {
            let sums = combine(part(&labelled, 0), T_SUM);
            let counts = combine(part(&labelled, 1), T_SUM);
            zip_steps(&sums, &[&counts], |v| v[0] / v[1])
        }
        Merge::Moments(op) => {
            let counts = combine(part(&labelled, 0), T_SUM);
            let sums = combine(part(&labelled, 1), T_SUM);
            let squares = combine(part(&labelled, 2), T_SUM);
            zip_steps(&counts, &[&sums, &squares], |v| {
                let (n, sum, squares) = (v[0], v[1], v[2]);
                let mean = sum / n;
                let variance = (squares / n - mean * mean).max(0.0);
                if op == T_STDDEV { variance.sqrt() } else { variance }
            })
        }
        Merge::Rank(op) => rank(
            labelled.into_iter().next().unwrap_or_default(),
            pushed.grouping.as_ref(),
            pushed.k.unwrap_or(0),
            op == T_BOTTOMK,
        ),
    };
    merged.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
    merged
}

fn part(labelled: &[Vec<Series>], i: usize) -> &[Series] {
    labelled.get(i).map_or(&[][..], Vec::as_slice)
}

/// `labels` with the external labels `keeps` accepts added where missing.
fn with_external(
    labels: &Labels,
    external: &BTreeMap<String, String>,
    keeps: impl Fn(&str) -> bool,
) -> Labels {
    let mut all: BTreeMap<String, String> =
        labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
    for (name, value) in external {
        if keeps(name) {
            all.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    Labels::from_sorted(
        all.into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
    )
}

/// Series with equal labels made one, their values at each step combined by `op`.
fn combine(series: &[Series], op: TokenId) -> Matrix {
    let mut by_labels: HashMap<&Labels, BTreeMap<i64, f64>> = HashMap::new();
    let mut order: Vec<&Labels> = Vec::new();
    for s in series {
        let steps = by_labels.entry(&s.labels).or_insert_with(|| {
            order.push(&s.labels);
            BTreeMap::new()
        });
        for p in &s.points {
            steps
                .entry(p.t)
                .and_modify(|v| *v = combined(op, *v, p.v))
                .or_insert(if op == T_GROUP { 1.0 } else { p.v });
        }
    }
    order
        .into_iter()
        .map(|labels| Series {
            labels: labels.clone(),
            points: by_labels
                .get(labels)
                .into_iter()
                .flatten()
                .map(|(&t, &v)| Point { t, v })
                .collect(),
        })
        .collect()
}

/// As Prometheus' aggregation combines a value into a group's.
fn combined(op: TokenId, group: f64, v: f64) -> f64 {
    match op {
        T_MAX if group < v || group.is_nan() => v,
        T_MIN if group > v || group.is_nan() => v,
        T_SUM => group + v,
        _ => group,
    }
}

/// `first`'s series, each step's value `f` of its value and those of the series with
/// its labels in `others` at that step; steps any of them lacks are left out.
fn zip_steps(first: &[Series], others: &[&Matrix], f: impl Fn(&[f64]) -> f64) -> Matrix {
    let lookup: Vec<HashMap<&Labels, HashMap<i64, f64>>> = others
        .iter()
        .map(|m| {
            m.iter()
                .map(|s| (&s.labels, s.points.iter().map(|p| (p.t, p.v)).collect()))
                .collect()
        })
        .collect();
    first
        .iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            points: s
                .points
                .iter()
                .filter_map(|p| {
                    let mut values = vec![p.v];
                    for other in &lookup {
                        values.push(*other.get(&s.labels)?.get(&p.t)?);
                    }
                    Some(Point {
                        t: p.t,
                        v: f(&values),
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// A group's labels, `(name, value)` sorted by name.
type Group = Vec<(String, String)>;

/// Each endpoint's `topk`/`bottomk` ranked again: at each step, per group, the `k`
/// largest (smallest) values over all of them; NaN ranks last.
fn rank(series: Matrix, grouping: Option<&Grouping>, k: usize, bottom: bool) -> Matrix {
    let group_of = |labels: &Labels| -> Group {
        labels
            .iter()
            .filter(|l| match grouping {
                Some(Grouping::By(kept)) => kept.contains(&l.name),
                Some(Grouping::Without(dropped)) => !dropped.contains(&l.name) && l.name != "__name__",
                None => false,
            })
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    };
    // (step, group) -> (value, series index)
    let mut candidates: BTreeMap<(i64, Group), Vec<(f64, usize)>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let group = group_of(&s.labels);
        for p in &s.points {
            candidates.entry((p.t, group.clone())).or_default().push((p.v, i));
        }
    }
    let mut kept: Vec<Vec<Point>> = vec![Vec::new(); series.len()];
    for ((t, _), mut values) in candidates {
        values.sort_by(|a, b| {
            let order = match (a.0.is_nan(), b.0.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if bottom => a.0.total_cmp(&b.0),
                _ => b.0.total_cmp(&a.0),
            };
            order.then(a.1.cmp(&b.1))
        });
        for (v, i) in values.into_iter().take(k) {
            kept[i].push(Point { t, v });
        }
    }
    series
        .into_iter()
        .zip(kept)
        .filter(|(_, points)| !points.is_empty())
        .map(|(s, mut points)| {
            points.sort_by_key(|p| p.t);
            Series {
                labels: s.labels,
                points,
            }
        })
        .collect()
}
