//! What a registration may name, on the real socket: pid 1, a kernel thread and the sensor are
//! refused whatever the caller's rights; a process another agent holds by its cgroup is only
//! taken over with `--override`, which the record names; `--list` names methods.
use std::{io::Write as _, process::Command};

use sensor_tests::{Sensor, Value, action, cgroup2_root, scratch_dir, sensor_binary};

#[test]
fn pid_1_kernel_threads_the_sensor_and_a_held_process_are_refused_unless_overridden() {
    let dir = scratch_dir("registration-guards");
    let socket = dir.join("control.sock");
    let cg_name = format!("agent-sensor-guards-{}", std::process::id());
    let cg = format!("{}/{cg_name}", cgroup2_root());
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: holder\n    selectors: [{{cgroup: /{cg_name}}}]\n  - id: taker\n    selectors: [{{uid: 65531}}]\n"
        ),
    )
    .unwrap();
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let marker = dir.join("after-override");
    // Exec'd inside the cgroup, so the kernel attributes it to `holder` by its cgroup.
    let script = format!(
        "echo $$ > {cg}/cgroup.procs && exec /bin/sh -c 'read x; : > {}; read y' held-shell",
        marker.display()
    );
    let mut shell = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let held = sensor.wait_for("the held shell's exec", |r| {
        action(r) == "exec" && r["process"]["args"][3] == "held-shell"
    });
    assert_eq!(held["identity"]["agent"]["id"], "holder");
    let pid = shell.id().to_string();

    let register = |target: &str, extra: &[&str]| {
        let out = Command::new(sensor_binary())
            .args(["register", "--socket", socket.to_str().unwrap()])
            .args(["--pid", target, "--agent", "taker"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let sensor_pid = sensor.pid().to_string();
    let refusals = [
        ("1", "pid 1 may not be registered"),
        ("2", "process 2 is a kernel thread"),
        (sensor_pid.as_str(), "is the sensor itself"),
    ];
    for (target, why) in refusals {
        for extra in [&[][..], &["--override"][..]] {
            let (ok, reply) = register(target, extra);
            assert!(!ok && reply.contains(why), "{target} {extra:?}: {reply}");
        }
    }
    let (ok, reply) = register(&pid, &[]);
    assert!(
        !ok && reply.contains(&format!(
            "process {pid} is attributed to agent \\\"holder\\\" by cgroup (strong trust)"
        )),
        "{reply}"
    );
    let (ok, reply) = register(&pid, &["--override"]);
    assert!(ok, "{reply}");

    let list = Command::new(sensor_binary())
        .args(["register", "--socket", socket.to_str().unwrap(), "--list"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let mine = list["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["pid"].as_u64() == pid.parse().ok())
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(mine["agent"], "taker");
    assert_eq!(mine["method"], "registration");
    assert_eq!(mine["inherited"], false);

    let mut stdin = shell.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    let after = sensor.wait_for("the overridden shell's file", |r| {
        r["file"]["path"].as_str() == marker.to_str()
    });
    writeln!(stdin, "done").unwrap();
    shell.wait().unwrap();
    let done = sensor.stop();
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(after["identity"]["agent"]["id"], "taker");
    assert_eq!(after["identity"]["attribution"]["method"], "registration");

    let requests: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "agent_registration")
        .collect();
    assert_eq!(requests.len(), 9, "{requests:#?}");
    let granted: Vec<&&Value> = requests
        .iter()
        .filter(|r| r["registration"]["granted"] == true)
        .collect();
    assert_eq!(granted.len(), 2, "the override and the list: {granted:#?}");
    assert_eq!(granted[0]["registration"]["overrode"], "holder");
    assert_eq!(granted[0]["registration"]["pid"].to_string(), pid);
    for refused in requests
        .iter()
        .filter(|r| r["registration"]["granted"] == false)
    {
        assert_eq!(refused["event"]["outcome"], "failure");
        assert!(refused["registration"]["reason"].is_string(), "{refused}");
        assert!(refused["registration"]["overrode"].is_null(), "{refused}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
