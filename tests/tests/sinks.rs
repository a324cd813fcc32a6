//! Sinks to pipelines, end to end, against the real sensor and real readers on loopback: two
//! socket sinks at once (a Unix socket and TCP) each get every record of the trail, in
//! order, across reader outages, a reader that dies mid-stream, and a `kill -9` of the sensor
//! while the readers are down; what they received verifies. A queue filled past its bound
//! ends in a `gap` record naming the sink and the sequences it lost, which `verify` locates
//! in what that sink received. NATS JetStream (Debian's `nats-server`, stopped under load and
//! restarted, and the sensor killed while it is down) holds every record exactly once, in
//! order, each with the message id of its run and sequence. A loss counted by a run killed
//! before it sealed the gap record is recorded by the next run, naming the killed run.
//! JetStream over TLS with a password: the sensor's connection is TLS and authenticated (the
//! server's own monitoring says so), a wrong CA, a wrong password and missing credentials are
//! each named in the log, and the password is in neither the trail nor the log. A file sink
//! and a stdout sink: the file holds every record exactly once across a rotation, a `kill -9`
//! and a torn line, standard output every record at least once, and a stdout nobody reads
//! holds up neither the trail nor the file.
use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{Launch, Sensor, Value, require_root, scratch_dir, sensor_binary};

const TIMEOUT: Duration = Duration::from_mins(1);

/// A shell that opens a file in bursts, once told to go, until dropped.
struct Load {
    child: Child,
}

