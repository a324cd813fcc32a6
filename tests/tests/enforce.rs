//! Egress enforcement in the kernel, end to end: an agent (by executable) whose egress rule is
//! enforced connects and sends over a veth pair into a network namespace. Its forbidden
//! connects and UDP sends (IPv4 and IPv6) fail with EPERM and no packet for them is on the wire
//! (a packet capture on the veth); its allowed ones go through; the decision records say
//! `denied`, linked to the failed action's record. A bystander reaches the forbidden
//! destinations. An operator's exception lets the agent through until it ends. When the
//! sensor is killed (SIGKILL), nothing denies any more (fail-open).
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sensor_tests::{Sensor, Value, action, run_ok, scratch_dir, sensor_binary};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");
const ALLOWED: u16 = 8081;
const FORBIDDEN: u16 = 8082;
const UDP_FORBIDDEN: u16 = 9099;
const EPERM: i32 = libc::EPERM;
/// The port the `dns` entry allows on the address its name resolves to.
const NAMED: u16 = 8083;
const NAME: &str = "api.agent-test.example";

/// A network namespace joined to this one by a veth pair: this side `10.203.N.1` and
/// `fd00:203:N::1`, the namespace's side `.2` and `::2`, with TCP listeners on the allowed and
/// the forbidden port there. Removed (with the pair) when dropped.
struct Link {
    netns: String,
    host_if: String,
    v4: String,
    v6: String,
    /// The address the namespace's DNS server (`v4`:53) gives for [`NAME`].
    named: String,
    listeners: Child,
    dns: Child,
}

