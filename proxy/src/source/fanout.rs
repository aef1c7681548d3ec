//! Several endpoints read as one (shards, replicas): each selection goes to every
//! endpoint whose external labels its matchers accept, all in parallel, and the
//! answers merge into the series one Prometheus holding everything would return.
//!
//! Merging: an endpoint's external labels are added to its series where missing, and
//! replica labels (`query.replica_labels`) are dropped; series with the same labels
//! then become one. Their samples are merged in time order: a sample at a timestamp
//! already taken is dropped (shards, and replicas scraping at the same instants, give
//! exactly the data of one server), and with replica labels configured, so is a
//! sample of another replica closer than half the shortest gap between two samples of
//! one replica to the last one taken: replicas scraping at different instants would
//! otherwise double the sample rate. Replicas scraping at the same instants merge
//! exactly: every true sample is at least one shortest gap from the one before. This is the purpose of Thanos' penalty-based deduplication, which
//! skips the other replica for twice the last gap; here a replica's missing sample is
//! filled from another whenever that one is at least half a gap away.

use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::Instrument as _;

use futures_util::StreamExt as _;
use promql_parser::label::Matchers;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Fetch, RawSeries, ReadScope, Selection, SeriesFetch, Source, SourceError};
use crate::config::duration::time_bound::TimeBound;
use crate::metrics::EndpointLabels;
use crate::prompb::{Label, Sample};

/// One endpoint.
#[derive(Debug)]
pub struct Member {
    /// Its URL, for warnings.
    pub name: String,
    /// Where it reads.
    pub source: Arc<dyn Source>,
    /// Its external labels, sorted by name.
    pub external: Vec<Label>,
    /// The oldest and newest data it holds, if bounded.
    pub time_range: TimeRange,
}

impl Member {
    /// Whether it may hold data in `[start_ms, end_ms]`.
    fn holds(&self, start_ms: i64, end_ms: i64) -> bool {
        holds(self.time_range, start_ms, end_ms)
    }

    /// Whether `storeMatch[]` lets it be asked.
    fn selected(&self, scope: &ReadScope) -> bool {
        store_selected(
            &address_of(&self.name),
            |n| {
                self.external
                    .iter()
                    .find(|l| l.name == n)
                    .map(|l| l.value.as_str())
            },
            scope.store_match(),
        )
    }
}

/// The endpoints read as one.
#[derive(Debug)]
pub struct Fanout {
    members: Vec<Member>,
    replica_labels: Vec<String>,
    /// How long one endpoint may take before it is left out (or fails the read).
    endpoint_timeout: std::time::Duration,
    /// How many endpoints one read asks at once.
    concurrency: usize,
    /// Each endpoint's health, as its last read went.
    up: Family<EndpointLabels, Gauge>,
}

impl Fanout {
    /// Reads `members`; series differing only in `replica_labels` are one.
    pub fn new(
        members: Vec<Member>,
        replica_labels: Vec<String>,
        endpoint_timeout: std::time::Duration,
        concurrency: usize,
        up: Family<EndpointLabels, Gauge>,
    ) -> Self {
        Self {
            members,
            replica_labels,
            endpoint_timeout,
            concurrency: concurrency.max(1),
            up,
        }
    }

    /// Runs one endpoint's read within the endpoint timeout, and records its health.
    async fn ask<T>(
        &self,
        member: &Member,
        read: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        let span = tracing::info_span!("fetch_endpoint", endpoint = %member.name);
        let answer = match tokio::time::timeout(self.endpoint_timeout, read.instrument(span)).await {
            Ok(answer) => answer,
            Err(_) => Err(SourceError::Unreachable {
                url: member.name.clone(),
                reason: format!("no answer within {:?}", self.endpoint_timeout),
            }),
        };
        self.up
            .get_or_create(&EndpointLabels {
                endpoint: member.name.clone(),
            })
            .set(i64::from(answer.is_ok()));
        answer
    }

