use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn collapser() -> Arc<Collapser> {
    Arc::new(Collapser::new(Counter::default(), Gauge::default()))
}

#[expect(clippy::disallowed_methods, reason = "the tests' own small bodies")]
async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// On one thread, spawned tasks run to their first wait in order: every follower is
/// waiting before the leader's answer is released.
#[tokio::test(flavor = "current_thread")]
async fn identical_requests_in_flight_share_one_answer() {
    let collapser = collapser();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (collapser, runs, release) = (collapser.clone(), runs.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            let answering = async move {
                runs.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Response::new(Body::from(format!("answer of request {i}")))
            };
            text(collapser.share(7, answering).await).await
        }));
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(collapser.in_flight_count.get(), 50);
    release.notify_waiters();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one evaluation for all");
    assert!(answers.iter().all(|a| a == "answer of request 0"), "{answers:?}");
    assert_eq!(collapser.collapsed.get(), 49);
    assert_eq!(collapser.in_flight_count.get(), 0);
    assert!(
        collapser.in_flight.lock().is_empty(),
        "nothing kept once answered"
    );

    // Once answered, the same request is answered anew: this is not a cache.
    let again = collapser
        .share(7, async { Response::new(Body::from("later")) })
        .await;
    assert_eq!(text(again).await, "later");
}

#[tokio::test(flavor = "current_thread")]
async fn a_follower_takes_over_when_the_leader_goes_away() {
    let collapser = collapser();
    let leader = {
        let collapser = collapser.clone();
        tokio::spawn(async move { collapser.share(1, std::future::pending::<Response>()).await })
    };
    tokio::task::yield_now().await;
    let follower = {
        let collapser = collapser.clone();
        tokio::spawn(async move {
            text(
                collapser
                    .share(1, async { Response::new(Body::from("mine")) })
                    .await,
            )
            .await
        })
    };
    tokio::task::yield_now().await;
    leader.abort();
    assert_eq!(follower.await.unwrap(), "mine");
}

#[tokio::test(flavor = "current_thread")]
async fn an_answer_too_large_to_share_goes_to_its_own_client_whole() {
    let collapser = collapser();
    let big = vec![b'x'; MAX_SHARED_BYTES + 10];
    let expected = big.len();
    let response = collapser
        .share(2, async move { Response::new(Body::from(big)) })
        .await;
    assert_eq!(text(response).await.len(), expected);
}

#[test]
fn the_key_ignores_parameter_order_and_other_headers() {
    let pairs = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    };
    let a = pairs(&[("query", "up"), ("time", "1")]);
    let b = pairs(&[("time", "1"), ("query", "up")]);
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", "grafana".parse().unwrap());
    assert_eq!(
        key(Endpoint::Query, &a, &HeaderMap::new()),
        key(Endpoint::Query, &b, &headers)
    );
    assert_ne!(
        key(Endpoint::Query, &a, &HeaderMap::new()),
        key(Endpoint::QueryRange, &a, &HeaderMap::new())
    );
    let mut gzip = HeaderMap::new();
    gzip.insert("accept-encoding", "gzip".parse().unwrap());
    assert_ne!(
        key(Endpoint::Query, &a, &HeaderMap::new()),
        key(Endpoint::Query, &a, &gzip)
    );
    let c = pairs(&[("query", "up"), ("time", "2")]);
    assert_ne!(
        key(Endpoint::Query, &a, &HeaderMap::new()),
        key(Endpoint::Query, &c, &HeaderMap::new())
    );
}
