//! The OTLP logs sink: batches of records as `ExportLogsServiceRequest`s, `POST /v1/logs` with
//! `Content-Type: application/x-protobuf` over HTTP/1.1 (TLS with `tls_ca_file`), the form an
//! OpenTelemetry collector's `otlphttp` receiver takes.
//!
//! Each record is one `LogRecord`: its body the record's JSON line exactly (a string
//! `AnyValue`), so the chain verifies on what the collector received; `time_unix_nano` from
//! `@timestamp`; attributes `event.action`, `identity.agent.id` (when the record has one),
//! `chain.instance_id`, `chain.sequence` (an int) and `chain.hash`. The records of one sensor
//! run share a `ResourceLogs` with `service.name = agent-sensor`, `host.name` and
//! `sensor.instance_id`.
//!
//! A 2xx answer acknowledges the batch. 429, 502, 503 and 504 are retried, after the answer's
//! `Retry-After` when it gives one (up to `retry_max_ms`). 400 (the receiver cannot take the
//! batch as sent, so sending it again cannot help) and a partial success that rejected
//! records are not retried: the batch leaves the queue and the trail gets a `gap` record
//! (`gap.error: rejected`) for its sequences. Any other answer is retried like a connection
//! failure.
mod http;
mod proto;

use std::{
    io::{self, BufReader},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prost::Message as _;

use super::{Rejected, Transport, keys::RecordKeys, tls::Tls};
use proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, InstrumentationScope, KeyValue,
    LogRecord, Resource, ResourceLogs, ScopeLogs, Value,
};

const PATH: &str = "/v1/logs";
/// `SeverityNumber` INFO.
const SEVERITY_INFO: i32 = 9;

/// An OTLP/HTTP logs exporter, connected between batches or not.
pub struct Otlp {
    hostport: String,
    tls: Option<Tls>,
    timeout: Duration,
    host_name: String,
    connection: Option<http::Connection>,
    retry_after: Option<Duration>,
}

impl Otlp {
    /// An exporter to the receiver at `hostport` (HTTPS with `tls`); each connect, write and
    /// answer may take `timeout`.
    pub fn new(hostport: String, tls: Option<Tls>, timeout: Duration) -> Self {
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Self {
            hostport,
            tls,
            timeout,
            host_name: host_name.trim().to_owned(),
            connection: None,
            retry_after: None,
        }
    }

    fn connect(&self) -> io::Result<http::Connection> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.hostport),
        );
        let mut connected = None;
        for addr in self.hostport.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    connected = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let s = connected.ok_or(last)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.set_nodelay(true)?;
        let stream: Box<dyn http::Stream> = match &self.tls {
            Some(tls) => Box::new(tls.connect(s)?),
            None => Box::new(s),
        };
        Ok(BufReader::new(stream))
    }

    fn send(&mut self, body: &[u8]) -> io::Result<http::Response> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let response = http::post(
            connection,
            &self.hostport,
            PATH,
            "application/x-protobuf",
            body,
        );
        if response.as_ref().is_ok_and(|r| !r.close) {
            return response;
        }
        self.connection = None;
        response
    }
}

impl Transport for Otlp {
    fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("otlp {scheme}://{}{PATH}", self.hostport)
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        let observed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let body = request(records, &self.host_name, observed).encode_to_vec();
        let response = self.send(&body)?;
        let answer = || {
            let text = String::from_utf8_lossy(&response.body);
            let text: String = text.chars().take(200).collect();
            format!("the receiver answered {}: {text}", response.status)
        };
        match response.status {
            200..=299 => {
                let rejected = ExportLogsServiceResponse::decode(&response.body[..])
                    .ok()
                    .and_then(|r| r.partial_success)
                    .filter(|p| p.rejected_log_records > 0);
                match rejected {
                    None => Ok(()),
                    Some(p) => Err(Rejected {
                        lost: Some(p.rejected_log_records.unsigned_abs()),
                        reason: format!(
                            "the receiver rejected {} records of the batch: {}",
                            p.rejected_log_records, p.error_message
                        ),
                    }
                    .into()),
                }
            }
            400 => Err(Rejected {
                lost: None,
                reason: answer(),
            }
            .into()),
            429 | 502..=504 => {
                self.retry_after = response.retry_after;
                Err(io::Error::other(answer()))
            }
            _ => Err(io::Error::other(answer())),
        }
    }

    fn disconnect(&mut self) {
        self.connection = None;
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.retry_after.take()
    }
}

