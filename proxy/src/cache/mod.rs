//! The results cache: answers of `query_range` requests kept as extents of steps, and
//! of instant queries at times past the freshness window, whichever path answered.
//!
//! A request finds the extents of its key, computes only the steps they lack, and
//! joins them ([`extent`]); the joined answer is written plain or gzip from stored
//! compressed pieces ([`gzip`]). Steps newer than `max_freshness` are never stored, nor
//! partial answers or errors. A sample remote-written through the proxy at or before a
//! stored step drops the entries whose selectors match its series, and answers it
//! could change are not stored until it reached downstream ([`Late`]); data written to
//! downstream some other way is seen once an extent is older than `max_ttl`.

pub mod extent;
pub mod gzip;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use promql_parser::label::Matchers;

use crate::prompb::WriteRequest;
pub use extent::Extent;
use gzip::Piece;

/// Late series (in one write, or remembered) past which they are taken as every
/// series: all entries are dropped instead of matched one by one.
const MATCH_AT_MOST: usize = 1_000;

/// Whether the samples of a write request reached every destination.
pub type Delivered = Arc<dyn Fn() -> bool + Send + Sync>;

/// A series written with samples older than the freshness window (`labels` `None`:
/// too many to tell apart, every series).
#[derive(Debug)]
pub struct LateSeries {
    labels: Option<Vec<crate::prompb::Label>>,
    oldest_ms: i64,
}

/// A late series remembered while its samples may be missing from answers being
/// computed: until they reached downstream, and until every query that started before
/// they arrived ended. Such answers are served but not stored.
struct Late {
    series: LateSeries,
    arrived: Instant,
    delivered: Delivered,
}

impl std::fmt::Debug for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Late")
            .field("oldest_ms", &self.series.oldest_ms)
            .field("arrived", &self.arrived)
            .finish_non_exhaustive()
    }
}

impl LateSeries {
    fn selected_by(&self, selectors: &[Matchers]) -> bool {
        match &self.labels {
            Some(labels) => selectors.iter().any(|m| crate::sketches::selects(m, labels)),
            None => true,
        }
    }
}

/// The `cache:` settings a cache is built with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most bytes held.
    pub max_bytes: u64,
    /// Steps newer than this (from now) are never stored.
    pub max_freshness: Duration,
    /// Extents older than this are computed again.
    pub max_ttl: Duration,
    /// The longest a query may take (`query.timeout`): late series are remembered at
    /// least that long after they arrived.
    pub longest_query: Duration,
}

/// Cached answers of one query key.
#[derive(Debug)]
pub struct Entry {
    /// Every selector of the query: a late sample of a series they select drops it.
    selectors: Arc<[Matchers]>,
    /// The newest step stored.
    newest_ms: i64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Disjoint extents, in time order.
    Range(Vec<Arc<Extent>>),
    /// A whole instant answer.
    Instant(Arc<Stored>),
}

/// A whole answer as stored.
#[derive(Debug)]
pub struct Stored {
    pub body: Piece,
    /// `X-Answered-By`.
    pub paths: String,
    pub stored_at: Instant,
}

impl Entry {
    fn weight(&self) -> u32 {
        let bytes = match &self.kind {
            Kind::Range(extents) => extents.iter().map(|e| e.weight()).sum(),
            Kind::Instant(stored) => stored.body.weight() + 64,
        };
        u32::try_from(bytes + 64 * self.selectors.len()).unwrap_or(u32::MAX)
    }
}

/// The cache of one configuration: a reload starts an empty one (downstream and
/// plugins may have changed).
#[derive(Debug)]
pub struct ResultsCache {
    entries: moka::sync::Cache<u128, Arc<Entry>>,
    settings: Settings,
    /// The newest step stored in any entry: writes of samples after it touch nothing.
    newest_ms: AtomicI64,
    invalidations: Counter,
    /// Late series that answers being computed may lack.
    late: parking_lot::Mutex<Vec<Late>>,
}

