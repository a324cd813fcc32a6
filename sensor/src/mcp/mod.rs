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
    /// A response: no `method`, and (when cut) its start gave its id, or a `result` or
    /// `error` member was seen.
    response: bool,
    /// When its `params` are cut: the tool's name their start gave.
    tool: Option<String>,
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
            response: w.method.is_none(),
            method: w.method,
            params: w.params.map(|r| r.get().to_owned()),
            result: w.result.map(|r| r.get().to_owned()),
            error: w.error.map(|r| r.get().to_owned()),
            tool: None,
        })
    } else {
        let start = scan_prefix(text.as_bytes());
        let end_text = String::from_utf8_lossy(&frame.end);
        let end = scan_suffix(end_text.as_bytes());
        let id = match (start.id.clone(), end.id) {
            // Its start and its end disagree: they are not one message; trust neither.
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        let method = match (start.method, end.method) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        let answer = start.answers || end.answers;
        if method.is_some() && answer {
            return None;
        }
        (id.is_some() || method.is_some()).then_some(Message {
            response: method.is_none() && (start.id.is_some() || answer),
            id,
            method,
            tool: start.tool,
            ..Message::default()
        })
    }
}

/// What the captured start or end of a message says of it.
#[derive(Debug, Default, PartialEq)]
struct Scan {
    /// Its top-level `id`, whole.
    id: Option<String>,
    /// Its top-level `method`, whole.
    method: Option<String>,
    /// It has a top-level `result` or `error` member (its value possibly cut).
    answers: bool,
    /// Its top-level `name`, whole (of `params`, read by themselves).
    name: Option<String>,
    /// The `name` in its `params`, which are cut.
    tool: Option<String>,
}

/// The top-level `id` and `method` of a message's captured start: only members whose value
/// is followed, within the start, by `,` or `}` (a value cut short is not trusted: `7` may
/// have been `72`); whether a `result` or `error` member begins there; and, when its
/// `params` are cut, their `name` (a tool's) if it comes before the cut.
fn scan_prefix(bytes: &[u8]) -> Scan {
    scan_start(bytes, false)
}

fn scan_start(bytes: &[u8], nested: bool) -> Scan {
    let (mut id, mut method, mut answers) = (None, None, false);
    let (mut name, mut tool) = (None, None);
    let ws = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if bytes.get(i) != Some(&b'{') {
        return Scan::default();
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
        answers |= key == "result" || key == "error";
        i = ws(i + 1);
        let mut it = serde_json::Deserializer::from_slice(&bytes[i..]).into_iter::<Box<RawValue>>();
        let Some(Ok(value)) = it.next() else {
            if key == "params" && !nested && keys.insert(key) {
                tool = scan_start(&bytes[i..], true).name;
            }
            break;
        };
        i = ws(i + it.byte_offset());
        let Some(&next) = bytes.get(i) else { break };
        if next != b',' && next != b'}' {
            break;
        }
        // A repeated member makes the message ambiguous: trust nothing of it.
        if !keys.insert(key.clone()) {
            return Scan::default();
        }
        match key.as_str() {
            "id" => id = id_text(&value),
            "method" => method = serde_json::from_str::<String>(value.get()).ok(),
            "name" => name = serde_json::from_str::<String>(value.get()).ok(),
            _ => {}
        }
        if next == b'}' {
            break;
        }
        i += 1;
    }
    Scan {
        id,
        method,
        answers,
        name,
        tool,
    }
}

