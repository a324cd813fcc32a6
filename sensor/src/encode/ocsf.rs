//! `output.format = "ocsf"`: each record as an OCSF 1.8.0 event (docs/schema.md, "OCSF output").
//!
//! Process records become Process Activity (1007), file records File System Activity (1001),
//! network records Network Activity (4001), or DNS Activity (4003) when they carry a DNS
//! message; LLM API exchanges (`llm_exchange`) HTTP Activity (4002); MCP calls (`mcp_call`) API
//! Activity (6003); `sensor_start` and `sensor_stop` are Application Lifecycle (6002) of the sensor
//! itself; the sensor's own evidence records (gap, checkpoint, rotation, trail retention, annotation,
//! registration, reload, cgroup made, policy decision and exception, TLS not captured) are OCSF Base Events (class 0, activity Other) named by
//! `activity_name`. What OCSF has no attribute for stays, in the ECS record's own shape, under
//! `unmapped.agent_sensor` (OCSF's place for source data it does not model), and the evidence
//! chain is sealed into `unmapped.chain` (see [`crate::evidence::chain::Chain::seal_ocsf`]), so every
//! line still validates against the OCSF schema, which allows no extra top-level fields.
use serde_json::{Map, Value, json};

use crate::record::Record;

/// The OCSF version the events follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";
/// OCSF profiles the events use: `host` (device and actor on network events) and
/// `container` (the container of the process).
pub const PROFILES: &[&str] = &["host", "container"];
/// The profiles of an exec the kernel refused, and of an exec or open whose process the kernel
/// killed for it: `security_control` too, for its `action` and `disposition` (the policy's
/// control stopped it).
const PROFILES_DENIED: &[&str] = &["host", "container", "security_control"];

const SEVERITY_INFORMATIONAL: u64 = 1;
const SEVERITY_MEDIUM: u64 = 3;

/// An OCSF class and activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// `class_uid`.
    pub uid: u64,
    /// `class_name`.
    pub name: &'static str,
    /// `category_uid`.
    pub category_uid: u64,
    /// `category_name`.
    pub category_name: &'static str,
    /// `activity_id`.
    pub activity_id: u64,
    /// `activity_name`.
    pub activity_name: &'static str,
}

const fn class(
    uid: u64,
    name: &'static str,
    category_uid: u64,
    category_name: &'static str,
    activity_id: u64,
    activity_name: &'static str,
) -> Class {
    Class {
        uid,
        name,
        category_uid,
        category_name,
        activity_id,
        activity_name,
    }
}

const fn process(activity_id: u64, activity_name: &'static str) -> Class {
    class(
        1007,
        "Process Activity",
        1,
        "System Activity",
        activity_id,
        activity_name,
    )
}

const fn file(activity_id: u64, activity_name: &'static str) -> Class {
    class(
        1001,
        "File System Activity",
        1,
        "System Activity",
        activity_id,
        activity_name,
    )
}

const fn network(activity_id: u64, activity_name: &'static str) -> Class {
    class(
        4001,
        "Network Activity",
        4,
        "Network Activity",
        activity_id,
        activity_name,
    )
}

const fn dns(activity_id: u64, activity_name: &'static str) -> Class {
    class(
        4003,
        "DNS Activity",
        4,
        "Network Activity",
        activity_id,
        activity_name,
    )
}

const fn lifecycle(activity_id: u64, activity_name: &'static str) -> Class {
    class(
        6002,
        "Application Lifecycle",
        6,
        "Application Activity",
        activity_id,
        activity_name,
    )
}

/// The class and activity of a record, by `event.action` (and whether it carries DNS).
pub fn class_of(action: &'static str, has_dns: bool, dns_answer: bool) -> Class {
    if has_dns {
        return if dns_answer {
            dns(2, "Response")
        } else {
            dns(1, "Query")
        };
    }
    match action {
        // An exec the kernel refused (BPF LSM) is a launch that failed, and was blocked.
        "exec" | "fork" | "exec_denied" => process(1, "Launch"),
        "exit" => process(2, "Terminate"),
        // A process that was running when the sensor started: seen, not launched.
        "snapshot" => process(99, "Snapshot"),
        // Threads are not processes: OCSF has no activity for them.
        "thread_start" => process(99, "Thread Start"),
        "thread_exit" => process(99, "Thread Exit"),
        "open" => file(14, "Open"),
        "mkdir" | "link" | "symlink" => file(1, "Create"),
        "unlink" | "rmdir" => file(4, "Delete"),
        "rename" => file(5, "Rename"),
        "chmod" | "chown" => file(6, "Set Attributes"),
        "truncate" => file(3, "Update"),
        "connect" | "accept" => network(1, "Open"),
        "connect_completed" => network(99, "Connect Completed"),
        "listen" => network(7, "Listen"),
        "bind" => network(99, "Bind"),
        "send" | "receive" => network(6, "Traffic"),
        "sensor_start" => lifecycle(3, "Start"),
        "sensor_stop" => lifecycle(4, "Stop"),
        other => match other {
            "file" => file(99, "Other"),
            "network" => network(99, "Other"),
            _ => class(0, "Base Event", 0, "Uncategorized", 99, other),
        },
    }
}

