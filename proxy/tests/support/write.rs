//! Remote write from the tests: build and send requests, and read back what a real
//! Prometheus stored.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};

use super::Answer;

/// A series' labels (sorted by name) and samples (oldest first), as sent or stored.
pub type Stored = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `series` series named `metric` with `samples` samples each, `step_ms` apart from
/// `start_ms`, random values (integers and fractions, some repeated).
pub fn generate(
    metric: &str,
    series: usize,
    samples: usize,
    start_ms: i64,
    step_ms: i64,
    seed: u64,
) -> Stored {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..series)
        .map(|i| {
            let labels = vec![
                ("__name__".to_owned(), metric.to_owned()),
                ("instance".to_owned(), format!("host-{i}")),
                ("job".to_owned(), "ingest-test".to_owned()),
            ];
            let points = (0..samples)
                .map(|j| {
                    let v = if rng.random_bool(0.5) {
                        f64::from(rng.random_range(0..20u32))
                    } else {
                        rng.random::<f64>() * 1e6
                    };
                    (start_ms + j as i64 * step_ms, v)
                })
                .collect();
            (labels, points)
        })
        .collect()
}

/// The uncompressed protobuf of a request holding `data`.
pub fn encode(data: &Stored) -> Vec<u8> {
    WriteRequest {
        timeseries: data
            .iter()
            .map(|(labels, points)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: points
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                ..TimeSeries::default()
            })
            .collect(),
        metadata: Vec::new(),
    }
    .encode_to_vec()
}

pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// The headers Prometheus' own sender uses.
pub const HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// POSTs `body` to `{base}/api/v1/write` with `headers`.
pub fn post_with(base: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut request = http::Request::post(format!("{base}/api/v1/write"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = sketch_proxy_testkit::http_agent()
        .run(request.body(body).unwrap())
        .unwrap_or_else(|e| panic!("POST {base}/api/v1/write: {e}"));
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.body_mut().read_to_string().unwrap(),
        path: None,
        cache: None,
        cache_control: None,
        pushed: None,
    }
}

/// Sends `data` as Prometheus would.
pub fn post(base: &str, data: &Stored) -> Answer {
    post_with(base, &HEADERS, snappy(&encode(data)))
}

/// Every sample of the series matching `selector` that Prometheus holds in the
/// `range` before `at_ms` (a PromQL duration such as `3h`).
pub fn stored(prometheus: &str, selector: &str, at_ms: i64, range: &str) -> Stored {
    stored_as(prometheus, None, selector, at_ms, range)
}

/// [`stored`] from a Prometheus whose door wants `authorization`.
pub fn stored_as(
    prometheus: &str,
    authorization: Option<&str>,
    selector: &str,
    at_ms: i64,
    range: &str,
) -> Stored {
    let query = format!("{selector}[{range}]");
    let url = format!(
        "{prometheus}/api/v1/query?query={}&time={}",
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>(),
        at_ms as f64 / 1000.0
    );
    let mut request = sketch_proxy_testkit::http_agent().get(&url);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = request.call().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(json["status"], "success", "{json}");
    let mut out = Stored::new();
    for series in json["data"]["result"].as_array().unwrap() {
        let labels = series["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let points = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(labels, points);
    }
    out
}

/// Sample count of `data`.
/// Samples `from..to` of every series of `all`.
pub fn part(all: &Stored, from: usize, to: usize) -> Stored {
    all.iter()
        .map(|(k, v)| (k.clone(), v[from..to].to_vec()))
        .collect()
}

pub fn samples(data: &Stored) -> usize {
    data.values().map(Vec::len).sum()
}

/// Merges `more` into `all` (series by series, samples appended).
pub fn extend(all: &mut Stored, more: Stored) {
    for (labels, points) in more {
        all.entry(labels).or_default().extend(points);
    }
}
