//! The output records: one JSON object per line, ECS-style names, a schema version. This module
//! owns the shape of every record kind; the pipeline fills them in. Kernel-supplied strings are
//! raw bytes that may be hostile: they are rendered as UTF-8 (invalid bytes replaced), and
//! whenever a replacement happened the exact bytes are kept, hex-encoded, under `process.hex`, so
//! nothing is lost or forged. serde_json escapes quotes, newlines and control characters.
//!
//! Record types carry `#[serde_with::skip_serializing_none]`: an absent `Option` field is left
//! out of the line, and the schema has it optional; a field marked `#[serialize_always]` (and
//! every field of `registration`) is written as `null` instead.

pub mod host;
pub mod registration;
pub mod rendered;
pub mod schema;
pub mod time;
pub mod trail;
use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use serde::Serialize;

use crate::{record::host::HostInfo, record::rendered::Rendered, record::time::Timestamp};

/// Version of the record schema (see docs/schema.md); bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "0.1";

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Record {
    // First, with `sensor` and `identity`: what is the same on every record of a run (or of an
    // agent's process) leads the line, so the chain hashes those bytes once per run and agent,
    // not once per record (`evidence::Chain::seal_shared`).
    pub host: Arc<Rendered<HostInfo>>,
    pub sensor: SensorBlock,
    /// Which AI agent did it, and how sure the attribution is.
    pub identity: Option<Identity>,
    #[serde(rename = "@timestamp")]
    pub timestamp: Timestamp,
    pub schema_version: &'static str,
    pub event: EventMeta,
    #[schemars(with = "Option<Process>")]
    pub process: Option<ProcessBlock>,
    /// The container the process runs in (ECS `container.*`), from its cgroup and runtime.
    pub container: Option<Arc<ContainerInfo>>,
    /// The Kubernetes pod, when the container is one's (ECS `orchestrator.*`).
    pub orchestrator: Option<Arc<Orchestrator>>,
    /// A cgroup made while the sensor ran (`cgroup_created`).
    pub cgroup: Option<CgroupCreated>,
    /// The effective user of the process (ECS `user.*`).
    pub user: Option<Id>,
    pub file: Option<File>,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
    pub network: Option<Network>,
    pub dns: Option<Dns>,
    pub syscall: Option<Syscall>,
    pub error: Option<ErrorInfo>,
    pub gap: Option<Gap>,
    /// A signed checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// A request on the registration socket.
    pub registration: Option<crate::record::registration::RegistrationEvent>,
    /// An operator's annotation (`event.action: annotation`).
    pub annotation: Option<crate::record::registration::Annotation>,
    /// The output file this record closes, and the one that continues the trail.
    pub rotation: Option<crate::record::trail::Rotation>,
}

impl Record {
    /// The container and pod blocks of a record about a process in that container.
    pub fn set_container(&mut self, c: &ContainerBlocks) {
        self.container = Some(c.container.clone());
        self.orchestrator = c.orchestrator.clone();
    }

    /// A record of `event` with its envelope and every optional block absent.
    pub fn new(
        timestamp: Timestamp,
        event: EventMeta,
        host: Arc<Rendered<HostInfo>>,
        sensor: SensorBlock,
    ) -> Self {
        Self {
            host,
            sensor,
            identity: None,
            timestamp,
            schema_version: SCHEMA_VERSION,
            event,
            process: None,
            container: None,
            orchestrator: None,
            cgroup: None,
            user: None,
            file: None,
            source: None,
            destination: None,
            network: None,
            dns: None,
            syscall: None,
            error: None,
            gap: None,
            checkpoint: None,
            registration: None,
            annotation: None,
            rotation: None,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventMeta {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub category: &'static [&'static str],
    #[serde(rename = "type", skip_serializing_if = "<[_]>::is_empty")]
    pub kind_type: &'static [&'static str],
    pub action: &'static str,
    /// `success`, `failure` or `unknown` (the result is not known yet).
    pub outcome: Option<&'static str>,
    pub dataset: &'static str,
    /// When the sensor made the record (the event itself happened at `@timestamp`).
    pub created: Timestamp,
    /// With repeat suppression on: this record stands for this many identical occurrences
    /// since the first one was written (the record shows the latest of them).
    pub repeat_count: Option<u64>,
}

/// An ECS `{ "id": ... }` object (user, group).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct Id {
    pub id: String,
}

