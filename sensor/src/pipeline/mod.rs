//! The pipeline: the loop that takes what its [`inbox`] receives and moves it through the
//! stages ([`crate::stage`]): decode, resolve (which agent), build (records), seal (encode and
//! chain), and hands the sealed bytes to the sink, in order. It owns the back-pressure rule
//! (a full output refuses records before they enter the chain, and a `gap` record takes their
//! place), the timers (process table sweep, repeat windows, checkpoints, sink upkeep), and the
//! run's counters. Decode errors are counted by kind; kernel losses become `gap` records.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    builder::{Builder, BuilderParts},
    decode::{self, KernelEvent},
    enrich::{clock, entity::EntityIds, fspath::Classifier, snapshot::ProcSnapshot},
    evidence::sealer::{Checkpoints, Sealer},
    identity::{
        manifest::ManifestError,
        registration::{AnnotationRequest, ExceptionRequest, NotRecorded, Placed},
        registry::{Registry, SharedRegistry, Tasks},
        resolver::{Resolver, ResolverParts},
        selectors::{CgroupIndex, SharedSelectors, Tracked},
    },
    policy::{Policies, exceptions::Exceptions, resolved::Resolved},
    record::alert::Raised,
    record::{Record, host::HostInfo},
    rules::Rules,
    sink::Sink,
    stage::{Agents, Build, Detect, Resolve, Seal, SensorEvent},
};

pub mod inbox;
pub mod metrics;

use inbox::{Message, RawBatch};
use metrics::PipelineMetrics;

/// Counters the pipeline keeps for the stop record and the logs.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Records sealed and handed to the sink.
    pub records_written: u64,
    /// Records the kernel could not deliver.
    pub kernel_lost: u64,
    /// Kernel records that could not be decoded, by kind of fault.
    pub decode_errors: BTreeMap<&'static str, u64>,
}

/// What a run starts from: the facts every record carries and the state the stages share
/// with the rest of the daemon. [`Pipeline::new`] hands each stage its part.
pub struct Context {
    /// This host.
    pub host: Arc<HostInfo>,
    /// This run of the sensor.
    pub instance_id: Arc<str>,
    /// `process.entity_id`s.
    pub entity_ids: EntityIds,
    /// Sensitive-location classes for `file.class`.
    pub classifier: Classifier,
    /// Declared agents, by kernel agent number - 1, ready to serialise.
    pub agents: Agents,
    /// Registered task names by kernel task number.
    pub tasks: Tasks,
    /// Cgroups by id, for `container.*` and `orchestrator.*`.
    pub cgroups: CgroupIndex,
    /// Decides the cgroups made while running (the kernel holds them until then); none when
    /// the pipeline runs without the kernel (a replay).
    pub selectors: Option<SharedSelectors>,
    /// Every process is observed, agent or not.
    pub all_processes: bool,
    /// The environment marker (`NAME=`).
    pub marker: Option<Vec<u8>>,
    /// The declared agents (for argv selectors).
    pub registry: SharedRegistry,
    /// The kernel map processes attributed in userspace are entered in; none without a kernel.
    pub tracked: Option<Tracked>,
}

/// The loop and the stages it owns; see the module doc.
pub struct Pipeline<R = Resolver, B = Builder, S = Sealer> {
    resolver: R,
    builder: B,
    sealer: S,
    sink: Sink,
    /// Set by `stop`: the last records are taken even by a full output.
    stopping: bool,
    /// Sealed records waiting for the sink, reused across batches.
    out: Vec<u8>,
    /// Records built and not yet sealed, reused across events.
    built: Vec<Record>,
    /// Detection rules, run on each record once it is sealed; none without rules.
    detector: Option<Box<dyn Detect<Rules = Rules> + Send>>,
    /// Records sealed and not yet given to the rules, with their `chain.sequence`: the rules
    /// run over up to [`DETECT_RUN`] records at a time (see [`Self::detect_pending`]).
    pending: Vec<(Record, u64)>,
    /// Alerts raised by the record the rules are on, reused across records.
    raised: Vec<Raised>,
    /// Where the last record [`Self::emit`] was given was sealed (its `chain.sequence` and
    /// hash); `None` when a full output refused it.
    placed: Option<(u64, [u8; 64])>,
    /// The agents' policies: a decision record follows each action one does not allow.
    policies: Policies,
    /// Operators' exceptions in force (shared with the control socket).
    exceptions: Exceptions,
    /// Addresses agents looked up for their enforced egress rules (shared with the daemon).
    resolved: Resolved,
    /// The run's counters.
    pub stats: Stats,
    /// What `/metrics` reports of the pipeline (shared with the endpoint).
    metrics: Arc<PipelineMetrics>,
}

