//! The `warren` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use warren::config::{self, Config, Overrides};
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
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on for AMQP [default: 0.0.0.0:5672]
    #[arg(long)]
    listen: Option<SocketAddr>,
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
            listen: self.listen,
            data_dir: self.data_dir,
            log_level: self.log_level,
            ..Overrides::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Server(args) = cli.command;
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
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
