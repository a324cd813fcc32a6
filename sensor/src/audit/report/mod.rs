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
    /// The identity manifest: declared agents with no records in range are listed too, and
    /// each agent's declaration is shown as the manifest has it now.
    pub manifest: Option<PathBuf>,
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
    /// As the manifest given (`--identities`) declares it now, when it does.
    pub manifest: Option<Declaration>,
    /// The manifest's selectors for it: which processes are the agent.
    pub selectors: Vec<String>,
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
    /// The manifest's file and line, for a declaration read from the manifest.
    pub origin: Option<String>,
}

impl Declaration {
    /// An agent as the manifest declares it.
    pub fn of_manifest(a: &crate::identity::manifest::AgentDecl) -> Self {
        Self {
            name: a.name.clone(),
            spiffe_id: a.spiffe_id.clone(),
            purpose: a.purpose.clone(),
            team: a.team.clone(),
            data_sensitivity: a.data_sensitivity.clone(),
            business_owner: a.business_owner.clone(),
            technical_owner: a.technical_owner.clone(),
            allowed_tasks: a.allowed_tasks.clone(),
            first: None,
            origin: Some(a.origin.clone()),
        }
    }

    /// The same declaration, wherever each was read.
    pub fn same_as(&self, other: &Self) -> bool {
        (
            &self.name,
            &self.spiffe_id,
            &self.purpose,
            &self.team,
            &self.data_sensitivity,
            &self.business_owner,
            &self.technical_owner,
            &self.allowed_tasks,
        ) == (
            &other.name,
            &other.spiffe_id,
            &other.purpose,
            &other.team,
            &other.data_sensitivity,
            &other.business_owner,
            &other.technical_owner,
            &other.allowed_tasks,
        )
    }
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
    let declared = options
        .manifest
        .as_deref()
        .map(crate::identity::manifest::load)
        .transpose()?
        .unwrap_or_default();
    let mut collector = collect::Collector::new(options);
    let verified = verify::verify_each(&options.paths, key.as_ref(), &mut |record| {
        collector.record(record);
    })?;
    Ok(collector.finish(options, &verified, key.as_ref(), &declared))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::evidence::chain::Chain;

    /// A sealed trail of synthetic records in a scratch file: two agents, one delegating to
    /// the other, files, a destination, a record kind the report has no section for, a
    /// refused registration, a review of one record, a gap and a checkpoint.
    struct Synthetic {
        path: PathBuf,
    }

    impl Drop for Synthetic {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn identity(agent: &str, hop: bool) -> Value {
        let mut i = json!({
            "agent": {"id": agent, "owners": {}},
            "attribution": {"method": "cgroup", "trust": "strong"},
        });
        if agent == "planner" {
            i["agent"]["owners"] = json!({"business": "ops@example.com"});
            i["agent"]["allowed_tasks"] = json!(["plan-1"]);
            i["task"] = json!({"id": "plan-1", "session": "s1"});
        }
        if hop {
            i["delegation"] = json!([{"from": "planner", "to": "coder", "process": {"pid": 7, "entity_id": "e7"}}]);
        }
        i
    }

