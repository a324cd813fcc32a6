//! Which agent a record is: the kernel's attribution, decisions on held cgroups, pending
//! execs decided by argv selectors and the environment marker, delegation hops, and which
//! source wins when several say something.
use serde_json::{Value, json};

use crate::support::*;

/// 1 reviewer (its cgroup), 2 planner (its command line), 3 analyst (its executable), 4 helper
/// (named by the environment marker only).
fn agents() -> String {
    manifest(&[
        agent("reviewer", &["{cgroup: /agents/reviewer/**}"]),
        agent("planner", &["{argv: '* /opt/planner/main.py*'}"]),
        agent("analyst", &["{executable: /opt/analyst/bin/*}"]),
        agent("helper", &["{uid: 4242}"]),
    ])
}

const REVIEWER: u32 = 1;
const ANALYST: u32 = 3;
const PLANNER_ARGS: &[&[u8]] = &[b"python3", b"/opt/planner/main.py", b"--plan"];

fn pending(a: TrackedProcess) -> TrackedProcess {
    TrackedProcess {
        flags: a.flags | tracked_flags::PENDING,
        ..a
    }
}

fn inherited(a: TrackedProcess) -> TrackedProcess {
    TrackedProcess {
        flags: a.flags | tracked_flags::INHERITED,
        ..a
    }
}

/// Agent, attribution method and trust of a record; `None`: nobody's.
type Who = Option<(String, String, String)>;

/// The records of process `pid` (its own, and the fork that made it), as
/// `(action, identity)`.
fn of(outcome: &Outcome, pid: u32) -> Vec<(String, Who)> {
    outcome
        .events()
        .into_iter()
        .filter(|r| r["process"]["pid"] == pid)
        .map(|r| (action(r).to_owned(), owned(identity(r))))
        .collect()
}

fn owned(i: Option<(&str, &str, &str)>) -> Who {
    i.map(|(a, m, t)| (a.to_owned(), m.to_owned(), t.to_owned()))
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "a `Who` to compare with, written beside `None` in the expectations"
)]
fn id(agent: &str, method: &str, trust: &str) -> Who {
    Some((agent.to_owned(), method.to_owned(), trust.to_owned()))
}

fn python(forge: &mut Forge, p: Proc) {
    forge.exec(p, b"/usr/bin/python3", b"/usr/bin/python3.11", PLANNER_ARGS);
}

#[test]
fn the_kernels_attribution_is_the_records_own_and_children_inherit_it() {
    let mut f = forge();
    let root = f.process(None, attributed(REVIEWER, method::CGROUP));
    f.exec(root, b"/opt/reviewer/run", b"/opt/reviewer/run", &[b"run"]);
    f.open(root, b"/srv/repo/README.md");
    let child = f.fork(root);
    f.exec(child, b"/usr/bin/git", b"/usr/bin/git", &[b"git", b"diff"]);
    f.exit(child);
    let (batches, _) = f.finish();
    let out = run(&agents(), Config::default(), records(batches));
    assert_eq!(
        out.actions(),
        [
            "sensor_start",
            "exec",
            "open",
            "fork",
            "exec",
            "exit",
            "sensor_stop"
        ]
    );
    let strong = id("reviewer", "cgroup", "strong");
    assert_eq!(
        of(&out, root.tgid),
        [
            ("exec".into(), strong.clone()),
            ("open".into(), strong.clone())
        ]
    );
    assert_eq!(
        of(&out, child.tgid),
        [
            ("fork".into(), strong.clone()),
            ("exec".into(), strong.clone()),
            ("exit".into(), strong.clone())
        ]
    );
    let exec = out.with_action("exec")[1];
    assert_eq!(exec["identity"]["attribution"]["inherited"], true);
    assert_eq!(exec["identity"]["agent"]["name"], "Agent reviewer");
    assert_eq!(exec["process"]["parent"]["pid"], root.tgid);
    // The parent's entity id is the one its own exec record carried.
    assert_eq!(
        exec["process"]["parent"]["entity_id"],
        out.with_action("exec")[0]["process"]["entity_id"]
    );
    assert!(out.with_action("open")[0]["identity"]["attribution"]["inherited"].is_null());
}

