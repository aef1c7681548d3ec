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

use futures_util::future::try_join_all;
use promql_parser::label::Matchers;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Fetch, RawSeries, ReadScope, Selection, SeriesFetch, Source, SourceError};
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
}

/// The endpoints read as one.
#[derive(Debug)]
pub struct Fanout {
    members: Vec<Member>,
    replica_labels: Vec<String>,
    /// How long one endpoint may take before it is left out (or fails the read).
    endpoint_timeout: std::time::Duration,
    /// Each endpoint's health, as its last read went.
    up: Family<EndpointLabels, Gauge>,
}

impl Fanout {
    /// Reads `members`; series differing only in `replica_labels` are one.
    pub fn new(
        members: Vec<Member>,
        replica_labels: Vec<String>,
        endpoint_timeout: std::time::Duration,
        up: Family<EndpointLabels, Gauge>,
    ) -> Self {
        Self {
            members,
            replica_labels,
            endpoint_timeout,
            up,
        }
    }

    /// Runs one endpoint's read within the endpoint timeout. A failure leaves the
    /// endpoint out when `partial` allows it (`Ok(None)`), else fails the read.
    async fn ask<T>(
        &self,
        member: &Member,
        partial: &ReadScope,
        read: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<Option<T>, SourceError> {
        let up = |value: i64| {
            // Not held across the read: the family's guard must not be.
            self.up
                .get_or_create(&EndpointLabels {
                    endpoint: member.name.clone(),
                })
                .set(value);
        };
        let error = match tokio::time::timeout(self.endpoint_timeout, read).await {
            Ok(Ok(answer)) => {
                up(1);
                return Ok(Some(answer));
            }
            Ok(Err(error)) => error,
            Err(_) => SourceError::Unreachable {
                url: member.name.clone(),
                reason: format!("no answer within {:?}", self.endpoint_timeout),
            },
        };
        up(0);
        if partial.allowed() {
            tracing::warn!(endpoint = %member.name, %error, "endpoint left out of a partial answer");
            partial.leave_out(&member.name, &error.to_string());
            Ok(None)
        } else {
            Err(error)
        }
    }

    /// The selection as `member` is asked it: matchers on its external labels are
    /// checked here and left out (its storage does not hold them); `None` when they
    /// fail, so it is not asked.
    fn for_member(member: &Member, selection: &Selection) -> Option<Selection> {
        let external = |name: &str| member.external.iter().find(|l| l.name == name);
        // A group of matchers that must all hold: `None` when one on an external label
        // fails, else the others.
        let strip = |group: &[promql_parser::label::Matcher]| {
            let mut kept = Vec::new();
            for m in group {
                match external(&m.name) {
                    Some(label) if !m.is_match(&label.value) => return None,
                    Some(_) => {}
                    None => kept.push(m.clone()),
                }
            }
            Some(kept)
        };
        let given = &selection.matchers;
        let matchers = if given.or_matchers.is_empty() {
            Matchers::new(strip(&given.matchers)?)
        } else {
            let groups: Vec<_> = given.or_matchers.iter().filter_map(|g| strip(g)).collect();
            if groups.is_empty() {
                return None;
            }
            Matchers {
                matchers: strip(&given.matchers)?,
                or_matchers: groups,
            }
        };
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
        partial: &ReadScope,
    ) -> Result<Vec<Vec<RawSeries>>, SourceError> {
        let asks = self.members.iter().map(|member| async move {
            let (indexes, asked): (Vec<usize>, Vec<Selection>) = selections
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Self::for_member(member, s).map(|s| (i, s)))
                .unzip();
            let answers = if asked.is_empty() {
                Vec::new()
            } else {
                let read = member.source.select(&asked, partial);
                self.ask(member, partial, read).await?.unwrap_or_default()
            };
            Ok::<_, SourceError>((member, indexes, answers))
        });
        let mut merged: Vec<BTreeMap<Vec<Label>, Vec<Vec<Sample>>>> =
            selections.iter().map(|_| BTreeMap::new()).collect();
        let answered = try_join_all(asks).await?;
        self.some_answered(partial)?;
        for (member, indexes, answers) in answered {
            for (i, series) in indexes.into_iter().zip(answers) {
                for s in series {
                    let labels = Self::relabel(member, self.replicas(partial), s.labels);
                    merged[i].entry(labels).or_default().push(s.samples);
                }
            }
        }
        let replicas = !self.replicas(partial).is_empty();
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
        partial: &ReadScope,
    ) -> Result<Vec<Vec<Label>>, SourceError> {
        let asks = self.members.iter().map(|member| async move {
            match Self::for_member(member, selection) {
                Some(asked) => {
                    let read = member.source.series(&asked, partial);
                    let sets = self.ask(member, partial, read).await?.unwrap_or_default();
                    Ok::<_, SourceError>((member, sets))
                }
                None => Ok((member, Vec::new())),
            }
        });
        let answered = try_join_all(asks).await?;
        self.some_answered(partial)?;
        let mut all: Vec<Vec<Label>> = Vec::new();
        for (member, sets) in answered {
            let replicas = self.replicas(partial);
            all.extend(
                sets.into_iter()
                    .map(|labels| Self::relabel(member, replicas, labels)),
            );
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

impl Fanout {
    /// A partial answer needs at least one endpoint that answered.
    fn some_answered(&self, partial: &ReadScope) -> Result<(), SourceError> {
        let missing = partial.missing();
        if missing.len() >= self.members.len() {
            return Err(SourceError::Unreachable {
                url: "every endpoint".to_owned(),
                reason: missing.join("; "),
            });
        }
        Ok(())
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