/// Output handed to the sink mid-batch once this much is waiting: the kernel copies a
/// buffer that is still in cache several times faster than a whole batch's megabytes.
const FLUSH_BYTES: usize = 256 * 1024;
/// Records sealed before the rules run over them. Run one record at a time between the
/// builder and the encoder, the rules' code and tables pushed the rest of the pipeline out of
/// the CPU's caches and back for every record: the pass with rules cost about 0.7 us a record
/// more than the pipeline without rules and the rules stage together (`cargo bench
/// --bench pipeline`, `exec`). Each stage now stays in the caches for a run of records. The
/// records wait at most until the end of their batch.
const DETECT_RUN: usize = 64;
/// How often the stages forget what no record can refer to any more (processes whose exit
/// record was lost, decisions on processes gone).
const TABLE_SWEEP: Duration = Duration::from_mins(1);
/// How often folded repeats are checked for a closed window.
const REPEAT_TICK: Duration = Duration::from_millis(100);

impl Pipeline {
    /// The pipeline of a run: the stages made from `ctx`, writing ECS records to `sink`,
    /// folding exact file repeats within `repeat_window_ms` (0: never).
    pub fn new(ctx: Context, sink: Sink, repeat_window_ms: u32) -> Self {
        let policies = policies_of(&crate::identity::registry::current(&ctx.registry));
        let mut resolver = Resolver::new(ResolverParts {
            entity_ids: ctx.entity_ids.clone(),
            selectors: ctx.selectors,
            all_processes: ctx.all_processes,
            marker: ctx.marker,
            registry: ctx.registry,
            tracked: ctx.tracked,
        });
        resolver.reload(&ctx.agents);
        let agents = ctx.agents.len();
        let sealer = Sealer::new(&ctx.instance_id);
        let builder = Builder::new(BuilderParts {
            host: ctx.host,
            instance_id: ctx.instance_id,
            entity_ids: ctx.entity_ids,
            classifier: ctx.classifier,
            agents: ctx.agents,
            tasks: ctx.tasks,
            cgroups: ctx.cgroups,
            repeat_window_ms,
        });
        let mut pipeline = Self::from_stages(resolver, builder, sealer, sink);
        pipeline.metrics.agents.set(agents as u64);
        pipeline.policies = policies;
        pipeline
    }

    /// Writes records in this format from now on.
    pub fn set_format(&mut self, format: crate::config::Format) {
        self.sealer.set_format(format);
    }

    /// Decides under the exceptions the control socket grants into `exceptions`.
    pub fn share_exceptions(&mut self, exceptions: Exceptions) {
        self.exceptions = exceptions;
    }

    /// Learns the addresses agents look up for their enforced egress rules into `resolved`.
    pub fn share_resolved(&mut self, resolved: Resolved) {
        self.resolved = resolved;
    }

    /// Signs checkpoints from now on.
    pub fn sign_with(&mut self, checkpoints: Checkpoints) {
        self.sealer.sign_with(checkpoints);
    }
}

impl<R: Resolve, B: Build, S: Seal> Pipeline<R, B, S> {
    /// A pipeline of these stages writing to `sink`.
    pub fn from_stages(resolver: R, builder: B, sealer: S, sink: Sink) -> Self {
        Self {
            resolver,
            builder,
            sealer,
            sink,
            stopping: false,
            out: Vec::with_capacity(1 << 20),
            built: Vec::new(),
            detector: None,
            pending: Vec::new(),
            raised: Vec::new(),
            placed: None,
            policies: Policies::default(),
            exceptions: Exceptions::default(),
            resolved: Resolved::default(),
            stats: Stats::default(),
            metrics: Arc::default(),
        }
    }

    /// Runs these detection rules on every record sealed from now on.
    pub fn detect_with(&mut self, detector: Box<dyn Detect<Rules = Rules> + Send>) {
        self.detector = Some(detector);
    }

    /// The pipeline's metrics, for the endpoint's registry and readiness check.
    pub fn metrics(&self) -> Arc<PipelineMetrics> {
        self.metrics.clone()
    }

