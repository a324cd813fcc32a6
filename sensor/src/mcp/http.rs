//! MCP over its streamable HTTP transport, from the HTTP exchanges the TLS capture reassembled
//! ([`crate::llm`], HTTP/1.1 or HTTP/2): a POST whose body is a JSON-RPC request is MCP, and its
//! response (JSON, or server-sent events that may carry the server's own notifications first)
//! holds the message answering it, found by the request's id: a message with another id
//! answers nothing. `tools/call`, `initialize` and `tools/list` become `mcp_call` records like
//! the stdio ones; other MCP traffic of the session (notifications, the GET of the server's
//! event stream, the DELETE that ends a session) is MCP and so no `llm_exchange`, but no record
//! either. The server's name and version come from the session's `initialize` result, by the
//! `Mcp-Session-Id` the server gave it.

use std::collections::HashMap;

use serde_json::Value;

use super::{RECORDED, read_response, scan_prefix};
use crate::{
    identity::capture::ContentPolicy,
    llm::{http::Message, provider, redact},
    record::mcp::{McpCall, McpServer},
};

/// Most sessions whose server is remembered; beyond it the memory starts over.
const MAX_SESSIONS: usize = 4096;

/// What an HTTP exchange is, as MCP.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Not MCP: an `llm_exchange` (or whatever else reads it).
    NotMcp,
    /// MCP traffic; a call to record, or none (a notification, a method not recorded, the
    /// session's event stream).
    Mcp(Option<Box<McpCall>>),
}

/// The servers of the sessions seen: `serverInfo` (name, version) by the process and the
/// session id's digest.
#[derive(Default)]
pub struct Sessions {
    servers: HashMap<(u32, String), (Option<String>, Option<String>)>,
}

/// The session id's name in records: a digest, never the id (a bearer of the session).
fn session_name(id: &str) -> String {
    redact::sha256_hex(id.as_bytes())[..16].to_owned()
}

/// A JSON-RPC id as its JSON text (a number or a string; anything else is no id).
fn id_text(v: &Value) -> Option<String> {
    (v.is_number() || v.is_string()).then(|| v.to_string())
}

/// The request's JSON-RPC id and method, and its `params` as JSON text: from the whole body,
/// or from a body the capture cut, what its captured start proves (no params).
fn request_of(req: &Message) -> Option<(Option<String>, String, Option<String>)> {
    if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
        let obj = v.as_object()?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return None;
        }
        let method = obj.get("method")?.as_str()?.to_owned();
        let id = obj.get("id").and_then(id_text);
        let params = obj.get("params").map(Value::to_string);
        return Some((id, method, params));
    }
    if req.truncated && req.header("mcp-protocol-version").is_some() {
        let scan = scan_prefix(&req.body);
        return Some((scan.id, scan.method?, None));
    }
    None
}

/// The message of `body` (one JSON-RPC message, or a batch) whose id is `id`.
fn answer_in(body: &[u8], id: &str) -> Option<(Value, u64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let is_answer = |m: &Value| {
        m.get("id").and_then(id_text).as_deref() == Some(id)
            && (m.get("result").is_some() || m.get("error").is_some())
    };
    match v {
        Value::Array(items) => items
            .into_iter()
            .find(is_answer)
            .map(|m| (m, body.len() as u64)),
        m => is_answer(&m).then_some((m, body.len() as u64)),
    }
}

/// The response's message answering `id`: the JSON body, or the first event that answers it.
fn answer(resp: &Message, id: &str) -> Option<(Value, u64)> {
    let event_stream = resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if !event_stream {
        return answer_in(&resp.body, id);
    }
    provider::sse_data(&String::from_utf8_lossy(&resp.body))
        .iter()
        .find_map(|data| answer_in(data.as_bytes(), id))
}