/// A new container's first processes run before any scan could see its cgroup: the kernel
/// holds the cgroup and flags their records; the pipeline decides the cgroup before it builds
/// them, and gives them the decision.
#[test]
fn records_of_a_held_cgroup_get_the_decision_made_on_it() {
    let mut f = forge();
    let (job, other) = (7_001, 7_002);
    f.cgroup(job, b"/agents/reviewer/job-1");
    f.cgroup(other, b"/system.slice/cron.service");
    let first = f.process(None, TrackedProcess::held(job));
    f.exec(first, b"/bin/sh", b"/usr/bin/dash", &[b"sh"]);
    f.open(first, b"/agents/reviewer/job-1/task.json");
    let cron = f.process(None, TrackedProcess::held(other));
    f.exec(cron, b"/usr/sbin/cron", b"/usr/sbin/cron", &[b"cron"]);
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    // The other cgroup is nobody's: neither its record nor its process's are reported.
    assert_eq!(
        out.actions(),
        [
            "sensor_start",
            "cgroup_created",
            "exec",
            "open",
            "sensor_stop"
        ]
    );
    let created = out.with_action("cgroup_created")[0];
    assert_eq!(
        created["cgroup"],
        json!({"id": job, "path": "/agents/reviewer/job-1"})
    );
    assert_eq!(identity(created), Some(("reviewer", "cgroup", "strong")));
    let strong = id("reviewer", "cgroup", "strong");
    assert_eq!(
        of(&out, first.tgid),
        [("exec".into(), strong.clone()), ("open".into(), strong)]
    );
    // Decided, not inherited: the cgroup is the process's own.
    assert!(out.with_action("exec")[0]["identity"]["attribution"]["inherited"].is_null());
}

/// With every process observed, a held cgroup nobody's selectors name is reported, and so
/// are its processes, as nobody's.
#[test]
fn with_all_processes_a_held_cgroup_of_nobody_is_reported_unattributed() {
    let mut f = forge();
    f.cgroup(7_002, b"/system.slice/cron.service");
    let cron = f.process(None, TrackedProcess::held(7_002));
    f.exec(cron, b"/usr/sbin/cron", b"/usr/sbin/cron", &[b"cron"]);
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        all_processes: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    assert_eq!(
        out.actions(),
        ["sensor_start", "cgroup_created", "exec", "sensor_stop"]
    );
    assert!(out.events().iter().all(|r| r.get("identity").is_none()));
}

/// Without selectors to decide (a replay of a live run's records), held records are nobody's:
/// dropped, unless every process is observed.
#[test]
fn without_selectors_held_records_are_dropped_unless_all_processes() {
    let forged = || {
        let mut f = forge();
        f.cgroup(7_001, b"/agents/reviewer/job-1");
        let p = f.process(None, TrackedProcess::held(7_001));
        f.exec(p, b"/bin/sh", b"/usr/bin/dash", &[b"sh"]);
        f.open(p, b"/etc/passwd");
        f.finish().0
    };
    let out = run(&agents(), Config::default(), records(forged()));
    assert_eq!(out.actions(), ["sensor_start", "sensor_stop"]);
    let all = Config {
        all_processes: true,
        ..Config::default()
    };
    let out = run(&agents(), all, records(forged()));
    assert_eq!(
        out.actions(),
        [
            "sensor_start",
            "cgroup_created",
            "exec",
            "open",
            "sensor_stop"
        ]
    );
    assert!(out.events().iter().all(|r| r.get("identity").is_none()));
}

