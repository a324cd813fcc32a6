//! Counts what each observer delivered about one workload run, from what it wrote: the sensor's
//! JSON Lines, the audit log, bpftrace's output. An event counts only if it is the workload's
//! own measured operation (the target file's open, the children's exec, the connect to the
//! workload's listener and its accept, the HTTPS exchange), so start-up activity and other processes do not pad it.
use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufRead as _, BufReader},
    path::Path,
};

use anyhow::Context as _;
use serde::Deserialize;

use super::workload::{Events, Report};

/// What an observer delivered about one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivered {
    /// The measured operations it reported.
    pub events: Events,
    /// Every record it wrote about the workload's processes (start-up, loader opens, forks and
    /// exits included).
    pub records: u64,
}

/// What a run is matched against.
pub struct Expect<'a> {
    pub report: &'a Report,
    pub target: &'a str,
}

/// Calls `each` with every line of `path` (without its newline), reusing one buffer.
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        each(line.strip_suffix(b"\n").unwrap_or(&line));
    }
}

/// The fields of a sensor record the count needs (the rest is skipped unparsed).
#[derive(Deserialize)]
struct SensorRecord<'a> {
    #[serde(borrow)]
    event: SensorEvent<'a>,
    process: Option<SensorProcess>,
    #[serde(borrow)]
    file: Option<SensorFile<'a>>,
    destination: Option<Endpoint>,
    gap: Option<Gap>,
}

#[derive(Deserialize)]
struct SensorEvent<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    /// Exact repeats folded into this record (`file.repeat_window_ms`).
    repeat_count: Option<u64>,
}

#[derive(Deserialize)]
struct SensorProcess {
    pid: u32,
    parent: Option<Pid>,
}

#[derive(Deserialize)]
struct Pid {
    pid: u32,
}

#[derive(Deserialize)]
struct SensorFile<'a> {
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Endpoint {
    port: Option<u16>,
}

#[derive(Deserialize)]
struct Gap {
    lost: u64,
}

/// The sensor's output: delivered events, and the losses its `gap` records admit.
pub fn sensor_output(path: &Path, expect: &Expect) -> anyhow::Result<(Delivered, u64)> {
    let workload = expect.report.pid;
    let mut d = Delivered::default();
    let mut lost = 0;
    let mut unreadable = 0u64;
    for_each_line(path, |line| {
        let Ok(r) = serde_json::from_slice::<SensorRecord>(line) else {
            unreadable += 1;
            return;
        };
        if let Some(gap) = &r.gap {
            lost += gap.lost;
        }
        let Some(p) = &r.process else { return };
        let parent = p.parent.as_ref().map(|p| p.pid);
        if p.pid != workload && parent != Some(workload) {
            return;
        }
        d.records += 1;
        let own = p.pid == workload;
        let count = r.event.repeat_count.unwrap_or(1);
        match &*r.event.action {
            "open" if own && r.file.and_then(|f| f.path).as_deref() == Some(expect.target) => {
                d.events.opens += count;
            }
            "exec" if parent == Some(workload) => d.events.execs += count,
            "connect" if own && r.destination.and_then(|d| d.port) == expect.report.port => {
                d.events.connects += count;
            }
            "accept" if own => d.events.accepts += count,
            "llm_exchange" | "mcp_call" if own => d.events.exchanges += count,
            _ => {}
        }
    })?;
    anyhow::ensure!(
        unreadable == 0,
        "{unreadable} lines of {} are not sensor records",
        path.display()
    );
    Ok((d, lost))
}

