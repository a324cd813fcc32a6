//! The `mcp` block of an `mcp_call` record: one JSON-RPC request of the Model Context Protocol
//! (`tools/call`, `initialize`, `tools/list`) an opted-in agent's MCP server received over its
//! stdio pipes, or an opted-in agent sent over MCP's streamable HTTP transport (through the TLS
//! capture), with its response, matched by id. Arguments and results are kept as the agent's
//! content policy says (see [`Content`]).

use serde::Serialize;

use crate::record::llm::Content;

/// One request and its response.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq)]
pub struct McpCall {
    /// The JSON-RPC method: `tools/call`, `initialize` or `tools/list`.
    pub method: String,
    /// The request's id, as JSON text (`7`, `"abc"`).
    pub request_id: String,
    /// `stdio`: JSON-RPC lines over the server's standard input and output pipes; `http`: the
    /// streamable HTTP transport (a POST per message, the response as JSON or server-sent
    /// events), captured from the agent's TLS.
    pub transport: &'static str,
    /// The agent's content policy: `full`, `redacted` or `digest`.
    pub content_policy: &'static str,
    /// The MCP server: the process that read the request and wrote the response (stdio), or
    /// the endpoint the agent posted to (HTTP).
    pub server: McpServer,
    /// HTTP: names the MCP session (the first 16 hex digits of the SHA-256 of its
    /// `Mcp-Session-Id`, a credential of sorts, so never kept itself).
    pub session: Option<String>,
    /// HTTP: the response's status code.
    pub http_status: Option<u16>,
    /// `tools/call`: the tool's name.
    pub tool: Option<String>,
    /// `tools/call`: the arguments, as JSON text.
    pub arguments: Option<Content>,
    /// `tools/call`: the result (its `content` and any `structuredContent`), as JSON text.
    pub result: Option<Content>,
    /// `tools/call`: the result says the tool failed (`isError`).
    pub is_error: Option<bool>,
    /// `tools/list`: the names of the tools the server offers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// `initialize`: the protocol version the server answered with.
    pub protocol_version: Option<String>,
    /// A JSON-RPC error response.
    pub error: Option<McpError>,
    /// When the server read the request (RFC 3339): with `@timestamp` (when it wrote the
    /// response), the window in which the server's own activity served this call.
    pub started: Option<String>,
    /// Milliseconds from the server reading the request to writing its response.
    pub latency_ms: Option<f64>,
    /// The request's length in bytes (its JSON line).
    pub request_bytes: u64,
    /// The response's length in bytes, when one came.
    pub response_bytes: Option<u64>,
    /// Not whole: no response came, or part of the request or response was not captured
    /// (longer than the agent's `max_bytes` per call, or lost).
    pub incomplete: bool,
}

/// The server process of a call.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct McpServer {
    /// Its pid (stdio; over HTTP the server is not a process the sensor saw).
    pub pid: Option<u32>,
    /// Its `process.entity_id`: its file and network records carry the same (stdio).
    pub entity_id: Option<String>,
    /// HTTP: the endpoint (`https://`, the `Host` or `:authority`, the path; key-like query
    /// values and credential-shaped parts masked). `destination.*` is its address.
    pub url: Option<String>,
    /// Its name (`serverInfo.name` of its `initialize` response, when it was seen).
    pub name: Option<String>,
    /// Its version (`serverInfo.version`).
    pub version: Option<String>,
}

/// A JSON-RPC error.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct McpError {
    /// The error code.
    pub code: i64,
    /// The message, as the content policy keeps it.
    pub message: Content,
}
