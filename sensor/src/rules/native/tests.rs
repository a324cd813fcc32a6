//! Native rule files: loading with positions, alerts, sequences, rate limits.
use super::*;
use crate::rules::{fields::Fields, native::field::Addresses};

fn load(yaml: &str) -> (NativeRules, Vec<Rejection>) {
    let mut rules = NativeRules::default();
    let mut rejected = Vec::new();
    rules.add_file(Path::new("n.yml"), yaml, &mut rejected);
    (rules, rejected)
}

fn rejection(yaml: &str) -> Rejection {
    let (rules, rejected) = load(yaml);
    assert!(rules.is_empty());
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    rejected.into_iter().next().unwrap()
}

/// The titles, messages and sequences of what `fields` (sealed as `seq`) fires.
fn fire(rules: &mut NativeRules, fields: &Fields<'_>, seq: u64) -> Vec<(String, String, Vec<u64>)> {
    let view = View {
        fields,
        parent: None,
        tree: None,
        user: None,
        addresses: Addresses::default(),
    };
    let mut out = Vec::new();
    rules.evaluate(&view, Some(seq), &mut |f| {
        out.push((f.rule.title.clone(), f.message, f.sequences));
    });
    out
}

const FILE: &str = r#"lists:
  shells: [/bin/sh, /bin/bash, /usr/bin/dash]
  interpreters: [/usr/bin/python3, shells]
macros:
  spawned_shell: event.action = exec and process.executable in (shells)
rules:
  - id: restricted-shell
    title: Shell in a restricted agent
    author: tests
    condition: spawned_shell and identity.agent.data_sensitivity = restricted
    severity: high
    tags: [attack.t1059.004, attack.execution]
    output: "%identity.agent.id ran {process.command_line}"
    limit: {alerts: 2, seconds: 60}
  - id: task-not-allowed
    title: Task outside the declaration
    condition: identity.task.allowed = false
"#;

fn exec<'a>(agent: &'a str, at: &'a str, cmd: &'a str) -> Fields<'a> {
    Fields {
        action: "exec",
        timestamp: at,
        nanos: crate::record::time::parse(at),
        pid: Some(9),
        executable: Some("/bin/bash"),
        command_line: Some(cmd),
        agent_id: Some(agent),
        data_sensitivity: Some("restricted"),
        ..Fields::default()
    }
}

#[test]
fn a_file_loads_and_fires_with_its_template_and_limit() {
    let (mut rules, rejected) = load(FILE);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(rules.len(), 2);
    let info = &rules.rules[0].info;
    assert_eq!(
        (info.level, info.author.as_deref()),
        ("high", Some("tests"))
    );
    assert_eq!(info.tags, ["attack.t1059.004", "attack.execution"]);

    let t = |s: u32| format!("2026-12-07T06:00:{s:02}.000000000Z");
    let (t0, t1, t2, t3) = (t(0), t(1), t(2), t(3));
    let hits = fire(&mut rules, &exec("coder", &t0, "bash -c id"), 10);
    assert_eq!(
        hits,
        [(
            "Shell in a restricted agent".to_owned(),
            "coder ran bash -c id".to_owned(),
            vec![10]
        )]
    );
    // Two alerts per agent a minute: the third is held back, another agent's is not.
    assert_eq!(fire(&mut rules, &exec("coder", &t1, "x"), 11).len(), 1);
    assert!(fire(&mut rules, &exec("coder", &t2, "x"), 12).is_empty());
    assert_eq!(rules.suppressed, 1);
    assert_eq!(fire(&mut rules, &exec("other", &t3, "x"), 13).len(), 1);
    // A minute on, the window is new.
    let later = "2026-12-07T06:01:01.000000000Z";
    assert_eq!(fire(&mut rules, &exec("coder", later, "x"), 14).len(), 1);

    // Another tier, or not a shell: nothing.
    let mut f = exec("coder", later, "x");
    f.data_sensitivity = Some("internal");
    assert!(fire(&mut rules, &f, 15).is_empty());
    f.task_allowed = Some(false);
    let hits = fire(&mut rules, &f, 16);
    assert_eq!(hits[0].0, "Task outside the declaration");
    assert_eq!(
        hits[0].1,
        "Task outside the declaration: exec by /bin/bash (pid 9)"
    );
}

