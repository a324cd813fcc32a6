//! The NATS JetStream sink, speaking the NATS client protocol itself (over TCP, or TLS when
//! configured: the connection is upgraded after the server's `INFO`, as NATS does; with a
//! user and password or a token when the server asks for them):
//! each record is published with `HPUB` to the configured subject, with a `Nats-Msg-Id` header
//! of its run and chain sequence (`<instance_id>-<sequence>`), and a reply subject on which
//! JetStream answers with its publish acknowledgement. A batch counts as delivered once every
//! record in it was acknowledged; after a failure the batch is published again, and JetStream
//! drops the records it already stored as duplicates (within the stream's
//! `duplicate_window`), so the stream holds each record once.
use std::{
    io::{self, BufRead as _, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, Instant},
};

use super::{Transport, tls::Tls};
use crate::config::sinks::NatsAuth;

/// A JetStream publisher, connected between attempts or not.
pub struct Nats {
    hostport: String,
    subject: String,
    credentials: Option<Credentials>,
    tls: Option<Tls>,
    timeout: Duration,
    connection: Option<Connection>,
}

/// The secret a NATS server is given in `CONNECT`, read from its file at start. Never logged
/// (no `Debug`).
pub enum Credentials {
    /// `user` and the password from `password_file`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// The token from `token_file`.
    Token(String),
}

impl Credentials {
    /// Reads the secret's file (its first line); the error names the field and the file.
    pub fn read(auth: &NatsAuth) -> Result<Self, String> {
        let secret = |field: &str, file: &std::path::Path| {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{field} {}: {e}", file.display()))?;
            let first = text.lines().next().unwrap_or("");
            if first.is_empty() {
                return Err(format!(
                    "{field} {}: the first line is empty",
                    file.display()
                ));
            }
            Ok(first.to_owned())
        };
        Ok(match auth {
            NatsAuth::UserPassword {
                user,
                password_file,
            } => Self::UserPassword {
                user: user.clone(),
                password: secret("password_file", password_file)?,
            },
            NatsAuth::Token { token_file } => Self::Token(secret("token_file", token_file)?),
        })
    }

    /// The `CONNECT` fields, JSON-escaped, with a leading comma.
    fn connect_fields(&self) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
        match self {
            Self::UserPassword { user, password } => {
                format!(",\"user\":{},\"pass\":{}", quote(user), quote(password))
            }
            Self::Token(token) => format!(",\"auth_token\":{}", quote(token)),
        }
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Stream: Read + Write + Send {}
impl<S: Read + Write + Send> Stream for S {}

struct Connection {
    /// Read through the buffer, written through `get_mut`.
    stream: BufReader<Box<dyn Stream>>,
    /// This connection's reply subjects are `<inbox>.<n>`.
    inbox: String,
    /// The next reply number.
    next: u64,
}

impl Nats {
    /// A publisher to `subject` on the server at `hostport`; each connect, write and
    /// acknowledgement may take `timeout`.
    pub fn new(
        hostport: String,
        subject: String,
        credentials: Option<Credentials>,
        tls: Option<Tls>,
        timeout: Duration,
    ) -> Self {
        Self {
            hostport,
            subject,
            credentials,
            tls,
            timeout,
            connection: None,
        }
    }

    fn connect(&self) -> io::Result<Connection> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.hostport),
        );
        let mut stream = None;
        for addr in self.hostport.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(last)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;
        // INFO comes in plain text, byte by byte so nothing of a TLS handshake is read ahead.
        let info = read_info(&stream)?;
        if !info.contains("\"headers\":true") {
            return Err(protocol(
                "the server does not support message headers (NATS 2.2 or later is needed)"
                    .to_owned(),
            ));
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let inbox = format!("_INBOX.agent-sensor.{:x}{nonce:x}", std::process::id());
        let offers_tls =
            info.contains("\"tls_required\":true") || info.contains("\"tls_available\":true");
        let stream: Box<dyn Stream> = match &self.tls {
            Some(tls) if offers_tls => Box::new(tls.connect(stream)?),
            Some(_) => {
                return Err(protocol(
                    "the server does not offer TLS, and tls_ca_file asks for it".to_owned(),
                ));
            }
            None if info.contains("\"tls_required\":true") => {
                return Err(protocol(
                    "the server requires TLS: set tls_ca_file to the CA of its certificate"
                        .to_owned(),
                ));
            }
            None => Box::new(stream),
        };
        if info.contains("\"auth_required\":true") && self.credentials.is_none() {
            return Err(protocol(
                "the server requires authentication: set user and password_file, or token_file"
                    .to_owned(),
            ));
        }
        let auth = self
            .credentials
            .as_ref()
            .map(Credentials::connect_fields)
            .unwrap_or_default();
        let mut reader = BufReader::new(stream);
        write!(
            reader.get_mut(),
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"tls_required\":{},\"name\":\"agent-sensor\",\"lang\":\"rust\",\"version\":\"{}\"{auth}}}\r\nSUB {inbox}.* 1\r\nPING\r\n",
            self.tls.is_some(),
            env!("CARGO_PKG_VERSION")
        )?;
        reader.get_mut().flush()?;
        loop {
            let line = read_line(&mut reader)?;
            if line == "PONG" {
                break;
            }
            if let Some(e) = line.strip_prefix("-ERR") {
                return Err(protocol(format!("the server refused the connection:{e}")));
            }
        }
        Ok(Connection {
            stream: reader,
            inbox,
            next: 0,
        })
    }
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The server's `INFO` line, read without buffering ahead (TLS may follow it).
fn read_info(mut stream: &TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 64 << 10 {
            return Err(protocol(
                "the server's INFO is longer than 64 KiB".to_owned(),
            ));
        }
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
    if line.starts_with("INFO ") {
        Ok(line)
    } else {
        Err(protocol(format!(
            "expected INFO from the server, got {line:?}"
        )))
    }
}

