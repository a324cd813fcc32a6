//! What an exchange says in its provider's API shape: OpenAI (chat completions, completions,
//! responses, embeddings), Anthropic (messages) and Gemini (generateContent), plain JSON or
//! server-sent events. Bodies are hostile input: anything that is not the expected shape is
//! skipped, never trusted, and a body that is not JSON is reported as a parse error.

use serde_json::Value;

use crate::{
    identity::capture::ContentPolicy,
    llm::{http::Message, redact},
    record::llm::{Content, LlmExchange, LlmMessage, LlmRequest, LlmResponse, LlmUsage, ToolUse},
};

/// A piece of content under `policy`.
pub fn content(text: &str, policy: ContentPolicy) -> Content {
    Content {
        text: match policy {
            ContentPolicy::Digest => None,
            ContentPolicy::Full => Some(redact::mask(text, false).into_owned()),
            ContentPolicy::Redacted => Some(redact::mask(text, true).into_owned()),
        },
        sha256: redact::sha256_hex(text.as_bytes()),
        length: text.len() as u64,
    }
}

/// The provider and operation a request's target and headers name.
fn recognise(req: &Message) -> (&'static str, Option<&'static str>) {
    let path = req.target.split('?').next().unwrap_or("");
    let openai = [
        ("/chat/completions", "chat.completions"),
        ("/completions", "completions"),
        ("/responses", "responses"),
        ("/embeddings", "embeddings"),
    ];
    if path.ends_with("/messages") || req.header("anthropic-version").is_some() {
        let op = if path.ends_with("/count_tokens") {
            "count_tokens"
        } else {
            "messages"
        };
        return ("anthropic", Some(op));
    }
    if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        return ("gemini", Some("generate_content"));
    }
    if path.contains(":countTokens") {
        return ("gemini", Some("count_tokens"));
    }
    if let Some((_, op)) = openai.iter().find(|(p, _)| path.ends_with(p)) {
        return ("openai", Some(op));
    }
    ("unknown", None)
}

