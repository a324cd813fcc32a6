//! The evidence chain over a replayed run: every record sealed in order, each linked to the one
//! before, signed checkpoints, and `verify` accepting the trail — and catching a changed,
//! removed or reordered line.
use crate::support::*;

fn agents() -> String {
    manifest(&[agent("reviewer", &["{cgroup: /agents/reviewer/**}"])])
}

/// A run of a few dozen records with a checkpoint every ten.
fn signed_run() -> Outcome {
    let mut f = forge();
    let root = f.process(None, attributed(1, method::CGROUP));
    f.exec(root, b"/opt/reviewer/run", b"/opt/reviewer/run", &[b"run"]);
    for i in 0..6 {
        let child = f.fork(root);
        f.exec(child, b"/usr/bin/git", b"/usr/bin/git", &[b"git", b"log"]);
        f.loader_opens(child);
        f.open(child, format!("/srv/repo/file-{i}").as_bytes());
        f.net(child, sensor_common::syscall::CONNECT, [10, 0, 0, 7], 443);
        f.exit(child);
        if i % 2 == 1 {
            f.cut();
        }
    }
    let (batches, events) = f.finish();
    assert_eq!(events, 43);
    let config = Config {
        checkpoint_every: Some(10),
        ..Config::default()
    };
    run(&agents(), config, records(batches))
}

#[test]
fn every_record_is_sealed_in_sequence_and_linked_to_the_one_before() {
    let out = signed_run();
    let instance = out.records[0]["sensor"]["instance_id"].clone();
    let mut prev = "0".repeat(64);
    for (i, r) in out.records.iter().enumerate() {
        let chain = &r["chain"];
        assert_eq!(chain["sequence"], i as u64, "record {i}");
        assert_eq!(chain["prev_hash"], prev.as_str(), "record {i}");
        assert_eq!(chain["instance_id"], instance, "record {i}");
        prev = chain["hash"].as_str().expect("a hash").to_owned();
    }
    let lifecycle = &out.stop()["sensor"]["lifecycle"];
    // Kernel events, start, stop and the checkpoints before the stop record.
    let checkpoints = out.with_action("checkpoint").len() as u64;
    assert_eq!(
        lifecycle["records_written"],
        43 + 2 + checkpoints - 1,
        "the last checkpoint follows the stop record"
    );
    let actions = out.actions();
    assert_eq!(actions[actions.len() - 2..], ["sensor_stop", "checkpoint"]);
    let report = out.verify();
    assert!(report.intact(), "{}", report.human());
    assert_eq!(report.records, out.records.len() as u64);
    assert_eq!(report.runs.len(), 1);
    assert!(report.runs[0].stopped);
    assert_eq!(report.checkpoints_verified, checkpoints);
    assert_eq!(report.unsigned_tail, 0);
    assert_eq!(report.recorded_gaps, 0);
}

#[test]
fn verify_catches_a_changed_a_removed_and_a_reordered_line() {
    let out = signed_run();
    let line = 4;
    assert_eq!(out.records[line]["file"]["path"], "/etc/ld.so.cache");
    let changed = out.tampered("changed.jsonl", |lines| {
        lines[line] = lines[line].replace("/etc/ld.so.cache", "/etc/ld.so.cachE");
    });
    // Lines are numbered from 1.
    let at = line as u64 + 1;
    assert_eq!(findings(&[changed]), [("changed", at)]);
    let removed = out.tampered("removed.jsonl", |lines| {
        lines.remove(line);
    });
    assert_eq!(findings(&[removed]), [("removed", at)]);
    let swapped = out.tampered("swapped.jsonl", |lines| lines.swap(line, line + 1));
    // Two records swapped read as a jump over one, the one coming back, and a jump again.
    assert_eq!(
        findings(&[swapped]),
        [("removed", at), ("reordered", at + 1), ("removed", at + 2)]
    );
    // The untouched trail still verifies.
    assert!(out.verify().intact());
}

fn findings(paths: &[std::path::PathBuf]) -> Vec<(&'static str, u64)> {
    let report = verify_files(paths);
    report.findings.iter().map(|f| (f.kind, f.line)).collect()
}