const SEQUENCE: &str = r"rules:
  - id: read-then-send
    title: Credentials read, then a connection out
    sequence:
      by: agent
      within: 10
      steps:
        - event.action = open and file.class in (ssh_key, cloud_credentials)
        - event.action = connect and not destination.ip cidr 127.0.0.1/32
";

fn read_at<'a>(agent: &'a str, at: &'a str) -> Fields<'a> {
    Fields {
        action: "open",
        timestamp: at,
        nanos: crate::record::time::parse(at),
        file_class: Some("cloud_credentials"),
        agent_id: Some(agent),
        ..Fields::default()
    }
}

fn connect_at<'a>(agent: &'a str, at: &'a str, ip: &'a str) -> Fields<'a> {
    Fields {
        action: "connect",
        timestamp: at,
        nanos: crate::record::time::parse(at),
        destination_ip: Some(ip),
        agent_id: Some(agent),
        ..Fields::default()
    }
}

#[test]
fn a_sequence_fires_in_order_within_its_window_for_the_same_agent() {
    let (mut rules, rejected) = load(SEQUENCE);
    assert!(rejected.is_empty(), "{rejected:?}");
    let at = |s: u32| format!("2026-12-07T06:00:{s:02}.500000000Z");
    let (t0, t3, t5, t20, t25) = (at(0), at(3), at(5), at(20), at(25));
    // B then A: nothing; A then B 3 s later: the alert cites both records.
    assert!(fire(&mut rules, &connect_at("a", &t0, "10.0.0.1"), 1).is_empty());
    assert!(fire(&mut rules, &read_at("a", &t0), 2).is_empty());
    // Another agent's connection does not complete a's sequence.
    assert!(fire(&mut rules, &connect_at("b", &t3, "10.0.0.1"), 3).is_empty());
    // The allowed address does not either.
    assert!(fire(&mut rules, &connect_at("a", &t3, "127.0.0.1"), 4).is_empty());
    let hits = fire(&mut rules, &connect_at("a", &t5, "10.0.0.1"), 5);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].2, [2, 5]);
    // Used up: a second connection needs a new read.
    assert!(fire(&mut rules, &connect_at("a", &t5, "10.0.0.1"), 6).is_empty());
    // Outside the window: nothing.
    assert!(fire(&mut rules, &read_at("a", &t5), 7).is_empty());
    assert!(fire(&mut rules, &connect_at("a", &t20, "10.0.0.1"), 8).is_empty());
    // The latest read counts.
    assert!(fire(&mut rules, &read_at("a", &t20), 9).is_empty());
    assert_eq!(
        fire(&mut rules, &connect_at("a", &t25, "10.0.0.1"), 10)[0].2,
        [9, 10]
    );
    // A record of no agent takes no part.
    let mut orphan = read_at("a", &t25);
    orphan.agent_id = None;
    assert!(fire(&mut rules, &orphan, 11).is_empty());
    assert_eq!(rules.evictions(), 0);
}

const THREE: &str = r"rules:
  - id: exec-read-send
    title: A shell, a credential read, then a connection out
    sequence:
      by: agent
      within: 10
      steps:
        - event.action = exec
        - event.action = open and file.class = cloud_credentials
        - event.action = connect
";

/// A record of agent `a` at second `s`: `x` exec, `r` read, `c` connect.
fn step_at(kind: char, at: &str) -> Fields<'_> {
    match kind {
        'x' => exec("a", at, "bash"),
        'r' => read_at("a", at),
        _ => connect_at("a", at, "10.0.0.1"),
    }
}

