//! Writes a [`Record`] as one JSON object, byte for byte what `serde_json` writes for it,
//! straight into the output buffer: keys are literals, strings are escaped by a scan that
//! skips eight clean bytes at a time, and numbers need no `core::fmt`. The hot blocks
//! (event, identity, process, file, network) are written here; rare ones (gap, checkpoint,
//! registration, DNS, containers, ...) go through `serde_json`, which writes the same bytes
//! either way. The serde derive on the record types stays the contract: the schema comes
//! from it, OCSF maps through it, and the tests hold this writer to it.
use serde::Serialize;

use crate::enrich::clock::Timestamp;
use crate::record::{
    AttributionInfo, Endpoint, ErrorInfo, EventMeta, File, Id, Identity, Network, OpenInfo, Parent,
    Process, ProcessBlock, Record, SensorBlock, Syscall,
};

/// Appends `record` to `out` as JSON (no newline). Returns how many of its first bytes are the
/// blocks shared by a run's or an agent's records (`host`, `sensor`, `identity`), which the
/// chain hashes once for all of them.
pub fn write(out: &mut Vec<u8>, record: &Record) -> usize {
    let start = out.len();
    let mut o = Object::open(out);
    o.raw("host", record.host.json());
    o.key("sensor");
    sensor(o.out, &record.sensor);
    if let Some(i) = &record.identity {
        o.key("identity");
        identity(o.out, i);
    }
    let shared = o.out.len() - start;
    o.time("@timestamp", &record.timestamp);
    o.str("schema_version", record.schema_version);
    o.key("event");
    event(o.out, &record.event);
    match &record.process {
        Some(ProcessBlock::Own(p)) => {
            o.key("process");
            process(o.out, p);
        }
        Some(ProcessBlock::Shared(p)) => o.raw("process", p.json()),
        None => {}
    }
    o.opt_serde("container", record.container.as_deref());
    o.opt_serde("orchestrator", record.orchestrator.as_deref());
    o.opt_serde("cgroup", record.cgroup.as_ref());
    o.opt_id("user", record.user.as_ref());
    if let Some(f) = &record.file {
        o.key("file");
        file(o.out, f);
    }
    if let Some(e) = &record.source {
        o.key("source");
        endpoint(o.out, e);
    }
    if let Some(e) = &record.destination {
        o.key("destination");
        endpoint(o.out, e);
    }
    if let Some(n) = &record.network {
        o.key("network");
        network(o.out, n);
    }
    o.opt_serde("dns", record.dns.as_ref());
    if let Some(s) = &record.syscall {
        o.key("syscall");
        syscall(o.out, s);
    }
    if let Some(e) = &record.error {
        o.key("error");
        error(o.out, e);
    }
    o.opt_serde("gap", record.gap.as_ref());
    o.opt_serde("checkpoint", record.checkpoint.as_ref());
    o.opt_serde("registration", record.registration.as_ref());
    o.opt_serde("annotation", record.annotation.as_ref());
    o.opt_serde("rotation", record.rotation.as_ref());
    o.close();
    shared
}

fn event(out: &mut Vec<u8>, e: &EventMeta) {
    let mut o = Object::open(out);
    o.str("kind", e.kind);
    if !e.category.is_empty() {
        o.key("category");
        str_array(o.out, e.category);
    }
    if !e.kind_type.is_empty() {
        o.key("type");
        str_array(o.out, e.kind_type);
    }
    o.str("action", e.action);
    o.opt_str("outcome", e.outcome);
    o.str("dataset", e.dataset);
    o.time("created", &e.created);
    o.opt_u64("repeat_count", e.repeat_count);
    o.close();
}

fn identity(out: &mut Vec<u8>, i: &Identity) {
    let mut o = Object::open(out);
    o.raw("agent", i.agent.json());
    o.opt_serde("task", i.task.as_ref());
    o.key("attribution");
    attribution(o.out, &i.attribution);
    if !i.delegation.is_empty() {
        o.serde("delegation", &i.delegation);
    }
    o.close();
}

