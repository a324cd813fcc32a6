//! The verifier's answer in one word, and the exit status a pipeline acts on: complete and
//! unaltered, intact but incomplete (a run ends without its stop record), or altered. `verify`
//! and `report` give the same verdict for the same trail.
use serde::Serialize;

use crate::audit::verify::Report;

/// What a trail is, as far as the verifier can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every run's chain is whole, unaltered, and ends with its stop record.
    Complete,
    /// Nothing was altered, but a run ends without its stop record (it crashed, is still
    /// running, or the trail was cut after a whole record), or the trail ends inside a record.
    Incomplete,
    /// An integrity finding: a record changed, removed, reordered, cut short in the middle,
    /// a file missing, a bad or missing signature.
    Altered,
}

/// `verify` could not give a verdict: bad arguments, an unreadable file, a bad key.
pub const EXIT_ERROR: u8 = 2;

impl Verdict {
    /// The verdict on `report`. With `allow_open_end` the newest run may lack its stop record
    /// and the trail may end inside a record: a live trail, still being written.
    pub fn of(report: &Report, allow_open_end: bool) -> Self {
        if !report.intact() {
            Self::Altered
        } else if open_ends(report, allow_open_end).is_empty() {
            Self::Complete
        } else {
            Self::Incomplete
        }
    }

    /// The exit status: 0 complete, 1 altered, 3 incomplete ([`EXIT_ERROR`], 2, when there is
    /// no verdict).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Complete => 0,
            Self::Altered => 1,
            Self::Incomplete => 3,
        }
    }

    /// How the verdict reads to a person.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Complete => "complete and unaltered",
            Self::Incomplete => "intact but INCOMPLETE",
            Self::Altered => "NOT INTACT: altered",
        }
    }
}

/// Why an intact trail is incomplete, one sentence each: each run without its stop record
/// (but the newest, with `allow_open_end`) and a record cut short at the very end.
pub fn open_ends(report: &Report, allow_open_end: bool) -> Vec<String> {
    let newest = report.runs.len().checked_sub(1);
    let mut out: Vec<String> = report
        .runs
        .iter()
        .enumerate()
        .filter(|(i, r)| !(r.stopped || allow_open_end && Some(*i) == newest))
        .map(|(_, r)| {
            format!(
                "run {} has no stop record after sequence {} ({}): it crashed, is still running, or the trail was cut",
                r.instance_id,
                r.last_sequence,
                r.last_file.display()
            )
        })
        .collect();
    if !allow_open_end {
        out.extend(report.torn_tails.iter().filter(|t| !t.confirmed).map(|t| {
            format!(
                "{}:{}: the trail ends inside a record ({} bytes of it)",
                t.file.display(),
                t.line,
                t.bytes
            )
        }));
    }
    out
}

/// `verify --json`: the verifier's report with its verdict and why it is incomplete.
#[derive(Serialize)]
pub struct Answer<'r> {
    /// The verdict.
    pub verdict: Verdict,
    /// The exit status that goes with it.
    pub exit_code: u8,
    /// Why the trail is incomplete (empty when it is complete).
    pub incomplete: Vec<String>,
    /// Everything the verifier found.
    #[serde(flatten)]
    pub report: &'r Report,
}

impl<'r> Answer<'r> {
    /// The answer on `report`.
    pub fn new(report: &'r Report, allow_open_end: bool) -> Self {
        let verdict = Verdict::of(report, allow_open_end);
        Self {
            verdict,
            exit_code: verdict.exit_code(),
            incomplete: open_ends(report, allow_open_end),
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::audit::verify::{Finding, Run, TornTail};

    fn run(id: &str, stopped: bool) -> Run {
        Run {
            instance_id: id.into(),
            records: 2,
            first_sequence: 0,
            last_sequence: 1,
            last_file: PathBuf::from("t.jsonl"),
            stopped,
            continues: None,
        }
    }

    #[test]
    fn a_run_without_its_stop_record_is_incomplete_unless_it_is_the_live_one() {
        let mut r = Report {
            runs: vec![run("a", true)],
            ..Report::default()
        };
        assert_eq!(Verdict::of(&r, false), Verdict::Complete);
        r.runs.push(run("b", false));
        assert_eq!(Verdict::of(&r, false), Verdict::Incomplete);
        assert_eq!(Verdict::of(&r, true), Verdict::Complete);
        // Only the newest run may be open: a crashed one before it is not excused.
        r.runs.insert(0, run("c", false));
        assert_eq!(Verdict::of(&r, true), Verdict::Incomplete);
        assert_eq!(open_ends(&r, true).len(), 1);
        assert!(open_ends(&r, true)[0].starts_with("run c has no stop record"));
    }

    #[test]
    fn a_torn_end_is_incomplete_and_any_finding_is_altered() {
        let mut r = Report {
            runs: vec![run("a", true)],
            torn_tails: vec![TornTail {
                file: PathBuf::from("t.jsonl"),
                line: 3,
                bytes: 10,
                confirmed: false,
            }],
            ..Report::default()
        };
        assert_eq!(Verdict::of(&r, false), Verdict::Incomplete);
        assert_eq!(Verdict::of(&r, true), Verdict::Complete);
        r.findings.push(Finding {
            file: PathBuf::from("t.jsonl"),
            line: 1,
            kind: "changed",
            detail: String::new(),
        });
        assert_eq!(Verdict::of(&r, true), Verdict::Altered);
        assert_eq!(
            [Verdict::Complete, Verdict::Altered, Verdict::Incomplete].map(Verdict::exit_code),
            [0, 1, 3]
        );
        let answer = serde_json::to_value(Answer::new(&r, false)).unwrap();
        assert_eq!(answer["verdict"], "altered");
        assert_eq!(answer["exit_code"], 1);
        assert_eq!(answer["findings"][0]["kind"], "changed");
    }
}
