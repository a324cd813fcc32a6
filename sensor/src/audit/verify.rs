//! `agent-sensor verify`: reads trails in one pass, with memory bounded by the number of
//! sensor runs (not records), and says whether each chain is complete and unaltered — and if
//! not, exactly where: a changed record, removed or reordered records, a cut-short file, a
//! file missing from a rotation set, a restart that does not continue where the trail ended.
//! What the sensor itself put on the record is reported apart from tampering: losses (`gap`
//! records) and torn tails (a crash in the middle of a write).
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::evidence::chain::{self, LineFault, Sealed};

/// An integrity failure: the trail is not what the sensor wrote at this place.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line in that file, from 1 (for a missing file: the rotation record that named it).
    pub line: u64,
    /// `changed`, `unreadable`, `truncated`, `removed`, `reordered`, `unlinked`,
    /// `missing_file`, `bad_checkpoint`, `unsigned`.
    pub kind: &'static str,
    /// What exactly is wrong there, for a person.
    pub detail: String,
}

/// A record cut short where a run ended: what a crash (or power loss) in the middle of a
/// write leaves. Not tampering by itself; `confirmed` when the next run's start record
/// links to the record just before it, i.e. the sensor found the trail ending there.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TornTail {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line in that file, from 1.
    pub line: u64,
    /// How much of the record was written.
    pub bytes: u64,
    /// The next run's start record links to the record before it.
    pub confirmed: bool,
}

/// One sensor run, as the trail shows it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Run {
    /// The run's `sensor.instance_id`, which names its chain.
    pub instance_id: String,
    /// Its records in the trail.
    pub records: u64,
    /// The sequence of its first record in the trail (0 unless older files were not given).
    pub first_sequence: u64,
    /// The sequence of its last record in the trail.
    pub last_sequence: u64,
    /// The file its last record is in: where to look for a run that did not stop.
    pub last_file: PathBuf,
    /// It wrote its stop record (a clean end).
    pub stopped: bool,
    /// The run whose last record this run's start links to.
    pub continues: Option<String>,
}

/// The trail's first run continues one whose records were not given (older files).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StartsAfter {
    /// The earlier run.
    pub instance_id: String,
    /// The sequence of its last record, which the first run's start links to.
    pub sequence: u64,
    /// The file that record was in, as the start record names it.
    pub file: String,
}

/// The trail begins right after a file a `trail_retention` record says retention removed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RetainedBefore {
    /// The removed file whose last record the trail's first record follows.
    pub removed_file: String,
    /// The `trail_retention` record that names it.
    pub record_file: PathBuf,
    /// Its line.
    pub record_line: u64,
}

/// What `verify` found: the verdict ([`Report::intact`]) and everything behind it; the
/// `--json` output of `agent-sensor verify`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Files read.
    pub files: u64,
    /// Sealed records read.
    pub records: u64,
    /// Sensor runs (chains) in the trail.
    pub instances: usize,
    /// Integrity failures: any makes the trail untrustworthy where it says.
    pub findings: Vec<Finding>,
    /// Losses the sensor itself recorded (`gap` records): honest, not tampering.
    pub recorded_gaps: u64,
    /// Records cut short at the end of a run (a crash mid-write).
    pub torn_tails: Vec<TornTail>,
    /// Checkpoints whose signature checked out (with `--key`).
    pub checkpoints_verified: u64,
    /// Records after each run's last valid checkpoint (a run cut short by a crash has some).
    pub unsigned_tail: u64,
    /// Each sensor run, in the order its first record was read.
    pub runs: Vec<Run>,
    /// Set when the trail begins after files that were not given (deleted old files): not a
    /// failure, but what the verdict does not cover.
    pub starts_after: Option<StartsAfter>,
    /// Set when what precedes the trail was removed by retention, as a record in the trail
    /// says: the trail's start is accounted for.
    pub retained_before: Option<RetainedBefore>,
}

impl Report {
    /// No integrity finding: every chain is complete and unaltered (losses the sensor recorded
    /// and torn tails do not count against it).
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The human summary: one line per finding, torn tail and unfinished run, then whether
    /// the trail is intact.
    pub fn human(&self) -> String {
        self.human_with(if self.intact() {
            "intact"
        } else {
            "NOT INTACT"
        })
    }

