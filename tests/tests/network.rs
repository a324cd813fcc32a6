//! Network activity, end to end: real sockets on loopback and in a network namespace the test
//! makes, each call triggered by the helper with known addresses and checked field by field.
use std::{
    net::{TcpListener, UdpSocket},
    process::Command,
};

use sensor_tests::{Sensor, Value, action, dns_exchange, of_process, scratch_dir};

const HELPER: &str = env!("CARGO_BIN_EXE_sensor-test-helper");

fn run_helper(args: &[&str]) -> (u32, String) {
    let child = Command::new(HELPER)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "helper {args:?}: {out:?}");
    (pid, String::from_utf8(out.stdout).unwrap())
}

fn net_of<'a>(records: &'a [Value], pid: u32, act: &str) -> Vec<&'a Value> {
    of_process(records, "network", pid)
        .into_iter()
        .filter(|r| action(r) == act)
        .collect()
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_refused_connect_to_a_closed_port() {
    let port = closed_port();
    let sensor = Sensor::start(&["--all-processes"]);
    let (pid, out) = run_helper(&["connect", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.trim(), "111");
    sensor.wait_for("the connect", |r| {
        action(r) == "connect" && sensor_tests::pid_of(r) == u64::from(pid)
    });
    let done = sensor.stop();
    let connects = net_of(&done.records, pid, "connect");
    assert_eq!(connects.len(), 1);
    let c = connects[0];
    assert_eq!(c["event"]["outcome"], "failure");
    assert_eq!(c["error"]["code"], "ECONNREFUSED");
    assert_eq!(c["destination"]["ip"], "127.0.0.1");
    assert_eq!(c["destination"]["port"], port);
    assert_eq!(c["network"]["transport"], "tcp");
    assert_eq!(c["network"]["type"], "ipv4");
    assert_eq!(c["network"]["direction"], "egress");
    assert_eq!(c["network"]["socket"]["type"], "SOCK_STREAM");
    assert_eq!(c["syscall"]["return"], -111);
    assert!(
        net_of(&done.records, pid, "connect_completed").is_empty(),
        "a blocking connect has its outcome already"
    );
}

#[test]
fn a_non_blocking_connect_reports_how_it_ended() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = closed_port();
    let sensor = Sensor::start(&["--all-processes"]);
    let (ok_pid, out) = run_helper(&["connect-nonblock", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.trim(), "0");
    let (bad_pid, out) = run_helper(&["connect-nonblock", &format!("127.0.0.1:{refused}")]);
    assert_eq!(out.trim(), "111");
    for pid in [ok_pid, bad_pid] {
        sensor.wait_for("the connect outcome", |r| {
            action(r) == "connect_completed" && sensor_tests::pid_of(r) == u64::from(pid)
        });
    }
    let done = sensor.stop();

    let start = net_of(&done.records, ok_pid, "connect")[0];
    assert_eq!(start["event"]["outcome"], "unknown");
    assert_eq!(start["network"]["connect_state"], "in_progress");
    assert_eq!(start["syscall"]["return"], -115);
    let end = net_of(&done.records, ok_pid, "connect_completed")[0];
    assert_eq!(end["event"]["outcome"], "success");
    assert_eq!(end["destination"]["port"], port);
    assert_eq!(end["destination"]["ip"], "127.0.0.1");
    assert!(
        end["source"]["port"].as_u64().unwrap() > 0,
        "the local port: {end}"
    );
    assert_eq!(
        end["network"]["socket_id"], start["network"]["socket_id"],
        "both records name one socket"
    );
    assert_eq!(end["process"]["entity_id"], start["process"]["entity_id"]);

    let failed = net_of(&done.records, bad_pid, "connect_completed")[0];
    assert_eq!(failed["event"]["outcome"], "failure");
    assert_eq!(failed["error"]["code"], "ECONNREFUSED");
    assert_eq!(failed["destination"]["port"], refused);
}

#[test]
fn ipv6_loopback_and_unix_sockets() {
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let v6_port = v6.local_addr().unwrap().port();
    let dir = scratch_dir("unix");
    let path = dir.join("agent.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let sensor = Sensor::start(&["--all-processes"]);
    let (pid6, out) = run_helper(&["connect", &format!("[::1]:{v6_port}")]);
    assert_eq!(out.trim(), "0");
    let (pidu, out) = run_helper(&["connect-unix", path.to_str().unwrap()]);
    assert_eq!(out.trim(), "0");
    for pid in [pid6, pidu] {
        sensor.wait_for("the connect", |r| {
            action(r) == "connect" && sensor_tests::pid_of(r) == u64::from(pid)
        });
    }
    let done = sensor.stop();
    let c6 = net_of(&done.records, pid6, "connect")[0];
    assert_eq!(c6["event"]["outcome"], "success");
    assert_eq!(c6["destination"]["ip"], "::1");
    assert_eq!(c6["destination"]["port"], v6_port);
    assert_eq!(c6["network"]["type"], "ipv6");
    assert_eq!(c6["network"]["socket"]["family"], "AF_INET6");
    assert_eq!(c6["source"]["ip"], "::1");
    let cu = net_of(&done.records, pidu, "connect")[0];
    assert_eq!(cu["event"]["outcome"], "success");
    assert_eq!(cu["destination"]["address"], path.to_str().unwrap());
    assert_eq!(cu["network"]["type"], "unix");
    assert_eq!(cu["network"]["socket"]["family"], "AF_UNIX");
    assert!(cu["network"].get("transport").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bind_listen_and_accept_with_the_peer_address() {
    use std::io::{BufRead as _, BufReader};
    let sensor = Sensor::start(&["--all-processes"]);
    let mut child = Command::new(HELPER)
        .arg("accept-one")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().parse().unwrap();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let peer = lines.next().unwrap().unwrap();
    assert_eq!(peer, format!("127.0.0.1:{client_port}"));
    assert!(child.wait().unwrap().success());
    sensor.wait_for("the accept", |r| {
        action(r) == "accept" && sensor_tests::pid_of(r) == u64::from(pid)
    });
    let done = sensor.stop();
    let bind = net_of(&done.records, pid, "bind")[0];
    assert_eq!(bind["event"]["outcome"], "success");
    assert_eq!(
        bind["destination"]["port"], port,
        "the port the kernel chose for port 0"
    );
    let listen = net_of(&done.records, pid, "listen")[0];
    assert_eq!(listen["destination"]["port"], port);
    assert!(listen["network"]["backlog"].as_u64().unwrap() > 0);
    let accept = net_of(&done.records, pid, "accept")[0];
    assert_eq!(accept["source"]["ip"], "127.0.0.1");
    assert_eq!(
        accept["source"]["port"], client_port,
        "the peer that connected"
    );
    assert_eq!(accept["destination"]["port"], port);
    assert_eq!(accept["network"]["direction"], "ingress");
    assert!(accept["syscall"]["return"].as_i64().unwrap() >= 0);
}

#[test]
fn udp_sends_report_their_destination() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let sensor = Sensor::start(&["--all-processes"]);
    let (pid, _) = run_helper(&["udp-send", &format!("127.0.0.1:{port}")]);
    sensor.wait_for_count("the sends", 3, |r| {
        action(r) == "send" && sensor_tests::pid_of(r) == u64::from(pid)
    });
    let done = sensor.stop();
    let sends = net_of(&done.records, pid, "send");
    let by_syscall = |name: &str| {
        *sends
            .iter()
            .find(|r| r["syscall"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for (name, bytes) in [("sendto", 10), ("sendmsg", 11)] {
        let s = by_syscall(name);
        assert_eq!(s["destination"]["port"], port, "{name}");
        assert_eq!(s["destination"]["ip"], "127.0.0.1");
        assert_eq!(s["network"]["transport"], "udp");
        assert_eq!(s["network"]["bytes"], bytes, "{name}");
    }
    let mm = by_syscall("sendmmsg");
    assert_eq!(mm["destination"]["port"], port);
    assert_eq!(mm["network"]["messages"], 2);
    assert_eq!(sends.len(), 3, "one record per call");
}

#[test]
fn dns_queries_and_answers_name_the_later_connect() {
    // A namespace with only loopback: a DNS server on 127.0.0.1:53 there, and a client that
    // asks it for a name and connects to the answer.
    let sensor = Sensor::start(&["--all-processes"]);
    let out = dns_exchange(HELPER);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10.1.2.3:80"), "{stdout}");
    sensor.wait_for("the connect to the answer", |r| {
        action(r) == "connect" && r["destination"]["ip"] == "10.1.2.3"
    });
    let done = sensor.stop();
    let query = done
        .records
        .iter()
        .find(|r| action(r) == "send" && r["dns"]["type"] == "query")
        .expect("the DNS query");
    assert_eq!(query["dns"]["question"]["name"], "agent-test.example");
    assert_eq!(query["dns"]["question"]["type"], "A");
    assert_eq!(query["dns"]["id"], 0x1234);
    assert_eq!(query["destination"]["port"], 53);
    let answer = done
        .records
        .iter()
        .find(|r| action(r) == "receive" && r["dns"]["type"] == "answer")
        .expect("the DNS answer");
    assert_eq!(
        answer["dns"]["resolved_ip"],
        serde_json::json!(["10.1.2.3"])
    );
    assert_eq!(answer["dns"]["response_code"], "NOERROR");
    assert_eq!(answer["source"]["port"], 53);
    assert_eq!(
        answer["process"]["entity_id"],
        query["process"]["entity_id"]
    );
    let connect = done
        .records
        .iter()
        .find(|r| action(r) == "connect" && r["destination"]["ip"] == "10.1.2.3")
        .unwrap();
    assert_eq!(connect["destination"]["domain"], "agent-test.example");
    assert_eq!(
        connect["event"]["outcome"], "failure",
        "only loopback in the namespace"
    );
    // The server's own receive of the query is not a DNS answer and is not followed.
    assert!(
        !done
            .records
            .iter()
            .any(|r| action(r) == "receive" && r["dns"]["type"] == "query")
    );
}
