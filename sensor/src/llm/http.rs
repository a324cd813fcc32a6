//! HTTP/1.1 messages from one direction of a captured byte stream: the head (request or status
//! line and headers), then the body by its framing (`Content-Length`, `chunked`, or until the
//! connection ends). Bytes the capture could not copy (a call longer than the agent's bound)
//! arrive as a count of missing bytes: they still advance the framing, so the messages after a
//! cut one are found, and the cut message says it is incomplete.

/// Most bytes of a head (request line and headers) waited for before the stream is given up.
const HEAD_CAP: usize = 64 * 1024;
/// Most body bytes kept of one message; the rest is counted.
pub const BODY_CAP: usize = 4 * 1024 * 1024;

/// One parsed message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request: method; response: empty.
    pub method: String,
    /// Request: the target (path and query); response: empty.
    pub target: String,
    /// Response: the status code; request: 0.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as captured (chunked framing removed), up to [`BODY_CAP`].
    pub body: Vec<u8>,
    /// The body's length on the wire, captured or not (chunk framing excluded).
    pub body_len: u64,
    /// Some of the body was not captured (`body` has holes or is cut).
    pub truncated: bool,
    /// The message ended before its framing said it would (the stream was cut off).
    pub incomplete: bool,
    /// When its first byte was seen (CLOCK_BOOTTIME ns).
    pub first_ns: u64,
    /// When its last byte was seen.
    pub last_ns: u64,
    /// Already handed on before its framing ended (a stream whose final event came first).
    pub early: bool,
    /// The HTTP version: `1.0`, `1.1` or `2`.
    pub version: &'static str,
}

impl Message {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// This many bytes remain.
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data remain, then its CRLF.
    Chunk(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    /// Until the stream ends.
    UntilClose,
}

/// Why a stream cannot be parsed as HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The first bytes are not an HTTP/1.x request or response (HTTP/2's preface, another
    /// protocol).
    NotHttp1,
    /// A head longer than the parser waits for, or malformed.
    BadHead,
    /// A chunk-size line that is not hex.
    BadChunk,
    /// Bytes of a head were not captured.
    HeadNotCaptured,
}

impl StreamError {
    /// A short name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotHttp1 => "not_http",
            Self::BadHead => "http1_head",
            Self::BadChunk => "http1_chunk",
            Self::HeadNotCaptured => "http1_head_not_captured",
        }
    }
}

/// One direction of a connection.
#[derive(Debug)]
pub struct Stream {
    requests: bool,
    buf: Vec<u8>,
    current: Option<(Message, Body)>,
    broken: Option<StreamError>,
    /// Responses stream: this many of the next responses answer HEAD requests (no body).
    pub no_body_next: usize,
}

impl Stream {
    /// A stream of requests (`true`) or responses.
    pub fn new(requests: bool) -> Self {
        Self {
            requests,
            buf: Vec::new(),
            current: None,
            broken: None,
            no_body_next: 0,
        }
    }

    /// Why the stream was given up, if it was.
    pub fn broken(&self) -> Option<StreamError> {
        self.broken
    }

    /// A message is under way (head or body).
    pub fn in_progress(&self) -> bool {
        self.current.is_some() || !self.buf.is_empty()
    }

    /// Takes captured bytes (`data`), then `missing` bytes the capture did not copy, at
    /// `ktime_ns`; completed messages go to `out`.
    pub fn feed(&mut self, data: &[u8], missing: u64, ktime_ns: u64, out: &mut Vec<Message>) {
        if self.broken.is_some() {
            return;
        }
        self.buf.extend_from_slice(data);
        if let Err(e) = self.drain(ktime_ns, out) {
            self.fail(e);
            return;
        }
        if missing > 0 {
            self.skip(missing, ktime_ns, out);
        }
    }

    fn fail(&mut self, e: StreamError) {
        self.broken = Some(e);
        self.buf.clear();
        self.current = None;
    }

    /// Bytes that were not captured: counted into the body under way; in a head, fatal.
    fn skip(&mut self, mut missing: u64, ktime_ns: u64, out: &mut Vec<Message>) {
        while missing > 0 {
            let Some((msg, body)) = self.current.as_mut() else {
                self.fail(StreamError::HeadNotCaptured);
                return;
            };
            msg.truncated = true;
            msg.last_ns = ktime_ns;
            match body {
                Body::Length(left) | Body::Chunk(left) => {
                    let n = missing.min(*left);
                    *left -= n;
                    msg.body_len += n;
                    missing -= n;
                    if *left == 0 {
                        if matches!(body, Body::Length(_)) {
                            let (m, _) = self.current.take().expect("checked");
                            out.push(m);
                        } else {
                            *body = Body::ChunkEnd;
                        }
                    }
                }
                Body::UntilClose => {
                    msg.body_len += missing;
                    missing = 0;
                }
                // Chunk framing itself was not captured: the rest cannot be followed.
                _ => {
                    let (mut m, _) = self.current.take().expect("checked");
                    m.incomplete = true;
                    out.push(m);
                    self.fail(StreamError::BadChunk);
                    return;
                }
            }
        }
        if let Err(e) = self.drain(ktime_ns, out) {
            self.fail(e);
        }
    }

