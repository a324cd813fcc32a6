//! The socket stream sink: records as JSON Lines over a Unix or TCP stream socket, the form
//! Vector's and Fluent Bit's socket sources read.
//!
//! A stream has no acknowledgement of its own, so a batch counts as delivered once the
//! socket's send queue is empty (`SIOCOUTQ`): on a Unix socket, once the reader has read it;
//! on TCP, once the reader's kernel has acknowledged it. A reader that closed its end is
//! noticed before the next batch: the connection is dropped and the batch is sent again on a
//! new one. A Unix reader that closes without reading what was sent gets it again on its next
//! connection (records may then arrive twice, never not at all).
//!
//! A TCP reader that stops (or dies) loses what its kernel held unread, which TCP cannot tell
//! the sender. So over TCP the last [`REPLAY_BYTES`] of records delivered are kept in memory
//! and sent again first on every new connection after one was lost: the receiver gets them
//! twice when it had read them (drop exact duplicates), and misses none of them when it had
//! not. What a receiver loses beyond that window (its own in-memory queue, a receive buffer
//! grown larger) is not covered.
//!
//! Over TCP the stream may be TLS ([`super::tls`]): the handshake is made at connect, and a
//! batch counts as delivered once its encrypted bytes are acknowledged, as above. The syslog
//! sink sends its frames through the same stream.
use std::{
    io::{self, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    os::{
        fd::{AsRawFd as _, RawFd},
        unix::net::UnixStream,
    },
    time::{Duration, Instant},
};

use super::{
    Transport,
    tls::{Tls, TlsStream},
};
use crate::config::sinks::StreamAddress;

/// What a TCP stream sends again on a new connection: the most a receiving kernel commonly
/// holds unread (Linux's default `net.ipv4.tcp_rmem` maximum is 6 MiB).
pub const REPLAY_BYTES: usize = 8 << 20;

/// A connected stream, or none between attempts.
pub struct SocketStream {
    /// TCP only: the last batches delivered (whole records), at least the last
    /// [`REPLAY_BYTES`] of them, oldest first.
    replay: std::collections::VecDeque<Vec<u8>>,
    replay_len: usize,
    /// A connection was lost since the replay was last sent.
    lost_one: bool,
    address: StreamAddress,
    tls: Option<Tls>,
    timeout: Duration,
    connection: Option<Connection>,
}

enum Connection {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Connection {
    fn fd(&self) -> RawFd {
        match self {
            Self::Unix(s) => s.as_raw_fd(),
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Tls(s) => s.sock.as_raw_fd(),
        }
    }

    fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let result = match self {
            Self::Unix(s) => s.write_all(bytes),
            Self::Tcp(s) => s.write_all(bytes),
            Self::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        };
        result.map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the reader took nothing for {timeout:?}"),
                )
            } else {
                e
            }
        })
    }
}

impl SocketStream {
    /// A sink for `address` (with `tls`, over TCP only); each connect, handshake, write and
    /// acknowledgement may take `timeout`.
    pub fn new(address: StreamAddress, tls: Option<Tls>, timeout: Duration) -> Self {
        Self {
            replay: std::collections::VecDeque::new(),
            replay_len: 0,
            lost_one: false,
            address,
            tls,
            timeout,
            connection: None,
        }
    }

    fn connect(&self) -> io::Result<Connection> {
        let connection = match &self.address {
            StreamAddress::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(self.timeout))?;
                Connection::Unix(s)
            }
            StreamAddress::Tcp(hostport) => {
                let mut last = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{hostport} resolves to no address"),
                );
                let mut connected = None;
                for addr in hostport.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, self.timeout) {
                        Ok(s) => {
                            connected = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = connected.ok_or(last)?;
                s.set_write_timeout(Some(self.timeout))?;
                s.set_nodelay(true)?;
                match &self.tls {
                    Some(tls) => {
                        // The handshake reads: bounded like every other wait.
                        s.set_read_timeout(Some(self.timeout))?;
                        Connection::Tls(Box::new(tls.connect(s)?))
                    }
                    None => Connection::Tcp(s),
                }
            }
        };
        Ok(connection)
    }
}

impl Transport for SocketStream {
    fn describe(&self) -> String {
        match self.tls {
            Some(_) => format!("{} (TLS)", self.address),
            None => self.address.to_string(),
        }
    }

