//! Blocks about the trail itself: where a file ends and which follows (`rotation`), where
//! the run before ended (`sensor.lifecycle.previous`), and which old files retention removed
//! (`retention`). Filled by the sink.
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

/// Old files of a trail directory removed by retention (`retention.*`), so a verifier can
/// tell them from deleted ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Retention {
    /// The files removed, oldest first.
    pub removed: Vec<RemovedFile>,
    /// `output.retention_bytes` (0: no size limit).
    pub max_bytes: u64,
    /// `output.retention_age_ms` (0: no age limit).
    pub max_age_ms: u64,
}

/// One file retention removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RemovedFile {
    /// Its name, within the trail's directory.
    pub file: String,
    /// `age` (last written longer ago than the limit) or `size` (the trail was over its limit).
    pub reason: &'static str,
    /// Its size.
    pub bytes: u64,
    /// Its first sealed record.
    pub first: Option<RecordRef>,
    /// Its last sealed record: the one the trail's next record follows.
    pub last: Option<RecordRef>,
}

/// A sealed record, by its place in its run's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RecordRef {
    /// The run that wrote it.
    pub instance_id: String,
    /// Its `chain.sequence`.
    pub sequence: u64,
    /// Its `chain.hash`.
    pub hash: String,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}
