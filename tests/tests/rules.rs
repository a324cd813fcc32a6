//! Detection rules end to end: the sensor runs with the SigmaHQ Linux rules of
//! `../shared/sigma` (process creation, file events, network connections), real processes in
//! an agent's cgroup do what some of those rules describe, and each alert comes out of the
//! running sensor attributed to the agent, naming the rule (id, title, author) and the record
//! that set it off by its sequence number; what the rules exclude (a read, a connection to
//! localhost) raises nothing. `agent-sensor rules test` then replays the run's own records
//! through the same rules and finds the same alerts.
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use sensor_tests::{
    AgentRun, Launch, Value, action, run_ok, scratch_dir, sensor_binary, validate_ocsf,
};

const AGENT: &str = "rules-agent";
const BASE64_DECODE: &str = "e2072cab-8c9a-459b-b63c-40ae79e27031";
const SHELL_FROM_TMP: &str = "2fade0b6-7423-4835-9d4f-335b39b83867";
const REVERSE_SHELL: &str = "83dcd9f6-9ca8-4af7-a16e-a1c7a6b51871";
/// OMIGOD SCX RunAsProvider ExecuteShellCommand and ExecuteScript (CurrentDirectory).
const OMIGOD_SHELL: &str = "21541900-27a9-4454-9c4c-3f0a4240344a";
const OMIGOD_SCRIPT: &str = "6eea1bf6-f8d2-488a-a742-e6ef6c1b67db";
const SCX_TMP: &str = "/var/opt/microsoft/scx/tmp";

/// The corpus's Linux rule folders of the three categories the sensor feeds.
fn sigma_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sigma/rules/linux");
    ["process_creation", "file_event", "network_connection"]
        .iter()
        .map(|d| root.join(d))
        .collect()
}

/// The id the corpus gives the rule in `file` (read from the file, not assumed).
fn rule_id(file: &str) -> String {
    let text = std::fs::read_to_string(sigma_dirs()[1].join(file)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .trim()
        .to_owned()
}

fn alerts_of<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| action(r) == "alert" && r["alert"]["rule"]["id"] == id)
        .collect()
}

fn by_sequence(records: &[Value], sequence: &Value) -> Value {
    records
        .iter()
        .find(|r| r["chain"]["sequence"] == *sequence)
        .cloned()
        .unwrap_or_else(|| panic!("no record with sequence {sequence}"))
}