impl Sessions {
    /// Reads an exchange of process `tgid` as MCP; see the module doc.
    pub fn read(
        &mut self,
        tgid: u32,
        req: &Message,
        resp: Option<&Message>,
        policy: ContentPolicy,
    ) -> Seen {
        let session_header = req.header("mcp-session-id");
        if req.method != "POST" {
            return if session_header.is_some() {
                Seen::Mcp(None)
            } else {
                Seen::NotMcp
            };
        }
        let Some((id, method, params)) = request_of(req) else {
            return if session_header.is_some() {
                Seen::Mcp(None)
            } else {
                Seen::NotMcp
            };
        };
        let Some(id) = id else {
            return Seen::Mcp(None);
        };
        if !RECORDED.contains(&method.as_str()) {
            return Seen::Mcp(None);
        }
        let (tool, arguments) = params
            .as_deref()
            .filter(|_| method == "tools/call")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .map_or((None, None), |p| {
                (
                    p.get("name").and_then(Value::as_str).map(str::to_owned),
                    p.get("arguments").map(Value::to_string),
                )
            });
        let host = req.header("host").unwrap_or("");
        let url = format!(
            "https://{}{}",
            redact::mask(host, false),
            redact::target(&req.target)
        );
        // The session: the request's header, or for `initialize` the one the server gave.
        let session = session_header
            .or_else(|| resp.and_then(|r| r.header("mcp-session-id")))
            .map(session_name);
        let mut call = McpCall {
            method,
            request_id: id.clone(),
            transport: "http",
            content_policy: policy.as_str(),
            server: McpServer {
                pid: None,
                entity_id: None,
                url: Some(url),
                name: None,
                version: None,
            },
            session: session.clone(),
            http_status: resp.map(|r| r.status),
            tool,
            arguments: arguments.as_deref().map(|a| provider::content(a, policy)),
            result: None,
            is_error: None,
            tools: Vec::new(),
            protocol_version: None,
            error: None,
            started: None,
            latency_ms: resp.map(|r| r.last_ns.saturating_sub(req.first_ns) as f64 / 1e6),
            request_bytes: req.body_len,
            response_bytes: None,
            incomplete: req.truncated || req.incomplete,
        };
        let found = resp.and_then(|r| answer(r, &id));
        match (&found, resp) {
            (Some((message, len)), Some(r)) => {
                call.response_bytes = Some(*len);
                call.incomplete |= r.truncated;
                let text = |k: &str| message.get(k).map(Value::to_string);
                let info = read_response(
                    &mut call,
                    text("result").as_deref(),
                    text("error").as_deref(),
                    policy,
                );
                if let (Some(info), Some(s)) = (info, &session) {
                    if self.servers.len() >= MAX_SESSIONS {
                        self.servers.clear();
                    }
                    self.servers.insert((tgid, s.clone()), info);
                }
            }
            // An answer not found: none came, the stream was cut, or an error status came
            // without one (then the status says what happened).
            (None, Some(r)) => {
                call.incomplete |= r.incomplete || r.truncated || r.status / 100 == 2;
            }
            _ => call.incomplete = true,
        }
        if let Some(s) = &session
            && let Some((name, version)) = self.servers.get(&(tgid, s.clone()))
        {
            call.server.name.clone_from(name);
            call.server.version.clone_from(version);
        }
        Seen::Mcp(Some(Box::new(call)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(method: &str, headers: &[(&str, &str)], body: &str) -> Message {
        Message {
            method: method.into(),
            target: if method.is_empty() {
                String::new()
            } else {
                "/mcp".into()
            },
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
            body_len: body.len() as u64,
            status: if method.is_empty() { 200 } else { 0 },
            first_ns: 1_000_000,
            last_ns: 3_000_000,
            ..Message::default()
        }
    }

    fn resp(headers: &[(&str, &str)], body: &str) -> Message {
        msg("", headers, body)
    }

    fn call(seen: Seen) -> McpCall {
        match seen {
            Seen::Mcp(Some(c)) => *c,
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn a_session_initialize_then_a_tool_call_over_an_event_stream() {
        let mut s = Sessions::default();
        let init = msg(
            "POST",
            &[
                ("host", "127.0.0.1:8443"),
                ("content-type", "application/json"),
            ],
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        );
        let answer = resp(
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "SeSsIoN-sEcReT"),
            ],
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"notes","version":"1.2"}}}"#,
        );
        let c = call(s.read(7, &init, Some(&answer), ContentPolicy::Full));
        assert_eq!(c.method, "initialize");
        assert_eq!(c.transport, "http");
        assert_eq!(c.protocol_version.as_deref(), Some("2025-06-18"));
        assert_eq!(c.server.name.as_deref(), Some("notes"));
        assert_eq!(c.server.url.as_deref(), Some("https://127.0.0.1:8443/mcp"));
        let session = c.session.clone().unwrap();
        assert_eq!(session.len(), 16);
        assert!(!c.incomplete);

        // A notification: MCP, no record.
        let note = msg(
            "POST",
            &[("mcp-session-id", "SeSsIoN-sEcReT")],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(s.read(7, &note, None, ContentPolicy::Full), Seen::Mcp(None));

        // The call: the stream's first events are the server's own (a log notification, a
        // message with a forged id); the answer is the one with the request's id.
        let req = msg(
            "POST",
            &[("mcp-session-id", "SeSsIoN-sEcReT")],
            r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"read_note","arguments":{"title":"todo"}}}"#,
        );
        let events = concat!(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"c2\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"forged\"}]}}\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"c1\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"buy milk\"}],\"isError\":false}}\n\n",
        );
        let r = resp(&[("content-type", "text/event-stream")], events);
        let c = call(s.read(7, &req, Some(&r), ContentPolicy::Full));
        assert_eq!(c.tool.as_deref(), Some("read_note"));
        assert_eq!(
            c.arguments.unwrap().text.as_deref(),
            Some(r#"{"title":"todo"}"#)
        );
        let result = c.result.unwrap().text.unwrap();
        assert!(result.contains("buy milk") && !result.contains("forged"));
        assert_eq!(c.is_error, Some(false));
        assert_eq!(c.session.as_deref(), Some(session.as_str()));
        assert_eq!(c.server.name.as_deref(), Some("notes"));
        assert_eq!(c.http_status, Some(200));
        assert!(!c.incomplete);
        assert_eq!(c.latency_ms, Some(2.0));
        // The same session id from another process names no server of its.
        let c = call(s.read(8, &req, Some(&r), ContentPolicy::Full));
        assert_eq!(c.server.name, None);
    }

