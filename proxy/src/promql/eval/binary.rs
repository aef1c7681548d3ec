//! Binary operators: arithmetic, comparison (filtering or `bool`) and set operators,
//! with vector matching (`on`, `ignoring`, `group_left`, `group_right`), as
//! Prometheus 2.42's `VectorBinop` and friends.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ,
    T_POW, T_SUB, TokenId,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::value::{Labels, Matrix, Sample, Vector};
use super::{EvalError, Evaluator, exec};

/// How two vectors are matched.
struct Matching {
    card: Card,
    /// `on` (true) or `ignoring` (false).
    on: bool,
    labels: Vec<String>,
    /// `group_x` extra labels, copied from the "one" side.
    include: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Self {
        let modifier = b.modifier.as_ref();
        let (card, include) = match modifier.map(|m| &m.card) {
            Some(VectorMatchCardinality::ManyToOne(l)) => (Card::ManyToOne, l.labels.clone()),
            Some(VectorMatchCardinality::OneToMany(l)) => (Card::OneToMany, l.labels.clone()),
            Some(VectorMatchCardinality::ManyToMany) => (Card::ManyToMany, Vec::new()),
            _ if is_set_op(b.op.id()) => (Card::ManyToMany, Vec::new()),
            _ => (Card::OneToOne, Vec::new()),
        };
        let (on, labels) = match modifier.and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        Self {
            card,
            on,
            labels,
            include,
        }
    }

    /// The match signature of a series.
    fn signature(&self, labels: &Labels) -> Vec<u8> {
        if self.on {
            labels.key(&self.labels, true)
        } else {
            let mut excluded = self.labels.clone();
            excluded.push("__name__".to_owned());
            labels.key(&excluded, false)
        }
    }
}

fn is_set_op(op: TokenId) -> bool {
    matches!(op, T_LAND | T_LOR | T_LUNLESS)
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

/// Go's `math.Mod`: the remainder with the sign of `a` (Rust's `%` agrees).
fn arithmetic(op: TokenId, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        T_ADD => a + b,
        T_SUB => a - b,
        T_MUL => a * b,
        T_DIV => a / b,
        T_POW => a.powf(b),
        T_MOD => a % b,
        T_ATAN2 => a.atan2(b),
        _ => return None,
    })
}

fn compare(op: TokenId, a: f64, b: f64) -> bool {
    match op {
        T_EQLC => a == b,
        T_NEQ => a != b,
        T_GTR => a > b,
        T_LSS => a < b,
        T_GTE => a >= b,
        _ => a <= b,
    }
}

/// `vectorElemBinop`: (value, keep).
fn element(op: TokenId, a: f64, b: f64) -> (f64, bool) {
    match arithmetic(op, a, b) {
        Some(v) => (v, true),
        None => (a, compare(op, a, b)),
    }
}

impl Evaluator<'_> {
    pub(super) fn binary(&mut self, b: &BinaryExpr) -> Result<Matrix, EvalError> {
        let op = b.op.id();
        if b.modifier
            .as_ref()
            .is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            return Err(exec("fill modifiers are not in Prometheus 2.42's PromQL"));
        }
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let args = [b.lhs.as_ref(), b.rhs.as_ref()];
        match (b.lhs.value_type(), b.rhs.value_type()) {
            (ValueType::Scalar, ValueType::Scalar) => self.range_eval(&args, &mut |v, _| {
                let (l, r) = (v[0].scalar(), v[1].scalar());
                let value = arithmetic(op, l, r).unwrap_or_else(|| f64::from(u8::from(compare(op, l, r))));
                Ok(vec![Sample {
                    labels: Labels::default(),
                    t: 0,
                    v: value,
                }])
            }),
            (ValueType::Vector, ValueType::Scalar) => self.range_eval(&args, &mut |v, _| {
                Ok(vector_scalar(
                    op,
                    v[0].vector(),
                    v[1].scalar(),
                    false,
                    return_bool,
                ))
            }),
            (ValueType::Scalar, ValueType::Vector) => self.range_eval(&args, &mut |v, _| {
                Ok(vector_scalar(op, v[1].vector(), v[0].scalar(), true, return_bool))
            }),
            _ => {
                let matching = Matching::of(b);
                self.range_eval(&args, &mut |v, _| {
                    let (lhs, rhs) = (v[0].vector(), v[1].vector());
                    match op {
                        T_LAND => Ok(and(lhs, rhs, &matching)),
                        T_LOR => Ok(or(lhs, rhs, &matching)),
                        T_LUNLESS => Ok(unless(lhs, rhs, &matching)),
                        _ => vector_vector(op, lhs, rhs, &matching, return_bool),
                    }
                })
            }
        }
    }
}

