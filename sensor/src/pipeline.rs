//! The pipeline: takes what the source sends, decodes it, enriches it with what userspace knows
//! (process table, wall-clock time, host), builds records and hands them to the sink, in order.
//! Decode errors are counted by kind; kernel losses become `gap` records.
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

/// The `identity.agent` block of each declared agent.
pub fn agent_infos(registry: &Registry) -> Vec<Arc<AgentInfo>> {
    (1..=registry.len() as u32)
        .filter_map(|n| registry.get(n))
        .map(|d| {
            Arc::new(AgentInfo {
                id: d.id.clone(),
                spiffe_id: d.spiffe_id.clone(),
                name: d.name.clone(),
                purpose: d.purpose.clone(),
                team: d.team.clone(),
                data_sensitivity: d.data_sensitivity.clone(),
                owners: Owners {
                    business: d.business_owner.clone(),
                    technical: d.technical_owner.clone(),
                },
                allowed_tasks: d.allowed_tasks.clone(),
            })
        })
        .collect()
}

fn method_name(m: u8) -> &'static str {
    match m {
        method::REGISTRATION => "registration",
        method::CGROUP => "cgroup",
        method::EXECUTABLE => "executable",
        method::UID => "uid",
        method::ENVIRONMENT => "environment",
        _ => "none",
    }
}

fn trust_name(m: u8) -> &'static str {
    match method::trust(m) {
        3 => "strong",
        2 => "medium",
        _ => "weak",
    }
}