fn attribution(out: &mut Vec<u8>, a: &AttributionInfo) {
    let mut o = Object::open(out);
    o.str("method", a.method);
    o.str("trust", a.trust);
    o.flag("inherited", a.inherited);
    o.close();
}

fn process(out: &mut Vec<u8>, p: &Process) {
    let mut o = Object::open(out);
    o.u64("pid", p.pid.into());
    o.str("entity_id", &p.entity_id);
    o.opt_id_number("thread", p.thread.as_ref().map(|t| t.id));
    o.opt_str("name", p.name.as_deref());
    o.opt_str("executable", p.executable.as_deref());
    o.opt_str("exec_path", p.exec_path.as_deref());
    if let Some(args) = &p.args {
        o.key("args");
        str_array(o.out, args);
    }
    o.opt_u64("args_count", p.args_count.map(u64::from));
    o.flag("args_truncated", p.args_truncated);
    o.opt_str("command_line", p.command_line.as_deref());
    if let Some(t) = &p.start {
        o.time("start", t);
    }
    if let Some(t) = &p.end {
        o.time("end", t);
    }
    if let Some(parent) = &p.parent {
        o.key("parent");
        parent_block(o.out, parent);
    }
    o.opt_id("user", p.user.as_ref());
    o.opt_id("group", p.group.as_ref());
    o.opt_id("real_user", p.real_user.as_ref());
    o.opt_id("real_group", p.real_group.as_ref());
    o.opt_id("login_user", p.login_user.as_ref());
    o.opt_u64("session_id", p.session_id.map(u64::from));
    o.opt_u64("exit_code", p.exit_code.map(u64::from));
    o.opt_serde("exit_signal", p.exit_signal.as_ref());
    o.opt_id_number("cgroup", p.cgroup.as_ref().map(|c| c.id));
    if let Some(ns) = &p.namespaces {
        o.key("namespaces");
        let mut n = Object::open(o.out);
        n.u64("pid", ns.pid.into());
        n.u64("mnt", ns.mnt.into());
        n.close();
    }
    if !p.hex.is_empty() {
        o.serde("hex", &p.hex);
    }
    o.close();
}

fn parent_block(out: &mut Vec<u8>, p: &Parent) {
    let mut o = Object::open(out);
    o.u64("pid", p.pid.into());
    o.str("entity_id", &p.entity_id);
    o.opt_id_number("thread", p.thread.as_ref().map(|t| t.id));
    o.close();
}

fn file(out: &mut Vec<u8>, f: &File) {
    let mut o = Object::open(out);
    o.str("path", &f.path);
    o.opt_str("name", f.name.as_deref());
    o.opt_str("directory", f.directory.as_deref());
    o.opt_str("target_path", f.target_path.as_deref());
    o.opt_str("destination_path", f.destination_path.as_deref());
    o.opt_str("class", f.class.as_deref());
    o.opt_str("inode", f.inode.as_deref());
    o.opt_str("mode", f.mode.as_deref());
    o.opt_str("uid", f.uid.as_deref());
    o.opt_str("gid", f.gid.as_deref());
    o.opt_u64("size", f.size);
    if let Some(fd) = f.fd {
        o.i64("fd", fd.into());
    }
    if let Some(open) = &f.open {
        o.key("open");
        open_block(o.out, open);
    }
    o.flag("path_truncated", f.path_truncated);
    o.opt_serde("hex", f.hex.as_ref());
    o.close();
}

fn open_block(out: &mut Vec<u8>, open: &OpenInfo) {
    let mut o = Object::open(out);
    o.str("access", open.access);
    o.key("flags");
    str_array(o.out, &open.flags);
    o.str("raw", &open.raw);
    o.close();
}

fn endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    let mut o = Object::open(out);
    o.opt_str("ip", e.ip.as_deref());
    o.opt_u64("port", e.port.map(u64::from));
    o.opt_str("address", e.address.as_deref());
    o.opt_str("domain", e.domain.as_deref());
    o.close();
}

