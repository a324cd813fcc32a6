//! MCP tool calls over stdio (here) and over the streamable HTTP transport ([`http`]). Over
//! stdio, from the pipe traffic of opted-in agents' processes: each pipe's
//! two directions (what was written into it, what was read from it) are framed into
//! newline-delimited JSON-RPC messages ([`frame`]); a request an MCP server *read* is matched,
//! by id, with the response the same server process *wrote*, so a call is only ever made of
//! what one process received and answered: another process cannot answer for it, and a message
//! seen by both ends of a pipe counts once. The client is the process that wrote into the pipe
//! the request came through. `tools/call`, `initialize` and `tools/list` become records; other
//! messages are only read for their ids. Everything here is hostile input: a line that is not a
//! JSON-RPC object is counted and skipped, a cut one yields only what its captured start proves.

pub mod frame;
pub mod http;

use std::collections::HashMap;

use sensor_common::TrackedProcess;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    decode::PipeEvent,
    identity::capture::ContentPolicy,
    llm::provider::content,
    record::mcp::{McpCall, McpError, McpServer},
};
use frame::{Frame, LineStream};

/// Most pipe directions followed at once; the least recently used one is dropped beyond it.
const MAX_STREAMS: usize = 1024;
/// Most requests waiting for their responses.
const MAX_PENDING: usize = 4096;
/// Most pipes whose writer, and servers whose name, are remembered.
const MAX_KNOWN: usize = 4096;
/// Most bytes of messages under way held for all pipes together.
const MAX_BUFFERED: usize = 64 << 20;
/// A request with no response this long is finished, incomplete.
pub const IDLE_NS: u64 = 60_000_000_000;
/// The methods that become records.
const RECORDED: &[&str] = &["tools/call", "initialize", "tools/list"];

/// A process at one of its pipe calls.
#[derive(Clone, Copy, Debug)]
pub struct Proc {
    /// The process.
    pub tgid: u32,
    /// The thread of the call.
    pub pid: u32,
    /// Its start time (ns since boot).
    pub start_boottime: u64,
    /// Its attribution at the call.
    pub attribution: TrackedProcess,
    /// The task's name.
    pub comm: [u8; 16],
}

impl Proc {
    fn of(e: &PipeEvent) -> Self {
        Self {
            tgid: e.tgid,
            pid: e.pid,
            start_boottime: e.start_boottime,
            attribution: e.attribution,
            comm: e.comm,
        }
    }
}

/// A call ready for its record.
#[derive(Debug)]
pub struct Finished {
    /// The record's block (the server's entity id and `started` are the builder's to fill).
    pub call: McpCall,
    /// The server process, at its last call for this request.
    pub server: Proc,
    /// The client: the process that wrote the request into the pipe, if its write was seen.
    pub client: Option<Proc>,
    /// When the server read the request (CLOCK_BOOTTIME ns).
    pub started_ns: u64,
    /// When the call ended: the response written, or given up on.
    pub ktime_ns: u64,
}

struct Pending {
    method: String,
    id: String,
    tool: Option<String>,
    arguments: Option<String>,
    request_bytes: u64,
    incomplete: bool,
    started_ns: u64,
    /// The pipe the request came through.
    pipe: u64,
    server: Proc,
    policy: ContentPolicy,
}

struct Stream {
    lines: LineStream,
    /// When it was last written or read, for dropping the least recent beyond the bound.
    last_ns: u64,
}

/// Follows opted-in agents' pipes; see the module doc.
#[derive(Default)]
pub struct Assembler {
    streams: HashMap<(u64, bool), Stream>,
    pending: HashMap<(u32, String), Pending>,
    /// The last process that wrote into each pipe.
    writers: HashMap<u64, Proc>,
    /// Bytes the streams hold for their messages under way, together.
    buffered: usize,
    /// Servers' `serverInfo` (name, version), by process.
    servers: HashMap<(u32, u64), (Option<String>, Option<String>)>,
    /// Lines that are not JSON-RPC messages (or not valid JSON, or not UTF-8).
    pub invalid: u64,
    /// Responses that answer no request the same process read.
    pub unmatched: u64,
    last_idle_check: u64,
}

