//! Configuration: defaults < file (TOML) < `WARREN_*` environment < command line.
//!
//! Every field has a default so that files written for older versions keep loading. The
//! resolved [`Config`] is passed explicitly to whoever needs it; there is no global.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The smallest frame_max AMQP allows (`FRAME_MIN_SIZE`).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// RabbitMQ's default `consumer_timeout`: 30 minutes, in milliseconds.
pub const DEFAULT_CONSUMER_TIMEOUT: u64 = 1_800_000;

/// Warren's default `vm_memory_high_watermark`: 40% of RAM (RabbitMQ 3.x's default; 4.x's is
/// 0.6).
pub const DEFAULT_VM_MEMORY_HIGH_WATERMARK: Watermark = Watermark::Relative(0.4);

/// RabbitMQ's default `disk_free_limit`: 50 MB (decimal).
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 50_000_000;

/// The broker's settings. `validate` keeps: `frame_max >= 4096`, `channel_max >= 1`,
/// `handshake_timeout >= 1`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses of the AMQP listeners: by default every IPv4 and every IPv6 address on 5672.
    pub listen: Listen,
    /// Where the broker keeps its data (created at boot).
    pub data_dir: PathBuf,
    /// `tracing` filter: a level (`info`) or directives (`warren=debug`).
    pub log_level: String,
    /// Seconds a client has from accept to `connection.open-ok`.
    pub handshake_timeout: u64,
    /// Heartbeat interval in seconds proposed in `connection.tune` (0: none).
    pub heartbeat: u16,
    /// Largest frame the broker accepts, proposed in `connection.tune`.
    pub frame_max: u32,
    /// How many channels a client may have open at once, proposed in `connection.tune`
    /// (channel numbers themselves may be anything from 1 to 65535, as in RabbitMQ).
    pub channel_max: u16,
    /// Largest message body in bytes (enforced once publishing exists).
    pub max_message_size: u64,
    /// Milliseconds a delivery may stay unacknowledged before its channel is closed with 406
    /// (RabbitMQ's `consumer_timeout`); 0 disables the check. A queue's `x-consumer-timeout`
    /// overrides it for that queue's deliveries.
    pub consumer_timeout: u64,
    /// Memory use (the process's resident set) above which publishers are blocked: a
    /// fraction of RAM or an absolute size (RabbitMQ's `vm_memory_high_watermark`).
    pub vm_memory_high_watermark: Watermark,
    /// Free space on the data directory's filesystem, in bytes, below which publishers are
    /// blocked (RabbitMQ's `disk_free_limit`). The file also takes sizes such as `"50MB"`.
    #[serde(deserialize_with = "deserialize_size")]
    pub disk_free_limit: u64,
    /// Users that may only log in from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    pub users: Vec<UserConfig>,
    pub vhosts: Vec<VhostConfig>,
    pub permissions: Vec<PermissionConfig>,
    /// Properties of `connection.start` to add or replace (RabbitMQ's `server_properties`),
    /// as strings; `capabilities` cannot be replaced.
    pub server_properties: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: Listen::default(),
            data_dir: PathBuf::from("./data"),
            log_level: "info".to_owned(),
            handshake_timeout: 10,
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
            max_message_size: 128 * 1024 * 1024,
            consumer_timeout: DEFAULT_CONSUMER_TIMEOUT,
            vm_memory_high_watermark: DEFAULT_VM_MEMORY_HIGH_WATERMARK,
            disk_free_limit: DEFAULT_DISK_FREE_LIMIT,
            loopback_users: vec!["guest".to_owned()],
            users: Vec::new(),
            vhosts: Vec::new(),
            permissions: Vec::new(),
            server_properties: BTreeMap::new(),
        }
    }
}

/// The listeners' addresses, at least one. Written as one address (`"0.0.0.0:5672"`), several
/// separated by commas, or (in the file) a list of them; IPv6 addresses in brackets
/// (`"[::1]:5672"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(Vec<SocketAddr>);

impl Listen {
    /// `None` for an empty list: a broker must listen somewhere.
    pub fn new(addrs: Vec<SocketAddr>) -> Option<Listen> {
        (!addrs.is_empty()).then_some(Listen(addrs))
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.0
    }
}

