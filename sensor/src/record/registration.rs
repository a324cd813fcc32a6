//! The blocks the registration socket's requests leave in the trail: a request (granted or
//! refused) and an operator's annotation.
use serde::Serialize;

/// An operator's annotation, as the pipeline records it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Annotation {
    pub kind: String,
    /// Who the operator says they are; `peer_uid` is who the kernel says connected.
    pub author: String,
    pub text: String,
    pub subject: Option<String>,
    // `null` when the kernel did not say: always present (the schema requires it).
    #[serialize_always]
    pub peer_pid: Option<i32>,
    pub peer_uid: u32,
    pub peer_gid: u32,
}

/// What the pipeline records about a request.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RegistrationEvent {
    /// `register`, `end_task`, `list`, `annotate` (refused ones), or `invalid`.
    pub op: &'static str,
    pub granted: bool,
    pub reason: Option<String>,
    /// The peer, as the kernel reports it.
    pub peer_pid: Option<i32>,
    pub peer_uid: u32,
    pub peer_gid: u32,
    pub pid: Option<u32>,
    pub agent: Option<String>,
    pub task: Option<String>,
    pub session: Option<String>,
}