/// HTTP Activity (4002), its activity by the request's method.
pub fn http_class(method: &str) -> Class {
    let (id, name) = match method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        "PATCH" => (9, "Patch"),
        _ => (99, "Other"),
    };
    class(4002, "HTTP Activity", 4, "Network Activity", id, name)
}

/// API Activity (6003) of an MCP call, its activity by the JSON-RPC method: `tools/list` reads;
/// a tool call and `initialize` are none of create, read, update or delete (Other, named).
pub fn api_class(method: &str) -> Class {
    let (id, name) = match method {
        "tools/list" => (2, "Read"),
        "tools/call" => (99, "Tool Call"),
        "initialize" => (99, "Initialize"),
        _ => (99, "Other"),
    };
    class(6003, "API Activity", 6, "Application Activity", id, name)
}

/// A detection, for a Detection Finding (2004): what an alert record (`event.action: alert`)
/// found, with the record that carries it as the evidence.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Stable id of this finding (`finding_info.uid`).
    pub uid: String,
    /// `finding_info.title`.
    pub title: String,
    /// `finding_info.desc`.
    pub desc: Option<String>,
    /// OCSF severity: 1 informational .. 5 critical, 6 fatal.
    pub severity_id: u8,
    /// The rule or analytic that found it.
    pub rule: Option<String>,
}

/// The Detection Finding event of `finding`, with `evidence` (the record that set it off, as
/// mapped) among its evidences and the record's device and actor.
pub fn detection_finding(finding: &Finding, evidence: &Value) -> Value {
    let c = class(2004, "Detection Finding", 2, "Findings", 1, "Create");
    let mut info = Map::new();
    info.insert("uid".into(), json!(finding.uid));
    info.insert("title".into(), json!(finding.title));
    if let Some(d) = &finding.desc {
        info.insert("desc".into(), json!(d));
    }
    if let Some(rule) = &finding.rule {
        info.insert("analytic".into(), json!({"name": rule, "type_id": 1}));
    }
    let mut out = Map::new();
    head(&mut out, c, u64::from(finding.severity_id));
    out.insert("time".into(), evidence["time"].clone());
    out.insert("metadata".into(), evidence["metadata"].clone());
    out.insert("finding_info".into(), Value::Object(info));
    out.insert("status_id".into(), json!(1));
    out.insert("status".into(), json!("New"));
    if let Some(d) = evidence.get("device") {
        out.insert("device".into(), d.clone());
    }
    let mut ev = Map::new();
    for key in [
        "actor",
        "process",
        "file",
        "dst_endpoint",
        "src_endpoint",
        "query",
    ] {
        if let Some(v) = evidence.get(key) {
            ev.insert(key.into(), v.clone());
        }
    }
    if !ev.is_empty() {
        out.insert("evidences".into(), json!([Value::Object(ev)]));
    }
    out.insert(
        "unmapped".into(),
        json!({"agent_sensor": {"evidence_class_uid": evidence["class_uid"]}}),
    );
    Value::Object(out)
}

fn head(out: &mut Map<String, Value>, c: Class, severity_id: u64) {
    out.insert("class_uid".into(), json!(c.uid));
    out.insert("class_name".into(), json!(c.name));
    out.insert("category_uid".into(), json!(c.category_uid));
    out.insert("category_name".into(), json!(c.category_name));
    out.insert("activity_id".into(), json!(c.activity_id));
    out.insert("activity_name".into(), json!(c.activity_name));
    out.insert("type_uid".into(), json!(c.uid * 100 + c.activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("{}: {}", c.name, c.activity_name)),
    );
    out.insert("severity_id".into(), json!(severity_id));
    out.insert(
        "severity".into(),
        json!(match severity_id {
            1 => "Informational",
            2 => "Low",
            3 => "Medium",
            4 => "High",
            5 => "Critical",
            6 => "Fatal",
            _ => "Unknown",
        }),
    );
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the sensor writes them
/// (`2026-01-02T03:04:05.123456789Z`).
pub fn epoch_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match b.get(19) {
        Some(b'.') => {
            let frac: String = t[20..]
                .chars()
                .take_while(char::is_ascii_digit)
                .chain("000".chars())
                .take(3)
                .collect();
            frac.parse::<i64>().ok()?
        }
        _ => 0,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + millis)
}

fn set(map: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        map.insert(key.into(), v);
    }
}

fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key)
}

fn num_str(v: &Value) -> Option<Value> {
    v.as_str().map(|s| json!(s))
}

