//! The `host` block of every record (ECS `host.*`): who and where the sensor runs. Filled by
//! `enrich::host`.
use serde::Serialize;

/// The host block of every record (ECS `host.*`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct HostInfo {
    /// The host name.
    pub name: String,
    /// `/etc/machine-id`, when the host has one.
    pub id: Option<String>,
    /// Changes at every boot; with a pid and a start time it names a process uniquely.
    pub boot_id: String,
    /// The machine architecture (`x86_64`, `aarch64`, ...).
    pub architecture: &'static str,
    /// The operating system.
    pub os: HostOs,
}

/// The host's operating system (ECS `host.os.*`).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct HostOs {
    /// The kernel release.
    pub kernel: String,
    /// `linux`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}
