//! Prints demo data in the OpenMetrics text format for `promtool tsdb
//! create-blocks-from openmetrics`: the last HOURS hours (default 6) up to now.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> anyhow::Result<()> {
    let hours: i64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| anyhow::anyhow!("HOURS must be a whole number: {e}"))?,
        None => 6,
    };
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let end = now - now % sketch_proxy_testkit::demo::STEP;
    let text = sketch_proxy_testkit::demo::openmetrics(end - hours * 3600, end);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
