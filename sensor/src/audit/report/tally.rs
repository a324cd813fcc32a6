//! Bounded tallies for a one-pass report: counts by key, each with the first and last record
//! it came from ([`Link`]), never more than a fixed number of keys (the rest are counted
//! together), so memory does not grow with the trail.
use std::{collections::HashMap, sync::Arc};

use serde::{Serialize, ser::SerializeMap as _};

/// Where an item of the report came from: the record's place in its file and in its run's
/// chain, and its hash, so the report is a view of the evidence that can be checked against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The trail file, as given.
    pub file: Arc<str>,
    /// The line in that file, from 1.
    pub line: u64,
    /// The run (`chain.instance_id`).
    pub run: Arc<str>,
    /// `chain.sequence`.
    pub sequence: u64,
    /// `chain.hash`.
    pub hash: [u8; 32],
}

impl Link {
    /// `chain.hash` in hex, as the record carries it.
    pub fn hash_hex(&self) -> String {
        crate::record::hex(&self.hash)
    }

    /// A short name for people: the file's name, line and sequence.
    pub fn short(&self) -> String {
        let name = self.file.rsplit('/').next().unwrap_or(&self.file);
        format!("{name}:{} #{}", self.line, self.sequence)
    }
}

/// A 64-digit hex hash as bytes (zeros where a digit is not hex: the verifier reports those).
pub fn hash_bytes(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let digit = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    };
    for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *o = digit(pair[0]) << 4 | digit(pair[1]);
    }
    out
}

impl Serialize for Link {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("file", &*self.file)?;
        m.serialize_entry("line", &self.line)?;
        m.serialize_entry("run", &*self.run)?;
        m.serialize_entry("sequence", &self.sequence)?;
        m.serialize_entry("hash", &self.hash_hex())?;
        m.end()
    }
}

/// One key of a tally.
#[derive(Debug)]
pub struct Entry<S> {
    /// Records counted under it.
    pub records: u64,
    /// The first of them.
    pub first: Link,
    /// The last of them.
    pub last: Link,
    /// What the caller counts beyond records.
    pub stats: S,
}

/// Counts by key, at most `cap` keys; records of further keys are counted in `overflow`.
#[derive(Debug)]
pub struct Tally<S> {
    entries: HashMap<String, Entry<S>>,
    cap: usize,
    /// Records whose key came after the tally was full.
    pub overflow: u64,
}

impl<S: Default> Tally<S> {
    /// An empty tally of at most `cap` keys.
    pub fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap,
            overflow: 0,
        }
    }

    /// Counts a record under `key`; its stats to update, or `None` when the tally is full.
    pub fn add(&mut self, key: &str, link: &Link) -> Option<&mut S> {
        if self.entries.contains_key(key) {
            let e = self.entries.get_mut(key)?;
            e.records += 1;
            e.last.clone_from(link);
            return Some(&mut e.stats);
        }
        if self.entries.len() >= self.cap {
            self.overflow += 1;
            return None;
        }
        let e = self.entries.entry(key.to_owned()).or_insert(Entry {
            records: 1,
            first: link.clone(),
            last: link.clone(),
            stats: S::default(),
        });
        Some(&mut e.stats)
    }

    /// Distinct keys counted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.overflow == 0
    }

    /// Whether `key` is counted.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The `n` keys with the most records (ties by key), and how many keys and records are
    /// left out.
    pub fn top(&self, n: usize) -> (Vec<(&str, &Entry<S>)>, Rest) {
        let mut all: Vec<(&str, &Entry<S>)> =
            self.entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
        all.sort_by(|a, b| b.1.records.cmp(&a.1.records).then(a.0.cmp(b.0)));
        let rest = Rest {
            keys: all.len().saturating_sub(n) as u64,
            records: all.iter().skip(n).map(|(_, e)| e.records).sum::<u64>() + self.overflow,
            capped: self.overflow > 0,
        };
        all.truncate(n);
        (all, rest)
    }

    /// Every key, by key.
    pub fn sorted(&self) -> Vec<(&str, &Entry<S>)> {
        let mut all: Vec<(&str, &Entry<S>)> =
            self.entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

/// What a list of the report leaves out.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Rest {
    /// Keys not listed.
    pub keys: u64,
    /// Their records (with those of keys beyond the tally's bound).
    pub records: u64,
    /// Keys beyond the tally's bound were counted together, unnamed.
    pub capped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(sequence: u64) -> Link {
        Link {
            file: "t.jsonl".into(),
            line: sequence + 1,
            run: "r".into(),
            sequence,
            hash: [sequence as u8; 32],
        }
    }

    #[test]
    fn a_tally_keeps_first_and_last_and_stays_bounded() {
        let mut t: Tally<u64> = Tally::new(2);
        *t.add("a", &link(0)).unwrap() += 5;
        t.add("b", &link(1));
        t.add("a", &link(2));
        assert!(t.add("c", &link(3)).is_none());
        let (top, rest) = t.top(1);
        assert_eq!(top[0].0, "a");
        assert_eq!((top[0].1.records, top[0].1.stats), (2, 5));
        assert_eq!((top[0].1.first.sequence, top[0].1.last.sequence), (0, 2));
        assert_eq!(
            rest,
            Rest {
                keys: 1,
                records: 2,
                capped: true
            }
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn hashes_round_trip_through_links() {
        let hex = "00ff10a0".repeat(8);
        let l = Link {
            hash: hash_bytes(&hex),
            ..link(0)
        };
        assert_eq!(l.hash_hex(), hex);
        assert_eq!(l.short(), "t.jsonl:1 #0");
    }
}
