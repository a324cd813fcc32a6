//! The output records: one JSON object per line, ECS-style names, a schema version. This module
//! owns the shape of every record kind; the pipeline fills them in. Kernel-supplied strings are
//! raw bytes that may be hostile: they are rendered as UTF-8 (invalid bytes replaced), and
//! whenever a replacement happened the exact bytes are kept, hex-encoded, under `process.hex`, so
//! nothing is lost or forged. serde_json escapes quotes, newlines and control characters.
//!
//! Record types carry `#[serde_with::skip_serializing_none]`: an absent `Option` field is left
//! out of the line, and the schema has it optional; a field marked `#[serialize_always]` (and
//! every field of `registration`) is written as `null` instead.

pub mod alert;
pub mod host;
pub mod llm;
pub mod mcp;
pub mod policy;
pub mod registration;
pub mod rendered;
pub mod schema;
pub mod time;
pub mod trail;
use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use serde::Serialize;

use crate::{record::host::HostInfo, record::rendered::Rendered, record::time::Timestamp};

/// Version of the record schema (see docs/schema.md); bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "0.2";

/// One output record: an event (`event.action` says which kind) with the blocks that kind carries;
/// absent blocks are left out of the line.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Record {
    // First, with `sensor` and `identity`: what is the same on every record of a run (or of an
    // agent's process) leads the line, so the chain hashes those bytes once per run and agent,
    // not once per record (`evidence::Chain::seal_shared`).
    /// The host the sensor runs on (ECS `host.*`).
    pub host: Arc<Rendered<HostInfo>>,
    /// The sensor run that wrote the record.
    pub sensor: SensorBlock,
    /// Which AI agent did it, and how sure the attribution is.
    pub identity: Option<Identity>,
    /// When the event happened: RFC 3339 UTC with nanoseconds (the kernel's boot-time clock
    /// converted to wall-clock time).
    #[serde(rename = "@timestamp")]
    pub timestamp: Timestamp,
    /// The version of this schema the record follows.
    pub schema_version: &'static str,
    /// What happened (ECS `event.*`).
    pub event: EventMeta,
    /// The process the event is about or that did it (ECS `process.*`).
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
    /// The file of a file record (ECS `file.*`).
    pub file: Option<File>,
    /// The initiating end of a connection: this process on connect and send, the peer on accept
    /// (ECS `source.*`).
    pub source: Option<Endpoint>,
    /// The other end of a connection (ECS `destination.*`).
    pub destination: Option<Endpoint>,
    /// The socket and what the call did with it (ECS `network.*`).
    pub network: Option<Network>,
    /// A DNS message the process sent or received (ECS `dns.*`).
    pub dns: Option<Box<Dns>>,
    /// The syscall behind the record, and what it returned.
    pub syscall: Option<Syscall>,
    /// Why the call failed (ECS `error.*`).
    pub error: Option<ErrorInfo>,
    /// Events the sensor knows it did not deliver (`event.action: gap`).
    pub gap: Option<Box<Gap>>,
    /// A signed checkpoint.
    pub checkpoint: Option<Box<Checkpoint>>,
    /// A request on the registration socket.
    pub registration: Option<Box<crate::record::registration::RegistrationEvent>>,
    /// An operator's annotation (`event.action: annotation`).
    pub annotation: Option<Box<crate::record::registration::Annotation>>,
    /// The output file this record closes, and the one that continues the trail.
    pub rotation: Option<Box<crate::record::trail::Rotation>>,
    /// Old trail files removed by retention (`event.action: trail_retention`).
    pub retention: Option<Box<crate::record::trail::Retention>>,
    /// What a detection rule found (`event.action: alert`).
    pub alert: Option<Box<crate::record::alert::Alert>>,
    /// A policy decision on an agent's action (`event.action: policy_decision`).
    pub policy: Option<Box<crate::record::policy::PolicyDecision>>,
    /// An operator's exception to a rule (`event.action: policy_exception`).
    pub exception: Option<Box<crate::record::policy::PolicyException>>,
    /// An LLM API exchange an opted-in agent made over TLS (`llm_exchange`).
    pub llm: Option<Box<crate::record::llm::LlmExchange>>,
    /// Why an opted-in agent's process cannot have its TLS captured (`tls_not_captured`).
    pub tls_capture: Option<crate::record::llm::TlsNotCaptured>,
    /// An MCP request an opted-in agent's server answered over stdio (`mcp_call`).
    pub mcp: Option<Box<crate::record::mcp::McpCall>>,
}

