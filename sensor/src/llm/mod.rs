//! LLM API exchanges from captured TLS plaintext: each connection's two byte streams (what the
//! agent wrote, what it read) reassembled into HTTP/1.1 messages ([`http`]), each request
//! matched with its response in order, or, when the agent's first bytes are HTTP/2's preface,
//! into HTTP/2 streams ([`h2`], header blocks by [`hpack`]), one exchange per stream; each
//! pair read in its provider's API shape ([`provider`]) with credentials masked ([`redact`])
//! into the block of one `llm_exchange` record. A connection is a process's TLS connection
//! object (`SSL *`, GnuTLS's session) from its first captured call until the process frees it
//! (`SSL_free`, `gnutls_deinit`) or resets it for another connection (`SSL_clear`), each an
//! event of its own: the library gives a freed object's address to the next connection.

pub mod h2;
pub mod hpack;
pub mod http;
pub mod provider;
pub mod redact;

use std::collections::{BTreeMap, HashMap, VecDeque};

use sensor_common::TrackedProcess;

use crate::{decode::TlsEvent, identity::capture::ContentPolicy, record::llm::LlmExchange};

impl Finished {
    /// The `llm_exchange` block: the exchange read in its provider's API shape.
    pub fn exchange(&self) -> LlmExchange {
        provider::exchange(
            &self.request,
            self.response.as_ref(),
            self.policy,
            self.connection.clone(),
        )
    }
}

/// Most connections followed at once; the least recently used one is finished beyond it.
const MAX_CONNECTIONS: usize = 256;
/// Most requests of one connection waiting for their responses.
const MAX_WAITING: usize = 64;
/// A connection quiet this long has its exchange under way finished, marked incomplete.
pub const IDLE_NS: u64 = 30_000_000_000;

/// An exchange ready for its record, with who made it.
#[derive(Debug)]
pub struct Finished {
    /// The request.
    pub request: http::Message,
    /// Its response, if one came.
    pub response: Option<http::Message>,
    /// The agent's content policy.
    pub policy: ContentPolicy,
    /// The connection's name in records.
    pub connection: String,
    /// The attribution of the process when its last captured call returned.
    pub attribution: TrackedProcess,
    /// The process.
    pub tgid: u32,
    /// The thread of the last call.
    pub pid: u32,
    /// The process's start time (ns since boot).
    pub start_boottime: u64,
    /// When the exchange ended (its last byte, CLOCK_BOOTTIME ns).
    pub ktime_ns: u64,
    /// The task's name at the last call.
    pub comm: [u8; 16],
}

struct Connection {
    /// Nothing captured yet: the first bytes the agent writes say whether it is HTTP/2.
    fresh: bool,
    /// The connection's HTTP/2, when it is; otherwise the two HTTP/1.1 streams below.
    h2: Option<Box<h2::Connection>>,
    requests: http::Stream,
    responses: http::Stream,
    waiting: VecDeque<http::Message>,
    policy: ContentPolicy,
    attribution: TrackedProcess,
    pid: u32,
    start_boottime: u64,
    last_ns: u64,
    comm: [u8; 16],
    id: String,
}

/// Follows the connections of opted-in agents; see the module doc.
#[derive(Default)]
pub struct Assembler {
    connections: HashMap<(u32, u64), Connection>,
    /// Connections given up, by why: not HTTP/1.x or HTTP/2, or their framing or header
    /// compression broke (the reasons' `as_str`).
    unparsed: BTreeMap<&'static str, u64>,
    last_idle_check: u64,
}

/// A connection's name in records: not the raw pointer (an address in the agent's memory);
/// with the time of its first captured call, so a later connection at the same address (the
/// object freed and its memory given to the next one) has a name of its own.
fn connection_id(tgid: u32, start_boottime: u64, ssl: u64, first_ns: u64) -> String {
    let bytes = [
        &tgid.to_le_bytes()[..],
        &start_boottime.to_le_bytes(),
        &ssl.to_le_bytes(),
        &first_ns.to_le_bytes(),
    ]
    .concat();
    let digest = redact::sha256_hex(&bytes);
    digest[..16].to_owned()
}