impl Link {
    fn new() -> Link {
        let id = std::process::id();
        let n = 20 + id % 200;
        let netns = format!("as-enforce-{id}");
        let host_if = format!("aseh{}", id % 100_000);
        let peer_if = format!("asen{}", id % 100_000);
        let (v4, v6) = (format!("10.203.{n}.2"), format!("fd00:203:{n}::2"));
        let ip = |args: &str| {
            run_ok(Command::new("ip").args(args.split_whitespace()));
        };
        ip(&format!("netns add {netns}"));
        ip(&format!("link add {host_if} type veth peer name {peer_if}"));
        ip(&format!("link set {peer_if} netns {netns}"));
        ip(&format!("addr add 10.203.{n}.1/24 dev {host_if}"));
        ip(&format!(
            "-6 addr add fd00:203:{n}::1/64 dev {host_if} nodad"
        ));
        ip(&format!("link set {host_if} up"));
        ip(&format!("-n {netns} addr add {v4}/24 dev {peer_if}"));
        ip(&format!(
            "-n {netns} -6 addr add {v6}/64 dev {peer_if} nodad"
        ));
        ip(&format!("-n {netns} link set {peer_if} up"));
        ip(&format!("-n {netns} link set lo up"));
        let named = format!("10.203.{n}.3");
        ip(&format!("-n {netns} addr add {named}/24 dev {peer_if}"));
        let ready = |mut child: Child| {
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready");
            child
        };
        let listeners = ready(
            Command::new("ip")
                .args(["netns", "exec", &netns, HELPER, "listen"])
                .args(
                    [ALLOWED, FORBIDDEN]
                        .iter()
                        .flat_map(|p| [format!("{v4}:{p}"), format!("[{v6}]:{p}")]),
                )
                .args([format!("{named}:{NAMED}"), format!("{named}:{FORBIDDEN}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // A TTL of 1 s: the sensor keeps the address for its minimum, 2 s.
        let dns = ready(
            Command::new("ip")
                .args(["netns", "exec", &netns, HELPER, "dns-serve"])
                .args([format!("{v4}:53"), named.clone(), "1".to_owned()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        Link {
            netns,
            host_if,
            v4,
            v6,
            named,
            listeners,
            dns,
        }
    }

    fn v4(&self, port: u16) -> String {
        format!("{}:{port}", self.v4)
    }

    fn v6(&self, port: u16) -> String {
        format!("[{}]:{port}", self.v6)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for child in [&mut self.listeners, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// `tcpdump` writing every packet on an interface to a file, from when it says it listens.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(interface: &str, file: &Path) -> Capture {
        let mut child = Command::new("tcpdump")
            .args(["-i", interface, "-nn", "-U", "-w"])
            .arg(file)
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (Debian's tcpdump; `cargo xtask setup` installs it)");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "tcpdump ended before listening"
            );
        }
        // Keep reading its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Capture {
            child,
            file: file.to_owned(),
        }
    }

    /// Stops the capture; every packet, one line each, as `tcpdump -r` prints them.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
        let out = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&self.file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Packets to `to` (`addr.port`, as tcpdump writes it) that open a TCP connection (SYN
/// without ACK) or are UDP.
fn opening(packets: &[String], to: &str) -> usize {
    let to = format!("> {to}:");
    packets
        .iter()
        .filter(|p| p.contains(&to) && (p.contains("Flags [S],") || p.contains(" UDP")))
        .count()
}

/// The errno `who` gets for `what` (`connect` or `udp-to`) to `to`.
fn errno(who: &str, what: &str, to: &str) -> i32 {
    let out = Command::new(who).args([what, to]).output().unwrap();
    assert!(out.status.success(), "{who} {what} {to}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_forbidden_connect_or_send_fails_with_eperm_before_any_packet_leaves() {
    let dir = scratch_dir("enforce-egress");
    let agent = dir.join("enforced-agent").display().to_string();
    std::fs::copy(HELPER, &agent).unwrap();
    let link = Link::new();
    let socket = dir.join("control.sock");
    let manifest = format!(
        "agents:\n  - id: enforced\n    selectors: [{{executable: {agent}}}]\n    policy:\n      version: enforce-1\n      egress:\n        mode: enforce\n        allow:\n          - {{cidr: {v4}, ports: [{ALLOWED}, 53]}}\n          - {{cidr: \"{v6}/128\", ports: [{ALLOWED}]}}\n          - {{dns: \"*.agent-test.example\", ports: [{NAMED}]}}\n",
        v4 = link.v4,
        v6 = link.v6,
    );
    std::fs::write(dir.join("agents.yaml"), manifest).unwrap();
    let check = Command::new(sensor_binary())
        .args(["identities", "check"])
        .arg(dir.join("agents.yaml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("policy enforce-1: tasks enforce, egress enforce (3 allowed)"),
        "{check:?}"
    );
    let config = sensor_tests::write_identities_config(&dir, &socket);
    let sensor = Sensor::start(&["--config", config.to_str().unwrap()]);
    let start = sensor.wait_for("the start record", |r| action(r) == "sensor_start");
    let programs = start["sensor"]["lifecycle"]["programs"].to_string();
    for hook in ["connect4", "connect6", "sendmsg4", "sendmsg6"] {
        assert!(programs.contains(&format!("cgroup:{hook}")), "{programs}");
    }
    let capture = Capture::start(&link.host_if, &dir.join("veth.pcap"));

    // The agent: allowed destinations go through, forbidden ones fail with EPERM.
    assert_eq!(errno(&agent, "connect", &link.v4(ALLOWED)), 0);
    assert_eq!(errno(&agent, "connect", &link.v6(ALLOWED)), 0);
    assert_eq!(errno(&agent, "connect", &link.v4(FORBIDDEN)), EPERM);
    assert_eq!(errno(&agent, "connect", &link.v6(FORBIDDEN)), EPERM);
    assert_eq!(errno(&agent, "udp-to", &link.v4(ALLOWED)), 0);
    assert_eq!(errno(&agent, "udp-to", &link.v4(UDP_FORBIDDEN)), EPERM);
    assert_eq!(errno(&agent, "udp-to", &link.v6(UDP_FORBIDDEN)), EPERM);
    // A bystander reaches every one of them.
    assert_eq!(errno(HELPER, "connect", &link.v4(FORBIDDEN)), 0);
    assert_eq!(errno(HELPER, "connect", &link.v6(FORBIDDEN)), 0);
    assert_eq!(errno(HELPER, "udp-to", &link.v4(UDP_FORBIDDEN)), 0);
    assert_eq!(errno(HELPER, "udp-to", &link.v6(UDP_FORBIDDEN)), 0);

    // An exception lets the agent through until it ends.
    let except = Command::new(sensor_binary())
        .args(["except", "--agent", "enforced", "--rule", "egress"])
        .args(["--seconds", "2", "--author", "alice", "--reason", "INC-7"])
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert!(except.status.success(), "{except:?}");
    let granted: Value = serde_json::from_slice(&except.stdout).unwrap();
    assert_eq!(errno(&agent, "connect", &link.v4(FORBIDDEN)), 0);
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(errno(&agent, "connect", &link.v4(FORBIDDEN)), EPERM);

    // A dns entry: only the addresses the agent itself looked up, with the entry's ports, for
    // the answer's TTL (at least 2 s).
    let named = |port: u16| format!("{}:{port}", link.named);
    let resolver = link.v4(53);
    assert_eq!(
        errno(&agent, "connect", &named(NAMED)),
        EPERM,
        "not looked up"
    );
    let resolve = |who: &str| {
        let out = Command::new(who)
            .args(["resolve", &resolver, NAME])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(resolve(HELPER), link.named);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        errno(&agent, "connect", &named(NAMED)),
        EPERM,
        "a bystander's lookup"
    );
    assert_eq!(resolve(&agent), link.named);
    sensor.wait_for("the agent's DNS answer", |r| {
        r["dns"]["type"] == "answer" && r["process"]["executable"] == agent.as_str()
    });
    assert_eq!(errno(&agent, "connect", &named(NAMED)), 0, "its own lookup");
    assert_eq!(
        errno(&agent, "connect", &named(FORBIDDEN)),
        EPERM,
        "another port"
    );
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(
        errno(&agent, "connect", &named(NAMED)),
        EPERM,
        "the TTL ended"
    );

    let packets = capture.stop();
    // On the wire: the bystander's and the excepted connect only.
    assert_eq!(
        opening(&packets, &format!("{}.{ALLOWED}", link.v4)),
        2,
        "{packets:#?}"
    );
    assert_eq!(
        opening(&packets, &format!("{}.{ALLOWED}", link.v6)),
        1,
        "{packets:#?}"
    );
    assert_eq!(
        opening(&packets, &format!("{}.{FORBIDDEN}", link.v4)),
        2,
        "{packets:#?}"
    );
    assert_eq!(
        opening(&packets, &format!("{}.{FORBIDDEN}", link.v6)),
        1,
        "{packets:#?}"
    );
    assert_eq!(
        opening(&packets, &format!("{}.{UDP_FORBIDDEN}", link.v4)),
        1,
        "{packets:#?}"
    );
    assert_eq!(
        opening(&packets, &format!("{}.{UDP_FORBIDDEN}", link.v6)),
        1,
        "{packets:#?}"
    );

    let decisions = sensor.wait_for_count("ten decisions", 10, |r| action(r) == "policy_decision");
    // Killed, the sensor leaves nothing denying: its programs' links closed with it.
    let done = sensor.kill(libc::SIGKILL);
    assert_eq!(
        errno(&agent, "connect", &link.v4(FORBIDDEN)),
        0,
        "fail-open"
    );
    assert_eq!(
        errno(&agent, "udp-to", &link.v6(UDP_FORBIDDEN)),
        0,
        "fail-open"
    );

    let records = &done.records;
    let summary: Vec<(String, String, String)> = decisions
        .iter()
        .map(|d| {
            let p = &d["policy"];
            let s = |k: &str| p[k].as_str().unwrap_or("").to_owned();
            (s("target"), s("outcome"), s("mode"))
        })
        .collect();
    let t4 = |port: u16| link.v4(port);
    let t6 = |port: u16| link.v6(port);
    let expected = [
        (t4(FORBIDDEN), "denied"),
        (t6(FORBIDDEN), "denied"),
        (t4(UDP_FORBIDDEN), "denied"),
        (t6(UDP_FORBIDDEN), "denied"),
        (t4(FORBIDDEN), "allowed"),
        (t4(FORBIDDEN), "denied"),
        (named(NAMED), "denied"),
        (named(NAMED), "denied"),
        (named(FORBIDDEN), "denied"),
        (named(NAMED), "denied"),
    ];
    let got: Vec<(String, &str)> = summary
        .iter()
        .map(|(t, o, _)| (t.clone(), o.as_str()))
        .collect();
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(t, o)| (t.clone(), *o))
            .collect::<Vec<_>>(),
        "{summary:#?}"
    );
    for d in &decisions {
        let p = &d["policy"];
        assert_eq!(p["agent"], "enforced");
        assert_eq!(p["rule"], "egress");
        assert_eq!(p["mode"], "enforce");
        assert_eq!(p["version"], "enforce-1");
        // Linked to its action's record, which says whether the kernel stopped it.
        let seq = p["action"]["sequence"].as_u64().unwrap();
        let acted = records
            .iter()
            .find(|r| r["chain"]["sequence"].as_u64() == Some(seq))
            .unwrap();
        assert_eq!(acted["chain"]["hash"], p["action"]["hash"]);
        assert_eq!(action(acted), p["action"]["name"].as_str().unwrap());
        assert_eq!(acted["process"]["executable"], agent.as_str());
        if p["outcome"] == "denied" {
            assert_eq!(acted["error"]["code"], "EPERM", "{acted}");
            assert_eq!(acted["event"]["outcome"], "failure", "{acted}");
            assert!(p["exception"].is_null());
        } else {
            assert_eq!(p["exception"]["sequence"], granted["sequence"]);
            assert_eq!(acted["event"]["outcome"], "success", "{acted}");
        }
    }
    drop(link);
    let _ = std::fs::remove_dir_all(&dir);
}
