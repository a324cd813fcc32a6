//! The report's one pass: each record the verifier hands over is folded into bounded tallies
//! per agent (and a few for the whole trail), then [`Collector::finish`] turns them into the
//! [`Report`]. Memory is bounded by the tallies' caps, not by the trail.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::Arc,
};

use serde_json::Value;

use crate::identity::manifest::AgentDecl;

use crate::audit::{
    report::{
        Agent, Annotation, Counted, Declaration, Destination, Evidence, FileClass, FilePath, Files,
        Gaps, KeyUse, Kind, Listed, Network, Options, Processes, Registrations, Report, RunSummary,
        Sample, Scope, Signing, Source, TOP, soc2,
        tally::{Entry, Link, Tally, hash_bytes},
        when::{self, Histogram},
    },
    verdict::{Verdict, open_ends},
    verify::{self, Observed},
};

/// Records remembered (hash → agent) to say whose record an annotation is about.
pub const RECENT: usize = 65_536;
/// Distinct keys per tally (agents, executables, destinations, ...): a path can be 4 KiB, so
/// this and [`PATHS`] are what bound the report's memory.
const KEYS: usize = 2_000;
/// Distinct paths kept per file class of an agent.
const PATHS: usize = 500;
/// Samples kept per record kind without a section of its own.
const SAMPLES: usize = 10;
/// Marks kept per agent timeline.
const NOTABLE: usize = 200;
/// Distinct declarations kept per agent.
const DECLARATIONS: usize = 8;

const PROCESS_ACTIONS: &[&str] = &[
    "exec",
    "fork",
    "exit",
    "snapshot",
    "thread_start",
    "thread_exit",
    "cgroup_created",
];
const FILE_ACTIONS: &[&str] = &[
    "open", "rename", "unlink", "rmdir", "mkdir", "chmod", "chown", "truncate", "link", "symlink",
];
const NETWORK_ACTIONS: &[&str] = &[
    "connect",
    "connect_completed",
    "accept",
    "bind",
    "listen",
    "send",
    "receive",
];
/// The sensor's own record kinds, reported in their own sections.
const SENSOR_ACTIONS: &[&str] = &[
    "sensor_start",
    "sensor_stop",
    "gap",
    "rotation",
    "trail_retention",
    "checkpoint",
    "identities_reloaded",
    "agent_registration",
    "annotation",
];
/// Blocks every record may carry: not what a record kind of its own says.
const COMMON_BLOCKS: &[&str] = &[
    "host",
    "sensor",
    "identity",
    "@timestamp",
    "schema_version",
    "event",
    "process",
    "container",
    "orchestrator",
    "user",
    "chain",
];

/// Whether the report has a section of its own for records of `action`.
fn known(action: &str) -> bool {
    [
        PROCESS_ACTIONS,
        FILE_ACTIONS,
        NETWORK_ACTIONS,
        SENSOR_ACTIONS,
    ]
    .iter()
    .any(|set| set.contains(&action))
}

#[derive(Default)]
struct KindStats {
    outcomes: BTreeMap<String, u64>,
    samples: Vec<Sample>,
}

#[derive(Default)]
struct SourceStats {
    method: String,
    trust: String,
    inherited: u64,
}

#[derive(Default)]
struct RwStats {
    reads: u64,
    writes: u64,
    failures: u64,
    actions: BTreeSet<String>,
}

struct ClassStats {
    rw: RwStats,
    paths: Tally<RwStats>,
}

impl Default for ClassStats {
    fn default() -> Self {
        Self {
            rw: RwStats::default(),
            paths: Tally::new(PATHS),
        }
    }
}

#[derive(Default)]
struct DestStats {
    direction: String,
    address: String,
    port: Option<u64>,
    transport: Option<String>,
    domain: Option<String>,
    failures: u64,
    actions: BTreeSet<String>,
}

