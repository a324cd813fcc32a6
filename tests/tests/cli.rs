//! The command line as a user meets it: errors they can cause, the probe, the privileges the
//! running daemon keeps, and the docs that name these commands.
use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

use sensor_tests::{Sensor, require_root, sensor_binary};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sensor(args: &[&str]) -> Output {
    Command::new(sensor_binary())
        .args(args)
        .output()
        .expect("run agent-sensor")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_config_names_file_line_and_reason() {
    let dir = std::env::temp_dir().join("agent-sensor-cli-test");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    fs::write(
        &file,
        "[observe]\nall_processes = true\n\n[kernel]\nring_buffer_bytes = 1000\n",
    )
    .unwrap();
    for args in [
        vec!["run", "--config", file.to_str().unwrap()],
        vec!["check-config", file.to_str().unwrap()],
    ] {
        let out = sensor(&args);
        assert!(!out.status.success());
        let err = stderr(&out);
        let expected = format!(
            "{}:5:21: kernel.ring_buffer_bytes must be a power of two",
            file.display()
        );
        assert!(err.contains(&expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
        assert!(out.stdout.is_empty(), "nothing on stdout on error");
    }
    let out = sensor(&["run", "--config", "/nonexistent/agent-sensor.toml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/agent-sensor.toml: cannot read the config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = repo().join("examples/agent-sensor.toml");
    let out = sensor(&["check-config", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all_processes: true"));
}

#[test]
fn an_unprivileged_run_says_what_it_needs() {
    require_root();
    // setpriv (util-linux) drops to nobody with no capabilities at all.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(sensor_binary())
        .args(["run", "--all-processes"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("needs root (or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn an_unknown_pid_is_refused() {
    require_root();
    let out = sensor(&["run", "--pid", "999999999"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--pid 999999999: no such process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn probe_reports_every_feature_and_what_it_uses() {
    require_root();
    let out = sensor(&["probe", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let features = &report["features"];
    let by_name = |n: &str| {
        features
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    for name in [
        "btf",
        "tracefs",
        "raw_tracepoint",
        "tracepoint",
        "tp_btf",
        "kprobe",
        "fentry",
        "lsm",
        "uprobe",
        "ring_buffer",
        "cgroup_v2",
    ] {
        assert!(by_name(name)["available"].is_boolean());
    }
    // What this machine kind is known to have and lack (shared/docs/kernel-and-toolchain.md).
    for required in ["btf", "tracefs", "raw_tracepoint", "ring_buffer"] {
        assert_eq!(by_name(required)["available"], true);
        assert_eq!(by_name(required)["used"], true);
    }
    assert_eq!(by_name("tp_btf")["available"], true);
    assert_eq!(by_name("kprobe")["available"], false);
    assert_eq!(by_name("fentry")["available"], false);
    assert_eq!(by_name("lsm")["available"], false);
    // The sensor's own programs, verified by this kernel, each within its stack budget.
    let programs = report["programs"].as_array().unwrap();
    for name in [
        "sched_process_exec",
        "sched_process_fork",
        "sched_process_exit",
        "exit_file",
        "exit_net",
    ] {
        let p = programs
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {programs:?}"));
        assert_eq!(p["loads"], true, "{p}");
        let stack = p["stack"].as_u64().unwrap();
        assert!(stack > 0 && stack <= 384, "{p}");
        // The verifier checks at most a million instructions per program: keep three quarters
        // of that free (loops multiply as the code grows).
        let verified = p["verified_insns"].as_u64().unwrap();
        assert!(verified > 0 && verified <= 250_000, "{p}");
    }
    let text = sensor(&["probe"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("the sensor will use: btf, tracefs, raw_tracepoint, ring_buffer"),
        "{text}"
    );
    assert!(text.contains("sched_process_exec   loads"), "{text}");
}

#[test]
fn the_running_daemon_keeps_only_the_capabilities_it_needs() {
    let sensor = Sensor::start(&["--all-processes"]);
    let status = fs::read_to_string(format!("/proc/{}/status", sensor.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| panic!("{name} missing"), str::trim)
            .to_owned()
    };
    // CAP_DAC_READ_SEARCH (2) and CAP_SYS_PTRACE (19), nothing else, in every set.
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(field(set), "0000000000080004", "{set}");
    }
    assert_eq!(field("CapInh:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    sensor.stop();
}

#[test]
fn help_lists_every_command() {
    let out = sensor(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "run",
        "probe",
        "check-config",
        "register",
        "identities",
        "verify",
    ] {
        assert!(help.contains(command), "{help}");
    }
    let run_help = String::from_utf8_lossy(&sensor(&["run", "--help"]).stdout).into_owned();
    for flag in [
        "--config",
        "--output",
        "--all-processes",
        "--pid",
        "--identities",
    ] {
        assert!(run_help.contains(flag), "{run_help}");
    }
}

#[test]
fn the_readme_starts_with_the_two_commands_and_ci_runs_the_second() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(
        commands,
        ["cargo xtask run", "cargo xtask test"],
        "the README's first code block"
    );
    let ci = fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "cargo xtask test"),
        ".ci/run must run the README's test command"
    );
}

#[test]
fn the_example_manifest_is_valid_and_a_bad_one_is_located() {
    let example = repo().join("examples/agents.yaml");
    let out = sensor(&["identities", "check", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok, 3 agent(s)")
            && text.contains("code-reviewer")
            && text.contains("planner")
            && text.contains(r#"kubernetes namespace="agents""#)
            && text.contains("data-analyst")
            && text.contains("capture tls=true stdio=true content=redacted max_bytes=16384"),
        "{text}"
    );
    let dir = std::env::temp_dir().join("agent-sensor-cli-manifest");
    fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("agents.yaml");
    fs::write(&bad, "agents:\n  - id: ok-agent\n    selectors: [{uid: 1}]\n  - id: Bad Agent\n    selectors: [{uid: 2}]\n").unwrap();
    let out = sensor(&["identities", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:4:", bad.display())) && err.contains("agent id \"Bad Agent\""),
        "{err}"
    );
    fs::write(
        &bad,
        "agents:\n  - id: ok-agent\n    capture:\n      tls: true\n      content: everything\n",
    )
    .unwrap();
    let out = sensor(&["identities", "check", bad.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains(&format!("{}:4:", bad.display()))
            && err.contains("capture content \"everything\" must be one of full, redacted, digest"),
        "{err}"
    );
    fs::write(&bad, "agents:\n  - id: ok-agent\n    selectors: [{uid: 1}]\n  - id: Bad Agent\n    selectors: [{uid: 2}]\n").unwrap();
    let out = sensor(&["run", "--identities", bad.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "run refuses a bad manifest before loading anything"
    );
    assert!(stderr(&out).contains("agent id \"Bad Agent\""));
}

#[test]
fn environment_overrides_win_over_the_file_and_a_bad_one_is_named() {
    let dir = std::env::temp_dir().join("agent-sensor-cli-env-test");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sensor.toml");
    fs::write(&file, "[observe]\nall_processes = false\n").unwrap();
    let with_env = |args: &[&str], vars: &[(&str, &str)]| {
        Command::new(sensor_binary())
            .args(args)
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    };
    let out = with_env(
        &["check-config", file.to_str().unwrap()],
        &[
            ("AGENT_SENSOR_OBSERVE_ALL_PROCESSES", "true"),
            ("AGENT_SENSOR_OUTPUT_PATH", "/var/lib/agent-sensor/trail/"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("all_processes: true"), "{effective}");
    assert!(
        effective.contains("\"/var/lib/agent-sensor/trail/\""),
        "{effective}"
    );
    // `run` reads the same overrides (and refuses the same mistakes) before loading anything.
    for args in [
        vec!["run", "--config", file.to_str().unwrap()],
        vec!["run"],
        vec!["check-config", file.to_str().unwrap()],
    ] {
        let out = with_env(&args, &[("AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS", "0")]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(
                "AGENT_SENSOR_KERNEL_POLL_INTERVAL_MS: kernel.poll_interval_ms must be between 1 and 1000"
            ),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    }
}
