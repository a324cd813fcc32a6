//! A full output: records it has no room to hold are refused before they get a place in the
//! chain, counted, and reported by one `gap` record once it has room again; the chain stays
//! whole. The disk is a [`Room`] (no root needed to fill it): a file system with this many
//! bytes free, freed by the test as deleting a file would.
use serde_json::json;

use crate::support::*;

fn agents() -> String {
    manifest(&[agent("reviewer", &["{cgroup: /agents/reviewer/**}"])])
}

#[test]
fn refused_records_are_counted_in_one_gap_record_and_the_chain_stays_whole() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    for i in 0..40 {
        f.open(p, format!("/srv/held/{i:02}").as_bytes());
    }
    let held = f.take_batches();
    for i in 0..15 {
        f.open(p, format!("/srv/refused/{i:02}").as_bytes());
    }
    f.net(p, sensor_common::syscall::CONNECT, [10, 0, 0, 7], 443);
    let refused = f.take_batches();
    for i in 0..3 {
        f.open(p, format!("/srv/after/{i:02}").as_bytes());
    }
    let after = f.take_batches();
    // Room for the start record and a few more; then the disk is full. What the output
    // already took (the first batch, sealed before the disk filled) is held in memory, more
    // than `buffer_bytes`: nothing more is admitted until the disk has room.
    let room = Room::new(4_096);
    let config = Config {
        buffer_bytes: Some(8 * 1024),
        room: Some(room.clone()),
        ..Config::default()
    };
    let mut steps = records(held);
    steps.extend(records(refused));
    steps.push(Step::Free(room, 1 << 30));
    steps.extend(records(after));
    let out = run(&agents(), config, steps);

    let paths: Vec<&str> = out
        .events()
        .iter()
        .filter_map(|r| r["file"]["path"].as_str())
        .collect();
    let expected: Vec<String> = (0..40)
        .map(|i| format!("/srv/held/{i:02}"))
        .chain((0..3).map(|i| format!("/srv/after/{i:02}")))
        .collect();
    assert_eq!(
        paths, expected,
        "held records all written, refused ones none"
    );
    assert!(out.with_action("connect").is_empty());
    // The gap record comes before the first record admitted again.
    let actions = out.actions();
    let gap_at = actions
        .iter()
        .position(|a| *a == "gap")
        .expect("a gap record");
    assert_eq!(
        actions[gap_at + 1..],
        ["open", "open", "open", "sensor_stop"]
    );
    let gap = &out.records[gap_at]["gap"];
    assert_eq!(gap["source"], "output");
    assert_eq!(gap["lost"], 16);
    assert_eq!(gap["by_kind"], json!({"open": 15, "connect": 1}));
    assert_eq!(gap["error"], "ENOSPC");
    assert!(gap["start"].as_str() <= gap["end"].as_str());
    assert_eq!(out.stop()["sensor"]["lifecycle"]["output_lost"], 16);
    // Sealed records are never lost: the chain has no hole.
    let report = out.verify();
    assert!(report.intact(), "{report:#?}");
    assert_eq!(report.recorded_gaps, 1);
    assert_eq!(report.records, out.records.len() as u64);
}