    /// [`Report::human`] ending with `verdict`, as `audit::verdict` words it.
    pub fn human_with(&self, verdict: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{}:{}: {}: {}",
                f.file.display(),
                f.line,
                f.kind,
                f.detail
            );
        }
        for t in &self.torn_tails {
            let _ = writeln!(
                out,
                "{}:{}: torn tail: {} bytes of a record cut short where a run ended ({})",
                t.file.display(),
                t.line,
                t.bytes,
                if t.confirmed {
                    "the next run found the trail ending there: a crash mid-write"
                } else {
                    "a crash mid-write, or a sensor still writing"
                }
            );
        }
        match (&self.starts_after, &self.retained_before) {
            (_, Some(r)) => {
                let _ = writeln!(
                    out,
                    "the trail starts after {}, removed by retention ({}:{})",
                    r.removed_file,
                    r.record_file.display(),
                    r.record_line
                );
            }
            (Some(s), None) => {
                let _ = writeln!(
                    out,
                    "the trail starts after record {} of run {} (in {}, not given, and no trail_retention record names it removed)",
                    s.sequence, s.instance_id, s.file
                );
            }
            (None, None) => {}
        }
        for r in self.runs.iter().filter(|r| !r.stopped) {
            let _ = writeln!(
                out,
                "run {}: no stop record after sequence {} ({}): it crashed, or is still running",
                r.instance_id,
                r.last_sequence,
                r.last_file.display()
            );
        }
        let _ = writeln!(
            out,
            "{}: {} records in {} file(s) from {} sensor run(s), {} recorded gap(s)",
            verdict, self.records, self.files, self.instances, self.recorded_gaps
        );
        out
    }
}

/// Where a run's chain stands.
struct Position {
    sequence: u64,
    /// Empty after a changed record: only its claimed place is known.
    hash: String,
    /// The sequence a valid checkpoint last covered.
    signed_through: Option<u64>,
    /// Its entry in `Report::runs`.
    run: usize,
}

/// A file a rotation record named.
struct Expected {
    name: String,
    file: PathBuf,
    line: u64,
    instance_id: String,
    after: u64,
}

/// The trail's first record follows one that is not in the trail: accounted for if a
/// `trail_retention` record names the file that record was in.
struct Start {
    /// The record it follows: run, sequence, hash.
    follows: (String, u64, String),
    /// What to report if nothing accounts for it.
    finding: Option<(PathBuf, u64, &'static str, String)>,
}

/// A line that is not a sealed record, until what follows says whether it is a torn tail.
struct Torn {
    file: PathBuf,
    line: u64,
    bytes: u64,
    /// It ends in a newline (a restart closed it) rather than at the end of its file.
    complete: bool,
    /// The run and sequence of the record before it.
    after: Option<(String, u64)>,
}

/// The files to read: each path, or the regular files of a directory: rotated trail files
/// by their counter, others by name.
fn files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort_by_cached_key(|p| {
                let name = file_name(p);
                (crate::sink::counter_of(&name), name)
            });
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One sealed record as the verifier reads it, handed to a caller that wants more of the trail
/// than the verdict (the auditor's report), so the trail is read and parsed once.
pub struct Observed<'a> {
    /// The file it is in.
    pub file: &'a Path,
    /// Its line in that file, from 1.
    pub line: u64,
    /// Its chain block (and whether its bytes match its hash: `sealed.changed`).
    pub sealed: &'a Sealed,
    /// The line parsed: an ECS record, or an OCSF event.
    pub value: &'a serde_json::Value,
}

