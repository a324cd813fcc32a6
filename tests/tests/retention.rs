//! Trail retention against the real sensor: with small files and a small size limit, old files
//! go while the trail is written, each removal put on the record first, and `verify` accepts
//! the trail that stays; a restart with an age limit removes the last run's files at start;
//! a file deleted by hand (no `trail_retention` record names it) is reported as deleted.
use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{Launch, Sensor, Value, scratch_dir, sensor_binary};

const TIMEOUT: Duration = Duration::from_mins(1);
const MAX_FILE: u64 = 4096;
/// Several files' worth: a file can hold one batch beyond `MAX_FILE`.
const RETAIN: u64 = 262_144;

/// The trail files of `dir`, oldest first (names sort in chain order).
fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trail-")
        })
        .collect();
    files.sort();
    files
}

/// Every whole record in the trail files of `dir` (while the sensor runs, a file may be
/// removed after it is listed, and its last line may be half written; `verify` checks the
/// trail strictly once the sensor stopped).
fn records(dir: &Path) -> Vec<Value> {
    trail_files(dir)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn of_action<'a>(records: &'a [Value], action: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["event"]["action"] == action)
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `verify --json DIR`: exit 0 (complete and unaltered) or not, and the report.
fn verify(dir: &Path) -> (bool, Value) {
    let out = Command::new(sensor_binary())
        .args(["verify", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.success(), report)
}

fn start(config: &Path, trail: &Path) -> Sensor {
    let sensor = Launch::new().config(config).output_from_config().start();
    wait_until("the sensor_start record", || {
        trail.is_dir()
            && records(trail)
                .iter()
                .any(|r| r["event"]["action"] == "sensor_start")
    });
    sensor
}

#[test]
fn old_files_go_on_the_record_and_the_trail_that_stays_verifies() {
    let dir = scratch_dir("retention");
    let trail = dir.join("trail");
    let _ = std::fs::remove_dir_all(&trail);
    let config = dir.join("sensor.toml");
    // Only our own workload's processes: the shell below and what it runs.
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nmax_file_bytes = {MAX_FILE}\nretention_bytes = {RETAIN}\n",
            trail.display()
        ),
    )
    .unwrap();
    let mut workload = Command::new("/bin/sh")
        .args([
            "-c",
            "read go; i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sensor = Launch::new()
        .config(&config)
        .output_from_config()
        .arg("--pid")
        .arg(workload.id().to_string())
        .start();
    wait_until("the sensor_start record", || {
        trail.is_dir()
            && records(&trail)
                .iter()
                .any(|r| r["event"]["action"] == "sensor_start")
    });
    let shell = workload.id();
    drop(workload.stdin.take()); // EOF: `read` returns, the loop runs.
    assert!(workload.wait().unwrap().success());
    wait_until("the workload's exit on the record", || {
        records(&trail)
            .iter()
            .any(|r| r["event"]["action"] == "exit" && r["process"]["pid"] == shell)
    });
    let done = sensor.stop();
    assert!(done.status.success(), "{}", done.stderr);

    let files = trail_files(&trail);
    let all = records(&trail);
    let retentions = of_action(&all, "trail_retention");
    assert!(
        !retentions.is_empty(),
        "no retention with {} files",
        files.len()
    );
    // Each named file is gone, and only the oldest went: the first file left is the one
    // after the last removed.
    let mut removed: Vec<String> = Vec::new();
    for r in &retentions {
        assert_eq!(r["retention"]["max_bytes"], RETAIN);
        for f in r["retention"]["removed"].as_array().unwrap() {
            let name = f["file"].as_str().unwrap();
            assert!(!trail.join(name).exists(), "{name} still there");
            assert_eq!(f["reason"], "size");
            assert!(f["last"]["sequence"].as_u64().is_some(), "{f}");
            removed.push(name.to_owned());
        }
    }
    removed.sort();
    let first_left = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(removed.last().unwrap() < &first_left);
    // The first files are gone (the records that named them may be gone too: only the
    // newest retention records stay in the trail).
    assert!(!first_left.starts_with("trail-0000000001-"), "{first_left}");
    // At the last rotation the files before the one being written fit the limit.
    let old_bytes: u64 = files[..files.len() - 1]
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(old_bytes <= RETAIN, "{old_bytes} bytes in old files");

    let (ok, report) = verify(&trail);
    assert!(ok, "{report:#}");
    assert_eq!(
        report["retained_before"]["removed_file"].as_str(),
        removed.last().map(String::as_str),
        "{report:#}"
    );

    // The oldest file left deleted by hand (in a copy): nothing on the record says so.
    let deleted = dir.join("deleted");
    let _ = std::fs::remove_dir_all(&deleted);
    std::fs::create_dir_all(&deleted).unwrap();
    for f in &files[1..] {
        std::fs::copy(f, deleted.join(f.file_name().unwrap())).unwrap();
    }
    let (ok, report) = verify(&deleted);
    assert!(!ok);
    let finding = &report["findings"][0];
    assert_eq!(finding["kind"], "removed", "{report:#}");
    assert!(
        finding["detail"].as_str().unwrap().ends_with("deleted"),
        "{finding}"
    );

    // A restart after the files aged: the age limit removes all of the last run's at start.
    for f in &files {
        let ok = Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(f)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nretention_age_ms = 3600000\n",
            trail.display()
        ),
    )
    .unwrap();
    let sensor = start(&config, &trail);
    wait_until("the last run's files removed", || {
        files.iter().all(|f| !f.exists())
    });
    sensor.stop();
    let all = records(&trail);
    let retention = of_action(&all, "trail_retention");
    assert_eq!(retention.len(), 1);
    let named: Vec<&str> = retention[0]["retention"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["reason"], "age");
            f["file"].as_str().unwrap()
        })
        .collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(named, names);
    let (ok, report) = verify(&trail);
    assert!(ok, "{report:#}");
    assert_eq!(
        report["retained_before"]["removed_file"].as_str(),
        names.last().map(String::as_str)
    );
}