    fn drain(&mut self, ktime_ns: u64, out: &mut Vec<Message>) -> Result<(), StreamError> {
        let mut at = 0;
        let result = loop {
            match self.step(at, ktime_ns, out) {
                Ok(Some(used)) => at += used,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..at.min(self.buf.len()));
        result
    }

    /// Consumes what it can from `buf[at..]`: `Some(bytes used)`, `None` when more is needed.
    fn step(
        &mut self,
        at: usize,
        ktime_ns: u64,
        out: &mut Vec<Message>,
    ) -> Result<Option<usize>, StreamError> {
        let buf = &self.buf[at..];
        let Some((msg, body)) = self.current.as_mut() else {
            if buf.is_empty() {
                return Ok(None);
            }
            let Some(end) = find(buf, b"\r\n\r\n") else {
                if buf.len() > HEAD_CAP {
                    return Err(StreamError::BadHead);
                }
                // Refuse other protocols (TLS records, binary frames) early.
                if !plausible_start(buf, self.requests) {
                    return Err(StreamError::NotHttp1);
                }
                return Ok(None);
            };
            let mut msg = parse_head(&buf[..end], self.requests)?;
            msg.first_ns = ktime_ns;
            msg.last_ns = ktime_ns;
            let body = if self.requests {
                framing(&msg, false)?
            } else if msg.status / 100 == 1 {
                // 100 Continue and friends: no body, and not the answer.
                return Ok(Some(end + 4));
            } else {
                let no_body = self.no_body_next > 0 || msg.status == 204 || msg.status == 304;
                self.no_body_next = self.no_body_next.saturating_sub(1);
                if no_body {
                    Body::Length(0)
                } else {
                    framing(&msg, true)?
                }
            };
            if body == Body::Length(0) {
                out.push(msg);
            } else {
                self.current = Some((msg, body));
            }
            return Ok(Some(end + 4));
        };
        msg.last_ns = ktime_ns;
        match *body {
            Body::Length(left) | Body::Chunk(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (left as usize).min(buf.len());
                keep(msg, &buf[..n]);
                let left = left - n as u64;
                if left > 0 {
                    *body = if matches!(body, Body::Length(_)) {
                        Body::Length(left)
                    } else {
                        Body::Chunk(left)
                    };
                } else if matches!(body, Body::Length(_)) {
                    let (m, _) = self.current.take().expect("checked");
                    out.push(m);
                } else {
                    *body = Body::ChunkEnd;
                }
                Ok(Some(n))
            }
            Body::ChunkEnd => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(StreamError::BadChunk);
                }
                *body = Body::ChunkSize;
                Ok(Some(2))
            }
            Body::ChunkSize => {
                let Some(end) = find(buf, b"\r\n") else {
                    return if buf.len() > 1024 {
                        Err(StreamError::BadChunk)
                    } else {
                        Ok(None)
                    };
                };
                let line = std::str::from_utf8(&buf[..end]).map_err(|_| StreamError::BadChunk)?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| StreamError::BadChunk)?;
                *body = if size == 0 {
                    Body::Trailers
                } else {
                    Body::Chunk(size)
                };
                Ok(Some(end + 2))
            }
            Body::Trailers => {
                let Some(end) = find(buf, b"\r\n") else {
                    return Ok(None);
                };
                if end == 0 {
                    let (m, _) = self.current.take().expect("checked");
                    out.push(m);
                }
                Ok(Some(end + 2))
            }
            Body::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                keep(msg, buf);
                Ok(Some(buf.len()))
            }
        }
    }

    /// The message whose body is under way, if any.
    pub fn current_mut(&mut self) -> Option<&mut Message> {
        self.current.as_mut().map(|(m, _)| m)
    }

    /// The message under way, ended early (the connection went away or went quiet): marked
    /// incomplete unless its body runs until the connection ends.
    pub fn finish(&mut self) -> Option<Message> {
        let (mut m, body) = self.current.take()?;
        self.buf.clear();
        if m.early {
            return None;
        }
        m.incomplete = body != Body::UntilClose;
        Some(m)
    }
}

/// Whether `bytes` start with an HTTP/1.x request line (`METHOD target HTTP/1.x` and its CRLF).
pub fn starts_request(bytes: &[u8]) -> bool {
    let Some(end) = find(&bytes[..bytes.len().min(8192)], b"\r\n") else {
        return false;
    };
    let line = String::from_utf8_lossy(&bytes[..end]);
    let mut parts = line.splitn(3, ' ');
    let (method, target, version) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && !target.is_empty()
        && version.starts_with("HTTP/1.")
}

