//! Detection rules: the stage between build and seal that turns records into alerts
//! (docs/rules.md). Pure and deterministic: what it knows comes from the records it is shown
//! ([`lineage`] for parent processes) and the rules it was loaded with, so the daemon and
//! `agent-sensor rules test` over recorded events give the same alerts.
//!
//! [`fields`] picks out what rules read of a record and which Sigma log source it feeds;
//! [`sigma`] loads Sigma rules and evaluates them; [`native`] is the sensor's own condition
//! language and sequence rules; [`workflow`] is `agent-sensor rules check` and `rules test`. Rules run in the pipeline's loop, once per
//! sealed record: when they fall behind, the loop's inbox fills, then the kernel's ring
//! buffer, and the kernel counts what it could not write (a `gap` record), as for any slow
//! stage; the kernel reader itself never waits on them.
use std::path::{Path, PathBuf};

// Seeded, and far cheaper than SipHash for the uid looked up on every record.
use foldhash::HashMap;
use serde_json::Value;

use crate::{
    record::{
        Parent, Process, ProcessBlock, Record,
        alert::{Alert, AlertRule, Raised, Trigger},
    },
    stage::{Detect, RuleCounts},
};

pub mod fields;
pub mod lineage;
pub mod native;
pub mod sigma;
pub mod workflow;

use fields::{Category, Fields};
use lineage::Lineage;
use native::{
    NativeRules,
    field::{Addresses, View},
};
use sigma::{Rejection, RuleInfo, SigmaEngine, SigmaEvent, SigmaRules};

/// The loaded rules and what they remember; see the module doc.
pub struct Rules {
    sigma: SigmaRules,
    native: NativeRules,
    lineage: Lineage,
    /// User names by uid, from `/etc/passwd` as it was when the rules were loaded.
    users: HashMap<u32, String>,
    hits: Vec<usize>,
    /// Per engine (Sigma, native): records evaluated and nanoseconds spent, for the metrics
    /// (estimated: see [`TIMED_ONE_IN`]).
    timing: [(u64, u64); 2],
    /// What rules replaced by reloads lost or held back.
    carried: RuleCounts,
}

/// Rules loaded from files, and those that were not.
pub struct Loaded {
    /// The rules that loaded.
    pub rules: Rules,
    /// Every rule (or file) that did not, with why.
    pub rejected: Vec<Rejection>,
    /// The rule files read.
    pub files: usize,
}