/// One agent, as far as the pass has read.
struct AgentAcc {
    index: u32,
    declaration: Option<(Value, Declaration)>,
    changes: Vec<(Value, Declaration)>,
    sources: Tally<SourceStats>,
    records: u64,
    first: Option<String>,
    last: Option<String>,
    activity: Histogram,
    tasks: Tally<()>,
    processes: Processes,
    executables: Tally<()>,
    delegations: Tally<()>,
    files: Files,
    classes: Tally<ClassStats>,
    network_records: u64,
    destinations: Tally<DestStats>,
    dns: Tally<()>,
    registrations: Registrations,
    kinds: Tally<KindStats>,
    notable: Listed<Sample>,
}

impl AgentAcc {
    fn new(index: u32) -> Self {
        Self {
            index,
            declaration: None,
            changes: Vec::new(),
            sources: Tally::new(KEYS),
            records: 0,
            first: None,
            last: None,
            activity: Histogram::default(),
            tasks: Tally::new(KEYS),
            processes: Processes::default(),
            executables: Tally::new(KEYS),
            delegations: Tally::new(KEYS),
            files: Files::default(),
            classes: Tally::new(KEYS),
            network_records: 0,
            destinations: Tally::new(KEYS),
            dns: Tally::new(KEYS),
            registrations: Registrations::default(),
            kinds: Tally::new(KEYS),
            notable: Listed::default(),
        }
    }
}

#[derive(Default)]
struct RunAcc {
    first: Option<String>,
    last: Option<String>,
    stop_reason: Option<String>,
}

/// The pass's state.
pub struct Collector {
    since: Option<i128>,
    until: Option<i128>,
    agent: Option<String>,
    file: Option<(std::path::PathBuf, Arc<str>)>,
    run_ids: HashMap<String, Arc<str>>,
    runs: HashMap<Arc<str>, RunAcc>,
    records_read: u64,
    in_range: u64,
    not_counted: u64,
    first: Option<String>,
    last: Option<String>,
    agents: HashMap<String, AgentAcc>,
    agent_ids: Vec<String>,
    agents_overflow: u64,
    keys: BTreeMap<String, u64>,
    gaps: Gaps,
    annotations: Listed<Annotation>,
    reloads: Listed<Sample>,
    unattributed: Tally<KindStats>,
    /// Ring of the last [`RECENT`] agents' records: hash and agent index.
    recent: Vec<([u8; 32], u32)>,
    recent_at: usize,
}

fn str_of<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn owned(v: &Value, path: &[&str]) -> Option<String> {
    str_of(v, path).map(str::to_owned)
}