    #[test]
    fn what_is_not_mcp_and_what_answers_nothing() {
        let mut s = Sessions::default();
        let llm = msg(
            "POST",
            &[],
            r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(s.read(7, &llm, None, ContentPolicy::Full), Seen::NotMcp);
        let get = msg("GET", &[("mcp-session-id", "x")], "");
        assert_eq!(s.read(7, &get, None, ContentPolicy::Full), Seen::Mcp(None));
        let ping = msg("POST", &[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert_eq!(s.read(7, &ping, None, ContentPolicy::Full), Seen::Mcp(None));
        // A response with another id only: the call is incomplete, nothing taken from it.
        let req = msg(
            "POST",
            &[],
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
        );
        let r = resp(
            &[("content-type", "application/json")],
            r#"{"jsonrpc":"2.0","id":6,"result":{"tools":[{"name":"x"}]}}"#,
        );
        let c = call(s.read(7, &req, Some(&r), ContentPolicy::Digest));
        assert!(c.incomplete && c.tools.is_empty());
        // A 404 for an expired session, without a JSON-RPC answer: said by its status.
        let mut gone = resp(&[], "session not found");
        gone.status = 404;
        let c = call(s.read(7, &req, Some(&gone), ContentPolicy::Full));
        assert_eq!(c.http_status, Some(404));
        assert!(!c.incomplete);
        // A JSON-RPC error answer.
        let r = resp(
            &[("content-type", "application/json")],
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no such method"}}"#,
        );
        let c = call(s.read(7, &req, Some(&r), ContentPolicy::Digest));
        let e = c.error.unwrap();
        assert_eq!(e.code, -32601);
        assert_eq!(e.message.text, None);
        // A cut request: what its start proves.
        let mut cut = msg(
            "POST",
            &[("mcp-protocol-version", "2025-06-18")],
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write","argu"#,
        );
        cut.truncated = true;
        let c = call(s.read(7, &cut, None, ContentPolicy::Full));
        assert_eq!(
            (c.method.as_str(), c.request_id.as_str()),
            ("tools/call", "9")
        );
        assert!(c.incomplete);
    }
}
