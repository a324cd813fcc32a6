//! Process lifecycle, end to end: the real sensor with the real kernel programs, watching
//! processes these tests start with known arguments, checked field by field.
use std::{
    ffi::OsStr,
    fmt::Write as _,
    os::unix::{ffi::OsStrExt as _, process::ExitStatusExt as _},
    process::{Command, Stdio},
};

use sensor_tests::{Sensor, Value, action, inode, is, pid_of};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

fn my_cgroup_id() -> u64 {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup v2 line");
    inode(&format!("{}{path}", sensor_tests::cgroup2_root()))
}

/// The absolute path with symlinks resolved (/bin is a link to /usr/bin on merged-/usr systems).
fn real(path: &str) -> String {
    std::fs::canonicalize(path)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn args_of(r: &Value) -> Vec<String> {
    r["process"]["args"]
        .as_array()
        .unwrap_or_else(|| panic!("no args: {r}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn exec_and_exit_with_hostile_argv_are_reported_exactly() {
    let sensor = Sensor::start(&["--all-processes"]);
    let argv: Vec<&[u8]> = vec![
        b"exit",
        b"3",
        b"two words",
        b"quote\"d 'single'",
        b"new\nline\ttab",
        "ünïcødé ✓".as_bytes(),
        b"bad\xff\xfeutf8",
        b"",
        b"{\"event\":{\"action\":\"forged\"}}",
    ];
    let status = Command::new(HELPER)
        .args(argv.iter().map(|a| OsStr::from_bytes(a)))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // The child's pid is not known until it ran; find its exec by its unique argv.
    let exec = sensor.wait_for("the helper's exec", |r| {
        action(r) == "exec" && r["process"]["args"][3] == "two words"
    });
    let pid = pid_of(&exec) as u32;
    let exit = sensor.wait_for("the helper's exit", |r| is(r, "exit", pid));
    let done = sensor.stop();

    let p = &exec["process"];
    assert_eq!(p["executable"], HELPER);
    assert_eq!(
        p["name"], "sensor-test-hel",
        "comm is cut at 15 bytes by the kernel"
    );
    assert_eq!(p["thread"]["id"], u64::from(pid));
    let mut expected: Vec<String> = vec![HELPER.to_owned()];
    expected.extend(argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()));
    assert_eq!(args_of(&exec), expected);
    assert_eq!(p["args_count"], 10);
    assert!(
        p.get("args_truncated").is_none(),
        "short argv is not truncated: {p}"
    );
    // The invalid UTF-8 argument keeps its exact bytes; the others need none.
    let hex = p["hex"]["args"]
        .as_array()
        .expect("hex args for invalid UTF-8");
    assert_eq!(hex[7], "626164fffe75746638");
    assert!(hex.iter().enumerate().all(|(i, h)| i == 7 || h.is_null()));
    // The test process (this one) is the parent.
    assert_eq!(p["parent"]["pid"], u64::from(std::process::id()));
    assert_eq!(p["user"]["id"], "0");
    assert_eq!(p["real_user"]["id"], "0");
    assert_eq!(p["group"]["id"], "0");
    assert_eq!(exec["user"]["id"], "0");
    assert_eq!(p["cgroup"]["id"], my_cgroup_id());
    assert_eq!(p["namespaces"]["pid"], inode("/proc/self/ns/pid"));
    assert_eq!(p["namespaces"]["mnt"], inode("/proc/self/ns/mnt"));
    assert!(p["start"].as_str().unwrap() <= exec["@timestamp"].as_str().unwrap());
    assert_eq!(exec["event"]["kind"], "event");
    assert_eq!(exec["event"]["category"][0], "process");
    assert_eq!(exec["event"]["type"][0], "start");
    assert_eq!(exec["schema_version"], "0.2");
    assert!(exec["host"]["name"].is_string() && exec["host"]["boot_id"].is_string());

    // The exit names the same process and carries its code.
    assert_eq!(exit["process"]["entity_id"], p["entity_id"]);
    assert_eq!(exit["process"]["exit_code"], 3);
    assert!(exit["process"].get("exit_signal").is_none());
    assert_eq!(exit["process"]["executable"], HELPER);
    assert_eq!(exit["event"]["type"][0], "end");
    assert!(exit["process"]["end"].is_string());
    // The forged JSON stayed an argument: no record has the forged action.
    assert!(done.records.iter().all(|r| action(r) != "forged"));
}

/// The exec record carries the directory the program starts in, byte for byte, however
/// hostile its name; one deeper than the kernel's walk is flagged, its lower part kept.
#[test]
fn the_working_directory_at_exec_is_exact_and_a_deep_one_is_flagged() {
    let base = sensor_tests::scratch_dir("cwd");
    let hostile = base.join(OsStr::from_bytes(b"new\nline \"q\" {\"x\":1} bad\xff\xfe"));
    std::fs::create_dir_all(&hostile).unwrap();
    let mut deep = base.join("deep");
    for _ in 0..70 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let sensor = Sensor::start(&["--all-processes"]);
    for (dir, mark) in [(&hostile, "cwd-hostile"), (&deep, "cwd-deep")] {
        let status = Command::new(HELPER)
            .args(["exit", "0", mark])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let exec_of = |mark: &str| {
        sensor.wait_for(mark, |r| {
            action(r) == "exec" && r["process"]["args"][3] == mark
        })
    };
    let (hostile_exec, deep_exec) = (exec_of("cwd-hostile"), exec_of("cwd-deep"));
    sensor.stop();

    let p = &hostile_exec["process"];
    let bytes = hostile.as_os_str().as_bytes();
    assert_eq!(
        p["working_directory"],
        String::from_utf8_lossy(bytes).as_ref(),
        "{p}"
    );
    let hex = bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    assert_eq!(p["hex"]["working_directory"], hex.as_str(), "{p}");
    assert!(p.get("working_directory_truncated").is_none(), "{p}");

    let p = &deep_exec["process"];
    assert_eq!(p["working_directory_truncated"], true, "{p}");
    let kept = p["working_directory"].as_str().unwrap();
    assert!(
        deep.to_str().unwrap().ends_with(kept) && kept.ends_with("/d/d/d"),
        "{kept}"
    );
}

#[test]
fn argv_longer_than_the_bound_is_cut_and_flagged() {
    let config = std::env::temp_dir().join("agent-sensor-test-args.toml");
    std::fs::write(&config, "[observe]\nargs_max_bytes = 512\n").unwrap();
    let sensor = Sensor::start(&["--all-processes", "--config", config.to_str().unwrap()]);
    let long = "x".repeat(2000);
    let status = Command::new(HELPER)
        .args(["exit", "0", "long-argv-marker", &long, "after"])
        .status()
        .unwrap();
    assert!(status.success());
    let exec = sensor.wait_for("the helper's exec", |r| {
        action(r) == "exec" && r["process"]["args"][3] == "long-argv-marker"
    });
    sensor.stop();
    let p = &exec["process"];
    assert_eq!(p["args_truncated"], true, "{p}");
    assert_eq!(
        p["args_count"], 6,
        "argc counts every argument, even those cut off"
    );
    let args = args_of(&exec);
    // The copy is exactly the bound: NUL-separated bytes of the first arguments.
    let copied: usize = args.iter().map(|a| a.len() + 1).sum::<usize>() - 1;
    assert_eq!(copied, 512, "{args:?}");
    assert_eq!(args[..4], [HELPER, "exit", "0", "long-argv-marker"]);
    assert!(args[4].chars().all(|c| c == 'x') && args[4].len() < 2000);
}

#[test]
fn a_process_killed_by_sigkill_reports_the_signal() {
    let sensor = Sensor::start(&["--all-processes"]);
    let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    sensor.wait_for("sleep's exec", |r| is(r, "exec", pid));
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let exit = sensor.wait_for("sleep's exit", |r| is(r, "exit", pid));
    sensor.stop();
    let p = &exit["process"];
    assert_eq!(p["exit_signal"]["number"], 9);
    assert_eq!(p["exit_signal"]["name"], "SIGKILL");
    assert!(p["exit_signal"].get("core_dumped").is_none());
    assert!(
        p.get("exit_code").is_none(),
        "a killed process has no exit code: {p}"
    );
    assert_eq!(p["executable"], real("/bin/sleep"));
}

#[test]
fn fork_without_exec_is_a_new_process() {
    let sensor = Sensor::start(&["--all-processes"]);
    let out = Command::new(HELPER).arg("fork").output().unwrap();
    assert!(out.status.success());
    let child: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let fork = sensor.wait_for("the fork", |r| is(r, "fork", child));
    let exit = sensor.wait_for("the forked child's exit", |r| is(r, "exit", child));
    let helper_exec = sensor.wait_for("the helper's exec", |r| {
        action(r) == "exec"
            && r["process"]["args"][1] == "fork"
            && r["process"]["executable"] == HELPER
    });
    let done = sensor.stop();
    let helper_pid = pid_of(&helper_exec);
    let p = &fork["process"];
    assert_eq!(p["thread"]["id"], u64::from(child));
    assert_eq!(p["parent"]["pid"], helper_pid);
    assert_eq!(
        p["parent"]["entity_id"],
        helper_exec["process"]["entity_id"]
    );
    assert_ne!(p["entity_id"], helper_exec["process"]["entity_id"]);
    // It inherits the parent's image.
    assert_eq!(p["executable"], HELPER);
    assert_eq!(exit["process"]["entity_id"], p["entity_id"]);
    assert_eq!(exit["process"]["exit_code"], 7);
    assert!(
        !done.records.iter().any(|r| is(r, "exec", child)),
        "the child never exec'd"
    );
}

#[test]
fn a_thread_is_not_reported_as_a_process() {
    let sensor = Sensor::start(&["--all-processes"]);
    let out = Command::new(HELPER).arg("thread").output().unwrap();
    assert!(out.status.success());
    let tid: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = sensor.wait_for("thread_start", |r| {
        action(r) == "thread_start" && r["process"]["thread"]["id"] == tid
    });
    let end = sensor.wait_for("thread_exit", |r| {
        action(r) == "thread_exit" && r["process"]["thread"]["id"] == tid
    });
    let helper_pid = pid_of(&start);
    let exec = sensor.wait_for("the helper's exec", |r| is(r, "exec", helper_pid as u32));
    let helper_exit = sensor.wait_for("the helper's exit", |r| is(r, "exit", helper_pid as u32));
    let done = sensor.stop();
    assert_ne!(helper_pid, tid, "a thread's process is its creator's");
    assert_eq!(start["process"]["entity_id"], exec["process"]["entity_id"]);
    assert_eq!(end["process"]["entity_id"], exec["process"]["entity_id"]);
    assert!(
        end["process"].get("end").is_none(),
        "a thread exit does not end the process"
    );
    assert_eq!(helper_exit["process"]["exit_code"], 0);
    // No process-level record names the thread id as a process.
    assert!(!done.records.iter().any(|r| pid_of(r) == tid));
    assert!(!done.records.iter().any(|r| {
        ["fork", "exit", "exec"].contains(&action(r)) && r["process"]["thread"]["id"] == tid
    }));
}

#[test]
fn a_burst_of_2000_short_lived_execs_is_captured_exactly() {
    const N: usize = 2000;
    let sensor = Sensor::start(&["--all-processes"]);
    // cargo test's LD_LIBRARY_PATH would make each /bin/true probe ~100 library paths: real
    // activity, but not what this test measures.
    let mut helper = Command::new(HELPER)
        .env_remove("LD_LIBRARY_PATH")
        .args(["spawn", &N.to_string(), "/bin/true"])
        .spawn()
        .unwrap();
    let helper_pid = helper.id();
    assert!(helper.wait().unwrap().success());
    let from_helper = |r: &Value| r["process"]["parent"]["pid"] == u64::from(helper_pid);
    let execs = sensor.wait_for_count("execs of /bin/true", N, |r| {
        action(r) == "exec"
            && from_helper(r)
            && r["process"]["executable"] == real("/bin/true").as_str()
    });
    let done = sensor.stop();
    assert_eq!(execs.len(), N, "exactly one exec record per exec");
    for e in &execs {
        assert_eq!(
            e["process"]["args"],
            serde_json::json!(["/bin/true"]),
            "{e}"
        );
        assert_eq!(e["process"]["name"], "true");
        if real("/bin/true") != "/bin/true" {
            assert_eq!(
                e["process"]["exec_path"], "/bin/true",
                "the path as passed to exec"
            );
        }
    }
    let forks = done
        .records
        .iter()
        .filter(|r| action(r) == "fork" && from_helper(r))
        .count();
    assert_eq!(forks, N);
    // By entity id, not pid: pid_max is 32768 here, and on a busy host another process can
    // take one of these pids and exit before the sensor stops.
    let ids: std::collections::HashSet<&Value> =
        execs.iter().map(|e| &e["process"]["entity_id"]).collect();
    assert_eq!(ids.len(), N, "every exec is a distinct process");
    let exits: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| action(r) == "exit" && ids.contains(&r["process"]["entity_id"]))
        .collect();
    assert_eq!(exits.len(), N);
    assert!(exits.iter().all(|r| r["process"]["exit_code"] == 0));
    assert!(
        !done.records.iter().any(|r| action(r) == "gap"),
        "no loss at this rate"
    );
}

#[test]
fn processes_running_before_the_start_are_in_the_snapshot() {
    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id();
    // Let it exec before the sensor starts.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let sensor = Sensor::start(&["--all-processes"]);
    let snap = sensor.wait_for("the sleeper's snapshot", |r| is(r, "snapshot", pid));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let exit = sensor.wait_for("the sleeper's exit", |r| is(r, "exit", pid));
    sensor.stop();
    let p = &snap["process"];
    assert_eq!(snap["event"]["kind"], "state");
    assert_eq!(p["executable"], real("/bin/sleep"));
    assert_eq!(p["args"], serde_json::json!(["/bin/sleep", "30"]));
    assert_eq!(p["parent"]["pid"], u64::from(std::process::id()));
    assert_eq!(p["cgroup"]["id"], my_cgroup_id());
    // The kernel's exit names the same entity as procfs did.
    assert_eq!(exit["process"]["entity_id"], p["entity_id"]);
    assert_eq!(exit["process"]["executable"], real("/bin/sleep"));
}

#[test]
fn pid_mode_observes_a_process_tree_and_nothing_else() {
    use std::io::Write as _;
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "read line; /bin/true tracked-marker; read line"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sh_pid = shell.id();
    let sensor = Sensor::start(&["--pid", &sh_pid.to_string()]);
    let snap = sensor.wait_for("the tracked shell's snapshot", |r| {
        is(r, "snapshot", sh_pid)
    });
    let mut stdin = shell.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    let exec = sensor.wait_for("the tracked child's exec", |r| {
        action(r) == "exec" && r["process"]["args"][1] == "tracked-marker"
    });
    assert!(
        Command::new("/bin/true")
            .arg("untracked-marker")
            .status()
            .unwrap()
            .success()
    );
    writeln!(stdin, "done").unwrap();
    shell.wait().unwrap();
    sensor.wait_for("the shell's exit", |r| is(r, "exit", sh_pid));
    let done = sensor.stop();
    assert_eq!(exec["process"]["parent"]["pid"], u64::from(sh_pid));
    assert_eq!(
        exec["process"]["parent"]["entity_id"],
        snap["process"]["entity_id"]
    );
    assert!(
        !done
            .records
            .iter()
            .any(|r| r["process"]["args"][1] == "untracked-marker"),
        "a process outside the tree was reported"
    );
    let snapshots = done
        .records
        .iter()
        .filter(|r| action(r) == "snapshot")
        .count();
    assert_eq!(snapshots, 1, "only the tracked tree is in the snapshot");
}

#[test]
fn a_flood_the_daemon_cannot_take_is_counted_exactly_and_later_events_still_arrive() {
    use std::io::Write as _;
    const N: u64 = 2000;
    // A 64 KiB ring buffer holds about 200 processes' records; the daemon is stopped while
    // 2000 run, so most of them cannot be delivered and must be counted instead.
    let config = std::env::temp_dir().join("agent-sensor-test-flood.toml");
    std::fs::write(
        &config,
        "[kernel]\nring_buffer_bytes = 65536\nwakeup_bytes = 32768\n",
    )
    .unwrap();
    let script = format!(
        "read x; i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done; echo flooded; read y; /bin/true after-flood"
    );
    let mut shell = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sh_pid = shell.id();
    let sensor = Sensor::start(&[
        "--pid",
        &sh_pid.to_string(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let mut stdin = shell.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(shell.stdout.take().unwrap());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGSTOP) };
    writeln!(stdin, "flood").unwrap();
    // The shell says when all N have run (while the sensor is still stopped).
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "flooded");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGCONT) };
    sensor.wait_for("a gap record", |r| action(r) == "gap");
    writeln!(stdin, "after").unwrap();
    sensor.wait_for("the exec after the flood", |r| {
        action(r) == "exec" && r["process"]["args"][1] == "after-flood"
    });
    shell.wait().unwrap();
    let done = sensor.stop();

    let lost = |kind: &str| -> u64 {
        done.records
            .iter()
            .filter(|r| action(r) == "gap")
            .map(|r| r["gap"]["by_kind"][kind].as_u64().unwrap_or(0))
            .sum()
    };
    let in_flood = |r: &&Value| r["process"]["parent"]["pid"] == u64::from(sh_pid);
    let execs = done
        .records
        .iter()
        .filter(|r| action(r) == "exec" && r["process"]["args"] == serde_json::json!(["/bin/true"]))
        .filter(in_flood)
        .count() as u64;
    let forks = done
        .records
        .iter()
        .filter(|r| action(r) == "fork")
        .filter(in_flood)
        .count() as u64;
    assert!(lost("exec") > 0, "the flood must overflow the ring buffer");
    assert_eq!(
        execs + lost("exec"),
        N,
        "every exec is delivered or counted"
    );
    // One more fork for the after-flood process, which was delivered.
    assert_eq!(
        forks + lost("fork"),
        N + 1,
        "every fork is delivered or counted"
    );
    let stop = done.records.last().unwrap();
    let total: u64 = done
        .records
        .iter()
        .filter(|r| action(r) == "gap")
        .map(|r| r["gap"]["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(stop["sensor"]["lifecycle"]["kernel_lost"], total);
    assert!(
        done.stderr.contains("events lost"),
        "the loss is logged too: {}",
        done.stderr
    );
}

#[test]
fn a_hostile_comm_and_a_4_kib_path_come_out_exact() {
    // A path just under PATH_MAX: 15 directories of 250 characters, then the program.
    let root = std::env::temp_dir().join("agent-sensor-long-path");
    let _ = std::fs::remove_dir_all(&root);
    let mut dir = root.clone();
    for i in 0..15 {
        dir.push(format!("{i:02}{}", "d".repeat(248)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("helper\n\"quoted\"");
    std::fs::copy(HELPER, &program).unwrap();
    let path = program.to_str().unwrap().to_owned();
    assert!(path.len() > 3800 && path.len() < 4096, "{}", path.len());

    let sensor = Sensor::start(&["--all-processes"]);
    let out = Command::new(&program)
        .args(["rename", "ev\"il\n{}\\x"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let child: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exec = sensor.wait_for("the long-path exec", |r| {
        action(r) == "exec" && r["process"]["executable"] == path.as_str()
    });
    let fork = sensor.wait_for("the renamed process's fork", |r| is(r, "fork", child));
    sensor.stop();
    let _ = std::fs::remove_dir_all(&root);
    assert!(exec["process"].get("hex").is_none());
    assert_eq!(exec["process"]["args"][0], path.as_str());
    assert_eq!(
        fork["process"]["name"], "ev\"il\n{}\\x",
        "the comm set with PR_SET_NAME, exactly"
    );
    assert_eq!(fork["process"]["executable"], path.as_str());
}

#[test]
fn a_full_tracked_process_map_is_counted_as_a_gap() {
    use std::io::Write as _;
    let config = std::env::temp_dir().join("agent-sensor-test-tracked.toml");
    std::fs::write(&config, "[kernel]\ntracked_processes = 16\n").unwrap();
    // 40 children alive at once, in a tree the map (16 entries) cannot hold.
    let mut shell = Command::new("/bin/sh")
        .args([
            "-c",
            "read x; i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; wait",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sensor = Sensor::start(&[
        "--pid",
        &shell.id().to_string(),
        "--config",
        config.to_str().unwrap(),
    ]);
    writeln!(shell.stdin.take().unwrap(), "go").unwrap();
    assert!(shell.wait().unwrap().success());
    let gap = sensor.wait_for("a tracking gap", |r| {
        action(r) == "gap"
            && r["gap"]["by_kind"]["tracking"]
                .as_u64()
                .is_some_and(|n| n > 0)
    });
    let done = sensor.stop();
    let tracked_execs = done
        .records
        .iter()
        .filter(|r| {
            action(r) == "exec" && r["process"]["args"] == serde_json::json!(["sleep", "1"])
        })
        .count() as u64;
    let untracked: u64 = done
        .records
        .iter()
        .filter(|r| action(r) == "gap")
        .map(|r| r["gap"]["by_kind"]["tracking"].as_u64().unwrap_or(0))
        .sum();
    assert!(untracked > 0, "{gap}");
    // Every child was either tracked (its own exec reported) or counted: none vanished silently.
    assert_eq!(
        tracked_execs + untracked,
        40,
        "{tracked_execs} reported + {untracked} counted"
    );
}