impl Id {
    pub fn of(id: u32) -> Self {
        Self {
            id: decimal(id.into()),
        }
    }
}

/// `n` in decimal, without `core::fmt` (ids are on every record).
pub fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    String::from_utf8_lossy(&digits[i..]).into_owned()
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Process {
    pub pid: u32,
    pub entity_id: Arc<str>,
    pub thread: Option<Thread>,
    pub name: Option<String>,
    pub executable: Option<String>,
    /// exec: the path the caller passed to execve when it differs from `executable` (relative,
    /// through a symlink, or a script whose interpreter is the executable).
    pub exec_path: Option<String>,
    pub args: Option<Vec<String>>,
    pub args_count: Option<u32>,
    /// argv was longer than the configured bound: `args` holds its beginning only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    pub command_line: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub parent: Option<Parent>,
    /// Effective ids.
    pub user: Option<Id>,
    pub group: Option<Id>,
    pub real_user: Option<Id>,
    pub real_group: Option<Id>,
    /// Audit login uid and session, where the kernel keeps them and they are set.
    pub login_user: Option<Id>,
    pub session_id: Option<u32>,
    pub exit_code: Option<u8>,
    pub exit_signal: Option<Signal>,
    pub cgroup: Option<Cgroup>,
    pub namespaces: Option<Namespaces>,
    /// Exact bytes of fields that were not valid UTF-8.
    #[serde(skip_serializing_if = "RawBytes::is_empty")]
    pub hex: RawBytes,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Thread {
    pub id: u32,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Parent {
    pub pid: u32,
    pub entity_id: Arc<str>,
    pub thread: Option<Thread>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Signal {
    pub number: u8,
    pub name: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Cgroup {
    pub id: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Namespaces {
    pub pid: u32,
    pub mnt: u32,
}

/// Hex of the exact bytes of fields that had to be lossily converted.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct RawBytes {
    pub name: Option<String>,
    pub executable: Option<String>,
    pub exec_path: Option<String>,
    /// One entry per argument, `null` for arguments that were valid UTF-8.
    pub args: Option<Vec<Option<String>>>,
}

impl RawBytes {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.executable.is_none()
            && self.exec_path.is_none()
            && self.args.is_none()
    }
}

/// The `identity` block: the agent, its owners, the task, how it was attributed, and the
/// delegation chain that led to it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Identity {
    pub agent: Arc<Rendered<AgentInfo>>,
    pub task: Option<TaskInfo>,
    pub attribution: AttributionInfo,
    /// Each hop from one agent to another that led to this process, oldest first.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub delegation: Arc<[Hop]>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AgentInfo {
    pub id: String,
    pub spiffe_id: Option<String>,
    pub name: Option<String>,
    pub purpose: Option<String>,
    pub team: Option<String>,
    pub data_sensitivity: Option<String>,
    pub owners: Owners,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub allowed_tasks: Vec<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Owners {
    pub business: Option<String>,
    pub technical: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TaskInfo {
    pub id: String,
    pub session: Option<String>,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct AttributionInfo {
    /// `registration`, `cgroup`, `executable`, `uid`, `environment`.
    pub method: &'static str,
    /// `strong`, `medium`, `weak`.
    pub trust: &'static str,
    /// Attributed because an ancestor was.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
}

/// One delegation hop: agent `from`'s process became (exec'd) agent `to`.
#[derive(Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub process: HopProcess,
}

#[derive(Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct HopProcess {
    pub pid: u32,
    pub entity_id: String,
}

/// The `container` and `orchestrator` blocks of a container's records, built once and shared.
#[derive(Debug, PartialEq, Eq)]
pub struct ContainerBlocks {
    pub container: Arc<ContainerInfo>,
    pub orchestrator: Option<Arc<Orchestrator>>,
}

/// ECS `container.*`: the container a process runs in, with what its runtime records.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ContainerInfo {
    pub id: String,
    pub runtime: &'static str,
    pub name: Option<String>,
    pub image: Option<ContainerImage>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ContainerImage {
    pub name: String,
}

/// ECS `orchestrator.*`: the Kubernetes pod of the container.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Orchestrator {
    pub r#type: &'static str,
    pub namespace: Option<String>,
    pub resource: OrchestratorResource,
    /// The pod's service account (from the token mounted in the container).
    pub service_account: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OrchestratorResource {
    pub r#type: &'static str,
    pub name: Option<String>,
    pub id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A cgroup made while the sensor ran (`cgroup_created`).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CgroupCreated {
    pub id: u64,
    pub path: String,
}

/// The file a file record is about (ECS `file.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct File {
    /// Absolute, normalised path as the process named it.
    pub path: String,
    pub name: Option<String>,
    pub directory: Option<String>,
    /// Where the path led: the file the kernel opened when it differs from `path` (a symlink
    /// was followed); a symlink's target text; a hard link's existing file.
    pub target_path: Option<String>,
    /// rename: the new path.
    pub destination_path: Option<String>,
    /// A sensitive-location class (`ssh_key`, `cloud_credentials`, ...).
    pub class: Option<String>,
    pub inode: Option<String>,
    /// Mode given to create, mkdir or chmod, as octal (`"0644"`).
    pub mode: Option<String>,
    /// chown's new owner and group.
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// truncate's new size.
    pub size: Option<u64>,
    pub fd: Option<i32>,
    pub open: Option<OpenInfo>,
    /// Some path was longer than the kernel side copies and was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// Exact bytes of paths that were not valid UTF-8.
    pub hex: Option<FileHex>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct FileHex {
    pub path: Option<String>,
    pub target_path: Option<String>,
    pub destination_path: Option<String>,
}

/// How a file was opened.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OpenInfo {
    /// `read`, `write` or `read_write` (or `path` for O_PATH).
    pub access: &'static str,
    /// Decoded flags: `create`, `truncate`, `append`, `directory`, ...
    pub flags: Vec<&'static str>,
    /// The raw flags, in octal.
    pub raw: String,
}

/// One end of a connection (ECS `source.*` / `destination.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Endpoint {
    // Arc: `ip` and `address` are mostly the same text.
    pub ip: Option<Arc<str>>,
    pub port: Option<u16>,
    /// The IP, or a Unix socket path (`@name` for an abstract one).
    pub address: Option<Arc<str>>,
    /// The name the process looked up for this address.
    pub domain: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Network {
    /// `tcp`, `udp`, ...
    pub transport: Option<&'static str>,
    /// `ipv4`, `ipv6`, `unix`.
    pub r#type: Option<&'static str>,
    // Cow: the common protocol numbers are static.
    pub iana_number: Option<Cow<'static, str>>,
    pub direction: Option<&'static str>,
    pub bytes: Option<u64>,
    /// Socket family, type and protocol as the kernel has them.
    pub socket: SocketInfo,
    /// Names the same socket across records of this sensor run (not a kernel address).
    pub socket_id: Option<String>,
    /// A non-blocking connect that had not finished when connect returned.
    pub connect_state: Option<&'static str>,
    pub backlog: Option<u32>,
    pub messages: Option<u64>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct SocketInfo {
    // Cow: the known names are static.
    pub family: Cow<'static, str>,
    pub r#type: Cow<'static, str>,
    pub protocol: Option<u16>,
}

/// A DNS message seen on UDP port 53 (ECS `dns.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Dns {
    /// `query` or `answer`.
    pub r#type: &'static str,
    pub id: u16,
    pub question: Option<DnsQuestion>,
    pub response_code: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_ip: Vec<String>,
    /// The captured datagram ended before the message (it was longer than the capture).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DnsQuestion {
    pub name: String,
    pub r#type: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DnsAnswer {
    pub name: String,
    pub r#type: String,
    pub ttl: u32,
    pub data: Option<String>,
}

/// The syscall behind a record and what it returned.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Syscall {
    pub name: &'static str,
    #[serde(rename = "return")]
    pub ret: i64,
}

/// Why a call failed (ECS `error.*`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorInfo {
    /// The errno name, e.g. `ENOENT`.
    pub code: String,
    pub message: String,
}

/// A signature over the chain up to a record (`covers_sequence`, `covers_hash`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Checkpoint {
    pub covers_sequence: u64,
    pub covers_hash: String,
    /// Ed25519 over `agent-sensor checkpoint v1\n{instance}\n{sequence}\n{hash}\n`, hex.
    pub signature: String,
    /// The signing key's public half, hex, so a reader can tell which key to check against.
    pub public_key: String,
}