/// The top-level `id` and `method` of a message's captured end (its bytes after its last
/// hole, up to its newline), read backwards from its closing `}`: only members wholly within
/// the end (a scalar must be preceded there by what ends a JSON token, a string by its
/// opening quote with no run of backslashes reaching the cut); and whether a `result` or
/// `error` member is among them. Stops at the first member it cannot read whole.
fn scan_suffix(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let back = |mut i: usize| {
        while i > 0 && bytes[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    let mut i = back(bytes.len());
    if i == 0 || bytes[i - 1] != b'}' {
        return scan;
    }
    i -= 1;
    let mut keys = std::collections::HashSet::new();
    loop {
        i = back(i);
        let Some(v) = value_start(bytes, i) else {
            break;
        };
        let value = &bytes[v..i];
        let mut j = back(v);
        if j == 0 || bytes[j - 1] != b':' {
            break;
        }
        j = back(j - 1);
        if j == 0 || bytes[j - 1] != b'"' {
            break;
        }
        let Some(k) = string_start(bytes, j) else {
            break;
        };
        let Ok(key) = serde_json::from_slice::<String>(&bytes[k..j]) else {
            break;
        };
        let Ok(value) = serde_json::from_slice::<&RawValue>(value) else {
            break;
        };
        if !keys.insert(key.clone()) {
            return Scan::default();
        }
        match key.as_str() {
            "id" => scan.id = id_text(value),
            "method" => scan.method = serde_json::from_str::<String>(value.get()).ok(),
            "result" | "error" => scan.answers = true,
            _ => {}
        }
        i = back(k);
        match i.checked_sub(1).map(|p| bytes[p]) {
            Some(b',') => i -= 1,
            _ => break,
        }
    }
    scan
}

/// Where the JSON value that ends at `end` of `bytes` starts, if it is whole there.
fn value_start(bytes: &[u8], end: usize) -> Option<usize> {
    match *bytes.get(end.checked_sub(1)?)? {
        b'"' => string_start(bytes, end),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut k = end;
            loop {
                k = k.checked_sub(1)?;
                match bytes[k] {
                    b'"' => k = string_start(bytes, k + 1)?,
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(k);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let mut k = end;
            while k > 0
                && matches!(bytes[k - 1], b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-')
            {
                k -= 1;
            }
            // A scalar that reaches the cut may have lost its start (`7` of `17`).
            (k > 0 && k < end).then_some(k)
        }
    }
}

/// Where the JSON string whose closing quote is `bytes[end - 1]` opens: the nearest quote
/// before it that a backslash does not escape (none when a run of backslashes reaches the
/// cut, which may have hidden one more).
fn string_start(bytes: &[u8], end: usize) -> Option<usize> {
    let mut k = end.checked_sub(1)?;
    loop {
        k = k.checked_sub(1)?;
        if bytes[k] != b'"' {
            continue;
        }
        let mut m = k;
        while m > 0 && bytes[m - 1] == b'\\' {
            m -= 1;
        }
        if m == 0 && m < k {
            return None;
        }
        if (k - m) % 2 == 0 {
            return Some(k);
        }
    }
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
        let (data, tail): (&[u8], &[u8]) = if e.unreadable {
            (&[], &[])
        } else {
            (&e.data, &e.tail)
        };
        let before = stream.lines.buffered();
        let others = others - before;
        stream.lines.budget = Some(MAX_BUFFERED.saturating_sub(others));
        let mut frames = Vec::new();
        stream
            .lines
            .feed(e.offset, e.len, data, tail, e.ktime_ns, &mut frames);
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
                let tool = tool.or(msg.tool.clone().filter(|_| method == "tools/call"));
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
            (true, None) if msg.response => match self.pending.remove(&(e.tgid, id)) {
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
            data: data.to_vec(),
            tail: Vec::new(),
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
        // The first 40 and the last 4 of 100000 bytes captured.
        let start = b"{\"jsonrpc\":\"2.0\",\"id\":72,\"result\":{\"con";
        let mut e = event(2, true, 20, 0, start, 100_000);
        e.tail = b"]}}\n".to_vec();
        a.feed(&e, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].call.incomplete);
        assert!(out[0].call.result.is_none());
        assert_eq!(out[0].call.response_bytes, Some(99_999));
        // The prefix scan trusts only members that end within the start.
        assert_eq!(
            scan_prefix(b"{\"id\":7"),
            Scan::default(),
            "7 may have been 72"
        );
        assert_eq!(
            scan_prefix(b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"id\":\"x\",\"par"),
            Scan {
                id: Some("\"x\"".into()),
                method: Some("tools/call".into()),
                ..Scan::default()
            }
        );
    }

    /// The npm SDK writes `id` last: a response cut at the bound is matched by the id in its
    /// captured end, and so is a request whose id only its end holds.
    #[test]
    fn a_cut_message_is_matched_by_the_id_at_its_end() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req =
            b"{\"method\":\"tools/call\",\"params\":{\"name\":\"big\",\"arguments\":{\"q\":\"";
        let mut e = event(1, false, 20, 0, req, 50_000);
        e.tail = b"zz\"}},\"jsonrpc\":\"2.0\",\"id\":\"r-9\"}\n".to_vec();
        a.feed(&e, &mut out);
        let head = b"{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"aaaa";
        let mut e = event(2, true, 20, 0, head, 300_000);
        e.tail = b"aaa \\\"q\\\" \"}]},\"jsonrpc\":\"2.0\",\"id\":\"r-9\"}\n".to_vec();
        a.feed(&e, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let call = &out[0].call;
        assert_eq!(call.request_id, "\"r-9\"");
        assert_eq!(call.tool.as_deref(), Some("big"));
        assert!(call.incomplete);
        assert_eq!(call.request_bytes, 49_999);
        assert_eq!(call.response_bytes, Some(299_999));
        assert_eq!(a.unmatched, 0);
    }

    /// A cut message the server wrote whose start shows no `result` or `error` (a request of
    /// its own, its `method` hidden by the cut) does not answer a pending request with the
    /// same id.
    #[test]
    fn a_cut_message_with_an_id_only_at_its_end_answers_only_if_it_is_a_response() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let req = b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}\n";
        a.feed(&event(1, false, 20, 0, req, req.len() as u64), &mut out);
        let mut e = event(2, true, 20, 0, b"{\"params\":{\"messages\":[", 90_000);
        e.tail = b"]},\"jsonrpc\":\"2.0\",\"id\":0}\n".to_vec();
        a.feed(&e, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn the_end_scan_reads_only_whole_top_level_members() {
        let scan = |b: &[u8]| scan_suffix(b);
        let id = |t: &str| Scan {
            id: Some(t.into()),
            ..Scan::default()
        };
        assert_eq!(scan(b",\"jsonrpc\":\"2.0\",\"id\":3}"), id("3"));
        assert_eq!(scan(b"x\"}]}, \"id\" : \"a\\\"b\" }  "), id("\"a\\\"b\""));
        // A scalar reaching the cut may have lost its start.
        assert_eq!(scan(b"7}"), Scan::default());
        assert_eq!(scan(b":17}"), Scan::default());
        // Nested members are skipped whole, strings with brackets in them too.
        assert_eq!(
            scan(b"{\"id\":1,\"t\":\"}{\"},\"result\":{\"id\":2},\"id\":4}"),
            Scan {
                id: Some("4".into()),
                answers: true,
                ..Scan::default()
            }
        );
        // An escaped quote whose backslashes reach the cut is not trusted.
        assert_eq!(scan(b"\\\"},\"id\":5}"), id("5"));
        assert_eq!(scan(b"\\\"\"},\"id\":5}"), id("5"));
        assert_eq!(scan(b"\\\"x\":1,\"id\":5}"), id("5"));
        // A repeated member: nothing trusted.
        assert_eq!(scan(b",\"id\":5,\"id\":6}"), Scan::default());
        // Not an object's end.
        assert_eq!(scan(b"\"id\":5]"), Scan::default());
        assert_eq!(scan(b""), Scan::default());
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
            let mut e = event(pipe, written, (next() % 5) as u32, *at, &piece[..cut], len);
            if missing > 0 && next() % 2 == 0 {
                let tail = pieces[(next() % 7) as usize];
                let from = (next() as usize) % (tail.len() + 1);
                let tail = &tail[from..];
                let n = tail.len().min(missing as usize);
                e.tail = tail[tail.len() - n..].to_vec();
            }
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