    /// What the endpoints' outcomes (`None`: not asked) make of a read: the answers,
    /// an endpoint's failure made good by a replica that answered, or left out of a
    /// partial answer when the scope allows it, else the read's error.
    fn settle<T>(
        &self,
        outcomes: Vec<Option<Result<T, SourceError>>>,
        scope: &ReadScope,
    ) -> Result<Vec<Option<T>>, SourceError> {
        let replicas = self.replicas(scope);
        let shards: Vec<_> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                shard_key(
                    i,
                    m.external.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    m.time_range,
                    replicas,
                )
            })
            .collect();
        let answered: Vec<Option<bool>> = outcomes.iter().map(|o| o.as_ref().map(Result::is_ok)).collect();
        let missing = uncovered(&shards, &answered);
        let asked = answered.iter().filter(|a| a.is_some()).count();
        let mut settled = Vec::with_capacity(outcomes.len());
        for (i, outcome) in outcomes.into_iter().enumerate() {
            settled.push(match outcome {
                None => None,
                Some(Ok(answer)) => Some(answer),
                Some(Err(error)) if !missing.contains(&i) => {
                    tracing::warn!(endpoint = %self.members[i].name, %error, "endpoint failed; a replica answered for it");
                    None
                }
                Some(Err(error)) if scope.allowed() && missing.len() < asked => {
                    tracing::warn!(endpoint = %self.members[i].name, %error, "endpoint left out of a partial answer");
                    scope.leave_out(&self.members[i].name, &error.to_string());
                    None
                }
                Some(Err(error)) => return Err(error),
            });
        }
        Ok(settled)
    }

    /// The selection as `member` is asked it: matchers on its external labels are
    /// checked here and left out (its storage does not hold them); `None` when they
    /// fail, or its time range or `storeMatch[]` rule it out, so it is not asked.
    fn for_member(member: &Member, selection: &Selection, scope: &ReadScope) -> Option<Selection> {
        if !member.holds(selection.start_ms, selection.end_ms) || !member.selected(scope) {
            return None;
        }
        let external = |name: &str| {
            member
                .external
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.as_str())
        };
        let matchers = without_external(&selection.matchers, external)?;
        Some(Selection {
            matchers,
            ..selection.clone()
        })
    }

    /// The replica labels of a read: the request's, or the configured ones.
    fn replicas<'a>(&'a self, scope: &'a ReadScope) -> &'a [String] {
        scope.replica_labels().unwrap_or(&self.replica_labels)
    }

    /// `labels` as the merged answer carries them.
    fn relabel(member: &Member, replicas: &[String], mut labels: Vec<Label>) -> Vec<Label> {
        for label in &member.external {
            if !labels.iter().any(|l| l.name == label.name) {
                labels.push(label.clone());
            }
        }
        labels.retain(|l| !replicas.contains(&l.name));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    async fn fetch(
        &self,
        selections: &[Selection],
        scope: &ReadScope,
    ) -> Result<Vec<Vec<RawSeries>>, SourceError> {
        let asks: Vec<_> = self
            .members
            .iter()
            .map(|member| async move {
                let (indexes, asked): (Vec<usize>, Vec<Selection>) = selections
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| Self::for_member(member, s, scope).map(|s| (i, s)))
                    .unzip();
                if asked.is_empty() {
                    return None;
                }
                let read = self.ask(member, member.source.select(&asked, scope));
                Some(read.await.map(|answers| (indexes, answers)))
            })
            .collect();
        let outcomes = self.settle(bounded(asks, self.concurrency).await, scope)?;
        let mut merged: Vec<BTreeMap<Vec<Label>, Vec<Vec<Sample>>>> =
            selections.iter().map(|_| BTreeMap::new()).collect();
        for (member, outcome) in self.members.iter().zip(outcomes) {
            let Some((indexes, answers)) = outcome else {
                continue;
            };
            for (i, series) in indexes.into_iter().zip(answers) {
                for s in series {
                    let labels = Self::relabel(member, self.replicas(scope), s.labels);
                    merged[i].entry(labels).or_default().push(s.samples);
                }
            }
        }
        let replicas = !self.replicas(scope).is_empty();
        Ok(merged
            .into_iter()
            .map(|series| {
                series
                    .into_iter()
                    .map(|(labels, lists)| RawSeries {
                        labels,
                        samples: merge(lists, replicas),
                    })
                    .collect()
            })
            .collect())
    }

    async fn label_sets(
        &self,
        selection: &Selection,
        scope: &ReadScope,
    ) -> Result<Vec<Vec<Label>>, SourceError> {
        let asks: Vec<_> = self
            .members
            .iter()
            .map(|member| async move {
                let asked = Self::for_member(member, selection, scope)?;
                Some(self.ask(member, member.source.series(&asked, scope)).await)
            })
            .collect();
        let outcomes = self.settle(bounded(asks, self.concurrency).await, scope)?;
        let mut all: Vec<Vec<Label>> = Vec::new();
        for (member, sets) in self.members.iter().zip(outcomes) {
            let replicas = self.replicas(scope);
            all.extend(
                sets.into_iter()
                    .flatten()
                    .map(|labels| Self::relabel(member, replicas, labels)),
            );
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

impl Source for Fanout {
    fn select<'a>(&'a self, selections: &'a [Selection], partial: &'a ReadScope) -> Fetch<'a> {
        Box::pin(self.fetch(selections, partial))
    }

    fn series<'a>(&'a self, selection: &'a Selection, partial: &'a ReadScope) -> SeriesFetch<'a> {
        Box::pin(self.label_sets(selection, partial))
    }
}

/// The samples of one series from several endpoints, in time order, each timestamp
/// once; with `replicas`, without another replica's samples closer than half the
/// shortest gap to the last one taken.
pub fn merge(mut lists: Vec<Vec<Sample>>, replicas: bool) -> Vec<Sample> {
    if lists.len() == 1 {
        return lists.pop().unwrap_or_default();
    }
    let tolerance = if replicas {
        lists.iter().filter_map(|l| shortest_gap(l)).min().unwrap_or(0) / 2
    } else {
        0
    };
    let mut all: Vec<(i64, usize, f64)> = lists
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |s| (s.timestamp, i, s.value)))
        .collect();
    // Stable: at equal timestamps the first endpoint's sample comes first.
    all.sort_by_key(|&(t, i, _)| (t, i));
    let mut out: Vec<Sample> = Vec::with_capacity(lists.iter().map(Vec::len).max().unwrap_or(0));
    let mut last: Option<(i64, usize)> = None;
    for (t, i, value) in all {
        if let Some((last_t, last_i)) = last
            && (t == last_t || (i != last_i && t - last_t < tolerance))
        {
            continue;
        }
        out.push(Sample { value, timestamp: t });
        last = Some((t, i));
    }
    out
}