/// An exec the kernel flagged pending (inherited, so the daemon's argv selectors may change
/// it) is decided by its command line; a delegation hop says which agent's process became the
/// new agent. Children forked before the decision carry the kernel's tentative (pending)
/// attribution and get the decision instead, through their parent.
#[test]
fn a_pending_exec_is_decided_by_its_argv_and_its_children_follow() {
    let mut f = forge();
    let root = f.process(None, attributed(REVIEWER, method::CGROUP));
    f.exec(root, b"/opt/reviewer/run", b"/opt/reviewer/run", &[b"run"]);
    let child = f.fork(root);
    let child = child.with(pending(child.attribution));
    python(&mut f, child);
    // Forked while the decision was being made: the kernel copied the pending value.
    let grandchild = f.fork(child);
    f.open(grandchild, b"/opt/planner/plan.txt");
    f.open(child, b"/opt/planner/state.db");
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    assert_eq!(
        out.actions(),
        [
            "sensor_start",
            "exec",
            "fork",
            "exec",
            "fork",
            "open",
            "open",
            "sensor_stop"
        ]
    );
    let planner = id("planner", "argv", "medium");
    assert_eq!(
        of(&out, child.tgid),
        [
            ("fork".into(), id("reviewer", "cgroup", "strong")),
            ("exec".into(), planner.clone()),
            ("open".into(), planner.clone()),
        ]
    );
    assert_eq!(
        of(&out, grandchild.tgid),
        [("fork".into(), planner.clone()), ("open".into(), planner)]
    );
    let exec = out.with_action("exec")[1];
    assert!(exec["identity"]["attribution"]["inherited"].is_null());
    assert_eq!(
        exec["identity"]["delegation"],
        json!([{"from": "reviewer", "to": "planner",
                "process": {"pid": child.tgid, "entity_id": exec["process"]["entity_id"]}}])
    );
    // The grandchild is the planner's by inheritance, with the chain that led there.
    let open = &out.with_action("open")[0];
    assert_eq!(open["process"]["pid"], grandchild.tgid);
    assert_eq!(open["identity"]["attribution"]["inherited"], true);
    assert_eq!(
        open["identity"]["delegation"],
        exec["identity"]["delegation"]
    );
    // The decision is in the (stand-in) kernel map, as the kernel's own value for the process.
    assert_eq!(
        out.tracked.get(&child.tgid),
        Some(&TrackedProcess {
            agent: 2,
            method: method::ARGV,
            delegated_from: REVIEWER,
            ..Default::default()
        })
    );
}

/// A decision on a pending exec is the process's, not its pid's: a later process that got the
/// same pid does not pass it on to its children.
#[test]
fn a_pending_decision_is_keyed_by_process_start_not_pid() {
    let mut f = forge();
    let root = f.process(None, attributed(REVIEWER, method::CGROUP));
    f.exec(root, b"/opt/reviewer/run", b"/opt/reviewer/run", &[b"run"]);
    let child = f.fork(root);
    let child = child.with(pending(child.attribution));
    python(&mut f, child);
    f.exit(child);
    // Start times are compared in clock ticks (as /proc has them): a pid comes back later.
    f.advance(1_000_000_000);
    // The pid comes back for another child of the reviewer, whose own child exec's pending: the
    // decision is looked for up its ancestry, through the new process with the old pid.
    f.reuse_pid(child.tgid);
    let reused = f.fork(root);
    assert_eq!(reused.tgid, child.tgid);
    let grandchild = f.fork(reused);
    let grandchild = grandchild.with(pending(grandchild.attribution));
    f.exec(grandchild, b"/usr/bin/make", b"/usr/bin/make", &[b"make"]);
    f.open(grandchild, b"/srv/repo/Makefile");
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    let reviewer = id("reviewer", "cgroup", "strong");
    assert_eq!(
        of(&out, grandchild.tgid),
        [
            ("fork".into(), reviewer.clone()),
            ("exec".into(), reviewer.clone()),
            ("open".into(), reviewer)
        ]
    );
    // The first process with that pid was the planner's, and its exit says so.
    let exits = out.with_action("exit");
    assert_eq!(identity(exits[0]), Some(("planner", "argv", "medium")));
}

