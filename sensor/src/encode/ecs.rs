//! Writes a [`Record`] as one JSON object, byte for byte what `serde_json` writes for it,
//! straight into the output buffer: keys are literals, strings are escaped by a scan that
//! skips eight clean bytes at a time, and numbers need no `core::fmt`. The hot blocks
//! (event, identity, process, file, network) are written here; rare ones (gap, checkpoint,
//! registration, DNS, containers, ...) go through `serde_json`, which writes the same bytes
//! either way. The serde derive on the record types stays the contract: the schema comes
//! from it, OCSF maps through it, and the tests hold this writer to it.
use serde::Serialize;

use crate::record::time::Timestamp;
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
    o.opt_serde("retention", record.retention.as_ref());
    o.opt_serde("alert", record.alert.as_deref());
    o.opt_serde("policy", record.policy.as_ref());
    o.opt_serde("exception", record.exception.as_ref());
    o.opt_serde("llm", record.llm.as_deref());
    o.opt_serde("tls_capture", record.tls_capture.as_ref());
    o.opt_serde("mcp", record.mcp.as_deref());
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
    o.opt_str("working_directory", p.working_directory.as_deref());
    o.flag("working_directory_truncated", p.working_directory_truncated);
    o.flag("policy_killed", p.policy_killed);
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
    o.flag("policy_killed", f.policy_killed);
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

/// Appends `v` in decimal (a JSON number).
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

/// How many bytes from the start need no escaping: sixteen at a time with SSE2 (part of
/// every x86-64), then eight at a time.
#[cfg(target_arch = "x86_64")]
fn clean_prefix(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut i = 0;
    while i + 16 <= bytes.len() {
        // SAFETY: SSE2 is in x86-64's baseline; the unaligned load reads bytes[i..i + 16],
        // inside the slice.
        let mask = unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
            // Per byte: at least 0x20 (unsigned) where max(v, 0x20) == v.
            let printable = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x20)), v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            !_mm_movemask_epi8(printable) & 0xffff
                | _mm_movemask_epi8(_mm_or_si128(quote, backslash))
        };
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    i + clean_prefix_by_eight(&bytes[i..])
}

#[cfg(not(target_arch = "x86_64"))]
fn clean_prefix(bytes: &[u8]) -> usize {
    clean_prefix_by_eight(bytes)
}