/// What a message says, as far as it was read.
#[derive(Debug, Default, PartialEq)]
struct Message {
    id: Option<String>,
    method: Option<String>,
    params: Option<String>,
    result: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// A JSON-RPC id: a number or a string, as its JSON text.
fn id_text(raw: &RawValue) -> Option<String> {
    let t = raw.get();
    let first = t.as_bytes().first()?;
    (*first == b'"' || *first == b'-' || first.is_ascii_digit()).then(|| t.to_owned())
}

/// A message as the MCP SDKs read it: bytes that are not UTF-8 replaced by U+FFFD (Python's
/// `errors="replace"`, Node's decoder), so a stray byte cannot hide a request the server
/// then serves.
fn parse(frame: &Frame) -> Option<Message> {
    let text = String::from_utf8_lossy(&frame.bytes);
    if frame.complete {
        let w: Wire<'_> = serde_json::from_str(&text).ok()?;
        Some(Message {
            id: w.id.and_then(id_text),
            method: w.method,
            params: w.params.map(|r| r.get().to_owned()),
            result: w.result.map(|r| r.get().to_owned()),
            error: w.error.map(|r| r.get().to_owned()),
        })
    } else {
        let (id, method) = scan_prefix(text.as_bytes());
        (id.is_some() || method.is_some()).then_some(Message {
            id,
            method,
            ..Message::default()
        })
    }
}

/// The top-level `id` and `method` of a message's captured start: only members whose value
/// is followed, within the start, by `,` or `}` (a value cut short is not trusted: `7` may
/// have been `72`).
fn scan_prefix(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let (mut id, mut method) = (None, None);
    let ws = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if bytes.get(i) != Some(&b'{') {
        return (None, None);
    }
    i += 1;
    let mut keys = std::collections::HashSet::new();
    loop {
        i = ws(i);
        let mut it = serde_json::Deserializer::from_slice(&bytes[i..]).into_iter::<String>();
        let Some(Ok(key)) = it.next() else { break };
        i = ws(i + it.byte_offset());
        if bytes.get(i) != Some(&b':') {
            break;
        }
        i = ws(i + 1);
        let mut it = serde_json::Deserializer::from_slice(&bytes[i..]).into_iter::<Box<RawValue>>();
        let Some(Ok(value)) = it.next() else { break };
        i = ws(i + it.byte_offset());
        let Some(&next) = bytes.get(i) else { break };
        if next != b',' && next != b'}' {
            break;
        }
        // A repeated member makes the message ambiguous: trust nothing of it.
        if !keys.insert(key.clone()) {
            return (None, None);
        }
        match key.as_str() {
            "id" => id = id_text(&value),
            "method" => method = serde_json::from_str::<String>(value.get()).ok(),
            _ => {}
        }
        if next == b'}' {
            break;
        }
        i += 1;
    }
    (id, method)
}

#[derive(Deserialize)]
struct CallParams<'a> {
    name: String,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct ListResult {
    tools: Vec<ToolEntry>,
}

#[derive(Deserialize)]
struct ToolEntry {
    name: String,
}

#[derive(Deserialize)]
struct InitializeResult {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
    #[serde(rename = "serverInfo")]
    server_info: Option<ServerInfo>,
}

#[derive(Deserialize)]
struct ServerInfo {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    code: i64,
    message: String,
}

impl Assembler {
    /// Whether any call or message is under way.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.pending.is_empty()
    }

