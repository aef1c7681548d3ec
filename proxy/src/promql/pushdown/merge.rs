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
use crate::promql::eval::EvalError;
use crate::promql::eval::value::{Labels, Matrix, Point, Series};

/// One endpoint's answers to a pushed subtree's queries, in order.
#[derive(Debug, Clone)]
pub struct Answers {
    /// Its external labels.
    pub external: BTreeMap<String, String>,
    /// One answer per query of [`Pushed::queries`].
    pub results: Vec<Matrix>,
}

/// The subtree's answer from every endpoint's, series sorted by labels (a
/// `topk`/`bottomk`'s in rank order, as Prometheus answers it at one step). Two
/// endpoints' series with equal labels at one step fail it, as Prometheus fails a
/// vector holding them.
pub fn merge(pushed: &Pushed<'_>, answers: &[Answers]) -> Result<Matrix, EvalError> {
    let keeps = |name: &str| match (&pushed.merge, &pushed.grouping) {
        (Merge::Concat | Merge::Rank(_), _) | (_, None) => true,
        (_, Some(Grouping::By(kept))) => kept.iter().any(|k| k == name),
        (_, Some(Grouping::Without(dropped))) => !dropped.iter().any(|d| d == name),
    };
    // Per endpoint and query, its series with its external labels.
    let per_endpoint: Vec<Vec<Vec<Series>>> = answers
        .iter()
        .map(|a| {
            (0..pushed.queries.len())
                .map(|q| {
                    a.results
                        .get(q)
                        .into_iter()
                        .flatten()
                        .map(|s| Series {
                            labels: with_external(&s.labels, &a.external, keeps),
                            points: s.points.clone(),
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // The merges of one pushed query take every endpoint's series of it in one list,
    // moved, not copied (the hot path of a pushed query).
    let only_query = |per_endpoint: Vec<Vec<Vec<Series>>>| -> Vec<Series> {
        per_endpoint
            .into_iter()
            .flat_map(|e| e.into_iter().next().unwrap_or_default())
            .collect()
    };
    let mut merged = match pushed.merge {
        Merge::Concat => concat(only_query(per_endpoint))?,
        Merge::Again(op) => {
            let again = if op == T_COUNT { T_SUM } else { op };
            combine(&only_query(per_endpoint), again)
        }
        Merge::Avg => {
            // Per group and step: each endpoint's (mean, count).
            let parts = gather::<2>(&per_endpoint);
            let mean = |v: &[[f64; 2]]| {
                let n: f64 = v.iter().map(|p| p[1]).sum();
                v.iter().map(|p| p[0] * (p[1] / n)).sum()
            };
            finish(parts, mean)
        }
        Merge::Moments(op) => {
            let parts = gather::<3>(&per_endpoint);
            finish(parts, |v: &[[f64; 3]]| {
                let n: f64 = v.iter().map(|p| p[0]).sum();
                let mean: f64 = v.iter().map(|p| p[1] * (p[0] / n)).sum();
                let variance: f64 = v
                    .iter()
                    .map(|p| (p[2] + (p[1] - mean) * (p[1] - mean)) * (p[0] / n))
                    .sum();
                if op == T_STDDEV { variance.sqrt() } else { variance }
            })
        }
        Merge::Rank(op) => {
            return Ok(rank(
                only_query(per_endpoint),
                pushed.grouping.as_ref(),
                pushed.k.unwrap_or(0),
                op == T_BOTTOMK,
            ));
        }
    };
    merged.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
    Ok(merged)
}

/// Every endpoint's series, those with equal labels made one; equal labels at one
/// step are Prometheus' duplicate label set error.
fn concat(series: Matrix) -> Result<Matrix, EvalError> {
    let mut by_labels: HashMap<Labels, Vec<Point>> = HashMap::with_capacity(series.len());
    let mut repeated = false;
    for s in series {
        match by_labels.entry(s.labels) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s.points);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                repeated = true;
                e.get_mut().extend(s.points);
            }
        }
    }
    let mut merged: Matrix = by_labels
        .into_iter()
        .map(|(labels, mut points)| {
            if repeated {
                points.sort_by_key(|p| p.t);
            }
            Series { labels, points }
        })
        .collect();
    if repeated
        && merged
            .iter()
            .any(|s| s.points.windows(2).any(|w| w[0].t == w[1].t))
    {
        return Err(EvalError::Execution(
            "vector cannot contain metrics with the same labelset".to_owned(),
        ));
    }
    merged.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
    Ok(merged)
}

/// Per series labels and step, every endpoint's values of the `N` partial aggregates
/// (queries in order); an endpoint lacking one of them at a step is left out there.
type Gathered<const N: usize> = BTreeMap<Labels, BTreeMap<i64, Vec<[f64; N]>>>;

/// `per_endpoint[e][q]`: endpoint `e`'s series answering query `q`. Each endpoint's
/// parts are paired by its own labels and steps, never with another endpoint's (the
/// queries are asked one after another, and an answer may lack a step another has).
fn gather<const N: usize>(per_endpoint: &[Vec<Vec<Series>>]) -> Gathered<N> {
    let mut gathered: Gathered<N> = BTreeMap::new();
    for parts in per_endpoint {
        let values: Vec<HashMap<(&Labels, i64), f64>> = parts
            .iter()
            .take(N)
            .map(|series| {
                series
                    .iter()
                    .flat_map(|s| s.points.iter().map(move |p| ((&s.labels, p.t), p.v)))
                    .collect()
            })
            .collect();
        if values.len() < N {
            continue;
        }
        for ((labels, t), first) in &values[0] {
            let mut part = [0.0; N];
            part[0] = *first;
            let complete = (1..N).all(|q| match values[q].get(&(*labels, *t)) {
                Some(v) => {
                    part[q] = *v;
                    true
                }
                None => false,
            });
            if complete {
                gathered
                    .entry((*labels).clone())
                    .or_default()
                    .entry(*t)
                    .or_default()
                    .push(part);
            }
        }
    }
    gathered
}

/// The gathered parts, each step's made one value by `f`.
fn finish<const N: usize>(gathered: Gathered<N>, f: impl Fn(&[[f64; N]]) -> f64) -> Matrix {
    gathered
        .into_iter()
        .map(|(labels, steps)| Series {
            labels,
            points: steps
                .into_iter()
                .filter(|(_, parts)| !parts.is_empty())
                .map(|(t, parts)| Point { t, v: f(&parts) })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
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

/// A group's labels, `(name, value)` sorted by name.
type Group = Vec<(String, String)>;

/// Each endpoint's `topk`/`bottomk` ranked again: at each step, per group, the `k`
/// largest (smallest) values over all of them; NaN ranks last. Series come in the
/// order of their first step's ranking (groups by labels), Prometheus' order of an
/// instant answer.
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
    // Each series' first (step, group, place) kept.
    let mut first: Vec<Option<(i64, Group, usize)>> = vec![None; series.len()];
    for ((t, group), mut values) in candidates {
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
        for (place, (v, i)) in values.into_iter().take(k).enumerate() {
            kept[i].push(Point { t, v });
            first[i].get_or_insert_with(|| (t, group.clone(), place));
        }
    }
    let mut ranked: Vec<_> = series
        .into_iter()
        .zip(kept)
        .zip(first)
        .filter_map(|((s, mut points), first)| {
            points.sort_by_key(|p| p.t);
            Some((
                first?,
                Series {
                    labels: s.labels,
                    points,
                },
            ))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().map(|(_, s)| s).collect()
}
