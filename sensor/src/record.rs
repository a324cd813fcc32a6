//! The output records: one JSON object per line, ECS-style names, a schema version. This module
//! owns the shape of every record kind; the pipeline fills them in. Kernel-supplied strings are
//! raw bytes that may be hostile: they are rendered as UTF-8 (invalid bytes replaced), and
//! whenever a replacement happened the exact bytes are kept, hex-encoded, under `process.hex`, so
//! nothing is lost or forged. serde_json escapes quotes, newlines and control characters.
use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

use crate::host::HostInfo;

/// Version of the record schema (see docs/schema.md); bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "0.1";

#[derive(Debug, Serialize)]
pub struct Record {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub schema_version: &'static str,
    pub event: EventMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    /// The effective user of the process (ECS `user.*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    pub host: Arc<HostInfo>,
    pub sensor: SensorBlock,
}

#[derive(Debug, Serialize)]
pub struct EventMeta {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub category: &'static [&'static str],
    #[serde(rename = "type", skip_serializing_if = "<[_]>::is_empty")]
    pub kind_type: &'static [&'static str],
    pub action: &'static str,
    pub dataset: &'static str,
    /// When the sensor made the record (the event itself happened at `@timestamp`).
    pub created: String,
}

/// An ECS `{ "id": ... }` object (user, group).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Id {
    pub id: String,
}

impl Id {
    pub fn of(id: u32) -> Self {
        Self { id: id.to_string() }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Process {
    pub pid: u32,
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<Thread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_count: Option<u32>,
    /// argv was longer than the configured bound: `args` holds its beginning only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Effective ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_user: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_group: Option<Id>,
    /// Audit login uid and session, where the kernel keeps them and they are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_user: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<Signal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Namespaces>,
    /// Exact bytes of fields that were not valid UTF-8.
    #[serde(skip_serializing_if = "RawBytes::is_empty")]
    pub hex: RawBytes,
}

#[derive(Debug, Serialize)]
pub struct Thread {
    pub id: u32,
}

#[derive(Debug, Serialize)]
pub struct Parent {
    pub pid: u32,
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<Thread>,
}

#[derive(Debug, Serialize)]
pub struct Signal {
    pub number: u8,
    pub name: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

#[derive(Debug, Serialize)]
pub struct Cgroup {
    pub id: u64,
}

#[derive(Debug, Serialize)]
pub struct Namespaces {
    pub pid: u32,
    pub mnt: u32,
}

/// Hex of the exact bytes of fields that had to be lossily converted.
#[derive(Debug, Default, Serialize)]
pub struct RawBytes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// One entry per argument, `null` for arguments that were valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Option<String>>>,
}

impl RawBytes {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.executable.is_none() && self.args.is_none()
    }
}

/// Events that the sensor knows it did not deliver.
#[derive(Debug, Serialize)]
pub struct Gap {
    /// Where they were lost, e.g. `kernel_ring_buffer`.
    pub source: &'static str,
    pub lost: u64,
    /// Lost counts by record kind.
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
}

/// The sensor block of every record (not ECS `agent.*`, which readers would take for the AI
/// agent).
#[derive(Debug, Serialize)]
pub struct SensorBlock {
    pub instance_id: Arc<str>,
    pub version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

/// Details of sensor start and stop records.
#[derive(Debug, Serialize)]
pub struct Lifecycle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_processes: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programs: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_errors: Option<u64>,
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
    fn names_signals() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(40), "SIGRT");
    }
}
