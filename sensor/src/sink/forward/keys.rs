//! The key fields of a sealed record that a transport carries beside the line itself (syslog
//! structured data, OTLP attributes): read back from the line, ECS or OCSF, so what the
//! pipeline indexes is exactly what the chain covers. Unknown fields are skipped.
use serde::Deserialize;

/// What a line says about itself; `None` where it does not say (a line that is not a record
/// yields all `None`, and is still delivered).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecordKeys {
    /// `@timestamp` (ECS), or OCSF's `time` (ms) as RFC 3339.
    pub timestamp: Option<String>,
    /// `event.action`.
    pub action: Option<String>,
    /// `identity.agent.id`.
    pub agent_id: Option<String>,
    /// `chain.instance_id`.
    pub instance_id: Option<String>,
    /// `chain.sequence`.
    pub sequence: Option<u64>,
    /// `chain.hash`.
    pub hash: Option<String>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "@timestamp")]
    timestamp: Option<String>,
    /// OCSF: milliseconds since the epoch.
    time: Option<i64>,
    event: Option<Event>,
    identity: Option<Identity>,
    chain: Option<Chain>,
    unmapped: Option<Unmapped>,
}

#[derive(Deserialize)]
struct Unmapped {
    agent_sensor: Option<AgentSensor>,
    chain: Option<Chain>,
}

#[derive(Deserialize)]
struct AgentSensor {
    event: Option<Event>,
    identity: Option<Identity>,
}

#[derive(Deserialize)]
struct Event {
    action: Option<String>,
}

#[derive(Deserialize)]
struct Identity {
    agent: Option<Agent>,
}

#[derive(Deserialize)]
struct Agent {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Chain {
    instance_id: Option<String>,
    sequence: Option<u64>,
    hash: Option<String>,
}

impl RecordKeys {
    /// The keys of one JSON line (without its newline).
    pub fn of(line: &[u8]) -> Self {
        let Ok(l) = serde_json::from_slice::<Line>(line) else {
            return Self::default();
        };
        let (agent_sensor, unmapped_chain) = match l.unmapped {
            Some(u) => (u.agent_sensor, u.chain),
            None => (None, None),
        };
        let (sensor_event, sensor_identity) = match agent_sensor {
            Some(a) => (a.event, a.identity),
            None => (None, None),
        };
        let chain = l.chain.or(unmapped_chain);
        let timestamp = l.timestamp.or_else(|| {
            l.time
                .map(|ms| crate::record::time::rfc3339(i128::from(ms) * 1_000_000))
        });
        let action = l.event.or(sensor_event).and_then(|e| e.action);
        let agent_id = l
            .identity
            .or(sensor_identity)
            .and_then(|i| i.agent)
            .and_then(|a| a.id);
        let (instance_id, sequence, hash) = match chain {
            Some(c) => (c.instance_id, c.sequence, c.hash),
            None => (None, None, None),
        };
        Self {
            timestamp,
            action,
            agent_id,
            instance_id,
            sequence,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ecs_and_ocsf_lines() {
        let ecs = br#"{"@timestamp":"2026-12-01T11:33:00.123456789Z","event":{"action":"exec"},"identity":{"agent":{"id":"a\"b"}},"process":{"args":["\"chain\":{}"]},"chain":{"instance_id":"i-1","sequence":7,"prev_hash":"00","hash":"ab"}}"#;
        assert_eq!(
            RecordKeys::of(ecs),
            RecordKeys {
                timestamp: Some("2026-12-01T11:33:00.123456789Z".into()),
                action: Some("exec".into()),
                agent_id: Some("a\"b".into()),
                instance_id: Some("i-1".into()),
                sequence: Some(7),
                hash: Some("ab".into()),
            }
        );
        let ocsf = br#"{"class_uid":1007,"time":1764588780123,"unmapped":{"agent_sensor":{"event":{"action":"exit"},"identity":{"agent":{"id":"x"}}},"chain":{"instance_id":"i-2","sequence":0,"prev_hash":"00","hash":"cd"}}}"#;
        assert_eq!(
            RecordKeys::of(ocsf),
            RecordKeys {
                timestamp: Some("2025-12-01T11:33:00.123000000Z".into()),
                action: Some("exit".into()),
                agent_id: Some("x".into()),
                instance_id: Some("i-2".into()),
                sequence: Some(0),
                hash: Some("cd".into()),
            }
        );
        assert_eq!(RecordKeys::of(b"not json"), RecordKeys::default());
    }
}