impl Record {
    /// The container and pod blocks of a record about a process in that container.
    pub fn set_container(&mut self, c: &ContainerBlocks) {
        self.container = Some(c.container.clone());
        self.orchestrator.clone_from(&c.orchestrator);
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
            retention: None,
            alert: None,
            policy: None,
            exception: None,
            llm: None,
            tls_capture: None,
            mcp: None,
        }
    }
}

/// ECS `event.*`: what kind of event a record is.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventMeta {
    /// `event`, `state` (a snapshot of a running process) or `pipeline_error` (a gap).
    pub kind: &'static str,
    /// ECS categories: `process`, `file`, `network`, ...
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub category: &'static [&'static str],
    /// ECS types: `start`, `end`, `info`, `creation`, ...
    #[serde(rename = "type", skip_serializing_if = "<[_]>::is_empty")]
    pub kind_type: &'static [&'static str],
    /// The record kind: `exec`, `open`, `connect`, `sensor_start`, `gap`, ...
    pub action: &'static str,
    /// `success`, `failure` or `unknown` (the result is not known yet).
    pub outcome: Option<&'static str>,
    /// The part of the sensor that wrote it: `agent_sensor.process`, `.file`, `.network` or
    /// `.sensor`.
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
    /// The numeric id, in decimal.
    pub id: String,
}

impl Id {
    /// The object of a numeric id (uid, gid).
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

/// ECS `process.*`: the process an event is about, or that did it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Process {
    /// The thread group id (the process id).
    pub pid: u32,
    /// Names the process uniquely: a hash of the boot id, pid and start time, the same from kernel
    /// events and from procfs, across sensor restarts.
    pub entity_id: Arc<str>,
    /// The thread the event happened on.
    pub thread: Option<Thread>,
    /// `comm`, as the kernel keeps it (at most 15 bytes).
    pub name: Option<String>,
    /// The absolute path of the file that runs (for a script, its interpreter).
    pub executable: Option<String>,
    /// exec: the path the caller passed to execve when it differs from `executable` (relative,
    /// through a symlink, or a script whose interpreter is the executable).
    pub exec_path: Option<String>,
    /// exec: the absolute path of the directory the program started in (the kernel's
    /// `fs->pwd`, walked like `executable`), what its relative paths mean.
    pub working_directory: Option<String>,
    /// The working directory was deeper than the kernel's walk goes (64 components):
    /// `working_directory` holds its lower part only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub working_directory_truncated: bool,
    /// exec: the agent's `executables` rule in `kill` mode did not allow the program, and the
    /// kernel sent the process SIGKILL as the exec completed, before the program ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub policy_killed: bool,
    /// argv, as the process's memory held it at exec.
    pub args: Option<Vec<String>>,
    /// argc, as the kernel counted it (also when `args` was cut).
    pub args_count: Option<u32>,
    /// argv was longer than the configured bound: `args` holds its beginning only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// `args` joined with spaces (ambiguous: `args` is authoritative).
    pub command_line: Option<String>,
    /// When the process started.
    pub start: Option<Timestamp>,
    /// exit: when its last thread exited.
    pub end: Option<Timestamp>,
    /// The parent process (exec: the real parent; fork: the caller).
    pub parent: Option<Parent>,
    /// Effective user id.
    pub user: Option<Id>,
    /// Effective group id.
    pub group: Option<Id>,
    /// Real user id.
    pub real_user: Option<Id>,
    /// Real group id.
    pub real_group: Option<Id>,
    /// Audit login uid and session, where the kernel keeps them and they are set.
    pub login_user: Option<Id>,
    /// Audit session id.
    pub session_id: Option<u32>,
    /// The exit status of a normal exit.
    pub exit_code: Option<u8>,
    /// The signal that ended the task.
    pub exit_signal: Option<Signal>,
    /// The process's cgroup v2.
    pub cgroup: Option<Cgroup>,
    /// The process's namespaces, by inode number.
    pub namespaces: Option<Namespaces>,
    /// Exact bytes of fields that were not valid UTF-8.
    #[serde(skip_serializing_if = "RawBytes::is_empty")]
    pub hex: RawBytes,
}

/// A thread (ECS `thread.*`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Thread {
    /// The thread id (the kernel's task pid).
    pub id: u32,
}

/// The parent of a process (ECS `process.parent.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Parent {
    /// The parent's process id.
    pub pid: u32,
    /// The parent's `entity_id`.
    pub entity_id: Arc<str>,
    /// fork: the thread that called fork or clone.
    pub thread: Option<Thread>,
}