#[test]
fn sigma_rules_fire_on_what_real_processes_do_and_name_the_agent() {
    let ebpf_backdoor = rule_id("file_event_lnx_triple_cross_rootkit_persistence.yml");
    let run = AgentRun::new(
        "rules",
        &[("id", AGENT), ("data_sensitivity", "restricted")],
    );
    let mut config = std::fs::read_to_string(&run.config).unwrap();
    let dirs: Vec<String> = sigma_dirs()
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    // Every rule of the three folders loads (`skip_unsupported` off: one that did not would
    // stop the start).
    let _ = write!(config, "[rules]\nfiles = [{}]\n", dirs.join(", "));
    std::fs::write(&run.config, config).unwrap();
    let sensor = Launch::new().config(&run.config).start();

    // Each step runs in a process of its own, started in the agent's cgroup (the script's
    // own shell joined the cgroup after its exec, so its attribution is a race).
    // /tmp/agent-sensor-rules-work-PID: a program under /tmp that starts a shell.
    let work = scratch_dir("rules-work");
    assert!(work.starts_with("/tmp/"));
    let timeout = work.join("timeout");
    std::fs::copy("/usr/bin/timeout", &timeout).unwrap();
    let backdoor = work.join("ebpfbackdoor");
    let localhost = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    // OMIGOD's shell: root, login uid 0, started in SCX's temporary directory (made here
    // when the host has none, and removed after).
    let scx = Path::new(SCX_TMP);
    let made_scx = !Path::new("/var/opt/microsoft").exists();
    std::fs::create_dir_all(scx).unwrap();
    run.in_agent_cgroup(&format!(
        "(echo 0 > /proc/self/loginuid && cd {SCX_TMP} \
           && /bin/sh -c 'true /etc/opt/microsoft/scx/conf/tmpdir/scx') \
         && echo aGVsbG8= | base64 -d >/dev/null \
         && {timeout} 5 /bin/sh -c true \
         && /bin/sh -c ': > {backdoor}' && cat {backdoor} \
         && bash -c 'exec 3<>/dev/tcp/127.0.0.1/{local}' \
         && bash -c 'exec 3<>/dev/tcp/127.0.0.2/{remote}'",
        timeout = timeout.display(),
        backdoor = backdoor.display(),
        local = localhost.local_addr().unwrap().port(),
        remote = elsewhere.local_addr().unwrap().port(),
    ));
    if made_scx {
        std::fs::remove_dir_all("/var/opt/microsoft").unwrap();
    }
    for id in [
        BASE64_DECODE,
        SHELL_FROM_TMP,
        &ebpf_backdoor,
        REVERSE_SHELL,
        OMIGOD_SHELL,
        OMIGOD_SCRIPT,
    ] {
        sensor.wait_for(&format!("an alert of rule {id}"), |r| {
            action(r) == "alert"
                && r["alert"]["rule"]["id"] == id
                && r["identity"]["agent"]["id"] == AGENT
        });
    }
    let done = sensor.stop();
    let records = &done.records;

    // The OMIGOD rules match on CurrentDirectory: the exec record's working directory.
    for id in [OMIGOD_SHELL, OMIGOD_SCRIPT] {
        let fired: Vec<&Value> = alerts_of(records, id)
            .into_iter()
            .filter(|a| a["identity"]["agent"]["id"] == AGENT)
            .collect();
        assert_eq!(fired.len(), 1, "{id}: {fired:?}");
        let trigger = by_sequence(records, &fired[0]["alert"]["trigger"]["sequence"][0]);
        assert_eq!(
            trigger["process"]["working_directory"], SCX_TMP,
            "{trigger}"
        );
        assert_eq!(trigger["process"]["login_user"]["id"], "0", "{trigger}");
        assert_eq!(fired[0]["process"]["working_directory"], SCX_TMP);
    }

    // Decode Base64 Encoded Text: the exec of base64 by the agent.
    let base64: Vec<&Value> = alerts_of(records, BASE64_DECODE)
        .into_iter()
        .filter(|a| a["identity"]["agent"]["id"] == AGENT)
        .collect();
    assert_eq!(base64.len(), 1, "{base64:?}");
    let alert = base64[0];
    assert_eq!(
        alert["alert"]["rule"]["title"],
        "Decode Base64 Encoded Text"
    );
    assert_eq!(
        alert["alert"]["rule"]["author"],
        "Daniil Yugoslavskiy, oscd.community"
    );
    assert_eq!(alert["alert"]["rule"]["ruleset"], "sigma");
    assert_eq!(alert["alert"]["severity"], "low");
    assert!(
        alert["alert"]["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("attack.t1027"))
    );
    assert_eq!(alert["event"]["kind"], "alert");
    assert_eq!(alert["identity"]["agent"]["data_sensitivity"], "restricted");
    let trigger = by_sequence(records, &alert["alert"]["trigger"]["sequence"][0]);
    assert_eq!(action(&trigger), "exec");
    assert_eq!(alert["alert"]["trigger"]["action"], "exec");
    assert!(
        trigger["process"]["executable"]
            .as_str()
            .unwrap()
            .ends_with("/base64")
    );
    assert_eq!(trigger["identity"]["agent"]["id"], AGENT);
    assert_eq!(alert["process"]["pid"], trigger["process"]["pid"]);
    assert_eq!(alert["@timestamp"], trigger["@timestamp"]);
    // Sealed after the record that set it off (the rules run over a few records at a time).
    assert!(alert["chain"]["sequence"].as_u64() > trigger["chain"]["sequence"].as_u64());
    assert!(
        alert["alert"]["message"]
            .as_str()
            .unwrap()
            .contains("base64 -d")
    );

    // Shell Execution Of Process Located In Tmp Directory: ParentImage is the copy of
    // timeout under /tmp that forked and exec'd the shell.
    let shell = alerts_of(records, SHELL_FROM_TMP);
    let shell: Vec<&&Value> = shell
        .iter()
        .filter(|a| a["identity"]["agent"]["id"] == AGENT)
        .collect();
    assert_eq!(shell.len(), 1, "{shell:?}");
    let trigger = by_sequence(records, &shell[0]["alert"]["trigger"]["sequence"][0]);
    assert_eq!(action(&trigger), "exec");
    assert!(["/dash", "/sh", "/bash"].iter().any(|s| {
        trigger["process"]["executable"]
            .as_str()
            .unwrap()
            .ends_with(s)
    }));

    // The eBPF backdoor file: created once (the alert), read once (nothing).
    let file = alerts_of(records, &ebpf_backdoor);
    assert_eq!(file.len(), 1, "a read must not feed file_event: {file:?}");
    let trigger = by_sequence(records, &file[0]["alert"]["trigger"]["sequence"][0]);
    assert_eq!(action(&trigger), "open");
    assert_eq!(trigger["file"]["path"], backdoor.to_str().unwrap());
    assert!(
        trigger["file"]["open"]["flags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("create"))
    );
    let reads = records.iter().filter(|r| {
        action(r) == "open"
            && r["file"]["path"] == backdoor.to_str().unwrap()
            && r["file"]["open"]["access"] == "read"
    });
    assert_eq!(reads.count(), 1, "cat read the file");

    // Linux Reverse Shell Indicator: bash to 127.0.0.2 fires, bash to 127.0.0.1 does not.
    let shells: Vec<Value> = alerts_of(records, REVERSE_SHELL)
        .into_iter()
        .filter(|a| a["identity"]["agent"]["id"] == AGENT)
        .map(|a| by_sequence(records, &a["alert"]["trigger"]["sequence"][0]))
        .collect();
    let peers: BTreeSet<&str> = shells
        .iter()
        .map(|t| t["destination"]["ip"].as_str().unwrap())
        .collect();
    assert_eq!(peers, BTreeSet::from(["127.0.0.2"]), "{shells:?}");
    assert!(shells.iter().all(|t| action(t) == "connect"));

    // `rules test` replays the run through the same rules: the same alerts, on the same
    // sequence numbers.
    let events = run.dir.join("events.jsonl");
    let mut text = String::new();
    for r in records {
        let _ = writeln!(text, "{r}");
    }
    std::fs::write(&events, text).unwrap();
    let mut cmd = Command::new(sensor_binary());
    cmd.args(["rules", "test", "--rules"]).args(sigma_dirs());
    let out = cmd.arg("--events").arg(&events).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let replayed: BTreeSet<(String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let a = &v["alert"];
            (
                a["rule"]["id"].as_str().unwrap().to_owned(),
                a["trigger"]["sequence"][0].as_u64().unwrap(),
            )
        })
        .collect();
    let live: BTreeSet<(String, u64)> = records
        .iter()
        .filter(|r| action(r) == "alert")
        .map(|a| {
            (
                a["alert"]["rule"]["id"].as_str().unwrap().to_owned(),
                a["alert"]["trigger"]["sequence"][0].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(replayed, live);
}

#[test]
fn rules_check_names_file_line_column_and_reason() {
    let dir = scratch_dir("rules-check");
    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "title: Encoded payload\nid: 0b0b0b0b-0000-4000-8000-000000000001\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        CommandLine|base64offset|contains: 'curl'\n    condition: selection\n",
    )
    .unwrap();
    let out = Command::new(sensor_binary())
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}:8:9: rule \"Encoded payload\"", bad.display())),
        "{stdout}"
    );
    assert!(stdout.contains("base64offset"), "{stdout}");

    let out = Command::new(sensor_binary())
        .args(["rules", "check"])
        .args(sigma_dirs())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("135 rule(s) loaded from 135 file(s), 0 not loaded"),
        "{stdout}"
    );
    assert!(out.status.success(), "{out:?}");
}

