//! The pipeline: takes what the source sends, decodes it, enriches it with what userspace knows
//! (process table, wall-clock time, host), builds records and hands them to the sink, in order.
//! Decode errors are counted by kind; kernel losses become `gap` records. Record builders live
//! in the submodules by family.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use inbox::{LossReport, Message, RawBatch};

use sensor_common::{CgroupAgent, TrackedProcess, method, tracked_flags};

use crate::{
    builder::activity,
    builder::repeats::{self, RepeatFilter},
    decode::{
        self, CgroupEvent, ExecEvent, ExitEvent, ExitStatus, FileEvent, ForkEvent, KernelEvent,
        NetEvent,
    },
    enrich::clock::{self, WallClock},
    enrich::container::{self, ContainerMeta, PodMeta},
    enrich::dns_cache::DnsCache,
    enrich::entity::EntityIds,
    enrich::fspath::Classifier,
    enrich::process_table::{ProcessInfo, ProcessTable},
    enrich::snapshot::ProcSnapshot,
    identity::registry::{self, Registry, Tasks},
    record::host::HostInfo,
    record::rendered::Rendered,
    record::{
        self, AgentInfo, AttributionInfo, Cgroup, CgroupCreated, ContainerBlocks, ContainerImage,
        ContainerInfo, EventMeta, Gap, Hop, HopProcess, Id, Identity, Lifecycle, Namespaces,
        Orchestrator, OrchestratorResource, Owners, Parent, Process, Record, SensorBlock, Signal,
        TaskInfo, Thread,
    },
    sink::Sink,
};

mod file_and_network;
mod identity;
pub mod inbox;
mod process;
mod process_blocks;

pub use identity::agent_infos;
use process::self_process;
use process_blocks::{BlockSource, ProcessBlocks};

/// Counters the pipeline keeps for the stop record and the logs.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub records_written: u64,
    pub kernel_lost: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
}

/// Static facts every record carries.
pub struct Context {
    pub host: Arc<HostInfo>,
    pub instance_id: Arc<str>,
    pub entity_ids: EntityIds,
    /// Sensitive-location classes for `file.class`.
    pub classifier: Classifier,
    /// Declared agents, by kernel agent number - 1, ready to serialise.
    pub agents: Vec<Arc<Rendered<AgentInfo>>>,
    /// Registered task names by kernel task number.
    pub tasks: Tasks,
    /// Cgroups by id, for `container.*` and `orchestrator.*`.
    pub cgroups: crate::identity::selectors::CgroupIndex,
    /// Decides the cgroups made while running (the kernel holds them until then); none when
    /// the pipeline runs without the kernel (a replay).
    pub selectors: Option<crate::identity::selectors::SharedSelectors>,
    /// Every process is observed, agent or not.
    pub all_processes: bool,
    /// The environment marker (`NAME=`).
    pub marker: Option<Vec<u8>>,
    /// The declared agents (for argv selectors).
    pub registry: crate::identity::registry::SharedRegistry,
    /// The kernel map processes attributed in userspace are entered in; none without a kernel.
    pub tracked: Option<crate::identity::selectors::Tracked>,
}

/// When and with what key checkpoints are signed.
pub struct Checkpoints {
    pub key: ed25519_dalek::SigningKey,
    pub every_records: u64,
    pub every: Duration,
    since: u64,
    last: Instant,
}

impl Checkpoints {
    pub fn new(key: ed25519_dalek::SigningKey, every_records: u32, every_ms: u32) -> Self {
        Self {
            key,
            every_records: u64::from(every_records),
            every: Duration::from_millis(u64::from(every_ms)),
            since: 0,
            last: Instant::now(),
        }
    }

    fn due(&self) -> bool {
        self.since > 0 && (self.since >= self.every_records || self.last.elapsed() >= self.every)
    }
}

