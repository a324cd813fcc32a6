//! `agent-sensor report`: the auditor's view of a trail, per agent. One pass over the trail
//! does both jobs: the verifier checks every record (its verdict heads the report) and hands
//! each one to [`collect`], which folds it into bounded tallies (counts, top items, a few
//! samples), each item linking to the records it came from (file, line, sequence, hash). The
//! report is then written as JSON (this module's types, serialized), [`markdown`] or [`html`];
//! [`soc2`] maps what it shows to the criteria an auditor walks through.
//!
//! Record kinds the report does not know (those other parts of the sensor add) are counted
//! and linked by `event.action`, with a few samples each, in the agent's section.
pub mod collect;
pub mod html;
pub mod markdown;
pub mod soc2;
pub mod tally;
pub mod when;

use std::{collections::BTreeMap, path::PathBuf};

use serde::Serialize;

use crate::audit::{
    report::tally::{Link, Rest},
    verdict::Verdict,
    verify,
};

/// What to report on.
#[derive(Debug, Default)]
pub struct Options {
    /// Trail files or directories.
    pub paths: Vec<PathBuf>,
    /// The sensor's public key: check every checkpoint's signature.
    pub key: Option<PathBuf>,
    /// Only records at or after this time (nanoseconds since the epoch).
    pub since: Option<i128>,
    /// Only records before this time.
    pub until: Option<i128>,
    /// Only this agent's section.
    pub agent: Option<String>,
    /// A live trail: the newest run may lack its stop record.
    pub allow_open_end: bool,
}

/// How many items each list of the report shows (the rest are counted, not named).
pub const TOP: usize = 25;

/// The report: what the verifier found, then each agent.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The sensor version that made the report.
    pub made_by: String,
    /// What the report covers.
    pub scope: Scope,
    /// What the verifier found for the whole trail read.
    pub evidence: Evidence,
    /// Each agent with records in range, by id.
    pub agents: Vec<Agent>,
    /// Losses the sensor recorded in range (`gap` records).
    pub gaps: Gaps,
    /// Operators' annotations in range.
    pub annotations: Listed<Annotation>,
    /// Identity manifest reloads in range (`identities_reloaded`).
    pub manifest_reloads: Listed<Sample>,
    /// Records of no agent in range, by `event.action`.
    pub unattributed: Vec<Kind>,
}

/// A bounded list: its first items and how many there were.
#[derive(Debug, Serialize)]
pub struct Listed<T> {
    /// How many there were.
    pub total: u64,
    /// The first [`TOP`] (or more, where the list says).
    pub items: Vec<T>,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Self {
            total: 0,
            items: Vec::new(),
        }
    }
}

impl<T> Listed<T> {
    /// Counts `item`, keeping it while fewer than `cap` are kept.
    pub fn push(&mut self, cap: usize, item: impl FnOnce() -> T) {
        self.total += 1;
        if self.items.len() < cap {
            self.items.push(item());
        }
    }
}

/// What the report covers.
#[derive(Debug, Serialize)]
pub struct Scope {
    /// The trail files and directories read.
    pub paths: Vec<String>,
    /// The requested range (RFC 3339), if any.
    pub since: Option<String>,
    /// The requested range's end (exclusive).
    pub until: Option<String>,
    /// The one agent asked for, if any.
    pub agent: Option<String>,
    /// The first record in range.
    pub first: Option<String>,
    /// The last record in range.
    pub last: Option<String>,
    /// Sealed records read (the verifier reads the whole trail).
    pub records_read: u64,
    /// Records in the range.
    pub records_in_range: u64,
    /// Records whose bytes do not match their hash: listed under findings, counted nowhere
    /// else in the report.
    pub records_not_counted: u64,
}

/// The verifier's answer for the trail, as `agent-sensor verify` gives it.
#[derive(Debug, Serialize)]
pub struct Evidence {
    /// `complete`, `incomplete` or `altered`.
    pub verdict: Verdict,
    /// The verdict for a person.
    pub summary: String,
    /// The exit status `verify` (and `report`) give.
    pub exit_code: u8,
    /// What is missing or doubtful, one sentence each: runs without a stop record, a record
    /// cut short at the end, recorded losses, unsigned runs, older files not given.
    pub missing: Vec<String>,
    /// Integrity findings (the first [`TOP`] × 4).
    pub findings: Listed<verify::Finding>,
    /// Who signed the checkpoints.
    pub signing: Signing,
    /// The sensor runs in the trail.
    pub runs: Vec<RunSummary>,
}

