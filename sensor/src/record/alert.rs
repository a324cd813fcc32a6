//! Alerts (`event.action: alert`): what a detection rule found in a record, sealed into the
//! chain after the record that set it off (docs/rules.md).
use serde::Serialize;

use crate::record::{Identity, ProcessBlock, time::Timestamp};

/// The `alert` block: which rule fired, how bad it is, and on which record.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Alert {
    /// The rule that fired.
    pub rule: AlertRule,
    /// `informational`, `low`, `medium`, `high` or `critical` (Sigma's `level`, a native
    /// rule's `severity`).
    pub severity: &'static str,
    /// The rule's tags (MITRE ATT&CK ids as Sigma writes them: `attack.t1059.004`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// What happened, in a sentence.
    pub message: String,
    /// The record(s) that set it off.
    pub trigger: Trigger,
}

/// The rule of an alert, with the attribution its license asks to keep.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AlertRule {
    /// The rule's id (a Sigma rule's `id`).
    pub id: Option<String>,
    /// Its title.
    pub title: String,
    /// Its author(s), as the rule names them.
    pub author: Option<String>,
    /// The rule language: `sigma` or `native`.
    pub ruleset: &'static str,
}

/// The records an alert is about.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Trigger {
    /// Their `chain.sequence` numbers, in this run's chain.
    pub sequence: Vec<u64>,
    /// The `event.action` of the last of them.
    pub action: &'static str,
}

/// An alert with what its record carries besides the block: the triggering record's time,
/// agent and process.
#[derive(Debug)]
pub struct Raised {
    /// The alert block.
    pub alert: Alert,
    /// When the triggering event happened (the alert's `@timestamp`).
    pub timestamp: Timestamp,
    /// The agent the triggering record was attributed to.
    pub identity: Option<Identity>,
    /// The process that did it.
    pub process: Option<ProcessBlock>,
}
