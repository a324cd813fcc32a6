//! Sinks that carry the sealed records to pipelines (`[[sinks]]`), besides the output: each
//! with its own disk-backed [`queue`], its own delivery thread ([`delivery`]), and a health
//! status ([`health`]). The pipeline appends every sealed record to every queue, in chain
//! order, before the output gets it, and publishes it to the delivery threads once the output
//! has it (a sink never gets a record the trail lacks); a record leaves a queue only once the sink's other side
//! acknowledged it, and a restart resumes from there. A full queue drops records for that sink
//! only (the output still has them), and the `gap` record the pipeline seals for them says
//! which sequences that sink will never see.
//!
//! Transports ([`stream`], [`syslog`], [`otlp`], [`nats`], [`file_copy`], [`stdout`]) speak one
//! protocol each; what they send is the output's bytes,
//! the same canonical JSON (or OCSF) lines, so `agent-sensor verify` checks what a pipeline
//! received.
mod delivery;
pub mod file_copy;
pub mod health;
pub mod keys;
pub mod nats;
pub mod otlp;
pub mod queue;
pub mod stdout;
pub mod stream;
pub mod syslog;
pub mod tls;

use std::{io, path::PathBuf, thread::JoinHandle, time::Duration};

use crate::{
    config::{
        OutputTarget,
        sinks::{SinkConfig, SinkKind, StreamAddress},
    },
    record::trail::LastRecord,
};
use health::{SinkHealth, Tracker};
use queue::{QueueWriter, SinkLoss};

/// One protocol: sends a batch of whole records and returns once the other side has
/// acknowledged all of them (or why not). Reconnects as needed.
pub trait Transport: Send {
    /// Where it delivers to, for health and logs.
    fn describe(&self) -> String;
    /// Sends `records` (whole JSON lines) and waits for their acknowledgement.
    fn deliver(&mut self, records: &[u8]) -> io::Result<()>;
    /// Drops the connection (after a failure, or at stop).
    fn disconnect(&mut self);
    /// How long the other side asked to be left alone after the last failure, if it said.
    fn retry_after(&mut self) -> Option<Duration> {
        None
    }
}

/// A `deliver` error meaning the other side refused the batch as it is, so sending it again
/// cannot help: the batch leaves the queue and the loss is recorded (`gap.error: rejected`).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected {
    /// How many of the batch's records were refused, if the other side said (else all).
    pub lost: Option<u64>,
    /// What the other side said.
    pub reason: String,
}

impl From<Rejected> for io::Error {
    fn from(rejected: Rejected) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, rejected)
    }
}

/// Why a sink could not be opened: the run does not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its queue directory or files.
    #[error("sink {sink}: queue {}: {source}", dir.display())]
    Queue {
        /// The sink's name.
        sink: String,
        /// Its queue directory.
        dir: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Its TLS files, credentials, or where it writes.
    #[error("sink {sink}: {message}")]
    Setting {
        /// The sink's name.
        sink: String,
        /// Which file or setting, and what is wrong.
        message: String,
    },
}

struct Forwarder {
    writer: QueueWriter,
    /// Taken by `start`.
    idle: Option<(
        queue::QueueReader,
        Box<dyn Transport>,
        delivery::Settings,
        Tracker,
    )>,
    name: String,
    thread: Option<JoinHandle<()>>,
}

/// Every configured sink: their queues, and their delivery threads once started.
pub struct Forwarders {
    sinks: Vec<Forwarder>,
    health: SinkHealth,
}

