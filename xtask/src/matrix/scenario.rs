//! The host side of the scenario: reads what `kernel-matrix-scenario` left in a kernel's
//! results directory and checks the sensor's records against it, exactly: an exec with its
//! argv and exit code, an open with its absolute path, a connect that succeeded and one that
//! was refused, a five-level tree of short-lived processes attributed to the agent by cgroup,
//! no loss, and, where the kernel has BPF LSM, the same connect records from the LSM hook as
//! from the tracepoint path, and an agent's forbidden exec and opens refused (elsewhere: the
//! sensor refusing such rules). A check that could not run says why; nothing is skipped silently.
use std::{fs, path::Path};

use serde_json::Value;

pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What one kernel showed.
pub struct Outcome {
    pub checks: Vec<Check>,
    /// `uname -r` inside the VM.
    pub release: String,
    /// Probe features the kernel offers / lacks (with the probe's reason).
    pub offers: Vec<String>,
    pub lacks: Vec<String>,
    /// The sensor's programs as the probe verified them: stack, instructions, or why refused.
    pub programs: Vec<String>,
    /// The active LSMs, as the kernel lists them.
    pub lsm: String,
    /// Seconds: from boot to the scenario, the probe, the sensor's start (load + attach).
    pub timings: Vec<(&'static str, f64)>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        passed: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        passed: false,
        detail: detail.into(),
    }
}

fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or("")
}

/// The scenario's checks, in the order the report lists them.
const CHECKS: &[&str] = &[
    "exec",
    "open",
    "connect",
    "connect refused",
    "process tree",
    "no loss",
    "sources agree",
    "enforce",
    "kill",
    "enforce closed",
    "kill closed",
];

