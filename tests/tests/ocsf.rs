//! `--format ocsf`: a real run's every line — process, file, network and DNS activity, the
//! sensor's lifecycle, checkpoints and an annotation — validates against the real OCSF 1.8.0
//! schema (the schema.ocsf.io export packaged by PyPI's `ocsf-json-schema`, checked with
//! Python's `jsonschema`; `cargo xtask setup` installs both in a virtual environment), a broken
//! event is refused, and `agent-sensor verify` verifies the OCSF trail and finds a change in it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sensor_tests::{
    AgentRun, Launch, Value, dns_exchange, ecs_part, file_and_network_activity, sensor_binary,
};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");
const OCSF_VERSION: &str = "1.8.0";

/// The validator's Python, in the environment `cargo xtask setup` makes.
fn python() -> PathBuf {
    let cache = std::env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    );
    let python = cache.join("ocsf-venv/bin/python3");
    assert!(
        python.is_file(),
        "no {}: run `cargo xtask setup` (it installs ocsf-json-schema and jsonschema there)",
        python.display()
    );
    python
}

/// Validates every line of `events` against the OCSF class its `class_uid` names, with the
/// profiles its `metadata.profiles` declares; returns the validator's complaints.
fn validate(events: &Path) -> Vec<String> {
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
from ocsf_json_schema import get_ocsf_schema, OcsfJsonSchemaEmbedded
ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=sys.argv[1]))
validators = {}
for n, line in enumerate(open(sys.argv[2]), 1):
    event = json.loads(line)
    uid = event.get("class_uid")
    profiles = tuple(event.get("metadata", {}).get("profiles", []))
    if (uid, profiles) not in validators:
        try:
            name = ocsf.lookup_class_name_from_uid(class_uid=uid)
        except Exception:
            print(f"line {n}: class_uid: no OCSF class {uid!r}")
            continue
        schema = ocsf.get_class_schema(class_name=name, profiles=list(profiles))
        Draft202012Validator.check_schema(schema)
        validators[(uid, profiles)] = Draft202012Validator(schema)
    for e in validators[(uid, profiles)].iter_errors(event):
        print(f"line {n}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
"#;
    let out = Command::new(python())
        .args(["-c", script, OCSF_VERSION])
        .arg(events)
        .output()
        .expect("run the OCSF validator");
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

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
    sensor.wait_for("the DNS answer", |e| {
        e["class_uid"] == 4003 && e["activity_id"] == 2
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