/// The export request for whole JSON lines: one `LogRecord` each, grouped by sensor run.
fn request(records: &[u8], host_name: &str, observed: u64) -> ExportLogsServiceRequest {
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    let mut run: Option<Option<String>> = None;
    for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let keys = RecordKeys::of(line);
        if run.as_ref() != Some(&keys.instance_id) {
            let mut attributes = vec![
                KeyValue::string("service.name", "agent-sensor"),
                KeyValue::string("host.name", host_name),
            ];
            if let Some(id) = &keys.instance_id {
                attributes.push(KeyValue::string("sensor.instance_id", id.as_str()));
            }
            resource_logs.push(ResourceLogs {
                resource: Some(Resource { attributes }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "agent-sensor".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    log_records: Vec::new(),
                }],
            });
            run = Some(keys.instance_id.clone());
        }
        let mut attributes = Vec::with_capacity(5);
        if let Some(action) = keys.action {
            attributes.push(KeyValue::string("event.action", action));
        }
        if let Some(agent) = keys.agent_id {
            attributes.push(KeyValue::string("identity.agent.id", agent));
        }
        if let Some(id) = keys.instance_id {
            attributes.push(KeyValue::string("chain.instance_id", id));
        }
        if let Some(sequence) = keys.sequence {
            attributes.push(KeyValue::int(
                "chain.sequence",
                i64::try_from(sequence).unwrap_or(i64::MAX),
            ));
        }
        if let Some(hash) = keys.hash {
            attributes.push(KeyValue::string("chain.hash", hash));
        }
        let record = LogRecord {
            time_unix_nano: keys.timestamp.as_deref().and_then(unix_nanos).unwrap_or(0),
            severity_number: SEVERITY_INFO,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(Value::String(String::from_utf8_lossy(line).into_owned())),
            }),
            attributes,
            observed_time_unix_nano: observed,
        };
        resource_logs.last_mut().expect("pushed above").scope_logs[0]
            .log_records
            .push(record);
    }
    ExportLogsServiceRequest { resource_logs }
}

/// Nanoseconds since the epoch of a record's time; `None` for anything else or before 1970
/// (OTLP's field is unsigned).
fn unix_nanos(t: &str) -> Option<u64> {
    crate::record::time::parse(t).and_then(|n| u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_is_a_log_record_with_its_line_as_body_grouped_by_run() {
        let a = br#"{"@timestamp":"2026-12-01T11:33:00.123456789Z","event":{"action":"exec"},"identity":{"agent":{"id":"bot"}},"chain":{"instance_id":"run-1","sequence":7,"prev_hash":"00","hash":"ab"}}"#;
        let b = br#"{"@timestamp":"2026-12-01T11:33:01Z","event":{"action":"sensor_start"},"chain":{"instance_id":"run-2","sequence":0,"prev_hash":"00","hash":"cd"}}"#;
        let records = [&a[..], b"\n", b, b"\n"].concat();
        let decoded =
            ExportLogsServiceRequest::decode(&request(&records, "host-1", 5).encode_to_vec()[..])
                .unwrap();
        assert_eq!(decoded.resource_logs.len(), 2, "one resource per run");
        let first = &decoded.resource_logs[0];
        assert_eq!(
            first.resource.as_ref().unwrap().attributes,
            vec![
                KeyValue::string("service.name", "agent-sensor"),
                KeyValue::string("host.name", "host-1"),
                KeyValue::string("sensor.instance_id", "run-1"),
            ]
        );
        let record = &first.scope_logs[0].log_records[0];
        assert_eq!(
            record.body.as_ref().unwrap().value,
            Some(Value::String(String::from_utf8(a.to_vec()).unwrap()))
        );
        assert_eq!(record.time_unix_nano, 1_796_124_780_123_456_789);
        assert_eq!(record.observed_time_unix_nano, 5);
        assert_eq!(
            record.attributes,
            vec![
                KeyValue::string("event.action", "exec"),
                KeyValue::string("identity.agent.id", "bot"),
                KeyValue::string("chain.instance_id", "run-1"),
                KeyValue::int("chain.sequence", 7),
                KeyValue::string("chain.hash", "ab"),
            ]
        );
        let second = &decoded.resource_logs[1].scope_logs[0].log_records[0];
        assert_eq!(second.time_unix_nano, 1_796_124_781_000_000_000);
    }

    #[test]
    fn reads_rfc3339_utc_times() {
        assert_eq!(unix_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_nanos("2000-03-01T00:00:00.5Z"),
            Some(951_868_800_500_000_000)
        );
        for bad in [
            "1970-01-01T00:00:00",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00.Z",
            "x",
        ] {
            assert_eq!(unix_nanos(bad), None, "{bad}");
        }
    }
}
