//! Support for the privileged integration tests: start the real `agent-sensor` binary, collect
//! every record it writes, wait for the ones a test expects, stop it the way an operator would.
//! Failures panic with context (the sensor's stderr and the records seen).
//!
//! One runner for every test: [`Sensor::start`] for the common case (records on stdout), and
//! [`Launch`] for the others (a config file, OCSF output, records written to a file, or to
//! wherever the config sends them). [`AgentRun`] is the set-up of a run with one agent, a
//! signing key and a control socket, and [`file_and_network_activity`] and [`dns_exchange`]
//! the activity several tests make.
use std::{
    ffi::{OsStr, OsString},
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
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

/// Where a sensor writes its records, and so where the runner reads them.
enum Destination {
    /// `--output -`: read from its stdout.
    Stdout,
    /// `--output PATH`: the file is followed as it grows.
    File(PathBuf),
    /// Wherever its config says (a directory trail, rotation, ...): the test reads the records
    /// itself; the runner neither collects them nor waits for the start record.
    Config,
}

/// How to start a sensor: `agent-sensor run` with these arguments, writing records where
/// [`Launch::output`] or [`Launch::output_from_config`] says (stdout by default), in the ECS
/// form or OCSF.
pub struct Launch {
    args: Vec<OsString>,
    output: Destination,
    ocsf: bool,
    /// Standard output is a pipe the test reads itself ([`Sensor::take_stdout`]).
    pipe_stdout: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    pub fn new() -> Self {
        Launch {
            args: Vec::new(),
            output: Destination::Stdout,
            ocsf: false,
            pipe_stdout: false,
        }
    }

    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    #[must_use]
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `--config PATH`.
    #[must_use]
    pub fn config(self, path: &Path) -> Self {
        self.arg("--config").arg(path)
    }

    /// `--format ocsf`: every line an OCSF event, the record's own fields under
    /// `unmapped.agent_sensor` (see [`ecs_part`]).
    #[must_use]
    pub fn ocsf(mut self) -> Self {
        self.ocsf = true;
        self.arg("--format").arg("ocsf")
    }

    /// `--output PATH`: records go to a file, which the runner follows.
    #[must_use]
    pub fn output(mut self, path: &Path) -> Self {
        self.output = Destination::File(path.to_owned());
        self
    }

    /// Records go where the config says; the test reads them itself.
    #[must_use]
    pub fn output_from_config(mut self) -> Self {
        self.output = Destination::Config;
        self
    }

    /// Records go where the config says, and standard output (a `type = "stdout"` sink) is a
    /// pipe the test takes with [`Sensor::take_stdout`] and reads when it wants.
    #[must_use]
    pub fn output_from_config_stdout_piped(mut self) -> Self {
        self.output = Destination::Config;
        self.pipe_stdout = true;
        self
    }

    /// Starts the sensor and, when the runner reads its records, waits for its start record
    /// (the programs are attached by then).
    pub fn start(self) -> Sensor {
        require_root();
        let mut cmd = Command::new(sensor_binary());
        cmd.arg("run");
        match &self.output {
            Destination::Stdout => {
                cmd.args(["--output", "-"]).stdout(Stdio::piped());
            }
            Destination::File(path) => {
                // A file left by an earlier run would be continued, not replaced.
                let _ = std::fs::remove_file(path);
                cmd.arg("--output").arg(path).stdout(Stdio::null());
            }
            Destination::Config if self.pipe_stdout => {
                cmd.stdout(Stdio::piped());
            }
            Destination::Config => {
                cmd.stdout(Stdio::null());
            }
        }
        let mut child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent-sensor");
        let records = Arc::new(Mutex::new(Vec::new()));
        let bad_lines = Arc::new(Mutex::new(Vec::new()));
        let exited = Arc::new(AtomicBool::new(false));
        let collect = {
            let (records, bad_lines) = (records.clone(), bad_lines.clone());
            // Every line must be one whole JSON object (checked at stop).
            move |line: &[u8]| match serde_json::from_slice::<Value>(line) {
                Ok(value) if value.is_object() => records.lock().unwrap().push(value),
                _ => bad_lines
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(line).into_owned()),
            }
        };
        let reader = match &self.output {
            Destination::Stdout => {
                let stdout = child.stdout.take().expect("stdout");
                Some(thread::spawn(move || {
                    for line in BufReader::with_capacity(1 << 20, stdout).split(b'\n') {
                        collect(&line.expect("read sensor stdout"));
                    }
                }))
            }
            Destination::File(path) => {
                let (path, exited) = (path.clone(), exited.clone());
                Some(thread::spawn(move || follow(&path, &exited, collect)))
            }
            Destination::Config => None,
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
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
            running: true,
            ocsf: self.ocsf,
            records,
            bad_lines,
            stderr,
            exited,
            reader,
            stderr_reader: Some(stderr_reader),
        };
        if sensor.reader.is_some() {
            sensor.wait_for("the sensor_start record", |r| {
                action(sensor.ecs(r)) == "sensor_start"
            });
        }
        sensor
    }
}