/// Every IPv4 and every IPv6 address on 5672, as RabbitMQ listens by default. Two sockets
/// rather than one dual-stack `[::]`: the IPv6 one is set IPv6-only, so both bind whatever
/// the host's `bindv6only`, and IPv4 peers keep their IPv4 addresses.
impl Default for Listen {
    fn default() -> Listen {
        Listen(vec![
            SocketAddr::from(([0, 0, 0, 0], 5672)),
            SocketAddr::from(([0u16; 8], 5672)),
        ])
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        let addrs = s
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<SocketAddr>().map_err(|_| {
                    format!("{part:?} is not an address with a port (such as 0.0.0.0:5672 or [::]:5672)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Listen::new(addrs).ok_or_else(|| "no address to listen on".to_owned())
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as \"0.0.0.0:5672\", or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Listen, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listen, A::Error> {
                let mut addrs = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    let Listen(more) = item.parse().map_err(serde::de::Error::custom)?;
                    addrs.extend(more);
                }
                Listen::new(addrs)
                    .ok_or_else(|| serde::de::Error::custom("no address to listen on"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A user besides the built-in guest (a user named `guest` here replaces guest's password and
/// tags).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A virtual host besides the built-in `/`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    pub name: String,
}

/// RabbitMQ's permission triple for one user on one vhost (regular expressions).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub user: String,
    pub vhost: String,
    #[serde(default = "match_all")]
    pub configure: String,
    #[serde(default = "match_all")]
    pub write: String,
    #[serde(default = "match_all")]
    pub read: String,
}

fn match_all() -> String {
    ".*".to_owned()
}

impl Config {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout)
    }

    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Config::from_toml(&text, path)
    }

    /// Checks the values the protocol constrains.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.frame_max < FRAME_MIN_SIZE {
            return Err(ConfigError::Invalid(format!(
                "frame_max = {} is below the AMQP minimum of {FRAME_MIN_SIZE}",
                self.frame_max
            )));
        }
        if self.channel_max == 0 {
            return Err(ConfigError::Invalid(
                "channel_max must be at least 1".into(),
            ));
        }
        if self.handshake_timeout == 0 {
            return Err(ConfigError::Invalid(
                "handshake_timeout must be at least 1 second".into(),
            ));
        }
        self.vm_memory_high_watermark
            .check()
            .map_err(|e| ConfigError::Invalid(format!("vm_memory_high_watermark: {e}")))?;
        self.check_server_properties()
    }

    /// Keys become short strings in `connection.start`; `capabilities` is what Warren
    /// implements, so it is not the operator's to change (RabbitMQ ignores such an entry).
    fn check_server_properties(&self) -> Result<(), ConfigError> {
        for key in self.server_properties.keys() {
            if key == "capabilities" {
                return Err(ConfigError::Invalid(
                    "server_properties: capabilities cannot be set; they say what Warren implements"
                        .into(),
                ));
            }
            if key.is_empty() || key.len() > 255 {
                return Err(ConfigError::Invalid(format!(
                    "server_properties: key {key:?} must be 1 to 255 bytes long"
                )));
            }
        }
        Ok(())
    }
}

/// Values that override the file: one set from the command line, one from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<Listen>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub handshake_timeout: Option<u64>,
    pub heartbeat: Option<u16>,
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub max_message_size: Option<u64>,
    pub consumer_timeout: Option<u64>,
    pub vm_memory_high_watermark: Option<Watermark>,
    pub disk_free_limit: Option<ByteSize>,
}

