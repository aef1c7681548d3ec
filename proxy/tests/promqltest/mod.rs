//! Reads Prometheus 2.42's PromQL test scripts (`promql/testdata/*.test`): `load`,
//! `clear`, and `eval[_fail|_ordered] instant at <duration> <query>` with expected
//! results, the way `promql/test.go` at v2.42.0 reads them.

#![allow(dead_code, reason = "the conformance runner uses the rest")]

use sketch_proxy::promql::parse_selector;

/// Prometheus' stale marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A label set, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One command of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Series with a value every `step_ms` from time 0; `None` is an omitted sample.
    Load {
        step_ms: i64,
        series: Vec<(Labels, Vec<Option<f64>>)>,
    },
    /// Drops all data.
    Clear,
    /// An instant query at `at_ms` and what it must return.
    Eval {
        kind: EvalKind,
        at_ms: i64,
        query: String,
        expected: Expected,
        /// 1-based line of the command, for messages.
        line: usize,
    },
}

/// `eval`, `eval_fail` or `eval_ordered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalKind {
    /// Results compared as a set.
    Instant,
    /// The query must fail.
    Fail,
    /// Results compared in order.
    Ordered,
}

/// What an evaluation must return.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A scalar.
    Scalar(f64),
    /// A vector: series and their values (possibly none).
    Vector(Vec<(Labels, f64)>),
}

/// The vendored scripts, sorted by name.
pub fn script_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/promqltest-v2.42.0");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    files
}

/// Parses a whole script; errors name the line.
pub fn parse(script: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<String> = script
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                String::new()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if line.is_empty() {
            i += 1;
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        let block_end = lines[i + 1..]
            .iter()
            .position(String::is_empty)
            .map_or(lines.len(), |p| i + 1 + p);
        let block = &lines[i + 1..block_end];
        let at = |e: String| format!("line {}: {e}", i + 1);
        let command = if word == "clear" {
            Command::Clear
        } else if word == "load" {
            parse_load(line, block).map_err(at)?
        } else if word.starts_with("eval") {
            parse_eval(line, block, i + 1).map_err(at)?
        } else {
            return Err(at(format!("invalid command {line:?}")));
        };
        // `clear` stands alone; the others own the lines up to the next blank one, and
        // an eval with a scalar result owns only that line.
        i = match &command {
            Command::Clear => i + 1,
            Command::Eval {
                expected: Expected::Scalar(_),
                ..
            } => i + 2,
            _ => block_end,
        };
        commands.push(command);
    }
    Ok(commands)
}

fn parse_load(line: &str, block: &[String]) -> Result<Command, String> {
    let step = line["load".len()..].trim();
    let step_ms = duration_ms(step)?;
    let series = block
        .iter()
        .map(|l| series_description(l))
        .collect::<Result<_, _>>()?;
    Ok(Command::Load { step_ms, series })
}

fn parse_eval(line: &str, block: &[String], number: usize) -> Result<Command, String> {
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .ok_or("eval without a query")?;
    let kind = match word.to_ascii_lowercase().as_str() {
        "eval" => EvalKind::Instant,
        "eval_fail" => EvalKind::Fail,
        "eval_ordered" => EvalKind::Ordered,
        other => return Err(format!("invalid command {other:?}")),
    };
    let rest = rest
        .trim_start()
        .strip_prefix("instant")
        .ok_or("only `instant` evaluations exist")?
        .trim_start();
    let (at_ms, query) = match rest.strip_prefix("at") {
        Some(after) if after.starts_with(char::is_whitespace) => {
            let after = after.trim_start();
            let (at, query) = after
                .split_once(char::is_whitespace)
                .ok_or("eval without a query")?;
            (duration_ms(at)?, query.trim().to_owned())
        }
        _ => (0, rest.trim().to_owned()),
    };
    let expected = match block.first().map(|l| number_value(l)) {
        Some(Ok(v)) => Expected::Scalar(v),
        _ => Expected::Vector(
            block
                .iter()
                .map(|l| {
                    let (labels, values) = series_description(l)?;
                    match values.as_slice() {
                        [Some(v)] => Ok((labels, *v)),
                        _ => Err(format!("{l:?}: an expected sample has exactly one value")),
                    }
                })
                .collect::<Result<_, String>>()?,
        ),
    };
    Ok(Command::Eval {
        kind,
        at_ms,
        query,
        expected,
        line: number,
    })
}

