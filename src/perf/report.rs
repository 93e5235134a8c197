//! What a run prints: a line per interval and the summary as one JSON line.

use std::fmt::Write;

use super::args::ThroughputArgs;
use super::histogram::Histogram;

/// Consumer latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub median: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// From a histogram of nanoseconds; `None` when nothing was recorded.
    pub fn from_histogram(h: &Histogram) -> Option<Latency> {
        let us = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1000.0);
        Some(Latency {
            min: us(h.min())?,
            median: us(h.percentile(50.0))?,
            p75: us(h.percentile(75.0))?,
            p95: us(h.percentile(95.0))?,
            p99: us(h.percentile(99.0))?,
            max: us(h.max())?,
        })
    }

    fn json(&self) -> String {
        format!(
            "{{\"min\":{:.1},\"median\":{:.1},\"p75\":{:.1},\"p95\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}",
            self.min, self.median, self.p75, self.p95, self.p99, self.max
        )
    }
}

/// The settings that shape the numbers, so a result line describes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Mode {
    pub producers: u32,
    pub consumers: u32,
    pub size: usize,
    /// Confirm window per producer; 0: no confirms.
    pub confirm: u32,
    pub persistent: bool,
    pub autoack: bool,
    pub prefetch: u16,
    pub multi_ack_every: u32,
    /// Rate limit per producer (msg/s); 0: unlimited.
    pub rate: f64,
    pub queues: u32,
    pub exchange: String,
    pub exchange_type: String,
}

impl Mode {
    pub fn from_args(args: &ThroughputArgs) -> Mode {
        Mode {
            producers: args.producers,
            consumers: args.consumers,
            size: args.size,
            confirm: args.confirm,
            persistent: args.persistent(),
            autoack: args.autoack,
            prefetch: args.prefetch,
            multi_ack_every: args.multi_ack_every,
            rate: args.rate,
            queues: if args.queue.is_some() {
                args.queues
            } else {
                args.consumers
            },
            exchange: args.exchange.clone(),
            exchange_type: args.exchange_type.clone(),
        }
    }
}

/// One reporting interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Seconds since the producers started.
    pub elapsed: f64,
    pub sent_rate: f64,
    pub received_rate: f64,
    /// `None` without confirms.
    pub confirmed_rate: Option<f64>,
    pub nacked_rate: Option<f64>,
    pub latency: Option<Latency>,
    /// Publish to confirm, with confirms.
    pub confirm_latency: Option<Latency>,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub mode: Mode,
    pub broker: String,
    /// Seconds from the first publish to the stop.
    pub duration: f64,
    pub sent: u64,
    pub received: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub sent_rate: f64,
    pub received_rate: f64,
    pub confirmed_rate: f64,
    /// Consumer latency: publish to delivery.
    pub latency: Option<Latency>,
    /// Publish to confirm (`None` without confirms).
    pub confirm_latency: Option<Latency>,
}

/// Escapes a string for JSON.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt_json(latency: &Option<Latency>) -> String {
    latency
        .as_ref()
        .map_or_else(|| "null".into(), Latency::json)
}

impl Summary {
    /// One JSON object on one line (hand-written: serde_json is not a dependency).
    pub fn to_json(&self) -> String {
        let m = &self.mode;
        format!(
            concat!(
                "{{\"scenario\":\"throughput\",\"broker\":{},",
                "\"mode\":{{\"producers\":{},\"consumers\":{},\"size\":{},\"confirm\":{},",
                "\"persistent\":{},\"autoack\":{},\"prefetch\":{},\"multi_ack_every\":{},\"rate\":{},",
                "\"queues\":{},\"exchange\":{},\"exchange_type\":{}}},",
                "\"duration_s\":{:.3},\"sent\":{},\"received\":{},\"confirmed\":{},\"nacked\":{},",
                "\"returned\":{},\"sent_rate\":{:.1},\"received_rate\":{:.1},",
                "\"confirmed_rate\":{:.1},\"latency_us\":{},\"confirm_latency_us\":{}}}"
            ),
            json_str(&self.broker),
            m.producers,
            m.consumers,
            m.size,
            m.confirm,
            m.persistent,
            m.autoack,
            m.prefetch,
            m.multi_ack_every,
            m.rate,
            m.queues,
            json_str(&m.exchange),
            json_str(&m.exchange_type),
            self.duration,
            self.sent,
            self.received,
            self.confirmed,
            self.nacked,
            self.returned,
            self.sent_rate,
            self.received_rate,
            self.confirmed_rate,
            opt_json(&self.latency),
            opt_json(&self.confirm_latency),
        )
    }
}

