//! PromQL's functions, as Prometheus 2.42's `functions.go` computes them, plus the
//! proxy's exact `entropy_over_time`, `l2_over_time` and `distinct_over_time`.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Timelike};
use promql_math::{self as math, kahan_inc};

use super::quantile::quantile;
use super::value::{Labels, Point, Sample, Vector};
use super::{Arg, EvalError, exec};

/// What a range function sees besides the window's points.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window<'a> {
    /// The evaluation step.
    pub ts: i64,
    /// The window's start (its `@`/offset-adjusted end less the range), ms.
    pub start: i64,
    /// The window's end, ms.
    pub end: i64,
    /// The scalar arguments at this step, in argument order (the range argument
    /// left out).
    pub scalars: &'a [f64],
}

/// A function over one series' points in a window; `None` drops the series at this step.
pub(super) type RangeFn = fn(&[Point], &Window<'_>) -> Result<Option<f64>, EvalError>;

/// The range function called `name`, if it is one.
pub(super) fn range_function(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |p, w| Ok(extrapolated_rate(p, w, true, true)),
        "increase" => |p, w| Ok(extrapolated_rate(p, w, true, false)),
        "delta" => |p, w| Ok(extrapolated_rate(p, w, false, false)),
        "irate" => |p, _| Ok(instant_value(p, true)),
        "idelta" => |p, _| Ok(instant_value(p, false)),
        "avg_over_time" => |p, _| Ok(Some(math::avg(p.iter().map(|p| p.v)))),
        "count_over_time" => |p, _| Ok(Some(p.len() as f64)),
        "sum_over_time" => |p, _| Ok(Some(math::sum(p.iter().map(|p| p.v)))),
        "min_over_time" => |p, _| Ok(Some(math::extreme(p.iter().map(|p| p.v), |a, b| a < b))),
        "max_over_time" => |p, _| Ok(Some(math::extreme(p.iter().map(|p| p.v), |a, b| a > b))),
        "last_over_time" => |p, _| Ok(p.last().map(|p| p.v)),
        "present_over_time" | "absent_over_time" => |_, _| Ok(Some(1.0)),
        "stddev_over_time" => |p, _| Ok(Some(math::variance(p.iter().map(|p| p.v)).sqrt())),
        "stdvar_over_time" => |p, _| Ok(Some(math::variance(p.iter().map(|p| p.v)))),
        "quantile_over_time" => |p, w| {
            let mut values: Vec<f64> = p.iter().map(|p| p.v).collect();
            Ok(Some(quantile(
                w.scalars.first().copied().unwrap_or(f64::NAN),
                &mut values,
            )))
        },
        "changes" => |p, _| {
            let n = p
                .windows(2)
                .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
                .count();
            Ok(Some(n as f64))
        },
        "resets" => |p, _| Ok(Some(p.windows(2).filter(|w| w[1].v < w[0].v).count() as f64)),
        "deriv" => |p, _| {
            if p.len() < 2 {
                return Ok(None);
            }
            Ok(Some(linear_regression(p, p[0].t).0))
        },
        "predict_linear" => |p, w| {
            if p.len() < 2 {
                return Ok(None);
            }
            let (slope, intercept) = linear_regression(p, w.ts);
            Ok(Some(
                slope * w.scalars.first().copied().unwrap_or(f64::NAN) + intercept,
            ))
        },
        "holt_winters" => holt_winters,
        "distinct_over_time" => |p, _| Ok(Some(frequencies(p).len() as f64)),
        "l2_over_time" => |p, _| {
            let sum: f64 = frequencies(p).values().map(|&f| f * f).sum();
            Ok(Some(sum.sqrt()))
        },
        "entropy_over_time" => |p, _| {
            let n = p.len() as f64;
            let sum: f64 = frequencies(p).values().map(|&f| f * f.log2()).sum();
            Ok(Some((n.log2() - sum / n).max(0.0)))
        },
        _ => return None,
    })
}

/// How often each value occurs (exact float equality: +0 and -0 are one value, and all
/// NaNs are one value).
fn frequencies(points: &[Point]) -> HashMap<u64, f64> {
    let mut counts: HashMap<u64, f64> = HashMap::with_capacity(points.len());
    for p in points {
        let key = if p.v == 0.0 {
            0
        } else if p.v.is_nan() {
            f64::NAN.to_bits()
        } else {
            p.v.to_bits()
        };
        *counts.entry(key).or_insert(0.0) += 1.0;
    }
    counts
}

