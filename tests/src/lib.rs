//! Support for the privileged integration tests: start the real `agent-sensor` binary, collect
//! every record it writes, wait for the ones a test expects, stop it the way an operator would.
//! Failures panic with context (the sensor's stderr and the records seen).
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

pub use serde_json::Value;

pub mod containers;

/// The sensor binary `cargo xtask test` built.
pub fn sensor_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_SENSOR_BIN") {
        return PathBuf::from(p);
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/agent-sensor");
    assert!(
        fallback.is_file(),
        "no sensor binary: run the tests with `cargo xtask test` (it builds one and sets AGENT_SENSOR_BIN)"
    );
    fallback
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests must run as root (cargo xtask test)"
    );
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Sensor {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    /// Lines of stdout that were not one JSON object (must stay empty).
    bad_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// What a stopped sensor left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Sensor {
    /// Starts `agent-sensor run --output - ARGS` and waits for its start record (the programs
    /// are attached by then).
    pub fn start(args: &[&str]) -> Sensor {
        require_root();
        let mut child = Command::new(sensor_binary())
            .args(["run", "--output", "-"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent-sensor");
        let records = Arc::new(Mutex::new(Vec::new()));
        let bad_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let (sink, bad) = (records.clone(), bad_lines.clone());
        let reader = thread::spawn(move || {
            for line in BufReader::with_capacity(1 << 20, stdout).split(b'\n') {
                let line = line.expect("read sensor stdout");
                // Every line of stdout must be one whole JSON object (checked at stop).
                match serde_json::from_slice::<Value>(&line) {
                    Ok(value) if value.is_object() => sink.lock().unwrap().push(value),
                    _ => bad
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&line).into_owned()),
                }
            }
        });
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let sensor = Sensor {
            child,
            records,
            bad_lines,
            stderr,
            reader: Some(reader),
        };
        sensor.wait_for("the sensor_start record", |r| action(r) == "sensor_start");
        sensor
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn context(&self) -> String {
        let records = self.records.lock().unwrap();
        let tail: Vec<String> = records
            .iter()
            .rev()
            .take(10)
            .map(|r| r.to_string())
            .collect();
        format!(
            "\n--- sensor stderr ---\n{}\n--- last records ({} in all) ---\n{}",
            self.stderr.lock().unwrap(),
            records.len(),
            tail.join("\n")
        )
    }

    /// Waits for the first record matching `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_count(what, 1, pred).remove(0)
    }

    /// Waits until `n` records match `pred`, and returns them.
    pub fn wait_for_count(
        &self,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        // Each record is looked at once, so a test can wait on hundreds of thousands.
        let deadline = Instant::now() + TIMEOUT;
        let mut found = Vec::new();
        let mut cursor = 0;
        loop {
            {
                let records = self.records.lock().unwrap();
                found.extend(records[cursor..].iter().filter(|r| pred(r)).cloned());
                cursor = records.len();
            }
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {n} x {what}; saw {}{}",
                    found.len(),
                    self.context()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for the exit and the last record; checks a clean stop.
    pub fn stop(mut self) -> Finished {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for agent-sensor");
        self.reader
            .take()
            .expect("reader")
            .join()
            .expect("stdout reader");
        // Let the stderr reader finish.
        thread::sleep(Duration::from_millis(50));
        let records = std::mem::take(&mut *self.records.lock().unwrap());
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(
            status.success(),
            "agent-sensor exited with {status}\n{stderr}"
        );
        let bad = self.bad_lines.lock().unwrap().clone();
        assert!(
            bad.is_empty(),
            "stdout lines that are not JSON objects: {:?}",
            &bad[..bad.len().min(3)]
        );
        // With a signing key, a checkpoint over everything follows the stop record.
        let signed_end = records.last().is_some_and(|r| action(r) == "checkpoint");
        let run = &records[..records.len() - usize::from(signed_end)];
        let last = run.last().expect("records");
        assert_eq!(
            action(last),
            "sensor_stop",
            "the last record must be sensor_stop: {last}"
        );
        assert_eq!(last["sensor"]["lifecycle"]["reason"], "signal SIGTERM");
        assert_eq!(last["sensor"]["lifecycle"]["decode_errors"], 0, "{last}");
        assert_eq!(
            last["sensor"]["lifecycle"]["records_written"].as_u64(),
            Some(run.len() as u64),
            "the stop record counts every record written"
        );
        Finished {
            status,
            records,
            stderr,
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or("")
}

pub fn pid_of(r: &Value) -> u64 {
    r["process"]["pid"].as_u64().unwrap_or(0)
}

/// Records of `action` for process `pid`.
pub fn is(r: &Value, act: &str, pid: u32) -> bool {
    action(r) == act && pid_of(r) == u64::from(pid)
}

/// The inode of a path (cgroup ids and namespace ids are inode numbers).
pub fn inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

/// Makes a sensor key pair in `keys` (`sensor.key`, `sensor.pub`) with `agent-sensor keygen`.
pub fn keygen(keys: &std::path::Path) {
    let out = Command::new(sensor_binary())
        .args(["keygen", "--dir"])
        .arg(keys)
        .output()
        .expect("run agent-sensor keygen");
    assert!(out.status.success(), "keygen failed: {out:?}");
}

/// Writes records as JSON Lines.
pub fn write_json_lines(path: &std::path::Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A fresh, empty directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agent-sensor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Records of one category for one process.
pub fn of_process<'a>(records: &'a [Value], category: &str, pid: u32) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["event"]["category"][0] == category && pid_of(r) == u64::from(pid))
        .collect()
}

/// Where the cgroup v2 hierarchy is mounted.
pub fn cgroup2_root() -> String {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2] == "cgroup2").then(|| f[1].to_owned())
        })
        .expect("a cgroup2 mount")
}
