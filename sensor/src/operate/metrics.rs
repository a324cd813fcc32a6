//! Metrics: counters and gauges cheap enough for the hot path (one relaxed atomic add, no lock,
//! no allocation), a [`Registry`] of collectors that the endpoint asks at each scrape, and the
//! writer of Prometheus' text exposition format (version 0.0.4).
//!
//! A component that wants to be measured keeps its own counters (plain fields of [`Counter`]
//! and [`Gauge`]), implements [`Collect`] to say what they are called, and is registered once
//! at start-up; the registry holds no names of its own.
use std::{
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// A count that only goes up (Prometheus `counter`; its name ends in `_total`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Raises the count to `total` (a total kept elsewhere, read at a quiet moment); a smaller
    /// value is ignored, so the counter never goes down.
    pub fn raise_to(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (Prometheus `gauge`).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a metric family is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Something that reports metrics at each scrape.
pub trait Collect: Send + Sync {
    /// Writes this component's families into `out`.
    fn collect(&self, out: &mut Exposition);
}

/// Every collector of the run, asked in the order they were registered.
#[derive(Default, Clone)]
pub struct Registry {
    collectors: Arc<Mutex<Vec<Arc<dyn Collect>>>>,
}

impl Registry {
    /// Adds a collector; its families appear from the next scrape on.
    pub fn register(&self, collector: Arc<dyn Collect>) {
        self.collectors
            .lock()
            .expect("no poisoned lock")
            .push(collector);
    }

    /// The text exposition of every registered family.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        for collector in self.collectors.lock().expect("no poisoned lock").iter() {
            collector.collect(&mut out);
        }
        out.text
    }
}

/// Prometheus' text exposition format, written family by family. Names and label names are
/// fixed by the code and checked in debug builds; label values are escaped, so a value taken
/// from the outside (a file name, an agent id) cannot add a line or a label.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// Every metric of this daemon starts with this.
pub const PREFIX: &str = "agent_sensor_";

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines. `name` is without [`PREFIX`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "metric name {name}");
        debug_assert!(
            (kind == Kind::Counter) == name.ends_with("_total"),
            "counters and only counters end in _total: {name}"
        );
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.text, "# TYPE {PREFIX}{name} {kind}");
    }

    /// One sample of the family just started: `nanos` nanoseconds, in seconds (Prometheus'
    /// base unit), exactly.
    pub fn sample_seconds(&mut self, name: &str, labels: &[(&str, &str)], nanos: u64) {
        self.labelled(name, labels);
        let _ = writeln!(
            self.text,
            " {}.{:09}",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        );
    }

    /// One sample of the family just started, with these labels.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labelled(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn labelled(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(PREFIX);
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label), "label name {label}");
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: what Prometheus accepts as a metric or label name (less `:`,
/// which is for recording rules).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two {
        events: Counter,
        fill: Gauge,
    }

    impl Collect for Two {
        fn collect(&self, out: &mut Exposition) {
            out.family("events_total", Kind::Counter, "Events seen.");
            out.sample("events_total", &[("kind", "exec")], self.events.get());
            out.family("fill_bytes", Kind::Gauge, "Bytes waiting.");
            out.sample("fill_bytes", &[], self.fill.get());
        }
    }

    #[test]
    fn registered_collectors_are_rendered_in_the_text_format() {
        let two = Arc::new(Two {
            events: Counter::default(),
            fill: Gauge::default(),
        });
        let registry = Registry::default();
        registry.register(two.clone());
        two.events.add(3);
        two.events.inc();
        two.fill.set(7);
        assert_eq!(
            registry.render(),
            "# HELP agent_sensor_events_total Events seen.\n\
             # TYPE agent_sensor_events_total counter\n\
             agent_sensor_events_total{kind=\"exec\"} 4\n\
             # HELP agent_sensor_fill_bytes Bytes waiting.\n\
             # TYPE agent_sensor_fill_bytes gauge\n\
             agent_sensor_fill_bytes 7\n"
        );
    }

    #[test]
    fn hostile_label_values_stay_inside_their_quotes() {
        let mut out = Exposition::default();
        out.sample(
            "x_total",
            &[("agent", "a\"} 9\nagent_sensor_forged_total 1\\")],
            1,
        );
        assert_eq!(
            out.text,
            "agent_sensor_x_total{agent=\"a\\\"} 9\\nagent_sensor_forged_total 1\\\\\"} 1\n"
        );
        assert_eq!(out.text.lines().count(), 1);
    }

    #[test]
    fn counters_never_go_down() {
        let c = Counter::default();
        c.raise_to(5);
        c.raise_to(3);
        assert_eq!(c.get(), 5);
    }

    #[test]
    fn names_follow_the_prometheus_grammar() {
        assert!(valid_name("events_total"));
        assert!(valid_name("_x9"));
        assert!(!valid_name("9x"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