impl Assembler {
    /// Whether any exchange is under way.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Connections given up so far, by reason (their decoding ended; the exchanges already
    /// under way were handed on incomplete).
    pub fn unparsed(&self) -> &BTreeMap<&'static str, u64> {
        &self.unparsed
    }

    /// Takes one captured call; exchanges it completes (and idle ones it notices) go to `out`.
    pub fn feed(&mut self, e: &TlsEvent, out: &mut Vec<Finished>) {
        if e.ktime_ns.saturating_sub(self.last_idle_check) > 1_000_000_000 {
            self.last_idle_check = e.ktime_ns;
            self.finish_idle(e.ktime_ns, IDLE_NS, out);
        }
        let key = (e.tgid, e.ssl);
        // The process freed the connection object: what it had under way ends here (a response
        // not yet whole is incomplete), and its address is free for the next connection.
        if e.ended {
            if let Some(c) = self.connections.remove(&key) {
                finish(c, e.tgid, out);
            }
            return;
        }
        if !self.connections.contains_key(&key) && self.connections.len() >= MAX_CONNECTIONS {
            let oldest = self
                .connections
                .iter()
                .min_by_key(|(_, c)| c.last_ns)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                let c = self.connections.remove(&k).expect("present");
                finish(c, e.tgid, out);
            }
        }
        // The end of a connection comes as an event of its own (above). Where none came (the
        // ring buffer had no room for it: a gap says so), bytes that cannot continue a
        // connection still start one afresh: HTTP/2's preface, or a request line written after
        // the decoding ended. What the old one had under way is finished.
        if e.sent
            && let Some(old) = self.connections.get(&key)
            && !old.fresh
            && (e.data.starts_with(h2::PREFACE) || (old.broken() && http::starts_request(&e.data)))
        {
            let c = self.connections.remove(&key).expect("present");
            finish(c, e.tgid, out);
        }
        let conn = self.connections.entry(key).or_insert_with(|| Connection {
            fresh: true,
            h2: None,
            requests: http::Stream::new(true),
            responses: http::Stream::new(false),
            waiting: VecDeque::new(),
            policy: ContentPolicy::from_kernel(e.content),
            attribution: e.attribution,
            pid: e.pid,
            start_boottime: e.start_boottime,
            last_ns: e.ktime_ns,
            comm: e.comm,
            id: connection_id(e.tgid, e.start_boottime, e.ssl, e.ktime_ns),
        });
        conn.attribution = e.attribution;
        conn.pid = e.pid;
        conn.comm = e.comm;
        conn.last_ns = e.ktime_ns;
        let missing = e.len.saturating_sub(e.data.len() as u64);
        if conn.fresh && !e.data.is_empty() {
            conn.fresh = false;
            if e.sent && h2::starts_with_preface(&e.data) {
                conn.h2 = Some(Box::default());
            }
        }
        if let Some(h2) = conn.h2.as_mut() {
            let was_broken = h2.broken().is_some();
            let mut done = Vec::new();
            h2.feed(e.sent, &e.data, missing, e.ktime_ns, &ended, &mut done);
            let broken = h2.broken().filter(|_| !was_broken);
            for x in done {
                out.push(conn.finished(x.request, x.response, e.tgid));
            }
            if let Some(why) = broken {
                *self.unparsed.entry(why.as_str()).or_default() += 1;
            }
            return;
        }
        let was_broken = conn.requests.broken().is_some() || conn.responses.broken().is_some();
        let mut done = Vec::new();
        if e.sent {
            conn.requests.feed(&e.data, missing, e.ktime_ns, &mut done);
            for req in done {
                if req.method == "HEAD" {
                    conn.responses.no_body_next += 1;
                }
                if conn.waiting.len() >= MAX_WAITING {
                    let old = conn.waiting.pop_front().expect("full");
                    out.push(conn.finished(old, None, e.tgid));
                }
                conn.waiting.push_back(req);
            }
        } else {
            conn.responses.feed(&e.data, missing, e.ktime_ns, &mut done);
            for resp in done {
                // A response to a request sent before capture began has nothing to pair with.
                if !resp.early
                    && let Some(req) = conn.waiting.pop_front()
                {
                    out.push(conn.finished(req, Some(resp), e.tgid));
                }
            }
            // A client stops reading a stream at its final event, before the end of the
            // framing may have been read: the exchange is whole at that event.
            if let Some(resp) = conn.responses.current_mut()
                && !resp.early
                && let Some(req) = conn.waiting.front()
                && ended(req, resp)
                && let Some(req) = conn.waiting.pop_front()
            {
                resp.early = true;
                let resp = resp.clone();
                out.push(conn.finished(req, Some(resp), e.tgid));
            }
        }
        if !was_broken && let Some(why) = conn.requests.broken().or(conn.responses.broken()) {
            *self.unparsed.entry(why.as_str()).or_default() += 1;
        }
    }

    /// Finishes connections quiet for `idle_ns` by `now_ns` (all of them with `u64::MAX`).
    pub fn finish_idle(&mut self, now_ns: u64, idle_ns: u64, out: &mut Vec<Finished>) {
        let quiet: Vec<(u32, u64)> = self
            .connections
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_ns) >= idle_ns)
            .map(|(k, _)| *k)
            .collect();
        for k in quiet {
            let c = self.connections.remove(&k).expect("present");
            finish(c, k.0, out);
        }
    }
}

