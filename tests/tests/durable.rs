//! The durable file sink, end to end, against the real sensor: a `kill -9` under load and a
//! restart into the same directory leave a chain that verifies, with only the torn tail
//! reported (and the restart linked to where the trail ended); rotation under load names
//! every file, so a missing one is found; a full disk ends in a `gap` record once space
//! returns, and the chain still verifies.
use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{Launch, Sensor, Value, require_root, scratch_dir, sensor_binary};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The start of a record, cut short.
const TORN: &[u8] = b"{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"schema_ver";

/// A shell that opens a file in bursts (`burst` opens, then `pause`), once told to go, until
/// dropped.
struct Load {
    child: Child,
}

impl Load {
    fn start(burst: u32, pause: &str) -> Load {
        let script = format!(
            "read go; while :; do i=0; while [ $i -lt {burst} ]; do : < /etc/hostname; i=$((i+1)); done; sleep {pause}; done"
        );
        let child = Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Load { child }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn go(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sensor observing `load`, writing to the output its config names.
fn start_sensor(config: &Path, load: &Load) -> Sensor {
    Launch::new()
        .config(config)
        .args(["--pid", &load.pid()])
        .output_from_config()
        .start()
}

/// A tmpfs mounted for one test, unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {}", path.display());
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_until(what: &str, context: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The trail's files in name order (none before the sensor made the directory).
fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Every whole record of the trail, in order.
fn records(dir: &Path) -> Vec<Value> {
    trail_files(dir)
        .iter()
        .flat_map(|f| {
            let text = std::fs::read(f).unwrap();
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            text[..whole]
                .split(|&b| b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or("")
}

/// The trail's whole lines, those holding `needle` if given (cheap enough to poll a
/// growing trail).
fn lines_with(dir: &Path, needle: Option<&str>) -> usize {
    trail_files(dir)
        .iter()
        .map(|f| {
            let text = std::fs::read(f).unwrap();
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            text[..whole]
                .split(|&b| b == b'\n')
                .filter(|l| needle.is_none_or(|n| l.windows(n.len()).any(|w| w == n.as_bytes())))
                .count()
        })
        .sum()
}

fn line_count(dir: &Path) -> usize {
    lines_with(dir, None)
}

fn count_action(dir: &Path, act: &str) -> usize {
    lines_with(dir, Some(&format!("\"action\":\"{act}\"")))
}

/// `verify --json [--key KEY] DIR`: whether it is complete and unaltered (exit 0), and its
/// report (`verdict` says which otherwise).
fn verify(dir: &Path, key: Option<&Path>) -> (bool, Value) {
    let mut cmd = Command::new(sensor_binary());
    cmd.args(["verify", "--json"]);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    let out = cmd.arg(dir).output().unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.success(), report)
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn keygen(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    sensor_tests::keygen(&keys);
    keys
}

/// The chain fields of the last whole record on disk, as a restart should find them.
fn last_whole_record(dir: &Path) -> Value {
    let all = records(dir);
    let last = all.last().expect("records on disk");
    serde_json::json!({
        "instance_id": last["chain"]["instance_id"],
        "sequence": last["chain"]["sequence"],
        "hash": last["chain"]["hash"],
    })
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for f in trail_files(from) {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[test]
fn kill_9_under_load_then_restart_links_the_runs_and_only_the_torn_tail_is_reported() {
    require_root();
    let scratch = scratch_dir("durable-kill");
    let keys = keygen(&scratch);
    let trail = scratch.join("trail");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nfsync = \"interval\"\nfsync_interval_ms = 50\n\
             [evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 500\n",
            trail.display()
        ),
    )
    .unwrap();
    let mut load = Load::start(100, "0.01");
    let mut expected_previous = Vec::new();
    let mut expected_torn = Vec::new();
    for run in 0..3 {
        let sensor = start_sensor(&config, &load);
        wait_until(
            "the sensor_start record",
            || sensor.stderr(),
            || count_action(&trail, "sensor_start") > run,
        );
        if run == 0 {
            load.go();
        }
        if run == 2 {
            sensor.stop();
            break;
        }
        // Under load: kill it in the middle of writing.
        let before = line_count(&trail);
        wait_until(
            "records under load",
            || sensor.stderr(),
            || line_count(&trail) > before + 3000,
        );
        let status = sensor.kill(libc::SIGKILL).status;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let newest = trail_files(&trail).pop().unwrap();
        if run == 1 && std::fs::read(&newest).unwrap().ends_with(b"\n") {
            // A torn write (what a power loss mid-write leaves, and a kill rarely does):
            // the start of a record with no end.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&newest)
                .unwrap();
            f.write_all(TORN).unwrap();
        }
        let text = std::fs::read(&newest).unwrap();
        if !text.ends_with(b"\n") {
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            #[allow(
                clippy::naive_bytecount,
                reason = "one count in a test: not worth the bytecount crate"
            )]
            let line = text[..whole].iter().filter(|&&b| b == b'\n').count() + 1;
            expected_torn.push(serde_json::json!({
                "file": newest.to_string_lossy(),
                "line": line,
                "bytes": text.len() - whole,
                "confirmed": true,
            }));
        }
        expected_previous.push(last_whole_record(&trail));
        // Before the restart: the trail is intact, its end only a torn tail, and incomplete:
        // the killed run has no stop record.
        let (_, report) = verify(&trail, None);
        assert_eq!(
            report["verdict"], "incomplete",
            "after kill -9 the trail is intact but incomplete: {report}"
        );
    }
    drop(load);

    let all = records(&trail);
    let starts: Vec<&Value> = all.iter().filter(|r| action(r) == "sensor_start").collect();
    assert_eq!(starts.len(), 3);
    assert!(starts[0]["sensor"]["lifecycle"].get("previous").is_none());
    for (start, expected) in starts[1..].iter().zip(&expected_previous) {
        let previous = &start["sensor"]["lifecycle"]["previous"];
        for field in ["instance_id", "sequence", "hash"] {
            assert_eq!(previous[field], expected[field], "{field}: {previous}");
        }
    }
    assert!(
        starts[2]["sensor"]["lifecycle"]["previous"]["torn_bytes"]
            .as_u64()
            .unwrap()
            > 0,
        "the restart saw the torn tail: {}",
        starts[2]
    );

    let pubkey = keys.join("sensor.pub");
    let (_, report) = verify(&trail, Some(&pubkey));
    assert_eq!(
        report["verdict"], "incomplete",
        "two runs were killed: {report}"
    );
    assert!(
        report["findings"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["instances"], 3);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| r["stopped"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [false, false, true],
        "{report}"
    );
    assert_eq!(runs[1]["continues"], runs[0]["instance_id"]);
    assert_eq!(runs[2]["continues"], runs[1]["instance_id"]);
    // Exactly the torn tails on disk are reported, where they are, confirmed by the
    // restart that found them; nothing else.
    assert_eq!(report["torn_tails"], Value::from(expected_torn), "{report}");

    // Removing the end of a run the restart found is not a torn tail: it is caught.
    let tampered = scratch.join("tampered");
    copy_dir(&trail, &tampered);
    let linked_file = tampered.join(
        starts[1]["sensor"]["lifecycle"]["previous"]["file"]
            .as_str()
            .unwrap(),
    );
    let linked_hash = expected_previous[0]["hash"].as_str().unwrap();
    let text = std::fs::read_to_string(&linked_file).unwrap();
    let whole = &text[..=text.rfind('\n').unwrap()];
    let sealed_as = format!("\"hash\":\"{linked_hash}\"}}}}");
    let kept: Vec<&str> = whole.lines().filter(|l| !l.ends_with(&sealed_as)).collect();
    assert_eq!(kept.len() + 1, whole.lines().count());
    std::fs::write(&linked_file, kept.join("\n") + "\n").unwrap();
    let (ok, report) = verify(&tampered, None);
    assert!(!ok, "{report}");
    assert_eq!(kinds(&report), ["removed"], "{report}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn rotation_under_load_names_each_next_file_and_a_missing_one_is_found() {
    require_root();
    let scratch = scratch_dir("durable-rotate");
    let trail = scratch.join("trail");
    let config = scratch.join("sensor.toml");
    let max = 65_536;
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nmax_file_bytes = {max}\n",
            trail.display()
        ),
    )
    .unwrap();
    let mut load = Load::start(50, "0.02");
    let sensor = start_sensor(&config, &load);
    wait_until(
        "the sensor_start record",
        || sensor.stderr(),
        || count_action(&trail, "sensor_start") == 1,
    );
    load.go();
    wait_until(
        "six rotated files",
        || sensor.stderr(),
        || trail_files(&trail).len() >= 6,
    );
    sensor.stop();
    drop(load);

    assert_eq!(mode(&trail), 0o700, "the directory is the owner's alone");
    let files = trail_files(&trail);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut first_sequences = Vec::new();
    for (i, file) in files.iter().enumerate() {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        assert!(
            names[i].starts_with("trail-") && file.extension().is_some_and(|e| e == "jsonl"),
            "{}",
            names[i]
        );
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        first_sequences.push(lines[0]["chain"]["sequence"].as_u64().unwrap());
        let last = lines.last().unwrap();
        if i + 1 < files.len() {
            assert_eq!(action(last), "rotation", "{}: {last}", names[i]);
            assert_eq!(last["rotation"]["file"], names[i].as_str());
            assert_eq!(last["rotation"]["next_file"], names[i + 1].as_str());
            assert_eq!(last["rotation"]["reason"], "size");
            let len = std::fs::metadata(file).unwrap().len();
            assert!(len >= max, "rotated at {len} bytes");
            assert!(len < max + (1 << 20), "at most a batch over: {len}");
        } else {
            assert_eq!(action(last), "sensor_stop");
        }
    }
    assert!(
        first_sequences.windows(2).all(|w| w[0] < w[1]),
        "name order is chain order: {first_sequences:?}"
    );
    let (ok, report) = verify(&trail, None);
    assert!(ok, "{report}");
    assert_eq!(report["files"], files.len());

    // A file missing in the middle of the rotation set is named.
    let holed = scratch.join("holed");
    copy_dir(&trail, &holed);
    std::fs::remove_file(holed.join(&names[2])).unwrap();
    let (ok, report) = verify(&holed, None);
    assert!(!ok);
    assert_eq!(kinds(&report), ["missing_file"], "{report}");
    let detail = report["findings"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("{} is missing", names[2])),
        "{detail}"
    );
    assert!(
        report["findings"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with(&names[1]),
        "{report}"
    );

    // So is the newest file, gone from the end.
    let headless = scratch.join("cut");
    copy_dir(&trail, &headless);
    std::fs::remove_file(headless.join(names.last().unwrap())).unwrap();
    let (ok, report) = verify(&headless, None);
    assert!(!ok);
    assert_eq!(kinds(&report), ["missing_file"], "{report}");
    assert!(
        report["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} is missing", names.last().unwrap())),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn files_also_rotate_by_age() {
    require_root();
    let scratch = scratch_dir("durable-age");
    let trail = scratch.join("trail");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nmax_file_age_ms = 1000\n",
            trail.display()
        ),
    )
    .unwrap();
    // A directory made open to others is tightened: records are the owner's alone.
    std::fs::create_dir(&trail).unwrap();
    std::fs::set_permissions(&trail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut load = Load::start(5, "0.1");
    let sensor = start_sensor(&config, &load);
    wait_until(
        "the sensor_start record",
        || sensor.stderr(),
        || count_action(&trail, "sensor_start") == 1,
    );
    load.go();
    wait_until(
        "three files",
        || sensor.stderr(),
        || trail_files(&trail).len() >= 3,
    );
    sensor.stop();
    let rotations: Vec<Value> = records(&trail)
        .into_iter()
        .filter(|r| action(r) == "rotation")
        .collect();
    assert!(rotations.len() >= 2);
    assert!(rotations.iter().all(|r| r["rotation"]["reason"] == "age"));
    assert_eq!(mode(&trail), 0o700);
    assert!(trail_files(&trail).iter().all(|f| mode(f) == 0o600));
    let (ok, report) = verify(&trail, None);
    assert!(ok, "{report}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_full_disk_is_a_gap_record_once_space_returns_and_the_chain_verifies() {
    require_root();
    let scratch = scratch_dir("durable-full");
    let mnt = scratch.join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "4m");
    let trail = mnt.join("trail");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\nfsync = \"every_record\"\nbuffer_bytes = 65536\n",
            trail.display()
        ),
    )
    .unwrap();
    let mut load = Load::start(20, "0.05");
    let sensor = start_sensor(&config, &load);
    wait_until(
        "the sensor_start record",
        || sensor.stderr(),
        || count_action(&trail, "sensor_start") == 1,
    );
    load.go();
    // Fill the disk.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    let full = loop {
        if let Err(e) = f.write_all(&block) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    drop(f);
    wait_until(
        "the sensor to find the disk full",
        || sensor.stderr(),
        || sensor.stderr().contains("the output is full"),
    );
    // Long enough for the 64 KiB hold to fill and records to be refused.
    thread::sleep(Duration::from_secs(3));
    let output_gaps = || lines_with(&trail, Some("\"gap\":{\"source\":\"output\""));
    assert_eq!(
        output_gaps(),
        0,
        "the loss is on the record only once space returns"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "a gap record for what the full disk cost",
        || sensor.stderr(),
        || output_gaps() >= 1,
    );
    thread::sleep(Duration::from_millis(300));
    sensor.stop();
    drop(load);

    let all = records(&trail);
    let gaps: Vec<&Value> = all
        .iter()
        .filter(|r| action(r) == "gap" && r["gap"]["source"] == "output")
        .collect();
    assert_eq!(gaps.len(), 1, "one outage, one gap record");
    let gap = &gaps[0]["gap"];
    let lost = gap["lost"].as_u64().unwrap();
    assert!(lost > 0, "{gap}");
    let by_kind: u64 = gap["by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, lost, "{gap}");
    assert!(gap["by_kind"]["open"].as_u64().unwrap() > 0, "{gap}");
    assert_eq!(gap["error"], "ENOSPC");
    assert!(gap["start"].as_str().unwrap() <= gap["end"].as_str().unwrap());
    let stop = all.last().unwrap();
    assert_eq!(action(stop), "sensor_stop");
    assert_eq!(stop["sensor"]["lifecycle"]["output_lost"], lost);
    // The records held in memory were written once space returned, in chain order, and
    // nothing is missing from the chain: the refused records never entered it.
    let (ok, report) = verify(&trail, None);
    assert!(ok, "{report}");
    assert_eq!(report["recorded_gaps"], 1);
    assert!(report["torn_tails"].as_array().unwrap().is_empty());
    let sequences: Vec<u64> = all
        .iter()
        .map(|r| r["chain"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1));
    let _ = std::fs::remove_dir_all(&scratch);
}
