//! What an SRE runs the sensor with, against the real daemon: Debian's Prometheus server
//! scrapes its `/metrics` and a PromQL query over the HTTP API gives the exact count of the
//! execs a test made; `promtool check metrics` accepts the exposition; `/healthz` and
//! `/readyz` answer.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{Launch, Value, action, scratch_dir};

const TIMEOUT: Duration = Duration::from_mins(1);
/// How many execs the workload makes.
const EXECS: usize = 25;

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `port`: the status and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `GET path` answers `status`.
fn wait_for_status(port: u16, path: &str, status: u16) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = http_get(port, path);
        if let Ok((s, body)) = &answer
            && *s == status
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never answered {status}: {answer:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A config that serves metrics on `port`, with one Sigma rule (on `/bin/true`).
fn metrics_config(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(
        dir.join("true.yml"),
        tool_rule("0d0d0d0d-0000-4000-8000-000000000001", "true"),
    )
    .unwrap();
    let path = dir.join("agent-sensor.toml");
    std::fs::write(
        &path,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[rules]\nfiles = [\"true.yml\"]\n"),
    )
    .unwrap();
    path
}

/// A shell that runs `/bin/true` [`EXECS`] times once told to go.
struct Workload(Child);

impl Workload {
    fn start() -> Self {
        let script = format!(
            "read go; i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done; read end"
        );
        Workload(
            Command::new("/bin/sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn go(&mut self) {
        writeln!(self.0.stdin.as_mut().unwrap(), "go").unwrap();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Prometheus server scraping `target` every second, its API on `port`.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: u16) -> Self {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: agent-sensor\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's `prometheus` package; cargo xtask setup installs it)");
        Prometheus { child, port }
    }

    /// The value of an instant PromQL query with one result, once it has one.
    fn query(&self, promql: &str) -> Option<String> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={encoded}")).ok()?;
        if status != 200 {
            return None;
        }
        let answer: Value = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["value"][1].as_str().map(str::to_owned))?
    }

    /// Waits until `promql` gives `expected`.
    fn wait_for(&self, promql: &str, expected: &str, dir: &Path) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let value = self.query(promql);
            if value.as_deref() == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} is {value:?}, not {expected}\n--- prometheus log ---\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_exact_count_of_execs() {
    let dir = scratch_dir("prometheus");
    let port = free_port();
    let mut work = Workload::start();
    let sensor = Launch::new()
        .config(&metrics_config(&dir, port))
        .args(["--pid", &work.0.id().to_string()])
        .start();
    assert_eq!(wait_for_status(port, "/readyz", 200), "ready\n");
    assert_eq!(wait_for_status(port, "/healthz", 200), "ok\n");
    let prometheus = Prometheus::start(&dir, port);
    prometheus.wait_for("up{job=\"agent-sensor\"}", "1", &dir);

    work.go();
    sensor.wait_for_count("the workload's execs", EXECS, |r| {
        action(r) == "exec" && r["process"]["args"][0] == "/bin/true"
    });
    let execs = EXECS.to_string();
    prometheus.wait_for(
        "agent_sensor_kernel_records_total{job=\"agent-sensor\",kind=\"exec\"}",
        &execs,
        &dir,
    );
    prometheus.wait_for(
        "sum(agent_sensor_kernel_records_total{kind=~\"fork|exit\"})",
        &(2 * EXECS).to_string(),
        &dir,
    );
    prometheus.wait_for("agent_sensor_output_admitting", "1", &dir);
    // The rules ran on every exec at least (Sigma sees process records), and took time.
    prometheus.wait_for(
        &format!("agent_sensor_rule_evaluations_total{{engine=\"sigma\"}} >= bool {EXECS}"),
        "1",
        &dir,
    );
    prometheus.wait_for(
        "agent_sensor_rule_evaluation_seconds_total{engine=\"sigma\"} > bool 0",
        "1",
        &dir,
    );
    prometheus.wait_for(
        "agent_sensor_rule_evaluations_total{engine=\"native\"}",
        "0",
        &dir,
    );
    prometheus.wait_for("sum(agent_sensor_decode_errors_total)", "0", &dir);

    // What promtool, the server's own linter, says of the exposition (names, types, help).
    let (status, exposition) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's `prometheus` package)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = http_get(port, "/nothing").unwrap();
    assert_eq!(status, 404);
    drop(prometheus);
    sensor.stop();
}

/// A sink that cannot deliver makes `/readyz` answer 503 naming it, and its metrics say so;
/// once its reader is there, the records arrive, the sink is up and the sensor ready again.
#[test]
fn readyz_and_metrics_follow_a_sinks_health() {
    let dir = scratch_dir("sink-health");
    let port = free_port();
    let socket = dir.join("collector.sock");
    let config = dir.join("agent-sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[sinks]]\nname = \"collector\"\ntype = \"socket\"\naddress = \"unix:{}\"\nqueue_dir = \"{}\"\nretry_max_ms = 200\n",
            socket.display(),
            dir.join("queue").display()
        ),
    )
    .unwrap();
    let sensor = Launch::new().config(&config).start();

    // Nobody listens: the sink retries, and readiness names it and why.
    let why = wait_for_status(port, "/readyz", 503);
    assert!(
        why.contains("sink collector cannot deliver to unix:"),
        "{why}"
    );
    let metrics = wait_for_status(port, "/metrics", 200);
    assert!(
        metrics.contains("agent_sensor_sink_up{sink=\"collector\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE agent_sensor_sink_failures_total counter"));
    // The start record waits in its queue: the lag grows.
    let lag = |metrics: &str| {
        sample(metrics, "agent_sensor_sink_lag_seconds{sink=\"collector\"}")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no lag: {metrics}"))
    };
    let deadline = Instant::now() + TIMEOUT;
    while lag(&wait_for_status(port, "/metrics", 200)) < 1.0 {
        assert!(Instant::now() < deadline, "the lag never reached a second");
        thread::sleep(Duration::from_millis(200));
    }

    // The collector comes: the queued records arrive, the sink is up, the sensor ready.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // It reads until the sensor stops (a reader that went away would fail the sink again).
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = String::new();
        let _ = stream.read_to_string(&mut received);
        received
    });
    assert_eq!(wait_for_status(port, "/readyz", 200), "ready\n");
    let metrics = wait_for_status(port, "/metrics", 200);
    assert!(
        metrics.contains("agent_sensor_sink_up{sink=\"collector\"} 1"),
        "{metrics}"
    );
    let delivered = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("agent_sensor_sink_delivered_records_total{sink=\"collector\"} ")
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(delivered >= 1, "{metrics}");
    // Everything delivered: no lag.
    let deadline = Instant::now() + TIMEOUT;
    while lag(&wait_for_status(port, "/metrics", 200)) != 0.0 {
        assert!(Instant::now() < deadline, "the lag never went back to 0");
        thread::sleep(Duration::from_millis(200));
    }
    sensor.stop();
    let received = reader.join().unwrap();
    assert!(
        received.lines().count() as u64 >= delivered,
        "{delivered} delivered, received: {received}"
    );
    assert!(
        received.contains("\"action\":\"sensor_start\""),
        "{received}"
    );
}