    fn deliver(&mut self, records: &[u8]) -> io::Result<()> {
        if let Some(c) = &self.connection
            && closed(c.fd(), libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR)
        {
            self.disconnect();
        }
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let c = self.connection.as_mut().expect("connected above");
        let unix = matches!(c, Connection::Unix(_));
        let replay = !unix && self.lost_one;
        let mut result = Ok(());
        if replay {
            for batch in &self.replay {
                result = c.write_all(batch, self.timeout);
                if result.is_err() {
                    break;
                }
            }
        }
        let result = result
            .and_then(|()| c.write_all(records, self.timeout))
            .and_then(|()| acknowledged(c.fd(), self.timeout, unix));
        if result.is_err() {
            self.disconnect();
            return result;
        }
        if replay {
            self.lost_one = false;
        }
        if !unix {
            self.replay.push_back(records.to_vec());
            self.replay_len += records.len();
            while self
                .replay
                .front()
                .is_some_and(|oldest| self.replay_len - oldest.len() >= REPLAY_BYTES)
            {
                let oldest = self.replay.pop_front().expect("checked");
                self.replay_len -= oldest.len();
            }
        }
        result
    }

    fn disconnect(&mut self) {
        if self.connection.take().is_some() {
            self.lost_one = true;
        }
    }
}

/// Whether the socket shows any of `events` now.
fn closed(fd: RawFd, events: i16) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&raw mut p, 1, 0) };
    n > 0 && p.revents & events != 0
}

/// Bytes in the socket's send queue: not yet read (Unix) or not yet acknowledged (TCP).
fn unsent(fd: RawFd) -> io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

/// Waits until the other side has everything written, or says why not.
fn acknowledged(fd: RawFd, timeout: Duration, unix: bool) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        let left = unsent(fd)?;
        // A Unix reader's close also empties the queue (its unread bytes are freed): only a
        // reader still there has read them.
        if unix && closed(fd, libc::POLLHUP | libc::POLLERR) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the reader closed the socket before taking every record",
            ));
        }
        if left == 0 {
            return Ok(());
        }
        if !unix && closed(fd, libc::POLLHUP | libc::POLLERR) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the connection broke with {left} bytes unacknowledged"),
            ));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{left} bytes not taken by the reader within {timeout:?}"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _};

    use super::*;

    #[test]
    fn delivers_lines_to_a_unix_reader_and_notices_it_went_away() {
        let dir = std::env::temp_dir().join(format!("agent-sensor-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut sink = SocketStream::new(
            StreamAddress::Unix(path.clone()),
            None,
            Duration::from_secs(5),
        );
        let (close, closing) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut lines = BufReader::new(s);
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            // Open until the sink has seen the line taken.
            closing.recv().unwrap();
            line
        });
        sink.deliver(b"{\"a\":1}\n").unwrap();
        close.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), "{\"a\":1}\n");
        // The reader is gone: the next batch is not counted as delivered.
        let e = sink.deliver(b"{\"a\":2}\n").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_new_tcp_connection_gets_the_last_records_again_first() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink = SocketStream::new(
            StreamAddress::Tcp(format!("127.0.0.1:{port}")),
            None,
            Duration::from_secs(5),
        );
        let (first_closed, wait_closed) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            // The first reader takes one line and stops (a receiver restarting) ...
            let (s, _) = listener.accept().unwrap();
            let mut first = String::new();
            BufReader::new(s).read_line(&mut first).unwrap();
            first_closed.send(()).unwrap();
            // ... the next one gets that line again, then the new one.
            let (s, _) = listener.accept().unwrap();
            let mut lines = BufReader::new(s);
            let mut second = String::new();
            lines.read_line(&mut second).unwrap();
            lines.read_line(&mut second).unwrap();
            (first, second)
        });
        sink.deliver(b"{\"a\":1}\n").unwrap();
        wait_closed.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        sink.deliver(b"{\"a\":2}\n").unwrap();
        let (first, second) = reader.join().unwrap();
        assert_eq!(first, "{\"a\":1}\n");
        assert_eq!(second, "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn a_reader_that_does_not_read_times_out_the_batch() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink = SocketStream::new(
            StreamAddress::Tcp(format!("127.0.0.1:{port}")),
            None,
            Duration::from_millis(300),
        );
        let holder = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        // More than the reader's receive buffer can hold: the queue does not empty.
        let big = vec![b'x'; 64 << 20];
        let e = sink.deliver(&big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        holder.join().unwrap();
    }
}
