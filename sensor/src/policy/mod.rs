//! Per-agent policy: the form the manifest declares it in (`form`), the pure decision on one
//! record (`decide`), operators' time-bound exceptions (`exceptions`), and the agents'
//! policies in force, which turn a violation into the block of a `policy_decision` record
//! linked to the action's record; the addresses agents looked up for their enforced egress
//! rules' names (`resolved`).
use std::{collections::HashMap, sync::Arc, time::SystemTime};

use crate::record::{
    Identity, Record,
    policy::{DecidedAction, ExceptionRef, PolicyDecision},
    time::Timestamp,
};

pub mod decide;
pub mod exceptions;
pub mod form;
pub mod resolved;

use exceptions::Exceptions;
use resolved::Resolved;

use decide::Violation;
use form::{Mode, Policy};

/// One agent's policy and the tasks it may be registered for.
struct AgentPolicy {
    policy: Arc<Policy>,
    allowed_tasks: Vec<String>,
}

/// The policies in force, by agent id; only agents with a rule that records decisions.
#[derive(Default)]
pub struct Policies {
    by_agent: HashMap<String, AgentPolicy>,
}

impl Policies {
    /// The policies of these agents: (id, policy, allowed tasks).
    pub fn new<'a>(
        agents: impl IntoIterator<Item = (&'a str, &'a Arc<Policy>, &'a [String])>,
    ) -> Self {
        let records = |p: &Policy, tasks: &[String]| {
            let audited = |m: Option<Mode>| m.is_some_and(|m| m != Mode::Observe);
            (!tasks.is_empty() && p.tasks != Mode::Observe)
                || audited(p.egress.as_ref().map(|r| r.mode))
                || audited(p.files.as_ref().map(|r| r.mode))
                || audited(p.executables.as_ref().map(|r| r.mode))
        };
        let by_agent = agents
            .into_iter()
            .filter(|(_, p, tasks)| records(p, tasks))
            .map(|(id, policy, tasks)| {
                let entry = AgentPolicy {
                    policy: policy.clone(),
                    allowed_tasks: tasks.to_vec(),
                };
                (id.to_owned(), entry)
            })
            .collect();
        Self { by_agent }
    }

    /// Whether no agent's policy records decisions (the pipeline then asks nothing).
    pub fn is_empty(&self) -> bool {
        self.by_agent.is_empty()
    }