/// A sample's value in an exposition (the first line of `series`, labels included), in the
/// exposition's own text.
fn sample<'a>(metrics: &'a str, series: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

/// The ring buffer's fill comes from the kernel's own positions: records the kernel wrote and
/// the daemon has not collected yet (here it collects once a second) show, and are gone once
/// collected.
#[test]
fn the_ring_buffer_fill_shows_records_waiting_for_the_daemon() {
    const SIZE: u64 = 1 << 20;
    let dir = scratch_dir("ring-fill");
    let port = free_port();
    let config = dir.join("agent-sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[kernel]\npoll_interval_ms = 1000\nring_buffer_bytes = {SIZE}\n"
        ),
    )
    .unwrap();
    // One exec per line it reads.
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "while read line; do /bin/true; done"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sensor = Launch::new()
        .config(&config)
        .args(["--pid", &shell.id().to_string()])
        .start();
    let used = || {
        let metrics = wait_for_status(port, "/metrics", 200);
        assert_eq!(
            sample(&metrics, "agent_sensor_ring_buffer_size_bytes"),
            Some(SIZE.to_string().as_str()),
            "{metrics}"
        );
        sample(&metrics, "agent_sensor_ring_buffer_used_bytes")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no ring buffer fill: {metrics}"))
    };
    let mut stdin = shell.stdin.take().unwrap();
    // An exec's records wait in the ring for the next collection (no wakeup: far below
    // kernel.wakeup_bytes); one of these tries reads them before it.
    let mut seen = 0;
    for _ in 0..20 {
        writeln!(stdin, "go").unwrap();
        thread::sleep(Duration::from_millis(50));
        seen = used();
        if seen > 0 {
            break;
        }
    }
    assert!(seen > 0 && seen < SIZE, "fill while records wait: {seen}");
    // Collected within the interval, nothing new: empty again.
    let deadline = Instant::now() + TIMEOUT;
    while used() != 0 {
        assert!(Instant::now() < deadline, "the ring never emptied");
        thread::sleep(Duration::from_millis(200));
    }
    drop(stdin);
    shell.wait().unwrap();
    sensor.stop();
}

