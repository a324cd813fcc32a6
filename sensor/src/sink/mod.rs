//! Where records go: standard output, one appended file, or a trail directory of rotated
//! files (`durable`). The pipeline hands over whole sealed records; the sink says whether it
//! can take more (a full disk), and reports rotations and losses for the pipeline to put on
//! the record.
//!
//! Sealed records also go to the pipelines of `[[sinks]]` ([`forward`]): queued on disk for
//! each before the output gets them, delivered by threads of their own.
//!
//! File I/O runs on tokio's blocking threads: a write can wait on the disk (dirty-page
//! throttling, `fdatasync`), and the kernel source must keep draining the ring buffer
//! meanwhile.
mod backlog;
mod durable;
mod file;
pub mod forward;
mod resume;
mod retention;
mod trail;

use crate::record::trail::{LastRecord, Retention, Rotation};
use std::{io, path::PathBuf, time::Duration};

use tokio::io::AsyncWriteExt as _;

pub use backlog::OutputLoss;
pub use file::Room;
pub(crate) use trail::counter_of;

use crate::config::{Output, OutputTarget};
use durable::Durable;
use forward::{Forwarders, health::SinkHealth, queue::SinkLoss};

/// Why the configured output cannot be opened: the run does not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// What was being opened or created.
        path: PathBuf,
        /// The file system's error.
        source: io::Error,
    },
    /// A trail directory's path (ending in `/`) names something else.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// A single-file output's path names a directory.
    #[error(
        "{0} is a directory: end the output path with `/` to write a trail of rotated files there"
    )]
    IsADirectory(PathBuf),
    /// The trail directory belongs to another user than the sensor (that user's uid).
    #[error(
        "{0} belongs to uid {1}: the sensor could not create its files there once it drops privileges; chown it to root"
    )]
    NotOwned(PathBuf, u32),
    /// Another sensor holds the output's lock.
    #[error("another agent-sensor is writing to {0} (it holds the lock)")]
    Busy(PathBuf),
}

/// The output the pipeline writes sealed records to: standard output, or files; and the
/// queues of the configured sinks.
pub struct Sink {
    inner: Inner,
    /// `None` without sinks, and while a blocking thread has them.
    forward: Option<Box<Forwarders>>,
}

enum Inner {
    Stdout(tokio::io::Stdout),
    /// `None` only while a blocking thread has it.
    Files(Option<Box<Durable>>),
}

impl Sink {
    /// Standard output: takes everything at once, never full, never rotates.
    pub fn stdout() -> Self {
        Self {
            inner: Inner::Stdout(tokio::io::stdout()),
            forward: None,
        }
    }

    /// Opens the configured output. Call it with the privileges needed to create the files.
    pub fn open(output: &Output) -> Result<Self, OpenError> {
        Ok(match output.target {
            OutputTarget::Stdout => Self::stdout(),
            _ => Self {
                inner: Inner::Files(Some(Box::new(Durable::open(output)?))),
                forward: None,
            },
        })
    }

    /// Every sealed record from now on also goes to these sinks, whose delivery starts now.
    pub fn deliver_to(&mut self, mut forwarders: Forwarders) -> io::Result<()> {
        if forwarders.is_empty() {
            return Ok(());
        }
        forwarders.start()?;
        self.forward = Some(Box::new(forwarders));
        Ok(())
    }

    /// The sinks' health, when there are sinks.
    pub fn sink_health(&self) -> Option<SinkHealth> {
        self.forward.as_ref().map(|f| f.health())
    }

    /// Records sinks' queues could not take, once they have room again (or `now`): the
    /// caller seals a `gap` record for each, before the next records.
    pub fn take_sink_losses(&mut self, now: bool) -> Vec<SinkLoss> {
        self.forward
            .as_mut()
            .map_or_else(Vec::new, |f| f.take_losses(now))
    }

    /// Queues the records in `out` for every sink (on a blocking thread: the queues are
    /// files), before the output takes them.
    async fn forward(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let Some(mut forwarders) = self.forward.take() else {
            return Ok(());
        };
        let bytes = std::mem::take(out);
        let (forwarders, bytes) = tokio::task::spawn_blocking(move || {
            forwarders.append(&bytes);
            (forwarders, bytes)
        })
        .await
        .map_err(|e| io::Error::other(format!("the sink queue thread failed: {e}")))?;
        self.forward = Some(forwarders);
        *out = bytes;
        Ok(())
    }

    fn files(&self) -> Option<&Durable> {
        match &self.inner {
            Inner::Files(f) => Some(f.as_deref().expect("the sink is not in use")),
            Inner::Stdout(_) => None,
        }
    }

    fn files_mut(&mut self) -> Option<&mut Durable> {
        match &mut self.inner {
            Inner::Files(f) => Some(f.as_deref_mut().expect("the sink is not in use")),
            Inner::Stdout(_) => None,
        }
    }