/// The audit log: SYSCALL records carrying `key` (an openat counts when its PATH record names
/// the target). Field names are the log's own; `SYSCALL=` is the enriched, architecture-
/// independent name.
pub fn audit_log(path: &Path, key: &str, expect: &Expect) -> anyhow::Result<Delivered> {
    let w = expect.report.pid.to_string();
    let key = format!("key=\"{key}\"");
    let target = format!("name=\"{}\"", expect.target);
    let mut d = Delivered::default();
    // Serial numbers of the workload's openat events, until their PATH record is seen.
    let mut opens: HashSet<String> = HashSet::new();
    for_each_line(path, |line| {
        let line = String::from_utf8_lossy(line);
        let Some((kind, rest)) = line.strip_prefix("type=").and_then(|l| l.split_once(' ')) else {
            return;
        };
        let Some(serial) = rest
            .strip_prefix("msg=audit(")
            .and_then(|r| r.split_once(')'))
            .map(|(stamp, _)| stamp)
        else {
            return;
        };
        // Raw fields, then (after a GS byte) the enriched ones.
        let (raw, enriched) = rest.split_once('\u{1d}').unwrap_or((rest, ""));
        let field = |text: &'_ str, name: &str| -> Option<String> {
            text.split(' ')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        match kind {
            "SYSCALL" if raw.split(' ').any(|f| f == key) => {
                let pid = field(raw, "pid");
                let ppid = field(raw, "ppid");
                let own = pid.as_deref() == Some(&w);
                let child = ppid.as_deref() == Some(&w);
                if !own && !child {
                    return;
                }
                d.records += 1;
                let success = field(raw, "success").as_deref() == Some("yes");
                match field(enriched, "SYSCALL").as_deref() {
                    Some("openat") if own => {
                        opens.insert(serial.to_owned());
                    }
                    Some("execve") if child && success => d.events.execs += 1,
                    Some("connect") if own => d.events.connects += 1,
                    Some("accept" | "accept4") if own => d.events.accepts += 1,
                    _ => {}
                }
            }
            "PATH" if raw.split(' ').any(|f| f == target) && opens.remove(serial) => {
                d.events.opens += 1;
            }
            _ => {}
        }
    })?;
    Ok(d)
}

/// bpftrace's output (see `observers::BPFTRACE_SCRIPT`): `open PID PATH`, `exec PID PATH`,
/// `connect PID`, `accept PID`. Lines of the `probe_pids` (the attach check) are not counted.
pub fn bpftrace_output(
    path: &Path,
    expect: &Expect,
    probe_pids: &HashSet<u32>,
) -> anyhow::Result<Delivered> {
    let w = expect.report.pid;
    let mut d = Delivered::default();
    for_each_line(path, |line| {
        let line = String::from_utf8_lossy(line);
        let mut f = line.splitn(3, ' ');
        let (Some(what), Some(pid)) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()))
        else {
            return;
        };
        if !matches!(what, "open" | "exec" | "connect" | "accept") || probe_pids.contains(&pid) {
            return;
        }
        let arg = f.next();
        d.records += 1;
        match what {
            "open" if pid == w && arg == Some(expect.target) => d.events.opens += 1,
            // Only the workload's children exec /bin/true in the bench cgroup.
            "exec" if arg == Some("/bin/true") => d.events.execs += 1,
            "connect" if pid == w => d.events.connects += 1,
            "accept" if pid == w => d.events.accepts += 1,
            _ => {}
        }
    })?;
    Ok(d)
}