/// `VectorscalarBinop`; `swap` when the scalar is on the left.
fn vector_scalar(op: TokenId, vector: &[Sample], scalar: f64, swap: bool, return_bool: bool) -> Vector {
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if swap { (scalar, s.v) } else { (s.v, scalar) };
        let (mut value, mut keep) = element(op, l, r);
        if is_comparison(op) && swap {
            // The vector's value is kept even when it is on the right.
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            let labels = if drops_name(op) || return_bool {
                s.labels.without_name()
            } else {
                s.labels.clone()
            };
            out.push(Sample {
                labels,
                t: s.t,
                v: value,
            });
        }
    }
    out
}

fn and(lhs: &[Sample], rhs: &[Sample], m: &Matching) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<Vec<u8>> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.iter()
        .filter(|s| right.contains(&m.signature(&s.labels)))
        .cloned()
        .collect()
}

fn or(lhs: &[Sample], rhs: &[Sample], m: &Matching) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs.iter().chain(rhs).cloned().collect();
    }
    let left: HashSet<Vec<u8>> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.iter()
        .cloned()
        .chain(
            rhs.iter()
                .filter(|s| !left.contains(&m.signature(&s.labels)))
                .cloned(),
        )
        .collect()
}

fn unless(lhs: &[Sample], rhs: &[Sample], m: &Matching) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs.to_vec();
    }
    let right: HashSet<Vec<u8>> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.iter()
        .filter(|s| !right.contains(&m.signature(&s.labels)))
        .cloned()
        .collect()
}

/// `VectorBinop` for arithmetic and comparisons.
fn vector_vector(
    op: TokenId,
    lhs: &[Sample],
    rhs: &[Sample],
    m: &Matching,
    return_bool: bool,
) -> Result<Vector, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let swapped = m.card == Card::OneToMany;
    let (lhs, rhs) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<Vec<u8>, &Sample> = HashMap::with_capacity(rhs.len());
    for s in rhs {
        let sig = m.signature(&s.labels);
        if let Some(dup) = right.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            let matched = if m.on {
                s.labels.retain(|n| m.labels.iter().any(|l| l == n))
            } else {
                s.labels
                    .retain(|n| n != "__name__" && !m.labels.iter().any(|l| l == n))
            };
            return Err(exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                matched.display(),
                s.labels.display(),
                dup.labels.display()
            )));
        }
        right.insert(sig, s);
    }
    let mut matched: HashMap<Vec<u8>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for l in lhs {
        let sig = m.signature(&l.labels);
        let Some(r) = right.get(&sig) else { continue };
        let (a, b) = if swapped { (r.v, l.v) } else { (l.v, r.v) };
        let (mut value, keep) = element(op, a, b);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&l.labels, &r.labels, op, m);
        if return_bool {
            labels = labels.without_name();
        }
        let seen = matched.entry(sig);
        match m.card {
            Card::OneToOne => {
                if matches!(seen, std::collections::hash_map::Entry::Occupied(_)) {
                    return Err(exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                seen.or_default();
            }
            _ => {
                if !seen.or_default().insert(labels.clone()) {
                    return Err(exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
        }
        out.push(Sample {
            labels,
            t: l.t,
            v: value,
        });
    }
    Ok(out)
}

/// `resultMetric`: the left side's labels, name dropped for arithmetic, reduced to the
/// matching labels for one-to-one, plus `group_x` labels from the "one" side.
fn result_labels(lhs: &Labels, rhs: &Labels, op: TokenId, m: &Matching) -> Labels {
    let mut labels = if drops_name(op) {
        lhs.without_name()
    } else {
        lhs.clone()
    };
    if m.card == Card::OneToOne {
        labels = if m.on {
            labels.retain(|n| m.labels.iter().any(|l| l == n))
        } else {
            labels.retain(|n| !m.labels.iter().any(|l| l == n))
        };
    }
    for name in &m.include {
        labels = labels.with(name, rhs.get(name));
    }
    labels
}
