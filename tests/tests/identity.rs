//! Agent identities, end to end: declared agents, real cgroups, real executables and uids,
//! the registration socket, and delegation between agents; every event is checked against who
//! really did it.
use std::{path::Path, process::Command};

use sensor_tests::{Sensor, Value, action, cgroup2_root, pid_of, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

fn agent_of(r: &Value) -> &str {
    r["identity"]["agent"]["id"].as_str().unwrap_or("")
}

fn execs_of<'a>(records: &'a [Value], exe: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| action(r) == "exec" && r["process"]["executable"] == exe)
        .collect()
}

fn copy_exe(from: &str, to: &Path) -> String {
    std::fs::copy(from, to).unwrap();
    to.to_str().unwrap().to_owned()
}

#[test]
fn cgroup_executable_and_uid_selectors_attribute_in_the_kernel() {
    let dir = scratch_dir("selectors");
    let agent_exe = copy_exe(HELPER, &dir.join("agent-exe"));
    let cg_name = format!("agent-sensor-test-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: exe-agent\n    name: By executable\n    purpose: test\n    owners: {{business: biz@example.com, technical: tech@example.com}}\n    team: sensors\n    data_sensitivity: internal\n    selectors: [{{executable: {agent_exe}}}]\n  - id: cg-agent\n    selectors: [{{cgroup: /{cg_name}}}]\n  - id: uid-agent\n    selectors: [{{uid: 4242}}]\n"
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    assert_eq!(
        Command::new(&agent_exe)
            .args(["exit", "5"])
            .status()
            .unwrap()
            .code(),
        Some(5)
    );
    let script = format!("echo $$ > {cg}/cgroup.procs && exec {HELPER} exit 6");
    assert_eq!(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .code(),
        Some(6)
    );
    let uid = Command::new("setpriv")
        .args([
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            HELPER,
            "exit",
            "7",
        ])
        .status()
        .unwrap();
    assert_eq!(uid.code(), Some(7));
    assert!(
        Command::new("/bin/true")
            .arg("not-an-agent")
            .status()
            .unwrap()
            .success()
    );
    sensor.wait_for("the uid agent's exit", |r| {
        action(r) == "exit" && agent_of(r) == "uid-agent"
    });
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);

    let by_exe = execs_of(&done.records, &agent_exe);
    assert_eq!(by_exe.len(), 1);
    let id = &by_exe[0]["identity"];
    assert_eq!(id["agent"]["id"], "exe-agent");
    assert_eq!(id["agent"]["owners"]["business"], "biz@example.com");
    assert_eq!(id["agent"]["team"], "sensors");
    assert_eq!(id["attribution"]["method"], "executable");
    assert_eq!(id["attribution"]["trust"], "medium");
    // The agent's later activity carries the identity too.
    let pid = pid_of(by_exe[0]);
    let exit = done
        .records
        .iter()
        .find(|r| action(r) == "exit" && pid_of(r) == pid)
        .unwrap();
    assert_eq!(agent_of(exit), "exe-agent");

    let helpers = execs_of(&done.records, HELPER);
    let in_cgroup = helpers
        .iter()
        .find(|r| r["process"]["args"][2] == "6")
        .expect("the exec in the cgroup");
    assert_eq!(agent_of(in_cgroup), "cg-agent");
    assert_eq!(in_cgroup["identity"]["attribution"]["method"], "cgroup");
    assert_eq!(in_cgroup["identity"]["attribution"]["trust"], "strong");
    let as_uid = helpers
        .iter()
        .find(|r| r["process"]["args"][2] == "7")
        .expect("the exec as uid 4242");
    assert_eq!(agent_of(as_uid), "uid-agent");
    assert_eq!(as_uid["identity"]["attribution"]["method"], "uid");

    // Nothing that belongs to no agent is reported.
    assert!(
        !done
            .records
            .iter()
            .any(|r| r["process"]["args"][1] == "not-an-agent")
    );
    assert!(
        done.records
            .iter()
            .filter(|r| r["event"]["category"][0] != "process"
                || !["sensor_start", "sensor_stop"].contains(&action(r)))
            .all(|r| !agent_of(r).is_empty()),
        "every event record is an agent's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_five_level_tree_of_short_lived_processes_is_all_attributed() {
    let dir = scratch_dir("tree");
    let agent_sh = copy_exe("/bin/sh", &dir.join("agent-sh"));
    // Each level forks the next (two commands, so the shell cannot exec in place).
    for level in 1..=4 {
        std::fs::write(
            dir.join(format!("l{level}.sh")),
            format!("/bin/sh {}/l{}.sh; true\n", dir.display(), level + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join("l5.sh"), "/bin/true leaf; true\n").unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!("agents:\n  - id: tree-agent\n    selectors: [{{executable: {agent_sh}}}]\n"),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    assert!(
        Command::new(&agent_sh)
            .arg(dir.join("l1.sh"))
            .status()
            .unwrap()
            .success()
    );
    sensor.wait_for("the leaf", |r| {
        action(r) == "exec" && r["process"]["args"][1] == "leaf"
    });
    let done = sensor.stop();
    let execs: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "exec")
        .collect();
    assert!(
        execs.len() >= 6,
        "the agent, four nested shells and the leaf: {}",
        execs.len()
    );
    for e in &execs {
        assert_eq!(agent_of(e), "tree-agent", "{e}");
    }
    let root = execs
        .iter()
        .find(|r| r["process"]["executable"] == agent_sh.as_str())
        .unwrap();
    assert!(
        root["identity"]["attribution"].get("inherited").is_none(),
        "the agent itself matched directly"
    );
    let leaf = execs
        .iter()
        .find(|r| r["process"]["args"][1] == "leaf")
        .unwrap();
    assert_eq!(leaf["identity"]["attribution"]["inherited"], true);
    assert_eq!(leaf["identity"]["attribution"]["method"], "executable");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_delegation_chain_of_three_agents_keeps_each_hop() {
    let dir = scratch_dir("chain");
    let (a, b, c) = (
        copy_exe("/bin/sh", &dir.join("a-sh")),
        copy_exe("/bin/sh", &dir.join("b-sh")),
        copy_exe("/bin/sh", &dir.join("c-sh")),
    );
    let d = dir.display();
    std::fs::write(dir.join("a.sh"), format!("{b} {d}/b.sh; true\n")).unwrap();
    std::fs::write(dir.join("b.sh"), format!("{c} {d}/c.sh; true\n")).unwrap();
    std::fs::write(dir.join("c.sh"), "/bin/true end-of-chain; true\n").unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!("agents:\n  - id: planner\n    selectors: [{{executable: {a}}}]\n  - id: coder\n    selectors: [{{executable: {b}}}]\n  - id: tester\n    selectors: [{{executable: {c}}}]\n"),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    assert!(
        Command::new(&a)
            .arg(dir.join("a.sh"))
            .status()
            .unwrap()
            .success()
    );
    sensor.wait_for("the end of the chain", |r| {
        action(r) == "exec" && r["process"]["args"][1] == "end-of-chain"
    });
    let done = sensor.stop();
    let exec = |exe: &str| {
        *execs_of(&done.records, exe)
            .first()
            .unwrap_or_else(|| panic!("no exec of {exe}"))
    };
    let (ea, eb, ec) = (exec(&a), exec(&b), exec(&c));
    assert_eq!(agent_of(ea), "planner");
    assert!(ea["identity"].get("delegation").is_none());
    assert_eq!(agent_of(eb), "coder");
    assert_eq!(eb["identity"]["delegation"].as_array().unwrap().len(), 1);
    assert_eq!(eb["identity"]["delegation"][0]["from"], "planner");
    assert_eq!(eb["identity"]["delegation"][0]["to"], "coder");
    assert_eq!(
        eb["identity"]["delegation"][0]["process"]["entity_id"],
        eb["process"]["entity_id"]
    );
    assert_eq!(agent_of(ec), "tester");
    let hops: Vec<(&str, &str)> = ec["identity"]["delegation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from"].as_str().unwrap(), h["to"].as_str().unwrap()))
        .collect();
    assert_eq!(hops, [("planner", "coder"), ("coder", "tester")]);
    let end = done
        .records
        .iter()
        .find(|r| action(r) == "exec" && r["process"]["args"][1] == "end-of-chain")
        .unwrap();
    assert_eq!(agent_of(end), "tester", "the tester's tool is the tester");
    assert_eq!(end["identity"]["attribution"]["inherited"], true);
    assert_eq!(end["identity"]["delegation"], ec["identity"]["delegation"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registration_from_root_is_accepted_and_from_an_unprivileged_uid_refused() {
    use std::io::Write as _;
    let dir = scratch_dir("registration");
    let socket = dir.join("register.sock");
    let manifest = dir.join("agents.yaml");
    std::fs::write(&manifest, "agents:\n  - id: orchestrated\n    allowed_tasks: [review-1]\n    selectors: [{uid: 65533}]\n").unwrap();
    let config = dir.join("sensor.toml");
    // Another uid is allowed, so the socket is reachable and the credential check decides.
    std::fs::write(&config, format!("[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\nregistration_uids = [12345]\n", socket.display())).unwrap();
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "read x; /bin/true registered-child; read y"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = shell.id().to_string();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let socket_arg = socket.to_str().unwrap();
    let register = |extra: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(extra).arg(sensor_binary()).args([
            "register",
            "--socket",
            socket_arg,
            "--pid",
            &pid,
            "--agent",
            "orchestrated",
        ]);
        cmd
    };
    // A refused task, then an unprivileged peer, then root.
    let bad_task = Command::new(sensor_binary())
        .args([
            "register",
            "--socket",
            socket_arg,
            "--pid",
            &pid,
            "--agent",
            "orchestrated",
            "--task",
            "deploy",
        ])
        .output()
        .unwrap();
    assert!(!bad_task.status.success());
    assert!(
        String::from_utf8_lossy(&bad_task.stdout).contains("not among agent"),
        "{bad_task:?}"
    );
    let nobody = register(&["--reuid=65534", "--regid=65534", "--clear-groups"])
        .output()
        .unwrap();
    assert!(!nobody.status.success(), "{nobody:?}");
    assert!(
        String::from_utf8_lossy(&nobody.stdout).contains("uid 65534"),
        "{nobody:?}"
    );
    let root = Command::new(sensor_binary())
        .args([
            "register",
            "--socket",
            socket_arg,
            "--pid",
            &pid,
            "--agent",
            "orchestrated",
            "--task",
            "review-1",
            "--session",
            "s-9",
        ])
        .output()
        .unwrap();
    assert!(root.status.success(), "{root:?}");
    let list = Command::new(sensor_binary())
        .args(["register", "--socket", socket_arg, "--list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&format!("\"pid\":{pid}")),
        "{list:?}"
    );

    let mut stdin = shell.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    let child = sensor.wait_for("the registered process's child", |r| {
        action(r) == "exec" && r["process"]["args"][1] == "registered-child"
    });
    writeln!(stdin, "done").unwrap();
    shell.wait().unwrap();
    let done = sensor.stop();
    assert_eq!(agent_of(&child), "orchestrated");
    assert_eq!(child["identity"]["attribution"]["method"], "registration");
    assert_eq!(child["identity"]["attribution"]["trust"], "strong");
    assert_eq!(child["identity"]["attribution"]["inherited"], true);
    assert_eq!(child["identity"]["task"]["id"], "review-1");
    assert_eq!(child["identity"]["task"]["session"], "s-9");

    let requests: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "agent_registration")
        .collect();
    let outcome = |uid: u64, ok: &str| {
        requests
            .iter()
            .any(|r| r["registration"]["peer_uid"] == uid && r["event"]["outcome"] == ok)
    };
    assert!(
        outcome(65534, "failure"),
        "the refusal is on the record: {requests:?}"
    );
    assert!(outcome(0, "success"), "the registration is on the record");
    assert!(requests.iter().any(|r| {
        r["registration"]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("allowed tasks"))
    }));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_manifest_reloads_on_change_and_on_sighup_without_losing_agents() {
    let dir = scratch_dir("reload");
    let first = copy_exe(HELPER, &dir.join("first-agent"));
    let second = copy_exe(HELPER, &dir.join("second-agent"));
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!("agents:\n  - id: first\n    selectors: [{{executable: {first}}}]\n"),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    // A new agent appears in the file: picked up without a restart.
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(
        &manifest,
        format!("agents:\n  - id: second\n    selectors: [{{executable: {second}}}]\n  - id: first\n    selectors: [{{executable: {first}}}]\n"),
    )
    .unwrap();
    sensor.wait_for("the reload", |r| {
        action(r) == "identities_reloaded" && r["event"]["outcome"] == "success"
    });
    // Selectors are compiled again on the next refresh.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        Command::new(&second)
            .args(["exit", "0"])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new(&first)
            .args(["exit", "0"])
            .status()
            .unwrap()
            .success()
    );
    sensor.wait_for("the second agent", |r| {
        action(r) == "exec" && agent_of(r) == "second"
    });
    sensor.wait_for("the first agent, still itself", |r| {
        action(r) == "exec" && agent_of(r) == "first"
    });
    // A broken manifest on SIGHUP is refused, on the record, and the agents stay.
    std::fs::write(&manifest, "agents:\n  - id: Not Valid\n").unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) };
    let refused = sensor.wait_for("the refused reload", |r| {
        action(r) == "identities_reloaded" && r["event"]["outcome"] == "failure"
    });
    assert!(
        refused["sensor"]["lifecycle"]["reason"]
            .as_str()
            .unwrap()
            .contains("Not Valid"),
        "{refused}"
    );
    assert!(
        Command::new(&second)
            .args(["exit", "1"])
            .status()
            .unwrap()
            .code()
            == Some(1)
    );
    sensor.wait_for("the second agent after the bad reload", |r| {
        action(r) == "exit" && agent_of(r) == "second" && r["process"]["exit_code"] == 1
    });
    sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_environment_marker_is_weak_and_never_overrides_a_cgroup_match() {
    let dir = scratch_dir("marker");
    let cg_name = format!("agent-sensor-marker-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: marked\n  - id: cg-owner\n    selectors: [{{cgroup: /{cg_name}}}]\n"
        ),
    )
    .unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!("[identities]\nmanifest = \"agents.yaml\"\nenvironment_marker = \"AGENT_SENSOR_AGENT\"\nregistration_socket = \"{}/reg.sock\"\n", dir.display()),
    )
    .unwrap();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let run = |env: Option<&str>, code: &str| {
        let mut cmd = Command::new(HELPER);
        cmd.args(["exit", code]);
        if let Some(v) = env {
            cmd.env("AGENT_SENSOR_AGENT", v);
        }
        assert!(cmd.status().unwrap().code() == code.parse().ok());
    };
    run(Some("marked"), "11");
    run(Some("not-declared"), "12");
    run(None, "13");
    let marked_shell = Command::new("/bin/sh")
        .args(["-c", "sleep 0.3; exit 15"])
        .env("AGENT_SENSOR_AGENT", "marked")
        .status()
        .unwrap();
    assert_eq!(marked_shell.code(), Some(15));
    // In the owner's cgroup, a marker naming another agent is a forgery: the cgroup decides.
    let script = format!(
        "echo $$ > {cg}/cgroup.procs && exec env AGENT_SENSOR_AGENT=marked {HELPER} exit 14"
    );
    assert_eq!(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .code(),
        Some(14)
    );
    sensor.wait_for("the exec in the cgroup", |r| {
        action(r) == "exec" && r["process"]["args"][2] == "14"
    });
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let exec_with = |code: &str| {
        done.records.iter().find(|r| {
            action(r) == "exec"
                && r["process"]["executable"] == HELPER
                && r["process"]["args"][2] == code
        })
    };
    let marked = exec_with("11").expect("the marked process");
    assert_eq!(agent_of(marked), "marked");
    assert_eq!(marked["identity"]["attribution"]["method"], "environment");
    assert_eq!(marked["identity"]["attribution"]["trust"], "weak");
    assert!(
        exec_with("12").is_none(),
        "a marker naming no declared agent attributes nothing"
    );
    assert!(exec_with("13").is_none(), "an unmarked process is nobody's");
    let forged = exec_with("14").unwrap();
    assert_eq!(agent_of(forged), "cg-owner");
    assert_eq!(forged["identity"]["attribution"]["method"], "cgroup");
    // Once marked, the kernel map holds it: a longer-lived marked shell's child and exit follow.
    let shell = done
        .records
        .iter()
        .find(|r| action(r) == "exec" && r["process"]["args"][2] == "sleep 0.3; exit 15")
        .expect("the marked shell");
    assert_eq!(agent_of(shell), "marked");
    let pid = pid_of(shell);
    assert!(
        done.records
            .iter()
            .any(|r| action(r) == "exit" && pid_of(r) == pid && agent_of(r) == "marked")
    );
    let child = done
        .records
        .iter()
        .find(|r| action(r) == "exec" && r["process"]["parent"]["pid"] == pid)
        .expect("the shell's sleep");
    // Inherited in the kernel, or (if it forked before the daemon saw the marker) by its own.
    assert_eq!(agent_of(child), "marked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_process_in_a_kubernetes_shaped_cgroup_carries_its_container_and_pod() {
    // The cgroup a kubelet with the cgroupfs driver makes for a container (a real cgroup; the
    // runtime itself is not involved here).
    let pod = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let id = format!("{:0>64}", format!("{:x}", std::process::id()));
    let root = cgroup2_root();
    let levels = [
        format!("{root}/kubepods"),
        format!("{root}/kubepods/burstable"),
        format!("{root}/kubepods/burstable/pod{pod}"),
    ];
    // Remove afterwards only what this test made.
    let made: Vec<String> = levels
        .iter()
        .filter(|d| !Path::new(d).exists())
        .cloned()
        .collect();
    let cg = format!("{}/{id}", levels[2]);
    std::fs::create_dir_all(&cg).unwrap();
    let dir = scratch_dir("pod");
    std::fs::write(
        dir.join("agents.yaml"),
        "agents:\n  - id: pod-agent\n    selectors: [{cgroup: /kubepods/**}]\n",
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", dir.join("agents.yaml").to_str().unwrap()]);
    let script = format!("echo $$ > {cg}/cgroup.procs && exec {HELPER} exit 21");
    assert_eq!(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .code(),
        Some(21)
    );
    let exec = sensor.wait_for("the exec in the pod", |r| {
        action(r) == "exec" && r["process"]["args"][2] == "21"
    });
    sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    for dir in made.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    assert_eq!(agent_of(&exec), "pod-agent");
    assert_eq!(exec["container"]["id"], id.as_str());
    assert_eq!(exec["container"]["runtime"], "kubernetes");
    assert_eq!(exec["orchestrator"]["type"], "kubernetes");
    assert_eq!(exec["orchestrator"]["resource"]["type"], "pod");
    assert_eq!(exec["orchestrator"]["resource"]["id"], pod);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn argv_selectors_attribute_the_process_its_children_and_a_delegation_hop() {
    let dir = scratch_dir("argv");
    let agent_bin = copy_exe(HELPER, &dir.join("agent-bin"));
    let parent_bin = copy_exe(HELPER, &dir.join("parent-bin"));
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:
  - id: parent
    selectors: [{{executable: {parent_bin}}}]
  - id: argv-agent
    selectors:
      - {{executable: {agent_bin}, argv: '* spawn 3 /bin/true'}}
"
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--identities", dir.join("agents.yaml").to_str().unwrap()]);
    // Matching argv: the process and every child it starts at once, before any decision.
    let status = Command::new(&agent_bin)
        .args(["spawn", "3", "/bin/true"])
        .status()
        .unwrap();
    assert!(status.success());
    // The same program with other argv is nobody's.
    let status = Command::new(&agent_bin)
        .args(["spawn", "1", "/bin/true"])
        .status()
        .unwrap();
    assert!(status.success());
    // Another agent's process becoming this one (exec): a delegation hop.
    let status = Command::new(&parent_bin)
        .args(["exec", &agent_bin, "spawn", "3", "/bin/true"])
        .status()
        .unwrap();
    assert!(status.success());
    sensor.wait_for_count("the six true execs", 6, |r| {
        action(r) == "exec" && r["process"]["executable"] == "/usr/bin/true"
    });
    let records = sensor.stop().records;
    let _ = std::fs::remove_dir_all(&dir);

    let agent_execs = execs_of(&records, &agent_bin);
    assert_eq!(agent_execs.len(), 2, "{agent_execs:#?}");
    for r in &agent_execs {
        assert_eq!(r["process"]["args"][2], "3", "{r}");
        assert_eq!(agent_of(r), "argv-agent", "{r}");
        assert_eq!(r["identity"]["attribution"]["method"], "argv", "{r}");
        assert_eq!(r["identity"]["attribution"]["trust"], "medium", "{r}");
    }
    let direct = agent_execs[0];
    assert!(
        direct["identity"]
            .get("delegation")
            .is_none_or(|d| d.as_array().is_some_and(Vec::is_empty)),
        "{direct}"
    );
    let hop = agent_execs[1];
    assert_eq!(hop["identity"]["delegation"][0]["from"], "parent", "{hop}");
    assert_eq!(
        hop["identity"]["delegation"][0]["to"], "argv-agent",
        "{hop}"
    );
    // Every child of the two matching runs, and nothing of the other one.
    let trues: Vec<&Value> = execs_of(&records, "/usr/bin/true");
    assert_eq!(trues.len(), 6, "{trues:#?}");
    for r in &trues {
        assert_eq!(agent_of(r), "argv-agent", "{r}");
        assert_eq!(r["identity"]["attribution"]["inherited"], true, "{r}");
    }
    assert!(
        !records.iter().any(|r| r["process"]["args"][1] == "1"
            && r["process"]["args"][0]
                .as_str()
                .is_some_and(|a| a.ends_with("agent-bin"))),
        "the non-matching run is absent"
    );
}

#[test]
fn a_process_moved_into_an_agent_cgroup_is_the_agents_before_it_execs() {
    let dir = scratch_dir("migration");
    let root = cgroup2_root();
    let cg_name = format!("agent-sensor-moved-{}", std::process::id());
    let cg = format!("{root}/{cg_name}");
    let other = format!("{root}/agent-sensor-not-an-agent-{}", std::process::id());
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!("agents:\n  - id: moved-agent\n    selectors: [{{cgroup: /{cg_name}}}]\n"),
    )
    .unwrap();
    let secret = dir.join("secret.txt");
    let bystander_file = dir.join("bystander.txt");
    std::fs::write(&secret, "s\n").unwrap();
    std::fs::write(&bystander_file, "b\n").unwrap();
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    // The shell moves itself (a write to cgroup.procs: no fork, no exec), then reads a file with
    // a builtin redirection and forks a subshell, neither of which execs.
    let moved = |cgroup: &str, file: &Path| {
        let script = format!(
            "echo $$ > {cgroup}/cgroup.procs && read line < {} && ( : ) && echo $$",
            file.display()
        );
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let bystander = moved(&other, &bystander_file);
    let agent = moved(&cg, &secret);
    let read = sensor.wait_for("the moved shell's read", |r| {
        action(r) == "open" && r["file"]["path"] == secret.to_str().unwrap()
    });
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir(&other);

    assert_eq!(pid_of(&read), agent);
    assert_eq!(agent_of(&read), "moved-agent");
    assert_eq!(read["identity"]["attribution"]["method"], "cgroup");
    assert!(
        done.records.iter().any(|r| action(r) == "fork"
            && r["process"]["parent"]["pid"] == agent
            && agent_of(r) == "moved-agent"),
        "the moved shell's fork is the agent's"
    );
    // A process moved into a cgroup of no agent stays unobserved.
    assert!(
        !done.records.iter().any(
            |r| pid_of(r) == bystander || r["file"]["path"] == bystander_file.to_str().unwrap()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}
