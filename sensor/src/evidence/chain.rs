//! The evidence chain: every record carries the sensor instance, a sequence number, the hash of
//! the record before it and its own hash, so a verifier can prove a trail complete and
//! unaltered, or say exactly where it is not.
//!
//! Canonical form (what the hash covers): the record's own bytes as written, from its first
//! byte up to and including the closing quote of `chain.prev_hash`. The line then ends with
//! `,"hash":"<64 hex>"}}` and a newline. Hashing the exact bytes, not a re-serialisation, means
//! a verifier in any language needs no JSON canonicalisation: it checks the suffix's shape,
//! hashes the prefix, and reads `sequence` and `prev_hash` from the record. OCSF events
//! (`output.format = "ocsf"`) carry the same block as the last member of `unmapped`, so their
//! lines end with `"}}}`; the verifier tells the two shapes apart by that ending.

use sha2::{Digest, Sha256};

use crate::encode::Encoded;

/// Hex SHA-256 of all zeros: the `prev_hash` of the first record of a chain with no past.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a run's chain stands.
pub struct Chain {
    instance_id: String,
    /// `,"chain":{"instance_id":"<instance>","sequence":`, the same on every record.
    head: Vec<u8>,
    sequence: u64,
    /// Hex of the last record's hash.
    prev: [u8; 64],
    /// SHA-256 states after hashing the shared leading bytes of recent records (see
    /// [`Chain::seal_shared`]), most recent last.
    shared: Vec<(Vec<u8>, Sha256)>,
}

/// How many different shared prefixes (one per agent and attribution, roughly) are kept.
const SHARED_STATES: usize = 8;

impl Chain {
    /// A chain with no past for the run `instance_id`: its first record has sequence 0 and
    /// [`GENESIS`] as `prev_hash`.
    pub fn new(instance_id: &str) -> Self {
        let mut head = b",\"chain\":{\"instance_id\":".to_vec();
        crate::encode::ecs::string(&mut head, instance_id);
        head.extend_from_slice(b",\"sequence\":");
        Self {
            instance_id: instance_id.to_owned(),
            head,
            sequence: 0,
            prev: GENESIS.as_bytes().try_into().expect("64 hex digits"),
            shared: Vec::with_capacity(SHARED_STATES),
        }
    }

    /// The last sealed record's sequence and hash (`None` before the first).
    pub fn last(&self) -> Option<(u64, &str)> {
        self.sequence
            .checked_sub(1)
            .map(|s| (s, std::str::from_utf8(&self.prev).expect("hex")))
    }

    /// The run whose records this chain seals (every record's `chain.instance_id`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Seals the record serialised at `out[start..]` (a JSON object without its trailing
    /// newline): appends the chain block, hashes, closes it and adds the newline.
    pub fn seal(&mut self, out: &mut Vec<u8>, start: usize) {
        self.seal_nested(out, start, 0, 1);
    }

    /// As [`Chain::seal`], for a record whose first `shared` bytes are likely the same as an
    /// earlier record's (the blocks that lead every record of a run or an agent): the hash
    /// state after them is kept and resumed, so they are hashed once, not once per record.
    /// The hash is the same as [`Chain::seal`]'s; only less work.
    pub fn seal_shared(&mut self, out: &mut Vec<u8>, start: usize, shared: usize) {
        self.seal_nested(out, start, shared, 1);
    }

    /// Seals an OCSF event serialised at `out[start..]` whose last member is the `unmapped`
    /// object: the chain block goes inside it (`unmapped.chain`), because OCSF allows no
    /// extra top-level field. Canonical form as for [`Chain::seal`]; the line ends with
    /// `,"hash":"<64 hex>"}}}` and a newline.
    pub fn seal_ocsf(&mut self, out: &mut Vec<u8>, start: usize) {
        self.seal_nested(out, start, 0, 2);
    }

    /// Seals a record an [`crate::encode::Encoder`] wrote at `out[start..]`, where it says.
    pub fn seal_encoded(&mut self, out: &mut Vec<u8>, start: usize, encoded: Encoded) {
        self.seal_nested(out, start, encoded.shared, encoded.depth);
    }

    /// The hash state after `prefix`, from the kept ones or computed and kept.
    fn state_after(&mut self, prefix: &[u8]) -> Sha256 {
        if let Some(i) = self.shared.iter().rposition(|(p, _)| p == prefix) {
            return self.shared[i].1.clone();
        }
        let state = Sha256::new_with_prefix(prefix);
        if self.shared.len() == SHARED_STATES {
            self.shared.remove(0);
        }
        self.shared.push((prefix.to_vec(), state.clone()));
        state
    }

