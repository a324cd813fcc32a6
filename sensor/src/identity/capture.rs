//! An agent's content-capture opt-in (`capture:` in the manifest): whether the plaintext of its
//! TLS traffic is captured, whether what its processes pass through pipes is (MCP's stdio
//! transport), how much of each call, and how much of the content the trail keeps.
//! Off unless the operator turns it on per agent.

use std::fmt;

use serde::Deserialize;

/// Most bytes one `SSL_read`/`SSL_write` (or pipe `read`/`write`) capture may copy (the
/// kernel's per-call bound).
pub const MAX_BYTES_CAP: u32 = 16 * 1024;
/// The per-call bound when `max_bytes` is not given.
pub const DEFAULT_MAX_BYTES: u32 = 16 * 1024;
/// The smallest per-call bound: an HTTP request line and its headers must fit.
pub const MIN_MAX_BYTES: u32 = 256;

/// How much of captured content (prompts, responses, tool arguments) a record keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentPolicy {
    /// The content, with credentials masked.
    Full,
    /// The content with credentials and key- or token-shaped strings masked.
    #[default]
    Redacted,
    /// Only the SHA-256 and length of each piece of content.
    Digest,
}

impl ContentPolicy {
    /// The number the kernel passes through in each capture (`TlsCapture::content`).
    pub fn to_kernel(self) -> u32 {
        match self {
            Self::Full => 0,
            Self::Redacted => 1,
            Self::Digest => 2,
        }
    }

    /// The policy a capture carries; an unknown number keeps the least (digest).
    pub fn from_kernel(n: u8) -> Self {
        match n {
            0 => Self::Full,
            1 => Self::Redacted,
            _ => Self::Digest,
        }
    }

    /// The manifest's (and the record's) name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Redacted => "redacted",
            Self::Digest => "digest",
        }
    }
}

/// What an agent lets the sensor capture of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturePolicy {
    /// Capture the plaintext of its TLS calls (`SSL_read`/`SSL_write` of the TLS library its
    /// processes map).
    pub tls: bool,
    /// Capture what its processes read from and write to pipes (`read`/`write` on a pipe), for
    /// the JSON-RPC of MCP servers over stdio.
    pub stdio: bool,
    /// How much of the content records keep.
    pub content: ContentPolicy,
    /// Most bytes copied per TLS or pipe call; the rest is counted and flagged as truncated.
    pub max_bytes: u32,
}

impl fmt::Display for CapturePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capture tls={} stdio={} content={} max_bytes={}",
            self.tls,
            self.stdio,
            self.content.as_str(),
            self.max_bytes
        )
    }
}

/// The manifest's `capture:` block as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapture {
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    stdio: bool,
    content: Option<String>,
    max_bytes: Option<u32>,
}

impl RawCapture {
    /// Validates the block; the message says what is wrong (the manifest adds file and line).
    pub(crate) fn compile(self) -> Result<CapturePolicy, String> {
        let content = match self.content.as_deref() {
            None | Some("redacted") => ContentPolicy::Redacted,
            Some("full") => ContentPolicy::Full,
            Some("digest") => ContentPolicy::Digest,
            Some(other) => {
                return Err(format!(
                    "capture content {other:?} must be one of full, redacted, digest"
                ));
            }
        };
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if !(MIN_MAX_BYTES..=MAX_BYTES_CAP).contains(&max_bytes) {
            return Err(format!(
                "capture max_bytes {max_bytes} must be between {MIN_MAX_BYTES} and {MAX_BYTES_CAP}"
            ));
        }
        Ok(CapturePolicy {
            tls: self.tls,
            stdio: self.stdio,
            content,
            max_bytes,
        })
    }
}
