//! Raw data for local evaluation, behind one trait so that several shards can answer
//! later: the series a selector picks, with their samples in a closed time range.

mod client;
pub mod fanout;
mod query_api;
mod remote_read;
mod streamed;

use std::future::Future;
use std::pin::Pin;

use promql_parser::label::Matchers;

pub use fanout::{Fanout, Member};
pub use query_api::QueryApi;
pub use remote_read::RemoteRead;

use crate::prompb::{Label, Sample};

/// One selector over one time range.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The selector's matchers (metric name included as `__name__`).
    pub matchers: Matchers,
    /// Inclusive start, ms.
    pub start_ms: i64,
    /// Inclusive end, ms.
    pub end_ms: i64,
}

/// A series and its samples in time order (stale markers included, bit-exact).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    /// Labels sorted by name.
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    pub samples: Vec<Sample>,
}

/// Why raw data could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be reached, or did not answer in time.
    #[error("{url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The source answered with an error.
    #[error("{url} answered {status}: {message}")]
    Refused {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("{url}: unreadable answer: {reason}")]
    Malformed {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The answer holds more than allowed.
    #[error("the query would load more than {limit} {what}")]
    TooMuch {
        /// `samples` or `bytes`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

impl SourceError {
    /// The message of a query the source refused as such (400 or 422: it cannot be
    /// evaluated, as opposed to the source failing), which fails the query wherever
    /// it was sent.
    pub fn refused_query(&self) -> Option<&str> {
        match self {
            SourceError::Refused {
                status: 400 | 422,
                message,
                ..
            } => Some(message),
            _ => None,
        }
    }
}

/// A boxed future, so sources can be trait objects.
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<RawSeries>>, SourceError>> + Send + 'a>>;

/// A query evaluated by a downstream: its series with their points.
pub type EvalFetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<RawSeries>, SourceError>> + Send + 'a>>;

/// The label sets of the series a selection selects.
pub type SeriesFetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<Label>>, SourceError>> + Send + 'a>>;

/// What one request allows a read over several endpoints: leaving out the ones that
/// fail (`partial_response`), and which labels tell replicas apart (`dedup`,
/// `replicaLabels[]`); and which endpoints it left out.
#[derive(Debug, Default)]
pub struct ReadScope {
    allowed: bool,
    replica_labels: Option<Vec<String>>,
    store_match: Vec<Matchers>,
    passed_on: Vec<(String, String)>,
    missing: parking_lot::Mutex<Vec<String>>,
    warnings: parking_lot::Mutex<Vec<String>>,
}

impl ReadScope {
    /// A read that may (`allowed`) or may not leave endpoints out.
    pub fn new(allowed: bool) -> Self {
        Self {
            allowed,
            ..Self::default()
        }
    }

    /// With these replica labels instead of the configured ones (none: no dedup).
    pub fn with_replica_labels(mut self, labels: Option<Vec<String>>) -> Self {
        self.replica_labels = labels;
        self
    }

    /// Only endpoints one of these `storeMatch[]` selectors selects are read.
    pub fn with_store_match(mut self, store_match: Vec<Matchers>) -> Self {
        self.store_match = store_match;
        self
    }

    /// Parameters passed on to endpoints read through the query API
    /// (`max_source_resolution`, `engine`).
    pub fn with_passed_on(mut self, passed_on: Vec<(String, String)>) -> Self {
        self.passed_on = passed_on;
        self
    }

    /// The request's `storeMatch[]` selectors.
    pub fn store_match(&self) -> &[Matchers] {
        &self.store_match
    }

    /// The parameters passed on to query-API endpoints.
    pub fn passed_on(&self) -> &[(String, String)] {
        &self.passed_on
    }

    /// The request's replica labels, if it chose them.
    pub fn replica_labels(&self) -> Option<&[String]> {
        self.replica_labels.as_deref()
    }

    /// Whether endpoints may be left out.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Records that `endpoint` was left out, and why.
    pub fn leave_out(&self, endpoint: &str, why: &str) {
        let mut missing = self.missing.lock();
        let entry = format!("{endpoint} ({why})");
        if !missing.contains(&entry) {
            missing.push(entry);
        }
    }

    /// The endpoints left out, with why.
    pub fn missing(&self) -> Vec<String> {
        self.missing.lock().clone()
    }

    /// Records a warning an endpoint's answer to a pushed query carried, for the
    /// answer (once, however many endpoints gave it).
    pub fn pass_on_warning(&self, warning: String) {
        let mut warnings = self.warnings.lock();
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    /// Whether an endpoint's answer carried a warning other than another proxy's word
    /// on its sketches' bounds: a partial answer (another proxy's, a Thanos
    /// Querier's), which must not be cached as whole.
    pub fn passed_on_doubt(&self) -> bool {
        self.warnings.lock().iter().any(|w| {
            !w.contains(" answered from sketches: ")
                && !w.contains(" computed from raw samples by its plugin ")
        })
    }

    /// The warnings endpoints' answers carried.
    pub fn passed_on_warnings(&self) -> Vec<String> {
        self.warnings.lock().clone()
    }
}

/// Where raw series come from.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The series of each selection (one list per selection, in order), each series
    /// once, sorted by labels.
    fn select<'a>(&'a self, selections: &'a [Selection], partial: &'a ReadScope) -> Fetch<'a>;

    /// The label sets of the series `selection` selects in its range, sorted, without
    /// samples: for selections whose series sketches answer.
    fn series<'a>(&'a self, selection: &'a Selection, partial: &'a ReadScope) -> SeriesFetch<'a>;

    /// `query` evaluated by the downstream itself at the steps of `range` (start, end,
    /// step, ms), when it has a query API; `None` when it has none.
    fn evaluate_query<'a>(
        &'a self,
        query: &'a str,
        range: (i64, i64, i64),
        scope: &'a ReadScope,
    ) -> Option<EvalFetch<'a>> {
        let _ = (query, range, scope);
        None
    }

    /// Whether it has a query API, so [`Source::evaluate_query`] answers.
    fn answers_queries(&self) -> bool {
        false
    }

    /// Whether it sends raw data by remote read (compressed chunks, cheap to send and
    /// decode) rather than as JSON through its query API.
    fn reads_remotely(&self) -> bool {
        true
    }

    /// The endpoints it reads as one, if it does.
    fn fanout(&self) -> Option<&Fanout> {
        None
    }
}

