//! The evidence chain, end to end: a trail the real sensor wrote verifies as intact, and each
//! kind of tampering is detected and located.
use std::{fmt::Write as _, os::unix::fs::PermissionsExt as _, process::Command};

use sensor_tests::{Launch, action, require_root, scratch_dir, sensor_binary};

fn verify(path: &std::path::Path) -> (bool, serde_json::Value) {
    let (code, report) = verify_with(path, &[]);
    (code == 0, report)
}

/// `verify --json EXTRA PATH`: its exit status and report; the status is the report's verdict.
fn verify_with(path: &std::path::Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(sensor_binary())
        .args(["verify", "--json"])
        .args(extra)
        .arg(path)
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let code = out.status.code().unwrap();
    assert_eq!(report["exit_code"], code, "{report}");
    (code, report)
}

/// Runs the sensor (all processes, writing to `trail`) while `execs` short processes run,
/// then stops it with SIGTERM.
fn record_trail(trail: &std::path::Path, extra: &[&std::ffi::OsStr], execs: usize) {
    let sensor = Launch::new()
        .arg("--all-processes")
        .output(trail)
        .args(extra)
        .start();
    for _ in 0..execs {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    sensor.wait_for_count("the execs", execs, |r| {
        action(r) == "exec" && r["process"]["name"] == "true"
    });
    sensor.stop();
}

fn only_finding(report: &serde_json::Value) -> (&str, u64) {
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    (
        findings[0]["kind"].as_str().unwrap(),
        findings[0]["line"].as_u64().unwrap(),
    )
}

#[test]
fn a_real_trail_verifies_and_every_kind_of_tampering_is_located() {
    require_root();
    let dir = scratch_dir("evidence");
    let trail = dir.join("trail.jsonl");
    record_trail(&trail, &[], 5);

    let (ok, report) = verify(&trail);
    assert!(ok, "{report}");
    assert_eq!(report["verdict"], "complete");
    assert_eq!(report["instances"], 1);
    assert_eq!(
        std::fs::metadata(&trail).unwrap().permissions().mode() & 0o777,
        0o600,
        "records are the owner's alone"
    );
    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 10, "{}", lines.len());
    assert_eq!(report["records"], lines.len() as u64);
    let write = |name: &str, lines: &[&str]| {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };

    // A changed record: one byte of record 5.
    let mut changed: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    changed[4] = changed[4].replacen(
        // Whatever the version, one more digit in it.
        "\"schema_version\":\"",
        "\"schema_version\":\"9",
        1,
    );
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let (code, report) = verify_with(&write("changed.jsonl", &changed), &[]);
    assert_eq!((code, &report["verdict"]), (1, &"altered".into()));
    assert_eq!(only_finding(&report), ("changed", 5));

    // A removed record.
    let mut removed = lines.clone();
    removed.remove(4);
    let (ok, report) = verify(&write("removed.jsonl", &removed));
    assert!(!ok);
    assert_eq!(only_finding(&report), ("removed", 5));

    // Two records swapped.
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    let (ok, report) = verify(&write("swapped.jsonl", &swapped));
    assert!(!ok);
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"reordered") || kinds.contains(&"removed"),
        "{report}"
    );
    assert_eq!(report["findings"][0]["line"], 5);

    // A file cut short inside its last record: what a crash mid-write leaves, so a torn
    // tail, reported where it is, not tampering; but the run has no stop record, so the
    // trail is incomplete (exit 3), unless it is a live trail still being written.
    let cut = &text[..text.len() - 40];
    let path = dir.join("cut.jsonl");
    std::fs::write(&path, cut).unwrap();
    let (code, report) = verify_with(&path, &[]);
    assert_eq!((code, &report["verdict"]), (3, &"incomplete".into()));
    let incomplete = report["incomplete"].as_array().unwrap();
    assert_eq!(incomplete.len(), 2, "{report}");
    assert!(
        incomplete[0].as_str().unwrap().contains(&format!(
            "has no stop record after sequence {}",
            lines.len() - 2
        )),
        "{report}"
    );
    let (code, open) = verify_with(&path, &["--allow-open-end"]);
    assert_eq!((code, &open["verdict"]), (0, &"complete".into()), "{open}");
    assert_eq!(
        report["torn_tails"],
        serde_json::json!([{
            "file": path.to_string_lossy(),
            "line": lines.len(),
            "bytes": lines.last().unwrap().len() + 1 - 40,
            "confirmed": false,
        }])
    );
    assert_eq!(report["records"], lines.len() as u64 - 1);

    // A record cut short with the trail going on after it is not a torn tail.
    let mut cut_inside = lines.clone();
    let short = &lines[4][..lines[4].len() - 40];
    cut_inside[4] = short;
    let (ok, report) = verify(&write("cut-inside.jsonl", &cut_inside));
    assert!(!ok);
    assert_eq!(report["findings"][0]["kind"], "unreadable", "{report}");
    assert_eq!(report["findings"][0]["line"], 5, "{report}");

    // Whole records cut from the end (the stop record with them): intact, incomplete.
    let (code, report) = verify_with(&write("cut-whole.jsonl", &lines[..lines.len() - 3]), &[]);
    assert_eq!((code, &report["verdict"]), (3, &"incomplete".into()));
    assert!(report["findings"].as_array().unwrap().is_empty());
    // No verdict at all: a trail that is not there is neither complete nor altered.
    let out = Command::new(sensor_binary())
        .arg("verify")
        .arg(dir.join("no-such-trail.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));

    // The start of the trail missing.
    let (ok, report) = verify(&write("headless.jsonl", &lines[3..]));
    assert!(!ok);
    assert_eq!(only_finding(&report), ("removed", 1));

    // The human summary says it too.
    let out = Command::new(sensor_binary())
        .arg("verify")
        .arg(dir.join("removed.jsonl"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("removed.jsonl:5: removed: 1 record(s) missing before sequence 5")
            && text.contains("NOT INTACT"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Re-seals lines from `from` on, as an attacker who rewrote a record would: the chain alone
/// then verifies; only the signed checkpoints give the rewrite away.
fn rechain(lines: &mut [String], from: usize) {
    use sha2::{Digest as _, Sha256};
    const SUFFIX: usize = ",\"hash\":\"".len() + 64 + "\"}}".len();
    let hex = |b: &[u8]| {
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    };
    let hash_of = |line: &str| line[line.len() - SUFFIX + 9..line.len() - 3].to_owned();
    for i in from..lines.len() {
        let prev = hash_of(&lines[i - 1]);
        let line = &lines[i];
        let at = line.find("\"prev_hash\":\"").unwrap() + "\"prev_hash\":\"".len();
        let prefix = format!("{}{}\"", &line[..at], prev);
        let hash = hex(&Sha256::digest(prefix.as_bytes()));
        lines[i] = format!("{prefix},\"hash\":\"{hash}\"}}}}");
    }
}

#[test]
fn signed_checkpoints_expose_a_rewritten_chain() {
    require_root();
    let dir = scratch_dir("checkpoints");
    let keys = dir.join("keys");
    let out = Command::new(sensor_binary())
        .args(["keygen", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::metadata(keys.join("sensor.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let again = Command::new(sensor_binary())
        .args(["keygen", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite")
    );

    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        "[evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 20\n",
    )
    .unwrap();
    let trail = dir.join("trail.jsonl");
    record_trail(
        &trail,
        &[std::ffi::OsStr::new("--config"), config.as_os_str()],
        10,
    );
    let public = keys.join("sensor.pub");
    let verify_key = |path: &std::path::Path, key: &std::path::Path| {
        let out = Command::new(sensor_binary())
            .args(["verify", "--json", "--key"])
            .arg(key)
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        )
    };
    let (ok, report) = verify_key(&trail, &public);
    assert!(ok, "{report}");
    assert!(
        report["checkpoints_verified"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(
        report["unsigned_tail"], 0,
        "the last checkpoint covers the stop record"
    );

    // Rewrite a record and re-seal everything after it.
    let text = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("\"schema_version\":\"", "\"schema_version\":\"9.9", 1);
    rechain(&mut lines, 3);
    let forged = dir.join("forged.jsonl");
    std::fs::write(&forged, lines.join("\n") + "\n").unwrap();
    let (ok, report) = verify(&forged);
    assert!(ok, "the chain alone cannot tell a full rewrite: {report}");
    let (ok, report) = verify_key(&forged, &public);
    assert!(!ok, "the signatures can");
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"bad_checkpoint")
            && kinds
                .iter()
                .all(|k| ["bad_checkpoint", "unsigned"].contains(k)),
        "{report}"
    );
    // Checkpoints come every 20 records (the configured count).
    let checkpoints: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("\"action\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect();
    assert!(
        checkpoints.windows(2).all(|w| w[1] - w[0] <= 21),
        "{checkpoints:?}"
    );

    // Another key does not vouch for it either.
    let other = dir.join("other");
    sensor_tests::keygen(&other);
    let (ok, _) = verify_key(&trail, &other.join("sensor.pub"));
    assert!(!ok);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_operators_annotation_is_sealed_signed_and_attributed_to_who_connected() {
    use sensor_tests::Sensor;
    require_root();
    let dir = scratch_dir("annotate");
    sensor_tests::keygen(&dir.join("keys"));
    let socket = dir.join("control.sock");
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            // Group 4243 may connect (so the socket is open to all), uid 4242 is not in it:
            // the daemon, not the file mode, refuses it.
            "[evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 100000\ncheckpoint_interval_ms = 3600000\n[identities]\nregistration_socket = \"{}\"\nregistration_gids = [4243]\n",
            socket.display()
        ),
    )
    .unwrap();
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let annotate = |prefix: &[&str], kind: &str, text: &str| {
        let mut cmd = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(sensor_binary().to_str().unwrap()),
        );
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(sensor_binary());
        }
        let out = cmd
            .args([
                "annotate",
                "--socket",
                socket.to_str().unwrap(),
                "--kind",
                kind,
            ])
            .args(["--author", "alice@example.com", "--text", text])
            .output()
            .unwrap();
        let reply: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
        (out.status.success(), reply)
    };
    let text = "Reviewed the reviewer's \"rm -rf\"\nfalse positive: a test fixture";
    let (ok, reply) = annotate(&[], "acknowledgement", text);
    assert!(ok, "{reply}");
    let (bad_kind, _) = annotate(&[], "approval", "x");
    assert!(!bad_kind);
    let (unprivileged, refusal) = annotate(
        &["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups"],
        "note",
        "let me in",
    );
    assert!(!unprivileged, "{refusal}");
    let sequence = reply["sequence"].as_u64().expect("the annotation's place");
    sensor.wait_for("the refusal", |r| {
        action(r) == "agent_registration" && r["registration"]["peer_uid"] == 4242
    });
    let records = sensor.stop().records;
    let note = records
        .iter()
        .find(|r| action(r) == "annotation")
        .expect("the annotation record");
    assert_eq!(note["chain"]["sequence"].as_u64(), Some(sequence));
    assert_eq!(note["chain"]["hash"], reply["hash"]);
    let a = &note["annotation"];
    assert_eq!(a["kind"], "acknowledgement");
    assert_eq!(a["author"], "alice@example.com");
    assert_eq!(a["text"], text, "quotes and newlines survive intact");
    assert_eq!(a["peer_uid"], 0);
    // Signed at once: the next record is a checkpoint covering it.
    let next = records
        .iter()
        .find(|r| r["chain"]["sequence"].as_u64() == Some(sequence + 1))
        .unwrap();
    assert_eq!(action(next), "checkpoint", "{next}");
    assert_eq!(
        next["checkpoint"]["covers_sequence"].as_u64(),
        Some(sequence)
    );
    // Only one annotation made it; the refusals are on the record.
    assert_eq!(
        records.iter().filter(|r| action(r) == "annotation").count(),
        1
    );
    let refusals: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| action(r) == "agent_registration" && r["registration"]["op"] == "annotate")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    assert!(refusals.iter().all(|r| r["event"]["outcome"] == "failure"));
    let _ = std::fs::remove_dir_all(&dir);
}
