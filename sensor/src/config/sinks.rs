//! The `[[sinks]]` tables: pipelines records are delivered to besides the output, each with
//! its own disk-backed queue. Parsed into plain data here; `crate::sink::forward` runs them.
//! Every mistake names the sink (`sinks[NAME]`, or `sinks[N]` before it has a name) and field.
use std::{
    collections::BTreeSet,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// One `[[sinks]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    queue_dir: Option<Spanned<String>>,
    queue_bytes: Option<Spanned<u64>>,
    queue_sync: Option<Spanned<String>>,
    batch_records: Option<Spanned<u32>>,
    timeout_ms: Option<Spanned<u32>>,
    retry_max_ms: Option<Spanned<u32>>,
    tls_ca_file: Option<Spanned<String>>,
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
    tls_server_name: Option<Spanned<String>>,
}

/// A pipeline records are delivered to, at least once, through a queue of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Names the sink in logs, health, `gap` records and its queue directory.
    pub name: String,
    /// What it delivers to.
    pub kind: SinkKind,
    /// The queue's directory: `<queue_dir>/<name>/`.
    pub queue_dir: PathBuf,
    /// Records queued and not yet acknowledged, in bytes, at most; beyond this they are
    /// dropped for this sink (they are still in the output) and a `gap` record says which.
    pub queue_bytes: u64,
    /// `queue_sync = "always"`: every append to the queue (and its cursor and loss files) is
    /// on disk before the output gets the records, so the queue survives a host crash, at an
    /// `fdatasync` per flushed batch; `"never"` (the default): the page cache's, which
    /// survives the sensor's crash, not the host's.
    pub queue_sync: bool,
    /// Records sent before waiting for an acknowledgement.
    pub batch_records: u32,
    /// How long a connect, a write or an acknowledgement may take before the attempt fails.
    pub timeout_ms: u32,
    /// The longest wait between attempts (the back-off doubles from 100 ms up to this).
    pub retry_max_ms: u32,
    /// TLS on the connection (`tls_*`; socket sinks over TCP and syslog sinks).
    pub tls: Option<TlsFiles>,
}

/// A sink's TLS settings, turned on by `tls_ca_file`: the server must present a certificate
/// that CA signed, for `server_name`; a client certificate is offered when configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM file of the CA (or CAs) the server's certificate must chain to; the system's
    /// roots are not used.
    pub ca_file: PathBuf,
    /// The client certificate chain (PEM) and its private key, both or neither.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; the address's host by default.
    pub server_name: Option<String>,
}

/// The kinds of sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// `type = "socket"`: JSON Lines over a stream socket, for collectors such as Vector or
    /// Fluent Bit.
    Socket(StreamAddress),
    /// `type = "syslog"`: RFC 5424 messages over TCP with octet-counted framing (RFC 6587),
    /// or over TLS (RFC 5425) with `tls_ca_file`.
    Syslog {
        /// `tcp:host:port` of a syslog receiver.
        hostport: String,
    },
    /// `type = "otlp"`: OTLP logs over HTTP/protobuf (`POST /v1/logs`), HTTPS with
    /// `tls_ca_file`.
    Otlp {
        /// `tcp:host:port` of an OTLP/HTTP receiver.
        hostport: String,
    },
    /// `type = "nats"`: NATS JetStream, each record published to `subject` with a
    /// `Nats-Msg-Id` of its run and sequence, and its publish acknowledgement awaited.
    Nats {
        /// `tcp:host:port` of a NATS server.
        hostport: String,
        /// The subject a JetStream stream captures.
        subject: String,
        /// How the sensor authenticates to the server, if it must.
        auth: Option<NatsAuth>,
    },
    /// `type = "file"`: JSON Lines appended to a file, for a pipeline that tails one; a batch
    /// is delivered once it is on disk (`fdatasync`).
    File {
        /// The file (a new one is created when it is moved away, as logrotate does).
        path: PathBuf,
    },
    /// `type = "stdout"`: JSON Lines on the sensor's standard output (a container's log, a
    /// pipe into a collector) while the output is a file or trail; a batch is delivered once
    /// the pipe or file behind standard output took it.
    Stdout,
}

