//! The kernel matrix's scenario, run inside each VM (and on the host for its own kernel) by
//! `cargo xtask matrix`. It judges nothing: it runs `agent-sensor probe --json`, then the
//! sensor around a known workload, and writes what happened to the results directory
//! (`facts.json`: the kernel, pids, ports, paths, timings; `probe.json`; the sensor's
//! `records.jsonl` and `sensor.stderr`; where the kernel has BPF LSM, also
//! `tracepoints-records.jsonl` from a second run without the LSM hook; everywhere,
//! `enforce-records.jsonl` from a run with executables and files rules in enforce mode, which
//! only a kernel with BPF LSM lets start, `kill-records.jsonl` from a run with them in kill
//! mode, and the fail-closed runs' `closed-`, `closed2-` and `kill-closed-` files). The host checks the records against the facts, so a
//! VM that dies half-way still leaves evidence of how far it got.
//!
//! Usage: `kernel-matrix-scenario OUT_DIR SENSOR HELPER`
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The verifier runs 4-6x slower under TCG, and three VMs share two cores.
const START_TIMEOUT: Duration = Duration::from_mins(5);
const RECORD_TIMEOUT: Duration = Duration::from_mins(1);
const STOP_TIMEOUT: Duration = Duration::from_mins(1);
/// The agent's cgroup (under the cgroup2 root) and the manifest's selector for it.
const CGROUP: &str = "agent-sensor-matrix";
const AGENT: &str = "matrix-agent";
const WORK: &str = "/tmp/agent-sensor-matrix";
/// The cgroup and agent of the enforcement run.
const ENFORCE_CGROUP: &str = "agent-sensor-matrix-enforce";
const ENFORCER: &str = "matrix-enforcer";
/// The cgroup and agent of the kill-mode run.
const KILL_CGROUP: &str = "agent-sensor-matrix-kill";
const KILLER: &str = "matrix-killer";
/// The fail-closed runs' agents and cgroups: one whose rules fail closed, one whose do not.
const CLOSED_CGROUP: &str = "agent-sensor-matrix-closed";
const CLOSED: &str = "matrix-closed";
const OPEN_CGROUP: &str = "agent-sensor-matrix-open";
const OPEN: &str = "matrix-open";
/// Where runs pin their fail-closed enforcement (docs/policy.md).
const PIN_DIR: &str = "/sys/fs/bpf/agent-sensor";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, sensor, helper] = &args[..] else {
        eprintln!("usage: kernel-matrix-scenario OUT_DIR SENSOR HELPER");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    let mut facts = json!({ "kernel": kernel_facts(), "steps": {} });
    let result = run(&out, Path::new(sensor), Path::new(helper), &mut facts);
    if let Err(e) = &result {
        facts["error"] = json!(e);
    }
    let text = serde_json::to_string_pretty(&facts).expect("facts are JSON");
    fs::write(out.join("facts.json"), text).expect("write facts.json");
    if let Err(e) = result {
        eprintln!("kernel-matrix-scenario: {e}");
        std::process::exit(1);
    }
}

fn kernel_facts() -> Value {
    let read = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    json!({
        "release": read("/proc/sys/kernel/osrelease"),
        "cmdline": read("/proc/cmdline"),
        "lsm": read("/sys/kernel/security/lsm"),
        "btf": Path::new("/sys/kernel/btf/vmlinux").exists(),
        "uptime_at_start": read("/proc/uptime").and_then(|u| u.split(' ').next().map(str::to_owned)),
    })
}

