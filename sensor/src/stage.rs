//! The stages the pipeline's loop moves data between, one trait each, with concrete types
//! between them: kernel events in, attributions, records, sealed bytes out. The loop
//! ([`crate::pipeline`]) owns one of each ([`crate::identity::resolver::Resolver`],
//! [`crate::builder::Builder`], [`crate::evidence::sealer::Sealer`]) and the sink; a stage
//! never calls another. This module depends only on the data types that cross between them.
use std::{future::Future, sync::Arc};

use sensor_common::TrackedProcess;

use crate::{
    decode::{CgroupEvent, KernelEvent},
    enrich::{process_table::ProcessTable, snapshot::ProcSnapshot},
    record::{
        AgentInfo, Checkpoint, Gap, Identity, Record,
        alert::Raised,
        policy::{PolicyDecision, PolicyException},
        registration::{Annotation, RegistrationEvent},
        rendered::Rendered,
        trail::{LastRecord, Rotation},
    },
};

/// The `identity.agent` block of each declared agent, by kernel agent number - 1.
pub type Agents = Arc<[Arc<Rendered<AgentInfo>>]>;

/// Which agent each kernel event belongs to.
pub trait Resolve {
    /// Decides a cgroup made while running (the kernel holds its processes' records until
    /// then), before any record of its batch is resolved: the records after it may be of
    /// processes in it.
    fn decide_cgroup(&mut self, cgroup: &CgroupEvent) -> impl Future<Output = ()> + Send;

    /// Settles `event`'s attribution (the kernel's, or what userspace decides where the
    /// kernel left it open) and returns it; `None` when the event is nobody's business and
    /// is not reported. `processes` is the builder's table, for ancestors.
    fn resolve(
        &mut self,
        event: &mut KernelEvent,
        processes: &ProcessTable,
    ) -> Option<TrackedProcess>;

    /// A new manifest took effect: these are the declared agents now.
    fn reload(&mut self, agents: &Agents);

    /// Forgets decisions the kernel can no longer report records under.
    fn sweep(&mut self);
}

/// Records from kernel events and from what the sensor itself does, with what the caches
/// know (processes, containers, DNS answers, wall-clock time).
pub trait Build {
    /// Starts (a slice of) a batch of kernel records: one wall-clock sample for the records
    /// made of it.
    fn begin_batch(&mut self);

    /// Ends the batch [`Build::begin_batch`] started.
    fn end_batch(&mut self);

    /// The record of one kernel event attributed to `attribution`; none while a repeat is
    /// being folded. Folded records the event closed are pushed onto `closed`, to be written
    /// before it. (One record is returned, not pushed: a `Record` is 2 KB, and moving it
    /// through a `Vec` on every event costs the pipeline about 5%.)
    fn build(
        &mut self,
        event: &KernelEvent,
        attribution: TrackedProcess,
        closed: &mut Vec<Record>,
    ) -> Option<Record>;

    /// The records of the processes that ran before the sensor started, pushed onto `out`.
    fn snapshot(&mut self, processes: &[&ProcSnapshot], out: &mut Vec<Record>);

    /// A record of the sensor's own (start, stop, loss, rotation, checkpoint, ...).
    fn sensor(&mut self, event: SensorEvent) -> Record;

    /// Folded repeats whose window closed by `now_ns` (boot time), pushed onto `out`; at
    /// `u64::MAX` (stopping), also every LLM exchange still under way, marked incomplete.
    fn close_repeats(&mut self, now_ns: u64, out: &mut Vec<Record>);

    /// Whether exact repeats are folded (the loop then closes their windows on a timer).
    fn folds_repeats(&self) -> bool;

    /// What the builder knows of live processes (the resolver reads ancestors from it).
    fn processes(&self) -> &ProcessTable;

    /// A new manifest took effect: these are the declared agents now.
    fn reload(&mut self, agents: &Agents);

    /// Forgets processes whose exit record was lost.
    fn sweep(&mut self);