pub struct Pipeline {
    ctx: Context,
    clock: WallClock,
    clock_sampled: Instant,
    table: ProcessTable,
    dns: DnsCache,
    repeats: RepeatFilter,
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
        Self {
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
        serde_json::to_writer(&mut self.out, record).expect("records serialise to memory");
        self.out.push(b'\n');
        self.stats.records_written += 1;
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

    /// State records for processes that ran before the sensor started.
    pub async fn snapshot(&mut self, procs: &[&ProcSnapshot]) -> std::io::Result<()> {
        for p in procs {
            let ids = &self.ctx.entity_ids;
            let entity_id: Arc<str> = ids.for_ticks(p.tgid, p.start_ticks).into();
            let parent_entity = procs
                .iter()
                .find(|q| q.tgid == p.ppid)
                .map(|q| ids.for_ticks(q.tgid, q.start_ticks));
            let start_ns = p.start_ticks * (1_000_000_000 / ticks_per_second());
            let mut proc = Process {
                pid: p.tgid,
                entity_id: entity_id.to_string(),
                start: Some(clock::rfc3339(self.clock.to_unix(start_ns))),
                parent: parent_entity.clone().map(|e| Parent {
                    pid: p.ppid,
                    entity_id: e,
                    thread: None,
                }),
                user: Some(Id::of(p.euid)),
                group: Some(Id::of(p.egid)),
                real_user: Some(Id::of(p.uid)),
                real_group: Some(Id::of(p.gid)),
                cgroup: p.cgroup_id.map(|id| Cgroup { id }),
                ..Default::default()
            };
            proc.set_name(&p.comm);
            if let Some(exe) = &p.executable {
                proc.set_executable(exe);
            }
            if !p.args.is_empty() {
                proc.set_args(&p.args);
                proc.args_count = Some(p.args.len() as u32);
            }
            let mut r = self.record(
                WallClock::now(),
                Self::meta("state", PROCESS, INFO, "snapshot"),
            );
            r.user = Some(Id::of(p.euid));
            r.process = Some(proc);
            if let Some(a) = p.agent {
                r.identity = self.identity(a, p.tgid);
            }
            if let Some(c) = p.cgroup_id.and_then(|id| self.container_of(id)) {
                set_container(&mut r, &c);
            }
            self.emit(&r);
            self.table.insert(
                p.tgid,
                ProcessInfo {
                    entity_id,
                    ppid: p.ppid,
                    parent_entity_id: parent_entity.map(Arc::from),
                    name: Arc::from(&p.comm[..]),
                    executable: p.executable.as_deref().map(Arc::from),
                    euid: Some(p.euid),
                    agent: p.agent.map_or(0, |a| a.agent),
                    chain: Arc::from([]),
                    container: p.cgroup_id.and_then(|id| self.container_of(id)),
                },
            );
        }
        self.flush().await
    }

    /// Runs until the source stops; writes the stop record last.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SourceMessage>) -> std::io::Result<Stats> {
        let mut reason = "source ended".to_owned();
        let mut sweep = tokio::time::interval(TABLE_SWEEP);
        sweep.tick().await;
        let mut repeat_tick = tokio::time::interval(REPEAT_TICK);
        let folding = self.repeats.enabled();
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

    /// The container whose cgroup this is, if the cgroup is a container's.
    fn container_of(&self, cgroup_id: u64) -> Option<Arc<ContainerRef>> {
        let index = self.ctx.cgroups.read().expect("no poisoned lock");
        container::from_cgroup_path(index.get(&cgroup_id)?).map(Arc::new)
    }

    /// Attributes an exec no selector claimed by its environment marker (weak), entering it in
    /// the kernel map so its descendants and later events follow. False when it has none.
    fn check_marker(&mut self, e: &mut ExecEvent) -> bool {
        let Some((prefix, tracked)) = &self.ctx.marker else {
            return false;
        };
        let env = e.env.take().unwrap_or_default();
        let Some(value) = env
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_slice()))
        else {
            return false;
        };
        let Some(number) = self
            .ctx
            .agents
            .iter()
            .position(|a| a.id.as_bytes() == value)
            .map(|i| i as u32 + 1)
        else {
            tracing::debug!(
                pid = e.tgid,
                "environment marker names no declared agent; ignored"
            );
            return false;
        };
        let mut map = tracked.lock().expect("no poisoned lock");
        // The kernel may have attributed it since, more strongly (a registration): keep that.
        if let Ok(existing) = map.get(&e.tgid, 0)
            && existing.agent != 0
        {
            e.attribution = existing;
            return true;
        }
        let weak = TrackedProcess {
            agent: number,
            method: method::ENVIRONMENT,
            ..Default::default()
        };
        let _ = map.insert(e.tgid, weak, 0);
        e.attribution = weak;
        true
    }

    /// The identity block of a process the kernel attributed to an agent.
    fn identity(&self, a: TrackedProcess, tgid: u32) -> Option<Identity> {
        let agent = self
            .ctx
            .agents
            .get((a.agent as usize).checked_sub(1)?)?
            .clone();
        let chain = self
            .table
            .get(tgid)
            .filter(|k| k.agent == a.agent)
            .map_or_else(|| Arc::from([]), |k| k.chain.clone());
        Some(Identity {
            agent,
            task: self
                .ctx
                .tasks
                .get(a.task)
                .map(|(id, session)| TaskInfo { id, session }),
            attribution: AttributionInfo {
                method: method_name(a.method),
                trust: trust_name(a.method),
                inherited: a.flags & tracked_flags::INHERITED != 0,
            },
            delegation: chain,
        })
    }

    /// The delegation chain of a process that just exec'd as agent `agent`: its chain before,
    /// plus a hop when the agent changed.
    fn chain_after_exec(&self, tgid: u32, entity_id: &str, a: TrackedProcess) -> (u32, Arc<[Hop]>) {
        let before = self.table.get(tgid);
        let (prev_agent, prev_chain) = match before {
            Some(k) => (k.agent, k.chain.clone()),
            None => (a.delegated_from, Arc::from([])),
        };
        if a.agent == 0 || a.agent == prev_agent || prev_agent == 0 {
            let chain = if a.agent == prev_agent {
                prev_chain
            } else {
                Arc::from([])
            };
            return (a.agent, chain);
        }
        let name = |n: u32| {
            self.ctx
                .agents
                .get((n as usize).wrapping_sub(1))
                .map_or_else(|| n.to_string(), |i| i.id.clone())
        };
        let mut hops: Vec<Hop> = prev_chain
            .iter()
            .map(|h| Hop {
                from: h.from.clone(),
                to: h.to.clone(),
                process: HopProcess {
                    pid: h.process.pid,
                    entity_id: h.process.entity_id.clone(),
                },
            })
            .collect();
        hops.push(Hop {
            from: name(prev_agent),
            to: name(a.agent),
            process: HopProcess {
                pid: tgid,
                entity_id: entity_id.to_owned(),
            },
        });
        (a.agent, hops.into())
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

    /// The process an activity record is about, with what the table knows of it.
    fn process_ref(&self, tgid: u32, pid: u32, start_boottime: u64, comm: &[u8]) -> Process {
        let entity_id = self.ctx.entity_ids.for_kernel(tgid, start_boottime);
        let known = self.table.get(tgid).filter(|k| *k.entity_id == *entity_id);
        let mut p = Process {
            pid: tgid,
            thread: Some(Thread { id: pid }),
            ..Default::default()
        };
        p.set_name(comm);
        if let Some(k) = known {
            apply_known(&mut p, k);
        }
        p.entity_id = entity_id;
        p
    }

    fn file(&mut self, e: &FileEvent) -> Record {
        let kind = activity::file_kind(e.syscall, e.flags);
        let (outcome, error) = activity::outcome(e.ret);
        let mut meta = Self::meta("event", FILE, kind.types, kind.action);
        meta.outcome = Some(outcome);
        let mut r = self.record(self.clock.to_unix(e.ktime_ns), meta);
        r.process = Some(self.process_ref(e.tgid, e.pid, e.start_boottime, &e.comm));
        r.file = Some(activity::file_block(e, &self.ctx.classifier));
        r.syscall = Some(activity::syscall_block(e.syscall, e.ret));
        r.error = error;
        r
    }

    fn net(&mut self, e: &NetEvent) -> Record {
        let (action, types) = activity::net_kind(e);
        let (outcome, error) = activity::net_outcome(e);
        let socket_id = (e.sock_id != 0).then(|| self.socket_id(e.sock_id));
        let (source, mut destination, network) = activity::net_blocks(e, socket_id);
        let dns = (!e.payload.is_empty())
            .then(|| activity::dns_block(&e.payload))
            .flatten();
        if let Some(d) = dns.as_ref().filter(|d| d.r#type == "answer")
            && let Some(q) = &d.question
        {
            for ip in &d.resolved_ip {
                if let Ok(ip) = ip.parse() {
                    self.dns.insert(ip, &q.name);
                }
            }
        }
        if let Some(dest) = destination.as_mut() {
            let ip = dest.ip.as_deref().and_then(|ip| ip.parse().ok());
            dest.domain = ip.and_then(|ip| self.dns.get(&ip)).map(str::to_owned);
        }
        let mut meta = Self::meta("event", NETWORK, types, action);
        meta.outcome = Some(outcome);
        let mut r = self.record(self.clock.to_unix(e.ktime_ns), meta);
        r.process = Some(self.process_ref(e.tgid, e.pid, e.start_boottime, &e.comm));
        r.source = source;
        r.destination = destination;
        r.network = Some(network);
        r.dns = dns;
        r.syscall = Some(activity::syscall_block(e.syscall, e.ret));
        r.error = error;
        r
    }

    /// A per-run name for a kernel socket: the kernel address itself must not leak (KASLR).
    fn socket_id(&self, sock: u64) -> String {
        use sha2::{Digest as _, Sha256};
        let digest = Sha256::new()
            .chain_update(self.ctx.instance_id.as_bytes())
            .chain_update(sock.to_le_bytes())
            .finalize();
        record::hex(&digest[..8])
    }

    fn exec(&mut self, e: &ExecEvent) -> Record {
        let ids = &self.ctx.entity_ids;
        let entity_id: Arc<str> = ids.for_kernel(e.tgid, e.start_boottime).into();
        let parent_entity: Arc<str> = ids.for_kernel(e.ppid, e.parent_start_boottime).into();
        // The kernel's absolute path of what runs; the name as passed when that failed.
        let exe: &[u8] = if e.exe.is_empty() {
            &e.filename
        } else {
            &e.exe
        };
        let (agent, chain) = self.chain_after_exec(e.tgid, &entity_id, e.attribution);
        self.table.insert(
            e.tgid,
            ProcessInfo {
                entity_id: entity_id.clone(),
                ppid: e.ppid,
                parent_entity_id: Some(parent_entity.clone()),
                name: Arc::from(&e.comm[..]),
                executable: Some(Arc::from(exe)),
                euid: Some(e.euid),
                agent,
                chain,
                container: self.container_of(e.cgroup_id),
            },
        );
        let mut p = Process {
            pid: e.tgid,
            entity_id: entity_id.to_string(),
            thread: Some(Thread { id: e.pid }),
            args_count: Some(e.args_count),
            args_truncated: e.args_truncated,
            start: Some(clock::rfc3339(self.clock.to_unix(e.start_boottime))),
            parent: Some(Parent {
                pid: e.ppid,
                entity_id: parent_entity.to_string(),
                thread: None,
            }),
            user: Some(Id::of(e.euid)),
            group: Some(Id::of(e.egid)),
            real_user: Some(Id::of(e.uid)),
            real_group: Some(Id::of(e.gid)),
            login_user: e.loginuid.map(Id::of),
            session_id: e.sessionid,
            cgroup: Some(Cgroup { id: e.cgroup_id }),
            namespaces: Some(Namespaces {
                pid: e.pid_ns,
                mnt: e.mnt_ns,
            }),
            ..Default::default()
        };
        p.set_name(&e.comm);
        p.set_executable(exe);
        if e.filename != exe {
            p.set_exec_path(&e.filename);
        }
        if !e.args_unreadable {
            p.set_args(&e.args);
        }
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            Self::meta("event", PROCESS, START, "exec"),
        );
        r.user = Some(Id::of(e.euid));
        r.process = Some(p);
        r
    }

    fn fork(&mut self, e: &ForkEvent) -> Record {
        let ids = &self.ctx.entity_ids;
        let parent_entity: Arc<str> = ids
            .for_kernel(e.parent_tgid, e.parent_start_boottime)
            .into();
        let known = self
            .table
            .get(e.parent_tgid)
            .filter(|p| p.entity_id == parent_entity)
            .cloned();
        let mut p = Process {
            pid: e.child_tgid,
            thread: Some(Thread { id: e.child_pid }),
            start: Some(clock::rfc3339(self.clock.to_unix(e.start_boottime))),
            real_user: Some(Id::of(e.uid)),
            real_group: Some(Id::of(e.gid)),
            cgroup: Some(Cgroup { id: e.cgroup_id }),
            ..Default::default()
        };
        p.set_name(&e.comm);
        if let Some(exe) = known.as_ref().and_then(|k| k.executable.as_deref()) {
            p.set_executable(exe);
        }
        let action = if e.thread {
            // A thread belongs to the caller's process: same entity, the parent is the creating thread.
            p.entity_id = parent_entity.to_string();
            let grand = known.as_ref();
            p.parent = grand.and_then(|k| {
                k.parent_entity_id.as_ref().map(|pe| Parent {
                    pid: k.ppid,
                    entity_id: pe.to_string(),
                    thread: None,
                })
            });
            "thread_start"
        } else {
            let entity_id: Arc<str> = ids.for_kernel(e.child_tgid, e.start_boottime).into();
            p.entity_id = entity_id.to_string();
            p.parent = Some(Parent {
                pid: e.parent_tgid,
                entity_id: parent_entity.to_string(),
                thread: Some(Thread { id: e.parent_pid }),
            });
            self.table.insert(
                e.child_tgid,
                ProcessInfo {
                    entity_id,
                    ppid: e.parent_tgid,
                    parent_entity_id: Some(parent_entity),
                    name: Arc::from(&e.comm[..]),
                    euid: known.as_ref().and_then(|k| k.euid),
                    agent: e.attribution.agent,
                    chain: known
                        .as_ref()
                        .map_or_else(|| Arc::from([]), |k| k.chain.clone()),
                    container: self.container_of(e.cgroup_id),
                    executable: known.and_then(|k| k.executable),
                },
            );
            "fork"
        };
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            Self::meta("event", PROCESS, START, action),
        );
        r.user = Some(Id::of(e.uid));
        r.process = Some(p);
        r
    }

    fn exit(&mut self, e: &ExitEvent) -> Record {
        let entity_id = self.ctx.entity_ids.for_kernel(e.tgid, e.start_boottime);
        let known = if e.process_exit {
            self.table.remove(e.tgid, &entity_id)
        } else {
            self.table
                .get(e.tgid)
                .filter(|k| *k.entity_id == *entity_id)
                .cloned()
        };
        let at = clock::rfc3339(self.clock.to_unix(e.ktime_ns));
        let mut p = Process {
            pid: e.tgid,
            entity_id,
            thread: Some(Thread { id: e.pid }),
            start: Some(clock::rfc3339(self.clock.to_unix(e.start_boottime))),
            end: e.process_exit.then(|| at.clone()),
            ..Default::default()
        };
        p.set_name(&e.comm);
        if let Some(k) = &known {
            apply_known(&mut p, k);
        }
        match e.status {
            ExitStatus::Exited(code) => p.exit_code = Some(code),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                p.exit_signal = Some(Signal {
                    number: signal,
                    name: record::signal_name(signal),
                    core_dumped,
                });
            }
        }
        let action = if e.process_exit {
            "exit"
        } else {
            "thread_exit"
        };
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            Self::meta("event", PROCESS, END, action),
        );
        r.process = Some(p);
        r
    }
}

