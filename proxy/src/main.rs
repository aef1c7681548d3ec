//! The `sketch-proxy` command: flags, logging, signals; everything else is the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sketch_proxy::config::{self, LogFormat, Overrides};
use sketch_proxy::plugin_host::{self, Host, PluginInfo};
use sketch_proxy::state::{ConfigSource, Proxy};
use tokio::signal::unix::{SignalKind, signal};

/// A Prometheus-API reverse proxy that answers range functions from sketches.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:19090].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Base URL of the Prometheus or Thanos Querier behind the proxy
    /// [default: http://127.0.0.1:9090].
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Path prefix to serve every route under, e.g. /prometheus.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    route_prefix: Option<String>,
    /// Log level or tracing filter, e.g. debug or sketch_proxy=debug,info.
    #[arg(long = "log.level", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Serve remote write at /api/v1/write: queue durably, then forward to the
    /// downstream (or to ingest.destinations).
    #[arg(long = "web.enable-remote-write-receiver")]
    enable_remote_write_receiver: bool,
    /// Remote-write destination (repeatable; replaces ingest.destinations and turns the
    /// receiver on). Several destinations shard series by a hash of their labels.
    #[arg(long = "remote-write.url", value_name = "URL")]
    remote_write_url: Vec<String>,
    /// How query and query_range are answered: auto (forward unless the query uses a
    /// function only the proxy knows) or local (always evaluate in the proxy over raw
    /// data read from downstream) [default: auto, or query.mode].
    #[arg(long = "query.mode", value_name = "MODE")]
    query_mode: Option<String>,
    /// A rule query to keep warm as sketches (repeatable), e.g.
    /// 'quantile_over_time(0.99, http_latency_ms[1h])'; added to sketches.queries.
    #[arg(long = "sketch.rule", value_name = "QUERY")]
    sketch_rule: Vec<String>,
    /// A Prometheus-API server to read from (repeatable; shards and replicas are read
    /// as one); replaces downstream.endpoints. One endpoint is the same as --upstream.
    #[arg(long = "endpoint", value_name = "URL")]
    endpoint: Vec<String>,
    /// A label that tells replicas apart (repeatable); added to query.replica_labels.
    #[arg(long = "query.replica-label", value_name = "NAME")]
    replica_label: Vec<String>,
    /// Over several endpoints, answer from those that answer, with a warning, when
    /// some fail (true or false) [default: true, or query.partial_response].
    #[arg(long = "query.partial-response", value_name = "BOOL")]
    partial_response: Option<bool>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a configuration file and prints every error in it.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Sketch plugins: list the loaded ones, or check a component file.
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Lists the plugins the configuration loads: functions, error bounds and source.
    List,
    /// Validates a plugin component and prints what it serves, or why it is rejected.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI reports to its terminal"
)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match config::load_file(file, &Overrides::default()) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {errors}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Plugins(command)) = &cli.command {
        let source = ConfigSource {
            path: cli.config.clone(),
            overrides: Overrides::default(),
        };
        return plugins_command(command, &source);
    }
    let source = ConfigSource {
        path: cli.config.clone(),
        overrides: Overrides {
            listen: cli.listen,
            upstream: cli.upstream,
            route_prefix: cli.route_prefix,
            log_level: cli.log_level,
            remote_write_urls: cli.remote_write_url,
            enable_remote_write_receiver: cli.enable_remote_write_receiver,
            query_mode: cli.query_mode,
            sketch_rules: cli.sketch_rule,
            endpoints: cli.endpoint,
            replica_labels: cli.replica_label,
            partial_response: cli.partial_response,
        },
    };
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log);
    let runtime = match sketch_proxy::tokio_runtime(None) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI reports to its terminal"
)]
fn plugins_command(command: &PluginsCommand, source: &ConfigSource) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let host = match Host::global() {
        Ok(host) => host,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = config.plugins.settings();
    match command {
        PluginsCommand::List => {
            let observer: Arc<dyn plugin_host::Observer> = Arc::new(NoObserver);
            let set = host.load(&settings, &observer);
            print!(
                "{}",
                plugins_table(set.plugins().iter().map(|p| (p.info(), p.source().to_string())))
            );
            for rejected in set.rejected() {
                eprintln!("rejected {rejected}");
            }
            if set.rejected().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        PluginsCommand::Check { file } => match host.check_file(file, &settings) {
            Ok(info) => {
                println!("{}: OK, speaks {}", file.display(), plugin_host::CONTRACT);
                print!(
                    "{}",
                    plugins_table([(&info, file.display().to_string())].into_iter())
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rejected {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// One line per function: plugin, version, function(args), bound, source, description.
fn plugins_table<'a>(rows: impl Iterator<Item = (&'a PluginInfo, String)>) -> String {
    let mut lines = vec![
        [
            "PLUGIN",
            "VERSION",
            "FUNCTION",
            "ERROR BOUND",
            "SOURCE",
            "DESCRIPTION",
        ]
        .map(str::to_owned),
    ];
    for (info, source) in rows {
        for f in &info.functions {
            let mut args = f.scalar_args.clone();
            args.push("v[range]".to_owned());
            let bound = if f.bound.relative == 0.0 {
                "exact".to_owned()
            } else {
                format!(
                    "{}% (exact below {} samples)",
                    f.bound.relative * 100.0,
                    f.bound.min_samples
                )
            };
            lines.push([
                info.name.clone(),
                info.version.clone(),
                format!("{}({})", f.name, args.join(", ")),
                bound,
                source.clone(),
                f.description.clone(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The CLI loads plugins only to describe them; nothing gets quarantined there.
#[derive(Debug)]
struct NoObserver;

impl plugin_host::Observer for NoObserver {
    fn quarantined(&self, _plugin: &str, _kind: plugin_host::TrapKind) {}
}

async fn run(config: config::Config, source: ConfigSource) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let proxy = Proxy::new(config, source).map_err(anyhow::Error::msg)?;
    tracing::info!(
        listen = %local,
        downstream = %proxy.runtime().downstream.url(),
        route_prefix = %proxy.runtime().config.web.route_prefix,
        "sketch-proxy started; point Grafana's Prometheus data source at http://{local}{}",
        proxy.runtime().config.web.route_prefix.trim_end_matches('/'),
    );
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let reloader = proxy.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // Errors are logged and counted inside reload; the old configuration stays.
            let _ = reloader.reload();
        }
    });
    let saver = proxy.clone();
    sketch_proxy::http::serve(listener, proxy, shutdown_signal()).await?;
    tokio::task::spawn_blocking(move || saver.save_sketches()).await?;
    tracing::info!("sketch-proxy stopped");
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

fn init_logging(log: &config::LogConfig) {
    // The level was validated with the configuration.
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
