//! `agent-sensor verify`: reads trails in one pass, with memory bounded by the number of
//! sensor instances (not records), and says whether each chain is complete and unaltered —
//! and if not, exactly where: a changed record, removed or reordered records, a cut-short
//! file. Recorded losses (`gap` records) are reported apart from tampering.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::evidence::{self, LineFault};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: u64,
    /// `changed`, `unreadable`, `truncated`, `removed`, `reordered`, `unlinked`.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub records: u64,
    pub instances: usize,
    /// Integrity failures: any makes the trail untrustworthy where it says.
    pub findings: Vec<Finding>,
    /// Losses the sensor itself recorded (`gap` records): honest, not tampering.
    pub recorded_gaps: u64,
    /// Checkpoints whose signature checked out (with `--key`).
    pub checkpoints_verified: u64,
    /// Records after each run's last valid checkpoint (a run cut short by a crash has some).
    pub unsigned_tail: u64,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

struct Position {
    sequence: u64,
    hash: String,
    /// The sequence a valid checkpoint last covered.
    signed_through: Option<u64>,
}

/// The files to read: each path, or the regular files of a directory in name order (which
/// is rotation order).
fn files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Verifies trails; with `key`, also every checkpoint's signature, and that each run is signed.
pub fn verify(
    paths: &[PathBuf],
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut chains: HashMap<String, Position> = HashMap::new();
    for file in files(paths)? {
        verify_file(&file, key, &mut chains, &mut report)?;
    }
    report.instances = chains.len();
    if key.is_some() {
        for (instance, pos) in &chains {
            match pos.signed_through {
                Some(s) => report.unsigned_tail += pos.sequence - s,
                None => report.findings.push(Finding {
                    file: PathBuf::new(),
                    line: 0,
                    kind: "unsigned",
                    detail: format!(
                        "run {instance} has no valid checkpoint: nothing vouches for it"
                    ),
                }),
            }
        }
    }
    Ok(report)
}

fn verify_file(
    file: &Path,
    key: Option<&ed25519_dalek::VerifyingKey>,
    chains: &mut HashMap<String, Position>,
    report: &mut Report,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(std::fs::File::open(file)?);
    let mut line = Vec::new();
    let mut number = 0u64;
    let finding = |line: u64, kind, detail: String| Finding {
        file: file.to_owned(),
        line,
        kind,
        detail,
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let sealed = match evidence::check_line(&line) {
            Ok(s) => s,
            Err(LineFault::NoHash) if !complete => {
                report.findings.push(finding(
                    number,
                    "truncated",
                    "the file ends inside a record (cut short)".into(),
                ));
                break;
            }
            Err(LineFault::NoHash) => {
                report
                    .findings
                    .push(finding(number, "unreadable", "not a sealed record".into()));
                continue;
            }
            Err(LineFault::Changed) => {
                report.findings.push(finding(
                    number,
                    "changed",
                    "the record's bytes do not match its hash".into(),
                ));
                continue;
            }
            Err(LineFault::Unreadable) => {
                report.findings.push(finding(
                    number,
                    "unreadable",
                    "the record's chain block is unreadable".into(),
                ));
                continue;
            }
        };
        report.records += 1;
        if sealed.changed {
            report.findings.push(finding(
                number,
                "changed",
                "the record's bytes do not match its hash".into(),
            ));
        }
        if sealed.action == "gap" {
            report.recorded_gaps += 1;
        }
        let mut signed_through = chains
            .get(&sealed.instance_id)
            .and_then(|p| p.signed_through);
        if let (Some(key), Some((covers, covered_hash, signature))) = (key, &sealed.checkpoint) {
            let previous = chains.get(&sealed.instance_id);
            let message =
                crate::signing::checkpoint_message(&sealed.instance_id, *covers, covered_hash);
            let matches_chain =
                previous.is_some_and(|p| p.sequence == *covers && p.hash == *covered_hash);
            if matches_chain && crate::signing::verify(key, &message, signature) {
                report.checkpoints_verified += 1;
                signed_through = Some(*covers + 1);
            } else {
                report.findings.push(finding(
                    number,
                    "bad_checkpoint",
                    if matches_chain { "the signature does not verify with this key".into() } else { format!("the checkpoint covers sequence {covers} with a hash the trail does not have") },
                ));
            }
        }
        match chains.get(&sealed.instance_id) {
            None if sealed.sequence != 0 => report.findings.push(finding(
                number,
                "removed",
                format!(
                    "instance {} starts at sequence {}: its first {} records are missing",
                    sealed.instance_id, sealed.sequence, sealed.sequence
                ),
            )),
            None => {
                if sealed.prev_hash != evidence::GENESIS {
                    report.findings.push(finding(
                        number,
                        "unlinked",
                        "the first record links to a record not in the trail".into(),
                    ));
                }
            }
            // After a changed record only its claimed place is known: the next one continues
            // the chain if its sequence follows.
            Some(last)
                if sealed.sequence == last.sequence + 1
                    && (sealed.prev_hash == last.hash || last.hash.is_empty()) => {}
            Some(last) if sealed.sequence <= last.sequence => report.findings.push(finding(
                number,
                "reordered",
                format!("sequence {} after {}", sealed.sequence, last.sequence),
            )),
            Some(last) if sealed.sequence > last.sequence + 1 => report.findings.push(finding(
                number,
                "removed",
                format!(
                    "{} record(s) missing before sequence {}",
                    sealed.sequence - last.sequence - 1,
                    sealed.sequence
                ),
            )),
            Some(_) => report.findings.push(finding(
                number,
                "changed",
                "prev_hash does not match the record before".into(),
            )),
        }
        let hash = if sealed.changed {
            String::new()
        } else {
            sealed.hash
        };
        chains.insert(
            sealed.instance_id,
            Position {
                sequence: sealed.sequence,
                hash,
                signed_through,
            },
        );
    }
    Ok(())
}