fn run(out: &Path, sensor: &Path, helper: &Path, facts: &mut Value) -> Result<(), String> {
    // 1. What the kernel offers, by the sensor's own probe.
    let t = Instant::now();
    let probe = Command::new(sensor)
        .args(["probe", "--json"])
        .output()
        .map_err(|e| format!("cannot start {}: {e}", sensor.display()))?;
    fs::write(out.join("probe.json"), &probe.stdout).map_err(|e| e.to_string())?;
    fs::write(out.join("probe.stderr"), &probe.stderr).map_err(|e| e.to_string())?;
    facts["steps"]["probe"] = json!({
        "exit_code": probe.status.code(),
        "seconds": t.elapsed().as_secs_f64(),
    });

    // 2. The workload's files, the agent's cgroup and its manifest.
    let _ = fs::remove_dir_all(WORK);
    fs::create_dir_all(WORK).map_err(|e| format!("making {WORK}: {e}"))?;
    let work = Path::new(WORK);
    fs::write(work.join("opened-file"), "matrix\n").map_err(|e| e.to_string())?;
    // Each level runs the next and then `true`, so the shell forks instead of exec'ing in place.
    for level in 1..=3 {
        fs::write(
            work.join(format!("l{level}.sh")),
            format!("/bin/sh {WORK}/l{}.sh; true\n", level + 1),
        )
        .map_err(|e| e.to_string())?;
    }
    fs::write(work.join("l4.sh"), "/bin/true matrix-leaf; true\n").map_err(|e| e.to_string())?;
    let cgroup = format!("{}/{CGROUP}", cgroup2_root()?);
    let _ = fs::remove_dir(&cgroup);
    fs::create_dir(&cgroup).map_err(|e| format!("making the cgroup {cgroup}: {e}"))?;
    let manifest = work.join("agents.yaml");
    fs::write(
        &manifest,
        format!("agents:\n  - id: {AGENT}\n    selectors: [{{cgroup: /{CGROUP}}}]\n"),
    )
    .map_err(|e| e.to_string())?;
    facts["workload"] = json!({
        "dir": WORK,
        "cgroup": cgroup,
        "cgroup_id": inode(&cgroup),
        "agent": AGENT,
        "helper": helper.canonicalize().map_err(|e| e.to_string())?,
    });

    // 3. The sensor, observing every process, with the manifest.
    let t = Instant::now();
    let mut running = Running::start(
        sensor,
        &[
            "run",
            "--all-processes",
            "--output",
            "-",
            "--identities",
            manifest.to_str().unwrap(),
        ],
        out,
    )?;
    let started = running
        .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
        .is_some();
    facts["steps"]["sensor_start"] = json!({
        "started": started,
        "seconds": t.elapsed().as_secs_f64(),
    });
    if !started {
        let status = running.stop(STOP_TIMEOUT);
        facts["steps"]["sensor_stop"] = json!({ "exit": status });
        let _ = fs::remove_dir(&cgroup);
        return Ok(());
    }

    let t = Instant::now();
    // An exec with a known argv and exit code.
    let exec = Command::new(helper)
        .args(["exit", "3", "alpha", "two words"])
        .spawn()
        .map_err(|e| format!("starting the helper: {e}"))?;
    let (exec_pid, exec_status) = wait_child(exec)?;
    // An open by a relative path: the record must carry the absolute one.
    let (open_pid, open_errno) = helper_output(helper, &["open", "opened-file"], Some(work))?;
    // A connect to a listener on loopback, and one to a closed port; a bind and UDP sends.
    let (connect, refused) = connects(helper)?;
    let udp = udp_sends(helper)?;
    // A five-level tree of short-lived processes, started in the agent's cgroup.
    let tree = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {cgroup}/cgroup.procs && exec /bin/sh {WORK}/l1.sh"
        ))
        .spawn()
        .map_err(|e| e.to_string())?;
    let (tree_pid, tree_status) = wait_child(tree)?;
    facts["steps"]["workload"] = json!({ "seconds": t.elapsed().as_secs_f64() });
    facts["workload"]["exec"] = json!({
        "pid": exec_pid, "exit_code": exec_status,
        "args": [helper.to_str(), "exit", "3", "alpha", "two words"],
    });
    facts["workload"]["open"] = json!({
        "pid": open_pid, "errno": open_errno, "path": format!("{WORK}/opened-file"),
    });
    facts["workload"]["connect"] = connect;
    facts["workload"]["refused"] = refused;
    facts["workload"]["udp"] = udp;
    facts["workload"]["tree"] = json!({ "pid": tree_pid, "exit_code": tree_status, "levels": 5 });

    // Everything happened before the stop, which drains what the kernel delivered; waiting for
    // the last exits first also lets pending attribution decisions settle.
    let t = Instant::now();
    let leaf = running.wait_for(RECORD_TIMEOUT, |r| {
        action(r) == "exec" && r["process"]["args"][1] == "matrix-leaf"
    });
    let settled = leaf.is_some_and(|leaf| {
        let pid = &leaf["process"]["pid"];
        running
            .wait_for(RECORD_TIMEOUT, |r| {
                action(r) == "exit" && &r["process"]["pid"] == pid
            })
            .is_some()
    }) && running
        .wait_for(RECORD_TIMEOUT, |r| {
            action(r) == "exit" && r["process"]["pid"] == tree_pid
        })
        .is_some();
    facts["steps"]["records"] = json!({ "settled": settled, "seconds": t.elapsed().as_secs_f64() });
    let t = Instant::now();
    let status = running.stop(STOP_TIMEOUT);
    facts["steps"]["sensor_stop"] = json!({ "exit": status, "seconds": t.elapsed().as_secs_f64() });
    let _ = fs::remove_dir(&cgroup);

    // 4. Where the kernel has BPF LSM, the sensor takes the addresses of connects, binds and
    // sends from its hooks. The same calls once more with the hooks off give the host the
    // tracepoint path's records to compare: either source must give the same records.
    // BPF LSM as the probe found it (`bpf` can be listed by a kernel that refuses its programs).
    let probed: Value = serde_json::from_slice(&probe.stdout).unwrap_or(Value::Null);
    let bpf_lsm = probed
        .as_array()
        .or_else(|| probed["features"].as_array())
        .into_iter()
        .flatten()
        .any(|f| f["name"] == "lsm" && f["available"] == true);
    if bpf_lsm {
        facts["workload"]["tracepoints"] = tracepoint_source(out, sensor, helper, work)?;
    }

    // 5. Executables and files rules in enforce mode: where the kernel has BPF LSM, an agent's
    // forbidden exec and opens fail with EPERM and a bystander's do not; elsewhere the sensor
    // refuses to start, saying why.
    facts["workload"]["enforce"] = enforce_run(out, sensor, helper, work)?;

    // 6. Executables and files rules in kill mode, on every kernel: an agent's forbidden read,
    // write and exec are killed (SIGKILL) before they return, a bystander's are not.
    facts["workload"]["kill"] = kill_run(out, sensor, work)?;

    // 7. Executables and files rules in enforce mode that fail closed: where the kernel has
    // BPF LSM, the refusals outlive the sensor (SIGKILL, a restart, SIGTERM) until the pins
    // are removed; elsewhere the sensor refuses to start.
    facts["workload"]["closed"] = closed_run(out, sensor, helper, work)?;

    // 8. A files rule in kill mode that fails closed: refused at start where tracepoints have
    // no BPF links (before 5.15); elsewhere the kill outlives a SIGKILLed sensor.
    facts["workload"]["kill_closed"] = kill_closed_run(out, sensor, helper, work)?;
    Ok(())
}