    fn seal_nested(&mut self, out: &mut Vec<u8>, start: usize, shared: usize, depth: usize) {
        for _ in 0..depth {
            debug_assert_eq!(out.last(), Some(&b'}'));
            out.pop();
        }
        out.extend_from_slice(&self.head);
        crate::encode::ecs::unsigned(out, self.sequence);
        out.extend_from_slice(b",\"prev_hash\":\"");
        out.extend_from_slice(&self.prev);
        out.push(b'"');
        let hash = if shared == 0 {
            Sha256::digest(&out[start..])
        } else {
            let (prefix, rest) = out[start..].split_at(shared);
            let mut state = self.state_after(prefix);
            state.update(rest);
            state.finalize()
        };
        let hash = hex64(&hash.into());
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(&hash);
        out.extend_from_slice(b"\"}");
        for _ in 0..depth {
            out.push(b'}');
        }
        out.push(b'\n');
        self.sequence += 1;
        self.prev = hash;
    }
}

fn hex64(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// What a verifier found wrong with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum LineFault {
    /// The line does not end in a chain hash (cut short, or not a record of ours).
    NoHash,
    /// The bytes do not hash to the hash they carry: the record was changed.
    Changed,
    /// The record's JSON or chain block is unreadable.
    Unreadable,
}

/// A record's chain fields, checked against its own bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The bytes do not hash to the hash they carry: the record was changed (its fields are
    /// then only what it claims).
    pub changed: bool,
    /// The run it claims to belong to.
    pub instance_id: String,
    /// Its place in that run's chain.
    pub sequence: u64,
    /// The hash it claims for the record before it: a gap or a reorder shows here.
    pub prev_hash: String,
    /// The hash it carries (checked against its bytes: see `changed`).
    pub hash: String,
    /// `event.action`, to tell recorded losses (`gap`) from tampering.
    pub action: String,
    /// A checkpoint's claim: the sequence and hash it covers, and its signature.
    pub checkpoint: Option<(u64, String, String)>,
    /// A `sensor_start`'s link to the last record of the run before it.
    pub previous: Option<Link>,
    /// A `rotation` record's next file.
    pub next_file: Option<String>,
    /// A `trail_retention` record's removed files, each by its last record.
    pub retained: Vec<Link>,
}

/// A record of another run, named by a new run's `sensor_start`
/// (`sensor.lifecycle.previous`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The earlier run.
    pub instance_id: String,
    /// Its last record's sequence number.
    pub sequence: u64,
    /// Its last record's hash, which the new run vouches for.
    pub hash: String,
    /// The file it was in.
    pub file: String,
}

/// Checks one line (without its newline): an ECS record (`chain` at the top) or an OCSF event
/// (`unmapped.chain`, the record's own fields under `unmapped.agent_sensor`).
pub fn check_line(line: &[u8]) -> Result<Sealed, LineFault> {
    check_line_value(line).map(|(sealed, _)| sealed)
}

/// [`check_line`], also giving the line parsed (the whole event, ECS or OCSF), so a reader
/// that wants the record's fields does not parse it twice.
pub fn check_line_value(line: &[u8]) -> Result<(Sealed, serde_json::Value), LineFault> {
    let ocsf = line.ends_with(b"\"}}}");
    let close: &[u8] = if ocsf { b"\"}}}" } else { b"\"}}" };
    let suffix_len = ",\"hash\":\"".len() + 64 + close.len();
    if line.len() < suffix_len || !line.ends_with(close) {
        return Err(LineFault::NoHash);
    }
    let (prefix, suffix) = line.split_at(line.len() - suffix_len);
    let hash = suffix
        .strip_prefix(b",\"hash\":\"")
        .and_then(|s| s.strip_suffix(close))
        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
        .ok_or(LineFault::NoHash)?;
    let hash = String::from_utf8_lossy(hash).into_owned();
    let changed = crate::record::hex(&Sha256::digest(prefix)) != hash;
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) if changed => return Err(LineFault::Changed),
        // An OCSF event cut one byte short looks like a sealed ECS record whose JSON does not
        // close: it is a torn line, like any other cut short.
        Err(_)
            if !ocsf
                && serde_json::from_slice::<serde_json::Value>(&[line, b"}"].concat()).is_ok() =>
        {
            return Err(LineFault::NoHash);
        }
        Err(_) => return Err(LineFault::Unreadable),
    };
    let (chain, record) = if ocsf {
        (
            &value["unmapped"]["chain"],
            &value["unmapped"]["agent_sensor"],
        )
    } else {
        (&value["chain"], &value)
    };
    let sealed = sealed(changed, hash, chain, record)?;
    Ok((sealed, value))
}