/// Signatures in the trail.
#[derive(Debug, Default, Serialize)]
pub struct Signing {
    /// Each public key checkpoints name, with how many checkpoints name it.
    pub keys: Vec<KeyUse>,
    /// The key the signatures were checked with (`--key`, hex), if given.
    pub verified_with: Option<String>,
    /// Checkpoints whose signature checked out with it.
    pub checkpoints_verified: u64,
    /// Records after each run's last valid checkpoint (with `--key`).
    pub unsigned_tail: u64,
}

/// A signing key as the checkpoints name it.
#[derive(Debug, Serialize)]
pub struct KeyUse {
    /// `checkpoint.public_key`.
    pub public_key: String,
    /// Checkpoints naming it.
    pub checkpoints: u64,
}

/// A sensor run.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// `sensor.instance_id`.
    pub instance_id: String,
    /// Its records in the trail.
    pub records: u64,
    /// It wrote its stop record.
    pub stopped: bool,
    /// Why it stopped (`sensor.lifecycle.reason`).
    pub stop_reason: Option<String>,
    /// Its first record's time.
    pub first: Option<String>,
    /// Its last record's time.
    pub last: Option<String>,
    /// The run it continues, by its start record.
    pub continues: Option<String>,
}

/// One agent's section.
#[derive(Debug, Serialize)]
pub struct Agent {
    /// `identity.agent.id`.
    pub id: String,
    /// As its records declare it (the first in range); `None` when no record carried it.
    pub declaration: Option<Declaration>,
    /// Later records declaring it otherwise (a manifest change), with the first of each.
    pub declaration_changes: Vec<Declaration>,
    /// How its processes were attributed, and how much to trust it.
    pub identity_sources: Vec<Source>,
    /// Its records in range.
    pub records: u64,
    /// Its first record in range.
    pub first: Option<String>,
    /// Its last record in range.
    pub last: Option<String>,
    /// Its activity over time.
    pub activity: when::Histogram,
    /// Tasks and sessions its records carry.
    pub tasks: Vec<Counted>,
    /// Tasks not listed.
    pub tasks_rest: Rest,
    /// Processes.
    pub processes: Processes,
    /// Files by class and path.
    pub files: Files,
    /// Network destinations.
    pub network: Network,
    /// Registration requests naming it.
    pub registrations: Registrations,
    /// Every record kind of its records, by `event.action`, with samples of the kinds the
    /// report has no section of its own for (alerts, policy decisions, LLM and tool calls).
    pub kinds: Vec<Kind>,
    /// Marks for its timeline: delegations, sensitive files, refusals, other kinds.
    pub notable: Listed<Sample>,
    /// The SOC 2 criteria, as this section bears on them.
    pub soc2: Vec<soc2::Criterion>,
}

/// An agent as declared in the manifest (the `identity.agent` block its records carry).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Declaration {
    /// Display name.
    pub name: Option<String>,
    /// SPIFFE id.
    pub spiffe_id: Option<String>,
    /// What it is for.
    pub purpose: Option<String>,
    /// Its team.
    pub team: Option<String>,
    /// The sensitivity of its data (its tier).
    pub data_sensitivity: Option<String>,
    /// The business owner.
    pub business_owner: Option<String>,
    /// The technical owner.
    pub technical_owner: Option<String>,
    /// Tasks it may be registered for (empty: any).
    pub allowed_tasks: Vec<String>,
    /// The first record declaring it so.
    pub first: Option<Link>,
}

/// An attribution method.
#[derive(Debug, Serialize)]
pub struct Source {
    /// `registration`, `cgroup`, `container`, `executable`, `argv`, `uid`, `environment`.
    pub method: String,
    /// `strong`, `medium`, `weak`.
    pub trust: String,
    /// Records attributed this way.
    pub records: u64,
    /// Of them, attributed through an ancestor.
    pub inherited: u64,
    /// The first.
    pub first: Link,
    /// The last.
    pub last: Link,
}

/// A key and how many records had it.
#[derive(Debug, Serialize)]
pub struct Counted {
    /// What was counted.
    pub key: String,
    /// Records.
    pub records: u64,
    /// The first.
    pub first: Link,
    /// The last.
    pub last: Link,
}

/// Processes of an agent.
#[derive(Debug, Default, Serialize)]
pub struct Processes {
    /// `exec` records.
    pub execs: u64,
    /// `fork` records.
    pub forks: u64,
    /// `exit` records.
    pub exits: u64,
    /// Processes running when the sensor started (`snapshot`).
    pub snapshots: u64,
    /// Executables run (exec, snapshot), most first.
    pub executables: Vec<Counted>,
    /// Executables not listed.
    pub executables_rest: Rest,
    /// Delegation hops (`from → to`) its records carry.
    pub delegations: Vec<Counted>,
}

