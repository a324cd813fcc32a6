//! The block of a policy decision record (`event.action: policy_decision`): which agent's
//! action, which rule and policy version decided it, in which mode, and with what outcome.
use serde::Serialize;

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
    /// `violation` (recorded, not stopped) or `denied` (stopped).
    pub outcome: &'static str,
    /// What was decided on: `ip:port`, a path, an executable, a task.
    pub target: String,
    /// Why the rule does not allow it.
    pub reason: String,
    /// The record of the action decided on.
    pub action: DecidedAction,
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
