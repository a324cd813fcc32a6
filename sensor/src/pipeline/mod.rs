//! The pipeline: takes what the source sends, decodes it, enriches it with what userspace knows
//! (process table, wall-clock time, host), builds records and hands them to the sink, in order.
//! Decode errors are counted by kind; kernel losses become `gap` records. Record builders live
//! in the submodules by family.
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use sensor_common::{TrackedProcess, method, tracked_flags};

use crate::{
    activity,
    attribution::{Registry, Tasks},
    clock::{self, WallClock},
    container::{self, ContainerRef},
    decode::{self, ExecEvent, ExitEvent, ExitStatus, FileEvent, ForkEvent, KernelEvent, NetEvent},
    dns_cache::DnsCache,
    entity::EntityIds,
    fspath::Classifier,
    host::HostInfo,
    process_table::{ProcessInfo, ProcessTable},
    record::{
        self, AgentInfo, AttributionInfo, Cgroup, ContainerInfo, EventMeta, Gap, Hop, HopProcess,
        Id, Identity, Lifecycle, Namespaces, Orchestrator, OrchestratorResource, Owners, Parent,
        Process, Record, SensorBlock, Signal, TaskInfo, Thread,
    },
    repeats::{self, RepeatFilter},
    sink::Sink,
    snapshot::ProcSnapshot,
    source::{LossReport, RawBatch, SourceMessage},
};

mod file_and_network;
mod identity;
mod process;

pub use identity::agent_infos;
use identity::set_container;
use process::self_process;

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
    pub agents: Vec<Arc<AgentInfo>>,
    /// Registered task names by kernel task number.
    pub tasks: Tasks,
    /// cgroup paths by id, for `container.*`.
    pub cgroups: crate::selectors::CgroupIndex,
    /// The environment marker (`NAME=`), and the kernel map a marked process is entered in.
    pub marker: Option<(Vec<u8>, crate::selectors::Tracked)>,
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
    clock: WallClock,
    clock_sampled: Instant,
    table: ProcessTable,
    dns: DnsCache,
    repeats: RepeatFilter,
    /// Every record's place in the evidence chain.
    chain: crate::evidence::Chain,
    /// Signs checkpoints, when a key is configured.
    checkpoints: Option<Checkpoints>,
    sink: Sink,
    /// Serialised records waiting for the sink, reused across batches.
    out: Vec<u8>,
    pub stats: Stats,
}

const CLOCK_RESAMPLE: Duration = Duration::from_secs(1);
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
const NETWORK: &[&str] = &["network"];
const INFO: &[&str] = &["info"];

impl Pipeline {
    pub fn new(ctx: Context, sink: Sink, repeat_window_ms: u32) -> Self {
        let chain = crate::evidence::Chain::new(&ctx.instance_id);
        Self {
            chain,
            checkpoints: None,
            ctx,
            clock: WallClock::sample(),
            clock_sampled: Instant::now(),
            table: ProcessTable::default(),
            dns: DnsCache::new(DNS_CACHE_ENTRIES),
            repeats: RepeatFilter::new(repeat_window_ms),
            sink,
            out: Vec::with_capacity(1 << 20),
            stats: Stats::default(),
        }
    }

