//! The `llm` block of an `llm_exchange` record: one HTTP request/response exchange an opted-in
//! agent made over TLS, with what the provider's API shape says (model, prompt messages,
//! response text, tool-use requests, token usage). Content is kept as the agent's content policy
//! says: text (`full`, `redacted`) or only its SHA-256 and length (`digest`).

use serde::Serialize;

/// The `tls_capture` block of a `tls_not_captured` record: a process of an agent opted in to
/// TLS capture whose TLS stack the sensor cannot probe, so the trail says what it cannot see.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct TlsNotCaptured {
    /// Why (a Go program, a static program with rustls or another TLS stack compiled in, a
    /// stripped static program).
    pub reason: String,
}

/// One exchange.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq)]
pub struct LlmExchange {
    /// `openai`, `anthropic`, `gemini` (by the API's shape), or `unknown`: an HTTP exchange
    /// whose shape is none of them (metadata and digests only).
    pub provider: &'static str,
    /// What was asked: `chat.completions`, `completions`, `responses`, `embeddings`,
    /// `messages`, `generate_content`, `count_tokens`, or none.
    pub operation: Option<&'static str>,
    /// The model requested (from the request body, or the URL for Gemini).
    pub model: Option<String>,
    /// The model the response names, when it differs from the one requested.
    pub response_model: Option<String>,
    /// The agent's content policy: `full`, `redacted` or `digest`.
    pub content_policy: &'static str,
    /// Names the connection (a hash of the process and the TLS library's connection object),
    /// the same for every exchange on it.
    pub connection: String,
    /// The request.
    pub request: LlmRequest,
    /// The response; absent when none came before the connection went quiet.
    pub response: Option<LlmResponse>,
    /// The prompt messages, in order (a system prompt first, as `role: system`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<LlmMessage>,
    /// Token usage as the response reports it.
    pub usage: Option<LlmUsage>,
    /// Milliseconds from the request's first byte to the response's last.
    pub latency_ms: Option<f64>,
    /// The exchange is not whole: the response is missing, cut off, or a stream ended without
    /// its final event; or part of it was not captured (`request.truncated`,
    /// `response.truncated`).
    pub incomplete: bool,
    /// Why a body could not be read as its provider's shape, when it could not.
    pub parse_error: Option<String>,
}

/// The HTTP request.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq)]
pub struct LlmRequest {
    /// The HTTP method.
    pub method: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The request target, with key-like query values and credential-shaped parts masked.
    pub path: String,
    /// The body's length on the wire.
    pub body_bytes: u64,
    /// The body's SHA-256 as captured (of the whole body unless `truncated`).
    pub body_sha256: String,
    /// Part of the body was not captured (a call longer than the agent's `max_bytes`).
    pub truncated: bool,
    /// The request asked for a streamed response.
    pub stream: bool,
    /// The HTTP version the exchange used: `1.0`, `1.1` or `2`.
    pub http_version: Option<&'static str>,
}

/// The HTTP response.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq)]
pub struct LlmResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body's length on the wire (chunk framing excluded).
    pub body_bytes: u64,
    /// The body's SHA-256 as captured.
    pub body_sha256: String,
    /// Part of the body was not captured.
    pub truncated: bool,
    /// Server-sent events: the response was streamed.
    pub stream: bool,
    /// Why the model stopped (`stop`, `end_turn`, `tool_use`, `STOP`, ...).
    pub finish_reason: Option<String>,
    /// The text the model produced (streamed deltas joined).
    pub text: Option<Content>,
    /// The tools the model asked to call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolUse>,
    /// The provider's error message, for an error response.
    pub error: Option<Content>,
}

/// A piece of content as the content policy keeps it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct Content {
    /// The text, credentials masked (policy `full`), also e-mail addresses and card numbers
    /// (`redacted`); absent under `digest`.
    pub text: Option<String>,
    /// SHA-256 of the content as the agent sent or received it (before masking), lower-case
    /// hex: an auditor given the content later can check it.
    pub sha256: String,
    /// Its length in bytes (UTF-8), before masking.
    pub length: u64,
}

/// One prompt message.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct LlmMessage {
    /// `system`, `user`, `assistant`, `tool`, ... as the request names it (Gemini's `model` is
    /// reported as is).
    pub role: String,
    /// Its text parts joined by newlines (tool results included; images as `[image]`).
    pub content: Content,
}

/// A tool the model asked to call.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct ToolUse {
    /// The call's id, when the provider gives one.
    pub id: Option<String>,
    /// The tool's name.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: Content,
}

/// Token counts.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct LlmUsage {
    /// Tokens of the prompt.
    pub input_tokens: Option<u64>,
    /// Tokens of the response.
    pub output_tokens: Option<u64>,
}