/// Feeds `(kind, second, sequence)` records of agent `a`; the sequences each alert cites.
fn run(rules: &mut NativeRules, records: &[(char, u32, u64)]) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for &(kind, s, seq) in records {
        let at = format!("2026-12-07T06:00:{s:02}.000000000Z");
        out.extend(
            fire(rules, &step_at(kind, &at), seq)
                .into_iter()
                .map(|h| h.2),
        );
    }
    out
}

#[test]
fn a_sequence_of_three_steps_needs_all_in_order_within_the_window() {
    let fresh = || {
        let (rules, rejected) = load(THREE);
        assert!(rejected.is_empty(), "{rejected:?}");
        rules
    };
    // In order: one alert citing the three records, the last when it completes.
    assert_eq!(
        run(&mut fresh(), &[('x', 0, 1), ('r', 1, 2), ('c', 2, 3)]),
        [vec![1, 2, 3]]
    );
    // Two steps are not enough, whichever two; out of order is nothing.
    assert!(run(&mut fresh(), &[('x', 0, 1), ('c', 2, 3)]).is_empty());
    assert!(run(&mut fresh(), &[('r', 0, 1), ('c', 2, 3)]).is_empty());
    assert!(run(&mut fresh(), &[('r', 0, 1), ('x', 1, 2), ('c', 2, 3)]).is_empty());
    assert!(run(&mut fresh(), &[('x', 0, 1), ('c', 1, 2), ('r', 2, 3)]).is_empty());
    // The window runs from the first step: the last 11 s after it is too late, even 1 s
    // after the second.
    assert!(run(&mut fresh(), &[('x', 0, 1), ('r', 10, 2), ('c', 11, 3)]).is_empty());
    assert_eq!(
        run(&mut fresh(), &[('x', 0, 1), ('r', 9, 2), ('c', 10, 3)]),
        [vec![1, 2, 3]]
    );
    // Used up: another connection needs a new read (and the exec before it).
    let mut rules = fresh();
    assert_eq!(
        run(
            &mut rules,
            &[('x', 0, 1), ('r', 1, 2), ('c', 2, 3), ('c', 3, 4)]
        ),
        [vec![1, 2, 3]]
    );
    // A new exec starts a match without undoing one further along: x1 r2 x3 c4 completes
    // x1 r2 c4; then r5 c6 completes x3 r5 c6.
    assert_eq!(
        run(
            &mut fresh(),
            &[
                ('x', 0, 1),
                ('r', 1, 2),
                ('x', 2, 3),
                ('c', 3, 4),
                ('r', 4, 5),
                ('c', 5, 6)
            ]
        ),
        [vec![1, 2, 4], vec![3, 5, 6]]
    );
    // Of two matches at the same step, the later-started one is kept (it leaves more time):
    // x0 r1 x5 r6 then c12: x0's has expired, x5's completes.
    assert_eq!(
        run(
            &mut fresh(),
            &[
                ('x', 0, 1),
                ('r', 1, 2),
                ('x', 5, 3),
                ('r', 6, 4),
                ('c', 12, 5)
            ]
        ),
        [vec![3, 4, 5]]
    );
    // Another agent's records take no part.
    let mut rules = fresh();
    let t = |s: u32| format!("2026-12-07T06:00:{s:02}.000000000Z");
    let (t0, t1, t2) = (t(0), t(1), t(2));
    assert!(fire(&mut rules, &exec("a", &t0, "bash"), 1).is_empty());
    assert!(fire(&mut rules, &read_at("b", &t1), 2).is_empty());
    assert!(fire(&mut rules, &connect_at("a", &t2, "10.0.0.1"), 3).is_empty());
    assert_eq!(rules.evictions(), 0);
}

