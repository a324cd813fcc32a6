//! `files` rules in `kill` mode, end to end on this kernel (which has no BPF LSM): an agent's
//! shell reads and writes allowed and forbidden files; each forbidden open is followed by
//! SIGKILL from the kernel before the syscall returns (the shell sees status 137, and the
//! content of a forbidden read never reaches the process: `cat` dies before it can print it),
//! its open record says so, and a decision record `killed` links to it. Allowed opens, the same
//! commands run by a bystander, and a forbidden read under an operator's `files.read`
//! exception go through; when the exception ends, the kill is back. A forbidden open that
//! fails (the file does not exist) opened nothing: not killed, its decision says `violation`
//! and why. An agent attributed by registration is killed the same way.
use std::{fmt::Write as _, path::Path, process::Command, time::Duration};

use sensor_tests::{Sensor, Value, action, cgroup2_root, pid_of, scratch_dir, sensor_binary};

/// The shell's report of each command: `NAME=STATUS` lines (137 = killed by SIGKILL).
fn statuses(out: &std::process::Output) -> Vec<(String, i32)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once('=')?;
            Some((name.to_owned(), status.parse().ok()?))
        })
        .collect()
}

fn s(name: &str, status: i32) -> (String, i32) {
    (name.to_owned(), status)
}

