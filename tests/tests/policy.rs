//! Per-agent policy, end to end: real agent processes (by executable, by cgroup, registered)
//! open files, connect and exec, allowed and not, under rules in audit and observe mode; a
//! registration for a task outside `allowed_tasks` in audit and enforce mode. Every decision
//! must be the one the manifest says, linked to its action's record; bystanders get none.
use std::{path::Path, process::Command};

use sensor_tests::{Sensor, Value, action, cgroup2_root, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

fn agent_of(r: &Value) -> &str {
    r["identity"]["agent"]["id"].as_str().unwrap_or("")
}

/// The rules both agents get, in `mode`: `dir/allowed/**` readable (and what a program
/// reads to start), nothing writable, only `allowed_port` on loopback, only `exe` runs.
fn rules(mode: &str, dir: &Path, allowed_port: u16, exe: &str) -> String {
    let d = dir.display();
    format!(
        "    policy:\n      version: \"{mode}-1\"\n      egress:\n        mode: {mode}\n        allow: [{{cidr: 127.0.0.1, ports: [{allowed_port}]}}]\n      files:\n        mode: {mode}\n        read: {{paths: [\"{d}/allowed/**\", \"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/ld.so.cache\", \"/proc/**\", \"/sys/**\", \"/dev/**\"]}}\n      executables:\n        mode: {mode}\n        allow: [\"{exe}\"]\n"
    )
}

/// The agent `exe` (a copy of the helper) doing each action once: open an allowed file and a
/// forbidden one, connect to the allowed port and a forbidden one, then exec `/bin/true`.
fn act(exe: &str, dir: &Path, allowed_port: u16, forbidden_port: u16) {
    let allowed = dir.join("allowed/notes.txt");
    let secret = dir.join("secret.txt");
    for args in [
        vec!["open".to_owned(), allowed.display().to_string()],
        vec!["open".to_owned(), secret.display().to_string()],
        vec!["connect".to_owned(), format!("127.0.0.1:{allowed_port}")],
        vec!["connect".to_owned(), format!("127.0.0.1:{forbidden_port}")],
        vec!["exec".to_owned(), "/bin/true".to_owned()],
    ] {
        let out = Command::new(exe).args(&args).output().unwrap();
        assert!(out.status.success(), "{exe} {args:?}: {out:?}");
    }
}

#[test]
fn audit_records_each_violation_linked_observe_and_bystanders_get_none() {
    let dir = scratch_dir("policy-audit");
    std::fs::create_dir_all(dir.join("allowed")).unwrap();
    std::fs::write(dir.join("allowed/notes.txt"), "ok").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();
    let audited = dir.join("audited-agent").display().to_string();
    let observed = dir.join("observed-agent").display().to_string();
    std::fs::copy(HELPER, &audited).unwrap();
    std::fs::copy(HELPER, &observed).unwrap();
    let allowed_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed_listener.local_addr().unwrap().port();
    let forbidden_port = forbidden_listener.local_addr().unwrap().port();
    let cg_name = format!("agent-sensor-policy-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let socket = dir.join("control.sock");
    let manifest = format!(
        "agents:\n  - id: audited\n    selectors: [{{executable: {audited}}}]\n{}  - id: observed\n    selectors: [{{executable: {observed}}}]\n{}  - id: in-cgroup\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      executables: {{mode: audit, allow: [/usr/bin/sh, /bin/sh, /usr/bin/dash, /bin/dash]}}\n  - id: lenient\n    allowed_tasks: [review]\n    policy: {{tasks: {{mode: audit}}}}\n  - id: strict\n    allowed_tasks: [review]\n",
        rules("audit", &dir, allowed_port, &audited),
        rules("observe", &dir, allowed_port, &observed),
    );
    std::fs::write(dir.join("agents.yaml"), manifest).unwrap();
    std::fs::write(
        dir.join("sensor.toml"),
        format!(
            "[observe]\nall_processes = true\n[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n[rules]\nfiles = [\"decisions.yml\"]\n",
            socket.display()
        ),
    )
    .unwrap();
    // Native rules over the decisions themselves.
    std::fs::write(
        dir.join("decisions.yml"),
        "rules:
  - id: egress-violation
    title: Egress outside the policy
    condition: event.action = policy_decision and policy.rule = egress and policy.outcome = violation and policy.mode = audit
    output: '%identity.agent.id reached %policy.target'
  - id: audited-connect
    title: A rule on the action itself (its alert is sealed between it and its decision)
    condition: event.action = connect and identity.agent.id = audited
  - id: refused-task
    title: A task refused
    condition: event.action = policy_decision and policy.rule = tasks and policy.outcome = denied
",
    )
    .unwrap();
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(dir.join("agents.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(
            "policy audit-1: tasks enforce, egress audit (1 allowed), files audit (8 read, 0 write), executables audit (1 allowed)"
        ),
        "{check:?}"
    );
    let config = dir.join("sensor.toml");
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);

    act(&audited, &dir, allowed_port, forbidden_port);
    act(&observed, &dir, allowed_port, forbidden_port);
    act(HELPER, &dir, allowed_port, forbidden_port);
    // A shell in the agent's cgroup runs a program outside its allowed executables.
    let script = format!("echo $$ > {cg}/cgroup.procs && exec /bin/sh -c '/bin/true in-cgroup'");
    assert!(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    // Registrations for a task outside allowed_tasks: granted under audit, refused under
    // enforce (the default).
    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let register = |agent: &str| {
        Command::new(sensor_binary())
            .args(["register", "--socket", socket.to_str().unwrap()])
            .args([
                "--pid",
                &sleeper.id().to_string(),
                "--agent",
                agent,
                "--task",
                "deploy",
            ])
            .output()
            .unwrap()
    };
    assert!(register("lenient").status.success());
    let refused = register("strict");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stdout)
            .contains("not among agent \\\"strict\\\"'s allowed tasks"),
        "{refused:?}"
    );
    sensor.wait_for("the strict registration's decision", |r| {
        r["policy"]["agent"] == "strict"
    });
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    let records = &done.records;

    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .collect();
    // Each decision follows its action's record at once (the alerts the action raised come
    // later) and cites its sequence and hash.
    let mut alerted = 0;
    for d in &decisions {
        let p = &d["policy"];
        let seq = p["action"]["sequence"].as_u64().unwrap();
        let at = d["chain"]["sequence"].as_u64().unwrap();
        assert_eq!(at, seq + 1, "{d}");
        alerted += records
            .iter()
            .filter(|r| action(r) == "alert" && r["alert"]["trigger"]["sequence"][0] == seq)
            .inspect(|a| assert!(a["chain"]["sequence"].as_u64().unwrap() > at, "{a}"))
            .count();
        let acted = records
            .iter()
            .find(|r| r["chain"]["sequence"].as_u64() == Some(seq))
            .unwrap();
        assert_eq!(acted["chain"]["hash"], p["action"]["hash"]);
        assert_eq!(action(acted), p["action"]["name"].as_str().unwrap());
        if action(acted) != "agent_registration" {
            assert_eq!(agent_of(acted), p["agent"].as_str().unwrap(), "{d}");
            assert_eq!(d["identity"], acted["identity"]);
        }
        assert_eq!(d["event"]["category"][0], "intrusion_detection");
    }
    assert!(alerted > 0, "a rule fired on an action that was decided on");
    let summary: Vec<(String, String, String, String)> = decisions
        .iter()
        .map(|d| {
            let p = &d["policy"];
            let s = |k: &str| p[k].as_str().unwrap_or("").to_owned();
            (s("agent"), s("rule"), s("target"), s("outcome"))
        })
        .collect();
    let has = |agent: &str, rule: &str, target: &str, outcome: &str| {
        summary
            .iter()
            .any(|(a, r, t, o)| a == agent && r == rule && t == target && o == outcome)
    };
    let secret = dir.join("secret.txt").display().to_string();
    let allowed = dir.join("allowed/notes.txt").display().to_string();
    assert!(
        has("audited", "files.read", &secret, "violation"),
        "{summary:#?}"
    );
    assert!(
        has(
            "audited",
            "egress",
            &format!("127.0.0.1:{forbidden_port}"),
            "violation"
        ),
        "{summary:#?}"
    );
    assert!(
        has("audited", "executables", "/usr/bin/true", "violation"),
        "{summary:#?}"
    );
    assert!(
        has("in-cgroup", "executables", "/usr/bin/true", "violation"),
        "{summary:#?}"
    );
    assert!(
        has("lenient", "tasks", "deploy", "violation"),
        "{summary:#?}"
    );
    assert!(has("strict", "tasks", "deploy", "denied"), "{summary:#?}");
    // Nothing allowed was decided against; observe mode and bystanders decide nothing.
    for (agent, rule, target, _) in &summary {
        assert!(
            ["audited", "in-cgroup", "lenient", "strict"].contains(&agent.as_str()),
            "{agent} {rule} {target}"
        );
        assert_ne!(target, &allowed);
        assert_ne!(target, &format!("127.0.0.1:{allowed_port}"));
        assert_ne!(target, &audited);
    }
    let audited_rules = decisions
        .iter()
        .filter(|d| d["policy"]["agent"] == "audited")
        .map(|d| (d["policy"]["mode"].clone(), d["policy"]["version"].clone()));
    for (mode, version) in audited_rules {
        assert_eq!(
            (mode.as_str(), version.as_str()),
            (Some("audit"), Some("audit-1"))
        );
    }
    // The observed agent and the bystander did the same things, on the record.
    for who in [&observed, HELPER] {
        assert!(
            records.iter().any(|r| action(r) == "open"
                && r["file"]["path"] == secret.as_str()
                && r["process"]["executable"] == who),
            "{who}'s open of the secret is on the record"
        );
    }
    // The native rules fired on the decisions, once each, naming what was decided.
    let alerts = |id: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| action(r) == "alert" && r["alert"]["rule"]["id"] == id)
            .collect()
    };
    let egress = alerts("egress-violation");
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!(
        egress[0]["alert"]["message"],
        format!("audited reached 127.0.0.1:{forbidden_port}")
    );
    let refused = alerts("refused-task");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let trigger = refused[0]["alert"]["trigger"]["sequence"][0].as_u64();
    let decision = records
        .iter()
        .find(|r| r["chain"]["sequence"].as_u64() == trigger)
        .unwrap();
    assert_eq!(decision["policy"]["agent"], "strict", "{decision}");
    let granted = records
        .iter()
        .find(|r| action(r) == "agent_registration" && r["registration"]["agent"] == "lenient")
        .unwrap();
    assert_eq!(granted["registration"]["granted"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_exception_lets_the_action_through_until_it_ends_and_says_so() {
    let dir = scratch_dir("policy-exception");
    let exe = dir.join("excepted-agent").display().to_string();
    std::fs::copy(HELPER, &exe).unwrap();
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = format!("127.0.0.1:{}", forbidden.local_addr().unwrap().port());
    let socket = dir.join("control.sock");
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: strict\n    allowed_tasks: [review]\n  - id: excepted\n    selectors: [{{executable: {exe}}}]\n    policy:\n      egress: {{mode: audit, allow: [{{cidr: 192.0.2.1}}]}}\n"
        ),
    )
    .unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n[rules]\nfiles = [\"overrides.yml\"]\n",
            socket.display()
        ),
    )
    .unwrap();
    // Native rules over the overrides: each exception granted, each action allowed under one.
    std::fs::write(
        dir.join("overrides.yml"),
        "rules:
  - id: override-granted
    title: An operator suspended a rule
    condition: event.action = policy_exception and exception.peer_uid = 0
    output: '%exception.author suspended %exception.rule for %exception.agent until %exception.until: %exception.reason'
  - id: allowed-under-override
    title: Allowed under an exception
    condition: event.action = policy_decision and policy.exception.author = alice
    output: '%policy.rule %policy.target by exception %policy.exception.sequence until %policy.exception.until'
",
    )
    .unwrap();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let control = |args: &[&str]| {
        let out = Command::new(sensor_binary())
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let except = |agent: &str, rule: &str, seconds: &str| {
        control(&[
            "except",
            "--agent",
            agent,
            "--rule",
            rule,
            "--seconds",
            seconds,
            "--author",
            "alice",
            "--reason",
            "INC-42",
        ])
    };
    // Refused requests say why.
    for (agent, rule, seconds, why) in [
        (
            "nobody",
            "tasks",
            "5",
            "no agent \\\"nobody\\\" is declared",
        ),
        ("strict", "files", "5", "rule \\\"files\\\" must be one of"),
        ("strict", "tasks", "0", "seconds must be 1 to 604800"),
    ] {
        let (ok, reply) = except(agent, rule, seconds);
        assert!(!ok && reply.contains(why), "{reply}");
    }
    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let register = || {
        control(&[
            "register", "--pid", &pid, "--agent", "strict", "--task", "deploy",
        ])
        .0
    };
    let connect = || {
        let out = Command::new(&exe)
            .args(["connect", &forbidden])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    // Two exceptions of 3 s; within them the registration goes through and the connect is
    // allowed, after them both are decided against again.
    let (ok, granted) = except("strict", "tasks", "3");
    assert!(ok, "{granted}");
    let (ok, egress) = except("excepted", "egress", "3");
    assert!(ok, "{egress}");
    let granted: Value = serde_json::from_str(&granted).unwrap();
    let egress: Value = serde_json::from_str(&egress).unwrap();
    assert!(register(), "the exception lets the registration through");
    connect();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(!register(), "the exception ended");
    connect();
    sensor.wait_for_count("four decisions", 4, |r| action(r) == "policy_decision");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let done = sensor.stop();

    let exceptions: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "policy_exception")
        .collect();
    assert_eq!(exceptions.len(), 2);
    assert_eq!(exceptions[0]["chain"]["sequence"], granted["sequence"]);
    assert_eq!(exceptions[0]["chain"]["hash"], granted["hash"]);
    assert_eq!(exceptions[0]["exception"]["agent"], "strict");
    assert_eq!(exceptions[0]["exception"]["rule"], "tasks");
    assert_eq!(exceptions[0]["exception"]["author"], "alice");
    assert_eq!(exceptions[0]["exception"]["reason"], "INC-42");
    assert_eq!(exceptions[0]["exception"]["peer_uid"], 0);
    assert_eq!(exceptions[0]["exception"]["until"], granted["until"]);
    let decisions: Vec<(&str, &str, &Value)> = done
        .records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .map(|r| {
            let p = &r["policy"];
            (
                p["rule"].as_str().unwrap(),
                p["outcome"].as_str().unwrap(),
                &p["exception"],
            )
        })
        .collect();
    assert_eq!(decisions.len(), 4, "{decisions:#?}");
    assert_eq!(decisions[0].0, "tasks");
    assert_eq!(decisions[0].1, "allowed");
    assert_eq!(decisions[0].2["sequence"], granted["sequence"]);
    assert_eq!(decisions[0].2["author"], "alice");
    assert_eq!(decisions[1].0, "egress");
    assert_eq!(decisions[1].1, "allowed");
    assert_eq!(decisions[1].2["sequence"], egress["sequence"]);
    assert_eq!((decisions[2].0, decisions[2].1), ("tasks", "denied"));
    assert!(decisions[2].2.is_null());
    assert_eq!((decisions[3].0, decisions[3].1), ("egress", "violation"));
    assert!(decisions[3].2.is_null());
    // The rules fired on both grants and on the two decisions made under them, not on the
    // two made after them.
    let alerts = |id: &str| -> Vec<(&Value, &Value)> {
        done.records
            .iter()
            .filter(|r| action(r) == "alert" && r["alert"]["rule"]["id"] == id)
            .map(|r| {
                (
                    &r["alert"]["message"],
                    &r["alert"]["trigger"]["sequence"][0],
                )
            })
            .collect()
    };
    let until = |g: &Value| g["until"].as_str().unwrap().to_owned();
    assert_eq!(
        alerts("override-granted"),
        [
            (
                &Value::from(format!(
                    "alice suspended tasks for strict until {}: INC-42",
                    until(&granted)
                )),
                &granted["sequence"]
            ),
            (
                &Value::from(format!(
                    "alice suspended egress for excepted until {}: INC-42",
                    until(&egress)
                )),
                &egress["sequence"]
            ),
        ]
    );
    let under: Vec<String> = alerts("allowed-under-override")
        .into_iter()
        .map(|(m, _)| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        under,
        [
            format!(
                "tasks deploy by exception {} until {}",
                granted["sequence"],
                until(&granted)
            ),
            format!(
                "egress {forbidden} by exception {} until {}",
                egress["sequence"],
                until(&egress)
            ),
        ]
    );
    let refused = done
        .records
        .iter()
        .filter(|r| action(r) == "agent_registration" && r["registration"]["op"] == "except")
        .count();
    assert_eq!(refused, 3, "each refused request is on the record");
    let _ = std::fs::remove_dir_all(&dir);
}
