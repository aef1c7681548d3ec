//! The shape of a query, measured before it is parsed: its length and how deeply its
//! expression tree nests. `promql-parser` builds, checks, prints and drops its tree by
//! recursion, and so does the engine, so a deep tree overflows a thread's stack (an
//! abort, not an error). One linear pass over the text bounds the depth first.

/// Bounds on a query's text (`limits.max_query_bytes`, `limits.max_query_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Longest query, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting, as [`depth`] measures it.
    pub max_depth: usize,
}

/// The deepest `limits.max_query_depth` may be set: measured to stay within a 2 MiB
/// stack in an unoptimized build (`tests/limits.rs` parses and evaluates it there).
pub const MAX_DEPTH: usize = 1024;

/// The defaults of `limits:`. The depth stays far below what a 2 MiB stack (tokio's
/// worker threads) holds in an unoptimized build, where frames are largest.
pub const DEFAULT_SHAPE: ShapeLimits = ShapeLimits {
    max_bytes: 128 * 1024,
    max_depth: 256,
};

impl Default for ShapeLimits {
    fn default() -> Self {
        DEFAULT_SHAPE
    }
}

/// Why a query's shape is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Longer than `max_bytes`.
    #[error("query is {len} bytes long, more than the {max} allowed (limits.max_query_bytes)")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A bare number of seconds as a duration or time that no `Duration` holds
    /// (`promql-parser` panics on it).
    #[error("{number:?} is out of range as a duration or time in seconds")]
    OutOfRange {
        /// The number as written.
        number: String,
    },
    /// Nested deeper than `max_depth`.
    #[error(
        "query nests deeper than {max} levels (limits.max_query_depth): every parenthesis, \
         bracket, function call, aggregation and operator of a chain like `a + b + c` adds one"
    )]
    TooDeep {
        /// The limit.
        max: usize,
    },
}

/// Checks `query` against `limits` without building anything recursive.
pub fn check(query: &str, limits: &ShapeLimits) -> Result<(), ShapeError> {
    if query.len() > limits.max_bytes {
        return Err(ShapeError::TooLong {
            len: query.len(),
            max: limits.max_bytes,
        });
    }
    if depth(query) > limits.max_depth {
        return Err(ShapeError::TooDeep {
            max: limits.max_depth,
        });
    }
    if let Some(number) = out_of_range_seconds(query) {
        return Err(ShapeError::OutOfRange { number });
    }
    Ok(())
}

/// Largest bare number of seconds accepted where a duration or time goes: about 31
/// million years, far beyond any data, far below what a `Duration` holds.
const MAX_SECONDS: f64 = 1e15;

/// The first bare number (no unit) in a range or subquery bracket, or after `offset`
/// or `@`, that is not a finite number of seconds up to [`MAX_SECONDS`]. Linear, like
/// [`depth`].
fn out_of_range_seconds(query: &str) -> Option<String> {
    let bytes = query.as_bytes();
    let mut brackets = 0usize;
    let mut after_keyword = false;
    let mut in_braces = false;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = skip_inert(bytes, i) {
            i = next;
            after_keyword = false;
            continue;
        }
        let b = bytes[i];
        match b {
            b'}' if in_braces => in_braces = false,
            _ if in_braces => {}
            b'{' => in_braces = true,
            b'[' => brackets += 1,
            b']' => brackets = brackets.saturating_sub(1),
            b'@' => {
                after_keyword = true;
                i += 1;
                continue;
            }
            // A sign keeps the number after `offset` or `@` in view.
            b'+' | b'-' if after_keyword => {
                i += 1;
                continue;
            }
            // A colon ends a word here: it separates a subquery's range and step.
            _ if is_word(b) && b != b':' => {
                let start = i;
                while i < bytes.len() && is_word(bytes[i]) && bytes[i] != b':' {
                    if matches!(bytes[i], b'e' | b'E')
                        && bytes[start].is_ascii_digit()
                        && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
                    {
                        i += 1;
                    }
                    i += 1;
                }
                let word = &query[start..i];
                let counts = brackets > 0 || after_keyword;
                after_keyword = word.eq_ignore_ascii_case("offset");
                if counts && !seconds_in_range(word) {
                    return Some(word.to_owned());
                }
                continue;
            }
            _ if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        after_keyword = false;
        i += 1;
    }
    None
}