/// How a NATS sink authenticates: the secret is read from a file at start (so the config
/// can be public and the secret a mounted Kubernetes Secret), never logged or recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsAuth {
    /// `user` and `password_file`.
    UserPassword {
        /// The user name.
        user: String,
        /// The file holding the password (its first line).
        password_file: PathBuf,
    },
    /// `token_file`: the file holding the server's authorization token (its first line).
    Token {
        /// The file.
        token_file: PathBuf,
    },
}

/// Where a socket sink connects (`address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamAddress {
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
    /// `tcp:host:port`.
    Tcp(String),
}

impl StreamAddress {
    /// `unix:PATH` (absolute) or `tcp:HOST:PORT`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(path) = text.strip_prefix("unix:") {
            return path
                .starts_with('/')
                .then(|| Self::Unix(PathBuf::from(path)));
        }
        let hostport = text.strip_prefix("tcp:")?;
        let (host, port) = hostport.rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
            .then(|| Self::Tcp(hostport.to_owned()))
    }
}

impl std::fmt::Display for StreamAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(hostport) => write!(f, "tcp:{hostport}"),
        }
    }
}

/// Where queues live unless `queue_dir` says otherwise.
pub const DEFAULT_QUEUE_DIR: &str = "/var/lib/agent-sensor/queue";

/// Checks every `[[sinks]]` table; relative queue directories are taken from the config
/// file's directory (`config_dir`).
pub(super) fn parse(
    raw: Vec<Spanned<RawSink>>,
    config_dir: Option<&Path>,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut sinks: Vec<SinkConfig> = Vec::new();
    for (index, spanned) in raw.into_iter().enumerate() {
        let table = spanned.span();
        let mut raw = spanned.into_inner();
        let Some(name) = raw.name.take() else {
            return Err(at(
                Some(table),
                format!("sinks[{index}].name is missing: every sink needs a name"),
            ));
        };
        let valid = !name.get_ref().is_empty()
            && name.get_ref().len() <= 64
            && name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(at(
                Some(name.span()),
                format!(
                    "sinks[{index}].name must be 1 to 64 letters, digits, `-` or `_` (it names the queue directory), not {:?}",
                    name.get_ref()
                ),
            ));
        }
        if !names.insert(name.get_ref().clone()) {
            return Err(at(
                Some(name.span()),
                format!("sinks[{index}].name {:?} is used twice", name.get_ref()),
            ));
        }
        let label = format!("sinks[{}]", name.get_ref());
        let field = |v: &Option<Spanned<u64>>, field: &str, range: Range<u64>, default: u64| {
            let Some(v) = v else { return Ok(default) };
            if range.contains(v.get_ref()) {
                Ok(*v.get_ref())
            } else {
                Err(at(
                    Some(v.span()),
                    format!(
                        "{label}.{field} must be between {} and {}",
                        range.start,
                        range.end - 1
                    ),
                ))
            }
        };
        let widen = |v: Option<Spanned<u32>>| {
            v.map(|v| {
                let span = v.span();
                Spanned::new(span, u64::from(v.into_inner()))
            })
        };
        let kind = parse_kind(&raw, &label, table.clone(), config_dir, at)?;
        if let Some(other) = sinks.iter().find(|s| match (&s.kind, &kind) {
            (SinkKind::Stdout, SinkKind::Stdout) => true,
            (SinkKind::File { path: a }, SinkKind::File { path: b }) => a == b,
            _ => false,
        }) {
            return Err(at(
                Some(table),
                format!(
                    "{label} writes where sinks[{}] already does: one sink per file, one on standard output",
                    other.name
                ),
            ));
        }
        let tls = parse_tls(&mut raw, &kind, &label, config_dir, at)?;
        let queue_bytes = field(
            &raw.queue_bytes,
            "queue_bytes",
            65_536..(1 << 40) + 1,
            1 << 28,
        )?;
        let batch_records = field(&widen(raw.batch_records), "batch_records", 1..100_001, 500)?;
        let timeout_ms = field(&widen(raw.timeout_ms), "timeout_ms", 100..600_001, 5000)?;
        let retry_max_ms = field(
            &widen(raw.retry_max_ms),
            "retry_max_ms",
            100..3_600_001,
            30_000,
        )?;
        let queue_sync = match raw
            .queue_sync
            .as_ref()
            .map(|v| (v.get_ref().as_str(), v.span()))
        {
            None | Some(("never", _)) => false,
            Some(("always", _)) => true,
            Some((other, span)) => {
                return Err(at(
                    Some(span),
                    format!("{label}.queue_sync must be \"always\" or \"never\", not {other:?}"),
                ));
            }
        };
        let queue_dir = match raw.queue_dir {
            Some(dir) if dir.get_ref().is_empty() => {
                return Err(at(
                    Some(dir.span()),
                    format!("{label}.queue_dir must not be empty"),
                ));
            }
            Some(dir) => {
                let dir = PathBuf::from(dir.into_inner());
                config_dir.map_or(dir.clone(), |base| base.join(&dir))
            }
            None => PathBuf::from(DEFAULT_QUEUE_DIR),
        };
        sinks.push(SinkConfig {
            name: name.into_inner(),
            kind,
            queue_dir,
            queue_bytes,
            queue_sync,
            batch_records: u32::try_from(batch_records).expect("checked above"),
            timeout_ms: u32::try_from(timeout_ms).expect("checked above"),
            retry_max_ms: u32::try_from(retry_max_ms).expect("checked above"),
            tls,
        });
    }
    Ok(sinks)
}