/// The shortest gap between consecutive samples, if there are two.
fn shortest_gap(samples: &[Sample]) -> Option<i64> {
    samples.windows(2).map(|w| w[1].timestamp - w[0].timestamp).min()
}

#[cfg(test)]
mod tests;

/// `matchers` without those on an endpoint's external labels (`external` gives their
/// values), which are checked here instead: `None` when they fail, so the endpoint
/// holds nothing selected. A group of `or` matchers that fails is dropped; all of them
/// failing is `None`.
pub fn without_external<'a>(
    matchers: &Matchers,
    external: impl Fn(&str) -> Option<&'a str>,
) -> Option<Matchers> {
    // A group of matchers that must all hold: `None` when one on an external label
    // fails, else the others.
    let strip = |group: &[promql_parser::label::Matcher]| {
        let mut kept = Vec::new();
        for m in group {
            match external(&m.name) {
                Some(value) if !m.is_match(value) => return None,
                Some(_) => {}
                None => kept.push(m.clone()),
            }
        }
        Some(kept)
    };
    if matchers.or_matchers.is_empty() {
        return Some(Matchers::new(strip(&matchers.matchers)?));
    }
    let groups: Vec<_> = matchers.or_matchers.iter().filter_map(|g| strip(g)).collect();
    if groups.is_empty() {
        return None;
    }
    Some(Matchers {
        matchers: strip(&matchers.matchers)?,
        or_matchers: groups,
    })
}

/// Runs `asks` at most `limit` at a time; their outputs in order. (Callers collect the
/// futures first: a stream over a lazy map of borrowing closures is not `Send`.)
pub async fn bounded<F: Future>(asks: impl IntoIterator<Item = F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(asks)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// Whether `storeMatch[]` selectors let an endpoint be asked: none given, or one that
/// selects it, `__address__` being its URL's `host:port` and other names its external
/// labels (`""` when it has none by that name).
pub fn store_selected<'a>(
    address: &'a str,
    external: impl Fn(&str) -> Option<&'a str>,
    store_match: &[Matchers],
) -> bool {
    store_match.is_empty()
        || store_match.iter().any(|m| {
            crate::promql::selects(m, |name| {
                if name == "__address__" {
                    address
                } else {
                    external(name).unwrap_or("")
                }
            })
        })
}

/// Whether an endpoint holding data in `time_range` (min, max; `None`: unbounded) may
/// hold some in `[start_ms, end_ms]`.
pub fn holds(time_range: TimeRange, start_ms: i64, end_ms: i64) -> bool {
    let now = crate::clock::now_ms();
    time_range.0.is_none_or(|min| end_ms >= min.ms(now))
        && time_range.1.is_none_or(|max| start_ms <= max.ms(now))
}

/// `host:port` of an endpoint's URL, its `__address__` for `storeMatch[]`.
pub fn address_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| url.to_owned())
}

/// The oldest and newest data an endpoint holds (`None`: unbounded).
pub type TimeRange = (Option<TimeBound>, Option<TimeBound>);

/// What tells the shards apart: external labels without replica labels, the endpoint's
/// index when it is no replica, and its time range.
pub type ShardKey = (Vec<(String, String)>, Option<usize>, TimeRange);

/// The shard an endpoint holds, from its external labels: endpoints carrying a replica
/// label, equal in the others and in their time range, are replicas of one shard (one
/// can answer for another); any other endpoint is a shard of its own (`index`).
pub fn shard_key<'a>(
    index: usize,
    external: impl Iterator<Item = (&'a str, &'a str)>,
    time_range: TimeRange,
    replicas: &[String],
) -> ShardKey {
    let mut is_replica = false;
    let mut kept = Vec::new();
    for (name, value) in external {
        if replicas.iter().any(|r| r == name) {
            is_replica = true;
        } else {
            kept.push((name.to_owned(), value.to_owned()));
        }
    }
    kept.sort();
    (kept, (!is_replica).then_some(index), time_range)
}

/// Which of the endpoints that failed (`answered[i] == Some(false)`; `None`: not
/// asked) leave a shard without any
/// answer: those without an endpoint of equal `shard` key ([`shard_key`]) that
/// answered. A replica standing in for another makes the answer whole.
pub fn uncovered<K: PartialEq>(shard: &[K], answered: &[Option<bool>]) -> Vec<usize> {
    (0..shard.len())
        .filter(|&i| answered[i] == Some(false))
        .filter(|&i| !(0..shard.len()).any(|j| answered[j] == Some(true) && shard[j] == shard[i]))
        .collect()
}