    /// Takes one captured pipe call; calls it completes (and idle ones it notices) go to `out`.
    pub fn feed(&mut self, e: &PipeEvent, out: &mut Vec<Finished>) {
        if e.ktime_ns.saturating_sub(self.last_idle_check) > 1_000_000_000 {
            self.last_idle_check = e.ktime_ns;
            self.finish_idle(e.ktime_ns, IDLE_NS, out);
        }
        if e.written {
            if self.writers.len() >= MAX_KNOWN && !self.writers.contains_key(&e.pipe) {
                self.writers.clear();
            }
            self.writers.insert(e.pipe, Proc::of(e));
        }
        let key = (e.pipe, e.written);
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.last_ns)
                .map(|(k, _)| *k);
            if let Some(k) = oldest
                && let Some(s) = self.streams.remove(&k)
            {
                self.buffered -= s.lines.buffered();
            }
        }
        let others = self.buffered;
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            lines: LineStream::default(),
            last_ns: e.ktime_ns,
        });
        stream.last_ns = e.ktime_ns;
        let data: &[u8] = if e.unreadable { &[] } else { &e.data };
        let before = stream.lines.buffered();
        let others = others - before;
        stream.lines.budget = Some(MAX_BUFFERED.saturating_sub(others));
        let mut frames = Vec::new();
        stream
            .lines
            .feed(e.offset, e.len, data, e.ends_line, e.ktime_ns, &mut frames);
        self.buffered = others + stream.lines.buffered();
        for f in frames {
            self.message(&f, e, out);
        }
    }

    fn message(&mut self, frame: &Frame, e: &PipeEvent, out: &mut Vec<Finished>) {
        let f = frame;
        let Some(msg) = parse(f) else {
            self.invalid += 1;
            return;
        };
        let Some(id) = msg.id.clone() else { return };
        match (e.written, msg.method.as_deref()) {
            // A request the process read: it serves it.
            (false, Some(method)) => {
                if !RECORDED.contains(&method) {
                    return;
                }
                let params = msg.params.as_deref().filter(|_| method == "tools/call");
                let (tool, arguments) = params
                    .and_then(|text| serde_json::from_str::<CallParams<'_>>(text).ok())
                    .map_or((None, None), |c| {
                        (Some(c.name), c.arguments.map(|a| a.get().to_owned()))
                    });
                let pending = Pending {
                    method: method.to_owned(),
                    id: id.clone(),
                    tool,
                    arguments,
                    request_bytes: f.size,
                    incomplete: !f.complete,
                    started_ns: f.first_ns,
                    pipe: e.pipe,
                    server: Proc::of(e),
                    policy: ContentPolicy::from_kernel(e.content),
                };
                if self.pending.len() >= MAX_PENDING {
                    let oldest = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.started_ns)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        let p = self.pending.remove(&k).expect("present");
                        out.push(self.finished(&p, None, e.ktime_ns));
                    }
                }
                // A second request with a pending id: the first gets no response of its own.
                if let Some(old) = self.pending.insert((e.tgid, id), pending) {
                    out.push(self.finished(&old, None, e.ktime_ns));
                }
            }
            // A response the process wrote to a request it read.
            (true, None) => match self.pending.remove(&(e.tgid, id)) {
                Some(p) => {
                    let resp = Response {
                        message: msg,
                        frame: f,
                        server: Proc::of(e),
                    };
                    out.push(self.finished(&p, Some(&resp), f.last_ns));
                }
                None => self.unmatched += 1,
            },
            _ => {}
        }
    }

    fn finished(&mut self, p: &Pending, resp: Option<&Response<'_>>, ktime_ns: u64) -> Finished {
        let policy = p.policy;
        let mut call = McpCall {
            method: p.method.clone(),
            request_id: p.id.clone(),
            transport: "stdio",
            content_policy: policy.as_str(),
            server: McpServer {
                pid: Some(p.server.tgid),
                entity_id: None,
                url: None,
                name: None,
                version: None,
            },
            session: None,
            http_status: None,
            tool: p.tool.clone(),
            arguments: p.arguments.as_deref().map(|a| content(a, policy)),
            result: None,
            is_error: None,
            tools: Vec::new(),
            protocol_version: None,
            error: None,
            started: None,
            latency_ms: None,
            request_bytes: p.request_bytes,
            response_bytes: None,
            incomplete: p.incomplete || resp.is_none_or(|r| !r.frame.complete),
        };
        let server_key = (p.server.tgid, p.server.start_boottime);
        let mut server = p.server;
        if let Some(r) = resp {
            server = r.server;
            call.response_bytes = Some(r.frame.size);
            call.latency_ms = Some(r.frame.last_ns.saturating_sub(p.started_ns) as f64 / 1e6);
            let info = read_response(
                &mut call,
                r.message.result.as_deref(),
                r.message.error.as_deref(),
                policy,
            );
            if let Some(info) = info {
                if self.servers.len() >= MAX_KNOWN {
                    self.servers.clear();
                }
                self.servers.insert(server_key, info);
            }
        }
        if let Some((name, version)) = self.servers.get(&server_key) {
            call.server.name.clone_from(name);
            call.server.version.clone_from(version);
        }
        let client = self
            .writers
            .get(&p.pipe)
            .copied()
            .filter(|w| w.tgid != p.server.tgid);
        Finished {
            call,
            server,
            client,
            started_ns: p.started_ns,
            ktime_ns,
        }
    }

    /// Finishes requests unanswered for `idle_ns` by `now_ns` (all of them, and every pipe
    /// forgotten, with `u64::MAX`, at stop). A quiet pipe is kept: a server idle between
    /// calls goes on where it stopped.
    pub fn finish_idle(&mut self, now_ns: u64, idle_ns: u64, out: &mut Vec<Finished>) {
        if now_ns == u64::MAX {
            self.streams.clear();
            self.buffered = 0;
        }
        let due: Vec<(u32, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ns.saturating_sub(p.started_ns) >= idle_ns)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let p = self.pending.remove(&k).expect("present");
            let at = if now_ns == u64::MAX {
                p.started_ns
            } else {
                now_ns
            };
            out.push(self.finished(&p, None, at));
        }
    }
}

