//! The blocks the registration socket's requests leave in the trail: a request (granted or
//! refused) and an operator's annotation.
use serde::Serialize;

/// An operator's annotation, as the pipeline records it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Annotation {
    /// `review`, `override`, `acknowledgement` or `note`.
    pub kind: String,
    /// Who the operator says they are; `peer_uid` is who the kernel says connected.
    pub author: String,
    /// What the operator wrote.
    pub text: String,
    /// The `chain.hash` of the record it is about.
    pub subject: Option<String>,
    /// The client's process id, as the kernel reports it (`null` when it did not say).
    #[serialize_always]
    pub peer_pid: Option<i32>,
    /// The client's user id, as the kernel reports it.
    pub peer_uid: u32,
    /// The client's group id, as the kernel reports it.
    pub peer_gid: u32,
}

/// What the pipeline records about a request.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RegistrationEvent {
    /// `register`, `end_task`, `list`, `annotate` and `except` (refused ones), or `invalid`.
    pub op: &'static str,
    /// Whether the request was granted.
    pub granted: bool,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The peer, as the kernel reports it.
    pub peer_pid: Option<i32>,
    /// The client's user id.
    pub peer_uid: u32,
    /// The client's group id.
    pub peer_gid: u32,
    /// The process the request names.
    pub pid: Option<u32>,
    /// The agent it names.
    pub agent: Option<String>,
    /// The task it names.
    pub task: Option<String>,
    /// The session it names.
    pub session: Option<String>,
    /// The agent a granted `override` took the process from (`null` when it took it from
    /// nobody: the process was unattributed, weakly or inherited, or the same agent's).
    pub overrode: Option<String>,
}
