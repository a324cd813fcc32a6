//! `executables` and `files` rules in `enforce` mode need BPF LSM. `identities check` accepts
//! them (the manifest does not know the kernel), and on a kernel without BPF LSM (this machine
//! kind's: `bpf` is listed among its LSMs, but BPF LSM programs are refused) the sensor says
//! so at start, in one line, and refuses to start, naming the rules, why and what to do: nothing
//! is attached that would pretend to enforce. Where the probe finds BPF LSM, the sensor starts
//! with both hooks attached and an agent's forbidden exec and open fail with EPERM (the kernel
//! matrix runs the full scenario on 5.10, 6.1 and 6.12: xtask/src/matrix/scenario.rs).
use std::{process::Command, time::Duration};

use sensor_tests::{Sensor, Value, action, cgroup2_root, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

/// Whether `agent-sensor probe --json` finds BPF LSM here.
fn probe_finds_bpf_lsm() -> bool {
    let out = Command::new(sensor_binary())
        .args(["probe", "--json"])
        .output()
        .unwrap();
    let probe: Value = serde_json::from_slice(&out.stdout).expect("probe --json is JSON");
    let features = probe
        .as_array()
        .or_else(|| probe["features"].as_array())
        .expect("the feature list");
    features
        .iter()
        .any(|f| f["name"] == "lsm" && f["available"] == true)
}

#[test]
fn enforce_for_executables_and_files_needs_bpf_lsm_and_says_so() {
    let dir = scratch_dir("enforce-lsm");
    std::fs::write(dir.join("secret"), "secret\n").unwrap();
    let cg_name = format!("agent-sensor-enforce-lsm-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let manifest = dir.join("agents.yaml");
    std::fs::write(
        &manifest,
        format!(
            "agents:\n  - id: guarded\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      executables:\n        mode: enforce\n        allow: [\"/usr/bin/*\", \"{HELPER}\"]\n      files:\n        mode: enforce\n        read: {{paths: [\"/usr/**\", \"/lib/**\", \"/etc/**\", \"/proc/**\", \"/dev/**\"]}}\n        write: {{paths: [\"/dev/**\"]}}\n"
        ),
    )
    .unwrap();
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(&manifest)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        said.contains("files enforce") && said.contains("executables enforce"),
        "{said}"
    );

    if !probe_finds_bpf_lsm() {
        let out = Command::new(sensor_binary())
            .args(["run", "--output", "-", "--identities"])
            .arg(&manifest)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without BPF LSM: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "no record, not even sensor_start: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let error = stderr
            .lines()
            .find(|l| l.starts_with("agent-sensor: error:"))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            error.contains(
                "executables and files rules in mode enforce need BPF LSM, and this kernel has none"
            ) && error.contains("mode kill"),
            "{error}"
        );
        // Why, as this kernel shows it: `bpf` missing from the list (then the `lsm=` line to
        // boot with), or listed but its programs refused.
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        if lsm.split(',').any(|m| m.trim() == "bpf") {
            assert!(
                error.contains("does not let BPF LSM programs load"),
                "{error}"
            );
        } else {
            assert!(error.contains("lsm="), "{error}");
        }
        // A sensor without such rules starts, and says in one line at start what this
        // kernel lacks.
        std::fs::write(
            &manifest,
            format!(
                "agents:\n  - id: guarded\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      executables:\n        mode: kill\n        allow: [\"/usr/bin/*\"]\n"
            ),
        )
        .unwrap();
        let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
        sensor.wait_for("the start record", |r| action(r) == "sensor_start");
        let stderr = sensor.stderr();
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("this kernel has no BPF LSM ("))
            .collect();
        assert_eq!(said.len(), 1, "one line says so at start: {stderr}");
        assert!(said[0].contains("mode enforce are refused"), "{stderr}");
        drop(sensor.stop());
        let _ = std::fs::remove_dir(&cg);
        return;
    }

    // BPF LSM here: both hooks attached, the agent's forbidden exec and read refused.
    let sensor = Sensor::start(&["--identities", manifest.to_str().unwrap()]);
    let start = sensor.wait_for("the start record", |r| action(r) == "sensor_start");
    let programs = &start["sensor"]["lifecycle"]["programs"];
    for hook in ["lsm:bprm_check_security", "lsm:file_open"] {
        assert!(
            programs.as_array().unwrap().iter().any(|p| p == hook),
            "{programs}"
        );
    }
    let forbidden = dir.join("prog");
    std::fs::copy("/usr/bin/true", &forbidden).unwrap();
    let f = forbidden.display();
    let secret = dir.join("secret");
    let s = secret.display();
    let out = Command::new("/usr/bin/dash")
        .args([
            "-c",
            &format!(
                "echo $$ > {cg}/cgroup.procs; echo exec=$({HELPER} try-exec {f}); echo read=$({HELPER} open {s})"
            ),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("exec=1\n") && stdout.contains("read=1\n"),
        "{out:?}"
    );
    sensor.wait_for_count("the denials", 2, |r| {
        action(r) == "policy_decision" && r["policy"]["outcome"] == "denied"
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(sensor.stop());
    let _ = std::fs::remove_dir(&cg);
}
