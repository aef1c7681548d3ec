//! Shared by the load tests: the release `sketch-proxy` binary as a child process.

pub mod dashboard;
pub mod mixed;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use sketch_proxy_testkit::{free_port, http_agent, wait_until};

/// The proxy process; killed when dropped.
#[derive(Debug)]
pub struct ProxyProcess(pub Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the release `sketch-proxy` that `cargo build --release -p sketch-proxy` left
/// beside this binary, with `args`, and waits until it is ready. Returns its URL.
pub fn start_proxy(args: &[String]) -> anyhow::Result<(ProxyProcess, String)> {
    start_proxy_behind(args, None)
}

/// [`start_proxy`] for a proxy behind a web door (`--web.config.file` among `args`):
/// https, and `authorization` on the readiness probe.
pub fn start_proxy_behind(args: &[String], door: Option<&str>) -> anyhow::Result<(ProxyProcess, String)> {
    let exe = std::env::current_exe()?;
    // `cargo run` puts this binary beside sketch-proxy; `cargo test` one level below.
    let binary = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("sketch-proxy"))
        .find(|p| p.is_file())
        .context("sketch-proxy binary not found next to this one: run `cargo build --release -p sketch-proxy` first")?;
    let port = free_port()?;
    let child = Command::new(binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .args(args)
        .stdout(Stdio::null())
        .spawn()?;
    let scheme = if door.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}");
    let ready = format!("{url}/-/ready");
    wait_until(Duration::from_secs(30), "sketch-proxy to be ready", || {
        let mut request = http_agent().get(&ready);
        if let Some(authorization) = door {
            request = request.header("Authorization", authorization);
        }
        request.call().is_ok_and(|r| r.status() == 200)
    })?;
    Ok((ProxyProcess(child), url))
}

/// Resident memory of process `pid`, bytes (Linux `/proc`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS line")?
        .parse()?;
    Ok(kb * 1024)
}

/// The sketches' memory as `/api/v1/status/sketches` reports it (what the plugins count).
pub fn sketch_memory_bytes(proxy_url: &str) -> anyhow::Result<u64> {
    let (body, _) = get(&format!("{proxy_url}/api/v1/status/sketches"))?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    json["data"]["memoryBytes"]
        .as_u64()
        .context("no data.memoryBytes in the sketch status")
}

/// Samples a server (Prometheus, VictoriaMetrics) holds for `m` over the 26 h ending
/// at `end` (ms).
pub fn count_samples(server: &str, end: i64) -> anyhow::Result<usize> {
    count_samples_over(server, end, "26h")
}

/// Samples a server holds for `m` over the `window` (a PromQL duration) ending at
/// `end` (ms).
pub fn count_samples_over(server: &str, end: i64, window: &str) -> anyhow::Result<usize> {
    count_metric_over(server, "m", end, window)
}

/// Samples a server holds for `metric` over the `window` ending at `end` (ms).
pub fn count_metric_over(server: &str, metric: &str, end: i64, window: &str) -> anyhow::Result<usize> {
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode_query(&format!("sum(count_over_time({metric}[{window}]))")),
        end as f64 / 1000.0
    );
    let (body, _) = get(&format!("{server}{path}"))?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let value = json["data"]["result"][0]["value"][1]
        .as_str()
        .context("no count yet")?;
    Ok(value.parse::<f64>()? as usize)
}

/// Writes a proxy configuration into `dir` that receives remote write (queue in
/// `dir/queue`) and sketches every series `selector` selects for all four built-in
/// functions, keeping `retain`, with `rule_queries` registered. Every sample of those
/// series comes through the proxy (`complete`): the sketches list them.
/// Returns the file.
pub fn sketching_config(
    dir: &std::path::Path,
    selector: &str,
    retain: &str,
    rule_queries: &[&str],
) -> anyhow::Result<std::path::PathBuf> {
    let file = dir.join("sketch-proxy.yml");
    let queries: String = rule_queries.iter().map(|q| format!("    - '{q}'\n")).collect();
    let queries = if queries.is_empty() {
        String::new()
    } else {
        format!("  queries:\n{queries}")
    };
    std::fs::write(
        &file,
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\n  max_queue_bytes: 4294967296\n\
             sketches:\n  max_series: 1000000\n  rules:\n    - match: '{selector}'\n      \
             functions: [quantile_over_time, distinct_over_time, entropy_over_time, l2_over_time]\n      retain: {retain}\n      \
             complete: true\n{queries}",
            dir.join("queue").display()
        ),
    )?;
    Ok(file)
}

/// The first argument as the number of timed rounds (default 5).
pub fn runs_arg() -> anyhow::Result<usize> {
    Ok(std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5))
}

/// `query` percent-encoded for a URL.
pub fn encode_query(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GETs `url`: the body (an error unless 200) and the `X-Answered-By` header.
pub fn get(url: &str) -> anyhow::Result<(String, Option<String>)> {
    get_with(url, &[])
}

/// [`get`] with request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<(String, Option<String>)> {
    let mut request = http_agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call()?;
    let answered = response
        .headers()
        .get("x-answered-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()?;
    if response.status() != 200 {
        anyhow::bail!("{url}: {}: {body}", response.status());
    }
    Ok((body, answered))
}

/// [`get_with`] as Grafana asks: `Accept-Encoding: gzip`, the answer decompressed.
pub fn get_gzip(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<(String, Option<String>)> {
    let mut request = http_agent().get(url).header("Accept-Encoding", "gzip");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (answered, encoding) = (header("x-answered-by"), header("content-encoding"));
    let bytes = response.body_mut().with_config().limit(1 << 30).read_to_vec()?;
    let body = if encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)?;
        text
    } else {
        String::from_utf8(bytes)?
    };
    if response.status() != 200 {
        anyhow::bail!("{url}: {}: {body}", response.status());
    }
    Ok((body, answered))
}

/// How long a GET of `url` takes, body read.
pub fn time(url: &str) -> anyhow::Result<Duration> {
    time_with(url, &[])
}

/// [`time`] with request headers.
pub fn time_with(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    get_with(url, headers)?;
    Ok(started.elapsed())
}

/// How long [`get_gzip`] of `url` takes, body read and decompressed.
pub fn time_gzip(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    get_gzip(url, headers)?;
    Ok(started.elapsed())
}

/// The median (sorts in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// POSTs `request` to `{target}/api/v1/write` as Prometheus sends it (snappy protobuf,
/// remote write 1.0 headers); an error unless 204.
pub fn post_write(target: &str, request: &sketch_proxy::prompb::WriteRequest) -> anyhow::Result<()> {
    use prost::Message as _;
    post_write_body(
        target,
        &snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?,
    )
}

/// [`post_write`] of a request already encoded and compressed.
pub fn post_write_body(target: &str, body: &[u8]) -> anyhow::Result<()> {
    let response = http_agent()
        .post(format!("{target}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send(body)?;
    if response.status() != 204 {
        anyhow::bail!("remote write to {target} answered {}", response.status());
    }
    Ok(())
}