/// How many bytes from the start need no escaping: eight at a time while none of them is
/// a control character, `"` or `\`.
fn clean_prefix_by_eight(bytes: &[u8]) -> usize {
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
    use std::{
        collections::{BTreeMap, BTreeSet},
        sync::Arc,
    };

    use super::*;
    use crate::{
        record::host::{HostInfo, HostOs},
        record::policy::{DecidedAction, ExceptionRef, PolicyDecision, PolicyException},
        record::registration::{Annotation, RegistrationEvent},
        record::rendered::Rendered,
        record::trail::{LastRecord, Rotation},
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
            working_directory: Some(s(HOSTILE)),
            working_directory_truncated: true,
            policy_killed: true,
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
                working_directory: Some(s("fc")),
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
            policy_killed: true,
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
        r.dns = Some(Box::new(Dns {
            r#type: "answer",
            id: 1,
            question: Some(DnsQuestion {
                name: s(HOSTILE),
                r#type: s("A"),
            }),
            ..Dns::default()
        }));
        r.syscall = Some(Syscall {
            name: "renameat2",
            ret: i64::MIN,
        });
        r.error = Some(ErrorInfo {
            code: s("ENOENT"),
            message: s(HOSTILE),
        });
        r.gap = Some(Box::new(Gap {
            source: "output",
            lost: 3,
            by_kind: BTreeMap::from([("open", 3)]),
            error: Some("ENOSPC"),
            start: Some(s("t1")),
            end: None,
            sink: None,
        }));
        r.checkpoint = Some(Box::new(Checkpoint {
            covers_sequence: 1,
            covers_hash: s("h"),
            signature: s("s"),
            public_key: s("k"),
        }));
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
        p.policy_killed = false;
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
        // Every length around the sixteen- and eight-byte scans, an escape at every position
        // in it.
        let mut samples = vec![all.clone()];
        for len in 0..40 {
            for at in 0..=len {
                for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "é", "\u{7f}"] {
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
    /// `anyOf`/`oneOf`; maps (`additionalProperties`) end a path. Each with whether it may be
    /// left out (not `required` by the object around it).
    fn schema_paths(
        schema: &serde_json::Value,
        node: &serde_json::Value,
        path: &str,
        out: &mut BTreeMap<String, bool>,
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
        let required = |name: &str| {
            node.get("required")
                .and_then(|r| r.as_array())
                .is_some_and(|r| r.iter().any(|n| n == name))
        };
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
            // Required where any schema of it says so (the per-kind conditions repeat some).
            *out.entry(sub_path.clone()).or_insert(true) &= !required(name);
            schema_paths(schema, sub, &sub_path, out);
        }
    }

    /// The property paths present in a serialised record.
    fn value_paths(v: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
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

    /// Blocks the writer hands to serde_json whole: the same bytes by construction.
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
        "retention",
        "alert",
        "policy",
        "exception",
        "llm",
        "tls_capture",
        "mcp",
        "identity.task",
        "identity.delegation",
        "identity.agent",
        "sensor.lifecycle",
    ];

    /// The record's fields (from the schema, which is derived from the types) that the writer
    /// writes itself, each block it hands to serde among them but not the fields inside those,
    /// with whether each may be left out. `chain` is sealed on later, not written here.
    fn writer_fields() -> BTreeMap<String, bool> {
        let schema = crate::record::schema::record_schema();
        let mut fields = BTreeMap::new();
        schema_paths(&schema, &schema, "", &mut fields);
        fields.retain(|p, _| {
            p != "chain"
                && !p.starts_with("chain.")
                && !BY_SERDE.iter().any(|b| p.starts_with(&format!("{b}.")))
        });
        fields
    }

    /// The writer cannot drift from the serde form: `writes_what_serde_writes` compares them on
    /// `full()`, and this test fails when a record type gains a field (the schema is derived from
    /// the types) that `full()` does not set, in any block the writer writes itself.
    #[test]
    fn full_sets_every_field_the_writer_writes_itself() {
        let mut present = BTreeSet::new();
        value_paths(&serde_json::to_value(full()).unwrap(), "", &mut present);
        let missing: Vec<String> = writer_fields()
            .into_keys()
            .filter(|p| !present.contains(p))
            .filter(|p| !BY_SERDE.contains(&p.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "fields the hand-written writer may not handle: set them in full() (and write \
             them in encode/ecs.rs): {missing:?}"
        );
    }

    /// How many records the generated tests write (a fixed seed: the same ones every run).
    const GENERATED: usize = 1500;

    fn generated() -> impl Iterator<Item = Record> {
        let mut g = Gen(0x5eed_ec5e_0000_0012);
        (0..GENERATED).map(move |_| g.record())
    }

    /// The writer cannot drift from the serde form, whatever a record holds: byte for byte the
    /// same on thousands of generated records, every optional block and field set in some and
    /// left out in others (`generated_records_cover_every_field_the_writer_writes` checks that).
    #[test]
    fn generated_records_are_written_as_serde_writes_them() {
        for (n, r) in generated().enumerate() {
            let ours = written(&r);
            let serde = serde_json::to_string(&r).unwrap();
            if ours != serde {
                let at = ours
                    .bytes()
                    .zip(serde.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(ours.len().min(serde.len()));
                let from = at.saturating_sub(60);
                panic!(
                    "generated record {n}: the writer and serde part at byte {at}:\n  \
                     writer: {:?}\n  serde:  {:?}",
                    ours.get(from..(at + 60).min(ours.len())).unwrap_or(&ours),
                    serde
                        .get(from..(at + 60).min(serde.len()))
                        .unwrap_or(&serde),
                );
            }
        }
    }

    /// The generator is complete: every field of the schema the writer writes itself (and each
    /// block it hands to serde) is present in some generated record, and each optional one
    /// absent from some record that has the block around it.
    #[test]
    fn generated_records_cover_every_field_the_writer_writes() {
        let fields = writer_fields();
        let mut present = BTreeSet::new();
        let mut absent = BTreeSet::new();
        for r in generated() {
            let mut here = BTreeSet::new();
            value_paths(&serde_json::to_value(&r).unwrap(), "", &mut here);
            for path in fields.keys() {
                let parent = path.rsplit_once('.').map(|(p, _)| p);
                if here.contains(path) {
                    present.insert(path.clone());
                } else if parent.is_none_or(|p| here.contains(p)) {
                    absent.insert(path.clone());
                }
            }
        }
        let never_set: Vec<&String> = fields.keys().filter(|p| !present.contains(*p)).collect();
        let never_left_out: Vec<&String> = fields
            .iter()
            .filter(|(p, optional)| **optional && !absent.contains(*p))
            .map(|(p, _)| p)
            .collect();
        assert!(
            never_set.is_empty() && never_left_out.is_empty(),
            "the record generator (Gen in encode/ecs.rs) never sets {never_set:?} and never \
             leaves out {never_left_out:?}: generate the new fields, and write them in \
             encode/ecs.rs"
        );
    }

    /// Hostile text where kernel and operator text goes: quotes, backslashes, newlines and
    /// carriage returns, control characters, invalid UTF-8 (rendered, with its exact bytes
    /// in `hex`), U+2028/U+2029, an attempt to forge a field, and huge strings. The
    /// hot-path writer and serde both keep each record on one line, as one object with no
    /// forged field, every string read back exactly as it went in, and they agree byte for
    /// byte.
    #[test]
    fn hostile_strings_cannot_break_the_line_in_either_writer() {
        let bytes: &[u8] = b"a\"b\\c\n{\"forged\":1}\r\x00\x1b\x7f\xff\xfe\xc3(\xe2\x80\xa8";
        let huge = format!("{}\n{HOSTILE}", "x\u{2029}\"".repeat(1 << 16));
        let mut r = full();
        let Some(ProcessBlock::Own(p)) = r.process.as_mut() else {
            unreachable!("built above")
        };
        p.set_name(bytes);
        p.set_executable(bytes);
        p.set_args(&[bytes.to_vec(), b"\xff".to_vec(), huge.as_bytes().to_vec()]);
        let f = r.file.as_mut().unwrap();
        f.path = huge.clone();
        f.name = Some(crate::record::text(bytes).0);
        r.error.as_mut().unwrap().message = huge.clone();
        let process = serde_json::to_value(&r.process).unwrap();
        assert_eq!(
            process["hex"]["name"],
            hex(bytes),
            "the exact bytes are kept"
        );
        assert_eq!(process["name"], crate::record::text(bytes).0);

        let serde = serde_json::to_string(&r).unwrap();
        let ours = written(&r);
        for (who, line) in [("writer", &ours), ("serde", &serde)] {
            assert!(
                !line.contains(['\n', '\r']),
                "{who}: a raw line break in the line"
            );
            assert!(!line.bytes().any(|b| b < 0x20), "{who}: a raw control byte");
            let back: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
            let expected: Vec<String> = serde_json::to_value(&r)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(keys, expected.iter().collect::<Vec<_>>(), "{who}");
            assert!(back.get("forged").is_none(), "{who}");
            assert_eq!(back["process"]["name"], process["name"], "{who}");
            assert_eq!(back["process"]["args"], process["args"], "{who}");
            assert_eq!(back["process"]["args"][2], huge, "{who}");
            assert_eq!(back["file"]["path"], huge, "{who}");
            assert_eq!(back["error"]["message"], huge, "{who}");
            assert_eq!(back["host"]["name"], HOSTILE, "{who}");
            assert_eq!(back["identity"]["agent"]["id"], HOSTILE, "{who}");
        }
        assert!(ours == serde, "the writer and serde differ on hostile text");
    }

    /// Text fragments a generated string is made of: plain, every kind of escape, what the
    /// eight-byte scan must stop at, multi-byte UTF-8 (U+2028 and U+2029 included, which
    /// JSON leaves as they are), and an attempt to close the string and forge a field.
    const FRAGMENTS: &[&str] = &[
        "",
        "a",
        "/usr/bin/python3",
        "0123456789abcdef",
        " ",
        "\"",
        "\\",
        "\n",
        "\r",
        "\t",
        "\u{8}",
        "\u{c}",
        "\u{0}",
        "\u{1b}",
        "\u{1f}",
        "\u{7f}",
        "é",
        "\u{fffd}",
        "\u{2028}",
        "\u{2029}",
        "\u{10ffff}",
        "😀",
        "\",\"forged\":1,\"x\":\"",
        "{\"forged\":1}",
    ];

    /// `&'static str` fields (actions, methods, names the sensor chooses): their usual values
    /// and hostile ones, so the writer's handling of them is tested too.
    const STATICS: &[&str] = &["", "exec", "tcp", "strong", HOSTILE, "\u{2028}\"\\\n"];

    /// A fixed-seed generator of records (SplitMix64): each optional field of each block set
    /// or left out at random, numbers at their edges or anywhere, text from [`FRAGMENTS`] or
    /// kernel bytes rendered as the pipeline renders them (invalid UTF-8 replaced). Every
    /// struct is built by a literal naming all its fields, so a new field does not compile
    /// until it is generated here too; `generated_records_cover_every_field_the_writer_writes`
    /// checks that it is set in some records and left out in others.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bool(&mut self) -> bool {
            self.next() & 1 == 1
        }

        fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
            self.bool().then(|| f(self))
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }

        fn u64(&mut self) -> u64 {
            match self.below(4) {
                0 => self.pick(&[0, 1, 9, 10, 99, 100, u64::from(u32::MAX), u64::MAX]),
                1 => self.next(),
                _ => self.next() % 100_000,
            }
        }

        fn u32(&mut self) -> u32 {
            self.u64() as u32
        }

        fn u16(&mut self) -> u16 {
            self.u64() as u16
        }

        fn u8(&mut self) -> u8 {
            self.u64() as u8
        }

        fn i64(&mut self) -> i64 {
            match self.below(3) {
                0 => self.pick(&[i64::MIN, -1, 0, 1, i64::MAX]),
                1 => self.next() as i64,
                _ => -(self.below(200) as i64),
            }
        }

        fn time(&mut self) -> Timestamp {
            Timestamp::of(match self.below(3) {
                0 => self.pick(&[-1, 0, 1, 1_796_138_542_000_000_001]),
                _ => i128::from(self.next() >> 8),
            })
        }

        fn text(&mut self) -> String {
            if self.below(8) == 0 {
                // Kernel bytes, invalid UTF-8 among them, rendered as records render them.
                let bytes: Vec<u8> = (0..self.below(24)).map(|_| self.next() as u8).collect();
                return crate::record::text(&bytes).0;
            }
            (0..self.below(5)).map(|_| self.pick(FRAGMENTS)).collect()
        }

        fn texts(&mut self) -> Vec<String> {
            (0..self.below(4)).map(|_| self.text()).collect()
        }

        fn opt_text(&mut self) -> Option<String> {
            self.opt(Self::text)
        }

        fn statics(&mut self) -> &'static [&'static str] {
            self.pick(&[
                &[][..],
                &["file"][..],
                &["network", "x"][..],
                &[HOSTILE][..],
            ])
        }

        fn id(&mut self) -> Id {
            if self.bool() {
                Id::of(self.u32())
            } else {
                Id { id: self.text() }
            }
        }

        fn labels(&mut self) -> BTreeMap<String, String> {
            (0..self.below(3))
                .map(|_| (self.text(), self.text()))
                .collect()
        }

        fn record(&mut self) -> Record {
            let mut r = Record::new(
                self.time(),
                EventMeta {
                    kind: self.pick(STATICS),
                    category: self.statics(),
                    kind_type: self.statics(),
                    action: self.pick(STATICS),
                    outcome: self.opt(|g| g.pick(STATICS)),
                    dataset: self.pick(STATICS),
                    created: self.time(),
                    repeat_count: self.opt(Self::u64),
                },
                Arc::new(Rendered::new(HostInfo {
                    name: self.text(),
                    id: self.opt_text(),
                    boot_id: self.text(),
                    architecture: self.pick(STATICS),
                    os: HostOs {
                        kernel: self.text(),
                        kind: self.pick(STATICS),
                    },
                })),
                SensorBlock {
                    instance_id: Arc::from(self.text()),
                    version: self.pick(STATICS),
                    lifecycle: self.opt(Self::lifecycle),
                },
            );
            // Every optional block, each set or not.
            r.identity = self.opt(Self::identity);
            r.process = self.opt(|g| {
                let p = g.process();
                if g.bool() {
                    ProcessBlock::from(p)
                } else {
                    ProcessBlock::Shared(Arc::new(Rendered::new(p)))
                }
            });
            r.container = self.opt(|g| {
                Arc::new(ContainerInfo {
                    id: g.text(),
                    runtime: g.pick(STATICS),
                    name: g.opt_text(),
                    image: g.opt(|g| ContainerImage { name: g.text() }),
                    labels: g.labels(),
                })
            });
            r.orchestrator = self.opt(|g| {
                Arc::new(Orchestrator {
                    r#type: g.pick(STATICS),
                    namespace: g.opt_text(),
                    resource: OrchestratorResource {
                        r#type: g.pick(STATICS),
                        name: g.opt_text(),
                        id: g.opt_text(),
                        labels: g.labels(),
                        annotations: g.labels(),
                    },
                    service_account: g.opt_text(),
                })
            });
            r.cgroup = self.opt(|g| CgroupCreated {
                id: g.u64(),
                path: g.text(),
            });
            r.user = self.opt(Self::id);
            r.file = self.opt(Self::file);
            r.source = self.opt(Self::endpoint);
            r.destination = self.opt(Self::endpoint);
            r.network = self.opt(Self::network);
            r.dns = self.opt(Self::dns).map(Box::new);
            r.syscall = self.opt(|g| Syscall {
                name: g.pick(STATICS),
                ret: g.i64(),
            });
            r.error = self.opt(|g| ErrorInfo {
                code: g.text(),
                message: g.text(),
            });
            r.gap = self
                .opt(|g| Gap {
                    source: g.pick(STATICS),
                    lost: g.u64(),
                    by_kind: (0..g.below(3))
                        .map(|_| (g.pick(STATICS), g.u64()))
                        .collect(),
                    error: g.opt(|g| g.pick(STATICS)),
                    start: g.opt_text(),
                    end: g.opt_text(),
                    sink: g.opt(|g| crate::record::SinkGap {
                        name: g.text(),
                        instance_id: g.opt_text(),
                        first_sequence: g.u64(),
                        last_sequence: g.u64(),
                    }),
                })
                .map(Box::new);
            r.checkpoint = self
                .opt(|g| Checkpoint {
                    covers_sequence: g.u64(),
                    covers_hash: g.text(),
                    signature: g.text(),
                    public_key: g.text(),
                })
                .map(Box::new);
            r.registration = self
                .opt(|g| RegistrationEvent {
                    op: g.pick(STATICS),
                    granted: g.bool(),
                    reason: g.opt_text(),
                    peer_pid: g.opt(|g| g.i64() as i32),
                    peer_uid: g.u32(),
                    peer_gid: g.u32(),
                    pid: g.opt(Self::u32),
                    agent: g.opt_text(),
                    task: g.opt_text(),
                    session: g.opt_text(),
                    overrode: g.opt_text(),
                })
                .map(Box::new);
            r.annotation = self
                .opt(|g| Annotation {
                    kind: g.text(),
                    author: g.text(),
                    text: g.text(),
                    subject: g.opt_text(),
                    peer_pid: g.opt(|g| g.i64() as i32),
                    peer_uid: g.u32(),
                    peer_gid: g.u32(),
                })
                .map(Box::new);
            r.rotation = self
                .opt(|g| Rotation {
                    reason: g.pick(STATICS),
                    file: g.text(),
                    next_file: g.text(),
                })
                .map(Box::new);
            r.retention = self
                .opt(|g| {
                    let record_ref = |g: &mut Self| crate::record::trail::RecordRef {
                        instance_id: g.text(),
                        sequence: g.u64(),
                        hash: g.text(),
                    };
                    crate::record::trail::Retention {
                        removed: vec![crate::record::trail::RemovedFile {
                            file: g.text(),
                            reason: g.pick(STATICS),
                            bytes: g.u64(),
                            first: g.opt(record_ref),
                            last: g.opt(record_ref),
                        }],
                        max_bytes: g.u64(),
                        max_age_ms: g.u64(),
                    }
                })
                .map(Box::new);
            r.alert = self.opt(|g| {
                Box::new(crate::record::alert::Alert {
                    rule: crate::record::alert::AlertRule {
                        id: g.opt_text(),
                        title: g.text(),
                        author: g.opt_text(),
                        ruleset: g.pick(STATICS),
                    },
                    severity: g.pick(STATICS),
                    tags: g.texts(),
                    message: g.text(),
                    trigger: crate::record::alert::Trigger {
                        sequence: vec![g.u64()],
                        action: g.pick(STATICS),
                    },
                })
            });
            r.policy = self
                .opt(|g| PolicyDecision {
                    agent: g.text(),
                    task: g.opt_text(),
                    rule: g.pick(STATICS),
                    version: g.text(),
                    mode: g.pick(STATICS),
                    outcome: g.pick(STATICS),
                    target: g.text(),
                    reason: g.text(),
                    action: DecidedAction {
                        name: g.pick(STATICS),
                        sequence: g.opt(Self::u64),
                        hash: g.opt_text(),
                    },
                    exception: g.opt(|g| ExceptionRef {
                        sequence: g.opt(Self::u64),
                        author: g.text(),
                        until: crate::record::time::Timestamp::of(g.i64().into()),
                    }),
                })
                .map(Box::new);
            r.exception = self
                .opt(|g| PolicyException {
                    agent: g.text(),
                    rule: g.text(),
                    author: g.text(),
                    reason: g.text(),
                    until: crate::record::time::Timestamp::of(g.i64().into()),
                    peer_pid: g.opt(|g| g.i64() as i32),
                    peer_uid: g.u32(),
                    peer_gid: g.u32(),
                })
                .map(Box::new);
            r.llm = self.opt(|g| Box::new(g.llm()));
            r.tls_capture = self.opt(|g| crate::record::llm::TlsNotCaptured { reason: g.text() });
            r.mcp = self.opt(|g| Box::new(g.mcp()));
            r
        }

        fn mcp(&mut self) -> crate::record::mcp::McpCall {
            use crate::record::mcp::{McpCall, McpError, McpServer};
            McpCall {
                method: self.text(),
                request_id: self.text(),
                transport: self.pick(STATICS),
                content_policy: self.pick(STATICS),
                server: McpServer {
                    pid: self.opt(Self::u32),
                    entity_id: self.opt_text(),
                    url: self.opt_text(),
                    name: self.opt_text(),
                    version: self.opt_text(),
                },
                session: self.opt_text(),
                http_status: self.opt(Self::u16),
                tool: self.opt_text(),
                arguments: self.opt(Self::content),
                result: self.opt(Self::content),
                is_error: self.opt(Self::bool),
                tools: (0..self.below(3)).map(|_| self.text()).collect(),
                protocol_version: self.opt_text(),
                error: self.opt(|g| McpError {
                    code: g.i64(),
                    message: g.content(),
                }),
                started: self.opt_text(),
                latency_ms: self.opt(|g| g.u64() as f64 / 7.0),
                request_bytes: self.u64(),
                response_bytes: self.opt(Self::u64),
                incomplete: self.bool(),
            }
        }

        fn content(&mut self) -> crate::record::llm::Content {
            crate::record::llm::Content {
                text: self.opt_text(),
                sha256: self.text(),
                length: self.u64(),
            }
        }

        fn llm(&mut self) -> crate::record::llm::LlmExchange {
            use crate::record::llm::{
                LlmExchange, LlmMessage, LlmRequest, LlmResponse, LlmUsage, ToolUse,
            };
            LlmExchange {
                provider: self.pick(STATICS),
                operation: self.opt(|g| g.pick(STATICS)),
                model: self.opt_text(),
                response_model: self.opt_text(),
                content_policy: self.pick(STATICS),
                connection: self.text(),
                request: LlmRequest {
                    method: self.text(),
                    host: self.opt_text(),
                    path: self.text(),
                    body_bytes: self.u64(),
                    body_sha256: self.text(),
                    truncated: self.bool(),
                    stream: self.bool(),
                    http_version: self.opt(|g| g.pick(STATICS)),
                },
                response: self.opt(|g| LlmResponse {
                    status: g.u16(),
                    body_bytes: g.u64(),
                    body_sha256: g.text(),
                    truncated: g.bool(),
                    stream: g.bool(),
                    finish_reason: g.opt_text(),
                    text: g.opt(Self::content),
                    tool_calls: (0..g.below(3))
                        .map(|_| ToolUse {
                            id: g.opt_text(),
                            name: g.text(),
                            arguments: g.content(),
                        })
                        .collect(),
                    error: g.opt(Self::content),
                }),
                prompt: (0..self.below(3))
                    .map(|_| LlmMessage {
                        role: self.text(),
                        content: self.content(),
                    })
                    .collect(),
                usage: self.opt(|g| LlmUsage {
                    input_tokens: g.opt(Self::u64),
                    output_tokens: g.opt(Self::u64),
                }),
                latency_ms: self.opt(|g| g.u64() as f64 / 7.0),
                incomplete: self.bool(),
                parse_error: self.opt_text(),
            }
        }

        fn lifecycle(&mut self) -> Lifecycle {
            Lifecycle {
                reason: self.opt_text(),
                all_processes: self.opt(Self::bool),
                programs: self.opt(|g| (0..g.below(3)).map(|_| g.pick(STATICS)).collect()),
                records_written: self.opt(Self::u64),
                kernel_lost: self.opt(Self::u64),
                decode_errors: self.opt(Self::u64),
                output_lost: self.opt(Self::u64),
                previous: self.opt(|g| LastRecord {
                    instance_id: g.text(),
                    sequence: g.u64(),
                    hash: g.text(),
                    file: g.text(),
                    torn_bytes: g.pick(&[0, 1, u64::MAX]),
                }),
            }
        }

        fn identity(&mut self) -> Identity {
            Identity {
                agent: Arc::new(Rendered::new(AgentInfo {
                    id: self.text(),
                    spiffe_id: self.opt_text(),
                    name: self.opt_text(),
                    purpose: self.opt_text(),
                    team: self.opt_text(),
                    data_sensitivity: self.opt_text(),
                    owners: Owners {
                        business: self.opt_text(),
                        technical: self.opt_text(),
                    },
                    allowed_tasks: self.texts(),
                })),
                task: self.opt(|g| TaskInfo {
                    id: g.text(),
                    session: g.opt_text(),
                }),
                attribution: AttributionInfo {
                    method: self.pick(STATICS),
                    trust: self.pick(STATICS),
                    inherited: self.bool(),
                },
                delegation: (0..self.below(3))
                    .map(|_| Hop {
                        from: self.text(),
                        to: self.text(),
                        process: HopProcess {
                            pid: self.u32(),
                            entity_id: self.text(),
                        },
                    })
                    .collect(),
            }
        }

        fn process(&mut self) -> Process {
            Process {
                pid: self.u32(),
                entity_id: Arc::from(self.text()),
                thread: self.opt(|g| Thread { id: g.u32() }),
                name: self.opt_text(),
                executable: self.opt_text(),
                exec_path: self.opt_text(),
                working_directory: self.opt_text(),
                working_directory_truncated: self.bool(),
                policy_killed: self.bool(),
                args: self.opt(Self::texts),
                args_count: self.opt(Self::u32),
                args_truncated: self.bool(),
                command_line: self.opt_text(),
                start: self.opt(Self::time),
                end: self.opt(Self::time),
                parent: self.opt(|g| Parent {
                    pid: g.u32(),
                    entity_id: Arc::from(g.text()),
                    thread: g.opt(|g| Thread { id: g.u32() }),
                }),
                user: self.opt(Self::id),
                group: self.opt(Self::id),
                real_user: self.opt(Self::id),
                real_group: self.opt(Self::id),
                login_user: self.opt(Self::id),
                session_id: self.opt(Self::u32),
                exit_code: self.opt(Self::u8),
                exit_signal: self.opt(|g| Signal {
                    number: g.u8(),
                    name: g.pick(STATICS),
                    core_dumped: g.bool(),
                }),
                cgroup: self.opt(|g| Cgroup { id: g.u64() }),
                namespaces: self.opt(|g| Namespaces {
                    pid: g.u32(),
                    mnt: g.u32(),
                }),
                hex: RawBytes {
                    name: self.opt_text(),
                    executable: self.opt_text(),
                    exec_path: self.opt_text(),
                    working_directory: self.opt_text(),
                    args: self.opt(|g| (0..g.below(3)).map(|_| g.opt_text()).collect()),
                },
            }
        }

        fn file(&mut self) -> File {
            File {
                path: self.text(),
                name: self.opt_text(),
                directory: self.opt_text(),
                target_path: self.opt_text(),
                destination_path: self.opt_text(),
                class: self.opt_text(),
                inode: self.opt_text(),
                mode: self.opt_text(),
                uid: self.opt_text(),
                gid: self.opt_text(),
                size: self.opt(Self::u64),
                fd: self.opt(|g| g.i64() as i32),
                open: self.opt(|g| OpenInfo {
                    access: g.pick(STATICS),
                    flags: (0..g.below(3)).map(|_| g.pick(STATICS)).collect(),
                    raw: g.text(),
                }),
                path_truncated: self.bool(),
                policy_killed: self.bool(),
                hex: self.opt(|g| FileHex {
                    path: g.opt_text(),
                    target_path: g.opt_text(),
                    destination_path: g.opt_text(),
                }),
            }
        }

        fn endpoint(&mut self) -> Endpoint {
            Endpoint {
                ip: self.opt(|g| Arc::from(g.text())),
                port: self.opt(Self::u16),
                address: self.opt(|g| Arc::from(g.text())),
                domain: self.opt_text(),
            }
        }

        fn network(&mut self) -> Network {
            Network {
                transport: self.opt(|g| g.pick(STATICS)),
                r#type: self.opt(|g| g.pick(STATICS)),
                iana_number: self.opt(|g| g.text().into()),
                direction: self.opt(|g| g.pick(STATICS)),
                bytes: self.opt(Self::u64),
                socket: SocketInfo {
                    family: self.text().into(),
                    r#type: self.pick(STATICS).into(),
                    protocol: self.opt(Self::u16),
                },
                socket_id: self.opt_text(),
                connect_state: self.opt(|g| g.pick(STATICS)),
                backlog: self.opt(Self::u32),
                messages: self.opt(Self::u64),
            }
        }

        fn dns(&mut self) -> Dns {
            Dns {
                r#type: self.pick(STATICS),
                id: self.u16(),
                question: self.opt(|g| DnsQuestion {
                    name: g.text(),
                    r#type: g.text(),
                }),
                response_code: self.opt_text(),
                answers: (0..self.below(3))
                    .map(|_| DnsAnswer {
                        name: self.text(),
                        r#type: self.text(),
                        ttl: self.u32(),
                        data: self.opt_text(),
                    })
                    .collect(),
                resolved_ip: self.texts(),
                incomplete: self.bool(),
            }
        }
    }
}
