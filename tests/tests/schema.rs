//! The record schema is a contract: every record a real run writes — process, file, network,
//! identity, registration, annotation, checkpoint and lifecycle records — validates against
//! `schema/record-<version>.json` with an independent validator (Python's `jsonschema`), and
//! a record with a field the schema does not know is refused.
use std::{path::Path, process::Command};

use sensor_tests::{Sensor, action, cgroup2_root, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

/// Validates every line of `records` against the schema; returns the validator's complaints.
fn validate(records: &Path) -> Vec<String> {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/record-0.1.json");
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for n, line in enumerate(open(sys.argv[2]), 1):
    for e in validator.iter_errors(json.loads(line)):
        print(f"line {n}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
"#;
    let out = Command::new("python3")
        .args(["-c", script, schema])
        .arg(records)
        .output()
        .expect("python3 with jsonschema (cargo xtask setup installs python3-jsonschema)");
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

#[test]
fn every_kind_of_record_a_real_run_writes_matches_the_schema() {
    let dir = scratch_dir("schema");
    sensor_tests::keygen(&dir.join("keys"));
    let cg_name = format!("agent-sensor-schema-{}", std::process::id());
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: schema-agent\n    owners: {{business: a@example.com}}\n    selectors: [{{cgroup: /{cg_name}/**}}]\n"
        ),
    )
    .unwrap();
    let socket = dir.join("control.sock");
    std::fs::write(
        dir.join("sensor.toml"),
        format!(
            "[observe]\nall_processes = true\n[evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 50\n[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--config", dir.join("sensor.toml").to_str().unwrap()]);
    // A new agent cgroup with a process in it: cgroup_created, exec, fork, exit.
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let in_cgroup = format!("echo $$ > {cg}/cgroup.procs && {HELPER} exit 0");
    assert!(
        Command::new("/bin/sh")
            .args(["-c", &in_cgroup])
            .status()
            .unwrap()
            .success()
    );
    // File and network activity.
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(
        Command::new(HELPER)
            .args(["files", work.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert!(
        Command::new(HELPER)
            .args(["connect", &addr])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new(HELPER)
            .args(["udp-send", "127.0.0.1:9"])
            .status()
            .unwrap()
            .success()
    );
    // Control socket: a registration, a refused one, an annotation; a manifest reload.
    let helper = std::process::Command::new(HELPER)
        .args(["exit", "0"])
        .spawn()
        .unwrap();
    let control = |args: &[&str]| {
        Command::new(sensor_binary())
            .args(args)
            .args(["--socket", socket.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let _ = control(&["register", "--pid", "999999999", "--agent", "schema-agent"]);
    assert!(
        control(&[
            "annotate",
            "--kind",
            "note",
            "--author",
            "test",
            "--text",
            "schema \"check\"\n"
        ])
        .status
        .success()
    );
    // SAFETY: signalling the sensor child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) };
    sensor.wait_for("the reload", |r| action(r) == "identities_reloaded");
    let mut helper = helper;
    let _ = helper.wait();
    let records = sensor.stop().records;
    let _ = std::fs::remove_dir(&cg);

    let mut seen: Vec<&str> = records.iter().map(action).collect();
    seen.sort_unstable();
    seen.dedup();
    for kind in [
        "sensor_start",
        "snapshot",
        "exec",
        "fork",
        "exit",
        "open",
        "mkdir",
        "rename",
        "unlink",
        "connect",
        "send",
        "cgroup_created",
        "agent_registration",
        "annotation",
        "checkpoint",
        "identities_reloaded",
        "sensor_stop",
    ] {
        assert!(
            seen.contains(&kind),
            "no {kind} record to check; saw {seen:?}"
        );
    }
    let file = dir.join("records.jsonl");
    sensor_tests::write_json_lines(&file, &records);
    let complaints = validate(&file);
    assert!(
        complaints.is_empty(),
        "records that break the schema:\n{}",
        complaints.join("\n")
    );

    // The contract is closed: an unknown field, a wrong type or a missing block is refused.
    let exec = records
        .iter()
        .find(|r| action(r) == "exec")
        .unwrap()
        .clone();
    let mut unknown = exec.clone();
    unknown["process"]["injected"] = "x".into();
    let mut wrong_type = exec.clone();
    wrong_type["process"]["pid"] = "1".into();
    let mut missing = exec;
    missing.as_object_mut().unwrap().remove("process");
    sensor_tests::write_json_lines(&file, &[unknown, wrong_type, missing]);
    let complaints = validate(&file);
    for line in 1..=3 {
        assert!(
            complaints
                .iter()
                .any(|c| c.starts_with(&format!("line {line}:"))),
            "line {line} was not refused: {complaints:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