/// Fills `call` from its response's `result` or `error` (JSON text) as its method reads them;
/// an `initialize` result's `serverInfo` (name, version) is returned.
pub(crate) fn read_response(
    call: &mut McpCall,
    result: Option<&str>,
    error: Option<&str>,
    policy: ContentPolicy,
) -> Option<(Option<String>, Option<String>)> {
    if let Some(err) = error {
        if let Ok(w) = serde_json::from_str::<WireError>(err) {
            call.error = Some(McpError {
                code: w.code,
                message: content(&w.message, policy),
            });
        }
        return None;
    }
    let result = result?;
    match call.method.as_str() {
        "tools/call" => {
            call.result = Some(content(result, policy));
            // MCP: a result without `isError` is not an error (the npm SDK leaves it out).
            call.is_error = serde_json::from_str::<CallResult>(result)
                .ok()
                .map(|c| c.is_error.unwrap_or(false));
        }
        "tools/list" => {
            if let Ok(l) = serde_json::from_str::<ListResult>(result) {
                call.tools = l.tools.into_iter().map(|t| t.name).collect();
            }
        }
        "initialize" => {
            if let Ok(i) = serde_json::from_str::<InitializeResult>(result) {
                call.protocol_version = i.protocol_version;
                return Some(i.server_info.map_or((None, None), |s| (s.name, s.version)));
            }
        }
        _ => {}
    }
    None
}

