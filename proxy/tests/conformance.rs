//! Prometheus 2.42's own PromQL test scripts replayed through the proxy: every `load`
//! goes into a real Prometheus 2.42 by remote write (a fresh server after each
//! `clear`), every `eval` is sent to the proxy as `/api/v1/query`, and answers are
//! compared as `promql/test.go` compares them (1e-6 relative, NaN equals NaN, order
//! only for `eval_ordered`). Run twice: with the proxy forwarding every query
//! (passthrough, a check on the runner) and with the proxy evaluating every query itself
//! over raw data it reads back by remote read (`query.mode: local`); then with the data
//! split over two Prometheus shards by a hash of the series labels, and over a replica
//! pair where each replica misses a different third of the samples (issue 8); and with
//! `query.push_down` (issue 20) over the two shards and over a replica pair of whole
//! copies told apart by an external replica label, where most answers must say they
//! were pushed down (`X-Pushed-Down`); and with every sample written through the proxy,
//! which sketches every series for the stats and quantile plugins with the cost rule off
//! (`sketches.min_window: 0s`), so that every `*_over_time`, `rate`, `increase`,
//! `delta`, `changes` and `resets` the sketches cover is answered by the plugins
//! (issue 22), and a query that is one such call must be Prometheus' own answer to the
//! last digit. Every
//! `eval` is asked twice: the second answer must come from the results cache (unless
//! the query is not cacheable, or failed) and pass too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod promqltest;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use promqltest::{Command, EvalKind, Expected, Labels};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::TestProxy;
use support::write::{self, Stored};

/// The functions the sketched mode sketches: every plugin function Prometheus has.
const SKETCHED: &str = "avg_over_time, sum_over_time, count_over_time, min_over_time, max_over_time, stddev_over_time, stdvar_over_time, present_over_time, last_over_time, changes, resets, delta, increase, rate, quantile_over_time";

/// Samples sent per request are this close in time: Prometheus refuses samples more than
/// an hour behind the newest it has.
const WINDOW_MS: i64 = 1_800_000;

/// A Prometheus with what the script loaded since its last `clear`, and the proxy.
struct Server {
    mode: Mode,
    /// One, or two shards or replicas.
    prometheus: Vec<Prometheus>,
    proxy: TestProxy,
    /// Every sample loaded since the last `clear`: (time, labels, value).
    loaded: Vec<(i64, Labels, f64)>,
    /// The newest timestamp sent.
    newest: i64,
    /// The proxy's queue directory (sketched mode).
    _queue: tempfile::TempDir,
}

