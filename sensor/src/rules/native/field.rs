//! The fields native rules read, by the record's own (ECS) names, each resolved once at load
//! to a [`Field`] and read at evaluation from the same [`Fields`] view Sigma rules use.
//!
//! A field holds one value or, for a list field ([`Field::is_list`], such as the tools a
//! model asked for), any number of values of its kind: [`View::values`] yields them all, and
//! a test holds when any one passes it (docs/rules.md, "List fields").
use std::{cell::OnceCell, net::IpAddr};

use crate::rules::{fields::Fields, lineage::Image};

/// What kind of value a field holds: which operators apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text: `=`, `!=`, `in`, `startswith`, `endswith`, `contains`, `glob`, `regex`.
    Text,
    /// A path: as text, with `glob` in the path dialect.
    Path,
    /// An IP address: as text, and `cidr`.
    Address,
    /// A number: `=`, `!=`, `<`, `<=`, `>`, `>=`, `in`.
    Number,
    /// `true` or `false`: `=`, `!=`.
    Bool,
}

/// A field of the record (or learnt about it), resolved at load.
#[allow(
    missing_docs,
    reason = "each variant is the field `FIELDS` names next to it"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Action,
    Outcome,
    Pid,
    Executable,
    CommandLine,
    WorkingDirectory,
    ParentExecutable,
    ParentCommandLine,
    UserId,
    UserName,
    LoginUserId,
    FilePath,
    FileClass,
    FileAccess,
    DestinationIp,
    DestinationPort,
    DestinationDomain,
    SourceIp,
    SourcePort,
    Transport,
    AgentId,
    AgentTeam,
    DataSensitivity,
    TaskId,
    TaskAllowed,
    AttributionMethod,
    PolicyRule,
    PolicyMode,
    PolicyOutcome,
    PolicyTarget,
    LlmProvider,
    LlmModel,
    LlmHost,
    ToolCalls,
    ToolCallArguments,
    DecisionExceptionAuthor,
    DecisionExceptionUntil,
    DecisionExceptionSequence,
    ExceptionAgent,
    ExceptionRule,
    ExceptionAuthor,
    ExceptionReason,
    ExceptionUntil,
    ExceptionPeerUid,
    McpMethod,
    McpTool,
    McpServer,
    McpArguments,
}

impl Field {
    /// Whether the field is a list: any number of values, each of the field's kind.
    pub fn is_list(self) -> bool {
        matches!(self, Field::ToolCalls | Field::ToolCallArguments)
    }
}