impl ResultsCache {
    /// An empty cache; `invalidations` counts entries dropped for late samples.
    pub fn new(settings: Settings, invalidations: Counter) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_, entry: &Arc<Entry>| entry.weight())
            .build();
        Self {
            entries,
            settings,
            newest_ms: AtomicI64::new(i64::MIN),
            invalidations,
            late: parking_lot::Mutex::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The newest step that may be stored at `now_ms`.
    pub fn cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms - i64::try_from(self.settings.max_freshness.as_millis()).unwrap_or(i64::MAX)
    }

    /// Largest answer stored: a quarter of the cache.
    pub fn max_answer_bytes(&self) -> usize {
        usize::try_from(self.settings.max_bytes / 4).unwrap_or(usize::MAX)
    }

    /// The extents of `key` younger than `max_ttl`.
    pub fn extents(&self, key: u128) -> Vec<Arc<Extent>> {
        let Some(entry) = self.entries.get(&key) else {
            return Vec::new();
        };
        match &entry.kind {
            Kind::Range(extents) => extents
                .iter()
                .filter(|e| e.stored_at.elapsed() < self.settings.max_ttl)
                .cloned()
                .collect(),
            Kind::Instant(_) => Vec::new(),
        }
    }

    /// The instant answer of `key`, if younger than `max_ttl`.
    pub fn instant(&self, key: u128) -> Option<Arc<Stored>> {
        match &self.entries.get(&key)?.kind {
            Kind::Instant(stored) if stored.stored_at.elapsed() < self.settings.max_ttl => {
                Some(stored.clone())
            }
            _ => None,
        }
    }

    /// Adds `extent` (steps `step_ms` apart) to `key`'s: it replaces the extents it
    /// overlaps and is joined to those a step before or after it. `started` is when
    /// its computation started.
    pub fn store_extent(
        &self,
        key: u128,
        selectors: Arc<[Matchers]>,
        step_ms: i64,
        extent: Extent,
        started: Instant,
    ) {
        if self.refused(&selectors, extent.end_ms, started) {
            return;
        }
        let max_ttl = self.settings.max_ttl;
        let newest = extent.end_ms;
        self.entries.entry(key).and_compute_with(|current| {
            let kept: Vec<Arc<Extent>> = match current.as_ref().map(|c| &c.value().kind) {
                Some(Kind::Range(extents)) => extents
                    .iter()
                    .filter(|e| e.stored_at.elapsed() < max_ttl)
                    .filter(|e| e.end_ms < extent.start_ms || e.start_ms > extent.end_ms)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            let mut joined = extent;
            let mut extents = Vec::with_capacity(kept.len() + 1);
            let mut after = Vec::new();
            for e in kept {
                if e.end_ms + step_ms == joined.start_ms {
                    joined = e.join(&joined);
                } else if joined.end_ms + step_ms == e.start_ms {
                    after.push(e);
                } else if e.end_ms < joined.start_ms {
                    extents.push(e);
                } else {
                    after.push(e);
                }
            }
            let mut rest = Vec::new();
            for e in after {
                if joined.end_ms + step_ms == e.start_ms {
                    joined = joined.join(&e);
                } else {
                    rest.push(e);
                }
            }
            extents.push(Arc::new(joined));
            extents.extend(rest);
            let newest_ms = extents.iter().map(|e| e.end_ms).max().unwrap_or(i64::MIN);
            moka::ops::compute::Op::Put(Arc::new(Entry {
                selectors: selectors.clone(),
                newest_ms,
                kind: Kind::Range(extents),
            }))
        });
        self.newest_ms.fetch_max(newest, Ordering::Relaxed);
    }

    /// Keeps the instant answer of `key`, evaluated at `at_ms`.
    pub fn store_instant(
        &self,
        key: u128,
        selectors: Arc<[Matchers]>,
        at_ms: i64,
        stored: Stored,
        started: Instant,
    ) {
        if self.refused(&selectors, at_ms, started) {
            return;
        }
        self.entries.insert(
            key,
            Arc::new(Entry {
                selectors,
                newest_ms: at_ms,
                kind: Kind::Instant(Arc::new(stored)),
            }),
        );
        self.newest_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// The series of `request` with samples older than the freshness window at
    /// `now_ms` (usually none: senders send what they just scraped).
    pub fn late(&self, request: &WriteRequest, now_ms: i64) -> Vec<LateSeries> {
        let cutoff = self.cutoff_ms(now_ms);
        let mut late: Vec<LateSeries> = request
            .timeseries
            .iter()
            .filter_map(|s| {
                let oldest_ms = s.samples.iter().map(|x| x.timestamp).min()?;
                (oldest_ms <= cutoff).then(|| LateSeries {
                    labels: Some(s.labels.clone()),
                    oldest_ms,
                })
            })
            .take(MATCH_AT_MOST + 1)
            .collect();
        if late.len() > MATCH_AT_MOST {
            let oldest_ms = request
                .timeseries
                .iter()
                .flat_map(|s| s.samples.iter().map(|x| x.timestamp))
                .min()
                .unwrap_or(i64::MIN);
            late = vec![LateSeries {
                labels: None,
                oldest_ms,
            }];
        }
        late
    }

    /// Takes in late series once their write is queued: drops the entries they change
    /// (those selecting one of them with a stored step at or after its oldest sample),
    /// and remembers them until `delivered` says they reached downstream.
    pub fn saw_late(&self, late: Vec<LateSeries>, delivered: Delivered) {
        if late.is_empty() {
            return;
        }
        let newest = self.newest_ms.load(Ordering::Relaxed);
        if late.iter().any(|l| l.oldest_ms <= newest) {
            for (key, entry) in &self.entries {
                let hit = late
                    .iter()
                    .any(|l| l.oldest_ms <= entry.newest_ms && l.selected_by(&entry.selectors));
                if hit {
                    self.entries.invalidate(&*key);
                    self.invalidations.inc();
                }
            }
        }
        let now = Instant::now();
        let mut remembered = self.late.lock();
        remembered
            .retain(|l| !(l.delivered)() || now.duration_since(l.arrived) < self.settings.longest_query);
        if remembered.len() + late.len() > MATCH_AT_MOST {
            let oldest_ms = remembered
                .iter()
                .map(|l| l.series.oldest_ms)
                .chain(late.iter().map(|l| l.oldest_ms))
                .min()
                .unwrap_or(i64::MIN);
            remembered.clear();
            remembered.push(Late {
                series: LateSeries {
                    labels: None,
                    oldest_ms,
                },
                arrived: now,
                delivered,
            });
            return;
        }
        remembered.extend(late.into_iter().map(|series| Late {
            series,
            arrived: now,
            delivered: delivered.clone(),
        }));
    }

    /// Whether an answer up to `newest_ms` of a query with `selectors`, computed from
    /// `started`, may lack a late sample.
    fn refused(&self, selectors: &[Matchers], newest_ms: i64, started: Instant) -> bool {
        self.late.lock().iter().any(|l| {
            l.series.oldest_ms <= newest_ms
                && l.series.selected_by(selectors)
                && (l.arrived >= started || !(l.delivered)())
        })
    }

    /// Bytes held and entries, for `/metrics`.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

#[cfg(test)]
mod tests;