impl Server {
    fn start(mode: Mode) -> Self {
        let count = match mode {
            Mode::Passthrough | Mode::Local | Mode::Sketched => 1,
            Mode::Shards | Mode::Replicas | Mode::PushedShards | Mode::PushedReplicas => 2,
        };
        let prometheus: Vec<Prometheus> = (0..count)
            .map(|_| Prometheus::start(&PrometheusOptions::default()).expect("start Prometheus"))
            .collect();
        let endpoints: String = prometheus
            .iter()
            .map(|p| format!("    - url: {}\n", p.url()))
            .collect();
        let queue = tempfile::tempdir().unwrap();
        let config = match mode {
            Mode::Sketched => format!(
                "ingest:\n  enabled: true\n  queue_dir: {}\n\
                 sketches:\n  min_window: 0s\n  backfill: false\n  rules:\n    - match: '{{__name__=~\".+\"}}'\n      functions: [{SKETCHED}]\n      retain: 30d\n",
                queue.path().display()
            ),
            Mode::Passthrough => String::new(),
            Mode::Local => "query:\n  mode: local\n".to_owned(),
            Mode::Shards => format!("downstream:\n  endpoints:\n{endpoints}"),
            Mode::Replicas => {
                format!("downstream:\n  endpoints:\n{endpoints}query:\n  replica_labels: [replica]\n")
            }
            Mode::PushedShards => {
                // Read through the query API: per-series parts are pushed too.
                let endpoints: String = prometheus
                    .iter()
                    .map(|p| format!("    - url: {}\n      kind: query_api\n", p.url()))
                    .collect();
                format!("downstream:\n  endpoints:\n{endpoints}query:\n  push_down: true\n")
            }
            Mode::PushedReplicas => {
                let endpoints: String = prometheus
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        format!(
                            "    - url: {}\n      external_labels: {{replica: r{i}}}\n",
                            p.url()
                        )
                    })
                    .collect();
                format!(
                    "downstream:\n  endpoints:\n{endpoints}query:\n  push_down: true\n  replica_labels: [replica]\n"
                )
            }
        };
        let proxy = TestProxy::start(&config, &prometheus[0].url());
        Self {
            mode,
            prometheus,
            proxy,
            loaded: Vec::new(),
            newest: i64::MIN,
            _queue: queue,
        }
    }

    /// Sends a `load` block. A block reaching further back than Prometheus takes (an hour
    /// behind its newest sample) is loaded with everything before it into a fresh server,
    /// all in time order.
    fn load(&mut self, step_ms: i64, series: &[(Labels, Vec<Option<f64>>)]) {
        // A series defined twice in one block keeps its last definition (`loadCmd.set`).
        let series: BTreeMap<&Labels, &Vec<Option<f64>>> = series.iter().map(|(l, v)| (l, v)).collect();
        let mut points: Vec<(i64, Labels, f64)> = series
            .into_iter()
            .flat_map(|(labels, values)| {
                values
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, v)| v.map(|v| (i as i64 * step_ms, (*labels).clone(), v)))
            })
            .collect();
        let oldest = points.iter().map(|p| p.0).min().unwrap_or(i64::MAX);
        if self.newest != i64::MIN && oldest < self.newest - WINDOW_MS {
            let mut fresh = Self::start(self.mode);
            fresh.loaded = std::mem::take(&mut self.loaded);
            fresh.loaded.append(&mut points);
            let everything = std::mem::take(&mut fresh.loaded);
            fresh.send(&everything);
            fresh.loaded = everything;
            *self = fresh;
        } else {
            self.send(&points);
            self.loaded.append(&mut points);
        }
    }

    fn send(&mut self, points: &[(i64, Labels, f64)]) {
        let mut sorted: Vec<&(i64, Labels, f64)> = points.iter().collect();
        sorted.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for window in sorted.chunk_by(|a, b| a.0 / WINDOW_MS == b.0 / WINDOW_MS) {
            let mut data = Stored::new();
            for (t, labels, v) in window {
                data.entry(labels.clone()).or_default().push((*t, *v));
            }
            if self.mode == Mode::Sketched {
                let answer = write::post(&self.proxy.url(), &data);
                assert_eq!(answer.status, 204, "load: {}", answer.body);
                continue;
            }
            for (prometheus, part) in self.prometheus.iter().zip(self.mode.split(data)) {
                let answer = write::post(&prometheus.url(), &part);
                assert_eq!(answer.status, 204, "load: {}", answer.body);
            }
        }
        self.newest = self
            .newest
            .max(points.iter().map(|p| p.0).max().unwrap_or(i64::MIN));
        if self.mode == Mode::Sketched {
            // The proxy forwards after its 204: wait until Prometheus has it all.
            support::wait_delivered(&self.proxy);
        }
    }

    /// `None` if the answer matches, else why not; and whether parts of it were pushed
    /// down, or answered from sketches (sketched mode).
    fn eval(&self, kind: EvalKind, at_ms: i64, query: &str, expected: &Expected) -> (Option<String>, bool) {
        let form = format!(
            "query={}&time={}",
            form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>(),
            at_ms as f64 / 1000.0
        );
        let ask = || support::send(&self.proxy.url(), "POST", "/api/v1/query", "", &form);
        let first = ask();
        let pushed = if self.mode == Mode::Sketched {
            first
                .path
                .as_deref()
                .is_some_and(|p| p.split(',').any(|p| p == "sketch"))
        } else {
            first.pushed.is_some()
        };
        let failed = self.check(kind, &first, expected).or_else(|| {
            if self.mode == Mode::Sketched && pushed {
                self.same_as_prometheus(query, &form, &first)
            } else {
                None
            }
        });
        // Asked again, a cacheable answer comes from the results cache, and is as right.
        let second = ask();
        if failed.is_none()
            && first.cache.is_some()
            && first.status == 200
            && second.cache.as_deref() != Some("hit")
        {
            return (
                Some(format!("asked again: X-Cache {:?}, expected hit", second.cache)),
                pushed,
            );
        }
        let failed = failed.or_else(|| {
            self.check(kind, &second, expected)
                .map(|why| format!("from the cache: {why}"))
        });
        (failed, pushed)
    }

    /// Sketched mode: a query that is one call the sketches answered must be Prometheus'
    /// own answer to the last digit (the scripts' windows are small, where every
    /// plugin function but `rate` and `increase` past 16 resets is exact, and none has
    /// that many). `None` if it is, or if the query is more than that call (Prometheus
    /// may sum the series in another order than the engine).
    fn same_as_prometheus(&self, query: &str, form: &str, answer: &support::Answer) -> Option<String> {
        let one_call = match promql_parser::parser::parse(query) {
            Ok(promql_parser::parser::Expr::Call(call)) => SKETCHED.split(", ").any(|f| f == call.func.name),
            _ => false,
        };
        if !one_call {
            return None;
        }
        let direct = support::send(&self.prometheus[0].url(), "POST", "/api/v1/query", "", form);
        let values = |answer: &support::Answer| -> BTreeMap<String, String> {
            let json = answer.json();
            json["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["metric"].to_string(), s["value"][1].to_string()))
                .collect()
        };
        let (got, want) = (values(answer), values(&direct));
        (got != want).then(|| format!("from sketches {got:?}, Prometheus' own answer {want:?}"))
    }

    /// `None` if `answer` matches, else why not.
    fn check(&self, kind: EvalKind, answer: &support::Answer, expected: &Expected) -> Option<String> {
        let json = answer.json();
        let path = answer.path.clone();
        let want_path = match self.mode {
            Mode::Passthrough => "downstream",
            _ => "engine",
        };
        // Sketched: whichever path the query takes.
        if json["status"] == "success" && self.mode != Mode::Sketched && path.as_deref() != Some(want_path) {
            return Some(format!("answered by {path:?}, expected {want_path}"));
        }
        if kind == EvalKind::Fail {
            return (json["status"] == "success").then(|| format!("expected an error, got {}", answer.body));
        }
        if json["status"] != "success" {
            return Some(format!("failed: {}", answer.body));
        }
        let data = &json["data"];
        match (data["resultType"].as_str(), expected) {
            (Some("scalar"), Expected::Scalar(want)) => {
                let got = number(&data["result"][1]);
                (!almost_equal(*want, got)).then(|| format!("scalar {got}, expected {want}"))
            }
            (Some("vector"), Expected::Vector(want)) => {
                let got: Vec<(Labels, f64)> = data["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        let labels: BTreeMap<String, String> = s["metric"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect();
                        (labels.into_iter().collect(), number(&s["value"][1]))
                    })
                    .collect();
                compare_vectors(&got, want, kind == EvalKind::Ordered)
            }
            (kind, _) => Some(format!("result type {kind:?} does not match {expected:?}")),
        }
    }
}