/// Decodes a streamed remote-read answer (for the fuzz targets): the series of each
/// query, trimmed to `ranges`.
#[doc(hidden)]
pub fn decode_streamed(body: &[u8], ranges: &[(i64, i64)]) -> Result<usize, String> {
    streamed::decode(body, ranges).map(|series| series.len())
}

/// A source that cannot be built (its URL is unusable): every fetch fails with why.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Unavailable {
    fn error(&self) -> SourceError {
        SourceError::Unreachable {
            url: String::new(),
            reason: self.0.clone(),
        }
    }
}

impl Source for Unavailable {
    fn select<'a>(&'a self, _: &'a [Selection], _: &'a ReadScope) -> Fetch<'a> {
        let error = self.error();
        Box::pin(async move { Err(error) })
    }

    fn series<'a>(&'a self, _: &'a Selection, _: &'a ReadScope) -> SeriesFetch<'a> {
        let error = self.error();
        Box::pin(async move { Err(error) })
    }
}

/// Remote read while the downstream serves it; the query API for good once it answers
/// that it does not (404, 405 or 501, as a Thanos Querier does).
#[derive(Debug)]
pub struct ReadOrQuery {
    read: RemoteRead,
    query: QueryApi,
    no_read: std::sync::atomic::AtomicBool,
}

impl ReadOrQuery {
    /// Tries `read` first, then `query`.
    pub fn new(read: RemoteRead, query: QueryApi) -> Self {
        Self {
            read,
            query,
            no_read: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn fetch(&self, selections: &[Selection]) -> Result<Vec<Vec<RawSeries>>, SourceError> {
        use std::sync::atomic::Ordering;
        if !self.no_read.load(Ordering::Relaxed) {
            match self.read.select(selections, &ReadScope::default()).await {
                Err(SourceError::Refused {
                    status: 404 | 405 | 501,
                    ..
                }) => {
                    tracing::info!(
                        "downstream serves no remote read; reading through its query API from now on"
                    );
                    self.no_read.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.query.select(selections, &ReadScope::default()).await
    }
}

impl Source for ReadOrQuery {
    fn select<'a>(&'a self, selections: &'a [Selection], _: &'a ReadScope) -> Fetch<'a> {
        Box::pin(self.fetch(selections))
    }

    fn series<'a>(&'a self, selection: &'a Selection, partial: &'a ReadScope) -> SeriesFetch<'a> {
        self.query.series(selection, partial)
    }

    fn evaluate_query<'a>(
        &'a self,
        query: &'a str,
        range: (i64, i64, i64),
        scope: &'a ReadScope,
    ) -> Option<EvalFetch<'a>> {
        self.query.evaluate_query(query, range, scope)
    }

    fn answers_queries(&self) -> bool {
        true
    }

    fn reads_remotely(&self) -> bool {
        !self.no_read.load(std::sync::atomic::Ordering::Relaxed)
    }
}