/// The exchange record's block for a request and its response (if one came).
pub fn exchange(
    req: &Message,
    resp: Option<&Message>,
    policy: ContentPolicy,
    connection: String,
) -> LlmExchange {
    let (provider, operation) = recognise(req);
    let mut parse_error = None;
    let body: Option<Value> = if req.body.is_empty() {
        None
    } else if req.truncated {
        // A cut JSON body does not parse; its model is usually near the start.
        None
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => Some(v),
            Err(e) => {
                if provider != "unknown" {
                    parse_error = Some(format!("request body: {e}"));
                }
                None
            }
        }
    };
    let path = req.target.split('?').next().unwrap_or("");
    let mut model = body
        .as_ref()
        .and_then(|b| b.get("model"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if model.is_none() && req.truncated {
        model = model_near_start(&req.body);
    }
    if provider == "gemini" {
        // /v1beta/models/{model}:generateContent
        model = path
            .rsplit('/')
            .next()
            .and_then(|s| s.split(':').next())
            .map(str::to_owned);
    }
    let stream_asked = body
        .as_ref()
        .and_then(|b| b.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || path.contains(":streamGenerateContent");
    let prompt = if provider == "unknown" {
        Vec::new()
    } else {
        body.as_ref()
            .map(|b| prompt_messages(provider, b, policy))
            .unwrap_or_default()
    };
    let request = LlmRequest {
        method: req.method.clone(),
        host: req
            .header("host")
            .map(|h| redact::mask(h, false).into_owned()),
        path: redact::target(&req.target),
        body_bytes: req.body_len,
        body_sha256: redact::sha256_hex(&req.body),
        truncated: req.truncated,
        stream: stream_asked,
        http_version: (!req.version.is_empty()).then_some(req.version),
    };
    let mut usage = None;
    let mut response_model = None;
    let mut incomplete = req.truncated || req.incomplete;
    let response = resp.map(|r| {
        let read = read_response(provider, r, policy);
        if let Some(e) = read.parse_error {
            parse_error.get_or_insert(e);
        }
        usage = read.usage;
        response_model = read.model.filter(|m| Some(m) != model.as_ref());
        incomplete |= r.incomplete || r.truncated || !read.complete;
        read.block
    });
    incomplete |= response.is_none();
    let latency_ms = resp.map(|r| r.last_ns.saturating_sub(req.first_ns) as f64 / 1e6);
    LlmExchange {
        provider,
        operation,
        model: model.map(|m| redact::mask(&m, false).into_owned()),
        response_model,
        content_policy: policy.as_str(),
        connection,
        request,
        response,
        prompt,
        usage,
        latency_ms,
        incomplete,
        parse_error,
    }
}

/// `"model": "..."` in the first bytes of a body that was cut.
fn model_near_start(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let at = text.find("\"model\"")?;
    let rest = text[at + 7..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let model = &rest[..end];
    (model.len() <= 200 && !model.contains('\\')).then(|| model.to_owned())
}

/// The text of a message's content: a string, or an array of parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => {
                    if let Some(t) = o.get("text").and_then(Value::as_str) {
                        Some(t.to_owned())
                    } else if let Some(c) = o.get("content") {
                        // Anthropic's tool_result.
                        Some(text_of(c))
                    } else if o.contains_key("image_url")
                        || o.get("type").and_then(Value::as_str) == Some("image")
                        || o.contains_key("inlineData")
                    {
                        Some("[image]".to_owned())
                    } else if let Some(call) = o.get("functionCall").or_else(|| o.get("input")) {
                        Some(call.to_string())
                    } else {
                        o.get("functionResponse").map(Value::to_string)
                    }
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn message(role: &str, text: &str, policy: ContentPolicy) -> LlmMessage {
    LlmMessage {
        role: role.chars().take(64).collect(),
        content: content(text, policy),
    }
}

fn prompt_messages(provider: &str, body: &Value, policy: ContentPolicy) -> Vec<LlmMessage> {
    let mut out = Vec::new();
    let role_of = |m: &Value, default: &str| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    match provider {
        "anthropic" => {
            if let Some(system) = body.get("system") {
                out.push(message("system", &text_of(system), policy));
            }
            for m in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = text_of(m.get("content").unwrap_or(&Value::Null));
                out.push(message(&role_of(m, "user"), &text, policy));
            }
        }
        "gemini" => {
            if let Some(system) = body
                .get("systemInstruction")
                .or_else(|| body.get("system_instruction"))
            {
                let text = text_of(system.get("parts").unwrap_or(system));
                out.push(message("system", &text, policy));
            }
            for m in body
                .get("contents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = text_of(m.get("parts").unwrap_or(&Value::Null));
                out.push(message(&role_of(m, "user"), &text, policy));
            }
        }
        _ => {
            if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
                out.push(message("system", instructions, policy));
            }
            let list = body
                .get("messages")
                .or_else(|| body.get("input"))
                .or_else(|| body.get("prompt"));
            match list {
                Some(Value::Array(items)) => {
                    for m in items {
                        let text = match m {
                            Value::Object(_) => text_of(m.get("content").unwrap_or(&Value::Null)),
                            other => text_of(other),
                        };
                        out.push(message(&role_of(m, "user"), &text, policy));
                    }
                }
                Some(other) => out.push(message("user", &text_of(other), policy)),
                None => {}
            }
        }
    }
    out
}

/// What a response says.
struct ReadResponse {
    block: LlmResponse,
    usage: Option<LlmUsage>,
    model: Option<String>,
    /// The body had its final part (a whole JSON document, or the stream's final event).
    complete: bool,
    parse_error: Option<String>,
}

/// What streamed or whole responses add up to.
#[derive(Default)]
struct Accumulated {
    text: String,
    tools: Vec<(Option<String>, String, String)>,
    finish: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    model: Option<String>,
    error: Option<String>,
    done: bool,
}

fn read_response(provider: &str, r: &Message, policy: ContentPolicy) -> ReadResponse {
    let is_sse = r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut acc = Accumulated::default();
    let mut parse_error = None;
    if is_sse {
        let text = String::from_utf8_lossy(&r.body);
        for event in sse_events(&text) {
            if event.data.trim() == "[DONE]" {
                acc.done = true;
                continue;
            }
            match serde_json::from_str::<Value>(&event.data) {
                Ok(v) => take_chunk(provider, &v, &mut acc),
                Err(e) => {
                    parse_error.get_or_insert_with(|| format!("stream event: {e}"));
                }
            }
        }
    } else if !r.body.is_empty() {
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Array(chunks)) if provider == "gemini" => {
                for c in &chunks {
                    take_chunk(provider, c, &mut acc);
                }
                acc.done = true;
            }
            Ok(v) => {
                take_whole(provider, &v, &mut acc);
                acc.done = true;
            }
            Err(e) => {
                if provider != "unknown" && !r.truncated {
                    parse_error = Some(format!("response body: {e}"));
                }
            }
        }
    } else {
        acc.done = true;
    }
    let nothing = acc.text.is_empty() && acc.tools.is_empty();
    let block = LlmResponse {
        status: r.status,
        body_bytes: r.body_len,
        body_sha256: redact::sha256_hex(&r.body),
        truncated: r.truncated,
        stream: is_sse,
        finish_reason: acc.finish.map(|f| f.chars().take(64).collect()),
        text: (!nothing || provider != "unknown")
            .then(|| content(&acc.text, policy))
            .filter(|_| provider != "unknown"),
        tool_calls: acc
            .tools
            .into_iter()
            .map(|(id, name, args)| ToolUse {
                id,
                name: name.chars().take(256).collect(),
                arguments: content(&args, policy),
            })
            .collect(),
        error: acc.error.map(|e| content(&e, policy)),
    };
    let usage = (acc.input_tokens.is_some() || acc.output_tokens.is_some()).then_some(LlmUsage {
        input_tokens: acc.input_tokens,
        output_tokens: acc.output_tokens,
    });
    ReadResponse {
        block,
        usage,
        model: acc.model,
        complete: acc.done || r.status >= 400,
        parse_error,
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

/// A whole (not streamed) response body.
fn take_whole(provider: &str, v: &Value, acc: &mut Accumulated) {
    acc.model = str_at(v, &["model"]).map(str::to_owned);
    if let Some(e) = v.get("error") {
        acc.error = Some(
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned),
        );
    }
    match provider {
        "anthropic" => {
            for block in v
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                anthropic_block(block, acc);
            }
            acc.finish = str_at(v, &["stop_reason"]).map(str::to_owned);
            acc.input_tokens = u64_at(v, &["usage", "input_tokens"]);
            acc.output_tokens = u64_at(v, &["usage", "output_tokens"]);
        }
        "gemini" => take_chunk(provider, v, acc),
        "openai" => {
            if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
                let msg = choice.get("message").unwrap_or(&Value::Null);
                if let Some(t) = msg.get("content").and_then(Value::as_str) {
                    acc.text.push_str(t);
                } else if let Some(t) = choice.get("text").and_then(Value::as_str) {
                    acc.text.push_str(t);
                }
                for call in msg
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    acc.tools.push((
                        str_at(call, &["id"]).map(str::to_owned),
                        str_at(call, &["function", "name"]).unwrap_or("").to_owned(),
                        str_at(call, &["function", "arguments"])
                            .unwrap_or("")
                            .to_owned(),
                    ));
                }
                acc.finish = str_at(choice, &["finish_reason"]).map(str::to_owned);
            }
            // The responses API: output[] of messages and function calls.
            for item in v
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match str_at(item, &["type"]) {
                    Some("function_call") => acc.tools.push((
                        str_at(item, &["call_id"]).map(str::to_owned),
                        str_at(item, &["name"]).unwrap_or("").to_owned(),
                        str_at(item, &["arguments"]).unwrap_or("").to_owned(),
                    )),
                    Some("message") => {
                        for part in item
                            .get("content")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(t) = str_at(part, &["text"]) {
                                acc.text.push_str(t);
                            }
                        }
                    }
                    _ => {}
                }
            }
            acc.input_tokens = u64_at(v, &["usage", "prompt_tokens"])
                .or_else(|| u64_at(v, &["usage", "input_tokens"]));
            acc.output_tokens = u64_at(v, &["usage", "completion_tokens"])
                .or_else(|| u64_at(v, &["usage", "output_tokens"]));
        }
        _ => {}
    }
}

