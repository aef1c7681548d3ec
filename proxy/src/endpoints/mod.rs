//! The endpoints of `downstream.endpoints`, as both fan-outs see them: the query API's
//! (`http::fanout`) and raw data's (`source::fanout`). One [`Endpoint`] per configured
//! endpoint, built once by `state`, with the rules both share: which endpoints a request
//! may ask (its time range, `storeMatch[]`, matchers on external labels), how an
//! endpoint's series are labelled in a merged answer (external labels added, replica
//! labels dropped), and which endpoints' failures a replica makes good.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use promql_parser::label::Matchers;

use crate::config::duration::time_bound::TimeBound;
use crate::prompb::Label;

/// One endpoint: what it is called, and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Its URL without a trailing `/`, for warnings and its health metric.
    pub name: String,
    /// Its URL's `host:port`, the `__address__` of `storeMatch[]`.
    pub address: String,
    /// Its external labels.
    pub external: BTreeMap<String, String>,
    /// The oldest and newest data it holds, if bounded.
    pub time_range: TimeRange,
    /// Whether it is another sketch-proxy, knowing the proxy's own functions.
    pub sketch_proxy: bool,
}

impl Endpoint {
    /// The endpoint at `url`.
    pub fn new(url: &str, external: BTreeMap<String, String>, time_range: TimeRange) -> Self {
        Self {
            name: url.trim_end_matches('/').to_owned(),
            address: address_of(url),
            external,
            time_range,
            sketch_proxy: false,
        }
    }

    /// The value of its external label `name`.
    pub fn external_value(&self, name: &str) -> Option<&str> {
        self.external.get(name).map(String::as_str)
    }

    /// Whether it may hold data in `[start_ms, end_ms]`.
    pub fn holds(&self, start_ms: i64, end_ms: i64) -> bool {
        holds(self.time_range, start_ms, end_ms)
    }

    /// Whether `storeMatch[]` lets it be asked.
    pub fn selected(&self, store_match: &[Matchers]) -> bool {
        store_selected(&self.address, |n| self.external_value(n), store_match)
    }

    /// `matchers` as it is asked them (see [`without_external`]).
    pub fn without_external(&self, matchers: &Matchers) -> Option<Matchers> {
        without_external(matchers, |n| self.external_value(n))
    }

    /// The shard it holds (see [`shard_key`]); `index` is its place in the list.
    pub fn shard_key(&self, index: usize, replicas: &[String]) -> ShardKey {
        shard_key(
            index,
            self.external.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            self.time_range,
            replicas,
        )
    }

    /// `labels` as a merged answer carries them: its external labels added where
    /// missing, `replicas` dropped, sorted by name.
    pub fn relabel(&self, replicas: &[String], mut labels: Vec<Label>) -> Vec<Label> {
        for (name, value) in &self.external {
            if !labels.iter().any(|l| &l.name == name) {
                labels.push(Label {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        labels.retain(|l| !replicas.contains(&l.name));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }
}

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

#[cfg(test)]
mod tests;