/// A rule of `Image|endswith: /<tool>` with its own id.
fn tool_rule(id: &str, tool: &str) -> String {
    format!(
        "title: {tool} ran\nid: {id}\nauthor: test\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        Image|endswith: '/{tool}'\n    condition: selection\nlevel: medium\n"
    )
}

#[test]
fn rules_reload_on_change_and_sighup_keeping_the_old_ones_when_the_new_are_bad() {
    const OLD: &str = "0b0b0b0b-0000-4000-8000-0000000000a1";
    const NEW: &str = "0b0b0b0b-0000-4000-8000-0000000000a2";
    let run = AgentRun::new("rules-reload", &[("id", AGENT)]);
    let rules = run.dir.join("rules.yml");
    std::fs::write(&rules, tool_rule(OLD, "base64")).unwrap();
    // Only the agent's processes: the count of its execs below is exact.
    std::fs::write(
        &run.config,
        format!(
            "[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n[rules]\nfiles = [\"rules.yml\"]\n",
            run.socket.display()
        ),
    )
    .unwrap();
    // The cgroup exists before the sensor starts, so it is matched at start: this test is
    // about reloads under load, not about deciding a cgroup made while the load runs.
    std::fs::create_dir_all(&run.cgroup).unwrap();
    let sensor = Launch::new().config(&run.config).start();
    let reloaded = |n: usize, outcome: &'static str| {
        sensor.wait_for_count(&format!("{n} rules_reloaded records"), n, |r| {
            action(r) == "rules_reloaded"
        })[n - 1]["event"]["outcome"]
            == outcome
    };

    // Load in the agent's cgroup all along, until every reload is done: execs of `true`,
    // each counted by the shell itself. Paced (a `sleep` between them), so that the count
    // below is about reloads and attribution, not about how fast a slow machine drains a
    // flood (a kernel loss would be a gap record, asserted absent too).
    let running = run.dir.join("load-running");
    let count = run.dir.join("load-count");
    std::fs::write(&running, "").unwrap();
    let mut load = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && n=0; while [ -e {} ]; do /bin/true; n=$((n+1)); sleep 0.002; done; echo $n > {}",
                run.cgroup,
                running.display(),
                count.display()
            ),
        ])
        .spawn()
        .unwrap();

    // A bad file: refused, the old rule stays in force.
    std::fs::write(&rules, "title: broken\ndetection: [unclosed\n").unwrap();
    assert!(reloaded(1, "failure"));
    run.in_agent_cgroup("echo aGk= | base64 -d >/dev/null");
    sensor.wait_for("the old rule, still in force", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == OLD
    });

    // A good file: the new rule from the next record on, the old one gone.
    std::fs::write(&rules, tool_rule(NEW, "tac")).unwrap();
    assert!(reloaded(2, "success"));
    run.in_agent_cgroup("echo x | tac >/dev/null && echo aGk= | base64 -d >/dev/null");
    sensor.wait_for("the new rule", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == NEW
    });

    // SIGHUP reads them again too.
    sensor.signal(libc::SIGHUP);
    assert!(reloaded(3, "success"));
    // However slow the machine, the load has made a good number of execs before it stops.
    sensor.wait_for_count("150 of the load's execs", 150, |r| {
        action(r) == "exec"
            && r["identity"]["agent"]["id"] == AGENT
            && r["process"]["executable"]
                .as_str()
                .is_some_and(|e| e.ends_with("/true"))
    });
    std::fs::remove_file(&running).unwrap();
    assert!(load.wait().unwrap().success());
    let made: usize = std::fs::read_to_string(&count)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let done = sensor.stop();
    let records = &done.records;
    let reloads: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "rules_reloaded")
        .collect();
    let reason = |i: usize| {
        reloads[i]["sensor"]["lifecycle"]["reason"]
            .as_str()
            .unwrap()
    };
    assert!(reason(0).starts_with("file change: "), "{}", reason(0));
    assert!(
        reason(0).contains("rules.yml"),
        "the refusal names the file: {}",
        reason(0)
    );
    assert_eq!(reason(1), "file change: 1 rules");
    assert_eq!(reason(2), "SIGHUP: 1 rules");
    // One alert of the old rule (before the good reload), none after it.
    assert_eq!(alerts_of(records, OLD).len(), 1);
    assert_eq!(alerts_of(records, NEW).len(), 1);
    // No event lost while rules were reloaded under load: no kernel loss, and every exec the
    // load made is recorded as the agent's.
    let gaps: Vec<&Value> = records.iter().filter(|r| action(r) == "gap").collect();
    assert!(gaps.is_empty(), "records were lost: {gaps:?}");
    let trues: Vec<&Value> = records
        .iter()
        .filter(|r| {
            action(r) == "exec"
                && r["process"]["executable"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("/true"))
        })
        .collect();
    let theirs = trues
        .iter()
        .filter(|r| r["identity"]["agent"]["id"] == AGENT)
        .count();
    assert!(made > 100, "the load ran through the reloads: {made} execs");
    assert_eq!(
        (theirs, trues.len()),
        (made, made),
        "execs of the load recorded as the agent's, and recorded at all; one not the agent's: {:?}",
        trues.iter().find(|r| r["identity"]["agent"]["id"] != AGENT)
    );
}

