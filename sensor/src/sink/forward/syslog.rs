//! The syslog sink: each record one RFC 5424 message, octet-counted (RFC 6587, `LEN SP MSG`)
//! over TCP, or over TLS (RFC 5425), through the socket stream's connection and its
//! acknowledgement ([`super::stream`]). The message:
//!
//! `<110>1 TIMESTAMP HOSTNAME agent-sensor PROCID MSGID [agent-sensor@32473 ...] MSG`
//!
//! - PRI 110: facility 13 (log audit), severity 6 (informational).
//! - TIMESTAMP: the record's `@timestamp` cut to microseconds (RFC 5424 allows six digits).
//! - HOSTNAME: the host's name; PROCID: the sensor's pid; MSGID: `event.action`.
//! - Structured data `agent-sensor@32473` (32473 is the example enterprise number RFC 5612
//!   reserves for documentation; no number is registered for the sensor): `instance_id`,
//!   `sequence` and `hash` of the chain, `action`, and `agent_id` when the record has one,
//!   each value escaped as RFC 5424 says (`"`, `\` and `]` behind a backslash).
//! - MSG: the record's JSON line exactly, without its newline (no BOM), so the chain can be
//!   verified on what the receiver stored.
//!
//! A field the record does not have is the NILVALUE `-`.
use std::{io, time::Duration};

use super::{Transport, keys::RecordKeys, stream::SocketStream, tls::Tls};
use crate::config::sinks::StreamAddress;

/// Facility 13 (log audit) * 8 + severity 6 (informational).
const PRI: &str = "<110>";
const APP_NAME: &str = "agent-sensor";
/// The structured data's id: a name, `@`, an enterprise number (RFC 5424 section 6.3.2).
pub const SD_ID: &str = "agent-sensor@32473";

/// A syslog connection and the message header fields that do not change.
pub struct Syslog {
    stream: SocketStream,
    hostname: String,
    procid: String,
    frames: Vec<u8>,
}

impl Syslog {
    /// A sink to the receiver at `hostport` (TCP, or TLS with `tls`).
    pub fn new(hostport: String, tls: Option<Tls>, timeout: Duration) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Self {
            stream: SocketStream::new(StreamAddress::Tcp(hostport), tls, timeout),
            hostname: header_field(hostname.trim(), 255),
            procid: std::process::id().to_string(),
            frames: Vec::new(),
        }
    }
}

impl Transport for Syslog {
    fn describe(&self) -> String {
        format!("syslog {}", self.stream.describe())
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        self.frames.clear();
        for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            frame(line, &self.hostname, &self.procid, &mut self.frames);
        }
        self.stream.deliver(&self.frames)
    }

    fn disconnect(&mut self) {
        self.stream.disconnect();
    }
}

/// Appends one record's octet-counted RFC 5424 message to `out`.
pub fn frame(line: &[u8], hostname: &str, procid: &str, out: &mut Vec<u8>) {
    let keys = RecordKeys::of(line);
    let mut message = String::with_capacity(256);
    message.push_str(PRI);
    message.push_str("1 ");
    message.push_str(
        &keys
            .timestamp
            .as_deref()
            .and_then(timestamp)
            .unwrap_or("-".into()),
    );
    for field in [hostname, APP_NAME, procid] {
        message.push(' ');
        message.push_str(field);
    }
    message.push(' ');
    message.push_str(&header_field(keys.action.as_deref().unwrap_or(""), 32));
    message.push_str(" [");
    message.push_str(SD_ID);
    let sequence = keys.sequence.map(|s| s.to_string());
    let params = [
        ("instance_id", keys.instance_id.as_deref()),
        ("sequence", sequence.as_deref()),
        ("hash", keys.hash.as_deref()),
        ("action", keys.action.as_deref()),
        ("agent_id", keys.agent_id.as_deref()),
    ];
    for (name, value) in params {
        let Some(value) = value else { continue };
        message.push(' ');
        message.push_str(name);
        message.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                message.push('\\');
            }
            message.push(c);
        }
        message.push('"');
    }
    message.push_str("] ");
    let length = message.len() + line.len();
    out.extend_from_slice(length.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(line);
}

/// A header field: printable US-ASCII without spaces (anything else becomes `_`), at most
/// `max` characters; `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` from a record's RFC 3339 time (fraction cut to six
/// digits); `None` if it is not that shape.
fn timestamp(rfc3339: &str) -> Option<String> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let b = rfc3339.as_bytes();
    let matches = b.len() > SHAPE.len()
        && SHAPE.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            s => s == c,
        });
    if !matches {
        return None;
    }
    // The first SHAPE.len() bytes are ASCII: a character boundary.
    let rest = rfc3339[SHAPE.len()..].strip_suffix('Z')?;
    let fraction = if rest.is_empty() {
        ""
    } else {
        let digits = rest.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        &rest[..rest.len().min(7)]
    };
    Some(format!("{}{fraction}Z", &rfc3339[..SHAPE.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_record_as_an_octet_counted_rfc5424_message() {
        let line = br#"{"@timestamp":"2026-12-01T11:33:00.123456789Z","event":{"action":"file_open"},"identity":{"agent":{"id":"bot\"] x\\"}},"chain":{"instance_id":"i-1","sequence":7,"prev_hash":"00","hash":"ab"}}"#;
        let mut out = Vec::new();
        frame(line, "host-1", "42", &mut out);
        let text = String::from_utf8(out).unwrap();
        let (length, message) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), message.len());
        let header = concat!(
            r#"<110>1 2026-12-01T11:33:00.123456Z host-1 agent-sensor 42 file_open "#,
            r#"[agent-sensor@32473 instance_id="i-1" sequence="7" hash="ab" action="file_open" agent_id="bot\"\] x\\"] "#
        );
        assert_eq!(
            message,
            format!("{header}{}", String::from_utf8_lossy(line))
        );
    }

    #[test]
    fn a_line_without_keys_gets_nil_values() {
        let mut out = Vec::new();
        frame(b"{}", "h", "1", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "51 <110>1 - h agent-sensor 1 - [agent-sensor@32473] {}"
        );
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        assert_eq!(header_field("a b\u{e9}c", 32), "a_b_c");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert_eq!(
            timestamp("2026-12-01T11:33:00Z").as_deref(),
            Some("2026-12-01T11:33:00Z")
        );
        assert_eq!(
            timestamp("2026-12-01T11:33:00.1Z").as_deref(),
            Some("2026-12-01T11:33:00.1Z")
        );
        for bad in [
            "2026-12-01 11:33:00Z",
            "2026-12-01T11:33:00.Z",
            "2026-12-01T11:33:00+01:00",
            "x",
        ] {
            assert_eq!(timestamp(bad), None, "{bad}");
        }
    }
}