    /// Captured TLS connections whose HTTP decoding ended (not HTTP, a malformed frame or
    /// head, a header compression fault, bytes of framing not captured), by reason.
    fn connections_unparsed(&self) -> Vec<(&'static str, u64)>;
}

/// What the sensor itself has to say, as the loop tells the builder.
pub enum SensorEvent {
    /// The first record of a run.
    Start {
        /// The kernel programs attached.
        programs: Vec<&'static str>,
        /// Every process is observed, agent or not.
        all_processes: bool,
        /// Where the run before ended, when the output continues a trail.
        previous: Option<LastRecord>,
    },
    /// The last record of a run.
    Stop {
        /// Why the run ended.
        reason: String,
        /// Records written, this one included.
        records_written: u64,
        /// Records the kernel could not deliver.
        kernel_lost: u64,
        /// Kernel records that could not be decoded.
        decode_errors: u64,
        /// Records a full output refused.
        output_lost: u64,
    },
    /// Records lost: by the kernel, or refused by a full output.
    Gap(Gap),
    /// The output moved on to a new file.
    Rotation(Rotation),
    /// Old files of the trail directory are removed by retention (the record comes first).
    Retention(crate::record::trail::Retention),
    /// A signed checkpoint over the chain so far.
    Checkpoint(Checkpoint),
    /// A request on the registration socket, granted or refused.
    Registration(RegistrationEvent),
    /// An operator's annotation.
    Annotation(Annotation),
    /// A detection rule fired on a record.
    Alert(Box<Raised>),
    /// The detection rules were read again: how many are in force (`Ok`), or why the new
    /// ones were refused (`Err`; the old ones stay).
    RulesReloaded {
        /// What made the sensor read them.
        trigger: &'static str,
        /// The rules in force, or why the new ones were refused.
        result: Result<usize, String>,
    },
    /// A policy decision on an agent's action, with the `identity` block of the process that
    /// did it (none for a registration).
    Decision {
        /// What was decided (boxed: the other events are smaller).
        decision: Box<PolicyDecision>,
        /// Who did it.
        identity: Option<Identity>,
    },
    /// An operator's exception to a rule, granted over the control socket.
    Exception(PolicyException),
    /// A process of an agent opted in to TLS capture whose TLS stack cannot be probed.
    TlsNotCaptured {
        /// The process.
        tgid: u32,
        /// Its attribution when it was found.
        attribution: sensor_common::TrackedProcess,
        /// Why its TLS stack cannot be probed.
        reason: String,
    },
    /// The identity manifest was read again (`Ok`), or could not be (`Err`, why).
    Reloaded {
        /// What made the sensor read it.
        trigger: &'static str,
        /// Why it could not be taken, if it could not.
        error: Option<String>,
    },
}

/// Alerts from records: detection rules, run on each record once it is sealed (so an alert
/// can name it by sequence number), in the order they were sealed. Pure: what it knows comes
/// from the records it was shown.
pub trait Detect {
    /// The compiled rules a reload hands over.
    type Rules;

    /// The alerts `record`, sealed as `sequence`, raises, pushed onto `out`.
    fn detect(&mut self, record: &Record, sequence: u64, out: &mut Vec<Raised>);

    /// These rules apply from the next record on (what was learnt of processes stays).
    fn reload(&mut self, next: Self::Rules);

    /// Per rule engine: records evaluated and the time it took (nanoseconds), since start.
    fn evaluation_time(&self) -> Vec<(&'static str, u64, u64)> {
        Vec::new()
    }

    /// Since start: what the rules lost or held back.
    fn counts(&self) -> RuleCounts {
        RuleCounts::default()
    }
}

/// What detection rules lost or held back since start (reloads included), for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuleCounts {
    /// Native rules' remembered state dropped while it could still matter.
    pub evicted: u64,
    /// Alerts native rules' rate limits held back.
    pub suppressed: u64,
    /// Records whose Sigma matches were not fed to the correlations, their state being full.
    pub correlation_dropped: u64,
}

/// Records as sealed bytes: the output format's encoder, the evidence chain and signed
/// checkpoints.
pub trait Seal {
    /// Appends `record`, encoded and sealed into the chain, to `out`.
    fn seal(&mut self, record: &Record, out: &mut Vec<u8>);

    /// The checkpoint over the chain so far when one is due, or when `force`d and a record
    /// was sealed since the last one; the sealer counts it as made.
    fn checkpoint(&mut self, force: bool) -> Option<Checkpoint>;

    /// Whether checkpoints are signed (the loop then asks on a timer whether one is due).
    fn signs(&self) -> bool;

    /// The sequence number and hash of the last record sealed.
    fn last(&self) -> Option<(u64, &str)>;
}
