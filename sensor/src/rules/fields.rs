//! What a rule sees of a record: the few fields rules match on, borrowed from a record being
//! written ([`Fields::of_record`]) or from a recorded line ([`Fields::of_json`]), so the
//! daemon and `agent-sensor rules test` evaluate the same thing. Which records feed which
//! Sigma log source is decided here (docs/rules.md, "Which records").
use serde_json::Value;

use crate::record::{Record, time};

/// The Sigma log source (`category`, product `linux`) a record feeds, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// `process_creation`: a successful exec.
    ProcessCreation,
    /// `file_event`: a file created or overwritten (never a read).
    FileEvent,
    /// `network_connection`: an IP connection made or accepted.
    NetworkConnection,
}

impl Category {
    /// Sigma's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::FileEvent => "file_event",
            Category::NetworkConnection => "network_connection",
        }
    }

    /// The category Sigma calls `name`.
    pub fn named(name: &str) -> Option<Self> {
        [
            Category::ProcessCreation,
            Category::FileEvent,
            Category::NetworkConnection,
        ]
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// The fields of one record that rules read; absent is `None`.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// The log source it feeds; `None` for records no rule matches on (lineage still learns
    /// from fork, exit and snapshot records).
    pub category: Option<Category>,
    /// `event.action`.
    pub action: &'a str,
    /// `process.pid`.
    pub pid: Option<u32>,
    /// `process.entity_id`.
    pub entity_id: Option<&'a str>,
    /// `process.parent.entity_id`.
    pub parent_entity_id: Option<&'a str>,
    /// `process.executable`: the resolved path of the file that runs.
    pub executable: Option<&'a str>,
    /// `process.command_line`.
    pub command_line: Option<&'a str>,
    /// `process.working_directory`: where an exec'd program started.
    pub working_directory: Option<&'a str>,
    /// `user.id` (the effective uid), else `process.user.id`.
    pub uid: Option<u32>,
    /// `process.login_user.id`: the audit login uid.
    pub login_uid: Option<u32>,
    /// The file created or overwritten: `file.target_path` (what the kernel opened, past a
    /// symlink) else `file.path`; rename: `file.destination_path`.
    pub target_filename: Option<&'a str>,
    /// `source.ip`.
    pub source_ip: Option<&'a str>,
    /// `source.port`.
    pub source_port: Option<u16>,
    /// `destination.ip`.
    pub destination_ip: Option<&'a str>,
    /// `destination.port`.
    pub destination_port: Option<u16>,
    /// `destination.domain`: the name the process resolved (a DNS answer the sensor saw).
    pub destination_domain: Option<&'a str>,
    /// connect: `true`; accept: `false`.
    pub initiated: Option<bool>,
    /// `network.transport`.
    pub transport: Option<&'a str>,
    /// `@timestamp`.
    pub timestamp: &'a str,
    /// `timestamp` in nanoseconds since the epoch (read once here, for every rule).
    pub nanos: Option<i128>,
    /// `event.outcome`.
    pub outcome: Option<&'a str>,
    /// `file.path`: the path as the process named it.
    pub file_path: Option<&'a str>,
    /// `file.class`: the sensitive-location class.
    pub file_class: Option<&'a str>,
    /// `file.open.access`.
    pub file_access: Option<&'a str>,
    /// `identity.agent.id`.
    pub agent_id: Option<&'a str>,
    /// `identity.agent.team`.
    pub agent_team: Option<&'a str>,
    /// `identity.agent.data_sensitivity`.
    pub data_sensitivity: Option<&'a str>,
    /// `identity.task.id`.
    pub task_id: Option<&'a str>,
    /// Whether `identity.task.id` is among the agent's `allowed_tasks` (an agent that lists
    /// none allows any); `None` without a task.
    pub task_allowed: Option<bool>,
    /// `identity.attribution.method`.
    pub attribution_method: Option<&'a str>,
    /// `policy.rule` (a `policy_decision` record).
    pub policy_rule: Option<&'a str>,
    /// `policy.mode`.
    pub policy_mode: Option<&'a str>,
    /// `policy.outcome`.
    pub policy_outcome: Option<&'a str>,
    /// `policy.target`.
    pub policy_target: Option<&'a str>,
    /// `llm.provider` (an `llm_exchange` record).
    pub llm_provider: Option<&'a str>,
    /// `llm.model`.
    pub llm_model: Option<&'a str>,
    /// `llm.request.host`.
    pub llm_host: Option<&'a str>,
    /// `llm.response.tool_calls[].name`: the tools the model asked for, in the response's
    /// order (empty when it asked for none; allocated only then).
    pub tool_calls: Vec<&'a str>,
    /// `llm.response.tool_calls[].arguments.text`: the arguments of those the record holds
    /// the text of (none under the `digest` content policy).
    pub tool_call_arguments: Vec<&'a str>,
    /// `policy.exception.author` (a decision made under an operator's exception).
    pub decision_exception_author: Option<&'a str>,
    /// `policy.exception.until`.
    pub decision_exception_until: Option<&'a str>,
    /// `policy.exception.sequence`: the granting record's `chain.sequence`.
    pub decision_exception_sequence: Option<u64>,
    /// `exception.agent` (a `policy_exception` record: an operator's exception granted).
    pub exception_agent: Option<&'a str>,
    /// `exception.rule`.
    pub exception_rule: Option<&'a str>,
    /// `exception.author`: who granted it, as they say.
    pub exception_author: Option<&'a str>,
    /// `exception.reason`.
    pub exception_reason: Option<&'a str>,
    /// `exception.until`.
    pub exception_until: Option<&'a str>,
    /// `exception.peer_uid`: who the kernel says asked.
    pub exception_peer_uid: Option<u32>,
    /// `mcp.method` (an `mcp_call` record).
    pub mcp_method: Option<&'a str>,
    /// `mcp.tool`.
    pub mcp_tool: Option<&'a str>,
    /// `mcp.server.name`.
    pub mcp_server: Option<&'a str>,
    /// `mcp.arguments.text` (absent under the `digest` content policy).
    pub mcp_arguments: Option<&'a str>,
}