fn read_line(reader: &mut BufReader<Box<dyn Stream>>) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `<instance_id>-<sequence>` from the record's chain block (its last `instance_id`: a value
/// inside the record cannot contain the unescaped quotes of a key).
pub fn message_id(line: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"instance_id\":\"";
    let at = line.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let rest = &line[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let instance = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end..].strip_prefix(b"\",\"sequence\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let sequence = std::str::from_utf8(&rest[..digits]).ok()?;
    (!sequence.is_empty()
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| format!("{instance}-{sequence}"))
}

impl Connection {
    /// Publishes every record and waits for each acknowledgement.
    fn publish(&mut self, subject: &str, records: &[u8], timeout: Duration) -> io::Result<()> {
        let first = self.next;
        let mut out = Vec::with_capacity(records.len() + records.len() / 4);
        for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let id = message_id(line)
                .ok_or_else(|| protocol("a queued record has no chain block".to_owned()))?;
            let header = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
            write!(
                out,
                "HPUB {subject} {}.{} {} {}\r\n{header}",
                self.inbox,
                self.next,
                header.len(),
                header.len() + line.len()
            )?;
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            self.next += 1;
        }
        let writer = self.stream.get_mut();
        writer.write_all(&out)?;
        writer.flush()?;
        let count = self.next - first;
        let mut acked = vec![false; usize::try_from(count).expect("a batch fits in memory")];
        let mut missing = count;
        let deadline = Instant::now() + timeout;
        while missing > 0 {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{missing} of {count} records not acknowledged within {timeout:?}"),
                ));
            }
            let line = read_line(&mut self.stream).map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{missing} of {count} records not acknowledged within {timeout:?}"),
                    )
                } else {
                    e
                }
            })?;
            let mut words = line.split(' ');
            match words.next() {
                Some("PING") => {
                    let writer = self.stream.get_mut();
                    writer.write_all(b"PONG\r\n")?;
                    writer.flush()?;
                }
                Some("MSG" | "HMSG") => {
                    let hmsg = line.starts_with('H');
                    let fields: Vec<&str> = line.split(' ').collect();
                    // MSG <subject> <sid> [reply] <bytes>; HMSG ... <header bytes> <bytes>.
                    let total: usize = fields
                        .last()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| protocol(format!("a malformed message: {line:?}")))?;
                    let mut body = vec![0u8; total + 2];
                    self.stream.read_exact(&mut body)?;
                    body.truncate(total);
                    let n = fields
                        .get(1)
                        .and_then(|s| s.rsplit('.').next())
                        .and_then(|n| n.parse::<u64>().ok());
                    let Some(i) = n.filter(|n| (first..self.next).contains(n)) else {
                        continue; // an answer to an earlier, abandoned batch
                    };
                    if hmsg {
                        // Only a status comes with headers here: 503, no stream listens.
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!(
                                "no JetStream stream captures subject {subject} ({})",
                                String::from_utf8_lossy(&body).lines().next().unwrap_or("")
                            ),
                        ));
                    }
                    let answer = String::from_utf8_lossy(&body);
                    if answer.contains("\"error\"") {
                        return Err(io::Error::other(format!(
                            "JetStream refused a record: {answer}"
                        )));
                    }
                    let slot = &mut acked[usize::try_from(i - first).expect("within the batch")];
                    if !*slot {
                        *slot = true;
                        missing -= 1;
                    }
                }
                Some("-ERR") => return Err(protocol(format!("the server said {line}"))),
                _ => {} // PONG, +OK, INFO
            }
        }
        Ok(())
    }
}

impl Transport for Nats {
    fn describe(&self) -> String {
        let scheme = if self.tls.is_some() {
            "nats+tls"
        } else {
            "nats"
        };
        format!("{scheme}:{} subject {}", self.hostport, self.subject)
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let c = self.connection.as_mut().expect("connected above");
        let result = c.publish(&self.subject, records, self.timeout);
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    fn disconnect(&mut self) {
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_the_chain_blocks_run_and_sequence() {
        let mut chain = crate::evidence::chain::Chain::new("0b5e-77");
        let mut out = Vec::new();
        // A value that looks like a chain key is escaped inside the record.
        out.extend_from_slice(
            br#"{"sensor":{"instance_id":"0b5e-77"},"x":"\"instance_id\":\"forged\",\"sequence\":9"}"#,
        );
        chain.seal(&mut out, 0);
        let start = out.len();
        out.extend_from_slice(br#"{"a":1}"#);
        chain.seal(&mut out, start);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(message_id(lines[0]).as_deref(), Some("0b5e-77-0"));
        assert_eq!(message_id(lines[1]).as_deref(), Some("0b5e-77-1"));
        assert_eq!(message_id(b"{\"a\":1}"), None);
    }
}
