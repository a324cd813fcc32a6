//! Fail-closed egress enforcement, end to end on this kernel: an agent (a long-lived shell in a
//! cgroup the manifest names, whose every command is a child it forks) with an enforced egress
//! rule marked `fail_closed: true`. Its forbidden connect fails with EPERM while the sensor
//! runs, and still after the sensor is killed (SIGKILL), after a restart with the same manifest
//! (the earlier run's pins released, the new run's in place), after a clean stop (SIGTERM),
//! and after a start that fails on a bad manifest; removing the pin directory releases it. A
//! bystander is never stopped. Without `fail_closed` nothing is pinned and a killed sensor
//! leaves nothing denying.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use sensor_tests::{Sensor, cgroup2_root, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");
const PIN_DIR: &str = "/sys/fs/bpf/agent-sensor";
const EPERM: i32 = libc::EPERM;

/// The agent: a shell in its cgroup that runs the helper's `connect` for each address it is
/// given, as a child of its own, and prints the errno.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    cgroup: String,
}

impl Agent {
    fn start(cgroup: &str) -> Agent {
        std::fs::create_dir_all(cgroup).unwrap();
        let script = format!(
            "echo $$ > {cgroup}/cgroup.procs && echo ready && while read addr; do {HELPER} connect \"$addr\"; done"
        );
        let mut child = Command::new("/bin/bash")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Agent {
            child,
            stdin,
            stdout,
            cgroup: cgroup.to_owned(),
        }
    }

    /// The errno of a connect to `addr` by a new child of the agent.
    fn connect(&mut self, addr: &str) -> i32 {
        writeln!(self.stdin, "{addr}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("the agent said {line:?}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// The errno of a connect to `addr` by a process that is nobody's.
fn bystander(addr: &str) -> i32 {
    let out = Command::new(HELPER)
        .args(["connect", addr])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The runs' pin directories.
fn pinned_runs() -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(PIN_DIR)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

fn manifest(dir: &Path, cgroup_name: &str, allowed: u16, egress_extra: &str) {
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: closed\n    selectors: [{{cgroup: /{cgroup_name}/**}}]\n    policy:\n      version: fc-1\n      egress:\n        mode: enforce\n{egress_extra}        allow: [{{cidr: 127.0.0.1, ports: [{allowed}]}}]\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_fail_closed_egress_rule_outlives_the_sensor_until_released() {
    // Earlier runs' pins would make this test's expectations meaningless.
    let _ = std::fs::remove_dir_all(PIN_DIR);
    let dir = scratch_dir("fail-closed");
    let allowed_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed = allowed_listener.local_addr().unwrap().to_string();
    let forbidden = forbidden_listener.local_addr().unwrap().to_string();
    let cgroup_name = format!("agent-sensor-fail-closed-{}", std::process::id());
    let cgroup = format!("{}/{cgroup_name}", cgroup2_root());
    let port = allowed_listener.local_addr().unwrap().port();
    manifest(&dir, &cgroup_name, port, "        fail_closed: true\n");
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(dir.join("agents.yaml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("policy fc-1: tasks enforce, egress enforce, fail closed (1 allowed)"),
        "{check:?}"
    );
    let socket = dir.join("control.sock");
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let config = config.to_str().unwrap();
    let mut agent = Agent::start(&cgroup);

    // Running: the agent's forbidden connect fails, its allowed one and a bystander's go.
    let sensor = Sensor::start(&["--config", config]);
    assert_eq!(agent.connect(&allowed), 0);
    assert_eq!(agent.connect(&forbidden), EPERM);
    assert_eq!(bystander(&forbidden), 0);
    let first = pinned_runs();
    assert_eq!(first.len(), 1, "one run pinned: {first:?}");
    let pins: Vec<String> = std::fs::read_dir(Path::new(PIN_DIR).join(&first[0]))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for pin in [
        "connect4",
        "connect6",
        "sendmsg4",
        "sendmsg6",
        "sched_process_fork",
        "sched_process_exit",
        "EGRESS_POLICY",
        "TRACKED",
    ] {
        assert!(pins.iter().any(|p| p == pin), "{pin} not pinned: {pins:?}");
    }

    // Killed: still denied, for the agent's new children too; the bystander still goes.
    let killed = sensor.kill(libc::SIGKILL);
    assert!(!killed.status.success());
    assert_eq!(
        agent.connect(&forbidden),
        EPERM,
        "fail-closed after SIGKILL"
    );
    assert_eq!(agent.connect(&allowed), 0);
    assert_eq!(bystander(&forbidden), 0);

    // Restarted with the same manifest: denied, the earlier run's pins replaced by its own.
    let sensor = Sensor::start(&["--config", config]);
    assert_eq!(agent.connect(&forbidden), EPERM, "after a restart");
    assert_eq!(agent.connect(&allowed), 0);
    assert_eq!(bystander(&forbidden), 0);
    let second = pinned_runs();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "the earlier run's pins were released");

    // Stopped cleanly (SIGTERM): still denied.
    let stopped = sensor.stop();
    assert!(
        stopped
            .stderr
            .contains("stay enforced after the sensor stops"),
        "{}",
        stopped.stderr
    );
    assert_eq!(
        agent.connect(&forbidden),
        EPERM,
        "fail-closed after SIGTERM"
    );
    assert_eq!(bystander(&forbidden), 0);

    // A start on a manifest that does not load leaves the pinned policy as it was.
    manifest(&dir, &cgroup_name, port, "        fail_closed: maybe\n");
    let refused = Command::new(sensor_binary())
        .args(["run", "--output", "-", "--config", config])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    assert_eq!(agent.connect(&forbidden), EPERM, "after a failed start");
    assert_eq!(pinned_runs(), second);

    // Released by removing the pin directory: nothing denies.
    // The kernel lets go of unpinned links in a work item of its own: the release completes a
    // moment after the `rm` returns.
    std::fs::remove_dir_all(PIN_DIR).unwrap();
    let removed = std::time::Instant::now();
    while agent.connect(&forbidden) != 0 {
        assert!(
            removed.elapsed() < std::time::Duration::from_secs(10),
            "still denied 10 s after the release"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(agent.connect(&allowed), 0);

    // Without fail_closed: denied while running, nothing pinned, nothing denying once killed.
    manifest(&dir, &cgroup_name, port, "");
    let sensor = Sensor::start(&["--config", config]);
    assert_eq!(agent.connect(&forbidden), EPERM);
    assert!(pinned_runs().is_empty(), "{:?}", pinned_runs());
    let _ = sensor.kill(libc::SIGKILL);
    assert_eq!(
        agent.connect(&forbidden),
        0,
        "fail-open without fail_closed"
    );
    assert_eq!(bystander(&forbidden), 0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