#[test]
fn forbidden_opens_are_killed_before_they_return_allowed_ones_and_bystanders_are_not() {
    let dir = scratch_dir("file-kill");
    let (allowed, out) = (dir.join("allowed"), dir.join("out"));
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(allowed.join("data"), "allowed-data\n").unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "SECRET-CONTENT\n").unwrap();
    let forbidden = dir.join("forbidden");
    let cg_name = format!("agent-sensor-file-kill-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let socket = dir.join("control.sock");
    let (a, o) = (allowed.display(), out.display());
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: reader\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      version: \"files-kill-1\"\n      files:\n        mode: kill\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\", \"{a}/**\"]}}\n        write: {{paths: [\"/dev/**\", \"{o}/*\"]}}\n"
        ),
    )
    .unwrap();
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("files kill"),
        "{check:?}"
    );
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    // Each command in a child (a subshell for redirections): the shell itself opens nothing
    // once it is the agent's, so it lives to report each status.
    let script = |in_agent: bool| {
        let mut s = String::new();
        if in_agent {
            let _ = write!(s, "echo $$ > {cg}/cgroup.procs; ");
        }
        let (sec, forb) = (secret.display(), forbidden.display());
        let _ = write!(
            s,
            "/usr/bin/cat {a}/data; echo read=$?; /usr/bin/cat {sec}; echo secret=$?; \
             (echo written > {o}/file); echo write=$?; (echo written > {forb}); echo forbidden=$?; \
             /usr/bin/cat {sec}-missing 2>/dev/null; echo missing=$?"
        );
        s
    };
    // Without cargo's library path (`cargo test` sets one): the dynamic loader's failed opens
    // of libraries there would be violations too (not killed: they opened nothing).
    let run = |in_agent: bool| {
        Command::new("/usr/bin/dash")
            .args(["-c", &script(in_agent)])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
    };
    let killed_both = [
        s("read", 0),
        s("secret", 137),
        s("write", 0),
        s("forbidden", 137),
        s("missing", 1),
    ];
    let agent = run(true);
    assert_eq!(statuses(&agent), killed_both, "{agent:?}");
    let printed = String::from_utf8_lossy(&agent.stdout);
    assert!(printed.contains("allowed-data"), "{printed}");
    // The forbidden read's content never reached the process: cat died in the open.
    assert!(!printed.contains("SECRET"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(out.join("file")).unwrap(),
        "written\n"
    );
    // After the fact: the open happened (O_CREAT made the file), nothing was written.
    assert_eq!(std::fs::read_to_string(&forbidden).unwrap(), "");
    std::fs::remove_file(&forbidden).unwrap();

    let bystander = run(false);
    assert!(
        statuses(&bystander)
            .iter()
            .all(|(n, s)| *s == i32::from(n == "missing")),
        "a bystander is never killed: {bystander:?}"
    );
    assert!(String::from_utf8_lossy(&bystander.stdout).contains("SECRET-CONTENT"));
    assert_eq!(std::fs::read_to_string(&forbidden).unwrap(), "written\n");
    std::fs::write(&forbidden, "").unwrap();

    // The decisions so far are made before the exception is granted (the daemon decides as
    // it reads the records: a failed open's decision follows the exceptions then in force).
    sensor.wait_for_count("the first decisions", 3, |r| action(r) == "policy_decision");
    // Under a files.read exception the forbidden read goes through; writes are still
    // killed; after it, the read is killed again.
    let except = Command::new(sensor_binary())
        .args(["except", "--agent", "reader", "--rule", "files.read"])
        .args(["--seconds", "2", "--author", "alice", "--reason", "INC-8"])
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert!(except.status.success(), "{except:?}");
    let excepted = run(true);
    assert_eq!(
        statuses(&excepted),
        [
            s("read", 0),
            s("secret", 0),
            s("write", 0),
            s("forbidden", 137),
            s("missing", 1),
        ],
        "{excepted:?}"
    );
    assert!(String::from_utf8_lossy(&excepted.stdout).contains("SECRET-CONTENT"));
    std::thread::sleep(Duration::from_millis(2500));
    let after = run(true);
    assert_eq!(
        statuses(&after),
        killed_both,
        "the exception ended: {after:?}"
    );
    assert_eq!(std::fs::read_to_string(&forbidden).unwrap(), "");

    sensor.wait_for_count("the decisions", 9, |r| action(r) == "policy_decision");
    let done = sensor.stop();
    let records = &done.records;
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .collect();
    let summary: Vec<(&str, &str, &str)> = decisions
        .iter()
        .map(|d| {
            (
                d["policy"]["rule"].as_str().unwrap(),
                d["policy"]["target"].as_str().unwrap(),
                d["policy"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let (sec, forb) = (
        secret.display().to_string(),
        forbidden.display().to_string(),
    );
    let missing = format!("{sec}-missing");
    let (read, write) = (("files.read", sec.as_str()), ("files.write", forb.as_str()));
    let gone = ("files.read", missing.as_str());
    assert_eq!(
        summary,
        [
            (read.0, read.1, "killed"),
            (write.0, write.1, "killed"),
            (gone.0, gone.1, "violation"),
            (read.0, read.1, "allowed"),
            (write.0, write.1, "killed"),
            (gone.0, gone.1, "allowed"),
            (read.0, read.1, "killed"),
            (write.0, write.1, "killed"),
            (gone.0, gone.1, "violation"),
        ],
        "{decisions:#?}"
    );
    for d in &decisions {
        assert_eq!(d["policy"]["mode"], "kill");
        assert_eq!(d["policy"]["version"], "files-kill-1");
        assert_eq!(d["identity"]["agent"]["id"], "reader");
        // Linked to its open record, which says whether the process was killed.
        let open = records
            .iter()
            .find(|r| r["chain"]["sequence"] == d["policy"]["action"]["sequence"])
            .expect("the linked record");
        assert_eq!(action(open), "open");
        assert_eq!(open["chain"]["hash"], d["policy"]["action"]["hash"]);
        let failed = d["policy"]["target"] == missing.as_str();
        let outcome = if failed { "failure" } else { "success" };
        assert_eq!(open["event"]["outcome"], outcome, "{open:#}");
        if d["policy"]["outcome"] == "violation" {
            let reason = d["policy"]["reason"].as_str().unwrap();
            assert!(
                reason
                    .ends_with("the kernel did not stop it (the open failed: nothing was opened)"),
                "{reason}"
            );
        }
        let killed = d["policy"]["outcome"] == "killed";
        assert_eq!(
            open["file"]["policy_killed"].as_bool().unwrap_or(false),
            killed,
            "{open:#}"
        );
        if killed {
            let pid = pid_of(open);
            let exit = records
                .iter()
                .find(|r| action(r) == "exit" && pid_of(r) == pid)
                .expect("the killed process's exit");
            assert_eq!(exit["process"]["exit_signal"]["number"], 9, "{exit:#}");
        } else if d["policy"]["outcome"] == "allowed" {
            assert!(d["policy"]["exception"]["sequence"].is_u64(), "{d:#}");
        }
    }
    // Nobody else's open is flagged: not the bystander's, not the allowed ones.
    let flagged = records
        .iter()
        .filter(|r| r["file"]["policy_killed"] == true)
        .count();
    assert_eq!(flagged, 5);
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `identities check` says what it accepts in kill mode and refuses what the kernel cannot
/// hold, with the line.
#[test]
fn identities_check_holds_files_kill_rules_to_what_the_kernel_can_check() {
    let dir = scratch_dir("file-kill-check");
    let check = |policy: &str| {
        let manifest = dir.join("agents.yaml");
        std::fs::write(
            &manifest,
            format!("agents:\n  - id: a\n    selectors: [{{uid: 4242}}]\n    policy:\n{policy}"),
        )
        .unwrap();
        let out = Command::new(sensor_binary())
            .args(["identities", "check"])
            .arg(Path::new(&manifest))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = check(
        "      files:\n        mode: kill\n        read: {paths: [\"/srv/**\", \"/etc/hosts\", \"/opt/x/*\"]}\n",
    );
    assert!(
        ok && said.contains("files kill (3 read, 0 write)"),
        "{said}"
    );
    let (ok, said) =
        check("      files:\n        mode: kill\n        read: {paths: [\"/srv/*/x\"]}\n");
    assert!(
        !ok && said.contains(":6:9:")
            && said.contains("mode kill: files read path \"/srv/*/x\": only exact paths"),
        "{said}"
    );
    let (ok, said) = check(
        "      files:\n        mode: kill\n        read: {paths: [\"/srv/**\"], classes: [ssh_key]}\n",
    );
    assert!(
        !ok && said.contains("mode kill: files read class \"ssh_key\": file classes cannot be"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A files and an executables rule in kill mode with `fail_closed: true`: the kill checks'
/// programs are pinned, so an agent (a long-lived shell in its cgroup) that reads a forbidden
/// file or runs a forbidden program is still killed after the sensor is killed (SIGKILL),
/// after a restart and after a clean stop (SIGTERM); a bystander is not; removing the pin
/// directory releases it.
#[test]
fn a_fail_closed_kill_rule_outlives_the_sensor_until_released() {
    use std::io::{BufRead as _, BufReader, Write as _};
    const PIN_DIR: &str = "/sys/fs/bpf/agent-sensor";
    // Earlier runs' pins would make this test's expectations meaningless.
    let _ = std::fs::remove_dir_all(PIN_DIR);
    let dir = scratch_dir("file-kill-closed");
    let secret = dir.join("secret");
    std::fs::write(&secret, "SECRET-CONTENT\n").unwrap();
    let prog = dir.join("prog");
    std::fs::copy("/usr/bin/true", &prog).unwrap();
    let cg_name = format!("agent-sensor-file-kill-closed-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: closed\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      version: kill-closed-1\n      executables:\n        mode: kill\n        fail_closed: true\n        allow: [\"/usr/bin/*\"]\n      files:\n        mode: kill\n        fail_closed: true\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\"]}}\n        write: {{paths: [\"/dev/**\"]}}\n"
        ),
    )
    .unwrap();
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(&manifest)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains("files kill, fail closed (6 read, 1 write), executables kill, fail closed"),
        "{check:?}"
    );
    // The agent: a shell in its cgroup that, for each `read PATH` or `run PATH` line, reads
    // the file or runs the program in a child and prints the child's status.
    let script = format!(
        "echo $$ > {cg}/cgroup.procs && echo ready && while read verb arg; do \
         if [ \"$verb\" = read ]; then /usr/bin/cat \"$arg\" >/dev/null 2>&1; else \"$arg\"; fi; \
         echo \"status=$?\"; done"
    );
    let mut agent = Command::new("/usr/bin/bash")
        .args(["-c", &script])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = agent.stdin.take().unwrap();
    let mut stdout = BufReader::new(agent.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut ask = |verb: &str, path: &Path| -> i32 {
        writeln!(stdin, "{verb} {}", path.display()).unwrap();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the agent ended");
            if let Some(status) = line.trim().strip_prefix("status=") {
                return status.parse().unwrap();
            }
        }
    };
    let bystander = |path: &Path| {
        Command::new("/usr/bin/cat")
            .arg(path)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
            .status
            .code()
    };
    let hosts = Path::new("/etc/hosts");
    let socket = dir.join("control.sock");
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    assert_eq!(ask("read", &secret), 137);
    assert_eq!(ask("read", hosts), 0);
    assert_eq!(ask("run", &prog), 137);
    assert_eq!(ask("run", Path::new("/usr/bin/true")), 0);
    let runs: Vec<_> = std::fs::read_dir(PIN_DIR).unwrap().collect();
    assert_eq!(runs.len(), 1, "one run pinned");
    let pins: Vec<String> = std::fs::read_dir(runs[0].as_ref().unwrap().path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for pin in [
        "sched_process_exec",
        "sys_exit_openat",
        "sched_process_fork",
        "sched_process_exit",
    ] {
        assert!(pins.iter().any(|p| p == pin), "{pin} not pinned: {pins:?}");
    }

    // Killed: the agent's new children are still killed; a bystander is not.
    let killed = sensor.kill(libc::SIGKILL);
    assert!(!killed.status.success());
    assert_eq!(ask("read", &secret), 137, "fail-closed after SIGKILL");
    assert_eq!(ask("read", hosts), 0);
    assert_eq!(ask("run", &prog), 137, "fail-closed after SIGKILL");
    assert_eq!(ask("run", Path::new("/usr/bin/true")), 0);
    assert_eq!(bystander(&secret), Some(0));

    // Restarted: still killed, the earlier run's pins replaced by this run's; stopped cleanly
    // (SIGTERM): still killed.
    let first: Vec<_> = std::fs::read_dir(PIN_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    assert_eq!(ask("read", &secret), 137, "after a restart");
    let second: Vec<_> = std::fs::read_dir(PIN_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "the earlier run's pins were released");
    let stopped = sensor.stop();
    assert!(
        stopped
            .stderr
            .contains("stay enforced after the sensor stops"),
        "{}",
        stopped.stderr
    );
    assert_eq!(ask("read", &secret), 137, "fail-closed after SIGTERM");
    assert_eq!(ask("run", &prog), 137, "fail-closed after SIGTERM");
    assert_eq!(ask("read", hosts), 0);

    // A start on a manifest that does not load leaves the pinned rules as they were.
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        good.replace("fail_closed: true", "fail_closed: maybe"),
    )
    .unwrap();
    let refused = Command::new(sensor_binary())
        .args(["run", "--output", "-", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    assert_eq!(ask("read", &secret), 137, "after a failed start");
    assert_eq!(ask("run", &prog), 137, "after a failed start");
    let after_failed: Vec<_> = std::fs::read_dir(PIN_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(after_failed, second, "the failed start pinned nothing");

    // A start that fails once its programs are loaded and its rules in the kernel (its output
    // cannot be opened) leaves its own pins too: both runs' checks kill.
    std::fs::write(&manifest, &good).unwrap();
    let failed = Command::new(sensor_binary())
        .args(["run", "--output", "/etc/hostname/out.jsonl"])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!failed.status.success(), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("opening the output"),
        "{failed:?}"
    );
    let runs: Vec<_> = std::fs::read_dir(PIN_DIR).unwrap().collect();
    assert_eq!(
        runs.len(),
        2,
        "the earlier run's and the failed start's pins"
    );
    assert_eq!(ask("read", &secret), 137, "after a start that failed late");

    // Released: nothing is killed any more. The kernel lets go of an unpinned link in a
    // work item of its own (each tracepoint link waits for an RCU grace period), so the
    // release completes shortly after the `rm` returns.
    std::fs::remove_dir_all(PIN_DIR).unwrap();
    let removed = std::time::Instant::now();
    while ask("read", &secret) != 0 {
        assert!(
            removed.elapsed() < Duration::from_secs(10),
            "still killed 10 s after the release"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("released {:?} after the rm", removed.elapsed());
    assert_eq!(ask("run", &prog), 0, "released");
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kill rules without `fail_closed`: a start that fails after its programs were attached and
/// its rules put in the kernel (the output cannot be opened) leaves nothing killing: the
/// programs go with the process, and nothing is pinned.
#[test]
fn a_start_that_fails_leaves_nothing_killing_without_fail_closed() {
    const PIN_DIR: &str = "/sys/fs/bpf/agent-sensor";
    let _ = std::fs::remove_dir_all(PIN_DIR);
    let dir = scratch_dir("file-kill-failed-start");
    let secret = dir.join("secret");
    std::fs::write(&secret, "SECRET-CONTENT\n").unwrap();
    let prog = dir.join("prog");
    std::fs::copy("/usr/bin/true", &prog).unwrap();
    let cg_name = format!("agent-sensor-file-kill-failed-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: open\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      executables:\n        mode: kill\n        allow: [\"/usr/bin/*\"]\n      files:\n        mode: kill\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\"]}}\n"
        ),
    )
    .unwrap();
    let config = sensor_tests::write_identities_config(&dir, &dir.join("control.sock"));
    // The agent's commands, run in its cgroup (after the failed start: a new process there is
    // nobody's anyway once the sensor is gone, so the shell is the agent's from the start).
    let commands = format!(
        "echo $$ > {cg}/cgroup.procs; /usr/bin/cat {} >/dev/null 2>&1; echo read=$?; {}; echo run=$?",
        secret.display(),
        prog.display()
    );
    let mut agent = Command::new("/usr/bin/bash")
        .args(["-c", &format!("read go; {commands}")])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    // While a sensor runs, the same commands are killed (the rules hold).
    let killed = Command::new("/usr/bin/bash")
        .args(["-c", &commands])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(
        statuses(&killed),
        vec![s("read", 137), s("run", 137)],
        "{killed:?}"
    );
    let _ = sensor.stop();
    let failed = Command::new(sensor_binary())
        .args(["run", "--output", "/etc/hostname/out.jsonl"])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!failed.status.success(), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("opening the output"),
        "{failed:?}"
    );
    assert!(
        std::fs::read_dir(PIN_DIR).map_or(true, |mut d| d.next().is_none()),
        "nothing pinned"
    );
    {
        use std::io::Write as _;
        writeln!(agent.stdin.take().unwrap(), "go").unwrap();
    }
    let out = agent.wait_with_output().unwrap();
    assert_eq!(
        statuses(&out),
        vec![s("read", 0), s("run", 0)],
        "nothing kills after the failed start: {out:?}"
    );
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kill rules for an agent attributed by registration (no selector): a shell registered over
/// the control socket while the sensor runs; its children's forbidden read and program are
/// killed, its allowed ones and a bystander's are not.
#[test]
fn a_registered_agents_forbidden_open_and_exec_are_killed() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let dir = scratch_dir("file-kill-registered");
    let secret = dir.join("secret");
    std::fs::write(&secret, "SECRET-CONTENT\n").unwrap();
    let prog = dir.join("prog");
    std::fs::copy("/usr/bin/true", &prog).unwrap();
    std::fs::write(
        dir.join("agents.yaml"),
        "agents:\n  - id: registered\n    policy:\n      executables: {mode: kill, allow: [\"/usr/bin/*\"]}\n      files:\n        mode: kill\n        read: {paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\"]}\n        write: {paths: [\"/dev/**\"]}\n",
    )
    .unwrap();
    let socket = dir.join("control.sock");
    let config = sensor_tests::write_identities_config(&dir, &socket);
    // For each `read PATH` or `run PATH` line: the file read or the program run in a child,
    // and the child's status.
    let script = "echo ready && while read verb arg; do \
         if [ \"$verb\" = read ]; then /usr/bin/cat \"$arg\" >/dev/null 2>&1; else \"$arg\"; fi; \
         echo \"status=$?\"; done";
    let mut shell = Command::new("/usr/bin/bash")
        .args(["-c", script])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut stdout = BufReader::new(shell.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut ask = |verb: &str, path: &Path| -> i32 {
        writeln!(stdin, "{verb} {}", path.display()).unwrap();
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the shell ended");
        line.trim()
            .strip_prefix("status=")
            .unwrap_or_else(|| panic!("the shell said {line:?}"))
            .parse()
            .unwrap()
    };
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    // Not yet anyone's: nothing is killed.
    assert_eq!(ask("read", &secret), 0);
    let registered = Command::new(sensor_binary())
        .args(["register", "--socket", socket.to_str().unwrap()])
        .args(["--pid", &shell.id().to_string(), "--agent", "registered"])
        .output()
        .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    assert_eq!(
        ask("read", &secret),
        137,
        "a registered agent's forbidden read"
    );
    assert_eq!(ask("read", Path::new("/etc/hosts")), 0);
    assert_eq!(
        ask("run", &prog),
        137,
        "a registered agent's forbidden program"
    );
    assert_eq!(ask("run", Path::new("/usr/bin/true")), 0);
    let bystander = Command::new("/usr/bin/cat")
        .arg(&secret)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(bystander.status.success(), "{bystander:?}");
    let records = sensor.stop().records;
    let decisions: Vec<(String, String)> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .map(|r| {
            (
                r["policy"]["rule"].as_str().unwrap_or("").to_owned(),
                r["policy"]["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("files.read".to_owned(), "killed".to_owned()),
            ("executables".to_owned(), "killed".to_owned())
        ],
        "{records:#?}"
    );
    let _ = shell.kill();
    let _ = shell.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