/// An exec no kernel selector matched comes with its environment when the marker is on: the
/// marker names the agent (weak). Argv selectors come first; a marker naming no declared
/// agent, and no argv match, leave the exec nobody's, and the kernel's pending entry removed.
#[test]
fn unmatched_execs_are_decided_by_argv_then_the_environment_marker() {
    let mut f = forge();
    let nobody = pending(TrackedProcess::default());
    let unmatched = exec_flags::UNMATCHED;
    let marked = f.process(None, nobody);
    f.exec_with(
        marked,
        Exec {
            filename: b"/usr/bin/node",
            exe: b"/usr/bin/node",
            args: &[b"node", b"helper.js"],
            flags: unmatched,
            cwd: b"/home/u",
            env: b"HOME=/home/u\0AGENT_ID=helper\0PATH=/usr/bin\0",
        },
    );
    let both = f.process(None, nobody);
    f.exec_with(
        both,
        Exec {
            filename: b"/usr/bin/python3",
            exe: b"/usr/bin/python3.11",
            args: PLANNER_ARGS,
            flags: unmatched,
            cwd: b"/home/u",
            env: b"AGENT_ID=helper\0",
        },
    );
    let stranger = f.process(None, nobody);
    f.exec_with(
        stranger,
        Exec {
            filename: b"/usr/bin/node",
            exe: b"/usr/bin/node",
            args: &[b"node"],
            flags: unmatched,
            cwd: b"/home/u",
            env: b"AGENT_ID=someone-else\0",
        },
    );
    f.open(marked, b"/home/u/notes.txt");
    f.open(stranger, b"/home/u/secret.txt");
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        marker: Some("AGENT_ID"),
        // The kernel's pending entry for the stranger, to be removed when it turns out nobody's.
        tracked: vec![(stranger.tgid, nobody)],
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    assert_eq!(
        out.actions(),
        ["sensor_start", "exec", "exec", "open", "sensor_stop"]
    );
    let helper = id("helper", "environment", "weak");
    assert_eq!(
        of(&out, marked.tgid),
        [("exec".into(), helper.clone()), ("open".into(), helper)]
    );
    assert_eq!(
        of(&out, both.tgid),
        [("exec".into(), id("planner", "argv", "medium"))]
    );
    assert!(of(&out, stranger.tgid).is_empty());
    assert_eq!(out.tracked.get(&stranger.tgid), None);
    // Nobody's before: no delegation hop.
    assert!(out.with_action("exec")[0]["identity"]["delegation"].is_null());
}