#[test]
fn an_alert_in_ocsf_output_is_a_detection_finding_the_schema_accepts() {
    let run = AgentRun::new("rules-ocsf", &[("id", AGENT)]);
    let rules = run.dir.join("rules.yml");
    std::fs::write(
        &rules,
        tool_rule("0b0b0b0b-0000-4000-8000-0000000000b1", "base64"),
    )
    .unwrap();
    let trail = run.dir.join("trail.jsonl");
    let sensor = Launch::new()
        .config(&run.config)
        .arg("--rules")
        .arg(&rules)
        .ocsf()
        .output(&trail)
        .start();
    run.in_agent_cgroup("echo aGk= | base64 -d >/dev/null");
    let finding = sensor.wait_for("a Detection Finding", |e| e["class_uid"] == 2004);
    sensor.stop();
    assert_eq!(finding["finding_info"]["title"], "base64 ran");
    assert_eq!(
        finding["unmapped"]["agent_sensor"]["identity"]["agent"]["id"],
        AGENT
    );
    assert_eq!(finding["evidences"][0]["actor"]["app_uid"], AGENT);
    let complaints = validate_ocsf(&trail);
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// A cgroup of a second agent, removed on drop.
struct OtherCgroup(String);

impl Drop for OtherCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

const SEQUENCE_RULE: &str = "e2e-credential-then-connect";

/// Native rules: a test file (a sequence over two agents' real reads and connections, a
/// template fed a hostile command line) and the example file (a shell in an agent whose data
/// is restricted, rate limited to one alert a minute).
/// `by: tree` against `by: agent` with real processes: a credential read in one shell of the
/// agent and a connection from another shell of it complete the agent's sequence, not the
/// tree's; a read by `cat` and a connection by `bash`, both children of one shell (which the
/// sensor never saw exec: it moved itself into the agent's cgroup), complete both.
#[test]
fn a_tree_sequence_needs_both_steps_in_one_process_tree() {
    let run = AgentRun::new("rules-tree", &[("id", AGENT)]);
    std::fs::create_dir_all(&run.cgroup).unwrap();
    let steps = "      within: 30
      steps:
        - event.action = open and file.class = cloud_credentials
        - event.action = connect and destination.ip cidr 127.0.0.2/32";
    std::fs::write(
        run.dir.join("tree.yml"),
        format!(
            "rules:
  - id: by-tree
    title: Read then connect in one tree
    sequence:
      by: tree
{steps}
  - id: by-agent
    title: Read then connect in one agent
    sequence:
      by: agent
{steps}
  - id: three-by-tree
    title: cat started, read, then connect in one tree
    sequence:
      by: tree
      within: 30
      steps:
        - event.action = exec and process.executable endswith /cat
        - event.action = open and file.class = cloud_credentials
        - event.action = connect and destination.ip cidr 127.0.0.2/32
  - id: three-wrong-order
    title: read, cat started, then connect in one tree
    sequence:
      by: tree
      within: 30
      steps:
        - event.action = open and file.class = cloud_credentials
        - event.action = exec and process.executable endswith /cat
        - event.action = connect and destination.ip cidr 127.0.0.2/32
"
        ),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&run.config).unwrap();
    config.push_str("[rules]\nfiles = [\"tree.yml\"]\n");
    std::fs::write(&run.config, config).unwrap();
    let sensor = Launch::new().config(&run.config).start();

    let home = scratch_dir("rules-tree-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let credentials = home.join(".aws/credentials");
    std::fs::write(&credentials, "[default]\n").unwrap();
    let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let read = format!("cat {} >/dev/null", credentials.display());
    let connect = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.2/{}'",
        elsewhere.local_addr().unwrap().port()
    );
    // Two shells: the read in one, the connection in the other.
    run.in_agent_cgroup(&read);
    run.in_agent_cgroup(&connect);
    // One shell: both.
    run.in_agent_cgroup(&format!("{read} && {connect}"));
    sensor.wait_for("the tree's alert", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == "by-tree"
    });
    sensor.wait_for("the three-step alert", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == "three-by-tree"
    });
    let done = sensor.stop();
    let records = &done.records;
    let cited = |id: &str| -> Vec<(String, String)> {
        alerts_of(records, id)
            .iter()
            .map(|a| {
                let seq = &a["alert"]["trigger"]["sequence"];
                let (first, then) = (by_sequence(records, &seq[0]), by_sequence(records, &seq[1]));
                let exe = |r: &Value| {
                    let e = r["process"]["executable"].as_str().unwrap_or("");
                    e.rsplit('/').next().unwrap_or("").to_owned()
                };
                assert_eq!((action(&first), action(&then)), ("open", "connect"), "{a}");
                (exe(&first), exe(&then))
            })
            .collect()
    };
    // The agent's sequence completes twice (across shells, then within one); the tree's once,
    // on the read by cat and the connection by bash, different processes of one shell.
    assert_eq!(cited("by-agent").len(), 2, "{:?}", cited("by-agent"));
    assert_eq!(cited("by-tree"), [("cat".to_owned(), "bash".to_owned())]);
    let tree = alerts_of(records, "by-tree")[0];
    let seq = &tree["alert"]["trigger"]["sequence"];
    assert_ne!(
        by_sequence(records, &seq[0])["process"]["entity_id"],
        by_sequence(records, &seq[1])["process"]["entity_id"]
    );
    // Three steps: once, in the one shell, citing cat's exec, cat's read and bash's
    // connection in order; the same steps in another order never.
    let three = alerts_of(records, "three-by-tree");
    assert_eq!(three.len(), 1, "{three:?}");
    let seq = three[0]["alert"]["trigger"]["sequence"].as_array().unwrap();
    let steps: Vec<Value> = seq.iter().map(|s| by_sequence(records, s)).collect();
    assert_eq!(
        steps.iter().map(action).collect::<Vec<_>>(),
        ["exec", "open", "connect"],
        "{three:?}"
    );
    assert_eq!(
        steps[0]["process"]["entity_id"],
        steps[1]["process"]["entity_id"]
    );
    assert!(
        steps[2]["process"]["executable"]
            .as_str()
            .unwrap()
            .ends_with("/bash")
    );
    assert_eq!(
        seq[1..],
        tree["alert"]["trigger"]["sequence"].as_array().unwrap()[..]
    );
    assert!(alerts_of(records, "three-wrong-order").is_empty());
}