impl Forwarders {
    /// Opens each sink's queue (`<queue_dir>/<name>/`): call it with the privileges needed to
    /// create them. `trail_end` is where the output's trail ends (its last record), to cut
    /// records a crash left queued and not written. Nothing is delivered before
    /// [`Forwarders::start`].
    /// `output` is where the output writes: a sink may not write there too.
    pub fn open(
        configs: &[SinkConfig],
        output: &OutputTarget,
        trail_end: Option<&LastRecord>,
    ) -> Result<Self, OpenError> {
        let trail_end = trail_end.map(|r| (r.instance_id.as_str(), r.sequence));
        let mut sinks = Vec::new();
        let mut views = Vec::new();
        for config in configs {
            let setting = |message: String| OpenError::Setting {
                sink: config.name.clone(),
                message,
            };
            if let Some(conflict) = output_conflict(&config.kind, output) {
                return Err(setting(conflict));
            }
            let dir = config.queue_dir.join(&config.name);
            let (writer, reader, view) = queue::open(
                &dir,
                &config.name,
                config.queue_bytes,
                trail_end,
                config.queue_sync,
            )
            .map_err(|source| OpenError::Queue {
                sink: config.name.clone(),
                dir: dir.clone(),
                source,
            })?;
            let timeout = Duration::from_millis(u64::from(config.timeout_ms));
            let tls = match (&config.tls, &config.kind) {
                (
                    Some(files),
                    SinkKind::Socket(StreamAddress::Tcp(hostport))
                    | SinkKind::Syslog { hostport }
                    | SinkKind::Otlp { hostport }
                    | SinkKind::Nats { hostport, .. },
                ) => {
                    let host = hostport
                        .rsplit_once(':')
                        .map_or(hostport.as_str(), |(h, _)| h);
                    Some(tls::Tls::load(files, host).map_err(setting)?)
                }
                // The config allows TLS only on the kinds above.
                (None, _)
                | (
                    Some(_),
                    SinkKind::Socket(StreamAddress::Unix(_))
                    | SinkKind::File { .. }
                    | SinkKind::Stdout,
                ) => None,
            };
            let transport: Box<dyn Transport> = match &config.kind {
                SinkKind::Socket(address) => {
                    Box::new(stream::SocketStream::new(address.clone(), tls, timeout))
                }
                SinkKind::Syslog { hostport } => {
                    Box::new(syslog::Syslog::new(hostport.clone(), tls, timeout))
                }
                SinkKind::Otlp { hostport } => {
                    Box::new(otlp::Otlp::new(hostport.clone(), tls, timeout))
                }
                SinkKind::Nats {
                    hostport,
                    subject,
                    auth,
                } => {
                    let credentials = auth
                        .as_ref()
                        .map(nats::Credentials::read)
                        .transpose()
                        .map_err(setting)?;
                    Box::new(nats::Nats::new(
                        hostport.clone(),
                        subject.clone(),
                        credentials,
                        tls,
                        timeout,
                    ))
                }
                SinkKind::File { path } => Box::new(
                    file_copy::FileCopy::open(path.clone())
                        .map_err(|e| setting(format!("path {}: {e}", path.display())))?,
                ),
                SinkKind::Stdout => Box::new(stdout::Stdout),
            };
            let tracker = Tracker::new(&config.name, transport.describe(), config.queue_bytes);
            views.push((tracker.clone(), view));
            let settings = delivery::Settings {
                name: config.name.clone(),
                batch_records: config.batch_records,
                retry_max: Duration::from_millis(u64::from(config.retry_max_ms)),
                drain: timeout,
            };
            sinks.push(Forwarder {
                writer,
                idle: Some((reader, transport, settings, tracker)),
                name: config.name.clone(),
                thread: None,
            });
        }
        Ok(Self {
            sinks,
            health: SinkHealth::new(views),
        })
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Starts each sink's delivery thread: what the queues held from the last run goes
    /// first.
    pub fn start(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            let Some((reader, transport, settings, tracker)) = sink.idle.take() else {
                continue;
            };
            sink.thread = Some(
                std::thread::Builder::new()
                    .name(format!("sink-{}", sink.name))
                    .spawn(move || delivery::run(reader, transport, &tracker, &settings))?,
            );
        }
        Ok(())
    }

    /// Every sink's health, readable from any task.
    pub fn health(&self) -> SinkHealth {
        self.health.clone()
    }

    /// Queues whole sealed records (the next ones of the chain, in order) for every sink.
    /// Writes to the queues' files: call it off the async threads.
    pub fn append(&mut self, records: &[u8]) {
        for sink in &mut self.sinks {
            sink.writer.append(records);
        }
    }

    /// The output has every record appended so far: the sinks may deliver them.
    pub fn publish(&mut self) {
        for sink in &mut self.sinks {
            sink.writer.publish();
        }
    }

    /// The records each sink could not queue, once its queue has room again (or `now`), and
    /// those its other side rejected: the caller seals a `gap` record for each.
    pub fn take_losses(&mut self, now: bool) -> Vec<SinkLoss> {
        let mut losses = Vec::new();
        for sink in &mut self.sinks {
            losses.extend(sink.writer.take_rejected());
            losses.extend(sink.writer.take_loss(now));
        }
        losses
    }

    /// At stop: each sink delivers what it can within its `timeout_ms`; the rest stays queued
    /// for the next run. Blocks until the threads ended.
    pub fn finish(&mut self) {
        for sink in &self.sinks {
            sink.writer.stop();
        }
        for sink in &mut self.sinks {
            if let Some(thread) = sink.thread.take()
                && thread.join().is_err()
            {
                tracing::error!(sink = %sink.name, "the sink's delivery thread panicked");
            }
        }
        for status in self.health.statuses() {
            if status.queued_bytes > 0 {
                tracing::warn!(sink = %status.name, queued_bytes = status.queued_bytes, "records stay queued for the sink's next run");
            }
        }
    }
}

/// Why a sink cannot write where it is configured to, given the output: standard output
/// has one writer, and the output's files are the output's alone.
fn output_conflict(kind: &SinkKind, output: &OutputTarget) -> Option<String> {
    match (kind, output) {
        (SinkKind::Stdout, OutputTarget::Stdout) => Some(
            "type = \"stdout\" while the output is standard output too: give the output a file or a trail directory".to_owned(),
        ),
        (SinkKind::File { path }, OutputTarget::File(file)) if path == file => Some(format!(
            "path {} is the output's own file",
            path.display()
        )),
        (SinkKind::File { path }, OutputTarget::Directory(dir)) if path.starts_with(dir) => {
            Some(format!(
                "path {} is inside the output's trail directory {}",
                path.display(),
                dir.display()
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_may_not_write_where_the_output_does() {
        let file = |p: &str| SinkKind::File { path: p.into() };
        let dir = OutputTarget::Directory("/var/lib/agent-sensor/trail".into());
        let cases = [
            (SinkKind::Stdout, OutputTarget::Stdout, true),
            (SinkKind::Stdout, dir.clone(), false),
            (
                file("/var/lib/agent-sensor/trail/x.jsonl"),
                dir.clone(),
                true,
            ),
            (file("/var/log/evidence.jsonl"), dir, false),
            (
                file("/var/log/evidence.jsonl"),
                OutputTarget::File("/var/log/evidence.jsonl".into()),
                true,
            ),
            (file("/var/log/evidence.jsonl"), OutputTarget::Stdout, false),
        ];
        for (kind, output, refused) in cases {
            assert_eq!(
                output_conflict(&kind, &output).is_some(),
                refused,
                "{kind:?} with {output:?}"
            );
        }
    }
}