    /// Runs until the inbox says the source stopped (or every sender is gone); writes the
    /// stop record last.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>) -> std::io::Result<Stats> {
        let mut reason = "source ended".to_owned();
        let mut sweep = tokio::time::interval(TABLE_SWEEP);
        sweep.tick().await;
        let mut repeat_tick = tokio::time::interval(REPEAT_TICK);
        let folding = self.builder.folds_repeats();
        let signing = self.sealer.signs();
        let mut checkpoint_tick = tokio::time::interval(Duration::from_secs(1));
        // File outputs have work that time alone makes due: syncs, retries, age rotation.
        let sink_period = self.sink.tick();
        let mut sink_tick = tokio::time::interval(sink_period.unwrap_or(Duration::from_hours(1)));
        loop {
            let message = tokio::select! {
                message = rx.recv() => message,
                _ = sweep.tick() => {
                    self.resolver.sweep();
                    self.builder.sweep();
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
                Message::Lost(report) => {
                    self.stats.kernel_lost += report.total();
                    self.metrics.kernel_lost(&report.by_kind);
                    self.sensor(SensorEvent::Gap((&report).into()));
                }
                Message::Registration(event) => self.sensor(SensorEvent::Registration(event)),
                Message::Annotation(request) => self.annotation(request),
                Message::Exception(request) => self.exception(request),
                Message::TlsNotCaptured {
                    tgid,
                    attribution,
                    reason,
                } => self.sensor(SensorEvent::TlsNotCaptured {
                    tgid,
                    attribution,
                    reason,
                }),
                Message::Reloaded { trigger, result } => self.reloaded(trigger, result),
                Message::RulesReloaded { trigger, result } => self.rules_reloaded(trigger, result),
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

    /// The first record of a run.
    pub async fn start(
        &mut self,
        programs: &[&'static str],
        all_processes: bool,
    ) -> std::io::Result<()> {
        let start = SensorEvent::Start {
            programs: programs.to_vec(),
            all_processes,
            previous: self.sink.previous().cloned(),
        };
        self.sensor(start);
        self.flush().await?;
        self.metrics.programs.set(programs.len() as u64);
        self.metrics.started.set(1);
        Ok(())
    }

    /// State records for processes that ran before the sensor started.
    pub async fn snapshot(&mut self, procs: &[&ProcSnapshot]) -> std::io::Result<()> {
        let mut built = std::mem::take(&mut self.built);
        self.builder.snapshot(procs, &mut built);
        for r in built.drain(..) {
            self.emit(r);
        }
        self.built = built;
        self.flush().await
    }

    /// Seals `record` into the output, unless a full output refuses it: refused records
    /// never enter the chain, so the chain stays whole; the gap record that counts them
    /// takes their place in it. At stop everything is taken: the last records wait for room
    /// (briefly) in the sink. Then the policy decides on it, and it waits for the rules.
    fn emit(&mut self, record: Record) {
        self.placed = self.emit_one(&record);
        if !self.policies.is_empty() {
            let at = self.placed.as_ref().map(|(sequence, hash)| {
                (*sequence, std::str::from_utf8(hash).expect("hex digits"))
            });
            if let Some((decision, identity)) =
                self.policies
                    .decide(&record, at, &self.exceptions, &self.resolved)
            {
                let r = self.builder.sensor(SensorEvent::Decision {
                    decision: Box::new(decision),
                    identity,
                });
                let placed = self.emit_one(&r);
                self.await_rules(r, placed);
            }
            self.policies.learn(&record, &self.resolved);
        }
        self.await_rules(record, self.placed);
    }

    /// [`Self::emit`] without the policy decision and the rules; where the record was sealed
    /// (`None`: refused).
    fn emit_one(&mut self, record: &Record) -> Option<(u64, [u8; 64])> {
        if !self.stopping && !self.sink.admits(self.out.len()) {
            self.sink.refuse(record.event.action, &record.timestamp);
            return None;
        }
        if let Some(loss) = self.sink.take_loss(self.stopping) {
            let gap = self.builder.sensor(SensorEvent::Gap(loss.into()));
            self.seal(&gap);
        }
        self.seal(record);
        self.sealer.last().map(|(sequence, hash)| {
            let hash: [u8; 64] = hash.as_bytes().try_into().expect("64 hex digits");
            (sequence, hash)
        })
    }

    /// Keeps `record`, sealed at `placed`, for the rules (when there are rules, and it was
    /// not refused); runs them once [`DETECT_RUN`] records wait.
    fn await_rules(&mut self, record: Record, placed: Option<(u64, [u8; 64])>) {
        if let (Some(_), Some((sequence, _))) = (&self.detector, placed) {
            self.pending.push((record, sequence));
            if self.pending.len() >= DETECT_RUN {
                self.detect_pending();
            }
        }
    }

    /// Runs the rules on the records waiting for them, in the order they were sealed, and
    /// seals the alerts each raised (a full output refuses them as it refuses any record:
    /// counted in a gap record). An alert names its records by sequence number; it comes
    /// after them in the chain, within the same batch.
    fn detect_pending(&mut self) {
        let Some(detector) = self.detector.as_mut() else {
            return;
        };
        for (record, sequence) in &self.pending {
            detector.detect(record, *sequence, &mut self.raised);
        }
        self.pending.clear();
        let mut raised = std::mem::take(&mut self.raised);
        for alert in raised.drain(..) {
            let r = self.builder.sensor(SensorEvent::Alert(Box::new(alert)));
            if !self.stopping && !self.sink.admits(self.out.len()) {
                self.sink.refuse(r.event.action, &r.timestamp);
                continue;
            }
            self.seal(&r);
        }
        self.raised = raised;
    }

    fn seal(&mut self, record: &Record) {
        self.sealer.seal(record, &mut self.out);
        self.stats.records_written += 1;
    }

    /// A record of the sensor's own, emitted.
    fn sensor(&mut self, event: SensorEvent) {
        let r = self.builder.sensor(event);
        self.emit(r);
    }

    /// Writes a signed checkpoint over the chain so far, if one is due (or `force`d).
    fn checkpoint(&mut self, force: bool) {
        if let Some(checkpoint) = self.sealer.checkpoint(force) {
            self.sensor(SensorEvent::Checkpoint(checkpoint));
        }
    }

    /// Seals a `gap` record for the records each sink's queue could not take, once it has
    /// room again (or `now`): the trail says which records that sink will not get.
    fn sink_losses(&mut self, now: bool) {
        for loss in self.sink.take_sink_losses(now) {
            let gap = self.builder.sensor(SensorEvent::Gap(loss.into()));
            self.seal(&gap);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.detect_pending();
        self.sink_losses(false);
        self.sink.write(&mut self.out).await?;
        self.update_metrics();
        // Not at stop: the stop record ends the run's last file.
        if !self.stopping
            && let Some(rotation) = self.sink.rotation_due()
        {
            // Sealed like any record, so the chain says where each file ends and which
            // file follows: a verifier can name a missing one.
            let r = self.builder.sensor(SensorEvent::Rotation(rotation));
            self.seal(&r);
            self.sink.rotate(&mut self.out).await?;
        }
        // Old files go only after a record naming them is on disk: the verifier tells
        // retention from deletion by it.
        if !self.stopping
            && let Some(retention) = self.sink.retention_due()
        {
            let r = self.builder.sensor(SensorEvent::Retention(retention));
            self.seal(&r);
            self.sink.retire(&mut self.out).await?;
        }
        Ok(())
    }

    /// Copies the stages' own totals into the metrics: once per flush, not per record.
    fn update_metrics(&self) {
        let m = &self.metrics;
        m.records_sealed.raise_to(self.stats.records_written);
        m.output_refused.raise_to(self.sink.refused_total());
        m.output_held_bytes.set(self.sink.held_bytes() as u64);
        m.output_admits.set(u64::from(self.sink.admits(0)));
        m.processes.set(self.builder.processes().len() as u64);
        *m.llm_unparsed.lock().expect("no poisoned lock") = self.builder.connections_unparsed();
        if let Some(detector) = &self.detector {
            *m.rule_time.lock().expect("no poisoned lock") = detector.evaluation_time();
            let counts = detector.counts();
            m.rules_evicted.raise_to(counts.evicted);
            m.rules_suppressed.raise_to(counts.suppressed);
            m.rules_correlation_dropped
                .raise_to(counts.correlation_dropped);
        }
    }

    /// Writes the folded repeats whose window is over.
    fn close_repeats(&mut self, now_ns: u64) {
        let mut closed = std::mem::take(&mut self.built);
        self.builder.close_repeats(now_ns, &mut closed);
        for r in closed.drain(..) {
            self.emit(r);
        }
        self.built = closed;
    }

    async fn stop(&mut self, reason: &str) -> std::io::Result<()> {
        self.stopping = true;
        self.close_repeats(u64::MAX);
        self.detect_pending();
        self.sink_losses(true);
        let decode_errors: u64 = self.stats.decode_errors.values().sum();
        self.sensor(SensorEvent::Stop {
            reason: reason.to_owned(),
            // Including this record.
            records_written: self.stats.records_written + 1,
            kernel_lost: self.stats.kernel_lost,
            decode_errors,
            output_lost: self.sink.refused_total(),
        });
        self.detect_pending();
        // The last word is signed: a checkpoint over everything, the stop record included.
        self.checkpoint(true);
        self.flush().await?;
        self.sink.finish().await
    }

    /// A new manifest takes effect for records from now on; the record says so (or why not).
    fn reloaded(&mut self, trigger: &'static str, result: Result<Arc<Registry>, ManifestError>) {
        let error = match result {
            Ok(registry) => {
                let agents = crate::builder::identity::agent_infos(&registry);
                self.metrics.agents.set(agents.len() as u64);
                self.policies = policies_of(&registry);
                self.resolver.reload(&agents);
                self.builder.reload(&agents);
                None
            }
            Err(e) => Some(e.to_string()),
        };
        self.sensor(SensorEvent::Reloaded { trigger, error });
    }

    /// New detection rules apply from the next record on; the record says so (or why not).
    fn rules_reloaded(&mut self, trigger: &'static str, result: Result<Box<Rules>, String>) {
        // The records sealed before the new rules came meet the old ones.
        self.detect_pending();
        let result = match (result, self.detector.as_mut()) {
            (Ok(rules), Some(detector)) => {
                let n = rules.len();
                detector.reload(*rules);
                Ok(n)
            }
            (Ok(_), None) => Err("the sensor was started without rules".to_owned()),
            (Err(e), _) => Err(e),
        };
        self.sensor(SensorEvent::RulesReloaded { trigger, result });
    }

    /// An operator's annotation: sealed, answered with its place, and signed at once.
    fn annotation(&mut self, request: AnnotationRequest) {
        self.sensor(SensorEvent::Annotation(request.annotation));
        // Its own place, not that of an alert a rule sealed after it.
        let placed = match self.placed {
            Some((sequence, hash)) => Ok(Placed {
                sequence,
                hash: String::from_utf8_lossy(&hash).into_owned(),
            }),
            // Refused by a full output: counted in its gap record like any other.
            _ => Err(NotRecorded::OutputFull),
        };
        let _ = request.placed.send(placed);
        self.checkpoint(true);
    }

    /// An operator's exception: sealed, answered with its place, and signed at once.
    fn exception(&mut self, request: ExceptionRequest) {
        self.sensor(SensorEvent::Exception(request.exception));
        // Its own place, not that of an alert a rule sealed after it.
        let placed = match self.placed {
            Some((sequence, hash)) => Ok(Placed {
                sequence,
                hash: String::from_utf8_lossy(&hash).into_owned(),
            }),
            _ => Err(NotRecorded::OutputFull),
        };
        let _ = request.placed.send(placed);
        self.checkpoint(true);
    }

    /// Decides the cgroups a batch reports as made, before any of its records is resolved.
    async fn decide_new_cgroups(&mut self, batch: &RawBatch) {
        for bytes in batch.records() {
            if bytes.get(..2) != Some(&sensor_common::kind::CGROUP.to_ne_bytes()) {
                continue;
            }
            if let Ok(KernelEvent::Cgroup(c)) = decode::decode(bytes) {
                self.resolver.decide_cgroup(&c).await;
            }
        }
    }

    /// Handles the records of `batch` from number `from` on; stops early, with the number to
    /// go on from, once the output holds `FLUSH_BYTES` (the caller flushes it).
    fn handle_batch(&mut self, batch: &RawBatch, from: usize) -> Option<usize> {
        self.builder.begin_batch();
        let next = self.handle_records(batch, from);
        self.builder.end_batch();
        next
    }

    fn handle_records(&mut self, batch: &RawBatch, from: usize) -> Option<usize> {
        let mut built = std::mem::take(&mut self.built);
        let mut next = None;
        for (i, bytes) in batch.records().enumerate().skip(from) {
            if self.out.len() >= FLUSH_BYTES && i > from {
                next = Some(i);
                break;
            }
            self.metrics.kernel_record(bytes);
            let mut event = match decode::decode(bytes) {
                Ok(event) => event,
                Err(e) => {
                    *self.stats.decode_errors.entry(e.kind()).or_default() += 1;
                    self.metrics.decode_error(e.kind());
                    tracing::warn!(error = %e, "undecodable kernel record");
                    continue;
                }
            };
            let Some(attribution) = self.resolver.resolve(&mut event, self.builder.processes())
            else {
                continue;
            };
            let record = self.builder.build(&event, attribution, &mut built);
            for r in built.drain(..) {
                self.emit(r);
            }
            if let Some(r) = record {
                self.emit(r);
            }
            self.checkpoint(false);
        }
        self.built = built;
        self.detect_pending();
        next
    }
}

/// The policies of the agents `registry` declares now.
fn policies_of(registry: &Registry) -> Policies {
    let declared = (1..=u32::try_from(registry.len()).unwrap_or(u32::MAX))
        .filter(|n| registry.is_declared(*n))
        .filter_map(|n| registry.get(n));
    Policies::new(declared.map(|a| (a.id.as_str(), &a.policy, a.allowed_tasks.as_slice())))
}
