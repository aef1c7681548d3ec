//! The `sketch-proxy` command: flags, logging, signals; everything else is the library.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use sketch_proxy::cli::{Cli, Command, PluginsCommand};
use sketch_proxy::config::{self, Overrides};
use sketch_proxy::plugin_host::{self, Host, PluginInfo};
use sketch_proxy::state::{ConfigSource, Proxy};
use tokio::signal::unix::{SignalKind, signal};

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
        overrides: cli.overrides(),
    };
    let config = match source.load() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let _telemetry = match sketch_proxy::telemetry::init(&config.log, &config.tracing) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
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
            let bound = plugin_host::bound_text(&f.bound);
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