/// Whether `word`, when it is a bare number, is a usable number of seconds; words
/// that are not numbers (durations with units, names) are the parser's to judge.
pub(crate) fn seconds_in_range(word: &str) -> bool {
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
    {
        return false;
    }
    if !word.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return true;
    }
    let value = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16).ok().map(|v| v as f64),
        None => word.parse::<f64>().ok(),
    };
    value.is_none_or(|v| v.is_finite() && v.abs() <= MAX_SECONDS)
}

/// One open `(` or `[` group: the operators seen in its current argument.
#[derive(Debug, Clone, Copy)]
struct Group {
    operators: usize,
}

/// An upper bound on the depth of the expression tree of `query`, exact for chains and
/// nesting: each open parenthesis or bracket adds one level, and so does each binary or
/// unary operator within the same argument of a group (a chain `a + b + c` is a tree as
/// deep as it is long). A comma starts a sibling, which does not add to the depth.
/// Strings, comments and label matchers add nothing. Linear in the length of `query`.
pub fn depth(query: &str) -> usize {
    let bytes = query.as_bytes();
    let mut stack: Vec<Group> = vec![Group { operators: 0 }];
    // Levels of every open group plus their operators: the current depth.
    let mut current = 1usize;
    let mut deepest = current;
    let mut i = 0;
    let mut in_braces = false;
    while i < bytes.len() {
        if let Some(next) = skip_inert(bytes, i) {
            i = next;
            continue;
        }
        let b = bytes[i];
        match b {
            b'}' if in_braces => in_braces = false,
            _ if in_braces => {}
            b'{' => in_braces = true,
            b'(' | b'[' => {
                stack.push(Group { operators: 0 });
                current += 1;
            }
            b')' | b']' => {
                if stack.len() > 1
                    && let Some(group) = stack.pop()
                {
                    current -= group.operators + 1;
                }
            }
            b',' => {
                if let Some(group) = stack.last_mut() {
                    current -= group.operators;
                    group.operators = 0;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                // Two-character operators (`==`, `!=`, `<=`, `>=`) count once.
                if i + 1 < bytes.len() && bytes[i + 1] == b'=' {
                    i += 1;
                }
                operator(&mut stack, &mut current);
            }
            _ if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':' => {
                let start = i;
                while i < bytes.len() && is_word(bytes[i]) {
                    // An exponent's sign (`1e-3`) belongs to the number.
                    if matches!(bytes[i], b'e' | b'E')
                        && bytes[start].is_ascii_digit()
                        && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
                    {
                        i += 1;
                    }
                    i += 1;
                }
                if matches!(&bytes[start..i], b"and" | b"or" | b"unless" | b"atan2") {
                    operator(&mut stack, &mut current);
                }
                deepest = deepest.max(current);
                continue;
            }
            _ => {}
        }
        deepest = deepest.max(current);
        i += 1;
    }
    deepest
}

fn operator(stack: &mut [Group], current: &mut usize) {
    if let Some(group) = stack.last_mut() {
        group.operators += 1;
        *current += 1;
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':'
}

/// Past a string or a comment starting at `i`, if one does: they hold no structure.
fn skip_inert(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' | b'\'' | b'`' => Some(skip_string(bytes, i)),
        b'#' => Some(
            bytes[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |n| i + n),
        ),
        _ => None,
    }
}

/// The index after the string starting at `start`, or the end of the input for an
/// unterminated one (the parser reports that).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests;