impl Overrides {
    /// Reads `WARREN_*` variables through `lookup` (the process environment in the binary, a
    /// map in tests).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Overrides, ConfigError> {
        fn parsed<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            var: &str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: fmt::Display,
        {
            match lookup(var) {
                None => Ok(None),
                Some(value) => {
                    value
                        .trim()
                        .parse()
                        .map(Some)
                        .map_err(|e: T::Err| ConfigError::Env {
                            var: var.to_owned(),
                            value,
                            message: e.to_string(),
                        })
                }
            }
        }
        Ok(Overrides {
            config: lookup("WARREN_CONFIG").map(PathBuf::from),
            listen: parsed(&lookup, "WARREN_LISTEN")?,
            data_dir: lookup("WARREN_DATA_DIR").map(PathBuf::from),
            log_level: lookup("WARREN_LOG_LEVEL"),
            handshake_timeout: parsed(&lookup, "WARREN_HANDSHAKE_TIMEOUT")?,
            heartbeat: parsed(&lookup, "WARREN_HEARTBEAT")?,
            frame_max: parsed(&lookup, "WARREN_FRAME_MAX")?,
            channel_max: parsed(&lookup, "WARREN_CHANNEL_MAX")?,
            max_message_size: parsed(&lookup, "WARREN_MAX_MESSAGE_SIZE")?,
            consumer_timeout: parsed(&lookup, "WARREN_CONSUMER_TIMEOUT")?,
            vm_memory_high_watermark: parsed(&lookup, "WARREN_VM_MEMORY_HIGH_WATERMARK")?,
            disk_free_limit: parsed(&lookup, "WARREN_DISK_FREE_LIMIT")?,
        })
    }

    fn apply(self, config: &mut Config) {
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.log_level {
            config.log_level = v;
        }
        if let Some(v) = self.handshake_timeout {
            config.handshake_timeout = v;
        }
        if let Some(v) = self.heartbeat {
            config.heartbeat = v;
        }
        if let Some(v) = self.frame_max {
            config.frame_max = v;
        }
        if let Some(v) = self.channel_max {
            config.channel_max = v;
        }
        if let Some(v) = self.max_message_size {
            config.max_message_size = v;
        }
        if let Some(v) = self.consumer_timeout {
            config.consumer_timeout = v;
        }
        if let Some(v) = self.vm_memory_high_watermark {
            config.vm_memory_high_watermark = v;
        }
        if let Some(ByteSize(v)) = self.disk_free_limit {
            config.disk_free_limit = v;
        }
    }
}

/// Resolves the configuration: defaults, then the file named by the command line or else the
/// environment, then the environment, then the command line.
pub fn resolve(cli: Overrides, env: Overrides) -> Result<Config, ConfigError> {
    let file = cli.config.clone().or_else(|| env.config.clone());
    let mut config = match file {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    env.apply(&mut config);
    cli.apply(&mut config);
    config.validate()?;
    Ok(config)
}

/// RabbitMQ's `vm_memory_high_watermark`: relative to total RAM or an absolute size.
///
/// Written as a number with a decimal point (`0.4`, `1.0`: a fraction of RAM, 0 to 1; 0 blocks
/// every publisher, as in RabbitMQ), or as a size: an integer number of bytes (`1073741824`) or
/// a string with a unit (`"2GB"`, `"512MiB"`, see [`ByteSize`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    Relative(f64),
    Absolute(u64),
}

impl Watermark {
    /// The limit in bytes on a machine with `total_ram` bytes of RAM.
    pub fn limit(self, total_ram: u64) -> u64 {
        match self {
            // A fraction in 0..=1 of a u64 fits in a u64; `as` saturates anyway.
            Watermark::Relative(fraction) => (total_ram as f64 * fraction) as u64,
            Watermark::Absolute(bytes) => bytes,
        }
    }

    /// A fraction must be a finite number from 0 to 1.
    pub fn check(self) -> Result<Watermark, String> {
        match self {
            Watermark::Relative(f) if !(0.0..=1.0).contains(&f) => Err(format!(
                "{f} is not a fraction of RAM between 0 and 1 (write a size such as \"2GB\" for \
                 an absolute limit)"
            )),
            w => Ok(w),
        }
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watermark::Relative(fraction) => write!(f, "{fraction} of RAM"),
            Watermark::Absolute(bytes) => write!(f, "{bytes} bytes"),
        }
    }
}

impl std::str::FromStr for Watermark {
    type Err = String;