pub fn check(dir: &Path) -> Outcome {
    let mut out = Outcome {
        checks: Vec::new(),
        release: String::new(),
        offers: Vec::new(),
        lacks: Vec::new(),
        programs: Vec::new(),
        lsm: String::new(),
        timings: Vec::new(),
    };
    let facts: Value = match fs::read_to_string(dir.join("facts.json")) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(e) => {
            out.checks.push(fail(
                "scenario",
                format!("no facts.json ({e}): the scenario did not run to its end"),
            ));
            return out;
        }
    };
    let kernel = &facts["kernel"];
    kernel["release"]
        .as_str()
        .unwrap_or("?")
        .clone_into(&mut out.release);
    kernel["lsm"]
        .as_str()
        .unwrap_or("unknown (securityfs is not mounted)")
        .clone_into(&mut out.lsm);
    if let Some(up) = kernel["uptime_at_start"]
        .as_str()
        .and_then(|u| u.parse().ok())
    {
        out.timings.push(("boot", up));
    }
    if let Some(e) = facts["error"].as_str() {
        out.checks
            .push(fail("scenario", format!("the scenario failed: {e}")));
    }

    // The probe: what the kernel offers, by the sensor's own reckoning.
    let steps = &facts["steps"];
    if let Some(s) = steps["probe"]["seconds"].as_f64() {
        out.timings.push(("probe", s));
    }
    let probe: Option<Value> = fs::read_to_string(dir.join("probe.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    // `probe --json` is the feature list, or an object with it and the sensor's programs.
    let features = probe
        .as_ref()
        .and_then(|p| p.as_array().or_else(|| p["features"].as_array()).cloned());
    for f in features.iter().flatten() {
        let name = f["name"].as_str().unwrap_or("?").to_owned();
        if f["available"] == true {
            out.offers.push(name);
        } else {
            out.lacks.push(format!(
                "{name} ({})",
                one_line(f["detail"].as_str().unwrap_or("no detail"))
            ));
        }
    }
    match (&features, steps["probe"]["exit_code"].as_i64()) {
        _ if steps["probe"].is_null() => out
            .checks
            .push(fail("probe", "not run: the scenario stopped before it")),
        (Some(features), Some(0)) => out.checks.push(pass(
            "probe",
            format!("{} of {} features", out.offers.len(), features.len()),
        )),
        (_, code) => out.checks.push(fail(
            "probe",
            format!(
                "agent-sensor probe --json exited {}: {}",
                code.map_or("by a signal".to_owned(), |c| c.to_string()),
                last_line(&dir.join("probe.stderr"))
            ),
        )),
    }
    if let Some(programs) = probe.as_ref().and_then(|p| p["programs"].as_array()) {
        out.programs = programs.iter().map(program_line).collect();
        out.checks.push(check_budgets(programs));
    }

    // The sensor's start: its programs loaded and attached.
    if let Some(s) = steps["sensor_start"]["seconds"].as_f64() {
        out.timings.push(("sensor start", s));
    }
    if steps["sensor_start"].is_null() {
        out.checks.push(fail(
            "sensor loads",
            "not run: the scenario stopped before it",
        ));
        for name in CHECKS {
            out.checks
                .push(fail(name, "not run: the scenario stopped before it"));
        }
        return out;
    }
    if steps["sensor_start"]["started"] != true {
        let why = sensor_error(&dir.join("sensor.stderr"));
        out.checks.push(fail(
            "sensor loads",
            format!(
                "no sensor_start record (exit: {}): {why}",
                steps["sensor_stop"]["exit"].as_str().unwrap_or("?")
            ),
        ));
        for name in CHECKS {
            out.checks.push(fail(
                name,
                "not run: the sensor did not start on this kernel",
            ));
        }
        return out;
    }
    let records: Vec<Value> = fs::read_to_string(dir.join("records.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // What the sensor chose on this kernel: the hooks beyond its syscall tracepoints (BPF LSM
    // where the kernel has it) by name, the syscall tracepoints by number.
    let attached: Vec<&str> = records
        .iter()
        .find(|r| action(r) == "sensor_start")
        .and_then(|r| r["sensor"]["lifecycle"]["programs"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let (syscalls, hooks): (Vec<&str>, Vec<&str>) =
        attached.iter().partition(|p| p.starts_with("syscall:"));
    out.checks.push(pass(
        "sensor loads",
        format!(
            "{} attached: {} and {} syscall tracepoints",
            attached.len(),
            hooks.join(", "),
            syscalls.len()
        ),
    ));
    let w = &facts["workload"];
    out.checks.push(check_exec(&records, w));
    out.checks.push(check_open(&records, w));
    out.checks
        .push(check_connect(&records, &w["connect"], "connect", true));
    out.checks.push(check_connect(
        &records,
        &w["refused"],
        "connect refused",
        false,
    ));
    out.checks.push(check_tree(&records, w));
    out.checks.push(check_no_loss(&records, steps));
    // BPF LSM as the probe found it: `bpf` can be in the active list of a kernel that refuses
    // BPF LSM programs (this machine kind's).
    let bpf_lsm = out.offers.iter().any(|f| f == "lsm");
    out.checks.push(check_sources(dir, &records, w, bpf_lsm));
    out.checks.push(check_enforce(dir, &w["enforce"], bpf_lsm));
    out.checks.push(check_kill(dir, &w["kill"]));
    out.checks
        .push(check_enforce_closed(dir, &w["closed"], bpf_lsm));
    out.checks
        .push(check_kill_closed(dir, &w["kill_closed"], &out.release));
    out
}

/// What one shell of a fail-closed run answered, against what is wanted: `Err` names the
/// phase, the shell and the first request that differs.
fn answered(run: &Value, phase: &str, who: &str, want: &[(&str, &str)]) -> Result<(), String> {
    for (name, v) in want {
        let got = run[phase][who][name].as_str();
        if got != Some(*v) {
            return Err(format!(
                "{phase}: {who} {name} = {} (want {v})",
                got.unwrap_or("missing")
            ));
        }
    }
    Ok(())
}

/// Executables and files rules in enforce mode with `fail_closed: true`. Where the probe found
/// BPF LSM: agent `matrix-closed` (fail-closed rules), `matrix-open` (a files rule in enforce
/// mode without it) and a bystander, each a long-lived shell, asked the same things while the
/// sensor runs (the BPF LSM links pinned with the process-tracking ones), after SIGKILL (both
/// agents still refused: nobody took the rules out), after a restart (the earlier run's pins
/// replaced by the new run's), after SIGTERM (only the fail-closed rules left: `matrix-open`
/// goes through) and after `rm -r` of the pin directory (nothing refused). Elsewhere the
/// sensor refused to start, naming BPF LSM.
fn check_enforce_closed(dir: &Path, c: &Value, bpf_lsm: bool) -> Check {
    const NAME: &str = "enforce closed";
    if c.is_null() {
        return fail(NAME, "not run: the scenario stopped before it");
    }
    let stderr = dir.join("closed-sensor.stderr");
    if !bpf_lsm {
        let why = sensor_error(&stderr);
        return match (
            c["started"].as_bool(),
            why.contains("rules in mode enforce need BPF LSM"),
        ) {
            (Some(false), true) => pass(NAME, format!("refused without BPF LSM: {why}")),
            (Some(false), false) => fail(NAME, format!("the sensor did not start: {why}")),
            _ => fail(
                NAME,
                "the sensor started with enforce rules on a kernel without BPF LSM",
            ),
        };
    }
    if c["started"] != true {
        return fail(
            NAME,
            format!(
                "the sensor with fail-closed enforce rules did not start ({}): {}",
                c["exit"].as_str().unwrap_or("?"),
                sensor_error(&stderr)
            ),
        );
    }
    if c["restarted"] != true {
        return fail(
            NAME,
            format!(
                "the restart did not start: {}",
                sensor_error(&dir.join("closed2-sensor.stderr"))
            ),
        );
    }
    // `STATUS:OUTPUT`: the helper prints the errno (1 is EPERM); an exec that succeeded
    // prints nothing.
    let refused = [
        ("read_allowed", "0:0"),
        ("read_forbidden", "0:1"),
        ("write_forbidden", "0:1"),
        ("exec_allowed", "0:"),
        ("exec_forbidden", "0:1"),
    ];
    let free = [
        ("read_allowed", "0:0"),
        ("read_forbidden", "0:0"),
        ("write_forbidden", "0:0"),
        ("exec_allowed", "0:"),
        ("exec_forbidden", "0:"),
    ];
    let (open_refused, open_free) = ([("read_forbidden", "0:1")], [("read_forbidden", "0:0")]);
    let checked = (|| {
        for phase in ["running", "after_sigkill", "after_restart", "after_sigterm"] {
            answered(c, phase, "closed", &refused)?;
            answered(c, phase, "bystander", &free)?;
        }
        for phase in ["running", "after_sigkill", "after_restart"] {
            answered(c, phase, "open", &open_refused)?;
        }
        answered(c, "after_sigterm", "open", &open_free)?;
        answered(c, "after_release", "closed", &free)?;
        answered(c, "after_release", "open", &open_free)
    })();
    if let Err(why) = checked {
        return fail(NAME, why);
    }
    // One run pinned at a time: the LSM checks with the process tracking, the restart's run
    // in place of the first; after the release, none.
    let runs = |phase: &str| -> Vec<(String, Vec<String>)> {
        c[phase]["pins"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(run, pins)| {
                let pins = pins
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect();
                (run.clone(), pins)
            })
            .collect()
    };
    let (first, second) = (runs("running"), runs("after_restart"));
    for (phase, pinned) in [("running", &first), ("after_restart", &second)] {
        let [(_, pins)] = pinned.as_slice() else {
            return fail(NAME, format!("{phase}: pinned runs {pinned:?}, want one"));
        };
        for want in [
            "lsm_bprm_check",
            "lsm_file_open",
            "sched_process_exec",
            "sched_process_fork",
            "sched_process_exit",
        ] {
            if !pins.iter().any(|p| p == want) {
                return fail(NAME, format!("{phase}: {want} not pinned: {pins:?}"));
            }
        }
    }
    if first[0].0 == second[0].0 || runs("after_sigterm") != second {
        return fail(
            NAME,
            format!(
                "pinned runs: {:?} running, {:?} after the restart, {:?} after SIGTERM (want \
                 the restart's in place of the first's, kept at SIGTERM)",
                first,
                second,
                runs("after_sigterm")
            ),
        );
    }
    if !runs("after_release").is_empty() || c["released"] != Value::Null {
        return fail(NAME, format!("the release: {}", c["released"]));
    }
    if !fs::read_to_string(dir.join("closed2-sensor.stderr"))
        .unwrap_or_default()
        .contains("stay enforced after the sensor stops")
    {
        return fail(
            NAME,
            "the restart's stop did not say the rules stay enforced",
        );
    }
    pass(
        NAME,
        "EPERM for the fail-closed agent's forbidden read, write and exec while running, after \
         SIGKILL, after a restart (pins taken over) and after SIGTERM (the other agent's \
         rule released), allowed ones and the bystander unaffected; rm -r of the pins released",
    )
}

/// A files rule in kill mode with `fail_closed: true`. Before Linux 5.15 (tracepoints have
/// no BPF links to pin): the sensor refused to start, naming the agent's rule and what to do,
/// and left no pins. Later kernels: the agent's forbidden read died of SIGKILL (137) while
/// the sensor ran and after it was SIGKILLed, its allowed read and a bystander's went through,
/// and `rm -r` of the pin directory released it.
fn check_kill_closed(dir: &Path, k: &Value, release: &str) -> Check {
    const NAME: &str = "kill closed";
    if k.is_null() {
        return fail(NAME, "not run: the scenario stopped before it");
    }
    let stderr = dir.join("kill-closed-sensor.stderr");
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) < (5, 15) {
        let why = sensor_error(&stderr);
        let named = why.contains(&format!(
            "fail_closed on the files rule in mode kill of agent \"{CLOSED}\""
        )) && why.contains("remove fail_closed from that rule");
        let leftover = k["pins"].as_object().is_some_and(|p| !p.is_empty());
        return match (k["started"].as_bool(), named, leftover) {
            (Some(false), true, false) => {
                pass(NAME, format!("refused before 5.15, nothing pinned: {why}"))
            }
            (Some(false), _, true) => fail(NAME, format!("refused, but left pins: {}", k["pins"])),
            (Some(false), false, _) => fail(NAME, format!("refused, but not saying why: {why}")),
            _ => fail(
                NAME,
                "the sensor started with a fail-closed files kill rule before Linux 5.15",
            ),
        };
    }
    if k["started"] != true {
        return fail(
            NAME,
            format!(
                "the sensor with a fail-closed files kill rule did not start ({}): {}",
                k["exit"].as_str().unwrap_or("?"),
                sensor_error(&stderr)
            ),
        );
    }
    let killed = [("read_allowed", "0:0"), ("read_forbidden", "137:")];
    let free = [("read_allowed", "0:0"), ("read_forbidden", "0:0")];
    let checked = answered(k, "running", "agent", &killed)
        .and_then(|()| answered(k, "after_sigkill", "agent", &killed))
        .and_then(|()| answered(k, "after_sigkill", "bystander", &free))
        .and_then(|()| answered(k, "after_release", "agent", &free));
    if let Err(why) = checked {
        return fail(NAME, why);
    }
    let exit_pinned = k["after_sigkill"]["pins"].as_object().is_some_and(|runs| {
        runs.values().any(|pins| {
            pins.as_array()
                .is_some_and(|p| p.iter().any(|x| x == "sys_exit_openat"))
        })
    });
    if !exit_pinned {
        return fail(
            NAME,
            format!("sys_exit_openat not pinned: {}", k["after_sigkill"]["pins"]),
        );
    }
    pass(
        NAME,
        "SIGKILL (137) for the agent's forbidden read while running and after the sensor was \
         SIGKILLed; allowed read and the bystander unaffected; rm -r of the pins released",
    )
}

/// Executables and files rules in kill mode, on every kernel: the agent's forbidden read,
/// write and exec died of SIGKILL (status 137) before returning (the secret's content never
/// printed; the forbidden write's file created, as after the fact, and empty), its allowed
/// ones and a bystander's same commands succeeded; exactly three `killed` decisions, each
/// linked by sequence to the agent's `open` (`file.policy_killed`) or `exec`
/// (`process.policy_killed`) record, whose process's `exit` says signal 9.
fn check_kill(dir: &Path, k: &Value) -> Check {
    const NAME: &str = "kill";
    if k.is_null() {
        return fail(NAME, "not run: the scenario stopped before it");
    }
    if k["started"] != true {
        return fail(
            NAME,
            format!(
                "the sensor with kill rules did not start ({}): {}",
                k["exit"].as_str().unwrap_or("?"),
                sensor_error(&dir.join("kill-sensor.stderr"))
            ),
        );
    }
    let expect = |who: &str, want: &[(&str, &str)]| -> Result<(), String> {
        for (name, v) in want {
            let got = k[who]["results"][name].as_str();
            if got != Some(*v) {
                return Err(format!(
                    "{who}: {name} = {} (want {v}); stderr: {}",
                    got.unwrap_or("missing"),
                    one_line(k[who]["stderr"].as_str().unwrap_or(""))
                ));
            }
        }
        Ok(())
    };
    let checked = expect(
        "as_agent",
        &[
            ("read_allowed", "0"),
            ("read_killed", "137"),
            ("write_allowed", "0"),
            ("write_killed", "137"),
            ("exec_allowed", "0"),
            ("exec_killed", "137"),
        ],
    )
    .and_then(|()| {
        expect(
            "bystander",
            &[
                ("read_allowed", "0"),
                ("read_killed", "0"),
                ("write_allowed", "0"),
                ("write_killed", "0"),
                ("exec_allowed", "0"),
                ("exec_killed", "0"),
            ],
        )
    });
    if let Err(why) = checked {
        return fail(NAME, why);
    }
    if k["as_agent"]["read_secret"] != false || k["bystander"]["read_secret"] != true {
        return fail(
            NAME,
            "the forbidden file's content reached the agent, or not the bystander",
        );
    }
    if k["written_after_agent"] != "" {
        return fail(
            NAME,
            format!(
                "the forbidden write's file after the agent: {} (want created and empty)",
                k["written_after_agent"]
            ),
        );
    }
    let records: Vec<Value> = fs::read_to_string(dir.join("kill-records.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .collect();
    let summary: Vec<String> = decisions
        .iter()
        .map(|d| {
            let p = &d["policy"];
            format!(
                "{} {} {} {}",
                p["rule"].as_str().unwrap_or("?"),
                p["mode"].as_str().unwrap_or("?"),
                p["outcome"].as_str().unwrap_or("?"),
                p["target"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let path = |key: &str| k[key].as_str().unwrap_or("?").to_owned();
    let want = [
        format!("files.read kill killed {}", path("secret")),
        format!("files.write kill killed {}", path("written")),
        format!("executables kill killed {}", path("forbidden")),
    ];
    if summary != want {
        return fail(NAME, format!("decisions {summary:?}, want {want:?}"));
    }
    for d in decisions {
        let seq = &d["policy"]["action"]["sequence"];
        let Some(acted) = records.iter().find(|r| &r["chain"]["sequence"] == seq) else {
            return fail(NAME, format!("no record at the decision's sequence {seq}"));
        };
        let (want_action, flag) = if d["policy"]["rule"] == "executables" {
            ("exec", &acted["process"]["policy_killed"])
        } else {
            ("open", &acted["file"]["policy_killed"])
        };
        let pid = &acted["process"]["pid"];
        let exit_signal = records
            .iter()
            .find(|r| action(r) == "exit" && &r["process"]["pid"] == pid)
            .map(|r| r["process"]["exit_signal"]["number"].clone());
        if action(acted) != want_action
            || flag != true
            || acted["identity"]["agent"]["id"] != KILLER
            || exit_signal != Some(Value::from(9))
        {
            return fail(
                NAME,
                format!(
                    "decision {} links to {acted} (its exit signal: {exit_signal:?})",
                    d["policy"]
                ),
            );
        }
    }
    pass(
        NAME,
        "SIGKILL (137) for the agent's forbidden read (nothing printed), write (file created, \
         empty) and exec, before each returned; allowed ones and the bystander unaffected; \
         three killed decisions linked to flagged records with signal-9 exits",
    )
}

/// Executables and files rules in enforce mode. Where the probe found BPF LSM: the agent's
/// forbidden open for reading, open for writing and exec failed with EPERM, its allowed ones
/// (and a `#!` script judged by its allowed interpreter) succeeded, a bystander's same commands
/// all succeeded; the exec's `exec_denied` record and the failed opens' records are each
/// followed by their `denied` decision, linked by sequence, and nothing else was decided.
/// Elsewhere the sensor refused to start, naming BPF LSM.
fn check_enforce(dir: &Path, e: &Value, bpf_lsm: bool) -> Check {
    const NAME: &str = "enforce";
    let stderr = dir.join("enforce-sensor.stderr");
    if e.is_null() {
        return fail(NAME, "not run: the scenario stopped before it");
    }
    if !bpf_lsm {
        let why = sensor_error(&stderr);
        return match (
            e["started"].as_bool(),
            why.contains("rules in mode enforce need BPF LSM"),
        ) {
            (Some(false), true) => pass(NAME, format!("refused without BPF LSM: {why}")),
            (Some(false), false) => fail(NAME, format!("the sensor did not start: {why}")),
            _ => fail(
                NAME,
                "the sensor started with enforce rules on a kernel without BPF LSM",
            ),
        };
    }
    if e["started"] != true {
        return fail(
            NAME,
            format!(
                "the sensor with enforce rules did not start ({}): {}",
                e["exit"].as_str().unwrap_or("?"),
                sensor_error(&stderr)
            ),
        );
    }
    let results = |who: &str| -> Vec<(String, String)> {
        e[who]["results"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
            .collect()
    };
    let expect = |who: &str, want: &[(&str, &str)]| -> Result<(), String> {
        let got = results(who);
        for (k, v) in want {
            let found = got.iter().find(|(n, _)| n == k).map(|(_, r)| r.as_str());
            if found != Some(*v) {
                return Err(format!(
                    "{who}: {k} = {} (want {v}); stderr: {}",
                    found.unwrap_or("missing"),
                    one_line(e[who]["stderr"].as_str().unwrap_or(""))
                ));
            }
        }
        Ok(())
    };
    // 1 is EPERM; an exec that succeeded prints nothing; the script exits 5.
    if let Err(why) = expect(
        "as_agent",
        &[
            ("read_allowed", "0"),
            ("read_denied", "1"),
            ("write_allowed", "0"),
            ("write_denied", "1"),
            ("exec_allowed", "0"),
            ("exec_denied", "1"),
            ("script", "5"),
        ],
    )
    .and_then(|()| {
        expect(
            "bystander",
            &[
                ("read_allowed", "0"),
                ("read_denied", "0"),
                ("write_allowed", "0"),
                ("write_denied", "0"),
                ("exec_allowed", "0"),
                ("exec_denied", ""),
                ("script", "5"),
            ],
        )
    }) {
        return fail(NAME, why);
    }
    let records: Vec<Value> = fs::read_to_string(dir.join("enforce-records.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let programs = records
        .iter()
        .find(|r| action(r) == "sensor_start")
        .map_or(Value::Null, |r| {
            r["sensor"]["lifecycle"]["programs"].clone()
        });
    for hook in ["lsm:bprm_check_security", "lsm:file_open"] {
        if !programs
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == hook))
        {
            return fail(NAME, format!("{hook} not attached: {programs}"));
        }
    }
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|r| action(r) == "policy_decision")
        .collect();
    let summary: Vec<String> = decisions
        .iter()
        .map(|d| {
            let p = &d["policy"];
            format!(
                "{} {} {} {}",
                p["rule"].as_str().unwrap_or("?"),
                p["mode"].as_str().unwrap_or("?"),
                p["outcome"].as_str().unwrap_or("?"),
                p["target"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let (secret, forbidden) = (
        e["secret"].as_str().unwrap_or("?"),
        e["forbidden"].as_str().unwrap_or("?"),
    );
    let want = [
        format!("files.read enforce denied {secret}"),
        format!("files.write enforce denied {secret}"),
        format!("executables enforce denied {forbidden}"),
    ];
    if summary != want {
        return fail(NAME, format!("decisions {summary:?}, want {want:?}"));
    }
    // Each decision follows the record of the refused action, links to it, and that record
    // is the agent's, failed with EPERM.
    for d in decisions {
        let seq = &d["policy"]["action"]["sequence"];
        let Some(acted) = records.iter().find(|r| &r["chain"]["sequence"] == seq) else {
            return fail(NAME, format!("no record at the decision's sequence {seq}"));
        };
        let want_action = if d["policy"]["rule"] == "executables" {
            "exec_denied"
        } else {
            "open"
        };
        if action(acted) != want_action
            || acted["file"]["path"] != d["policy"]["target"]
            || acted["error"]["code"] != "EPERM"
            || acted["identity"]["agent"]["id"] != ENFORCER
            || d["identity"]["agent"]["id"] != ENFORCER
        {
            return fail(NAME, format!("decision {} links to {acted}", d["policy"]));
        }
    }
    pass(
        NAME,
        "EPERM for the agent's forbidden read, write and exec (exec_denied record), allowed \
         ones and a #! script ran, the bystander unaffected; three denied decisions linked",
    )
}

/// The enforcement run's agent (tests/src/bin/kernel-matrix-scenario.rs).
const ENFORCER: &str = "matrix-enforcer";
/// The kill-mode run's agent.
const KILLER: &str = "matrix-killer";
/// The fail-closed runs' agent whose rules fail closed.
const CLOSED: &str = "matrix-closed";

/// Where the kernel has BPF LSM, the sensor took the addresses of connects, binds and sends
/// from its hooks; a second run with the hooks off made the same calls. Both sources must give
/// the same records (but for each run's pids, ports, times and socket ids).
fn check_sources(dir: &Path, records: &[Value], w: &Value, bpf_lsm: bool) -> Check {
    const NAME: &str = "sources agree";
    const HOOKS: [&str; 3] = [
        "lsm:socket_connect",
        "lsm:socket_bind",
        "lsm:socket_sendmsg",
    ];
    let start_programs = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .find(|r| action(r) == "sensor_start")
            .and_then(|r| r["sensor"]["lifecycle"]["programs"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()
    };
    let any_hook = |programs: &[String]| programs.iter().any(|p| p.starts_with("lsm:"));
    if !bpf_lsm {
        return if any_hook(&start_programs(records)) {
            fail(
                NAME,
                "the sensor attached an LSM hook on a kernel without BPF LSM",
            )
        } else {
            pass(NAME, "one source here: no BPF LSM, the tracepoint path")
        };
    }
    let attached = start_programs(records);
    if let Some(missing) = HOOKS.iter().find(|h| !attached.iter().any(|a| a == *h)) {
        return fail(
            NAME,
            format!("BPF LSM is active but the sensor did not attach {missing}"),
        );
    }
    let t = &w["tracepoints"];
    if t["started"] != true {
        return fail(
            NAME,
            format!(
                "the sensor with kernel.lsm_hooks = false did not start ({}): {}",
                t["exit"].as_str().unwrap_or("not run"),
                sensor_error(&dir.join("tracepoints-sensor.stderr"))
            ),
        );
    }
    let other: Vec<Value> = fs::read_to_string(dir.join("tracepoints-records.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if any_hook(&start_programs(&other)) {
        return fail(NAME, "kernel.lsm_hooks = false still attached an LSM hook");
    }
    let mut differ = Vec::new();
    for which in ["connect", "refused", "udp"] {
        match (said(records, &w[which]), said(&other, &t[which])) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(a), Ok(b)) => differ.push(format!("{which}: LSM {a} vs tracepoints {b}")),
            (Err(e), _) => differ.push(format!("{which}, LSM source: {e}")),
            (_, Err(e)) => differ.push(format!("{which}, tracepoint source: {e}")),
        }
    }
    if differ.is_empty() {
        pass(
            NAME,
            "connect, bind and UDP send records from the LSM hooks and from the tracepoints \
             are the same",
        )
    } else {
        fail(NAME, differ.join("; "))
    }
}

/// What the network records of one workload process say, in order, but for the run's own
/// pids, ports, times, socket ids and chain: its connect, or its bind and three UDP sends.
fn said(records: &[Value], call: &Value) -> Result<Value, String> {
    let calls: Vec<Value> = records
        .iter()
        .filter(|r| {
            r["process"]["pid"] == call["pid"] && matches!(action(r), "connect" | "bind" | "send")
        })
        .map(|r| {
            // The socket's id is its kernel address: another socket, another id.
            let mut network = r["network"].clone();
            if let Some(n) = network.as_object_mut() {
                n.remove("socket_id");
            }
            serde_json::json!({
                "action": action(r),
                "outcome": r["event"]["outcome"],
                "source_ip": r["source"]["ip"],
                "destination_ip": r["destination"]["ip"],
                "to_the_workload_port": r["destination"]["port"] == call["port"],
                "network": network,
                "syscall": r["syscall"]["name"],
                "error": r["error"],
            })
        })
        .collect();
    let expected = if call.get("errno").is_some() { 1 } else { 4 };
    if calls.len() != expected {
        return Err(format!(
            "{} network records for pid {}, not {expected}",
            calls.len(),
            call["pid"]
        ));
    }
    Ok(Value::Array(calls))
}

fn of_pid<'a>(records: &'a [Value], act: &str, pid: &Value) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| action(r) == act && &r["process"]["pid"] == pid)
        .collect()
}

fn check_exec(records: &[Value], w: &Value) -> Check {
    const NAME: &str = "exec";
    let e = &w["exec"];
    if e["exit_code"] != 3 {
        return fail(
            NAME,
            format!("the helper exited {} instead of 3", e["exit_code"]),
        );
    }
    let execs = of_pid(records, "exec", &e["pid"]);
    let [exec] = execs[..] else {
        return fail(
            NAME,
            format!("{} exec records for pid {}", execs.len(), e["pid"]),
        );
    };
    if exec["process"]["args"] != e["args"] {
        return fail(
            NAME,
            format!("args {} instead of {}", exec["process"]["args"], e["args"]),
        );
    }
    if exec["process"]["executable"] != w["helper"] {
        return fail(
            NAME,
            format!(
                "executable {} instead of {}",
                exec["process"]["executable"], w["helper"]
            ),
        );
    }
    let exits = of_pid(records, "exit", &e["pid"]);
    match exits[..] {
        [exit] if exit["process"]["exit_code"] == 3 => pass(NAME, "argv and exit code 3 exact"),
        [exit] => fail(NAME, format!("exit record says {}", exit["process"])),
        _ => fail(
            NAME,
            format!("{} exit records for pid {}", exits.len(), e["pid"]),
        ),
    }
}

fn check_open(records: &[Value], w: &Value) -> Check {
    const NAME: &str = "open";
    let o = &w["open"];
    if o["errno"] != 0 {
        return fail(
            NAME,
            format!("the helper's open failed with errno {}", o["errno"]),
        );
    }
    let opens: Vec<&Value> = of_pid(records, "open", &o["pid"])
        .into_iter()
        .filter(|r| r["file"]["path"] == o["path"])
        .collect();
    match opens[..] {
        [r] if r["event"]["outcome"] == "success" => {
            pass(NAME, format!("relative open reported as {}", o["path"]))
        }
        [r] => fail(
            NAME,
            format!("outcome {} for {}", r["event"]["outcome"], o["path"]),
        ),
        _ => {
            let seen: Vec<String> = of_pid(records, "open", &o["pid"])
                .iter()
                .map(|r| r["file"]["path"].to_string())
                .collect();
            fail(
                NAME,
                format!(
                    "{} open records of {} for pid {} (its opens: {})",
                    opens.len(),
                    o["path"],
                    o["pid"],
                    seen.join(", ")
                ),
            )
        }
    }
}

fn check_connect(records: &[Value], c: &Value, name: &'static str, succeeds: bool) -> Check {
    let (errno, outcome) = if succeeds {
        (0, "success")
    } else {
        (111, "failure")
    };
    if c["errno"] != errno {
        return fail(
            name,
            format!(
                "the helper's connect gave errno {}, not {errno}",
                c["errno"]
            ),
        );
    }
    let connects = of_pid(records, "connect", &c["pid"]);
    let [r] = connects[..] else {
        return fail(
            name,
            format!("{} connect records for pid {}", connects.len(), c["pid"]),
        );
    };
    let mut wrong = Vec::new();
    if r["event"]["outcome"] != outcome {
        wrong.push(format!("outcome {}", r["event"]["outcome"]));
    }
    if r["destination"]["ip"] != "127.0.0.1" || r["destination"]["port"] != c["port"] {
        wrong.push(format!("destination {}", r["destination"]));
    }
    if !succeeds && r["error"]["code"] != "ECONNREFUSED" {
        wrong.push(format!("error {}", r["error"]));
    }
    if wrong.is_empty() {
        pass(name, format!("127.0.0.1:{} {outcome}", c["port"]))
    } else {
        fail(name, wrong.join("; "))
    }
}

/// The tree: the level-1 shell (the tree's pid, exec'd in the agent's cgroup), three nested
/// shells and the leaf, each the child of the one before, each attributed to the agent by
/// cgroup (the first directly, the rest inherited), each with its exit.
fn check_tree(records: &[Value], w: &Value) -> Check {
    const NAME: &str = "process tree";
    let t = &w["tree"];
    if t["exit_code"] != 0 {
        return fail(NAME, format!("the tree's root exited {}", t["exit_code"]));
    }
    let levels = t["levels"].as_u64().unwrap_or(5) as usize;
    let mut pid = t["pid"].clone();
    let mut chain = Vec::new();
    for level in 1..=levels {
        let execs = of_pid(records, "exec", &pid);
        // Level 1's pid first exec'd `sh -c`, outside the cgroup; the last exec is the tree's.
        let Some(exec) = execs.last() else {
            return fail(NAME, format!("level {level}: no exec record for pid {pid}"));
        };
        let id = &exec["identity"];
        if id["agent"]["id"] != w["agent"] || id["attribution"]["method"] != "cgroup" {
            return fail(
                NAME,
                format!(
                    "level {level} (pid {pid}, {}): identity {id}",
                    exec["process"]["args"]
                ),
            );
        }
        if of_pid(records, "exit", &pid).is_empty() {
            return fail(NAME, format!("level {level} (pid {pid}): no exit record"));
        }
        chain.push(pid.to_string());
        if level == levels {
            if exec["process"]["args"] != serde_json::json!(["/bin/true", "matrix-leaf"]) {
                return fail(NAME, format!("the leaf is {}", exec["process"]["args"]));
            }
            break;
        }
        let children: Vec<&Value> = records
            .iter()
            .filter(|r| action(r) == "exec" && r["process"]["parent"]["pid"] == pid)
            .collect();
        let [child] = children[..] else {
            return fail(
                NAME,
                format!(
                    "level {level} (pid {pid}): {} exec'd children",
                    children.len()
                ),
            );
        };
        pid = child["process"]["pid"].clone();
    }
    pass(
        NAME,
        format!(
            "{levels} levels (pids {}) attributed by cgroup",
            chain.join(" > ")
        ),
    )
}

fn check_no_loss(records: &[Value], steps: &Value) -> Check {
    const NAME: &str = "no loss";
    let gaps: Vec<String> = records
        .iter()
        .filter(|r| action(r) == "gap")
        .map(|r| r["gap"].to_string())
        .collect();
    if !gaps.is_empty() {
        return fail(NAME, format!("gap records: {}", gaps.join("; ")));
    }
    let exit = steps["sensor_stop"]["exit"].as_str().unwrap_or("?");
    if exit != "exit 0" {
        return fail(NAME, format!("the sensor's stop ended with {exit}"));
    }
    let Some(stop) = records.last().filter(|r| action(r) == "sensor_stop") else {
        return fail(NAME, "the last record is not sensor_stop");
    };
    let life = &stop["sensor"]["lifecycle"];
    let zero = |k: &str| life[k].as_u64().unwrap_or(0) == 0;
    if !(zero("kernel_lost") && zero("decode_errors") && zero("output_lost")) {
        return fail(NAME, format!("sensor_stop reports losses: {life}"));
    }
    if life["records_written"].as_u64() != Some(records.len() as u64) {
        return fail(
            NAME,
            format!(
                "sensor_stop counts {} records written, the output has {}",
                life["records_written"],
                records.len()
            ),
        );
    }
    pass(
        NAME,
        format!("{} records, no gap, zero losses", records.len()),
    )
}

/// Stack of the deepest call chain (from the object, the same on every kernel) and the
/// instructions this kernel's verifier processed (Linux >= 5.16 reports them), each program
/// within the margins the sensor keeps: 384 of 512 bytes, 250,000 of a million instructions.
fn check_budgets(programs: &[Value]) -> Check {
    const NAME: &str = "budgets";
    const STACK: u64 = 384;
    const VERIFIED: u64 = 250_000;
    let over: Vec<String> = programs
        .iter()
        .filter(|p| p["loads"] == true)
        .filter(|p| {
            p["stack"].as_u64().is_none_or(|s| s > STACK)
                || p["verified_insns"].as_u64().is_some_and(|v| v > VERIFIED)
        })
        .map(program_line)
        .collect();
    let most = programs
        .iter()
        .filter_map(|p| p["verified_insns"].as_u64())
        .max();
    if !over.is_empty() {
        return fail(
            NAME,
            format!("over {STACK} B of stack or {VERIFIED} verified instructions: {over:?}"),
        );
    }
    pass(
        NAME,
        match most {
            Some(n) => format!("stack within {STACK} B, at most {n} instructions verified"),
            None => format!("stack within {STACK} B (this kernel does not report verified counts)"),
        },
    )
}

/// One program of the probe's report: `name: stack S, I insns (V verified)`, or why it does not
/// load (every field the probe gives, since its wording is the operator's).
fn program_line(p: &Value) -> String {
    let name = p["name"].as_str().unwrap_or("?");
    if p["loads"] == true {
        return format!(
            "{name}: stack {} B, {} insns ({} verified)",
            p["stack"], p["insns"], p["verified_insns"]
        );
    }
    let why: Vec<String> = p
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "loads"))
        .map(|(k, v)| format!("{k}: {}", v.as_str().map_or(v.to_string(), one_line)))
        .collect();
    format!("{name}: REFUSED ({})", why.join("; "))
}

/// A multi-line message (a verifier log) on one line of the report.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The sensor's error: its `agent-sensor: error:` line and the lines that continue it (for a
/// program the kernel refused, the verifier's verdict), up to the first blank line.
fn sensor_error(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("agent-sensor: error:"));
    let Some(first) = lines.next() else {
        return last_line(path);
    };
    std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim().is_empty()))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The last non-empty line of a file: the sensor's one-line error when it refuses to start.
pub fn last_line(path: &Path) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("({} is empty or missing)", path.display()))
}

#[cfg(test)]
mod tests {
    //! The checks must fail when a record is missing or wrong: a checker that passes
    //! everything would prove nothing on any kernel.
    use serde_json::json;

    use super::*;

    fn exec(pid: u64, parent: u64, args: &Value, method: &str) -> Value {
        json!({"event": {"action": "exec"}, "process": {"pid": pid, "parent": {"pid": parent},
               "args": args}, "identity": {"agent": {"id": "a"}, "attribution": {"method": method}}})
    }

    fn exit(pid: u64) -> Value {
        json!({"event": {"action": "exit"}, "process": {"pid": pid, "exit_code": 0}})
    }

    fn tree(method_of_level_3: &str) -> Vec<Value> {
        let mut records = Vec::new();
        for (i, pid) in (10..15).enumerate() {
            let args = if pid == 14 {
                json!(["/bin/true", "matrix-leaf"])
            } else {
                json!(["/bin/sh", format!("l{}.sh", i + 1)])
            };
            let method = if pid == 12 {
                method_of_level_3
            } else {
                "cgroup"
            };
            records.push(exec(pid, pid - 1, &args, method));
            records.push(exit(pid));
        }
        records
    }

    fn workload() -> Value {
        json!({"agent": "a", "tree": {"pid": 10, "exit_code": 0, "levels": 5}})
    }

    #[test]
    fn a_whole_tree_attributed_by_cgroup_passes() {
        let c = check_tree(&tree("cgroup"), &workload());
        assert!(c.passed, "{}", c.detail);
        assert!(c.detail.contains("10 > 11 > 12 > 13 > 14"), "{}", c.detail);
    }

    #[test]
    fn a_level_attributed_otherwise_or_without_its_exit_fails() {
        let c = check_tree(&tree("executable"), &workload());
        assert!(!c.passed && c.detail.starts_with("level 3"), "{}", c.detail);
        let mut records = tree("cgroup");
        records.retain(|r| !(action(r) == "exit" && r["process"]["pid"] == 13));
        let c = check_tree(&records, &workload());
        assert!(
            !c.passed && c.detail.contains("no exit record"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_gap_or_a_loss_at_stop_fails_no_loss() {
        let stop = |lost: u64| {
            json!({"event": {"action": "sensor_stop"},
                   "sensor": {"lifecycle": {"kernel_lost": lost, "records_written": 2}}})
        };
        let steps = json!({"sensor_stop": {"exit": "exit 0"}});
        let start = json!({"event": {"action": "sensor_start"}});
        assert!(check_no_loss(&[start.clone(), stop(0)], &steps).passed);
        assert!(!check_no_loss(&[start.clone(), stop(1)], &steps).passed);
        let gap = json!({"event": {"action": "gap"}, "gap": {"lost": 1}});
        assert!(!check_no_loss(&[gap, stop(0)], &steps).passed);
        let killed = json!({"sensor_stop": {"exit": "signal 9"}});
        assert!(!check_no_loss(&[start, stop(0)], &killed).passed);
    }

    #[test]
    fn an_exec_needs_its_exact_argv_and_exit_code() {
        let w = json!({"helper": "/h", "exec": {"pid": 7, "exit_code": 3,
                       "args": ["/h", "exit", "3", "alpha", "two words"]}});
        let record = |args: Value| {
            json!({"event": {"action": "exec"},
                   "process": {"pid": 7, "args": args, "executable": "/h"}})
        };
        let done = json!({"event": {"action": "exit"}, "process": {"pid": 7, "exit_code": 3}});
        let exact = record(json!(["/h", "exit", "3", "alpha", "two words"]));
        assert!(check_exec(&[exact.clone(), done.clone()], &w).passed);
        let split = record(json!(["/h", "exit", "3", "alpha", "two", "words"]));
        assert!(!check_exec(&[split, done], &w).passed);
        assert!(!check_exec(&[exact], &w).passed, "no exit record");
    }
}
