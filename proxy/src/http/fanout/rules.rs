//! `/api/v1/rules` and `/api/v1/alerts` over several endpoints.
//!
//! Groups are one per (file, name), sorted so, as Prometheus' rule manager sorts them.
//! A rule's labels and its alerts' labels get the endpoint's external labels where
//! missing and lose the replica labels, as series do; rules equal in type, name, query
//! and labels are then one (replicas, or shards running the same rule file without
//! external labels, as one Prometheus would run it). Their alerts are the union, one per
//! label set, the most advanced state kept (firing over pending over inactive), sorted
//! by labels (Prometheus' own order comes from a map and is not stable). The rule's
//! state is its most advanced copy's; its health is `err` when any copy's is, with that
//! copy's error. Numbers and times are kept as the endpoint wrote them; timings come
//! from the first endpoint that has the group or rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Part, relabel};

type Labels = BTreeMap<String, String>;

#[derive(Debug, Deserialize, Serialize)]
pub struct RuleDiscovery {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Group {
    name: String,
    file: String,
    #[serde(skip_serializing)]
    rules: Vec<Box<RawValue>>,
    #[serde(skip_deserializing, rename = "rules")]
    merged: Vec<Rule>,
    interval: Box<RawValue>,
    limit: Box<RawValue>,
    #[serde(rename = "evaluationTime")]
    evaluation_time: Box<RawValue>,
    #[serde(rename = "lastEvaluation")]
    last_evaluation: String,
}

/// A rule of either type, in Prometheus' field order.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

#[derive(Debug, Deserialize, Serialize)]
struct AlertingRule {
    state: String,
    name: String,
    query: String,
    duration: Box<RawValue>,
    #[serde(rename = "keepFiringFor", skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<Box<RawValue>>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default)]
    alerts: Vec<Alert>,
    health: String,
    #[serde(rename = "lastError", default, skip_serializing_if = "String::is_empty")]
    last_error: String,
    #[serde(rename = "evaluationTime")]
    evaluation_time: Box<RawValue>,
    #[serde(rename = "lastEvaluation")]
    last_evaluation: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct RecordingRule {
    name: String,
    query: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: Labels,
    health: String,
    #[serde(rename = "lastError", default, skip_serializing_if = "String::is_empty")]
    last_error: String,
    #[serde(rename = "evaluationTime")]
    evaluation_time: Box<RawValue>,
    #[serde(rename = "lastEvaluation")]
    last_evaluation: String,
    #[serde(rename = "type")]
    kind: String,
}

/// One alert, in Prometheus' field order.
#[derive(Debug, Deserialize, Serialize)]
pub struct Alert {
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    state: String,
    #[serde(rename = "activeAt", default, skip_serializing_if = "Option::is_none")]
    active_at: Option<String>,
    #[serde(rename = "keepFiringSince", default, skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<String>,
    value: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct AlertDiscovery {
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: String,
}

/// How far along an alert or alerting rule is: a higher one wins a merge.
fn rank(state: &str) -> u8 {
    match state {
        "firing" => 2,
        "pending" => 1,
        _ => 0,
    }
}

/// The alerts of `parts`' `alerts` lists, one per label set.
fn union_alerts(alerts: impl IntoIterator<Item = Alert>) -> Vec<Alert> {
    let mut by_labels: BTreeMap<Labels, Alert> = BTreeMap::new();
    for alert in alerts {
        match by_labels.get(&alert.labels) {
            Some(kept) if rank(&kept.state) >= rank(&alert.state) => {}
            _ => {
                by_labels.insert(alert.labels.clone(), alert);
            }
        }
    }
    by_labels.into_values().collect()
}

/// Merges `/api/v1/alerts` answers.
pub fn merge_alerts(parts: &[Part<'_>], replicas: &[String]) -> Result<AlertDiscovery, serde_json::Error> {
    let mut all = Vec::new();
    for part in parts {
        let answer: AlertDiscovery = serde_json::from_str(part.data.get())?;
        all.extend(answer.alerts.into_iter().map(|mut a| {
            a.labels = relabel(part.target, replicas, a.labels);
            a
        }));
    }
    Ok(AlertDiscovery {
        alerts: union_alerts(all),
    })
}

/// Merges `/api/v1/rules` answers.
pub fn merge_rules(parts: &[Part<'_>], replicas: &[String]) -> Result<RuleDiscovery, serde_json::Error> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for part in parts {
        let answer: RuleDiscovery = serde_json::from_str(part.data.get())?;
        for mut group in answer.groups {
            let mut rules = Vec::with_capacity(group.rules.len());
            for raw in std::mem::take(&mut group.rules) {
                rules.push(read_rule(&raw, part, replicas)?);
            }
            let kept = groups
                .entry((group.file.clone(), group.name.clone()))
                .or_insert(group);
            for rule in rules {
                add_rule(&mut kept.merged, rule);
            }
        }
    }
    Ok(RuleDiscovery {
        groups: groups.into_values().collect(),
    })
}

fn read_rule(raw: &RawValue, part: &Part<'_>, replicas: &[String]) -> Result<Rule, serde_json::Error> {
    let kind: Kind = serde_json::from_str(raw.get())?;
    Ok(if kind.kind == "alerting" {
        let mut rule: AlertingRule = serde_json::from_str(raw.get())?;
        rule.labels = relabel(part.target, replicas, rule.labels);
        for alert in &mut rule.alerts {
            alert.labels = relabel(part.target, replicas, std::mem::take(&mut alert.labels));
        }
        rule.alerts = union_alerts(std::mem::take(&mut rule.alerts));
        Rule::Alerting(rule)
    } else {
        let mut rule: RecordingRule = serde_json::from_str(raw.get())?;
        rule.labels = relabel(part.target, replicas, rule.labels);
        Rule::Recording(rule)
    })
}

/// Adds `rule` to `rules`, merged into an equal one if there is one.
fn add_rule(rules: &mut Vec<Rule>, rule: Rule) {
    let same = rules.iter_mut().find(|r| match (&**r, &rule) {
        (Rule::Alerting(a), Rule::Alerting(b)) => {
            a.name == b.name && a.query == b.query && a.labels == b.labels
        }
        (Rule::Recording(a), Rule::Recording(b)) => {
            a.name == b.name && a.query == b.query && a.labels == b.labels
        }
        _ => false,
    });
    let Some(kept) = same else {
        rules.push(rule);
        return;
    };
    match (kept, rule) {
        (Rule::Alerting(kept), Rule::Alerting(other)) => {
            if rank(&other.state) > rank(&kept.state) {
                kept.state = other.state;
            }
            if other.health == "err" && kept.health != "err" {
                kept.health = other.health;
                kept.last_error = other.last_error;
            }
            let alerts = std::mem::take(&mut kept.alerts);
            kept.alerts = union_alerts(alerts.into_iter().chain(other.alerts));
        }
        (Rule::Recording(kept), Rule::Recording(other)) if other.health == "err" && kept.health != "err" => {
            kept.health = other.health;
            kept.last_error = other.last_error;
        }
        _ => {}
    }
}
