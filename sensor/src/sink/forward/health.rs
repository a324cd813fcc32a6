//! Each sink's health, as its delivery thread last saw it, for `/readyz`, metrics and logs:
//! a cheap snapshot any task can take ([`SinkHealth::statuses`]).
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::Serialize;

use super::queue::QueueView;
use crate::operate::metrics::{Collect, Exposition, Kind};

/// Where a sink stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Nothing tried yet.
    Starting,
    /// The last attempt delivered.
    Up,
    /// The last attempt failed; the next waits out the back-off.
    Retrying,
}

/// One sink's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// Where it delivers to.
    pub address: String,
    /// Where it stands.
    pub state: SinkState,
    /// Records delivered (acknowledged) by this run.
    pub delivered: u64,
    /// Failed attempts by this run.
    pub failures: u64,
    /// Why the last attempt failed, while it is retrying.
    pub last_error: Option<String>,
    /// Bytes queued and not yet acknowledged.
    pub queued_bytes: u64,
    /// The queue's bound.
    pub queue_bytes: u64,
    /// How long the oldest record not yet acknowledged has been queued.
    #[serde(serialize_with = "seconds")]
    pub lag: Duration,
    /// Records being dropped now for want of room in the queue (a `gap` record will count
    /// them).
    pub dropping: u64,
}

/// What a delivery thread updates.
#[derive(Clone)]
pub(super) struct Tracker {
    status: Arc<Mutex<SinkStatus>>,
}

impl Tracker {
    pub fn new(name: &str, address: String, queue_bytes: u64) -> Self {
        Self {
            status: Arc::new(Mutex::new(SinkStatus {
                name: name.to_owned(),
                address,
                state: SinkState::Starting,
                delivered: 0,
                failures: 0,
                last_error: None,
                queued_bytes: 0,
                queue_bytes,
                lag: Duration::ZERO,
                dropping: 0,
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut SinkStatus) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn delivered(&self, records: u64) {
        let was = self.with(|s| {
            s.delivered += records;
            s.last_error = None;
            std::mem::replace(&mut s.state, SinkState::Up)
        });
        if was != SinkState::Up {
            let name = self.with(|s| s.name.clone());
            tracing::info!(sink = %name, "sink delivering");
        }
    }

    pub fn failed(&self, error: &std::io::Error) {
        let (name, address, first) = self.with(|s| {
            s.failures += 1;
            let first = s.state != SinkState::Retrying;
            s.state = SinkState::Retrying;
            s.last_error = Some(error.to_string());
            (s.name.clone(), s.address.clone(), first)
        });
        // Once per outage; the status keeps the latest reason.
        if first {
            tracing::warn!(sink = %name, %address, %error, "sink cannot deliver: records stay queued and are retried");
        }
    }
}

/// Every sink's status, readable from any task.
#[derive(Clone, Default)]
pub struct SinkHealth {
    sinks: Arc<[(Tracker, QueueView)]>,
}

impl SinkHealth {
    pub(super) fn new(sinks: Vec<(Tracker, QueueView)>) -> Self {
        Self {
            sinks: sinks.into(),
        }
    }

    /// A snapshot of each sink, in configuration order.
    pub fn statuses(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|(tracker, queue)| {
                let mut status = tracker.with(|s| s.clone());
                (status.queued_bytes, status.queue_bytes) = queue.fill();
                status.dropping = queue.dropping();
                status.lag = queue.lag();
                status
            })
            .collect()
    }

    /// No sink is failing or dropping records (a sink that has not tried yet counts as ready).
    pub fn ready(&self) -> bool {
        self.unready().is_none()
    }

    /// Why the first sink that is not healthy is not, for `/readyz`.
    pub fn unready(&self) -> Option<String> {
        self.statuses().into_iter().find_map(|s| {
            if s.dropping > 0 {
                Some(format!(
                    "sink {} is dropping records: its queue is full",
                    s.name
                ))
            } else if s.state == SinkState::Retrying {
                Some(format!(
                    "sink {} cannot deliver to {}: {}",
                    s.name,
                    s.address,
                    s.last_error.as_deref().unwrap_or("no reason given")
                ))
            } else {
                None
            }
        })
    }
}

fn seconds<S: serde::Serializer>(lag: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(lag.as_secs_f64())
}

/// A metric family of the sinks: its name, kind, help and the value it takes of a status.
type Family = (&'static str, Kind, &'static str, fn(&SinkStatus) -> u64);

/// Each sink's status as metrics, labelled by the sink's name (from the config, escaped by the
/// exposition like every label value).
impl Collect for SinkHealth {
    fn collect(&self, out: &mut Exposition) {
        let statuses = self.statuses();
        let families: [Family; 6] = [
            (
                "sink_up",
                Kind::Gauge,
                "1 while the sink's last attempt delivered or none was made yet, 0 while it retries.",
                |s| u64::from(s.state != SinkState::Retrying),
            ),
            (
                "sink_delivered_records_total",
                Kind::Counter,
                "Records the sink acknowledged, by this run.",
                |s| s.delivered,
            ),
            (
                "sink_failures_total",
                Kind::Counter,
                "Failed delivery attempts, by this run.",
                |s| s.failures,
            ),
            (
                "sink_queued_bytes",
                Kind::Gauge,
                "Bytes in the sink's queue not yet acknowledged (its backlog).",
                |s| s.queued_bytes,
            ),
            (
                "sink_queue_limit_bytes",
                Kind::Gauge,
                "The bound of the sink's queue.",
                |s| s.queue_bytes,
            ),
            (
                "sink_dropping_records",
                Kind::Gauge,
                "Records being dropped now for want of room in the queue (a gap record will count them).",
                |s| s.dropping,
            ),
        ];
        for (name, kind, help, value) in families {
            out.family(name, kind, help);
            for status in &statuses {
                out.sample(name, &[("sink", &status.name)], value(status));
            }
        }
        out.family(
            "sink_lag_seconds",
            Kind::Gauge,
            "How long the oldest record not yet acknowledged by the sink has been queued (0 when none is).",
        );
        for status in &statuses {
            let nanos = u64::try_from(status.lag.as_nanos()).unwrap_or(u64::MAX);
            out.sample_seconds("sink_lag_seconds", &[("sink", &status.name)], nanos);
        }
    }
}
