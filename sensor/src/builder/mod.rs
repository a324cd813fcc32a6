//! The builder stage: records from kernel events, with what the caches know (the process
//! table, containers, DNS answers, wall-clock time), and the sensor's own records. Each file
//! builds one family: `process` the process lifecycle, `file_and_network` activity (from
//! the pure block functions of [`activity`]), [`identity`] the identity and container blocks,
//! `llm` LLM API exchanges, `sensor` the sensor's own records; [`repeats`] folds exact repeats.
use std::{sync::Arc, time::Instant};

use sensor_common::TrackedProcess;

use crate::{
    decode::{CgroupEvent, KernelEvent},
    enrich::{
        clock::WallClock, dns_cache::DnsCache, entity::EntityIds, fspath::Classifier,
        process_table::ProcessTable, snapshot::ProcSnapshot,
    },
    identity::{registry::Tasks, selectors::CgroupIndex},
    record::{
        CgroupCreated, EventMeta, Record, SensorBlock, host::HostInfo, rendered::Rendered,
        time::Timestamp, time::UnixNanos,
    },
    stage::{Agents, Build, SensorEvent},
};

pub mod activity;
mod file_and_network;
pub mod identity;
mod llm;
mod mcp;
mod process;
mod process_blocks;
pub mod repeats;
mod sensor;

use process_blocks::ProcessBlocks;
use repeats::RepeatFilter;

/// What the builder is given to start with.
pub struct BuilderParts {
    /// This host, for every record's `host` block.
    pub host: Arc<HostInfo>,
    /// This run of the sensor.
    pub instance_id: Arc<str>,
    /// `process.entity_id`s.
    pub entity_ids: EntityIds,
    /// Sensitive-location classes for `file.class`.
    pub classifier: Classifier,
    /// The declared agents' `identity.agent` blocks.
    pub agents: Agents,
    /// Registered task names by kernel task number.
    pub tasks: Tasks,
    /// Cgroups by id, for `container.*` and `orchestrator.*`.
    pub cgroups: CgroupIndex,
    /// Exact file repeats within this window are folded (0: never).
    pub repeat_window_ms: u32,
}

/// Builds records; see the module doc.
pub struct Builder {
    instance_id: Arc<str>,
    entity_ids: EntityIds,
    classifier: Classifier,
    agents: Agents,
    tasks: Tasks,
    cgroups: CgroupIndex,
    /// The host block, rendered once for every record.
    host: Arc<Rendered<HostInfo>>,
    clock: WallClock,
    clock_sampled: Instant,
    /// `event.created` of the records of the batch being handled: one clock sample for
    /// them all (they are made within a millisecond or so).
    batch_created: Option<Timestamp>,
    table: ProcessTable,
    /// Rendered `process` blocks of activity records, by thread.
    process_blocks: ProcessBlocks,
    dns: DnsCache,
    repeats: RepeatFilter,
    /// LLM exchanges under way on opted-in agents' TLS connections.
    llm: crate::llm::Assembler,
    /// MCP sessions over HTTP seen in the LLM assembler's exchanges.
    mcp_http: crate::mcp::http::Sessions,
    /// MCP calls under way on opted-in agents' pipes.
    mcp: crate::mcp::Assembler,
    /// Where those connections go.
    destinations: llm::Destinations,
}

const CLOCK_RESAMPLE: std::time::Duration = std::time::Duration::from_secs(1);
const DNS_CACHE_ENTRIES: usize = 16 * 1024;

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

impl Builder {
    /// A builder that knows no process yet.
    pub fn new(parts: BuilderParts) -> Self {
        Self {
            host: Arc::new(Rendered::new(HostInfo::clone(&parts.host))),
            instance_id: parts.instance_id,
            entity_ids: parts.entity_ids,
            classifier: parts.classifier,
            agents: parts.agents,
            tasks: parts.tasks,
            cgroups: parts.cgroups,
            clock: WallClock::sample(),
            clock_sampled: Instant::now(),
            batch_created: None,
            table: ProcessTable::default(),
            process_blocks: ProcessBlocks::default(),
            dns: DnsCache::new(DNS_CACHE_ENTRIES),
            repeats: RepeatFilter::new(parts.repeat_window_ms),
            llm: crate::llm::Assembler::default(),
            mcp_http: crate::mcp::http::Sessions::default(),
            mcp: crate::mcp::Assembler::default(),
            destinations: llm::Destinations::default(),
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
                .unwrap_or_else(|| Timestamp::of(WallClock::now())),
        }
    }