/// A Sigma rule that fires when `tool` runs.
fn tool_rule(id: &str, tool: &str) -> String {
    format!(
        "title: {tool} ran\nid: {id}\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        Image|endswith: '/{tool}'\n    condition: selection\nlevel: low\n"
    )
}

#[test]
fn sighup_rereads_the_config_taking_rule_files_and_keeping_it_when_it_is_bad() {
    let dir = scratch_dir("config-reload");
    std::fs::write(
        dir.join("one.yml"),
        tool_rule("0c0c0c0c-0000-4000-8000-000000000001", "tac"),
    )
    .unwrap();
    std::fs::write(
        dir.join("two.yml"),
        tool_rule("0c0c0c0c-0000-4000-8000-000000000002", "rev"),
    )
    .unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(&config, "[rules]\nfiles = [\"one.yml\"]\n").unwrap();
    let sensor = Launch::new().config(&config).start();
    let reloads = |n: usize| {
        let all = sensor.wait_for_count(&format!("{n} rules_reloaded"), n, |r| {
            action(r) == "rules_reloaded"
        });
        all[n - 1]["sensor"]["lifecycle"]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Another rule file (taken) and a kernel setting (only a restart takes it).
    std::fs::write(
        &config,
        "[rules]\nfiles = [\"one.yml\", \"two.yml\"]\n[kernel]\npoll_interval_ms = 50\n",
    )
    .unwrap();
    sensor.signal(libc::SIGHUP);
    assert_eq!(reloads(1), "SIGHUP: 2 rules");

    // A mistake: the whole file is refused and the running configuration stays.
    std::fs::write(
        &config,
        "[rules]\nfiles = [\"one.yml\"]\n[kernel]\npoll_interval_ms = 0\n",
    )
    .unwrap();
    sensor.signal(libc::SIGHUP);
    assert_eq!(reloads(2), "SIGHUP: 2 rules");

    let done = sensor.stop();
    let log = &done.stderr;
    assert!(
        log.contains(
            "configuration reloaded; changed but only taken at the next restart: kernel.poll_interval_ms"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "configuration not reloaded, keeping the running one: {}:4:20: kernel.poll_interval_ms must be between 1 and 1000",
            config.display()
        )),
        "{log}"
    );
}
