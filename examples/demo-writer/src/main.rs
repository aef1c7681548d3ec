//! Continues the quickstart's demo latency series (`demo_request_duration_seconds`, four
//! instances, lognormal) through sketch-proxy's remote write, the way a Prometheus with
//! `remote_write` pointing at the proxy would: first every 15 s sample from FROM (Unix
//! seconds, where the demo history ends) up to now in one request, then, with
//! `--follow`, each new sample as its time comes. Without it, prints the time of the
//! next sample it would write, to follow on from.
//!
//! ```sh
//! demo-write http://127.0.0.1:19090 FROM [--follow]
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};

const INSTANCES: [&str; 4] = ["host-0:9100", "host-1:9100", "host-2:9100", "host-3:9100"];
/// The demo data's scrape interval, s.
const STEP: i64 = 15;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: demo-write PROXY_URL FROM_UNIX_SECONDS [--follow]";
    let url = args.next().context(usage)?;
    let from: i64 = args.next().context(usage)?.parse().context(usage)?;
    let follow = args.next().as_deref() == Some("--follow");
    // The history's distribution, another seed: the live samples are new ones.
    let latency = LogNormal::new(-3.0, 0.8)?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut next = from - from % STEP;
    loop {
        let now = now_s()?;
        let times: Vec<i64> = (next..=now).step_by(STEP as usize).collect();
        if let Some(&last) = times.last() {
            let samples = |rng: &mut StdRng| -> Vec<Sample> {
                times
                    .iter()
                    .map(|&t| Sample {
                        value: latency.sample(rng),
                        timestamp: t * 1000,
                    })
                    .collect()
            };
            let request = WriteRequest {
                timeseries: INSTANCES
                    .iter()
                    .map(|instance| TimeSeries {
                        labels: labels(instance),
                        samples: samples(&mut rng),
                        ..TimeSeries::default()
                    })
                    .collect(),
                metadata: Vec::new(),
            };
            send(&url, &request)?;
            next = last + STEP;
        }
        if !follow {
            #[expect(clippy::print_stdout, reason = "the script reads where to go on")]
            {
                println!("{next}");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(u64::try_from(next - now).unwrap_or(0).max(1)));
    }
}

fn labels(instance: &str) -> Vec<Label> {
    [
        ("__name__", "demo_request_duration_seconds"),
        ("instance", instance),
        ("job", "api"),
    ]
    .into_iter()
    .map(|(name, value)| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    })
    .collect()
}

fn send(url: &str, request: &WriteRequest) -> anyhow::Result<()> {
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
    let response = ureq::post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .config()
        .http_status_as_error(false)
        .build()
        .send(&body[..])?;
    if response.status() != 204 {
        bail!("remote write answered {}", response.status());
    }
    Ok(())
}

fn now_s() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}