/// The signal that ended a task.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Signal {
    /// The signal number.
    pub number: u8,
    /// Its name (`SIGKILL`; `SIGRT` for the real-time ones).
    pub name: &'static str,
    /// The task dumped core.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

/// A cgroup v2, by id.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Cgroup {
    /// The cgroup id (the inode of its directory).
    pub id: u64,
}

/// Namespace inode numbers, as in `/proc/PID/ns/*`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Namespaces {
    /// The pid namespace.
    pub pid: u32,
    /// The mount namespace.
    pub mnt: u32,
}

/// Hex of the exact bytes of fields that had to be lossily converted.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct RawBytes {
    /// `name`'s bytes.
    pub name: Option<String>,
    /// `executable`'s bytes.
    pub executable: Option<String>,
    /// `exec_path`'s bytes.
    pub exec_path: Option<String>,
    /// `working_directory`'s bytes.
    pub working_directory: Option<String>,
    /// One entry per argument, `null` for arguments that were valid UTF-8.
    pub args: Option<Vec<Option<String>>>,
}

impl RawBytes {
    /// Whether every field was valid UTF-8 (nothing to keep).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.executable.is_none()
            && self.exec_path.is_none()
            && self.working_directory.is_none()
            && self.args.is_none()
    }
}

/// The `identity` block: the agent, its owners, the task, how it was attributed, and the
/// delegation chain that led to it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Identity {
    /// The agent, as the manifest declares it.
    pub agent: Arc<Rendered<AgentInfo>>,
    /// The task (and session) an orchestrator registered for the process.
    pub task: Option<TaskInfo>,
    /// How the process was attributed to the agent.
    pub attribution: AttributionInfo,
    /// Each hop from one agent to another that led to this process, oldest first.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub delegation: Arc<[Hop]>,
}

/// An AI agent, as the manifest declares it (`identity.agent.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AgentInfo {
    /// The agent's id in the manifest.
    pub id: String,
    /// Its SPIFFE id.
    pub spiffe_id: Option<String>,
    /// Its display name.
    pub name: Option<String>,
    /// What it is for.
    pub purpose: Option<String>,
    /// The team that runs it.
    pub team: Option<String>,
    /// The sensitivity of the data it handles.
    pub data_sensitivity: Option<String>,
    /// Who answers for it.
    pub owners: Owners,
    /// The tasks it may be registered for.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub allowed_tasks: Vec<String>,
}

/// Who answers for an agent.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Owners {
    /// The business owner.
    pub business: Option<String>,
    /// The technical owner.
    pub technical: Option<String>,
}

/// The task an orchestrator registered a process for (`identity.task.*`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TaskInfo {
    /// The task id.
    pub id: String,
    /// The session it belongs to.
    pub session: Option<String>,
}

/// How a process was attributed to its agent (`identity.attribution.*`).
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
    /// The agent whose process it was.
    pub from: String,
    /// The agent it became.
    pub to: String,
    /// The process that made the hop.
    pub process: HopProcess,
}

/// The process of a delegation hop.
#[derive(Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct HopProcess {
    /// Its process id.
    pub pid: u32,
    /// Its `entity_id`.
    pub entity_id: String,
}

/// The `container` and `orchestrator` blocks of a container's records, built once and shared.
#[derive(Debug, PartialEq, Eq)]
pub struct ContainerBlocks {
    /// The `container` block.
    pub container: Arc<ContainerInfo>,
    /// The `orchestrator` block, when the container is a pod's.
    pub orchestrator: Option<Arc<Orchestrator>>,
}

/// ECS `container.*`: the container a process runs in, with what its runtime records.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ContainerInfo {
    /// The container id, from the process's cgroup path.
    pub id: String,
    /// `containerd`, `cri-o`, `docker`, `podman`, or `kubernetes` when only the pod path says it.
    pub runtime: &'static str,
    /// Kubernetes' container name in a pod, else the runtime's name.
    pub name: Option<String>,
    /// The image the container was made from.
    pub image: Option<ContainerImage>,
    /// The container's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A container image (ECS `container.image.*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ContainerImage {
    /// The image reference.
    pub name: String,
}

/// ECS `orchestrator.*`: the Kubernetes pod of the container.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Orchestrator {
    /// `kubernetes`.
    pub r#type: &'static str,
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod.
    pub resource: OrchestratorResource,
    /// The pod's service account (from the token mounted in the container).
    pub service_account: Option<String>,
}

