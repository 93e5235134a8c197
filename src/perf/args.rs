//! Command-line arguments of `warren perf throughput`, spelled as RabbitMQ's PerfTest spells
//! them so that commands carry over.
//!
//! PerfTest uses `-h` for the URI, so a command embedding [`ThroughputArgs`] must turn clap's
//! own help flag off (`#[command(disable_help_flag = true)]`, on the subcommand); the struct
//! brings its own `--help`.

use clap::{ArgAction, Args};

/// Producers publish to an exchange, consumers consume; rates and consumer latency are printed
/// every second, then a summary JSON line.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ThroughputArgs {
    /// Broker URL, `amqp://user:pass@host:port/vhost` (vhost percent-encoded: `%2f` is `/`).
    #[arg(
        short = 'h',
        long = "uri",
        default_value = "amqp://guest:guest@127.0.0.1:5672/"
    )]
    pub uri: String,

    /// Number of producers (one connection each).
    #[arg(short = 'x', long = "producers", default_value_t = 1)]
    pub producers: u32,

    /// Number of consumers (one connection each).
    #[arg(short = 'y', long = "consumers", default_value_t = 1)]
    pub consumers: u32,

    /// Message body size in bytes. The send timestamp goes in the first 12 bytes of the body,
    /// or in a header when the body is smaller.
    #[arg(short = 's', long = "size", default_value_t = 12)]
    pub size: usize,

    /// Consumer prefetch (basic.qos); 0 means unlimited.
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub prefetch: u16,

    /// Consume with autoack (no-ack): the broker forgets a message once it is sent.
    #[arg(short = 'a', long = "autoack")]
    pub autoack: bool,

    /// With manual acks, ack with `multiple` every N messages (0 or 1: ack each message).
    #[arg(short = 'A', long = "multi-ack-every", default_value_t = 0)]
    pub multi_ack_every: u32,

    /// Publisher confirms with at most N unconfirmed messages per producer; 0: no confirms.
    #[arg(short = 'c', long = "confirm", default_value_t = 0)]
    pub confirm: u32,

    /// Message flags: `persistent` (delivery mode 2; named queues are then durable) or
    /// `mandatory`. Repeat for several.
    #[arg(short = 'f', long = "flag", value_parser = ["persistent", "mandatory"])]
    pub flags: Vec<String>,

    /// Publishing rate limit per producer in messages per second; 0: as fast as possible.
    /// Latency is only meaningful below the broker's capacity: an unlimited producer fills
    /// the queue and latency then measures the backlog.
    #[arg(short = 'r', long = "rate", default_value_t = 0.0)]
    pub rate: f64,

    /// Run time in seconds. Without it the run ends when the producers have sent
    /// `--pmessages` each and the consumers have received them, or on Ctrl-C.
    #[arg(short = 'z', long = "time")]
    pub time: Option<u64>,

    /// Messages each producer sends before stopping.
    #[arg(short = 'C', long = "pmessages")]
    pub producer_messages: Option<u64>,

    /// Messages each consumer receives before stopping (PerfTest's `-D`). Without `-z`, the
    /// run ends once every consumer has them, so `-x 0 -y 1 -D N` times draining N messages.
    #[arg(short = 'D', long = "cmessages")]
    pub consumer_messages: Option<u64>,

    /// Queue name: one shared named queue. Without it each consumer gets its own server-named
    /// exclusive queue bound to the exchange, so every consumer sees every message.
    #[arg(short = 'u', long = "queue")]
    pub queue: Option<String>,

    /// With `-u NAME`, spread over N queues named `NAME-1` … `NAME-N`: producer i publishes to
    /// queue i mod N, consumer j consumes from queue j mod N.
    #[arg(long = "queues", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub queues: u32,

    /// Exchange to publish to (declared if absent and not `amq.*`; "" is the default exchange,
    /// which needs `-u`).
    #[arg(short = 'e', long = "exchange", default_value = "direct")]
    pub exchange: String,

    /// Type of the exchange when declaring it.
    #[arg(short = 't', long = "type", default_value = "direct")]
    pub exchange_type: String,

    /// Routing key for server-named queues (default: a key unique to this run).
    #[arg(short = 'k', long = "routing-key")]
    pub routing_key: Option<String>,

    /// Whether named queues are declared auto-delete (as in PerfTest, default true).
    #[arg(long = "auto-delete", default_value_t = true, action = ArgAction::Set)]
    pub auto_delete: bool,

    /// Seconds between rate lines.
    #[arg(short = 'i', long = "interval", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,

    /// Fill each body with fresh pseudo-random bytes (not a PerfTest flag): zeros, the
    /// default, compress to nothing, which flatters a broker that compresses its store.
    #[arg(long = "random-body")]
    pub random_body: bool,

    /// Print the per-interval lines as JSON too (the final summary is always a JSON line).
    #[arg(long = "json")]
    pub json: bool,

    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl ThroughputArgs {
    pub fn persistent(&self) -> bool {
        self.flags.iter().any(|f| f == "persistent")
    }

    pub fn mandatory(&self) -> bool {
        self.flags.iter().any(|f| f == "mandatory")
    }

    /// The named queues, if `-u` was given.
    pub fn queue_names(&self) -> Vec<String> {
        match &self.queue {
            None => Vec::new(),
            Some(name) if self.queues <= 1 => vec![name.clone()],
            Some(name) => (1..=self.queues).map(|i| format!("{name}-{i}")).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct Cli {
        #[command(flatten)]
        args: ThroughputArgs,
    }

    fn parse(argv: &[&str]) -> ThroughputArgs {
        Cli::try_parse_from(std::iter::once("perf").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_perftest() {
        let args = parse(&[]);
        assert_eq!(args.uri, "amqp://guest:guest@127.0.0.1:5672/");
        assert_eq!((args.producers, args.consumers), (1, 1));
        assert_eq!(args.size, 12);
        assert_eq!(args.prefetch, 0);
        assert!(!args.autoack);
        assert_eq!(args.confirm, 0);
        assert_eq!(args.rate, 0.0);
        assert!(!args.persistent());
        assert_eq!(args.time, None);
        assert_eq!(args.producer_messages, None);
        assert_eq!(args.consumer_messages, None);
        assert_eq!(args.queue, None);
        assert_eq!(args.queues, 1);
        assert_eq!(args.exchange, "direct");
        assert_eq!(args.exchange_type, "direct");
        assert!(args.auto_delete);
        assert_eq!(args.interval, 1);
        assert!(args.queue_names().is_empty());
    }

    #[test]
    fn perftest_spelling() {
        let args = parse(&[
            "-x",
            "2",
            "-y",
            "3",
            "-s",
            "1024",
            "-q",
            "100",
            "-c",
            "100",
            "-f",
            "persistent",
            "-z",
            "20",
            "-C",
            "1000",
            "-D",
            "3000",
            "-u",
            "perf",
            "--queues",
            "3",
            "-h",
            "amqp://u:p@h:5673/%2f",
            "-e",
            "",
            "-A",
            "10",
            "-r",
            "500",
        ]);
        assert_eq!((args.producers, args.consumers, args.size), (2, 3, 1024));
        assert_eq!((args.prefetch, args.confirm), (100, 100));
        assert!(args.persistent() && !args.mandatory());
        assert_eq!((args.time, args.producer_messages), (Some(20), Some(1000)));
        assert_eq!(args.consumer_messages, Some(3000));
        assert_eq!(args.queue_names(), ["perf-1", "perf-2", "perf-3"]);
        assert_eq!(args.uri, "amqp://u:p@h:5673/%2f");
        assert_eq!(args.exchange, "");
        assert_eq!(args.multi_ack_every, 10);
        assert_eq!(args.rate, 500.0);
        assert!(parse(&["-a"]).autoack);
        assert_eq!(parse(&["-u", "q"]).queue_names(), ["q"]);
    }

    #[test]
    fn rejects_unknown_flags_and_zero_queues() {
        let bad = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("perf").chain(argv.iter().copied())).is_err()
        };
        assert!(bad(&["-f", "sticky"]));
        assert!(bad(&["--queues", "0"]));
        assert!(bad(&["-i", "0"]));
    }
}