fn latency_text(latency: &Option<Latency>) -> String {
    match latency {
        Some(l) => format!(
            "{:.0}/{:.0}/{:.0}/{:.0}/{:.0} µs",
            l.min, l.median, l.p75, l.p95, l.p99
        ),
        None => "-".into(),
    }
}

/// The per-interval line, in PerfTest's words.
#[allow(clippy::print_stdout)]
pub fn print_interval(interval: &Interval, json: bool) {
    if json {
        let mut line = format!(
            "{{\"time_s\":{:.3},\"sent_rate\":{:.0},\"received_rate\":{:.0}",
            interval.elapsed, interval.sent_rate, interval.received_rate
        );
        if let Some(rate) = interval.confirmed_rate {
            let _ = write!(line, ",\"confirmed_rate\":{rate:.0}");
        }
        if let Some(rate) = interval.nacked_rate {
            let _ = write!(line, ",\"nacked_rate\":{rate:.0}");
        }
        let _ = write!(
            line,
            ",\"latency_us\":{},\"confirm_latency_us\":{}}}",
            opt_json(&interval.latency),
            opt_json(&interval.confirm_latency)
        );
        println!("{line}");
        return;
    }
    let mut line = format!(
        "time: {:.3}s, sent: {:.0} msg/s",
        interval.elapsed, interval.sent_rate
    );
    if let Some(rate) = interval.confirmed_rate {
        let _ = write!(line, ", confirmed: {rate:.0} msg/s");
    }
    if let Some(rate) = interval.nacked_rate {
        if rate > 0.0 {
            let _ = write!(line, ", nacked: {rate:.0} msg/s");
        }
    }
    let _ = write!(
        line,
        ", received: {:.0} msg/s, min/median/75th/95th/99th consumer latency: {}",
        interval.received_rate,
        latency_text(&interval.latency)
    );
    if interval.confirm_latency.is_some() {
        let _ = write!(
            line,
            ", confirm latency: {}",
            latency_text(&interval.confirm_latency)
        );
    }
    println!("{line}");
}

/// The closing lines: a human summary, then the JSON line.
#[allow(clippy::print_stdout)]
pub fn print_summary(summary: &Summary) {
    let mut line = format!(
        "summary: {:.1}s, sending rate avg: {:.0} msg/s, receiving rate avg: {:.0} msg/s",
        summary.duration, summary.sent_rate, summary.received_rate
    );
    if summary.mode.confirm > 0 {
        let _ = write!(
            line,
            ", confirm rate avg: {:.0} msg/s",
            summary.confirmed_rate
        );
    }
    let _ = write!(line, ", latency: {}", latency_text(&summary.latency));
    if summary.confirm_latency.is_some() {
        let _ = write!(
            line,
            ", confirm latency: {}",
            latency_text(&summary.confirm_latency)
        );
    }
    println!("{line}");
    println!("{}", summary.to_json());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn summary_json_shape() {
        let mut h = Histogram::new();
        h.record(1_500);
        let summary = Summary {
            mode: Mode {
                producers: 1,
                consumers: 1,
                size: 16,
                confirm: 0,
                persistent: false,
                autoack: true,
                prefetch: 0,
                multi_ack_every: 0,
                rate: 0.0,
                queues: 1,
                exchange: "direct".into(),
                exchange_type: "direct".into(),
            },
            broker: "amqp://127.0.0.1:5673/".into(),
            duration: 2.0,
            sent: 10,
            received: 10,
            confirmed: 0,
            nacked: 0,
            returned: 0,
            sent_rate: 5.0,
            received_rate: 5.0,
            confirmed_rate: 0.0,
            latency: Latency::from_histogram(&h),
            confirm_latency: None,
        };
        let json = summary.to_json();
        assert!(json.starts_with("{\"scenario\":\"throughput\""));
        assert!(json.contains("\"autoack\":true"));
        assert!(json.contains("\"latency_us\":{\"min\":1.5,\"median\":1.5"));
        assert!(json.ends_with(",\"confirm_latency_us\":null}"));
        assert!(!json.contains('\n'));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