/// The orchestrator's resource a container belongs to (ECS `orchestrator.resource.*`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OrchestratorResource {
    /// `pod`.
    pub r#type: &'static str,
    /// The pod's name.
    pub name: Option<String>,
    /// The pod's uid.
    pub id: Option<String>,
    /// The pod's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A cgroup made while the sensor ran (`cgroup_created`).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CgroupCreated {
    /// The cgroup id (the inode of its directory).
    pub id: u64,
    /// Its path in the cgroup v2 hierarchy.
    pub path: String,
}

/// The file a file record is about (ECS `file.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct File {
    /// Absolute, normalised path as the process named it.
    pub path: String,
    /// The last component of `path`.
    pub name: Option<String>,
    /// `path` without its last component.
    pub directory: Option<String>,
    /// Where the path led: the file the kernel opened when it differs from `path` (a symlink
    /// was followed); a symlink's target text; a hard link's existing file.
    pub target_path: Option<String>,
    /// rename: the new path.
    pub destination_path: Option<String>,
    /// A sensitive-location class (`ssh_key`, `cloud_credentials`, ...).
    pub class: Option<String>,
    /// The inode of the file acted on, when known.
    pub inode: Option<String>,
    /// Mode given to create, mkdir or chmod, as octal (`"0644"`).
    pub mode: Option<String>,
    /// chown's new owner and group.
    pub uid: Option<String>,
    /// chown's new group.
    pub gid: Option<String>,
    /// truncate's new size.
    pub size: Option<u64>,
    /// open: the file descriptor returned; calls on a file descriptor: that one.
    pub fd: Option<i32>,
    /// open: how the file was opened.
    pub open: Option<OpenInfo>,
    /// Some path was longer than the kernel side copies and was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// open: the agent's `files` rule in `kill` mode does not allow the file opened, and the
    /// kernel sent the process SIGKILL before the open returned to it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub policy_killed: bool,
    /// Exact bytes of paths that were not valid UTF-8.
    pub hex: Option<FileHex>,
}

/// The exact bytes (hex) of file paths that were not valid UTF-8.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct FileHex {
    /// `path`'s bytes.
    pub path: Option<String>,
    /// `target_path`'s bytes.
    pub target_path: Option<String>,
    /// `destination_path`'s bytes.
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
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Endpoint {
    // Arc: `ip` and `address` are mostly the same text.
    /// The IP address (IPv4-mapped IPv6 addresses as IPv4).
    pub ip: Option<Arc<str>>,
    /// The port.
    pub port: Option<u16>,
    /// The IP, or a Unix socket path (`@name` for an abstract one).
    pub address: Option<Arc<str>>,
    /// The name the process looked up for this address.
    pub domain: Option<String>,
}

/// ECS `network.*`: the socket of a network record and what the call did with it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Network {
    /// `tcp`, `udp`, ...
    pub transport: Option<&'static str>,
    /// `ipv4`, `ipv6`, `unix`.
    pub r#type: Option<&'static str>,
    // Cow: the common protocol numbers are static.
    /// The IANA protocol number.
    pub iana_number: Option<Cow<'static, str>>,
    /// `egress` (connect, send) or `ingress` (accept, receive).
    pub direction: Option<&'static str>,
    /// Bytes sent or received.
    pub bytes: Option<u64>,
    /// Socket family, type and protocol as the kernel has them.
    pub socket: SocketInfo,
    /// Names the same socket across records of this sensor run (not a kernel address).
    pub socket_id: Option<String>,
    /// A non-blocking connect that had not finished when connect returned.
    pub connect_state: Option<&'static str>,
    /// listen: the backlog.
    pub backlog: Option<u32>,
    /// sendmmsg: the messages sent.
    pub messages: Option<u64>,
}

/// A socket as the kernel has it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct SocketInfo {
    // Cow: the known names are static.
    /// The address family (`AF_INET6`, ...).
    pub family: Cow<'static, str>,
    /// The socket type (`SOCK_DGRAM`, ...).
    pub r#type: Cow<'static, str>,
    /// The protocol number.
    pub protocol: Option<u16>,
}

/// A DNS message seen on UDP port 53 (ECS `dns.*`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Dns {
    /// `query` or `answer`.
    pub r#type: &'static str,
    /// The message id.
    pub id: u16,
    /// The message's first question.
    pub question: Option<DnsQuestion>,
    /// answer: the response code (`NOERROR`, `NXDOMAIN`, ...).
    pub response_code: Option<String>,
    /// answer: the answer records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    /// answer: the addresses the answers give.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_ip: Vec<String>,
    /// The captured datagram ended before the message (it was longer than the capture).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// A DNS question.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DnsQuestion {
    /// The name asked for, in presentation form.
    pub name: String,
    /// The record type asked for (`A`, `AAAA`, ...).
    pub r#type: String,
}

