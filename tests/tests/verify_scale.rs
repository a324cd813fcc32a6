//! The verifier at scale: a 1 GiB rotated trail is verified in one pass with memory that does
//! not grow with it, and a one-byte change deep inside is still located by file and line. The
//! auditor's report over the same trail stays within the same memory bound, although every
//! record names a path of its own.
use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use sensor_tests::{Value, scratch_dir, sensor_binary};
use sha2::{Digest as _, Sha256};

const TOTAL: u64 = 1 << 30;
const FILE_BYTES: u64 = 64 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes a trail as the sensor's directory output would: one run, sealed records of about
/// 1 KiB, a rotation record closing each file. Returns the file names and the record count.
fn write_trail(dir: &Path) -> (Vec<String>, u64) {
    let name = |n: u64| format!("trail-{n:010}-20260101T000000Z.jsonl");
    let pad = "x".repeat(900);
    let (mut sequence, mut prev) = (0u64, "0".repeat(64));
    let mut names = Vec::new();
    let mut written = 0;
    let mut line = Vec::with_capacity(2048);
    let mut seal = |body: &str, out: &mut Vec<u8>| {
        out.clear();
        write!(
            out,
            "{{{body},\"chain\":{{\"instance_id\":\"run-1\",\"sequence\":{sequence},\"prev_hash\":\"{prev}\""
        )
        .unwrap();
        let hash = hex(&Sha256::digest(&out[..]));
        writeln!(out, ",\"hash\":\"{hash}\"}}}}").unwrap();
        sequence += 1;
        prev = hash;
    };
    let mut n = 1;
    let mut opens = 0u64;
    while written < TOTAL {
        names.push(name(n));
        let file = std::fs::File::create(dir.join(name(n))).unwrap();
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut in_file = 0;
        if n == 1 {
            seal("\"event\":{\"action\":\"sensor_start\"}", &mut line);
            file.write_all(&line).unwrap();
        }
        while in_file < FILE_BYTES {
            // Twenty agents, each record a path of its own (nearly 1 KiB): what the report's
            // tallies must bound.
            opens += 1;
            let agent = opens % 20;
            seal(
                &format!(
                    "\"identity\":{{\"agent\":{{\"id\":\"agent-{agent}\"}},\"attribution\":{{\"method\":\"cgroup\",\"trust\":\"strong\"}}}},\"event\":{{\"action\":\"open\"}},\"file\":{{\"path\":\"/{opens}/{pad}\",\"open\":{{\"access\":\"read\"}}}}"
                ),
                &mut line,
            );
            file.write_all(&line).unwrap();
            in_file += line.len() as u64;
        }
        written += in_file;
        let last = if written < TOTAL {
            format!(
                "\"event\":{{\"action\":\"rotation\"}},\"rotation\":{{\"reason\":\"size\",\"file\":\"{}\",\"next_file\":\"{}\"}}",
                name(n),
                name(n + 1)
            )
        } else {
            "\"event\":{\"action\":\"sensor_stop\"}".to_owned()
        };
        seal(&last, &mut line);
        file.write_all(&line).unwrap();
        file.flush().unwrap();
        n += 1;
    }
    (names, sequence)
}

/// Runs `verify --json` and returns its report and the peak memory of the verifier (KiB).
fn verify(dir: &Path) -> (bool, Value, i64) {
    run(&["verify", "--json"], dir)
}

/// Runs `agent-sensor ARGS DIR`: whether it exited 0, its JSON output, and the peak memory of
/// the commands run so far (KiB).
fn run(args: &[&str], dir: &Path) -> (bool, Value, i64) {
    let out = Command::new(sensor_binary())
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: a valid out-pointer; the child has been waited for.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    // SAFETY: getrusage filled it.
    let peak = unsafe { usage.assume_init() }.ru_maxrss;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.success(), report, peak)
}

#[test]
fn a_1_gib_trail_verifies_with_bounded_memory_and_a_deep_change_is_located() {
    let dir: PathBuf = scratch_dir("verify-scale");
    let (names, records) = write_trail(&dir);
    assert_eq!(names.len(), 16);

    let started = std::time::Instant::now();
    let (ok, report, peak) = verify(&dir);
    println!(
        "verified {TOTAL} bytes in {:?}, peak memory {peak} KiB",
        started.elapsed()
    );
    assert!(ok, "{report}");
    assert_eq!(report["files"], 16);
    assert_eq!(report["records"], records, "{report}");
    assert!(
        peak < 64 * 1024,
        "the verifier peaked at {peak} KiB on a 1 GiB trail: memory must not grow with it"
    );

    let started = std::time::Instant::now();
    let (ok, report, peak) = run(&["report", "--format", "json"], &dir);
    println!(
        "reported on {TOTAL} bytes in {:?}, peak memory (of verify and report) {peak} KiB",
        started.elapsed()
    );
    assert!(ok, "{}", report["evidence"]);
    assert_eq!(report["evidence"]["verdict"], "complete");
    assert_eq!(report["scope"]["records_read"], records);
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 20);
    let counted: u64 = agents.iter().map(|a| a["records"].as_u64().unwrap()).sum();
    assert_eq!(
        counted,
        records - 17,
        "all but the start, rotation and stop records"
    );
    let paths = &agents[0]["files"]["classes"][0]["paths_rest"];
    assert_eq!(
        paths["capped"], true,
        "more paths than a tally keeps: {paths}"
    );
    assert!(
        peak < 64 * 1024,
        "the report peaked at {peak} KiB on a 1 GiB trail: memory must not grow with it"
    );

    // One byte changed in the 12th file: found there, at its line.
    let target = dir.join(&names[11]);
    let text = std::fs::read(&target).unwrap();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            text.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let line = 5000;
    let at = line_starts[line - 1] + 40;
    let mut changed = text;
    changed[at] ^= 0x01;
    std::fs::write(&target, changed).unwrap();
    let (ok, report, _) = verify(&dir);
    assert!(!ok);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["kind"], "changed");
    assert_eq!(findings[0]["line"], line);
    assert!(
        findings[0]["file"].as_str().unwrap().ends_with(&names[11]),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