/// The OCSF `process` of an ECS process block; removes what it maps from `p`, leaving the
/// rest for `unmapped`.
fn process_object(p: &mut Map<String, Value>) -> Value {
    let mut o = Map::new();
    set(&mut o, "pid", take(p, "pid"));
    set(&mut o, "uid", take(p, "entity_id"));
    set(&mut o, "name", take(p, "name"));
    set(&mut o, "cmd_line", take(p, "command_line"));
    set(&mut o, "working_directory", take(p, "working_directory"));
    if let Some(exe) = take(p, "executable") {
        let name = exe
            .as_str()
            .and_then(|s| s.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        o.insert("path".into(), exe.clone());
        o.insert(
            "file".into(),
            json!({"path": exe, "name": name, "type_id": 1, "type": "Regular File"}),
        );
    }
    if let Some(t) = take(p, "start").as_ref().and_then(Value::as_str) {
        set(&mut o, "created_time", epoch_ms(t).map(|ms| json!(ms)));
    }
    if let Some(t) = take(p, "end").as_ref().and_then(Value::as_str) {
        set(&mut o, "terminated_time", epoch_ms(t).map(|ms| json!(ms)));
    }
    if let Some(Value::Object(mut parent)) = take(p, "parent") {
        let mut po = Map::new();
        set(&mut po, "pid", take(&mut parent, "pid"));
        set(&mut po, "uid", take(&mut parent, "entity_id"));
        o.insert("parent_process".into(), Value::Object(po));
        // The parent's thread stays in `unmapped`.
        if !parent.is_empty() {
            p.insert("parent".into(), Value::Object(parent));
        }
    }
    if let Some(u) = take(p, "user") {
        o.insert("user".into(), json!({"uid": u["id"]}));
    }
    if let Some(t) = p.get("thread").and_then(|t| t.get("id")).cloned() {
        o.insert("tid".into(), t);
    }
    Value::Object(o)
}

/// The launch an exec the kernel refused asked for: the program (the record's `file`, whose
/// other fields go back to `unmapped`), in the process that asked (`caller`, OCSF's process
/// object of it), whose pid an exec keeps.
fn denied_launch(caller: &Value, file: Option<&mut Map<String, Value>>) -> Value {
    let mut o = Map::new();
    set(&mut o, "pid", caller.get("pid").cloned());
    if let Some(f) = file {
        let path = take(f, "path").unwrap_or(Value::Null);
        let name = path
            .as_str()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        o.insert("name".into(), json!(name));
        o.insert("path".into(), path.clone());
        o.insert(
            "file".into(),
            json!({"path": path, "name": name, "type_id": 1, "type": "Regular File"}),
        );
    }
    if let Some(u) = caller.get("user") {
        o.insert("user".into(), u.clone());
    }
    Value::Object(o)
}

fn endpoint(e: &Value) -> Option<Value> {
    let mut o = Map::new();
    set(&mut o, "ip", e.get("ip").cloned());
    set(&mut o, "port", e.get("port").cloned());
    set(&mut o, "hostname", e.get("domain").cloned());
    // A Unix socket's path (or `@name`), which is not an IP.
    if e.get("ip").is_none() {
        set(&mut o, "name", e.get("address").cloned());
    }
    (!o.is_empty()).then_some(Value::Object(o))
}

fn rcode_id(name: &str) -> u64 {
    match name {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        _ => 99,
    }
}

/// The OCSF event of a record.
pub fn event(record: &Record) -> Value {
    let Value::Object(mut ecs) = serde_json::to_value(record).expect("records serialise") else {
        unreachable!("a record is an object")
    };
    let action = record.event.action;
    let dns_answer = record.dns.as_ref().is_some_and(|d| d.r#type == "answer");
    let c = match (&record.llm, &record.mcp) {
        (Some(l), _) => http_class(&l.request.method),
        (None, Some(m)) => api_class(&m.method),
        (None, None) => class_of(action, record.dns.is_some(), dns_answer),
    };
    let mut out = Map::new();
    let denied_exec = action == "exec_denied";
    // An exec or open the kernel let happen and then killed its process for (kill mode).
    let killed = record.process.as_ref().is_some_and(|p| p.policy_killed)
        || record.file.as_ref().is_some_and(|f| f.policy_killed);
    // A gap, or a policy violation, denial or kill.
    let severity = if record.gap.is_some() || record.policy.is_some() || denied_exec || killed {
        SEVERITY_MEDIUM
    } else {
        SEVERITY_INFORMATIONAL
    };
    head(&mut out, c, severity);
    set(
        &mut out,
        "time",
        epoch_ms(&record.timestamp).map(|ms| json!(ms)),
    );
    take(&mut ecs, "@timestamp");
    if let Some(n) = record.event.repeat_count {
        out.insert("count".into(), json!(n));
    }
    match record.event.outcome {
        Some("success") => {
            out.insert("status_id".into(), json!(1));
            out.insert("status".into(), json!("Success"));
        }
        Some("failure") => {
            out.insert("status_id".into(), json!(2));
            out.insert("status".into(), json!("Failure"));
        }
        Some(_) => {
            out.insert("status_id".into(), json!(0));
            out.insert("status".into(), json!("Unknown"));
        }
        None => {}
    }
    if let Some(e) = &record.error {
        out.insert("status_code".into(), json!(e.code));
        out.insert("status_detail".into(), json!(e.message));
        take(&mut ecs, "error");
    }

    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "agent-sensor",
            "vendor_name": "agent-sensor",
            "version": record.sensor.version,
        },
        "profiles": if denied_exec || killed { PROFILES_DENIED } else { PROFILES },
        "log_name": record.event.dataset,
        "event_code": action,
        "correlation_uid": &*record.sensor.instance_id,
        // `time` is in ms; the event's time to the ns, as the record has it.
        "original_time": record.timestamp,
    });
    if let Some(ms) = epoch_ms(&record.event.created) {
        metadata["logged_time"] = json!(ms);
    }
    out.insert("metadata".into(), metadata);

    // The host: OCSF `device`.
    let h = &record.host;
    let mut device = json!({
        "type_id": 0,
        "type": "Unknown",
        "hostname": h.name,
        "name": h.name,
        "boot_uid": h.boot_id,
        "os": {"name": "Linux", "type_id": 200, "type": "Linux", "kernel_release": h.os.kernel},
    });
    if let Some(id) = &h.id {
        device["uid"] = json!(id);
    }
    let arch_id = match h.architecture {
        "x86" | "x86_64" => 1,
        "arm" | "aarch64" => 2,
        "riscv64" | "riscv32" => 3,
        _ => 99,
    };
    device["hw_info"] = json!({"cpu_architecture": h.architecture, "cpu_architecture_id": arch_id});
    out.insert("device".into(), device);
    take(&mut ecs, "host");

    // The container (the `container` profile); the pod stays in `unmapped`.
    if let Some(ct) = &record.container {
        let mut co = json!({"uid": ct.id, "runtime": ct.runtime});
        if let Some(n) = &ct.name {
            co["name"] = json!(n);
        }
        if let Some(img) = &ct.image {
            co["image"] = json!({"name": img.name, "uid": img.name});
        }
        if let Some(o) = &record.orchestrator {
            co["orchestrator"] = json!(o.r#type);
        }
        // `container` stays in `unmapped` too, for its labels.
        out.insert("container".into(), co);
    }

    // The process doing it: OCSF `actor.process` (and the subject `process` of Process
    // Activity); the AI agent: `actor.app_name` / `actor.app_uid`.
    let mut actor = Map::new();
    let mut proc_rest = None;
    if let Some(Value::Object(mut p)) = take(&mut ecs, "process") {
        // Mapped as the event's action and disposition (below).
        p.remove("policy_killed");
        let parent = p.get("parent").cloned();
        let po = process_object(&mut p);
        if c.uid == 1007 {
            if let Some(ec) = record.process.as_ref().and_then(|p| p.exit_code) {
                out.insert("exit_code".into(), json!(ec));
            }
            match action {
                "exec" | "exec_denied" => {
                    out.insert("launch_type_id".into(), json!(3));
                    out.insert("launch_type".into(), json!("Exec"));
                }
                "fork" => {
                    out.insert("launch_type_id".into(), json!(2));
                    out.insert("launch_type".into(), json!("Fork"));
                }
                _ => {}
            }
            if denied_exec {
                // The process asked to run a program and goes on running its old one: it is
                // the actor; the launch it asked for is the program the kernel refused
                // (`file.path`), in the same process.
                let mut file = match take(&mut ecs, "file") {
                    Some(Value::Object(f)) => Some(f),
                    _ => None,
                };
                out.insert("process".into(), denied_launch(&po, file.as_mut()));
                if let Some(rest) = file.filter(|f| !f.is_empty()) {
                    ecs.insert("file".into(), Value::Object(rest));
                }
                actor.insert("process".into(), po);
                out.insert("action_id".into(), json!(2));
                out.insert("action".into(), json!("Denied"));
                out.insert("disposition_id".into(), json!(2));
                out.insert("disposition".into(), json!("Blocked"));
            } else {
                // The process that made it (or, without a parent, the process itself).
                let actor_process = parent.map_or_else(
                    || po.clone(),
                    |parent| json!({"pid": parent["pid"], "uid": parent["entity_id"]}),
                );
                out.insert("process".into(), po);
                actor.insert("process".into(), actor_process);
            }
        } else {
            actor.insert("process".into(), po);
        }
        if !p.is_empty() {
            proc_rest = Some(Value::Object(p));
        }
    }
    if killed {
        // The exec or open happened (it was not denied) and the control then killed the
        // process: neither of OCSF's actions (Allowed, Denied) nor a disposition it names
        // (Blocked is a refusal) says that, so both are Other, named `Killed`.
        out.insert("action_id".into(), json!(99));
        out.insert("action".into(), json!("Killed"));
        out.insert("disposition_id".into(), json!(99));
        out.insert("disposition".into(), json!("Killed"));
    }
    if let Some(u) = take(&mut ecs, "user") {
        actor.insert("user".into(), json!({"uid": u["id"]}));
    }
    if let Some(id) = &record.identity {
        actor.insert(
            "app_name".into(),
            json!(id.agent.name.as_deref().unwrap_or(&id.agent.id)),
        );
        actor.insert("app_uid".into(), json!(id.agent.id));
    }
    if !actor.is_empty() {
        out.insert("actor".into(), Value::Object(actor));
    }

    // Files (the program of a refused exec is its launch's, above: Process Activity has no
    // `file`).
    let file = if denied_exec {
        None
    } else {
        take(&mut ecs, "file")
    };
    if let Some(Value::Object(mut f)) = file {
        // Mapped as the event's action and disposition (below).
        f.remove("policy_killed");
        let path = take(&mut f, "path").unwrap_or(Value::Null);
        let name = take(&mut f, "name").or_else(|| {
            path.as_str()
                .and_then(|p| p.rsplit('/').next())
                .map(|n| json!(n))
        });
        let type_id = match action {
            "mkdir" | "rmdir" => (2, "Folder"),
            "symlink" => (7, "Symbolic Link"),
            _ => (0, "Unknown"),
        };
        let mut fo = json!({"path": path, "name": name.unwrap_or(json!("")), "type_id": type_id.0, "type": type_id.1});
        if let Some(d) = take(&mut f, "directory") {
            fo["parent_folder"] = d;
        }
        if let Some(i) = f.get("inode").and_then(num_str) {
            fo["uid"] = i;
            f.remove("inode");
        }
        if let Some(s) = take(&mut f, "size") {
            fo["size"] = s;
        }
        out.insert("file".into(), fo);
        if let Some(dest) = f.get("destination_path").and_then(Value::as_str) {
            let name = dest.rsplit('/').next().unwrap_or("");
            out.insert(
                "file_result".into(),
                json!({"path": dest, "name": name, "type_id": 0, "type": "Unknown"}),
            );
            f.remove("destination_path");
        }
        if !f.is_empty() {
            ecs.insert("file".into(), Value::Object(f));
        }
    }

    // Network.
    if let Some(src) = take(&mut ecs, "source").as_ref().and_then(endpoint) {
        out.insert("src_endpoint".into(), src);
    }
    if let Some(dst) = take(&mut ecs, "destination").as_ref().and_then(endpoint) {
        out.insert("dst_endpoint".into(), dst);
    }
    if let Some(n) = &record.network {
        let (direction_id, direction) = match (n.direction, action) {
            (Some("inbound"), _) | (_, "accept") => (1, "Inbound"),
            (Some("outbound"), _) | (_, "connect") => (2, "Outbound"),
            (Some("internal"), _) => (4, "Local"),
            _ => (0, "Unknown"),
        };
        let mut ci = json!({"direction_id": direction_id, "direction": direction});
        if let Some(t) = n.transport {
            ci["protocol_name"] = json!(t);
        }
        if let Some(num) = n.iana_number.as_deref().and_then(|s| s.parse::<u64>().ok()) {
            ci["protocol_num"] = json!(num);
        }
        if let Some(id) = &n.socket_id {
            ci["uid"] = json!(id);
        }
        if let Some(ver) = n.r#type {
            match ver {
                "ipv4" => ci["protocol_ver_id"] = json!(4),
                "ipv6" => ci["protocol_ver_id"] = json!(6),
                _ => {}
            }
        }
        out.insert("connection_info".into(), ci);
        // OCSF wants an endpoint on every network event. A call that names no address (a
        // listen on a Unix socket, a send on a connected one) is about the socket itself:
        // the local endpoint, named by the socket's id.
        if !out.contains_key("src_endpoint") && !out.contains_key("dst_endpoint") {
            let local = match &n.socket_id {
                Some(id) => json!({"uid": id}),
                None => json!({"name": n.socket.family}),
            };
            out.insert("src_endpoint".into(), local);
        }
        if let Some(bytes) = n.bytes {
            let mut traffic = json!({"bytes": bytes});
            let (b, p) = if action == "receive" {
                ("bytes_in", "packets_in")
            } else {
                ("bytes_out", "packets_out")
            };
            traffic[b] = json!(bytes);
            if let Some(m) = n.messages {
                traffic["packets"] = json!(m);
                traffic[p] = json!(m);
            }
            out.insert("traffic".into(), traffic);
        }
    }

    // DNS.
    if let Some(d) = &record.dns {
        if let Some(q) = &d.question {
            out.insert(
                "query".into(),
                json!({"hostname": q.name, "type": q.r#type, "class": "IN", "packet_uid": d.id}),
            );
        }
        if d.r#type == "answer" {
            let answers: Vec<Value> = d
                .answers
                .iter()
                .map(|a| {
                    json!({
                        "rdata": a.data.as_deref().unwrap_or(""),
                        "type": a.r#type,
                        "class": "IN",
                        "ttl": a.ttl,
                        "packet_uid": d.id,
                    })
                })
                .collect();
            if !answers.is_empty() {
                out.insert("answers".into(), json!(answers));
            }
            if let Some(rc) = &d.response_code {
                out.insert("rcode_id".into(), json!(rcode_id(rc)));
                out.insert("rcode".into(), json!(rc));
            }
        }
    }

    // HTTP Activity: an LLM API exchange; what the API shape says stays in `unmapped.llm`.
    if let Some(l) = &record.llm {
        let mut url = json!({"path": l.request.path});
        if let Some(h) = &l.request.host {
            url["hostname"] = json!(h);
        }
        out.insert(
            "http_request".into(),
            json!({"http_method": l.request.method, "url": url, "length": l.request.body_bytes}),
        );
        // An endpoint on every network event: the Host the request named, when the connect
        // behind the connection was not seen.
        if !out.contains_key("dst_endpoint") {
            let host = l.request.host.as_deref().unwrap_or("unknown");
            out.insert("dst_endpoint".into(), json!({"hostname": host}));
        }
        if let Some(r) = &l.response {
            out.insert(
                "http_response".into(),
                json!({"code": r.status, "length": r.body_bytes}),
            );
        }
    }

    // API Activity: an MCP call, its method the API's operation and the server its service;
    // the arguments, the result and the rest stay in `unmapped.agent_sensor.mcp`.
    if let Some(m) = &record.mcp {
        let mut api = json!({"operation": m.method, "request": {"uid": m.request_id}});
        let mut service = Map::new();
        if let Some(n) = &m.server.name {
            service.insert("name".into(), json!(n));
        }
        if let Some(v) = &m.server.version {
            service.insert("version".into(), json!(v));
        }
        if !service.is_empty() {
            api["service"] = Value::Object(service);
        }
        if let Some(v) = &m.protocol_version {
            api["version"] = json!(v);
        }
        let mut response = Map::new();
        if let Some(code) = m.http_status {
            response.insert("code".into(), json!(code));
        }
        if let Some(e) = &m.error {
            response.insert("error".into(), json!(e.code.to_string()));
            if let Some(text) = &e.message.text {
                response.insert("error_message".into(), json!(text));
            }
        }
        if !response.is_empty() {
            api["response"] = Value::Object(response);
        }
        out.insert("api".into(), api);
        // The call comes from the agent's process on this host (its address, over HTTP, is
        // the connection's source, not recorded); the server over HTTP is `dst_endpoint`.
        if !out.contains_key("src_endpoint") {
            out.insert("src_endpoint".into(), json!({"hostname": record.host.name}));
        }
    }

    // Application Lifecycle: the sensor itself.
    if c.uid == 6002 {
        out.insert(
            "app".into(),
            json!({"name": "agent-sensor", "vendor_name": "agent-sensor", "version": record.sensor.version, "uid": &*record.sensor.instance_id}),
        );
        if let Some(reason) = record
            .sensor
            .lifecycle
            .as_ref()
            .and_then(|l| l.reason.as_ref())
        {
            out.insert("message".into(), json!(reason));
        }
    }

    if let Some(p) = &record.policy {
        out.insert("message".into(), json!(p.reason));
    }

    // Everything OCSF has no attribute for, in the ECS record's shape (`event`, `sensor`,
    // `identity`, `checkpoint`, `gap`, ... and the unmapped rest of `process` and `file`).
    if let Some(p) = proc_rest {
        ecs.insert("process".into(), p);
    }
    if let Some(alert) = &record.alert {
        // An alert is a Detection Finding whose evidence is the alert's process and agent;
        // the rule's attribution, tags and triggering sequence numbers stay in `unmapped`.
        let finding = Finding {
            uid: format!(
                "{}:{}:{}",
                record.sensor.instance_id,
                alert.trigger.sequence.first().copied().unwrap_or_default(),
                alert.rule.id.as_deref().unwrap_or(&alert.rule.title)
            ),
            title: alert.rule.title.clone(),
            desc: Some(alert.message.clone()),
            severity_id: severity_id(alert.severity),
            rule: Some(
                alert
                    .rule
                    .id
                    .clone()
                    .unwrap_or_else(|| alert.rule.title.clone()),
            ),
        };
        let Value::Object(mut f) = detection_finding(&finding, &Value::Object(out)) else {
            unreachable!("a finding is an object")
        };
        f.insert("message".into(), json!(alert.message));
        f.insert(
            "unmapped".into(),
            json!({ "agent_sensor": Value::Object(ecs) }),
        );
        return Value::Object(f);
    }
    out.insert(
        "unmapped".into(),
        json!({ "agent_sensor": Value::Object(ecs) }),
    );
    Value::Object(out)
}

