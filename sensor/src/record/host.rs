//! The `host` block of every record (ECS `host.*`): who and where the sensor runs. Filled by
//! `enrich::host`.
use serde::Serialize;

/// The host block of every record (ECS `host.*`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct HostInfo {
    pub name: String,
    /// `/etc/machine-id`, when the host has one.
    pub id: Option<String>,
    /// Changes at every boot; with a pid and a start time it names a process uniquely.
    pub boot_id: String,
    pub architecture: &'static str,
    pub os: HostOs,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct HostOs {
    pub kernel: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}