/// `metric{labels} values...` (`parser.ParseSeriesDesc`).
fn series_description(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let split = metric_end(line).ok_or_else(|| format!("{line:?}: no series"))?;
    let (metric, values) = line.split_at(split);
    let labels = labels_of(metric.trim())?;
    let mut expanded = Vec::new();
    for item in values.split_whitespace() {
        expanded.extend(series_item(item).map_err(|e| format!("{line:?}: {e}"))?);
    }
    Ok((labels, expanded))
}

/// Where the series' name and labels end: after the closing `}` (outside quotes), or at
/// the first blank when there are no braces.
fn metric_end(line: &str) -> Option<usize> {
    let brace = line.find('{');
    let blank = line.find(char::is_whitespace).unwrap_or(line.len());
    match brace {
        Some(open) if open < blank => {
            let mut quoted = false;
            let mut escaped = false;
            for (i, c) in line.char_indices().skip(open) {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '}' if !quoted => return Some(i + 1),
                    _ => {}
                }
            }
            None
        }
        _ => Some(blank),
    }
}

fn labels_of(metric: &str) -> Result<Labels, String> {
    if metric == "{}" {
        return Ok(Vec::new());
    }
    let matchers = parse_selector(metric).map_err(|e| format!("{metric:?}: {}", e.detail()))?;
    let mut labels: Labels = matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    labels.sort();
    labels.dedup();
    Ok(labels)
}

/// One item of a series' values: `_`, `_xN`, `v`, `vxN` (N+1 times), `v+dxN`, `v-dxN`.
fn series_item(item: &str) -> Result<Vec<Option<f64>>, String> {
    if item == "_" {
        return Ok(vec![None]);
    }
    if let Some(n) = item.strip_prefix("_x") {
        return Ok(vec![None; times(n)?]);
    }
    let Some((head, n)) = item
        .rsplit_once('x')
        .filter(|(h, n)| !h.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
    else {
        return Ok(vec![Some(value(item)?)]);
    };
    let n = times(n)?;
    // The delta's sign: the last + or - that is neither leading nor an exponent's.
    let delta_at = head
        .char_indices()
        .filter(|&(i, c)| (c == '+' || c == '-') && i > 0 && !head[..i].ends_with(['e', 'E']))
        .map(|(i, _)| i)
        .next_back();
    let (start, delta) = match delta_at {
        Some(i) => (value(&head[..i])?, number_value(&head[i..])?),
        None => (value(head)?, 0.0),
    };
    let mut out = Vec::with_capacity(n + 1);
    let mut v = start;
    for _ in 0..=n {
        out.push(Some(v));
        v += delta;
    }
    Ok(out)
}

fn times(n: &str) -> Result<usize, String> {
    n.parse().map_err(|e| format!("{n:?}: {e}"))
}

/// A sample value: a number, or `stale`.
fn value(text: &str) -> Result<f64, String> {
    if text == "stale" {
        return Ok(f64::from_bits(STALE_NAN_BITS));
    }
    number_value(text).or_else(|_| duration_ms(text).map(|ms| ms as f64 / 1000.0))
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat`: decimal, 0x, Inf, NaN.
fn number_value(text: &str) -> Result<f64, String> {
    let unsigned = text.trim_start_matches(['+', '-']);
    let negative = text.starts_with('-');
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        let n = i64::from_str_radix(hex, 16).map_err(|e| e.to_string())? as f64;
        return Ok(if negative { -n } else { n });
    }
    match unsigned.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Ok(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }),
        "nan" => Ok(f64::NAN),
        _ => text.parse::<f64>().map_err(|e| format!("{text:?}: {e}")),
    }
}

/// Prometheus' `model.ParseDuration`, which (unlike PromQL) also takes zero, e.g. `0m`.
fn duration_ms(text: &str) -> Result<i64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(0);
    }
    promql_parser::util::parse_duration(text)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| format!("{text:?} is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_items_expand_like_prometheus() {
        let cases: [(&str, Vec<Option<f64>>); 8] = [
            ("1", vec![Some(1.0)]),
            ("_", vec![None]),
            ("_x3", vec![None; 3]),
            ("1x3", vec![Some(1.0); 4]),
            ("1+2x3", vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]),
            ("-1-1x2", vec![Some(-1.0), Some(-2.0), Some(-3.0)]),
            ("1e3+1e2x1", vec![Some(1000.0), Some(1100.0)]),
            ("Inf", vec![Some(f64::INFINITY)]),
        ];
        for (item, expected) in cases {
            assert_eq!(series_item(item).unwrap(), expected, "{item}");
        }
        assert_eq!(
            series_item("stale").unwrap()[0].unwrap().to_bits(),
            STALE_NAN_BITS
        );
    }
}
