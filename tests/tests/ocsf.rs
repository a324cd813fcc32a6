//! `--format ocsf`: a real run's every line — process, file, network and DNS activity, the
//! sensor's lifecycle, checkpoints, an annotation and MCP calls over stdio — validates against the real OCSF 1.8.0
//! schema (the schema.ocsf.io export packaged by PyPI's `ocsf-json-schema`, checked with
//! Python's `jsonschema`; `cargo xtask setup` installs both in a virtual environment), a broken
//! event is refused, and `agent-sensor verify` verifies the OCSF trail and finds a change in it.
//! An exec refused by BPF LSM (`exec_denied`), which this machine kind cannot make, is forged in
//! the kernel's record layout and run through the real pipeline into OCSF, then validated.
use std::{path::Path, process::Command};

use sensor_tests::{
    AgentRun, Launch, Value, dns_exchange, ecs_part, file_and_network_activity, sensor_binary,
    validate_ocsf as validate,
};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

/// The sensor's own name for what an event records.
fn action(e: &Value) -> &str {
    sensor_tests::action(ecs_part(e))
}

#[test]
fn a_real_runs_ocsf_events_validate_against_the_ocsf_schema_and_verify() {
    let run = AgentRun::new(
        "ocsf",
        &[
            ("id", "ocsf-agent"),
            ("name", "OCSF test agent"),
            ("owners", "{business: a@example.com}"),
            ("capture", "{stdio: true}"),
        ],
    );
    let dir = &run.dir;
    let trail = dir.join("events.jsonl");
    let sensor = Launch::new()
        .config(&run.config)
        .ocsf()
        .output(&trail)
        .start();

    // An agent's process: exec, fork, exit with the agent as actor.
    run.in_agent_cgroup(&format!("{HELPER} fork"));
    // Files (open, mkdir, rename, unlink, ...) and network (a TCP connect and a UDP send).
    file_and_network_activity(HELPER, &dir.join("work"));
    // A listen that names no address (a Unix socket): the socket itself is the endpoint.
    let listen = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)",
        ])
        .arg(dir.join("listen.sock"))
        .status()
        .expect("run python3");
    assert!(listen.success(), "{listen:?}");
    // DNS: a query and its answer, in a namespace with a DNS server on its loopback.
    let dns = dns_exchange(HELPER);
    assert!(dns.status.success(), "{dns:?}");
    // An operator's annotation (signed at once: a checkpoint follows).
    let out = run.control(&[
        "annotate",
        "--kind",
        "note",
        "--author",
        "test",
        "--text",
        "ocsf \"check\"\n",
    ]);
    assert!(out.status.success(), "{out:?}");
    // MCP calls over stdio: the mcp SDK's client and server (tests/mcp), as API Activity.
    let note = dir.join("note.txt");
    std::fs::write(&note, "a note\n").unwrap();
    run.in_agent_cgroup(&format!(
        "MCP_TEST_SECRET=not-a-secret {} {}/mcp/client.py {} >/dev/null",
        sensor_tests::ocsf_python().display(),
        env!("CARGO_MANIFEST_DIR"),
        note.display()
    ));
    sensor.wait_for("the DNS answer", |e| {
        e["class_uid"] == 4003 && e["activity_id"] == 2
    });
    sensor.wait_for("the MCP tool calls", |e| {
        e["class_uid"] == 6003 && e["api"]["operation"] == "tools/call"
    });
    let events = sensor.stop().records;

    // Every kind of event is there, in its class.
    let has = |class: u64, activity: u64, act: &str| {
        events
            .iter()
            .any(|e| e["class_uid"] == class && e["activity_id"] == activity && action(e) == act)
    };
    for (class, activity, act) in [
        (6002, 3, "sensor_start"),
        (1007, 99, "snapshot"),
        (1007, 1, "exec"),
        (1007, 1, "fork"),
        (1007, 2, "exit"),
        (1001, 14, "open"),
        (1001, 1, "mkdir"),
        (1001, 5, "rename"),
        (1001, 4, "unlink"),
        (4001, 1, "connect"),
        (4001, 6, "send"),
        (4001, 7, "listen"),
        (4003, 1, "send"),
        (4003, 2, "receive"),
        (0, 99, "annotation"),
        (6003, 99, "mcp_call"),
        (6003, 2, "mcp_call"),
        (0, 99, "checkpoint"),
        (6002, 4, "sensor_stop"),
    ] {
        assert!(
            has(class, activity, act),
            "no {act} event as class {class} activity {activity}"
        );
    }
    // The agent is the actor of its process's events; the attribution stays with them.
    let agents: Vec<&Value> = events
        .iter()
        .filter(|e| e["actor"]["app_uid"] == "ocsf-agent")
        .collect();
    assert!(
        agents
            .iter()
            .any(|e| e["class_uid"] == 1007 && action(e) == "exec"),
        "no exec with the agent as actor"
    );
    let exec = agents.iter().find(|e| action(e) == "exec").unwrap();
    assert_eq!(exec["actor"]["app_name"], "OCSF test agent");
    assert_eq!(
        exec["unmapped"]["agent_sensor"]["identity"]["agent"]["owners"]["business"],
        "a@example.com"
    );
    // An MCP tool call: the method the API's operation, the server its service, the agent's
    // process the actor; the arguments and result stay in `unmapped`.
    let call = events
        .iter()
        .find(|e| {
            e["class_uid"] == 6003
                && e["api"]["request"]["uid"].is_string()
                && e["activity_name"] == "Tool Call"
                && e["unmapped"]["agent_sensor"]["mcp"]["tool"] == "read_note"
        })
        .expect("the read_note call");
    assert_eq!(call["api"]["operation"], "tools/call");
    assert_eq!(call["api"]["service"]["name"], "notes-server");
    assert_eq!(call["api"]["service"]["version"], "3.1.4");
    assert_eq!(call["actor"]["app_uid"], "ocsf-agent");
    assert_eq!(call["type_uid"], 600_399);
    assert_eq!(call["status_id"], 1);
    let query = events
        .iter()
        .find(|e| e["class_uid"] == 4003 && e["activity_id"] == 1)
        .unwrap();
    assert_eq!(query["query"]["hostname"], "agent-test.example");
    let answer = events
        .iter()
        .find(|e| e["class_uid"] == 4003 && e["activity_id"] == 2)
        .unwrap();
    assert_eq!(answer["answers"][0]["rdata"], "10.1.2.3");
    assert_eq!(answer["rcode_id"], 0);
    // The chain is in every event, inside `unmapped` (OCSF allows no extra top-level field).
    for e in &events {
        assert!(e.get("chain").is_none(), "{e}");
        assert!(e["unmapped"]["chain"]["hash"].is_string(), "{e}");
    }

    // Every line validates against the real OCSF schema.
    let complaints = validate(&trail);
    assert!(
        complaints.is_empty(),
        "events that break the OCSF schema:\n{}",
        complaints.join("\n")
    );

    // The verifier verifies the OCSF trail, signatures included...
    let verify = |path: &Path| {
        Command::new(sensor_binary())
            .args(["verify", "--key"])
            .arg(dir.join("keys/sensor.pub"))
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&trail);
    assert!(
        out.status.success(),
        "the OCSF trail does not verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ... and finds a change in it.
    let text = std::fs::read_to_string(&trail).unwrap();
    let changed = dir.join("changed.jsonl");
    std::fs::write(
        &changed,
        text.replacen("\"agent-test.example\"", "\"agent-test.exampl3\"", 1),
    )
    .unwrap();
    let out = verify(&changed);
    assert!(
        !out.status.success(),
        "a changed OCSF event went unnoticed: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The validator refuses what OCSF does not allow: a top-level field OCSF does not know,
    // an activity the class does not have, a missing required object, a wrong type.
    let exec = (*exec).clone();
    let mut unknown = exec.clone();
    unknown["chain"] = exec["unmapped"]["chain"].clone();
    let mut activity = exec.clone();
    activity["activity_id"] = 42.into();
    let mut missing = exec.clone();
    missing.as_object_mut().unwrap().remove("process");
    let mut wrong_type = exec;
    wrong_type["process"]["pid"] = "1".into();
    let broken = dir.join("broken.jsonl");
    sensor_tests::write_json_lines(&broken, &[unknown, activity, missing, wrong_type]);
    let complaints = validate(&broken);
    for line in 1..=4 {
        assert!(
            complaints
                .iter()
                .any(|c| c.starts_with(&format!("line {line}:"))),
            "line {line} was not refused: {complaints:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// An exec the kernel refused (BPF LSM; `enforce_lsm.rs` and the kernel matrix make real ones)
/// as the real pipeline writes it in OCSF: a Process Activity Launch that failed, with the
/// `security_control` profile's Denied / Blocked, the program the launch asked for, the
/// process that asked as the actor, followed by its policy decision; both validate.
#[test]
fn a_refused_exec_is_a_failed_process_launch_denied_and_blocked() {
    use agent_sensor::{
        config::{Format, Fsync, Output, OutputTarget},
        identity::manifest,
        pipeline::Pipeline,
        sink::Sink,
        source::{forge::Forge, replay},
    };
    use sensor_common::{TrackedProcess, method};

    let dir = sensor_tests::scratch_dir("ocsf-exec-denied");
    let trail = dir.join("events.jsonl");
    let yaml = "agents:\n  - id: lsm-agent\n    selectors: [{cgroup: /agents/lsm/**}]\n    policy:\n      executables: {mode: enforce, allow: [\"/usr/bin/*\"]}\n";
    let agents = manifest::parse(Path::new("agents.yaml"), yaml).expect("the manifest");
    let ctx = replay::context(agents).expect("a pipeline context");
    // Forged pids above any kernel's pid_max: /proc knows nothing of them.
    let mut forge = Forge::new(agent_sensor::enrich::clock::boottime_ns()).first_pid(5_000_000);
    let agent = TrackedProcess {
        agent: 1,
        method: method::CGROUP,
        ..Default::default()
    };
    let p = forge.process(None, agent);
    forge.exec_denied(p, b"/opt/forbidden/prog");
    let (batches, _) = forge.finish();
    let output = Output {
        target: OutputTarget::File(trail.clone()),
        fsync: Fsync::Never,
        ..Output::default()
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let sink = Sink::open(&output).map_err(std::io::Error::other)?;
            let mut pipeline = Pipeline::new(ctx, sink, 0);
            pipeline.set_format(Format::Ocsf);
            pipeline.start(&[], false).await?;
            replay::replay(pipeline, batches).await
        })
        .expect("the replay");

    let events: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("the trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let denied = events
        .iter()
        .find(|e| action(e) == "exec_denied")
        .unwrap_or_else(|| panic!("no exec_denied event: {events:#?}"));
    assert_eq!(
        (&denied["class_uid"], &denied["activity_id"]),
        (&1007.into(), &1.into())
    );
    assert_eq!(denied["type_uid"], 100_701);
    assert_eq!(denied["launch_type_id"], 3);
    assert_eq!(
        (&denied["status_id"], &denied["status"]),
        (&2.into(), &"Failure".into())
    );
    assert_eq!(denied["status_code"], "EPERM");
    assert_eq!(
        (&denied["action_id"], &denied["action"]),
        (&2.into(), &"Denied".into())
    );
    assert_eq!(
        (&denied["disposition_id"], &denied["disposition"]),
        (&2.into(), &"Blocked".into())
    );
    assert!(
        denied["metadata"]["profiles"]
            .as_array()
            .unwrap()
            .contains(&"security_control".into()),
        "{denied}"
    );
    assert_eq!(denied["process"]["file"]["path"], "/opt/forbidden/prog");
    assert_eq!(denied["process"]["name"], "prog");
    assert_eq!(denied["process"]["pid"], p.tgid);
    assert_eq!(denied["actor"]["process"]["pid"], p.tgid);
    assert_eq!(denied["actor"]["app_uid"], "lsm-agent");
    assert!(denied.get("file").is_none(), "{denied}");
    let decision = events
        .iter()
        .find(|e| action(e) == "policy_decision")
        .expect("the decision");
    let policy = &ecs_part(decision)["policy"];
    assert_eq!(policy["outcome"], "denied", "{decision}");
    assert_eq!(policy["action"]["name"], "exec_denied", "{decision}");

    let complaints = validate(&trail);
    assert!(
        complaints.is_empty(),
        "events that break the OCSF schema:\n{}",
        complaints.join("\n")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An exec and an open the kernel killed their process for (kill mode, on this kernel), in
/// OCSF: the Process Activity Launch and the File System Activity Open carry the
/// `security_control` profile with action and disposition Other, named `Killed` (the action
/// happened, then the process was killed: neither Denied nor Blocked), with medium severity,
/// and the ECS flag is not repeated in `unmapped`; every event validates.
#[test]
fn a_killed_exec_and_open_are_marked_killed_by_the_security_control() {
    let run = AgentRun::new(
        "ocsf-killed",
        &[
            ("id", "ocsf-killer"),
            (
                "policy",
                "{executables: {mode: kill, allow: [\"/usr/bin/*\"]}, files: {mode: kill, read: {paths: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\"]}, write: {paths: [\"/dev/**\"]}}}",
            ),
        ],
    );
    let dir = &run.dir;
    let secret = dir.join("secret");
    std::fs::write(&secret, "SECRET\n").unwrap();
    let prog = dir.join("prog");
    std::fs::copy("/usr/bin/true", &prog).unwrap();
    let trail = dir.join("events.jsonl");
    // The cgroup exists before the sensor starts: a cgroup made while it runs is held until the
    // daemon has decided whose it is, and its processes are not stopped meanwhile.
    std::fs::create_dir_all(&run.cgroup).unwrap();
    let sensor = Launch::new()
        .config(&run.config)
        .ocsf()
        .output(&trail)
        .start();
    // Each in a child of the agent's shell, each killed (137); the shell goes on.
    run.in_agent_cgroup(&format!(
        "/usr/bin/cat {} >/dev/null 2>&1; test $? = 137 && {}; test $? = 137",
        secret.display(),
        prog.display()
    ));
    sensor.wait_for("the two decisions", |e| {
        action(e) == "policy_decision" && ecs_part(e)["policy"]["rule"] == "executables"
    });
    let events = sensor.stop().records;
    let killed: Vec<&Value> = events
        .iter()
        .filter(|e| e["disposition"] == "Killed")
        .collect();
    let kinds: Vec<(u64, &str)> = killed
        .iter()
        .map(|e| (e["class_uid"].as_u64().unwrap(), action(e)))
        .collect();
    assert_eq!(kinds, [(1001, "open"), (1007, "exec")], "{killed:#?}");
    for e in &killed {
        assert_eq!(e["action_id"], 99, "{e}");
        assert_eq!(e["action"], "Killed", "{e}");
        assert_eq!(e["disposition_id"], 99, "{e}");
        assert_eq!(e["severity_id"], 3, "{e}");
        assert!(
            e["metadata"]["profiles"]
                .as_array()
                .unwrap()
                .contains(&"security_control".into()),
            "{e}"
        );
        let rest = ecs_part(e);
        assert!(rest["file"].get("policy_killed").is_none(), "{e}");
        assert!(rest["process"].get("policy_killed").is_none(), "{e}");
    }
    assert_eq!(killed[0]["file"]["path"], secret.to_str().unwrap());
    assert_eq!(killed[1]["process"]["file"]["path"], prog.to_str().unwrap());
    // Nothing else is marked killed: the agent's allowed opens and execs are not.
    assert!(
        events
            .iter()
            .filter(|e| e["action_id"] == 99 && e["class_uid"] != 0)
            .count()
            == 2
    );
    let complaints = validate(&trail);
    assert!(complaints.is_empty(), "{complaints:#?}");
    let _ = std::fs::remove_dir_all(dir);
}