    /// The decision on `record` (an agent's activity, or a registration request) when a rule
    /// does not allow it, with the identity of the process that did it; `sealed` is the
    /// record's place in the chain (none when a full output refused it). Under an exception
    /// in force the outcome is `allowed`.
    pub fn decide(
        &self,
        record: &Record,
        sealed: Option<(u64, &str)>,
        exceptions: &Exceptions,
        resolved: &Resolved,
    ) -> Option<(PolicyDecision, Option<Identity>)> {
        let (agent, task, violation, identity) = if let Some(reg) = &record.registration {
            if reg.op != "register" {
                return None;
            }
            let agent = reg.agent.as_deref()?;
            let a = self.by_agent.get(agent)?;
            let violation = decide::task(&a.policy, &a.allowed_tasks, reg.task.as_deref()?)?;
            (agent, reg.task.clone(), violation, None)
        } else {
            let identity = record.identity.as_ref()?;
            let agent = identity.agent.id.as_str();
            let a = self.by_agent.get(agent)?;
            // Only an enforced egress rule's decision needs the agent's own lookups.
            let enforced = matches!(record.event.action, "connect" | "send")
                && a.policy
                    .egress
                    .as_ref()
                    .is_some_and(|r| r.mode == Mode::Enforce);
            let looked_up: Vec<std::net::IpAddr> = if enforced {
                resolved
                    .of(agent, std::time::Instant::now())
                    .into_iter()
                    .map(|(ip, _)| ip)
                    .collect()
            } else {
                Vec::new()
            };
            let violation = decide::check_looked_up(
                &a.policy,
                record,
                enforced.then_some(looked_up.as_slice()),
            )?;
            let task = identity.task.as_ref().map(|t| t.id.clone());
            (agent, task, violation, Some(identity.clone()))
        };
        let Violation {
            rule,
            mode,
            target,
            reason,
        } = violation;
        let mut exception = exceptions.in_force(agent, rule, SystemTime::now());
        // A rule the kernel enforces: the record says whether the kernel stopped the action
        // (an egress EPERM, an exec killed), which stands over what userspace believes (an
        // exception's start or end reaches the kernel a moment apart from the record).
        let kernel = match (rule, mode) {
            ("egress", Mode::Enforce) => Some((
                record.error.as_ref().is_some_and(|e| e.code == "EPERM"),
                "denied",
                "egress enforcement is not attached",
            )),
            ("executables", Mode::Kill) => Some((
                record.process.as_ref().is_some_and(|p| p.policy_killed),
                "killed",
                "the exec check was not loaded at start",
            )),
            // Refused by BPF LSM (`exec_denied`), or, for an exec the LSM check could not
            // judge (it made the process the agent's), killed as it completed.
            ("executables", Mode::Enforce) => {
                let killed = record.process.as_ref().is_some_and(|p| p.policy_killed);
                Some((
                    killed || record.event.action == "exec_denied",
                    if killed { "killed" } else { "denied" },
                    "BPF LSM exec enforcement was not loaded at start",
                ))
            }
            // The open exit's check kills an agent that opened a file its rule does not
            // allow; other file actions (rename, unlink, ...), and opens that failed, go ahead
            // (or opened nothing).
            ("files.read" | "files.write", Mode::Kill) => Some((
                record.file.as_ref().is_some_and(|f| f.policy_killed),
                "killed",
                if record.event.action != "open" {
                    "the kernel kills on opens only"
                } else if record.error.is_some() {
                    "the open failed: nothing was opened"
                } else {
                    "the open check was not loaded at start, or the path as named is not the \
                     file opened"
                },
            )),
            // BPF LSM refuses opens; other file actions (rename, unlink, ...) go ahead.
            ("files.read" | "files.write", Mode::Enforce) => Some((
                record.event.action == "open"
                    && record.error.as_ref().is_some_and(|e| e.code == "EPERM"),
                "denied",
                if record.event.action == "open" {
                    "it failed otherwise, BPF LSM file enforcement was not loaded at start, \
                     or the path as named is not the file opened"
                } else {
                    "the kernel refuses opens only"
                },
            )),
            _ => None,
        };
        let outcome = match (kernel, &exception, mode) {
            (Some((true, outcome, _)), _, _) => {
                exception = None;
                outcome
            }
            (_, Some(_), _) => "allowed",
            (None, None, Mode::Enforce) => "denied",
            _ => "violation",
        };
        let reason = match kernel {
            Some((false, _, why)) if exception.is_none() => {
                format!("{reason}; the kernel did not stop it ({why})")
            }
            _ => reason,
        };

        let decision = PolicyDecision {
            agent: agent.to_owned(),
            task,
            rule,
            version: self.by_agent[agent].policy.version.clone(),
            mode: mode.name(),
            outcome,
            target,
            reason,
            action: DecidedAction {
                name: record.event.action,
                sequence: sealed.map(|(s, _)| s),
                hash: sealed.map(|(_, h)| h.to_owned()),
            },
            exception: exception.map(|e| ExceptionRef {
                sequence: e.sequence,
                author: e.author,
                until: Timestamp::of(unix_nanos(e.until)),
            }),
        };
        Some((decision, identity))
    }
}

impl Policies {
    /// Learns, from an agent's own DNS answer, the addresses of a name its enforced egress
    /// rule allows (within the entry's `cidr`, if it has one), with that entry's ports.
    pub fn learn(&self, record: &Record, resolved: &Resolved) {
        let Some(dns) = record.dns.as_ref().filter(|d| !d.resolved_ip.is_empty()) else {
            return;
        };
        let Some(identity) = record.identity.as_ref() else {
            return;
        };
        let agent = identity.agent.id.as_str();
        let Some(rule) = self
            .by_agent
            .get(agent)
            .and_then(|a| a.policy.egress.as_ref())
            .filter(|r| r.mode == Mode::Enforce)
        else {
            return;
        };
        let Some(name) = dns.question.as_ref().map(|q| q.name.as_str()) else {
            return;
        };
        let ips: Vec<std::net::IpAddr> = dns
            .resolved_ip
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let ttl = dns.answers.iter().map(|a| a.ttl).min().unwrap_or(0);
        let now = std::time::Instant::now();
        for d in &rule.allow {
            let Some(glob) = &d.dns else { continue };
            if !glob.matches(name.as_bytes()) {
                continue;
            }
            let within: Vec<std::net::IpAddr> = ips
                .iter()
                .copied()
                .filter(|ip| d.cidr.is_none_or(|c| c.contains(*ip)))
                .collect();
            resolved.learn(agent, &within, &d.ports, ttl, now);
        }
    }
}

/// `t` in nanoseconds since the Unix epoch.
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}