/// One record can take a step of several matches, never two steps of one: with the same
/// condition at every step, the third record completes the first match, the fourth the
/// second (a window sliding one record at a time).
#[test]
fn a_record_takes_at_most_one_step_of_a_match() {
    let (mut rules, rejected) = load(
        "rules:\n  - id: three-opens\n    title: Three reads\n    sequence:\n      by: agent\n      within: 60\n      steps: [event.action = open, event.action = open, event.action = open]\n",
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(
        run(
            &mut rules,
            &[('r', 0, 1), ('r', 1, 2), ('r', 2, 3), ('r', 3, 4)]
        ),
        [vec![1, 2, 3], vec![2, 3, 4]]
    );
}

#[test]
fn errors_name_file_line_and_column() {
    // Within a plain condition: the column of the unknown field.
    let r = rejection(
        "rules:\n  - id: a\n    title: A\n    condition: event.action = exec and nope = 1\n",
    );
    assert_eq!((r.line, r.column), (4, 40), "{r}");
    assert!(
        r.to_string()
            .starts_with("n.yml:4:40: rule \"A\": unknown field \"nope\""),
        "{r}"
    );
    // Quoted.
    let r = rejection("rules:\n  - id: a\n    title: A\n    condition: \"process.pid = x\"\n");
    assert_eq!((r.line, r.column), (4, 31), "{r}");
    // A block scalar, on its second line.
    let r = rejection(
        "rules:\n  - id: a\n    title: A\n    condition: >\n      event.action = exec\n      and process.pid < x\n",
    );
    assert_eq!((r.line, r.column), (6, 25), "{r}");
    // The end of the condition.
    let r = rejection("rules:\n  - id: a\n    title: A\n    condition: event.action = exec and\n");
    assert_eq!((r.line, r.column), (4, 39), "{r}");
    // In a macro's body: the macro's line.
    let r = rejection(
        "macros:\n  m: process.pid = x\nrules:\n  - id: a\n    title: A\n    condition: m\n",
    );
    assert_eq!((r.line, r.column), (2, 20), "{r}");
    assert!(r.reason.contains("in macro \"m\""), "{r}");
    // Macro and list cycles.
    let r =
        rejection("macros:\n  m: n\n  n: m\nrules:\n  - id: a\n    title: A\n    condition: m\n");
    assert!(r.reason.contains("refers to itself"), "{r}");
    let (_, rejected) = load("lists:\n  a: [b]\n  b: [a]\nrules: []\n");
    assert!(
        rejected[0].reason.contains("list \"a\" refers to itself"),
        "{rejected:?}"
    );
    assert_eq!(rejected[0].line, 2);
    // Unknown keys, severities, tags, templates, sequences.
    let r = rejection("rules:\n  - id: a\n    title: A\n    conditoin: x\n");
    assert_eq!(r.line, 4, "{r}");
    let base = "rules:\n  - id: a\n    title: A\n    condition: event.action = exec\n";
    let r = rejection(&format!("{base}    severity: severe\n"));
    assert_eq!((r.line, r.column), (5, 15), "{r}");
    let r = rejection(&format!("{base}    tags: [attack.t59]\n"));
    assert!(r.reason.contains("ATT&CK"), "{r}");
    let r = rejection(&format!("{base}    output: 'ran %nope'\n"));
    assert_eq!((r.line, r.column), (5, 18), "{r}");
    let r = rejection(&format!("{base}    limit: {{alerts: 0, seconds: 1}}\n"));
    assert!(r.reason.contains("at least 1"), "{r}");
    let r = rejection(
        "rules:\n  - id: a\n    title: A\n    sequence:\n      by: host\n      within: 5\n      steps: [event.action = exec, event.action = exit]\n",
    );
    assert_eq!(
        (r.line, r.reason.contains("agent, process or tree")),
        (5, true),
        "{r}"
    );
    let r = rejection(
        "rules:\n  - id: a\n    title: A\n    sequence:\n      by: agent\n      within: 5\n      steps: [event.action = exec]\n",
    );
    assert!(r.reason.contains("2 to 8 steps"), "{r}");
    let nine = ["event.action = exec"; 9].join(", ");
    let r = rejection(&format!(
        "rules:\n  - id: a\n    title: A\n    sequence:\n      by: agent\n      within: 5\n      steps: [{nine}]\n"
    ));
    assert!(r.reason.contains("not 9"), "{r}");
    let eight = ["event.action = exec"; 8].join(", ");
    let (rules, rejected) = load(&format!(
        "rules:\n  - id: a\n    title: A\n    sequence:\n      by: agent\n      within: 5\n      steps: [{eight}]\n"
    ));
    assert_eq!((rules.len(), rejected.len()), (1, 0), "{rejected:?}");
    let r = rejection("rules:\n  - id: a\n    title: A\n");
    assert!(r.reason.contains("either a condition or a sequence"), "{r}");
    let (rules, rejected) = load(&format!(
        "{base}  - id: a\n    title: B\n    condition: event.action = exit\n"
    ));
    assert_eq!(rules.len(), 1);
    assert!(rejected[0].reason.contains("already loaded"));
    assert_eq!(rejected[0].line, 5);
}

#[test]
fn tells_native_files_from_sigma() {
    assert!(is_native(FILE));
    assert!(is_native(SEQUENCE));
    assert!(!is_native(
        "title: x\nlogsource:\n  product: linux\ndetection:\n  sel:\n    Image: x\n  condition: sel\n"
    ));
    // A Sigma correlation's nested `rules:` is indented.
    assert!(!is_native(
        "title: c\ncorrelation:\n  type: event_count\n  rules:\n    - x\n"
    ));
}

/// Every field a native rule can name is in docs/rules.md's table (by its whole name, or as
/// `.last` after a name it shares its prefix with), list fields marked as lists.
#[test]
fn every_field_is_documented() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md"))
            .unwrap();
    let table: Vec<&str> = docs
        .lines()
        .skip_while(|l| !l.starts_with("### Fields"))
        .take_while(|l| !l.starts_with("### Alerts"))
        .filter(|l| l.starts_with("| `"))
        .collect();
    for (name, field, _) in field::FIELDS {
        let last = name.rsplit('.').next().unwrap();
        let row = table
            .iter()
            .find(|row| {
                let names = row.split(" | ").next().unwrap();
                names.contains(&format!("`{name}`")) || names.contains(&format!("`.{last}`"))
            })
            .unwrap_or_else(|| panic!("{name} is not in docs/rules.md's field table"));
        assert_eq!(row.contains("**list**"), field.is_list(), "{name}: {row}");
    }
}