/// The `tls_*` fields: only with `tls_ca_file`, and only on a TCP connection the sensor
/// makes itself (socket over TCP, syslog, otlp, nats).
fn parse_tls(
    raw: &mut RawSink,
    kind: &SinkKind,
    label: &str,
    config_dir: Option<&Path>,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |field: &str, v: Option<Spanned<String>>| -> Result<Option<PathBuf>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        if v.get_ref().is_empty() {
            return Err(at(
                Some(v.span()),
                format!("{label}.{field} must not be empty"),
            ));
        }
        let p = PathBuf::from(v.into_inner());
        Ok(Some(config_dir.map_or(p.clone(), |base| base.join(&p))))
    };
    let Some(ca) = raw.tls_ca_file.take() else {
        let stray = [
            ("tls_cert_file", &raw.tls_cert_file),
            ("tls_key_file", &raw.tls_key_file),
            ("tls_server_name", &raw.tls_server_name),
        ];
        if let Some((field, Some(v))) = stray.into_iter().find(|(_, v)| v.is_some()) {
            return Err(at(
                Some(v.span()),
                format!(
                    "{label}.{field} needs tls_ca_file (TLS is on only with a CA to check the server against)"
                ),
            ));
        }
        return Ok(None);
    };
    match kind {
        SinkKind::Socket(StreamAddress::Tcp(_))
        | SinkKind::Syslog { .. }
        | SinkKind::Otlp { .. }
        | SinkKind::Nats { .. } => {}
        SinkKind::Socket(StreamAddress::Unix(_)) | SinkKind::File { .. } | SinkKind::Stdout => {
            return Err(at(
                Some(ca.span()),
                format!(
                    "{label}.tls_ca_file: TLS is for socket sinks over TCP, syslog, otlp and nats sinks"
                ),
            ));
        }
    }
    let ca_file = path("tls_ca_file", Some(ca))?.expect("given");
    let cert = raw.tls_cert_file.take();
    let key = raw.tls_key_file.take();
    let client = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            path("tls_cert_file", Some(cert))?.expect("given"),
            path("tls_key_file", Some(key))?.expect("given"),
        )),
        (Some(one), None) | (None, Some(one)) => {
            return Err(at(
                Some(one.span()),
                format!("{label}.tls_cert_file and tls_key_file go together: give both or neither"),
            ));
        }
    };
    let server_name = match raw.tls_server_name.take() {
        Some(name)
            if name.get_ref().is_empty()
                || !name.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
        {
            return Err(at(
                Some(name.span()),
                format!(
                    "{label}.tls_server_name must be a DNS name or an IP address, not {:?}",
                    name.get_ref()
                ),
            ));
        }
        Some(name) => Some(name.into_inner()),
        None => None,
    };
    Ok(Some(TlsFiles {
        ca_file,
        client,
        server_name,
    }))
}

