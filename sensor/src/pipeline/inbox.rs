//! The pipeline's inbox: what the kernel source, the registration socket and the manifest
//! watcher send it, in one bounded channel, in order.
use crate::identity::{
    manifest::ManifestError,
    registration::{AnnotationRequest, ExceptionRequest},
    registry::Registry,
};
use crate::record::registration::RegistrationEvent;

/// Records copied out of the ring buffer, back to back; `ends[i]` is where record `i` ends.
#[derive(Debug, Default)]
pub struct RawBatch {
    /// The records' bytes, as the kernel wrote them.
    pub bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    pub ends: Vec<usize>,
}

impl RawBatch {
    /// Appends a copy of one kernel record.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records in the order the kernel wrote them.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.bytes[s..e])
    }
}

/// Records the kernel could not deliver since the last report, by record kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossReport {
    /// How many of each kind (`exec`, `file`, ...) were lost; the `gap` record's `by_kind`.
    pub by_kind: Vec<(&'static str, u64)>,
}

impl LossReport {
    /// Records lost, of every kind.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum()
    }
}

/// What the source (and the control tasks) send down the pipeline, in order.
pub enum Message {
    /// Kernel records, in the order they were read from the ring buffer.
    Records(RawBatch),
    /// Records the kernel dropped (a full ring buffer): they become a `gap` record.
    Lost(LossReport),
    /// The identity manifest was read again (or could not be).
    Reloaded {
        /// What made the sensor read it (`SIGHUP`, `file change`): the record says.
        trigger: &'static str,
        /// The registry now in force, or why the manifest was refused (the old one stays).
        result: Result<std::sync::Arc<Registry>, ManifestError>,
    },
    /// The detection rules were read again (or could not be).
    RulesReloaded {
        /// What made the sensor read them (`SIGHUP`, `file change`).
        trigger: &'static str,
        /// The rules now in force, or why they were refused (the old ones stay).
        result: Result<Box<crate::rules::Rules>, String>,
    },
    /// A request on the registration socket, granted or refused.
    Registration(RegistrationEvent),
    /// An operator's annotation, to be sealed (and signed) in the trail.
    Annotation(AnnotationRequest),
    /// An operator's exception to a policy rule, to be sealed (and signed) in the trail.
    Exception(ExceptionRequest),
    /// A process of an agent opted in to TLS capture whose TLS stack cannot be probed.
    TlsNotCaptured {
        /// The process.
        tgid: u32,
        /// Its attribution when it was found.
        attribution: sensor_common::TrackedProcess,
        /// Why its TLS stack cannot be probed.
        reason: String,
    },
    /// The source stopped after a final drain; nothing follows.
    Stopped {
        /// Why (`signal SIGTERM`, `replay ended`): the stop record's reason.
        reason: String,
    },
}

impl From<RegistrationEvent> for Message {
    fn from(event: RegistrationEvent) -> Self {
        Self::Registration(event)
    }
}

impl From<ExceptionRequest> for Message {
    fn from(request: ExceptionRequest) -> Self {
        Self::Exception(request)
    }
}

impl From<AnnotationRequest> for Message {
    fn from(request: AnnotationRequest) -> Self {
        Self::Annotation(request)
    }
}

impl From<&LossReport> for crate::record::Gap {
    /// The `gap` block of the records the kernel could not deliver.
    fn from(report: &LossReport) -> Self {
        Self {
            source: "kernel_ring_buffer",
            lost: report.total(),
            by_kind: report.by_kind.iter().copied().collect(),
            error: None,
            start: None,
            end: None,
            sink: None,
        }
    }
}
