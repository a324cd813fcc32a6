//! What the sensor could not see is on the record: kernel losses become `gap` records with
//! their counts by kind, and undecodable kernel records are counted in the stop record.
use serde_json::json;

use crate::support::*;

fn agents() -> String {
    manifest(&[agent("reviewer", &["{cgroup: /agents/reviewer/**}"])])
}

#[test]
fn kernel_losses_become_gap_records_by_kind() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    f.open(p, b"/srv/a");
    let first = f.take_batches();
    f.open(p, b"/srv/b");
    let second = f.take_batches();
    let mut steps = records(first);
    steps.push(Step::Lost(vec![("file", 3), ("exec", 1)]));
    steps.extend(records(second));
    steps.push(Step::Lost(vec![("cgroup", 2)]));
    let out = run(&agents(), Config::default(), steps);
    assert_eq!(
        out.actions(),
        ["sensor_start", "open", "gap", "open", "gap", "sensor_stop"]
    );
    let gaps = out.with_action("gap");
    assert_eq!(
        gaps[0]["gap"],
        json!({"source": "kernel_ring_buffer", "lost": 4, "by_kind": {"exec": 1, "file": 3}})
    );
    assert_eq!(gaps[0]["event"]["kind"], "pipeline_error");
    assert_eq!(
        gaps[1]["gap"],
        json!({"source": "kernel_ring_buffer", "lost": 2, "by_kind": {"cgroup": 2}})
    );
    let lifecycle = &out.stop()["sensor"]["lifecycle"];
    assert_eq!(lifecycle["kernel_lost"], 6);
    assert_eq!(lifecycle["decode_errors"], 0);
    assert_eq!(out.stats.kernel_lost, 6);
    let report = out.verify();
    assert!(report.intact(), "{}", report.human());
    assert_eq!(report.recorded_gaps, 2);
}

#[test]
fn undecodable_records_are_counted_by_kind_and_the_rest_written() {
    let mut f = forge();
    let p = f.process(None, attributed(1, method::CGROUP));
    f.open(p, b"/srv/before");
    let (mut good, _) = f.finish();
    let valid = good[0].records().next().expect("a record").to_vec();
    let mut bad = Vec::new();
    // Shorter than a header.
    bad.push(valid[..10].to_vec());
    // An unknown kind.
    let mut unknown = valid.clone();
    unknown[..2].copy_from_slice(&99u16.to_ne_bytes());
    bad.push(unknown);
    // A program of another record version.
    let mut version = valid.clone();
    version[2..4].copy_from_slice(&1u16.to_ne_bytes());
    bad.push(version);
    // Claims more bytes than arrived.
    bad.push(valid[..valid.len() - 1].to_vec());
    // Its header agrees with its length, but the fixed part is cut.
    let mut truncated = valid[..40].to_vec();
    truncated[4..8].copy_from_slice(&40u32.to_ne_bytes());
    bad.push(truncated);
    for b in &bad {
        good[0].push(b);
    }
    good[0].push(&valid);
    let out = run(&agents(), Config::default(), records(good));
    assert_eq!(
        out.actions(),
        ["sensor_start", "open", "open", "sensor_stop"]
    );
    let counted: Vec<(&str, u64)> = out
        .stats
        .decode_errors
        .iter()
        .map(|(k, n)| (*k, *n))
        .collect();
    assert_eq!(
        counted,
        [
            ("short_header", 1),
            ("size_mismatch", 1),
            ("truncated", 1),
            ("unknown_kind", 1),
            ("version", 1)
        ]
    );
    assert_eq!(out.stop()["sensor"]["lifecycle"]["decode_errors"], 5);
    assert!(out.verify().intact());
}