/// Follows the file at `path` as it grows, handing each whole line to `line`, until the
/// sensor has `exited` and the file is read to its end; a last line without its newline is
/// handed over too (the check at stop refuses it).
fn follow(path: &Path, exited: &AtomicBool, mut line: impl FnMut(&[u8])) {
    let mut file = None;
    let mut pending = Vec::new();
    loop {
        // Read after the flag: once it is set, the read below sees everything written.
        let last = exited.load(Ordering::Acquire);
        if file.is_none() {
            file = std::fs::File::open(path).ok();
        }
        if let Some(f) = file.as_mut() {
            f.read_to_end(&mut pending)
                .expect("read the sensor's output");
            if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                pending[..end].split(|&b| b == b'\n').for_each(&mut line);
                pending.drain(..=end);
            }
        }
        if last {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if !pending.is_empty() {
        line(&pending);
    }
}

/// A running sensor (killed if dropped without [`Sensor::stop`]).
pub struct Sensor {
    child: Child,
    running: bool,
    ocsf: bool,
    records: Arc<Mutex<Vec<Value>>>,
    /// Lines of output that were not one JSON object (must stay empty).
    bad_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// Set once the sensor has exited: the file follower reads to the end and stops.
    exited: Arc<AtomicBool>,
    /// Collects the records (none when the test reads them itself).
    reader: Option<thread::JoinHandle<()>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

/// What a stopped sensor left behind.
pub struct Finished {
    pub status: ExitStatus,
    /// Every record, as written (OCSF events with [`Launch::ocsf`]); none when the config
    /// chose the output ([`Launch::output_from_config`]).
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Sensor {
    /// Starts `agent-sensor run --output - ARGS` and waits for its start record (the programs
    /// are attached by then).
    pub fn start(args: &[&str]) -> Sensor {
        Launch::new().args(args).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pipe of its standard output ([`Launch::output_from_config_stdout_piped`]).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .stdout
            .take()
            .expect("started with output_from_config_stdout_piped")
    }

    /// Sends `signal` (SIGHUP reloads the manifest).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// What the sensor wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The record's own fields: the record itself, or an OCSF event's `unmapped.agent_sensor`.
    fn ecs<'a>(&self, r: &'a Value) -> &'a Value {
        if self.ocsf { ecs_part(r) } else { r }
    }

    fn context(&self) -> String {
        let records = self.records.lock().unwrap();
        let tail: Vec<String> = records
            .iter()
            .rev()
            .take(10)
            .map(ToString::to_string)
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
        assert!(
            self.reader.is_some(),
            "the runner does not read this sensor's records (output_from_config)"
        );
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
            assert!(
                Instant::now() <= deadline,
                "timed out waiting for {n} x {what}; saw {}{}",
                found.len(),
                self.context()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit and the last record, checking nothing (a kill
    /// under load, a crash).
    pub fn kill(mut self, signal: i32) -> Finished {
        self.signal(signal);
        let status = self.child.wait().expect("wait for agent-sensor");
        self.running = false;
        self.exited.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the record reader");
        }
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("the stderr reader");
        }
        Finished {
            status,
            records: std::mem::take(&mut *self.records.lock().unwrap()),
            stderr: self.stderr(),
        }
    }

    /// SIGTERM, then wait for the exit and the last record; checks a clean stop: the exit
    /// status, and where the runner read the records, that every line was one JSON object
    /// and that the run ends in its `sensor_stop` record, which counts them all.
    pub fn stop(self) -> Finished {
        let (ocsf, collected) = (self.ocsf, self.reader.is_some());
        let bad = self.bad_lines.clone();
        let done = self.kill(libc::SIGTERM);
        assert!(
            done.status.success(),
            "agent-sensor exited with {}\n{}",
            done.status,
            done.stderr
        );
        if !collected {
            return done;
        }
        let bad = bad.lock().unwrap().clone();
        assert!(
            bad.is_empty(),
            "output lines that are not JSON objects: {:?}",
            &bad[..bad.len().min(3)]
        );
        let ecs = |r| if ocsf { ecs_part(r) } else { r };
        let records = &done.records;
        // With a signing key, a checkpoint over everything follows the stop record.
        let signed_end = records
            .last()
            .is_some_and(|r| action(ecs(r)) == "checkpoint");
        let run = &records[..records.len() - usize::from(signed_end)];
        let last = ecs(run.last().expect("records"));
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
        done
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if self.running {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The file follower stops.
        self.exited.store(true, Ordering::Release);
    }
}

/// The record's own fields in an OCSF event: what OCSF has no attribute for, in the ECS
/// record's shape (`event`, `sensor`, `identity`, ...).
pub fn ecs_part(event: &Value) -> &Value {
    &event["unmapped"]["agent_sensor"]
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
    let mut text = String::new();
    for r in records {
        let _ = writeln!(text, "{r}");
    }
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

/// Writes `dir/sensor.toml`: the manifest `dir/agents.yaml` and a control socket at `socket`,
/// nothing else; returns its path.
pub fn write_identities_config(dir: &Path, socket: &Path) -> PathBuf {
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    config
}

/// A run with one agent, as the schema and OCSF tests make it: a scratch directory with a key
/// pair (`keys/`), a manifest (`agents.yaml`) naming the agent by a cgroup of its own, and a
/// config (`sensor.toml`) that observes all processes, signs a checkpoint every 50 records and
/// takes registrations and annotations on a control socket. The agent's cgroup is made when a
/// process first runs in it (so the run sees it made) and removed on drop.
pub struct AgentRun {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// The agent's cgroup directory.
    pub cgroup: String,
}

impl AgentRun {
    /// `agent`: the agent's manifest fields but its selectors, `("id", "my-agent")` first.
    pub fn new(name: &str, agent: &[(&str, &str)]) -> AgentRun {
        let dir = scratch_dir(name);
        keygen(&dir.join("keys"));
        let cg_name = format!("agent-sensor-{name}-{}", std::process::id());
        let mut manifest = String::from("agents:\n");
        for (i, (key, value)) in agent.iter().enumerate() {
            let lead = if i == 0 { "  - " } else { "    " };
            let _ = writeln!(manifest, "{lead}{key}: {value}");
        }
        let _ = writeln!(manifest, "    selectors: [{{cgroup: /{cg_name}/**}}]");
        std::fs::write(dir.join("agents.yaml"), manifest).unwrap();
        let socket = dir.join("control.sock");
        let config = dir.join("sensor.toml");
        std::fs::write(
            &config,
            format!(
                "[observe]\nall_processes = true\n[evidence]\nsigning_key = \"keys/sensor.key\"\ncheckpoint_records = 50\n[identities]\nmanifest = \"agents.yaml\"\nregistration_socket = \"{}\"\n",
                socket.display()
            ),
        )
        .unwrap();
        AgentRun {
            dir,
            config,
            socket,
            cgroup: format!("{}/{cg_name}", cgroup2_root()),
        }
    }

    /// Runs the shell command `script` in the agent's cgroup; it must succeed.
    pub fn in_agent_cgroup(&self, script: &str) {
        std::fs::create_dir_all(&self.cgroup).unwrap();
        let cg = &self.cgroup;
        run_ok(
            Command::new("/bin/sh")
                .args(["-c", &format!("echo $$ > {cg}/cgroup.procs && {script}")]),
        );
    }

    /// `agent-sensor ARGS --socket SOCKET`: a request on the run's control socket.
    pub fn control(&self, args: &[&str]) -> Output {
        Command::new(sensor_binary())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run agent-sensor")
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// Runs `cmd`; it must succeed.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// File and network activity by `helper` (the test helper binary): its `files` scenario in
/// `work` (create, mkdir, rename, unlink, ...), a TCP connect to a listener on loopback and a
/// UDP send.
pub fn file_and_network_activity(helper: &str, work: &Path) {
    std::fs::create_dir_all(work).unwrap();
    run_ok(Command::new(helper).arg("files").arg(work));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    run_ok(Command::new(helper).args(["connect", &addr]));
    run_ok(Command::new(helper).args(["udp-send", "127.0.0.1:9"]));
}

/// A DNS query for `agent-test.example` and its answer (10.1.2.3), then a connect to the
/// answer, by `helper` in a network namespace of its own with a DNS server on its loopback.
pub fn dns_exchange(helper: &str) -> Output {
    let script = format!(
        "ip link set lo up && {{ {helper} dns-server & }} && sleep 0.3 && {helper} dns-client agent-test.example; wait"
    );
    Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .expect("run unshare")
}

/// The OCSF version the sensor writes, which the validator checks events against.
pub const OCSF_VERSION: &str = "1.8.0";

/// The Python of the environment `cargo xtask setup` makes (the OCSF schema, the SDKs).
pub fn ocsf_python() -> PathBuf {
    let cache = std::env::var_os("AGENT_SENSOR_CACHE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/agent-sensor")
        },
        PathBuf::from,
    );
    let python = cache.join("ocsf-venv/bin/python3");
    assert!(
        python.is_file(),
        "no {}: run `cargo xtask setup` (it installs ocsf-json-schema and jsonschema there)",
        python.display()
    );
    python
}

/// Validates every line of `events` against the OCSF class its `class_uid` names, with the
/// profiles its `metadata.profiles` declares; returns the validator's complaints.
pub fn validate_ocsf(events: &Path) -> Vec<String> {
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
from ocsf_json_schema import get_ocsf_schema, OcsfJsonSchemaEmbedded
ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=sys.argv[1]))
validators = {}
for n, line in enumerate(open(sys.argv[2]), 1):
    event = json.loads(line)
    uid = event.get("class_uid")
    profiles = tuple(event.get("metadata", {}).get("profiles", []))
    if (uid, profiles) not in validators:
        try:
            name = ocsf.lookup_class_name_from_uid(class_uid=uid)
        except Exception:
            print(f"line {n}: class_uid: no OCSF class {uid!r}")
            continue
        schema = ocsf.get_class_schema(class_name=name, profiles=list(profiles))
        Draft202012Validator.check_schema(schema)
        validators[(uid, profiles)] = Draft202012Validator(schema)
    for e in validators[(uid, profiles)].iter_errors(event):
        print(f"line {n}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
"#;
    let out = Command::new(ocsf_python())
        .args(["-c", script, OCSF_VERSION])
        .arg(events)
        .output()
        .expect("run the OCSF validator");
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian's openssl; cargo xtask setup installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// Writes into `dir` a test CA (`ca.pem`), a server certificate it signed for 127.0.0.1 and
/// localhost (`server.pem`, `server.key`), and a second CA that signed nothing
/// (`other-ca.pem`).
pub fn tls_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, cn) in [("ca", "test-ca"), ("other-ca", "other-ca")] {
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        let subject = format!("/CN={cn}");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        openssl(dir, &args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}