/// Fork and exit records of the children of each of `parents` in the sensor's output: how many
/// processes the sensor saw come and go.
pub fn children_seen(path: &Path, parents: &[u32]) -> anyhow::Result<HashMap<u32, (u64, u64)>> {
    let mut seen: HashMap<u32, (u64, u64)> = parents.iter().map(|&p| (p, (0, 0))).collect();
    for_each_line(path, |line| {
        let Ok(r) = serde_json::from_slice::<SensorRecord>(line) else {
            return;
        };
        let Some(counts) = r
            .process
            .and_then(|p| p.parent)
            .and_then(|p| seen.get_mut(&p.pid))
        else {
            return;
        };
        match &*r.event.action {
            "fork" => counts.0 += 1,
            "exit" => counts.1 += 1,
            _ => {}
        }
    })?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 4100;
    const TARGET: &str = "/bench/open-target";

    fn report() -> Report {
        serde_json::from_str(&format!(
            r#"{{"ops":3,"ops_per_sec":1.0,"cpu_seconds":0.0,"pid":{W},"port":5555,"opens":1,"execs":1,"connects":1}}"#
        ))
        .unwrap()
    }

    fn file_of(name: &str, lines: &[String]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("xtask-count-{name}-{}", std::process::id()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn counts_only_the_workloads_measured_operations_in_sensor_output() {
        let rec = |action: &str, pid: u32, parent: u32, extra: &str| {
            format!(
                r#"{{"event":{{"action":"{action}"}},"process":{{"pid":{pid},"parent":{{"pid":{parent}}}}}{extra},"host":{{"name":"h"}}}}"#
            )
        };
        let lines = [
            rec("open", W, 1, &format!(r#","file":{{"path":"{TARGET}"}}"#)),
            rec("open", W, 1, r#","file":{"path":"/etc/ld.so.cache"}"#),
            rec("exec", 4101, W, ""),
            rec("connect", W, 1, r#","destination":{"port":5555}"#),
            rec("connect", W, 1, r#","destination":{"port":53}"#),
            rec("accept", W, 1, ""),
            rec("llm_exchange", W, 1, r#","destination":{"port":443}"#),
            rec("llm_exchange", 999, 1, ""),
            rec("open", 999, 1, &format!(r#","file":{{"path":"{TARGET}"}}"#)),
            r#"{"event":{"action":"gap"},"gap":{"lost":5}}"#.to_owned(),
            format!(
                r#"{{"event":{{"action":"open","repeat_count":4}},"process":{{"pid":{W}}},"file":{{"path":"{TARGET}"}}}}"#
            ),
        ];
        let path = file_of("sensor", &lines);
        let report = report();
        let (d, lost) = sensor_output(
            &path,
            &Expect {
                report: &report,
                target: TARGET,
            },
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            d.events,
            Events {
                opens: 5,
                execs: 1,
                connects: 1,
                accepts: 1,
                exchanges: 1,
            }
        );
        assert_eq!((d.records, lost), (8, 5));
    }

    #[test]
    fn counts_audit_syscall_records_with_the_key_and_matches_opens_by_path() {
        let syscall = |serial: u32, name: &str, pid: u32, ppid: u32| {
            format!(
                "type=SYSCALL msg=audit(1.0:{serial}): arch=c000003e syscall=0 success=yes exit=3 ppid={ppid} pid={pid} auid=4242 key=\"k\"\u{1d}ARCH=x86_64 SYSCALL={name} AUID=\"unknown(4242)\""
            )
        };
        let path_rec = |serial: u32, name: &str| {
            format!("type=PATH msg=audit(1.0:{serial}): item=0 name=\"{name}\" inode=1")
        };
        let lines = [
            syscall(1, "openat", W, 1),
            "type=CWD msg=audit(1.0:1): cwd=\"/\"".to_owned(),
            path_rec(1, TARGET),
            syscall(2, "openat", W, 1),
            path_rec(2, "/etc/ld.so.cache"),
            syscall(3, "execve", 4101, W),
            syscall(4, "connect", W, 1),
            syscall(5, "accept4", W, 1),
            syscall(6, "openat", 999, 1),
            path_rec(6, TARGET),
        ];
        let path = file_of("audit", &lines);
        let report = report();
        let d = audit_log(
            &path,
            "k",
            &Expect {
                report: &report,
                target: TARGET,
            },
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            d.events,
            Events {
                opens: 1,
                execs: 1,
                connects: 1,
                accepts: 1,
                exchanges: 0,
            }
        );
        assert_eq!(d.records, 5);
    }

    #[test]
    fn counts_bpftrace_lines_but_not_the_attach_probe() {
        let lines = [
            "Attaching 5 probes...".to_owned(),
            format!("open 77 {TARGET}"),
            format!("open {W} {TARGET}"),
            format!("open {W} /etc/ld.so.cache"),
            "exec 4101 /bin/true".to_owned(),
            format!("connect {W}"),
            format!("accept {W}"),
        ];
        let path = file_of("bpftrace", &lines);
        let report = report();
        let probes = HashSet::from([77]);
        let d = bpftrace_output(
            &path,
            &Expect {
                report: &report,
                target: TARGET,
            },
            &probes,
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            d.events,
            Events {
                opens: 1,
                execs: 1,
                connects: 1,
                accepts: 1,
                exchanges: 0,
            }
        );
        assert_eq!(d.records, 5);
    }
}