impl Load {
    fn start() -> Load {
        let script = "read go; while :; do i=0; while [ $i -lt 50 ]; do : < /etc/hostname; i=$((i+1)); done; sleep 0.01; done";
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Load { child }
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

#[derive(Clone)]
enum Address {
    Unix(PathBuf),
    Tcp(u16),
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }

    fn set_read_timeout(&self, t: Duration) {
        match self {
            Conn::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
            Conn::Tcp(s) => s.set_read_timeout(Some(t)).unwrap(),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

const SERVING: u8 = 0;
/// Stop the way a collector shuts down: close our sending side, read until the sensor
/// closes.
const GRACEFUL: u8 = 1;
/// Stop at once, unread bytes and all (a crash).
const CRASH: u8 = 2;

/// A reader on loopback, as a collector's socket source is: keeps every whole line it read.
struct Collector {
    address: Address,
    received: Arc<Mutex<Vec<u8>>>,
    running: Option<(Arc<AtomicU8>, thread::JoinHandle<()>)>,
}

impl Collector {
    fn new(address: Address) -> Collector {
        Collector {
            address,
            received: Arc::default(),
            running: None,
        }
    }

    fn config_address(&self) -> String {
        match &self.address {
            Address::Unix(path) => format!("unix:{}", path.display()),
            Address::Tcp(port) => format!("tcp:127.0.0.1:{port}"),
        }
    }

    fn up(&mut self) {
        assert!(self.running.is_none());
        let listener = match &self.address {
            Address::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let l = UnixListener::bind(path).unwrap();
                l.set_nonblocking(true).unwrap();
                Listener::Unix(l)
            }
            Address::Tcp(port) => {
                let l = TcpListener::bind(("127.0.0.1", *port)).unwrap();
                l.set_nonblocking(true).unwrap();
                Listener::Tcp(l)
            }
        };
        let mode = Arc::new(AtomicU8::new(SERVING));
        let (m, received) = (mode.clone(), self.received.clone());
        let thread = thread::spawn(move || serve(&listener, &m, &received));
        self.running = Some((mode, thread));
    }

    fn down(&mut self, how: u8) {
        let (mode, thread) = self.running.take().expect("running");
        mode.store(how, Ordering::Release);
        thread.join().unwrap();
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whole lines received, each once (a sink delivers at least once), in arrival order.
    fn lines(&self) -> Vec<Vec<u8>> {
        let received = self.received.lock().unwrap();
        let mut seen = HashSet::new();
        received
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| seen.insert(l.to_vec()))
            .map(<[u8]>::to_vec)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.running.is_some() {
            self.down(CRASH);
        }
    }
}

fn serve(listener: &Listener, mode: &AtomicU8, received: &Mutex<Vec<u8>>) {
    let mut conn: Option<Conn> = None;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let keep = |pending: &mut Vec<u8>, bytes: &[u8]| {
        pending.extend_from_slice(bytes);
        if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
            received.lock().unwrap().extend(pending.drain(..=end));
        }
    };
    loop {
        match mode.load(Ordering::Acquire) {
            CRASH => return,
            GRACEFUL => {
                if let Some(mut c) = conn.take() {
                    c.shutdown_write();
                    c.set_read_timeout(Duration::from_secs(10));
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        keep(&mut pending, &buf[..n]);
                    }
                }
                return;
            }
            _ => {}
        }
        let Some(c) = conn.as_mut() else {
            let accepted = match listener {
                Listener::Unix(l) => l.accept().map(|(s, _)| {
                    s.set_nonblocking(false).unwrap();
                    Conn::Unix(s)
                }),
                Listener::Tcp(l) => l.accept().map(|(s, _)| {
                    s.set_nonblocking(false).unwrap();
                    Conn::Tcp(s)
                }),
            };
            match accepted {
                Ok(c) => {
                    c.set_read_timeout(Duration::from_millis(20));
                    pending.clear();
                    conn = Some(c);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
            continue;
        };
        match c.read(&mut buf) {
            Ok(0) => conn = None,
            Ok(n) => keep(&mut pending, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => conn = None,
        }
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

/// The trail's whole lines, in order (a torn last line left by a `kill -9` is not a record).
fn trail_lines(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    file_lines(&files)
}

fn parse(line: &[u8]) -> Value {
    serde_json::from_slice(line).unwrap()
}

fn action(r: &Value) -> &str {
    r["event"]["action"].as_str().unwrap_or("")
}

/// `verify --json PATH`: whether nothing was altered (exit 0 complete, or 3: intact but a run
/// ends without its stop record, as a killed one does), and the report.
fn verify(path: &Path) -> (bool, Value) {
    let out = Command::new(sensor_binary())
        .args(["verify", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (matches!(out.status.code(), Some(0 | 3)), report)
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut text = Vec::new();
    for l in lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_sensor(config: &Path, load: &Load) -> Sensor {
    Launch::new()
        .config(config)
        .args(["--pid", &load.child.id().to_string()])
        .output_from_config()
        .start()
}

#[test]
fn two_socket_sinks_get_every_record_in_order_across_outages_and_a_kill_9() {
    require_root();
    let scratch = scratch_dir("sinks-outages");
    let trail = scratch.join("trail");
    let mut unix = Collector::new(Address::Unix(scratch.join("collector.sock")));
    let mut tcp = Collector::new(Address::Tcp(free_port()));
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n\
             [[sinks]]\nname = \"unix\"\ntype = \"socket\"\naddress = \"{}\"\nqueue_dir = \"queues\"\n\
             batch_records = 100\ntimeout_ms = 2000\nretry_max_ms = 200\n\
             [[sinks]]\nname = \"tcp\"\ntype = \"socket\"\naddress = \"{}\"\nqueue_dir = \"queues\"\n\
             timeout_ms = 2000\nretry_max_ms = 200\n",
            trail.display(),
            unix.config_address(),
            tcp.config_address(),
        ),
    )
    .unwrap();
    let mut load = Load::start();
    unix.up();
    tcp.up();
    let sensor = start_sensor(&config, &load);
    load.go();
    let progress = |c: &Collector, more: usize| {
        let before = c.lines().len();
        wait_until(
            "records to arrive",
            || format!("{} lines so far", c.lines().len()),
            || c.lines().len() >= before + more,
        );
    };
    progress(&unix, 1000);
    progress(&tcp, 1000);
    // Both readers go away for a while under load, and come back.
    unix.down(GRACEFUL);
    tcp.down(GRACEFUL);
    thread::sleep(Duration::from_secs(1));
    unix.up();
    tcp.up();
    progress(&unix, 1000);
    progress(&tcp, 1000);
    // The Unix reader dies with unread records.
    unix.down(CRASH);
    thread::sleep(Duration::from_millis(300));
    unix.up();
    progress(&unix, 500);
    // The sensor is killed while both readers are down; its successor delivers the rest.
    unix.down(GRACEFUL);
    tcp.down(GRACEFUL);
    thread::sleep(Duration::from_millis(500));
    let killed = sensor.kill(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9)
    );
    let sensor = start_sensor(&config, &load);
    thread::sleep(Duration::from_millis(500));
    unix.up();
    tcp.up();
    progress(&unix, 500);
    drop(load);
    // Everything in the trail so far arrives, then the stop record does.
    for c in [&unix, &tcp] {
        wait_until(
            "the readers to catch up with the trail",
            || {
                format!(
                    "{} received, {} in the trail",
                    c.lines().len(),
                    trail_lines(&trail).len()
                )
            },
            || c.lines().len() == trail_lines(&trail).len(),
        );
    }
    sensor.stop();
    let trail_now = trail_lines(&trail);
    for (name, c) in [("unix", &unix), ("tcp", &tcp)] {
        wait_until(
            "the stop record",
            || {
                format!(
                    "{name}: {} received, {} in the trail",
                    c.lines().len(),
                    trail_now.len()
                )
            },
            || c.lines().len() == trail_now.len(),
        );
        let got = c.lines();
        assert!(
            got == trail_now,
            "{name}: what the sink received is not the trail, record for record ({} and {})",
            got.len(),
            trail_now.len()
        );
        assert_eq!(action(&parse(got.last().unwrap())), "sensor_stop");
        let received = scratch.join(format!("{name}.jsonl"));
        write_lines(&received, &got);
        let (ok, report) = verify(&received);
        assert!(
            ok,
            "{name}: verify refused what the sink received: {report:#}"
        );
        assert_eq!(
            report["verdict"], "incomplete",
            "the killed run has no stop record"
        );
        assert_eq!(report["instances"], 2, "{report:#}");
    }
    let statuses = std::fs::read_dir(scratch.join("queues/unix"))
        .unwrap()
        .count();
    assert!(statuses >= 2, "the queue keeps its segment and cursor");
    unix.down(GRACEFUL);
    tcp.down(GRACEFUL);
}

#[test]
fn a_queue_filled_past_its_bound_is_a_gap_record_that_verify_locates() {
    require_root();
    let scratch = scratch_dir("sinks-full");
    let trail = scratch.join("trail");
    let mut collector = Collector::new(Address::Tcp(free_port()));
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n\
             [[sinks]]\nname = \"small\"\ntype = \"socket\"\naddress = \"{}\"\nqueue_dir = \"{}\"\n\
             queue_bytes = 65536\ntimeout_ms = 2000\nretry_max_ms = 100\n",
            trail.display(),
            collector.config_address(),
            scratch.join("queues").display(),
        ),
    )
    .unwrap();
    let mut load = Load::start();
    // The reader is down from the start: 64 KiB of records fill the queue.
    let sensor = start_sensor(&config, &load);
    load.go();
    wait_until(
        "records beyond the queue's bound",
        || sensor.stderr(),
        || trail_lines(&trail).len() > 2000,
    );
    collector.up();
    // Once the queue is half empty again, the trail says what the sink lost.
    let is_sink_gap = |l: &Vec<u8>| {
        let r = parse(l);
        action(&r) == "gap" && r["gap"]["source"] == "sink"
    };
    wait_until(
        "the sink's gap record",
        || sensor.stderr(),
        || trail_lines(&trail).iter().any(is_sink_gap),
    );
    drop(load);
    wait_until(
        "the reader to catch up with the trail",
        || format!("{} received", collector.lines().len()),
        || {
            let got = collector.lines();
            got.last() == trail_lines(&trail).last()
        },
    );
    sensor.stop();
    let trail_now = trail_lines(&trail);
    wait_until(
        "the stop record",
        || format!("{} received", collector.lines().len()),
        || collector.lines().last() == trail_now.last(),
    );
    let (_, report) = verify(&trail);
    assert_eq!(
        report["verdict"], "complete",
        "the trail itself is whole: {report:#}"
    );
    // What the sink did not get is exactly what its gap records name.
    let got: HashSet<Vec<u8>> = collector.lines().into_iter().collect();
    let missing: Vec<u64> = trail_now
        .iter()
        .filter(|l| !got.contains(*l))
        .map(|l| parse(l)["chain"]["sequence"].as_u64().unwrap())
        .collect();
    let mut named = Vec::new();
    for gap in trail_now
        .iter()
        .filter(|l| is_sink_gap(l))
        .map(|l| parse(l))
    {
        assert_eq!(gap["gap"]["sink"]["name"], "small", "{gap}");
        assert_eq!(gap["gap"]["error"], "queue_full", "{gap}");
        let first = gap["gap"]["sink"]["first_sequence"].as_u64().unwrap();
        let last = gap["gap"]["sink"]["last_sequence"].as_u64().unwrap();
        assert_eq!(gap["gap"]["lost"].as_u64(), Some(last - first + 1), "{gap}");
        named.extend(first..=last);
    }
    assert!(!missing.is_empty(), "the queue was filled past its bound");
    assert_eq!(
        missing, named,
        "the gap records name exactly what the sink lost"
    );
    // verify finds the hole in what the sink received, where it is.
    let received = scratch.join("received.jsonl");
    let lines = collector.lines();
    write_lines(&received, &lines);
    let (ok, report) = verify(&received);
    assert!(!ok, "a hole in the received stream is a finding");
    let findings = report["findings"].as_array().unwrap();
    let removed: Vec<&Value> = findings.iter().filter(|f| f["kind"] == "removed").collect();
    assert_eq!(removed.len(), findings.len(), "{report:#}");
    let first_missing = missing[0];
    let after = lines
        .iter()
        .position(|l| parse(l)["chain"]["sequence"].as_u64() > Some(first_missing))
        .unwrap();
    assert_eq!(
        removed[0]["line"].as_u64(),
        Some(after as u64 + 1),
        "located at the first record after the hole: {report:#}"
    );
    collector.down(GRACEFUL);
}

#[test]
fn a_loss_counted_before_a_kill_9_is_recorded_by_the_next_run() {
    require_root();
    let scratch = scratch_dir("sinks-lost-kill");
    let trail = scratch.join("trail");
    let queues = scratch.join("queues");
    // Nobody listens at first: the queue fills and records are dropped for the sink.
    let mut collector = Collector::new(Address::Tcp(free_port()));
    let address = collector.config_address();
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n\
             [[sinks]]\nname = \"small\"\ntype = \"socket\"\naddress = \"{address}\"\nqueue_dir = \"{}\"\n\
             queue_bytes = 65536\nqueue_sync = \"always\"\ntimeout_ms = 500\nretry_max_ms = 100\n",
            trail.display(),
            queues.display(),
        ),
    )
    .unwrap();
    let mut load = Load::start();
    let sensor = start_sensor(&config, &load);
    load.go();
    wait_until(
        "records beyond the queue's bound",
        || sensor.stderr(),
        || trail_lines(&trail).len() > 2000,
    );
    let first_run = parse(&trail_lines(&trail)[0])["chain"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Killed while dropping: no gap record was sealed, the count is on disk.
    sensor.kill(libc::SIGKILL);
    let lost_file = queues.join("small/lost");
    assert!(
        lost_file.exists(),
        "the loss count is kept in {}",
        lost_file.display()
    );
    let before: Vec<Vec<u8>> = trail_lines(&trail);
    // The next run's reader is there: nothing more is dropped.
    collector.up();
    let sensor = start_sensor(&config, &load);
    let recorded = |lines: &[Vec<u8>]| -> Option<Value> {
        lines.iter().map(|l| parse(l)).find(|r| {
            action(r) == "gap" && r["gap"]["sink"]["instance_id"].as_str() == Some(&first_run)
        })
    };
    wait_until(
        "the earlier run's loss in the trail",
        || sensor.stderr(),
        || recorded(&trail_lines(&trail)).is_some(),
    );
    drop(load);
    sensor.stop();
    let gap = recorded(&trail_lines(&trail)).unwrap();
    assert_eq!(gap["gap"]["sink"]["name"], "small", "{gap}");
    assert_eq!(gap["gap"]["error"], "queue_full", "{gap}");
    assert_ne!(
        gap["chain"]["instance_id"].as_str(),
        Some(first_run.as_str())
    );
    let first = gap["gap"]["sink"]["first_sequence"].as_u64().unwrap();
    let last = gap["gap"]["sink"]["last_sequence"].as_u64().unwrap();
    assert_eq!(gap["gap"]["lost"].as_u64(), Some(last - first + 1), "{gap}");
    // Sequences of the killed run that its trail has, all beyond what fit in the queue.
    let first_run_last = before
        .iter()
        .map(|l| parse(l))
        .filter(|r| r["chain"]["instance_id"] == first_run.as_str())
        .map(|r| r["chain"]["sequence"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        first > 0 && last <= first_run_last,
        "{gap}, trail to {first_run_last}"
    );
    // The earlier run's loss leaves the file once the trail has its gap record. The file may
    // hold this run's own loss: records sealed at the stop (the stop record) that the queue,
    // still full of the earlier run's backlog, had no room for; the next run records those.
    let kept = std::fs::read_to_string(&lost_file).unwrap_or_default();
    assert!(
        !kept.contains(&first_run),
        "the recorded loss is gone from {}: {kept}",
        lost_file.display()
    );
    let (ok, report) = verify(&trail);
    assert!(ok, "{report:#}");
    collector.down(GRACEFUL);
}

/// A NATS server with JetStream on loopback, its store in `dir` (kept across restarts).
struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// A configuration file (TLS, users, monitoring), besides the flags.
    config: Option<PathBuf>,
}

impl NatsServer {
    fn start(port: u16, dir: &Path) -> NatsServer {
        Self::start_configured(port, dir, None)
    }

    fn start_configured(port: u16, dir: &Path, config: Option<&Path>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            dir: dir.to_owned(),
            config: config.map(Path::to_owned),
        };
        server.up();
        server
    }

    fn up(&mut self) {
        let config: Vec<&Path> = self
            .config
            .as_deref()
            .map(|c| vec![Path::new("-c"), c])
            .unwrap_or_default();
        let child = Command::new("nats-server")
            .args(config)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian's nats-server; cargo xtask setup installs it)");
        self.child = Some(child);
        wait_until("nats-server to listen", String::new, || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Stops it the way a service manager does (SIGTERM).
    fn down(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Just enough of a NATS client for requests to the JetStream API.
struct NatsClient {
    writer: TcpStream,
    reader: std::io::BufReader<TcpStream>,
    next: u64,
}

impl NatsClient {
    fn connect(port: u16) -> NatsClient {
        Self::connect_as(port, "")
    }

    /// Connects with extra `CONNECT` fields (`,"user":...,"pass":...`).
    fn connect_as(port: u16, auth: &str) -> NatsClient {
        use std::io::BufRead as _;
        let writer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        writer.set_nodelay(true).unwrap();
        let mut reader = std::io::BufReader::new(writer.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{line}");
        let mut c = NatsClient {
            writer,
            reader,
            next: 0,
        };
        write!(
            c.writer,
            "CONNECT {{\"verbose\":false,\"headers\":true,\"no_responders\":true{auth}}}\r\nSUB _INBOX.test.* 1\r\nPING\r\n"
        )
        .unwrap();
        loop {
            line.clear();
            c.reader.read_line(&mut line).unwrap();
            if line.starts_with("PONG") {
                return c;
            }
        }
    }

    fn request(&mut self, subject: &str, payload: &str) -> Value {
        self.requests(subject, &[payload.to_owned()]).remove(0)
    }

    /// Sends every request at once, then reads the answers (in the order asked).
    fn requests(&mut self, subject: &str, payloads: &[String]) -> Vec<Value> {
        let first = self.next + 1;
        let mut out = Vec::new();
        for payload in payloads {
            self.next += 1;
            write!(
                out,
                "PUB {subject} _INBOX.test.{} {}\r\n{payload}\r\n",
                self.next,
                payload.len()
            )
            .unwrap();
        }
        self.writer.write_all(&out).unwrap();
        let mut answers = vec![Value::Null; payloads.len()];
        let mut missing = payloads.len();
        while missing > 0 {
            let (n, answer) = self.answer();
            if let Some(i) = n.checked_sub(first).and_then(|i| usize::try_from(i).ok())
                && i < answers.len()
                && answers[i].is_null()
            {
                answers[i] = answer;
                missing -= 1;
            }
        }
        answers
    }

    /// The next answer and the number of the request it answers.
    fn answer(&mut self) -> (u64, Value) {
        use std::io::BufRead as _;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            match fields[0] {
                "PING" => self.writer.write_all(b"PONG\r\n").unwrap(),
                "MSG" | "HMSG" => {
                    let total: usize = fields.last().unwrap().parse().unwrap();
                    let mut body = vec![0u8; total + 2];
                    self.reader.read_exact(&mut body).unwrap();
                    assert_eq!(fields[0], "MSG", "a status instead of an answer: {body:?}");
                    let n = fields[1].rsplit('.').next().unwrap().parse().unwrap();
                    return (n, serde_json::from_slice(&body[..total]).unwrap());
                }
                _ => {}
            }
        }
    }

    fn messages(&mut self, stream: &str) -> u64 {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), "");
        info["state"]["messages"]
            .as_u64()
            .unwrap_or_else(|| panic!("{info}"))
    }

    /// Every message of the stream, in order, with its `Nats-Msg-Id`.
    fn read_all(&mut self, stream: &str) -> Vec<(String, Vec<u8>)> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let count = self.messages(stream);
        let asks: Vec<String> = (1..=count)
            .map(|seq| format!("{{\"seq\":{seq}}}"))
            .collect();
        asks.chunks(500)
            .flat_map(|chunk| self.requests(&format!("$JS.API.STREAM.MSG.GET.{stream}"), chunk))
            .map(|got| {
                let m = &got["message"];
                let headers = b64.decode(m["hdrs"].as_str().unwrap()).unwrap();
                let headers = String::from_utf8(headers).unwrap();
                let id = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("Nats-Msg-Id: "))
                    .unwrap_or_else(|| panic!("no Nats-Msg-Id: {headers}"))
                    .to_owned();
                (id, b64.decode(m["data"].as_str().unwrap()).unwrap())
            })
            .collect()
    }
}

#[test]
fn jetstream_gets_every_record_exactly_once_across_server_restarts_and_a_kill_9() {
    require_root();
    let scratch = scratch_dir("sinks-nats");
    let trail = scratch.join("trail");
    let port = free_port();
    let mut server = NatsServer::start(port, &scratch.join("jetstream"));
    let created = NatsClient::connect(port).request(
        "$JS.API.STREAM.CREATE.EVIDENCE",
        r#"{"name":"EVIDENCE","subjects":["evidence"],"storage":"file","duplicate_window":600000000000}"#,
    );
    assert!(created.get("error").is_none(), "{created}");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n\
             [[sinks]]\nname = \"jetstream\"\ntype = \"nats\"\naddress = \"tcp:127.0.0.1:{port}\"\n\
             subject = \"evidence\"\nqueue_dir = \"queues\"\nbatch_records = 200\n\
             timeout_ms = 2000\nretry_max_ms = 200\n",
            trail.display(),
        ),
    )
    .unwrap();
    let mut load = Load::start();
    let sensor = start_sensor(&config, &load);
    load.go();
    let stored = || NatsClient::connect(port).messages("EVIDENCE");
    let grows_by = |more: u64| {
        let before = stored();
        wait_until(
            "records in the stream",
            || format!("{} stored", stored()),
            || stored() >= before + more,
        );
    };
    grows_by(1000);
    // The server stops under load and comes back.
    server.down();
    thread::sleep(Duration::from_secs(1));
    server.up();
    grows_by(1000);
    // The sensor is killed while the server is down; its successor delivers the rest.
    server.down();
    thread::sleep(Duration::from_millis(500));
    sensor.kill(libc::SIGKILL);
    let sensor = start_sensor(&config, &load);
    thread::sleep(Duration::from_millis(500));
    server.up();
    grows_by(500);
    drop(load);
    wait_until(
        "the stream to catch up with the trail",
        || {
            format!(
                "{} stored, {} in the trail",
                stored(),
                trail_lines(&trail).len()
            )
        },
        || stored() == trail_lines(&trail).len() as u64,
    );
    sensor.stop();
    let trail_now = trail_lines(&trail);
    wait_until(
        "the stop record",
        || format!("{} stored, {} in the trail", stored(), trail_now.len()),
        || stored() == trail_now.len() as u64,
    );
    let messages = NatsClient::connect(port).read_all("EVIDENCE");
    let lines: Vec<Vec<u8>> = messages.iter().map(|(_, data)| data.clone()).collect();
    assert!(
        lines == trail_now,
        "the stream is not the trail, record for record, once each ({} and {})",
        lines.len(),
        trail_now.len()
    );
    for (id, data) in &messages {
        let r = parse(data);
        assert_eq!(
            *id,
            format!(
                "{}-{}",
                r["chain"]["instance_id"].as_str().unwrap(),
                r["chain"]["sequence"]
            )
        );
    }
    let received = scratch.join("jetstream.jsonl");
    write_lines(&received, &lines);
    let (ok, report) = verify(&received);
    assert!(ok, "verify refused what JetStream holds: {report:#}");
    assert_eq!(report["instances"], 2, "{report:#}");
}

