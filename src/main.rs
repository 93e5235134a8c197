//! The `warren` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use warren::config::{self, Config, Listen, Overrides};
use warren::perf::{run_throughput, ThroughputArgs};
use warren::server::Server;

#[derive(Parser)]
#[command(name = "warren", version, about = "An AMQP 0-9-1 message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. Options override WARREN_* variables, which override the config file.
    Server(ServerArgs),
    /// Measure an AMQP 0-9-1 broker (Warren, RabbitMQ, any) by URL.
    Perf {
        #[command(subcommand)]
        scenario: PerfScenario,
    },
}

#[derive(Subcommand)]
enum PerfScenario {
    /// Producers and consumers through one exchange, with RabbitMQ PerfTest's flags.
    // PerfTest spells the URI `-h`, so clap's `-h` is off here (`--help` still works).
    #[command(disable_help_flag = true)]
    Throughput(ThroughputArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on for AMQP; repeat it or separate addresses with commas
    /// [default: 0.0.0.0:5672,[::]:5672]
    #[arg(long, value_delimiter = ',')]
    listen: Vec<SocketAddr>,
    /// Data directory, created if missing [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Configuration file (TOML); see docs/warren.example.toml
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log level or tracing filter [default: info]
    #[arg(long)]
    log_level: Option<String>,
}

impl ServerArgs {
    fn overrides(self) -> Overrides {
        Overrides {
            config: self.config,
            listen: Listen::new(self.listen),
            data_dir: self.data_dir,
            log_level: self.log_level,
            ..Overrides::default()
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Server(args) => server(args),
        Command::Perf {
            scenario: PerfScenario::Throughput(args),
        } => perf(args),
    }
}

fn perf(args: ThroughputArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run_throughput(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server(args: ServerArgs) -> ExitCode {
    let config = match Overrides::from_env(|k| std::env::var(k).ok())
        .and_then(|env| config::resolve(args.overrides(), env))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match EnvFilter::try_new(&config.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("warren: invalid log_level {:?}: {e}", config.log_level);
            return ExitCode::from(2);
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(run(config))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("warren: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

async fn run(config: Config) -> ExitCode {
    let server = match Server::start(config).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("warren: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = wait_for_signal().await {
        tracing::error!("cannot listen for signals: {e}");
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
