//! Resource alarms, as RabbitMQ's memory and disk monitors: when the process's resident memory
//! rises above `vm_memory_high_watermark`, or free space on the data directory's filesystem
//! falls below `disk_free_limit`, an alarm is set and publishing connections are blocked (see
//! `net::connection`) until every alarm has cleared.
//!
//! A task samples both resources every interval; thresholds changed at runtime are checked at
//! once against the last sample. The state goes out through a `watch` channel, so a connection
//! only wakes when it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

pub use crate::config::Watermark;

/// The sampling period. RabbitMQ checks memory every second (its disk check adapts between
/// 0.1 s and 10 s); both readings are cheap here, so one period serves both.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Which alarms are in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
}

impl AlarmState {
    pub fn any(self) -> bool {
        self.memory || self.disk
    }

    /// The `connection.blocked` reason RabbitMQ sends: "low on memory", "low on disk", or
    /// both joined with " & ".
    pub fn reason(self) -> Option<&'static str> {
        match (self.memory, self.disk) {
            (true, true) => Some("low on memory & disk"),
            (true, false) => Some("low on memory"),
            (false, true) => Some("low on disk"),
            (false, false) => None,
        }
    }
}

/// The thresholds in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory_high_watermark: Watermark,
    /// Bytes of free disk space below which the disk alarm is set.
    pub disk_free_limit: u64,
}

/// One reading of the resources; `None` where it could not be read (that resource's alarm
/// then stays as it was).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Resident set size of this process, in bytes.
    pub memory_used: Option<u64>,
    /// Physical memory of the machine, in bytes.
    pub total_ram: Option<u64>,
    /// Bytes available to the broker on the data directory's filesystem.
    pub disk_free: Option<u64>,
}

impl Sample {
    /// The memory limit in bytes, when it can be known.
    pub fn memory_limit(&self, watermark: Watermark) -> Option<u64> {
        match watermark {
            Watermark::Absolute(bytes) => Some(bytes),
            Watermark::Relative(_) => self.total_ram.map(|total| watermark.limit(total)),
        }
    }
}

/// Which alarms `sample` sets under `limits`; a resource that could not be read keeps the
/// alarm state it had in `previous`. As in RabbitMQ, memory alarms above the limit and disk
/// below it.
pub fn evaluate(sample: &Sample, limits: &Limits, previous: AlarmState) -> AlarmState {
    let memory = match (
        sample.memory_used,
        sample.memory_limit(limits.memory_high_watermark),
    ) {
        (Some(used), Some(limit)) => used > limit,
        _ => previous.memory,
    };
    let disk = match sample.disk_free {
        Some(free) => free < limits.disk_free_limit,
        None => previous.disk,
    };
    AlarmState { memory, disk }
}

/// A `Key:   1234 kB` line of /proc/meminfo or /proc/self/status, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

/// The resident set size from the text of /proc/self/status (`VmRSS`).
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    kb_field(status, "VmRSS")
}

/// Total RAM from the text of /proc/meminfo (`MemTotal`).
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    kb_field(meminfo, "MemTotal")
}

/// Reads the resources now (blocking system calls: run off the async workers).
pub fn read_sample(data_dir: &Path) -> Sample {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    Sample {
        memory_used: read("/proc/self/status").as_deref().and_then(parse_vm_rss),
        total_ram: read("/proc/meminfo").as_deref().and_then(parse_mem_total),
        disk_free: rustix::fs::statvfs(data_dir)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize)),
    }
}

/// The resource monitor. Cheap to clone; the sampling task ends once every clone is gone.
#[derive(Clone)]
pub struct Alarms {
    shared: Arc<Shared>,
}

struct Shared {
    data_dir: PathBuf,
    /// Named in the log lines as RabbitMQ names its node.
    node: String,
    inner: Mutex<Inner>,
    state: watch::Sender<AlarmState>,
}

struct Inner {
    limits: Limits,
    sample: Sample,
    /// Unreadable resources already warned about, so the log says it once.
    warned_memory: bool,
    warned_disk: bool,
}

