//! Just enough HTTP/1.1 for OTLP/HTTP: a `POST` on a kept-alive connection (plain or TLS) and
//! its answer: status, `Retry-After` (in seconds), whether the server closes, and the body
//! (by `Content-Length`, chunked, or up to the close), bounded in size.
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    time::Duration,
};

/// A connection the client can talk over.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A connection, buffered for reading answers.
pub type Connection = BufReader<Box<dyn Stream>>;

/// The longest answer body read: an OTLP answer is a few bytes, an error page a few KiB.
const MAX_BODY: usize = 1 << 20;

/// A server's answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// `Retry-After: <seconds>`.
    pub retry_after: Option<Duration>,
    /// The server closes the connection after this answer.
    pub close: bool,
    pub body: Vec<u8>,
}

/// Sends `body` to `path` and reads the answer.
pub fn post(
    connection: &mut Connection,
    host: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<Response> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: agent-sensor/{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let stream = connection.get_mut();
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_response(connection)
}

fn read_response(connection: &mut impl BufRead) -> io::Result<Response> {
    let status_line = line(connection)?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("not an HTTP answer: {status_line:?}")))?;
    let (mut length, mut chunked, mut close, mut retry_after) = (None, false, false, None);
    loop {
        let header = line(connection)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!("a malformed header: {header:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid(format!("Content-Length {value:?}")))?,
                );
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "retry-after" => retry_after = value.parse::<u64>().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = line(connection)?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("a chunk size {size_line:?}")))?;
            if size == 0 {
                while !line(connection)?.is_empty() {}
                break;
            }
            read_into(connection, size, &mut body)?;
            line(connection)?;
        }
    } else if let Some(length) = length {
        read_into(connection, length, &mut body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No length: the body ends with the connection.
        connection
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > MAX_BODY {
            return Err(invalid("an answer longer than 1 MiB".into()));
        }
        close = true;
    }
    Ok(Response {
        status,
        retry_after,
        close,
        body,
    })
}

fn read_into(connection: &mut impl BufRead, n: usize, body: &mut Vec<u8>) -> io::Result<()> {
    if body.len() + n > MAX_BODY {
        return Err(invalid("an answer longer than 1 MiB".into()));
    }
    let start = body.len();
    body.resize(start + n, 0);
    connection.read_exact(&mut body[start..])
}

/// One header line without its CRLF, at most 8 KiB.
fn line(connection: &mut impl BufRead) -> io::Result<String> {
    let mut bytes = Vec::new();
    connection.take(8192).read_until(b'\n', &mut bytes)?;
    if bytes.last() != Some(&b'\n') {
        return Err(if bytes.is_empty() {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )
        } else {
            invalid("an answer line longer than 8 KiB".into())
        });
    }
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|_| invalid("an answer line that is not UTF-8".into()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers_by_length_chunks_and_close() {
        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 503 Busy\r\nretry-after: 7\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n1;x=y\r\nz\r\n0\r\n\r\nHTTP/1.0 400 Bad\r\nConnection: close\r\n\r\nbad input"[..];
        let a = read_response(&mut r).unwrap();
        assert_eq!(
            (a.status, a.retry_after, a.close, &a.body[..]),
            (200, None, false, &b"abc"[..])
        );
        let b = read_response(&mut r).unwrap();
        assert_eq!(
            (b.status, b.retry_after, b.close, &b.body[..]),
            (503, Some(Duration::from_secs(7)), false, &b"xyz"[..])
        );
        let c = read_response(&mut r).unwrap();
        assert_eq!(
            (c.status, c.close, &c.body[..]),
            (400, true, &b"bad input"[..])
        );
        assert_eq!(
            read_response(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        for bad in [
            &b"SSH-2.0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        ] {
            let mut r = bad;
            assert_eq!(
                read_response(&mut r).unwrap_err().kind(),
                io::ErrorKind::InvalidData
            );
        }
    }
}