/// The container and pod blocks of a record.
fn set_container(r: &mut Record, c: &ContainerRef) {
    r.container = Some(ContainerInfo {
        id: c.id.clone(),
        runtime: c.runtime,
    });
    r.orchestrator = c.pod_uid.as_ref().map(|uid| Orchestrator {
        r#type: "kubernetes",
        resource: OrchestratorResource {
            r#type: "pod",
            id: uid.clone(),
        },
    });
}

/// What the process table knows of a process: its executable, parent and user.
fn apply_known(p: &mut Process, k: &ProcessInfo) {
    if let Some(exe) = &k.executable {
        p.set_executable(exe);
    }
    p.parent = k.parent_entity_id.as_ref().map(|pe| Parent {
        pid: k.ppid,
        entity_id: pe.to_string(),
        thread: None,
    });
    p.user = k.euid.map(Id::of);
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The sensor's own process, for its start and stop records.
fn self_process(ids: &EntityIds) -> Process {
    let pid = std::process::id();
    let snap = crate::snapshot::read_process(pid, None);
    let mut p = Process {
        pid,
        entity_id: snap
            .as_ref()
            .map(|s| ids.for_ticks(pid, s.start_ticks))
            .unwrap_or_default(),
        ..Default::default()
    };
    if let Some(s) = snap {
        p.set_name(&s.comm);
        if let Some(exe) = &s.executable {
            p.set_executable(exe);
        }
    }
    p
}