/// A record's own block, compact, for a line of the report: the block named like its action,
/// else its first block that every record does not carry.
fn summary(record: &Value, action: &str) -> String {
    // An alert says what happened in a sentence of its own.
    if action == "alert"
        && let Some(message) = str_of(record, &["alert", "message"])
    {
        let severity = str_of(record, &["alert", "severity"]).unwrap_or("alert");
        let rule = str_of(record, &["alert", "rule", "id"]).unwrap_or("?");
        return format!("{severity}: {message} (rule {rule})");
    }
    let block = record.get(action).or_else(|| {
        record.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| !COMMON_BLOCKS.contains(&k.as_str()))
                .map(|(_, v)| v)
        })
    });
    let mut text = block.map_or_else(|| action.to_owned(), Value::to_string);
    if text.len() > 240 {
        let cut = (0..=240)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn link_list(entries: Vec<(&str, &Entry<()>)>) -> Vec<Counted> {
    entries
        .into_iter()
        .map(|(k, e)| Counted {
            key: k.to_owned(),
            records: e.records,
            first: e.first.clone(),
            last: e.last.clone(),
        })
        .collect()
}

impl Collector {
    /// A pass for `options`' range and agent.
    pub fn new(options: &Options) -> Self {
        Self {
            since: options.since,
            until: options.until,
            agent: options.agent.clone(),
            file: None,
            run_ids: HashMap::new(),
            runs: HashMap::new(),
            records_read: 0,
            in_range: 0,
            not_counted: 0,
            first: None,
            last: None,
            agents: HashMap::new(),
            agent_ids: Vec::new(),
            agents_overflow: 0,
            keys: BTreeMap::new(),
            gaps: Gaps::default(),
            annotations: Listed::default(),
            reloads: Listed::default(),
            unattributed: Tally::new(KEYS),
            recent: Vec::new(),
            recent_at: 0,
        }
    }

    fn file_name(&mut self, file: &Path) -> Arc<str> {
        match &self.file {
            Some((path, name)) if path == file => name.clone(),
            _ => {
                let name: Arc<str> = file.to_string_lossy().into();
                self.file = Some((file.to_owned(), name.clone()));
                name
            }
        }
    }

    fn run_name(&mut self, id: &str) -> Arc<str> {
        if let Some(a) = self.run_ids.get(id) {
            return a.clone();
        }
        let a: Arc<str> = id.into();
        self.run_ids.insert(id.to_owned(), a.clone());
        a
    }

    /// Folds in one record.
    pub fn record(&mut self, seen: &Observed<'_>) {
        self.records_read += 1;
        if seen.sealed.changed {
            self.not_counted += 1;
            return;
        }
        let value = seen.value;
        // OCSF events keep the record's own fields under `unmapped.agent_sensor`.
        let ocsf = value.get("unmapped").and_then(|u| u.get("agent_sensor"));
        let (record, time) = match ocsf {
            Some(r) => (r, str_of(value, &["metadata", "original_time"])),
            None => (value, str_of(value, &["@timestamp"])),
        };
        let time = time.unwrap_or_default();
        let link = Link {
            file: self.file_name(seen.file),
            line: seen.line,
            run: self.run_name(&seen.sealed.instance_id),
            sequence: seen.sealed.sequence,
            hash: hash_bytes(&seen.sealed.hash),
        };
        let action = seen.sealed.action.as_str();
        let run = self.runs.entry(link.run.clone()).or_default();
        if run.first.is_none() {
            run.first = Some(time.to_owned());
        }
        run.last = Some(time.to_owned());
        if action == "sensor_stop" {
            run.stop_reason = owned(record, &["sensor", "lifecycle", "reason"]);
        }
        let nanos = when::parse_rfc3339(time);
        let in_range = nanos
            .is_some_and(|t| self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u))
            || (nanos.is_none() && self.since.is_none() && self.until.is_none());
        if !in_range {
            return;
        }
        self.in_range += 1;
        if self.first.is_none() {
            self.first = Some(time.to_owned());
        }
        self.last = Some(time.to_owned());
        let secs = nanos.map_or(0, |t| t.div_euclid(1_000_000_000) as i64);
        let sample = |what: String| Sample {
            time: time.to_owned(),
            what,
            link: link.clone(),
        };
        match action {
            "checkpoint" => {
                if let Some(k) = str_of(record, &["checkpoint", "public_key"])
                    && (self.keys.len() < 16 || self.keys.contains_key(k))
                {
                    *self.keys.entry(k.to_owned()).or_default() += 1;
                }
            }
            "gap" => {
                let lost = record["gap"]["lost"].as_u64().unwrap_or(0);
                self.gaps.lost += lost;
                let source = str_of(record, &["gap", "source"]).unwrap_or("unknown");
                let by_kind = record["gap"]
                    .get("by_kind")
                    .map(Value::to_string)
                    .unwrap_or_default();
                self.gaps.records.push(TOP * 4, || {
                    sample(format!("{source}: {lost} lost {by_kind}"))
                });
            }
            "annotation" => {
                let a = &record["annotation"];
                let subject = owned(a, &["subject"]);
                let about_agent = subject.as_deref().and_then(|s| self.whose(s));
                self.annotations.push(TOP * 8, || Annotation {
                    time: time.to_owned(),
                    kind: owned(a, &["kind"]).unwrap_or_default(),
                    author: owned(a, &["author"]).unwrap_or_default(),
                    peer_uid: a["peer_uid"].as_u64(),
                    text: owned(a, &["text"]).unwrap_or_default(),
                    subject,
                    about_agent,
                    link: link.clone(),
                });
            }
            "identities_reloaded" => {
                let outcome = str_of(record, &["event", "outcome"]).unwrap_or("unknown");
                let reason = str_of(record, &["sensor", "lifecycle", "reason"]).unwrap_or_default();
                self.reloads
                    .push(TOP * 4, || sample(format!("{outcome}: {reason}")));
            }
            _ => {}
        }
        let agent_id = str_of(record, &["identity", "agent", "id"]).or_else(|| {
            (action == "agent_registration")
                .then(|| str_of(record, &["registration", "agent"]))
                .flatten()
        });
        let Some(agent_id) = agent_id else {
            if let Some(k) = self.unattributed.add(action, &link) {
                *k.outcomes
                    .entry(
                        str_of(record, &["event", "outcome"])
                            .unwrap_or("-")
                            .to_owned(),
                    )
                    .or_default() += 1;
            }
            return;
        };
        if self.agent.as_deref().is_some_and(|a| a != agent_id) {
            return;
        }
        if !self.agents.contains_key(agent_id) {
            if self.agents.len() >= KEYS {
                self.agents_overflow += 1;
                return;
            }
            let index = self.agent_ids.len() as u32;
            self.agent_ids.push(agent_id.to_owned());
            self.agents
                .insert(agent_id.to_owned(), AgentAcc::new(index));
        }
        let acc = self.agents.get_mut(agent_id).expect("inserted above");
        let index = acc.index;
        fold(acc, record, action, time, secs, &link, ocsf.is_some());
        if self.recent.len() < RECENT {
            self.recent.push((link.hash, index));
        } else {
            self.recent[self.recent_at] = (link.hash, index);
            self.recent_at = (self.recent_at + 1) % RECENT;
        }
    }

    /// The agent whose record has this hash, among the recent ones.
    fn whose(&self, subject: &str) -> Option<String> {
        let hash = hash_bytes(subject);
        self.recent
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, i)| self.agent_ids[*i as usize].clone())
    }

    /// The report: the verifier's findings on top, then each agent.
    pub fn finish(
        self,
        options: &Options,
        verified: &verify::Report,
        key: Option<&ed25519_dalek::VerifyingKey>,
        declared: &[AgentDecl],
    ) -> Report {
        let verdict = Verdict::of(verified, options.allow_open_end);
        let mut missing = open_ends(verified, options.allow_open_end);
        if self.gaps.lost > 0 || self.gaps.records.total > 0 {
            missing.push(format!(
                "the sensor recorded {} loss(es) in range: {} event(s) it could not deliver",
                self.gaps.records.total, self.gaps.lost
            ));
        }
        for t in verified.torn_tails.iter().filter(|t| t.confirmed) {
            missing.push(format!(
                "{}:{}: a record cut short by a crash ({} bytes); the next run found the trail ending there",
                t.file.display(),
                t.line,
                t.bytes
            ));
        }
        if let Some(s) = &verified.starts_after {
            missing.push(format!(
                "the trail starts after record {} of run {} (in {}, not given): older records are not covered",
                s.sequence, s.instance_id, s.file
            ));
        }
        if self.keys.is_empty() {
            missing.push(
                "no signed checkpoints: no signing key was configured, so only the hash chain vouches for the records".into(),
            );
        } else if key.is_none() {
            missing.push(
                "the checkpoints' signatures were not checked: give the sensor's public key (--key)".into(),
            );
        } else if verified.unsigned_tail > 0 {
            missing.push(format!(
                "{} record(s) after the last valid checkpoint of their run: no signature covers them",
                verified.unsigned_tail
            ));
        }
        if self.agents_overflow > 0 {
            missing.push(format!(
                "more than {KEYS} agents: {} records of further agents are not in this report",
                self.agents_overflow
            ));
        }
        let mut findings = Listed::default();
        for f in &verified.findings {
            findings.push(TOP * 4, || verify::Finding {
                file: f.file.clone(),
                line: f.line,
                kind: f.kind,
                detail: f.detail.clone(),
            });
        }
        let runs = verified
            .runs
            .iter()
            .map(|r| {
                let acc = self.runs.get(r.instance_id.as_str());
                RunSummary {
                    instance_id: r.instance_id.clone(),
                    records: r.records,
                    stopped: r.stopped,
                    stop_reason: acc.and_then(|a| a.stop_reason.clone()),
                    first: acc.and_then(|a| a.first.clone()),
                    last: acc.and_then(|a| a.last.clone()),
                    continues: r.continues.clone(),
                }
            })
            .collect();
        let evidence = Evidence {
            verdict,
            summary: verdict.describe().to_owned(),
            exit_code: verdict.exit_code(),
            missing,
            findings,
            signing: Signing {
                keys: self
                    .keys
                    .iter()
                    .map(|(k, n)| KeyUse {
                        public_key: k.clone(),
                        checkpoints: *n,
                    })
                    .collect(),
                verified_with: key.map(|k| crate::record::hex(k.as_bytes())),
                checkpoints_verified: verified.checkpoints_verified,
                unsigned_tail: verified.unsigned_tail,
            },
            runs,
        };
        let mut agents: Vec<Agent> = self
            .agents
            .into_iter()
            .map(|(id, acc)| agent(id, acc))
            .collect();
        // Declared agents with no record in range are listed too: an auditor asks why.
        for d in declared {
            if options.agent.as_ref().is_some_and(|a| *a != d.id) {
                continue;
            }
            if !agents.iter().any(|a| a.id == d.id) {
                agents.push(agent(d.id.clone(), AgentAcc::new(0)));
            }
            if let Some(a) = agents.iter_mut().find(|a| a.id == d.id) {
                a.manifest = Some(Declaration::of_manifest(d));
                a.selectors = d.selectors.iter().map(ToString::to_string).collect();
            }
        }
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        for a in &mut agents {
            a.soc2 = soc2::criteria(a, &evidence, &self.gaps, &self.annotations, &self.reloads);
        }
        let (kinds, _) = self.unattributed.top(usize::MAX);
        Report {
            made_by: format!("agent-sensor {}", env!("CARGO_PKG_VERSION")),
            scope: Scope {
                paths: options
                    .paths
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
                since: options.since.map(crate::record::time::rfc3339),
                until: options.until.map(crate::record::time::rfc3339),
                agent: options.agent.clone(),
                first: self.first,
                last: self.last,
                records_read: self.records_read,
                records_in_range: self.in_range,
                records_not_counted: self.not_counted,
            },
            evidence,
            agents,
            gaps: self.gaps,
            annotations: self.annotations,
            manifest_reloads: self.reloads,
            unattributed: kinds.into_iter().map(|(k, e)| kind(k, e)).collect(),
        }
    }
}