    fn synthetic(name: &str) -> Synthetic {
        let t = |s: u32| format!("2026-12-07T03:00:{s:02}.000000000Z");
        let mut records = vec![json!({"@timestamp": t(0), "event": {"action": "sensor_start"}})];
        records.push(json!({"identity": identity("planner", false), "@timestamp": t(1), "event": {"action": "open", "outcome": "success"}, "file": {"path": "/srv/.env", "class": "env_file", "open": {"access": "read"}}}));
        records.push(json!({"identity": identity("coder", true), "@timestamp": t(2), "event": {"action": "exec"}, "process": {"pid": 7, "executable": "/usr/bin/coder"}}));
        records.push(json!({"identity": identity("coder", true), "@timestamp": t(3), "event": {"action": "open", "outcome": "success"}, "file": {"path": "/work/out.txt", "open": {"access": "write"}}}));
        records.push(json!({"identity": identity("coder", true), "@timestamp": t(4), "event": {"action": "rename", "outcome": "failure"}, "file": {"path": "/work/out.txt"}}));
        records.push(json!({"identity": identity("coder", true), "@timestamp": t(5), "event": {"action": "connect", "outcome": "success"}, "destination": {"address": "10.1.2.3", "port": 443, "domain": "api.example.com"}, "network": {"transport": "tcp"}}));
        records.push(json!({"identity": identity("coder", true), "@timestamp": t(6), "event": {"action": "policy_decision", "outcome": "failure"}, "policy_decision": {"rule": "no-ssh"}}));
        records.push(json!({"@timestamp": t(7), "event": {"action": "agent_registration", "outcome": "failure"}, "registration": {"op": "register", "granted": false, "reason": "task not allowed", "agent": "planner"}}));
        records.push(json!({"@timestamp": t(8), "event": {"action": "gap"}, "gap": {"source": "kernel_ring_buffer", "lost": 5}}));
        records.push(json!({"@timestamp": t(9), "event": {"action": "checkpoint"}, "checkpoint": {"public_key": "ab12"}}));
        records.push(json!({"@timestamp": t(10), "event": {"action": "sensor_stop"}}));
        let mut chain = Chain::new("run-1");
        let mut bytes = Vec::new();
        let mut hashes = Vec::new();
        for (i, r) in records.iter_mut().enumerate() {
            if i == 9 {
                // The review, of coder's connect (the 6th record), before the checkpoint.
                let review = json!({"@timestamp": t(9), "event": {"action": "annotation"}, "annotation": {"kind": "review", "author": "a@example.com", "text": "ok", "subject": hashes[5], "peer_uid": 0}});
                let mut out = serde_json::to_vec(&review).unwrap();
                chain.seal(&mut out, 0);
                bytes.extend_from_slice(&out);
            }
            let mut out = serde_json::to_vec(r).unwrap();
            chain.seal(&mut out, 0);
            hashes.push(chain.last().unwrap().1.to_owned());
            bytes.extend_from_slice(&out);
        }
        let path = std::env::temp_dir().join(format!("report-{name}-{}.jsonl", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Synthetic { path }
    }

    fn build_on(trail: &Synthetic, options: Options) -> Report {
        build(&Options {
            paths: vec![trail.path.clone()],
            ..options
        })
        .unwrap()
    }

    #[test]
    fn each_agent_is_tallied_with_links_to_its_records() {
        let trail = synthetic("tallied");
        let r = build_on(&trail, Options::default());
        assert_eq!(r.evidence.verdict, Verdict::Complete);
        assert_eq!(r.scope.records_read, 12);
        let ids: Vec<&str> = r.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["coder", "planner"]);
        let (coder, planner) = (&r.agents[0], &r.agents[1]);
        assert_eq!(coder.processes.execs, 1);
        assert_eq!(
            coder.processes.delegations[0].key,
            "planner → coder (pid 7)"
        );
        // Every record of the process carries the hop; it is counted on its exec.
        assert_eq!(coder.processes.delegations[0].records, 1);
        let work = &coder.files.classes[0];
        assert_eq!(work.class, "unclassified");
        assert_eq!((work.reads, work.writes, work.failures), (0, 2, 1));
        assert_eq!(work.paths[0].actions, ["open", "rename"]);
        assert_eq!((work.first.line, work.last.line), (4, 5));
        let env = &planner.files.classes[0];
        assert_eq!(
            (env.class.as_str(), env.reads, env.writes),
            ("env_file", 1, 0)
        );
        let d = &coder.network.destinations[0];
        assert_eq!(
            (d.address.as_str(), d.port, d.domain.as_deref()),
            ("10.1.2.3", Some(443), Some("api.example.com"))
        );
        // A kind without a section of its own: counted, linked, sampled.
        let policy = coder
            .kinds
            .iter()
            .find(|k| k.action == "policy_decision")
            .unwrap();
        assert_eq!(policy.records, 1);
        assert_eq!(policy.samples[0].what, r#"{"rule":"no-ssh"}"#);
        assert_eq!(planner.tasks[0].key, "plan-1 (session s1)");
        assert_eq!(planner.registrations.refused.total, 1);
        assert_eq!(r.annotations.items[0].about_agent.as_deref(), Some("coder"));
        assert_eq!(r.gaps.lost, 5);
        assert_eq!(r.evidence.signing.keys[0].public_key, "ab12");
        assert!(
            r.evidence
                .missing
                .iter()
                .any(|m| m.contains("signatures were not checked"))
        );
        // Each link is the record's place in the trail.
        let text = std::fs::read_to_string(&trail.path).unwrap();
        let line: Value = serde_json::from_str(text.lines().nth(5).unwrap()).unwrap();
        assert_eq!(d.first.line, 6);
        assert_eq!(line["chain"]["hash"], d.first.hash_hex());
        assert_eq!(line["chain"]["sequence"], d.first.sequence);
        // The SOC 2 mapping says what is missing.
        let missing = |a: &Agent, area: &str| {
            a.soc2
                .iter()
                .find(|c| c.area == area)
                .unwrap()
                .missing
                .clone()
        };
        assert!(
            missing(coder, "identity_and_ownership")
                .contains(&"no business owner declared".to_owned())
        );
        assert!(
            !missing(planner, "identity_and_ownership")
                .contains(&"no business owner declared".to_owned())
        );
        assert!(
            missing(planner, "access_and_least_privilege")
                .iter()
                .any(|m| m.starts_with("no policy decisions"))
        );
        assert!(
            missing(coder, "monitoring_and_anomalies")
                .iter()
                .any(|m| m.starts_with("gaps in the range"))
        );
    }

    #[test]
    fn a_manifest_lists_idle_agents_and_shows_where_a_declaration_changed() {
        let trail = synthetic("manifest");
        let manifest = trail.path.with_extension("yaml");
        std::fs::write(
            &manifest,
            "agents:\n  - id: planner\n    owners: {business: ops@example.com}\n    allowed_tasks: [plan-1]\n    selectors: [{uid: 4241}]\n  - id: coder\n    purpose: now declared\n  - id: idle\n    owners: {business: b@example.com}\n    selectors: [{uid: 4242}]\n",
        )
        .unwrap();
        let r = build_on(
            &trail,
            Options {
                manifest: Some(manifest.clone()),
                ..Options::default()
            },
        );
        let _ = std::fs::remove_file(&manifest);
        let ids: Vec<&str> = r.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["coder", "idle", "planner"]);
        let (coder, idle, planner) = (&r.agents[0], &r.agents[1], &r.agents[2]);
        assert_eq!(idle.records, 0);
        assert_eq!(idle.selectors, ["uid 4242"]);
        let origin = idle.manifest.as_ref().unwrap().origin.as_deref().unwrap();
        assert!(origin.starts_with(manifest.to_str().unwrap()), "{origin}");
        let identity = |a: &Agent| {
            a.soc2
                .iter()
                .find(|c| c.area == "identity_and_ownership")
                .unwrap()
                .clone()
        };
        assert!(
            identity(idle)
                .shows
                .contains(&"declared in the manifest, with no record in range".to_owned())
        );
        assert!(
            identity(idle)
                .shows
                .contains(&"business owner: b@example.com".to_owned())
        );
        let otherwise = |a: &Agent| {
            identity(a)
                .missing
                .iter()
                .any(|m| m.contains("declares it otherwise"))
        };
        assert!(otherwise(coder));
        assert!(!otherwise(planner));
        let md = markdown::render(&r);
        assert!(
            md.contains("selects it by uid 4242, and no record of it is in range"),
            "{md}"
        );
        assert!(
            md.contains("**declares it otherwise than its records**"),
            "{md}"
        );
    }

    #[test]
    fn a_range_and_an_agent_narrow_what_is_counted_not_what_is_verified() {
        let trail = synthetic("range");
        let r = build_on(
            &trail,
            Options {
                since: when::parse_rfc3339("2026-12-07T03:00:03Z"),
                until: when::parse_rfc3339("2026-12-07T03:00:06Z"),
                ..Options::default()
            },
        );
        assert_eq!((r.scope.records_read, r.scope.records_in_range), (12, 3));
        assert_eq!(r.agents.len(), 1);
        assert_eq!(r.agents[0].records, 3);
        let r = build_on(
            &trail,
            Options {
                agent: Some("planner".into()),
                ..Options::default()
            },
        );
        let ids: Vec<&str> = r.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["planner"]);
        assert_eq!(
            r.agents[0].records, 2,
            "its open and the registration naming it"
        );
    }
}