impl Rules {
    /// Loads every rule file in `paths` (a directory: its `.yml` and `.yaml` files, all
    /// levels down, in name order): native rules when the file has a top-level `rules:`,
    /// `lists:` or `macros:` key, else Sigma.
    pub fn load(paths: &[PathBuf]) -> Loaded {
        let mut sigma = SigmaRules::default();
        let mut native = NativeRules::default();
        let mut rejected = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            if let Err(e) = rule_files(path, &mut files) {
                rejected.push(Rejection {
                    file: path.display().to_string(),
                    line: 1,
                    column: 1,
                    title: None,
                    reason: format!("cannot read: {e}"),
                });
            }
        }
        for file in &files {
            match std::fs::read_to_string(file) {
                Ok(text) if native::is_native(&text) => {
                    native.add_file(file, &text, &mut rejected);
                }
                Ok(text) => {
                    sigma.add_file(file, &text, &mut rejected);
                }
                Err(e) => rejected.push(Rejection {
                    file: file.display().to_string(),
                    line: 1,
                    column: 1,
                    title: None,
                    reason: format!("cannot read: {e}"),
                }),
            }
        }
        sigma.finish(&mut rejected);
        Loaded {
            rules: Rules::new(sigma, native),
            rejected,
            files: files.len(),
        }
    }

    /// Rules of these Sigma and native rules.
    pub fn new(sigma: SigmaRules, native: NativeRules) -> Self {
        Self {
            sigma,
            native,
            lineage: Lineage::default(),
            users: std::fs::read_to_string("/etc/passwd")
                .map(|text| users(&text))
                .unwrap_or_default(),
            hits: Vec::new(),
            timing: [(0, 0); 2],
            carried: RuleCounts::default(),
        }
    }

    /// How many rules are loaded.
    pub fn len(&self) -> usize {
        self.sigma.len() + self.native.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.sigma.is_empty() && self.native.is_empty()
    }

    /// Native rules' state dropped while it could still matter, and alerts their rate limits
    /// held back, since the rules were first loaded (reloads included).
    pub fn native_counts(&self) -> (u64, u64) {
        let c = self.counts();
        (c.evicted, c.suppressed)
    }

    /// The alerts of a record's `fields` (sealed as `sequence`), each with its rule, rule set,
    /// rendered message and triggering records; learns from the record (lineage) whether or
    /// not any rule fires.
    fn evaluate(
        &mut self,
        f: &Fields<'_>,
        sequence: Option<u64>,
        mut alert: impl FnMut(&RuleInfo, &'static str, String, Vec<u64>),
    ) {
        let parent = f.parent_entity_id.and_then(|p| self.lineage.image(p));
        let user = f.uid.and_then(|u| self.users.get(&u)).map(String::as_str);
        if let Some(category) = f.category
            && !self.sigma.is_empty()
        {
            let event = SigmaEvent {
                fields: f,
                parent,
                user,
            };
            let seconds = f
                .nanos
                .and_then(|ns| i64::try_from(ns.div_euclid(1_000_000_000)).ok());
            self.hits.clear();
            let started = timed(self.timing[0]);
            self.sigma
                .matching(&event, category, seconds, &mut self.hits);
            count(&mut self.timing[0], started);
            for &i in &self.hits {
                let rule = self.sigma.rule(i);
                let message = message(rule, category, f);
                alert(rule, "sigma", message, sequence.into_iter().collect());
            }
        }
        if !self.native.is_empty() {
            let view = View {
                fields: f,
                parent,
                tree: if self.native.uses_trees() {
                    self.lineage.tree(f)
                } else {
                    None
                },
                user,
                addresses: Addresses::default(),
            };
            let started = timed(self.timing[1]);
            self.native.evaluate(&view, sequence, &mut |fired| {
                alert(fired.rule, "native", fired.message, fired.sequences);
            });
            count(&mut self.timing[1], started);
        }
        self.lineage.observe(f);
    }

    /// The alerts of one recorded line (an ECS record as the sensor writes it): the same
    /// evaluation as the daemon's, for `agent-sensor rules test`.
    pub fn test_line(&mut self, line: &Value) -> Vec<Alert> {
        let f = Fields::of_json(line);
        let sequence = line
            .get("chain")
            .and_then(|c| c.get("sequence"))
            .and_then(Value::as_u64);
        let action = record_action(f.action);
        let mut out = Vec::new();
        self.evaluate(&f, sequence, |rule, ruleset, message, sequences| {
            out.push(alert(rule, ruleset, message, sequences, action));
        });
        out
    }
}

/// One evaluation in this many (per engine) is timed, and that time counted this many times:
/// two clock reads (about 55 ns on the reference VM) around every evaluation of each engine
/// were a tenth of the rules stage's cost, for a metric that is a mean over many records.
const TIMED_ONE_IN: u64 = 16;

/// When the next evaluation of an engine that has made `slot.0` is timed (its first, then one
/// in [`TIMED_ONE_IN`]), the time it starts.
fn timed(slot: (u64, u64)) -> Option<std::time::Instant> {
    slot.0
        .is_multiple_of(TIMED_ONE_IN)
        .then(std::time::Instant::now)
}

/// Counts one evaluation, and its time when it was timed from `started` (alerts included,
/// for native rules).
fn count(slot: &mut (u64, u64), started: Option<std::time::Instant>) {
    slot.0 += 1;
    if let Some(started) = started {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        slot.1 = slot.1.saturating_add(nanos.saturating_mul(TIMED_ONE_IN));
    }
}

impl Detect for Rules {
    type Rules = Rules;

    fn evaluation_time(&self) -> Vec<(&'static str, u64, u64)> {
        let [(sigma_n, sigma_ns), (native_n, native_ns)] = self.timing;
        vec![
            ("sigma", sigma_n, sigma_ns),
            ("native", native_n, native_ns),
        ]
    }

    fn reload(&mut self, next: Rules) {
        self.carried = self.counts();
        self.sigma = next.sigma;
        self.native = next.native;
        self.users = next.users;
    }

    fn counts(&self) -> RuleCounts {
        RuleCounts {
            evicted: self.carried.evicted + self.native.evictions(),
            suppressed: self.carried.suppressed + self.native.suppressed,
            correlation_dropped: self.carried.correlation_dropped + self.sigma.correlation_dropped,
        }
    }