/// Whether `buf`, the start of a head not yet complete, can still become an HTTP/1.x one: a
/// request starts with an upper-case method and a space, a response with `HTTP/1.`.
fn plausible_start(buf: &[u8], requests: bool) -> bool {
    if requests {
        let method = buf.iter().take(17).take_while(|b| **b != b' ');
        method.clone().count() < 17 && method.into_iter().all(u8::is_ascii_uppercase)
    } else {
        let n = buf.len().min(7);
        buf[..n] == b"HTTP/1."[..n]
    }
}

/// Adds body bytes to `msg`, kept up to [`BODY_CAP`], all counted.
pub(super) fn keep(msg: &mut Message, bytes: &[u8]) {
    msg.body_len += bytes.len() as u64;
    let room = BODY_CAP.saturating_sub(msg.body.len());
    if bytes.len() > room {
        msg.truncated = true;
    }
    msg.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8], request: bool) -> Result<Message, StreamError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(StreamError::BadHead)?;
    let mut parts = first.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut msg = Message::default();
    let version = if request { c } else { a };
    msg.version = if version.starts_with("HTTP/1.0") {
        "1.0"
    } else {
        "1.1"
    };
    if request {
        if !c.starts_with("HTTP/1.") || a.is_empty() || !a.bytes().all(|x| x.is_ascii_uppercase()) {
            return Err(StreamError::NotHttp1);
        }
        a.clone_into(&mut msg.method);
        b.clone_into(&mut msg.target);
    } else {
        if !a.starts_with("HTTP/1.") {
            return Err(StreamError::NotHttp1);
        }
        msg.status = b.parse().map_err(|_| StreamError::BadHead)?;
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(StreamError::BadHead);
        };
        msg.headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(msg)
}

fn framing(msg: &Message, response: bool) -> Result<Body, StreamError> {
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Body::ChunkSize);
    }
    if let Some(len) = msg.header("content-length") {
        return len
            .trim()
            .parse()
            .map(Body::Length)
            .map_err(|_| StreamError::BadHead);
    }
    Ok(if response {
        Body::UntilClose
    } else {
        Body::Length(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(s: &mut Stream, parts: &[&[u8]]) -> Vec<Message> {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            s.feed(p, 0, i as u64, &mut out);
        }
        out
    }

    #[test]
    fn requests_with_a_length_split_anywhere() {
        let wire = b"POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        for cut in 0..wire.len() {
            let mut s = Stream::new(true);
            let out = feed_all(&mut s, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(out.len(), 2, "cut at {cut}");
            assert_eq!(out[0].method, "POST");
            assert_eq!(out[0].target, "/v1/chat/completions");
            assert_eq!(out[0].header("host"), Some("api"));
            assert_eq!(out[0].body, b"hello");
            assert_eq!(out[1].method, "GET");
        }
    }

    #[test]
    fn chunked_responses_and_trailers() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..wire.len() {
            let mut s = Stream::new(false);
            let out = feed_all(&mut s, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(out.len(), 1, "cut at {cut}");
            assert_eq!(out[0].status, 200);
            assert_eq!(out[0].body, b"hello world");
            assert!(!out[0].incomplete && !out[0].truncated);
        }
    }

    #[test]
    fn missing_bytes_keep_the_framing() {
        let mut s = Stream::new(true);
        let mut out = Vec::new();
        s.feed(
            b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
            90,
            1,
            &mut out,
        );
        assert!(out.is_empty());
        s.feed(b"1234567GET /y HTTP/1.1\r\n\r\n", 0, 2, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated);
        assert_eq!(out[0].body_len, 100);
        assert_eq!(out[0].body, b"abc1234567");
        assert_eq!(out[1].target, "/y");
    }

    #[test]
    fn other_protocols_and_garbage_are_refused_not_parsed() {
        let mut s = Stream::new(true);
        feed_all(&mut s, &[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert_eq!(s.broken(), Some(StreamError::NotHttp1));
        let mut s = Stream::new(false);
        feed_all(&mut s, &[b"\x16\x03\x01\x02\x00"]);
        assert_eq!(s.broken(), Some(StreamError::NotHttp1));
        let mut s = Stream::new(false);
        feed_all(
            &mut s,
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
        );
        assert_eq!(s.broken(), Some(StreamError::BadChunk));
        let mut s = Stream::new(false);
        feed_all(&mut s, &[b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"]);
        assert_eq!(s.broken(), Some(StreamError::BadHead));
    }

    #[test]
    fn a_response_cut_off_is_incomplete() {
        let mut s = Stream::new(false);
        let out = feed_all(
            &mut s,
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
        );
        assert!(out.is_empty());
        let m = s.finish().unwrap();
        assert!(m.incomplete);
        assert_eq!(m.body, b"hello");
    }
}