pub struct Pipeline {
    ctx: Context,
    /// Rendered `process` blocks of activity records, by thread.
    process_blocks: ProcessBlocks,
    /// `ctx.host`, rendered once for every record.
    host: Arc<Rendered<HostInfo>>,
    clock: WallClock,
    clock_sampled: Instant,
    table: ProcessTable,
    dns: DnsCache,
    repeats: RepeatFilter,
    /// Every record's place in the evidence chain.
    chain: crate::evidence::chain::Chain,
    /// Signs checkpoints, when a key is configured.
    checkpoints: Option<Checkpoints>,
    sink: Sink,
    /// ECS records or OCSF events.
    format: crate::config::Format,
    /// Set by `stop`: the last records are taken even by a full output.
    stopping: bool,
    /// Serialised records waiting for the sink, reused across batches.
    out: Vec<u8>,
    /// `event.created` of the records of the batch being handled: one clock sample for
    /// them all (they are made within a millisecond or so).
    batch_created: Option<crate::record::time::Timestamp>,
    /// Decisions on the cgroups made since start, for the records the kernel reported while
    /// it held them; kept as long as the kernel may still report held records.
    held: HashMap<u64, (Option<CgroupAgent>, Instant)>,
    /// Decisions on unmatched execs (by tgid, with when they were made and the process's start
    /// time in clock ticks), for the records of their pending descendants.
    pending: HashMap<u32, (Option<TrackedProcess>, Instant, u64)>,
    pub stats: Stats,
}

const CLOCK_RESAMPLE: Duration = Duration::from_secs(1);
/// Output handed to the sink mid-batch once this much is waiting: the kernel copies a
/// buffer that is still in cache several times faster than a whole batch's megabytes.
const FLUSH_BYTES: usize = 256 * 1024;
/// Longer than the kernel holds a new cgroup (`HOLD_WINDOW_NS` in `cgroup.rs`).
const HELD_FOR: Duration = Duration::from_secs(30);
const TABLE_SWEEP: Duration = Duration::from_secs(60);
const DNS_CACHE_ENTRIES: usize = 16 * 1024;
/// How often folded repeats are checked for a closed window.
const REPEAT_TICK: Duration = Duration::from_millis(100);

const PROCESS: &[&str] = &["process"];
const START: &[&str] = &["start"];
const END: &[&str] = &["end"];
const FILE: &[&str] = &["file"];
const IAM: &[&str] = &["iam"];
const CONFIGURATION: &[&str] = &["configuration"];
const CHANGE: &[&str] = &["change"];
const CREATION: &[&str] = &["creation"];
const NETWORK: &[&str] = &["network"];
const INFO: &[&str] = &["info"];

impl Pipeline {
    pub fn new(ctx: Context, sink: Sink, repeat_window_ms: u32) -> Self {
        let chain = crate::evidence::chain::Chain::new(&ctx.instance_id);
        Self {
            chain,
            host: Arc::new(Rendered::new(HostInfo::clone(&ctx.host))),
            checkpoints: None,
            ctx,
            clock: WallClock::sample(),
            clock_sampled: Instant::now(),
            table: ProcessTable::default(),
            process_blocks: ProcessBlocks::default(),
            dns: DnsCache::new(DNS_CACHE_ENTRIES),
            repeats: RepeatFilter::new(repeat_window_ms),
            sink,
            format: crate::config::Format::Ecs,
            stopping: false,
            out: Vec::with_capacity(1 << 20),
            batch_created: None,
            held: HashMap::new(),
            pending: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn meta(
        &self,
        kind: &'static str,
        category: &'static [&'static str],
        types: &'static [&'static str],
        action: &'static str,
    ) -> EventMeta {
        EventMeta {
            kind,
            category,
            kind_type: types,
            action,
            outcome: None,
            repeat_count: None,
            dataset: match category.first() {
                Some(&"process") => "agent_sensor.process",
                Some(&"file") => "agent_sensor.file",
                Some(&"network") => "agent_sensor.network",
                _ => "agent_sensor.sensor",
            },
            created: self
                .batch_created
                .unwrap_or_else(|| crate::record::time::Timestamp::of(WallClock::now())),
        }
    }

    fn record(&self, timestamp: clock::UnixNanos, event: EventMeta) -> Record {
        Record::new(
            crate::record::time::Timestamp::of(timestamp),
            event,
            self.host.clone(),
            SensorBlock {
                instance_id: self.ctx.instance_id.clone(),
                version: env!("CARGO_PKG_VERSION"),
                lifecycle: None,
            },
        )
    }

