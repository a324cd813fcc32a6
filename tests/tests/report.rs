//! The auditor's report over a trail a real multi-agent run wrote: every item links to the
//! record it came from (checked against the trail, line by line), every count is the trail's,
//! an altered or cut trail says so at the top with the verifier's verdict and exit status, and
//! the HTML page renders in a real browser (headless Chromium) with no console error, its
//! timeline and charts on screen.
use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use sensor_tests::{Launch, Value, action, keygen, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

/// A trail of two agents: `planner` (a copy of sh, declared in full, registered for task
/// `plan-1`) reads a `.env` file and delegates to `coder` (a copy of the test helper,
/// declared with no owners), which writes files and connects to a listener; a refused
/// registration and an operator's review of one of coder's records.
struct Scenario {
    dir: PathBuf,
    trail: PathBuf,
    public_key: PathBuf,
    listener_port: u16,
    /// The record the annotation is about.
    reviewed_hash: String,
}

fn control(socket: &Path, args: &[&str]) -> Output {
    Command::new(sensor_binary())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

fn scenario(name: &str) -> Scenario {
    let dir = scratch_dir(name);
    keygen(&dir.join("keys"));
    let planner = dir.join("planner-sh");
    let coder = dir.join("coder-helper");
    std::fs::copy("/bin/sh", &planner).unwrap();
    std::fs::copy(HELPER, &coder).unwrap();
    std::fs::write(dir.join(".env"), "TOKEN=not-a-real-one\n").unwrap();
    std::fs::create_dir(dir.join("work")).unwrap();
    let (planner, coder) = (planner.display(), coder.display());
    std::fs::write(
        dir.join("agents.yaml"),
        format!(
            "agents:\n  - id: planner\n    name: Release planner\n    purpose: plans releases\n    owners: {{business: ops@example.com, technical: dev@example.com}}\n    team: platform\n    data_sensitivity: confidential\n    allowed_tasks: [plan-1]\n    selectors: [{{executable: {planner}}}]\n  - id: coder\n    selectors: [{{executable: {coder}}}]\n"
        ),
    )
    .unwrap();
    let socket = dir.join("control.sock");
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 40\n[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = dir.display();
    // Waits for a line on stdin (the registration) before it acts.
    std::fs::write(
        dir.join("plan.sh"),
        format!(
            "read go\n{HELPER} open {d}/.env\n{coder} files {d}/work\n{coder} connect 127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    let trail = dir.join("trail.jsonl");
    let sensor = Launch::new().config(&config).output(&trail).start();
    let mut plan = Command::new(planner.to_string())
        .arg(dir.join("plan.sh"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = plan.id().to_string();
    sensor.wait_for("the planner's exec", |r| {
        action(r) == "exec" && r["identity"]["agent"]["id"] == "planner"
    });
    let granted = control(
        &socket,
        &[
            "register",
            "--pid",
            &pid,
            "--agent",
            "planner",
            "--task",
            "plan-1",
            "--session",
            "s1",
        ],
    );
    assert!(granted.status.success(), "{granted:?}");
    let refused = control(
        &socket,
        &[
            "register",
            "--pid",
            &pid,
            "--agent",
            "planner",
            "--task",
            "not-allowed",
        ],
    );
    assert!(!refused.status.success(), "{refused:?}");
    plan.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(plan.wait().unwrap().success());
    let connect = sensor.wait_for("coder's connect", |r| {
        action(r) == "connect" && r["identity"]["agent"]["id"] == "coder"
    });
    let reviewed_hash = connect["chain"]["hash"].as_str().unwrap().to_owned();
    let review = control(
        &socket,
        &[
            "annotate",
            "--kind",
            "review",
            "--author",
            "auditor@example.com",
            "--text",
            "expected | connection\n# not a heading",
            "--subject",
            &reviewed_hash,
        ],
    );
    assert!(review.status.success(), "{review:?}");
    sensor.wait_for("the review", |r| action(r) == "annotation");
    sensor.stop();
    drop(listener);
    Scenario {
        public_key: dir.join("keys/sensor.pub"),
        dir,
        trail,
        listener_port: port,
        reviewed_hash,
    }
}

/// `agent-sensor report ARGS`: its exit status and output.
fn report(args: &[&str], paths: &[&Path]) -> (i32, String) {
    let out = Command::new(sensor_binary())
        .arg("report")
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn json_report(extra: &[&str], path: &Path) -> (i32, Value) {
    let out = Command::new(sensor_binary())
        .args(["report", "--format", "json"])
        .args(extra)
        .arg(path)
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.code().unwrap(), value)
}

/// Every link in `v` (an object with file, line, sequence and hash).
fn links<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("hash") && m.contains_key("line") && m.contains_key("sequence") {
                out.push(v);
            }
            m.values().for_each(|v| links(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| links(v, out)),
        _ => {}
    }
}

fn agent<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no agent {id} in {report}"))
}

/// The agent a record counts for in the report: its identity, or the agent a registration
/// request names.
fn agent_of(r: &Value) -> Option<&str> {
    r["identity"]["agent"]["id"].as_str().or_else(|| {
        (action(r) == "agent_registration")
            .then(|| r["registration"]["agent"].as_str())
            .flatten()
    })
}

#[test]
fn the_report_of_a_real_multi_agent_run_is_a_view_of_its_records() {
    let s = scenario("report");
    let key = s.public_key.to_str().unwrap();
    let manifest = s.dir.join("agents.yaml");
    let (code, r) = json_report(
        &["--key", key, "--identities", manifest.to_str().unwrap()],
        &s.trail,
    );
    assert_eq!(code, 0, "{r}");
    let e = &r["evidence"];
    assert_eq!(e["verdict"], "complete", "{e}");
    let public = std::fs::read_to_string(&s.public_key).unwrap();
    assert_eq!(e["signing"]["keys"][0]["public_key"], public.trim(), "{e}");
    assert_eq!(e["signing"]["verified_with"], public.trim());
    assert!(e["signing"]["checkpoints_verified"].as_u64().unwrap() >= 1);
    assert_eq!(e["missing"], Value::Array(vec![]), "{e}");

    // Every link names a record of the trail: its line there has that sequence and hash.
    let text = std::fs::read_to_string(&s.trail).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut all = Vec::new();
    links(&r, &mut all);
    assert!(all.len() > 50, "{} links", all.len());
    for l in &all {
        let line = l["line"].as_u64().unwrap() as usize;
        let record = &records[line - 1];
        assert_eq!(l["file"], s.trail.to_str().unwrap());
        assert_eq!(record["chain"]["sequence"], l["sequence"], "{l}");
        assert_eq!(record["chain"]["hash"], l["hash"], "{l}");
    }

    // Every count by record kind is the trail's.
    let mut expected: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for rec in &records {
        if let Some(a) = agent_of(rec) {
            *expected.entry((a, action(rec))).or_default() += 1;
        }
    }
    let mut counted: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for a in r["agents"].as_array().unwrap() {
        for k in a["kinds"].as_array().unwrap() {
            counted.insert(
                (a["id"].as_str().unwrap(), k["action"].as_str().unwrap()),
                k["records"].as_u64().unwrap(),
            );
        }
    }
    assert_eq!(counted, expected);
    assert_eq!(r["scope"]["records_read"], records.len() as u64);

    let planner = agent(&r, "planner");
    let d = &planner["declaration"];
    assert_eq!(d["business_owner"], "ops@example.com");
    assert_eq!(d["data_sensitivity"], "confidential");
    assert_eq!(d["allowed_tasks"], serde_json::json!(["plan-1"]));
    let tasks: Vec<&str> = planner["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["plan-1 (session s1)"]);
    assert!(planner["registrations"]["granted"].as_u64().unwrap() >= 1);
    assert_eq!(planner["registrations"]["refused"]["total"], 1);
    let env = planner["files"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "env_file")
        .expect("the .env read, by class");
    assert_eq!(
        env["paths"][0]["path"],
        s.dir.join(".env").to_str().unwrap()
    );
    assert!(
        env["reads"].as_u64().unwrap() >= 1 && env["writes"] == 0,
        "{env}"
    );
    let methods: Vec<&str> = planner["identity_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"executable") && methods.contains(&"registration"),
        "{methods:?}"
    );

    // The manifest given declares them as their records do.
    assert_eq!(planner["manifest"]["business_owner"], "ops@example.com");
    assert!(
        planner["selectors"][0]
            .as_str()
            .unwrap()
            .contains("planner-sh"),
        "{planner}"
    );
    let coder = agent(&r, "coder");
    assert!(coder["declaration"]["business_owner"].is_null());
    for a in [planner, coder] {
        let flagged = a["soc2"][0]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("declares it otherwise"));
        assert!(!flagged, "{a}");
    }
    let hops = &coder["processes"]["delegations"];
    assert!(
        hops[0]["key"]
            .as_str()
            .unwrap()
            .starts_with("planner → coder"),
        "{hops}"
    );
    let to_listener = coder["network"]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["port"] == s.listener_port)
        .expect("the connect to the listener");
    assert_eq!(
        (&to_listener["address"], &to_listener["direction"]),
        (&"127.0.0.1".into(), &"egress".into())
    );
    let work = s.dir.join("work");
    let unclassified = coder["files"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "unclassified")
        .unwrap();
    assert!(unclassified["writes"].as_u64().unwrap() > 0);
    assert!(
        unclassified["paths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"]
                .as_str()
                .unwrap()
                .starts_with(work.to_str().unwrap())),
        "{unclassified}"
    );
    let review = &r["annotations"]["items"][0];
    assert_eq!(review["about_agent"], "coder");
    assert_eq!(review["subject"], s.reviewed_hash.as_str());

    // The SOC 2 mapping says plainly what is missing.
    let soc2 = |a: &Value, area: &str, field: &str| -> Vec<String> {
        a["soc2"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["area"] == area)
            .unwrap()[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        soc2(coder, "identity_and_ownership", "missing")
            .contains(&"no business owner declared".to_owned())
    );
    assert!(
        soc2(planner, "identity_and_ownership", "shows")
            .contains(&"business owner: ops@example.com".to_owned())
    );
    assert!(
        soc2(coder, "change_and_review", "shows")
            .iter()
            .any(|s| s.starts_with("1 annotation(s) about its records: 1 review")),
        "{coder}"
    );
    assert!(
        soc2(planner, "change_and_review", "missing")
            .iter()
            .any(|s| s.starts_with("no human review"))
    );

    // Markdown: the same, for people; the annotation's text cannot add a row or a heading.
    let (code, md) = report(&["--key", key], &[&s.trail]);
    assert_eq!(code, 0, "{md}");
    assert!(md.contains("## Evidence: complete and unaltered"), "{md}");
    assert!(md.contains("## Agent planner (Release planner)"), "{md}");
    assert!(md.contains("- missing: no business owner declared"), "{md}");
    assert!(
        md.contains("expected \\| connection\\u{a}\\# not a heading"),
        "{md}"
    );

    // One agent, and a range with nothing in it.
    let (_, only) = json_report(&["--agent", "coder"], &s.trail);
    assert_eq!(only["agents"].as_array().unwrap().len(), 1);
    assert_eq!(only["agents"][0]["id"], "coder");
    let (_, later) = json_report(&["--since", "2100-01-01T00:00:00Z"], &s.trail);
    assert_eq!(later["scope"]["records_in_range"], 0);
    assert!(later["agents"].as_array().unwrap().is_empty());
    let (code, err) = report(&["--since", "yesterday"], &[&s.trail]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--since \"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
    let (code, err) = report(&["--output", "/nonexistent/report.md"], &[&s.trail]);
    assert_eq!(code, 2, "no report, no verdict: {err}");
    assert!(err.contains("cannot write /nonexistent/report.md"), "{err}");

    // An altered record: the report says so at the top and leaves the record uncounted.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = records
        .iter()
        .position(|r| action(r) == "exec" && r["identity"]["agent"]["id"] == "coder")
        .unwrap();
    lines[at] = lines[at].replacen("coder-helper", "coder-helpeR", 1);
    let altered = s.dir.join("altered.jsonl");
    std::fs::write(&altered, lines.join("\n") + "\n").unwrap();
    let (code, r) = json_report(&[], &altered);
    assert_eq!(code, 1);
    assert_eq!(r["evidence"]["verdict"], "altered");
    assert_eq!(r["evidence"]["findings"]["items"][0]["kind"], "changed");
    assert_eq!(r["evidence"]["findings"]["items"][0]["line"], at + 1);
    assert_eq!(r["scope"]["records_not_counted"], 1);
    let (code, md) = report(&[], &[&altered]);
    assert_eq!(code, 1);
    assert!(md.contains("## Evidence: NOT INTACT: altered"), "{md}");

    // Cut after a whole record, before the stop record: intact but incomplete.
    let stop = records
        .iter()
        .position(|r| action(r) == "sensor_stop")
        .unwrap();
    let cut = s.dir.join("cut.jsonl");
    std::fs::write(&cut, lines_of(&text, stop)).unwrap();
    let (code, r) = json_report(&[], &cut);
    assert_eq!(code, 3);
    assert_eq!(r["evidence"]["verdict"], "incomplete");
    assert!(
        r["evidence"]["missing"][0]
            .as_str()
            .unwrap()
            .contains("has no stop record"),
        "{}",
        r["evidence"]
    );
    let (code, md) = report(&[], &[&cut]);
    assert_eq!(code, 3);
    assert!(md.contains("## Evidence: intact but INCOMPLETE"), "{md}");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The first `n` lines of `text`.
fn lines_of(text: &str, n: usize) -> String {
    text.lines().take(n).flat_map(|l| [l, "\n"]).collect()
}

/// Chromium, headless, with no network and a profile of its own, on `page` (file URL).
fn chromium(profile: &Path, args: &[&str], page: &Path) -> Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (cargo xtask setup installs Debian's chromium)");
    assert!(out.status.success(), "{out:?}");
    out
}

/// What the page logged to its console (errors included), as Chromium reports it.
fn console(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// Counts the pixels of each colour (`rrggbb`) in a PNG screenshot (Python's zlib decodes it).
fn pixels(png: &Path, colours: &[&str]) -> Vec<u64> {
    const SCRIPT: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
raw, stride = zlib.decompress(idat), w * bpp
prev, counts, i = bytearray(stride), {}, 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        key = bytes(line[x:x + 3])
        counts[key] = counts.get(key, 0) + 1
    prev = line
print(" ".join(str(counts.get(bytes.fromhex(c), 0)) for c in sys.argv[2:]))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(png)
        .args(colours)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn the_html_page_renders_in_a_real_browser_with_its_timeline_and_charts() {
    let s = scenario("report-html");
    let page = s.dir.join("report.html");
    let (code, out) = report(
        &["--format", "html", "--output", page.to_str().unwrap()],
        &[&s.trail],
    );
    assert_eq!(code, 0, "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    for remote in ["http://", "https://", "src=", "@import", "url("] {
        assert!(
            !html.contains(remote),
            "the page must need no network: {remote}"
        );
    }
    let profile = s.dir.join("chromium-profile");

    // The harness sees a console error when there is one.
    let broken = s.dir.join("broken.html");
    std::fs::write(&broken, "<!DOCTYPE html><script>nosuch();</script>").unwrap();
    let seen = console(&chromium(&profile, &["--dump-dom"], &broken));
    assert!(
        seen.iter().any(|l| l.contains("nosuch is not defined")),
        "{seen:?}"
    );

    let dom = chromium(&profile, &["--dump-dom"], &page);
    assert_eq!(console(&dom), Vec::<String>::new(), "console messages");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script ran to its end"
    );
    for id in ["timeline", "chart-destinations", "chart-file-classes"] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "no {id}");
    }
    assert!(dom.contains("class=\"verdict complete\""));

    let shot = s.dir.join("report.png");
    let out = chromium(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1300,1300",
        ],
        &page,
    );
    assert_eq!(console(&out), Vec::<String>::new());
    // Process bars of the timeline, its marks, the destinations and file-class bars.
    let counts = pixels(&shot, &["4e79a7", "e15759", "76b7b2", "edc948"]);
    assert!(
        counts.iter().all(|&n| n >= 20),
        "timeline bars, marks, destination and file-class bars on screen: {counts:?}"
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}