/// Every field a native rule can name (docs/rules.md keeps the same table).
pub const FIELDS: &[(&str, Field, Kind)] = &[
    ("event.action", Field::Action, Kind::Text),
    ("event.outcome", Field::Outcome, Kind::Text),
    ("process.pid", Field::Pid, Kind::Number),
    ("process.executable", Field::Executable, Kind::Path),
    ("process.command_line", Field::CommandLine, Kind::Text),
    (
        "process.working_directory",
        Field::WorkingDirectory,
        Kind::Path,
    ),
    (
        "process.parent.executable",
        Field::ParentExecutable,
        Kind::Path,
    ),
    (
        "process.parent.command_line",
        Field::ParentCommandLine,
        Kind::Text,
    ),
    ("user.id", Field::UserId, Kind::Number),
    ("user.name", Field::UserName, Kind::Text),
    ("process.login_user.id", Field::LoginUserId, Kind::Number),
    ("file.path", Field::FilePath, Kind::Path),
    ("file.class", Field::FileClass, Kind::Text),
    ("file.open.access", Field::FileAccess, Kind::Text),
    ("destination.ip", Field::DestinationIp, Kind::Address),
    ("destination.port", Field::DestinationPort, Kind::Number),
    ("destination.domain", Field::DestinationDomain, Kind::Text),
    ("source.ip", Field::SourceIp, Kind::Address),
    ("source.port", Field::SourcePort, Kind::Number),
    ("network.transport", Field::Transport, Kind::Text),
    ("identity.agent.id", Field::AgentId, Kind::Text),
    ("identity.agent.team", Field::AgentTeam, Kind::Text),
    (
        "identity.agent.data_sensitivity",
        Field::DataSensitivity,
        Kind::Text,
    ),
    ("identity.task.id", Field::TaskId, Kind::Text),
    ("identity.task.allowed", Field::TaskAllowed, Kind::Bool),
    (
        "identity.attribution.method",
        Field::AttributionMethod,
        Kind::Text,
    ),
    ("policy.rule", Field::PolicyRule, Kind::Text),
    ("policy.mode", Field::PolicyMode, Kind::Text),
    ("policy.outcome", Field::PolicyOutcome, Kind::Text),
    ("policy.target", Field::PolicyTarget, Kind::Text),
    ("llm.provider", Field::LlmProvider, Kind::Text),
    ("llm.model", Field::LlmModel, Kind::Text),
    ("llm.request.host", Field::LlmHost, Kind::Text),
    ("llm.response.tool_calls.name", Field::ToolCalls, Kind::Text),
    (
        "llm.response.tool_calls.arguments.text",
        Field::ToolCallArguments,
        Kind::Text,
    ),
    (
        "policy.exception.author",
        Field::DecisionExceptionAuthor,
        Kind::Text,
    ),
    (
        "policy.exception.until",
        Field::DecisionExceptionUntil,
        Kind::Text,
    ),
    (
        "policy.exception.sequence",
        Field::DecisionExceptionSequence,
        Kind::Number,
    ),
    ("exception.agent", Field::ExceptionAgent, Kind::Text),
    ("exception.rule", Field::ExceptionRule, Kind::Text),
    ("exception.author", Field::ExceptionAuthor, Kind::Text),
    ("exception.reason", Field::ExceptionReason, Kind::Text),
    ("exception.until", Field::ExceptionUntil, Kind::Text),
    ("exception.peer_uid", Field::ExceptionPeerUid, Kind::Number),
    ("mcp.method", Field::McpMethod, Kind::Text),
    ("mcp.tool", Field::McpTool, Kind::Text),
    ("mcp.server.name", Field::McpServer, Kind::Text),
    ("mcp.arguments.text", Field::McpArguments, Kind::Text),
];

/// The field called `name`, and its kind.
pub fn named(name: &str) -> Option<(Field, Kind)> {
    FIELDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, f, k)| (f, k))
}

/// A field's value in one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Text (also paths and addresses).
    Text(&'a str),
    /// A number.
    Number(i64),
    /// A truth value.
    Bool(bool),
}

/// One record as native rules see it: its fields, its parent's image and its user's name.
pub struct View<'a> {
    /// The record's fields.
    pub fields: &'a Fields<'a>,
    /// What the parent process runs, if known.
    pub parent: Option<&'a Image>,
    /// The root of the record's process tree in its agent ([`Lineage::tree`]).
    ///
    /// [`Lineage::tree`]: crate::rules::lineage::Lineage::tree
    pub tree: Option<&'a str>,
    /// The effective user's name, if known.
    pub user: Option<&'a str>,
    /// `destination.ip` and `source.ip` parsed, by the first `cidr` test that asks.
    pub addresses: Addresses,
}

/// A record's addresses parsed at most once each, however many `cidr` tests read them.
#[derive(Default)]
pub struct Addresses([OnceCell<Option<IpAddr>>; 2]);

impl View<'_> {
    /// An address `field`'s value parsed (`None` if absent, not an address, or not an address
    /// field).
    pub fn address(&self, field: Field) -> Option<IpAddr> {
        let (slot, text) = match field {
            Field::DestinationIp => (0, self.fields.destination_ip),
            Field::SourceIp => (1, self.fields.source_ip),
            _ => return None,
        };
        *self.addresses.0[slot].get_or_init(|| text?.parse().ok())
    }
}

/// Every value of a field in one record: none, one, or (a list field) each element in order.
pub enum Values<'v> {
    /// A single-valued field's value, if the record has it.
    One(Option<Value<'v>>),
    /// A list field's elements.
    Texts(std::slice::Iter<'v, &'v str>),
}