/// A long-lived agent: a shell that joins its cgroup, then for each `VERB PATH` line runs the
/// helper in a child of its own (`read`: open for reading, `write`: open for writing, `exec`:
/// exec the program) and prints `STATUS:OUTPUT` (the helper prints the errno of the open or
/// exec: `0:1` is EPERM; an exec that succeeded prints what the program printed; status 137
/// is SIGKILL). Started before the sensor: a process that becomes an agent's after the sensor
/// stops is nobody's, so the fail-closed checks need processes that were the agent's.
struct AgentShell {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    cgroup: String,
}

impl AgentShell {
    /// In `cgroup` (a path; `None`: a bystander, in no agent's cgroup).
    fn start(cgroup: Option<&str>, helper: &Path) -> Result<AgentShell, String> {
        let hp = helper.display();
        let join = cgroup.map_or(String::new(), |c| format!("echo $$ > {c}/cgroup.procs && "));
        let script = format!(
            "{join}echo ready && while read verb arg; do \
             case $verb in read) v=open;; write) v=open-write;; *) v=try-exec;; esac; \
             out=$({hp} $v \"$arg\" 2>/dev/null); echo \"$?:$out\"; done"
        );
        let mut child = Command::new("/usr/bin/dash")
            .args(["-c", &script])
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("the agent shell said {line:?}"));
        }
        Ok(AgentShell {
            child,
            stdin,
            stdout,
            cgroup: cgroup.unwrap_or_default().to_owned(),
        })
    }

    /// Each `(name, verb, path)` asked in turn: `{name: "STATUS:OUTPUT"}`.
    fn ask(&mut self, asks: &[(&str, &str, String)]) -> Value {
        let mut results = serde_json::Map::new();
        for (name, verb, path) in asks {
            let mut line = String::new();
            let said = writeln!(self.stdin, "{verb} {path}")
                .map_err(|e| e.to_string())
                .and_then(|()| self.stdout.read_line(&mut line).map_err(|e| e.to_string()));
            let result = match said {
                Ok(n) if n > 0 => line.trim().to_owned(),
                Ok(_) => "the agent shell ended".to_owned(),
                Err(e) => e,
            };
            results.insert((*name).to_owned(), json!(result));
        }
        Value::Object(results)
    }
}

impl Drop for AgentShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.cgroup.is_empty() {
            let _ = fs::remove_dir(&self.cgroup);
        }
    }
}