struct Response<'a> {
    message: Message,
    frame: &'a Frame,
    server: Proc,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pipe: u64, written: bool, tgid: u32, offset: u64, data: &[u8], len: u64) -> PipeEvent {
        PipeEvent {
            ktime_ns: 1_000 + offset,
            attribution: TrackedProcess::default(),
            pid: tgid,
            tgid,
            start_boottime: 5,
            pipe,
            ino: pipe,
            fd: 0,
            written,
            offset,
            len,
            ends_line: data.last() == Some(&b'\n'),
            data: data.to_vec(),
            unreadable: false,
            content: 0,
            comm: [0; 16],
        }
    }

    /// Client 10 writes requests into pipe 1, server 20 reads them and writes responses into
    /// pipe 2, which the client reads; every call is seen from both ends.
    fn session(lines: &[(&str, &str)]) -> Vec<Finished> {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let (mut req_at, mut resp_at) = (0, 0);
        for (req, resp) in lines {
            let req = format!("{req}\n");
            let n = req.len() as u64;
            a.feed(&event(1, true, 10, req_at, req.as_bytes(), n), &mut out);
            a.feed(&event(1, false, 20, req_at, req.as_bytes(), n), &mut out);
            req_at += n;
            if !resp.is_empty() {
                let resp = format!("{resp}\n");
                let n = resp.len() as u64;
                a.feed(&event(2, true, 20, resp_at, resp.as_bytes(), n), &mut out);
                a.feed(&event(2, false, 10, resp_at, resp.as_bytes(), n), &mut out);
                resp_at += n;
            }
        }
        a.finish_idle(u64::MAX, 0, &mut out);
        out
    }

    #[test]
    fn a_tool_call_is_matched_by_id_once_with_server_and_client() {
        let out = session(&[
            (
                r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#,
                r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"files","version":"1.2"}}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                "",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"read","arguments":{"path":"/etc/x"}}}"#,
                r#"{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nope"}}"#,
                r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool"}}"#,
            ),
        ]);
        assert_eq!(out.len(), 3, "{out:#?}");
        let init = &out[0].call;
        assert_eq!(init.method, "initialize");
        assert_eq!(init.server.name.as_deref(), Some("files"));
        assert_eq!(init.protocol_version.as_deref(), Some("2025-06-18"));
        let call = &out[1].call;
        assert_eq!(call.request_id, "\"a\"");
        assert_eq!(call.tool.as_deref(), Some("read"));
        assert_eq!(
            call.arguments.as_ref().unwrap().text.as_deref(),
            Some(r#"{"path":"/etc/x"}"#)
        );
        assert_eq!(call.is_error, Some(false));
        assert_eq!(call.server.version.as_deref(), Some("1.2"));
        assert!(!call.incomplete);
        assert_eq!(out[1].server.tgid, 20);
        assert_eq!(out[1].client.map(|c| c.tgid), Some(10));
        let failed = &out[2].call;
        assert_eq!(failed.error.as_ref().unwrap().code, -32602);
        assert!(failed.result.is_none());
    }

    #[test]
    fn forged_ids_and_other_processes_answers_match_nothing() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}\n";
        a.feed(&event(1, false, 20, 0, req, req.len() as u64), &mut out);
        // Another process answers id 1; the server answers id 2: neither is the call's.
        let other = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n";
        a.feed(&event(3, true, 30, 0, other, other.len() as u64), &mut out);
        let wrong = b"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
        a.feed(&event(2, true, 20, 0, wrong, wrong.len() as u64), &mut out);
        // Duplicate members make a message invalid.
        let dup = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":1,\"result\":{}}\n";
        a.feed(
            &event(2, true, 20, wrong.len() as u64, dup, dup.len() as u64),
            &mut out,
        );
        assert!(out.is_empty(), "{out:#?}");
        assert_eq!(a.unmatched, 2);
        assert_eq!(a.invalid, 1);
        a.finish_idle(u64::MAX, 0, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].call.incomplete);
        assert!(out[0].call.result.is_none());
    }

    #[test]
    fn invalid_utf8_is_read_as_the_sdks_read_it() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"arguments\":{\"x\":\"\xff\"}}}\n";
        a.feed(&event(1, false, 20, 0, req, req.len() as u64), &mut out);
        let resp = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n";
        a.feed(&event(2, true, 20, 0, resp, resp.len() as u64), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].call.arguments.as_ref().unwrap().text.as_deref(),
            Some("{\"x\":\"\u{fffd}\"}")
        );
    }

    #[test]
    fn a_cut_response_still_closes_its_call_as_incomplete() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"{\"jsonrpc\":\"2.0\",\"id\":72,\"method\":\"tools/call\",\"params\":{\"name\":\"big\"}}\n";
        a.feed(&event(1, false, 20, 0, req, req.len() as u64), &mut out);
        // 40 of 100000 bytes captured; the call ended with a newline.
        let start = b"{\"jsonrpc\":\"2.0\",\"id\":72,\"result\":{\"con";
        let mut e = event(2, true, 20, 0, start, 100_000);
        e.ends_line = true;
        a.feed(&e, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].call.incomplete);
        assert!(out[0].call.result.is_none());
        assert_eq!(out[0].call.response_bytes, Some(start.len() as u64));
        // The prefix scan trusts only members that end within the start.
        assert_eq!(
            scan_prefix(b"{\"id\":7"),
            (None, None),
            "7 may have been 72"
        );
        assert_eq!(
            scan_prefix(b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"id\":\"x\",\"par"),
            (Some("\"x\"".into()), Some("tools/call".into()))
        );
    }

    #[test]
    fn hostile_bytes_never_panic_and_state_stays_bounded() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 7] = [
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}\n",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n",
            b"{\"id\":\"\xff\xfe\",\"method\":\"tools/call\"}\n",
            b"\n\n\n",
            b"{\"id\":[1],\"method\":{}}\n",
            b"\x00\x01{{{{\"",
            b"{\"jsonrpc\":\"2.0\",\"id\":1e999,\"method\":\"initialize\"}\n",
        ];
        let mut offsets = HashMap::new();
        for _ in 0..20_000 {
            let piece = pieces[(next() % 7) as usize];
            let cut = (next() as usize) % (piece.len() + 1);
            let pipe = next() % 1500;
            let written = next() % 2 == 0;
            let at = offsets.entry((pipe, written)).or_insert(0u64);
            let missing = if next() % 10 == 0 { next() % 100 } else { 0 };
            let len = cut as u64 + missing;
            let e = event(pipe, written, (next() % 5) as u32, *at, &piece[..cut], len);
            *at += len;
            a.feed(&e, &mut out);
            assert!(a.streams.len() <= MAX_STREAMS);
            assert_eq!(
                a.buffered,
                a.streams
                    .values()
                    .map(|s| s.lines.buffered())
                    .sum::<usize>()
            );
            assert!(a.pending.len() <= MAX_PENDING);
        }
        a.finish_idle(u64::MAX, 0, &mut out);
        assert!(a.is_empty());
    }
}