/// Events that the sensor knows it did not deliver.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Gap {
    /// Where they were lost, e.g. `kernel_ring_buffer`.
    pub source: &'static str,
    pub lost: u64,
    /// Lost counts by record kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Output losses: why the output refused them (`ENOSPC`, `EDQUOT`), and the
    /// `@timestamp`s of the first and last.
    pub error: Option<&'static str>,
    pub start: Option<String>,
    pub end: Option<String>,
}

/// The sensor block of every record (not ECS `agent.*`, which readers would take for the AI
/// agent).
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SensorBlock {
    pub instance_id: Arc<str>,
    pub version: &'static str,
    pub lifecycle: Option<Lifecycle>,
}

/// Details of sensor start and stop records.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Lifecycle {
    pub reason: Option<String>,
    pub all_processes: Option<bool>,
    pub programs: Option<Vec<&'static str>>,
    pub records_written: Option<u64>,
    pub kernel_lost: Option<u64>,
    pub decode_errors: Option<u64>,
    /// Stop: records the output had no room for (each counted in a `gap` record).
    pub output_lost: Option<u64>,
    /// Start: the last record of the trail this run continues, as found on disk.
    pub previous: Option<crate::record::trail::LastRecord>,
}

/// Lossy UTF-8 of kernel bytes, plus their hex when the conversion replaced anything.
pub fn text(bytes: &[u8]) -> (String, Option<String>) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => (s.to_owned(), None),
        Cow::Owned(s) => (s, Some(hex(bytes))),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