fn kind(action: &str, e: &Entry<KindStats>) -> Kind {
    Kind {
        action: action.to_owned(),
        records: e.records,
        outcomes: e.stats.outcomes.clone(),
        first: e.first.clone(),
        last: e.last.clone(),
        samples: e.stats.samples.clone(),
    }
}

/// The declaration an `identity.agent` block makes.
fn declaration(a: &Value, link: &Link) -> Declaration {
    Declaration {
        name: owned(a, &["name"]),
        spiffe_id: owned(a, &["spiffe_id"]),
        purpose: owned(a, &["purpose"]),
        team: owned(a, &["team"]),
        data_sensitivity: owned(a, &["data_sensitivity"]),
        business_owner: owned(a, &["owners", "business"]),
        technical_owner: owned(a, &["owners", "technical"]),
        allowed_tasks: a["allowed_tasks"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        first: Some(link.clone()),
        origin: None,
    }
}

/// Folds one in-range record into its agent. An OCSF event's processes, files and
/// destinations are in OCSF's own blocks, which the report does not read: only counted.
fn fold(
    acc: &mut AgentAcc,
    record: &Value,
    action: &str,
    time: &str,
    secs: i64,
    link: &Link,
    ocsf: bool,
) {
    acc.records += 1;
    if acc.first.is_none() {
        acc.first = Some(time.to_owned());
    }
    acc.last = Some(time.to_owned());
    let sample = |what: String| Sample {
        time: time.to_owned(),
        what,
        link: link.clone(),
    };
    let outcome = str_of(record, &["event", "outcome"]);
    if let Some(k) = acc.kinds.add(action, link) {
        *k.outcomes
            .entry(outcome.unwrap_or("-").to_owned())
            .or_default() += 1;
        if !known(action) && k.samples.len() < SAMPLES {
            k.samples.push(sample(summary(record, action)));
        }
    }
    if let Some(identity) = record.get("identity") {
        identity_blocks(acc, identity, action, link, &sample);
    }
    let column = if PROCESS_ACTIONS.contains(&action) {
        if !ocsf {
            process(acc, record, action, link);
        }
        0
    } else if FILE_ACTIONS.contains(&action) {
        if !ocsf {
            file(acc, record, action, outcome, link, &sample);
        }
        1
    } else if NETWORK_ACTIONS.contains(&action) {
        if !ocsf {
            network(acc, record, action, outcome, link);
        }
        2
    } else {
        if action == "agent_registration" {
            if record["registration"]["granted"].as_bool() == Some(true) {
                acc.registrations.granted += 1;
            } else {
                let r = &record["registration"];
                let what = format!(
                    "{} refused: {}",
                    str_of(r, &["op"]).unwrap_or("request"),
                    str_of(r, &["reason"]).unwrap_or("no reason given")
                );
                acc.registrations.refused.push(TOP, || sample(what.clone()));
                acc.notable.push(NOTABLE, || sample(what));
            }
        } else if !known(action) {
            acc.notable.push(NOTABLE, || {
                sample(format!("{action}: {}", summary(record, action)))
            });
        }
        3
    };
    acc.activity.add(secs, column);
}

/// The declaration, identity sources, task and delegation hops an `identity` block carries.
fn identity_blocks(
    acc: &mut AgentAcc,
    identity: &Value,
    action: &str,
    link: &Link,
    sample: &dyn Fn(String) -> Sample,
) {
    let agent = &identity["agent"];
    match &acc.declaration {
        None => acc.declaration = Some((agent.clone(), declaration(agent, link))),
        Some((first, _)) if first == agent => {}
        Some(_) => {
            if !acc.changes.iter().any(|(v, _)| v == agent) && acc.changes.len() < DECLARATIONS {
                acc.changes.push((agent.clone(), declaration(agent, link)));
                acc.notable
                    .push(NOTABLE, || sample("declaration changed".to_owned()));
            }
        }
    }
    let a = &identity["attribution"];
    let method = str_of(a, &["method"]).unwrap_or("unknown");
    let trust = str_of(a, &["trust"]).unwrap_or("unknown");
    let key = format!("{method}/{trust}");
    if let Some(s) = acc.sources.add(&key, link) {
        if s.method.is_empty() {
            method.clone_into(&mut s.method);
            trust.clone_into(&mut s.trust);
        }
        s.inherited += u64::from(a["inherited"].as_bool() == Some(true));
    }
    if let Some(task) = str_of(identity, &["task", "id"]) {
        let key = match str_of(identity, &["task", "session"]) {
            Some(s) => format!("{task} (session {s})"),
            None => task.to_owned(),
        };
        acc.tasks.add(&key, link);
    }
    if action == "exec"
        && let Some(hops) = identity["delegation"].as_array()
    {
        for hop in hops {
            let key = format!(
                "{} → {} (pid {})",
                str_of(hop, &["from"]).unwrap_or("?"),
                str_of(hop, &["to"]).unwrap_or("?"),
                hop["process"]["pid"]
            );
            if !acc.delegations.contains(&key) {
                acc.notable
                    .push(NOTABLE, || sample(format!("delegation {key}")));
            }
            acc.delegations.add(&key, link);
        }
    }
}

fn process(acc: &mut AgentAcc, record: &Value, action: &str, link: &Link) {
    let p = &mut acc.processes;
    match action {
        "exec" => p.execs += 1,
        "fork" => p.forks += 1,
        "exit" => p.exits += 1,
        "snapshot" => p.snapshots += 1,
        _ => {}
    }
    if matches!(action, "exec" | "snapshot")
        && let Some(exe) = str_of(record, &["process", "executable"])
    {
        acc.executables.add(exe, link);
    }
}

fn file(
    acc: &mut AgentAcc,
    record: &Value,
    action: &str,
    outcome: Option<&str>,
    link: &Link,
    sample: &dyn Fn(String) -> Sample,
) {
    let f = &record["file"];
    let access = str_of(f, &["open", "access"]);
    let (read, write) = match (action, access) {
        ("open", Some("read")) => (true, false),
        ("open", Some("read_write")) => (true, true),
        ("open", Some("write")) => (false, true),
        ("open", _) => (false, false),
        // Created, renamed, removed, or its metadata changed.
        _ => (false, true),
    };
    let failed = outcome == Some("failure");
    acc.files.records += 1;
    acc.files.reads += u64::from(read);
    acc.files.writes += u64::from(write);
    acc.files.failures += u64::from(failed);
    let class = str_of(f, &["class"]).unwrap_or("unclassified");
    let path = str_of(f, &["path"]).unwrap_or("(no path)");
    if class != "unclassified" && !acc.classes.contains(class) {
        let how = if write { "wrote" } else { "read" };
        acc.notable.push(NOTABLE, || {
            sample(format!("{class}: {action} ({how}) {path}"))
        });
    }
    let Some(c) = acc.classes.add(class, link) else {
        return;
    };
    let count = |s: &mut RwStats| {
        s.reads += u64::from(read);
        s.writes += u64::from(write);
        s.failures += u64::from(failed);
        if s.actions.len() < 16 && !s.actions.contains(action) {
            s.actions.insert(action.to_owned());
        }
    };
    count(&mut c.rw);
    if let Some(p) = c.paths.add(path, link) {
        count(p);
    }
}

fn network(acc: &mut AgentAcc, record: &Value, action: &str, outcome: Option<&str>, link: &Link) {
    acc.network_records += 1;
    if str_of(record, &["dns", "type"]) == Some("query")
        && let Some(name) = str_of(record, &["dns", "question", "name"])
    {
        acc.dns.add(name, link);
    }
    let (direction, end) = match action {
        "connect" | "connect_completed" | "send" => ("egress", &record["destination"]),
        "accept" => ("ingress", &record["source"]),
        _ => return,
    };
    let address = str_of(end, &["address"])
        .or_else(|| str_of(end, &["ip"]))
        .unwrap_or("(unknown)");
    let port = end["port"].as_u64();
    let transport = str_of(record, &["network", "transport"]);
    let key = format!(
        "{direction} {address} {} {}",
        port.unwrap_or(0),
        transport.unwrap_or("")
    );
    if let Some(d) = acc.destinations.add(&key, link) {
        if d.direction.is_empty() {
            direction.clone_into(&mut d.direction);
            address.clone_into(&mut d.address);
            d.port = port;
            d.transport = transport.map(str::to_owned);
        }
        if d.domain.is_none() {
            d.domain = owned(record, &["destination", "domain"]);
        }
        d.failures += u64::from(outcome == Some("failure"));
        if d.actions.len() < 8 && !d.actions.contains(action) {
            d.actions.insert(action.to_owned());
        }
    }
}

/// An agent's section from what the pass gathered.
fn agent(id: String, acc: AgentAcc) -> Agent {
    let sources = acc
        .sources
        .sorted()
        .into_iter()
        .map(|(_, e)| Source {
            method: e.stats.method.clone(),
            trust: e.stats.trust.clone(),
            records: e.records,
            inherited: e.stats.inherited,
            first: e.first.clone(),
            last: e.last.clone(),
        })
        .collect();
    let (tasks, tasks_rest) = acc.tasks.top(TOP);
    let (executables, executables_rest) = acc.executables.top(TOP);
    let (delegations, _) = acc.delegations.top(TOP);
    let mut processes = acc.processes;
    processes.executables = link_list(executables);
    processes.executables_rest = executables_rest;
    processes.delegations = link_list(delegations);
    let mut files = acc.files;
    let (classes, _) = acc.classes.top(usize::MAX);
    files.classes = classes
        .into_iter()
        .map(|(class, e)| {
            let (paths, paths_rest) = e.stats.paths.top(TOP);
            FileClass {
                class: class.to_owned(),
                records: e.records,
                reads: e.stats.rw.reads,
                writes: e.stats.rw.writes,
                failures: e.stats.rw.failures,
                paths: paths
                    .into_iter()
                    .map(|(path, p)| FilePath {
                        path: path.to_owned(),
                        records: p.records,
                        reads: p.stats.reads,
                        writes: p.stats.writes,
                        actions: p.stats.actions.iter().cloned().collect(),
                        first: p.first.clone(),
                        last: p.last.clone(),
                    })
                    .collect(),
                paths_rest,
                first: e.first.clone(),
                last: e.last.clone(),
            }
        })
        .collect();
    // Sensitive classes first, the unclassified rest last.
    files.classes.sort_by_key(|c| c.class == "unclassified");
    let (destinations, destinations_rest) = acc.destinations.top(TOP);
    let (dns, _) = acc.dns.top(TOP);
    let network = Network {
        records: acc.network_records,
        destinations: destinations
            .into_iter()
            .map(|(_, e)| Destination {
                direction: e.stats.direction.clone(),
                address: e.stats.address.clone(),
                port: e.stats.port,
                transport: e.stats.transport.clone(),
                domain: e.stats.domain.clone(),
                records: e.records,
                failures: e.stats.failures,
                actions: e.stats.actions.iter().cloned().collect(),
                first: e.first.clone(),
                last: e.last.clone(),
            })
            .collect(),
        destinations_rest,
        dns_questions: link_list(dns),
    };
    let (kinds, _) = acc.kinds.top(usize::MAX);
    Agent {
        id,
        declaration: acc.declaration.map(|(_, d)| d),
        declaration_changes: acc.changes.into_iter().map(|(_, d)| d).collect(),
        manifest: None,
        selectors: Vec::new(),
        identity_sources: sources,
        records: acc.records,
        first: acc.first,
        last: acc.last,
        activity: acc.activity,
        tasks: link_list(tasks),
        tasks_rest,
        processes,
        files,
        network,
        registrations: acc.registrations,
        kinds: kinds.into_iter().map(|(k, e)| kind(k, e)).collect(),
        notable: acc.notable,
        soc2: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::summary;

    #[test]
    fn a_kind_without_a_section_is_summarized_by_its_own_block() {
        let alert = json!({"event": {"action": "alert"}, "alert": {"severity": "high", "message": "curl wrote a shell", "rule": {"id": "r-1"}}});
        assert_eq!(
            summary(&alert, "alert"),
            "high: curl wrote a shell (rule r-1)"
        );
        let decision = json!({"host": {}, "event": {"action": "policy_decision"}, "policy": {"rule": "no-ssh"}});
        assert_eq!(
            summary(&decision, "policy_decision"),
            r#"{"rule":"no-ssh"}"#
        );
        let long = json!({"tool_call": {"arguments": "é".repeat(300)}});
        let s = summary(&long, "tool_call");
        assert!(s.ends_with('…') && s.len() <= 244, "{s}");
    }
}