/// Which log source a record of `action` feeds, given what the record says of itself.
/// `creates`: an open for writing with `create` or `truncate`.
fn category_of(action: &str, success: bool, creates: bool, ip: bool) -> Option<Category> {
    match action {
        "exec" => Some(Category::ProcessCreation),
        // Created or overwritten: opened for writing with O_CREAT or O_TRUNC, renamed to,
        // linked. Reads never feed `file_event`.
        "open" if success && creates => Some(Category::FileEvent),
        "rename" | "link" | "symlink" if success => Some(Category::FileEvent),
        // Unix sockets are not network connections.
        "connect" | "accept" if ip => Some(Category::NetworkConnection),
        _ => None,
    }
}

impl<'a> Fields<'a> {
    /// The fields of a record being written.
    pub fn of_record(r: &'a Record) -> Self {
        let action = r.event.action;
        let success = r.event.outcome != Some("failure");
        let creates = r
            .file
            .as_ref()
            .and_then(|f| f.open.as_ref())
            .is_some_and(|o| {
                (o.access == "write" || o.access == "read_write")
                    && o.flags.iter().any(|f| *f == "create" || *f == "truncate")
            });
        let ip = r
            .network
            .as_ref()
            .and_then(|n| n.r#type)
            .is_some_and(|t| t == "ipv4" || t == "ipv6");
        let mut f = Fields {
            category: category_of(action, success, creates, ip),
            action,
            ..Fields::default()
        };
        if let Some(p) = r.process.as_deref() {
            f.pid = Some(p.pid);
            f.entity_id = Some(&p.entity_id);
            f.parent_entity_id = p.parent.as_ref().map(|p| &*p.entity_id);
            f.executable = p.executable.as_deref();
            f.command_line = p.command_line.as_deref();
            f.working_directory = p.working_directory.as_deref();
            f.login_uid = p.login_user.as_ref().and_then(|u| u.id.parse().ok());
            f.uid = p.user.as_ref().and_then(|u| u.id.parse().ok());
        }
        if let Some(u) = &r.user {
            f.uid = u.id.parse().ok();
        }
        if let Some(file) = &r.file {
            f.target_filename = Some(match action {
                "rename" => file.destination_path.as_deref().unwrap_or(&file.path),
                "open" => file.target_path.as_deref().unwrap_or(&file.path),
                _ => &file.path,
            });
        }
        if let Some(s) = &r.source {
            f.source_ip = s.ip.as_deref();
            f.source_port = s.port;
        }
        if let Some(d) = &r.destination {
            f.destination_ip = d.ip.as_deref();
            f.destination_port = d.port;
            f.destination_domain = d.domain.as_deref();
        }
        if let Some(n) = &r.network {
            f.transport = n.transport;
        }
        f.initiated = initiated(action);
        f.timestamp = r.timestamp.as_str();
        f.nanos = Some(r.timestamp.unix_nanos());
        f.outcome = r.event.outcome;
        if let Some(file) = &r.file {
            f.file_path = Some(&file.path);
            f.file_class = file.class.as_deref();
            f.file_access = file.open.as_ref().map(|o| o.access);
        }
        if let Some(p) = &r.policy {
            f.policy_rule = Some(p.rule);
            f.policy_mode = Some(p.mode);
            f.policy_outcome = Some(p.outcome);
            f.policy_target = Some(&p.target);
            if let Some(e) = &p.exception {
                f.decision_exception_author = Some(&e.author);
                f.decision_exception_until = Some(e.until.as_str());
                f.decision_exception_sequence = e.sequence;
            }
        }
        if let Some(e) = &r.exception {
            f.exception_agent = Some(&e.agent);
            f.exception_rule = Some(&e.rule);
            f.exception_author = Some(&e.author);
            f.exception_reason = Some(&e.reason);
            f.exception_until = Some(e.until.as_str());
            f.exception_peer_uid = Some(e.peer_uid);
        }
        if let Some(l) = &r.llm {
            f.llm_provider = Some(l.provider);
            f.llm_model = l.model.as_deref();
            f.llm_host = l.request.host.as_deref();
            if let Some(response) = &l.response {
                f.tool_calls = response.tool_calls.iter().map(|t| &*t.name).collect();
                f.tool_call_arguments = response
                    .tool_calls
                    .iter()
                    .filter_map(|t| t.arguments.text.as_deref())
                    .collect();
            }
        }
        if let Some(m) = &r.mcp {
            f.mcp_method = Some(&m.method);
            f.mcp_tool = m.tool.as_deref();
            f.mcp_server = m.server.name.as_deref();
            f.mcp_arguments = m.arguments.as_ref().and_then(|a| a.text.as_deref());
        }
        if let Some(id) = &r.identity {
            f.agent_id = Some(&id.agent.id);
            f.agent_team = id.agent.team.as_deref();
            f.data_sensitivity = id.agent.data_sensitivity.as_deref();
            f.task_id = id.task.as_ref().map(|t| &*t.id);
            f.task_allowed = id.task.as_ref().map(|t| {
                let allowed = &id.agent.allowed_tasks;
                allowed.is_empty() || allowed.contains(&t.id)
            });
            f.attribution_method = Some(id.attribution.method);
        }
        f
    }

    /// The fields of a recorded line (an ECS record as the sensor writes it).
    pub fn of_json(v: &'a Value) -> Self {
        let s = |path: &[&str]| -> Option<&'a str> { at(v, path)?.as_str() };
        let n = |path: &[&str]| -> Option<u64> { at(v, path)?.as_u64() };
        let id = |path: &[&str]| -> Option<u32> { s(path)?.parse().ok() };
        let action = s(&["event", "action"]).unwrap_or("");
        let success = s(&["event", "outcome"]) != Some("failure");
        let access = s(&["file", "open", "access"]);
        let writes = matches!(access, Some("write" | "read_write"));
        let creates = writes
            && at(v, &["file", "open", "flags"])
                .and_then(Value::as_array)
                .is_some_and(|flags| {
                    flags
                        .iter()
                        .any(|f| matches!(f.as_str(), Some("create" | "truncate")))
                });
        let ip = matches!(s(&["network", "type"]), Some("ipv4" | "ipv6"));
        let path = s(&["file", "path"]);
        let task_id = s(&["identity", "task", "id"]);
        Fields {
            category: category_of(action, success, creates, ip),
            action,
            pid: n(&["process", "pid"]).and_then(|p| u32::try_from(p).ok()),
            entity_id: s(&["process", "entity_id"]),
            parent_entity_id: s(&["process", "parent", "entity_id"]),
            executable: s(&["process", "executable"]),
            command_line: s(&["process", "command_line"]),
            working_directory: s(&["process", "working_directory"]),
            uid: id(&["user", "id"]).or_else(|| id(&["process", "user", "id"])),
            login_uid: id(&["process", "login_user", "id"]),
            target_filename: match action {
                "rename" => s(&["file", "destination_path"]).or(path),
                "open" => s(&["file", "target_path"]).or(path),
                _ => path,
            },
            source_ip: s(&["source", "ip"]),
            source_port: n(&["source", "port"]).and_then(|p| u16::try_from(p).ok()),
            destination_ip: s(&["destination", "ip"]),
            destination_port: n(&["destination", "port"]).and_then(|p| u16::try_from(p).ok()),
            destination_domain: s(&["destination", "domain"]),
            initiated: initiated(action),
            transport: s(&["network", "transport"]),
            timestamp: s(&["@timestamp"]).unwrap_or(""),
            nanos: s(&["@timestamp"]).and_then(time::parse),
            outcome: s(&["event", "outcome"]),
            file_path: path,
            file_class: s(&["file", "class"]),
            file_access: access,
            agent_id: s(&["identity", "agent", "id"]),
            agent_team: s(&["identity", "agent", "team"]),
            data_sensitivity: s(&["identity", "agent", "data_sensitivity"]),
            task_id,
            task_allowed: task_id.map(|t| {
                at(v, &["identity", "agent", "allowed_tasks"])
                    .and_then(Value::as_array)
                    .is_none_or(|allowed| {
                        allowed.is_empty() || allowed.iter().any(|a| a.as_str() == Some(t))
                    })
            }),
            attribution_method: s(&["identity", "attribution", "method"]),
            policy_rule: s(&["policy", "rule"]),
            policy_mode: s(&["policy", "mode"]),
            policy_outcome: s(&["policy", "outcome"]),
            policy_target: s(&["policy", "target"]),
            llm_provider: s(&["llm", "provider"]),
            llm_model: s(&["llm", "model"]),
            llm_host: s(&["llm", "request", "host"]),
            tool_calls: at(v, &["llm", "response", "tool_calls"])
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .filter_map(|c| c.get("name")?.as_str())
                        .collect()
                })
                .unwrap_or_default(),
            tool_call_arguments: at(v, &["llm", "response", "tool_calls"])
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .filter_map(|c| c.get("arguments")?.get("text")?.as_str())
                        .collect()
                })
                .unwrap_or_default(),
            decision_exception_author: s(&["policy", "exception", "author"]),
            decision_exception_until: s(&["policy", "exception", "until"]),
            decision_exception_sequence: n(&["policy", "exception", "sequence"]),
            exception_agent: s(&["exception", "agent"]),
            exception_rule: s(&["exception", "rule"]),
            exception_author: s(&["exception", "author"]),
            exception_reason: s(&["exception", "reason"]),
            exception_until: s(&["exception", "until"]),
            exception_peer_uid: n(&["exception", "peer_uid"]).and_then(|u| u32::try_from(u).ok()),
            mcp_method: s(&["mcp", "method"]),
            mcp_tool: s(&["mcp", "tool"]),
            mcp_server: s(&["mcp", "server", "name"]),
            mcp_arguments: s(&["mcp", "arguments", "text"]),
        }
    }
}