/// OCSF `severity_id` of a rule's level.
fn severity_id(level: &str) -> u8 {
    match level {
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        "critical" => 5,
        _ => 1,
    }
}

/// Writes the OCSF event of `record` to `out` with `unmapped` last, so the evidence chain can
/// be sealed into it ([`crate::evidence::chain::Chain::seal_ocsf`]).
pub fn write(out: &mut Vec<u8>, record: &Record) {
    let Value::Object(mut event) = event(record) else {
        unreachable!("an event is an object")
    };
    let unmapped = event.remove("unmapped").expect("every event has unmapped");
    serde_json::to_writer(&mut *out, &event).expect("events serialise to memory");
    out.pop();
    out.extend_from_slice(b",\"unmapped\":");
    serde_json::to_writer(&mut *out, &unmapped).expect("events serialise to memory");
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_times_to_epoch_milliseconds() {
        assert_eq!(epoch_ms("1970-01-01T00:00:00.000000000Z"), Some(0));
        assert_eq!(
            epoch_ms("2026-12-01T15:22:22.123456789Z"),
            Some(1_796_138_542_123)
        );
        assert_eq!(epoch_ms("2000-03-01T00:00:01Z"), Some(951_868_801_000));
        assert_eq!(epoch_ms("yesterday"), None);
    }

    #[test]
    fn maps_actions_to_ocsf_classes_and_activities() {
        let cases = [
            ("exec", 1007, 1),
            ("exec_denied", 1007, 1),
            ("fork", 1007, 1),
            ("exit", 1007, 2),
            ("snapshot", 1007, 99),
            ("thread_start", 1007, 99),
            ("open", 1001, 14),
            ("mkdir", 1001, 1),
            ("unlink", 1001, 4),
            ("rmdir", 1001, 4),
            ("rename", 1001, 5),
            ("chmod", 1001, 6),
            ("chown", 1001, 6),
            ("truncate", 1001, 3),
            ("connect", 4001, 1),
            ("accept", 4001, 1),
            ("listen", 4001, 7),
            ("send", 4001, 6),
            ("receive", 4001, 6),
            ("sensor_start", 6002, 3),
            ("sensor_stop", 6002, 4),
            ("gap", 0, 99),
            ("checkpoint", 0, 99),
            ("trail_retention", 0, 99),
            ("annotation", 0, 99),
            ("policy_decision", 0, 99),
            ("policy_exception", 0, 99),
            ("tls_not_captured", 0, 99),
        ];
        for (action, uid, activity) in cases {
            let c = class_of(action, false, false);
            assert_eq!((c.uid, c.activity_id), (uid, activity), "{action}");
        }
        assert_eq!(class_of("send", true, false).uid, 4003);
        assert_eq!(class_of("send", true, false).activity_id, 1);
        assert_eq!(class_of("receive", true, true).activity_id, 2);
        assert_eq!(class_of("gap", false, false).activity_name, "gap");
        assert_eq!(http_class("POST").uid, 4002);
        assert_eq!(
            (
                api_class("tools/list").uid,
                api_class("tools/list").activity_id
            ),
            (6003, 2)
        );
        assert_eq!(api_class("tools/call").activity_name, "Tool Call");
        assert_eq!(http_class("POST").activity_id, 6);
        assert_eq!(http_class("BREW").activity_id, 99);
    }

    fn sample() -> Record {
        use crate::record::*;
        use std::sync::Arc;
        let host = Arc::new(crate::record::rendered::Rendered::new(
            crate::record::host::HostInfo {
                name: "h".into(),
                id: None,
                boot_id: "b".into(),
                architecture: "x86_64",
                os: crate::record::host::HostOs {
                    kernel: "6.1".into(),
                    kind: "linux",
                },
            },
        ));
        let sensor = SensorBlock {
            instance_id: Arc::from("run-1"),
            version: "0.1.0",
            lifecycle: None,
        };
        let event = EventMeta {
            kind: "event",
            category: &["file"],
            kind_type: &["change"],
            action: "rename",
            outcome: Some("failure"),
            dataset: "agent_sensor.file",
            created: crate::record::time::Timestamp::of(1_796_138_542_500_000_000),
            repeat_count: None,
        };
        Record {
            process: Some(crate::record::ProcessBlock::from(Process {
                pid: 42,
                entity_id: "e42".into(),
                name: Some("mv".into()),
                args_count: Some(3),
                working_directory: Some("/home/u".into()),
                parent: Some(Parent {
                    pid: 1,
                    entity_id: "e1".into(),
                    thread: None,
                }),
                ..Process::default()
            })),
            user: Some(Id::of(1000)),
            file: Some(File {
                path: "/tmp/a".into(),
                destination_path: Some("/tmp/b".into()),
                class: Some("ssh_key".into()),
                ..File::default()
            }),
            error: Some(ErrorInfo {
                code: "ENOENT".into(),
                message: "No such file".into(),
            }),
            ..Record::new(
                crate::record::time::Timestamp::of(1_796_138_542_000_000_001),
                event,
                host,
                sensor,
            )
        }
    }

    #[test]
    fn maps_a_file_record_and_keeps_the_rest_unmapped() {
        let e = event(&sample());
        assert_eq!(e["class_uid"], 1001);
        assert_eq!(e["type_uid"], 1001 * 100 + 5);
        assert_eq!(e["time"], 1_796_138_542_000_i64);
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["status_code"], "ENOENT");
        assert_eq!(e["file"]["path"], "/tmp/a");
        assert_eq!(e["file"]["name"], "a");
        assert_eq!(e["file_result"]["path"], "/tmp/b");
        assert_eq!(e["actor"]["process"]["pid"], 42);
        assert_eq!(e["actor"]["process"]["working_directory"], "/home/u");
        assert_eq!(e["actor"]["process"]["parent_process"]["uid"], "e1");
        assert_eq!(e["actor"]["user"]["uid"], "1000");
        assert_eq!(e["device"]["hostname"], "h");
        assert_eq!(e["metadata"]["version"], OCSF_VERSION);
        let rest = &e["unmapped"]["agent_sensor"];
        assert_eq!(rest["event"]["action"], "rename");
        assert_eq!(rest["file"]["class"], "ssh_key");
        assert_eq!(rest["process"]["args_count"], 3);
        assert!(rest["process"].get("pid").is_none(), "mapped, not repeated");
        assert!(rest["process"].get("working_directory").is_none());
        assert!(rest.get("host").is_none() && rest.get("@timestamp").is_none());
        assert!(rest["process"].get("parent").is_none());
        assert_eq!(
            e["metadata"]["original_time"],
            "2026-12-01T15:22:22.000000001Z"
        );
        assert_eq!(e["device"]["hw_info"]["cpu_architecture_id"], 1);
    }

    #[test]
    fn a_retention_record_is_a_base_event_naming_the_removed_files_unmapped() {
        use crate::record::trail::{RecordRef, RemovedFile, Retention};
        let mut r = sample();
        r.file = None;
        r.process = None;
        r.event.action = "trail_retention";
        r.retention = Some(Box::new(Retention {
            removed: vec![RemovedFile {
                file: "trail-0000000001-20261201T152222Z.jsonl".into(),
                reason: "size",
                bytes: 4096,
                first: None,
                last: Some(RecordRef {
                    instance_id: "run-0".into(),
                    sequence: 41,
                    hash: "ab".into(),
                }),
            }],
            max_bytes: 65_536,
            max_age_ms: 0,
        }));
        let e = event(&r);
        assert_eq!(
            (e["class_uid"].as_u64(), e["activity_id"].as_u64()),
            (Some(0), Some(99))
        );
        assert_eq!(e["activity_name"], "trail_retention");
        let removed = &e["unmapped"]["agent_sensor"]["retention"]["removed"][0];
        assert_eq!(removed["file"], "trail-0000000001-20261201T152222Z.jsonl");
        assert_eq!(removed["last"]["sequence"], 41);
    }

    #[test]
    fn a_sink_gap_keeps_which_sink_run_and_sequences_unmapped() {
        let mut r = sample();
        r.file = None;
        r.event.action = "gap";
        r.gap = Some(Box::new(crate::record::Gap {
            source: "sink",
            lost: 5,
            by_kind: std::collections::BTreeMap::new(),
            error: Some("queue_full"),
            start: None,
            end: None,
            sink: Some(crate::record::SinkGap {
                name: "siem".into(),
                instance_id: Some("run-0".into()),
                first_sequence: 10,
                last_sequence: 14,
            }),
        }));
        let e = event(&r);
        let gap = &e["unmapped"]["agent_sensor"]["gap"];
        assert_eq!(gap["source"], "sink", "{e}");
        assert_eq!(
            gap["sink"],
            json!({"name": "siem", "instance_id": "run-0", "first_sequence": 10, "last_sequence": 14})
        );
    }

    #[test]
    fn a_network_event_without_an_address_names_its_socket_as_the_endpoint() {
        let mut r = sample();
        r.file = None;
        r.event.action = "listen";
        r.event.category = &["network"];
        r.network = Some(crate::record::Network {
            socket: crate::record::SocketInfo {
                family: "AF_UNIX".into(),
                ..Default::default()
            },
            socket_id: Some("13b561516a94254f".to_owned()),
            backlog: Some(1),
            ..Default::default()
        });
        let e = event(&r);
        assert_eq!(
            (e["class_uid"].clone(), e["activity_id"].clone()),
            (json!(4001), json!(7))
        );
        assert_eq!(e["src_endpoint"], json!({"uid": "13b561516a94254f"}));
        assert!(e.get("dst_endpoint").is_none(), "{e}");
        r.network.as_mut().unwrap().socket_id = None;
        assert_eq!(event(&r)["src_endpoint"], json!({"name": "AF_UNIX"}));
    }

    #[test]
    fn writes_unmapped_last_and_seals_the_chain_into_it() {
        let mut out = Vec::new();
        write(&mut out, &sample());
        let mut chain = crate::evidence::chain::Chain::new("run-1");
        chain.seal_ocsf(&mut out, 0);
        assert_eq!(out.pop(), Some(b'\n'));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(
            v.get("chain").is_none(),
            "OCSF allows no extra top-level field"
        );
        assert_eq!(v["unmapped"]["chain"]["sequence"], 0);
        let sealed = crate::evidence::chain::check_line(&out).unwrap();
        assert!(!sealed.changed);
        assert_eq!(sealed.action, "rename");
        assert_eq!(sealed.instance_id, "run-1");
    }

    #[test]
    fn an_alert_record_is_a_detection_finding() {
        use crate::record::alert::{Alert, AlertRule, Trigger};
        let mut r = sample();
        r.file = None;
        r.error = None;
        r.event.action = "alert";
        r.alert = Some(Box::new(Alert {
            rule: AlertRule {
                id: Some("rule-1".into()),
                title: "Shell to a callback port".into(),
                author: Some("Someone".into()),
                ruleset: "sigma",
            },
            severity: "high",
            tags: vec!["attack.t1059".into()],
            message: "mv (pid 42) did it".into(),
            trigger: Trigger {
                sequence: vec![7],
                action: "rename",
            },
        }));
        let e = event(&r);
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["severity_id"], 4);
        assert_eq!(e["finding_info"]["uid"], "run-1:7:rule-1");
        assert_eq!(e["finding_info"]["title"], "Shell to a callback port");
        assert_eq!(e["evidences"][0]["actor"]["process"]["pid"], 42);
        let kept = &e["unmapped"]["agent_sensor"]["alert"];
        assert_eq!(kept["rule"]["author"], "Someone");
        assert_eq!(kept["trigger"]["sequence"][0], 7);
        assert_eq!(kept["tags"][0], "attack.t1059");
    }

    #[test]
    fn a_finding_is_a_detection_finding_with_its_evidence() {
        let evidence = event(&sample());
        let f = Finding {
            uid: "f-1".into(),
            title: "credential file renamed".into(),
            desc: None,
            severity_id: 4,
            rule: Some("ssh-key-touch".into()),
        };
        let e = detection_finding(&f, &evidence);
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["type_uid"], 2004 * 100 + 1);
        assert_eq!(e["finding_info"]["uid"], "f-1");
        assert_eq!(e["severity"], "High");
        assert_eq!(e["evidences"][0]["file"]["path"], "/tmp/a");
    }
}
