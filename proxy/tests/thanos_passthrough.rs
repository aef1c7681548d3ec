//! With a Thanos Querier downstream, its own parameters must arrive untouched and its
//! response headers must reach the client. Thanos cannot run here, so this one test
//! uses a recording fake downstream that answers like a Querier would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use std::sync::Arc;

use tokio::sync::Mutex;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use http_body_util::BodyExt;
use support::{TestProxy, send};

#[derive(Debug, Clone, Default)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(State(log): State<Log>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    #[expect(clippy::disallowed_methods, reason = "bounded by Limited")]
    let body = http_body_util::Limited::new(body, 1 << 20)
        .collect()
        .await
        .unwrap()
        .to_bytes();
    // A range-vector read (the proxy reading raw data through the query API) gets a matrix.
    let raw_read = String::from_utf8_lossy(&body).contains("ms%5D&time=");
    log.lock().await.push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if raw_read {
        return Response::builder()
            .header("Content-Type", "application/json")
            .body(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into())
            .unwrap();
    }
    Response::builder()
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-store")
        .header("X-Thanos-Partial", "1")
        .header("Keep-Alive", "timeout=5")
        .body(
            r#"{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["store 1 unavailable"]}"#
                .into(),
        )
        .unwrap()
}

fn start_fake() -> (String, Log, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = Log::default();
    let app = Router::new().fallback(record).with_state(log.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/thanos", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, log, runtime)
}

const THANOS_QUERY: &str = "query=up&dedup=false&replicaLabels%5B%5D=replica&replicaLabels%5B%5D=rule_replica\
&partial_response=true&max_source_resolution=5m&storeMatch%5B%5D=%7B__address__%3D~%22store-1.*%22%7D\
&engine=thanos&analyze=true&lookback_delta=10m";

#[test]
fn thanos_parameters_and_headers_pass_through() {
    let (upstream, log, _runtime) = start_fake();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(&path, "").unwrap();
    let proxy = TestProxy::start_with(
        sketch_proxy::state::ConfigSource {
            path: Some(path),
            overrides: sketch_proxy::config::Overrides {
                listen: Some("127.0.0.1:0".to_owned()),
                upstream: Some(upstream),
                route_prefix: Some("/ingress".to_owned()),
                ..Default::default()
            },
        },
        dir,
    );

    let get = send(&proxy.url(), "GET", "/ingress/api/v1/query", THANOS_QUERY, "");
    let post = send(
        &proxy.url(),
        "POST",
        "/ingress/api/v1/query_range",
        "dedup=true",
        "query=up&start=1&end=2&step=1&partial_response=false&replicaLabels%5B%5D=replica",
    );
    for answer in [&get, &post] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["warnings"][0], "store 1 unavailable");
    }

    let seen = log.blocking_lock().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].path_and_query,
        format!("/thanos/api/v1/query?{THANOS_QUERY}")
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].path_and_query, "/thanos/api/v1/query_range?dedup=true");
    assert_eq!(
        seen[1].body,
        "query=up&start=1&end=2&step=1&partial_response=false&replicaLabels%5B%5D=replica"
    );
    let content_type = seen[1]
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("application/x-www-form-urlencoded"));
}

#[test]
fn downstream_response_headers_reach_the_client_except_hop_by_hop() {
    let (upstream, _log, _runtime) = start_fake();
    let proxy = TestProxy::start("", &upstream);
    let mut response = sketch_proxy_testkit::http_agent()
        .get(format!("{}/api/v1/query?query=up", proxy.url()))
        .header("X-Scope-OrgID", "tenant-1")
        .call()
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("x-thanos-partial").as_deref(), Some("1"));
    assert_eq!(header("keep-alive"), None, "hop-by-hop headers stay on their hop");
    assert!(
        response
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("store 1 unavailable")
    );
}

#[test]
fn client_request_headers_reach_downstream_except_hop_by_hop() {
    let (upstream, log, _runtime) = start_fake();
    let proxy = TestProxy::start("", &upstream);
    sketch_proxy_testkit::http_agent()
        .get(format!("{}/api/v1/labels", proxy.url()))
        .header("X-Scope-OrgID", "tenant-1")
        .header("Authorization", "Bearer abc")
        .header("Connection", "X-Secret-Hop")
        .header("X-Secret-Hop", "1")
        .call()
        .unwrap();
    let seen = log.blocking_lock()[0].clone();
    let has = |name: &str| seen.headers.iter().any(|(k, _)| k == name);
    assert!(has("x-scope-orgid") && has("authorization"), "{:?}", seen.headers);
    assert!(
        !has("x-secret-hop"),
        "headers named in Connection are hop-by-hop: {:?}",
        seen.headers
    );
}

#[test]
fn over_several_query_api_endpoints_thanos_parameters_reach_each() {
    let fakes = [start_fake(), start_fake()];
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n      kind: query_api\n    - url: {}\n      kind: query_api\n",
        fakes[0].0, fakes[1].0
    );
    let proxy = TestProxy::start(&yaml, &fakes[0].0);
    let answer = send(
        &proxy.url(),
        "GET",
        "/api/v1/query",
        "query=up&time=100&max_source_resolution=5m&engine=thanos&partial_response=false",
        "",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // storeMatch[] picks among the proxy's endpoints; it is not passed on.
    send(
        &proxy.url(),
        "GET",
        "/api/v1/series",
        "match[]=up&storeMatch%5B%5D=%7B__address__%3D~%22.%2B%22%7D&dedup=false",
        "",
    );
    for (url, log, _) in &fakes {
        let seen = log.blocking_lock().clone();
        let asked = |path: &str| {
            seen.iter()
                .find(|s| s.path_and_query.split('?').next().unwrap().ends_with(path))
                .unwrap_or_else(|| panic!("{url} was not asked {path}: {seen:?}"))
        };
        assert_eq!(
            asked("/api/v1/series").path_and_query,
            "/thanos/api/v1/series?match%5B%5D=up&dedup=false"
        );
        let read = &asked("/api/v1/query").body;
        assert!(
            read.contains("max_source_resolution=5m") && read.contains("engine=thanos"),
            "{url}: {read}"
        );
    }
}