/// Whether a response under way is whole already: an event stream that sent its final event
/// (clients stop reading there, maybe before the framing's end), an LLM's or a JSON-RPC
/// answer's.
fn ended(req: &http::Message, resp: &http::Message) -> bool {
    provider::stream_ended(resp) || provider::jsonrpc_answered(req, resp)
}

/// A connection's exchanges still under way, ended.
fn finish(mut c: Connection, tgid: u32, out: &mut Vec<Finished>) {
    if let Some(h2) = c.h2.as_mut() {
        let mut done = Vec::new();
        h2.finish(&mut done);
        for x in done {
            out.push(c.finished(x.request, x.response, tgid));
        }
        return;
    }
    let cut_response = c.responses.finish();
    let cut_request = c.requests.finish();
    if let Some(resp) = cut_response
        && let Some(req) = c.waiting.pop_front()
    {
        out.push(c.finished(req, Some(resp), tgid));
    }
    while let Some(req) = c.waiting.pop_front() {
        out.push(c.finished(req, None, tgid));
    }
    if let Some(req) = cut_request {
        out.push(c.finished(req, None, tgid));
    }
}

impl Connection {
    /// Whether its decoding ended.
    fn broken(&self) -> bool {
        match &self.h2 {
            Some(h2) => h2.broken().is_some(),
            None => self.requests.broken().is_some() || self.responses.broken().is_some(),
        }
    }

    fn finished(&self, req: http::Message, resp: Option<http::Message>, tgid: u32) -> Finished {
        let ktime_ns = resp.as_ref().map_or(req.last_ns, |r| r.last_ns);
        Finished {
            request: req,
            response: resp,
            policy: self.policy,
            connection: self.id.clone(),
            attribution: self.attribution,
            tgid,
            pid: self.pid,
            start_boottime: self.start_boottime,
            ktime_ns,
            comm: self.comm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ssl: u64, sent: bool, data: &[u8], len: u64, t: u64) -> TlsEvent {
        TlsEvent {
            ktime_ns: t,
            attribution: TrackedProcess::default(),
            pid: 7,
            tgid: 7,
            start_boottime: 1,
            ssl,
            sent,
            len,
            data: data.to_vec(),
            unreadable: false,
            ended: false,
            content: 0,
            comm: [0; 16],
        }
    }

    #[test]
    fn a_body_that_looks_like_http_forges_no_exchange() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        a.feed(&call(1, true, req, req.len() as u64, 1), &mut out);
        let body = "{\"x\":\"\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\n\\r\\nPOST / HTTP/1.1\"}";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        a.feed(
            &call(1, false, resp.as_bytes(), resp.len() as u64, 2),
            &mut out,
        );
        a.finish_idle(u64::MAX, 0, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_event_stream_is_whole_at_the_answer_to_its_json_rpc_request() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
        let req = format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        a.feed(
            &call(1, true, req.as_bytes(), req.len() as u64, 1),
            &mut out,
        );
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        a.feed(
            &call(1, false, head.as_bytes(), head.len() as u64, 2),
            &mut out,
        );
        // The server's own notification, then an answer to another id: not yet.
        for event in [
            "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\r\n\r\n",
            "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\r\n\r\n",
        ] {
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            a.feed(
                &call(1, false, chunk.as_bytes(), chunk.len() as u64, 3),
                &mut out,
            );
            assert!(out.is_empty());
        }
        let event = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[]}}\r\n\r\n";
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        a.feed(
            &call(1, false, chunk.as_bytes(), chunk.len() as u64, 4),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let resp = out[0].response.as_ref().unwrap();
        assert!(!resp.incomplete);
        assert!(resp.body.ends_with(event.as_bytes()));
    }