    fn record(&self, timestamp: UnixNanos, event: EventMeta) -> Record {
        Record::new(
            Timestamp::of(timestamp),
            event,
            self.host.clone(),
            SensorBlock {
                instance_id: self.instance_id.clone(),
                version: env!("CARGO_PKG_VERSION"),
                lifecycle: None,
            },
        )
    }

    /// A cgroup made while running, with the container in it and the agent it was decided for.
    fn cgroup_created(&self, c: &CgroupEvent, attribution: TrackedProcess) -> Record {
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
        if attribution.agent != 0 {
            r.identity = self.identity(attribution, 0);
        }
        r
    }

    /// The record of a process or activity event, with its identity and container.
    fn event_record(&mut self, event: &KernelEvent, attribution: TrackedProcess) -> Record {
        // Built in place: a `Record` is 2 KB, and a tuple or a temporary around it is a copy
        // per event.
        let mut record = match event {
            KernelEvent::Exec(e) => self.exec(e),
            KernelEvent::Fork(e) => self.fork(e),
            KernelEvent::Exit(e) => self.exit(e),
            KernelEvent::File(e) => self.file(e),
            KernelEvent::Net(e) => self.net(e),
            KernelEvent::Cgroup(c) => return self.cgroup_created(c, attribution),
            KernelEvent::Tls(_) => unreachable!("build() hands TLS calls to the assembler"),
            KernelEvent::Pipe(_) => unreachable!("build() hands pipe calls to the assembler"),
        };
        let tgid = match event {
            KernelEvent::Exec(e) => e.tgid,
            KernelEvent::Fork(e) => e.child_tgid,
            KernelEvent::Exit(e) => e.tgid,
            KernelEvent::File(e) => e.tgid,
            KernelEvent::Net(e) => e.tgid,
            KernelEvent::Cgroup(_) | KernelEvent::Tls(_) | KernelEvent::Pipe(_) => 0,
        };
        record.identity = self.identity(attribution, tgid);
        if let Some(c) = self.table.get(tgid).and_then(|k| k.container.as_deref()) {
            record.set_container(c);
        }
        record
    }
}

impl Build for Builder {
    fn begin_batch(&mut self) {
        if self.clock_sampled.elapsed() >= CLOCK_RESAMPLE {
            self.clock = WallClock::sample();
            self.clock_sampled = Instant::now();
        }
        self.batch_created = Some(Timestamp::of(WallClock::now()));
    }

    fn end_batch(&mut self) {
        self.batch_created = None;
    }

    fn build(
        &mut self,
        event: &KernelEvent,
        attribution: TrackedProcess,
        closed: &mut Vec<Record>,
    ) -> Option<Record> {
        if let KernelEvent::Tls(e) = event {
            self.tls(e, closed);
            return None;
        }
        if let KernelEvent::Pipe(e) = event {
            self.pipe(e, closed);
            return None;
        }
        if let KernelEvent::File(e) = event
            && self.repeats.enabled()
        {
            let record = self.event_record(event, attribution);
            return self
                .repeats
                .offer(repeats::key(e), e.ktime_ns, record, closed);
        }
        Some(self.event_record(event, attribution))
    }

    fn snapshot(&mut self, processes: &[&ProcSnapshot], out: &mut Vec<Record>) {
        self.snapshot_records(processes, out);
    }

    fn sensor(&mut self, event: SensorEvent) -> Record {
        self.sensor_record(event)
    }

    fn close_repeats(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        self.repeats.close_due(now_ns, out);
        if now_ns == u64::MAX {
            self.finish_exchanges(out);
            self.finish_mcp_calls(out);
        }
    }

    fn folds_repeats(&self) -> bool {
        self.repeats.enabled()
    }

    fn processes(&self) -> &ProcessTable {
        &self.table
    }

    fn reload(&mut self, agents: &Agents) {
        self.agents = agents.clone();
    }

    fn connections_unparsed(&self) -> Vec<(&'static str, u64)> {
        self.llm.unparsed().iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn sweep(&mut self) {
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
}
