//! The trait a plugin implements, and the plain Rust types it speaks.

/// A failure the plugin reports on purpose; the host passes it on and keeps the plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A sketch option was rejected.
    InvalidConfig(String),
    /// A query argument is unusable.
    InvalidArgument(String),
    /// Samples arrived out of time order (the first offending timestamp).
    OutOfOrder(i64),
    /// Snapshot bytes could not be read.
    BadSnapshot(String),
    /// Anything else.
    Other(String),
}

/// What answers of one function may be off by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Largest relative value error of an answer over at least `min_samples` samples.
    pub relative: f64,
    /// Windows with fewer samples than this are answered exactly.
    pub min_samples: u64,
}

/// One PromQL function a plugin answers.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionInfo {
    /// PromQL name, e.g. `quantile_over_time`.
    pub name: String,
    /// Names of the scalar arguments before the range vector, in call order.
    pub scalar_args: Vec<String>,
    /// The error bound of every answer.
    pub bound: Bound,
    /// One line for `sketch-proxy plugins list`.
    pub description: String,
}

/// How a plugin describes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// Lowercase `[a-z0-9-]` name.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// The functions it answers.
    pub functions: Vec<FunctionInfo>,
}

/// One evaluation request, already checked against [`PluginInfo`]: the function exists
/// and `args` has one value per declared scalar argument.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Index of the function in [`PluginInfo::functions`].
    pub function: usize,
    /// The scalar arguments.
    pub args: &'a [f64],
    /// Where the evaluated samples lie; set by the SDK for each evaluation.
    pub span: Span,
}

impl<'a> Call<'a> {
    /// A call of function `function` with `args`, its span not yet known.
    pub fn new(function: usize, args: &'a [f64]) -> Self {
        Self {
            function,
            args,
            span: Span::default(),
        }
    }
}

/// The time range of one evaluation and where its samples lie in it, for functions that
/// depend on time as well as on values (`rate` extrapolates to the range's ends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// The range asked, `[start_ms, end_ms]`, as the query gave it (retention does not
    /// shorten it).
    pub start_ms: i64,
    /// See `start_ms`.
    pub end_ms: i64,
    /// Timestamp of the first sample in the range; 0 unless [`Plugin::SAMPLE_TIMES`].
    pub first_ms: i64,
    /// Timestamp of the last sample in the range; 0 unless [`Plugin::SAMPLE_TIMES`].
    pub last_ms: i64,
}

/// A mergeable summary of a set of samples' values. Summaries of adjacent blocks are
/// merged up a tree and for each query always in time order: values are added oldest
/// first, and `a.merge(b)` is called only when `b`'s samples all follow `a`'s. A
/// summary may therefore depend on order (first and last values, changes between
/// neighbours); one that does must not claim [`Summary::remove`].
pub trait Summary: Clone + std::fmt::Debug + 'static {
    /// Adds one sample value.
    fn add(&mut self, value: f64);
    /// Adds every sample that `other` summarizes.
    fn merge(&mut self, other: &Self);
    /// A new summary of both; the tree builds parents with it. Override it when merging
    /// builds a new summary anyway, to skip the copy of `self`.
    fn merged(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.merge(other);
        out
    }
    /// Heap and inline bytes held.
    fn memory_bytes(&self) -> usize;
    /// Releases spare capacity; called before a summary is stored in the tree.
    fn shrink(&mut self) {}
    /// Adds many values.
    fn extend(&mut self, values: &[f64]) {
        for &v in values {
            self.add(v);
        }
    }
    /// Takes out values the summary holds (each added before and not taken out since),
    /// exactly, and returns `true`; or returns `false` having changed nothing, as the
    /// default does. A summary that can lets a window's edge block be read as the
    /// block's summary less the samples outside the window, when those are fewer. The
    /// SDK asks once per sketch, with no values, whether it can.
    fn remove(&mut self, values: &[f64]) -> bool {
        let _ = values;
        false
    }
}

/// Exact state over a sliding window of sample values, oldest first. `pop` is always
/// called with the oldest value still inside.
pub trait Window: std::fmt::Debug + 'static {
    /// Adds the newest value.
    fn push(&mut self, value: f64);
    /// Removes the oldest value.
    fn pop(&mut self, value: f64);
    /// Removes the oldest value `old` and adds the newest `new`; one step of a slide.
    fn replace(&mut self, old: f64, new: f64) {
        self.pop(old);
        self.push(new);
    }
    /// Forgets everything.
    fn clear(&mut self);
    /// Replaces the content with `values` (in time order).
    fn fill(&mut self, values: &[f64]) {
        self.clear();
        for &v in values {
            self.push(v);
        }
    }
}

/// A sketch plugin: what it serves, and how to answer exactly and approximately. The SDK
/// does the rest (time ranges, retention, snapshots, the wasm interface).
pub trait Plugin: Sized + std::fmt::Debug + 'static {
    /// Summary kept per block of samples and per tree node.
    type Summary: Summary;
    /// Exact state for windows below `min_samples`.
    type Window: Window;
    /// Whether each [`Call::span`] carries the timestamps of the window's first and last
    /// samples. Off unless a function needs them: finding them costs two lookups per
    /// evaluation.
    const SAMPLE_TIMES: bool = false;

    /// Describes the plugin; called once per instance and checked by the host.
    fn info() -> PluginInfo;
    /// Builds the plugin's parameters from a sketch's options. Reject unknown keys.
    fn configure(options: &[(String, String)]) -> Result<Self, Error>;
    /// An empty summary.
    fn summary(&self) -> Self::Summary;
    /// An empty exact window.
    fn window(&self) -> Self::Window;
    /// The exact answer over the samples in `window` (`samples` of them, at least one),
    /// or `None` where the function has no value (as `rate` over a single sample): the
    /// series then has no point at that evaluation, as in Prometheus.
    fn exact(&self, call: Call<'_>, window: &Self::Window, samples: u64) -> Option<f64>;
    /// The estimate from `summary`, which covers `samples` samples, or `None` when the
    /// summary cannot answer within the bound; the SDK then answers exactly from the raw
    /// samples (cost linear in the window) and reports bound 0.
    fn estimate(&self, call: Call<'_>, summary: &Self::Summary, samples: u64) -> Option<f64>;
}
