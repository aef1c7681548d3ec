//! A real Prometheus (the Debian package's binaries) on 127.0.0.1, started with data
//! backfilled by `promtool`, stopped when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::net::{free_port, http_agent, wait_until};

/// What the Prometheus should hold and how it should run.
#[derive(Debug, Clone, Default)]
pub struct PrometheusOptions {
    /// OpenMetrics text backfilled into the TSDB before start.
    pub openmetrics: Option<String>,
    /// Contents of a rule file.
    pub rules: Option<String>,
    /// Where the rule file is written (default: the server's own directory). Servers
    /// given the same path report the same `file` for their groups, as replicas and
    /// shards deployed alike do.
    pub rules_path: Option<PathBuf>,
    /// Scrape configurations (YAML list items under `scrape_configs:`).
    pub scrape_configs: Option<String>,
    /// Extra command-line flags.
    pub extra_args: Vec<String>,
    /// Its own door: TLS (a certificate of a [`crate::tls::TestCa`]) and basic auth.
    pub web: Option<WebDoor>,
    /// `global.query_log_file`: one JSON line per query its engine ran, with stats.
    pub query_log_file: Option<PathBuf>,
}

/// Prometheus' `--web.config.file`, and the credentials it asks for.
#[derive(Debug, Clone)]
pub struct WebDoor {
    /// The file (see [`crate::tls::TestCa::web_config`]); it must serve TLS.
    pub file: PathBuf,
    /// User and password of its `basic_auth_users`, if any.
    pub basic_auth: Option<(String, String)>,
}

/// A running Prometheus; killed and waited for on drop.
#[derive(Debug)]
pub struct Prometheus {
    /// `None` while stopped.
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    /// `https` with a web door, else `http`.
    scheme: &'static str,
    /// The `Authorization` value its door asks for.
    auth: Option<String>,
    // Removed after the process, which Drop kills first (fields drop after drop()).
    dir: tempfile::TempDir,
}

/// The path of `binary` (`prometheus`, `promtool`) on `PATH`, or an error telling how
/// to install it.
pub fn require(binary: &str) -> anyhow::Result<PathBuf> {
    find_binary(
        binary,
        "these tests need a real Prometheus 2.42. Install it with `apt-get install -y prometheus` (.ci/install-deps does this)",
    )
}

/// The path of `binary` on `PATH`, or an error saying it is missing, then `hint`.
pub fn find_binary(binary: &str, hint: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{binary}` is not installed: {hint}"))
}

impl Prometheus {
    /// Starts Prometheus and waits (up to 60 s) until it is ready.
    pub fn start(options: &PrometheusOptions) -> anyhow::Result<Self> {
        require("prometheus")?;
        let dir = tempfile::Builder::new()
            .prefix("sketch-proxy-prometheus-")
            .tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        if let Some(text) = &options.openmetrics {
            backfill(dir.path(), &data, text)?;
        }
        let mut config = String::from("global:\n  evaluation_interval: 1m\n");
        if let Some(file) = &options.query_log_file {
            config.push_str(&format!("  query_log_file: {}\n", file.display()));
        }
        if let Some(rules) = &options.rules {
            let path = options
                .rules_path
                .clone()
                .unwrap_or_else(|| dir.path().join("rules.yml"));
            fs::write(&path, rules)?;
            config.push_str(&format!("rule_files:\n  - {}\n", path.display()));
        }
        config.push_str("scrape_configs:\n");
        config.push_str(options.scrape_configs.as_deref().unwrap_or("  []\n"));
        fs::write(dir.path().join("prometheus.yml"), config)?;

        let mut extra_args = options.extra_args.clone();
        let (mut scheme, mut auth) = ("http", None);
        if let Some(web) = &options.web {
            extra_args.push(format!("--web.config.file={}", web.file.display()));
            scheme = "https";
            auth = web.basic_auth.as_ref().map(|(u, p)| crate::tls::basic_auth(u, p));
        }
        // A free port can be taken between the check and the bind; try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            match spawn(dir.path(), port, &extra_args, scheme, auth.as_deref()) {
                Ok(child) => {
                    return Ok(Self {
                        child: Some(child),
                        port,
                        extra_args,
                        scheme,
                        auth,
                        dir,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("prometheus did not start")))
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown), keeping its data and port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data, and waits until it
    /// is ready (the port may still be lingering; retried for up to 30 s).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let mut last_error = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match spawn(
                self.dir.path(),
                self.port,
                &self.extra_args,
                self.scheme,
                self.auth.as_deref(),
            ) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
            // A quick failure (port still held): try again shortly, not in a tight loop.
            std::thread::park_timeout(Duration::from_millis(200));
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("prometheus did not restart")))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:<port>` (`https` behind a web door).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// The `Authorization` value its web door asks for, if any.
    pub fn authorization(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The value of `prometheus_http_requests_total` for `handler` (e.g.
    /// `/api/v1/query`), summed over status codes: what really reached this server.
    pub fn requests_served(&self, handler: &str) -> anyhow::Result<f64> {
        let mut request = http_agent().get(format!("{}/metrics", self.url()));
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let text = request.call()?.body_mut().read_to_string()?;
        let needle = format!("handler=\"{handler}\"");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("prometheus_http_requests_total{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// Starts Prometheus on `port` with the configuration and data in `dir`, ready.
fn spawn(
    dir: &Path,
    port: u16,
    extra_args: &[String],
    scheme: &str,
    auth: Option<&str>,
) -> anyhow::Result<Child> {
    let prometheus = require("prometheus")?;
    let log_path = dir.join("prometheus.log");
    let mut child = Command::new(&prometheus)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--web.enable-lifecycle")
        .arg("--log.level=warn")
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path)?)
        .spawn()
        .context("cannot start prometheus")?;
    match wait_ready(
        &mut child,
        &format!("{scheme}://127.0.0.1:{port}/-/ready"),
        auth,
        &log_path,
    ) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn wait_ready(child: &mut Child, url: &str, auth: Option<&str>, log_path: &Path) -> anyhow::Result<()> {
    let agent = http_agent();
    let mut exited = None;
    let ready = wait_until(Duration::from_secs(60), "prometheus to become ready", || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        // Prometheus' own answer: a proxy started by another test may have taken the
        // port between the check and Prometheus' bind, and be ready there itself.
        let mut request = agent.get(url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.call().is_ok_and(|mut r| {
            r.status() == 200
                && r.body_mut()
                    .read_to_string()
                    .is_ok_and(|body| body.starts_with("Prometheus Server is Ready"))
        })
    });
    let log = fs::read_to_string(log_path).unwrap_or_default();
    if let Some(status) = exited {
        bail!("prometheus exited with {status}:\n{log}");
    }
    ready.with_context(|| format!("prometheus log:\n{log}"))
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn backfill(dir: &Path, data: &Path, text: &str) -> anyhow::Result<()> {
    let promtool = require("promtool")?;
    let input = dir.join("data.om");
    fs::write(&input, text)?;
    let output = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(data)
        .output()
        .context("cannot run promtool")?;
    if !output.status.success() {
        bail!(
            "promtool tsdb create-blocks-from openmetrics failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::remove_file(input)?;
    Ok(())
}