/// `GET path` on a local HTTP port (nats-server's monitoring), the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn jetstream_over_tls_with_a_password_and_the_refusals_named() {
    require_root();
    let scratch = scratch_dir("sinks-nats-tls");
    sensor_tests::tls_certificates(&scratch);
    let trail = scratch.join("trail");
    let (port, monitor) = (free_port(), free_port());
    // TLS offered (and taken by the sensor), plain connections allowed for the test's own
    // client; users required.
    let server_config = scratch.join("nats.conf");
    std::fs::write(
        &server_config,
        format!(
            "http: 127.0.0.1:{monitor}\n\
             tls {{ cert_file: \"{dir}/server.pem\", key_file: \"{dir}/server.key\" }}\n\
             allow_non_tls: true\n\
             authorization {{ users = [ {{user: sensor, password: \"p4ss-w0rd-sensor\"}}, {{user: test, password: t}} ] }}\n",
            dir = scratch.display()
        ),
    )
    .unwrap();
    let _server =
        NatsServer::start_configured(port, &scratch.join("jetstream"), Some(&server_config));
    let client = || NatsClient::connect_as(port, r#","user":"test","pass":"t""#);
    let created = client().request(
        "$JS.API.STREAM.CREATE.EVIDENCE",
        r#"{"name":"EVIDENCE","subjects":["evidence"],"storage":"file"}"#,
    );
    assert!(created.get("error").is_none(), "{created}");
    std::fs::write(scratch.join("password"), "p4ss-w0rd-sensor\n").unwrap();
    std::fs::write(scratch.join("wrong-password"), "guess\n").unwrap();
    let sink = |name: &str, extra: &str| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntype = \"nats\"\naddress = \"tcp:127.0.0.1:{port}\"\n\
             subject = \"evidence\"\nqueue_dir = \"queues\"\ntimeout_ms = 2000\nretry_max_ms = 200\n{extra}"
        )
    };
    let ca = |file: &str| format!("tls_ca_file = \"{}/{file}\"\n", scratch.display());
    let password = |file: &str| format!("user = \"sensor\"\npassword_file = \"{file}\"\n");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n{}{}{}{}",
            trail.display(),
            sink("good", &(ca("ca.pem") + &password("password"))),
            sink("wrong-ca", &(ca("other-ca.pem") + &password("password"))),
            sink(
                "wrong-password",
                &(ca("ca.pem") + &password("wrong-password"))
            ),
            sink("no-credentials", &ca("ca.pem")),
        ),
    )
    .unwrap();
    let mut load = Load::start();
    let sensor = start_sensor(&config, &load);
    load.go();
    let stored = || client().messages("EVIDENCE");
    wait_until(
        "records in the stream",
        || format!("{} stored\n{}", stored(), sensor.stderr()),
        || stored() >= 500,
    );
    // The sensor's one connection is TLS and authenticated as its user.
    let connz: Value = serde_json::from_str(&http_get(monitor, "/connz?auth=true")).unwrap();
    let ours: Vec<&Value> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "agent-sensor")
        .collect();
    assert_eq!(ours.len(), 1, "{connz:#}");
    assert!(
        ours[0]["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{connz:#}"
    );
    assert_eq!(ours[0]["authorized_user"], "sensor", "{connz:#}");
    // Each refusal is named, per sink.
    for (sink, reason) in [
        ("wrong-ca", "UnknownIssuer"),
        ("wrong-password", "Authorization Violation"),
        ("no-credentials", "the server requires authentication"),
    ] {
        wait_until(
            "the refusal in the log",
            || sensor.stderr(),
            || {
                sensor
                    .stderr()
                    .lines()
                    .any(|l| l.contains(&format!("sink={sink}")) && l.contains(reason))
            },
        );
    }
    drop(load);
    wait_until(
        "the stream to catch up with the trail",
        || {
            format!(
                "{} stored, {} in the trail",
                stored(),
                trail_lines(&trail).len()
            )
        },
        || stored() == trail_lines(&trail).len() as u64,
    );
    let finished = sensor.stop();
    let trail_now = trail_lines(&trail);
    wait_until(
        "the stop record",
        || format!("{} stored, {} in the trail", stored(), trail_now.len()),
        || stored() == trail_now.len() as u64,
    );
    let lines: Vec<Vec<u8>> = client()
        .read_all("EVIDENCE")
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert!(lines == trail_now, "the stream is not the trail");
    let received = scratch.join("jetstream.jsonl");
    write_lines(&received, &lines);
    let (ok, report) = verify(&received);
    assert!(ok, "{report:#}");
    // The password is in neither the trail nor the log.
    for (what, text) in [
        (
            "trail",
            String::from_utf8_lossy(&trail_now.concat()).into_owned(),
        ),
        ("log", finished.stderr),
    ] {
        assert!(!text.contains("p4ss-w0rd"), "the password is in the {what}");
    }
}

