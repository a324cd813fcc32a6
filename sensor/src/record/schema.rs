//! The record schema as a contract: a JSON Schema (draft 2020-12) derived from the record types
//! themselves, made strict (no property the types do not have), with the chain block every
//! record is sealed with, and for every record kind (`event.action`) the blocks it always has.
//! `agent-sensor schema` prints it; `schema/record-<version>.json` in the repository is this
//! output, checked by a test, so any change to the records is a deliberate change of the file.
use serde_json::{Value, json};

use crate::record::{Record, SCHEMA_VERSION};

/// Every record kind, and the top-level blocks a record of that kind always carries.
pub const KINDS: &[(&str, &[&str])] = &[
    ("exec", &["process", "user"]),
    ("fork", &["process", "user"]),
    ("thread_start", &["process", "user"]),
    ("exit", &["process"]),
    ("thread_exit", &["process"]),
    ("snapshot", &["process"]),
    ("open", &["process", "file", "syscall"]),
    ("rename", &["process", "file", "syscall"]),
    ("unlink", &["process", "file", "syscall"]),
    ("rmdir", &["process", "file", "syscall"]),
    ("mkdir", &["process", "file", "syscall"]),
    ("chmod", &["process", "file", "syscall"]),
    ("chown", &["process", "file", "syscall"]),
    ("truncate", &["process", "file", "syscall"]),
    ("link", &["process", "file", "syscall"]),
    ("symlink", &["process", "file", "syscall"]),
    ("connect", &["process", "network", "syscall"]),
    ("connect_completed", &["process", "network"]),
    ("accept", &["process", "network", "syscall"]),
    ("bind", &["process", "network", "syscall"]),
    ("listen", &["process", "network", "syscall"]),
    ("send", &["process", "network", "syscall"]),
    ("receive", &["process", "network", "syscall"]),
    ("llm_exchange", &["process", "llm"]),
    ("tls_not_captured", &["process", "tls_capture"]),
    ("mcp_call", &["process", "mcp"]),
    ("sensor_start", &["process"]),
    ("sensor_stop", &["process"]),
    ("gap", &["gap"]),
    ("checkpoint", &["checkpoint"]),
    ("rotation", &["rotation"]),
    ("trail_retention", &["retention"]),
    ("agent_registration", &["registration"]),
    ("identities_reloaded", &[]),
    ("rules_reloaded", &[]),
    ("cgroup_created", &["cgroup"]),
    ("annotation", &["annotation"]),
    ("alert", &["alert"]),
    ("policy_decision", &["policy"]),
    ("policy_exception", &["exception"]),
];

/// The schema of every record this version writes.
pub fn record_schema() -> Value {
    // What serialising writes (a field skipped when empty is optional), not what reading needs.
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<Record>()).expect("a schema is JSON");
    // Closed before the per-kind fragments go in: those only add requirements.
    strict(&mut schema);
    let root = schema.as_object_mut().expect("an object schema");
    root.insert(
        "$id".into(),
        json!(format!(
            "https://agent-sensor.dev/schema/record-{SCHEMA_VERSION}.json"
        )),
    );
    root.insert(
        "description".into(),
        json!(format!(
            "agent-sensor record, schema_version {SCHEMA_VERSION}: one JSON object per line"
        )),
    );
    // Sealed onto every record by the evidence chain (see `evidence.rs`).
    let properties = root
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .expect("record properties");
    properties.insert(
        "chain".into(),
        json!({
            "type": "object",
            "properties": {
                "instance_id": {"type": "string"},
                "sequence": {"type": "integer", "minimum": 0},
                "prev_hash": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
            },
            "required": ["instance_id", "sequence", "prev_hash", "hash"],
            "additionalProperties": false
        }),
    );
    properties.insert("schema_version".into(), json!({"const": SCHEMA_VERSION}));
    let required = root
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("required is a list");
    required.push(json!("chain"));
    let actions: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
    let per_kind: Vec<Value> = KINDS
        .iter()
        .map(|(kind, blocks)| {
            json!({
                "if": {"properties": {"event": {"properties": {"action": {"const": kind}}}}},
                "then": {"required": blocks}
            })
        })
        .collect();
    let mut all_of = vec![json!(
        {"properties": {"event": {"properties": {"action": {"enum": actions}}}}}
    )];
    all_of.extend(per_kind);
    root.insert("allOf".into(), Value::Array(all_of));
    schema
}

/// Closes every object schema that lists its properties: a property the types do not have
/// is a contract violation, not an extension.
fn strict(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in o.iter_mut() {
                strict(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The schema as the repository keeps it: pretty, with a final newline.
pub fn rendered() -> String {
    let mut text = serde_json::to_string_pretty(&record_schema()).expect("JSON");
    text.push('\n');
    text
}

/// Per-kind blocks, for documentation and tests.
pub fn required_blocks(kind: &str) -> Option<&'static [&'static str]> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_copy_is_current() {
        let path = format!(
            "{}/../schema/record-{SCHEMA_VERSION}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered(),
            "schema/record-{SCHEMA_VERSION}.json is out of date with the record types: run \
             `cargo run -p agent-sensor -- schema > schema/record-{SCHEMA_VERSION}.json` and \
             review the change (a breaking one needs a new schema_version)"
        );
    }

    #[test]
    fn every_kind_is_listed_once_and_the_schema_is_closed() {
        let mut kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        let schema = record_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(required_blocks("exec"), Some(&["process", "user"][..]));
    }
}