    fn emit(&mut self, record: &Record) {
        // A full output refuses records before they get a place in the chain, so the chain
        // stays whole; the gap record that counts them takes their place in it. At stop
        // everything is taken: the last records wait for room (briefly) in the sink.
        if !self.stopping && !self.sink.admits(self.out.len()) {
            self.sink.refuse(record.event.action, &record.timestamp);
            return;
        }
        if let Some(loss) = self.sink.take_loss(self.stopping) {
            self.output_gap(loss);
        }
        self.seal(record);
    }

    fn seal(&mut self, record: &Record) {
        let start = self.out.len();
        match self.format {
            crate::config::Format::Ecs => {
                let shared = crate::encode::ecs::write(&mut self.out, record);
                self.chain.seal_shared(&mut self.out, start, shared);
            }
            crate::config::Format::Ocsf => {
                crate::encode::ocsf::write(&mut self.out, record);
                self.chain.seal_ocsf(&mut self.out, start);
            }
        }
        self.stats.records_written += 1;
        if let Some(c) = self.checkpoints.as_mut() {
            c.since += 1;
        }
    }

    /// Writes records in this format from now on.
    pub fn set_format(&mut self, format: crate::config::Format) {
        self.format = format;
    }

    /// Signs checkpoints from now on.
    pub fn sign_with(&mut self, checkpoints: Checkpoints) {
        self.checkpoints = Some(checkpoints);
    }