/// Files of an agent.
#[derive(Debug, Default, Serialize)]
pub struct Files {
    /// File records.
    pub records: u64,
    /// Opened for reading.
    pub reads: u64,
    /// Opened for writing, created, renamed, removed, changed.
    pub writes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// By `file.class` (sensitive classes first, `unclassified` last).
    pub classes: Vec<FileClass>,
}

/// One `file.class`.
#[derive(Debug, Serialize)]
pub struct FileClass {
    /// The class, or `unclassified`.
    pub class: String,
    /// Records.
    pub records: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Paths, most records first.
    pub paths: Vec<FilePath>,
    /// Paths not listed.
    pub paths_rest: Rest,
    /// The first record.
    pub first: Link,
    /// The last.
    pub last: Link,
}

/// One path.
#[derive(Debug, Serialize)]
pub struct FilePath {
    /// `file.path`.
    pub path: String,
    /// Records.
    pub records: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// The actions seen (`open`, `rename`, ...).
    pub actions: Vec<String>,
    /// The first record.
    pub first: Link,
    /// The last.
    pub last: Link,
}

/// Network activity of an agent.
#[derive(Debug, Default, Serialize)]
pub struct Network {
    /// Network records.
    pub records: u64,
    /// Destinations (egress) and peers (ingress), most records first.
    pub destinations: Vec<Destination>,
    /// Destinations not listed.
    pub destinations_rest: Rest,
    /// Names asked of DNS.
    pub dns_questions: Vec<Counted>,
}

/// A destination or peer.
#[derive(Debug, Serialize)]
pub struct Destination {
    /// `egress` or `ingress`.
    pub direction: String,
    /// The address (IP or Unix socket path).
    pub address: String,
    /// The port.
    pub port: Option<u64>,
    /// `tcp`, `udp`, ...
    pub transport: Option<String>,
    /// The DNS name that gave the address.
    pub domain: Option<String>,
    /// Records.
    pub records: u64,
    /// Of them failed.
    pub failures: u64,
    /// The actions seen.
    pub actions: Vec<String>,
    /// The first record.
    pub first: Link,
    /// The last.
    pub last: Link,
}

/// Registration requests naming an agent.
#[derive(Debug, Default, Serialize)]
pub struct Registrations {
    /// Granted.
    pub granted: u64,
    /// Refused, with the first refusals.
    pub refused: Listed<Sample>,
}

/// One record kind.
#[derive(Debug, Serialize)]
pub struct Kind {
    /// `event.action`.
    pub action: String,
    /// Records.
    pub records: u64,
    /// By `event.outcome`.
    pub outcomes: BTreeMap<String, u64>,
    /// The first record.
    pub first: Link,
    /// The last.
    pub last: Link,
    /// The first few records of a kind without a section of its own.
    pub samples: Vec<Sample>,
}

/// One record, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Its `@timestamp`.
    pub time: String,
    /// What it says, in a line.
    pub what: String,
    /// The record.
    pub link: Link,
}

/// An operator's annotation.
#[derive(Debug, Serialize)]
pub struct Annotation {
    /// Its `@timestamp`.
    pub time: String,
    /// `review`, `override`, `acknowledgement`, `note`.
    pub kind: String,
    /// Who the operator says they are.
    pub author: String,
    /// The uid the kernel reports for them.
    pub peer_uid: Option<u64>,
    /// What they wrote.
    pub text: String,
    /// The hash of the record it is about.
    pub subject: Option<String>,
    /// The agent whose record that is, when the report saw it (among the last
    /// [`collect::RECENT`] records before the annotation).
    pub about_agent: Option<String>,
    /// The annotation record.
    pub link: Link,
}

/// Recorded losses.
#[derive(Debug, Default, Serialize)]
pub struct Gaps {
    /// Events lost, summed over the gap records.
    pub lost: u64,
    /// The gap records.
    pub records: Listed<Sample>,
}

/// Reads the trail once and makes the report; errors are a trail or key that cannot be read.
pub fn build(options: &Options) -> anyhow::Result<Report> {
    let key = options
        .key
        .as_deref()
        .map(crate::evidence::signing::load_verifying_key)
        .transpose()?;
    let mut collector = collect::Collector::new(options);
    let verified = verify::verify_each(&options.paths, key.as_ref(), &mut |record| {
        collector.record(record);
    })?;
    Ok(collector.finish(options, &verified, key.as_ref()))
}
