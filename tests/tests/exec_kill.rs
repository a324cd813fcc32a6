//! `executables` rules in `kill` mode, end to end on this kernel (which has no BPF LSM): an
//! agent's shell runs allowed and forbidden programs; each forbidden one is killed by the
//! kernel as its exec completes (the shell sees SIGKILL, the program's own output never
//! appears), its exec record says so, and a decision record `killed` links to it; allowed
//! programs, the same programs run by a bystander, and a forbidden one under an operator's
//! exception run normally; when the exception ends, the kill is back.
use std::{fmt::Write as _, process::Command, time::Duration};

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

#[test]
fn forbidden_execs_are_killed_before_they_run_allowed_ones_and_bystanders_are_not() {
    let dir = scratch_dir("exec-kill");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(allowed.join("deeper")).unwrap();
    // Copies of `echo`-like programs: each prints a word when it gets to run.
    for p in [allowed.join("tool"), allowed.join("deeper/tool")] {
        std::fs::copy("/usr/bin/echo", &p).unwrap();
    }
    let cg_name = format!("agent-sensor-exec-kill-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    let socket = dir.join("control.sock");
    let a = allowed.display();
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: runner\n    selectors: [{{cgroup: /{cg_name}}}]\n    policy:\n      version: \"kill-1\"\n      executables:\n        mode: kill\n        allow: [/usr/bin/dash, /usr/bin/true, \"{a}/*\"]\n"
        ),
    )
    .unwrap();
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let script = |in_agent: bool| {
        let mut s = String::new();
        if in_agent {
            let _ = write!(s, "echo $$ > {cg}/cgroup.procs; ");
        }
        let _ = write!(
            s,
            "/usr/bin/true; echo true=$?; /usr/bin/id -u >/dev/null; echo id=$?; \
             {a}/tool ran; echo tool=$?; {a}/deeper/tool ran; echo deeper=$?"
        );
        s
    };
    let run = |in_agent: bool| {
        Command::new("/usr/bin/dash")
            .args(["-c", &script(in_agent)])
            .output()
            .unwrap()
    };
    let agent = run(true);
    let as_agent = statuses(&agent);
    assert_eq!(
        as_agent,
        [
            ("true".to_owned(), 0),
            ("id".to_owned(), 137),
            ("tool".to_owned(), 0),
            ("deeper".to_owned(), 137),
        ],
        "{agent:?}"
    );
    // The allowed tool ran and printed; the forbidden one never got to.
    let printed = String::from_utf8_lossy(&agent.stdout);
    assert_eq!(printed.matches("ran").count(), 1, "{printed}");
    let bystander = run(false);
    assert!(
        statuses(&bystander).iter().all(|(_, s)| *s == 0),
        "a bystander is never killed: {bystander:?}"
    );

    // Under an exception the forbidden program runs; after it, it is killed again.
    let out = Command::new(sensor_binary())
        .args(["except", "--agent", "runner", "--rule", "executables"])
        .args(["--seconds", "2", "--author", "alice", "--reason", "INC-7"])
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let excepted = statuses(&run(true));
    assert!(excepted.iter().all(|(_, s)| *s == 0), "{excepted:?}");
    std::thread::sleep(Duration::from_millis(2500));
    let after = statuses(&run(true));
    assert_eq!(after, as_agent, "the exception ended");

    sensor.wait_for_count("the decisions", 6, |r| action(r) == "policy_decision");
    let done = sensor.stop();
    let records = &done.records;
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .collect();
    let summary: Vec<(&str, &str)> = decisions
        .iter()
        .map(|d| {
            (
                d["policy"]["target"].as_str().unwrap(),
                d["policy"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let deeper = format!("{a}/deeper/tool");
    assert_eq!(
        summary,
        [
            ("/usr/bin/id", "killed"),
            (deeper.as_str(), "killed"),
            ("/usr/bin/id", "allowed"),
            (deeper.as_str(), "allowed"),
            ("/usr/bin/id", "killed"),
            (deeper.as_str(), "killed"),
        ],
        "{decisions:#?}"
    );
    for d in &decisions {
        assert_eq!(d["policy"]["rule"], "executables");
        assert_eq!(d["policy"]["mode"], "kill");
        assert_eq!(d["policy"]["version"], "kill-1");
        assert_eq!(d["identity"]["agent"]["id"], "runner");
        // Linked to its exec record, which says the process was killed.
        let exec = records
            .iter()
            .find(|r| r["chain"]["sequence"] == d["policy"]["action"]["sequence"])
            .expect("the linked record");
        assert_eq!(action(exec), "exec");
        assert_eq!(exec["chain"]["hash"], d["policy"]["action"]["hash"]);
        let killed = d["policy"]["outcome"] == "killed";
        assert_eq!(
            exec["process"]["policy_killed"].as_bool().unwrap_or(false),
            killed,
            "{exec:#}"
        );
        if killed {
            let pid = pid_of(exec);
            let exit = records
                .iter()
                .find(|r| action(r) == "exit" && pid_of(r) == pid)
                .expect("the killed process's exit");
            assert_eq!(exit["process"]["exit_signal"]["number"], 9, "{exit:#}");
        }
    }
    // Nobody else's exec is flagged.
    let flagged = records
        .iter()
        .filter(|r| r["process"]["policy_killed"] == true)
        .count();
    assert_eq!(flagged, 4);
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir_all(&dir);
}