/// `extrapolatedRate`: rate, increase and delta.
fn extrapolated_rate(p: &[Point], w: &Window<'_>, counter: bool, per_second: bool) -> Option<f64> {
    let (first, last) = (p.first()?, p.last()?);
    let mut result = last.v - first.v;
    if counter {
        for pair in p.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let at = math::Sampled {
        start_ms: w.start,
        end_ms: w.end,
        first_ms: first.t,
        last_ms: last.t,
    };
    math::extrapolate(result, first.v, p.len() as u64, at, counter, per_second)
}

/// `instantValue`: irate and idelta.
fn instant_value(p: &[Point], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least squares over the points, x in seconds from `intercept_time`: (slope, intercept).
fn linear_regression(p: &[Point], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].v;
    let mut const_y = true;
    for (i, point) in p.iter().enumerate() {
        if const_y && i > 0 && point.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (point.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(point.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * point.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

fn holt_winters(p: &[Point], w: &Window<'_>) -> Result<Option<f64>, EvalError> {
    let sf = w.scalars.first().copied().unwrap_or(f64::NAN);
    let tf = w.scalars.get(1).copied().unwrap_or(f64::NAN);
    if !(sf > 0.0 && sf < 1.0) {
        return Err(exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if !(tf > 0.0 && tf < 1.0) {
        return Err(exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if p.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, p[0].v);
    let mut b = p[1].v - p[0].v;
    for (i, point) in p.iter().enumerate().skip(1) {
        let x = sf * point.v;
        b = if i == 1 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        };
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}

/// Applies `f` to every sample, dropping the metric name.
fn each(args: &[Arg<'_>], f: impl Fn(f64) -> f64) -> Vector {
    args.first()
        .map(|a| a.vector())
        .unwrap_or_default()
        .iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            t: s.t,
            v: f(s.v),
        })
        .collect()
}

fn scalar_result(v: f64) -> Vector {
    vec![Sample {
        labels: Labels::default(),
        t: 0,
        v,
    }]
}

/// The instant-vector or scalar function called `name` at step `ts` (not `absent`,
/// which needs the expression, and not the range functions).
pub(super) fn instant_function(name: &str, args: &[Arg<'_>], ts: i64) -> Result<Vector, EvalError> {
    let scalar = |i: usize| args.get(i).map_or(f64::NAN, |a| a.scalar());
    Ok(match name {
        "abs" => each(args, f64::abs),
        "ceil" => each(args, f64::ceil),
        "floor" => each(args, f64::floor),
        "exp" => each(args, f64::exp),
        "sqrt" => each(args, f64::sqrt),
        "ln" => each(args, f64::ln),
        "log2" => each(args, f64::log2),
        "log10" => each(args, f64::log10),
        "sin" => each(args, f64::sin),
        "cos" => each(args, f64::cos),
        "tan" => each(args, f64::tan),
        "asin" => each(args, f64::asin),
        "acos" => each(args, f64::acos),
        "atan" => each(args, f64::atan),
        "sinh" => each(args, f64::sinh),
        "cosh" => each(args, f64::cosh),
        "tanh" => each(args, f64::tanh),
        "asinh" => each(args, f64::asinh),
        "acosh" => each(args, f64::acosh),
        "atanh" => each(args, f64::atanh),
        "rad" => each(args, |v| v * std::f64::consts::PI / 180.0),
        "deg" => each(args, |v| v * 180.0 / std::f64::consts::PI),
        "sgn" => each(args, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "pi" => scalar_result(std::f64::consts::PI),
        "time" => scalar_result(ts as f64 / 1000.0),
        "vector" => scalar_result(scalar(0)),
        "scalar" => {
            let v = args.first().map(|a| a.vector()).unwrap_or_default();
            scalar_result(if v.len() == 1 { v[0].v } else { f64::NAN })
        }
        "timestamp" => args
            .first()
            .map(|a| a.vector())
            .unwrap_or_default()
            .iter()
            .map(|s| Sample {
                labels: s.labels.without_name(),
                t: s.t,
                v: s.t as f64 / 1000.0,
            })
            .collect(),
        "clamp" => {
            let (min, max) = (scalar(1), scalar(2));
            if max < min {
                Vec::new()
            } else {
                each(args, |v| go_max(min, go_min(max, v)))
            }
        }
        "clamp_min" => {
            let min = scalar(1);
            each(args, |v| go_max(min, v))
        }
        "clamp_max" => {
            let max = scalar(1);
            each(args, |v| go_min(max, v))
        }
        "round" => {
            let inverse = 1.0 / if args.len() >= 2 { scalar(1) } else { 1.0 };
            each(args, |v| (v * inverse + 0.5).floor() / inverse)
        }
        "sort" | "sort_desc" => {
            let mut v = args.first().map(|a| a.vector()).unwrap_or_default().to_vec();
            let descending = name == "sort_desc";
            // NaN last either way.
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) if descending => b.v.total_cmp(&a.v),
                (false, false) => a.v.total_cmp(&b.v),
            });
            v
        }
        "label_replace" => label_replace(args)?,
        "label_join" => label_join(args)?,
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute" | "month"
        | "year" => date_function(name, args, ts),
        // Native histograms only; float samples are skipped, as in Prometheus.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => Vec::new(),
        "histogram_quantile" => {
            let buckets = args.get(1).map(|a| a.vector()).unwrap_or_default();
            super::quantile::histogram_quantile(scalar(0), buckets)
        }
        other => {
            return Err(exec(format!(
                "function {other:?} is not supported by the local engine"
            )));
        }
    })
}

/// Go's `math.Max`: NaN wins over everything but +Inf, +0 over -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins over everything but -Inf, -0 over +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn string_arg<'a>(args: &[Arg<'a>], i: usize) -> &'a str {
    match args.get(i) {
        Some(Arg::String(s)) => s,
        _ => "",
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label_replace(args: &[Arg<'_>]) -> Result<Vector, EvalError> {
    let (dst, replacement, src, pattern) = (
        string_arg(args, 1),
        string_arg(args, 2),
        string_arg(args, 3),
        string_arg(args, 4),
    );
    let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        exec(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_label_name(dst) {
        return Err(exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::new();
    for s in args.first().map(|a| a.vector()).unwrap_or_default() {
        let value = s.labels.get(src);
        let labels = match regex.captures(value) {
            None => s.labels.clone(),
            Some(caps) => {
                let mut expanded = String::new();
                caps.expand(replacement, &mut expanded);
                s.labels.with(dst, &expanded)
            }
        };
        out.push(Sample {
            labels,
            t: s.t,
            v: s.v,
        });
    }
    Ok(out)
}

fn label_join(args: &[Arg<'_>]) -> Result<Vector, EvalError> {
    let (dst, separator) = (string_arg(args, 1), string_arg(args, 2));
    let sources: Vec<&str> = (3..args.len()).map(|i| string_arg(args, i)).collect();
    if let Some(bad) = sources.iter().find(|s| !is_label_name(s)) {
        return Err(exec(format!("invalid source label name in label_join(): {bad}")));
    }
    if !is_label_name(dst) {
        return Err(exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(args
        .first()
        .map(|a| a.vector())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let joined: Vec<&str> = sources.iter().map(|n| s.labels.get(n)).collect();
            Sample {
                labels: s.labels.with(dst, &joined.join(separator)),
                t: s.t,
                v: s.v,
            }
        })
        .collect())
}

fn date_function(name: &str, args: &[Arg<'_>], ts: i64) -> Vector {
    let part = |seconds: i64| -> f64 {
        let Some(t) = DateTime::from_timestamp(seconds, 0) else {
            return f64::NAN;
        };
        let value = match name {
            "days_in_month" => {
                let (y, m) = (t.year(), t.month());
                let next = if m == 12 {
                    chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
                } else {
                    chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
                };
                let this = chrono::NaiveDate::from_ymd_opt(y, m, 1);
                match (this, next) {
                    (Some(a), Some(b)) => (b - a).num_days(),
                    _ => return f64::NAN,
                }
            }
            "day_of_month" => i64::from(t.day()),
            "day_of_week" => i64::from(t.weekday().num_days_from_sunday()),
            "day_of_year" => i64::from(t.ordinal()),
            "hour" => i64::from(t.hour()),
            "minute" => i64::from(t.minute()),
            "month" => i64::from(t.month()),
            _ => i64::from(t.year()),
        };
        value as f64
    };
    match args.first() {
        // Go's integer division truncates toward zero.
        None => scalar_result(part(ts / 1000)),
        Some(arg) => arg
            .vector()
            .iter()
            .map(|s| Sample {
                labels: s.labels.without_name(),
                t: s.t,
                // Go's int64(float) conversion: truncation toward zero.
                v: part(s.v as i64),
            })
            .collect(),
    }
}