/// Which source wins (the kernel's rule at exec, applied by the daemon too): a process's own
/// cgroup attribution (strong) is not replaced by an argv match (medium); an image-based one
/// (executable, medium) is; a registration that came in meanwhile stays over both.
#[test]
fn trust_precedence_between_kernel_argv_and_registration() {
    let mut f = forge();
    // Own cgroup attribution: the kernel does not even flag it pending.
    let own = f.process(None, attributed(REVIEWER, method::CGROUP));
    python(&mut f, own);
    // Image-based: flagged pending, replaced by the argv match.
    let image = f.process(None, pending(attributed(ANALYST, method::EXECUTABLE)));
    python(&mut f, image);
    // Registered while its exec was pending.
    let registered = f.process(
        None,
        pending(inherited(attributed(REVIEWER, method::CGROUP))),
    );
    python(&mut f, registered);
    let (batches, _) = f.finish();
    let registration = TrackedProcess {
        agent: 4,
        task: 0,
        delegated_from: 0,
        method: method::REGISTRATION,
        flags: 0,
        _pad: 0,
    };
    let config = Config {
        decisions: true,
        tracked: vec![(registered.tgid, registration)],
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    let execs: Vec<Option<(&str, &str, &str)>> =
        out.with_action("exec").into_iter().map(identity).collect();
    assert_eq!(
        execs,
        [
            Some(("reviewer", "cgroup", "strong")),
            Some(("planner", "argv", "medium")),
            Some(("helper", "registration", "strong")),
        ]
    );
    let hop = &out.with_action("exec")[1]["identity"]["delegation"];
    assert_eq!(hop[0]["from"], "analyst");
    assert_eq!(hop[0]["to"], "planner");
    assert_eq!(out.tracked.get(&registered.tgid), Some(&registration));
    assert_eq!(out.tracked.get(&image.tgid).map(|t| t.agent), Some(2));
}

/// Agent to agent to agent: the kernel's own re-attribution at exec (an executable selector)
/// and the daemon's (argv) each add a hop, and descendants carry the whole chain.
#[test]
fn a_delegation_chain_grows_by_one_hop_per_agent_change() {
    let mut f = forge();
    let root = f.process(None, attributed(REVIEWER, method::CGROUP));
    f.exec(root, b"/opt/reviewer/run", b"/opt/reviewer/run", &[b"run"]);
    let child = f.fork(root);
    // The kernel matched the analyst's executable selector at exec: a hop it records itself.
    let child = child.with(TrackedProcess {
        delegated_from: REVIEWER,
        ..attributed(ANALYST, method::EXECUTABLE)
    });
    f.exec(
        child,
        b"/opt/analyst/bin/query",
        b"/opt/analyst/bin/query",
        &[b"query"],
    );
    let grandchild = f.fork(child);
    let grandchild = grandchild.with(pending(grandchild.attribution));
    python(&mut f, grandchild);
    let last = f.fork(grandchild);
    f.open(last, b"/opt/planner/out.json");
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    let execs = out.with_action("exec");
    let entity = |r: &Value| r["process"]["entity_id"].clone();
    let hop = |from: &str, to: &str, pid: u32, exec: &Value| json!({"from": from, "to": to, "process": {"pid": pid, "entity_id": entity(exec)}});
    let first = hop("reviewer", "analyst", child.tgid, execs[1]);
    let second = hop("analyst", "planner", grandchild.tgid, execs[2]);
    assert_eq!(
        identity(execs[1]),
        Some(("analyst", "executable", "medium"))
    );
    assert_eq!(execs[1]["identity"]["delegation"], json!([first.clone()]));
    assert_eq!(identity(execs[2]), Some(("planner", "argv", "medium")));
    assert_eq!(
        execs[2]["identity"]["delegation"],
        json!([first.clone(), second.clone()])
    );
    let open = out.with_action("open")[0];
    assert_eq!(open["process"]["pid"], last.tgid);
    assert_eq!(identity(open), Some(("planner", "argv", "medium")));
    assert_eq!(open["identity"]["delegation"], json!([first, second]));
}

/// Records of the decided process itself that the kernel stamped before the decision reached
/// its map (pending) are its own, like its exec record: not inherited. Today they get the
/// decision through `decided_ancestor`, which flags every decision it hands out `INHERITED`.
#[test]
fn a_decided_process_own_pending_records_are_not_inherited() {
    let mut f = forge();
    let root = f.process(None, attributed(REVIEWER, method::CGROUP));
    let child = f.fork(root);
    let child = child.with(pending(child.attribution));
    python(&mut f, child);
    f.open(child, b"/opt/planner/state.db");
    let (batches, _) = f.finish();
    let config = Config {
        decisions: true,
        ..Config::default()
    };
    let out = run(&agents(), config, records(batches));
    let exec = out.with_action("exec")[0];
    let open = out.with_action("open")[0];
    assert_eq!(identity(open), Some(("planner", "argv", "medium")));
    assert_eq!(
        open["identity"]["attribution"],
        exec["identity"]["attribution"]
    );
}