/// The actions a rule is evaluated for: what its condition requires, never fewer.
#[test]
fn rules_are_evaluated_only_for_the_actions_their_conditions_allow() {
    let (rules, rejected) = load(
        r#"macros:
  outbound: event.action = connect or event.action in (send, sendto)
rules:
  - {id: a, title: A, condition: "outbound and destination.port = 22"}
  - {id: b, title: B, condition: "event.action = exec and event.action = open"}
  - {id: c, title: C, condition: "not event.action = exec"}
  - {id: d, title: D, condition: "event.action = exec or process.pid = 1"}
  - id: e
    title: E
    sequence:
      by: agent
      within: 10
      steps: ["event.action = open", "outbound"]
  - id: f
    title: F
    sequence:
      by: agent
      within: 10
      steps: ["event.action = open", "destination.port = 22"]
"#,
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    let actions: Vec<Option<Vec<String>>> = rules.rules.iter().map(|r| r.actions.clone()).collect();
    let some = |a: &[&str]| Some(a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(
        actions,
        [
            some(&["connect", "send", "sendto"]),
            some(&[]),
            None,
            None,
            some(&["connect", "open", "send", "sendto"]),
            None,
        ]
    );
    // Skipping changes nothing: a connect still fires A, an exec of pid 1 D.
    let mut rules = rules;
    let connect = Fields {
        action: "connect",
        destination_port: Some(22),
        ..Fields::default()
    };
    let titles =
        |out: Vec<(String, String, Vec<u64>)>| out.into_iter().map(|(t, ..)| t).collect::<Vec<_>>();
    assert_eq!(titles(fire(&mut rules, &connect, 1)), ["A", "C"]);
    let exec = Fields {
        action: "exec",
        pid: Some(1),
        ..Fields::default()
    };
    assert_eq!(titles(fire(&mut rules, &exec, 2)), ["D"]);
}