impl fmt::Debug for Alarms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("Alarms")
            .field("data_dir", &self.shared.data_dir)
            .field("limits", &inner.limits)
            .field("sample", &inner.sample)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Alarms {
    /// Takes a first sample now, then one every `interval` on a task of the current runtime.
    pub fn start(data_dir: &Path, limits: Limits, interval: Duration) -> Alarms {
        let (state, _) = watch::channel(AlarmState::default());
        let alarms = Alarms {
            shared: Arc::new(Shared {
                data_dir: data_dir.to_owned(),
                node: node_name(),
                inner: Mutex::new(Inner {
                    limits,
                    sample: Sample::default(),
                    warned_memory: false,
                    warned_disk: false,
                }),
                state,
            }),
        };
        alarms
            .shared
            .update(|inner| inner.sample = read_sample(data_dir));
        tokio::spawn(sample_every(Arc::downgrade(&alarms.shared), interval));
        alarms
    }

    /// The alarms in force now.
    pub fn state(&self) -> AlarmState {
        *self.shared.state.borrow()
    }

    /// A receiver that sees every change of the alarm state.
    pub fn subscribe(&self) -> watch::Receiver<AlarmState> {
        self.shared.state.subscribe()
    }

    pub fn limits(&self) -> Limits {
        self.shared.lock().limits
    }

    /// The last reading of the resources.
    pub fn sample(&self) -> Sample {
        self.shared.lock().sample
    }

    /// Changes the memory threshold and re-evaluates the alarm against the last sample. A
    /// fraction outside 0..=1 is refused.
    pub fn set_memory_high_watermark(&self, watermark: Watermark) -> Result<(), String> {
        let watermark = watermark.check()?;
        info!("memory high watermark set to {watermark}");
        self.shared
            .update(|inner| inner.limits.memory_high_watermark = watermark);
        Ok(())
    }

    /// Changes the free disk space threshold (bytes) and re-evaluates the alarm against the
    /// last sample.
    pub fn set_disk_free_limit(&self, bytes: u64) {
        info!("disk free limit set to {bytes} bytes");
        self.shared
            .update(|inner| inner.limits.disk_free_limit = bytes);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data under the lock is plain values, valid even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change`, re-evaluates, logs each alarm that set or cleared, and publishes the
    /// new state. The lock is held throughout so that concurrent updates log in order.
    fn update(&self, change: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        change(&mut inner);
        let sample = inner.sample;
        let limits = inner.limits;
        if sample.memory_used.is_none() && !inner.warned_memory {
            inner.warned_memory = true;
            warn!("cannot read this process's memory use from /proc: the memory alarm is off");
        }
        if sample.disk_free.is_none() && !inner.warned_disk {
            inner.warned_disk = true;
            warn!(
                data_dir = %self.data_dir.display(),
                "cannot read free disk space: the disk alarm is off"
            );
        }
        let before = *self.state.borrow();
        let after = evaluate(&sample, &limits, before);
        let node = &self.node;
        let used = sample.memory_used.unwrap_or_default();
        let allowed = sample
            .memory_limit(limits.memory_high_watermark)
            .unwrap_or_default();
        let free = sample.disk_free.unwrap_or_default();
        let limit = limits.disk_free_limit;
        match (before.memory, after.memory) {
            (false, true) => warn!(
                "memory resource limit alarm set on node {node}: memory used {used} bytes, \
                 allowed {allowed}. Publishers will be blocked until this alarm clears"
            ),
            (true, false) => info!(
                "memory resource limit alarm cleared on node {node}: memory used {used} bytes, \
                 allowed {allowed}"
            ),
            _ => {}
        }
        match (before.disk, after.disk) {
            (false, true) => warn!(
                "disk resource limit alarm set on node {node}: free disk space {free} bytes, \
                 limit {limit}. Publishers will be blocked until this alarm clears"
            ),
            (true, false) => info!(
                "disk resource limit alarm cleared on node {node}: free disk space {free} bytes, \
                 limit {limit}"
            ),
            _ => {}
        }
        self.state.send_if_modified(|state| {
            let changed = *state != after;
            *state = after;
            changed
        });
    }
}

async fn sample_every(shared: Weak<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(data_dir) = shared.upgrade().map(|s| s.data_dir.clone()) else {
            return;
        };
        // statvfs on a hung network filesystem must not stall a runtime worker.
        let Ok(sample) = tokio::task::spawn_blocking(move || read_sample(&data_dir)).await else {
            return;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.update(|inner| inner.sample = sample);
    }
}

/// `warren@<hostname>`, after RabbitMQ's `rabbit@<hostname>`.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!(
        "warren@{}",
        if host.is_empty() { "localhost" } else { host }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const STATUS: &str = "Name:\twarren\nVmPeak:\t  200000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
    const MEMINFO: &str = "MemTotal:       16318060 kB\nMemFree:         1000000 kB\n";

    #[test]
    fn alarm_parsers_read_proc_text() {
        assert_eq!(parse_vm_rss(STATUS), Some(12345 * 1024));
        assert_eq!(parse_mem_total(MEMINFO), Some(16_318_060 * 1024));
        assert_eq!(parse_vm_rss(MEMINFO), None);
        assert_eq!(parse_mem_total(""), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 10 MB\n"), None);
        assert_eq!(parse_mem_total("MemTotalish: 10 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 18446744073709551615 kB\n"), None);
    }

    fn limits(watermark: Watermark, disk: u64) -> Limits {
        Limits {
            memory_high_watermark: watermark,
            disk_free_limit: disk,
        }
    }

    #[test]
    fn alarm_thresholds_follow_rabbitmq() {
        let sample = Sample {
            memory_used: Some(400),
            total_ram: Some(1000),
            disk_free: Some(50),
        };
        let none = AlarmState::default();
        let state = |w, d| evaluate(&sample, &limits(w, d), none);
        // At the limit is fine; memory above it or disk below it alarms.
        assert_eq!(state(Watermark::Relative(0.4), 50), none);
        assert_eq!(state(Watermark::Absolute(400), 50), none);
        assert!(state(Watermark::Relative(0.39), 50).memory);
        assert!(state(Watermark::Absolute(399), 50).memory);
        assert!(state(Watermark::Relative(0.0), 50).memory);
        assert!(state(Watermark::Absolute(1000), 51).disk);
        assert!(!state(Watermark::Absolute(1000), 51).memory);
        assert!(state(Watermark::Absolute(1000), u64::MAX).disk);
    }

    #[test]
    fn alarm_unreadable_resources_keep_their_state() {
        let both = AlarmState {
            memory: true,
            disk: true,
        };
        let unknown = Sample::default();
        let l = limits(Watermark::Relative(0.4), 1);
        assert_eq!(evaluate(&unknown, &l, both), both);
        assert_eq!(
            evaluate(&unknown, &l, AlarmState::default()),
            AlarmState::default()
        );
        // An absolute watermark needs no total.
        let no_total = Sample {
            memory_used: Some(10),
            ..Sample::default()
        };
        assert!(
            evaluate(
                &no_total,
                &limits(Watermark::Absolute(1), 0),
                AlarmState::default()
            )
            .memory
        );
    }

    #[test]
    fn alarm_reasons_are_rabbitmqs() {
        let state = |memory, disk| AlarmState { memory, disk };
        assert_eq!(state(true, false).reason(), Some("low on memory"));
        assert_eq!(state(false, true).reason(), Some("low on disk"));
        assert_eq!(state(true, true).reason(), Some("low on memory & disk"));
        assert_eq!(state(false, false).reason(), None);
        assert!(!state(false, false).any());
    }

    #[tokio::test]
    async fn alarm_thresholds_changed_at_runtime_apply_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let alarms = Alarms::start(
            dir.path(),
            limits(Watermark::Relative(1.0), 0),
            Duration::from_secs(3600),
        );
        let sample = alarms.sample();
        assert!(sample.memory_used.unwrap() > 0, "{sample:?}");
        assert!(sample.total_ram.unwrap() > 0, "{sample:?}");
        assert!(sample.disk_free.is_some(), "{sample:?}");
        assert_eq!(alarms.state(), AlarmState::default());
        let mut rx = alarms.subscribe();
        alarms
            .set_memory_high_watermark(Watermark::Absolute(1))
            .unwrap();
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().memory);
        alarms.set_disk_free_limit(u64::MAX);
        assert_eq!(alarms.state().reason(), Some("low on memory & disk"));
        alarms
            .set_memory_high_watermark(Watermark::Relative(1.0))
            .unwrap();
        alarms.set_disk_free_limit(0);
        assert!(!rx.borrow_and_update().any());
        assert!(alarms
            .set_memory_high_watermark(Watermark::Relative(2.0))
            .is_err());
        assert_eq!(
            alarms.limits().memory_high_watermark,
            Watermark::Relative(1.0)
        );
    }

    #[tokio::test]
    async fn alarm_sampler_does_not_keep_the_monitor_alive() {
        let dir = tempfile::tempdir().unwrap();
        let alarms = Alarms::start(
            dir.path(),
            limits(Watermark::Relative(1.0), 0),
            Duration::from_millis(10),
        );
        let weak = Arc::downgrade(&alarms.shared);
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(alarms);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(weak.upgrade().is_none());
    }
}