    fn freed(ssl: u64, t: u64) -> TlsEvent {
        TlsEvent {
            ended: true,
            ..call(ssl, false, b"", 0, t)
        }
    }

    #[test]
    fn a_freed_connection_ends_at_once_and_its_address_names_the_next_one_afresh() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        a.feed(&call(1, true, req, req.len() as u64, 1), &mut out);
        // Half a stream, then the client frees the connection.
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n";
        a.feed(&call(1, false, resp, resp.len() as u64, 2), &mut out);
        assert!(out.is_empty());
        a.feed(&freed(1, 3), &mut out);
        assert_eq!(out.len(), 1, "finished when freed, not when idle");
        let cut = out[0].response.as_ref().unwrap();
        assert!(cut.incomplete);
        assert_eq!(cut.last_ns, 2);
        assert!(a.is_empty());
        // The next connection at the same address: its own exchange, its own name.
        a.feed(&call(1, true, req, req.len() as u64, 4), &mut out);
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        a.feed(&call(1, false, whole, whole.len() as u64, 5), &mut out);
        assert_eq!(out.len(), 2);
        let next = out[1].response.as_ref().unwrap();
        assert_eq!(next.status, 200);
        assert!(!next.incomplete);
        assert_ne!(out[0].connection, out[1].connection);
        // Freeing an object no captured call named does nothing.
        a.feed(&freed(9, 6), &mut out);
        assert_eq!(out.len(), 2);
        // A request waiting for its response when freed: recorded without one.
        a.feed(&call(1, true, req, req.len() as u64, 7), &mut out);
        a.feed(&freed(1, 8), &mut out);
        assert_eq!(out.len(), 3);
        assert!(out[2].response.is_none());
    }

    #[test]
    fn without_its_end_a_reused_object_starts_afresh_only_on_bytes_no_connection_continues_with() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        // Garbage breaks the connection; a request line written afterwards starts afresh.
        a.feed(&call(1, true, req, req.len() as u64, 1), &mut out);
        a.feed(&call(1, false, b"\x16\x03garbage", 9, 2), &mut out);
        a.feed(&call(1, true, req, req.len() as u64, 3), &mut out);
        a.feed(&call(1, false, resp, resp.len() as u64, 4), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].response.is_none());
        assert_eq!(out[1].response.as_ref().unwrap().status, 200);
        assert_eq!(a.unparsed().get("not_http"), Some(&1));
        // HTTP/2's preface on an HTTP/1.1 connection under way starts an HTTP/2 one.
        a.feed(&call(1, true, req, req.len() as u64, 5), &mut out);
        a.feed(&call(1, true, h2::PREFACE, 24, 6), &mut out);
        assert_eq!(out.len(), 3);
        assert!(out[2].response.is_none());
        assert!(a.connections[&(7, 1)].h2.is_some());
    }

    #[test]
    fn an_http2_connection_whose_frames_break_is_counted_once_by_reason() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let mut w = h2::PREFACE.to_vec();
        // HEADERS on stream 1 (GET https /), then DATA on stream 0: malformed.
        w.extend_from_slice(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x87, 0x84]);
        w.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, b'x']);
        a.feed(&call(1, true, &w, w.len() as u64, 1), &mut out);
        a.feed(&call(1, true, b"more", 4, 2), &mut out);
        assert_eq!(a.unparsed().get("h2_frame"), Some(&1));
        // The request decoded before the fault is handed on, incomplete, without a response.
        assert_eq!(out.len(), 1);
        assert!(out[0].response.is_none());
        assert_eq!(out[0].request.version, "2");
    }

    #[test]
    fn random_bytes_never_panic_and_connections_stay_bounded() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 6] = [
            b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n",
            b"5\r\ndata:\r\n",
            b"\r\n\r\n0\r\n\r\n",
            b"\xff\x00\x13garbage",
            b"data: [DONE]\n\n",
        ];
        for t in 0..20_000 {
            let piece = pieces[(next() % 6) as usize];
            let cut = (next() as usize) % (piece.len() + 1);
            let ssl = next() % 300;
            let missing = if next() % 10 == 0 { next() % 100 } else { 0 };
            let e = call(ssl, next() % 2 == 0, &piece[..cut], cut as u64 + missing, t);
            a.feed(&e, &mut out);
            assert!(a.connections.len() <= MAX_CONNECTIONS);
        }
        a.finish_idle(u64::MAX, 0, &mut out);
        assert!(a.is_empty());
    }
}