fn network(out: &mut Vec<u8>, n: &Network) {
    let mut o = Object::open(out);
    o.opt_str("transport", n.transport);
    o.opt_str("type", n.r#type);
    o.opt_str("iana_number", n.iana_number.as_deref());
    o.opt_str("direction", n.direction);
    o.opt_u64("bytes", n.bytes);
    o.key("socket");
    let mut s = Object::open(o.out);
    s.str("family", &n.socket.family);
    s.str("type", &n.socket.r#type);
    s.opt_u64("protocol", n.socket.protocol.map(u64::from));
    s.close();
    o.opt_str("socket_id", n.socket_id.as_deref());
    o.opt_str("connect_state", n.connect_state);
    o.opt_u64("backlog", n.backlog.map(u64::from));
    o.opt_u64("messages", n.messages);
    o.close();
}

fn syscall(out: &mut Vec<u8>, s: &Syscall) {
    let mut o = Object::open(out);
    o.str("name", s.name);
    o.i64("return", s.ret);
    o.close();
}

fn error(out: &mut Vec<u8>, e: &ErrorInfo) {
    let mut o = Object::open(out);
    o.str("code", &e.code);
    o.str("message", &e.message);
    o.close();
}

fn sensor(out: &mut Vec<u8>, s: &SensorBlock) {
    let mut o = Object::open(out);
    o.str("instance_id", &s.instance_id);
    o.str("version", s.version);
    o.opt_serde("lifecycle", s.lifecycle.as_ref());
    o.close();
}

/// A JSON object being written: separators between members, keys as given (our own field
/// names: plain ASCII that needs no escaping).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, name: &str) {
        debug_assert!(
            name.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        );
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        string(self.out, value);
    }

    /// A timestamp: digits and separators only, nothing to escape.
    fn time(&mut self, name: &str, t: &Timestamp) {
        self.key(name);
        self.out.push(b'"');
        self.out.extend_from_slice(t.as_str().as_bytes());
        self.out.push(b'"');
    }

    fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(name, v);
        }
    }

    fn u64(&mut self, name: &str, value: u64) {
        self.key(name);
        unsigned(self.out, value);
    }

    fn opt_u64(&mut self, name: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.u64(name, v);
        }
    }

    fn i64(&mut self, name: &str, value: i64) {
        self.key(name);
        if value < 0 {
            self.out.push(b'-');
        }
        unsigned(self.out, value.unsigned_abs());
    }

    /// A `bool` that is left out when false.
    fn flag(&mut self, name: &str, value: bool) {
        if value {
            self.key(name);
            self.out.extend_from_slice(b"true");
        }
    }

    /// An ECS `{"id":"..."}` object.
    fn opt_id(&mut self, name: &str, value: Option<&Id>) {
        if let Some(id) = value {
            self.key(name);
            self.out.extend_from_slice(b"{\"id\":");
            string(self.out, &id.id);
            self.out.push(b'}');
        }
    }

    /// An `{"id":N}` object (thread, cgroup).
    fn opt_id_number(&mut self, name: &str, value: Option<impl Into<u64>>) {
        if let Some(id) = value {
            self.key(name);
            self.out.extend_from_slice(b"{\"id\":");
            unsigned(self.out, id.into());
            self.out.push(b'}');
        }
    }

    fn raw(&mut self, name: &str, json: &str) {
        self.key(name);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn serde<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.key(name);
        serde_json::to_writer(&mut *self.out, value).expect("records serialise to memory");
    }

    fn opt_serde<T: Serialize>(&mut self, name: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.serde(name, v);
        }
    }
}

fn str_array<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s.as_ref());
    }
    out.push(b']');
}

pub fn unsigned(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Byte by byte: a copy call for a few digits cost more than the digits.
    for &d in &digits[i..] {
        out.push(d);
    }
}