/// After `rm -r` of the pins: the kernel lets go of unpinned links in a work item of its own
/// (each tracepoint link waits for an RCU grace period), so the release completes a moment
/// after the `rm`. Asks `agent` to read `path` until it answers `free` (at most 10 s): the
/// seconds it took, or `None`.
fn wait_released(agent: &mut AgentShell, path: &str, free: &str) -> Option<f64> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if agent.ask(&[("read", "read", path.to_owned())])["read"] == free {
            return Some(t.elapsed().as_secs_f64());
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The runs' pin directories and what each holds (`{"run-...": ["TRACKED", ...]}`).
fn pins() -> Value {
    let mut runs = serde_json::Map::new();
    for run in fs::read_dir(PIN_DIR).into_iter().flatten().flatten() {
        let mut names: Vec<String> = fs::read_dir(run.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        runs.insert(run.file_name().to_string_lossy().into_owned(), json!(names));
    }
    Value::Object(runs)
}

/// The fail-closed kill run (`kill-closed-records.jsonl`, `kill-closed-sensor.stderr`): agent
/// `matrix-closed` with a files rule in kill mode and `fail_closed: true`, a long-lived shell in
/// its cgroup, and a bystander shell. Before Linux 5.15 the sensor is to refuse to start
/// (tracepoints have no BPF links to pin there) and leave no pins; elsewhere the forbidden read
/// is killed while the sensor runs and after SIGKILL, until `rm -r` of the pin directory.
fn kill_closed_run(out: &Path, sensor: &Path, helper: &Path, work: &Path) -> Result<Value, String> {
    let dir = work.join("kill-closed");
    let io = |e: std::io::Error| e.to_string();
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(PIN_DIR);
    fs::create_dir_all(dir.join("allowed")).map_err(io)?;
    fs::write(dir.join("allowed/file"), "allowed\n").map_err(io)?;
    fs::write(dir.join("secret"), "secret\n").map_err(io)?;
    let helper = helper.canonicalize().map_err(io)?;
    let dp = dir.display();
    let cg = format!("{}/{CLOSED_CGROUP}", cgroup2_root()?);
    let _ = fs::remove_dir(&cg);
    fs::create_dir(&cg).map_err(|e| format!("making the cgroup {cg}: {e}"))?;
    let manifest = dir.join("agents.yaml");
    fs::write(
        &manifest,
        format!(
            "agents:\n  - id: {CLOSED}\n    selectors: [{{cgroup: /{CLOSED_CGROUP}}}]\n    policy:\n      version: matrix-kill-closed\n      files:\n        mode: kill\n        fail_closed: true\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{dp}/allowed/**\"]}}\n        write: {{paths: [\"/dev/**\"]}}\n"
        ),
    )
    .map_err(io)?;
    let asks = [
        ("read_allowed", "read", format!("{dp}/allowed/file")),
        ("read_forbidden", "read", format!("{dp}/secret")),
    ];
    let mut facts = json!({ "agent": CLOSED });
    let mut agent = AgentShell::start(Some(&cg), &helper)?;
    let mut bystander = AgentShell::start(None, &helper)?;
    let mut running = Running::start_named(
        sensor,
        &[
            "run",
            "--output",
            "-",
            "--identities",
            manifest.to_str().unwrap(),
        ],
        out,
        "kill-closed-",
    )?;
    let started = running
        .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
        .is_some();
    facts["started"] = json!(started);
    if !started {
        facts["exit"] = json!(running.stop(STOP_TIMEOUT));
        facts["pins"] = pins();
        return Ok(facts);
    }
    facts["running"] = json!({ "agent": agent.ask(&asks) });
    facts["killed_exit"] = json!(running.kill());
    facts["after_sigkill"] = json!({
        "agent": agent.ask(&asks), "bystander": bystander.ask(&asks), "pins": pins(),
    });
    facts["released"] = json!(fs::remove_dir_all(PIN_DIR).err().map(|e| e.to_string()));
    facts["release_seconds"] = json!(wait_released(&mut agent, &format!("{dp}/secret"), "0:0"));
    facts["after_release"] = json!({ "agent": agent.ask(&asks) });
    Ok(facts)
}

/// The fail-closed enforce run (`closed-records.jsonl`, `closed-sensor.stderr`, and
/// `closed2-` for the restart): agent `matrix-closed` with executables and files rules in
/// enforce mode and `fail_closed: true`, and `matrix-open` with a files rule in enforce mode
/// that does not fail closed, each a long-lived shell in its cgroup, and a bystander shell.
/// The same requests while the sensor runs, after SIGKILL, after a restart, after SIGTERM and
/// after `rm -r` of the pin directory.
fn closed_run(out: &Path, sensor: &Path, helper: &Path, work: &Path) -> Result<Value, String> {
    let dir = work.join("closed");
    let io = |e: std::io::Error| e.to_string();
    let _ = fs::remove_dir_all(&dir);
    // Earlier runs' pins would make what follows meaningless.
    let _ = fs::remove_dir_all(PIN_DIR);
    fs::create_dir_all(dir.join("allowed")).map_err(io)?;
    fs::create_dir_all(dir.join("forbidden")).map_err(io)?;
    fs::write(dir.join("allowed/file"), "allowed\n").map_err(io)?;
    fs::write(dir.join("secret"), "secret\n").map_err(io)?;
    fs::copy("/usr/bin/true", dir.join("forbidden/prog")).map_err(io)?;
    let helper = helper.canonicalize().map_err(io)?;
    let (hp, dp) = (helper.display(), dir.display());
    let root = cgroup2_root()?;
    let (closed_cg, open_cg) = (
        format!("{root}/{CLOSED_CGROUP}"),
        format!("{root}/{OPEN_CGROUP}"),
    );
    for cg in [&closed_cg, &open_cg] {
        let _ = fs::remove_dir(cg);
        fs::create_dir(cg).map_err(|e| format!("making the cgroup {cg}: {e}"))?;
    }
    let read = format!(
        "[\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{dp}/allowed/**\"]"
    );
    let manifest = dir.join("agents.yaml");
    fs::write(
        &manifest,
        format!(
            "agents:\n  - id: {CLOSED}\n    selectors: [{{cgroup: /{CLOSED_CGROUP}}}]\n    policy:\n      version: matrix-closed\n      executables:\n        mode: enforce\n        fail_closed: true\n        allow: [\"/usr/bin/*\", \"{hp}\"]\n      files:\n        mode: enforce\n        fail_closed: true\n        read: {{paths: {read}}}\n        write: {{paths: [\"/dev/**\", \"{dp}/allowed/**\"]}}\n  - id: {OPEN}\n    selectors: [{{cgroup: /{OPEN_CGROUP}}}]\n    policy:\n      version: matrix-open\n      files:\n        mode: enforce\n        read: {{paths: {read}}}\n        write: {{paths: [\"/dev/**\"]}}\n"
        ),
    )
    .map_err(io)?;
    let secret = format!("{dp}/secret");
    let forbidden = format!("{dp}/forbidden/prog");
    let asks = [
        ("read_allowed", "read", format!("{dp}/allowed/file")),
        ("read_forbidden", "read", secret.clone()),
        ("write_forbidden", "write", secret.clone()),
        ("exec_allowed", "exec", "/usr/bin/true".to_owned()),
        ("exec_forbidden", "exec", forbidden.clone()),
    ];
    let open_asks = [("read_forbidden", "read", secret.clone())];
    let mut facts = json!({
        "closed": CLOSED, "open": OPEN, "secret": secret, "forbidden": forbidden,
    });
    let mut closed = AgentShell::start(Some(&closed_cg), &helper)?;
    let mut open = AgentShell::start(Some(&open_cg), &helper)?;
    let mut bystander = AgentShell::start(None, &helper)?;
    let start = |prefix: &str| -> Result<(Running, bool), String> {
        let mut running = Running::start_named(
            sensor,
            &[
                "run",
                "--output",
                "-",
                "--identities",
                manifest.to_str().unwrap(),
            ],
            out,
            prefix,
        )?;
        let started = running
            .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
            .is_some();
        Ok((running, started))
    };
    let phase = |closed: &mut AgentShell, open: &mut AgentShell, bystander: &mut AgentShell| {
        json!({
            "closed": closed.ask(&asks),
            "open": open.ask(&open_asks),
            "bystander": bystander.ask(&asks),
            "pins": pins(),
        })
    };
    let (running, started) = start("closed-")?;
    if !started {
        facts["started"] = json!(false);
        facts["exit"] = json!(running.stop(STOP_TIMEOUT));
        return Ok(facts);
    }
    facts["running"] = phase(&mut closed, &mut open, &mut bystander);
    facts["killed_exit"] = json!(running.kill());
    facts["after_sigkill"] = phase(&mut closed, &mut open, &mut bystander);
    let (running, restarted) = start("closed2-")?;
    facts["restarted"] = json!(restarted);
    facts["after_restart"] = phase(&mut closed, &mut open, &mut bystander);
    facts["stopped_exit"] = json!(running.stop(STOP_TIMEOUT));
    facts["after_sigterm"] = phase(&mut closed, &mut open, &mut bystander);
    facts["released"] = json!(fs::remove_dir_all(PIN_DIR).err().map(|e| e.to_string()));
    facts["release_seconds"] = json!(wait_released(&mut closed, &secret, "0:0"));
    facts["after_release"] = phase(&mut closed, &mut open, &mut bystander);
    facts["started"] = json!(true);
    Ok(facts)
}

/// The kill-mode run (`kill-records.jsonl`, `kill-sensor.stderr`): an agent with executables
/// and files rules in kill mode, and the same commands run by the agent (in its cgroup) and by
/// a bystander, each printing `NAME=STATUS` lines (137: killed by SIGKILL).
fn kill_run(out: &Path, sensor: &Path, work: &Path) -> Result<Value, String> {
    let dir = work.join("kill");
    let io = |e: std::io::Error| e.to_string();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("allowed")).map_err(io)?;
    fs::create_dir_all(dir.join("forbidden")).map_err(io)?;
    fs::write(dir.join("allowed/file"), "allowed\n").map_err(io)?;
    fs::write(dir.join("secret"), "SECRET-CONTENT\n").map_err(io)?;
    fs::copy("/usr/bin/true", dir.join("forbidden/prog")).map_err(io)?;
    let dp = dir.display();
    let cgroup = format!("{}/{KILL_CGROUP}", cgroup2_root()?);
    let _ = fs::remove_dir(&cgroup);
    fs::create_dir(&cgroup).map_err(|e| format!("making the cgroup {cgroup}: {e}"))?;
    let manifest = dir.join("agents.yaml");
    fs::write(
        &manifest,
        format!(
            "agents:\n  - id: {KILLER}\n    selectors: [{{cgroup: /{KILL_CGROUP}}}]\n    policy:\n      version: matrix-kill\n      executables:\n        mode: kill\n        allow: [\"/usr/bin/*\"]\n      files:\n        mode: kill\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{dp}/allowed/**\"]}}\n        write: {{paths: [\"/dev/**\", \"{dp}/allowed/**\"]}}\n"
        ),
    )
    .map_err(io)?;
    let mut facts = json!({
        "agent": KILLER,
        "cgroup": cgroup,
        "dir": dir,
        "secret": format!("{dp}/secret"),
        "written": format!("{dp}/written"),
        "forbidden": format!("{dp}/forbidden/prog"),
    });
    let t = Instant::now();
    let mut running = Running::start_named(
        sensor,
        &[
            "run",
            "--output",
            "-",
            "--identities",
            manifest.to_str().unwrap(),
        ],
        out,
        "kill-",
    )?;
    let started = running
        .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
        .is_some();
    facts["started"] = json!(started);
    facts["start_seconds"] = json!(t.elapsed().as_secs_f64());
    if !started {
        facts["exit"] = json!(running.stop(STOP_TIMEOUT));
        let _ = fs::remove_dir(&cgroup);
        return Ok(facts);
    }
    // Each command in a child (a subshell for redirections): the shell itself opens nothing
    // once it is the agent's.
    let commands = format!(
        "/usr/bin/cat {dp}/allowed/file >/dev/null; echo read_allowed=$?; \
         /usr/bin/cat {dp}/secret; echo read_killed=$?; \
         (echo x > {dp}/allowed/out); echo write_allowed=$?; \
         (echo x > {dp}/written); echo write_killed=$?; \
         /usr/bin/true; echo exec_allowed=$?; \
         {dp}/forbidden/prog; echo exec_killed=$?"
    );
    let run = |in_agent: bool| -> Result<Value, String> {
        let join = if in_agent {
            format!("echo $$ > {cgroup}/cgroup.procs; ")
        } else {
            String::new()
        };
        // Without cargo's library path: the dynamic loader's failed opens of libraries in
        // its directories are violations too (not killed: nothing was opened).
        let child = Command::new("/usr/bin/dash")
            .args(["-c", &format!("{join}{commands}")])
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let results: serde_json::Map<String, Value> = stdout
            .lines()
            .filter_map(|l| {
                let (name, result) = l.split_once('=')?;
                Some((name.to_owned(), json!(result)))
            })
            .collect();
        Ok(json!({
            "pid": pid,
            "results": results,
            "read_secret": stdout.contains("SECRET-CONTENT"),
            "stderr": String::from_utf8_lossy(&out.stderr),
        }))
    };
    facts["as_agent"] = run(true)?;
    facts["written_after_agent"] = json!(fs::read_to_string(dir.join("written")).ok());
    let _ = fs::remove_file(dir.join("written"));
    facts["bystander"] = run(false)?;
    let agent_pid = facts["as_agent"]["pid"].clone();
    running.wait_for(RECORD_TIMEOUT, |r| {
        action(r) == "exit" && r["process"]["pid"] == agent_pid
    });
    facts["exit"] = json!(running.stop(STOP_TIMEOUT));
    let _ = fs::remove_dir(&cgroup);
    Ok(facts)
}

/// The enforcement run (`enforce-records.jsonl`, `enforce-sensor.stderr`): an agent with
/// executables and files rules in enforce mode, and the same commands run by the agent (in
/// its cgroup) and by a bystander, each printing `NAME=RESULT` lines.
fn enforce_run(out: &Path, sensor: &Path, helper: &Path, work: &Path) -> Result<Value, String> {
    let dir = work.join("enforce");
    let io = |e: std::io::Error| e.to_string();
    fs::create_dir_all(dir.join("allowed")).map_err(io)?;
    fs::create_dir_all(dir.join("forbidden")).map_err(io)?;
    fs::write(dir.join("allowed/file"), "allowed\n").map_err(io)?;
    fs::write(dir.join("secret"), "secret\n").map_err(io)?;
    fs::copy("/usr/bin/true", dir.join("forbidden/prog")).map_err(io)?;
    let script = dir.join("allowed/tool.sh");
    fs::write(&script, "#!/bin/sh\nexit 5\n").map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    let helper = helper.canonicalize().map_err(io)?;
    let (hp, dp) = (helper.display(), dir.display());
    let cgroup = format!("{}/{ENFORCE_CGROUP}", cgroup2_root()?);
    let _ = fs::remove_dir(&cgroup);
    fs::create_dir(&cgroup).map_err(|e| format!("making the cgroup {cgroup}: {e}"))?;
    let manifest = dir.join("agents.yaml");
    fs::write(
        &manifest,
        format!(
            "agents:\n  - id: {ENFORCER}\n    selectors: [{{cgroup: /{ENFORCE_CGROUP}}}]\n    policy:\n      version: matrix-enforce\n      executables:\n        mode: enforce\n        allow: [\"/usr/bin/*\", \"{hp}\"]\n      files:\n        mode: enforce\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{dp}/allowed/**\"]}}\n        write: {{paths: [\"/dev/**\", \"{dp}/allowed/**\"]}}\n"
        ),
    )
    .map_err(io)?;
    let mut facts = json!({
        "agent": ENFORCER,
        "cgroup": cgroup,
        "dir": dir,
        "secret": format!("{dp}/secret"),
        "forbidden": format!("{dp}/forbidden/prog"),
    });
    let t = Instant::now();
    let mut running = Running::start_named(
        sensor,
        &[
            "run",
            "--output",
            "-",
            "--identities",
            manifest.to_str().unwrap(),
        ],
        out,
        "enforce-",
    )?;
    let started = running
        .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
        .is_some();
    facts["started"] = json!(started);
    facts["start_seconds"] = json!(t.elapsed().as_secs_f64());
    if !started {
        facts["exit"] = json!(running.stop(STOP_TIMEOUT));
        let _ = fs::remove_dir(&cgroup);
        return Ok(facts);
    }
    let commands = format!(
        "echo read_allowed=$({hp} open {dp}/allowed/file); \
         echo read_denied=$({hp} open {dp}/secret); \
         echo write_allowed=$({hp} open-write {dp}/allowed/out); \
         echo write_denied=$({hp} open-write {dp}/secret); \
         /usr/bin/true; echo exec_allowed=$?; \
         echo exec_denied=$({hp} try-exec {dp}/forbidden/prog); \
         {dp}/allowed/tool.sh; echo script=$?"
    );
    let run = |in_agent: bool| -> Result<Value, String> {
        let join = if in_agent {
            format!("echo $$ > {cgroup}/cgroup.procs; ")
        } else {
            String::new()
        };
        let child = Command::new("/usr/bin/dash")
            .args(["-c", &format!("{join}{commands}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let results: serde_json::Map<String, Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, result) = l.split_once('=')?;
                Some((name.to_owned(), json!(result)))
            })
            .collect();
        Ok(json!({
            "pid": pid,
            "results": results,
            "stderr": String::from_utf8_lossy(&out.stderr),
        }))
    };
    facts["as_agent"] = run(true)?;
    facts["bystander"] = run(false)?;
    // The agent's shell exits after its last refusal (the bystander is no agent's: not
    // observed).
    let agent_pid = facts["as_agent"]["pid"].clone();
    running.wait_for(RECORD_TIMEOUT, |r| {
        action(r) == "exit" && r["process"]["pid"] == agent_pid
    });
    facts["exit"] = json!(running.stop(STOP_TIMEOUT));
    let _ = fs::remove_dir(&cgroup);
    Ok(facts)
}

/// UDP from a socket bound to 127.0.0.1:0 to a port on loopback, by sendto, sendmsg and
/// sendmmsg: the helper's pid and the port.
fn udp_sends(helper: &Path) -> Result<Value, String> {
    let target = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = target.local_addr().map_err(|e| e.to_string())?.port();
    let (pid, _) = helper_output(helper, &["udp-send", &format!("127.0.0.1:{port}")], None)?;
    Ok(json!({ "pid": pid, "port": port }))
}

/// A connect to a listener on loopback and one to a closed port: each its pid, errno and port.
fn connects(helper: &Path) -> Result<(Value, Value), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let acceptor = thread::spawn(move || listener.accept().map(|_| ()));
    let (connect_pid, connect_errno) =
        helper_output(helper, &["connect", &format!("127.0.0.1:{port}")], None)?;
    let _ = acceptor.join();
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let (refused_pid, refused_errno) =
        helper_output(helper, &["connect", &format!("127.0.0.1:{closed}")], None)?;
    Ok((
        json!({ "pid": connect_pid, "errno": connect_errno, "port": port }),
        json!({ "pid": refused_pid, "errno": refused_errno, "port": closed }),
    ))
}

/// The connects again, under a sensor told not to use LSM hooks (`kernel.lsm_hooks = false`);
/// its records go to `tracepoints-records.jsonl`.
fn tracepoint_source(
    out: &Path,
    sensor: &Path,
    helper: &Path,
    work: &Path,
) -> Result<Value, String> {
    let config = work.join("tracepoints.toml");
    fs::write(&config, "[kernel]\nlsm_hooks = false\n").map_err(|e| e.to_string())?;
    let mut running = Running::start_named(
        sensor,
        &[
            "run",
            "--all-processes",
            "--output",
            "-",
            "--config",
            config.to_str().unwrap(),
        ],
        out,
        "tracepoints-",
    )?;
    if running
        .wait_for(START_TIMEOUT, |r| action(r) == "sensor_start")
        .is_none()
    {
        let status = running.stop(STOP_TIMEOUT);
        return Ok(json!({ "started": false, "exit": status }));
    }
    let (connect, refused) = connects(helper)?;
    let udp = udp_sends(helper)?;
    for pid in [&connect["pid"], &refused["pid"]] {
        running.wait_for(RECORD_TIMEOUT, |r| {
            action(r) == "connect" && &r["process"]["pid"] == pid
        });
    }
    running.wait_for(RECORD_TIMEOUT, |r| {
        action(r) == "exit" && r["process"]["pid"] == udp["pid"]
    });
    let status = running.stop(STOP_TIMEOUT);
    Ok(json!({
        "started": true, "exit": status, "connect": connect, "refused": refused, "udp": udp,
    }))
}

fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or("")
}