    fn meta(
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
            created: clock::rfc3339(WallClock::now()),
        }
    }

    fn record(&self, timestamp: clock::UnixNanos, event: EventMeta) -> Record {
        Record {
            timestamp: clock::rfc3339(timestamp),
            schema_version: record::SCHEMA_VERSION,
            event,
            identity: None,
            process: None,
            container: None,
            orchestrator: None,
            user: None,
            file: None,
            source: None,
            destination: None,
            network: None,
            dns: None,
            syscall: None,
            error: None,
            gap: None,
            checkpoint: None,
            registration: None,
            host: self.ctx.host.clone(),
            sensor: SensorBlock {
                instance_id: self.ctx.instance_id.clone(),
                version: env!("CARGO_PKG_VERSION"),
                lifecycle: None,
            },
        }
    }

    fn emit(&mut self, record: &Record) {
        let start = self.out.len();
        serde_json::to_writer(&mut self.out, record).expect("records serialise to memory");
        self.chain.seal(&mut self.out, start);
        self.stats.records_written += 1;
        if let Some(c) = self.checkpoints.as_mut() {
            c.since += 1;
        }
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
        let message = crate::signing::checkpoint_message(self.chain.instance_id(), sequence, &hash);
        let checkpoint = record::Checkpoint {
            covers_sequence: sequence,
            covers_hash: hash,
            signature: crate::signing::sign(&c.key, &message),
            public_key: record::hex(c.key.verifying_key().as_bytes()),
        };
        let mut r = self.record(
            WallClock::now(),
            Self::meta("event", &[], INFO, "checkpoint"),
        );
        r.checkpoint = Some(checkpoint);
        self.emit(&r);
        if let Some(c) = self.checkpoints.as_mut() {
            c.since = 0;
            c.last = Instant::now();
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.sink.write(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The first record of a run.
    pub async fn start(
        &mut self,
        programs: &[&'static str],
        all_processes: bool,
    ) -> std::io::Result<()> {
        let mut r = self.record(
            WallClock::now(),
            Self::meta("event", PROCESS, START, "sensor_start"),
        );
        r.process = Some(self_process(&self.ctx.entity_ids));
        r.sensor.lifecycle = Some(Lifecycle {
            reason: None,
            all_processes: Some(all_processes),
            programs: Some(programs.to_vec()),
            records_written: None,
            kernel_lost: None,
            decode_errors: None,
        });
        self.emit(&r);
        self.flush().await
    }

    /// Runs until the source stops; writes the stop record last.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SourceMessage>) -> std::io::Result<Stats> {
        let mut reason = "source ended".to_owned();
        let mut sweep = tokio::time::interval(TABLE_SWEEP);
        sweep.tick().await;
        let mut repeat_tick = tokio::time::interval(REPEAT_TICK);
        let folding = self.repeats.enabled();
        let signing = self.checkpoints.is_some();
        let mut checkpoint_tick = tokio::time::interval(Duration::from_secs(1));
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
            };
            let Some(message) = message else { break };
            match message {
                SourceMessage::Records(batch) => self.handle_batch(&batch),
                SourceMessage::Lost(report) => self.gap(&report),
                SourceMessage::Registration(event) => self.registration(event),
                SourceMessage::Reloaded { trigger, result } => self.reloaded(trigger, result),
                SourceMessage::Stopped { reason: why } => {
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

    /// Forgets processes whose exit record was lost, so the table follows the live processes.
    fn sweep_table(&mut self) {
        let ids = &self.ctx.entity_ids;
        let dropped = self.table.retain_alive(|tgid, info| {
            crate::snapshot::start_ticks(tgid)
                .is_some_and(|t| *ids.for_ticks(tgid, t) == *info.entity_id)
        });
        if dropped > 0 {
            tracing::debug!(
                dropped,
                live = self.table.len(),
                "swept exited processes from the table"
            );
        }
    }

    async fn stop(&mut self, reason: &str) -> std::io::Result<()> {
        self.close_repeats(u64::MAX);
        let mut r = self.record(
            WallClock::now(),
            Self::meta("event", PROCESS, END, "sensor_stop"),
        );
        r.process = Some(self_process(&self.ctx.entity_ids));
        let decode_errors: u64 = self.stats.decode_errors.values().sum();
        r.sensor.lifecycle = Some(Lifecycle {
            reason: Some(reason.to_owned()),
            all_processes: None,
            programs: None,
            // Including this record.
            records_written: Some(self.stats.records_written + 1),
            kernel_lost: Some(self.stats.kernel_lost),
            decode_errors: Some(decode_errors),
        });
        self.emit(&r);
        // The last word is signed: a checkpoint over everything, the stop record included.
        self.checkpoint(true);
        self.flush().await?;
        self.sink.sync().await
    }

    /// A new manifest takes effect for records from now on; the record says so (or why not).
    fn reloaded(&mut self, trigger: &'static str, result: Result<Arc<Registry>, String>) {
        let mut meta = Self::meta("event", CONFIGURATION, CHANGE, "identities_reloaded");
        let mut lifecycle = Lifecycle {
            reason: Some(trigger.to_owned()),
            all_processes: None,
            programs: None,
            records_written: None,
            kernel_lost: None,
            decode_errors: None,
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

    fn registration(&mut self, event: crate::registration::RegistrationEvent) {
        let mut meta = Self::meta("event", IAM, CHANGE, "agent_registration");
        meta.outcome = Some(if event.granted { "success" } else { "failure" });
        let mut r = self.record(WallClock::now(), meta);
        r.registration = Some(event);
        self.emit(&r);
    }

    fn gap(&mut self, report: &LossReport) {
        self.stats.kernel_lost += report.total();
        let mut r = self.record(
            WallClock::now(),
            Self::meta("pipeline_error", &[], INFO, "gap"),
        );
        r.gap = Some(Gap {
            source: "kernel_ring_buffer",
            lost: report.total(),
            by_kind: report.by_kind.iter().copied().collect(),
        });
        self.emit(&r);
    }

    pub fn handle_batch(&mut self, batch: &RawBatch) {
        if self.clock_sampled.elapsed() >= CLOCK_RESAMPLE {
            self.clock = WallClock::sample();
            self.clock_sampled = Instant::now();
        }
        let mut closed = Vec::new();
        for bytes in batch.records() {
            match decode::decode(bytes) {
                Ok(KernelEvent::Exec(mut e)) if e.env.is_some() => {
                    // Reported only for the marker check: an agent if it carries a valid
                    // marker, otherwise nobody's business.
                    if self.check_marker(&mut e) {
                        let record = self.build(&KernelEvent::Exec(e));
                        self.emit(&record);
                    }
                }
                Ok(KernelEvent::File(e)) if self.repeats.enabled() => {
                    let record = self.file(&e);
                    if let Some(r) =
                        self.repeats
                            .offer(repeats::key(&e), e.ktime_ns, record, &mut closed)
                    {
                        closed.push(r);
                    }
                    for r in closed.drain(..) {
                        self.emit(&r);
                    }
                }
                Ok(event) => {
                    let record = self.build(&event);
                    self.emit(&record);
                    self.checkpoint(false);
                }
                Err(e) => {
                    *self.stats.decode_errors.entry(e.kind()).or_default() += 1;
                    tracing::warn!(error = %e, "undecodable kernel record");
                }
            }
        }
    }

    fn build(&mut self, event: &KernelEvent) -> Record {
        let mut record = self.build_kind(event);
        let tgid = match event {
            KernelEvent::Exec(e) => e.tgid,
            KernelEvent::Fork(e) => e.child_tgid,
            KernelEvent::Exit(e) => e.tgid,
            KernelEvent::File(e) => e.tgid,
            KernelEvent::Net(e) => e.tgid,
        };
        record.identity = self.identity(event.attribution(), tgid);
        if let Some(c) = self.table.get(tgid).and_then(|k| k.container.as_deref()) {
            set_container(&mut record, c);
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
        }
    }
}
