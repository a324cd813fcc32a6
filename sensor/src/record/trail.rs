//! Blocks about the trail itself: where a file ends and which follows (`rotation`), and where
//! the run before ended (`sensor.lifecycle.previous`). Filled by the sink.
use serde::Serialize;

/// A rotation, as its record states it (`rotation.*`): the file it closes, and the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Rotation {
    /// `size` or `age`.
    pub reason: &'static str,
    /// The file this record closes (its name, within the trail's directory).
    pub file: String,
    /// The file that continues the trail.
    pub next_file: String,
}

/// The record a new run continues from (`sensor.lifecycle.previous`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LastRecord {
    /// The run that wrote it.
    pub instance_id: String,
    /// Its `chain.sequence`.
    pub sequence: u64,
    /// Its `chain.hash`.
    pub hash: String,
    /// The file it is in (its name, within the trail's directory).
    pub file: String,
    /// Bytes after it that are not a whole record: a write cut short by a crash.
    #[serde(skip_serializing_if = "is_zero")]
    pub torn_bytes: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}