/// A file named in a sink (`path`, `password_file`, `token_file`): not empty; relative to
/// the config file's directory.
fn sink_file(
    v: &Spanned<String>,
    field: &str,
    label: &str,
    config_dir: Option<&Path>,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<PathBuf, ConfigError> {
    if v.get_ref().is_empty() || v.get_ref().ends_with('/') {
        return Err(at(
            Some(v.span()),
            format!("{label}.{field} must name a file, not {:?}", v.get_ref()),
        ));
    }
    let p = PathBuf::from(v.get_ref());
    Ok(config_dir.map_or(p.clone(), |base| base.join(&p)))
}

/// The NATS credentials: `user` with `password_file`, or `token_file`, or none.
fn parse_nats_auth(
    raw: &RawSink,
    label: &str,
    config_dir: Option<&Path>,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<Option<NatsAuth>, ConfigError> {
    match (&raw.user, &raw.password_file, &raw.token_file) {
        (None, None, None) => Ok(None),
        (Some(user), Some(password), None) => {
            if user.get_ref().is_empty() || !user.get_ref().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(at(
                    Some(user.span()),
                    format!("{label}.user must be printable ASCII without spaces"),
                ));
            }
            Ok(Some(NatsAuth::UserPassword {
                user: user.get_ref().clone(),
                password_file: sink_file(password, "password_file", label, config_dir, at)?,
            }))
        }
        (None, None, Some(token)) => Ok(Some(NatsAuth::Token {
            token_file: sink_file(token, "token_file", label, config_dir, at)?,
        })),
        (_, _, Some(token)) => Err(at(
            Some(token.span()),
            format!("{label}.token_file goes alone: a token, or user with password_file"),
        )),
        (Some(one), None, None) | (None, Some(one), None) => Err(at(
            Some(one.span()),
            format!("{label}.user and password_file go together: give both or neither"),
        )),
    }
}

fn parse_kind(
    raw: &RawSink,
    label: &str,
    table: Range<usize>,
    config_dir: Option<&Path>,
    at: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
) -> Result<SinkKind, ConfigError> {
    let kind = raw.kind.as_ref().map(|k| k.get_ref().as_str());
    if let (Some(path), Some(k)) = (&raw.path, kind)
        && k != "file"
    {
        return Err(at(
            Some(path.span()),
            format!("{label}.path is for type = \"file\""),
        ));
    }
    if let (Some(address), Some(k @ ("file" | "stdout"))) = (&raw.address, kind) {
        return Err(at(
            Some(address.span()),
            format!("{label}.address is not for type = \"{k}\""),
        ));
    }
    let credentials = [&raw.user, &raw.password_file, &raw.token_file];
    if let (Some(Some(field)), Some(k)) = (credentials.iter().find(|v| v.is_some()), kind)
        && k != "nats"
    {
        return Err(at(
            Some(field.span()),
            format!("{label}: user, password_file and token_file are for type = \"nats\""),
        ));
    }
    let address = || {
        let Some(address) = &raw.address else {
            return Err(at(
                Some(table.clone()),
                format!(
                    "{label}.address is missing: \"unix:/path/to/socket\" or \"tcp:host:port\""
                ),
            ));
        };
        StreamAddress::parse(address.get_ref())
            .map(|a| (a, address.span()))
            .ok_or_else(|| {
                at(
                    Some(address.span()),
                    format!(
                        "{label}.address must be \"unix:/absolute/path\" or \"tcp:host:port\", not {:?}",
                        address.get_ref()
                    ),
                )
            })
    };
    if let (Some(subject), Some(k)) = (&raw.subject, kind)
        && k != "nats"
    {
        return Err(at(
            Some(subject.span()),
            format!("{label}.subject is for type = \"nats\""),
        ));
    }
    match kind {
        None => Err(at(
            Some(table),
            format!(
                "{label}.type is missing: \"socket\", \"syslog\", \"otlp\", \"nats\", \"file\" or \"stdout\""
            ),
        )),
        Some("file") => {
            let Some(path) = &raw.path else {
                return Err(at(
                    Some(table),
                    format!("{label}.path is missing: the file the records are appended to"),
                ));
            };
            Ok(SinkKind::File {
                path: sink_file(path, "path", label, config_dir, at)?,
            })
        }
        Some("stdout") => Ok(SinkKind::Stdout),
        Some("socket") => Ok(SinkKind::Socket(address()?.0)),
        Some("syslog") => match address()? {
            (StreamAddress::Tcp(hostport), _) => Ok(SinkKind::Syslog { hostport }),
            (StreamAddress::Unix(_), span) => Err(at(
                Some(span),
                format!("{label}.address must be \"tcp:host:port\" for a syslog receiver"),
            )),
        },
        Some("otlp") => match address()? {
            (StreamAddress::Tcp(hostport), _) => Ok(SinkKind::Otlp { hostport }),
            (StreamAddress::Unix(_), span) => Err(at(
                Some(span),
                format!("{label}.address must be \"tcp:host:port\" for an OTLP/HTTP receiver"),
            )),
        },
        Some("nats") => {
            let hostport = match address()? {
                (StreamAddress::Tcp(hostport), _) => hostport,
                (StreamAddress::Unix(_), span) => {
                    return Err(at(
                        Some(span),
                        format!("{label}.address must be \"tcp:host:port\" for a NATS server"),
                    ));
                }
            };
            let Some(subject) = &raw.subject else {
                return Err(at(
                    Some(table),
                    format!("{label}.subject is missing: the subject a JetStream stream captures"),
                ));
            };
            let valid = !subject.get_ref().is_empty()
                && subject.get_ref().split('.').all(|t| {
                    !t.is_empty() && t != "*" && t != ">" && t.bytes().all(|b| b.is_ascii_graphic())
                });
            if !valid {
                return Err(at(
                    Some(subject.span()),
                    format!(
                        "{label}.subject must be a NATS subject without wildcards (tokens of printable characters between dots), not {:?}",
                        subject.get_ref()
                    ),
                ));
            }
            Ok(SinkKind::Nats {
                hostport,
                subject: subject.get_ref().clone(),
                auth: parse_nats_auth(raw, label, config_dir, at)?,
            })
        }
        Some(other) => Err(at(
            raw.kind.as_ref().map(Spanned::span),
            format!(
                "{label}.type must be \"socket\", \"syslog\", \"otlp\", \"nats\", \"file\" or \"stdout\", not {other:?}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/agent-sensor/sensor.toml"), text)
    }

    #[test]
    fn reads_every_sink_setting() {
        let c = parse(
            "[[sinks]]\nname = \"vector\"\ntype = \"socket\"\naddress = \"unix:/run/vector.sock\"\n\
             queue_dir = \"queues\"\nqueue_bytes = 65536\nqueue_sync = \"always\"\nbatch_records = 10\ntimeout_ms = 100\n\
             retry_max_ms = 1000\n\
             [[sinks]]\nname = \"relay-2\"\ntype = \"socket\"\naddress = \"tcp:127.0.0.1:9000\"\n\
             [[sinks]]\nname = \"js\"\ntype = \"nats\"\naddress = \"tcp:127.0.0.1:4222\"\nsubject = \"evidence.host1\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sinks,
            vec![
                SinkConfig {
                    name: "vector".into(),
                    kind: SinkKind::Socket(StreamAddress::Unix("/run/vector.sock".into())),
                    queue_dir: "/etc/agent-sensor/queues".into(),
                    queue_bytes: 65_536,
                    queue_sync: true,
                    batch_records: 10,
                    timeout_ms: 100,
                    retry_max_ms: 1000,
                    tls: None,
                },
                SinkConfig {
                    name: "relay-2".into(),
                    kind: SinkKind::Socket(StreamAddress::Tcp("127.0.0.1:9000".into())),
                    queue_dir: DEFAULT_QUEUE_DIR.into(),
                    queue_bytes: 1 << 28,
                    queue_sync: false,
                    batch_records: 500,
                    timeout_ms: 5000,
                    retry_max_ms: 30_000,
                    tls: None,
                },
                SinkConfig {
                    name: "js".into(),
                    kind: SinkKind::Nats {
                        hostport: "127.0.0.1:4222".into(),
                        subject: "evidence.host1".into(),
                        auth: None,
                    },
                    queue_dir: DEFAULT_QUEUE_DIR.into(),
                    queue_bytes: 1 << 28,
                    queue_sync: false,
                    batch_records: 500,
                    timeout_ms: 5000,
                    retry_max_ms: 30_000,
                    tls: None,
                },
            ]
        );
        assert!(parse("").unwrap().sinks.is_empty());
    }

    #[test]
    fn names_the_sink_and_field_of_each_mistake() {
        let sink = "[[sinks]]\nname = \"v\"\ntype = \"socket\"\naddress = \"unix:/s\"\n";
        let cases = [
            (
                "[[sinks]]\ntype = \"socket\"\n".to_owned(),
                1,
                "sinks[0].name is missing",
            ),
            (
                "[[sinks]]\nname = \"a/b\"\n".to_owned(),
                2,
                "sinks[0].name must be",
            ),
            (
                format!("{sink}{sink}"),
                6,
                "sinks[1].name \"v\" is used twice",
            ),
            (
                "[[sinks]]\nname = \"v\"\ntype = \"kafka\"\n".to_owned(),
                3,
                "sinks[v].type must be \"socket\", \"syslog\", \"otlp\", \"nats\", \"file\" or \"stdout\", not \"kafka\"",
            ),
            (
                "[[sinks]]\nname = \"v\"\n".to_owned(),
                1,
                "sinks[v].type is missing",
            ),
            (
                "[[sinks]]\nname = \"v\"\ntype = \"socket\"\n".to_owned(),
                1,
                "sinks[v].address is missing",
            ),
            (
                "[[sinks]]\nname = \"v\"\ntype = \"socket\"\naddress = \"tcp:host\"\n".to_owned(),
                4,
                "sinks[v].address must be",
            ),
            (
                "[[sinks]]\nname = \"v\"\ntype = \"socket\"\naddress = \"unix:rel\"\n".to_owned(),
                4,
                "sinks[v].address must be",
            ),
            (
                format!("{sink}queue_bytes = 10\n"),
                5,
                "sinks[v].queue_bytes must be between 65536",
            ),
            (
                format!("{sink}batch_records = 0\n"),
                5,
                "sinks[v].batch_records",
            ),
            (format!("{sink}timeout_ms = 5\n"), 5, "sinks[v].timeout_ms"),
            (
                format!("{sink}retry_max_ms = 5\n"),
                5,
                "sinks[v].retry_max_ms",
            ),
            (format!("{sink}queue_dir = \"\"\n"), 5, "sinks[v].queue_dir"),
            (
                format!("{sink}queue_sync = \"sometimes\"\n"),
                5,
                "sinks[v].queue_sync must be \"always\" or \"never\", not \"sometimes\"",
            ),
            (format!("{sink}adress = \"x\"\n"), 5, "adress"),
            (format!("{sink}subject = \"x\"\n"), 5, "sinks[v].subject is for type = \"nats\""),
            (
                "[[sinks]]\nname = \"n\"\ntype = \"nats\"\naddress = \"unix:/s\"\n".to_owned(),
                4,
                "sinks[n].address must be \"tcp:host:port\" for a NATS server",
            ),
            (
                "[[sinks]]\nname = \"n\"\ntype = \"nats\"\naddress = \"tcp:h:4222\"\n".to_owned(),
                1,
                "sinks[n].subject is missing",
            ),
            (
                "[[sinks]]\nname = \"n\"\ntype = \"nats\"\naddress = \"tcp:h:4222\"\nsubject = \"a.*\"\n".to_owned(),
                5,
                "sinks[n].subject must be a NATS subject",
            ),
        ];
        for (text, line, reason) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line.map(|l| l.0), Some(line), "{text}: {e}");
            assert!(e.message.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn reads_syslog_and_tls_settings() {
        let c = parse(
            "[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"tcp:logs.example:6514\"\n\
             tls_ca_file = \"ca.pem\"\ntls_cert_file = \"/etc/c.pem\"\ntls_key_file = \"k.pem\"\n\
             tls_server_name = \"collector.example\"\n\
             [[sinks]]\nname = \"plain\"\ntype = \"syslog\"\naddress = \"tcp:127.0.0.1:514\"\n\
             [[sinks]]\nname = \"otel\"\ntype = \"otlp\"\naddress = \"tcp:127.0.0.1:4318\"\ntls_ca_file = \"/ca.pem\"\n\
             [[sinks]]\nname = \"vector\"\ntype = \"socket\"\naddress = \"tcp:127.0.0.1:9000\"\ntls_ca_file = \"/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sinks[0].kind,
            SinkKind::Syslog {
                hostport: "logs.example:6514".into()
            }
        );
        assert_eq!(
            c.sinks[0].tls,
            Some(TlsFiles {
                ca_file: "/etc/agent-sensor/ca.pem".into(),
                client: Some(("/etc/c.pem".into(), "/etc/agent-sensor/k.pem".into())),
                server_name: Some("collector.example".into()),
            })
        );
        assert_eq!(c.sinks[1].tls, None);
        assert_eq!(
            c.sinks[2].kind,
            SinkKind::Otlp {
                hostport: "127.0.0.1:4318".into()
            }
        );
        assert!(c.sinks[2].tls.is_some());
        assert_eq!(
            c.sinks[3].tls,
            Some(TlsFiles {
                ca_file: "/ca.pem".into(),
                client: None,
                server_name: None,
            })
        );
        let cases = [
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"unix:/dev/log\"\n",
                4,
                "sinks[s].address must be \"tcp:host:port\" for a syslog receiver",
            ),
            (
                "[[sinks]]\nname = \"o\"\ntype = \"otlp\"\naddress = \"unix:/s\"\n",
                4,
                "sinks[o].address must be \"tcp:host:port\" for an OTLP/HTTP receiver",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp:h:1\"\ntls_cert_file = \"c\"\n",
                5,
                "sinks[s].tls_cert_file needs tls_ca_file",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp:h:1\"\ntls_ca_file = \"a\"\ntls_key_file = \"k\"\n",
                6,
                "sinks[s].tls_cert_file and tls_key_file go together",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp:h:1\"\ntls_ca_file = \"\"\n",
                5,
                "sinks[s].tls_ca_file must not be empty",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp:h:1\"\ntls_ca_file = \"a\"\ntls_server_name = \"a b\"\n",
                6,
                "sinks[s].tls_server_name must be a DNS name",
            ),
            (
                "[[sinks]]\nname = \"u\"\ntype = \"socket\"\naddress = \"unix:/s\"\ntls_ca_file = \"a\"\n",
                5,
                "sinks[u].tls_ca_file: TLS is for socket sinks over TCP, syslog, otlp and nats sinks",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"tcp:h:1\"\nsubject = \"a\"\n",
                5,
                "sinks[s].subject is for type = \"nats\"",
            ),
        ];
        for (text, line, reason) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line.map(|l| l.0), Some(line), "{text}: {e}");
            assert!(e.message.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn reads_file_stdout_and_nats_credentials() {
        let c = parse(
            "[[sinks]]\nname = \"copy\"\ntype = \"file\"\npath = \"copy.jsonl\"\n\
             [[sinks]]\nname = \"logs\"\ntype = \"stdout\"\n\
             [[sinks]]\nname = \"js\"\ntype = \"nats\"\naddress = \"tcp:h:4222\"\nsubject = \"e\"\n\
             user = \"sensor\"\npassword_file = \"/run/secrets/nats\"\ntls_ca_file = \"/ca.pem\"\n\
             [[sinks]]\nname = \"js2\"\ntype = \"nats\"\naddress = \"tcp:h:4222\"\nsubject = \"e\"\n\
             token_file = \"token\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sinks[0].kind,
            SinkKind::File {
                path: "/etc/agent-sensor/copy.jsonl".into()
            }
        );
        assert_eq!(c.sinks[1].kind, SinkKind::Stdout);
        assert_eq!(
            c.sinks[2].kind,
            SinkKind::Nats {
                hostport: "h:4222".into(),
                subject: "e".into(),
                auth: Some(NatsAuth::UserPassword {
                    user: "sensor".into(),
                    password_file: "/run/secrets/nats".into()
                }),
            }
        );
        assert!(c.sinks[2].tls.is_some());
        assert_eq!(
            c.sinks[3].kind,
            SinkKind::Nats {
                hostport: "h:4222".into(),
                subject: "e".into(),
                auth: Some(NatsAuth::Token {
                    token_file: "/etc/agent-sensor/token".into()
                }),
            }
        );
        let nats =
            "[[sinks]]\nname = \"n\"\ntype = \"nats\"\naddress = \"tcp:h:1\"\nsubject = \"a\"\n";
        let cases = [
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\n".to_owned(),
                1,
                "sinks[f].path is missing",
            ),
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"/var/log/\"\n".to_owned(),
                4,
                "sinks[f].path must name a file",
            ),
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"/a\"\naddress = \"unix:/s\"\n"
                    .to_owned(),
                5,
                "sinks[f].address is not for type = \"file\"",
            ),
            (
                "[[sinks]]\nname = \"s\"\ntype = \"socket\"\naddress = \"unix:/s\"\npath = \"/a\"\n"
                    .to_owned(),
                5,
                "sinks[s].path is for type = \"file\"",
            ),
            (
                "[[sinks]]\nname = \"a\"\ntype = \"file\"\npath = \"/x\"\n\
                 [[sinks]]\nname = \"b\"\ntype = \"file\"\npath = \"/x\"\n"
                    .to_owned(),
                5,
                "sinks[b] writes where sinks[a] already does",
            ),
            (
                "[[sinks]]\nname = \"a\"\ntype = \"stdout\"\n[[sinks]]\nname = \"b\"\ntype = \"stdout\"\n"
                    .to_owned(),
                4,
                "sinks[b] writes where sinks[a] already does",
            ),
            (
                "[[sinks]]\nname = \"o\"\ntype = \"stdout\"\ntls_ca_file = \"/ca\"\n".to_owned(),
                4,
                "sinks[o].tls_ca_file: TLS is for",
            ),
            (
                "[[sinks]]\nname = \"o\"\ntype = \"stdout\"\ntoken_file = \"/t\"\n".to_owned(),
                4,
                "sinks[o]: user, password_file and token_file are for type = \"nats\"",
            ),
            (format!("{nats}user = \"u\"\n"), 6, "sinks[n].user and password_file go together"),
            (
                format!("{nats}user = \"u\"\npassword_file = \"p\"\ntoken_file = \"t\"\n"),
                8,
                "sinks[n].token_file goes alone",
            ),
            (
                format!("{nats}user = \"a b\"\npassword_file = \"p\"\n"),
                6,
                "sinks[n].user must be printable",
            ),
        ];
        for (text, line, reason) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line.map(|l| l.0), Some(line), "{text}: {e}");
            assert!(e.message.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn reads_addresses() {
        assert_eq!(
            StreamAddress::parse("tcp:[::1]:5140"),
            Some(StreamAddress::Tcp("[::1]:5140".into()))
        );
        for bad in ["tcp::5140", "tcp:h:0", "tcp:h:x", "udp:h:1", "unix:", "/s"] {
            assert_eq!(StreamAddress::parse(bad), None, "{bad}");
        }
        assert_eq!(
            StreamAddress::parse("unix:/run/v.sock")
                .unwrap()
                .to_string(),
            "unix:/run/v.sock"
        );
    }
}