    fn detect(&mut self, record: &Record, sequence: u64, out: &mut Vec<Raised>) {
        let f = Fields::of_record(record);
        self.evaluate(&f, Some(sequence), |rule, ruleset, message, sequences| {
            out.push(Raised {
                alert: alert(rule, ruleset, message, sequences, record.event.action),
                timestamp: record.timestamp,
                identity: record.identity.clone(),
                process: record.process.as_ref().map(process_of),
            });
        });
    }
}

fn alert(
    rule: &RuleInfo,
    ruleset: &'static str,
    message: String,
    sequence: Vec<u64>,
    action: &'static str,
) -> Alert {
    Alert {
        rule: AlertRule {
            id: rule.id.clone(),
            title: rule.title.clone(),
            author: rule.author.clone(),
            ruleset,
        },
        severity: rule.level,
        tags: rule.tags.clone(),
        message,
        trigger: Trigger { sequence, action },
    }
}

/// The record kinds a rule can fire on, as static names (a recorded line's are borrowed).
fn record_action(action: &str) -> &'static str {
    crate::record::schema::KINDS
        .iter()
        .map(|(kind, _)| *kind)
        .find(|a| *a == action)
        .unwrap_or("unknown")
}

/// What an alert says happened: the rule's title, then who did what.
fn message(rule: &RuleInfo, category: Category, f: &Fields<'_>) -> String {
    let who = format!(
        "{} (pid {})",
        f.executable.unwrap_or("an unknown executable"),
        f.pid
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    );
    let what = match category {
        Category::ProcessCreation => {
            format!("{who} started: {}", f.command_line.unwrap_or(""))
        }
        Category::FileEvent => format!(
            "{who} created or overwrote {}",
            f.target_filename.unwrap_or("a file")
        ),
        Category::NetworkConnection => {
            let peer = match (f.destination_domain, f.destination_ip) {
                (Some(name), Some(ip)) => format!("{name} ({ip})"),
                (None, Some(ip)) => ip.to_owned(),
                (Some(name), None) => name.to_owned(),
                (None, None) => "an unknown address".to_owned(),
            };
            let port = f
                .destination_port
                .map_or_else(String::new, |p| format!(" port {p}"));
            if f.initiated == Some(false) {
                format!("{who} accepted a connection on {peer}{port}")
            } else {
                format!("{who} connected to {peer}{port}")
            }
        }
    };
    format!("{}: {what}", rule.title)
}

/// The alert's own copy of the triggering record's process: shared blocks are shared again;
/// a block of the record's own keeps what names the process and what it ran.
fn process_of(p: &ProcessBlock) -> ProcessBlock {
    match p {
        ProcessBlock::Shared(shared) => ProcessBlock::Shared(shared.clone()),
        ProcessBlock::Own(p) => Process {
            pid: p.pid,
            entity_id: p.entity_id.clone(),
            name: p.name.clone(),
            executable: p.executable.clone(),
            exec_path: p.exec_path.clone(),
            working_directory: p.working_directory.clone(),
            working_directory_truncated: p.working_directory_truncated,
            command_line: p.command_line.clone(),
            parent: p.parent.as_ref().map(|parent| Parent {
                pid: parent.pid,
                entity_id: parent.entity_id.clone(),
                thread: None,
            }),
            user: p.user.clone(),
            ..Process::default()
        }
        .into(),
    }
}

/// Rule files under `path`: itself if a file, else its `.yml`/`.yaml` files, recursively.
pub fn rule_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !std::fs::metadata(path)?.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            rule_files(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(entry);
        }
    }
    Ok(())
}

