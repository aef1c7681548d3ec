//! A real VictoriaMetrics (Debian package `victoria-metrics`, 1.79) on loopback, for
//! side-by-side load tests: free port, temporary directory, always stopped.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::net::{free_port, http_agent, wait_until};
use crate::prometheus::find_binary;

/// A running single-node VictoriaMetrics; killed and waited for on drop.
#[derive(Debug)]
pub struct VictoriaMetrics {
    child: Child,
    port: u16,
    // Removed after the process, which Drop kills first.
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Starts it and waits (up to 60 s) until `/health` answers. The rollup result
    /// cache is off (`-search.disableCache`), so repeated queries are computed each
    /// time, as Prometheus computes them; `-search.latencyOffset=0s` makes samples
    /// searchable at once, as in Prometheus.
    pub fn start() -> anyhow::Result<Self> {
        let binary = require_victoria()?;
        let dir = tempfile::Builder::new()
            .prefix("sketch-proxy-victoria-")
            .tempdir()?;
        let log_path = dir.path().join("victoria-metrics.log");
        let port = free_port()?;
        let mut child = Command::new(binary)
            .arg(format!("-storageDataPath={}", dir.path().join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log_path)?)
            .spawn()
            .context("cannot start victoria-metrics")?;
        let url = format!("http://127.0.0.1:{port}/health");
        let agent = http_agent();
        let mut exited = None;
        let ready = wait_until(
            Duration::from_secs(60),
            "victoria-metrics to become ready",
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
                agent.get(&url).call().is_ok_and(|r| r.status() == 200)
            },
        );
        let log = || fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = exited {
            bail!("victoria-metrics exited with {status}:\n{}", log());
        }
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).with_context(|| format!("victoria-metrics log:\n{}", log()));
        }
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes everything written so far searchable.
    pub fn flush(&self) -> anyhow::Result<()> {
        http_agent()
            .get(format!("{}/internal/force_flush", self.url()))
            .call()?;
        Ok(())
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_victoria() -> anyhow::Result<std::path::PathBuf> {
    find_binary(
        "victoria-metrics",
        "the comparison with VictoriaMetrics needs it. Install it with `apt-get install -y victoria-metrics` (1.79 on Debian 12)",
    )
}