fn initiated(action: &str) -> Option<bool> {
    match action {
        "connect" => Some(true),
        "accept" => Some(false),
        _ => None,
    }
}

fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_never_feed_file_event() {
        let line = |access: &str, flags: &[&str]| {
            json!({"event": {"action": "open", "outcome": "success"},
                   "file": {"path": "/etc/cron.d/x", "open": {"access": access, "flags": flags}}})
        };
        let read = line("read", &["create"]);
        assert_eq!(Fields::of_json(&read).category, None);
        let plain_write = line("write", &[]);
        assert_eq!(Fields::of_json(&plain_write).category, None);
        let created = line("write", &["create"]);
        let f = Fields::of_json(&created);
        assert_eq!(f.category, Some(Category::FileEvent));
        assert_eq!(f.target_filename, Some("/etc/cron.d/x"));
        let truncated = line("read_write", &["truncate"]);
        assert_eq!(
            Fields::of_json(&truncated).category,
            Some(Category::FileEvent)
        );
    }

    #[test]
    fn a_rename_creates_its_destination_and_unix_sockets_are_no_connections() {
        let rename = json!({"event": {"action": "rename", "outcome": "success"},
            "file": {"path": "/tmp/a", "destination_path": "/etc/ld.so.preload"}});
        assert_eq!(
            Fields::of_json(&rename).target_filename,
            Some("/etc/ld.so.preload")
        );
        let unix = json!({"event": {"action": "connect"}, "network": {"type": "unix"}});
        assert_eq!(Fields::of_json(&unix).category, None);
        let tcp = json!({"event": {"action": "connect"}, "network": {"type": "ipv4"},
            "destination": {"ip": "10.1.2.3", "port": 4444}});
        let f = Fields::of_json(&tcp);
        assert_eq!(f.category, Some(Category::NetworkConnection));
        assert_eq!((f.initiated, f.destination_port), (Some(true), Some(4444)));
    }
}