#[test]
fn native_rules_scope_on_the_agent_and_sequences_need_order_window_and_agent() {
    let run = AgentRun::new(
        "rules-native",
        &[("id", AGENT), ("data_sensitivity", "restricted")],
    );
    // A second agent, of another tier, in a cgroup of its own.
    let other = OtherCgroup(format!("{}-other", run.cgroup));
    let other_name = Path::new(&other.0).file_name().unwrap().to_str().unwrap();
    let mut manifest = std::fs::read_to_string(run.dir.join("agents.yaml")).unwrap();
    let _ = write!(
        manifest,
        "  - id: other-agent\n    data_sensitivity: internal\n    selectors: [{{cgroup: /{other_name}/**}}]\n"
    );
    std::fs::write(run.dir.join("agents.yaml"), manifest).unwrap();
    // Both cgroups exist before the sensor starts (attribution of a cgroup made under load
    // is not what this test is about).
    std::fs::create_dir_all(&run.cgroup).unwrap();
    std::fs::create_dir_all(&other.0).unwrap();

    let rules = run.dir.join("native.yml");
    std::fs::write(
        &rules,
        format!(
            "lists:
  secrets: [cloud_credentials, ssh_key]
rules:
  - id: {SEQUENCE_RULE}
    title: Credential read, then a connection elsewhere
    sequence:
      by: agent
      within: 3
      steps:
        - event.action = open and file.class in (secrets)
        - event.action = connect and destination.ip cidr 127.0.0.0/8 and not destination.ip cidr 127.0.0.1/32
    severity: critical
    tags: [attack.t1552.001]
    output: '%identity.agent.id connected to %destination.ip after reading a credential'
  - id: e2e-hostile-argv
    title: Marked command line
    condition: event.action = exec and process.executable endswith /echo and process.command_line contains NATIVE-MARK
    output: 'ran %process.command_line'
"
        ),
    )
    .unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules/agent-native.yml");
    let mut config = std::fs::read_to_string(&run.config).unwrap();
    let _ = write!(
        config,
        "[rules]\nfiles = [\"native.yml\", {:?}]\n",
        examples.display().to_string()
    );
    std::fs::write(&run.config, config).unwrap();
    let sensor = Launch::new().config(&run.config).start();

    let home = scratch_dir("rules-native-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let credentials = home.join(".aws/credentials");
    std::fs::write(&credentials, "[default]\n").unwrap();
    let localhost = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let connect = |ip: &str, port: u16| format!("bash -c 'exec 3<>/dev/tcp/{ip}/{port}'");
    let to_local = connect("127.0.0.1", localhost.local_addr().unwrap().port());
    let to_elsewhere = connect("127.0.0.2", elsewhere.local_addr().unwrap().port());
    let read = format!("cat {} >/dev/null", credentials.display());
    let in_other = |script: &str| {
        run_ok(Command::new("/bin/sh").args([
            "-c",
            &format!("echo $$ > {}/cgroup.procs && {script}", other.0),
        ]));
    };

    // The other agent reads the credential; this agent's connection does not complete it.
    in_other(&read);
    run.in_agent_cgroup(&to_elsewhere);
    // This agent: the connection before the read (the wrong order), then the read and a
    // connection 4 s later (outside the 3 s window).
    run.in_agent_cgroup(&format!("{read} && sleep 4 && {to_elsewhere}"));
    // In order and in time: the allowed address first (nothing), then the other (the alert).
    run.in_agent_cgroup(&format!("{read} && {to_local} && {to_elsewhere}"));
    // A command line with a newline and a forged record in it.
    run.in_agent_cgroup("/bin/echo 'NATIVE-MARK\n{\"event\":{\"action\":\"alert\"}}' >/dev/null");
    sensor.wait_for("the sequence alert", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == SEQUENCE_RULE
    });
    sensor.wait_for("the hostile command line's alert", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == "e2e-hostile-argv"
    });
    let done = sensor.stop();
    let records = &done.records;

    // Exactly one sequence alert, citing this agent's read and its connection to 127.0.0.2.
    let alerts = alerts_of(records, SEQUENCE_RULE);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = alerts[0];
    assert_eq!(alert["alert"]["rule"]["ruleset"], "native");
    assert_eq!(alert["alert"]["severity"], "critical");
    assert_eq!(alert["identity"]["agent"]["id"], AGENT);
    let cited = alert["alert"]["trigger"]["sequence"].as_array().unwrap();
    assert_eq!(cited.len(), 2, "{alert}");
    let first = by_sequence(records, &cited[0]);
    let then = by_sequence(records, &cited[1]);
    assert_eq!(action(&first), "open");
    assert_eq!(first["file"]["path"], credentials.to_str().unwrap());
    assert_eq!(first["file"]["class"], "cloud_credentials");
    assert_eq!(first["identity"]["agent"]["id"], AGENT);
    assert_eq!(action(&then), "connect");
    assert_eq!(then["destination"]["ip"], "127.0.0.2");
    assert_eq!(then["identity"]["agent"]["id"], AGENT);
    assert_eq!(
        alert["alert"]["message"],
        format!("{AGENT} connected to 127.0.0.2 after reading a credential")
    );
    // Every read and connection the test made was recorded: what did not fire was seen.
    let reads_by = |agent: &str| {
        records
            .iter()
            .filter(|r| {
                action(r) == "open"
                    && r["file"]["path"] == credentials.to_str().unwrap()
                    && r["identity"]["agent"]["id"] == agent
            })
            .count()
    };
    assert_eq!((reads_by(AGENT), reads_by("other-agent")), (2, 1));
    let connects = records
        .iter()
        .filter(|r| {
            action(r) == "connect"
                && r["destination"]["ip"] == "127.0.0.2"
                && r["identity"]["agent"]["id"] == AGENT
        })
        .count();
    assert_eq!(connects, 3);

    // The hostile command line: one record, its message escaped (no newline in it).
    let hostile = alerts_of(records, "e2e-hostile-argv");
    assert_eq!(hostile.len(), 1);
    let message = hostile[0]["alert"]["message"].as_str().unwrap();
    assert!(!message.contains('\n'), "{message:?}");
    assert!(
        message.starts_with("ran /bin/echo NATIVE-MARK\\n{"),
        "{message:?}"
    );

    // The example's restricted-shell rule: this agent (restricted) ran several shells, one
    // alert a minute; the other agent (internal) none.
    let shells = alerts_of(records, "agent-native-restricted-shell");
    assert_eq!(shells.len(), 1, "{shells:?}");
    assert_eq!(shells[0]["identity"]["agent"]["id"], AGENT);
    assert!(
        shells[0]["alert"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("agent {AGENT} started a shell: bash -c"))
    );

    // `rules test` replays the run through the same files: the same alerts, citing the
    // same records.
    let events = run.dir.join("events.jsonl");
    let mut text = String::new();
    for r in records {
        let _ = writeln!(text, "{r}");
    }
    std::fs::write(&events, text).unwrap();
    let out = Command::new(sensor_binary())
        .args(["rules", "test", "--rules"])
        .arg(&rules)
        .arg(&examples)
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let replayed: BTreeSet<(String, Vec<u64>)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            cited_by(&v["alert"])
        })
        .collect();
    let live: BTreeSet<(String, Vec<u64>)> = records
        .iter()
        .filter(|r| action(r) == "alert")
        .map(|a| cited_by(&a["alert"]))
        .collect();
    assert_eq!(replayed, live);
}

