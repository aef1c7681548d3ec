//! Prometheus 2.42's arithmetic for range functions, as `promql/functions.go` computes
//! it, to the bit: the engine's exact path and the `stats` plugin's (a WebAssembly
//! guest, so no dependency beyond `core` and `std`) both call it, so their answers agree.

/// `kahanSumInc`: adds `inc` to the compensated sum `(sum, c)`.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `sum_over_time`: the Kahan sum; an overflowed sum stays infinite.
pub fn sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// `avg_over_time`: the running mean, which keeps an infinity it reached.
pub fn avg(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut mean, mut count, mut c) = (0.0_f64, 0.0, 0.0);
    for v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `min_over_time` and `max_over_time`: `better(a, b)` when `a` replaces `b`; a NaN is
/// replaced by anything. NaN for no values.
pub fn extreme(values: impl IntoIterator<Item = f64>, better: fn(f64, f64) -> bool) -> f64 {
    let mut values = values.into_iter();
    let mut best = values.next().unwrap_or(f64::NAN);
    for v in values {
        if better(v, best) || best.is_nan() {
            best = v;
        }
    }
    best
}

/// `stdvar_over_time`: the compensated Welford update (`stddev_over_time` is its root).
pub fn variance(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Where a window's samples lie, for [`extrapolate`]: the range `[start_ms, end_ms]`
/// (a selector's, offset and `@` applied) and its first and last sample's timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampled {
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// `extrapolatedRate` after its loop: `result` (last less first, plus for a counter
/// the value before each reset, added in order) of `samples` samples, the first of value
/// `first`, extrapolated to the range's ends; per second for `rate`. `None` below two
/// samples, where Prometheus has no value.
pub fn extrapolate(
    result: f64,
    first: f64,
    samples: u64,
    at: Sampled,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if samples < 2 {
        return None;
    }
    let mut to_start = (at.first_ms - at.start_ms) as f64 / 1000.0;
    let to_end = (at.end_ms - at.last_ms) as f64 / 1000.0;
    let sampled = (at.last_ms - at.first_ms) as f64 / 1000.0;
    let average = sampled / (samples - 1) as f64;
    if counter && result > 0.0 && first >= 0.0 {
        // A counter is not extrapolated below zero.
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold { to_end } else { average / 2.0 };
    let mut factor = interval / sampled;
    if per_second {
        factor /= go_seconds(at.end_ms - at.start_ms);
    }
    Some(result * factor)
}

/// Go's `time.Duration.Seconds()` of `ms` milliseconds: whole seconds plus the
/// nanoseconds over 1e9, rounded as Go rounds them.
pub fn go_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}