/// Verifies trails; with `key`, also every checkpoint's signature, and that each run is signed.
pub fn verify(
    paths: &[PathBuf],
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> std::io::Result<Report> {
    verify_each(paths, key, &mut |_| {})
}

/// [`verify`], handing each sealed record to `each` as it is read.
pub fn verify_each(
    paths: &[PathBuf],
    key: Option<&ed25519_dalek::VerifyingKey>,
    each: &mut dyn FnMut(&Observed<'_>),
) -> std::io::Result<Report> {
    let mut v = Verifier {
        each,
        key,
        report: Report::default(),
        chains: HashMap::new(),
        last: None,
        expected: None,
        missing: None,
        torn: None,
        unsealed: 0,
        start: None,
        retained: Vec::new(),
    };
    for file in files(paths)? {
        v.file(&file)?;
    }
    Ok(v.finish())
}

struct Verifier<'k> {
    each: &'k mut dyn FnMut(&Observed<'_>),
    key: Option<&'k ed25519_dalek::VerifyingKey>,
    report: Report,
    chains: HashMap<String, Position>,
    /// The last sealed record read: its run and sequence.
    last: Option<(String, u64)>,
    /// The file the last rotation record named, until the next file is opened.
    expected: Option<Expected>,
    /// A named file that is not there, until the next record says what it held.
    missing: Option<Expected>,
    torn: Option<Torn>,
    /// Lines since the last sealed record that were not readable records (each already a
    /// finding): a sequence jump they account for is not reported again as removed records.
    unsealed: u64,
    /// What the trail's first record follows, when that is not in the trail.
    start: Option<Start>,
    /// The files `trail_retention` records name, each with where its record is.
    retained: Vec<(chain::Link, PathBuf, u64)>,
}