/// The chain block and the fields the verifier reads, from a parsed record.
fn sealed(
    changed: bool,
    hash: String,
    chain: &serde_json::Value,
    value: &serde_json::Value,
) -> Result<Sealed, LineFault> {
    Ok(Sealed {
        changed,
        instance_id: chain["instance_id"]
            .as_str()
            .ok_or(LineFault::Unreadable)?
            .to_owned(),
        sequence: chain["sequence"].as_u64().ok_or(LineFault::Unreadable)?,
        prev_hash: chain["prev_hash"]
            .as_str()
            .ok_or(LineFault::Unreadable)?
            .to_owned(),
        hash,
        action: value["event"]["action"].as_str().unwrap_or("").to_owned(),
        checkpoint: value.get("checkpoint").map(|c| {
            (
                c["covers_sequence"].as_u64().unwrap_or(u64::MAX),
                c["covers_hash"].as_str().unwrap_or("").to_owned(),
                c["signature"].as_str().unwrap_or("").to_owned(),
            )
        }),
        previous: value["sensor"]["lifecycle"].get("previous").map(|p| Link {
            instance_id: p["instance_id"].as_str().unwrap_or("").to_owned(),
            sequence: p["sequence"].as_u64().unwrap_or(u64::MAX),
            hash: p["hash"].as_str().unwrap_or("").to_owned(),
            file: p["file"].as_str().unwrap_or("").to_owned(),
        }),
        next_file: value["rotation"]["next_file"].as_str().map(str::to_owned),
        retained: value["retention"]["removed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let last = f.get("last")?;
                Some(Link {
                    instance_id: last["instance_id"].as_str()?.to_owned(),
                    sequence: last["sequence"].as_u64()?,
                    hash: last["hash"].as_str()?.to_owned(),
                    file: f["file"].as_str().unwrap_or("").to_owned(),
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(records: &[&str]) -> Vec<Vec<u8>> {
        let mut chain = Chain::new("run-1");
        records
            .iter()
            .map(|r| {
                let mut out = r.as_bytes().to_vec();
                chain.seal(&mut out, 0);
                out.pop();
                out
            })
            .collect()
    }

    #[test]
    fn resuming_a_shared_prefix_gives_the_same_hashes() {
        // Records of three "agents" interleaved, more prefixes than are kept, and prefixes of
        // every length around the 64-byte block size.
        let records: Vec<(String, usize)> = (0..200)
            .map(|i| {
                let prefix = format!("{{\"host\":{{\"agent\":\"{}\"}}", "x".repeat(i % 11 * 7));
                let line = format!("{prefix},\"n\":{i}}}");
                (line, prefix.len())
            })
            .collect();
        let (mut plain, mut shared) = (Chain::new("i"), Chain::new("i"));
        for (line, prefix) in &records {
            let mut a = line.as_bytes().to_vec();
            let mut b = a.clone();
            plain.seal(&mut a, 0);
            shared.seal_shared(&mut b, 0, *prefix);
            assert_eq!(a, b);
        }
        assert_eq!(shared.shared.len(), SHARED_STATES, "bounded");
    }

    #[test]
    fn seals_and_links_records() {
        let lines = sealed(&[
            r#"{"event":{"action":"a"}}"#,
            r#"{"event":{"action":"b"},"x":"y"}"#,
        ]);
        let first = check_line(&lines[0]).unwrap();
        let second = check_line(&lines[1]).unwrap();
        assert_eq!((first.sequence, second.sequence), (0, 1));
        assert_eq!(first.prev_hash, GENESIS);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(second.action, "b");
        let v: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        assert_eq!(v["x"], "y", "the record itself is unchanged");
        assert_eq!(v["chain"]["hash"], second.hash.as_str());
    }

    #[test]
    fn any_change_is_detected() {
        let line = sealed(&[r#"{"event":{"action":"exec"},"process":{"pid":42}}"#]).remove(0);
        for i in 0..line.len() {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            let noticed = check_line(&bad).map_or(true, |s| s.changed);
            assert!(noticed, "a change at byte {i} went unnoticed");
        }
        assert_eq!(check_line(&line[..line.len() - 5]), Err(LineFault::NoHash));
        assert_eq!(check_line(b"{}"), Err(LineFault::NoHash));
    }

    #[test]
    fn seals_ocsf_events_inside_unmapped_and_detects_any_change() {
        let mut chain = Chain::new("run-1");
        let mut first =
            br#"{"class_uid":1007,"unmapped":{"agent_sensor":{"event":{"action":"exec"}}}}"#
                .to_vec();
        chain.seal_ocsf(&mut first, 0);
        first.pop();
        let mut second = br#"{"class_uid":0,"unmapped":{"agent_sensor":{"event":{"action":"checkpoint"},"checkpoint":{"covers_sequence":0,"covers_hash":"h","signature":"s"}}}}"#.to_vec();
        chain.seal_ocsf(&mut second, 0);
        second.pop();
        let (a, b) = (check_line(&first).unwrap(), check_line(&second).unwrap());
        assert_eq!((a.sequence, a.prev_hash.as_str()), (0, GENESIS));
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(
            (a.action.as_str(), b.action.as_str()),
            ("exec", "checkpoint")
        );
        assert_eq!(b.checkpoint, Some((0, "h".to_owned(), "s".to_owned())));
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert!(v.get("chain").is_none());
        assert_eq!(v["unmapped"]["chain"]["hash"], a.hash.as_str());
        for i in 0..first.len() {
            let mut bad = first.clone();
            bad[i] ^= 0x01;
            let noticed = check_line(&bad).map_or(true, |s| s.changed);
            assert!(noticed, "a change at byte {i} went unnoticed");
        }
        assert_eq!(
            check_line(&first[..first.len() - 1]),
            Err(LineFault::NoHash)
        );
    }
}