fn wait_child(mut child: Child) -> Result<(u32, Option<i32>), String> {
    let pid = child.id();
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok((pid, status.code()))
}

/// Runs the helper, returning its pid and the number it prints (an errno).
fn helper_output(
    helper: &Path,
    args: &[&str],
    cwd: Option<&Path>,
) -> Result<(u32, Option<i64>), String> {
    let mut cmd = Command::new(helper);
    cmd.args(args).stdout(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().map_err(|e| format!("helper {args:?}: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok((
        pid,
        String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
    ))
}

fn inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path).ok().map(|m| m.ino())
}

fn cgroup2_root() -> Result<String, String> {
    fs::read_to_string("/proc/self/mounts")
        .map_err(|e| e.to_string())?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_owned())
        })
        .ok_or_else(|| "no cgroup2 mount".to_owned())
}

/// The sensor, its stdout copied line by line to `records.jsonl` (and kept to wait on), its
/// stderr to `sensor.stderr`.
struct Running {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(sensor: &Path, args: &[&str], out: &Path) -> Result<Running, String> {
        Self::start_named(sensor, args, out, "")
    }

    /// As `start`, its files named with `prefix` (`PREFIXrecords.jsonl`, `PREFIXsensor.stderr`).
    fn start_named(
        sensor: &Path,
        args: &[&str],
        out: &Path,
        prefix: &str,
    ) -> Result<Running, String> {
        let stderr = fs::File::create(out.join(format!("{prefix}sensor.stderr")))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(sensor)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sensor.display()))?;
        let mut file = fs::File::create(out.join(format!("{prefix}records.jsonl")))
            .map_err(|e| e.to_string())?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::with_capacity(1 << 20, stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let _ = file.write_all(&line);
                let _ = file.write_all(b"\n");
                if let Ok(value) = serde_json::from_slice::<Value>(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Ok(Running {
            child,
            records,
            reader: Some(reader),
        })
    }

    /// The first record that matches, waiting until one comes, the sensor exits, or the
    /// timeout passes.
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut cursor = 0;
        loop {
            {
                let records = self.records.lock().unwrap();
                if let Some(found) = records[cursor..].iter().find(|r| pred(r)) {
                    return Some(found.clone());
                }
                cursor = records.len();
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                // One last look: the exit may have come with the record.
                thread::sleep(Duration::from_millis(100));
                return self.records.lock().unwrap()[cursor..]
                    .iter()
                    .find(|r| pred(r))
                    .cloned();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then the exit status.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map_or_else(|e| e.to_string(), describe);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    /// SIGTERM, then the exit status (`"exit N"`, `"signal N"`, or `"killed at the timeout"`).
    fn stop(mut self, timeout: Duration) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break describe(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break "killed at the timeout".to_owned();
                }
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}