impl<'v> Iterator for Values<'v> {
    type Item = Value<'v>;

    fn next(&mut self) -> Option<Value<'v>> {
        match self {
            Values::One(v) => v.take(),
            Values::Texts(items) => items.next().map(|t| Value::Text(t)),
        }
    }
}

impl View<'_> {
    /// Every value `field` has in the record: a list field's elements, else its one value if
    /// the record has it. A test on the field holds when any of them passes.
    pub fn values(&self, field: Field) -> Values<'_> {
        match field {
            Field::ToolCalls => Values::Texts(self.fields.tool_calls.iter()),
            Field::ToolCallArguments => Values::Texts(self.fields.tool_call_arguments.iter()),
            _ => Values::One(self.get(field)),
        }
    }

    /// A single-valued `field`'s value, if the record has it (`None` for a list field: see
    /// [`Self::values`]).
    pub fn get(&self, field: Field) -> Option<Value<'_>> {
        fn text(s: Option<&str>) -> Option<Value<'_>> {
            s.map(Value::Text)
        }
        let f = self.fields;
        let number = |n: Option<u32>| n.map(|n| Value::Number(i64::from(n)));
        let port = |n: Option<u16>| n.map(|n| Value::Number(i64::from(n)));
        match field {
            Field::Action => (!f.action.is_empty()).then_some(Value::Text(f.action)),
            Field::Outcome => text(f.outcome),
            Field::Pid => number(f.pid),
            Field::Executable => text(f.executable),
            Field::CommandLine => text(f.command_line),
            Field::WorkingDirectory => text(f.working_directory),
            Field::ParentExecutable => text(self.parent.and_then(|p| p.executable.as_deref())),
            Field::ParentCommandLine => text(self.parent.and_then(|p| p.command_line.as_deref())),
            Field::UserId => number(f.uid),
            Field::UserName => text(self.user),
            Field::LoginUserId => number(f.login_uid),
            Field::FilePath => text(f.file_path),
            Field::FileClass => text(f.file_class),
            Field::FileAccess => text(f.file_access),
            Field::DestinationIp => text(f.destination_ip),
            Field::DestinationPort => port(f.destination_port),
            Field::DestinationDomain => text(f.destination_domain),
            Field::SourceIp => text(f.source_ip),
            Field::SourcePort => port(f.source_port),
            Field::Transport => text(f.transport),
            Field::AgentId => text(f.agent_id),
            Field::AgentTeam => text(f.agent_team),
            Field::DataSensitivity => text(f.data_sensitivity),
            Field::TaskId => text(f.task_id),
            Field::TaskAllowed => f.task_allowed.map(Value::Bool),
            Field::AttributionMethod => text(f.attribution_method),
            Field::PolicyRule => text(f.policy_rule),
            Field::PolicyMode => text(f.policy_mode),
            Field::PolicyOutcome => text(f.policy_outcome),
            Field::PolicyTarget => text(f.policy_target),
            Field::LlmProvider => text(f.llm_provider),
            Field::LlmModel => text(f.llm_model),
            Field::LlmHost => text(f.llm_host),
            Field::ToolCalls | Field::ToolCallArguments => None,
            Field::DecisionExceptionAuthor => text(f.decision_exception_author),
            Field::DecisionExceptionUntil => text(f.decision_exception_until),
            Field::DecisionExceptionSequence => f
                .decision_exception_sequence
                .and_then(|n| i64::try_from(n).ok())
                .map(Value::Number),
            Field::ExceptionAgent => text(f.exception_agent),
            Field::ExceptionRule => text(f.exception_rule),
            Field::ExceptionAuthor => text(f.exception_author),
            Field::ExceptionReason => text(f.exception_reason),
            Field::ExceptionUntil => text(f.exception_until),
            Field::ExceptionPeerUid => number(f.exception_peer_uid),
            Field::McpMethod => text(f.mcp_method),
            Field::McpTool => text(f.mcp_tool),
            Field::McpServer => text(f.mcp_server),
            Field::McpArguments => text(f.mcp_arguments),
        }
    }
}