impl Process {
    pub fn set_name(&mut self, comm: &[u8]) {
        let (name, raw) = text(comm);
        self.name = Some(name);
        self.hex.name = raw;
    }

    pub fn set_executable(&mut self, path: &[u8]) {
        let (exe, raw) = text(path);
        self.executable = Some(exe);
        self.hex.executable = raw;
    }

    pub fn set_exec_path(&mut self, path: &[u8]) {
        let (p, raw) = text(path);
        self.exec_path = Some(p);
        self.hex.exec_path = raw;
    }

    pub fn set_args(&mut self, args: &[Vec<u8>]) {
        let mut any_raw = false;
        let (texts, raws): (Vec<String>, Vec<Option<String>>) = args
            .iter()
            .map(|a| {
                let (t, r) = text(a);
                any_raw |= r.is_some();
                (t, r)
            })
            .unzip();
        self.command_line = Some(texts.join(" "));
        self.args = Some(texts);
        self.hex.args = any_raw.then_some(raws);
    }
}

/// Name of a Linux signal number, for `process.exit_signal.name`.
pub fn signal_name(signal: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(signal as usize).copied().unwrap_or("SIGRT")
}

/// A record's `process` block: built for this record (process lifecycle records), or the one
/// a process's activity records share, rendered once (see `pipeline::process_blocks`).
#[derive(Debug)]
pub enum ProcessBlock {
    Own(Box<Process>),
    Shared(Arc<Rendered<Process>>),
}

impl std::ops::Deref for ProcessBlock {
    type Target = Process;
    fn deref(&self) -> &Process {
        match self {
            ProcessBlock::Own(p) => p,
            ProcessBlock::Shared(r) => r,
        }
    }
}

impl From<Process> for ProcessBlock {
    fn from(p: Process) -> Self {
        ProcessBlock::Own(Box::new(p))
    }
}

impl Serialize for ProcessBlock {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exact_bytes_of_invalid_utf8() {
        let mut p = Process::default();
        p.set_args(&[b"ok".to_vec(), b"bad\xff".to_vec()]);
        assert_eq!(
            p.args.as_deref(),
            Some(&["ok".to_owned(), "bad\u{fffd}".to_owned()][..])
        );
        assert_eq!(p.hex.args, Some(vec![None, Some("626164ff".to_owned())]));
        let mut q = Process::default();
        q.set_args(&[b"fine".to_vec()]);
        assert!(q.hex.is_empty());
    }

    #[test]
    fn hostile_strings_cannot_break_the_line() {
        let mut p = Process::default();
        p.set_args(&[b"a\"b\n{\"forged\":1}\r\x00\x1b".to_vec()]);
        let line = serde_json::to_string(&p).unwrap();
        assert!(!line.contains('\n') && !line.contains('\r'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["args"][0], "a\"b\n{\"forged\":1}\r\u{0}\u{1b}");
        assert!(back.get("forged").is_none());
    }

    #[test]
    fn writes_decimals() {
        for n in [0, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
        assert_eq!(Id::of(1000).id, "1000");
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(40), "SIGRT");
    }
}
