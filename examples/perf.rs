//! Runs the throughput scenario until `warren perf throughput` is wired into the binary:
//!
//! ```text
//! cargo run --release --example perf -- -x 1 -y 1 -s 16 -a -z 10 --uri amqp://guest:guest@127.0.0.1:5673/
//! ```

use clap::Parser;
use warren::perf::{run_throughput, ThroughputArgs};

// PerfTest spells the URI `-h`, so clap's `-h` help flag is off (`--help` still works).
#[derive(Parser)]
#[command(
    name = "perf",
    disable_help_flag = true,
    about = "Measures an AMQP 0-9-1 broker's throughput and consumer latency (PerfTest's flags)"
)]
struct Cli {
    #[command(flatten)]
    args: ThroughputArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run_throughput(cli.args).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("perf: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