    /// Writes a signed checkpoint over the chain so far, if one is due (or `force`d).
    fn checkpoint(&mut self, force: bool) {
        let Some(c) = self.checkpoints.as_ref() else {
            return;
        };
        if !(c.due() || (force && c.since > 0)) {
            return;
        }
        let Some((sequence, hash)) = self.chain.last() else {
            return;
        };
        let hash = hash.to_owned();
        let message =
            crate::evidence::signing::checkpoint_message(self.chain.instance_id(), sequence, &hash);
        let checkpoint = record::Checkpoint {
            covers_sequence: sequence,
            covers_hash: hash,
            signature: crate::evidence::signing::sign(&c.key, &message),
            public_key: record::hex(c.key.verifying_key().as_bytes()),
        };
        let mut r = self.record(
            WallClock::now(),
            self.meta("event", &[], INFO, "checkpoint"),
        );
        r.checkpoint = Some(checkpoint);
        self.emit(&r);
        if let Some(c) = self.checkpoints.as_mut() {
            c.since = 0;
            c.last = Instant::now();
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.sink.write(&mut self.out).await?;
        // Not at stop: the stop record ends the run's last file.
        if !self.stopping
            && let Some(rotation) = self.sink.rotation_due()
        {
            // Sealed like any record, so the chain says where each file ends and which
            // file follows: a verifier can name a missing one.
            let mut r = self.record(WallClock::now(), self.meta("event", &[], INFO, "rotation"));
            r.rotation = Some(rotation);
            self.seal(&r);
            self.sink.rotate(&mut self.out).await?;
        }
        Ok(())
    }

    /// The record of what a full output made us drop.
    fn output_gap(&mut self, loss: crate::sink::OutputLoss) {
        let mut r = self.record(
            WallClock::now(),
            self.meta("pipeline_error", &[], INFO, "gap"),
        );
        r.gap = Some(Gap {
            source: "output",
            lost: loss.lost,
            by_kind: loss.by_kind,
            error: Some(loss.error),
            start: Some(loss.start),
            end: Some(loss.end),
        });
        self.seal(&r);
    }

    /// The first record of a run.
    pub async fn start(
        &mut self,
        programs: &[&'static str],
        all_processes: bool,
    ) -> std::io::Result<()> {
        let mut r = self.record(
            WallClock::now(),
            self.meta("event", PROCESS, START, "sensor_start"),
        );
        r.process = Some(self_process(&self.ctx.entity_ids).into());
        r.sensor.lifecycle = Some(Lifecycle {
            all_processes: Some(all_processes),
            programs: Some(programs.to_vec()),
            previous: self.sink.previous().cloned(),
            ..Lifecycle::default()
        });
        self.emit(&r);
        self.flush().await
    }

    /// Runs until the source stops; writes the stop record last.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>) -> std::io::Result<Stats> {
        let mut reason = "source ended".to_owned();
        let mut sweep = tokio::time::interval(TABLE_SWEEP);
        sweep.tick().await;
        let mut repeat_tick = tokio::time::interval(REPEAT_TICK);
        let folding = self.repeats.enabled();
        let signing = self.checkpoints.is_some();
        let mut checkpoint_tick = tokio::time::interval(Duration::from_secs(1));
        // File outputs have work that time alone makes due: syncs, retries, age rotation.
        let sink_period = self.sink.tick();
        let mut sink_tick = tokio::time::interval(sink_period.unwrap_or(Duration::from_secs(3600)));
        loop {
            let message = tokio::select! {
                message = rx.recv() => message,
                _ = sweep.tick() => {
                    self.sweep_table();
                    continue;
                }
                _ = repeat_tick.tick(), if folding => {
                    self.close_repeats(clock::boottime_ns());
                    self.flush().await?;
                    continue;
                }
                _ = checkpoint_tick.tick(), if signing => {
                    self.checkpoint(false);
                    self.flush().await?;
                    continue;
                }
                _ = sink_tick.tick(), if sink_period.is_some() => {
                    self.flush().await?;
                    continue;
                }
            };
            let Some(message) = message else { break };
            match message {
                Message::Records(batch) => {
                    self.decide_new_cgroups(&batch).await;
                    let mut from = 0;
                    while let Some(next) = self.handle_batch(&batch, from) {
                        self.flush().await?;
                        from = next;
                    }
                }
                Message::Lost(report) => self.gap(&report),
                Message::Registration(event) => self.registration(event),
                Message::Annotation(request) => self.annotation(request),
                Message::Reloaded { trigger, result } => self.reloaded(trigger, result),
                Message::Stopped { reason: why } => {
                    reason = why;
                    break;
                }
            }
            self.checkpoint(false);
            self.flush().await?;
        }
        self.stop(&reason).await?;
        Ok(self.stats)
    }

    /// Writes the folded repeats whose window is over.
    fn close_repeats(&mut self, now_ns: u64) {
        let mut closed = Vec::new();
        self.repeats.close_due(now_ns, &mut closed);
        for r in &closed {
            self.emit(r);
        }
    }

    /// Forgets processes whose exit record was lost, so the table follows the live processes,
    /// and decisions on cgroups the kernel no longer holds.
    fn sweep_table(&mut self) {
        self.held.retain(|_, (_, at)| at.elapsed() < HELD_FOR);
        self.pending.retain(|_, (_, at, _)| at.elapsed() < HELD_FOR);
        let dropped = self.table.retain_alive(|tgid, info| {
            crate::enrich::snapshot::start_ticks(tgid).is_some_and(|t| t == info.start_ticks)
        });
        let table = &self.table;
        self.process_blocks.retain(|tgid| table.get(tgid).is_some());
        if dropped > 0 {
            tracing::debug!(
                dropped,
                live = self.table.len(),
                "swept exited processes from the table"
            );
        }
    }

    async fn stop(&mut self, reason: &str) -> std::io::Result<()> {
        self.stopping = true;
        self.close_repeats(u64::MAX);
        let mut r = self.record(
            WallClock::now(),
            self.meta("event", PROCESS, END, "sensor_stop"),
        );
        r.process = Some(self_process(&self.ctx.entity_ids).into());
        let decode_errors: u64 = self.stats.decode_errors.values().sum();
        r.sensor.lifecycle = Some(Lifecycle {
            reason: Some(reason.to_owned()),
            // Including this record.
            records_written: Some(self.stats.records_written + 1),
            kernel_lost: Some(self.stats.kernel_lost),
            decode_errors: Some(decode_errors),
            output_lost: Some(self.sink.refused_total()),
            ..Lifecycle::default()
        });
        self.emit(&r);
        // The last word is signed: a checkpoint over everything, the stop record included.
        self.checkpoint(true);
        self.flush().await?;
        self.sink.finish().await
    }

    /// A new manifest takes effect for records from now on; the record says so (or why not).
    fn reloaded(&mut self, trigger: &'static str, result: Result<Arc<Registry>, String>) {
        let mut meta = self.meta("event", CONFIGURATION, CHANGE, "identities_reloaded");
        let mut lifecycle = Lifecycle {
            reason: Some(trigger.to_owned()),
            ..Lifecycle::default()
        };
        match result {
            Ok(registry) => {
                self.ctx.agents = agent_infos(&registry);
                meta.outcome = Some("success");
            }
            Err(e) => {
                meta.outcome = Some("failure");
                lifecycle.reason = Some(format!("{trigger}: {e}"));
            }
        }
        let mut r = self.record(WallClock::now(), meta);
        r.sensor.lifecycle = Some(lifecycle);
        self.emit(&r);
    }

    /// An operator's annotation: sealed, answered with its place, and signed at once.
    fn annotation(&mut self, request: crate::identity::registration::AnnotationRequest) {
        let mut r = self.record(
            WallClock::now(),
            self.meta("event", CONFIGURATION, INFO, "annotation"),
        );
        r.annotation = Some(request.annotation);
        let before = self.chain.last().map(|(sequence, _)| sequence);
        self.emit(&r);
        let placed = match self.chain.last() {
            Some((sequence, hash)) if Some(sequence) != before => Ok((sequence, hash.to_owned())),
            // Refused by a full output: counted in its gap record like any other.
            _ => Err("the output is full; the annotation was not recorded".to_owned()),
        };
        let _ = request.placed.send(placed);
        self.checkpoint(true);
    }

    fn registration(&mut self, event: crate::record::registration::RegistrationEvent) {
        let mut meta = self.meta("event", IAM, CHANGE, "agent_registration");
        meta.outcome = Some(if event.granted { "success" } else { "failure" });
        let mut r = self.record(WallClock::now(), meta);
        r.registration = Some(event);
        self.emit(&r);
    }

    fn gap(&mut self, report: &LossReport) {
        self.stats.kernel_lost += report.total();
        let mut r = self.record(
            WallClock::now(),
            self.meta("pipeline_error", &[], INFO, "gap"),
        );
        r.gap = Some(Gap {
            source: "kernel_ring_buffer",
            lost: report.total(),
            by_kind: report.by_kind.iter().copied().collect(),
            error: None,
            start: None,
            end: None,
        });
        self.emit(&r);
    }

    /// Handles the records of `batch` from number `from` on; stops early, with the number to
    /// go on from, once the output holds `FLUSH_BYTES` (the caller flushes it).
    pub fn handle_batch(&mut self, batch: &RawBatch, from: usize) -> Option<usize> {
        if from == 0 && self.clock_sampled.elapsed() >= CLOCK_RESAMPLE {
            self.clock = WallClock::sample();
            self.clock_sampled = Instant::now();
        }
        self.batch_created = Some(crate::record::time::Timestamp::of(WallClock::now()));
        let next = self.handle_records(batch, from);
        self.batch_created = None;
        next
    }

    fn handle_records(&mut self, batch: &RawBatch, from: usize) -> Option<usize> {
        let mut closed = Vec::new();
        for (i, bytes) in batch.records().enumerate().skip(from) {
            if self.out.len() >= FLUSH_BYTES && i > from {
                return Some(i);
            }
            let decoded = decode::decode(bytes).map(|mut event| {
                let wanted = self.resolve_held(&mut event) && self.resolve_pending(&mut event);
                (event, wanted)
            });
            match decoded.map(|(event, wanted)| wanted.then_some(event)) {
                Ok(None) => {}
                Ok(Some(event)) => self.handle_event(event, &mut closed),
                Err(e) => {
                    *self.stats.decode_errors.entry(e.kind()).or_default() += 1;
                    tracing::warn!(error = %e, "undecodable kernel record");
                }
            }
        }
        None
    }

    /// An event the kernel reported while holding its process's cgroup gets the decision
    /// made since; false when it turned out to be nobody's business.
    fn resolve_held(&mut self, event: &mut KernelEvent) -> bool {
        if let KernelEvent::Cgroup(c) = event {
            // Reported when decided for an agent (or when everything is).
            return self.ctx.all_processes
                || self.held.get(&c.id).is_some_and(|(d, _)| d.is_some());
        }
        let Some(cgroup) = event.attribution().held_cgroup() else {
            return true;
        };
        match self.held.get(&cgroup).and_then(|(d, _)| *d) {
            Some(a) => {
                event.set_attribution(TrackedProcess {
                    agent: a.agent,
                    method: a.method,
                    ..Default::default()
                });
                true
            }
            None => {
                event.set_attribution(TrackedProcess::default());
                self.ctx.all_processes
            }
        }
    }

    /// Decides the cgroups a batch reports as made, before any of its records is built: the
    /// records after them may be of processes in them.
    async fn decide_new_cgroups(&mut self, batch: &RawBatch) {
        for bytes in batch.records() {
            if bytes.get(..2) != Some(&sensor_common::kind::CGROUP.to_ne_bytes()) {
                continue;
            }
            let Ok(KernelEvent::Cgroup(c)) = decode::decode(bytes) else {
                continue;
            };
            let Some(selectors) = &self.ctx.selectors else {
                continue;
            };
            let decision = selectors.lock().await.decide(c.id, &c.path).await;
            self.held.insert(c.id, (decision, Instant::now()));
        }
    }

    fn handle_event(&mut self, event: KernelEvent, closed: &mut Vec<Record>) {
        match event {
            KernelEvent::Exec(mut e) => {
                if self.decide_exec(&mut e) {
                    let record = self.build(&KernelEvent::Exec(e));
                    self.emit(&record);
                    self.checkpoint(false);
                }
            }
            KernelEvent::File(e) if self.repeats.enabled() => {
                let record = self.file(&e);
                if let Some(r) = self
                    .repeats
                    .offer(repeats::key(&e), e.ktime_ns, record, closed)
                {
                    closed.push(r);
                }
                for r in closed.drain(..) {
                    self.emit(&r);
                }
            }
            KernelEvent::Cgroup(c) => {
                let record = self.cgroup_created(&c);
                self.emit(&record);
            }
            event => {
                let record = self.build(&event);
                self.emit(&record);
                self.checkpoint(false);
            }
        }
    }

    /// A cgroup made while running, with the container in it and the agent it was decided for.
    fn cgroup_created(&self, c: &CgroupEvent) -> Record {
        let mut r = self.record(
            self.clock.to_unix(c.ktime_ns),
            self.meta("event", CONFIGURATION, CREATION, "cgroup_created"),
        );
        r.cgroup = Some(CgroupCreated {
            id: c.id,
            path: String::from_utf8_lossy(&c.path).into_owned(),
        });
        if let Some(blocks) = self.container_of(c.id) {
            r.set_container(&blocks);
        }
        if let Some(Some(a)) = self.held.get(&c.id).map(|(d, _)| *d) {
            let attribution = TrackedProcess {
                agent: a.agent,
                method: a.method,
                ..Default::default()
            };
            r.identity = self.identity(attribution, 0);
        }
        r
    }

    fn build(&mut self, event: &KernelEvent) -> Record {
        let mut record = self.build_kind(event);
        let tgid = match event {
            KernelEvent::Exec(e) => e.tgid,
            KernelEvent::Fork(e) => e.child_tgid,
            KernelEvent::Exit(e) => e.tgid,
            KernelEvent::File(e) => e.tgid,
            KernelEvent::Net(e) => e.tgid,
            KernelEvent::Cgroup(_) => 0,
        };
        record.identity = self.identity(event.attribution(), tgid);
        if let Some(c) = self.table.get(tgid).and_then(|k| k.container.as_deref()) {
            record.set_container(c);
        }
        record
    }

    fn build_kind(&mut self, event: &KernelEvent) -> Record {
        match event {
            KernelEvent::Exec(e) => self.exec(e),
            KernelEvent::Fork(e) => self.fork(e),
            KernelEvent::Exit(e) => self.exit(e),
            KernelEvent::File(e) => self.file(e),
            KernelEvent::Net(e) => self.net(e),
            KernelEvent::Cgroup(c) => self.cgroup_created(c),
        }
    }
}
