//! The sensor's Sigma alerts checked against an independent evaluator: the running sensor
//! with every SigmaHQ Linux rule of `../shared/sigma/rules/linux` that it loads watches a
//! mix of ordinary and suspicious shell activity (and whatever else runs on the host); then
//! `sigma-rust` (a Sigma implementation that shares no code with the sensor's `rsigma-eval`)
//! evaluates the same rules over the recorded trail, with the Sigma fields taken from each
//! record as docs/rules.md documents them, and the alerts are compared rule by rule.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use sensor_tests::{AgentRun, Launch, Value, action, scratch_dir};

/// The corpus's Linux rule folders of the three categories the sensor feeds.
fn sigma_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sigma/rules/linux");
    ["process_creation", "file_event", "network_connection"]
        .iter()
        .map(|d| root.join(d))
        .collect()
}

/// What the parent of each process runs, learnt as docs/rules.md says (`ParentImage`): from
/// its exec or snapshot record; a forked child runs what its parent ran.
#[derive(Default)]
struct Lineage(HashMap<String, (Option<String>, Option<String>)>);

impl Lineage {
    fn observe(&mut self, r: &Value) {
        let p = &r["process"];
        let Some(id) = p["entity_id"].as_str() else {
            return;
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        match action(r) {
            "exec" | "snapshot" => {
                self.0.insert(
                    id.to_owned(),
                    (text(&p["executable"]), text(&p["command_line"])),
                );
            }
            "fork" => {
                if let Some(parent) = p["parent"]["entity_id"]
                    .as_str()
                    .and_then(|pid| self.0.get(pid))
                    .cloned()
                {
                    self.0.insert(id.to_owned(), parent);
                }
            }
            _ => {}
        }
    }
}

/// The Sigma category of a record and its Sigma fields, per docs/rules.md's tables.
fn sigma_event(
    record: &Value,
    lineage: &Lineage,
    users: &HashMap<String, String>,
) -> Option<(&'static str, sigma_rust::Event)> {
    let kind = action(record);
    let ok = record["event"]["outcome"] != "failure";
    let open = &record["file"]["open"];
    let writes = matches!(open["access"].as_str(), Some("write" | "read_write"));
    let creates = open["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "create" || f == "truncate"));
    let ip = matches!(record["network"]["type"].as_str(), Some("ipv4" | "ipv6"));
    let category = match kind {
        "exec" => "process_creation",
        "open" if ok && writes && creates => "file_event",
        "rename" | "link" | "symlink" if ok => "file_event",
        "connect" | "accept" if ip => "network_connection",
        _ => return None,
    };
    let mut event = sigma_rust::Event::new();
    let process = &record["process"];
    let mut text = |name: &str, v: &Value| {
        if let Some(s) = v.as_str() {
            event.insert(name.to_owned(), s.to_owned());
        }
    };
    text("Image", &process["executable"]);
    let uid = record["user"]["id"]
        .as_str()
        .or(process["user"]["id"].as_str());
    if let Some(uid) = uid {
        let name = users.get(uid).cloned().unwrap_or_else(|| uid.to_owned());
        event.insert("User", name);
    }
    if let Some(pid) = process["pid"].as_i64() {
        event.insert("ProcessId", pid);
    }
    match category {
        "process_creation" => {
            if let Some(s) = process["command_line"].as_str() {
                event.insert("CommandLine", s.to_owned());
            }
            if let Some(s) = process["working_directory"].as_str() {
                event.insert("CurrentDirectory", s.to_owned());
            }
            if let Some((exe, cmd)) = process["parent"]["entity_id"]
                .as_str()
                .and_then(|id| lineage.0.get(id))
            {
                if let Some(exe) = exe {
                    event.insert("ParentImage", exe.clone());
                }
                if let Some(cmd) = cmd {
                    event.insert("ParentCommandLine", cmd.clone());
                }
            }
            if let Some(login) = process["login_user"]["id"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
            {
                event.insert("LogonId", login);
            }
        }
        "file_event" => {
            let file = &record["file"];
            let target = match kind {
                "rename" => file["destination_path"].as_str().or(file["path"].as_str()),
                "open" => file["target_path"].as_str().or(file["path"].as_str()),
                _ => file["path"].as_str(),
            };
            if let Some(t) = target {
                event.insert("TargetFilename", t.to_owned());
            }
        }
        _ => {
            let destination = &record["destination"];
            let source = &record["source"];
            for (name, v) in [
                ("DestinationIp", &destination["ip"]),
                ("DestinationHostname", &destination["domain"]),
                ("SourceIp", &source["ip"]),
                ("Protocol", &record["network"]["transport"]),
            ] {
                if let Some(t) = v.as_str() {
                    event.insert(name, t.to_owned());
                }
            }
            for (name, v) in [
                ("DestinationPort", &destination["port"]),
                ("SourcePort", &source["port"]),
            ] {
                if let Some(n) = v.as_i64() {
                    event.insert(name, n);
                }
            }
            event.insert(
                "Initiated",
                if kind == "connect" { "true" } else { "false" },
            );
        }
    }
    Some((category, event))
}

#[test]
fn sigma_alerts_agree_with_an_independent_evaluator_rule_by_rule() {
    let run = AgentRun::new("rules-compare", &[("id", "compare-agent")]);
    std::fs::create_dir_all(&run.cgroup).unwrap();
    let mut config = std::fs::read_to_string(&run.config).unwrap();
    let dirs: Vec<String> = sigma_dirs()
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    let _ = write!(
        config,
        "[rules]\nfiles = [{}]\nskip_unsupported = true\n",
        dirs.join(", ")
    );
    std::fs::write(&run.config, config).unwrap();
    let sensor = Launch::new().config(&run.config).start();

    // A session of ordinary and suspicious commands, none chosen for a particular rule.
    let work = scratch_dir("rules-compare-work");
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let w = work.display();
    run.in_agent_cgroup(&format!(
        "id >/dev/null; whoami >/dev/null; uname -a >/dev/null; hostname >/dev/null; \
         cat /etc/passwd >/dev/null; ls -la /root >/dev/null 2>&1; \
         echo 'ZWNobyBoaQ==' | base64 -d >/dev/null; \
         cp /bin/sh {w}/.hidden-sh && chmod +x {w}/.hidden-sh && {w}/.hidden-sh -c 'id' >/dev/null; \
         printf '#!/bin/sh\\ntrue\\n' > {w}/run.sh && chmod 755 {w}/run.sh && {w}/run.sh; \
         mkdir -p {w}/.ssh && : > {w}/.ssh/authorized_keys; \
         touch {w}/.bash_history && mv {w}/.bash_history {w}/old-history; \
         ln -s /etc/shadow {w}/shadow-link; \
         find {w} -maxdepth 1 -perm -4000 >/dev/null 2>&1; \
         ps aux >/dev/null; netstat -an >/dev/null 2>&1; \
         bash -c 'exec 3<>/dev/tcp/127.0.0.2/{port}'; \
         sh -c 'echo $((1+1))' >/dev/null; \
         python3 -c 'import socket' 2>/dev/null; /bin/echo compare-session-done"
    ));
    sensor.wait_for("the session's last exec", |r| {
        action(r) == "exec" && r["process"]["command_line"] == "/bin/echo compare-session-done"
    });
    let done = sensor.stop();
    let records = &done.records;

    // The rules the sensor loaded: every file but those it named as not loaded.
    let mut rules: Vec<(String, String, sigma_rust::Rule)> = Vec::new();
    let mut skipped = Vec::new();
    for dir in sigma_dirs() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.display().to_string();
            if done.stderr.contains(&name) {
                skipped.push(name);
                continue;
            }
            let rule = sigma_rust::rule_from_yaml(&text)
                .unwrap_or_else(|e| panic!("sigma-rust cannot read {name}: {e}"));
            let id = rule.id.clone().expect("corpus rules have ids");
            let category = rule.logsource.category.clone().expect("a category");
            rules.push((id, category, rule));
        }
    }
    // Every rule loads.
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(rules.len(), 135);

    let users: HashMap<String, String> = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(':');
            let name = parts.next()?;
            Some((parts.nth(1)?.to_owned(), name.to_owned()))
        })
        .collect();

    // The independent evaluation: (rule id, sequence of the record it fires on).
    let mut lineage = Lineage::default();
    let mut expected: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut evaluated = 0;
    for r in records {
        if let Some((category, event)) = sigma_event(r, &lineage, &users) {
            evaluated += 1;
            let seq = r["chain"]["sequence"].as_u64().unwrap();
            for (id, _, rule) in rules.iter().filter(|(_, c, _)| c == category) {
                if sigma_rust::check_rule(rule, &event) {
                    expected.entry(id.clone()).or_default().insert(seq);
                }
            }
        }
        lineage.observe(r);
    }
    let mut live: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for a in records.iter().filter(|r| action(r) == "alert") {
        live.entry(a["alert"]["rule"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(a["alert"]["trigger"]["sequence"][0].as_u64().unwrap());
    }
    let ids: BTreeSet<&String> = expected.keys().chain(live.keys()).collect();
    let mut report = String::new();
    for id in &ids {
        let (e, l) = (expected.get(*id), live.get(*id));
        if e != l {
            let _ = writeln!(report, "rule {id}: sigma-rust {e:?}, sensor {l:?}");
        }
    }
    println!(
        "{evaluated} records of the three categories, {} rules, {} rules fired: {:?}",
        rules.len(),
        ids.len(),
        live.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
    );
    assert!(report.is_empty(), "the evaluators disagree:\n{report}");
    // The session did set some rules off (an empty comparison proves nothing).
    assert!(live.len() >= 3, "{live:?}");
}
