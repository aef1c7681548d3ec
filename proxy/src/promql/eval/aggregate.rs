//! Aggregation operators (`sum by (job) (…)` and the rest), as Prometheus 2.42's
//! `aggregation` computes them, groups in order of first appearance.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM,
    T_TOPK, TokenId,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::call::unparen;
use super::quantile::quantile;
use super::value::{Labels, Matrix, Sample, Vector};
use super::{Arg, EvalError, Evaluator, exec};

struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: usize,
    /// topk/bottomk: a heap as Go's `container/heap` keeps it; quantile: all values.
    heap: Vec<Sample>,
}

impl Evaluator<'_> {
    pub(super) fn aggregate(&mut self, agg: &AggregateExpr) -> Result<Matrix, EvalError> {
        let op = agg.op.id();
        let (without, mut grouping): (bool, Vec<String>) = match &agg.modifier {
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        grouping.sort();
        let mut args: Vec<&Expr> = Vec::new();
        if let Some(param) = &agg.param {
            args.push(unparen(param));
        }
        args.push(&agg.expr);
        let has_param = agg.param.is_some();
        self.range_eval(&args, &mut |v, _| {
            let (param, input) = if has_param {
                (Some(v[0]), v[1])
            } else {
                (None, v[0])
            };
            aggregate(op, &grouping, without, param, input.vector())
        })
    }
}

/// Go's `convertibleToInt64`.
fn to_k(f: f64) -> Result<i64, EvalError> {
    if f.is_nan() || f <= -9_223_372_036_854_775_808.0 || f >= 9_223_372_036_854_775_807.0 {
        return Err(exec(format!("Scalar value {} overflows int64", format_value(f))));
    }
    Ok(f as i64)
}

fn aggregate(
    op: TokenId,
    grouping: &[String],
    without: bool,
    param: Option<Arg<'_>>,
    input: &[Sample],
) -> Result<Vector, EvalError> {
    if !matches!(
        op,
        T_SUM
            | T_AVG
            | T_COUNT
            | T_MIN
            | T_MAX
            | T_STDDEV
            | T_STDVAR
            | T_GROUP
            | T_TOPK
            | T_BOTTOMK
            | T_QUANTILE
            | T_COUNT_VALUES
    ) {
        return Err(exec("this aggregation is not in Prometheus 2.42's PromQL"));
    }
    let mut k = 0_i64;
    if op == T_TOPK || op == T_BOTTOMK {
        k = to_k(param.map_or(f64::NAN, Arg::scalar))?;
        if k < 1 {
            return Ok(Vec::new());
        }
    }
    let q = if op == T_QUANTILE {
        param.map_or(f64::NAN, Arg::scalar)
    } else {
        0.0
    };
    let mut grouping = grouping.to_vec();
    let mut value_label = "";
    if op == T_COUNT_VALUES {
        value_label = match param {
            Some(Arg::String(s)) => s,
            _ => "",
        };
        if !is_label_name(value_label) {
            return Err(exec(format!("invalid label name {value_label:?}")));
        }
        if !without {
            grouping.push(value_label.to_owned());
            grouping.sort();
        }
    }
    let mut excluded = grouping.clone();
    if without {
        excluded.push("__name__".to_owned());
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in input {
        let labels = if op == T_COUNT_VALUES {
            s.labels.with(value_label, &format_value(s.v))
        } else {
            s.labels.clone()
        };
        let key = if without {
            labels.key(&excluded, false)
        } else {
            labels.key(&grouping, true)
        };
        let Some(&at) = index.get(&key) else {
            let group_labels = if without {
                labels.retain(|n| !excluded.iter().any(|e| e == n))
            } else {
                labels.retain(|n| grouping.iter().any(|g| g == n))
            };
            let value = match op {
                T_STDVAR | T_STDDEV => 0.0,
                T_GROUP => 1.0,
                _ => s.v,
            };
            let heap = if op == T_TOPK || op == T_BOTTOMK || op == T_QUANTILE {
                vec![s.clone()]
            } else {
                Vec::new()
            };
            index.insert(key, groups.len());
            groups.push(Group {
                labels: group_labels,
                value,
                mean: s.v,
                count: 1,
                heap,
            });
            continue;
        };
        let group = &mut groups[at];
        match op {
            T_SUM => group.value += s.v,
            T_AVG => {
                group.count += 1;
                let n = group.count as f64;
                if group.mean.is_infinite() {
                    if s.v.is_infinite() && (group.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                group.mean += s.v / n - group.mean / n;
            }
            T_MAX if group.value < s.v || group.value.is_nan() => group.value = s.v,
            T_MIN if group.value > s.v || group.value.is_nan() => group.value = s.v,
            T_COUNT | T_COUNT_VALUES => group.count += 1,
            T_STDVAR | T_STDDEV => {
                group.count += 1;
                let delta = s.v - group.mean;
                group.mean += delta / group.count as f64;
                group.value += delta * (s.v - group.mean);
            }
            T_TOPK => keep_k(&mut group.heap, s, k, top_less),
            T_BOTTOMK => keep_k(&mut group.heap, s, k, bottom_less),
            T_QUANTILE => group.heap.push(s.clone()),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut group in groups {
        let value = match op {
            T_AVG => group.mean,
            T_COUNT | T_COUNT_VALUES => group.count as f64,
            T_STDVAR => group.value / group.count as f64,
            T_STDDEV => (group.value / group.count as f64).sqrt(),
            T_TOPK | T_BOTTOMK => {
                let less = if op == T_TOPK { top_less } else { bottom_less };
                // Largest first for topk, smallest first for bottomk; NaN last.
                group.heap.sort_by(|a, b| {
                    if less(b, a) {
                        std::cmp::Ordering::Less
                    } else if less(a, b) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                out.extend(group.heap.into_iter().map(|s| Sample { t: 0, ..s }));
                continue;
            }
            T_QUANTILE => {
                let mut values: Vec<f64> = group.heap.iter().map(|s| s.v).collect();
                quantile(q, &mut values)
            }
            _ => group.value,
        };
        out.push(Sample {
            labels: group.labels,
            t: 0,
            v: value,
        });
    }
    Ok(out)
}

/// topk keeps the k largest in a min-heap; NaN counts as the smallest.
fn top_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v < b.v
}

/// bottomk's heap order.
fn bottom_less(a: &Sample, b: &Sample) -> bool {
    a.v.is_nan() || a.v > b.v
}

/// One step of topk/bottomk with Go's heap operations, so ties resolve as in Prometheus.
fn keep_k(heap: &mut Vec<Sample>, s: &Sample, k: i64, less: fn(&Sample, &Sample) -> bool) {
    let full = heap.len() as i64 >= k;
    if full && !less(&heap[0], s) {
        return;
    }
    if full {
        if k == 1 {
            heap[0] = s.clone();
            return;
        }
        let last = heap.len() - 1;
        heap.swap(0, last);
        down(heap, 0, last, less);
        heap.pop();
    }
    heap.push(s.clone());
    let mut j = heap.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&heap[j], &heap[i]) {
            break;
        }
        heap.swap(i, j);
        j = i;
    }
}

fn down(heap: &mut [Sample], mut i: usize, n: usize, less: fn(&Sample, &Sample) -> bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&heap[j1 + 1], &heap[j1]) {
            j = j1 + 1;
        }
        if !less(&heap[j], &heap[i]) {
            break;
        }
        heap.swap(i, j);
        i = j;
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}