impl Verifier<'_> {
    fn finding(&mut self, file: &Path, line: u64, kind: &'static str, detail: String) {
        self.report.findings.push(Finding {
            file: file.to_owned(),
            line,
            kind,
            detail,
        });
    }

    fn file(&mut self, file: &Path) -> std::io::Result<()> {
        self.report.files += 1;
        if let Some(e) = self.expected.take()
            && e.name != file_name(file)
            && self.missing.is_none()
        {
            self.missing = Some(e);
        }
        let mut reader = BufReader::new(std::fs::File::open(file)?);
        let mut line = Vec::new();
        let mut number = 0u64;
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
            self.line(file, number, &line, complete);
        }
        Ok(())
    }

    fn line(&mut self, file: &Path, number: u64, line: &[u8], complete: bool) {
        let (sealed, value) = match chain::check_line_value(line) {
            Ok(s) => s,
            Err(LineFault::NoHash) => {
                // Perhaps a crash's torn write: what follows decides.
                self.settle_torn(None);
                self.torn = Some(Torn {
                    file: file.to_owned(),
                    line: number,
                    // Without the newline a restart may have closed it with.
                    bytes: line.len() as u64,
                    complete,
                    after: self.last.clone(),
                });
                return;
            }
            Err(fault) => {
                self.settle_torn(None);
                let detail = if fault == LineFault::Changed {
                    "the record's bytes do not match its hash"
                } else {
                    "the record's chain block is unreadable"
                };
                let kind = if fault == LineFault::Changed {
                    "changed"
                } else {
                    "unreadable"
                };
                self.finding(file, number, kind, detail.into());
                self.unsealed += 1;
                return;
            }
        };
        self.settle_torn(Some(&sealed));
        (self.each)(&Observed {
            file,
            line: number,
            sealed: &sealed,
            value: &value,
        });
        self.sealed(file, number, sealed);
    }

    /// Decides what a pending cut-short line was, given the record after it (`None`: not a
    /// record). Only a run's end may be torn; the next run's start confirms it.
    fn settle_torn(&mut self, next: Option<&Sealed>) {
        let Some(t) = self.torn.take() else {
            return;
        };
        let restart_found_it = next.is_some_and(|s| {
            s.action == "sensor_start"
                && s.previous
                    .as_ref()
                    .is_some_and(|p| t.after == Some((p.instance_id.clone(), p.sequence)))
        });
        if restart_found_it {
            self.report.torn_tails.push(TornTail {
                file: t.file,
                line: t.line,
                bytes: t.bytes,
                confirmed: true,
            });
        } else if t.complete {
            self.finding(&t.file, t.line, "unreadable", "not a sealed record".into());
            self.unsealed += 1;
        } else {
            self.finding(
                &t.file,
                t.line,
                "truncated",
                "the file ends inside a record, and the trail goes on after it".into(),
            );
            self.unsealed += 1;
        }
    }

    fn sealed(&mut self, file: &Path, number: u64, sealed: Sealed) {
        self.report.records += 1;
        if sealed.changed {
            self.finding(
                file,
                number,
                "changed",
                "the record's bytes do not match its hash".into(),
            );
        }
        if sealed.action == "gap" {
            self.report.recorded_gaps += 1;
        }
        for link in &sealed.retained {
            self.retained.push((link.clone(), file.to_owned(), number));
        }
        // Rotated files concatenated into one: the continuation is right here.
        if self.expected.as_ref().is_some_and(|e| e.file == file) {
            self.expected = None;
        }
        let excused = self.missing_file(&sealed);
        let signed_through = self.checkpoint(file, number, &sealed);
        if let Some(link) = &sealed.previous {
            self.link(file, number, &sealed, link);
        }
        if !excused {
            self.place(file, number, &sealed);
        }
        self.unsealed = 0;
        if let Some(next) = &sealed.next_file {
            self.expected = Some(Expected {
                name: next.clone(),
                file: file.to_owned(),
                line: number,
                instance_id: sealed.instance_id.clone(),
                after: sealed.sequence,
            });
        }
        let hash = if sealed.changed {
            String::new()
        } else {
            sealed.hash
        };
        let run = if let Some(p) = self.chains.get(&sealed.instance_id) {
            p.run
        } else {
            self.report.runs.push(Run {
                instance_id: sealed.instance_id.clone(),
                records: 0,
                first_sequence: sealed.sequence,
                last_sequence: sealed.sequence,
                last_file: PathBuf::new(),
                stopped: false,
                continues: sealed.previous.as_ref().map(|p| p.instance_id.clone()),
            });
            self.report.runs.len() - 1
        };
        let r = &mut self.report.runs[run];
        r.records += 1;
        r.last_sequence = sealed.sequence;
        if r.last_file != file {
            file.clone_into(&mut r.last_file);
        }
        r.stopped |= sealed.action == "sensor_stop";
        self.last = Some((sealed.instance_id.clone(), sealed.sequence));
        self.chains.insert(
            sealed.instance_id,
            Position {
                sequence: sealed.sequence,
                hash,
                signed_through,
                run,
            },
        );
    }

    /// Reports a file a rotation named and the trail lacks; true when this record's jump in
    /// sequence is that file's records (so it is not reported twice).
    fn missing_file(&mut self, sealed: &Sealed) -> bool {
        let Some(m) = self.missing.take() else {
            return false;
        };
        let held = sealed.instance_id == m.instance_id && sealed.sequence > m.after + 1;
        let detail = if held {
            format!(
                "{} is missing: this rotation names it as the next file; it held records {}..={} of run {}",
                m.name,
                m.after + 1,
                sealed.sequence - 1,
                m.instance_id
            )
        } else {
            format!(
                "{} is missing: this rotation names it as the next file",
                m.name
            )
        };
        self.finding(&m.file, m.line, "missing_file", detail);
        held
    }

    /// Checks a checkpoint's signature (with a key); returns how far the run is signed.
    fn checkpoint(&mut self, file: &Path, number: u64, sealed: &Sealed) -> Option<u64> {
        let previous = self.chains.get(&sealed.instance_id);
        let signed_through = previous.and_then(|p| p.signed_through);
        let (Some(key), Some((covers, covered_hash, signature))) = (self.key, &sealed.checkpoint)
        else {
            return signed_through;
        };
        let message = crate::evidence::signing::checkpoint_message(
            &sealed.instance_id,
            *covers,
            covered_hash,
        );
        let matches_chain =
            previous.is_some_and(|p| p.sequence == *covers && p.hash == *covered_hash);
        if matches_chain && crate::evidence::signing::verify(key, &message, signature) {
            self.report.checkpoints_verified += 1;
            return Some(*covers + 1);
        }
        let detail = if matches_chain {
            "the signature does not verify with this key".into()
        } else {
            format!("the checkpoint covers sequence {covers} with a hash the trail does not have")
        };
        self.finding(file, number, "bad_checkpoint", detail);
        signed_through
    }

    /// A new run's start names the last record of the run before: the trail must end that
    /// run exactly there.
    fn link(&mut self, file: &Path, number: u64, sealed: &Sealed, link: &chain::Link) {
        let (old, new) = (&link.instance_id, &sealed.instance_id);
        let Some(p) = self.chains.get(old) else {
            if self.last.is_none() {
                self.report.starts_after = Some(StartsAfter {
                    instance_id: old.clone(),
                    sequence: link.sequence,
                    file: link.file.clone(),
                });
                self.start = Some(Start {
                    follows: (old.clone(), link.sequence, link.hash.clone()),
                    finding: None,
                });
            } else {
                self.finding(
                    file,
                    number,
                    "missing_file",
                    format!(
                        "run {new} continues run {old} from {} (sequence {}), which is not in the trail",
                        link.file, link.sequence
                    ),
                );
            }
            return;
        };
        let (found, found_hash) = (p.sequence, p.hash.clone());
        if found < link.sequence {
            self.finding(
                file,
                number,
                "removed",
                format!(
                    "run {new} found run {old} ending at sequence {} (in {}), but the trail has it only up to {found}: {} record(s) missing",
                    link.sequence,
                    link.file,
                    link.sequence - found
                ),
            );
        } else if found > link.sequence {
            self.finding(
                file,
                number,
                "unlinked",
                format!(
                    "run {new} found run {old} ending at sequence {}, but the trail has it up to {found}: records were added after the restart",
                    link.sequence
                ),
            );
        } else if !found_hash.is_empty() && found_hash != link.hash {
            self.finding(
                file,
                number,
                "changed",
                format!(
                    "run {new} links to a record {old}:{found} other than the one in the trail"
                ),
            );
        }
    }

    /// The record's place in its run's chain.
    fn place(&mut self, file: &Path, number: u64, sealed: &Sealed) {
        let Some(last) = self.chains.get(&sealed.instance_id) else {
            if sealed.sequence != 0 {
                let detail = format!(
                    "instance {} starts at sequence {}: its first {} records are missing",
                    sealed.instance_id, sealed.sequence, sealed.sequence
                );
                if self.last.is_none() {
                    // The trail's very start: retention may have removed what came before.
                    self.start = Some(Start {
                        follows: (
                            sealed.instance_id.clone(),
                            sealed.sequence - 1,
                            sealed.prev_hash.clone(),
                        ),
                        finding: Some((
                            file.to_owned(),
                            number,
                            "removed",
                            format!(
                                "{detail}, and no trail_retention record names the file they were in: deleted"
                            ),
                        )),
                    });
                } else {
                    self.finding(file, number, "removed", detail);
                }
            } else if sealed.prev_hash != chain::GENESIS {
                self.finding(
                    file,
                    number,
                    "unlinked",
                    "the first record links to a record not in the trail".into(),
                );
            }
            return;
        };
        let (seq, hash) = (
            last.sequence,
            last.hash.is_empty() || last.hash == sealed.prev_hash,
        );
        if sealed.sequence == seq + 1 && hash {
            return;
        }
        // The records between are the unreadable lines before this one, reported already.
        if sealed.sequence > seq + 1 && sealed.sequence - seq - 1 <= self.unsealed {
            return;
        }
        let (kind, detail) = if sealed.sequence <= seq {
            (
                "reordered",
                format!("sequence {} after {seq}", sealed.sequence),
            )
        } else if sealed.sequence > seq + 1 {
            (
                "removed",
                format!(
                    "{} record(s) missing before sequence {}",
                    sealed.sequence - seq - 1,
                    sealed.sequence
                ),
            )
        } else {
            (
                "changed",
                "prev_hash does not match the record before".into(),
            )
        };
        self.finding(file, number, kind, detail);
    }

    fn finish(mut self) -> Report {
        match self.torn.take() {
            // The trail ends inside a record: a crash mid-write, or a sensor writing now.
            Some(t) if !t.complete => self.report.torn_tails.push(TornTail {
                file: t.file,
                line: t.line,
                bytes: t.bytes,
                confirmed: false,
            }),
            // A whole line, but not a record: nothing a crash leaves.
            Some(t) => self.finding(&t.file, t.line, "unreadable", "not a sealed record".into()),
            None => {}
        }
        if let Some(start) = self.start.take() {
            let (instance, sequence, hash) = &start.follows;
            let by_retention = self.retained.iter().rev().find(|(l, _, _)| {
                l.instance_id == *instance && l.sequence == *sequence && l.hash == *hash
            });
            match (by_retention, start.finding) {
                (Some((link, record_file, record_line)), _) => {
                    self.report.retained_before = Some(RetainedBefore {
                        removed_file: link.file.clone(),
                        record_file: record_file.clone(),
                        record_line: *record_line,
                    });
                }
                (None, Some((file, line, kind, detail))) => {
                    self.finding(&file, line, kind, detail);
                }
                (None, None) => {}
            }
        }
        if let Some(m) = self.missing.take().or(self.expected.take()) {
            self.finding(
                &m.file.clone(),
                m.line,
                "missing_file",
                format!(
                    "{} is missing: this rotation names it as the next file, and the trail has nothing after it",
                    m.name
                ),
            );
        }
        self.report.instances = self.chains.len();
        if self.key.is_some() {
            let mut unsigned = Vec::new();
            for (instance, pos) in &self.chains {
                match pos.signed_through {
                    Some(s) => self.report.unsigned_tail += pos.sequence.saturating_sub(s),
                    None => unsigned.push(instance.clone()),
                }
            }
            unsigned.sort();
            for instance in unsigned {
                self.finding(
                    Path::new(""),
                    0,
                    "unsigned",
                    format!("run {instance} has no valid checkpoint: nothing vouches for it"),
                );
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::chain::Chain;
    use serde_json::{Value, json};

    /// Writes trails of sealed records to a scratch directory.
    struct Trail {
        dir: PathBuf,
        chains: HashMap<String, Chain>,
    }

    impl Trail {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("verify-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self {
                dir,
                chains: HashMap::new(),
            }
        }

        /// A sealed line of `run` (without its newline).
        fn record(&mut self, run: &str, mut value: Value) -> Vec<u8> {
            let chain = self
                .chains
                .entry(run.to_owned())
                .or_insert_with(|| Chain::new(run));
            value["chain_run"] = json!(run);
            let mut out = serde_json::to_vec(&value).unwrap();
            chain.seal(&mut out, 0);
            out.pop();
            out
        }

        fn action(&mut self, run: &str, action: &str) -> Vec<u8> {
            self.record(run, json!({"event": {"action": action}}))
        }

        /// A start record linking to `run`'s last record, found in `file`.
        fn start_after(&mut self, new: &str, old: &str, file: &str) -> Vec<u8> {
            let (sequence, hash) = self.chains[old]
                .last()
                .map(|(s, h)| (s, h.to_owned()))
                .unwrap();
            let previous =
                json!({"instance_id": old, "sequence": sequence, "hash": hash, "file": file});
            self.record(
                new,
                json!({"event": {"action": "sensor_start"}, "sensor": {"lifecycle": {"previous": previous}}}),
            )
        }

        fn rotation(&mut self, run: &str, file: &str, next: &str) -> Vec<u8> {
            self.record(
                run,
                json!({"event": {"action": "rotation"}, "rotation": {"reason": "size", "file": file, "next_file": next}}),
            )
        }

        fn write(&self, name: &str, lines: &[Vec<u8>], tail: &[u8]) {
            let mut bytes = lines.join(&b'\n');
            if !lines.is_empty() {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(tail);
            std::fs::write(self.dir.join(name), bytes).unwrap();
        }

        fn verify(&self) -> Report {
            verify(std::slice::from_ref(&self.dir), None).unwrap()
        }
    }

    impl Drop for Trail {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn kinds(r: &Report) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    const F1: &str = "trail-0000000001-20260101T000000Z.jsonl";
    const F2: &str = "trail-0000000002-20260101T000000Z.jsonl";
    const F3: &str = "trail-0000000003-20260101T000000Z.jsonl";
    const F4: &str = "trail-0000000004-20260101T000000Z.jsonl";

    /// Run `a` over three rotated files.
    fn rotated(t: &mut Trail) -> [Vec<Vec<u8>>; 3] {
        let f1 = vec![
            t.action("a", "sensor_start"),
            t.action("a", "exec"),
            t.rotation("a", F1, F2),
        ];
        let f2 = vec![
            t.action("a", "exec"),
            t.action("a", "exec"),
            t.rotation("a", F2, F3),
        ];
        let f3 = vec![t.action("a", "exec"), t.action("a", "sensor_stop")];
        [f1, f2, f3]
    }

    #[test]
    fn a_rotation_set_verifies_and_a_missing_file_is_named_where_it_was_announced() {
        let mut t = Trail::new("rotated");
        let [f1, f2, f3] = rotated(&mut t);
        t.write(F1, &f1, b"");
        t.write(F3, &f3, b"");
        let r = t.verify();
        assert_eq!(kinds(&r), ["missing_file"], "{:?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(
            (f.file.file_name().unwrap().to_str(), f.line),
            (Some(F1), 3)
        );
        assert!(
            f.detail.starts_with(&format!("{F2} is missing"))
                && f.detail.contains("records 3..=5 of run a"),
            "{}",
            f.detail
        );
        t.write(F2, &f2, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!((r.files, r.records, r.runs[0].stopped), (3, 8, true));
        // The newest file gone: the rotation into it says so.
        std::fs::remove_file(t.dir.join(F3)).unwrap();
        let r = t.verify();
        assert_eq!(kinds(&r), ["missing_file"]);
        assert!(
            r.findings[0]
                .detail
                .starts_with(&format!("{F3} is missing"))
        );
        assert_eq!(r.findings[0].line, 3);
    }

    #[test]
    fn rotated_files_concatenated_into_one_still_verify() {
        let mut t = Trail::new("concatenated");
        let [f1, f2, f3] = rotated(&mut t);
        t.write("all.jsonl", &[f1, f2, f3].concat(), b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
    }

    #[test]
    fn a_restart_after_a_torn_write_links_across_it() {
        let mut t = Trail::new("restart");
        let f1 = vec![t.action("a", "sensor_start"), t.action("a", "exec")];
        let f2 = vec![t.start_after("b", "a", F1), t.action("b", "sensor_stop")];
        t.write(F1, &f1, b"{\"event\":{\"act");
        t.write(F2, &f2, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!(
            r.torn_tails,
            [TornTail {
                file: t.dir.join(F1),
                line: 3,
                bytes: 14,
                confirmed: true
            }]
        );
        assert_eq!(r.runs[1].continues.as_deref(), Some("a"));
        assert!(!r.runs[0].stopped && r.runs[1].stopped);
        assert!(r.human().contains("run a: no stop record after sequence 1"));
        // A whole line that is not a record, at the end, is no crash's doing.
        t.write(F2, &f2, b"{\"event\":{}}\n");
        let r = t.verify();
        assert_eq!(kinds(&r), ["unreadable"], "{:?}", r.findings);
        assert_eq!(r.findings[0].line, 3);

        // The same with one file (a restart closes the torn line with a newline first).
        let mut one = f1.clone();
        one.push(b"{\"event\":{\"act".to_vec());
        one.extend(f2.clone());
        std::fs::remove_file(t.dir.join(F2)).unwrap();
        t.write(F1, &one, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!((r.torn_tails[0].line, r.torn_tails[0].bytes), (3, 14));

        // Records removed from the end of the run the restart found are caught.
        t.write(F1, &f1[..1], b"");
        t.write(F2, &f2, b"");
        let r = t.verify();
        assert_eq!(kinds(&r), ["removed"], "{:?}", r.findings);
        assert_eq!(r.findings[0].line, 1);
        assert!(r.findings[0].file.ends_with(F2));
    }

    #[test]
    fn a_torn_record_in_the_middle_of_a_run_is_not_a_tail() {
        let mut t = Trail::new("torn-middle");
        let [f1, f2, _] = rotated(&mut t);
        // The rotation record of F1 cut short, F2 going on with the run.
        t.write(F1, &f1[..2], &f1[2][..20]);
        t.write(F2, &f2[..2], b"");
        let r = t.verify();
        assert_eq!(kinds(&r), ["truncated"], "{:?}", r.findings);
        assert_eq!(r.findings[0].line, 3);
        assert!(r.torn_tails.is_empty());
    }

    #[test]
    fn a_trail_may_start_after_older_files_but_not_skip_a_run() {
        let mut t = Trail::new("starts-after");
        let old = vec![t.action("a", "sensor_start"), t.action("a", "sensor_stop")];
        let b = vec![t.start_after("b", "a", F1), t.action("b", "sensor_stop")];
        let c = vec![t.start_after("c", "b", F2), t.action("c", "exec")];
        t.write(F2, &b, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!(
            r.starts_after,
            Some(StartsAfter {
                instance_id: "a".into(),
                sequence: 1,
                file: F1.into()
            })
        );
        t.write(F1, &old, b"");
        t.write(F4, &c, b"");
        std::fs::remove_file(t.dir.join(F2)).unwrap();
        let r = t.verify();
        assert_eq!(kinds(&r), ["missing_file"], "{:?}", r.findings);
        assert!(
            r.findings[0]
                .detail
                .contains(&format!("continues run b from {F2}"))
        );
    }

    /// Where `run`'s chain stands: the last record sealed (run, sequence, hash).
    fn last_of(t: &Trail, run: &str) -> (String, u64, String) {
        let (sequence, hash) = t.chains[run].last().unwrap();
        (run.to_owned(), sequence, hash.to_owned())
    }

    /// A `trail_retention` record of `run` naming `removed`, each file by its last record.
    fn retention(t: &mut Trail, run: &str, removed: &[(&str, (String, u64, String))]) -> Vec<u8> {
        let removed: Vec<Value> = removed
            .iter()
            .map(|(file, (of, sequence, hash))| {
                json!({"file": file, "reason": "size", "bytes": 1,
                       "last": {"instance_id": of, "sequence": sequence, "hash": hash}})
            })
            .collect();
        t.record(
            run,
            json!({"event": {"action": "trail_retention"}, "retention": {"removed": removed, "max_bytes": 1, "max_age_ms": 0}}),
        )
    }

    #[test]
    fn a_start_removed_by_retention_is_accounted_for_and_one_deleted_is_not() {
        // F1 (records 0..=2 of run a) went; F2 goes on from sequence 3 and holds the record
        // of the removal.
        let mut t = Trail::new("retention-2");
        let _f1 = [
            t.action("a", "sensor_start"),
            t.action("a", "exec"),
            t.rotation("a", F1, F2),
        ];
        let end_of_f1 = last_of(&t, "a");
        assert_eq!(end_of_f1.1, 2);
        let f2 = [
            t.action("a", "exec"),
            retention(&mut t, "a", &[(F1, end_of_f1)]),
            t.action("a", "exec"),
        ];
        t.write(F2, &f2, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!(
            r.retained_before,
            Some(RetainedBefore {
                removed_file: F1.into(),
                record_file: t.dir.join(F2),
                record_line: 2,
            })
        );
        assert!(r.human().contains(&format!(
            "the trail starts after {F1}, removed by retention"
        )));

        // The same start with no record of a removal: deleted.
        let mut u = Trail::new("retention-3");
        let _ = [
            u.action("a", "sensor_start"),
            u.action("a", "exec"),
            u.rotation("a", F1, F2),
        ];
        let g2 = [u.action("a", "exec"), u.action("a", "exec")];
        u.write(F2, &g2, b"");
        let r = u.verify();
        assert_eq!(kinds(&r), ["removed"], "{:?}", r.findings);
        assert!(
            r.findings[0].detail.ends_with("deleted"),
            "{}",
            r.findings[0].detail
        );

        // A record naming some other file does not account for it.
        let mut w = Trail::new("retention-4");
        let _ = [
            w.action("a", "sensor_start"),
            w.action("a", "exec"),
            w.rotation("a", F1, F2),
        ];
        let h2 = [w.action("a", "exec"), w.action("a", "exec")];
        let elsewhere = last_of(&w, "a");
        let h3 = [retention(&mut w, "a", &[(F3, elsewhere)])];
        w.write(F2, &h2, b"");
        w.write(F3, &h3, b"");
        assert_eq!(kinds(&w.verify()), ["removed"]);
    }

    #[test]
    fn a_new_run_after_files_removed_by_retention_is_accounted_for() {
        let mut t = Trail::new("retention-runs");
        let _old = [t.action("a", "sensor_start"), t.action("a", "sensor_stop")];
        let end_of_a = last_of(&t, "a");
        let b = [
            t.start_after("b", "a", F1),
            retention(&mut t, "b", &[(F1, end_of_a)]),
            t.action("b", "sensor_stop"),
        ];
        t.write(F2, &b, b"");
        let r = t.verify();
        assert!(r.intact(), "{:?}", r.findings);
        assert_eq!(r.retained_before.as_ref().unwrap().removed_file, F1);
        assert!(r.starts_after.is_some());
    }
}
