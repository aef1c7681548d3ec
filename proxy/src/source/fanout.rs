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

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Fetch, RawSeries, ReadScope, Selection, SeriesFetch, Source, SourceError};
use crate::endpoints::{Endpoint, ShardKey, bounded, uncovered};
use crate::metrics::EndpointLabels;
use crate::prompb::{Label, Sample};

/// One endpoint and where it reads.
#[derive(Debug)]
pub struct Member {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// Where it reads.
    pub source: Arc<dyn Source>,
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
        let span = tracing::info_span!("fetch_endpoint", endpoint = %member.endpoint.name);
        let answer = match tokio::time::timeout(self.endpoint_timeout, read.instrument(span)).await {
            Ok(answer) => answer,
            Err(_) => Err(SourceError::Unreachable {
                url: member.endpoint.name.clone(),
                reason: format!("no answer within {:?}", self.endpoint_timeout),
            }),
        };
        // An endpoint that refused a query (400/422) is up: the query was bad.
        let up = match &answer {
            Ok(_) => true,
            Err(e) => e.refused_query().is_some(),
        };
        self.up
            .get_or_create(&EndpointLabels {
                endpoint: member.endpoint.name.clone(),
            })
            .set(i64::from(up));
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
            .map(|(i, m)| m.endpoint.shard_key(i, replicas))
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
                    tracing::warn!(endpoint = %self.members[i].endpoint.name, %error, "endpoint failed; a replica answered for it");
                    None
                }
                Some(Err(error)) if scope.allowed() && missing.len() < asked => {
                    tracing::warn!(endpoint = %self.members[i].endpoint.name, %error, "endpoint left out of a partial answer");
                    scope.leave_out(&self.members[i].endpoint.name, &error.to_string());
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
        let endpoint = &member.endpoint;
        if !endpoint.holds(selection.start_ms, selection.end_ms) || !endpoint.selected(scope.store_match()) {
            return None;
        }
        let matchers = endpoint.without_external(&selection.matchers)?;
        Some(Selection {
            matchers,
            ..selection.clone()
        })
    }

    /// The replica labels of a read: the request's, or the configured ones.
    fn replicas<'a>(&'a self, scope: &'a ReadScope) -> &'a [String] {
        scope.replica_labels().unwrap_or(&self.replica_labels)
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
                    let labels = member.endpoint.relabel(self.replicas(scope), s.labels);
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
                    .map(|labels| member.endpoint.relabel(replicas, labels)),
            );
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

/// Push-down (issue 20): queries the endpoints answer themselves.
impl Fanout {
    /// What push-down may assume of these endpoints, or `None` when it may not be
    /// used: an endpoint without a query API (remote read only). `own_functions` (the
    /// proxy's own) are pushed when every endpoint is a sketch-proxy.
    pub fn push_down_topology(&self, own_functions: &[String]) -> Option<crate::promql::pushdown::Topology> {
        // A time-bounded endpoint holds part of its series' history: a pushed window
        // could need another endpoint's part of the same series.
        if !self.members.iter().all(|m| m.source.answers_queries())
            || self
                .members
                .iter()
                .any(|m| m.endpoint.time_range.0.is_some() || m.endpoint.time_range.1.is_some())
        {
            return None;
        }
        let mut external_labels: Vec<String> = self
            .members
            .iter()
            .flat_map(|m| m.endpoint.external.keys().cloned())
            .collect();
        external_labels.sort();
        external_labels.dedup();
        Some(crate::promql::pushdown::Topology {
            external_labels,
            proxy_functions: if self.members.iter().all(|m| m.endpoint.sketch_proxy) {
                own_functions.to_vec()
            } else {
                Vec::new()
            },
            per_series_parts: self
                .members
                .iter()
                .all(|m| m.endpoint.sketch_proxy || !m.source.reads_remotely()),
        })
    }

