use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{Part, Target, exemplars, rules};
use crate::downstream::Downstream;
use crate::endpoints::Endpoint;

fn target(replica: &str) -> Target {
    Target {
        endpoint: std::sync::Arc::new(Endpoint::new(
            "http://127.0.0.1:1",
            BTreeMap::from([("replica".to_owned(), replica.to_owned())]),
            (None, None),
        )),
        client: Downstream::new(
            http::Uri::from_static("http://127.0.0.1:1"),
            &Default::default(),
            std::time::Duration::from_secs(1),
        ),
    }
}

/// A rules answer with one alerting rule in `state` with alerts `(instance, state)`.
fn rules_answer(state: &str, alerts: &[(&str, &str)], health: &str) -> Box<RawValue> {
    let alerts: Vec<String> = alerts
        .iter()
        .map(|(instance, state)| {
            format!(r#"{{"labels":{{"alertname":"A","instance":"{instance}"}},"annotations":{{}},"state":"{state}","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"}}"#)
        })
        .collect();
    let error = if health == "err" {
        r#","lastError":"boom""#
    } else {
        ""
    };
    RawValue::from_string(format!(
        r#"{{"groups":[{{"name":"g","file":"f.yml","rules":[{{"state":"{state}","name":"A","query":"up == 0","duration":0,"keepFiringFor":0,"labels":{{}},"annotations":{{}},"alerts":[{}],"health":"{health}"{error},"evaluationTime":0.001,"lastEvaluation":"2026-01-01T00:00:00Z","type":"alerting"}}],"interval":15,"limit":0,"evaluationTime":0.002,"lastEvaluation":"2026-01-01T00:00:00Z"}}]}}"#,
        alerts.join(",")
    ))
    .unwrap()
}

#[test]
fn replicas_rules_merge_into_one_with_the_most_advanced_state() {
    let (a, b) = (target("a"), target("b"));
    let replicas = ["replica".to_owned()];
    let parts = [
        Part {
            target: &a,
            data: rules_answer("pending", &[("x", "pending")], "ok"),
        },
        Part {
            target: &b,
            data: rules_answer("firing", &[("x", "firing"), ("y", "pending")], "err"),
        },
    ];
    let merged = rules::merge_rules(&parts, &replicas).unwrap();
    let json = String::from_utf8(crate::api::wire::to_go_json(&merged)).unwrap();
    assert_eq!(
        json,
        r#"{"groups":[{"name":"g","file":"f.yml","rules":[{"state":"firing","name":"A","query":"up == 0","duration":0,"keepFiringFor":0,"labels":{},"annotations":{},"alerts":[{"labels":{"alertname":"A","instance":"x"},"annotations":{},"state":"firing","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"},{"labels":{"alertname":"A","instance":"y"},"annotations":{},"state":"pending","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"}],"health":"err","lastError":"boom","evaluationTime":0.001,"lastEvaluation":"2026-01-01T00:00:00Z","type":"alerting"}],"interval":15,"limit":0,"evaluationTime":0.002,"lastEvaluation":"2026-01-01T00:00:00Z"}]}"#
    );
    // Without replica labels the replicas' rules stay apart, each labelled.
    let apart = rules::merge_rules(&parts, &[]).unwrap();
    let json = String::from_utf8(crate::api::wire::to_go_json(&apart)).unwrap();
    assert_eq!(json.matches(r#""name":"A","query""#).count(), 2, "{json}");
    assert!(json.contains(r#""labels":{"replica":"b"}"#), "{json}");
}

fn part<'a>(target: &'a Target, json: &str) -> Part<'a> {
    Part {
        target,
        data: RawValue::from_string(json.to_owned()).unwrap(),
    }
}

#[test]
fn replicas_alerts_are_one_per_label_set_the_most_advanced_kept() {
    let (a, b) = (target("a"), target("b"));
    let alert = |instance: &str, state: &str| {
        format!(
            r#"{{"labels":{{"alertname":"A","instance":"{instance}"}},"annotations":{{}},"state":"{state}","activeAt":"2026-01-01T00:00:00Z","value":"1e+00"}}"#
        )
    };
    let parts = [
        part(
            &a,
            &format!(
                r#"{{"alerts":[{},{}]}}"#,
                alert("y", "firing"),
                alert("x", "pending")
            ),
        ),
        part(&b, &format!(r#"{{"alerts":[{}]}}"#, alert("x", "firing"))),
    ];
    let merged = rules::merge_alerts(&parts, &["replica".to_owned()]).unwrap();
    let json = String::from_utf8(crate::api::wire::to_go_json(&merged)).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"alerts":[{},{}]}}"#,
            alert("x", "firing"),
            alert("y", "firing")
        )
    );
}

#[test]
fn exemplars_merge_per_series_once_each_in_time_order() {
    let (a, b) = (target("a"), target("b"));
    let exemplar = |trace: &str, ts: &str| {
        format!(r#"{{"labels":{{"trace_id":"{trace}"}},"value":"1","timestamp":{ts}}}"#)
    };
    let series = |exemplars: &[String]| {
        format!(
            r#"[{{"seriesLabels":{{"__name__":"m"}},"exemplars":[{}]}}]"#,
            exemplars.join(",")
        )
    };
    let parts = [
        part(
            &a,
            &series(&[exemplar("t2", "1600000002.5"), exemplar("t1", "1600000001")]),
        ),
        part(
            &b,
            &series(&[exemplar("t1", "1600000001"), exemplar("t3", "1600000003.125")]),
        ),
    ];
    let merged = exemplars::merge_exemplars(&parts, &["replica".to_owned()]).unwrap();
    let json = String::from_utf8(crate::api::wire::to_go_json(&merged)).unwrap();
    let want = series(&[
        exemplar("t1", "1600000001"),
        exemplar("t2", "1600000002.5"),
        exemplar("t3", "1600000003.125"),
    ]);
    assert_eq!(json, want);
    // Without replica labels, each replica's series is its own.
    let apart = exemplars::merge_exemplars(&parts, &[]).unwrap().unwrap();
    assert_eq!(apart.len(), 2);
}