/// One answer record of a DNS answer.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DnsAnswer {
    /// The name it answers for.
    pub name: String,
    /// Its record type.
    pub r#type: String,
    /// Its time to live, in seconds.
    pub ttl: u32,
    /// Its data, for the types the sensor decodes (addresses, names).
    pub data: Option<String>,
}

/// The syscall behind a record and what it returned.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Syscall {
    /// The syscall (`openat`, `renameat2`, ...).
    pub name: &'static str,
    /// What it returned.
    #[serde(rename = "return")]
    pub ret: i64,
}

/// Why a call failed (ECS `error.*`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorInfo {
    /// The errno name, e.g. `ENOENT`.
    pub code: String,
    /// The errno's text.
    pub message: String,
}

/// A signature over the chain up to a record (`covers_sequence`, `covers_hash`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Checkpoint {
    /// The `chain.sequence` of the record it signs the chain up to.
    pub covers_sequence: u64,
    /// That record's `chain.hash`.
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
    /// How many were lost.
    pub lost: u64,
    /// Lost counts by record kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Output losses: why the output refused them (`ENOSPC`, `EDQUOT`), and the
    /// `@timestamp`s of the first and last.
    pub error: Option<&'static str>,
    /// Output losses: the `@timestamp` of the first.
    pub start: Option<String>,
    /// Output losses: the `@timestamp` of the last.
    pub end: Option<String>,
    /// Sink losses (`source: sink`): which sink, and the records it will not get.
    pub sink: Option<SinkGap>,
}

/// The records one sink's queue could not take: they are in the output, not in that sink.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SinkGap {
    /// The sink's name (`[[sinks]] name`).
    pub name: String,
    /// The run whose sequences these are, when not this record's own: a loss an earlier run
    /// counted and could not record before it ended (a `kill -9`).
    pub instance_id: Option<String>,
    /// The `chain.sequence` of the first record it will not get.
    pub first_sequence: u64,
    /// ... and of the last (all those between are missing too).
    pub last_sequence: u64,
}

/// The sensor block of every record (not ECS `agent.*`, which readers would take for the AI
/// agent).
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SensorBlock {
    /// This run of the sensor (a UUID).
    pub instance_id: Arc<str>,
    /// The sensor's version.
    pub version: &'static str,
    /// Start and stop records, and manifest reloads: what the sensor did.
    pub lifecycle: Option<Lifecycle>,
}

/// Details of sensor start and stop records.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Lifecycle {
    /// Stop: what stopped the sensor; reload: what triggered it, and why a manifest was refused.
    pub reason: Option<String>,
    /// Start: every process is observed, not only agents'.
    pub all_processes: Option<bool>,
    /// Start: the kernel programs attached.
    pub programs: Option<Vec<&'static str>>,
    /// Stop: the records of the run, this one included.
    pub records_written: Option<u64>,
    /// Stop: the events the kernel could not deliver.
    pub kernel_lost: Option<u64>,
    /// Stop: the kernel records the sensor could not decode.
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

/// Lowercase hex of `bytes`.
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
    /// Sets `name` from `comm`'s bytes (and `hex.name` when they are not UTF-8).
    pub fn set_name(&mut self, comm: &[u8]) {
        let (name, raw) = text(comm);
        self.name = Some(name);
        self.hex.name = raw;
    }

    /// Sets `executable` from a path's bytes (and `hex.executable` when they are not UTF-8).
    pub fn set_executable(&mut self, path: &[u8]) {
        let (exe, raw) = text(path);
        self.executable = Some(exe);
        self.hex.executable = raw;
    }

    /// Sets `working_directory` from a path's bytes (and `hex.working_directory` when they are
    /// not UTF-8).
    pub fn set_working_directory(&mut self, path: &[u8], truncated: bool) {
        let (p, raw) = text(path);
        self.working_directory = Some(p);
        self.working_directory_truncated = truncated;
        self.hex.working_directory = raw;
    }

    /// Sets `exec_path` from a path's bytes (and `hex.exec_path` when they are not UTF-8).
    pub fn set_exec_path(&mut self, path: &[u8]) {
        let (p, raw) = text(path);
        self.exec_path = Some(p);
        self.hex.exec_path = raw;
    }

    /// Sets `args` and `command_line` from argv's bytes (and `hex.args` when any is not UTF-8).
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
    /// Built for this record.
    Own(Box<Process>),
    /// Shared with the process's other records, rendered once.
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