/// A JSON string, escaped as serde_json escapes: `"` and `\`, the short forms `\b \t \n \f
/// \r`, other control characters as `\u00XX`; everything else (all of UTF-8, DEL) as is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut clean = 0;
    loop {
        let run = clean_prefix(&bytes[clean..]);
        let end = clean + run;
        if end == bytes.len() {
            out.extend_from_slice(&bytes[clean..]);
            break;
        }
        out.extend_from_slice(&bytes[clean..end]);
        escape(out, bytes[end]);
        clean = end + 1;
    }
    out.push(b'"');
}

/// How many bytes from the start need no escaping: eight at a time while none of them is
/// a control character, `"` or `\`.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // Per byte, high bit set where: byte < 0x20, byte == '"', byte == '\' (exact, as a
        // whole: a borrow only ever follows a byte that matched).
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        if (control | quote | backslash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..].iter().take_while(|&&b| !needs_escape(b)).count()
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        b'\t' => out.extend_from_slice(b"\\t"),
        b'\n' => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\r' => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::{
        enrich::host::{HostInfo, HostOs},
        record::rendered::Rendered,
        record::*,
    };

    const HOSTILE: &str = "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é\u{fffd}\u{2028}{\"forged\":1}";

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn bare() -> Record {
        Record::new(
            Timestamp::of(1_796_138_542_000_000_001),
            EventMeta {
                kind: "event",
                category: &[],
                kind_type: &[],
                action: "checkpoint",
                outcome: None,
                repeat_count: None,
                dataset: "agent_sensor.sensor",
                created: Timestamp::of(1_796_138_542_500_000_000),
            },
            Arc::new(Rendered::new(HostInfo {
                name: s(HOSTILE),
                id: None,
                boot_id: s("b"),
                architecture: "x86_64",
                os: HostOs {
                    kernel: s("6.1"),
                    kind: "linux",
                },
            })),
            SensorBlock {
                instance_id: Arc::from("run-1"),
                version: "0.1.0",
                lifecycle: None,
            },
        )
    }

    /// Every field the writer handles itself set, with hostile text wherever text goes.
    fn full() -> Record {
        let mut r = bare();
        r.event = EventMeta {
            kind: "event",
            category: &["file", "x"],
            kind_type: &["change"],
            action: "rename",
            outcome: Some("failure"),
            repeat_count: Some(u64::MAX),
            dataset: "agent_sensor.file",
            created: Timestamp::of(-1),
        };
        r.identity = Some(Identity {
            agent: Arc::new(Rendered::new(AgentInfo {
                id: s(HOSTILE),
                spiffe_id: Some(s("spiffe://x")),
                name: None,
                purpose: Some(s(HOSTILE)),
                team: None,
                data_sensitivity: None,
                owners: Owners {
                    business: Some(s("b")),
                    technical: None,
                },
                allowed_tasks: vec![s("t1"), s(HOSTILE)],
            })),
            task: Some(TaskInfo {
                id: s(HOSTILE),
                session: Some(s("s")),
            }),
            attribution: AttributionInfo {
                method: "cgroup",
                trust: "strong",
                inherited: true,
            },
            delegation: Arc::from([Hop {
                from: s("a"),
                to: s(HOSTILE),
                process: HopProcess {
                    pid: 7,
                    entity_id: s("e7"),
                },
            }]),
        });
        r.process = Some(ProcessBlock::from(Process {
            pid: u32::MAX,
            entity_id: Arc::from(HOSTILE),
            thread: Some(Thread { id: 0 }),
            name: Some(s(HOSTILE)),
            executable: Some(s("/bin/x")),
            exec_path: Some(s("x")),
            args: Some(vec![s(""), s(HOSTILE), s("0123456789abcdef\"")]),
            args_count: Some(3),
            args_truncated: true,
            command_line: Some(s(HOSTILE)),
            start: Some(Timestamp::of(0)),
            end: Some(Timestamp::of(1)),
            parent: Some(Parent {
                pid: 1,
                entity_id: Arc::from("p"),
                thread: Some(Thread { id: 2 }),
            }),
            user: Some(Id::of(0)),
            group: Some(Id::of(1)),
            real_user: Some(Id { id: s(HOSTILE) }),
            real_group: Some(Id::of(3)),
            login_user: Some(Id::of(4)),
            session_id: Some(5),
            exit_code: Some(255),
            exit_signal: Some(Signal {
                number: 9,
                name: "SIGKILL",
                core_dumped: true,
            }),
            cgroup: Some(Cgroup { id: u64::MAX }),
            namespaces: Some(Namespaces { pid: 1, mnt: 2 }),
            hex: RawBytes {
                name: Some(s("ff")),
                executable: Some(s("fe")),
                exec_path: Some(s("fd")),
                args: Some(vec![None, Some(s("00"))]),
            },
        }));
        r.container = Some(Arc::new(ContainerInfo {
            id: s("c"),
            runtime: "containerd",
            name: Some(s(HOSTILE)),
            image: Some(ContainerImage { name: s("i") }),
            labels: BTreeMap::from([(s(HOSTILE), s(HOSTILE))]),
        }));
        r.cgroup = Some(CgroupCreated {
            id: 9,
            path: s(HOSTILE),
        });
        r.user = Some(Id::of(1000));
        r.file = Some(File {
            path: s(HOSTILE),
            name: Some(s("n")),
            directory: Some(s("/d")),
            target_path: Some(s(HOSTILE)),
            destination_path: Some(s("/e")),
            class: Some(s("ssh_key")),
            inode: Some(s("12")),
            mode: Some(s("0644")),
            uid: Some(s("1")),
            gid: Some(s("2")),
            size: Some(0),
            fd: Some(-100),
            open: Some(OpenInfo {
                access: "read",
                flags: vec!["create", "cloexec"],
                raw: s("0o2000000"),
            }),
            path_truncated: true,
            hex: Some(FileHex {
                path: Some(s("ff")),
                target_path: Some(s("fe")),
                destination_path: Some(s("fd")),
            }),
        });
        r.source = Some(Endpoint {
            ip: Some("10.0.0.1".into()),
            port: Some(u16::MAX),
            address: Some(HOSTILE.into()),
            domain: Some(s(HOSTILE)),
        });
        r.destination = Some(Endpoint {
            ip: Some("::1".into()),
            port: Some(0),
            address: Some("/run/x.sock".into()),
            domain: Some(s("example.org")),
        });
        r.network = Some(Network {
            transport: Some("tcp"),
            r#type: Some("ipv4"),
            iana_number: Some("6".into()),
            direction: Some("egress"),
            bytes: Some(12),
            socket: SocketInfo {
                family: "inet".into(),
                r#type: s(HOSTILE).into(),
                protocol: Some(6),
            },
            socket_id: Some(s("ab")),
            connect_state: Some("in_progress"),
            backlog: Some(128),
            messages: Some(1),
        });
        r.dns = Some(Dns {
            r#type: "answer",
            id: 1,
            question: Some(DnsQuestion {
                name: s(HOSTILE),
                r#type: s("A"),
            }),
            ..Dns::default()
        });
        r.syscall = Some(Syscall {
            name: "renameat2",
            ret: i64::MIN,
        });
        r.error = Some(ErrorInfo {
            code: s("ENOENT"),
            message: s(HOSTILE),
        });
        r.gap = Some(Gap {
            source: "output",
            lost: 3,
            by_kind: BTreeMap::from([("open", 3)]),
            error: Some("ENOSPC"),
            start: Some(s("t1")),
            end: None,
        });
        r.checkpoint = Some(Checkpoint {
            covers_sequence: 1,
            covers_hash: s("h"),
            signature: s("s"),
            public_key: s("k"),
        });
        r.sensor.lifecycle = Some(Lifecycle {
            reason: Some(s(HOSTILE)),
            records_written: Some(1),
            ..Lifecycle::default()
        });
        r
    }

    fn written(r: &Record) -> String {
        let mut out = Vec::new();
        write(&mut out, r);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn writes_what_serde_writes() {
        for r in [bare(), full()] {
            assert_eq!(written(&r), serde_json::to_string(&r).unwrap());
        }
        // The other side of every optional block and flag.
        let mut r = full();
        let Some(ProcessBlock::Own(p)) = r.process.as_mut() else {
            unreachable!("built above")
        };
        p.args_truncated = false;
        p.thread = None;
        p.parent.as_mut().unwrap().thread = None;
        p.hex = RawBytes::default();
        r.file.as_mut().unwrap().fd = Some(3);
        r.identity.as_mut().unwrap().attribution.inherited = false;
        r.identity.as_mut().unwrap().delegation = Arc::from([]);
        r.syscall.as_mut().unwrap().ret = i64::MAX;
        assert_eq!(written(&r), serde_json::to_string(&r).unwrap());
    }

    #[test]
    fn a_shared_process_block_is_written_as_its_own_would_be() {
        let mut r = full();
        let own = written(&r);
        let Some(ProcessBlock::Own(p)) = r.process.take() else {
            unreachable!("built above")
        };
        r.process = Some(ProcessBlock::Shared(Arc::new(Rendered::new(*p))));
        assert_eq!(written(&r), own);
    }

    #[test]
    fn escapes_every_byte_as_serde_does() {
        let mut all = String::new();
        for c in (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '\u{fffd}', '\u{10ffff}'])
        {
            all.push(c);
        }
        // Every length around the eight-byte scan, an escape at every position in it.
        let mut samples = vec![all.clone()];
        for len in 0..20 {
            for at in 0..=len {
                for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "é"] {
                    let mut t = "x".repeat(len);
                    t.insert_str(at, special);
                    samples.push(t);
                }
            }
        }
        for t in samples {
            let mut out = Vec::new();
            string(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
    }

    /// The property paths (`file.open.flags`) a JSON Schema allows, following `$ref`s and
    /// `anyOf`/`oneOf`; maps (`additionalProperties`) end a path.
    fn schema_paths(
        schema: &serde_json::Value,
        node: &serde_json::Value,
        path: &str,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
            let name = r.rsplit('/').next().unwrap();
            schema_paths(schema, &schema["$defs"][name], path, out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for alt in node
                .get(key)
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                schema_paths(schema, alt, path, out);
            }
        }
        if let Some(items) = node.get("items") {
            schema_paths(schema, items, path, out);
        }
        for (name, sub) in node
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            let sub_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.insert(sub_path.clone());
            schema_paths(schema, sub, &sub_path, out);
        }
    }

    /// The property paths present in a serialised record.
    fn value_paths(
        v: &serde_json::Value,
        path: &str,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                for (name, sub) in m {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    out.insert(p.clone());
                    value_paths(sub, &p, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    value_paths(item, path, out);
                }
            }
            _ => {}
        }
    }

    /// The writer cannot drift from the serde form: `writes_what_serde_writes` compares them on
    /// `full()`, and this test fails when a record type gains a field (the schema is derived from
    /// the types) that `full()` does not set, in any block the writer writes itself.
    #[test]
    fn full_sets_every_field_the_writer_writes_itself() {
        let schema = crate::record::schema::record_schema();
        let mut allowed = std::collections::BTreeSet::new();
        schema_paths(&schema, &schema, "", &mut allowed);
        let mut present = std::collections::BTreeSet::new();
        value_paths(&serde_json::to_value(full()).unwrap(), "", &mut present);
        // Blocks that go through serde_json whole: the same bytes by construction.
        const BY_SERDE: &[&str] = &[
            "host",
            "container",
            "orchestrator",
            "cgroup",
            "dns",
            "gap",
            "checkpoint",
            "registration",
            "annotation",
            "rotation",
            "chain",
            "identity.task",
            "identity.delegation",
            "identity.agent",
            "sensor.lifecycle",
        ];
        let missing: Vec<&String> = allowed
            .iter()
            .filter(|p| !present.contains(*p))
            .filter(|p| {
                !BY_SERDE
                    .iter()
                    .any(|b| *p == b || p.starts_with(&format!("{b}.")))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "fields the hand-written writer may not handle: set them in full() (and write \
             them in record_json.rs): {missing:?}"
        );
    }
}
