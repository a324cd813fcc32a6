//! The record schema is a contract: every record a real run writes — process, file, network,
//! identity, registration, annotation, policy, checkpoint and lifecycle records — validates against
//! `schema/record-<version>.json` with an independent validator (Python's `jsonschema`), and
//! a record with a field the schema does not know is refused.
use std::{path::Path, process::Command};

use sensor_tests::{AgentRun, Launch, action, file_and_network_activity};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

/// Validates every line of `records` against the schema; returns the validator's complaints.
fn validate(records: &Path) -> Vec<String> {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/record-0.2.json");
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
    let run = AgentRun::new(
        "schema",
        &[
            ("id", "schema-agent"),
            ("owners", "{business: a@example.com}"),
            // Every exec of the agent is a violation: policy_decision records.
            (
                "policy",
                "{executables: {mode: audit, allow: [/nonexistent]}}",
            ),
        ],
    );
    let dir = &run.dir;
    let sensor = Launch::new().config(&run.config).start();
    // A new agent cgroup with a process in it: cgroup_created, exec, fork, exit.
    run.in_agent_cgroup(&format!("{HELPER} exit 0"));
    // File and network activity.
    file_and_network_activity(HELPER, &dir.join("work"));
    // Control socket: a registration, a refused one, an annotation; a manifest reload.
    let helper = Command::new(HELPER).args(["exit", "0"]).spawn().unwrap();
    let _ = run.control(&["register", "--pid", "999999999", "--agent", "schema-agent"]);
    assert!(
        run.control(&[
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
    assert!(
        run.control(&[
            "except",
            "--agent",
            "schema-agent",
            "--rule",
            "egress",
            "--seconds",
            "60",
            "--author",
            "test",
            "--reason",
            "schema",
        ])
        .status
        .success()
    );
    sensor.signal(libc::SIGHUP);
    sensor.wait_for("the reload", |r| action(r) == "identities_reloaded");
    let mut helper = helper;
    let _ = helper.wait();
    let records = sensor.stop().records;

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
        "policy_decision",
        "policy_exception",
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
    let _ = std::fs::remove_dir_all(dir);
}
