//! The NATS JetStream sink, speaking the NATS client protocol itself (plain text over TCP):
//! each record is published with `HPUB` to the configured subject, with a `Nats-Msg-Id` header
//! of its run and chain sequence (`<instance_id>-<sequence>`), and a reply subject on which
//! JetStream answers with its publish acknowledgement. A batch counts as delivered once every
//! record in it was acknowledged; after a failure the batch is published again, and JetStream
//! drops the records it already stored as duplicates (within the stream's
//! `duplicate_window`), so the stream holds each record once.
use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, Instant},
};

use super::Transport;

/// A JetStream publisher, connected between attempts or not.
pub struct Nats {
    hostport: String,
    subject: String,
    timeout: Duration,
    connection: Option<Connection>,
}

struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    /// This connection's reply subjects are `<inbox>.<n>`.
    inbox: String,
    /// The next reply number.
    next: u64,
}

impl Nats {
    /// A publisher to `subject` on the server at `hostport`; each connect, write and
    /// acknowledgement may take `timeout`.
    pub fn new(hostport: String, subject: String, timeout: Duration) -> Self {
        Self {
            hostport,
            subject,
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
        let mut reader = BufReader::new(stream.try_clone()?);
        let info = read_line(&mut reader)?;
        if !info.starts_with("INFO ") {
            return Err(protocol(format!(
                "expected INFO from the server, got {info:?}"
            )));
        }
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
        let mut writer = stream;
        write!(
            writer,
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"name\":\"agent-sensor\",\"lang\":\"rust\",\"version\":\"{}\"}}\r\nSUB {inbox}.* 1\r\nPING\r\n",
            env!("CARGO_PKG_VERSION")
        )?;
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
            writer,
            reader,
            inbox,
            next: 0,
        })
    }
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
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
        self.writer.write_all(&out)?;
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
            let line = read_line(&mut self.reader).map_err(|e| {
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
                Some("PING") => self.writer.write_all(b"PONG\r\n")?,
                Some("MSG" | "HMSG") => {
                    let hmsg = line.starts_with('H');
                    let fields: Vec<&str> = line.split(' ').collect();
                    // MSG <subject> <sid> [reply] <bytes>; HMSG ... <header bytes> <bytes>.
                    let total: usize = fields
                        .last()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| protocol(format!("a malformed message: {line:?}")))?;
                    let mut body = vec![0u8; total + 2];
                    self.reader.read_exact(&mut body)?;
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
        format!("nats:{} subject {}", self.hostport, self.subject)
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
