//! The syslog and OTLP sinks and TLS, end to end against real receivers on loopback.
//!
//! Syslog: Debian's `rsyslog` with its own configuration (imtcp, plain and TLS through its
//! OpenSSL netstream driver), writing each message's MSG to a file: every record of the trail
//! arrives in order across rsyslog restarts under load, and `verify` accepts the file read
//! back; the structured data carries each record's keys. A socket sink over TLS delivers to
//! a reader using Python's `ssl`; a sink whose CA did not sign the server's certificate is refused with
//! an error naming it.
//!
//! OTLP: a receiver decoding with PyPI's `opentelemetry-proto` (`tests/otlp/receiver.py`),
//! over HTTP and HTTPS: stopped under load, answering 503 with `Retry-After`, then 400 once:
//! every record arrives but the refused batch, which the trail's `gap` record names exactly
//! and `verify` locates in what the receiver got.
use std::{
    collections::HashSet,
    io::Write as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{
    Launch, Sensor, Value, require_root, scratch_dir, sensor_binary, tls_certificates,
};

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole lines of a file (or of a trail directory's files, in name order).
fn lines(path: &Path) -> Vec<Vec<u8>> {
    let mut files = vec![path.to_owned()];
    if path.is_dir() {
        files = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
    }
    let mut lines = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read(f) else { continue };
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        lines.extend(
            text[..whole]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

/// Each line once, in the order first received: a receiver that stops may get a batch again.
fn first_of_each(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    lines
        .into_iter()
        .filter(|l| seen.insert(l.clone()))
        .collect()
}

fn parse(line: &[u8]) -> Value {
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

/// `verify --json PATH`: whether nothing was altered, and the report.
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

/// An rsyslogd of the test's own: imtcp on `port` (TLS with the test CA's server certificate
/// when `tls`), each message's MSG written to `received` as one line.
struct Rsyslog {
    child: Option<Child>,
    config: PathBuf,
    pid_file: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &Path, name: &str, port: u16, tls: bool, certs: &Path) -> Rsyslog {
        let work = dir.join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        let driver = if tls {
            format!(
                "global(defaultNetstreamDriverCAFile=\"{c}/ca.pem\" defaultNetstreamDriverCertFile=\"{c}/server.pem\" defaultNetstreamDriverKeyFile=\"{c}/server.key\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n",
                c = certs.display()
            )
        } else {
            "module(load=\"imtcp\")\n".to_owned()
        };
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{work}\" maxMessageSize=\"4m\")\n{driver}\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
                 template(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\n\
                 template(name=\"sd\" type=\"string\" string=\"%msgid% %structured-data%\\n\")\n\
                 action(type=\"omfile\" file=\"{dir}/{name}.received\" template=\"msg\")\n\
                 action(type=\"omfile\" file=\"{dir}/{name}.sd\" template=\"sd\")\n",
                work = work.display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let mut server = Rsyslog {
            child: None,
            config,
            pid_file: dir.join(format!("{name}.pid")),
            port,
        };
        server.up();
        server
    }

    fn up(&mut self) {
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&self.config)
            .arg("-i")
            .arg(&self.pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "rsyslogd (Debian's rsyslog and rsyslog-openssl; cargo xtask setup installs them)",
            );
        self.child = Some(child);
        wait_until("rsyslogd to listen", String::new, || {
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

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tests/otlp/receiver.py` on `port`, writing into `dir` (HTTPS with the test CA's server
/// certificate from `certs`).
struct OtlpReceiver {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    certs: Option<PathBuf>,
}

impl OtlpReceiver {
    fn start(port: u16, dir: &Path, certs: Option<&Path>) -> OtlpReceiver {
        std::fs::create_dir_all(dir).unwrap();
        let mut receiver = OtlpReceiver {
            child: None,
            port,
            dir: dir.to_owned(),
            certs: certs.map(Path::to_owned),
        };
        receiver.up();
        receiver
    }

    fn up(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otlp/receiver.py");
        let mut command = Command::new(venv_python());
        command
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.dir);
        if let Some(certs) = &self.certs {
            command
                .arg(certs.join("server.pem"))
                .arg(certs.join("server.key"));
        }
        self.child = Some(command.stdout(Stdio::null()).spawn().unwrap());
        wait_until("the OTLP receiver to listen", String::new, || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn down(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        child.wait().unwrap();
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        lines(&self.dir.join("bodies"))
    }

    fn answers(&self) -> String {
        std::fs::read_to_string(self.dir.join("answers")).unwrap_or_default()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python environment `cargo xtask setup` makes (with `opentelemetry-proto`).
fn venv_python() -> PathBuf {
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
        "no {}: run `cargo xtask setup` (it installs opentelemetry-proto there)",
        python.display()
    );
    python
}

fn start_sensor(config: &Path, load: &Load) -> Sensor {
    Launch::new()
        .config(config)
        .args(["--pid", &load.child.id().to_string()])
        .output_from_config()
        .start()
}

#[test]
fn rsyslog_over_tcp_and_tls_gets_every_record_in_order_across_restarts_and_verify_accepts_it() {
    require_root();
    let scratch = scratch_dir("sinks-syslog");
    tls_certificates(&scratch);
    let trail = scratch.join("trail");
    let (plain_port, tls_port, jsonl_port) = (free_port(), free_port(), free_port());
    let mut plain = Rsyslog::start(&scratch, "plain", plain_port, false, &scratch);
    let mut tls = Rsyslog::start(&scratch, "tls", tls_port, true, &scratch);
    // A JSON Lines reader over TLS (Python's ssl module): what it reads goes to a file.
    let jsonl_file = scratch.join("jsonl.received");
    let reader = r#"
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
out = open(sys.argv[4], "ab", buffering=0)
while True:
    conn, _ = listener.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                out.write(data)
    except OSError:
        pass  # a probe that did not speak TLS, or a connection cut
"#;
    let mut jsonl = Command::new("/usr/bin/python3")
        .args(["-c", reader, &jsonl_port.to_string()])
        .arg(scratch.join("server.pem"))
        .arg(scratch.join("server.key"))
        .arg(&jsonl_file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the TLS reader to listen", String::new, || {
        TcpStream::connect(("127.0.0.1", jsonl_port)).is_ok()
    });
    let config = scratch.join("sensor.toml");
    let ca = scratch.join("ca.pem");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{trail}/\"\n\
             [[sinks]]\nname = \"plain\"\ntype = \"syslog\"\naddress = \"tcp:127.0.0.1:{plain_port}\"\n\
             queue_dir = \"queues\"\nbatch_records = 200\ntimeout_ms = 2000\nretry_max_ms = 200\n\
             [[sinks]]\nname = \"tls\"\ntype = \"syslog\"\naddress = \"tcp:127.0.0.1:{tls_port}\"\n\
             tls_ca_file = \"{ca}\"\n\
             queue_dir = \"queues\"\nbatch_records = 200\ntimeout_ms = 2000\nretry_max_ms = 200\n\
             [[sinks]]\nname = \"jsonl-tls\"\ntype = \"socket\"\naddress = \"tcp:127.0.0.1:{jsonl_port}\"\n\
             tls_ca_file = \"{ca}\"\ntls_server_name = \"localhost\"\nqueue_dir = \"queues\"\n\
             [[sinks]]\nname = \"wrong-ca\"\ntype = \"syslog\"\naddress = \"tcp:127.0.0.1:{tls_port}\"\n\
             tls_ca_file = \"other-ca.pem\"\nqueue_dir = \"queues\"\nretry_max_ms = 200\n",
            trail = trail.display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    let plain_file = scratch.join("plain.received");
    let tls_file = scratch.join("tls.received");
    let received = |f: &Path| first_of_each(lines(f)).len();
    let grow_by = |more: usize| {
        let (p, t) = (received(&plain_file), received(&tls_file));
        wait_until(
            "records at both rsyslogs",
            || {
                format!(
                    "plain {} tls {}",
                    received(&plain_file),
                    received(&tls_file)
                )
            },
            || received(&plain_file) >= p + more && received(&tls_file) >= t + more,
        );
    };
    let mut load = Load::start();
    let sensor = start_sensor(&config, &load);
    load.go();
    grow_by(1000);
    // Both rsyslogs stop under load and come back, twice.
    for pause in [1000, 300] {
        plain.down();
        tls.down();
        thread::sleep(Duration::from_millis(pause));
        plain.up();
        tls.up();
        grow_by(1000);
    }
    drop(load);
    let trail_count = || lines(&trail).len();
    wait_until(
        "both rsyslogs to catch up with the trail",
        || {
            format!(
                "plain {} tls {} trail {}",
                received(&plain_file),
                received(&tls_file),
                trail_count()
            )
        },
        || received(&plain_file) == trail_count() && received(&tls_file) == trail_count(),
    );
    let log = sensor.stderr();
    let finished = sensor.stop();
    let trail_now = lines(&trail);
    wait_until(
        "the stop record at both rsyslogs",
        || {
            format!(
                "plain {} tls {}",
                received(&plain_file),
                received(&tls_file)
            )
        },
        || received(&plain_file) == trail_now.len() && received(&tls_file) == trail_now.len(),
    );
    for (name, file) in [("plain", &plain_file), ("tls", &tls_file)] {
        let got = first_of_each(lines(file));
        assert!(
            got == trail_now,
            "{name}: rsyslog's file is not the trail, record for record ({} and {})",
            got.len(),
            trail_now.len()
        );
        // At least once: a new connection starts with the last records again.
        let deduplicated = scratch.join(format!("{name}.deduplicated"));
        std::fs::write(&deduplicated, joined(&got)).unwrap();
        let (ok, report) = verify(&deduplicated);
        assert!(ok, "{name}: verify refused what rsyslog stored: {report:#}");
        assert_eq!(report["records"], trail_now.len(), "{report:#}");
    }
    // The structured data carries each record's keys (rsyslog's view of them).
    let sd = std::fs::read_to_string(scratch.join("tls.sd")).unwrap();
    let first = parse(&trail_now[0]);
    let expected = format!(
        "{} [agent-sensor@32473 instance_id=\"{}\" sequence=\"0\" hash=\"{}\" action=\"{}\"]",
        first["event"]["action"].as_str().unwrap(),
        first["chain"]["instance_id"].as_str().unwrap(),
        first["chain"]["hash"].as_str().unwrap(),
        first["event"]["action"].as_str().unwrap(),
    );
    assert_eq!(sd.lines().next(), Some(expected.as_str()), "{sd}");
    // The JSON Lines reader over TLS got every record.
    let _ = jsonl.kill();
    let _ = jsonl.wait();
    let got = first_of_each(lines(&jsonl_file));
    assert!(
        got == trail_now,
        "the TLS socket reader's lines are not the trail ({} and {})",
        got.len(),
        trail_now.len()
    );
    // The sink whose CA did not sign the server's certificate delivered nothing, and says why.
    let refused = log
        .lines()
        .chain(finished.stderr.lines())
        .find(|l| l.contains("wrong-ca") && l.contains("cannot deliver"))
        .unwrap_or_else(|| panic!("no refusal logged for the wrong CA:\n{log}"));
    assert!(
        refused.contains("TLS handshake failed") && refused.contains("invalid peer certificate"),
        "{refused}"
    );
}

#[test]
fn otlp_receivers_get_every_record_across_an_outage_and_503s_and_a_400_is_a_recorded_gap() {
    require_root();
    let scratch = scratch_dir("sinks-otlp");
    tls_certificates(&scratch);
    let trail = scratch.join("trail");
    let (port, tls_port) = (free_port(), free_port());
    let mut otel = OtlpReceiver::start(port, &scratch.join("otel"), None);
    let otel_tls = OtlpReceiver::start(tls_port, &scratch.join("otel-tls"), Some(&scratch));
    let config = scratch.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\npath = \"{trail}/\"\n\
             [[sinks]]\nname = \"otel\"\ntype = \"otlp\"\naddress = \"tcp:127.0.0.1:{port}\"\n\
             queue_dir = \"queues\"\nbatch_records = 200\ntimeout_ms = 2000\nretry_max_ms = 2000\n\
             [[sinks]]\nname = \"otel-tls\"\ntype = \"otlp\"\naddress = \"tcp:127.0.0.1:{tls_port}\"\n\
             tls_ca_file = \"ca.pem\"\nqueue_dir = \"queues\"\nbatch_records = 200\n",
            trail = trail.display(),
        ),
    )
    .unwrap();
    let count = |r: &OtlpReceiver| first_of_each(r.bodies()).len();
    let grow_by = |r: &OtlpReceiver, more: usize| {
        let before = count(r);
        wait_until(
            "records at the OTLP receiver",
            || format!("{} received; answers:\n{}", count(r), r.answers()),
            || count(r) >= before + more,
        );
    };
    let mut load = Load::start();
    let sensor = start_sensor(&config, &load);
    load.go();
    grow_by(&otel, 1000);
    // Down for a while under load, then back.
    otel.down();
    thread::sleep(Duration::from_secs(1));
    otel.up();
    grow_by(&otel, 1000);
    // Busy: 503 with `Retry-After: 1`, heeded (the back-off alone would ask again after
    // 100, 200, 400 and 800 ms), then back.
    std::fs::write(otel.dir.join("busy"), "").unwrap();
    wait_until(
        "a 503",
        || otel.answers(),
        || otel.answers().contains("503"),
    );
    thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(otel.dir.join("busy")).unwrap();
    let busy = otel.answers().lines().filter(|a| *a == "503").count();
    assert!((1..=3).contains(&busy), "{busy} answers 503 in 1.5 s");
    grow_by(&otel, 1000);
    // One batch refused as malformed: not sent again, recorded.
    std::fs::write(otel.dir.join("reject"), "").unwrap();
    wait_until(
        "a 400",
        || otel.answers(),
        || otel.answers().contains("400"),
    );
    grow_by(&otel, 500);
    drop(load);
    let sink_gaps = |lines: &[Vec<u8>]| -> Vec<Value> {
        lines
            .iter()
            .map(|l| parse(l))
            .filter(|r| r["event"]["action"] == "gap" && r["gap"]["source"] == "sink")
            .collect()
    };
    wait_until(
        "the refused batch's gap record",
        || format!("{} trail records", lines(&trail).len()),
        || !sink_gaps(&lines(&trail)).is_empty(),
    );
    let finished = sensor.stop();
    let trail_now = lines(&trail);
    let gaps = sink_gaps(&trail_now);
    assert_eq!(gaps.len(), 1, "{gaps:?}\n{}", finished.stderr);
    let gap = &gaps[0]["gap"];
    assert_eq!(gap["sink"]["name"], "otel", "{gap}");
    assert_eq!(gap["error"], "rejected", "{gap}");
    let (first, last) = (
        gap["sink"]["first_sequence"].as_u64().unwrap(),
        gap["sink"]["last_sequence"].as_u64().unwrap(),
    );
    assert_eq!(gap["lost"].as_u64(), Some(last - first + 1), "{gap}");
    let refused = |l: &Vec<u8>| {
        let s = parse(l)["chain"]["sequence"].as_u64().unwrap();
        (first..=last).contains(&s)
    };
    let expected: Vec<Vec<u8>> = trail_now.iter().filter(|l| !refused(l)).cloned().collect();
    wait_until(
        "the stop record at the receivers",
        || {
            format!(
                "{} and {} of {}",
                count(&otel),
                count(&otel_tls),
                trail_now.len()
            )
        },
        || count(&otel) == expected.len() && count(&otel_tls) == trail_now.len(),
    );
    let got = first_of_each(otel.bodies());
    assert!(
        got == expected,
        "the receiver's bodies are not the trail less the refused batch ({} and {})",
        got.len(),
        expected.len()
    );
    let answers = otel.answers();
    assert!(
        answers.lines().filter(|a| *a == "400").count() == 1,
        "{answers}"
    );
    // verify finds the refused batch where it was.
    let received = scratch.join("otel-received.jsonl");
    std::fs::write(&received, joined(&got)).unwrap();
    let (ok, report) = verify(&received);
    assert!(
        !ok,
        "a hole in the received records is a finding: {report:#}"
    );
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["kind"] == "removed"),
        "{report:#}"
    );
    let after = got
        .iter()
        .position(|l| parse(l)["chain"]["sequence"].as_u64() > Some(last))
        .unwrap();
    assert_eq!(
        findings[0]["line"].as_u64(),
        Some(after as u64 + 1),
        "{report:#}"
    );
    // Over HTTPS, everything; verify accepts it.
    let got = first_of_each(otel_tls.bodies());
    assert!(
        got == trail_now,
        "the HTTPS receiver's bodies are not the trail"
    );
    let received = scratch.join("otel-tls-received.jsonl");
    std::fs::write(&received, joined(&got)).unwrap();
    let (ok, report) = verify(&received);
    assert!(ok, "verify refused what the OTLP receiver got: {report:#}");
    // Each log record's attributes, resource and time are the record's.
    let records = lines(&otel_tls.dir.join("records"));
    assert_eq!(records.len(), otel_tls.bodies().len());
    for (meta, body) in records.iter().zip(otel_tls.bodies()).step_by(97) {
        let (meta, r) = (parse(meta), parse(&body));
        assert_eq!(meta["time"], r["@timestamp"], "{meta}");
        assert_eq!(
            meta["attributes"]["event.action"], r["event"]["action"],
            "{meta}"
        );
        assert_eq!(
            meta["attributes"]["chain.sequence"], r["chain"]["sequence"],
            "{meta}"
        );
        assert_eq!(
            meta["attributes"]["chain.hash"], r["chain"]["hash"],
            "{meta}"
        );
        assert_eq!(
            meta["resource"]["sensor.instance_id"], r["chain"]["instance_id"],
            "{meta}"
        );
        assert_eq!(meta["resource"]["service.name"], "agent-sensor", "{meta}");
        assert_eq!(meta["resource"]["host.name"], r["host"]["name"], "{meta}");
        assert_eq!(
            meta["attributes"]["identity.agent.id"], r["identity"]["agent"]["id"],
            "{meta}"
        );
    }
}

/// Lines back into a JSON Lines file's bytes.
fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut text = Vec::new();
    for l in lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    text
}
