//! `/api/v1/query_exemplars` over several endpoints: series labels get the endpoint's
//! external labels where missing and lose the replica labels; series with equal labels
//! are one, their exemplars the union (equal labels, value and timestamp once) in time
//! order; series sorted by labels, as Prometheus' exemplar storage sorts them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Part, relabel};

type Labels = BTreeMap<String, String>;

/// An exemplar's identity: labels, value and timestamp as written.
type Key = (Labels, String, String);

#[derive(Debug, Deserialize, Serialize)]
pub struct SeriesExemplars {
    #[serde(rename = "seriesLabels")]
    series_labels: Labels,
    exemplars: Vec<Exemplar>,
}

/// One exemplar, in Prometheus' field order; the timestamp as the endpoint wrote it.
#[derive(Debug, Deserialize, Serialize)]
struct Exemplar {
    #[serde(default)]
    labels: Labels,
    value: String,
    timestamp: Box<RawValue>,
}

impl Exemplar {
    fn seconds(&self) -> f64 {
        self.timestamp.get().parse().unwrap_or(f64::NAN)
    }

    fn key(&self) -> Key {
        (
            self.labels.clone(),
            self.value.clone(),
            self.timestamp.get().to_owned(),
        )
    }
}

/// Merges `/api/v1/query_exemplars` answers (`null` when every endpoint answered
/// `null`: the query has no selector).
pub fn merge_exemplars(
    parts: &[Part<'_>],
    replicas: &[String],
) -> Result<Option<Vec<SeriesExemplars>>, serde_json::Error> {
    let mut series: BTreeMap<Labels, (BTreeSet<Key>, Vec<Exemplar>)> = BTreeMap::new();
    let mut any = parts.is_empty();
    for part in parts {
        let answer: Option<Vec<SeriesExemplars>> = serde_json::from_str(part.data.get())?;
        let Some(answer) = answer else { continue };
        any = true;
        for s in answer {
            let (seen, kept) = series
                .entry(relabel(part.target, replicas, s.series_labels))
                .or_default();
            for e in s.exemplars {
                if seen.insert(e.key()) {
                    kept.push(e);
                }
            }
        }
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(
        series
            .into_iter()
            .map(|(series_labels, (_, mut exemplars))| {
                exemplars.sort_by(|a, b| a.seconds().total_cmp(&b.seconds()));
                SeriesExemplars {
                    series_labels,
                    exemplars,
                }
            })
            .collect(),
    ))
}
