//! The blocks of policy records: a decision (`event.action: policy_decision`: which agent's
//! action, which rule and policy version decided it, in which mode, with what outcome) and an
//! operator's exception to a rule (`policy_exception`: who, why, until when).
use serde::Serialize;

use crate::record::time::Timestamp;

/// A decision on one action of an agent. Every member is written, `null` where it has no value.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct PolicyDecision {
    /// The agent's id.
    pub agent: String,
    /// The task the agent was registered for (for a registration: the task it asked for).
    pub task: Option<String>,
    /// The rule that decided: `egress`, `files.read`, `files.write`, `executables`, `tasks`.
    pub rule: &'static str,
    /// The policy version that decided (declared, or `sha256:` and 16 hex digits).
    pub version: String,
    /// The rule's mode: `audit` or `enforce`.
    pub mode: &'static str,
    /// `violation` (recorded, not stopped), `denied` (stopped) or `allowed` (it went ahead
    /// under an operator's exception).
    pub outcome: &'static str,
    /// What was decided on: `ip:port`, a path, an executable, a task.
    pub target: String,
    /// Why the rule does not allow it.
    pub reason: String,
    /// The record of the action decided on.
    pub action: DecidedAction,
    /// The operator's exception the action went ahead under (`outcome: allowed`).
    pub exception: Option<ExceptionRef>,
}

/// The exception a decision was made under.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ExceptionRef {
    /// The `chain.sequence` of the `policy_exception` record that granted it.
    pub sequence: Option<u64>,
    /// Who granted it.
    pub author: String,
    /// When it ends.
    pub until: Timestamp,
}

/// An operator's time-bound exception to one rule for one agent. Every member is written.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct PolicyException {
    /// The agent's id.
    pub agent: String,
    /// The rule it suspends: `egress`, `files.read`, `files.write`, `executables`, `tasks`.
    pub rule: String,
    /// Who granted it, as they say; `peer_uid` is who the kernel says asked.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When it ends.
    pub until: Timestamp,
    /// The client's process id, as the kernel reports it.
    pub peer_pid: Option<i32>,
    /// The client's user id, as the kernel reports it.
    pub peer_uid: u32,
    /// The client's group id, as the kernel reports it.
    pub peer_gid: u32,
}

/// The record of the action a decision is about, in this run's chain.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct DecidedAction {
    /// Its `event.action` (`connect`, `open`, `exec`, `agent_registration`, ...).
    pub name: &'static str,
    /// Its `chain.sequence` (`null` when a full output refused it; the gap record counts it).
    pub sequence: Option<u64>,
    /// Its `chain.hash`.
    pub hash: Option<String>,
}