fn number(v: &serde_json::Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

/// `promql/test.go`'s `almostEqual`.
fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 0.000_001;
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

/// `compareResult` for vectors: every result expected (in order if `ordered`), with an
/// almost-equal value, and every expected series present.
fn compare_vectors(got: &[(Labels, f64)], want: &[(Labels, f64)], ordered: bool) -> Option<String> {
    for (pos, (labels, value)) in got.iter().enumerate() {
        let Some(at) = want.iter().position(|w| &w.0 == labels) else {
            return Some(format!("unexpected series {labels:?} = {value}"));
        };
        if ordered && at != pos {
            return Some(format!("{labels:?} at position {pos}, expected {at}"));
        }
        if !almost_equal(want[at].1, *value) {
            return Some(format!("{labels:?} = {value}, expected {}", want[at].1));
        }
    }
    want.iter()
        .find(|w| !got.iter().any(|g| g.0 == w.0))
        .map(|w| format!("expected series {:?} missing", w.0))
}

/// Who evaluates the queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The proxy forwards them to Prometheus.
    Passthrough,
    /// The proxy evaluates them.
    Local,
    /// The proxy evaluates them over two shards.
    Shards,
    /// The proxy evaluates them over a replica pair.
    Replicas,
    /// Over two shards, pushing down what they can answer alone.
    PushedShards,
    /// Over a replica pair of whole copies, pushing down to one replica.
    PushedReplicas,
    /// Written through the proxy, which sketches every series.
    Sketched,
}