fn anthropic_block(block: &Value, acc: &mut Accumulated) {
    match str_at(block, &["type"]) {
        Some("text") => acc.text.push_str(str_at(block, &["text"]).unwrap_or("")),
        Some("tool_use") => acc.tools.push((
            str_at(block, &["id"]).map(str::to_owned),
            str_at(block, &["name"]).unwrap_or("").to_owned(),
            block.get("input").map(Value::to_string).unwrap_or_default(),
        )),
        _ => {}
    }
}

/// One streamed event's data.
fn take_chunk(provider: &str, v: &Value, acc: &mut Accumulated) {
    match provider {
        "anthropic" => match str_at(v, &["type"]) {
            Some("message_start") => {
                acc.model = str_at(v, &["message", "model"]).map(str::to_owned);
                acc.input_tokens = u64_at(v, &["message", "usage", "input_tokens"]);
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                if str_at(block, &["type"]) == Some("tool_use") {
                    acc.tools.push((
                        str_at(block, &["id"]).map(str::to_owned),
                        str_at(block, &["name"]).unwrap_or("").to_owned(),
                        String::new(),
                    ));
                } else {
                    anthropic_block(block, acc);
                }
            }
            Some("content_block_delta") => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match str_at(delta, &["type"]) {
                    Some("text_delta") => acc.text.push_str(str_at(delta, &["text"]).unwrap_or("")),
                    Some("input_json_delta") => {
                        if let Some(last) = acc.tools.last_mut() {
                            last.2
                                .push_str(str_at(delta, &["partial_json"]).unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(r) = str_at(v, &["delta", "stop_reason"]) {
                    acc.finish = Some(r.to_owned());
                }
                if let Some(n) = u64_at(v, &["usage", "output_tokens"]) {
                    acc.output_tokens = Some(n);
                }
            }
            Some("message_stop") => acc.done = true,
            Some("error") => {
                acc.error = str_at(v, &["error", "message"]).map(str::to_owned);
            }
            _ => {}
        },
        "gemini" => {
            if let Some(c) = v.get("candidates").and_then(|c| c.get(0)) {
                for part in c
                    .get("content")
                    .and_then(|c| c.get("parts"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = str_at(part, &["text"]) {
                        acc.text.push_str(t);
                    }
                    if let Some(call) = part.get("functionCall") {
                        acc.tools.push((
                            None,
                            str_at(call, &["name"]).unwrap_or("").to_owned(),
                            call.get("args").map(Value::to_string).unwrap_or_default(),
                        ));
                    }
                }
                if let Some(r) = str_at(c, &["finishReason"]) {
                    acc.finish = Some(r.to_owned());
                    acc.done = true;
                }
            }
            if let Some(n) = u64_at(v, &["usageMetadata", "promptTokenCount"]) {
                acc.input_tokens = Some(n);
            }
            if let Some(n) = u64_at(v, &["usageMetadata", "candidatesTokenCount"]) {
                acc.output_tokens = Some(n);
            }
            if let Some(m) = str_at(v, &["modelVersion"]) {
                acc.model = Some(m.to_owned());
            }
        }
        "openai" => {
            if let Some(m) = str_at(v, &["model"]) {
                acc.model = Some(m.to_owned());
            }
            if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
                let delta = choice.get("delta").unwrap_or(&Value::Null);
                if let Some(t) = delta.get("content").and_then(Value::as_str) {
                    acc.text.push_str(t);
                }
                for call in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let index = u64_at(call, &["index"]).unwrap_or(0) as usize;
                    if index >= 128 {
                        continue;
                    }
                    while acc.tools.len() <= index {
                        acc.tools.push((None, String::new(), String::new()));
                    }
                    let slot = &mut acc.tools[index];
                    if let Some(id) = str_at(call, &["id"]) {
                        slot.0 = Some(id.to_owned());
                    }
                    if let Some(n) = str_at(call, &["function", "name"]) {
                        slot.1.push_str(n);
                    }
                    if let Some(a) = str_at(call, &["function", "arguments"]) {
                        slot.2.push_str(a);
                    }
                }
                if let Some(r) = str_at(choice, &["finish_reason"]) {
                    acc.finish = Some(r.to_owned());
                }
            }
            if let Some(n) = u64_at(v, &["usage", "prompt_tokens"]) {
                acc.input_tokens = Some(n);
            }
            if let Some(n) = u64_at(v, &["usage", "completion_tokens"]) {
                acc.output_tokens = Some(n);
            }
            // The responses API's streamed events.
            match str_at(v, &["type"]) {
                Some("response.output_text.delta") => {
                    acc.text.push_str(str_at(v, &["delta"]).unwrap_or(""));
                }
                Some("response.completed") => {
                    let mut whole = Accumulated::default();
                    take_whole(
                        "openai",
                        v.get("response").unwrap_or(&Value::Null),
                        &mut whole,
                    );
                    acc.tools = whole.tools;
                    acc.input_tokens = whole.input_tokens;
                    acc.output_tokens = whole.output_tokens;
                    acc.done = true;
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Whether a response still under way is an event stream that has sent its final event
/// (OpenAI's `data: [DONE]`, Anthropic's `message_stop`): clients stop reading there.
pub fn stream_ended(r: &Message) -> bool {
    if !r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        return false;
    }
    // Only a whole last event counts (it ends with its blank line).
    let tail = &r.body[r.body.len().saturating_sub(256)..];
    let tail = String::from_utf8_lossy(tail);
    if !tail.ends_with("\n\n") && !tail.ends_with("\r\n\r\n") {
        return false;
    }
    let Some(last) = tail.trim_end().lines().last() else {
        return false;
    };
    let Some(data) = last.strip_prefix("data:").map(str::trim) else {
        return false;
    };
    data == "[DONE]"
        || serde_json::from_str::<Value>(data)
            .is_ok_and(|v| str_at(&v, &["type"]) == Some("message_stop"))
}

/// The `data` of each event of an event stream's text, in order.
pub fn sse_data(text: &str) -> Vec<String> {
    sse_events(text).into_iter().map(|e| e.data).collect()
}

/// Whether an event stream under way has answered its JSON-RPC request: its last whole event
/// is a JSON-RPC response (a `result` or an `error`) with the request's id. MCP's streamable
/// HTTP transport answers a POST so, and its clients stop reading there.
pub fn jsonrpc_answered(req: &Message, resp: &Message) -> bool {
    if !resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        return false;
    }
    let body = &resp.body;
    let Some(end) = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .find(|t| body.ends_with(t))
        .map(|t| body.len() - t.len())
    else {
        return false;
    };
    let body = &body[..end];
    let start = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|t| {
            body.windows(t.len())
                .rposition(|w| w == *t)
                .map(|i| i + t.len())
        })
        .max()
        .unwrap_or(0);
    let event = String::from_utf8_lossy(&body[start..]);
    let Some(data) = sse_events(&event).pop().map(|e| e.data) else {
        return false;
    };
    let Ok(answer) = serde_json::from_str::<Value>(&data) else {
        return false;
    };
    if answer.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
        || (answer.get("result").is_none() && answer.get("error").is_none())
    {
        return false;
    }
    let Some(id) = answer.get("id").filter(|i| i.is_string() || i.is_number()) else {
        return false;
    };
    serde_json::from_slice::<Value>(&req.body)
        .is_ok_and(|r| r.get("id") == Some(id) && r.get("method").is_some())
}

/// One server-sent event.
struct SseEvent {
    data: String,
}

/// The events of an event stream: `data:` lines joined, an empty line ends each.
fn sse_events(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.push(SseEvent { data: d });
            }
            continue;
        }
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    // A last event without its blank line still counts (the stream may have been cut).
    if let Some(d) = data {
        out.push(SseEvent { data: d });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(target: &str, headers: &[(&str, &str)], body: &str) -> Message {
        Message {
            method: "POST".into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
            body_len: body.len() as u64,
            status: 200,
            last_ns: 2_000_000,
            first_ns: 1_000_000,
            ..Message::default()
        }
    }

    #[test]
    fn gemini_shape_with_a_function_call() {
        let req = msg(
            "/v1beta/models/gemini-2.0-flash:generateContent?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
            &[],
            r#"{"systemInstruction":{"parts":[{"text":"Be brief."}]},"contents":[{"role":"user","parts":[{"text":"Weather?"}]}]}"#,
        );
        let resp = msg(
            "",
            &[("content-type", "application/json")],
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Checking."},{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3}}"#,
        );
        let x = exchange(&req, Some(&resp), ContentPolicy::Full, "c".into());
        assert_eq!(x.provider, "gemini");
        assert_eq!(x.model.as_deref(), Some("gemini-2.0-flash"));
        assert!(!x.request.path.contains("AIza"), "{}", x.request.path);
        assert_eq!(x.prompt[0].role, "system");
        assert_eq!(x.prompt[1].content.text.as_deref(), Some("Weather?"));
        let r = x.response.unwrap();
        assert_eq!(r.text.unwrap().text.as_deref(), Some("Checking."));
        assert_eq!(r.tool_calls[0].name, "get_weather");
        assert_eq!(r.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(x.usage.unwrap().output_tokens, Some(3));
        assert!(!x.incomplete);
        assert!((x.latency_ms.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn hostile_bodies_are_reported_not_trusted() {
        let req = msg(
            "/v1/chat/completions",
            &[],
            "{\"model\": \"m\", \"messages\": 7}",
        );
        let bad = Message {
            body: b"\xff\xfe{not json".to_vec(),
            ..msg("", &[("content-type", "application/json")], "")
        };
        let x = exchange(&req, Some(&bad), ContentPolicy::Redacted, "c".into());
        assert_eq!(x.model.as_deref(), Some("m"));
        assert!(x.parse_error.is_some());
        assert!(x.incomplete);
        // Deeply nested JSON is refused by the parser's depth limit, not a stack overflow.
        let deep = "[".repeat(100_000);
        let x = exchange(
            &msg("/v1/messages", &[], &deep),
            None,
            ContentPolicy::Digest,
            "c".into(),
        );
        assert!(x.parse_error.is_some());
        // Events that look like the end, inside a text delta, do not end a stream.
        let sse = msg(
            "",
            &[("content-type", "text/event-stream")],
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"message_stop\\n\\ndata: [DONE]\"}}\n\n",
        );
        assert!(!stream_ended(&sse));
    }
}
