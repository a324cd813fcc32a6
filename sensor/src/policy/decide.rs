//! The decision on one activity record: pure and deterministic, from the record as written
//! and the agent's compiled policy. Only actions a rule covers and does not allow come back
//! (in `audit` mode: `observe` rules decide nothing on the record).
use std::net::IpAddr;

use crate::{
    policy::form::{Destination, Mode, Policy},
    record::Record,
};

/// A rule's verdict on an action it does not allow.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule: `egress`, `files.read`, `files.write`, `executables`, `tasks`.
    pub rule: &'static str,
    /// The rule's mode.
    pub mode: Mode,
    /// What was decided on: `ip:port`, a path, an executable, a task.
    pub target: String,
    /// Why it is not allowed, for the reviewer.
    pub reason: String,
}

/// File actions that change what they name (everything but reading).
const WRITES: &[&str] = &[
    "rename", "unlink", "rmdir", "mkdir", "chmod", "chown", "truncate", "link", "symlink",
];

/// The violation `record` is of `policy`, if any rule that records decisions covers it.
pub fn check(policy: &Policy, record: &Record) -> Option<Violation> {
    check_looked_up(policy, record, None)
}

/// [`check`], where an enforced egress rule's `dns` entries allow only `looked_up`: the
/// addresses the agent itself looked up whose answers are still in force (what the kernel
/// enforces; see `resolved`).
pub fn check_looked_up(
    policy: &Policy,
    record: &Record,
    looked_up: Option<&[IpAddr]>,
) -> Option<Violation> {
    let action = record.event.action;
    match action {
        "exec" | "exec_denied" => executable(policy, record),
        "connect" | "send" => egress(policy, record, looked_up),
        "open" => {
            let access = record.file.as_ref()?.open.as_ref()?.access;
            match access {
                "read" => files(policy, record, false),
                "write" | "read_write" => files(policy, record, true),
                _ => None,
            }
        }
        a if WRITES.contains(&a) => files(policy, record, true),
        _ => None,
    }
}

/// A registration of `task` under `policy` with these `allowed_tasks`, if it is not allowed.
pub fn task(policy: &Policy, allowed_tasks: &[String], task: &str) -> Option<Violation> {
    (policy.tasks != Mode::Observe
        && !allowed_tasks.is_empty()
        && !allowed_tasks.iter().any(|t| t == task))
    .then(|| Violation {
        rule: "tasks",
        mode: policy.tasks,
        target: task.to_owned(),
        reason: format!("task {task:?} is not among the agent's allowed tasks"),
    })
}

fn executable(policy: &Policy, record: &Record) -> Option<Violation> {
    let rule = policy
        .executables
        .as_ref()
        .filter(|r| r.mode != Mode::Observe)?;
    // A refused exec never ran: its record names the executable as its file.
    let exe = if record.event.action == "exec_denied" {
        record.file.as_ref()?.path.as_str()
    } else {
        record.process.as_ref()?.executable.as_deref()?
    };
    (!rule.allow.iter().any(|g| g.matches(exe.as_bytes()))).then(|| Violation {
        rule: "executables",
        mode: rule.mode,
        target: exe.to_owned(),
        reason: format!("executable {exe:?} matches no allowed executable"),
    })
}

fn egress(policy: &Policy, record: &Record, looked_up: Option<&[IpAddr]>) -> Option<Violation> {
    let rule = policy.egress.as_ref().filter(|r| r.mode != Mode::Observe)?;
    // TCP data follows a connect that was already decided; UDP has no connect to decide.
    if record.event.action == "send"
        && record.network.as_ref().and_then(|n| n.transport) != Some("udp")
    {
        return None;
    }
    let to = record.destination.as_ref()?;
    let ip: IpAddr = to.ip.as_deref()?.parse().ok()?;
    let port = to.port.unwrap_or(0);
    let domain = to.domain.as_deref();
    // Enforced, a name counts only for an address the agent itself looked up.
    let named = match looked_up {
        Some(ips) if rule.mode == Mode::Enforce => domain.filter(|_| ips.contains(&ip)),
        _ => domain,
    };
    if rule.allow.iter().any(|d| allows(d, ip, port, named)) {
        return None;
    }
    let target = match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    };
    let named = domain.map_or_else(String::new, |d| format!(" ({d})"));
    Some(Violation {
        rule: "egress",
        mode: rule.mode,
        reason: format!("destination {target}{named} matches no allowed destination"),
        target,
    })
}