    /// Each shard's answers to `queries` at the steps of `range`: one endpoint asked
    /// per shard (the first of its replicas whose time range and `storeMatch[]` allow,
    /// the next when it fails), so replicas' series count once. A shard none of whose
    /// replicas answered is left out of a partial answer when the scope allows it
    /// (another shard answered), else its error is the answer. Also the names of the
    /// endpoints that answered.
    pub async fn evaluate_pushed(
        &self,
        queries: &[String],
        range: (i64, i64, i64),
        scope: &ReadScope,
    ) -> Result<(Vec<crate::promql::pushdown::Answers>, Vec<String>), SourceError> {
        let replicas = self.replicas(scope);
        let mut shards: Vec<(ShardKey, Vec<&Member>)> = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            let endpoint = &member.endpoint;
            if !endpoint.holds(range.0, range.1) || !endpoint.selected(scope.store_match()) {
                continue;
            }
            let key = endpoint.shard_key(i, replicas);
            match shards.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(member),
                None => shards.push((key, vec![member])),
            }
        }
        let asks: Vec<_> = shards
            .iter()
            .map(|(_, members)| async move {
                let mut failed = None;
                for member in members {
                    match self.ask(member, self.evaluate_all(member, queries, range, scope)).await {
                        Ok(results) => return Ok((*member, results)),
                        // The query itself fails: no replica answers it either.
                        Err(error) if error.refused_query().is_some() => return Err(Some((*member, error))),
                        Err(error) => {
                            tracing::warn!(endpoint = %member.endpoint.name, %error, "endpoint failed a pushed query");
                            failed = Some((*member, error));
                        }
                    }
                }
                Err(failed)
            })
            .collect();
        let mut outcomes = bounded(asks, self.concurrency).await;
        if let Some(at) = outcomes
            .iter()
            .position(|o| matches!(o, Err(Some((_, e))) if e.refused_query().is_some()))
            && let Err(Some((_, error))) = outcomes.swap_remove(at)
        {
            return Err(error);
        }
        let answered = outcomes.iter().filter(|o| o.is_ok()).count();
        let mut answers = Vec::new();
        let mut asked = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok((member, results)) => {
                    asked.push(member.endpoint.name.clone());
                    let mut external = member.endpoint.external.clone();
                    external.retain(|name, _| !replicas.contains(name));
                    answers.push(crate::promql::pushdown::Answers { external, results });
                }
                Err(Some((member, error))) if scope.allowed() && answered > 0 => {
                    scope.leave_out(&member.endpoint.name, &error.to_string());
                }
                Err(Some((_, error))) => return Err(error),
                Err(None) => {}
            }
        }
        Ok((answers, asked))
    }

    /// `member`'s answers to every one of `queries`.
    async fn evaluate_all(
        &self,
        member: &Member,
        queries: &[String],
        range: (i64, i64, i64),
        scope: &ReadScope,
    ) -> Result<Vec<crate::promql::eval::value::Matrix>, SourceError> {
        let mut results = Vec::with_capacity(queries.len());
        for query in queries {
            let asked = member.source.evaluate_query(query, range, scope).ok_or_else(|| {
                SourceError::Unreachable {
                    url: member.endpoint.name.clone(),
                    reason: "no query API".to_owned(),
                }
            })?;
            results.push(asked.await?.into_iter().map(to_series).collect());
        }
        Ok(results)
    }
}

/// A raw series as the engine holds it (the query API lists labels sorted by name).
fn to_series(raw: RawSeries) -> crate::promql::eval::value::Series {
    crate::promql::eval::value::Series {
        labels: crate::promql::eval::value::Labels::from_sorted(raw.labels),
        points: raw
            .samples
            .into_iter()
            .map(|s| crate::promql::eval::value::Point {
                t: s.timestamp,
                v: s.value,
            })
            .collect(),
    }
}

impl Source for Fanout {
    fn select<'a>(&'a self, selections: &'a [Selection], partial: &'a ReadScope) -> Fetch<'a> {
        Box::pin(self.fetch(selections, partial))
    }

    fn series<'a>(&'a self, selection: &'a Selection, partial: &'a ReadScope) -> SeriesFetch<'a> {
        Box::pin(self.label_sets(selection, partial))
    }

    fn fanout(&self) -> Option<&Fanout> {
        Some(self)
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