/// User names by uid from `/etc/passwd`'s text (`name:password:uid:...`).
fn users(passwd: &str) -> HashMap<u32, String> {
    passwd
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            let uid = parts.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_names() {
        let u = users("root:x:0:0:root:/root:/bin/bash\nbad line\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(u.get(&0).map(String::as_str), Some("root"));
        assert_eq!(u.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(u.len(), 2);
    }

    /// The evaluation-time metric: each engine's first evaluation timed, then one in 16, each
    /// timed one standing for 16; every evaluation counted.
    #[test]
    fn one_evaluation_in_sixteen_is_timed_and_stands_for_sixteen() {
        let mut slot = (0, 0);
        let mut timed_at = Vec::new();
        for i in 0..40 {
            let started = timed(slot);
            if started.is_some() {
                timed_at.push(i);
            }
            count(&mut slot, started);
        }
        assert_eq!(timed_at, [0, 16, 32]);
        assert_eq!(slot.0, 40);
        let mut slot = (7, 0);
        count(
            &mut slot,
            Some(
                std::time::Instant::now()
                    .checked_sub(std::time::Duration::from_micros(1))
                    .unwrap(),
            ),
        );
        assert_eq!(slot.0, 8);
        assert!(slot.1 >= 16_000, "{slot:?}");
    }

    #[test]
    fn the_example_rules_load() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules");
        let loaded = Rules::load(&[examples]);
        assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
        // Three Sigma rules and one native file of five rules.
        assert_eq!((loaded.rules.len(), loaded.files), (8, 4));
        assert_eq!(loaded.rules.native.len(), 5);
    }

    /// The example native rules fire as they say on recorded lines (`rules test`'s path).
    #[test]
    fn the_example_native_rules_fire_on_recorded_lines() {
        let examples =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules/agent-native.yml");
        let mut rules = Rules::load(&[examples]).rules;
        let agent = |tier: &str| {
            serde_json::json!({"id": "coder", "data_sensitivity": tier,
                               "allowed_tasks": ["review"]})
        };
        let exec = |seq: u64, second: u32, tier: &str, task: &str| {
            serde_json::json!({
                "@timestamp": format!("2026-12-07T06:00:{second:02}.000000000Z"),
                "event": {"action": "exec"}, "chain": {"sequence": seq},
                "process": {"pid": 5, "executable": "/usr/bin/bash",
                            "command_line": "bash -c 'curl x\n'", "entity_id": "e5"},
                "identity": {"agent": agent(tier), "task": {"id": task}}})
        };
        let titles = |alerts: Vec<Alert>| -> Vec<(String, String, Vec<u64>)> {
            alerts
                .into_iter()
                .map(|a| (a.rule.id.unwrap(), a.message, a.trigger.sequence))
                .collect()
        };
        assert_eq!(
            titles(rules.test_line(&exec(1, 0, "restricted", "review"))),
            [(
                "agent-native-restricted-shell".to_owned(),
                "agent coder started a shell: bash -c 'curl x\\n' (parent -)".to_owned(),
                vec![1]
            )]
        );
        // Rate limited: one a minute per agent.
        assert!(
            rules
                .test_line(&exec(2, 1, "restricted", "review"))
                .is_empty()
        );
        assert_eq!(rules.native_counts(), (0, 1));
        let hits = titles(rules.test_line(&exec(3, 2, "internal", "deploy")));
        assert_eq!(hits[0].0, "agent-native-task-not-declared");
        assert_eq!(
            hits[0].1,
            "agent coder runs task deploy, not among its allowed tasks"
        );

        let open = serde_json::json!({
            "@timestamp": "2026-12-07T06:00:03.000000000Z", "chain": {"sequence": 4},
            "event": {"action": "open"}, "identity": {"agent": agent("internal")},
            "file": {"path": "/home/a/.aws/credentials", "class": "cloud_credentials",
                     "open": {"access": "read", "flags": []}}});
        let connect = |seq: u64, ip: &str| {
            serde_json::json!({
                "@timestamp": "2026-12-07T06:00:04.000000000Z", "chain": {"sequence": seq},
                "event": {"action": "connect"}, "identity": {"agent": agent("internal")},
                "network": {"type": "ipv4", "transport": "tcp"},
                "destination": {"ip": ip, "port": 443}})
        };
        assert!(rules.test_line(&open).is_empty());
        assert!(rules.test_line(&connect(5, "127.0.0.1")).is_empty());
        assert!(rules.test_line(&connect(6, "10.1.1.1")).is_empty());
        let hits = titles(rules.test_line(&connect(7, "203.0.113.9")));
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].0, "agent-native-secret-then-egress");
        assert_eq!(hits[0].2, [4, 7]);
        assert_eq!(
            hits[0].1,
            "agent coder connected to 203.0.113.9 port 443 after reading a credential"
        );

        let exchange = |seq: u64, tools: &[&str]| {
            let calls: Vec<_> = tools
                .iter()
                .map(|t| serde_json::json!({"name": t, "arguments": {"sha256": "0", "length": 2}}))
                .collect();
            serde_json::json!({
                "@timestamp": "2026-12-07T06:00:05.000000000Z", "chain": {"sequence": seq},
                "event": {"action": "llm_exchange"}, "identity": {"agent": agent("internal")},
                "llm": {"provider": "openai", "model": "gpt-x",
                        "request": {"host": "api.example", "method": "POST", "path": "/v1"},
                        "response": {"status": 200, "tool_calls": calls}}})
        };
        assert!(rules.test_line(&exchange(8, &["read_file"])).is_empty());
        let hits = titles(rules.test_line(&exchange(9, &["read_file", "bash"])));
        assert_eq!(
            hits,
            [(
                "agent-native-model-asked-for-a-shell".to_owned(),
                "agent coder: gpt-x asked for read_file, bash".to_owned(),
                vec![9]
            )]
        );
        let granted = serde_json::json!({
            "@timestamp": "2026-12-07T06:00:06.000000000Z", "chain": {"sequence": 10},
            "event": {"action": "policy_exception"},
            "exception": {"agent": "coder", "rule": "egress", "author": "alice",
                          "reason": "INC-7", "until": "2026-12-07T07:00:06.000000000Z",
                          "peer_pid": 1, "peer_uid": 0, "peer_gid": 0}});
        let hits = titles(rules.test_line(&granted));
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(
            hits[0].1,
            "alice suspended egress for agent coder until 2026-12-07T07:00:06.000000000Z: INC-7"
        );
    }

    /// The rules of a file holding `text`, every one of which must load.
    fn rules_of(name: &str, text: &str) -> Rules {
        let dir = std::env::temp_dir().join(format!("rules-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.yml");
        std::fs::write(&file, text).unwrap();
        let loaded = Rules::load(std::slice::from_ref(&file));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
        loaded.rules
    }

    /// `by: tree`: every step in the same process tree of one agent, as the records' exec and
    /// fork lines showed it; another tree of the same agent does not complete it. `three`
    /// adds an exec before the two steps of `tree`.
    #[test]
    fn a_tree_sequence_needs_both_steps_in_one_process_tree_of_the_agent() {
        let mut rules = rules_of(
            "tree",
            "rules:\n  - id: tree\n    title: Read then connect in one tree\n    sequence:\n      by: tree\n      within: 10\n      steps:\n        - event.action = open\n        - event.action = connect\n  - id: three\n    title: Exec, read, connect in one tree\n    sequence:\n      by: tree\n      within: 10\n      steps:\n        - event.action = exec\n        - event.action = open\n        - event.action = connect\n",
        );
        // `agent` empty: a record of no agent.
        let line = |seq: u64, action: &str, id: &str, parent: &str, agent: &str| {
            let mut l = serde_json::json!({
                "@timestamp": format!("2026-12-07T06:00:{seq:02}.000000000Z"),
                "event": {"action": action}, "chain": {"sequence": seq},
                "process": {"pid": seq, "executable": "/usr/bin/bash",
                            "entity_id": id, "parent": {"pid": 1, "entity_id": parent}}});
            if !agent.is_empty() {
                l["identity"] = serde_json::json!({"agent": {"id": agent}});
            }
            l
        };
        let mut fired = |l: serde_json::Value| -> Vec<(String, Vec<u64>)> {
            rules
                .test_line(&l)
                .into_iter()
                .map(|a| (a.rule.id.unwrap(), a.trigger.sequence))
                .collect()
        };
        let hits = |found: &[(&str, &[u64])]| -> Vec<(String, Vec<u64>)> {
            found
                .iter()
                .map(|(id, s)| ((*id).to_owned(), s.to_vec()))
                .collect()
        };
        // Two trees of agent a: r1 (with its forked and exec'd child c1), and r2.
        assert!(fired(line(1, "exec", "r1", "x", "a")).is_empty());
        assert!(fired(line(2, "fork", "c1", "r1", "a")).is_empty());
        assert!(fired(line(3, "exec", "c1", "r1", "a")).is_empty());
        assert!(fired(line(4, "exec", "r2", "y", "a")).is_empty());
        // d was r1's child but became agent b's at its exec: a tree of its own, in b.
        assert!(fired(line(5, "exec", "d", "r1", "b")).is_empty());
        assert!(fired(line(6, "open", "c1", "r1", "a")).is_empty());
        assert!(fired(line(7, "connect", "r2", "y", "a")).is_empty());
        assert!(fired(line(8, "connect", "d", "r1", "b")).is_empty());
        // The exec of c1 (3) is the latest exec of r1's tree before the read: `three` cites it.
        assert_eq!(
            fired(line(9, "connect", "r1", "x", "a")),
            hits(&[("tree", &[6, 9]), ("three", &[3, 6, 9])])
        );
        // A shell that exec'd as nobody's and became the agent's later (moved into the
        // agent's cgroup, or registered): the children it forks share its tree.
        assert!(fired(line(10, "exec", "sh", "z", "")).is_empty());
        assert!(fired(line(10, "fork", "s1", "sh", "a")).is_empty());
        assert!(fired(line(11, "fork", "s2", "sh", "a")).is_empty());
        assert!(fired(line(12, "exec", "s2", "sh", "a")).is_empty());
        assert!(fired(line(13, "open", "s1", "sh", "a")).is_empty());
        assert!(fired(line(14, "connect", "r2", "y", "a")).is_empty());
        assert_eq!(
            fired(line(15, "connect", "s2", "sh", "a")),
            hits(&[("tree", &[13, 15]), ("three", &[12, 13, 15])])
        );
    }

    /// Native rules see a recorded decision's and exchange's fields as the daemon does.
    #[test]
    fn native_rules_read_policy_and_llm_fields_of_recorded_lines() {
        let mut rules = rules_of(
            "fields",
            "rules:
  - id: denied-egress
    title: Denied
    condition: policy.rule = egress and policy.mode = enforce and policy.outcome = denied and policy.target startswith 10.
  - id: model
    title: Model
    condition: llm.provider = openai and llm.model = gpt-x and llm.request.host = api.example
  - id: tool
    title: Tool
    condition: mcp.method = tools/call and mcp.tool = read_note and mcp.server.name = notes and mcp.arguments.text contains /etc/shadow
",
        );
        let ids = |rules: &mut Rules, l: serde_json::Value| -> Vec<String> {
            rules
                .test_line(&l)
                .into_iter()
                .filter_map(|a| a.rule.id)
                .collect()
        };
        let decision = |outcome: &str| {
            serde_json::json!({"@timestamp": "2026-12-07T06:00:00Z", "chain": {"sequence": 1},
                "event": {"action": "policy_decision"},
                "policy": {"rule": "egress", "mode": "enforce", "outcome": outcome,
                           "target": "10.0.0.1:443"}})
        };
        assert_eq!(ids(&mut rules, decision("denied")), ["denied-egress"]);
        assert!(ids(&mut rules, decision("violation")).is_empty());
        let exchange = serde_json::json!({"@timestamp": "2026-12-07T06:00:01Z",
            "chain": {"sequence": 2}, "event": {"action": "llm_exchange"},
            "llm": {"provider": "openai", "model": "gpt-x",
                    "request": {"host": "api.example", "method": "POST", "path": "/v1"}}});
        assert_eq!(ids(&mut rules, exchange), ["model"]);
        let call = serde_json::json!({"@timestamp": "2026-12-07T06:00:02Z",
            "chain": {"sequence": 3}, "event": {"action": "mcp_call"},
            "mcp": {"method": "tools/call", "tool": "read_note", "server": {"name": "notes"},
                    "arguments": {"text": "{\"path\":\"/etc/shadow\"}"}}});
        assert_eq!(ids(&mut rules, call), ["tool"]);
    }

    /// Tool calls, exceptions granted and decisions made under one, from recorded lines.
    #[test]
    fn native_rules_read_tool_calls_and_exceptions_of_recorded_lines() {
        let mut rules = rules_of(
            "overrides",
            "rules:
  - id: shell-tool
    title: The model asked for a shell
    condition: event.action = llm_exchange and llm.response.tool_calls.name in (bash, shell)
    output: 'asked for %llm.response.tool_calls.name'
  - id: no-read-tool
    title: Tools other than read_file
    condition: llm.response.tool_calls.name != read_file
  - id: shadow-tool-args
    title: A tool call's arguments name /etc/shadow
    condition: llm.response.tool_calls.arguments.text contains /etc/shadow
    output: 'arguments %llm.response.tool_calls.arguments.text'
  - id: override-granted
    title: An operator suspended a rule
    condition: event.action = policy_exception and exception.rule = egress and exception.peer_uid = 0
    output: '%exception.author suspended %exception.rule for %exception.agent until %exception.until: %exception.reason'
  - id: under-exception
    title: Allowed under an exception
    condition: policy.outcome = allowed and policy.exception.author exists and policy.exception.sequence = 3
    output: 'by %policy.exception.author until %policy.exception.until'
",
        );
        let fired = |rules: &mut Rules, l: serde_json::Value| -> Vec<(String, String)> {
            rules
                .test_line(&l)
                .into_iter()
                .map(|a| (a.rule.id.unwrap(), a.message))
                .collect()
        };
        let exchange = |seq: u64, tools: &[&str]| {
            let calls: Vec<_> = tools
                .iter()
                .map(|t| serde_json::json!({"name": t, "arguments": {"sha256": "0", "length": 0}}))
                .collect();
            serde_json::json!({"@timestamp": "2026-12-07T06:00:00Z",
                "chain": {"sequence": seq}, "event": {"action": "llm_exchange"},
                "llm": {"provider": "anthropic", "request": {"host": "h", "method": "POST",
                        "path": "/v1/messages"},
                        "response": {"status": 200, "tool_calls": calls}}})
        };
        assert_eq!(
            fired(&mut rules, exchange(1, &["read_file", "bash"])),
            [(
                "shell-tool".to_owned(),
                "asked for read_file, bash".to_owned()
            )]
        );
        assert!(fired(&mut rules, exchange(2, &["read_file"])).is_empty());
        let ids: Vec<String> = fired(&mut rules, exchange(2, &["web_fetch"]))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["no-read-tool"]);
        // No tool asked for: the list is empty, `!=` does not hold.
        assert!(fired(&mut rules, exchange(2, &[])).is_empty());
        // Arguments held as text (not under `digest`): any one of them may match.
        let mut with_text = exchange(5, &["read_file", "read_file"]);
        with_text["llm"]["response"]["tool_calls"][1]["arguments"]["text"] =
            serde_json::json!("{\"path\":\"/etc/shadow\"}");
        assert_eq!(
            fired(&mut rules, with_text),
            [(
                "shadow-tool-args".to_owned(),
                "arguments {\"path\":\"/etc/shadow\"}".to_owned()
            )]
        );
        let granted = serde_json::json!({"@timestamp": "2026-12-07T06:00:01Z",
            "chain": {"sequence": 3}, "event": {"action": "policy_exception"},
            "exception": {"agent": "coder", "rule": "egress", "author": "alice",
                          "reason": "INC-42", "until": "2026-12-07T07:00:01Z",
                          "peer_pid": 9, "peer_uid": 0, "peer_gid": 0}});
        assert_eq!(
            fired(&mut rules, granted),
            [(
                "override-granted".to_owned(),
                "alice suspended egress for coder until 2026-12-07T07:00:01Z: INC-42".to_owned()
            )]
        );
        let decision = |exception: serde_json::Value| {
            serde_json::json!({"@timestamp": "2026-12-07T06:00:02Z",
                "chain": {"sequence": 4}, "event": {"action": "policy_decision"},
                "policy": {"rule": "egress", "mode": "audit", "outcome": "allowed",
                           "target": "10.0.0.1:443", "exception": exception}})
        };
        assert_eq!(
            fired(
                &mut rules,
                decision(serde_json::json!({"sequence": 3, "author": "alice",
                                            "until": "2026-12-07T07:00:01Z"}))
            ),
            [(
                "under-exception".to_owned(),
                "by alice until 2026-12-07T07:00:01Z".to_owned()
            )]
        );
        assert!(fired(&mut rules, decision(serde_json::Value::Null)).is_empty());
    }

    /// The SigmaHQ Linux rules of the three categories the sensor feeds (../shared/sigma):
    /// every one loads.
    #[test]
    fn the_sigma_linux_corpus_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sigma");
        let mut files = Vec::new();
        for dir in [
            "rules/linux",
            "rules-threat-hunting/linux",
            "rules-emerging-threats",
        ] {
            rule_files(&root.join(dir), &mut files)
                .expect("the Sigma corpus is at ../shared/sigma");
        }
        // The corpus's rules of these categories for product linux.
        let wanted: Vec<PathBuf> = files
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                text.contains("product: linux")
                    && ["process_creation", "file_event", "network_connection"]
                        .iter()
                        .any(|c| text.contains(&format!("category: {c}")))
            })
            .collect();
        assert_eq!(wanted.len(), 167);
        let loaded = Rules::load(&wanted);
        for r in &loaded.rejected {
            println!("rejected: {r}");
        }
        // Every one, the three on CurrentDirectory included (the exec record's working
        // directory).
        assert_eq!(loaded.rules.len(), 167);
        assert!(loaded.rejected.is_empty());
    }
}