fn allows(d: &Destination, ip: IpAddr, port: u16, domain: Option<&str>) -> bool {
    d.cidr.is_none_or(|c| c.contains(ip))
        && d.dns
            .as_ref()
            .is_none_or(|g| domain.is_some_and(|n| g.matches(n.as_bytes())))
        && (d.ports.is_empty() || d.ports.contains(&port))
}

fn files(policy: &Policy, record: &Record, write: bool) -> Option<Violation> {
    let rule = policy.files.as_ref().filter(|r| r.mode != Mode::Observe)?;
    let file = record.file.as_ref()?;
    let set = if write {
        &rule.allow.write
    } else {
        &rule.allow.read
    };
    // The path as named, where a followed symlink led (open), and a rename's new name.
    let followed = (record.event.action == "open")
        .then_some(file.target_path.as_deref())
        .flatten();
    let paths = [
        Some(file.path.as_str()),
        followed,
        file.destination_path.as_deref(),
    ];
    let class = file.class.as_deref();
    let denied = paths
        .into_iter()
        .flatten()
        .find(|p| !set.contains(p, class))?;
    let (rule_name, verb) = if write {
        ("files.write", "written")
    } else {
        ("files.read", "read")
    };
    Some(Violation {
        rule: rule_name,
        mode: rule.mode,
        target: denied.to_owned(),
        reason: format!("{denied:?} may not be {verb}: no allowed path or class matches"),
    })
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use super::*;
    use crate::record::{
        Endpoint, EventMeta, File, Network, OpenInfo, Process, ProcessBlock, SensorBlock, host,
        rendered, time::Timestamp,
    };

    fn policy(block: &str) -> Policy {
        let text = format!(
            "agents:\n  - id: a\n    allowed_tasks: [review]\n    selectors: [{{uid: 1}}]\n    policy:\n{block}"
        );
        let agents = crate::identity::manifest::parse(Path::new("m.yaml"), &text).unwrap();
        (*agents[0].policy).clone()
    }

    fn record(action: &'static str) -> Record {
        let host = Arc::new(rendered::Rendered::new(host::HostInfo {
            name: "h".into(),
            id: None,
            boot_id: "b".into(),
            architecture: "x86_64",
            os: host::HostOs {
                kernel: "6.1".into(),
                kind: "linux",
            },
        }));
        let sensor = SensorBlock {
            instance_id: Arc::from("run-1"),
            version: "0.1.0",
            lifecycle: None,
        };
        let event = EventMeta {
            kind: "event",
            category: &[],
            kind_type: &[],
            action,
            outcome: None,
            dataset: "agent_sensor.test",
            created: Timestamp::of(1),
            repeat_count: None,
        };
        Record::new(Timestamp::of(1), event, host, sensor)
    }

    fn open(path: &str, access: &'static str, target: Option<&str>) -> Record {
        let mut r = record("open");
        r.file = Some(File {
            path: path.into(),
            target_path: target.map(Into::into),
            open: Some(OpenInfo {
                access,
                flags: vec![],
                raw: "0".into(),
            }),
            ..File::default()
        });
        r
    }

    fn to(action: &'static str, ip: &str, port: u16, domain: Option<&str>, udp: bool) -> Record {
        let mut r = record(action);
        r.destination = Some(Endpoint {
            ip: Some(Arc::from(ip)),
            port: Some(port),
            domain: domain.map(Into::into),
            ..Endpoint::default()
        });
        r.network = Some(Network {
            transport: Some(if udp { "udp" } else { "tcp" }),
            ..Network::default()
        });
        r
    }

    fn verdict(p: &Policy, r: &Record) -> Option<(&'static str, String)> {
        check(p, r).map(|v| (v.rule, v.target))
    }

    #[test]
    fn egress_by_cidr_port_and_looked_up_name() {
        let p = policy(
            "      egress:\n        mode: audit\n        allow: [{cidr: 10.0.0.0/8, ports: [443]}, {dns: \"*.example.org\"}, {cidr: \"fd00::/8\"}]\n",
        );
        assert_eq!(
            verdict(&p, &to("connect", "10.9.8.7", 443, None, false)),
            None
        );
        assert_eq!(
            verdict(&p, &to("connect", "10.9.8.7", 80, None, false)),
            Some(("egress", "10.9.8.7:80".into()))
        );
        let named = to("connect", "203.0.113.5", 80, Some("api.example.org"), false);
        assert_eq!(verdict(&p, &named), None);
        let other = to("connect", "203.0.113.5", 80, Some("api.example.com"), false);
        let v = check(&p, &other).unwrap();
        assert_eq!(v.mode, Mode::Audit);
        assert_eq!(
            v.reason,
            "destination 203.0.113.5:80 (api.example.com) matches no allowed destination"
        );
        assert_eq!(verdict(&p, &to("connect", "fd00::1", 1, None, false)), None);
        assert_eq!(
            verdict(&p, &to("connect", "2001:db8::1", 22, None, false)),
            Some(("egress", "[2001:db8::1]:22".into()))
        );
        // UDP sends are decided; TCP sends follow a decided connect.
        assert!(check(&p, &to("send", "192.0.2.1", 53, None, true)).is_some());
        assert!(check(&p, &to("send", "192.0.2.1", 53, None, false)).is_none());
        // Unix sockets have no address to decide on.
        let mut unix = record("connect");
        unix.destination = Some(Endpoint {
            address: Some(Arc::from("/run/x.sock")),
            ..Endpoint::default()
        });
        assert!(check(&p, &unix).is_none());
    }

    #[test]
    fn files_by_path_class_and_access() {
        let p = policy(
            "      files:\n        mode: audit\n        read: {paths: [\"/srv/**\"], classes: [ssh_key]}\n        write: {paths: [\"/tmp/**\"]}\n",
        );
        assert_eq!(verdict(&p, &open("/srv/a", "read", None)), None);
        assert_eq!(
            verdict(&p, &open("/srv/a", "write", None)),
            Some(("files.write", "/srv/a".into()))
        );
        assert_eq!(
            verdict(&p, &open("/etc/passwd", "read", None)),
            Some(("files.read", "/etc/passwd".into()))
        );
        // A symlink inside the allowed tree that leads out of it.
        assert_eq!(
            verdict(&p, &open("/srv/link", "read", Some("/etc/shadow"))),
            Some(("files.read", "/etc/shadow".into()))
        );
        let mut key = open("/root/.ssh/id_rsa", "read", None);
        key.file.as_mut().unwrap().class = Some("ssh_key".into());
        assert_eq!(verdict(&p, &key), None);
        assert_eq!(
            verdict(&p, &open("/etc", "path", None)),
            None,
            "O_PATH reads nothing"
        );
        let mut rename = record("rename");
        rename.file = Some(File {
            path: "/tmp/a".into(),
            destination_path: Some("/srv/b".into()),
            ..File::default()
        });
        assert_eq!(verdict(&p, &rename), Some(("files.write", "/srv/b".into())));
        let mut unlink = record("unlink");
        unlink.file = Some(File {
            path: "/tmp/a".into(),
            ..File::default()
        });
        assert_eq!(verdict(&p, &unlink), None);
    }

    #[test]
    fn executables_tasks_and_observe_mode() {
        let p = policy(
            "      tasks: {mode: audit}\n      executables:\n        mode: audit\n        allow: [\"/usr/bin/git*\"]\n",
        );
        let exec = |exe: &str| {
            let mut r = record("exec");
            r.process = Some(ProcessBlock::from(Process {
                executable: Some(exe.into()),
                ..Process::default()
            }));
            r
        };
        assert_eq!(verdict(&p, &exec("/usr/bin/git")), None);
        assert_eq!(
            verdict(&p, &exec("/usr/bin/curl")),
            Some(("executables", "/usr/bin/curl".into()))
        );
        // An exec the kernel refused (BPF LSM) is decided on the file it named: the process
        // still runs its old program.
        let denied = |path: &str| {
            let mut r = exec("/usr/bin/dash");
            r.event.action = "exec_denied";
            r.file = Some(File {
                path: path.into(),
                ..File::default()
            });
            r
        };
        assert_eq!(
            verdict(&p, &denied("/opt/x")),
            Some(("executables", "/opt/x".into()))
        );
        assert_eq!(verdict(&p, &denied("/usr/bin/git")), None);
        let tasks = ["review".to_owned()];
        assert!(task(&p, &tasks, "review").is_none());
        let v = task(&p, &tasks, "deploy").unwrap();
        assert_eq!(
            (v.rule, v.mode, v.target.as_str()),
            ("tasks", Mode::Audit, "deploy")
        );
        assert!(
            task(&p, &[], "anything").is_none(),
            "no allowed_tasks: any task"
        );
        let observed = policy(
            "      tasks: {mode: observe}\n      executables:\n        mode: observe\n        allow: []\n",
        );
        assert!(check(&observed, &exec("/usr/bin/curl")).is_none());
        assert!(task(&observed, &tasks, "deploy").is_none());
        // No section: not checked.
        assert!(check(&policy("      version: v1\n"), &exec("/usr/bin/curl")).is_none());
    }
}