    fn from_str(s: &str) -> Result<Watermark, String> {
        let s = s.trim();
        if s.contains('.') && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let fraction: f64 = s
                .parse()
                .map_err(|_| format!("{s:?} is not a fraction of RAM"))?;
            return Watermark::Relative(fraction).check();
        }
        s.parse::<ByteSize>()
            .map(|ByteSize(bytes)| Watermark::Absolute(bytes))
    }
}

impl<'de> Deserialize<'de> for Watermark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Watermark, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Watermark;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction of RAM (0.4) or a size (bytes, or a string like \"2GB\")")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Watermark, E> {
                Watermark::Relative(v).check().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Watermark, E> {
                Ok(Watermark::Absolute(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Watermark, E> {
                u64::try_from(v)
                    .map(Watermark::Absolute)
                    .map_err(|_| E::custom(format!("{v} is not a size in bytes")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Watermark, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A size in bytes as RabbitMQ writes it: an integer, optionally followed by a unit. `k`,
/// `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` are powers of 1024; `kB`, `MB`, `GB`, `TB` powers
/// of 1000; `B` is bytes. Units are matched without regard to case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let number: u64 = digits.parse().map_err(|_| {
            format!("{s:?} is not a size (bytes, or a number with a unit like 50MB)")
        })?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {s:?} (use k/KiB, M/MiB, G/GiB, T/TiB, kB, MB, \
                     GB, TB)"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

/// A size field: an integer number of bytes or a string with a unit.
fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size: bytes, or a string like \"50MB\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a size in bytes")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse::<ByteSize>()
                .map(|ByteSize(bytes)| bytes)
                .map_err(E::custom)
        }
    }
    d.deserialize_any(Visitor)
}

/// Why the configuration could not be loaded; each variant names the culprit.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        message: String,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Env {
        var: String,
        value: String,
        message: String,
    },
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, message } => {
                write!(f, "cannot read config file {}: {message}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(f, "invalid config file {}: {message}", path.display())
            }
            ConfigError::Env {
                var,
                value,
                message,
            } => write!(f, "invalid {var}={value:?}: {message}"),
            ConfigError::Invalid(message) => write!(f, "invalid configuration: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Overrides {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Overrides::from_env(|k| map.get(k).cloned()).unwrap()
    }

    fn write_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn the_example_file_parses_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/warren.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_toml(&text, &path).unwrap();
        config.validate().unwrap();
        assert!(!config.users.is_empty());
        assert!(!config.vhosts.is_empty());
        assert!(!config.permissions.is_empty());
        for key in [
            "listen",
            "data_dir",
            "log_level",
            "handshake_timeout",
            "heartbeat",
            "frame_max",
            "channel_max",
            "max_message_size",
            "consumer_timeout",
            "vm_memory_high_watermark",
            "disk_free_limit",
            "loopback_users",
            "[server_properties]",
            "[[users]]",
            "[[vhosts]]",
            "[[permissions]]",
        ] {
            assert!(text.contains(key), "example does not mention {key}");
        }
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::from_toml("", Path::new("empty.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "0.0.0.0:5672,[::]:5672");
        assert!(config.server_properties.is_empty());
        assert_eq!(config.max_message_size, 134_217_728);
        assert_eq!(config.consumer_timeout, 1_800_000);
        assert_eq!(config.vm_memory_high_watermark, Watermark::Relative(0.4));
        assert_eq!(config.disk_free_limit, 50_000_000);
    }

    #[test]
    fn sizes_take_rabbitmqs_units() {
        let size = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(size("1024"), Ok(1024));
        assert_eq!(size("50MB"), Ok(50_000_000));
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("2GB"), Ok(2_000_000_000));
        assert_eq!(size("2 GiB"), Ok(2 << 30));
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("1kB"), Ok(1000));
        assert_eq!(size("7B"), Ok(7));
        assert!(size("").is_err());
        assert!(size("MB").is_err());
        assert!(size("-5").is_err());
        assert!(size("5 parsecs").unwrap_err().contains("parsecs"));
        assert!(size("99999999999TB").unwrap_err().contains("too large"));
    }

    #[test]
    fn watermarks_are_fractions_or_sizes() {
        let w = |s: &str| s.parse::<Watermark>();
        assert_eq!(w("0.4"), Ok(Watermark::Relative(0.4)));
        assert_eq!(w("1.0"), Ok(Watermark::Relative(1.0)));
        assert_eq!(w("0.0"), Ok(Watermark::Relative(0.0)));
        assert_eq!(w("2GB"), Ok(Watermark::Absolute(2_000_000_000)));
        assert_eq!(w("1073741824"), Ok(Watermark::Absolute(1 << 30)));
        assert!(w("1.5").unwrap_err().contains("between 0 and 1"));
        assert!(w("0.4.1").is_err());
        assert!(w("lots").is_err());
        assert_eq!(Watermark::Relative(0.5).limit(1000), 500);
        assert_eq!(Watermark::Absolute(7).limit(1000), 7);

        let parse = |text: &str| Config::from_toml(text, Path::new("w.toml"));
        let file = parse("vm_memory_high_watermark = 0.6\ndisk_free_limit = \"1GB\"\n").unwrap();
        assert_eq!(file.vm_memory_high_watermark, Watermark::Relative(0.6));
        assert_eq!(file.disk_free_limit, 1_000_000_000);
        let file =
            parse("vm_memory_high_watermark = \"512MiB\"\ndisk_free_limit = 1000\n").unwrap();
        assert_eq!(
            file.vm_memory_high_watermark,
            Watermark::Absolute(512 << 20)
        );
        assert_eq!(file.disk_free_limit, 1000);
        let err = parse("vm_memory_high_watermark = 1.5\n").unwrap_err();
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
        let err = parse("disk_free_limit = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
        let err = parse("disk_free_limit = -1\n").unwrap_err();
        assert!(err.to_string().contains("-1"), "{err}");

        let from_env = env(&[
            ("WARREN_VM_MEMORY_HIGH_WATERMARK", "2GB"),
            ("WARREN_DISK_FREE_LIMIT", "100MiB"),
        ]);
        let config = resolve(Overrides::default(), from_env).unwrap();
        assert_eq!(
            config.vm_memory_high_watermark,
            Watermark::Absolute(2_000_000_000)
        );
        assert_eq!(config.disk_free_limit, 100 << 20);
        let err = Overrides::from_env(|k| {
            (k == "WARREN_VM_MEMORY_HIGH_WATERMARK").then(|| "1.5".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("WARREN_VM_MEMORY_HIGH_WATERMARK"),
            "{err}"
        );
        let bad = Config {
            vm_memory_high_watermark: Watermark::Relative(f64::NAN),
            ..Config::default()
        };
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn consumer_timeout_comes_from_file_env_and_cli() {
        let file = write_file("consumer_timeout = 5000\n");
        let path = file.path().to_str().unwrap();
        let from_file = resolve(Overrides::default(), env(&[("WARREN_CONFIG", path)])).unwrap();
        assert_eq!(from_file.consumer_timeout, 5000);
        let from_env = env(&[("WARREN_CONFIG", path), ("WARREN_CONSUMER_TIMEOUT", "0")]);
        assert_eq!(
            resolve(Overrides::default(), from_env.clone())
                .unwrap()
                .consumer_timeout,
            0
        );
        let cli = Overrides {
            consumer_timeout: Some(300),
            ..Overrides::default()
        };
        assert_eq!(resolve(cli, from_env).unwrap().consumer_timeout, 300);
        let err =
            Overrides::from_env(|k| (k == "WARREN_CONSUMER_TIMEOUT").then(|| "soon".to_owned()))
                .unwrap_err();
        assert!(err.to_string().contains("WARREN_CONSUMER_TIMEOUT"), "{err}");
    }

    #[test]
    fn precedence_is_cli_then_env_then_file_then_defaults() {
        let file = write_file(
            "listen = \"127.0.0.1:1000\"\nheartbeat = 10\nframe_max = 8192\nchannel_max = 7\n",
        );
        let env = env(&[
            ("WARREN_CONFIG", file.path().to_str().unwrap()),
            ("WARREN_LISTEN", "127.0.0.1:2000"),
            ("WARREN_HEARTBEAT", "20"),
        ]);
        let cli = Overrides {
            listen: Some("127.0.0.1:3000".parse().unwrap()),
            ..Overrides::default()
        };
        let config = resolve(cli, env).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.heartbeat, 20);
        assert_eq!(config.frame_max, 8192);
        assert_eq!(config.channel_max, 7);
        assert_eq!(config.handshake_timeout, 10);
    }

    #[test]
    fn listen_takes_one_address_or_several() {
        let parse = |text: &str| Config::from_toml(text, Path::new("l.toml"));
        let one = parse("listen = \"127.0.0.1:5672\"\n").unwrap();
        assert_eq!(one.listen.addrs(), ["127.0.0.1:5672".parse().unwrap()]);
        let list = parse("listen = [\"127.0.0.1:5672\", \"[::1]:5673\"]\n").unwrap();
        assert_eq!(list.listen.to_string(), "127.0.0.1:5672,[::1]:5673");
        assert_eq!(
            parse("listen = \"0.0.0.0:1, [::]:1\"\n").unwrap().listen,
            "0.0.0.0:1,[::]:1".parse().unwrap()
        );
        for bad in [
            "listen = []",
            "listen = \"\"",
            "listen = \"localhost\"",
            "listen = 5672",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("listen = [\"0.0.0.0:5672\", \"::1\"]").unwrap_err();
        assert!(err.to_string().contains("\"::1\""), "{err}");

        let from_env = env(&[("WARREN_LISTEN", "127.0.0.1:1,[::1]:2")]);
        assert_eq!(
            resolve(Overrides::default(), from_env)
                .unwrap()
                .listen
                .addrs(),
            [
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "[::1]:2".parse().unwrap()
            ]
        );
        let err = Overrides::from_env(|k| (k == "WARREN_LISTEN").then(|| "nowhere".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("WARREN_LISTEN"), "{err}");
    }

    #[test]
    fn server_properties_are_strings_and_leave_capabilities_alone() {
        let parse = |text: &str| Config::from_toml(text, Path::new("p.toml"));
        let config =
            parse("[server_properties]\nproduct = \"Warren\"\ncluster_name = \"prod\"\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.server_properties["product"], "Warren");
        assert_eq!(config.server_properties["cluster_name"], "prod");
        assert!(parse("[server_properties]\nversion = 4\n").is_err());
        let caps = parse("[server_properties]\ncapabilities = \"none\"\n").unwrap();
        let err = caps.validate().unwrap_err();
        assert!(err.to_string().contains("capabilities"), "{err}");
        let long = format!("[server_properties]\n{} = \"x\"\n", "k".repeat(256));
        assert!(parse(&long).unwrap().validate().is_err());
    }

    #[test]
    fn the_cli_config_path_beats_the_env_one() {
        let from_env = write_file("heartbeat = 1\n");
        let from_cli = write_file("heartbeat = 2\n");
        let env = env(&[("WARREN_CONFIG", from_env.path().to_str().unwrap())]);
        let cli = Overrides {
            config: Some(from_cli.path().to_owned()),
            ..Overrides::default()
        };
        assert_eq!(resolve(cli, env).unwrap().heartbeat, 2);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_culprit() {
        let err = Overrides::from_env(|k| (k == "WARREN_FRAME_MAX").then(|| "big".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("WARREN_FRAME_MAX"), "{err}");

        let typo = write_file("heartbeet = 3\n");
        let cli = Overrides {
            config: Some(typo.path().to_owned()),
            ..Overrides::default()
        };
        let err = resolve(cli, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("heartbeet"), "{err}");

        let cli = Overrides {
            config: Some(PathBuf::from("/nonexistent/warren.toml")),
            ..Overrides::default()
        };
        assert!(matches!(
            resolve(cli, Overrides::default()),
            Err(ConfigError::Read { .. })
        ));

        let cli = Overrides {
            frame_max: Some(100),
            ..Overrides::default()
        };
        assert!(matches!(
            resolve(cli, Overrides::default()),
            Err(ConfigError::Invalid(_))
        ));
    }
}