impl Mode {
    /// What each Prometheus gets of `data`: all of it; whole series by a hash of their
    /// labels; or every series with a `replica` label, each replica missing a
    /// different third of the samples.
    fn split(self, data: Stored) -> Vec<Stored> {
        match self {
            Mode::Passthrough | Mode::Local | Mode::Sketched => vec![data],
            // The replica is told by the endpoint's external label.
            Mode::PushedReplicas => vec![data.clone(), data],
            Mode::Shards | Mode::PushedShards => {
                let mut parts = vec![Stored::new(), Stored::new()];
                for (labels, points) in data {
                    let mut hasher = std::hash::DefaultHasher::new();
                    std::hash::Hash::hash(&labels, &mut hasher);
                    let shard = (std::hash::Hasher::finish(&hasher) % 2) as usize;
                    parts[shard].insert(labels, points);
                }
                parts
            }
            Mode::Replicas => (0..2)
                .map(|r| {
                    data.iter()
                        .map(|(labels, points)| {
                            let mut labels = labels.clone();
                            labels.push(("replica".to_owned(), r.to_string()));
                            labels.sort();
                            let kept = points
                                .iter()
                                .filter(|(t, _)| (t / 1000).rem_euclid(3) != r)
                                .copied()
                                .collect();
                            (labels, kept)
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// Runs one script; returns (passed, failures, answers pushed down).
fn run(path: &PathBuf, mode: Mode) -> (usize, Vec<String>, usize) {
    let script = std::fs::read_to_string(path).unwrap();
    let commands = promqltest::parse(&script).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut server = Server::start(mode);
    let (mut passed, mut failures, mut pushed) = (0, Vec::new(), 0);
    for command in commands {
        match command {
            Command::Clear => server = Server::start(mode),
            Command::Load { step_ms, series } => server.load(step_ms, &series),
            Command::Eval {
                kind,
                at_ms,
                query,
                expected,
                line,
            } => {
                let (failed, was_pushed) = server.eval(kind, at_ms, &query, &expected);
                pushed += usize::from(was_pushed);
                match failed {
                    None => passed += 1,
                    Some(why) => failures.push(format!("{name}:{line}: {query}: {why}")),
                }
            }
        }
    }
    (passed, failures, pushed)
}

/// Runs every script, two at a time (each has its own Prometheus and proxy), and
/// checks that all 566 cases pass.
fn run_all(mode: Mode) {
    let files = promqltest::script_files();
    let results: Vec<(usize, Vec<String>, usize)> = files
        .chunks(files.len().div_ceil(2))
        .map(|half| {
            let half = half.to_vec();
            std::thread::spawn(move || half.iter().map(|f| run(f, mode)).collect::<Vec<_>>())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let passed: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(
        failures.is_empty(),
        "{mode:?}: {passed} passed, {} failed:\n{failures:#?}",
        failures.len()
    );
    assert_eq!(passed, 566);
    let pushed: usize = results.iter().map(|r| r.2).sum();
    if mode == Mode::PushedShards {
        // Most cases select series with per-series parts; the rest are literals, or
        // read raw data by design (`count_values`, binary operations of two vectors).
        assert!(pushed > 300, "{mode:?}: only {pushed} of 566 answers pushed down");
    } else if mode == Mode::Sketched {
        // The scripts' `*_over_time`, `rate`, `increase`, `delta`, `changes` and
        // `resets` calls whose windows the sketches cover (83 when this was written;
        // windows reaching before a series' first sample are not).
        assert!(
            pushed >= 75,
            "{mode:?}: only {pushed} of 566 answers from sketches"
        );
    } else if mode == Mode::PushedReplicas {
        // Read by remote read: only aggregations are pushed.
        assert!(pushed > 80, "{mode:?}: only {pushed} of 566 answers pushed down");
    } else {
        assert_eq!(pushed, 0, "{mode:?}");
    }
}

#[test]
fn prometheus_test_scripts_pass_through_the_proxy() {
    run_all(Mode::Passthrough);
}

#[test]
fn prometheus_test_scripts_pass_evaluated_by_the_proxy() {
    run_all(Mode::Local);
}

#[test]
fn prometheus_test_scripts_pass_over_two_shards() {
    run_all(Mode::Shards);
}

#[test]
fn prometheus_test_scripts_pass_over_a_replica_pair() {
    run_all(Mode::Replicas);
}

#[test]
fn prometheus_test_scripts_pass_over_two_shards_with_push_down() {
    run_all(Mode::PushedShards);
}

#[test]
fn prometheus_test_scripts_pass_over_a_replica_pair_with_push_down() {
    run_all(Mode::PushedReplicas);
}

#[test]
fn prometheus_test_scripts_pass_with_every_series_sketched() {
    run_all(Mode::Sketched);
}