/// The whole lines of `files`, in order (a torn last line left by a `kill -9` is not a record).
fn file_lines(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files.iter().flat_map(|f| whole_lines_of(f)).collect()
}

fn whole_lines_of(file: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read(file).unwrap_or_default();
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text[..whole]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Reads a pipe to its end into a buffer the test can look at, once told to start.
struct PipeReader {
    read: Arc<Mutex<Vec<u8>>>,
    go: Arc<AtomicU8>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PipeReader {
    fn new(mut pipe: std::process::ChildStdout, reading: bool) -> PipeReader {
        let read = Arc::new(Mutex::new(Vec::new()));
        let go = Arc::new(AtomicU8::new(u8::from(reading)));
        let (r, g) = (read.clone(), go.clone());
        let thread = thread::spawn(move || {
            while g.load(Ordering::Acquire) == 0 {
                thread::sleep(Duration::from_millis(20));
            }
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PipeReader {
            read,
            go,
            thread: Some(thread),
        }
    }

    fn start(&self) {
        self.go.store(1, Ordering::Release);
    }

    /// The whole lines read so far (a run killed mid-line leaves a torn one, not a record).
    fn lines(&self) -> Vec<Vec<u8>> {
        let read = self.read.lock().unwrap();
        let whole = read.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        read[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.thread.take().unwrap().join().unwrap();
        self.lines()
    }
}

#[test]
fn file_and_stdout_sinks_across_a_stalled_reader_a_rotation_and_a_kill_9() {
    require_root();
    let scratch = scratch_dir("sinks-file-stdout");
    let trail = scratch.join("trail");
    let copy = scratch.join("copy.jsonl");
    let rotated = scratch.join("copy.jsonl.1");
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{}/\"\n\
             [[sinks]]\nname = \"copy\"\ntype = \"file\"\npath = \"{}\"\nqueue_dir = \"queues\"\n\
             batch_records = 100\nretry_max_ms = 200\n\
             [[sinks]]\nname = \"logs\"\ntype = \"stdout\"\nqueue_dir = \"queues\"\n\
             batch_records = 100\nretry_max_ms = 200\n",
            trail.display(),
            copy.display(),
        ),
    )
    .unwrap();
    let start = |load: &Load| {
        Launch::new()
            .config(&config)
            .args(["--pid", &load.child.id().to_string()])
            .output_from_config_stdout_piped()
            .start()
    };
    let mut load = Load::start();
    let mut sensor = start(&load);
    // Nobody reads standard output at first: its pipe fills, the trail and the file go on.
    let first_out = PipeReader::new(sensor.take_stdout(), false);
    load.go();
    wait_until(
        "the trail and the file to go on while stdout is not read",
        || {
            format!(
                "{} in the trail, {} in the file\n{}",
                trail_lines(&trail).len(),
                whole_lines_of(&copy).len(),
                sensor.stderr()
            )
        },
        || whole_lines_of(&copy).len() >= 3000,
    );
    first_out.start();
    // The file is moved away, as logrotate does; the sink starts a new one.
    std::fs::rename(&copy, &rotated).unwrap();
    wait_until(
        "a new file at the path",
        || sensor.stderr(),
        || whole_lines_of(&copy).len() >= 1000,
    );
    let killed = sensor.kill(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9)
    );
    let first_out = first_out.finish();
    // A write a crash cut short leaves a torn line; the next run cuts it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap()
        .write_all(b"{\"torn")
        .unwrap();
    let mut sensor = start(&load);
    let second_out = PipeReader::new(sensor.take_stdout(), true);
    wait_until(
        "records from the second run",
        || sensor.stderr(),
        || second_out.lines().len() >= 500,
    );
    drop(load);
    let files = [rotated.clone(), copy.clone()];
    wait_until(
        "the file to catch up with the trail",
        || {
            format!(
                "{} in the files, {} in the trail",
                file_lines(&files).len(),
                trail_lines(&trail).len()
            )
        },
        || file_lines(&files).len() == trail_lines(&trail).len(),
    );
    sensor.stop();
    let trail_now = trail_lines(&trail);
    let second_out = second_out.finish();
    // The file sink: every record exactly once, in order, across the rotation, the kill and
    // the torn line.
    let got = file_lines(&files);
    assert!(
        got == trail_now,
        "the files are not the trail, record for record, once each ({} and {})",
        got.len(),
        trail_now.len()
    );
    assert_eq!(action(&parse(got.last().unwrap())), "sensor_stop");
    let joined = scratch.join("copy-joined.jsonl");
    write_lines(&joined, &got);
    let (ok, report) = verify(&joined);
    assert!(ok, "verify refused the file sink's records: {report:#}");
    assert_eq!(report["instances"], 2, "{report:#}");
    // Standard output: at least once, in order.
    let mut seen = HashSet::new();
    let out: Vec<Vec<u8>> = first_out
        .into_iter()
        .chain(second_out)
        .filter(|l| seen.insert(l.clone()))
        .collect();
    assert!(
        out == trail_now,
        "standard output is not the trail, record for record ({} and {})",
        out.len(),
        trail_now.len()
    );
}