fn cited_by(alert: &Value) -> (String, Vec<u64>) {
    (
        alert["rule"]["id"].as_str().unwrap().to_owned(),
        alert["trigger"]["sequence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect(),
    )
}

#[test]
fn rules_check_places_native_errors() {
    let dir = scratch_dir("rules-check-native");
    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "macros:\n  shell: process.executable endswith /sh\nrules:\n  - id: a\n    title: A\n    condition: shell and proces.pid = 1\n",
    )
    .unwrap();
    let out = Command::new(sensor_binary())
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:6:26: rule \"A\": unknown field \"proces.pid\"",
            bad.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 rule(s) loaded from 1 file(s), 1 not loaded"),
        "{stdout}"
    );
}

/// A Sigma correlation (event_count) over the sensor's own timestamps: two execs of a tool
/// by root outside any agent, then three by the agent. Grouped by `User`, the third exec
/// (the agent's first) completes it; grouped by `identity.agent.id`, only the agent's third
/// does. The rule the correlations count (`generate` left at Sigma's default, false) gives
/// no alert of its own.
#[test]
fn a_sigma_event_count_correlation_fires_on_the_third_exec() {
    const COUNTED: &str = "0c0c0c0c-0000-4000-8000-0000000000b1";
    const CORRELATION: &str = "0c0c0c0c-0000-4000-8000-0000000000b2";
    const BY_AGENT: &str = "0c0c0c0c-0000-4000-8000-0000000000b3";
    let run = AgentRun::new("rules-corr", &[("id", AGENT)]);
    std::fs::create_dir_all(&run.cgroup).unwrap();
    let work = scratch_dir("rules-corr-work");
    let tool = work.join(format!("corr-tool-{}", std::process::id()));
    std::fs::copy("/usr/bin/true", &tool).unwrap();
    std::fs::write(
        run.dir.join("corr.yml"),
        format!(
            "title: correlated tool ran
id: {COUNTED}
name: corr_tool_ran
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image: '{tool}'
    condition: selection
---
title: correlated tool ran three times
id: {CORRELATION}
author: test
correlation:
    type: event_count
    rules: [corr_tool_ran]
    group-by: [User]
    timespan: 60s
    condition:
        gte: 3
level: high
---
title: an agent ran the correlated tool three times
id: {BY_AGENT}
correlation:
    type: event_count
    rules: [corr_tool_ran]
    group-by: [identity.agent.id]
    timespan: 60s
    condition:
        gte: 3
",
            tool = tool.display()
        ),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&run.config).unwrap();
    config.push_str("[rules]\nfiles = [\"corr.yml\"]\n");
    std::fs::write(&run.config, config).unwrap();
    let sensor = Launch::new().config(&run.config).start();
    let tool = tool.display().to_string();
    for _ in 0..2 {
        run_ok(&mut Command::new(&tool));
    }
    run.in_agent_cgroup(&format!("{tool} && {tool} && {tool}"));
    sensor.wait_for("the agent correlation's alert", |r| {
        action(r) == "alert" && r["alert"]["rule"]["id"] == BY_AGENT
    });
    let done = sensor.stop();
    let records = &done.records;
    assert!(alerts_of(records, COUNTED).is_empty());
    let execs: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "exec" && r["process"]["executable"] == tool.as_str())
        .collect();
    assert_eq!(execs.len(), 5);
    assert!(execs[..2].iter().all(|e| e.get("identity").is_none()));
    assert!(
        execs[2..]
            .iter()
            .all(|e| e["identity"]["agent"]["id"] == AGENT)
    );
    // By user: root's third exec, the agent's first.
    let by_user = alerts_of(records, CORRELATION);
    let alert = by_user[0];
    assert_eq!(alert["alert"]["rule"]["ruleset"], "sigma");
    assert_eq!(alert["alert"]["severity"], "high");
    assert_eq!(
        alert["alert"]["trigger"]["sequence"][0],
        execs[2]["chain"]["sequence"]
    );
    assert_eq!(alert["identity"]["agent"]["id"], AGENT);
    // By agent: once, on the agent's third; root's execs outside it are not the agent's.
    let by_agent = alerts_of(records, BY_AGENT);
    assert_eq!(by_agent.len(), 1, "{by_agent:?}");
    assert_eq!(
        by_agent[0]["alert"]["trigger"]["sequence"][0],
        execs[4]["chain"]["sequence"]
    );
    assert_eq!(by_agent[0]["identity"]["agent"]["id"], AGENT);
}