    /// Makes a file output act as if its file system had only `room` free: what tests without
    /// privileges use to fill the disk (and free it) where they cannot mount a small one.
    pub fn limit_room(&mut self, room: Room) {
        if let Some(f) = self.files_mut() {
            f.set_room(room);
        }
    }

    /// The last record of the trail this output continues (files only).
    pub fn previous(&self) -> Option<&LastRecord> {
        self.files().and_then(Durable::previous)
    }

    /// Whether a record may join the chain now, `pending` bytes not yet handed over. When
    /// not, the caller `refuse`s it instead: it gets no place in the chain.
    pub fn admits(&self, pending: usize) -> bool {
        self.files().is_none_or(|f| f.admits(pending))
    }

    /// Counts a record `admits` turned away (its `event.action` and `@timestamp`), for the
    /// `gap` record `take_loss` reports.
    pub fn refuse(&mut self, action: &'static str, timestamp: &str) {
        if let Some(f) = self.files_mut() {
            f.refuse(action, timestamp);
        }
    }

    /// Records refused since the last report, once the output admits records again (or
    /// `now`, at stop): the caller seals a `gap` record for them before the next record.
    pub fn take_loss(&mut self, now: bool) -> Option<OutputLoss> {
        self.files_mut().and_then(|f| f.take_loss(now))
    }

    /// Records refused by this run so far.
    pub fn refused_total(&self) -> u64 {
        self.files().map_or(0, Durable::refused_total)
    }

    /// Sealed bytes held in memory while the output cannot take them (files only).
    pub fn held_bytes(&self) -> usize {
        self.files().map_or(0, Durable::held_bytes)
    }

    /// A file rotation is due; the caller seals its record and passes it to `rotate`.
    pub fn rotation_due(&mut self) -> Option<Rotation> {
        self.files_mut().and_then(Durable::rotation_due)
    }

    /// Old trail files retention removes now; the caller seals the record and passes it to
    /// `retire`.
    pub fn retention_due(&mut self) -> Option<Retention> {
        self.files_mut().and_then(Durable::retention_due)
    }

    /// Writes the `trail_retention` record in `out`, durably, then removes the files it names.
    pub async fn retire(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.forward(out).await?;
        self.blocking(out, Durable::retire).await?;
        self.publish();
        Ok(())
    }

    /// How often `maintenance_due` should be asked, for outputs that have time-driven work.
    pub fn tick(&self) -> Option<Duration> {
        self.files().map(Durable::tick)
    }

    /// Time alone has made work due (a retry on a full disk, a sync, an age rotation): call
    /// `write` (with nothing new) and `rotation_due`.
    pub fn maintenance_due(&self) -> bool {
        self.files().is_some_and(Durable::maintenance_due)
    }

    /// Takes the whole records in `out` (leaving it empty, its capacity kept): written, or
    /// held while the disk is full. Errors end the run.
    pub async fn write(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.forward(out).await?;
        self.write_output(out).await?;
        self.publish();
        Ok(())
    }

    async fn write_output(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let idle = out.is_empty() && !self.maintenance_due();
        match &mut self.inner {
            Inner::Stdout(_) if out.is_empty() => Ok(()),
            Inner::Stdout(stdout) => {
                stdout.write_all(out).await?;
                out.clear();
                stdout.flush().await
            }
            Inner::Files(_) if idle => Ok(()),
            Inner::Files(_) => self.blocking(out, Durable::write).await,
        }
    }

    /// Writes the rotation record in `out` as the current file's last and moves on.
    pub async fn rotate(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.forward(out).await?;
        self.blocking(out, Durable::rotate).await?;
        self.publish();
        Ok(())
    }

    /// The output has what was queued for the sinks: they may deliver it.
    fn publish(&mut self) {
        if let Some(forwarders) = &mut self.forward {
            forwarders.publish();
        }
    }

    /// At a clean stop: writes everything (waiting a little for a full disk) and syncs; the
    /// sinks deliver what they can within their timeout, the rest stays queued.
    pub async fn finish(&mut self) -> io::Result<()> {
        let result = match &mut self.inner {
            Inner::Stdout(stdout) => stdout.flush().await,
            Inner::Files(_) => self.blocking(&mut Vec::new(), |d, _| d.finish()).await,
        };
        if let Some(mut forwarders) = self.forward.take() {
            tokio::task::spawn_blocking(move || forwarders.finish())
                .await
                .map_err(|e| io::Error::other(format!("the sink threads failed: {e}")))?;
        }
        result
    }

    async fn blocking(
        &mut self,
        out: &mut Vec<u8>,
        op: fn(&mut Durable, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let Inner::Files(slot) = &mut self.inner else {
            unreachable!("blocking I/O is for file outputs")
        };
        let mut files = slot.take().expect("the sink is not in use");
        let bytes = std::mem::take(out);
        let (files, mut bytes, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut files, &bytes);
            (files, bytes, result)
        })
        .await
        .map_err(|e| io::Error::other(format!("the output thread failed: {e}")))?;
        *slot = Some(files);
        bytes.clear();
        *out = bytes;
        result
    }
}
